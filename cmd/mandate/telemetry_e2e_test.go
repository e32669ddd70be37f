package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/mandatehq/mandate/gateway/telemetry/telemetrytest"
)

// tracedUpstream is an MCP server (the official SDK) that records the
// trace context of every message: the traceparent header and the
// message's params._meta.traceparent.
type tracedUpstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	headers []string
	metas   []string
}

func newTracedUpstream(t testing.TB) *tracedUpstream {
	t.Helper()
	u := &tracedUpstream{}
	s := sdk.NewServer(&sdk.Implementation{Name: "traced", Version: "1.0.0"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "search_repos", Description: "searches repositories"},
		func(ctx context.Context, req *sdk.CallToolRequest, a repoQuery) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "found: " + a.Query}}}, nil, nil
		})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, &sdk.StreamableHTTPOptions{JSONResponse: true})
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m struct {
			Method string `json:"method"`
			Params struct {
				Meta map[string]any `json:"_meta"`
			} `json:"params"`
		}
		_ = json.Unmarshal(body, &m)
		if m.Method == "tools/call" {
			u.mu.Lock()
			u.headers = append(u.headers, r.Header.Get("traceparent"))
			tp, _ := m.Params.Meta["traceparent"].(string)
			u.metas = append(u.metas, tp)
			u.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

// mcpPOST posts one JSON-RPC message and returns the status, the session
// header and the body.
func mcpPOST(t testing.TB, url, token, session string, hdr map[string]string, body string) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), string(b)
}

