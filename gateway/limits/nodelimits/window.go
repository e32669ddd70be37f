package nodelimits

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
)

const sec = int64(time.Second)

type entry struct {
	s limits.Stamp
	n limits.Units
}

type leaseState uint8

const (
	leaseOpen    leaseState = iota // takes are served from it
	leaseClosing                   // ended; its close is to be sent
	leaseSending                   // its close is in flight
	leaseClosed                    // the server charged its used units at bucket at
)

// lease is one grant of units from the server.
type lease struct {
	id      int64
	end     int64 // local ns: usable before
	granted limits.Units
	avail   limits.Units
	used    []entry // by local bucket (refunds find their lease)
	state   leaseState
	at      limits.Stamp // the server's bucket of the used units (closed)
}

func (l *lease) usedTotal() limits.Units {
	var u limits.Units
	for _, e := range l.used {
		u[0], u[1] = u[0]+e.n[0], u[1]+e.n[1]
	}
	return u
}

// adj is a refund (negative) or extra charge to send.
type adj struct {
	at limits.Stamp // server bucket (refunds)
	n  limits.Units
}

type denial struct {
	until int64 // local ns
	limit limits.Units
	free  limits.Units
	dim   limits.Dim
	wait  time.Duration
	at    int64
}

// window is one rate-limit key as this node sees it: its own usage by
// bucket, the leases it holds, what it has to send.
type window struct {
	sync.Mutex
	b   *Backend
	key limits.WindowKey

	retired, registered bool

	hist  []entry
	total limits.Units

	leases []*lease
	adjs   []adj
	deny   *denial
	rem    limits.Units // the server's room at the last answer

	ops         sem
	waiters     atomic.Int32
	prefetching bool

	wantAt           limits.Stamp // maybePrefetch's cache of want
	wantFor, wantVal limits.Units
}

// Window implements limits.Backend.
func (b *Backend) Window(key limits.WindowKey) limits.Window {
	return &window{b: b, key: key, ops: newSem()}
}

func mask(n, limit limits.Units) limits.Units {
	var m limits.Units
	for d := range m {
		if limit[d] > 0 {
			m[d] = max(n[d], 0)
		}
	}
	return m
}

func fits(n, avail limits.Units) bool { return n[0] <= avail[0] && n[1] <= avail[1] }

func addAt(es []entry, s limits.Stamp, n limits.Units) []entry {
	i := len(es)
	for i > 0 && es[i-1].s > s {
		i--
	}
	if i > 0 && es[i-1].s == s {
		es[i-1].n[0] += n[0]
		es[i-1].n[1] += n[1]
		return es
	}
	es = append(es, entry{})
	copy(es[i+1:], es[i:])
	es[i] = entry{s, n}
	return es
}

func find(es []entry, s limits.Stamp) *entry {
	for i := len(es) - 1; i >= 0; i-- {
		switch {
		case es[i].s == s:
			return &es[i]
		case es[i].s < s:
			return nil
		}
	}
	return nil
}

func (w *window) register() {
	if !w.registered {
		w.registered = true
		w.b.mu.Lock()
		w.b.windows[w] = struct{}{}
		w.b.mu.Unlock()
	}
}

func (w *window) unregister() {
	if w.registered {
		w.registered = false
		w.b.mu.Lock()
		delete(w.b.windows, w)
		w.b.mu.Unlock()
	}
}

// expire drops own buckets out of the window and closed leases none of
// whose units count any more.
func (w *window) expire(s limits.Stamp) {
	i := 0
	for i < len(w.hist) && int64(s-w.hist[i].s) >= limits.Buckets {
		w.total[0] -= w.hist[i].n[0]
		w.total[1] -= w.hist[i].n[1]
		i++
	}
	if i > 0 {
		w.hist = append(w.hist[:0], w.hist[i:]...)
	}
	// Leases end in grant order, so their states run closed …, sending,
	// closing, open along the slice: the closed ones to drop are a prefix.
	k := 0
	for k < len(w.leases) {
		l := w.leases[k]
		if l.state != leaseClosed || (len(l.used) > 0 && int64(s-l.used[len(l.used)-1].s) < limits.Buckets) {
			break
		}
		k++
	}
	if k > 0 {
		n := copy(w.leases, w.leases[k:])
		clear(w.leases[n:])
		w.leases = w.leases[:n]
	}
}

