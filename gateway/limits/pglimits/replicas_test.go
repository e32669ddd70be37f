package pglimits_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/limitstest"
	"github.com/mandatehq/mandate/gateway/limits/pglimits"
)

// The fixtures of limitstest, by short names.
const svc, alice, bob, g1 = limitstest.Service, limitstest.Alice, limitstest.Bob, limitstest.Group

const (
	carol catalog.ID = 3
	dave  catalog.ID = 4
)

var gpt, eachUser, groupBudget, call = limitstest.GPT, limitstest.EachUser, limitstest.GroupBudget, limitstest.Call

// replica is one Mandate replica's limits: a backend on its own pool and a
// Limiter over it.
type replica struct {
	b *pglimits.Backend
	l *limits.Limiter
}

func newReplica(t *testing.T, e *env, db string, c *clock, o pglimits.Options, defs limits.Definitions) *replica {
	t.Helper()
	o.Now = c.Now
	b := newBackend(t, e.poolOf(t, db), o)
	l := limits.New(limits.Options{Backend: b, Now: c.Now})
	if err := l.Apply(t.Context(), defs); err != nil {
		t.Fatal(err)
	}
	return &replica{b, l}
}

func replicas(t *testing.T, e *env, c *clock, n int, o pglimits.Options, defs limits.Definitions) ([]*replica, *pgxpool.Pool, string) {
	t.Helper()
	pool, db := e.pool(t)
	rs := make([]*replica, n)
	for i := range rs {
		rs[i] = newReplica(t, e, db, c, o, defs)
	}
	return rs, pool, db
}