// TestTelemetryJaegerMCP: an agent's tools/call, with its trace context
// in params._meta (and another in the headers), through mandate serve to
// an MCP upstream. The trace fetched back from Jaeger is the agent's, its
// server span carries the MCP conventions' attributes and Mandate's, the
// stages are its children; the upstream got the gateway's attempt span
// as parent in both the header and _meta; and system.access.audit has
// the same trace_id and span_id.
func TestTelemetryJaegerMCP(t *testing.T) {
	t.Parallel()
	j := telemetrytest.StartJaeger(t)
	up := newTracedUpstream(t)
	s := startServer(t, serverOpts{args: []string{"--dev", "--otlp-endpoint", j.OTLP, "--otlp-header", "x-mlflow-experiment-id=123",
		"--log-format", "json", "--log-level", "debug"},
		env: []string{"OTEL_BSP_SCHEDULE_DELAY=100"}})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION traced_mcp TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'none')`,
		`GRANT USE_CONNECTION ON CONNECTION traced_mcp TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION traced_mcp TO "coding-agent"`)
	url := "http://" + s.httpAddr + "/mcp/traced_mcp"
	tok := e2eToken(t, s, "alice@example.com", "coding-agent")

	st, sess, body := mcpPOST(t, url, tok, "", nil,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"agent","version":"1"}}}`)
	if st != http.StatusOK || sess == "" {
		t.Fatalf("initialize: %d %q %s", st, sess, body)
	}
	if st, _, body := mcpPOST(t, url, tok, sess, nil, `{"jsonrpc":"2.0","method":"notifications/initialized"}`); st/100 != 2 {
		t.Fatalf("initialized: %d %s", st, body)
	}
	const (
		traceID   = "0af7651916cd43dd8448eb211c80319c"
		agentSpan = "b7ad6b7169203331"
		metaTP    = "00-" + traceID + "-" + agentSpan + "-01"
		headerTP  = "00-11111111111111111111111111111111-2222222222222222-01"
	)
	st, _, body = mcpPOST(t, url, tok, sess, map[string]string{"traceparent": headerTP},
		`{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{"name":"search_repos","arguments":{"query":"mandate"},"_meta":{"traceparent":"`+metaTP+`","tracestate":"vendor=1"}}}`)
	if st != http.StatusOK || !strings.Contains(body, "found: mandate") {
		t.Fatalf("tools/call: %d %s", st, body)
	}

	spans := j.WaitTrace(t, traceID, "tools/call search_repos", "authenticate", "resolve", "authorize", "credential", "forward",
		"guard_result", "audit", "upstream system.ai.traced_mcp")
	srv := telemetrytest.FindSpan(spans, "tools/call search_repos")
	for k, want := range map[string]string{"mcp.method.name": "tools/call", "gen_ai.tool.name": "search_repos",
		"gen_ai.operation.name": "execute_tool", "mcp.protocol.version": "2025-06-18", "jsonrpc.request.id": "call-7",
		"mcp.session.id": sess, "mandate.user": "alice@example.com", "mandate.agent": "coding-agent",
		"mandate.decision": "allow", "mandate.connection": "system.ai.traced_mcp", "span.kind": "server"} {
		if got, _ := srv.Tag(k); got != want {
			t.Errorf("server span %s = %q, want %q", k, got, want)
		}
	}
	if srv.Parent() != agentSpan {
		t.Errorf("server span's parent %q, want the agent's span %s (params._meta)", srv.Parent(), agentSpan)
	}
	for _, name := range []string{"authenticate", "resolve", "authorize", "credential", "forward", "guard_result", "audit"} {
		if sp := telemetrytest.FindSpan(spans, name); sp.Parent() != srv.SpanID {
			t.Errorf("stage %s is not a child of the server span", name)
		}
	}
	att := telemetrytest.FindSpan(spans, "upstream system.ai.traced_mcp")
	if fwd := telemetrytest.FindSpan(spans, "forward"); att.Parent() != fwd.SpanID {
		t.Errorf("the attempt is not a child of forward")
	}
	want := "00-" + traceID + "-" + att.SpanID + "-01"
	up.mu.Lock()
	headers, metas := append([]string(nil), up.headers...), append([]string(nil), up.metas...)
	up.mu.Unlock()
	if len(headers) != 1 || headers[0] != want || metas[0] != want {
		t.Errorf("upstream trace context: header %q, _meta %q; want both %q", headers, metas, want)
	}

	var gotTrace, gotSpan string
	waitFor(t, 10*time.Second, "the tools/call audit row", func() bool {
		rows := queryRows(t, c, `SELECT trace_id, span_id FROM system.access.audit WHERE action_name = 'tools/call' AND response->>'status_code' = '200'`)
		if len(rows) != 1 {
			return false
		}
		gotTrace, gotSpan, _ = strings.Cut(rows[0], "|")
		return true
	})
	if gotTrace != traceID || gotSpan != srv.SpanID {
		t.Errorf("audit row trace %s span %s, want %s %s", gotTrace, gotSpan, traceID, srv.SpanID)
	}

	// The log: one JSON object per line, no key twice, and the call's
	// request line with its request_id and trace_id.
	var callLine map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.stderr.String()), "\n") {
		keys, err := jsonKeys(line)
		if err != nil {
			t.Errorf("log line is not one JSON object (%v): %s", err, line)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("log line has %q twice: %s", k, line)
			}
			seen[k] = true
		}
		var m map[string]any
		_ = json.Unmarshal([]byte(line), &m)
		if m["message"] == "gateway call" && m["method"] == "tools/call" {
			callLine = m
		}
	}
	if callLine == nil || callLine["trace_id"] != traceID || callLine["request_id"] == "" || callLine["request_id"] == nil {
		t.Errorf("no request line of the tools/call with its trace_id and request_id: %v", callLine)
	}
}

// jsonKeys returns the top-level keys of the JSON object s, in order.
func jsonKeys(s string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not an object")
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one value")
	}
	return keys, nil
}

