package pglimits

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/gateway/limits"
)

// A window is one rate-limit key as this replica sees it: its own usage
// by bucket (exact, in the Limiter's clock), the leases it holds, the
// other replicas' units as the database reported them last, and the
// operations it still has to send. Takes are served from open leases in
// memory; Refill leases more in one round trip.

const (
	sec = int64(time.Second)
	// denyTTL bounds how long a refusal by the database is answered
	// locally without asking again (other replicas may give units back).
	denyTTL = time.Second
)

type entry struct {
	s limits.Stamp
	n limits.Units
}

type leaseState uint8

const (
	leaseOpen    leaseState = iota // takes are served from it
	leaseClosing                   // ended; its close is to be sent
	leaseClosed                    // its rows are per bucket; changes are sent as deltas
)

// lease is one grant of units: while open the database counts the whole
// grant at dbEnd (the bucket of its end, in the database's clock); once
// closed, the units used, each in the bucket it was used in.
type lease struct {
	id      int64
	dbEnd   limits.Stamp
	off     int64 // ns: database time − local time, upper bound (so dates are never early)
	end     int64 // local ns: usable before
	granted limits.Units
	avail   limits.Units
	used    []entry // by local bucket
	state   leaseState
}

// delta is a change to one database row: a refund (negative) or an extra
// charge. Lease 0: a new row (extra usage with no lease to carry it).
type delta struct {
	lease  int64
	bucket limits.Stamp // database bucket
	n      limits.Units
}

type window struct {
	sync.Mutex
	b   *Backend
	key limits.WindowKey

	retired    bool
	registered bool // in b.windows

	hist  []entry // own usage by local bucket, oldest first
	total limits.Units

	leases []*lease // oldest first: open and closing, and closed ones whose units still count
	deltas []delta

	others    []entry // other replicas' units by database bucket (last round trip)
	othersOff int64   // the offset they were read with
	oc        othersCache

	deny *denial

	ops         sem
	waiters     atomic.Int32
	prefetching bool

	// lost are the ids of grants whose answer was lost (the round trip
	// failed after it was sent): the database may hold them; the next
	// round trip closes them (closing an id never granted is harmless).
	lost []int64
}

// othersCache is the other replicas' count in the window of bucket s.
type othersCache struct {
	valid bool
	s     limits.Stamp
	n     limits.Units
}

// denial is the database's last refusal, answered locally for a while.
type denial struct {
	until int64 // local ns
	limit limits.Units
	free  limits.Units
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

func satAdd(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return 1<<63 - 1
}

// expire drops the own buckets that left the window at bucket s, and the
// closed leases none of whose units count any more.
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
	if len(w.leases) > 0 && w.leases[0].state == leaseClosed {
		k := 0
		for _, l := range w.leases {
			if l.state == leaseClosed && (len(l.used) == 0 || int64(s-l.used[len(l.used)-1].s) >= limits.Buckets) {
				continue
			}
			w.leases[k] = l
			k++
		}
		clear(w.leases[k:])
		w.leases = w.leases[:k]
	}
}

