package mcp

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
)

// Benchmarks of the gateway's added latency: the same tools/call through
// the gateway (every stage, with trivial fakes: the cost measured is the
// gateway's own) and through a bare httputil.ReverseProxy, both over
// loopback HTTP to the same upstream, one request at a time.
//
//	go test -run '^$' -bench . -benchtime 20000x -count 3 ./gateway/mcp/

type benchAuth struct{ id *gateway.Identity }

func (a benchAuth) Authenticate(context.Context, *http.Request, string) (*gateway.Identity, error) {
	return a.id, nil
}

type benchAuthz struct{}

func (benchAuthz) Authorize(context.Context, enforce.Request) (enforce.Decision, error) {
	return enforce.Decision{Allowed: true, Reason: "granted", Revision: 7}, nil
}

type benchConns struct{ c *gateway.Connection }

func (b benchConns) Connection(context.Context, string) (*gateway.Connection, error) { return b.c, nil }

type benchCreds struct{}

func (benchCreds) Authorization(context.Context, *gateway.Connection, *gateway.Identity) (string, error) {
	return "Bearer upstream", nil
}

// benchAudit is an AuditQueue that keeps nothing (the two-phase path).
type benchAudit struct{}

func (benchAudit) Record(context.Context, catalog.AuditEvent) error { return nil }
func (benchAudit) Enqueue(context.Context, catalog.AuditEvent) (*catalog.AuditAck, error) {
	return catalog.DoneAuditAck(nil), nil
}
func (benchAudit) Submit(context.Context, catalog.AuditEvent) error { return nil }

const benchCall = `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues","arguments":{"repo":"mandatehq/mandate","query":"is:open label:bug","limit":20}}}`

// benchResult is a typical small tool result.
var benchResult = `{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"` + strings.Repeat("issue #1234: something is broken; ", 20) + `"}],"isError":false}}`

func benchUpstream(b *testing.B, sse bool) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if sse {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "event: message\ndata: "+benchResult+"\n\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, benchResult)
	}))
	b.Cleanup(s.Close)
	return s
}

func benchGateway(b *testing.B, upstreamURL string, tools string) *Handler {
	h, err := New(Config{
		PublicURL:   "http://127.0.0.1:18080",
		Auth:        benchAuth{&gateway.Identity{Subject: "alice@example.com", Actor: "coding-agent"}},
		Authz:       benchAuthz{},
		Connections: benchConns{&gateway.Connection{Name: "system.ai.github", URL: upstreamURL, Options: map[string]string{catalog.OptIncludeTools: tools}, Revision: 7}},
		Credentials: benchCreds{},
		Audit:       benchAudit{},
	})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// runLatency sends body to url b.N times, one at a time, and reports p50
// and p99 besides ns/op.
func runLatency(b *testing.B, client *http.Client, u, body string) {
	lat := make([]time.Duration, 0, b.N)
	send := func() {
		req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer agent-token")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || n < int64(len(benchResult)) {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
	for i := 0; i < 200; i++ { // warm the connection pools
		send()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		send()
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func BenchmarkToolsCall(b *testing.B) {
	for _, mode := range []string{"json", "sse"} {
		up := benchUpstream(b, mode == "sse")
		upURL, _ := url.Parse(up.URL)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

		b.Run("proxy/"+mode, func(b *testing.B) {
			rp := httputil.NewSingleHostReverseProxy(upURL)
			rp.Transport = DefaultUpstreamClient().Transport
			rp.FlushInterval = -1
			srv := httptest.NewServer(rp)
			defer srv.Close()
			runLatency(b, client, srv.URL+"/mcp/github", benchCall)
		})
		b.Run("gateway/"+mode, func(b *testing.B) {
			srv := httptest.NewServer(benchGateway(b, up.URL, ""))
			defer srv.Close()
			runLatency(b, client, srv.URL+"/mcp/github", benchCall)
		})
	}
}

// BenchmarkToolsListFilter: a 100-tool tools/list filtered by include_tools
// and per-tool authorization (decisions cached per revision).
func BenchmarkToolsListFilter(b *testing.B) {
	var tools []string
	for i := 0; i < 100; i++ {
		tools = append(tools, fmt.Sprintf(`{"name":"tool_%03d","description":"does thing %d","inputSchema":{"type":"object","properties":{"x":{"type":"string"}}}}`, i, i))
	}
	result := `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, result)
	}))
	defer up.Close()
	srv := httptest.NewServer(benchGateway(b, up.URL, "tool_0*"))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp/github", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := strings.Count(string(body), `"name"`); n != 100 && n != 10 || resp.StatusCode != 200 {
			b.Fatalf("%d tools, status %d", n, resp.StatusCode)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
}

type cannedUpstream struct{ body string }

func (c cannedUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{
		StatusCode:    200,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(c.body)),
		ContentLength: int64(len(c.body)),
		Request:       r,
	}, nil
}

// BenchmarkHandlerOnly is the gateway's own work for one tools/call: every
// stage runs (fakes answer at once), the upstream is an in-memory
// RoundTripper and the client a ResponseRecorder, so no network time is
// included.
func BenchmarkHandlerOnly(b *testing.B) {
	h := benchGateway(b, "http://upstream.invalid/mcp", "")
	h.client = &http.Client{Transport: cannedUpstream{benchResult}, CheckRedirect: noRedirect} // as New makes every client
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:18080/mcp/github", strings.NewReader(benchCall))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer agent-token")
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkParseMessage: reading one tools/call message (validation in
// one pass, then the members the gateway needs).
//
//	go test -run '^$' -bench BenchmarkParseMessage -benchmem ./gateway/mcp/
func BenchmarkParseMessage(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"search_issues",` +
		`"arguments":{"query":"label:bug state:open repo:mandatehq/mandate","per_page":30,"sort":"updated"},` +
		`"_meta":{"progressToken":"p-17"}}}`)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		m, f := parseMessage(body)
		if f != nil || m.method != "tools/call" {
			b.Fatal(f)
		}
		if _, ok := parseToolCall(m.params); !ok {
			b.Fatal("tool call")
		}
	}
}
