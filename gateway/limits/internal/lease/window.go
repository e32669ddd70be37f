package lease

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/gateway/limits"
)

// DenyTTL bounds how long a lender's refusal is answered locally without
// asking again (other takers may give units back).
const DenyTTL = time.Second

// Entry is a count of units in one bucket.
type Entry struct {
	S limits.Stamp
	N limits.Units
}

// State is where a lease is in its life.
type State uint8

const (
	Open    State = iota // takes are served from it
	Closing              // ended; its close is to be sent
	Sending              // its close is in flight (a transport that dates the close by the answer)
	Closed               // the lender holds its used units; changes are sent as deltas
)

// Lease is one grant of units from the lender.
type Lease struct {
	ID             int64
	End            int64 // local ns: usable before
	Granted, Avail limits.Units
	Used           []Entry // by local bucket (refunds find their lease)
	State          State
	// At is the lender's bucket of the lease: where an open lease is
	// counted (PostgreSQL) or where a closed one's used units were charged
	// (node API). Off is the lender's time − local time, an upper bound,
	// where the transport dates buckets itself (PostgreSQL).
	At  limits.Stamp
	Off int64
}

// UsedTotal is the units used from the lease.
func (l *Lease) UsedTotal() limits.Units {
	var u limits.Units
	for _, e := range l.Used {
		u[0], u[1] = SatAdd(u[0], e.N[0]), SatAdd(u[1], e.N[1])
	}
	return u
}

// Delta is a change to send to the lender: a refund (negative) or an
// extra charge of lease Lease (0: none) at the lender's bucket Bucket (0:
// the lender's current one, where the transport allows it).
type Delta struct {
	Lease  int64
	Bucket limits.Stamp
	N      limits.Units
}

// Denial is the lender's last refusal, answered locally until Until
// (local ns) for the same limit while the units do not fit Free. Dim and
// Wait are the lender's verdict at local time At, for transports whose
// lender computes it.
type Denial struct {
	Until       int64
	Limit, Free limits.Units
	Dim         limits.Dim
	Wait        time.Duration
	At          int64
}

// Grant is what a lease round trip asks for.
type Grant struct {
	Limit limits.Units
	// Need is the call's units; Demand what the calls waiting on the key
	// in this process need together (Need × waiters); Want the
	// speculative part (a busy key), see Window.
	Need, Demand, Want limits.Units
	// Prefetch: asked ahead of need, in the background (Need is then the
	// last call's size and nothing waits for it).
	Prefetch bool
	// Start is the local time the grant was asked at: leased units are
	// usable until Start + WindowLease.
	Start int64
}

// Transport is what a Window needs of its lender: the round trip, the
// lender's view of the other takers, and the transport's own dating of
// refunds and extra charges. Methods other than Grant are called with the
// window locked.
type Transport interface {
	// Grant leases units in one round trip (with whatever the transport
	// carries along) and applies the answer under the window's lock: a new
	// lease (Window.AddLease) or a refusal (Window.Deny). Called with the
	// window's Ops held and the window unlocked. A failure wraps
	// limits.ErrUnavailable.
	Grant(ctx context.Context, g *Grant) error
	// Remaining is the window's remaining units and time until empty.
	Remaining(now time.Time, limit limits.Units) (limits.Units, [2]time.Duration)
	// Refusal is the verdict of a take of m refused by dn; Wait 0 when dn
	// does not refuse m.
	Refusal(now time.Time, m, limit limits.Units, dn *Denial) limits.Verdict
	// RefundBucket is the lender's bucket of units used at local bucket
	// at from the closed lease l.
	RefundBucket(l *Lease, at limits.Stamp) limits.Stamp
	// Charge records n more units used at local bucket target (now is s)
	// with the lender: l is the newest lease that used target, or nil.
	Charge(l *Lease, target, s limits.Stamp, n limits.Units)
	// Drop is asked, with Ops held and the own usage gone, whether the
	// window may be retired; it hands on what is still to be sent, or
	// declines.
	Drop() bool
}

