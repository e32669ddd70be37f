// Package telemetry is the data plane's tracing and metrics: an
// OpenTelemetry tracer exporting over OTLP/HTTP, a Prometheus registry, and
// the gateway/pipeline Observer that turns every call into a server span
// with a child span per stage and into metrics, without any stage knowing.
//
// # Setup
//
// New(Config) builds both. Tracing is on when an endpoint is configured
// (Config.Endpoint, --otlp-endpoint, a base URL: /v1/traces is appended; or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT; headers
// from Config.Headers over OTEL_EXPORTER_OTLP_(TRACES_)HEADERS; the other
// OTEL_EXPORTER_OTLP_* variables as the exporter reads them;
// OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turn it off).
// Sampling is parent-based: Config.SampleRatio of new traces, else
// OTEL_TRACES_SAMPLER, else all. Spans go through a bounded queue (Config.
// MaxQueue, OTEL_BSP_*) that one goroutine exports in batches: a call never
// waits for the collector; spans that do not fit, or whose export failed,
// are dropped and counted (mandate_trace_spans_dropped_total). Without an
// endpoint no span is made; the call's trace context is still propagated
// (Outbound) and audited (pipeline.Call.TraceID, SpanID).
//
// # The observer
//
// Telemetry.Observer is a pipeline.CallObserver and PieceObserver. The
// server span of a call starts once its trace context is known: after
// resolve, since an MCP message may carry its own (params._meta, which the
// adapter passes to Call.ContinueTrace; the headers' context then becomes
// a link); authenticate and resolve are emitted then with their own
// timestamps. The call's TraceID and SpanID become the span's, so the audit
// row names it. Stages after resolve get live spans (their context is the
// stage's: an adapter's StartAttempt is a child of forward). Finished sets
// the attributes of the OpenTelemetry GenAI and MCP conventions and
// Mandate's (see README, Observability), the status and the name, and
// records the metrics (metrics.go). Labels are bounded: service and method
// only once resolve passed (a name nobody created is never a label), never
// users or agents.
//
// # What a protocol adapter calls
//
// Each function takes the context of a stage of the call and does nothing
// when the call is not observed.
//
// MCP (gateway/mcp) sets Call.ProtocolVersion and Call.ErrorType (the
// JSON-RPC error code of the answer, or "tool_error"), passes
// params._meta.traceparent to Call.ContinueTrace, and in Send:
//
//	ctx, end := telemetry.StartAttempt(ctx, telemetry.Attempt{Destination: conn.Name, URL: conn.URL})
//	tp, ts := telemetry.Outbound(ctx, c) // the traceparent header, and _meta's value
//	... send with ctx ...; end(resp.StatusCode or 0, err)
//
// The LLM adapter (gateway/llmgw, its telemetry.go):
//
//	Resolve:  telemetry.SetLLMRequest(ctx, telemetry.LLMRequest{Operation: "chat" | "embeddings" |
//	              "count_tokens", Model: the model service as requested, MaxTokens, Stream, Tags})
//	          telemetry.CapturePayloads(ctx)      // only when the service has trace_payloads 'true'
//	Send:     per destination tried (llm.Hooks.BeforeForward):
//	              ctx, end := telemetry.BeginAttempt(ctx, telemetry.Attempt{Destination: provider service,
//	                  Provider: "openai" | "anthropic" | ..., Model: the destination's model, URL})
//	              tp, ts := telemetry.Outbound(ctx, c) → the upstream's traceparent/tracestate headers
//	          and once the forwarder returns, end(status, error, start + the attempt's latency) for each
//	Relay:    telemetry.SetLLMResult(ctx, telemetry.LLMResult{Provider, Destination, Model, ResponseModel,
//	              ResponseID, FinishReasons, Usage (= Call.Usage), CostUSD, TTFT (from the call's start),
//	              Streaming}); also in Send when no destination answered
//
// (an adapter that cannot record attempts live lists them in
// LLMResult.Attempts; one that sees the first token as it goes out calls
// FirstToken). The span is then named "{operation} {model}" with the
// gen_ai.* attributes, mandate.cost_usd and mandate.request_tags; tokens,
// cost and time to first token go to gen_ai_client_token_usage,
// mandate_cost_usd_total and gen_ai_server_time_to_first_token_seconds by
// service and model.
//
// Guardrails need no call: the call's guardrail outcomes
// (pipeline.Call.Guardrails, the audit row's guardrails column) become
// mandate_guardrail_actions_total{policy, mode, action} and
// "mandate.guardrail" events on the server span. A KindLimited refusal
// counts in mandate_limit_refusals_total{limit} as "budget" when its
// LimitInfo says Budget (or its Cause is a *limits.Refusal of another
// kind than RateLimited), "in_flight" when its Cause is
// pipeline.ErrInFlight (the subject's calls in progress at their cap),
// else "rate_limit".
//
// Package telemetrytest starts the real Jaeger and Prometheus the tests
// check against, and holds a minimal model-call protocol that reports
// exactly as above.
package telemetry
