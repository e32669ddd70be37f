// Package limitstest is the conformance suite of limits.Backend: every
// backend (in memory, PostgreSQL) runs Run and must pass it.
package limitstest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
)

// Run runs the suite; newBackend returns a fresh, empty backend (no
// spend recorded) for each subtest.
func Run(t *testing.T, newBackend func(t *testing.T) limits.Backend) {
	t.Run("WindowLimit", func(t *testing.T) { testWindowLimit(t, newBackend(t)) })
	t.Run("WindowDims", func(t *testing.T) { testWindowDims(t, newBackend(t)) })
	t.Run("WindowSlides", func(t *testing.T) { testWindowSlides(t, newBackend(t)) })
	t.Run("WindowPutAdd", func(t *testing.T) { testWindowPutAdd(t, newBackend(t)) })
	t.Run("WindowConcurrent", func(t *testing.T) { testWindowConcurrent(t, newBackend(t)) })
	t.Run("Account", func(t *testing.T) { testAccount(t, newBackend(t)) })
	t.Run("AccountMonths", func(t *testing.T) { testAccountMonths(t, newBackend(t)) })
	t.Run("AccountConcurrent", func(t *testing.T) { testAccountConcurrent(t, newBackend(t)) })
}

// t0 is a bucket-aligned instant.
var t0 = time.Date(2026, 7, 14, 10, 0, 0, 0, time.UTC)

func key(p catalog.ID) limits.WindowKey {
	return limits.WindowKey{Securable: 1, Scope: limits.ScopePrincipal, Principal: p}
}

// req is n requests (tokens not limited).
func req(n int64) limits.Units { return limits.Units{n, 0} }

// take takes with the lock held, refilling as a shared backend may ask.
func take(t *testing.T, w limits.Window, now time.Time, n, limit limits.Units) limits.Verdict {
	t.Helper()
	for range 10 {
		w.Lock()
		v := w.Take(now, n, limit)
		w.Unlock()
		if !v.Refill {
			return v
		}
		if err := w.Refill(t.Context(), now, n, limit); err != nil {
			return limits.Verdict{Wait: time.Second}
		}
	}
	t.Fatal("Take asks for a refill forever")
	return limits.Verdict{}
}

func testWindowLimit(t *testing.T, b limits.Backend) {
	w := b.Window(key(1))
	for i := range 10 {
		v := take(t, w, t0.Add(time.Duration(i)*100*time.Millisecond), req(1), req(10))
		if !v.OK {
			t.Fatalf("take %d refused under the limit: %+v", i, v)
		}
		// The charge leaves the window at t0+61s.
		if want := 61*time.Second - time.Duration(i)*100*time.Millisecond; v.Remaining[0] != int64(9-i) || v.Reset[0] != want {
			t.Errorf("take %d: remaining %d, reset %v; want %d, %v", i, v.Remaining[0], v.Reset[0], 9-i, want)
		}
	}
	v := take(t, w, t0.Add(2*time.Second), req(1), req(10))
	if v.OK || v.Dim != limits.Requests {
		t.Fatalf("11th unit admitted within the window: %+v", v)
	}
	// Everything was charged in bucket t0: it leaves at t0+61s.
	if want := 59 * time.Second; v.Wait != want {
		t.Errorf("Wait = %v, want %v", v.Wait, want)
	}
	// The limit is the caller's: a raised limit applies to the count.
	if v := take(t, w, t0.Add(3*time.Second), req(5), req(15)); !v.OK {
		t.Errorf("refused under a raised limit: %+v", v)
	}
	if v := take(t, w, t0, req(101), req(100)); v.OK || v.Wait != limits.Never {
		t.Errorf("a take larger than the limit: %+v, want refused with Wait=Never", v)
	}
	w.Lock()
	rem, reset := w.Status(t0.Add(30*time.Second), req(20))
	w.Unlock()
	// 15 charged: 10 in bucket t0, 5 in bucket t0+3s (empty at t0+64s).
	if rem[0] != 5 || reset[0] != 34*time.Second {
		t.Errorf("Status = %d, %v; want 5, 34s", rem[0], reset[0])
	}
}

