// Package exfil is the prevent_exfiltration guardrail's engine: links to
// destinations in content, domain allow-lists, and the lethal-trifecta
// rule over an agent run.
//
// # Links and allow-lists
//
// ExtractText finds destinations in model output and messages: markdown
// images (fetched without a click: the zero-click channel) and links,
// reference definitions, HTML src/href, bare scheme://… URLs, protocol-
// relative //host and www.… hosts. ExtractJSON finds them in tool
// arguments: string values that are URLs, host names under
// destination-like member names (url, host, webhook, to, …), e-mail
// recipients (their domain), and links inside longer strings.
//
// Hosts are normalized the way browsers do before connecting (URLHost,
// NormalizeHost): tabs and newlines dropped, '\' ends the authority like
// '/', the userinfo before the last '@' is not the host
// (https://docs.example.com@evil.example is evil.example), IDNA mapping to
// ASCII (case, full-width forms, Unicode → punycode), trailing dot, and
// IPv4 in every form browsers accept (2130706433, 0x7f.1, 0177.0.0.1,
// 127.1). A host that does not normalize is a violation (fail closed).
//
// The allow-list (option allowed_domains 'docs.example.com,
// *.corp.example') holds exact names, "*." wildcards (any subdomain at
// any depth, not the name itself: list both to allow both), IP addresses
// and CIDR prefixes. An IP literal is allowed only when listed. Without
// allowed_domains no URL is checked (the policy then only applies the
// trifecta). Options: allowed_domains, action 'deny' (default) | 'mask'
// (RewriteText replaces disallowed URLs in text with "blocked:"; JSON
// arguments are never rewritten), emails 'true'|'false' (e-mail recipients
// in tool arguments count as destinations; default true), trifecta
// 'true'|'false' (default true).
//
// # The lethal trifecta
//
// Connections and model services carry tags in their OPTIONS
// (sensitivity 'private', egress 'external'; ParseTags). Per run:
// Trifecta.Received after a result from a private source taints the run
// (the first source is kept); Trifecta.Check before a call denies it when
// the target is external and the run is tainted. A run is the agent's
// X-Mandate-Run-Id, else its MCP session and inbound token
// (SessionRunID), scoped to the subject and actor (RunKey), so it spans
// the LLM and MCP calls of one user and agent and never crosses users.
//
// Run state lives behind RunStore (Taint, Tainted). MemoryStore keeps it in
// process with a TTL renewed on use and a capacity; when full it refuses
// new taints (ErrStoreFull, and the caller refuses the private result)
// rather than forgetting one. A store shared by several gateway replicas
// implements the same interface and runs exfiltest.RunStoreSuite.
package exfil
