// Package gateway is Mandate's data plane: the MCP (and next the LLM)
// gateway that stands between agents and upstream servers.
//
// Every call of every protocol runs one ordered list of named stages
// (gateway/pipeline), and every stage fails closed:
//
//	authenticate  Host, Origin, then gateway/identity: the inbound OAuth
//	              bearer JWT against the configured issuers' JWKS →
//	              Identity{Subject, Actor} (the human and the agent acting
//	              for them)
//	resolve       the protocol adapter (gateway/mcp) decodes the message
//	              and names the securable; Connections looks it up
//	authorize     enforce (in process or its client): the privilege for
//	              subject and actor, then the attached policies
//	limits        rate limits and budgets (an extension point for now)
//	guard_call    guardrails on the call (an extension point for now)
//	credential    gateway/upstream: the upstream's own credential by the
//	              connection's auth_mode (mandate_jwt, token_exchange,
//	              per_user_oauth, shared_principal, none); the inbound
//	              token is never sent upstream
//	forward       the adapter sends the call; a 401/403 on a cached
//	              credential drops it and retries once
//	guard_result  the adapter relays the answer (SSE event by event),
//	              each piece through the result guardrails
//	meter         usage and cost (an extension point for now)
//	audit         an AuditSink: one row per call, durable before the
//	              answer (the request record's fsync overlaps the upstream
//	              call; the completion follows)
//
// This package holds the contract between the stages and the rest of
// Mandate (gateway.go); the stages live in the sub-packages, their order
// in gateway/pipeline.
package gateway
