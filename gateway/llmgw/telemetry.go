package llmgw

import (
	"context"
	"time"

	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/pipeline"
	"github.com/mandatehq/mandate/gateway/telemetry"
)

// The call's report to telemetry (spans and metrics, gateway/telemetry):
// each function does nothing when the call is not observed.

// genAIOperation is gen_ai.operation.name of an endpoint.
func genAIOperation(e llm.Endpoint) string {
	switch e {
	case llm.Embeddings:
		return "embeddings"
	case llm.CountTokens:
		return "count_tokens"
	}
	return "chat"
}

// reportRequest tells telemetry what was asked (Resolve): the span is
// then named "{operation} {model}" with the request's gen_ai.* attributes.
func (x *exchange) reportRequest(ctx context.Context, c *pipeline.Call) {
	r := x.req
	telemetry.SetLLMRequest(ctx, telemetry.LLMRequest{Operation: genAIOperation(x.endpoint), Model: r.Model,
		MaxTokens: r.MaxTokens, Stream: r.Stream, Tags: c.Tags})
	if x.svc.TracePayloads {
		telemetry.CapturePayloads(ctx)
	}
}

// attemptSpan is an upstream attempt's span, ended once the forwarder
// reports the attempt's outcome (endAttempts).
type attemptSpan struct {
	start time.Time
	end   func(status int, errText string, at time.Time)
}

// beforeForward starts the span of an upstream attempt (a child of the
// forward stage) and sends its trace context to the destination.
func (x *exchange) beforeForward(ctx context.Context, c *pipeline.Call, out *llm.Outbound) {
	d := out.Destination
	actx, end := telemetry.BeginAttempt(ctx, telemetry.Attempt{Destination: d.Service, Provider: string(d.Provider),
		Model: d.Model, URL: out.URL})
	x.attemptSpans = append(x.attemptSpans, attemptSpan{start: time.Now(), end: end})
	tp, ts := telemetry.Outbound(actx, c)
	out.Header.Set("Traceparent", tp)
	if ts != "" {
		out.Header.Set("Tracestate", ts)
	} else {
		out.Header.Del("Tracestate")
	}
}

// endAttempts ends the attempts' spans with the outcomes the forwarder
// recorded (once Open returned).
func (x *exchange) endAttempts() {
	for i, sp := range x.attemptSpans {
		if i < len(x.res.Attempts) {
			a := x.res.Attempts[i]
			sp.end(a.Status, a.Error, sp.start.Add(a.Latency))
		} else {
			sp.end(0, "not sent", time.Time{})
		}
	}
	x.attemptSpans = nil
}

// reportResult tells telemetry the call's outcome: the destination that
// answered, the provider's response model, id and finish reasons, the
// usage, the cost and the time to first token.
func (x *exchange) reportResult(ctx context.Context, c *pipeline.Call) {
	res := x.res
	if res == nil {
		return
	}
	r := telemetry.LLMResult{ResponseModel: res.ResponseModel, ResponseID: res.ResponseID, FinishReasons: res.FinishReasons,
		Usage: c.Usage, Streaming: res.Streaming}
	if d := res.Destination; d != nil {
		r.Provider, r.Destination, r.Model = string(d.Provider), d.Service, d.Model
	}
	if x.model.CostKnown {
		r.CostUSD = float64(x.model.CostNanos) / 1e9
	}
	if res.TTFT > 0 {
		r.TTFT = res.Start.Add(res.TTFT).Sub(c.Start) // from the call's start
	}
	telemetry.SetLLMResult(ctx, r)
}
