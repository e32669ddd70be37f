package pglimits_test

import (
	"context"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/limitstest"
	"github.com/mandatehq/mandate/gateway/limits/pglimits"
)

// BenchmarkReserve measures Reserve and Settle through the PostgreSQL
// backend as serve builds it (Open with the default Options: its own pool
// of 8 connections, leases, the database's clock, background sync every
// 50 ms; PostgreSQL on this machine) beside the in-memory backend, in one run, on the same
// calls. Each call is charged to 2 windows (the service limit and the
// caller's FOR EACH USER limit, requests and tokens) and 2 budgets (a
// group's and one per user), with limits high enough that every call
// passes. Variants:
//   - hot: 32 users on one service (the calls that dominate a busy
//     gateway: the same keys again and again);
//   - spread: 10,000 users, a random one per call (a per-user key is
//     seldom reused within a lease: most calls need a round trip).
//
// Reported besides the latencies: db-rt/1k-calls, the database round
// trips (grants, background batches, heartbeats) per 1,000 calls.
func BenchmarkReserve(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{})
	e := &env{srv: srv}
	for _, variant := range []string{"hot", "spread"} {
		users := 32
		if variant == "spread" {
			users = 10_000
		}
		defs, calls := limitstest.BenchDefs(users)
		for _, backend := range []string{"memory", "postgres"} {
			for _, par := range []bool{false, true} {
				mode := "serial"
				if par {
					mode = "parallel"
				}
				b.Run(variant+"/"+backend+"/"+mode, func(b *testing.B) {
					var pb *pglimits.Backend
					var lb limits.Backend
					if backend == "postgres" {
						_, db := e.pool(b)
						var err error
						if pb, err = pglimits.Open(b.Context(), srv.URL(db), pglimits.Options{}); err != nil {
							b.Fatal(err)
						}
						defer pb.Close(context.Background())
						lb = pb
					}
					l := limits.New(limits.Options{Backend: lb})
					if err := l.Apply(b.Context(), defs); err != nil {
						b.Fatal(err)
					}
					for i := range 2000 { // warm: the windows, accounts and first leases
						c := &calls[i%len(calls)]
						if r, err := l.Reserve(b.Context(), c); err == nil {
							l.Settle(r, limits.Usage{InputTokens: c.InputTokens, OutputTokens: 300}, limits.USD/1000)
						}
					}
					var rt0 int64
					if pb != nil {
						rt0 = pb.Stats().RoundTrips
					}
					limitstest.RunLatency(b, par, func(i int, lat *limitstest.Lats) {
						c := &calls[i%len(calls)]
						t0 := time.Now()
						r, err := l.Reserve(b.Context(), c)
						t1 := time.Now()
						if err != nil {
							b.Error(err)
							return
						}
						l.Settle(r, limits.Usage{InputTokens: c.InputTokens, OutputTokens: 300}, limits.USD/1000)
						lat.Reserve = append(lat.Reserve, t1.Sub(t0))
						lat.Settle = append(lat.Settle, time.Since(t1))
					})
					if pb != nil {
						b.ReportMetric(float64(pb.Stats().RoundTrips-rt0)*1000/float64(b.N), "db-rt/1k-calls")
					}
				})
			}
		}
	}
}