// addAt adds n at bucket s of a sorted entry list (s is usually the last).
func addAt(es []entry, s limits.Stamp, n limits.Units) []entry {
	i := len(es)
	for i > 0 && es[i-1].s > s {
		i--
	}
	if i > 0 && es[i-1].s == s {
		es[i-1].n[0] = satAdd(es[i-1].n[0], n[0])
		es[i-1].n[1] = satAdd(es[i-1].n[1], n[1])
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

func (w *window) charge(s limits.Stamp, n limits.Units) {
	w.hist = addAt(w.hist, s, n)
	w.total[0], w.total[1] = satAdd(w.total[0], n[0]), satAdd(w.total[1], n[1])
}

// dbBucket is the database bucket that holds units used in local bucket s
// of a lease with offset off: the bucket of the last instant of s.
func dbBucket(s limits.Stamp, off int64) limits.Stamp {
	return limits.Stamp(floorDiv(int64(s)*sec+sec-1+off, sec))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// endLeases moves open leases past their end to closing.
func (w *window) endLeases(ns int64) {
	for _, l := range w.leases {
		if l.state == leaseOpen && ns >= l.end {
			w.closeLease(l)
		}
	}
}

func (w *window) closeLease(l *lease) {
	l.state = leaseClosing
	l.avail = limits.Units{}
	w.register()
}

// closeAll ends every open lease (Close).
func (w *window) closeAll() {
	for _, l := range w.leases {
		if l.state == leaseOpen {
			w.closeLease(l)
		}
	}
}

func (w *window) register() {
	if !w.registered {
		w.registered = true
		w.b.register(w)
	}
}

func (w *window) fit(m limits.Units) *lease {
	for _, l := range w.leases {
		if l.state == leaseOpen && fits(m, l.avail) {
			return l
		}
	}
	return nil
}

// othersIn is the other replicas' count in the window at local bucket s.
func (w *window) othersIn(s limits.Stamp) limits.Units {
	if w.oc.valid && w.oc.s == s {
		return w.oc.n
	}
	var n limits.Units
	lo := dbBucket(s, w.othersOff) - limits.Stamp(limits.Buckets-1)
	for _, e := range w.others {
		if e.s >= lo {
			n[0], n[1] = satAdd(n[0], e.n[0]), satAdd(n[1], e.n[1])
		}
	}
	w.oc = othersCache{valid: true, s: s, n: n}
	return n
}

// status is the window's remaining units and time until empty, from the
// own usage and the other replicas' units last reported.
func (w *window) status(now time.Time, limit limits.Units) (rem limits.Units, reset [2]time.Duration) {
	ns := now.UnixNano()
	o := w.othersIn(limits.StampOf(now))
	for d := range limit {
		rem[d] = max(limit[d]-w.total[d]-o[d], 0)
		var until int64
		for i := len(w.hist) - 1; i >= 0; i-- {
			if w.hist[i].n[d] > 0 {
				until = (int64(w.hist[i].s) + limits.Buckets) * sec
				break
			}
		}
		if o[d] > 0 {
			for i := len(w.others) - 1; i >= 0; i-- {
				if w.others[i].n[d] > 0 {
					until = max(until, (int64(w.others[i].s)+limits.Buckets)*sec-w.othersOff)
					break
				}
			}
		}
		reset[d] = time.Duration(max(until-ns, 0))
	}
	return rem, reset
}

// wait is how long until need fits under limit in dimension d, as far as
// this replica knows: the own buckets and the other replicas' leave the
// window oldest first.
func (w *window) wait(now time.Time, d limits.Dim, need, limit int64) time.Duration {
	if need > limit {
		return limits.Never
	}
	ns := now.UnixNano()
	s := limits.StampOf(now)
	o := w.othersIn(s)
	count := satAdd(w.total[d], o[d])
	if need <= limit-count {
		return time.Millisecond
	}
	lo := dbBucket(s, w.othersOff) - limits.Stamp(limits.Buckets-1)
	type free struct {
		at int64
		n  int64
	}
	frees := make([]free, 0, len(w.hist)+len(w.others))
	for _, e := range w.hist {
		if e.n[d] > 0 {
			frees = append(frees, free{(int64(e.s) + limits.Buckets) * sec, e.n[d]})
		}
	}
	for _, e := range w.others {
		if e.s >= lo && e.n[d] > 0 {
			frees = append(frees, free{(int64(e.s)+limits.Buckets)*sec - w.othersOff, e.n[d]})
		}
	}
	slices.SortFunc(frees, func(a, b free) int { return cmp.Compare(a.at, b.at) })
	freed := int64(0)
	for _, f := range frees {
		freed += f.n
		if need <= limit-(count-freed) {
			return max(time.Duration(f.at-ns), time.Millisecond)
		}
	}
	return time.Second // units outside what this replica knows of: ask again soon
}

// refusal builds the Verdict of a refused take: the first dimension
// without room (per free), and the latest of the waits.
func (w *window) refusal(now time.Time, m, limit, free limits.Units) limits.Verdict {
	v := limits.Verdict{}
	refused := false
	for d := range limit {
		if limit[d] <= 0 || m[d] <= free[d] {
			continue
		}
		wt := w.wait(now, limits.Dim(d), m[d], limit[d])
		if !refused {
			v.Dim, v.Wait, refused = limits.Dim(d), wt, true
		} else if v.Wait != limits.Never && (wt == limits.Never || wt > v.Wait) {
			v.Wait = wt
		}
	}
	return v
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
			return w.refusal(now, m, limit, limit)
		}
	}
	if m != (limits.Units{}) {
		w.endLeases(ns)
		l := w.fit(m)
		if l == nil {
			if dn := w.deny; dn != nil && ns < dn.until && dn.limit == limit {
				if v := w.refusal(now, m, limit, dn.free); v.Wait != 0 {
					return v
				}
			}
			v := limits.Verdict{Refill: true, Wait: time.Second}
			if len(w.leases) > 0 && m[limits.Requests] == 0 {
				v.Dim = limits.Tokens
			}
			return v
		}
		l.avail[0] -= m[0]
		l.avail[1] -= m[1]
		l.used = addAt(l.used, s, m)
		w.charge(s, m)
		w.maybePrefetch(ns, l, m, limit)
	}
	v := limits.Verdict{OK: true, At: s}
	v.Remaining, v.Reset = w.status(now, limit)
	return v
}

// credit gives back up to k units used at local bucket at, from the
// leases that used them (newest first).
func (w *window) credit(at limits.Stamp, k limits.Units) {
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
			w.deltas = append(w.deltas, delta{l.id, dbBucket(at, l.off), limits.Units{-x[0], -x[1]}})
			w.register()
		}
	}
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
	w.credit(at, k)
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
	w.charge(target, n)
	var l *lease
	for i := len(w.leases) - 1; i >= 0 && l == nil; i-- {
		if find(w.leases[i].used, target) != nil {
			l = w.leases[i]
		}
	}
	if l == nil && target == s {
		for i := len(w.leases) - 1; i >= 0 && l == nil; i-- {
			if w.leases[i].state == leaseOpen {
				l = w.leases[i]
			}
		}
	}
	w.register()
	if l == nil {
		w.deltas = append(w.deltas, delta{0, dbBucket(target, w.othersOff), n})
		return true
	}
	l.used = addAt(l.used, target, n)
	switch l.state {
	case leaseOpen:
		var x limits.Units
		for d := range x {
			x[d] = min(l.avail[d], n[d])
			l.avail[d] -= x[d]
		}
		if extra := (limits.Units{n[0] - x[0], n[1] - x[1]}); extra != (limits.Units{}) {
			l.granted[0] += extra[0]
			l.granted[1] += extra[1]
			w.deltas = append(w.deltas, delta{l.id, l.dbEnd, extra})
		}
	case leaseClosed:
		w.deltas = append(w.deltas, delta{l.id, dbBucket(target, l.off), n})
	}
	return true
}

