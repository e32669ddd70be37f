package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/pipeline"
	. "github.com/mandatehq/mandate/gateway/telemetry"
	"github.com/mandatehq/mandate/gateway/telemetry/telemetrytest"
)

const agentTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

type rig struct {
	t     *Telemetry
	audit *telemetrytest.Audit
	up    *telemetrytest.LLMUpstream
	srv   *httptest.Server
}

func newRig(t *testing.T, cfg Config, limiter ...pipeline.Limiter) *rig {
	t.Helper()
	if cfg.Getenv == nil {
		cfg.Getenv = func(string) string { return "" }
	}
	tel, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = tel.Shutdown(ctx)
	})
	r := &rig{t: tel, audit: &telemetrytest.Audit{}, up: telemetrytest.StartLLMUpstream(t)}
	pcfg := pipeline.Config{PublicURL: "http://127.0.0.1", Auth: telemetrytest.Auth{}, Authz: telemetrytest.Authz{},
		Credentials: telemetrytest.NoCredentials{}, Audit: r.audit, Observer: tel.Observer(), Logger: zerolog.Nop()}
	if len(limiter) > 0 {
		pcfg.Limiter = limiter[0]
	}
	p, err := pipeline.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(telemetrytest.LLMHandler(p, r.up.URL))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *rig) call(t *testing.T, body, traceparent string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, r.srv.URL+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer alice/claude-code")
	req.Header.Set("Content-Type", "application/json")
	req.Host = "127.0.0.1"
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func attr(s sdktrace.ReadOnlySpan, key string) (string, bool) {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

// waitSpan returns the spans exported once one is named name: a call's
// server span ends as the pipeline finishes the call, which a client that
// read a flushed stream may see a moment later.
func waitSpan(t *testing.T, tel *Telemetry, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStubs {
	t.Helper()
	var spans tracetest.SpanStubs
	telemetrytest.WaitFor(t, 10*time.Second, "span "+name, func() bool {
		if err := tel.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		spans = exp.GetSpans()
		return byName(spans, name) != nil
	})
	return spans
}

func byName(spans tracetest.SpanStubs, name string) *tracetest.SpanStub {
	for i := range spans {
		if spans[i].Name == name {
			return &spans[i]
		}
	}
	return nil
}

// A model call with the agent's traceparent: one server span in the
// agent's trace, named and attributed per the GenAI conventions, the
// stages as its children, the attempt under forward, the attempt's
// context sent upstream, and the audit row on the server span.
func TestLLMSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	r := newRig(t, Config{Exporter: exp})
	for _, stream := range []bool{false, true} {
		exp.Reset()
		body := `{"model":"frontier","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`
		if stream {
			body = `{"model":"frontier","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		}
		st, out := r.call(t, body, agentTP)
		if st != http.StatusOK {
			t.Fatalf("status %d: %s", st, out)
		}
		spans := waitSpan(t, r.t, exp, "chat frontier")
		srv := byName(spans, "chat frontier")
		ro := srv.Snapshot()
		if srv.SpanKind != trace.SpanKindServer || srv.SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" ||
			srv.Parent.SpanID().String() != "00f067aa0ba902b7" {
			t.Errorf("server span kind %v trace %s parent %s: not the agent's trace", srv.SpanKind, srv.SpanContext.TraceID(), srv.Parent.SpanID())
		}
		in, out2 := "12", "3"
		if stream {
			in, out2 = "20", "2"
		}
		for k, want := range map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
			"gen_ai.request.model": "frontier", "gen_ai.response.model": "gpt-test-2025", "gen_ai.usage.input_tokens": in,
			"gen_ai.usage.output_tokens": out2, "mandate.user": "alice", "mandate.agent": "claude-code",
			"mandate.decision": "allow", "mandate.service": "system.ai.frontier", "mandate.request_tags": `{"project":"checkout"}`,
			"mandate.provider_service": "openai_test"} {
			if got, _ := attr(ro, k); got != want {
				t.Errorf("stream=%v: %s = %q, want %q", stream, k, got, want)
			}
		}
		if _, ok := attr(ro, "gen_ai.response.id"); !ok {
			t.Error("no gen_ai.response.id")
		}
		if fr, _ := attr(ro, "gen_ai.response.finish_reasons"); !strings.Contains(fr, "stop") {
			t.Errorf("finish reasons %q", fr)
		}
		if _, ok := attr(ro, "mandate.cost_usd"); !ok {
			t.Error("no mandate.cost_usd")
		}
		if c, _ := attr(ro, "mandate.response.content"); !strings.Contains(c, "chatcmpl") {
			t.Errorf("captured response %q", c)
		}
		if stream {
			if _, ok := attr(ro, "gen_ai.server.time_to_first_token"); !ok {
				t.Error("stream without time to first token")
			}
			found := false
			for _, e := range srv.Events {
				found = found || e.Name == "gen_ai.first_token"
			}
			if !found {
				t.Error("stream without the first token event")
			}
		}
		for _, name := range []string{"authenticate", "resolve", "authorize", "credential", "forward", "guard_result", "audit"} {
			s := byName(spans, name)
			if s == nil {
				t.Errorf("no %s span", name)
				continue
			}
			if s.Parent.SpanID() != srv.SpanContext.SpanID() {
				t.Errorf("%s is not a child of the server span", name)
			}
		}
		att := byName(spans, "upstream openai_test gpt-test")
		fwd := byName(spans, "forward")
		if att == nil || fwd == nil || att.Parent.SpanID() != fwd.SpanContext.SpanID() || att.SpanKind != trace.SpanKindClient {
			t.Fatalf("attempt span missing or not a client child of forward: %+v", att)
		}
		tps := r.up.Traceparents()
		if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-" + att.SpanContext.SpanID().String() + "-01"; tps[len(tps)-1] != want {
			t.Errorf("upstream traceparent %q, want the attempt's %q", tps[len(tps)-1], want)
		}
		evs := r.audit.Events()
		ev := evs[len(evs)-1]
		if ev.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || ev.SpanID != srv.SpanContext.SpanID().String() {
			t.Errorf("audit trace %s/%s, want the server span %s", ev.TraceID, ev.SpanID, srv.SpanContext.SpanID())
		}
	}
	// The metrics of the two calls.
	body := scrape(t, r.t)
	for _, want := range []string{
		`mandate_requests_total{decision="allow",method="chat.completions",protocol="llm",service="system.ai.frontier",status_class="2xx"} 2`,
		`gen_ai_client_token_usage_sum{model="gpt-test",service="system.ai.frontier",token_type="input"} 32`,
		`gen_ai_client_token_usage_sum{model="gpt-test",service="system.ai.frontier",token_type="output"} 5`,
		`gen_ai_client_token_usage_sum{model="gpt-test",service="system.ai.frontier",token_type="cache_read"} 4`,
		`mandate_upstream_attempts_total{destination="openai_test",protocol="llm",service="system.ai.frontier",status_class="2xx"} 2`,
		`gen_ai_server_time_to_first_token_seconds_count{model="gpt-test",service="system.ai.frontier"} 1`,
		`mandate_upstream_duration_seconds_count{protocol="llm",service="system.ai.frontier"} 2`,
		`mandate_overhead_duration_seconds_count{protocol="llm",service="system.ai.frontier"} 2`,
		`mandate_cost_usd_total{model="gpt-test",service="system.ai.frontier"} 4.2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Refusals: a denied call's span has the decision and error type; an
// unauthenticated one still has a span; labels of unresolved calls are
// bounded.
func TestRefusalSpans(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	r := newRig(t, Config{Exporter: exp})
	if st, _ := r.call(t, `{"model":"denied"}`, agentTP); st != http.StatusForbidden {
		t.Fatalf("status %d", st)
	}
	req, _ := http.NewRequest(http.MethodPost, r.srv.URL+"/v1/chat/completions", strings.NewReader(`{}`))
	req.Host = "127.0.0.1"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	spans := waitSpan(t, r.t, exp, "chat denied")
	denied := byName(spans, "chat denied")
	if denied == nil {
		t.Fatal("no span of the denied call")
	}
	ro := denied.Snapshot()
	if d, _ := attr(ro, "mandate.decision"); d != "deny" {
		t.Errorf("decision %q", d)
	}
	if e, _ := attr(ro, "error.type"); e != "denied" {
		t.Errorf("error.type %q", e)
	}
	if reason, _ := attr(ro, "mandate.reason"); !strings.Contains(reason, "no EXECUTE") {
		t.Errorf("reason %q", reason)
	}
	var unauth *tracetest.SpanStub
	for i := range spans {
		if spans[i].SpanKind == trace.SpanKindServer && spans[i].Name == "POST" {
			unauth = &spans[i]
		}
	}
	if unauth == nil {
		t.Fatal("no span of the unauthenticated call")
	}
	if e, _ := attr(unauth.Snapshot(), "error.type"); e != "unauthenticated" {
		t.Errorf("unauthenticated error.type %q", e)
	}
	body := scrape(t, r.t)
	for _, want := range []string{
		`mandate_requests_total{decision="deny",method="chat.completions",protocol="llm",service="system.ai.denied",status_class="4xx"} 1`,
		`mandate_requests_total{decision="deny",method="unresolved",protocol="llm",service="",status_class="4xx"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// Without an endpoint nothing is recorded, yet the agent's trace context
// goes upstream as it came and lands on the audit row.
func TestNoTracingPropagates(t *testing.T) {
	r := newRig(t, Config{})
	if on, _ := r.t.Tracing(); on {
		t.Fatal("tracing on without an endpoint")
	}
	if st, out := r.call(t, `{"model":"frontier"}`, agentTP); st != http.StatusOK {
		t.Fatalf("status %d: %s", st, out)
	}
	if tps := r.up.Traceparents(); len(tps) != 1 || tps[0] != agentTP {
		t.Errorf("upstream traceparents %q, want the agent's", tps)
	}
	ev := r.audit.Events()[0]
	if ev.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || ev.SpanID != "00f067aa0ba902b7" {
		t.Errorf("audit trace %s/%s", ev.TraceID, ev.SpanID)
	}
	// No traceparent: one is made, and the audit row has it.
	if st, _ := r.call(t, `{"model":"frontier"}`, ""); st != http.StatusOK {
		t.Fatal(st)
	}
	tp := r.up.Traceparents()[1]
	ev = r.audit.Events()[1]
	if pipeline.TraceIDOf(tp) == "" || tp != "00-"+ev.TraceID+"-"+ev.SpanID+"-01" {
		t.Errorf("made traceparent %q, audit %s/%s", tp, ev.TraceID, ev.SpanID)
	}
	if !strings.Contains(scrape(t, r.t), `mandate_requests_total{decision="allow"`) {
		t.Error("no request metric without tracing")
	}
}

// A collector that accepts connections and never answers: calls are not
// slowed (each returns well within the export timeout), spans are
// dropped and counted.
func TestCollectorDownDoesNotBlock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-hang; c.Close() }()
		}
	}()
	r := newRig(t, Config{Endpoint: "http://" + ln.Addr().String(), MaxQueue: 8, MaxBatch: 4,
		BatchTimeout: 10 * time.Millisecond, ExportTimeout: 30 * time.Second})
	for i := range 40 {
		t0 := time.Now()
		if st, _ := r.call(t, `{"model":"frontier"}`, ""); st != http.StatusOK {
			t.Fatalf("call %d: status %d", i, st)
		}
		// A call that waited on the hung collector would take the export
		// timeout (30 s); this bound is only a failure bound.
		if d := time.Since(t0); d > 10*time.Second {
			t.Fatalf("call %d took %s with the collector hung", i, d)
		}
	}
	if r.t.DroppedSpans() == 0 {
		t.Fatal("no span counted as dropped")
	}
	if !strings.Contains(scrape(t, r.t), "mandate_trace_spans_dropped_total ") {
		t.Error("no dropped-span metric")
	}
}

func TestHeadersAndEndpointFromEnv(t *testing.T) {
	env := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/", "OTEL_EXPORTER_OTLP_HEADERS": "a=1,x-mlflow-experiment-id=7"}
	tel, err := New(t.Context(), Config{Headers: map[string]string{"x-mlflow-experiment-id": "123"}, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	if on, u := tel.Tracing(); !on || u != "http://collector:4318/v1/traces" {
		t.Errorf("tracing %v to %q", on, u)
	}
	h, err := tel.ExportHeaders()
	if err != nil || h["a"] != "1" || h["x-mlflow-experiment-id"] != "123" {
		t.Errorf("headers %v %v", h, err)
	}
	tel2, err := New(t.Context(), Config{Endpoint: "https://mlflow.example/", Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	defer tel2.Shutdown(context.Background())
	if _, u := tel2.Tracing(); u != "https://mlflow.example/v1/traces" {
		t.Errorf("flag endpoint %q", u)
	}
	for _, bad := range []string{"ftp://x", "http://user:pw@x"} {
		if _, err := New(t.Context(), Config{Endpoint: bad, Getenv: func(string) string { return "" }}); err == nil {
			t.Errorf("endpoint %q accepted", bad)
		}
	}
	env["OTEL_SDK_DISABLED"] = "true"
	tel3, _ := New(t.Context(), Config{Getenv: func(k string) string { return env[k] }})
	if on, _ := tel3.Tracing(); on {
		t.Error("OTEL_SDK_DISABLED=true traced")
	}
}

func scrape(t *testing.T, tel *Telemetry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// The minimal model-call path through a real Jaeger: the trace fetched
// back has the agent's trace id, the GenAI attributes and the stages.
func TestJaegerLLM(t *testing.T) {
	j := telemetrytest.StartJaeger(t)
	r := newRig(t, Config{Endpoint: j.OTLP, BatchTimeout: 50 * time.Millisecond})
	if st, out := r.call(t, `{"model":"frontier","stream":true}`, agentTP); st != http.StatusOK {
		t.Fatalf("status %d: %s", st, out)
	}
	if err := r.t.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	spans := j.WaitTrace(t, "4bf92f3577b34da6a3ce929d0e0e4736", "chat frontier", "authenticate", "authorize", "forward",
		"upstream openai_test gpt-test", "audit")
	srv := telemetrytest.FindSpan(spans, "chat frontier")
	for k, want := range map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
		"gen_ai.request.model": "frontier", "gen_ai.response.model": "gpt-test-2025", "gen_ai.usage.input_tokens": "20",
		"gen_ai.usage.output_tokens": "2", "mandate.user": "alice", "mandate.agent": "claude-code", "span.kind": "server"} {
		if got, _ := srv.Tag(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if srv.Parent() != "00f067aa0ba902b7" {
		t.Errorf("server span's parent %q, want the agent's span", srv.Parent())
	}
	ev := r.audit.Events()[0]
	if ev.TraceID != srv.TraceID || ev.SpanID != srv.SpanID {
		t.Errorf("audit %s/%s, span %s/%s", ev.TraceID, ev.SpanID, srv.TraceID, srv.SpanID)
	}
}

// A real Prometheus scrapes the node's metrics: PromQL over its HTTP API
// returns the request series and the token series of model calls.
func TestPrometheusScrape(t *testing.T) {
	r := newRig(t, Config{})
	ms := httptest.NewServer(r.t.Handler())
	t.Cleanup(ms.Close)
	prom := telemetrytest.StartPrometheus(t, telemetrytest.ScrapeTarget{Addr: strings.TrimPrefix(ms.URL, "http://")})
	for range 3 {
		if st, out := r.call(t, `{"model":"frontier"}`, ""); st != http.StatusOK {
			t.Fatalf("status %d: %s", st, out)
		}
	}
	for expr, want := range map[string]string{
		`sum(mandate_requests_total{protocol="llm",decision="allow"})`:                         "3",
		`sum(gen_ai_client_token_usage_sum{service="system.ai.frontier",token_type="input"})`:  "36",
		`sum(gen_ai_client_token_usage_sum{service="system.ai.frontier",token_type="output"})`: "9",
		`sum(gen_ai_client_token_usage_count{token_type="input"})`:                             "3",
	} {
		telemetrytest.WaitFor(t, 30*time.Second, expr+" = "+want, func() bool {
			res, err := prom.Query(t.Context(), expr)
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != "success" {
				t.Fatalf("%s: %s", expr, res.Error)
			}
			return len(res.Data.Result) == 1 && res.Data.Result[0].Value[1] == want
		})
	}
}

// refuser refuses model service "broke" for its budget and "busy" for a
// rate limit, as the limits engine does.
type refuser struct{}

func (refuser) Reserve(_ context.Context, c *pipeline.Call) (pipeline.Reservation, error) {
	var r *limits.Refusal
	switch c.Securable.Name {
	case "system.ai.broke":
		r = &limits.Refusal{Kind: limits.BudgetExhausted, Status: 429, Budget: "team"}
	case "system.ai.busy":
		r = &limits.Refusal{Kind: limits.RateLimited, Status: 429}
	default:
		return nil, nil
	}
	return nil, &pipeline.Error{Kind: pipeline.KindLimited, Status: 429, Message: r.Error(), Cause: r}
}

func TestLimitRefusalMetrics(t *testing.T) {
	r := newRig(t, Config{}, refuser{})
	for _, m := range []string{"broke", "busy", "busy"} {
		if st, _ := r.call(t, `{"model":"`+m+`"}`, ""); st != http.StatusTooManyRequests {
			t.Fatalf("%s: status %d", m, st)
		}
	}
	body := scrape(t, r.t)
	for _, want := range []string{
		`mandate_limit_refusals_total{limit="budget",protocol="llm",service="system.ai.broke"} 1`,
		`mandate_limit_refusals_total{limit="rate_limit",protocol="llm",service="system.ai.busy"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestLimitKind: the limit label tells a budget, a rate limit and the
// subject's in-flight cap apart.
func TestLimitKind(t *testing.T) {
	for _, tc := range []struct {
		err  *pipeline.Error
		want string
	}{
		{&pipeline.Error{Kind: pipeline.KindLimited, Limit: &pipeline.LimitInfo{Budget: true}}, "budget"},
		{&pipeline.Error{Kind: pipeline.KindLimited}, "rate_limit"},
		{&pipeline.Error{Kind: pipeline.KindLimited, Cause: pipeline.ErrInFlight}, "in_flight"},
	} {
		if got := LimitKind(tc.err); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.err, got, tc.want)
		}
	}
}
