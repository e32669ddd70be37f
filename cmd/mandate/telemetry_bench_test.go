package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkTelemetry measures what tracing and metrics add to a call
// through the MCP gateway, side by side in one run: three `mandate serve
// --dev` subprocesses in front of one fast local upstream,
//
//	tracing-off     no OTLP endpoint (metrics on, trace context only
//	                propagated and audited)
//	tracing-on      --otlp-endpoint to a collector that accepts every
//	                export (an OTLP/HTTP receiver in this process), 100%
//	                sampling: a server span, a span per stage and the
//	                upstream attempt's, per call
//	collector-down  --otlp-endpoint to a closed port: every export fails,
//	                spans are dropped and counted
//
// called by one client one call at a time, the three in turn, so that the
// machine's noise hits them alike (latency percentiles per path).
//
//	go test -run '^$' -bench BenchmarkTelemetry -benchtime 5000x ./cmd/mandate
func BenchmarkTelemetry(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(fastUpstream))
	b.Cleanup(up.Close)
	var exported atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		exported.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(collector.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	type path struct{ name, url, token, metrics string }
	var paths []path
	for _, m := range []struct{ name, endpoint string }{{"tracing-off", ""}, {"tracing-on", collector.URL}, {"collector-down", closed}} {
		args := []string{"--dev", "--log-level", "warn"}
		if m.endpoint != "" {
			args = append(args, "--otlp-endpoint", m.endpoint, "--trace-sample-ratio", "1")
		}
		s := startServer(b, serverOpts{args: args, env: []string{"OTEL_BSP_SCHEDULE_DELAY=200"}})
		c := s.admin(b)
		mustExec(b, c,
			`CREATE USER "alice@example.com"`,
			`CREATE SERVICE PRINCIPAL "coding-agent"`,
			`CREATE CONNECTION bench TYPE MCP OPTIONS (url '`+up.URL+`/mcp', auth_mode 'mandate_jwt', scopes 'repo')`,
			`GRANT USE_CONNECTION ON CONNECTION bench TO "alice@example.com"`,
			`GRANT USE_CONNECTION ON CONNECTION bench TO "coding-agent"`)
		paths = append(paths, path{m.name, "http://" + s.httpAddr + "/mcp/bench", e2eToken(b, s, "alice@example.com", "coding-agent"),
			"http://" + s.httpAddr + "/metrics"})
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
	for _, p := range paths {
		for i := range 200 { // warm up connections and caches
			if err := callTool(client, p.url, p.token, int64(i)); err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
		}
	}
	// One client, one call at a time, the three paths in turn: every
	// call meets the machine's noise as its neighbours do, and no queue
	// builds up (this measures a call's latency, not throughput).
	lat := map[string][]time.Duration{}
	b.ResetTimer()
	for i := range b.N {
		for _, p := range paths {
			t0 := time.Now()
			if err := callTool(client, p.url, p.token, int64(i)); err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			lat[p.name] = append(lat[p.name], time.Since(t0))
		}
	}
	b.StopTimer()
	for _, p := range paths {
		l := lat[p.name]
		slices.Sort(l)
		b.ReportMetric(float64(l[len(l)/2].Microseconds()), p.name+"-p50-µs")
		b.ReportMetric(float64(l[len(l)*99/100].Microseconds()), p.name+"-p99-µs")
	}
	off := lat["tracing-off"][len(lat["tracing-off"])/2]
	on := lat["tracing-on"][len(lat["tracing-on"])/2]
	b.ReportMetric(float64((on - off).Microseconds()), "added-p50-µs")
	b.ReportMetric(float64(exported.Load())/float64(b.N), "exported-B/call")
	// The collector that was down: its node counted the dropped spans.
	resp, err := http.Get(paths[2].metrics)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		b.Logf("collector-down node: %s", grepLine(string(body), "mandate_trace_spans_dropped_total "))
	}
}

func grepLine(s, prefix string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}
