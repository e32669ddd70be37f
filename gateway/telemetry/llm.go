package telemetry

import (
	"context"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mandatehq/mandate/gateway/pipeline"
)

// What a protocol adapter reports about its call, beyond pipeline.Call.
// Every function takes the context of a stage of the call (Resolve's,
// Send's, Relay's) and does nothing when the call is not observed.

// LLMRequest is what the LLM adapter knows once it read the request
// (Resolve): SetLLMRequest.
type LLMRequest struct {
	// Operation is gen_ai.operation.name: chat, text_completion,
	// embeddings, generate_content.
	Operation string
	// Model is the model as the client named it (the model service):
	// gen_ai.request.model.
	Model     string
	MaxTokens int64
	Stream    bool
	// Tags are the request tags (the service's and the request's):
	// mandate.request_tags.
	Tags map[string]string
}

// LLMResult is the outcome of a model call (once the answer is done, at
// the latest in the adapter's Relay): SetLLMResult.
type LLMResult struct {
	// Provider is gen_ai.provider.name of the destination that answered:
	// openai, anthropic, or the provider service's provider.
	Provider string
	// Destination is the provider service that answered
	// (mandate.provider_service); Model its configured model, the label
	// of the token and cost metrics.
	Destination string
	Model       string
	// ResponseModel, ResponseID and FinishReasons are the provider's
	// (gen_ai.response.*).
	ResponseModel string
	ResponseID    string
	FinishReasons []string
	// Usage is the normalized usage (also in pipeline.Call.Usage):
	// InputTokens includes CachedInputTokens and CacheWriteTokens.
	Usage   pipeline.Usage
	CostUSD float64
	// TTFT is the time to the first token of a stream (0: not streamed,
	// or FirstToken was called).
	TTFT      time.Duration
	Streaming bool
	// Attempts are the upstream attempts, for adapters that did not
	// record them live with StartAttempt: each becomes a client span
	// under the call's forward stage and counts in
	// mandate_upstream_attempts_total.
	Attempts []Attempt
}

// Attempt is one try of an upstream destination.
type Attempt struct {
	// Destination names it: the provider service (LLM) or the connection
	// (MCP).
	Destination string
	Provider    string // gen_ai.provider.name (LLM)
	Model       string // the destination's model (LLM)
	URL         string // the upstream URL (server.address and port)
	// Start and Duration place the attempt (Attempts of LLMResult; a
	// zero Start is placed after the previous attempt).
	Start    time.Time
	Duration time.Duration
	Status   int    // the HTTP status (0: no response)
	Error    string // why it failed ("" on success)
}

// SetLLMRequest records the model request (LLM adapter, in Resolve).
func SetLLMRequest(ctx context.Context, r LLMRequest) {
	if st := callOf(ctx); st != nil {
		cp := r // copied here: no allocation for a call without telemetry
		st.llmReq = &cp
	}
}

// SetLLMResult records the model call's outcome (LLM adapter, when the
// answer is done).
func SetLLMResult(ctx context.Context, r LLMResult) {
	if st := callOf(ctx); st != nil {
		cp := r
		st.llm = &cp
	}
}

// FirstToken marks now as the time of the first token of a streamed
// answer (an event on the span, and the time to first token) unless it was
// marked already.
func FirstToken(ctx context.Context) {
	if st := callOf(ctx); st != nil && st.firstToken.IsZero() {
		st.firstToken = time.Now()
		if st.span != nil {
			st.span.AddEvent("gen_ai.first_token")
		}
	}
}

// CapturePayloads puts the call's content on its span (the request as
// sent upstream and the answer as relayed, both after the guardrails'
// masking, each at most 32 KiB): for services with trace_payloads 'true'.
func CapturePayloads(ctx context.Context) {
	if st := callOf(ctx); st != nil {
		st.capture = true
	}
}

// StartAttempt starts an upstream attempt (a client span, a child of the
// stage at ctx): send the request with the returned context (Outbound
// then gives its trace context) and call end with the response's status
// (0: none) and error.
func StartAttempt(ctx context.Context, a Attempt) (context.Context, func(status int, err error)) {
	actx, end := BeginAttempt(ctx, a)
	return actx, func(status int, err error) {
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		end(status, msg, time.Time{})
	}
}