// TestTelemetryLLM: an agent's model calls with its trace context, through
// mandate serve to the fake provider upstream, with the official OpenAI
// SDK. In Jaeger, the agent's trace has the server span "chat frontier"
// with the GenAI conventions' attributes and Mandate's, the stages as its
// children and the upstream attempt under forward, whose context the
// provider got; the usage and audit rows carry the same trace_id and
// span_id. A fallback stream shows both attempts. A real Prometheus
// scraping the node sees the token series of the calls, equal to the
// usage rows' counts.
func TestTelemetryLLM(t *testing.T) {
	t.Parallel()
	j := telemetrytest.StartJaeger(t)
	e := startLLMWith(t, serverOpts{args: []string{"--otlp-endpoint", j.OTLP}, env: []string{"OTEL_BSP_SCHEDULE_DELAY=100"}})
	prom := telemetrytest.StartPrometheus(t, telemetrytest.ScrapeTarget{Addr: e.s.httpAddr})
	mustExec(t, e.admin, `GRANT EXECUTE ON MODEL SERVICE system.ai.resilient TO "claude-code"`)
	tok := e.token(t, "alice@example.com", "claude-code")
	waitSnapshotCurrent(t, e.s)
	oc := openai.NewClient(option.WithBaseURL(e.base+"/v1/"), option.WithAPIKey(tok), option.WithMaxRetries(0))

	const (
		traceID   = "5bf92f3577b34da6a3ce929d0e0e4736"
		agentSpan = "10f067aa0ba902b7"
	)
	resp, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier", MaxTokens: openai.Int(40),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("trace this call")}},
		option.WithHeader("traceparent", "00-"+traceID+"-"+agentSpan+"-01"))
	if err != nil {
		t.Fatal(err)
	}
	spans := j.WaitTrace(t, traceID, "chat frontier", "authenticate", "resolve", "authorize", "limits", "guard_call", "credential", "forward",
		"guard_result", "audit", "upstream system.ai.openai_prod gpt-4.1")
	srv := telemetrytest.FindSpan(spans, "chat frontier")
	for k, want := range map[string]string{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
		"gen_ai.request.model": "frontier", "gen_ai.request.max_tokens": "40", "gen_ai.response.model": resp.Model,
		"gen_ai.response.id": resp.ID, "gen_ai.usage.input_tokens": fmt.Sprint(resp.Usage.PromptTokens),
		"gen_ai.usage.output_tokens": fmt.Sprint(resp.Usage.CompletionTokens), "mandate.user": "alice@example.com",
		"mandate.agent": "claude-code", "mandate.decision": "allow", "mandate.service": "system.ai.frontier",
		"mandate.provider_service": "system.ai.openai_prod", "mandate.request_tags": `{"team":"platform"}`, "span.kind": "server"} {
		if got, _ := srv.Tag(k); got != want {
			t.Errorf("server span %s = %q, want %q", k, got, want)
		}
	}
	if fr, _ := srv.Tag("gen_ai.response.finish_reasons"); !strings.Contains(fr, "stop") {
		t.Errorf("finish reasons %q", fr)
	}
	if srv.Parent() != agentSpan {
		t.Errorf("server span's parent %q, want the agent's span %s", srv.Parent(), agentSpan)
	}
	for _, name := range []string{"authenticate", "resolve", "authorize", "limits", "guard_call", "credential", "forward", "guard_result", "audit"} {
		if sp := telemetrytest.FindSpan(spans, name); sp.Parent() != srv.SpanID {
			t.Errorf("stage %s is not a child of the server span", name)
		}
	}
	att := telemetrytest.FindSpan(spans, "upstream system.ai.openai_prod gpt-4.1")
	if fwd := telemetrytest.FindSpan(spans, "forward"); att.Parent() != fwd.SpanID {
		t.Errorf("the attempt is not a child of forward")
	}
	if got, want := e.fake.Last().Header.Get("Traceparent"), "00-"+traceID+"-"+att.SpanID+"-01"; got != want {
		t.Errorf("the provider got traceparent %q, want the attempt's %q", got, want)
	}
	rows := e.usage(t, `SELECT trace_id, span_id, output_tokens FROM system.ai_gateway.usage WHERE trace_id = '`+traceID+`'`, 1)
	if want := traceID + "|" + srv.SpanID + "|" + fmt.Sprint(resp.Usage.CompletionTokens); rows[0] != want {
		t.Errorf("usage row %q, want %q", rows[0], want)
	}
	if rows := queryRows(t, e.admin, `SELECT span_id FROM system.access.audit WHERE service_name = 'llm' AND trace_id = '`+traceID+`'`); len(rows) != 1 || rows[0] != srv.SpanID {
		t.Errorf("audit rows of the trace: %q", rows)
	}

	// A stream that falls back: both attempts in the trace, the first
	// failed; the time to first token on the server span.
	const streamTrace = "6bf92f3577b34da6a3ce929d0e0e4736"
	st := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: "resilient",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream after falling back")}},
		option.WithHeader("traceparent", "00-"+streamTrace+"-"+agentSpan+"-01"))
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	spans = j.WaitTrace(t, streamTrace, "chat resilient", "upstream system.ai.openai_down gpt-4.1",
		"upstream system.ai.anthropic_prod claude-sonnet-4-5")
	srv = telemetrytest.FindSpan(spans, "chat resilient")
	if et, _ := telemetrytest.FindSpan(spans, "upstream system.ai.openai_down gpt-4.1").Tag("error.type"); et != "429" {
		t.Errorf("failed attempt's error.type %q", et)
	}
	if p, _ := srv.Tag("gen_ai.provider.name"); p != "anthropic" {
		t.Errorf("stream answered by %q", p)
	}
	if ttft, _ := srv.Tag("gen_ai.server.time_to_first_token"); ttft == "" {
		t.Error("stream without time to first token")
	}

	// A rate limit refuses the next call to the service: counted by kind.
	mustExec(t, e.admin, `ALTER MODEL SERVICE system.ai.resilient SET RATE LIMIT 1 REQUESTS PER MINUTE FOR EACH USER`)
	waitSnapshotCurrent(t, e.s)
	allowed := 1 // the stream above
	waitFor(t, 15*time.Second, "a call to system.ai.resilient refused by its rate limit", func() bool {
		_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "resilient",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("once more")}})
		var oe *openai.Error
		if errors.As(err, &oe) && oe.StatusCode == http.StatusTooManyRequests {
			return true
		}
		if err != nil {
			t.Fatalf("call to resilient: %v", err)
		}
		allowed++
		return false
	})

	// Prometheus: the token series of the calls (the frontier one as its
	// usage row counts), the requests, attempts and the refusal.
	out := fmt.Sprint(resp.Usage.CompletionTokens) // the usage row's, above
	for expr, want := range map[string]string{
		`sum(gen_ai_client_token_usage_sum{service="system.ai.frontier",model="gpt-4.1",token_type="output"})`:              out,
		`sum(gen_ai_client_token_usage_count{service="system.ai.resilient",model="claude-sonnet-4-5",token_type="output"})`: fmt.Sprint(allowed),
		`sum(mandate_requests_total{protocol="llm",decision="allow",status_class="2xx"})`:                                   fmt.Sprint(1 + allowed),
		`sum(mandate_upstream_attempts_total{protocol="llm",destination="system.ai.openai_down",status_class="4xx"})`:       fmt.Sprint(allowed),
		`sum(mandate_limit_refusals_total{protocol="llm",service="system.ai.resilient",limit="rate_limit"})`:                "1",
	} {
		telemetrytest.WaitFor(t, 30*time.Second, expr+" = "+want, func() bool {
			res, err := prom.Query(t.Context(), expr)
			if err != nil {
				t.Fatal(err)
			}
			return res.Status == "success" && len(res.Data.Result) == 1 && res.Data.Result[0].Value[1] == want
		})
	}
}

