package nodelimits_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/limitstest"
	"github.com/mandatehq/mandate/gateway/limits/nodelimits"
)

// BenchmarkReserve measures Reserve and Settle on a gateway node whose
// backend leases from a catalog server (nodelimits, the server in
// process: the transport is a function call, background sync every
// 50 ms, the real clock) beside the in-memory backend, in one run, on the
// same calls: 32 users on one service, each call charged to 2 windows
// (service and FOR EACH USER, requests and tokens) and 2 budgets (a
// group's and one per user), limits high enough that every call passes.
// rt/1k-calls: lease round trips per 1,000 calls.
func BenchmarkReserve(b *testing.B) {
	defs, calls := limitstest.BenchDefs(32)
	for _, backend := range []string{"memory", "node"} {
		b.Run("hot/"+backend, func(b *testing.B) {
			var nb *nodelimits.Backend
			var lb limits.Backend
			if backend == "node" {
				srvLim := limits.New(limits.Options{})
				if err := srvLim.Apply(b.Context(), defs); err != nil {
					b.Fatal(err)
				}
				srv := nodelimits.NewServer(srvLim, nodelimits.ServerOptions{})
				defer srv.Close()
				var err error
				nb, err = nodelimits.New(nodelimits.Options{Transport: func(ctx context.Context, req *api.LeaseRequest) (*api.LeaseResponse, error) {
					return srv.Serve(ctx, req)
				}})
				if err != nil {
					b.Fatal(err)
				}
				defer nb.Close(context.Background())
				lb = nb
			}
			l := limits.New(limits.Options{Backend: lb})
			if err := l.Apply(b.Context(), defs); err != nil {
				b.Fatal(err)
			}
			for i := range 2000 { // warm: windows, accounts, first leases
				c := &calls[i%len(calls)]
				if r, err := l.Reserve(b.Context(), c); err == nil {
					l.Settle(r, limits.Usage{InputTokens: c.InputTokens, OutputTokens: 300}, limits.USD/1000)
				}
			}
			var rt0 int64
			if nb != nil {
				rt0 = nb.Stats().RoundTrips
			}
			reserve := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c := &calls[i%len(calls)]
				t0 := time.Now()
				r, err := l.Reserve(b.Context(), c)
				reserve = append(reserve, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				l.Settle(r, limits.Usage{InputTokens: c.InputTokens, OutputTokens: 300}, limits.USD/1000)
			}
			b.StopTimer()
			slices.Sort(reserve)
			b.ReportMetric(float64(reserve[len(reserve)/2].Nanoseconds()), "reserve-p50-ns")
			b.ReportMetric(float64(reserve[len(reserve)*99/100].Nanoseconds()), "reserve-p99-ns")
			if nb != nil {
				b.ReportMetric(float64(nb.Stats().RoundTrips-rt0)*1000/float64(b.N), "rt/1k-calls")
			}
		})
	}
}
