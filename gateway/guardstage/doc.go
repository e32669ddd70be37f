// Package guardstage is the pipeline's guardrail stages (pipeline.Guard):
// the guardrail policies that apply to a call, run on its payload
// (guard_call) and on its answer (guard_result), for MCP and LLM calls
// alike.
//
// # Policies
//
// A guardrail is a catalog policy (CREATE POLICY … USING
// system.ai.<builtin> OPTIONS (…), or AS $$rego$$) attached to a
// connection, model service, schema or catalog; it applies to what it is
// attached to and everything inside (inherited downwards like
// privileges), on the call, the result or both (its phases), enforcing
// or only recording (its mode). The Preparer builds a Set of them with
// every snapshot of the decision engine (enforce.Options.Guardrails):
// each built-in compiled from its OPTIONS (gateway/guard/builtin), each
// Rego module prepared (enforce/policy); an unchanged policy is reused
// across revisions, and nothing is compiled on a request. A policy that
// does not prepare fails every call it applies to (denies in enforce
// mode). Rego policies on the call in enforce mode are the decision
// engine's (they run at authorization); Rego policies on the result, or in
// monitor mode, run here with the content in their input ({phase,
// subject, actor, groups, securable, method, tool, arguments, …,
// content}).
//
// Policies run in a fixed order of kinds, so that refusals see the
// content as it came and rewrites come last: pin_tools, validate_schema,
// prevent_exfiltration, block_prompt_injection, Rego,
// detect_sensitive_data (then spotlighting); within a kind, outermost
// attachment first.
//
// # Decisions
//
// allow; deny (the call or answer is refused with KindGuardDenied, which
// the adapter renders in the client's protocol: an MCP JSON-RPC error
// -32001 "blocked by a guardrail: policy NAME (builtin): why", the
// provider's error format for LLM calls, an error event in a stream
// under way); rewrite (masking: the JSON stays valid; spotlighting of tool
// results; tools/list filtered). A policy in monitor mode changes nothing
// and records what it would have done (would_deny, would_mask, …). A
// guardrail that cannot check the content (malformed JSON, a classifier
// that fails, a run store that is full) denies in enforce mode.
//
// Every outcome is recorded on the call (pipeline.Call.AddGuardrail) and
// lands in its audit row's guardrails column: policy, guardrail, phase,
// mode, action, entity types and counts, score and rule kinds, tools,
// reason; never the matched text.
//
// # MCP
//
//	tools/call      call: its arguments (detect_sensitive_data masks
//	                inside the JSON; prevent_exfiltration checks the
//	                destinations in them and the lethal trifecta for the
//	                connection; pin_tools refuses a tool that is not
//	                approved as last seen; block_prompt_injection with
//	                user_content 'true'); result: the tool result
//	                (content blocks and structuredContent): masking,
//	                injection score and spotlighting of text blocks,
//	                validate_schema against the tool's outputSchema, the
//	                trifecta's taint when the connection is private
//	resources/read, prompts/get
//	                result: as a tool result (no schema)
//	tools/list      result: pin_tools records every tool seen (catalog
//	                tool pins, each new or changed tool an audited catalog
//	                change), approves new ones with approve 'first_seen',
//	                and hides tools that are new or changed; the tools'
//	                outputSchemas are remembered per connection for
//	                validate_schema (a result of a tool whose schema the
//	                gateway has not seen since it started is recorded as
//	                not validated)
//
// Notifications and server requests in a stream pass unchecked.
//
// # The lethal trifecta
//
// A run is the agent's X-Mandate-Run-Id header, else its inbound token
// (so that a run spans the MCP sessions and LLM calls made with one
// token), scoped to the subject and actor (exfil.RunKey). A result from a
// connection or model service with sensitivity 'private' taints the run
// before it is released (a taint that cannot be recorded refuses the
// result); a call to one with egress 'external' from a tainted run is
// denied. The run store is in process (exfil.MemoryStore, an hour idle);
// gateway replicas each keep their own.
package guardstage