// Client is what a backend's windows share: its clock, the lease term,
// whether it is closed, and the windows that have leases or something to
// send (for the transport's background sync).
type Client struct {
	// Now is the Limiter's clock.
	Now func() time.Time
	// WindowLease is how long leased units may be used from when the grant
	// was asked.
	WindowLease time.Duration
	// Closed: no more prefetches.
	Closed atomic.Bool

	mu      sync.Mutex
	windows map[*Window]struct{}
}

// Windows lists the windows with leases not yet closed or something to
// send.
func (c *Client) Windows() []*Window {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := make([]*Window, 0, len(c.windows))
	for w := range c.windows {
		ws = append(ws, w)
	}
	return ws
}

// CloseAll ends every open lease of the client's windows (Close: the
// transport's sync then sends their closes).
func (c *Client) CloseAll() {
	for _, w := range c.Windows() {
		w.Lock()
		w.CloseAll()
		w.Unlock()
	}
}

// Window is one rate-limit key as this process sees it: its own usage by
// bucket (exact, in the Limiter's clock), the leases it holds and what it
// has to send; it implements limits.Window with a Transport. Takes are
// served from open leases in memory; Refill leases more in one round trip.
// The fields are the transport's to read and change under the lock.
type Window struct {
	sync.Mutex
	Key limits.WindowKey
	T   Transport
	C   *Client

	Retired    bool
	registered bool

	Hist  []Entry // own usage by local bucket, oldest first
	Total limits.Units

	// Leases, oldest first: their states run closed …, sending, closing,
	// open along the slice (leases end in grant order: grants on a key are
	// serialized by Ops and all last WindowLease).
	Leases []*Lease
	Deltas []Delta
	Deny   *Denial

	// Ops serializes the window's round trips.
	Ops         Sem
	waiters     atomic.Int32
	prefetching bool

	wantAt           limits.Stamp // maybePrefetch's cache of want
	wantFor, wantVal limits.Units
}

// Init sets up a window of client c for key with transport t.
func (w *Window) Init(c *Client, key limits.WindowKey, t Transport) {
	w.C, w.Key, w.T, w.Ops = c, key, t, NewSem()
}

// Mask is n without the dimensions limit does not limit.
func Mask(n, limit limits.Units) limits.Units {
	var m limits.Units
	for d := range m {
		if limit[d] > 0 {
			m[d] = max(n[d], 0)
		}
	}
	return m
}

// Fits reports whether n fits avail in both dimensions.
func Fits(n, avail limits.Units) bool { return n[0] <= avail[0] && n[1] <= avail[1] }

// SatAdd is a + b, saturated.
func SatAdd(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}

// AddAt adds n at bucket s of a sorted entry list (s is usually the last).
func AddAt(es []Entry, s limits.Stamp, n limits.Units) []Entry {
	i := len(es)
	for i > 0 && es[i-1].S > s {
		i--
	}
	if i > 0 && es[i-1].S == s {
		es[i-1].N[0] = SatAdd(es[i-1].N[0], n[0])
		es[i-1].N[1] = SatAdd(es[i-1].N[1], n[1])
		return es
	}
	es = append(es, Entry{})
	copy(es[i+1:], es[i:])
	es[i] = Entry{s, n}
	return es
}

// Find is the entry of bucket s, or nil.
func Find(es []Entry, s limits.Stamp) *Entry {
	for i := len(es) - 1; i >= 0; i-- {
		switch {
		case es[i].S == s:
			return &es[i]
		case es[i].S < s:
			return nil
		}
	}
	return nil
}

// Register notes the window for the background sync. Locked.
func (w *Window) Register() {
	if !w.registered {
		w.registered = true
		w.C.mu.Lock()
		if w.C.windows == nil {
			w.C.windows = map[*Window]struct{}{}
		}
		w.C.windows[w] = struct{}{}
		w.C.mu.Unlock()
	}
}

