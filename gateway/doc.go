// Package gateway is Mandate's data plane: the MCP (and later LLM) gateway
// that stands between agents and upstream servers.
//
// Every request runs named, ordered stages, and every stage fails closed:
//
//	authenticate  gateway/identity: the inbound OAuth bearer JWT, checked
//	              against the configured issuers' JWKS → Identity{Subject,
//	              Actor} (the human and the agent acting for them)
//	parse         gateway/mcp: one JSON-RPC message, size-limited; unknown
//	              methods are denied
//	authorize     enforce/client: USE_CONNECTION for subject and actor,
//	              then the attached policies (method, tool, arguments)
//	credentials   gateway/upstream: the upstream's own credential by the
//	              connection's auth_mode (mandate_jwt, token_exchange,
//	              per_user_oauth, shared_principal, none); the inbound
//	              token is never sent upstream
//	forward       gateway/mcp: Streamable HTTP; SSE relayed event by event;
//	              client cancellation reaches the upstream
//	audit         an AuditSink: one durable record per message
//
// This package holds only the contract between the stages (gateway.go);
// the stages live in the sub-packages.
package gateway
