package pglimits_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/gateway/limits"
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
		defs, calls := benchDefs(users)
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
					runLatency(b, par, func(i int, lat *lats) {
						c := &calls[i%len(calls)]
						t0 := time.Now()
						r, err := l.Reserve(b.Context(), c)
						t1 := time.Now()
						if err != nil {
							b.Error(err)
							return
						}
						l.Settle(r, limits.Usage{InputTokens: c.InputTokens, OutputTokens: 300}, limits.USD/1000)
						lat.reserve = append(lat.reserve, t1.Sub(t0))
						lat.settle = append(lat.settle, time.Since(t1))
					})
					if pb != nil {
						b.ReportMetric(float64(pb.Stats().RoundTrips-rt0)*1000/float64(b.N), "db-rt/1k-calls")
					}
				})
			}
		}
	}
}

func benchDefs(users int) (limits.Definitions, []limits.Call) {
	const big = 1 << 40
	const group = catalog.ID(800_000)
	defs := limits.Definitions{
		RateLimits: []limits.RateLimit{
			{Securable: svc, SecurableName: "system.ai.frontier", Level: limits.LevelService, Requests: big, Tokens: big},
			{Securable: svc, SecurableName: "system.ai.frontier", Level: limits.LevelEachUser, Requests: big, Tokens: big},
		},
		Budgets: []limits.Budget{
			{Name: "analysts", Limit: limits.MaxMoney / 4, Level: limits.LevelGroup, Principal: group},
			{Name: "each", Limit: limits.MaxMoney / 4, Level: limits.LevelEachUser},
		},
		Members: map[catalog.ID][]catalog.ID{},
	}
	for u := range users {
		defs.Members[group] = append(defs.Members[group], catalog.ID(1+u))
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	calls := make([]limits.Call, 8192)
	for i := range calls {
		calls[i] = limits.Call{Kind: limits.ModelService, Securable: svc, Subject: catalog.ID(1 + rnd.IntN(users)),
			InputTokens: int64(100 + rnd.IntN(4000)), MaxTokens: 1024, Destinations: []limits.Destination{gpt}}
	}
	return defs, calls
}

type lats struct{ reserve, settle []time.Duration }

// runLatency runs op b.N times (serial, or from 32 goroutines) and
// reports the p50 and p99 of the latencies op records.
func runLatency(b *testing.B, par bool, op func(i int, lat *lats)) {
	var mu sync.Mutex
	var all lats
	b.ReportAllocs()
	b.ResetTimer()
	if par {
		b.SetParallelism(16) // 32 goroutines on 2 cores
		var seq sync.Mutex
		next := 0
		b.RunParallel(func(pb *testing.PB) {
			seq.Lock()
			i := next * 7919
			next++
			seq.Unlock()
			var lat lats
			for pb.Next() {
				op(i, &lat)
				i++
			}
			mu.Lock()
			all.reserve = append(all.reserve, lat.reserve...)
			all.settle = append(all.settle, lat.settle...)
			mu.Unlock()
		})
	} else {
		all.reserve = make([]time.Duration, 0, b.N)
		all.settle = make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			op(i, &all)
		}
	}
	b.StopTimer()
	for _, x := range []struct {
		name string
		d    []time.Duration
	}{{"reserve", all.reserve}, {"settle", all.settle}} {
		if len(x.d) == 0 {
			continue
		}
		slices.Sort(x.d)
		b.ReportMetric(float64(x.d[len(x.d)/2].Nanoseconds()), x.name+"-p50-ns")
		b.ReportMetric(float64(x.d[len(x.d)*99/100].Nanoseconds()), x.name+"-p99-ns")
	}
}