// BeginAttempt is StartAttempt for adapters that learn an attempt's
// outcome after the fact (the LLM forwarder reports its attempts once
// it has an answer): end takes the status (0: no response), the error
// text ("" on success) and when the attempt ended (zero: now).
func BeginAttempt(ctx context.Context, a Attempt) (context.Context, func(status int, errText string, at time.Time)) {
	st := callOf(ctx)
	if st == nil {
		return ctx, func(int, string, time.Time) {}
	}
	st.attempts++
	proto, service := st.c.ServiceName(), st.c.Securable.Name
	if st.t.tracer == nil || st.span == nil {
		return ctx, func(status int, _ string, _ time.Time) {
			st.t.m.attempts.WithLabelValues(proto, service, a.Destination, statusClass(status)).Inc()
		}
	}
	actx, sp := st.t.tracer.Start(ctx, attemptName(a), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attemptAttrs(a)...))
	return actx, func(status int, errText string, at time.Time) {
		st.t.m.attempts.WithLabelValues(proto, service, a.Destination, statusClass(status)).Inc()
		endAttempt(sp, status, nil, errText, at)
	}
}

func attemptName(a Attempt) string {
	if a.Model != "" {
		return "upstream " + a.Destination + " " + a.Model
	}
	return "upstream " + a.Destination
}

func attemptAttrs(a Attempt) []attribute.KeyValue {
	attrs := []attribute.KeyValue{attribute.String("mandate.destination", a.Destination)}
	if a.Provider != "" {
		attrs = append(attrs, attribute.String("gen_ai.provider.name", a.Provider))
	}
	if a.Model != "" {
		attrs = append(attrs, attribute.String("gen_ai.request.model", a.Model))
	}
	if u, err := url.Parse(a.URL); err == nil && u.Host != "" {
		attrs = append(attrs, attribute.String("server.address", u.Hostname()))
		if p, err := strconv.Atoi(u.Port()); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	}
	return attrs
}