func testWindowDims(t *testing.T, b limits.Backend) {
	w := b.Window(key(5))
	lim := limits.Units{3, 100}
	if v := take(t, w, t0, limits.Units{1, 60}, lim); !v.OK || v.Remaining != (limits.Units{2, 40}) {
		t.Fatalf("first: %+v", v)
	}
	// Tokens have no room, requests do: refused on tokens, nothing charged.
	v := take(t, w, t0.Add(time.Second), limits.Units{1, 60}, lim)
	if v.OK || v.Dim != limits.Tokens || v.Wait != 60*time.Second {
		t.Fatalf("over the token limit: %+v", v)
	}
	// A dimension with limit 0 is neither checked nor charged.
	if v := take(t, w, t0.Add(time.Second), limits.Units{1, 1000}, limits.Units{3, 0}); !v.OK {
		t.Fatalf("tokens unlimited: %+v", v)
	}
	if v := take(t, w, t0.Add(time.Second), limits.Units{1, 40}, lim); !v.OK || v.Remaining != (limits.Units{0, 0}) {
		t.Fatalf("exactly at both limits: %+v", v)
	}
	v = take(t, w, t0.Add(2*time.Second), limits.Units{1, 1}, lim)
	if v.OK || v.Dim != limits.Requests || v.Wait != 59*time.Second {
		t.Fatalf("both dimensions full: %+v (want the requests refusal and the later of the two waits)", v)
	}
	w.Lock()
	rem, reset := w.Status(t0.Add(2*time.Second), lim)
	w.Unlock()
	if rem != (limits.Units{0, 0}) || reset != [2]time.Duration{60 * time.Second, 60 * time.Second} {
		t.Errorf("Status = %v, %v", rem, reset)
	}
}

func testWindowSlides(t *testing.T, b limits.Backend) {
	w := b.Window(key(2))
	if v := take(t, w, t0.Add(500*time.Millisecond), req(5), req(10)); !v.OK {
		t.Fatal(v)
	}
	if v := take(t, w, t0.Add(30*time.Second), req(5), req(10)); !v.OK {
		t.Fatal(v)
	}
	// 60.9 s after the first charge its bucket still counts.
	if v := take(t, w, t0.Add(60*time.Second+900*time.Millisecond), req(1), req(10)); v.OK {
		t.Fatal("the first bucket stopped counting before 61 s")
	} else if v.Wait != 100*time.Millisecond {
		t.Errorf("Wait = %v, want 100ms", v.Wait)
	}
	if v := take(t, w, t0.Add(61*time.Second), req(5), req(10)); !v.OK {
		t.Fatalf("the first bucket still counts at 61 s: %+v", v)
	}
	if v := take(t, w, t0.Add(61*time.Second), req(1), req(10)); v.OK {
		t.Fatal("admitted beyond the limit")
	}
	w.Lock()
	retired := w.Retire(t0.Add(121 * time.Second))
	w.Unlock()
	if retired {
		t.Error("retired while the charge at 61 s still counts")
	}
	w.Lock()
	retired = w.Retire(t0.Add(122 * time.Second))
	v := w.Take(t0.Add(122*time.Second), req(1), req(10))
	added := w.Add(t0.Add(122*time.Second), limits.StampOf(t0.Add(122*time.Second)), req(1))
	w.Unlock()
	if !retired {
		t.Error("not retired 61 s after the last charge")
	}
	if !v.Retired || v.OK || added {
		t.Errorf("a retired window took %+v, added %v", v, added)
	}
}

func testWindowPutAdd(t *testing.T, b limits.Backend) {
	w := b.Window(key(3))
	v0 := take(t, w, t0, req(8), req(10))
	if !v0.OK {
		t.Fatal(v0)
	}
	w.Lock()
	w.Put(t0.Add(time.Second), v0.At, req(6)) // refund: 2 stay charged at t0
	w.Unlock()
	if v := take(t, w, t0.Add(2*time.Second), req(8), req(10)); !v.OK {
		t.Fatalf("refund not given back: %+v", v)
	}
	w.Lock()
	w.Add(t0.Add(3*time.Second), v0.At, req(5)) // usage above a reservation: 7 at t0
	rem, _ := w.Status(t0.Add(3*time.Second), req(10))
	w.Unlock()
	if rem[0] != 0 {
		t.Errorf("remaining %d after an extra charge over the limit, want 0", rem[0])
	}
	if v := take(t, w, t0.Add(60*time.Second+500*time.Millisecond), req(1), req(10)); v.OK {
		t.Error("admitted while extra charges keep the window over its limit")
	}
	// At 61.5 s bucket t0 has left: a Put for it changes nothing.
	now := t0.Add(61*time.Second + 500*time.Millisecond)
	w.Lock()
	w.Put(now, v0.At, req(100))
	rem, _ = w.Status(now, req(10))
	w.Unlock()
	if rem[0] != 2 {
		t.Errorf("remaining %d at 61.5 s, want 2 (the 8 units of t0+2s still count)", rem[0])
	}
	// An Add for a bucket that has left charges the current one.
	w.Lock()
	w.Add(now, v0.At, req(2))
	rem, _ = w.Status(now, req(10))
	w.Unlock()
	if rem[0] != 0 {
		t.Errorf("remaining %d after a late extra charge, want 0", rem[0])
	}
}

