package limits_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
)

// maxInWindow returns the largest number of times within any interval
// [t, t+WindowLength); times sorted. The maximum is reached by an interval
// starting at one of the times.
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

// TestEachUserWindowConcurrent: 32 goroutines call as 4 subjects under
// 10 REQUESTS PER MINUTE FOR EACH USER while the clock runs (each call
// advances it by 0–200 ms); no interval of 60 s holds more than 10
// admissions of one subject, and the first minute holds exactly 10.
func TestEachUserWindowConcurrent(t *testing.T) {
	c := newClock(t0)
	l := newLimiter(t, c, limits.Definitions{RateLimits: []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 10, 0)}})
	subjects := []catalog.ID{alice, bob, carol, agent}
	var mu sync.Mutex
	admitted := map[catalog.ID][]time.Time{}
	var refused atomic.Int64
	var wg, started sync.WaitGroup
	started.Add(32)
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 1))
			subj := subjects[g%len(subjects)]
			for i := range 150 {
				if i == 2 { // every subject has asked 16 times at t0: the clock may run
					started.Done()
					started.Wait()
				}
				r, err := l.Reserve(t.Context(), modelCall(subj, 0, 0, 0))
				if err != nil {
					var ref *limits.Refusal
					if !errors.As(err, &ref) || ref.Kind != limits.RateLimited || ref.RetryAfter <= 0 || ref.RetryAfter > 61*time.Second {
						t.Errorf("unexpected refusal: %v", err)
					}
					refused.Add(1)
				} else {
					mu.Lock()
					admitted[subj] = append(admitted[subj], r.At())
					mu.Unlock()
					l.Settle(r, limits.Usage{}, 0)
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
		if m := maxInWindow(times); m > 10 {
			t.Errorf("%s: %d admissions within 60 s, limit 10", names[s], m)
		}
		first := 0
		for _, at := range times {
			if at.Sub(t0) < limits.WindowLength {
				first++
			}
		}
		if first != 10 {
			t.Errorf("%s: %d admissions in the first minute, want exactly 10", names[s], first)
		}
		// Over the whole run: at most 10 per 61 buckets.
		if maxTotal := 10 * (int(elapsed/(61*time.Second)) + 1); len(times) > maxTotal {
			t.Errorf("%s: %d admissions in %v", names[s], len(times), elapsed)
		}
	}
	if refused.Load() == 0 {
		t.Error("nothing was refused: the test did not press the limit")
	}
}

// TestBudgetConcurrent: 32 goroutines spend against one group budget,
// settling below the worst case or releasing; an observer checks at every
// moment that spent + reserved never exceeds the limit, and at the end
// nothing stays reserved and the spend is within the limit.
func TestBudgetConcurrent(t *testing.T) {
	c := newClock(t0)
	const limit = limits.USD
	l := newLimiter(t, c, limits.Definitions{Budgets: []limits.Budget{budget("analysts", 1, limits.LevelGroup, g1)}})
	var stop atomic.Bool
	var observed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			for _, st := range l.Budgets() {
				if st.Spent+st.Reserved > limit {
					t.Errorf("spent %v + reserved %v > limit %v", st.Spent, st.Reserved, limit)
					return
				}
			}
			observed.Add(1)
		}
	}()
	var passed, refused atomic.Int64
	var settled atomic.Int64 // nano-USD
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 2))
			subj := []catalog.ID{alice, bob}[g%2]
			for range 100 {
				call := modelCall(subj, 0, int64(500+rnd.IntN(1000)), int64(1+rnd.IntN(2000)))
				r, err := l.Reserve(t.Context(), call)
				if err != nil {
					if outcome(err) != "budget analysts" {
						t.Errorf("unexpected refusal: %v", err)
						return
					}
					refused.Add(1)
					continue
				}
				passed.Add(1)
				if rnd.IntN(10) == 0 {
					l.Release(r)
					continue
				}
				// The real usage is at most the reservation.
				u := limits.Usage{InputTokens: call.InputTokens * int64(rnd.IntN(3)) / 2, OutputTokens: call.MaxTokens * int64(rnd.IntN(4)) / 3}
				u.CachedInputTokens = call.InputTokens - u.InputTokens
				cost := gpt.Price.Cost(u)
				if cost > r.Cost() {
					t.Errorf("actual %v above worst %v", cost, r.Cost())
				}
				settled.Add(int64(cost))
				l.Settle(r, u, cost)
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	<-done
	st := l.Budgets()
	if len(st) != 1 {
		t.Fatal(st)
	}
	if st[0].Spent > limit || st[0].Reserved != 0 || st[0].Spent != limits.Money(settled.Load()) {
		t.Errorf("after the run: spent %v (settled %v), reserved %v, limit %v", st[0].Spent, limits.Money(settled.Load()), st[0].Reserved, limit)
	}
	if refused.Load() == 0 || st[0].Spent < limit/2 {
		t.Errorf("the budget was not pressed: %d passed, %d refused, spent %v", passed.Load(), refused.Load(), st[0].Spent)
	}
	t.Logf("%d passed, %d refused, spent %v of %v, %d observations", passed.Load(), refused.Load(), st[0].Spent, limit, observed.Load())
}

// TestWindowProperty: random arrivals (bursts, bucket edges) against
// random limits. No interval of 60 s admits more than N; and no call is
// refused unless the N units of the 61 buckets its admission would count
// were used (the only slack: capacity returns 60 to 61 s after use).
func TestWindowProperty(t *testing.T) {
	rnd := rand.New(rand.NewPCG(42, 42))
	for round := range 200 {
		n := int64(1 + rnd.IntN(20))
		c := newClock(t0)
		l := newLimiter(t, c, limits.Definitions{RateLimits: []limits.RateLimit{rl(svc, limits.LevelService, 0, n, 0)}})
		var admitted []time.Time
		at := t0
		for range 300 {
			switch rnd.IntN(4) {
			case 0: // a burst: same instant
			case 1: // just before or after a bucket edge
				at = at.Truncate(time.Second).Add(time.Second - time.Duration(rnd.IntN(2))*time.Nanosecond - time.Duration(rnd.IntN(2))*time.Millisecond)
			default:
				at = at.Add(time.Duration(rnd.Int64N(int64(20 * time.Second))))
			}
			c.Set(at)
			r, err := l.Reserve(t.Context(), modelCall(alice, 0, 0, 0))
			if err == nil {
				admitted = append(admitted, r.At())
				continue
			}
			// Refused: the buckets it would count hold N units.
			held := 0
			for _, a := range admitted {
				if limits.StampOf(a) >= limits.StampOf(at)-limits.Stamp(limits.Buckets-1) {
					held++
				}
			}
			if int64(held) < n {
				t.Fatalf("round %d (N=%d): refused at %v with only %d units in its window", round, n, at.Sub(t0), held)
			}
		}
		if m := maxInWindow(admitted); int64(m) > n {
			t.Fatalf("round %d: %d admissions within 60 s, limit %d", round, m, n)
		}
	}
}
