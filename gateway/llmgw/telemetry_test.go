package llmgw

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mandatehq/mandate/gateway/pipeline"
	"github.com/mandatehq/mandate/gateway/telemetry"
)

// monitorGuard is a guardrail that, in monitor mode, records that it
// would have masked every model call.
type monitorGuard struct{}

func (monitorGuard) Call(_ context.Context, c *pipeline.Call, _ *pipeline.Content) (pipeline.Verdict, error) {
	c.AddGuardrail(pipeline.GuardrailOutcome{Policy: "pii_watch", Guardrail: "detect_sensitive_data", Phase: "call",
		Mode: "monitor", Action: "would_mask", Entities: map[string]int{"EMAIL": 1}})
	return pipeline.Verdict{}, nil
}

func (monitorGuard) Result(context.Context, *pipeline.Call) (pipeline.ResultGuard, error) {
	return nil, nil
}

// telemetryEnv is the endpoint with the telemetry observer, its spans in
// memory.
func telemetryEnv(t *testing.T) (*env, *telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.New(t.Context(), telemetry.Config{Exporter: exp, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	e := newEnv(t, func(c *pipeline.Config) { c.Observer, c.Guard = tel.Observer(), monitorGuard{} })
	return e, tel, exp
}

// waitSpans returns the spans exported once one is named name: a call's
// server span ends after its audit record was written (the pipeline's
// observer sees the call last), so it may follow the record by a moment.
func waitSpans(t *testing.T, tel *telemetry.Telemetry, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := tel.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		spans := exp.GetSpans()
		if spanNamed(spans, name) != nil {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("no span %q among %d after 10s", name, len(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func spanNamed(spans tracetest.SpanStubs, name string) *tracetest.SpanStub {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}

func spanAttr(s *tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

const agentTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestTelemetry: a model call with the agent's traceparent is a server
// span "chat {model}" in the agent's trace with the GenAI conventions'
// attributes and Mandate's, the stages as its children, one client span
// per upstream attempt (a fallback's first, failed attempt too) whose
// context the destination gets, and the audit row on the server span; a
// stream has its time to first token; the metrics count tokens and cost
// by service and model, refusals by kind, and guardrail outcomes by
// policy and mode.
func TestTelemetry(t *testing.T) {
	e, tel, exp := telemetryEnv(t)
	oc := e.openAI(aliceToken)
	tp := option.WithHeader("traceparent", agentTraceparent)

	_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier", MaxTokens: openai.Int(50),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello telemetry")}}, tp)
	if err != nil {
		t.Fatal(err)
	}
	ev := e.event()
	spans := waitSpans(t, tel, exp, "chat frontier")
	srv := spanNamed(spans, "chat frontier")
	if srv.SpanKind != trace.SpanKindServer || srv.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
		srv.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("server span kind %v trace %s parent %s: not in the agent's trace", srv.SpanKind, srv.SpanContext.TraceID(), srv.Parent.SpanID())
	}
	for k, want := range map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
		"gen_ai.request.model": "frontier", "gen_ai.request.max_tokens": "50", "gen_ai.response.model": "gpt-4.1-2025-01-01",
		"mandate.user": alice, "mandate.agent": agent, "mandate.decision": "allow", "mandate.service": "system.ai.frontier",
		"mandate.provider_service": "system.ai.openai_prod", "mandate.request_tags": `{"team":"platform"}`} {
		if got := spanAttr(srv, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	lu, _, _ := usageOf(t, ev)
	if got := spanAttr(srv, "gen_ai.usage.output_tokens"); got == "" || got == "0" || got != strconv.FormatInt(lu.OutputTokens, 10) {
		t.Errorf("output tokens %q, audit row %d", got, lu.OutputTokens)
	}
	if spanAttr(srv, "gen_ai.response.id") == "" || !strings.Contains(spanAttr(srv, "gen_ai.response.finish_reasons"), "stop") ||
		spanAttr(srv, "mandate.cost_usd") == "" || spanAttr(srv, "mandate.cost_usd") == "0" {
		t.Errorf("response id %q, finish reasons %q, cost %q", spanAttr(srv, "gen_ai.response.id"),
			spanAttr(srv, "gen_ai.response.finish_reasons"), spanAttr(srv, "mandate.cost_usd"))
	}
	for _, name := range []string{"authenticate", "resolve", "authorize", "limits", "guard_call", "credential", "forward", "guard_result", "audit"} {
		if s := spanNamed(spans, name); s == nil || s.Parent.SpanID() != srv.SpanContext.SpanID() {
			t.Errorf("stage %s missing or not a child of the server span", name)
		}
	}
	att, fwd := spanNamed(spans, "upstream system.ai.openai_prod gpt-4.1"), spanNamed(spans, "forward")
	if att == nil || att.SpanKind != trace.SpanKindClient || att.Parent.SpanID() != fwd.SpanContext.SpanID() ||
		spanAttr(att, "http.response.status_code") != "200" {
		t.Fatalf("attempt span missing or not a client child of forward: %+v", att)
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + att.SpanContext.SpanID().String() + "-01"
	if got := e.fake.Last().Header.Get("Traceparent"); got != want {
		t.Errorf("upstream traceparent %q, want the attempt's %q", got, want)
	}
	if ev.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || ev.SpanID != srv.SpanContext.SpanID().String() {
		t.Errorf("audit row %s/%s, want the server span %s", ev.TraceID, ev.SpanID, srv.SpanContext.SpanID())
	}
	guarded := false
	for _, x := range srv.Events {
		guarded = guarded || x.Name == "mandate.guardrail"
	}
	if !guarded {
		t.Error("no guardrail event on the server span")
	}

	// A fallback: the failed attempt and the one that answered.
	exp.Reset()
	st := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: "fallback",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream after falling back")}})
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	e.event()
	spans = waitSpans(t, tel, exp, "chat fallback")
	srv = spanNamed(spans, "chat fallback")
	down, up := spanNamed(spans, "upstream system.ai.openai_down gpt-4.1"), spanNamed(spans, "upstream system.ai.anthropic_prod claude-sonnet-4-5")
	if srv == nil || down == nil || up == nil {
		t.Fatalf("fallback spans: server %v, attempts %v %v", srv != nil, down != nil, up != nil)
	}
	if spanAttr(down, "error.type") != "429" || spanAttr(up, "http.response.status_code") != "200" || !down.EndTime.After(down.StartTime) ||
		up.StartTime.Before(down.EndTime) {
		t.Errorf("attempts: down %s %s..%s, up %s from %s", spanAttr(down, "error.type"), down.StartTime, down.EndTime,
			spanAttr(up, "http.response.status_code"), up.StartTime)
	}
	if spanAttr(srv, "gen_ai.provider.name") != "anthropic" || spanAttr(srv, "gen_ai.server.time_to_first_token") == "" {
		t.Errorf("stream: provider %q, ttft %q", spanAttr(srv, "gen_ai.provider.name"), spanAttr(srv, "gen_ai.server.time_to_first_token"))
	}
	if got := e.down.Last().Header.Get("Traceparent"); !strings.Contains(got, down.SpanContext.SpanID().String()) {
		t.Errorf("the failed destination got traceparent %q, want its attempt's span %s", got, down.SpanContext.SpanID())
	}

	// Refusals by kind.
	e.limiter.refuse = func(c *pipeline.Call) error {
		if c.Tags["project"] == "broke" {
			return &pipeline.Error{Kind: pipeline.KindLimited, Limit: &pipeline.LimitInfo{Budget: true}, Message: "budget exhausted"}
		}
		return &pipeline.Error{Kind: pipeline.KindLimited, Limit: &pipeline.LimitInfo{}, Message: "rate limit exceeded"}
	}
	for _, tags := range []string{`{"project":"broke"}`, `{"project":"busy"}`} {
		_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}, option.WithHeader(HeaderTags, tags))
		var oe *openai.Error
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s: %v", tags, err)
		}
		e.event()
	}

	wants := []string{
		`gen_ai_client_token_usage_count{model="gpt-4.1",service="system.ai.frontier",token_type="input"} 1`,
		`gen_ai_client_token_usage_count{model="claude-sonnet-4-5",service="system.ai.fallback",token_type="output"} 1`,
		`mandate_cost_usd_total{model="gpt-4.1",service="system.ai.frontier"}`,
		`mandate_upstream_attempts_total{destination="system.ai.openai_down",protocol="llm",service="system.ai.fallback",status_class="4xx"} 1`,
		`mandate_limit_refusals_total{limit="budget",protocol="llm",service="system.ai.frontier"} 1`,
		`mandate_limit_refusals_total{limit="rate_limit",protocol="llm",service="system.ai.frontier"} 1`,
		`mandate_guardrail_actions_total{action="would_mask",mode="monitor",policy="pii_watch"} 2`,
		`gen_ai_server_time_to_first_token_seconds_count{model="claude-sonnet-4-5",service="system.ai.fallback"} 1`,
	}
	// The last call's metrics are recorded as the pipeline finishes it,
	// which may follow its answer by a moment.
	var missing []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		rec := httptest.NewRecorder()
		tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		missing = missing[:0]
		for _, want := range wants {
			if !strings.Contains(rec.Body.String(), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range missing {
		t.Errorf("metrics lack %s", m)
	}
}