func endAttempt(sp trace.Span, status int, err error, errText string, at time.Time) {
	if status > 0 {
		sp.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if err != nil && errText == "" {
		errText = err.Error()
	}
	if errText != "" || status >= 400 || status == 0 {
		et := "no_response"
		if status > 0 {
			et = strconv.Itoa(status)
		}
		sp.SetAttributes(attribute.String("error.type", et))
		sp.SetStatus(codes.Error, truncate(errText, 512))
	}
	if at.IsZero() {
		sp.End()
	} else {
		sp.End(trace.WithTimestamp(at))
	}
}

// recordAttempts emits the attempts an LLM result listed (when none were
// recorded live).
func (st *call) recordAttempts() {
	r := st.llm
	if r == nil || len(r.Attempts) == 0 || st.attempts > 0 {
		return
	}
	proto, service := st.c.ServiceName(), st.c.Securable.Name
	// Under the forward stage's time: the attempts ran there.
	at := st.c.Start.Add(sumTimings(st.c, pipeline.StageForward))
	for _, a := range r.Attempts {
		st.t.m.attempts.WithLabelValues(proto, service, a.Destination, statusClass(a.Status)).Inc()
		start := a.Start
		if start.IsZero() {
			start = at
		}
		_, sp := st.t.tracer.Start(st.spanCtx, attemptName(a), trace.WithSpanKind(trace.SpanKindClient),
			trace.WithTimestamp(start), trace.WithAttributes(attemptAttrs(a)...))
		endAttempt(sp, a.Status, nil, a.Error, start.Add(a.Duration))
		at = start.Add(a.Duration)
	}
}

// sumTimings is the time of the stages before s.
func sumTimings(c *pipeline.Call, s pipeline.Stage) time.Duration {
	var d time.Duration
	for i := pipeline.Stage(0); i < s; i++ {
		d += c.Timings[i]
	}
	return d
}

// meterLLM records the model call's tokens, cost and time to first token.
func (st *call) meterLLM(service string) {
	r, m := st.llm, st.t.m
	model := r.Model
	if r.Usage.InputTokens > 0 || r.Usage.OutputTokens > 0 {
		m.observer(m.tokens, childKey{childInputTokens, [5]string{service, model, "input"}}, 3).Observe(float64(r.Usage.InputTokens))
		m.observer(m.tokens, childKey{childOutputTokens, [5]string{service, model, "output"}}, 3).Observe(float64(r.Usage.OutputTokens))
		if r.Usage.CachedInputTokens > 0 {
			m.tokens.WithLabelValues(service, model, "cache_read").Observe(float64(r.Usage.CachedInputTokens))
		}
		if r.Usage.CacheWriteTokens > 0 {
			m.tokens.WithLabelValues(service, model, "cache_write").Observe(float64(r.Usage.CacheWriteTokens))
		}
	}
	if r.CostUSD > 0 {
		m.counter(m.cost, childKey{childCost, [5]string{service, model}}, 2).Add(r.CostUSD)
	}
	if ttft := st.ttft(); ttft > 0 {
		m.ttft.WithLabelValues(service, model).Observe(ttft.Seconds())
	}
}

func (st *call) ttft() time.Duration {
	if !st.firstToken.IsZero() {
		return st.firstToken.Sub(st.c.Start)
	}
	if st.llm != nil {
		return st.llm.TTFT
	}
	return 0
}

// llmAttrs are the GenAI semantic conventions' attributes; the span name
// is "{gen_ai.operation.name} {gen_ai.request.model}".
func (st *call) llmAttrs(attrs *[]attribute.KeyValue, service string) string {
	a := *attrs
	if service != "" {
		a = append(a, attribute.String("mandate.service", service))
	}
	op, model := "chat", ""
	if q := st.llmReq; q != nil {
		if q.Operation != "" {
			op = q.Operation
		}
		model = q.Model
		if q.MaxTokens > 0 {
			a = append(a, attribute.Int64("gen_ai.request.max_tokens", q.MaxTokens))
		}
		if q.Stream {
			a = append(a, attribute.Bool("gen_ai.request.stream", true))
		}
		if tags := requestTagsJSON(q.Tags); tags != "" {
			a = append(a, attribute.String("mandate.request_tags", tags))
		}
	}
	if model == "" && st.resolved {
		model = st.c.Securable.Name
	}
	a = append(a, attribute.String("gen_ai.operation.name", op))
	if model != "" {
		a = append(a, attribute.String("gen_ai.request.model", model))
	}
	if r := st.llm; r != nil {
		if r.Provider != "" {
			a = append(a, attribute.String("gen_ai.provider.name", r.Provider))
		}
		if r.Destination != "" {
			a = append(a, attribute.String("mandate.provider_service", r.Destination))
		}
		if r.ResponseModel != "" {
			a = append(a, attribute.String("gen_ai.response.model", r.ResponseModel))
		}
		if r.ResponseID != "" {
			a = append(a, attribute.String("gen_ai.response.id", r.ResponseID))
		}
		if len(r.FinishReasons) > 0 {
			a = append(a, attribute.StringSlice("gen_ai.response.finish_reasons", r.FinishReasons))
		}
		u := r.Usage
		a = append(a, attribute.Int64("gen_ai.usage.input_tokens", u.InputTokens),
			attribute.Int64("gen_ai.usage.output_tokens", u.OutputTokens))
		if u.CachedInputTokens > 0 {
			a = append(a, attribute.Int64("gen_ai.usage.cache_read.input_tokens", u.CachedInputTokens))
		}
		if u.CacheWriteTokens > 0 {
			a = append(a, attribute.Int64("gen_ai.usage.cache_creation.input_tokens", u.CacheWriteTokens))
		}
		if u.ReasoningTokens > 0 {
			a = append(a, attribute.Int64("gen_ai.usage.reasoning.output_tokens", u.ReasoningTokens))
		}
		a = append(a, attribute.Float64("mandate.cost_usd", r.CostUSD))
	}
	if ttft := st.ttft(); ttft > 0 {
		a = append(a, attribute.Float64("gen_ai.server.time_to_first_token", ttft.Seconds()))
	}
	*attrs = a
	switch {
	case st.llmReq == nil && !st.resolved:
		return st.c.Action // the request was not read
	case model == "":
		return op
	}
	return op + " " + model
}
