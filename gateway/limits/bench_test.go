package limits_test

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/limitstest"
)

// benchSetup is a large installation: 10,000 users and 100 model
// services. Variants:
//   - typical: per service a service limit and a default per user
//     (requests and tokens), one budget per user;
//   - full: besides, 5 group limits (half the users are in 2 of the
//     groups, so they are held to 2 group windows per dimension instead of
//     the default), an agent limit (half the calls come through the
//     agent) and 3 budgets (a group's, one per user, the agent's).
//
// Limits are high enough that every call passes (the admission work is
// the same).
type benchSetup struct {
	defs  limits.Definitions
	calls []limits.Call
}

const benchCalls = 8192

const (
	benchUsers    = 10_000
	benchServices = 100
	benchAgent    = catalog.ID(900_000)
	benchGroup0   = catalog.ID(800_000)
)

func newBenchSetup(variant string) *benchSetup {
	const big = 1 << 40
	s := &benchSetup{defs: limits.Definitions{Members: map[catalog.ID][]catalog.ID{}}}
	full := variant == "full"
	for i := range benchServices {
		sec := catalog.ID(1000 + i)
		if variant == "none" {
			break
		}
		s.defs.RateLimits = append(s.defs.RateLimits,
			limits.RateLimit{Securable: sec, SecurableName: "svc", Level: limits.LevelService, Requests: big, Tokens: big},
			limits.RateLimit{Securable: sec, SecurableName: "svc", Level: limits.LevelEachUser, Requests: big, Tokens: big})
		if !full {
			continue
		}
		s.defs.RateLimits = append(s.defs.RateLimits,
			limits.RateLimit{Securable: sec, SecurableName: "svc", Level: limits.LevelServicePrincipal, Principal: benchAgent, Requests: big, Tokens: big})
		for g := range 5 {
			s.defs.RateLimits = append(s.defs.RateLimits, limits.RateLimit{Securable: sec, SecurableName: "svc",
				Level: limits.LevelGroup, Principal: benchGroup0 + catalog.ID(g), Requests: big, Tokens: big})
		}
	}
	for u := range benchUsers / 2 {
		for _, g := range []int{u % 5, (u + 1) % 5} {
			gid := benchGroup0 + catalog.ID(g)
			s.defs.Members[gid] = append(s.defs.Members[gid], catalog.ID(1+u))
		}
	}
	switch variant {
	case "typical":
		s.defs.Budgets = []limits.Budget{{Name: "each", Limit: limits.MaxMoney / 4, Level: limits.LevelEachUser}}
	case "full":
		s.defs.Budgets = []limits.Budget{
			{Name: "group", Limit: limits.MaxMoney / 4, Level: limits.LevelGroup, Principal: benchGroup0},
			{Name: "each", Limit: limits.MaxMoney / 4, Level: limits.LevelEachUser},
			{Name: "agent", Limit: limits.MaxMoney / 4, Level: limits.LevelServicePrincipal, Principal: benchAgent},
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	dests := []limits.Destination{gpt, {Name: "anthropic_prod/claude", Priced: true, Price: limits.Price{Input: 3 * limits.USD, Output: 15 * limits.USD}}}
	for range benchCalls {
		c := limits.Call{Kind: limits.ModelService, Securable: catalog.ID(1000 + rnd.IntN(benchServices)),
			Subject: catalog.ID(1 + rnd.IntN(benchUsers)), InputTokens: int64(100 + rnd.IntN(4000)), MaxTokens: 1024,
			Destinations: dests, Tags: map[string]string{"project": "checkout"}}
		if full && rnd.IntN(2) == 0 {
			c.Actor = benchAgent
		}
		s.calls = append(s.calls, c)
	}
	return s
}

// BenchmarkLimiter measures Reserve and Settle on the large installation
// (benchSetup), one call after the other (serial) and from 32 goroutines
// (parallel), each timed with time.Now around it (the timer's own cost is
// included: the "none" variant, a service without limits, shows it). The
// baseline is a bare sync.Mutex-guarded map increment per key, timed the
// same way (what a per-key counter costs at the least).
func BenchmarkLimiter(b *testing.B) {
	for _, variant := range []string{"none", "typical", "full"} {
		s := newBenchSetup(variant)
		for _, par := range []bool{false, true} {
			mode := "serial"
			if par {
				mode = "parallel"
			}
			b.Run(variant+"/"+mode, func(b *testing.B) {
				l := limits.New(limits.Options{})
				if err := l.Apply(b.Context(), s.defs); err != nil {
					b.Fatal(err)
				}
				for i := range s.calls { // warm: create the windows and accounts
					r, _ := l.Reserve(b.Context(), &s.calls[i])
					l.Release(r)
				}
				limitstest.RunLatency(b, par, func(i int, lat *limitstest.Lats) {
					c := &s.calls[i%len(s.calls)]
					t0 := time.Now()
					r, err := l.Reserve(b.Context(), c)
					t1 := time.Now()
					if err != nil {
						b.Error(err)
					}
					l.Settle(r, limits.Usage{InputTokens: c.InputTokens / 2, CachedInputTokens: c.InputTokens / 2, OutputTokens: 300}, limits.USD/1000)
					lat.Reserve = append(lat.Reserve, t1.Sub(t0))
					lat.Settle = append(lat.Settle, time.Since(t1))
				})
			})
		}
	}
	b.Run("baseline-mutex-map/serial", func(b *testing.B) { benchMutexMap(b, false) })
	b.Run("baseline-mutex-map/parallel", func(b *testing.B) { benchMutexMap(b, true) })
}

// benchMutexMap: the baseline, one mutex-guarded map increment per call
// (timed like Reserve).
func benchMutexMap(b *testing.B, par bool) {
	var mu sync.Mutex
	m := map[[2]catalog.ID]int64{}
	limitstest.RunLatency(b, par, func(i int, lat *limitstest.Lats) {
		k := [2]catalog.ID{catalog.ID(1000 + i%benchServices), catalog.ID(1 + i%benchUsers)}
		t0 := time.Now()
		mu.Lock()
		m[k]++
		mu.Unlock()
		t1 := time.Now()
		mu.Lock()
		m[k]--
		mu.Unlock()
		lat.Reserve = append(lat.Reserve, t1.Sub(t0))
		lat.Settle = append(lat.Settle, time.Since(t1))
	})
}