// Unregister drops the window from the background sync. Locked.
func (w *Window) Unregister() {
	if w.registered {
		w.registered = false
		w.C.mu.Lock()
		delete(w.C.windows, w)
		w.C.mu.Unlock()
	}
}

// Expire drops the own buckets that left the window at bucket s, and the
// closed leases none of whose units count any more.
func (w *Window) Expire(s limits.Stamp) {
	i := 0
	for i < len(w.Hist) && int64(s-w.Hist[i].S) >= limits.Buckets {
		w.Total[0] -= w.Hist[i].N[0]
		w.Total[1] -= w.Hist[i].N[1]
		i++
	}
	if i > 0 {
		w.Hist = append(w.Hist[:0], w.Hist[i:]...)
	}
	k := 0
	for k < len(w.Leases) {
		l := w.Leases[k]
		if l.State != Closed || (len(l.Used) > 0 && int64(s-l.Used[len(l.Used)-1].S) < limits.Buckets) {
			break
		}
		k++
	}
	if k > 0 {
		n := copy(w.Leases, w.Leases[k:])
		clear(w.Leases[n:])
		w.Leases = w.Leases[:n]
	}
}

// EndLeases moves the open leases past their end to closing.
func (w *Window) EndLeases(ns int64) {
	for i := len(w.Leases) - 1; i >= 0; i-- {
		l := w.Leases[i]
		if l.State == Closed {
			break // the rest are closed too
		}
		if l.State == Open && ns >= l.End {
			w.closeLease(l)
		}
	}
}

func (w *Window) closeLease(l *Lease) {
	l.State, l.Avail = Closing, limits.Units{}
	w.Register()
}

// CloseAll ends every open lease (Close, Retire).
func (w *Window) CloseAll() {
	for _, l := range w.Leases {
		if l.State == Open {
			w.closeLease(l)
		}
	}
}

// AddLease takes in a lease granted at local time start. Locked.
//
// Leases must end in slice order (EndLeases, fit and Expire rely on it),
// but a Refill's start is the caller's clock reading, taken before it
// waited for Ops: a prefetch granted meanwhile may end later than this
// lease. Such open leases end with this one instead (using units for
// less time than granted is always safe).
func (w *Window) AddLease(l *Lease, start int64) {
	l.End, l.Avail = start+int64(w.C.WindowLease), l.Granted
	for i := len(w.Leases) - 1; i >= 0 && w.Leases[i].State == Open; i-- {
		w.Leases[i].End = min(w.Leases[i].End, l.End)
	}
	w.Leases = append(w.Leases, l)
	w.Deny = nil
	w.Register()
}

// Holds reports whether the window has leases not yet closed or deltas to
// send. Locked.
func (w *Window) Holds() bool {
	if len(w.Deltas) > 0 {
		return true
	}
	for _, l := range w.Leases {
		if l.State != Closed {
			return true
		}
	}
	return false
}

// fit is the oldest open lease with room for m (it ends first).
func (w *Window) fit(m limits.Units) *Lease {
	var f *Lease
	for i := len(w.Leases) - 1; i >= 0 && w.Leases[i].State == Open; i-- {
		if Fits(m, w.Leases[i].Avail) {
			f = w.Leases[i]
		}
	}
	return f
}

// OpenAvail is what the open leases have left.
func (w *Window) OpenAvail() limits.Units {
	var avail limits.Units
	for i := len(w.Leases) - 1; i >= 0 && w.Leases[i].State == Open; i-- {
		avail[0], avail[1] = avail[0]+w.Leases[i].Avail[0], avail[1]+w.Leases[i].Avail[1]
	}
	return avail
}

func (w *Window) charge(s limits.Stamp, n limits.Units) {
	w.Hist = AddAt(w.Hist, s, n)
	w.Total[0], w.Total[1] = SatAdd(w.Total[0], n[0]), SatAdd(w.Total[1], n[1])
}

