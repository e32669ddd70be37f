// Package pipeline is the data plane's one path: every call of every
// protocol (MCP today, the LLM endpoints next) runs the same ordered list
// of named stages, and each stage fails closed. A protocol is a thin
// adapter (Protocol): it decodes its wire format, maps sessions, relays
// its framing and renders errors in its own format; everything else is
// here, in the order a reader follows one request (Pipeline.run):
//
//	authenticate  the Host names the gateway's public host (--public-url;
//	              any loopback host when that is loopback: DNS rebinding
//	              sends the attacker's name), a browser Origin is allowed,
//	              and gateway.Authenticator accepts the bearer token →
//	              Call.Identity (the human, and the agent acting for them);
//	              then one of the subject's in-flight slots is taken
//	              (Config.MaxInFlightPerSubject, default 256; keyed by
//	              Identity.Subject, so a user shares one cap across the
//	              agents calling for them): beyond it KindLimited (429,
//	              Retry-After: 1) before the body is read; the slot comes
//	              back when the call ends, however it ends. Counts live in
//	              a 64-shard map holding only subjects with calls in
//	              progress
//	resolve       Protocol.Resolve: the message decoded, the securable
//	              looked up (MCP: USE_CONNECTION on a CONNECTION; LLM:
//	              EXECUTE on a MODEL SERVICE), the policy context
//	authorize     gateway.Authorizer for subject and actor (a Listing,
//	              such as GET /llm/v1/models, is filtered item by item by
//	              the adapter instead); a denial with
//	              the call's item (a tool) but not without it is an item
//	              denial. The caller is told what is missing (BriefReason);
//	              the audit row keeps the whole derivation
//	limits        Limiter.Reserve (rate limits, budgets): reserve before,
//	              settle after with the call's Usage (meter stage); a
//	              model call's Call.Model holds what a budget needs (the
//	              input estimate, max_tokens, every destination's price,
//	              then the one that answered and the cost), Call.Tags its
//	              request tags
//	guard_call    Guard.Call on Call.Content: allow, deny or rewrite
//	credential    gateway.Credentials for Call.Upstream (a Protocol that is
//	              a CredentialStage gets its own): the upstream's own
//	              credential, never the inbound token
//	forward       the call's audit record is queued, then Protocol.Send
//	              (an *Error it returns is the adapter's own account of
//	              the failure: the LLM adapter's attempts across
//	              destinations and fallbacks end here); a
//	              401 or 403 on a cached credential drops it
//	              (gateway.CredentialInvalidator) and the call is sent once
//	              more with a fresh one
//	guard_result  Protocol.Relay answers the client piece by piece (a JSON
//	              body, or each SSE event), each through the Guard's
//	              ResultGuard (Call.GuardPiece), after Call.Commit. Each
//	              write and flush to Call.Writer must be taken by the
//	              client within Config.WriteTimeout (30 s): a client that
//	              stops reading is cut off (the write fails, the relay
//	              ends and closes the upstream's body) instead of holding
//	              the call and its upstream forever; a stream may pause
//	              between events for as long as its upstream does
//	meter         the Limiter's reservation settled; Meter.Record; then
//	              an answer of declared length (Content-Length) whose
//	              record is settled (below) is flushed, so that the audit
//	              stage and the observers do not delay it
//	audit         what is not recorded yet is (every call ends in exactly
//	              one audit row)
//
// The first error ends the call. Stages return *Error: a Kind (what went
// wrong, protocol-neutral), the HTTP status, a message for the caller, the
// audit reason and the cause. The pipeline records it and writes the
// adapter's rendering (Protocol.Render), in one place; any other error
// refuses the call as unavailable. The meter and audit stages run for
// every call, refused or not. Limiter, Guard, Meter and Observer are
// optional; without them their stages pass.
//
// Observer sees each stage start and end (for tracing spans and metrics,
// attached as a wrapper without touching any stage); Call.Timings holds
// the durations, Call.UpstreamTime the time spent waiting for the
// upstream (Send, and the relay's reads of its answer). A CallObserver
// also sees the call begin and gives it its context (Call.Ctx: the
// observer's state of the call, such as its span); a PieceObserver sees
// each piece of the answer as the client gets it. gateway/telemetry is
// the one in use.
//
// # Trace context
//
// A call continues the W3C trace context of its request's traceparent and
// tracestate headers, or of its message (Call.ContinueTrace: MCP's
// params._meta, which wins). Call.TraceID and Call.SpanID go to the audit
// row (trace_id, span_id): the gateway's span when an Observer traces the
// call (Call.SetSpan), else the parent span the call carries upstream (the
// agent's, or a new one when it sent none). Adapters send
// telemetry.Outbound's context upstream.
//
// # Audit and the durability rule
//
// Nothing reaches the client before the call's record is durable (unless
// --audit-sync off). With an AuditQueue (catalog.AuditLog, node.AuditSink)
// a forwarded call is recorded in two phases: the forward stage queues
// the request record (identity, securable, decision, status 0) and sends
// the call at once, so the group commit's fsync runs while the upstream
// works; the adapter's Call.Commit, before the first byte of the answer,
// waits for that record; once the outcome is known (final) it queues the
// completion (status, sizes, latency, same event id), which nobody waits
// for. The store merges the pair into one row
// (catalog.AuditEvent.Completes). A call refused before forwarding has one
// record, written before the refusal is sent. A sink without a queue gets
// one record per call at Commit (the old path: its fsync is on the
// latency path). If the record cannot be written the client gets a 503
// (KindAudit) instead of the answer, or, in a stream already under way, an
// error event; if the audit log failed a moment ago the call is not even
// forwarded.
//
// An answer of declared length leaves before the call's end (after the
// meter stage) only once its record is settled: the request record
// durable (queued, with --audit-sync off) and the final record (the
// completion, or the only record) written or queued. An adapter that
// leaves the completion to the audit stage (Call.Commit(false) before a
// whole answer) has its answer sent when the handler returns, after it.
//
// A crash after an answer loses at most the completion: the row stays with
// status 0 ("outcome not recorded"). With AuditAsync (--audit-sync off,
// PostgreSQL's synchronous_commit = off) nothing is waited for: a crash
// loses the records of the last group-commit window (the write and fsync
// in progress and what queued behind it, bounded by the audit log's
// MaxQueued), never the log's integrity (walstore cuts a torn tail).
//
// # For a new protocol
//
// Implement Protocol per request, embed a Call in it, and call
// Pipeline.Serve(w, r, &x.call, x) after setting Call.Resource,
// Call.Securable (the name as requested) and Call.Action. In Resolve set
// Securable, Privilege, Context or LazyContext (what policies see; lazy:
// built only when a policy applies), Item/ItemKeys, and
// Content (Format and the body guards inspect and Send sends); set
// Upstream for the default credential stage, or implement CredentialStage.
// In Relay read usage into Call.Usage (meter and limits see it), pass each
// piece through Call.GuardPiece, call Call.Commit before writing and
// Call.Commit(true) once the outcome is known, and write to Call.Writer.
package pipeline