func testWindowConcurrent(t *testing.T, b limits.Backend) {
	w := b.Window(key(4))
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if take(t, w, t0, limits.Units{1, 3}, limits.Units{100, 1000}).OK {
					ok.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 100 {
		t.Errorf("%d units admitted by 16 goroutines, want exactly 100", ok.Load())
	}
}

func ledger(t *testing.T, b limits.Backend, month limits.Month) limits.Ledger {
	t.Helper()
	bud := &limits.Budget{Name: "b", Limit: 10 * limits.USD, Level: limits.LevelEachUser}
	l, err := b.Ledger(context.Background(), bud, month)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func takeMoney(t *testing.T, a limits.Account, m limits.Month, amount, limit limits.Money) bool {
	t.Helper()
	for range 10 {
		a.Lock()
		v := a.Take(m, amount, limit)
		a.Unlock()
		if !v.Refill {
			return v.OK
		}
		if err := a.Refill(t.Context(), m, amount, limit); err != nil {
			return false
		}
	}
	t.Fatal("Take asks for a refill forever")
	return false
}

func testAccount(t *testing.T, b limits.Backend) {
	m := limits.MonthOf(t0)
	l := ledger(t, b, m)
	a := l.Account(7)
	if l.Account(7) != a {
		t.Error("Account returns a different account for the same principal")
	}
	const limit = 10 * limits.USD
	if !takeMoney(t, a, m, 6*limits.USD, limit) {
		t.Fatal("refused under the limit")
	}
	if takeMoney(t, a, m, 5*limits.USD, limit) {
		t.Fatal("reserved beyond the limit")
	}
	a.Lock()
	a.Settle(m, 6*limits.USD, 2*limits.USD) // actual below the worst case
	s, r := a.State(m)
	a.Unlock()
	if s != 2*limits.USD || r != 0 {
		t.Fatalf("State = %v, %v; want 2.00, 0", s, r)
	}
	if !takeMoney(t, a, m, 8*limits.USD, limit) {
		t.Fatal("refused with exactly the remaining amount")
	}
	a.Lock()
	a.Put(m, 8*limits.USD)
	s, r = a.State(m)
	a.Unlock()
	if s != 2*limits.USD || r != 0 {
		t.Fatalf("after Put: State = %v, %v; want 2.00, 0", s, r)
	}
	got := l.Accounts(m)
	if len(got) != 1 || got[0].Principal != 7 || got[0].Spent != 2*limits.USD {
		t.Errorf("Accounts = %+v", got)
	}
}

func testAccountMonths(t *testing.T, b limits.Backend) {
	m := limits.MonthOf(t0)
	l := ledger(t, b, m)
	a := l.Account(0)
	if !takeMoney(t, a, m, 9*limits.USD, 10*limits.USD) {
		t.Fatal("refused")
	}
	// A new month starts afresh; the old month's settle is ignored.
	if !takeMoney(t, a, m+1, 9*limits.USD, 10*limits.USD) {
		t.Fatal("last month's reservation counted in the new month")
	}
	a.Lock()
	a.Settle(m, 9*limits.USD, 9*limits.USD)
	s, r := a.State(m + 1)
	a.Unlock()
	if s != 0 || r != 9*limits.USD {
		t.Errorf("State(next month) = %v, %v; want 0, 9.00", s, r)
	}
	if takeMoney(t, a, m, limits.USD, 10*limits.USD) {
		t.Error("admitted against a month that has passed")
	}
}

func testAccountConcurrent(t *testing.T, b limits.Backend) {
	m := limits.MonthOf(t0)
	a := ledger(t, b, m).Account(1)
	var wg sync.WaitGroup
	var passed atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if takeMoney(t, a, m, limits.USD/10, 10*limits.USD) {
					passed.Add(1)
					a.Lock()
					a.Settle(m, limits.USD/10, limits.USD/10)
					a.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	a.Lock()
	s, r := a.State(m)
	a.Unlock()
	// 800 calls of 0.10 USD against 10 USD: exactly 100 pass.
	if s != 10*limits.USD || passed.Load() != 100 {
		t.Errorf("spent %v in %d calls, want 10.00 in 100", s, passed.Load())
	}
	if r != 0 {
		t.Errorf("reserved %v left after every call settled", r)
	}
}
