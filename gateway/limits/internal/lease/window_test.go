package lease

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/limits"
)

// fake is a lender in memory: it grants what is asked while it has room
// and records every grant.
type fake struct {
	Window
	room    limits.Units
	next    int64
	grants  []Grant
	granted chan Grant
	fail    error
}

func newFake(c *Client, room limits.Units) *fake {
	f := &fake{room: room, granted: make(chan Grant, 16)}
	f.Init(c, limits.WindowKey{Securable: 1}, f)
	return f
}

func (f *fake) Grant(_ context.Context, g *Grant) error {
	if f.fail != nil {
		return f.fail
	}
	f.Lock()
	defer f.Unlock()
	f.grants = append(f.grants, *g)
	defer func() { f.granted <- *g }()
	k := limits.Units{g.Need[0] + g.Want[0], g.Need[1] + g.Want[1]}
	if !Fits(g.Need, f.room) {
		f.Deny = &Denial{Until: g.Start + int64(DenyTTL), Limit: g.Limit, Free: f.room, Wait: time.Second, At: g.Start}
		return nil
	}
	k = limits.Units{min(k[0], f.room[0]), min(k[1], f.room[1])}
	f.room[0], f.room[1] = f.room[0]-k[0], f.room[1]-k[1]
	f.next++
	f.AddLease(&Lease{ID: f.next, Granted: k, At: 7}, g.Start)
	return nil
}

func (f *fake) Remaining(_ time.Time, limit limits.Units) (limits.Units, [2]time.Duration) {
	return limits.Units{limit[0] - f.Total[0], limit[1] - f.Total[1]}, [2]time.Duration{}
}

func (f *fake) Refusal(_ time.Time, m, _ limits.Units, dn *Denial) limits.Verdict {
	if Fits(m, dn.Free) {
		return limits.Verdict{}
	}
	return limits.Verdict{Dim: dn.Dim, Wait: dn.Wait}
}

func (f *fake) RefundBucket(l *Lease, _ limits.Stamp) limits.Stamp { return l.At }

func (f *fake) Charge(_ *Lease, _, _ limits.Stamp, n limits.Units) {
	f.Deltas = append(f.Deltas, Delta{N: n})
}

func (f *fake) Drop() bool { return !f.Holds() }

var (
	t0    = time.Unix(1_000_000, 0)
	one   = limits.Units{1, 0}
	limit = limits.Units{10, 0}
)

func client(now *time.Time) *Client {
	c := &Client{Now: func() time.Time { return *now }, WindowLease: 2 * time.Second}
	c.Closed.Store(true) // no background prefetch unless a test wants one
	return c
}

func take(t *testing.T, w *fake, now time.Time) limits.Verdict {
	t.Helper()
	w.Lock()
	defer w.Unlock()
	return w.Take(now, one, limit)
}

// A take without a lease asks for a refill; the refill's lease serves
// takes in memory until it ends, and ends in order to be closed.
func TestTakeRefillEnd(t *testing.T) {
	now := t0
	w := newFake(client(&now), limits.Units{3, 0})
	if v := take(t, w, now); !v.Refill || v.OK {
		t.Fatalf("take without a lease: %+v, want Refill", v)
	}
	if err := w.Refill(t.Context(), now, one, limit); err != nil {
		t.Fatal(err)
	}
	for i := range 2 { // the fake grants need + want = 1: one unit
		v := take(t, w, now)
		if v.OK != (i == 0) {
			t.Fatalf("take %d: %+v", i, v)
		}
	}
	if len(w.grants) != 1 || w.grants[0].Need != one || w.grants[0].Demand != one {
		t.Fatalf("grants: %+v", w.grants)
	}
	// Past the end the lease is closing and the window is registered for
	// the background sync.
	now = t0.Add(2 * time.Second)
	if v := take(t, w, now); !v.Refill {
		t.Fatalf("take after the lease's end: %+v", v)
	}
	if w.Leases[0].State != Closing || len(w.C.Windows()) != 1 {
		t.Fatalf("lease %+v, windows %d", w.Leases[0], len(w.C.Windows()))
	}
}

