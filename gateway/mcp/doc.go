// Package mcp is the MCP gateway's HTTP handler: the MCP adapter of
// gateway/pipeline, between agents (MCP clients) and upstream MCP servers.
//
// An agent talks Streamable HTTP to BASE/mcp/{connection}, BASE being the
// path of the public URL (usually empty). A one-part name is
// system.ai.{name}; a three-part name (cat.schema.name) addresses a
// connection elsewhere: the path segment goes to gateway.Connections as
// is. /.well-known/oauth-protected-resource/BASE/mcp/{connection} serves
// the RFC 9728 metadata of that resource (identity.ServeMetadata:
// resource, authorization_servers, bearer_methods_supported ["header"],
// scopes_supported when Config.Scopes is set). OPTIONS preflights are
// answered here (no body, no audit: they carry no message and reach no
// upstream).
//
// # Stages
//
// Every request runs the pipeline's stages (gateway/pipeline); this
// package supplies the MCP parts, and renders every error as JSON-RPC:
//
//	authenticate  (pipeline) a Host that is not the public host (any
//	              loopback host when the public URL is loopback), or an
//	              Origin that is not allowed: 403, -32600. Then
//	              Config.Auth with resource = PublicURL/mcp/{name}:
//	              401 (403 for insufficient_scope) with WWW-Authenticate:
//	              Bearer resource_metadata="…" (identity.WWWAuthenticate:
//	              no error attribute when the request had no token, RFC
//	              6750 §3.1; scope when known) and a JSON body {"error",
//	              "error_description"}
//	resolve       (Resolve) GET, POST and DELETE only (405).
//	              MCP-Protocol-Version must be one of
//	              SupportedProtocolVersions (400, -32022 with the supported
//	              list). POST: Content-Type application/json (else 415),
//	              body at most MaxBody (413), exactly one JSON-RPC 2.0
//	              message: a batch is -32600, invalid JSON -32700 (HTTP
//	              400). Methods outside the allow-list get -32601 "method …
//	              not allowed by the gateway" and are not forwarded. For
//	              2026-07-28 the Mcp-Method and Mcp-Name headers must match
//	              the body (400, -32020). Then the connection (unknown:
//	              404), the session (below), include_tools (below), and the
//	              question: USE_CONNECTION on the CONNECTION with context
//	              {method, tool, arguments, source_ip, user_agent,
//	              session_id}; the tool is the call's item
//	authorize     (pipeline) a denial is 403 with -32001 "access to
//	              connection X denied: <what is missing>" (the audit row has
//	              the whole derivation); a tool denial, below
//	credential    (pipeline) Config.Credentials for the connection.
//	              *gateway.SignInRequiredError → a JSON-RPC error with the
//	              sign-in URL (below); other errors → 502, -32603
//	forward       (Send) POST (or GET, DELETE) to the connection's URL
//	              (below)
//	guard_result  (Relay) the answer, JSON or SSE (below)
//	audit         (pipeline) one catalog.AuditEvent per message (below)
//
// The limits, guard_call, guard_result and meter stages run
// Config.Limiter, Guard and Meter when set: a rate limit is 429 with
// Retry-After and -32005; a guardrail denial of a request is -32001 (HTTP
// 200, like a tool denial).
//
// The allow-list: initialize, ping, notifications/*, tools/list,
// tools/call, resources/list, resources/templates/list, resources/read,
// resources/subscribe, resources/unsubscribe, prompts/list, prompts/get,
// completion/complete, logging/setLevel, and, of the 2026-07-28 stateless
// revision, server/discover and subscriptions/listen (the SDKs send
// server/discover first and fall back to initialize when the upstream
// declines it). Client responses to server requests (sampling,
// elicitation, roots/list) pass, authorized as method "response".
//
// # Messages read as bytes
//
// The gateway does not decode messages into Go values. It checks a body
// once (UTF-8, json.Valid), then reads the few members it needs (method,
// id, params.name, result.tools[].name) as byte spans, exactly and case
// sensitively, and forwards the body untouched. A message with two keys
// that are equal under case folding, in any object, is refused (-32600):
// otherwise a body such as {"params":{"name":"echo"},"Params":{...}}
// could be authorized as one call and executed as another by an upstream
// whose decoder is first-wins or case-insensitive (Go's encoding/json).
//
// # Tools
//
// tools/call: a tool outside include_tools (catalog.ToolAllowed) is
// answered -32602 `unknown tool "X"`, the MCP SDKs' own answer for a tool
// that does not exist, so a hidden tool looks like a missing one. Else the
// authorization carries the tool and its arguments; when it denies, a
// second question without the tool tells a tool-level denial (HTTP 200,
// -32001 "tool X is not available to you: <reason>") from a
// connection-level one (403). Allowed calls pay for one question.
//
// tools/list: the response (JSON, or the SSE event carrying it) is
// filtered to the tools the caller may see: include_tools, then one
// tools/call authorization per tool without arguments (through
// AuthorizeBatch when the Authorizer has it, enforce/client's does, else
// 16 at a time). Visibility decisions are cached per (subject, actor,
// connection, catalog revision, tool) for 30 s; an authorizer error hides
// the tool and is not cached. The rest of the message is kept byte for
// byte; only the tools array is rebuilt from the original tool objects.
// Listing is an aid: every call is authorized live, with its arguments.
// Responses on GET streams are filtered the same way, since a resumed
// stream (Last-Event-ID) may carry a tools/list result.
//
// # Sessions
//
// The upstream's Mcp-Session-Id from the initialize response never reaches
// the client: the gateway hands out its own id bound to the subject, actor
// and connection, and maps it to the upstream's on every request. With
// Config.SessionKey (mandate serve and gateway nodes derive it from the
// installation's master key) the id is the session itself sealed with
// AES-256-GCM (upstream id, subject, actor, connection, creation time):
// every replica and node with the key serves it, so MCP clients need no
// affinity behind a load balancer; a gateway that does not hold a sealed
// session takes it up within SessionTTL of its creation. Without a key the
// id is 192 random bits from crypto/rand, served by its gateway only. Another caller (another subject or
// actor) presenting it, the same id on another connection, an unknown or
// an expired id: all get the same 404, so an id cannot be probed. A
// missing id on a stateful connection is 400 (initialize and ping
// excepted); whether a connection is stateful is learnt from its initialize
// responses: an upstream that returns no session id is stateless and no id
// is required. Sessions expire after SessionTTL idle (default 1 h); DELETE
// ends one (forwarded, then dropped even if the upstream fails); an
// upstream 404 on a session drops it too, so the client starts over. The
// table is bounded (MaxSessions): when full, expired sessions go, then the
// least recently used of a random sample. One subject holds at most
// MaxSessionsPerSubject (1,000): its next session replaces its own least
// recently used, so a caller opening sessions without end cannot evict
// other callers' sessions. Sessions are not authentication:
// every request is authenticated and authorized on its own, so a session
// carries no more than the token presented with each request. 2026-07-28
// has no sessions: Mcp-Session-Id is neither required nor forwarded, and
// GET and DELETE are 405 for a client that speaks it.
//
// # Forwarding
//
// One http.Client with keep-alive (Config.Upstream, or
// DefaultUpstreamClient: 5 s connect, 120 s response headers, 256 idle
// connections per host, no redirects, no transparent gzip). The upstream
// request carries only Accept, Content-Type, MCP-Protocol-Version, the
// mapped Mcp-Session-Id, Last-Event-ID, for 2026-07-28 Mcp-Method,
// Mcp-Name and Mcp-Param-*, W3C traceparent/tracestate (one is made when
// the client sent none), User-Agent mandate-gateway, and the credential
// from Config.Credentials: never the inbound Authorization header or
// cookies. Its context is the inbound request's, so a client that goes
// away cancels the upstream request.
//
// Upstream outcomes: no connection or a timeout → 502 or 504 with -32603
// "upstream <name> unavailable: connection refused | timed out | …"
// (details go to the log and the audit, not to the client); 5xx → 502;
// 401/403 → the cached credential is dropped and the message sent once
// more with a fresh one (audited as credential_retried); a second 401/403,
// or one for a mode with nothing cached (none, per_user_oauth) → 502
// "refused the gateway's credentials" (the agent's token is fine, so the
// agent must not be sent back to its authorization server); 3xx → 502;
// other 4xx → the upstream's status with its JSON-RPC error body as is
// (protocol version negotiation relies on it) or a JSON-RPC error quoting
// its text. A JSON response must be one JSON object of at most
// MaxResponseBody bytes; anything else is 502. 202/204 pass without a
// body.
//
// # SSE
//
// A text/event-stream response is parsed into events (gateway/internal/
// sse: lines ending in \n or \r\n, at most MaxResponseBody per event; a
// bare CR, which a client would read as a line end, breaks the stream, and
// so does an event that starts with a byte-order mark, which a client
// getting the event first would skip and read the field behind it)
// and relayed event by event, each followed by a Flush, the bytes as
// received except for an event carrying a message a guard rewrote or a
// tools/list result, whose data lines are rewritten. An event with data
// of a type other than message is not relayed: MCP clients do not read
// one, and nothing inspected it. The
// response headers go out with the first event, so a stream that ends
// before any message can still be answered with a 502 JSON-RPC error.
//
// # Audit and the durability rule
//
// Each JSON-RPC message, and each GET and DELETE, ends in exactly one
// audit row: Service "mcp", Action the method ("response" for a client
// response; the HTTP method before parsing and for GET/DELETE),
// UserIdentity and RunBy the subject, RunAs the actor, SourceIP,
// UserAgent, SessionID (the gateway's), RequestID (the JSON-RPC id),
// SecurableType CONNECTION, SecurableName, StatusCode (the HTTP status
// returned; 499 when the client left first; 0 while the call is in
// flight, or when a crash lost its completion), ErrorMessage, Decision and
// Reason, LatencyMs, EventID, Revision (of the decision), and
// RequestParams {tool, arguments_bytes, upstream_status, jsonrpc_error,
// bytes_in, bytes_out, trace_id, protocol_version, credential_retried}:
// sizes and outcomes, never argument values or credentials. Refusals are
// audited too, unauthenticated ones included.
//
// The rule (gateway/pipeline): nothing is sent to the client before the
// call's record is durable. A forwarded message's record is queued before
// it is sent upstream, so its fsync overlaps the upstream call; the
// answer waits for it (Call.Commit), and the completion follows without
// being waited for; the store shows the pair as one row. When the record
// is waited for:
//
//   - answers the gateway makes, JSON responses and bodiless ones (202):
//     the whole answer is ready (a JSON response is read whole, bounded),
//     committed with its outcome, then written;
//   - a POST's SSE stream: before the first event that carries a message;
//     when that event is the response, the completion goes with it;
//     when notifications or server requests come first, the completion
//     goes with the response event later (or when the stream ends).
//     Events without a message (a priming event, comments) may precede
//     the record: they carry nothing from the call;
//   - a GET stream: once the upstream accepted it, before anything is
//     sent; its completion when it ends;
//   - a client that leaves before an answer: recorded with 499.
//
// If the record fails, the client gets 503 with a JSON-RPC error instead
// of the answer (and no new session), or, when an SSE stream is already
// open, an error response event in place of the message, and the stream
// ends. With Config.AuditAsync (--audit-sync off) nothing waits: see
// gateway/pipeline for what a crash can then lose.
package mcp