func (w *window) endLeases(ns int64) {
	for i := len(w.leases) - 1; i >= 0; i-- {
		l := w.leases[i]
		if l.state == leaseClosed {
			break // the rest are closed too
		}
		if l.state == leaseOpen && ns >= l.end {
			l.state, l.avail = leaseClosing, limits.Units{}
			w.register()
		}
	}
}

func (w *window) closeAll() {
	for _, l := range w.leases {
		if l.state == leaseOpen {
			l.state, l.avail = leaseClosing, limits.Units{}
			w.register()
		}
	}
}

func (w *window) fit(m limits.Units) *lease {
	var f *lease
	for i := len(w.leases) - 1; i >= 0 && w.leases[i].state == leaseOpen; i-- {
		if fits(m, w.leases[i].avail) {
			f = w.leases[i] // the oldest open lease with room: it ends first
		}
	}
	return f
}

func (w *window) status(now time.Time, limit limits.Units) (rem limits.Units, reset [2]time.Duration) {
	ns := now.UnixNano()
	var avail limits.Units
	for i := len(w.leases) - 1; i >= 0 && w.leases[i].state == leaseOpen; i-- {
		avail[0], avail[1] = avail[0]+w.leases[i].avail[0], avail[1]+w.leases[i].avail[1]
	}
	for d := range limit {
		rem[d] = min(max(w.rem[d]+avail[d], 0), limit[d])
		for i := len(w.hist) - 1; i >= 0; i-- {
			if w.hist[i].n[d] > 0 {
				reset[d] = time.Duration(max((int64(w.hist[i].s)+limits.Buckets)*sec-ns, 0))
				break
			}
		}
	}
	return rem, reset
}

func (w *window) Take(now time.Time, n, limit limits.Units) limits.Verdict {
	if w.retired {
		return limits.Verdict{Retired: true}
	}
	ns := now.UnixNano()
	s := limits.StampOf(now)
	w.expire(s)
	m := mask(n, limit)
	for d := range limit {
		if limit[d] > 0 && m[d] > limit[d] {
			return limits.Verdict{Dim: limits.Dim(d), Wait: limits.Never}
		}
	}
	if m != (limits.Units{}) {
		w.endLeases(ns)
		l := w.fit(m)
		if l == nil {
			if dn := w.deny; dn != nil && ns < dn.until && dn.limit == limit && !fits(m, dn.free) {
				wait := dn.wait
				if wait != limits.Never {
					wait = max(wait-time.Duration(ns-dn.at), time.Millisecond)
				}
				return limits.Verdict{Dim: dn.dim, Wait: wait}
			}
			return limits.Verdict{Refill: true, Wait: time.Second}
		}
		l.avail[0] -= m[0]
		l.avail[1] -= m[1]
		l.used = addAt(l.used, s, m)
		w.hist = addAt(w.hist, s, m)
		w.total[0], w.total[1] = w.total[0]+m[0], w.total[1]+m[1]
		w.maybePrefetch(ns, l, m, limit)
	}
	v := limits.Verdict{OK: true, At: s}
	v.Remaining, v.Reset = w.status(now, limit)
	return v
}

func (w *window) Put(now time.Time, at limits.Stamp, n limits.Units) {
	if w.retired {
		return
	}
	w.expire(limits.StampOf(now))
	e := find(w.hist, at)
	if e == nil {
		return
	}
	var k limits.Units
	for d := range k {
		k[d] = min(max(n[d], 0), e.n[d])
		e.n[d] -= k[d]
		w.total[d] -= k[d]
	}
	for i := len(w.leases) - 1; i >= 0 && k != (limits.Units{}); i-- {
		l := w.leases[i]
		e := find(l.used, at)
		if e == nil {
			continue
		}
		var x limits.Units
		for d := range x {
			x[d] = min(k[d], e.n[d])
			e.n[d] -= x[d]
			k[d] -= x[d]
		}
		switch l.state {
		case leaseOpen:
			l.avail[0] += x[0]
			l.avail[1] += x[1]
		case leaseClosed:
			w.adjs = append(w.adjs, adj{l.at, limits.Units{-x[0], -x[1]}})
			w.register()
		case leaseSending: // the close in flight carries the units: counted too long, safe
		}
	}
}