// A Refill's start is its caller's clock reading, taken before it waited
// for the window's round trips: a lease granted meanwhile (a prefetch
// started later) may end after it. The leases must still end in order:
// otherwise the later-granted lease, closed first, hides the earlier one
// from EndLeases: it never ends, so its close (the unused units back to
// the lender) is never sent and the window never retires.
func TestLeasesEndInOrder(t *testing.T) {
	now := t0
	w := newFake(client(&now), limits.Units{10, 0})
	w.Lock()
	w.AddLease(&Lease{ID: 1, Granted: limits.Units{5, 0}}, t0.Add(time.Second).UnixNano()) // the prefetch: ends at t0+3s
	w.AddLease(&Lease{ID: 2, Granted: limits.Units{1, 0}}, t0.UnixNano())                  // the refill: ends at t0+2s
	w.Unlock()
	now = t0.Add(2500 * time.Millisecond)
	w.Lock()
	w.EndLeases(now.UnixNano())
	for _, l := range w.Leases {
		if l.State == Closing {
			l.State = Closed // the transport closed what ended
		}
	}
	w.Unlock()
	now = t0.Add(3500 * time.Millisecond)
	if v := take(t, w, now); v.OK {
		t.Fatalf("a take at t0+3.5s was served: %+v", v)
	}
	for _, l := range w.Leases {
		if l.State == Open {
			t.Fatalf("lease %d (end %v) is still open at t0+3.5s", l.ID, time.Unix(0, l.End).Sub(t0))
		}
	}
}

// Units given back return to their open lease; from a closed lease they
// are a refund for the lender, dated by the transport.
func TestPutRefunds(t *testing.T) {
	now := t0
	w := newFake(client(&now), limits.Units{1, 0})
	if err := w.Refill(t.Context(), now, one, limit); err != nil {
		t.Fatal(err)
	}
	v := take(t, w, now)
	w.Lock()
	w.Put(now, v.At, one)
	if w.Leases[0].Avail != one || w.Total != (limits.Units{}) {
		t.Fatalf("after a put on an open lease: %+v total %v", w.Leases[0], w.Total)
	}
	w.Unlock()
	v = take(t, w, now)
	w.Lock()
	defer w.Unlock()
	w.Leases[0].State = Closed
	w.Put(now, v.At, one)
	if len(w.Deltas) != 1 || w.Deltas[0] != (Delta{Lease: 1, Bucket: 7, N: limits.Units{-1, 0}}) {
		t.Fatalf("refund from a closed lease: %+v", w.Deltas)
	}
}

// A refusal is answered locally (no round trip) until it expires; an
// unreachable lender fails the refill with ErrUnavailable.
func TestDenialAndUnavailable(t *testing.T) {
	now := t0
	w := newFake(client(&now), limits.Units{})
	if err := w.Refill(t.Context(), now, one, limit); err != nil {
		t.Fatal(err)
	}
	if v := take(t, w, now); v.OK || v.Refill || v.Wait != time.Second {
		t.Fatalf("take after a refusal: %+v", v)
	}
	if err := w.Refill(t.Context(), now, one, limit); err != nil || len(w.grants) != 1 {
		t.Fatalf("refill within the refusal: %v, %d grants", err, len(w.grants))
	}
	now = t0.Add(DenyTTL)
	if v := take(t, w, now); !v.Refill {
		t.Fatalf("take after the refusal expired: %+v", v)
	}
	w.fail = limits.ErrUnavailable
	if err := w.Refill(t.Context(), now, one, limit); !errors.Is(err, limits.ErrUnavailable) {
		t.Fatalf("refill with the lender down: %v", err)
	}
}

// A busy key (recent use at least 4 calls) leases ahead in the background
// when its lease runs low: about 1.5 times its recent use.
func TestPrefetch(t *testing.T) {
	now := t0
	w := newFake(client(&now), limits.Units{100, 0})
	w.C.Closed.Store(false)
	w.Lock()
	w.AddLease(&Lease{ID: 1, Granted: limits.Units{6, 0}}, t0.UnixNano())
	w.Unlock()
	// The speculative size is computed once per bucket: the fifth call,
	// in the next second, finds 5 recent calls and 1 unit left.
	for i := range 5 {
		if i == 4 {
			now = t0.Add(time.Second)
		}
		if v := take(t, w, now); !v.OK {
			t.Fatalf("take: %+v", v)
		}
	}
	select {
	case g := <-w.granted:
		if !g.Prefetch || g.Want != (limits.Units{7, 0}) || g.Need != one {
			t.Fatalf("prefetch: %+v", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no prefetch")
	}
}
