package pglimits

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/internal/lease"
)

// A window is one rate-limit key as this replica sees it: the shared
// lease client (its own usage by bucket, exact, in the Limiter's clock;
// the leases it holds; what it has to send) over the database, the other
// replicas' units as the database reported them last, and the ids of
// grants whose answer was lost.

const sec = int64(time.Second)

type window struct {
	lease.Window
	b *Backend

	others    []lease.Entry // other replicas' units by database bucket (last round trip)
	othersOff int64         // the offset they were read with
	oc        othersCache

	// lost are the ids of grants whose answer was lost (the round trip
	// failed after it was sent): the database may hold them; the next
	// round trip closes them (closing an id never granted is harmless).
	lost []int64
}

var _ lease.Transport = (*window)(nil)

// othersCache is the other replicas' count in the window of bucket s.
type othersCache struct {
	valid bool
	s     limits.Stamp
	n     limits.Units
}

// Window implements limits.Backend.
func (b *Backend) Window(key limits.WindowKey) limits.Window {
	w := &window{b: b}
	w.Init(&b.lc, key, w)
	return w
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

// othersIn is the other replicas' count in the window at local bucket s.
func (w *window) othersIn(s limits.Stamp) limits.Units {
	if w.oc.valid && w.oc.s == s {
		return w.oc.n
	}
	var n limits.Units
	lo := dbBucket(s, w.othersOff) - limits.Stamp(limits.Buckets-1)
	for _, e := range w.others {
		if e.S >= lo {
			n[0], n[1] = lease.SatAdd(n[0], e.N[0]), lease.SatAdd(n[1], e.N[1])
		}
	}
	w.oc = othersCache{valid: true, s: s, n: n}
	return n
}

// Remaining implements lease.Transport: the window's remaining units and
// time until empty, from the own usage and the other replicas' units last
// reported.
func (w *window) Remaining(now time.Time, limit limits.Units) (rem limits.Units, reset [2]time.Duration) {
	ns := now.UnixNano()
	o := w.othersIn(limits.StampOf(now))
	for d := range limit {
		rem[d] = max(limit[d]-w.Total[d]-o[d], 0)
		var until int64
		for i := len(w.Hist) - 1; i >= 0; i-- {
			if w.Hist[i].N[d] > 0 {
				until = (int64(w.Hist[i].S) + limits.Buckets) * sec
				break
			}
		}
		if o[d] > 0 {
			for i := len(w.others) - 1; i >= 0; i-- {
				if w.others[i].N[d] > 0 {
					until = max(until, (int64(w.others[i].S)+limits.Buckets)*sec-w.othersOff)
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
	count := lease.SatAdd(w.Total[d], o[d])
	if need <= limit-count {
		return time.Millisecond
	}
	lo := dbBucket(s, w.othersOff) - limits.Stamp(limits.Buckets-1)
	type free struct {
		at int64
		n  int64
	}
	frees := make([]free, 0, len(w.Hist)+len(w.others))
	for _, e := range w.Hist {
		if e.N[d] > 0 {
			frees = append(frees, free{(int64(e.S) + limits.Buckets) * sec, e.N[d]})
		}
	}
	for _, e := range w.others {
		if e.S >= lo && e.N[d] > 0 {
			frees = append(frees, free{(int64(e.S)+limits.Buckets)*sec - w.othersOff, e.N[d]})
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

// Refusal implements lease.Transport: the database's refusal, with the
// waits this replica can compute from its own and the other replicas'
// buckets.
func (w *window) Refusal(now time.Time, m, limit limits.Units, dn *lease.Denial) limits.Verdict {
	return w.refusal(now, m, limit, dn.Free)
}

// RefundBucket implements lease.Transport: units stay in the database
// bucket of the last instant of the local bucket they were used in.
func (w *window) RefundBucket(l *lease.Lease, at limits.Stamp) limits.Stamp {
	return dbBucket(at, l.Off)
}

// Charge implements lease.Transport: usage beyond a reservation goes to
// the lease that used the bucket (else, for usage now, to the newest open
// lease): beyond an open lease's room it enlarges the lease's row; on a
// closed lease it is a delta of its rows; without a lease, a new row.
func (w *window) Charge(l *lease.Lease, target, s limits.Stamp, n limits.Units) {
	if l == nil && target == s {
		for i := len(w.Leases) - 1; i >= 0 && l == nil; i-- {
			if w.Leases[i].State == lease.Open {
				l = w.Leases[i]
			}
		}
	}
	if l == nil {
		w.Deltas = append(w.Deltas, lease.Delta{Bucket: dbBucket(target, w.othersOff), N: n})
		return
	}
	l.Used = lease.AddAt(l.Used, target, n)
	switch l.State {
	case lease.Open:
		var x limits.Units
		for d := range x {
			x[d] = min(l.Avail[d], n[d])
			l.Avail[d] -= x[d]
		}
		if extra := (limits.Units{n[0] - x[0], n[1] - x[1]}); extra != (limits.Units{}) {
			l.Granted[0] += extra[0]
			l.Granted[1] += extra[1]
			w.Deltas = append(w.Deltas, lease.Delta{Lease: l.ID, Bucket: l.At, N: extra})
		}
	case lease.Closed:
		w.Deltas = append(w.Deltas, lease.Delta{Lease: l.ID, Bucket: dbBucket(target, l.Off), N: n})
	}
}

// Drop implements lease.Transport: what a retired window still has to
// send (closes of its leases, deltas) is handed to the backend.
func (w *window) Drop() bool {
	w.CloseAll()
	if req := w.prepare(false); req != nil {
		w.b.orphan(req)
	}
	return true
}

// winReq is one round trip's worth for one key.
type winReq struct {
	w      *window
	key    limits.WindowKey
	closes []*lease.Lease
	// closeRows are the per-bucket rows of the closes (absolute: the
	// leases' rows are deleted first); deltas follow them.
	closeRows []lease.Delta
	deltas    []lease.Delta

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
	others   []lease.Entry
	prefetch bool
	orphaned bool
}

// prepare collects what is to be sent (closes and deltas), or nil when
// nothing is and grant is false. Locked.
func (w *window) prepare(grant bool) *winReq {
	r := &winReq{w: w, key: w.Key, grant: grant}
	closing := map[int64]bool{}
	for _, l := range w.Leases {
		if l.State != lease.Closing {
			continue
		}
		r.closes = append(r.closes, l)
		closing[l.ID] = true
		l.State = lease.Closed
		for _, e := range l.Used {
			if e.N != (limits.Units{}) {
				r.closeRows = append(r.closeRows, lease.Delta{Lease: l.ID, Bucket: dbBucket(e.S, l.Off), N: e.N})
			}
		}
	}
	for _, d := range w.Deltas {
		if closing[d.Lease] {
			continue // an extra charge to the open row: the close's rows include it
		}
		r.deltas = append(r.deltas, d)
	}
	w.Deltas = w.Deltas[:0]
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
		l.State = lease.Closing
	}
	w.lost = append(w.lost, r.lost...)
	if r.grant {
		w.lost = append(w.lost, r.reqLease)
	}
	for _, d := range r.deltas {
		if d.N[0] > 0 || d.N[1] > 0 {
			w.Deltas = append(w.Deltas, lease.Delta{Lease: d.Lease, Bucket: d.Bucket, N: limits.Units{max(d.N[0], 0), max(d.N[1], 0)}})
		}
	}
	if len(r.closes) > 0 || len(w.Deltas) > 0 || len(w.lost) > 0 {
		w.Register()
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
		w.AddLease(&lease.Lease{ID: r.leaseID, At: r.leaseEnd, Off: off, Granted: r.granted}, r.localStart)
	case r.leaseID == 0:
		w.b.stats.refusals.Add(1)
		free := limits.Units{r.limit[0] - r.count[0], r.limit[1] - r.count[1]}
		until := r.localStart + int64(lease.DenyTTL)
		// the refusal holds at most until a counted bucket leaves
		lo := limits.StampOf(time.Unix(0, r.localStart)) - limits.Stamp(limits.Buckets-1)
		for _, e := range w.Hist {
			if e.S >= lo {
				until = min(until, (int64(e.S)+limits.Buckets)*sec)
				break
			}
		}
		dlo := dbBucket(limits.StampOf(time.Unix(0, r.localStart)), off) - limits.Stamp(limits.Buckets-1)
		for _, e := range w.others {
			if e.S >= dlo {
				until = min(until, (int64(e.S)+limits.Buckets)*sec-off)
				break
			}
		}
		w.Deny = &lease.Denial{Until: until, Limit: r.limit, Free: free}
	}
}

// Grant implements lease.Transport: one round trip for the key, closes
// and deltas riding along. A prefetch asks only for the speculative part.
func (w *window) Grant(ctx context.Context, g *lease.Grant) error {
	w.Lock()
	if w.Retired {
		w.Unlock()
		return nil
	}
	w.EndLeases(g.Start)
	r := w.prepare(true)
	r.limit, r.want, r.prefetch, r.localStart = g.Limit, g.Want, g.Prefetch, g.Start
	if !g.Prefetch {
		r.need, r.demand = g.Need, g.Demand
	}
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
		closes[i] = l.ID
	}
	closes = append(closes, r.lost...)
	n := len(r.closeRows) + len(r.deltas)
	rl, rb, rq, rt := make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n), make([]int64, 0, n)
	for _, rows := range [2][]lease.Delta{r.closeRows, r.deltas} {
		for _, d := range rows {
			rl, rb, rq, rt = append(rl, d.Lease), append(rb, int64(d.Bucket)), append(rq, d.N[0]), append(rt, d.N[1])
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
	r.others = make([]lease.Entry, len(ob))
	for i := range ob {
		r.others[i] = lease.Entry{S: limits.Stamp(ob[i]), N: limits.Units{oq[i], ot[i]}}
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
	for _, lw := range b.lc.Windows() {
		if !lw.Ops.TryAcquire() {
			continue
		}
		w := lw.T.(*window)
		w.Lock()
		w.Expire(limits.StampOf(time.Unix(0, ns)))
		w.EndLeases(ns)
		r := w.prepare(false)
		if r == nil {
			if !w.holds() {
				w.Unregister()
			}
			w.Unlock()
			w.Ops.Release()
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
				r.deltas = slices.DeleteFunc(r.deltas, func(d lease.Delta) bool { return d.N[0] < 0 || d.N[1] < 0 })
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
		w.Ops.Release()
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
func (w *window) holds() bool { return len(w.lost) > 0 || w.Holds() }