func (w *window) Status(now time.Time, limit limits.Units) (limits.Units, [2]time.Duration) {
	w.expire(limits.StampOf(now))
	return w.status(now, limit)
}

// Retire drops the window once none of its own units count any more and
// no round trip is in flight; what it still has to send (closes of its
// leases, deltas) is handed to the backend.
func (w *window) Retire(now time.Time) bool {
	if w.retired {
		return true
	}
	w.expire(limits.StampOf(now))
	if len(w.hist) > 0 || !w.ops.tryAcquire() {
		return false
	}
	defer w.ops.release()
	w.closeAll()
	if req := w.prepare(false); req != nil {
		w.b.orphan(req)
	}
	w.retired = true
	w.unregister()
	return true
}

func (w *window) unregister() {
	if w.registered {
		w.registered = false
		w.b.mu.Lock()
		delete(w.b.windows, w)
		w.b.mu.Unlock()
	}
}

// winReq is one round trip's worth for one key.
type winReq struct {
	w      *window
	key    limits.WindowKey
	closes []*lease
	// closeRows are the per-bucket rows of the closes (absolute: the
	// leases' rows are deleted first); deltas follow them.
	closeRows []delta
	deltas    []delta

	grant                     bool
	reqLease                  int64 // the id the grant takes
	lost                      []int64
	localStart                int64
	limit, need, demand, want limits.Units

	// result
	now      int64
	leaseID  int64
	leaseEnd limits.Stamp
	granted  limits.Units
	count    limits.Units
	others   []entry
	prefetch bool
	orphaned bool
}

// prepare collects what is to be sent (closes and deltas), or nil when
// nothing is and grant is false. Locked.
func (w *window) prepare(grant bool) *winReq {
	r := &winReq{w: w, key: w.key, grant: grant}
	closing := map[int64]bool{}
	for _, l := range w.leases {
		if l.state != leaseClosing {
			continue
		}
		r.closes = append(r.closes, l)
		closing[l.id] = true
		l.state = leaseClosed
		for _, e := range l.used {
			if e.n != (limits.Units{}) {
				r.closeRows = append(r.closeRows, delta{l.id, dbBucket(e.s, l.off), e.n})
			}
		}
	}
	for _, d := range w.deltas {
		if closing[d.lease] {
			continue // an extra charge to the open row: the close's rows include it
		}
		r.deltas = append(r.deltas, d)
	}
	w.deltas = w.deltas[:0]
	r.lost, w.lost = w.lost, nil
	if grant {
		r.reqLease = w.b.newLeaseID()
	}
	if !grant && len(r.deltas) == 0 && len(r.closes) == 0 && len(r.lost) == 0 {
		return nil
	}
	return r
}

