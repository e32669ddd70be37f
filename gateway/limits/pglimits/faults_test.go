package pglimits_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/pglimits"
)

// costs sets a call's worst case: max_tokens at 8 USD per million output
// tokens (no input).
func costs(subj catalog.ID, usd float64) *limits.Call {
	return call(subj, 0, int64(usd*1_000_000/8))
}

func refusal(err error) limits.RefusalKind {
	var ref *limits.Refusal
	if errors.As(err, &ref) {
		return ref.Kind
	}
	return 0
}

type figures struct{ spent, leased, forfeited limits.Money }

func budgetFigures(t *testing.T, pool *pgxpool.Pool) figures {
	t.Helper()
	var f figures
	if err := pool.QueryRow(t.Context(), "SELECT spent, leased, forfeited FROM limits_budget_accounts").Scan(&f.spent, &f.leased, &f.forfeited); err != nil {
		t.Fatal(err)
	}
	return f
}

// testKillBudget: a replica killed with a slice (one call in flight)
// blocks only that slice; once its TTL passes, another replica's heartbeat
// forfeits it (charged as spent: the call in flight may have cost it), so
// the budget is never overrun, and a restarted replica works at once.
func testKillBudget(t *testing.T, e *env) {
	c := newClock(t0)
	const limit = 10 * limits.USD
	o := pglimits.Options{SyncInterval: 5 * time.Millisecond, IdleReturn: time.Hour, ContendedWait: 2 * time.Second} // generous: B must hear of the restarted replica's need in time on a loaded machine
	rs, pool, db := replicas(t, e, c, 2, o, groupBudget(limit))
	a, b := rs[0], rs[1]
	r1, err := a.l.Reserve(t.Context(), costs(alice, 2))
	if err != nil {
		t.Fatal(err)
	}
	a.l.Settle(r1, limits.Usage{OutputTokens: 125_000}, limits.USD)
	if _, err := a.l.Reserve(t.Context(), costs(alice, 2)); err != nil { // in flight when A dies
		t.Fatal(err)
	}
	a.b.Kill()
	f := budgetFigures(t, pool)
	held := f.leased // A's slice: the call in flight and what it had leased ahead
	if f.spent != limits.USD || held < 2*limits.USD || f.forfeited != 0 {
		t.Fatalf("before the TTL: %+v, want spent 1 and A's slice (at least the 2 in flight) leased", f)
	}
	left := limit - f.spent - held
	usd := func(m limits.Money) float64 { return m.USDFloat() }
	// Beside the dead replica's slice: B asks for it back, gets no answer
	// and refuses after ContendedWait.
	if _, err := b.l.Reserve(t.Context(), costs(bob, usd(left+limits.USD/2))); refusal(err) != limits.BudgetExhausted {
		t.Fatalf("more than is left beside a dead replica's slice: %v", err)
	}
	c.Advance(31 * time.Second)
	if err := b.b.Heartbeat(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f := budgetFigures(t, pool); f != (figures{spent: limits.USD, forfeited: held}) {
		t.Fatalf("after the TTL: %+v, want spent 1, forfeited %v", f, held)
	}
	if _, err := b.l.Reserve(t.Context(), costs(bob, usd(left+limits.USD/2))); refusal(err) != limits.BudgetExhausted {
		t.Fatalf("more than is left: %v", err)
	}
	r3, err := b.l.Reserve(t.Context(), costs(bob, usd(left)))
	if err != nil {
		t.Fatalf("what is left: %v", err)
	}
	st := b.l.Budgets()
	if len(st) != 1 || st[0].Spent != limits.USD+held || st[0].Reserved != left || st[0].Remaining != left {
		t.Errorf("SHOW BUDGETS on B: %+v", st)
	}
	// A restarted: a new replica on the same database.
	a2 := newReplica(t, e, db, c, o, groupBudget(limit))
	if _, err := a2.l.Reserve(t.Context(), costs(alice, 0.5)); refusal(err) != limits.BudgetExhausted {
		t.Fatalf("restarted replica beyond the budget: %v", err)
	}
	b.l.Settle(r3, limits.Usage{OutputTokens: 125_000}, left-3*limits.USD)
	// B now holds 3 USD it does not use: the restarted replica gets them
	// (B gives them back when it learns another replica is short).
	r4, err := a2.l.Reserve(t.Context(), costs(alice, 3))
	if err != nil {
		t.Fatalf("restarted replica, 3 USD unused at B: %v", err)
	}
	a2.l.Settle(r4, limits.Usage{OutputTokens: 375_000}, 3*limits.USD)
	for _, r := range []*replica{b, a2} {
		if err := r.b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if f := budgetFigures(t, pool); f != (figures{spent: limit - held, forfeited: held}) {
		t.Errorf("at the end: %+v, want spent %v, forfeited %v", f, limit-held, held)
	}
}

// testZombie: a replica cut off longer than its TTL has its slice
// forfeited; when it comes back, its next round trip revives the slice
// (it was alive: its calls are settled against it as usual).
func testZombie(t *testing.T, e *env) {
	c := newClock(t0)
	o := pglimits.Options{SyncInterval: -1}
	rs, pool, _ := replicas(t, e, c, 2, o, groupBudget(10*limits.USD))
	a, b := rs[0], rs[1]
	r, err := a.l.Reserve(t.Context(), costs(alice, 2))
	if err != nil {
		t.Fatal(err)
	}
	c.Advance(31 * time.Second)
	if err := b.b.Heartbeat(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f := budgetFigures(t, pool); f != (figures{forfeited: 2 * limits.USD}) {
		t.Fatalf("forfeited: %+v", f)
	}
	a.l.Settle(r, limits.Usage{OutputTokens: 125_000}, limits.USD)
	if err := a.b.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f := budgetFigures(t, pool); f != (figures{spent: limits.USD, leased: limits.USD}) {
		t.Errorf("after the replica came back: %+v, want spent 1, leased 1 (its unused slice)", f)
	}
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM limits_replicas WHERE replica = $1", a.b.Replica()).Scan(&n); err != nil || n != 1 {
		t.Errorf("the replica's row after it came back: %d, %v", n, err)
	}
}

// testKillWindow: the units a killed replica used stay counted until they
// age out: 61 s after the bucket its lease ended in (at most WindowLease
// after their use), never less.
func testKillWindow(t *testing.T, e *env) {
	c := newClock(t0)
	rs, _, _ := replicas(t, e, c, 2, pglimits.Options{SyncInterval: -1}, eachUser(10, 0))
	a, b := rs[0], rs[1]
	take := func(r *replica, n int) int {
		ok := 0
		for range n {
			if _, err := r.l.Reserve(t.Context(), call(alice, 0, 0)); err == nil {
				ok++
			} else if refusal(err) != limits.RateLimited {
				t.Fatalf("unexpected refusal: %v", err)
			}
		}
		return ok
	}
	if got := take(a, 3) + take(b, 3); got != 6 {
		t.Fatalf("%d of 6 admitted", got)
	}
	a.b.Kill()
	if got := take(b, 6); got != 4 {
		t.Fatalf("%d admitted with 4 left, want 4", got)
	}
	c.Set(t0.Add(61*time.Second + 500*time.Millisecond)) // B's own units (t0) have aged out, A's open leases have not
	if got := take(b, 10); got != 7 {
		t.Fatalf("at 61.5 s: %d admitted, want 7 (the dead replica's 3 still count)", got)
	}
	c.Set(t0.Add(63 * time.Second)) // A's leases ended at t0+2 s: their units count until t0+63 s
	if got := take(b, 10); got != 3 {
		t.Fatalf("at 63 s: %d admitted, want 3", got)
	}
}

// testRestart: PostgreSQL restarts under the replicas. While it is down,
// calls are served from what the replica holds, then refused with 503
// (never as over their limit); settles wait. Once it is back, the pool
// reconnects by itself, the same Limiter admits again and the settled
// spend reaches the database.
func testRestart(t *testing.T, e *env) {
	c := newClock(t0)
	defs := eachUser(1000, 0)
	defs.Budgets, defs.Members = groupBudget(100*limits.USD).Budgets, groupBudget(0).Members
	o := pglimits.Options{SyncInterval: -1, Timeout: time.Second}
	rs, pool, _ := replicas(t, e, c, 1, o, defs)
	a := rs[0]
	var settled limits.Money
	// Make both keys busy so that the replica holds slices ahead of need.
	for range 40 {
		r, err := a.l.Reserve(t.Context(), costs(alice, 0.01))
		if err != nil {
			t.Fatal(err)
		}
		a.l.Settle(r, limits.Usage{OutputTokens: 1000}, limits.USD/200)
		settled += limits.USD / 200
	}
	var during []*limits.Reservation
	e.srv.Restart(t, func() {
		served, refused := 0, 0
		for range 200 {
			r, err := a.l.Reserve(t.Context(), costs(alice, 0.01))
			switch k := refusal(err); {
			case err == nil:
				served++
				during = append(during, r)
			case k == limits.LimitUnavailable || k == limits.BudgetUnavailable:
				refused++
				t.Logf("refused: %v", err)
			default:
				t.Fatalf("while the database is down: %v", err)
			}
			if refused > 0 {
				break
			}
		}
		if refused == 0 {
			t.Fatalf("%d calls served while the database is down and none refused", served)
		}
		for _, r := range during {
			a.l.Settle(r, limits.Usage{OutputTokens: 1000}, limits.USD/200)
			settled += limits.USD / 200
		}
		_ = a.b.Sync(t.Context()) // fails: the settles wait
		t.Logf("while down: %d served from the slices held, then refused with 503", served)
	})
	ok := false
	for i := 0; i < 20 && !ok; i++ { // a pooled connection may still be the dead one
		r, err := a.l.Reserve(t.Context(), costs(alice, 0.01))
		if err == nil {
			ok = true
			a.l.Settle(r, limits.Usage{OutputTokens: 1000}, limits.USD/200)
			settled += limits.USD / 200
		}
	}
	if !ok {
		t.Fatal("the replica did not reconnect")
	}
	var err error
	for range 10 { // a failure bound: a loaded machine may need more than one Timeout
		if err = a.b.Sync(t.Context()); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if f := budgetFigures(t, pool); f.spent != settled {
		t.Errorf("spent in the database %v, settled %v", f.spent, settled)
	}
}

// testLostGrant: a grant the database committed but whose answer the
// replica never got (the round trip failed after it was sent) is closed
// by the replica's next round trip, so its units do not stay counted
// against every replica for a minute.
func testLostGrant(t *testing.T, e *env) {
	c := newClock(t0)
	rs, pool, _ := replicas(t, e, c, 2, pglimits.Options{SyncInterval: -1}, eachUser(10, 0))
	a, b := rs[0], rs[1]
	w := a.b.Window(limits.WindowKey{Securable: svc, Scope: limits.ScopePrincipal, Principal: alice})
	if err := a.b.LoseGrant(t.Context(), w, c.Now(), limits.Units{10, 0}, limits.Units{10, 0}); err != nil {
		t.Fatal(err)
	}
	units := func() int64 {
		var n int64
		if err := pool.QueryRow(t.Context(), "SELECT COALESCE(sum(requests), 0) FROM limits_window_units WHERE principal = $1", int64(alice)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := units(); n != 10 {
		t.Fatalf("the lost grant: %d units in the database, want 10", n)
	}
	if err := a.b.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := units(); n != 0 {
		t.Fatalf("after the next round trip: %d units still counted, want 0", n)
	}
	c.Advance(time.Second)
	for i := range 10 {
		if _, err := b.l.Reserve(t.Context(), call(alice, 0, 0)); err != nil {
			t.Fatalf("call %d on the other replica: %v", i, err)
		}
	}
}
