// Package llm is the protocol layer of the LLM gateway: it reads the
// OpenAI and Anthropic client APIs, sends each call to a model service's
// destinations (OpenAI, Anthropic, OpenAI-compatible servers) and relays
// the answer in the client's format, metering it. Governance (who may call
// which model service, limits, budgets, audit) is the pipeline's; this
// package knows nothing of it and imports nothing of Mandate.
//
// # The pipeline's calls
//
//	e, ok := llm.EndpointFor(r.URL.Path)       // chat.completions, responses, embeddings, models, messages, messages.count_tokens
//	cf := llm.ClientFormat(r)                  // the format errors are rendered in before the body is read
//	body, err := llm.ReadBody(r, lim)          // 413 over lim.MaxBody, 415 for a non-JSON content type
//	                                           // (ReadBodyInto: into a pooled buffer, put back once the call is over)
//	req, err := llm.Parse(e, body, lim)        // *llm.Error 400/413; req.Model names the model service
//	... authorize, rate limits and budgets: req.MaxTokens, req.InputTokens, req.Tools, req.Texts() ...
//	res := fwd.Forward(r.Context(), w, &llm.Call{Request: req, Route: route, UserID: pseudonym, Header: r.Header, Query: r.URL.Query(), Hooks: hooks})
//	... settle with res.Usage; record res.Attempts, res.Status, res.TTFT, res.Latency ...
//
// Refusals of earlier stages are rendered with WriteError(w, cf, err)
// (*Error: Unauthorized, Forbidden, NotFound, RateLimited, BudgetExhausted);
// GET /v1/models is answered by WriteModels. Every error reaches the client
// in its own format: OpenAI {"error":{"message","type","param","code"}},
// Anthropic {"type":"error","error":{"type","message"}}, with the matching
// HTTP status; in a stream after the first event, as an in-stream error
// event (OpenAI data line with an error object, Anthropic "event: error").
//
// # Parsing
//
// A body is checked once: size, UTF-8, then in one pass
// (catalog/strictjson) syntax, nesting depth, and no object with two keys
// equal under Unicode case folding (a body cannot be read one way here and
// another way upstream). Then the members governance
// needs are read as byte spans: model, stream, stream_options.include_usage,
// max_tokens / max_completion_tokens / max_output_tokens (times n), tools
// and tool_choice, response_format / text.format / output_config.format,
// the client's user id, message counts, and an input-token estimate (text
// bytes / 4, per-message and per-image allowances, tool definitions) for
// reservations. Everything else passes unchecked beyond JSON validity, so
// the SDKs', Claude Code's and Codex CLI's newer members keep working
// (testdata/requests holds their requests as golden tests).
//
// # Forwarding
//
// Route.Plan picks one destination by weight (among those that can serve
// the endpoint), then the fallbacks in order; Forward tries them until one
// answers. An attempt that fails with 429, a 5xx, a connect failure or a
// timeout moves to the next — only before any byte went to the client (a
// stream is committed with its first event, so a stream that fails at once
// still falls back). Every attempt is returned (service, model, status,
// latency, error).
//
// Same format in and out is the fast path: the client's body is forwarded
// with byte-level edits only — model replaced by the destination's model;
// for OpenAI chat streams stream_options.include_usage set (and the extra
// usage chunk dropped when the client did not ask for it); the
// pseudonymous user id set (OpenAI safety_identifier, and user if the
// client sent one; user for openai_compatible; Anthropic metadata.user_id;
// nothing for count_tokens, which refuses metadata). Only anthropic-version
// and anthropic-beta (Anthropic) or OpenAI-Beta (OpenAI) pass from the
// client's headers; the upstream gets the destination's key (Bearer or
// x-api-key), never the client's credential.
//
// Across formats, chat completions and messages are translated both ways:
// system prompts, multi-turn, images (data: and https URLs), PDF
// documents, tool definitions, tool_choice, parallel tool use, tool calls
// and results, stop sequences and stop reasons, structured output
// (response_format ↔ output_config.format), usage, and streams event by
// event. What has no counterpart is dropped when harmless (sampling knobs,
// cache_control, thinking blocks, Anthropic server tools such as web
// search) and refused with a 400 when dropping it would change the answer
// (n > 1, audio, non-function tools). The Responses API and embeddings go
// to OpenAI-style destinations only; count_tokens for an OpenAI-style
// destination is answered here from the estimate (Result.Local).
//
// In answers, stop reasons map as follows. Anthropic → OpenAI: end_turn,
// stop_sequence and pause_turn → stop; max_tokens and
// model_context_window_exceeded → length; tool_use → tool_calls; refusal →
// content_filter. OpenAI → Anthropic: stop → end_turn; length →
// max_tokens; tool_calls and function_call → tool_use; content_filter →
// refusal. Content with no counterpart in the client's format is dropped,
// the rest of the answer kept: Anthropic thinking, redacted_thinking and
// signatures, server_tool_use and web search result blocks, citations
// (their text stays); OpenAI annotations. An OpenAI refusal becomes
// Anthropic text. Anthropic event types this package does not know are
// not relayed to an OpenAI client (nor do they break the stream); an
// OpenAI chunk with no choices and no usage (Azure's prompt filter
// results) gives an Anthropic client nothing. Parallel OpenAI tool calls
// whose pieces interleave (or repeat the call's id) become one tool_use
// block each; the blocks stay open until the choice finishes, as
// Anthropic's own interleaved blocks may.
//
// Streams are relayed event by event, flushed after each, with bounded
// event size (Forwarder.MaxEvent), events a client could read otherwise
// than the meter and the guards did (a bare CR, a byte-order mark starting
// an event) refused (gateway/internal/sse), and a per-event idle timeout
// (Route.Timeout). A translated stream ends with the client's terminal
// event (message_stop, [DONE]): upstream events after it are metered, not
// sent. An error event of the destination (Anthropic's error event, a
// Responses error event, an OpenAI chat data line with an error object)
// fails the attempt before the first event went out; after it, it reaches
// the client in the client's format and the call is recorded broken with
// the destination's error and status. A non-streamed answer is bounded by
// Forwarder.MaxResponseBody. The client's context is the upstream
// request's: a client that goes away cancels the upstream call.
//
// # Usage
//
// Usage is normalized once (see Usage): InputTokens counts every input
// token, cache reads and writes included — OpenAI's prompt_tokens already
// do, Anthropic's input_tokens do not, so Anthropic usage is input_tokens +
// cache_read_input_tokens + cache_creation_input_tokens — and
// CachedInputTokens and CacheWriteTokens are subsets of it; price each
// class once. cache_creation_input_tokens already sums Anthropic's
// cache_creation TTL classes (5-minute and 1-hour writes);
// CacheWrite1hTokens is the 1-hour part of CacheWriteTokens
// (cache_creation.ephemeral_1h_input_tokens, of a message or of
// message_start; a message_delta that leaves it out keeps it), priced at
// its own rate. ReasoningTokens are within OutputTokens: OpenAI
// reasoning_tokens, Anthropic output_tokens_details.thinking_tokens.
// message_delta's usage counts are cumulative and replace message_start's
// one by one; a count it leaves out or sends as null keeps
// message_start's. Usage.ToolUses counts the uses of the server tools
// billed per use that a provider service's tool_prices prices (not
// tokens; priced by the gateway): web searches from Anthropic's
// usage.server_tool_use.web_search_requests (cumulative in message_delta
// like the token counts) and from the Responses API's web_search_call
// items, file searches from its file_search_call items, one web search per
// choice of a chat completion with web_search_options answered by an
// OpenAI-style destination (a translation to Anthropic drops the option;
// one from Anthropic to OpenAI drops the server tools, and none are
// billed). The count kept is the largest account of the answer: the
// provider's, the output's items, and, for a stream that breaks, the
// server tool blocks and output items it started. An upstream's counts are not trusted: each
// is read within [0, 2^53] (so no sum wraps, and a huge count prices to a
// budget's end, never to a credit), reasoning within the output; the
// response id, model and finish reasons kept are bounded (256 bytes each,
// 8 reasons). A stream is metered from message_start/message_delta
// (Anthropic), the usage chunk (OpenAI chat; always requested) or the
// response of response.completed, .incomplete or .failed (Responses). A
// stream that breaks is metered for what was delivered (Usage.Estimated:
// the provider's input count if it came, else the request's estimate;
// output from the delivered text).
//
// # Tools billed per use
//
// Request.PerUseTool names a tool billed beyond tokens in a way no price
// bounds (Anthropic code_execution_*, the Responses API's code_interpreter
// and image_generation). The priced kinds (web search, file search) are in
// Request.ToolUseBound instead: the most uses the request may make, from
// the client's bounds (each Anthropic web search tool's max_uses, the
// Responses API's max_tool_calls, which bounds every built-in tool call and
// so each kind, one search per choice with web_search_options).
// Request.CapToolUses(DefaultMaxToolUses) gives the tools the client left
// unbounded a bound that the upstream request carries (max_uses on each
// Anthropic web search tool without one, max_tool_calls), as CapOutput
// does for the output; a request without tools pays one comparison.
//
// # Hooks
//
// Hooks.BeforeForward sees each attempt's rewritten (or translated) body;
// OnEvent every stream event (the destination's and the client's bytes);
// OnResponse a non-streamed answer in the client's format; After the
// result. Errors from hooks are rendered in the client's format.
//
// Package llmtest is a fake OpenAI and Anthropic upstream for tests and
// benchmarks (and the command llmtest/fakellm for manual tests).
package llm
