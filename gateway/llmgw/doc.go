// Package llmgw is the LLM endpoint of the gateway: the pipeline's
// protocol adapter for the OpenAI and Anthropic client APIs. Under BASE
// (the path of the public URL) it serves
//
//	POST BASE/llm/v1/chat/completions     OpenAI
//	POST BASE/llm/v1/responses            OpenAI (OpenAI-style destinations)
//	POST BASE/llm/v1/embeddings           OpenAI (OpenAI-style destinations)
//	GET  BASE/llm/v1/models               the model services the caller may EXECUTE
//	POST BASE/llm/v1/messages             Anthropic
//	POST BASE/llm/v1/messages/count_tokens
//	GET  /.well-known/oauth-protected-resource/BASE/llm   RFC 9728 metadata
//
// so that SDKs and coding agents need only a base URL (…/llm/v1 for
// OpenAI clients, …/llm for Anthropic's) and a key. The request's "model"
// names the model service ("frontier" is system.ai.frontier; three-part
// names address other schemas). The wire formats, translation between
// them, streaming and usage are package llm's; governance is the
// pipeline's. This package maps one onto the other, stage by stage:
//
//	authenticate  the pipeline's Authenticator, for the resource
//	              PUBLIC-URL/llm: an OIDC JWT or a Mandate access token
//	              (identity.WithAccessTokens) from Authorization: Bearer or
//	              x-api-key. A failure is 401 in the provider's error
//	              format with an RFC 6750 WWW-Authenticate challenge that
//	              points at the metadata above.
//	resolve       the body read and parsed within Config.Limits (413, 415,
//	              400), X-Mandate-Request-Tags checked (a JSON object of at
//	              most 16 string values), the model service looked up
//	              (404 model_not_found), the securable (MODEL SERVICE,
//	              EXECUTE), Call.Tags (the header's and the service's own
//	              tags, which win), the policy context (model, endpoint,
//	              request_bytes, input_tokens, max_tokens, stream, tools,
//	              tool_choice, tags, source_ip), Call.Content for guards
//	              and Call.Model for limits and budgets (the input
//	              estimate, max_tokens, the bound on the uses of the
//	              tools billed per use, and every destination with its
//	              price and tool prices). GET /models lists the services the subject and
//	              the actor may both EXECUTE (Call.Listing).
//	credential    the route: each destination's provider service, its URL
//	              and API key (the inbound token never goes on), and the
//	              human's pseudonymous id (Handler.UserID: an HMAC of the
//	              subject under a server key, stable across nodes).
//	forward       the default output cap (Capped) and bound on the
//	              tool uses (ToolCapped) a limit reserved, then
//	              llm.Forwarder.Open: the weighted destination, then the
//	              fallbacks on 429, 5xx, connect failure or timeout, until
//	              one answers; nothing has reached the client, so a stream
//	              that fails before its first event still falls back. If
//	              none answers the client gets the last failure in its
//	              format.
//	guard_result  llm.Reply.Relay: the body, or the stream event by event
//	              (flushed), each through the result guard; the call is
//	              committed (its audit record durable) just before the
//	              first byte; a non-streamed answer's completion is queued
//	              then too, so that the answer (of declared length) goes
//	              out once metered, before the call's end (pipeline). A
//	              client that goes away cancels the upstream call.
//	meter, audit  one audit event per request, service_name "llm", action
//	              the endpoint (chat.completions, responses, embeddings,
//	              models, messages, messages.count_tokens), request_id the
//	              event id (also answered as x-request-id and request-id).
//	              Its request_params carry the usage record: provider
//	              service, provider and model that answered, the token
//	              classes (normalized once: input counts cache reads and
//	              writes, which are priced separately; cache_write_tokens
//	              is both Anthropic TTLs, the 1-hour ones priced at their
//	              own rate), cost_usd
//	              (limitstage.Cost at the answering destination's
//	              prices, tool uses at its tool prices included; null
//	              when it has none), ttft_ms, stream, request_tags and routing (every
//	              attempt: service, model, status, latency, error). A
//	              stream that breaks is metered for what was delivered.
//
// Handler.Complete is the gateway's own call of a model service (a
// guardrail's classifier): the service's route through the same forwarder,
// without the pipeline.
//
// Errors are rendered in the client's format by Render: OpenAI's
// {"error":{...}} or Anthropic's {"type":"error",...}, with the provider's
// status codes and types (429 with Retry-After and x-ratelimit-* headers
// for rate limits; 429 insufficient_quota for an exhausted budget), or, in
// a stream already under way, the provider's error event.
package llmgw
