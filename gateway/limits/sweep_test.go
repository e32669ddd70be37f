package limits

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

var tz = time.Date(2026, 7, 14, 10, 0, 0, 0, time.UTC)

type testClock struct{ ns atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestLimiter(t *testing.T, b Backend, rls ...RateLimit) (*Limiter, *testClock) {
	t.Helper()
	c := &testClock{}
	c.ns.Store(tz.UnixNano())
	l := New(Options{Backend: b, Now: c.now})
	if err := l.Apply(t.Context(), Definitions{RateLimits: rls}); err != nil {
		t.Fatal(err)
	}
	return l, c
}

func eachUser(req, tok int64) RateLimit {
	return RateLimit{Securable: 7, SecurableName: "svc", Level: LevelEachUser, Requests: req, Tokens: tok}
}

func call(subj catalog.ID, in, out int64) *Call {
	return &Call{Kind: ModelService, Securable: 7, Subject: subj, InputTokens: in, MaxTokens: out}
}

// Idle windows are swept: memory follows the callers of the last window.
func TestSweepIdleWindows(t *testing.T) {
	l, c := newTestLimiter(t, NewMemory(nil), eachUser(10, 0))
	for u := range 20_000 {
		if _, err := l.Reserve(t.Context(), call(catalog.ID(1+u), 0, 0)); err != nil {
			t.Fatal(err)
		}
		if u == 9_999 {
			c.advance(2 * time.Minute) // the first 10,000 are idle from here on
		}
	}
	if n := l.windows.size(); n > 16_000 {
		t.Errorf("%d windows live for 10,000 active callers", n)
	}
	// A swept caller starts afresh; an active one keeps its count.
	for range 9 {
		if _, err := l.Reserve(t.Context(), call(20_000, 0, 0)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Reserve(t.Context(), call(20_000, 0, 0)); err == nil {
		t.Error("the 11th call of an active caller passed")
	}
}

// A settle that charges usage above the reservation after the window was
// swept (a call longer than the window) charges the live window.
func TestSettleAfterSweep(t *testing.T) {
	l, c := newTestLimiter(t, NewMemory(nil), eachUser(100, 1000))
	r, err := l.Reserve(t.Context(), call(1, 100, 100))
	if err != nil {
		t.Fatal(err)
	}
	c.advance(90 * time.Second)
	key := slotKey{7, ScopePrincipal, 1}
	w := l.windows.get(key, l.now, l.backend)
	w.Lock()
	w.Put(c.now(), r.w[0].at, r.w[0].n) // as if the window had emptied
	w.Unlock()
	// Fill the shard until it sweeps.
	for p := catalog.ID(1000); ; p++ {
		k := slotKey{8, ScopePrincipal, p}
		if k.hash()>>58 == key.hash()>>58 {
			l.windows.get(k, l.now, l.backend)
		}
		w.Lock()
		retired := w.(*memWindow).retired
		w.Unlock()
		if retired {
			break
		}
		if p > 100_000 {
			t.Fatal("the idle window was never swept")
		}
	}
	l.Settle(r, Usage{InputTokens: 600, OutputTokens: 300}, 0) // 900: 700 above the reservation
	if _, err := l.Reserve(t.Context(), call(1, 200, 200)); err == nil {
		t.Error("the extra charge was lost with the swept window")
	}
	if _, err := l.Reserve(t.Context(), call(1, 200, 100)); err != nil {
		t.Errorf("300 tokens with 700 charged under 1000: %v", err)
	}
}

// refillBackend is a shared backend in miniature: its windows admit only
// against an allowance that Refill grants.
type refillBackend struct {
	Memory
	grant   int64 // units Refill grants; -1: Refill fails
	refills atomic.Int64
}

type allowanceWindow struct {
	*memWindow
	b     *refillBackend
	allow int64
}

func (b *refillBackend) Window(k WindowKey) Window {
	return &allowanceWindow{memWindow: b.Memory.Window(k).(*memWindow), b: b}
}

func (w *allowanceWindow) Take(now time.Time, n, limit Units) Verdict {
	if n[Requests] > w.allow {
		return Verdict{Refill: true, Wait: time.Second}
	}
	v := w.memWindow.Take(now, n, limit)
	if v.OK {
		w.allow -= n[Requests]
	}
	return v
}

func (w *allowanceWindow) Refill(_ context.Context, _ time.Time, n, _ Units) error {
	w.b.refills.Add(1)
	if w.b.grant < 0 {
		return errors.New("store unreachable")
	}
	w.Lock()
	w.allow += w.b.grant
	w.Unlock()
	return nil
}

func TestReserveRefills(t *testing.T) {
	b := &refillBackend{grant: 2}
	l, _ := newTestLimiter(t, b, eachUser(10, 0))
	for i := range 4 {
		if _, err := l.Reserve(t.Context(), call(1, 0, 0)); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := b.refills.Load(); n != 2 {
		t.Errorf("%d refills for 4 calls with leases of 2, want 2", n)
	}
	b.grant = -1
	for range 2 {
		if _, err := l.Reserve(t.Context(), call(2, 0, 0)); err == nil {
			t.Fatal("admitted without an allowance")
		}
	}
	if n := b.refills.Load(); n != 4 {
		t.Errorf("%d refills, want one more per refused call", n)
	}
}