// maxInWindow is the largest number of times within any interval
// [t, t+60s); times sorted.
func maxInWindow(times []time.Time) int {
	best, j := 0, 0
	for i := range times {
		for j < len(times) && times[j].Sub(times[i]) < limits.WindowLength {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

// testReplicasWindow: 3 replicas on one database, 32 goroutines (each on
// one replica, calling as one of 4 users) under 10 REQUESTS PER MINUTE FOR
// EACH USER while the shared clock runs (each call advances it by 0–200
// ms). No interval of 60 s holds more than 10 admissions of one user over
// all replicas, and the users get their 10 a minute.
func testReplicasWindow(t *testing.T, e *env) {
	c := newClock(t0)
	rs, pool, _ := replicas(t, e, c, 3, pglimits.Options{}, eachUser(10, 0))
	defer func() {
		if t.Failed() {
			rows, _ := pool.Query(t.Context(), "SELECT lease, bucket - $1, principal, replica, requests FROM limits_window_units ORDER BY principal, lease", t0.Unix())
			for rows.Next() {
				var l, b, p, r, q int64
				_ = rows.Scan(&l, &b, &p, &r, &q)
				t.Logf("lease %d bucket %d principal %d replica %d units %d", l, b, p, r, q)
			}
		}
	}()
	subjects := []catalog.ID{alice, bob, carol, dave}
	var mu sync.Mutex
	admitted := map[catalog.ID][]time.Time{}
	var refused atomic.Int64
	var wg, started sync.WaitGroup
	var calls atomic.Int64
	end := t0.Add(3 * time.Minute)
	started.Add(32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			r, subj := rs[g%3], subjects[g%4]
			// Every goroutine calls until the clock reaches the end, so that
			// each replica keeps serving each user (the bound is a failure
			// bound).
			for i := 0; i < 5000 && (i < 2 || c.Now().Before(end)); i++ {
				if i == 2 { // everyone has asked twice at t0: the clock may run
					started.Done()
					started.Wait()
				}
				calls.Add(1)
				res, err := r.l.Reserve(t.Context(), call(subj, 0, 0))
				if err != nil {
					var ref *limits.Refusal
					if !errors.As(err, &ref) || ref.Kind != limits.RateLimited || ref.RetryAfter <= 0 || ref.RetryAfter > 64*time.Second {
						t.Errorf("unexpected refusal: %v (%+v)", err, ref)
					}
					refused.Add(1)
				} else {
					mu.Lock()
					admitted[subj] = append(admitted[subj], res.At())
					mu.Unlock()
					r.l.Settle(res, limits.Usage{}, 0)
				}
				if i >= 2 {
					c.Advance(time.Duration(rnd.IntN(200)) * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := c.Now().Sub(t0)
	for _, s := range subjects {
		times := admitted[s]
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		first := 0
		for _, at := range times {
			if at.Sub(t0) < limits.WindowLength {
				first++
			}
		}
		if m := maxInWindow(times); m > 10 {
			t.Errorf("user %d: %d admissions within 60 s over 3 replicas, limit 10", s, m)
		}
		// Liveness: the users get their 10 in the first minute. About one
		// run in 20 one user gets 9, its 10th admission at about 61 s: the
		// shared clock runs about 10 times faster than real time (32
		// goroutines advance it by up to 200 ms a call; 3 minutes pass in
		// about 16 s), so a 2 s lease often ends before its units are used
		// (grants outnumber admissions 2 to 3 times), and its unused units
		// stay counted in the database until its close arrives: the next
		// round trip of that replica for the key, or its background sync
		// (50 ms of real time, half a second or more of the test's time,
		// more when the loaded machine stalls a goroutine). Near the end of
		// the first minute that pushes the 10th admission past 60 s. With a
		// real clock the same delay is the documented slack (units leased
		// and not used hold others back for at most WindowLease +
		// SyncInterval); 9 is tolerated and logged.
		if first < 9 || first > 10 {
			t.Errorf("user %d: %d admissions in the first minute, want 10: %v", s, first, rel(times))
		} else if first == 9 {
			t.Logf("user %d: 9 admissions in the first minute (one unit held back): %v", s, rel(times))
		}
		t.Logf("user %d: %d admitted in %v", s, len(times), elapsed.Round(time.Second))
	}
	if refused.Load() == 0 {
		t.Error("nothing was refused: the test did not press the limit")
	}
	var st pglimits.Stats
	for _, r := range rs {
		s := r.b.Stats()
		st.RoundTrips += s.RoundTrips
		st.Grants += s.Grants
		st.Refusals += s.Refusals
		st.Prefetches += s.Prefetches
		st.Errors += s.Errors
	}
	t.Logf("%d calls, %d refused; %d round trips (%d failed), %d grants (%d ahead of need), %d refusals by the database",
		calls.Load(), refused.Load(), st.RoundTrips, st.Errors, st.Grants, st.Prefetches, st.Refusals)
}

func rel(ts []time.Time) []float64 {
	out := make([]float64, len(ts))
	for i, x := range ts {
		out[i] = x.Sub(t0).Round(100 * time.Millisecond).Seconds()
	}
	return out
}

// testReplicasBudget: 3 replicas, 32 goroutines spend against one group
// budget of 1 USD, settling below the worst case or releasing. At the end
// the database holds the exact sum of the settled costs, within the
// limit, and nothing is leased any more.
func testReplicasBudget(t *testing.T, e *env) {
	c := newClock(t0)
	const limit = limits.USD
	rs, pool, _ := replicas(t, e, c, 3, pglimits.Options{SyncInterval: 5 * time.Millisecond, IdleReturn: 20 * time.Millisecond,
		ContendedWait: 200 * time.Millisecond}, groupBudget(limit))
	var passed, refused atomic.Int64
	var settled atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 2))
			r, subj := rs[g%3], []catalog.ID{alice, bob}[g%2]
			for range 60 {
				cl := call(subj, int64(500+rnd.IntN(1000)), int64(1+rnd.IntN(2000)))
				res, err := r.l.Reserve(t.Context(), cl)
				if err != nil {
					var ref *limits.Refusal
					if !errors.As(err, &ref) || ref.Kind != limits.BudgetExhausted {
						t.Errorf("unexpected refusal: %v", err)
						return
					}
					refused.Add(1)
					continue
				}
				passed.Add(1)
				if rnd.IntN(10) == 0 {
					r.l.Release(res)
					continue
				}
				u := limits.Usage{InputTokens: cl.InputTokens * int64(rnd.IntN(3)) / 2, OutputTokens: cl.MaxTokens * int64(rnd.IntN(4)) / 3}
				u.CachedInputTokens = cl.InputTokens - u.InputTokens
				cost := gpt.Price.Cost(u)
				if cost > res.Cost() {
					t.Errorf("actual %v above worst %v", cost, res.Cost())
				}
				settled.Add(int64(cost))
				r.l.Settle(res, u, cost)
			}
		}()
	}
	wg.Wait()
	for _, r := range rs {
		if err := r.b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	var spent, leased, forfeited int64
	if err := pool.QueryRow(t.Context(), "SELECT spent, leased, forfeited FROM limits_budget_accounts").Scan(&spent, &leased, &forfeited); err != nil {
		t.Fatal(err)
	}
	if limits.Money(spent) > limit || spent != settled.Load() || leased != 0 || forfeited != 0 {
		t.Errorf("database: spent %v (settled %v), leased %v, forfeited %v; limit %v", limits.Money(spent),
			limits.Money(settled.Load()), limits.Money(leased), limits.Money(forfeited), limit)
	}
	if refused.Load() == 0 || limits.Money(spent) < limit/2 {
		t.Errorf("the budget was not pressed: %d passed, %d refused, spent %v", passed.Load(), refused.Load(), limits.Money(spent))
	}
	t.Logf("%d passed, %d refused, spent %v of %v", passed.Load(), refused.Load(), limits.Money(spent), limit)
}
