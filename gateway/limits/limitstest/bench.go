package limitstest

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
)

// The backends' benchmarks of Reserve share their calls and their
// latency harness.

// BenchService is the service the benchmark calls go to.
const BenchService catalog.ID = 100

// BenchDestination is the benchmark calls' priced destination.
var BenchDestination = limits.Destination{Name: "openai_prod/gpt-4.1", Priced: true,
	Price: limits.Price{Input: 2 * limits.USD, Output: 8 * limits.USD, CachedInput: limits.USD / 2}}

// BenchDefs are the definitions and calls of the backends' BenchmarkReserve:
// each call is charged to 2 windows (the service limit and FOR EACH USER,
// requests and tokens) and 2 budgets (a group's of all users and one per
// user), limits high enough that every call passes; 8,192 calls of users
// 1..users, a random one each.
func BenchDefs(users int) (limits.Definitions, []limits.Call) {
	const big = 1 << 40
	const group = catalog.ID(800_000)
	defs := limits.Definitions{
		RateLimits: []limits.RateLimit{
			{Securable: BenchService, SecurableName: "system.ai.frontier", Level: limits.LevelService, Requests: big, Tokens: big},
			{Securable: BenchService, SecurableName: "system.ai.frontier", Level: limits.LevelEachUser, Requests: big, Tokens: big},
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
		calls[i] = limits.Call{Kind: limits.ModelService, Securable: BenchService, Subject: catalog.ID(1 + rnd.IntN(users)),
			InputTokens: int64(100 + rnd.IntN(4000)), MaxTokens: 1024, Destinations: []limits.Destination{BenchDestination}}
	}
	return defs, calls
}

// Lats are the latencies a benchmark operation records.
type Lats struct{ Reserve, Settle []time.Duration }

// RunLatency runs op b.N times (serial, or from 32 goroutines on 2 cores)
// and reports the p50 and p99 of the latencies op records.
func RunLatency(b *testing.B, par bool, op func(i int, lat *Lats)) {
	var mu sync.Mutex
	var all Lats
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
			var lat Lats
			for pb.Next() {
				op(i, &lat)
				i++
			}
			mu.Lock()
			all.Reserve = append(all.Reserve, lat.Reserve...)
			all.Settle = append(all.Settle, lat.Settle...)
			mu.Unlock()
		})
	} else {
		all.Reserve = make([]time.Duration, 0, b.N)
		all.Settle = make([]time.Duration, 0, b.N)
		for i := 0; i < b.N; i++ {
			op(i, &all)
		}
	}
	b.StopTimer()
	for _, x := range []struct {
		name string
		d    []time.Duration
	}{{"reserve", all.Reserve}, {"settle", all.Settle}} {
		if len(x.d) == 0 {
			continue
		}
		slices.Sort(x.d)
		b.ReportMetric(float64(x.d[len(x.d)/2].Nanoseconds()), x.name+"-p50-ns")
		b.ReportMetric(float64(x.d[len(x.d)*99/100].Nanoseconds()), x.name+"-p99-ns")
	}
}
