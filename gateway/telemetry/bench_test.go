package telemetry_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway/pipeline"
	. "github.com/mandatehq/mandate/gateway/telemetry"
	"github.com/mandatehq/mandate/gateway/telemetry/telemetrytest"
)

// benchProto is an in-memory MCP-like protocol: no network, so that the
// benchmark shows what the observer itself costs per call.
type benchProto struct{ call pipeline.Call }

func (x *benchProto) Service() string { return "mcp" }
func (x *benchProto) Resolve(ctx context.Context, c *pipeline.Call) error {
	c.Action, c.Item = "tools/call", "search"
	c.Securable = enforce.SecurableRef{Type: "CONNECTION", Name: "system.ai.bench"}
	c.Privilege = "USE_CONNECTION"
	c.RequestID, c.ProtocolVersion = "1", "2025-06-18"
	return nil
}
func (x *benchProto) Send(ctx context.Context, c *pipeline.Call, _ string) (*http.Response, error) {
	ctx, end := StartAttempt(ctx, Attempt{Destination: "system.ai.bench", URL: "http://127.0.0.1:1/mcp"})
	tp, _ := Outbound(ctx, c)
	_ = tp
	end(http.StatusOK, nil)
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{},
		Body: io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":1,"result":{}}`))}, nil
}
func (x *benchProto) Relay(ctx context.Context, c *pipeline.Call, resp *http.Response) error {
	b, _ := io.ReadAll(resp.Body)
	c.Status = http.StatusOK
	if err := c.Commit(true); err != nil {
		return err
	}
	_, _ = c.Writer().Write(b)
	return nil
}
func (x *benchProto) Render(c *pipeline.Call, err *pipeline.Error) pipeline.Answer {
	return pipeline.Answer{Status: err.Status}
}
func (x *benchProto) AuditParams(*pipeline.Call) string { return "{}" }

type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// BenchmarkObserver is one call through the pipeline (in memory) without
// an observer, with metrics only (no endpoint), and with tracing at 100%
// (spans exported to a discarding exporter).
//
//	go test -run '^$' -bench BenchmarkObserver -benchmem -benchtime 20000x -count 4 ./gateway/telemetry
func BenchmarkObserver(b *testing.B) {
	for _, mode := range []string{"none", "metrics", "tracing"} {
		b.Run(mode, func(b *testing.B) {
			cfg := pipeline.Config{PublicURL: "http://127.0.0.1", Auth: telemetrytest.Auth{}, Authz: telemetrytest.Authz{},
				Credentials: telemetrytest.NoCredentials{}, Audit: &nopAudit{}, Logger: zerolog.Nop()}
			if mode != "none" {
				tc := Config{Getenv: func(string) string { return "" }, MaxQueue: 1 << 16}
				if mode == "tracing" {
					tc.Exporter = discard{}
				}
				tel, err := New(b.Context(), tc)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
				cfg.Observer = tel.Observer()
			}
			p, err := pipeline.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/mcp/bench", nil)
			req.Header.Set("Authorization", "Bearer alice/agent")
			req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			b.ReportAllocs()
			cpu0 := processCPU()
			n := 0
			for b.Loop() {
				x := &benchProto{}
				p.Serve(httptest.NewRecorder(), req, &x.call, x)
				n++
			}
			// The process's CPU time per call (every goroutine: the span
			// export and the garbage collector included), which a loaded
			// machine inflates far less than the wall-clock ns/op.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(n), "cpu-ns/op")
		})
	}
}

// processCPU is the user and system CPU time the process used, in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

type nopAudit struct{}

func (*nopAudit) Record(context.Context, catalog.AuditEvent) error { return nil }