// Take implements limits.Window.
func (w *Window) Take(now time.Time, n, limit limits.Units) limits.Verdict {
	if w.Retired {
		return limits.Verdict{Retired: true}
	}
	ns := now.UnixNano()
	s := limits.StampOf(now)
	w.Expire(s)
	m := Mask(n, limit)
	for d := range limit {
		if limit[d] > 0 && m[d] > limit[d] {
			return limits.Verdict{Dim: limits.Dim(d), Wait: limits.Never}
		}
	}
	if m != (limits.Units{}) {
		w.EndLeases(ns)
		l := w.fit(m)
		if l == nil {
			if dn := w.Deny; dn != nil && ns < dn.Until && dn.Limit == limit {
				if v := w.T.Refusal(now, m, limit, dn); v.Wait != 0 {
					return v
				}
			}
			v := limits.Verdict{Refill: true, Wait: time.Second}
			if len(w.Leases) > 0 && m[limits.Requests] == 0 {
				v.Dim = limits.Tokens
			}
			return v
		}
		l.Avail[0] -= m[0]
		l.Avail[1] -= m[1]
		l.Used = AddAt(l.Used, s, m)
		w.charge(s, m)
		w.maybePrefetch(ns, l, m, limit)
	}
	v := limits.Verdict{OK: true, At: s}
	v.Remaining, v.Reset = w.T.Remaining(now, limit)
	return v
}

// Put implements limits.Window: units given back go back to their open
// lease, or to the lender as a refund from a closed one (a close in
// flight carries them: counted too long, safe).
func (w *Window) Put(now time.Time, at limits.Stamp, n limits.Units) {
	if w.Retired {
		return
	}
	w.Expire(limits.StampOf(now))
	e := Find(w.Hist, at)
	if e == nil {
		return
	}
	var k limits.Units
	for d := range k {
		k[d] = min(max(n[d], 0), e.N[d])
		e.N[d] -= k[d]
		w.Total[d] -= k[d]
	}
	for i := len(w.Leases) - 1; i >= 0 && k != (limits.Units{}); i-- {
		l := w.Leases[i]
		e := Find(l.Used, at)
		if e == nil {
			continue
		}
		var x limits.Units
		for d := range x {
			x[d] = min(k[d], e.N[d])
			e.N[d] -= x[d]
			k[d] -= x[d]
		}
		switch l.State {
		case Open:
			l.Avail[0] += x[0]
			l.Avail[1] += x[1]
		case Closed:
			w.Deltas = append(w.Deltas, Delta{l.ID, w.T.RefundBucket(l, at), limits.Units{-x[0], -x[1]}})
			w.Register()
		}
	}
}

// Add implements limits.Window: usage beyond a reservation is charged to
// the bucket of the admission while it counts, else to now.
func (w *Window) Add(now time.Time, at limits.Stamp, n limits.Units) bool {
	if w.Retired {
		return false
	}
	s := limits.StampOf(now)
	w.Expire(s)
	n = limits.Units{max(n[0], 0), max(n[1], 0)}
	if n == (limits.Units{}) {
		return true
	}
	target := s
	if Find(w.Hist, at) != nil {
		target = at
	}
	w.charge(target, n)
	var l *Lease
	for i := len(w.Leases) - 1; i >= 0 && l == nil; i-- {
		if Find(w.Leases[i].Used, target) != nil {
			l = w.Leases[i]
		}
	}
	w.Register()
	w.T.Charge(l, target, s, n)
	return true
}

// Status implements limits.Window.
func (w *Window) Status(now time.Time, limit limits.Units) (limits.Units, [2]time.Duration) {
	w.Expire(limits.StampOf(now))
	return w.T.Remaining(now, limit)
}