// restore puts back, after a failed round trip, what must still be sent:
// closes are idempotent and resent; extra charges are resent; refunds are
// dropped (counting a unit too long is safe, too short is not).
func (w *window) restore(r *winReq) {
	for _, l := range r.closes {
		l.state = leaseClosing
	}
	w.lost = append(w.lost, r.lost...)
	if r.grant {
		w.lost = append(w.lost, r.reqLease)
	}
	for _, d := range r.deltas {
		if d.n[0] > 0 || d.n[1] > 0 {
			w.deltas = append(w.deltas, delta{d.lease, d.bucket, limits.Units{max(d.n[0], 0), max(d.n[1], 0)}})
		}
	}
	if len(r.closes) > 0 || len(w.deltas) > 0 || len(w.lost) > 0 {
		w.register()
	}
}

// apply takes in the result of a round trip. Locked.
func (w *window) apply(r *winReq) {
	off := r.now - r.localStart
	w.others, w.othersOff, w.oc = r.others, off, othersCache{}
	if !r.grant {
		return
	}
	switch {
	case r.leaseID > 0:
		w.b.stats.grants.Add(1)
		if r.prefetch {
			w.b.stats.prefetches.Add(1)
		}
		w.leases = append(w.leases, &lease{id: r.leaseID, dbEnd: r.leaseEnd, off: off,
			end: r.localStart + int64(w.b.o.WindowLease), granted: r.granted, avail: r.granted})
		w.deny = nil
		w.register()
	case r.leaseID == 0:
		w.b.stats.refusals.Add(1)
		free := limits.Units{r.limit[0] - r.count[0], r.limit[1] - r.count[1]}
		until := r.localStart + int64(denyTTL)
		// the refusal holds at most until a counted bucket leaves
		lo := limits.StampOf(time.Unix(0, r.localStart)) - limits.Stamp(limits.Buckets-1)
		for _, e := range w.hist {
			if e.s >= lo {
				until = min(until, (int64(e.s)+limits.Buckets)*sec)
				break
			}
		}
		dlo := dbBucket(limits.StampOf(time.Unix(0, r.localStart)), off) - limits.Stamp(limits.Buckets-1)
		for _, e := range w.others {
			if e.s >= dlo {
				until = min(until, (int64(e.s)+limits.Buckets)*sec-off)
				break
			}
		}
		w.deny = &denial{until: until, limit: r.limit, free: free}
	}
}

// want is the speculative part of a lease: when the key is busy (its
// recent use is several times the call), about what it used in the last
// lease period, so that the next WindowLease is served from memory.
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

// maybePrefetch leases ahead of need, in the background, when the key is
// busy and the lease serving it runs low or ends soon.
func (w *window) maybePrefetch(ns int64, l *lease, m, limit limits.Units) {
	if w.prefetching || w.b.closed.Load() {
		return
	}
	want := w.want(ns, m)
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
	// Another open lease with room is enough.
	for _, o := range w.leases {
		if o != l && o.state == leaseOpen && o.end-ns >= int64(w.b.o.WindowLease)/2 && fits(want, limits.Units{2 * o.avail[0], 2 * o.avail[1]}) {
			return
		}
	}
	w.prefetching = true
	go w.prefetch(limit, want)
}

func (w *window) prefetch(limit, want limits.Units) {
	defer func() {
		w.Lock()
		w.prefetching = false
		w.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), w.b.o.Timeout)
	defer cancel()
	if !w.ops.tryAcquire() {
		return
	}
	defer w.ops.release()
	w.Lock()
	if w.retired {
		w.Unlock()
		return
	}
	ns := w.b.now().UnixNano()
	w.endLeases(ns)
	r := w.prepare(true)
	r.limit, r.want, r.prefetch = limit, want, true
	r.localStart = ns
	w.Unlock()
	err := w.b.windowRT(ctx, r)
	w.Lock()
	if err != nil {
		w.restore(r)
	} else {
		w.apply(r)
	}
	w.Unlock()
}

// Refill leases units for n in one round trip (closes and deltas ride
// along). It returns nil when the window may now answer: a lease was
// granted, or the database refused and the window will refuse locally
// with the database's figures.
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
	r := w.prepare(true)
	k := int64(max(w.waiters.Load(), 1))
	r.limit, r.need = limit, m
	r.demand = limits.Units{m[0] * k, m[1] * k}
	r.want = w.want(ns, m)
	r.localStart = ns
	w.Unlock()
	err := w.b.windowRT(ctx, r)
	w.Lock()
	defer w.Unlock()
	if err != nil {
		w.restore(r)
		return err
	}
	w.apply(r)
	return nil
}