func (w *window) Add(now time.Time, at limits.Stamp, n limits.Units) bool {
	if w.retired {
		return false
	}
	s := limits.StampOf(now)
	w.expire(s)
	n = limits.Units{max(n[0], 0), max(n[1], 0)}
	if n == (limits.Units{}) {
		return true
	}
	target := s
	if find(w.hist, at) != nil {
		target = at
	}
	w.hist = addAt(w.hist, target, n)
	w.total[0], w.total[1] = w.total[0]+n[0], w.total[1]+n[1]
	var l *lease
	for i := len(w.leases) - 1; i >= 0 && l == nil; i-- {
		if find(w.leases[i].used, target) != nil {
			l = w.leases[i]
		}
	}
	w.register()
	if l != nil && (l.state == leaseOpen || l.state == leaseClosing) {
		l.used = addAt(l.used, target, n)
		for d := range n {
			l.avail[d] -= min(l.avail[d], n[d])
		}
		return true
	}
	w.adjs = append(w.adjs, adj{n: n}) // charged unconditionally by the server, now
	return true
}

func (w *window) Status(now time.Time, limit limits.Units) (limits.Units, [2]time.Duration) {
	w.expire(limits.StampOf(now))
	return w.status(now, limit)
}

func (w *window) Retire(now time.Time) bool {
	if w.retired {
		return true
	}
	w.expire(limits.StampOf(now))
	if len(w.hist) > 0 || len(w.adjs) > 0 || !w.ops.tryAcquire() {
		return false
	}
	defer w.ops.release()
	for _, l := range w.leases {
		if l.state != leaseClosed {
			return false
		}
	}
	w.retired = true
	w.unregister()
	return true
}

// want is the speculative part of a lease: when the key is busy (its
// recent use is several times the call), about what it used in the last
// lease period.
func (w *window) want(ns int64, m limits.Units) limits.Units {
	lo := limits.StampOf(time.Unix(0, ns-int64(w.b.o.WindowLease)))
	var recent limits.Units
	for i := len(w.hist) - 1; i >= 0 && w.hist[i].s >= lo; i-- {
		recent[0] += w.hist[i].n[0]
		recent[1] += w.hist[i].n[1]
	}
	var want limits.Units
	for d := range want {
		if m[d] > 0 && recent[d] >= 4*m[d] {
			want[d] = recent[d] + recent[d]/2
		}
	}
	return want
}