// waitSnapshotCurrent waits until the node decides with the catalog's
// newest revision (its metrics say so): grants just made apply.
func waitSnapshotCurrent(t testing.TB, s *server) { waitSnapshotAt(t, s, 0) }

// waitSnapshotAt waits until s's catalog is at revision rev or newer (a
// replica learns of other replicas' changes from the store) and its
// authorization snapshot has reached its catalog's revision.
func waitSnapshotAt(t testing.TB, s *server, rev int64) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("the authorization snapshot to reach the catalog's revision (at least %d)", rev), func() bool {
		c, snap, ok := revisions(s)
		return ok && c >= rev && c == snap
	})
}

// revisions reads s's catalog and authorization snapshot revisions from
// its metrics.
func revisions(s *server) (catalogRev, snapshotRev int64, ok bool) {
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		return 0, 0, false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	gauge := func(name string) (int64, bool) {
		for _, line := range strings.Split(string(b), "\n") {
			if v, found := strings.CutPrefix(line, name+" "); found {
				f, err := strconv.ParseFloat(v, 64)
				return int64(f), err == nil
			}
		}
		return 0, false
	}
	c, okC := gauge("mandate_catalog_revision")
	snap, okS := gauge("mandate_snapshot_revision")
	return c, snap, okC && okS
}