const windowSQL = `SELECT now_ns, lease_id, lease_bucket, granted_req, granted_tok, count_req, count_tok, o_bucket, o_req, o_tok
FROM limits_window($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)`

func (b *Backend) windowArgs(r *winReq) []any {
	closes := make([]int64, len(r.closes), len(r.closes)+len(r.lost))
	for i, l := range r.closes {
		closes[i] = l.id
	}
	closes = append(closes, r.lost...)
	n := len(r.closeRows) + len(r.deltas)
	rl, rb, rq, rt := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	for _, rows := range [2][]delta{r.closeRows, r.deltas} {
		for _, d := range rows {
			rl, rb, rq, rt = append(rl, d.lease), append(rb, int64(d.bucket)), append(rq, d.n[0]), append(rt, d.n[1])
		}
	}
	return []any{b.replica, b.dbTime(r.localStart), int64(r.key.Securable), int16(r.key.Scope), int64(r.key.Principal),
		closes, rl, rb, rq, rt,
		r.grant, int64(b.o.WindowLease), r.limit[0], r.limit[1], r.need[0], r.need[1], r.demand[0], r.demand[1],
		r.want[0], r.want[1], r.reqLease}
}

func (r *winReq) scan(row pgx.Row) error {
	var ob, oq, ot []int64
	var end int64
	if err := row.Scan(&r.now, &r.leaseID, &end, &r.granted[0], &r.granted[1], &r.count[0], &r.count[1], &ob, &oq, &ot); err != nil {
		return err
	}
	r.leaseEnd = limits.Stamp(end)
	r.others = make([]entry, len(ob))
	for i := range ob {
		r.others[i] = entry{limits.Stamp(ob[i]), limits.Units{oq[i], ot[i]}}
	}
	return nil
}

// windowRT sends one key's request.
func (b *Backend) windowRT(ctx context.Context, r *winReq) error {
	return b.rt(ctx, func(ctx context.Context) error {
		return r.scan(b.pool.QueryRow(ctx, windowSQL, b.windowArgs(r)...))
	})
}

// orphan keeps what a retired window still has to send.
func (b *Backend) orphan(r *winReq) {
	r.orphaned = true
	b.mu.Lock()
	b.orphans = append(b.orphans, r)
	b.mu.Unlock()
}

// syncWindows sends, in one round trip, the closes of ended leases and the
// deltas of every window that has some.
func (b *Backend) syncWindows(ctx context.Context) error {
	ns := b.now().UnixNano()
	var reqs []*winReq
	b.mu.Lock()
	reqs = append(reqs, b.orphans...)
	b.orphans = nil
	b.mu.Unlock()
	for _, w := range b.activeWindows() {
		if !w.ops.tryAcquire() {
			continue
		}
		w.Lock()
		w.expire(limits.StampOf(time.Unix(0, ns)))
		w.endLeases(ns)
		r := w.prepare(false)
		if r == nil {
			if !w.holds() {
				w.unregister()
			}
			w.Unlock()
			w.ops.release()
			continue
		}
		r.localStart = ns
		w.Unlock()
		reqs = append(reqs, r)
	}
	if len(reqs) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, r := range reqs {
		batch.Queue(windowSQL, b.windowArgs(r)...)
	}
	err := b.sendBatch(ctx, batch, func(i int, row pgx.Row) error { return reqs[i].scan(row) })
	var lost []*winReq
	for _, r := range reqs {
		if r.orphaned {
			if err != nil { // resend the closes and extra charges, not refunds
				r.deltas = slices.DeleteFunc(r.deltas, func(d delta) bool { return d.n[0] < 0 || d.n[1] < 0 })
				lost = append(lost, r)
			}
			continue
		}
		w := r.w
		w.Lock()
		if err != nil {
			w.restore(r)
		} else {
			w.apply(r)
		}
		w.Unlock()
		w.ops.release()
	}
	if len(lost) > 0 { // retried at the next Sync
		b.mu.Lock()
		b.orphans = append(b.orphans, lost...)
		b.mu.Unlock()
	}
	return err
}

// holds reports whether the window still has open leases or something to
// send. Locked.
func (w *window) holds() bool {
	if len(w.deltas) > 0 || len(w.lost) > 0 {
		return true
	}
	for _, l := range w.leases {
		if l.state != leaseClosed {
			return true
		}
	}
	return false
}