// Retire implements limits.Window: the window is dropped once none of its
// own units count any more, no round trip is in flight and the transport
// agrees.
func (w *Window) Retire(now time.Time) bool {
	if w.Retired {
		return true
	}
	w.Expire(limits.StampOf(now))
	if len(w.Hist) > 0 || !w.Ops.TryAcquire() {
		return false
	}
	defer w.Ops.Release()
	if !w.T.Drop() {
		return false
	}
	w.Retired = true
	w.Unregister()
	return true
}

// want is the speculative part of a lease: when the key is busy (its
// recent use is at least 4 times the call), 1.5 times what it used in the
// last WindowLease, so that the next one is served from memory.
func (w *Window) want(ns int64, m limits.Units) limits.Units {
	lo := limits.StampOf(time.Unix(0, ns-int64(w.C.WindowLease)))
	var recent limits.Units
	for i := len(w.Hist) - 1; i >= 0 && w.Hist[i].S >= lo; i-- {
		recent[0] += w.Hist[i].N[0]
		recent[1] += w.Hist[i].N[1]
	}
	var want limits.Units
	for d := range want {
		if m[d] > 0 && recent[d] >= 4*m[d] {
			want[d] = recent[d] + recent[d]/2
		}
	}
	return want
}

// maybePrefetch leases ahead of need, in the background, when the key is
// busy and the lease serving it runs low or ends soon.
func (w *Window) maybePrefetch(ns int64, l *Lease, m, limit limits.Units) {
	if w.prefetching || w.C.Closed.Load() {
		return
	}
	// The speculative size, computed once per bucket and call size.
	s := limits.StampOf(time.Unix(0, ns))
	if w.wantAt != s || w.wantFor != m {
		w.wantAt, w.wantFor, w.wantVal = s, m, w.want(ns, m)
	}
	want := w.wantVal
	if want == (limits.Units{}) {
		return
	}
	term := int64(w.C.WindowLease)
	low := l.End-ns < term/4
	for d := range want {
		low = low || (want[d] > 0 && l.Avail[d] < want[d]/2)
	}
	if !low {
		return
	}
	// Another open lease with room is enough.
	for _, o := range w.Leases {
		if o != l && o.State == Open && o.End-ns >= term/2 && Fits(want, limits.Units{2 * o.Avail[0], 2 * o.Avail[1]}) {
			return
		}
	}
	w.prefetching = true
	go w.prefetch(m, limit, want)
}

func (w *Window) prefetch(m, limit, want limits.Units) {
	defer func() {
		w.Lock()
		w.prefetching = false
		w.Unlock()
	}()
	if !w.Ops.TryAcquire() {
		return
	}
	defer w.Ops.Release()
	_ = w.T.Grant(context.Background(), &Grant{Limit: limit, Need: m, Demand: m, Want: want, Prefetch: true, Start: w.C.Now().UnixNano()})
}

// Refill implements limits.Window: it leases units for n in one round
// trip. It returns nil when the window may now answer: a lease was
// granted, or the lender refused and the window refuses locally with the
// lender's figures; an error (limits.ErrUnavailable) when the lender could
// not be reached: the call is refused as unavailable, never admitted.
func (w *Window) Refill(ctx context.Context, now time.Time, n, limit limits.Units) error {
	m := Mask(n, limit)
	w.waiters.Add(1)
	defer w.waiters.Add(-1)
	if err := w.Ops.Acquire(ctx); err != nil {
		return err
	}
	defer w.Ops.Release()
	w.Lock()
	ns := now.UnixNano()
	w.EndLeases(ns)
	if w.Retired || w.fit(m) != nil {
		w.Unlock()
		return nil
	}
	if dn := w.Deny; dn != nil && ns < dn.Until && dn.Limit == limit && !Fits(m, dn.Free) {
		w.Unlock()
		return nil
	}
	k := int64(max(w.waiters.Load(), 1))
	g := &Grant{Limit: limit, Need: m, Demand: limits.Units{m[0] * k, m[1] * k}, Want: w.want(ns, m), Start: ns}
	w.Unlock()
	return w.T.Grant(ctx, g)
}