func (w *window) maybePrefetch(ns int64, l *lease, m, limit limits.Units) {
	if w.prefetching || w.b.closed.Load() {
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
	low := l.end-ns < int64(w.b.o.WindowLease)/4
	for d := range want {
		low = low || (want[d] > 0 && l.avail[d] < want[d]/2)
	}
	if !low {
		return
	}
	for _, o := range w.leases {
		if o != l && o.state == leaseOpen && o.end-ns >= int64(w.b.o.WindowLease)/2 && fits(want, limits.Units{2 * o.avail[0], 2 * o.avail[1]}) {
			return
		}
	}
	w.prefetching = true
	go w.prefetch(m, limit, want)
}

func (w *window) prefetch(m, limit, want limits.Units) {
	defer func() {
		w.Lock()
		w.prefetching = false
		w.Unlock()
	}()
	if !w.ops.tryAcquire() {
		return
	}
	defer w.ops.release()
	_ = w.grant(context.Background(), w.b.o.Now().UnixNano(), m, limit, want)
}

// grant leases need (and up to want more) in one round trip. ops held.
func (w *window) grant(ctx context.Context, start int64, need, limit, want limits.Units) error {
	op := api.WindowLeaseOp{Op: api.LeaseGrant, Key: w.b.wireKey(w.key), Limit: limit, Need: need, Want: want}
	resp, err := w.b.rt(ctx, &api.LeaseRequest{Windows: []api.WindowLeaseOp{op}})
	if err != nil {
		return err
	}
	r := &resp.Windows[0]
	if r.Error != "" {
		return resultErr(r.Error, r.Unavailable)
	}
	w.Lock()
	defer w.Unlock()
	w.rem = r.Remaining
	if r.Lease != 0 {
		w.leases = append(w.leases, &lease{id: r.Lease, end: start + int64(w.b.o.WindowLease), granted: r.Granted, avail: r.Granted})
		w.deny = nil
		w.register()
		return nil
	}
	wait := time.Duration(r.WaitNS)
	if r.WaitNS < 0 {
		wait = limits.Never
	}
	until := start + int64(denyTTL)
	if wait != limits.Never {
		until = min(until, start+int64(wait))
	}
	w.deny = &denial{until: until, limit: limit, free: r.Remaining, dim: limits.Dim(r.Dim), wait: wait, at: start}
	return nil
}

// Refill leases units for n. It returns nil when the window may answer:
// a lease was granted, or the server refused and the window refuses
// locally with the server's figures.
func (w *window) Refill(ctx context.Context, now time.Time, n, limit limits.Units) error {
	m := mask(n, limit)
	w.waiters.Add(1)
	defer w.waiters.Add(-1)
	if err := w.ops.acquire(ctx); err != nil {
		return err
	}
	defer w.ops.release()
	w.Lock()
	ns := now.UnixNano()
	w.endLeases(ns)
	if w.retired || w.fit(m) != nil {
		w.Unlock()
		return nil
	}
	if dn := w.deny; dn != nil && ns < dn.until && dn.limit == limit && !fits(m, dn.free) {
		w.Unlock()
		return nil
	}
	k := int64(max(w.waiters.Load(), 1))
	want := w.want(ns, m)
	for d := range want {
		want[d] = max(want[d], m[d]*(k-1))
	}
	w.Unlock()
	return w.grant(ctx, ns, m, limit, want)
}

// prepare lists the window's operations for Sync and what to do with
// their answers. Locked; ops held (released by the last answer).
func (w *window) prepare(ns int64) ([]api.WindowLeaseOp, []func(*api.WindowLeaseResult, error)) {
	w.expire(limits.StampOf(time.Unix(0, ns)))
	w.endLeases(ns)
	key := w.b.wireKey(w.key)
	var ops []api.WindowLeaseOp
	var done []func(*api.WindowLeaseResult, error)
	for _, l := range w.leases {
		if l.state != leaseClosing {
			continue
		}
		l.state = leaseSending
		ops = append(ops, api.WindowLeaseOp{Op: api.LeaseClose, Key: key, Lease: l.id, Used: l.usedTotal()})
		done = append(done, func(r *api.WindowLeaseResult, err error) {
			if err != nil || r.Error != "" {
				l.state = leaseClosing // resent; the server ignores a close it has seen
				return
			}
			l.state, l.at = leaseClosed, limits.Stamp(r.At)
		})
	}
	for _, a := range w.adjs {
		ops = append(ops, api.WindowLeaseOp{Op: api.LeaseAdjust, Key: key, At: int64(a.at), Adjust: a.n})
		done = append(done, func(r *api.WindowLeaseResult, err error) {
			if (err != nil || r.Error != "") && (a.n[0] > 0 || a.n[1] > 0) {
				w.adjs = append(w.adjs, adj{a.at, limits.Units{max(a.n[0], 0), max(a.n[1], 0)}}) // refunds are dropped
			}
		})
	}
	w.adjs = nil
	if len(ops) == 0 {
		if !w.holds() {
			w.unregister()
		}
		return nil, nil
	}
	// Answers are applied under the lock; the last one releases ops.
	left := len(done)
	for i, f := range done {
		done[i] = func(r *api.WindowLeaseResult, err error) {
			w.Lock()
			f(r, err)
			left--
			last := left == 0
			if last && (len(w.adjs) > 0 || w.holds()) {
				w.register()
			}
			w.Unlock()
			if last {
				w.ops.release()
			}
		}
	}
	return ops, done
}

// holds reports whether the window has leases not yet closed or something
// to send. Locked.
func (w *window) holds() bool {
	if len(w.adjs) > 0 {
		return true
	}
	for _, l := range w.leases {
		if l.state != leaseClosed {
			return true
		}
	}
	return false
}
