package nodelimits

import (
	"context"
	"time"

	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/internal/lease"
)

const sec = int64(time.Second)

// window is one rate-limit key as this node sees it: the shared lease
// client (its own usage by bucket, the leases it holds, what it has to
// send) over the node API, and the server's room at the last answer.
type window struct {
	lease.Window
	b   *Backend
	rem limits.Units // the server's room at the last answer
}

var _ lease.Transport = (*window)(nil)

// Window implements limits.Backend.
func (b *Backend) Window(key limits.WindowKey) limits.Window {
	w := &window{b: b}
	w.Init(&b.lc, key, w)
	return w
}

// Remaining implements lease.Transport: the server's room at the last
// answer plus what the open leases have left.
func (w *window) Remaining(now time.Time, limit limits.Units) (rem limits.Units, reset [2]time.Duration) {
	ns := now.UnixNano()
	avail := w.OpenAvail()
	for d := range limit {
		rem[d] = min(max(w.rem[d]+avail[d], 0), limit[d])
		for i := len(w.Hist) - 1; i >= 0; i-- {
			if w.Hist[i].N[d] > 0 {
				reset[d] = time.Duration(max((int64(w.Hist[i].S)+limits.Buckets)*sec-ns, 0))
				break
			}
		}
	}
	return rem, reset
}

// Refusal implements lease.Transport: the server's verdict, aged.
func (w *window) Refusal(now time.Time, m, limit limits.Units, dn *lease.Denial) limits.Verdict {
	if lease.Fits(m, dn.Free) {
		return limits.Verdict{}
	}
	wait := dn.Wait
	if wait != limits.Never {
		wait = max(wait-time.Duration(now.UnixNano()-dn.At), time.Millisecond)
	}
	return limits.Verdict{Dim: dn.Dim, Wait: wait}
}

// RefundBucket implements lease.Transport: a closed lease's used units
// were charged at the server's bucket of its close.
func (w *window) RefundBucket(l *lease.Lease, _ limits.Stamp) limits.Stamp { return l.At }

// Charge implements lease.Transport: usage beyond a reservation rides on
// the lease's close while it is not sent, else it is an adjustment the
// server charges now.
func (w *window) Charge(l *lease.Lease, target, _ limits.Stamp, n limits.Units) {
	if l != nil && (l.State == lease.Open || l.State == lease.Closing) {
		l.Used = lease.AddAt(l.Used, target, n)
		for d := range n {
			l.Avail[d] -= min(l.Avail[d], n[d])
		}
		return
	}
	w.Deltas = append(w.Deltas, lease.Delta{N: n}) // charged unconditionally by the server, now
}

// Drop implements lease.Transport: a window is retired only when every
// lease is closed and nothing is left to send.
func (w *window) Drop() bool {
	if len(w.Deltas) > 0 {
		return false
	}
	for _, l := range w.Leases {
		if l.State != lease.Closed {
			return false
		}
	}
	return true
}

// Grant implements lease.Transport: one grant operation in its own round
// trip (closes and adjustments go with the background Sync).
func (w *window) Grant(ctx context.Context, g *lease.Grant) error {
	// The server has no separate demand: the calls waiting here are
	// asked for as want.
	want := g.Want
	for d := range want {
		want[d] = max(want[d], g.Demand[d]-g.Need[d])
	}
	op := api.WindowLeaseOp{Op: api.LeaseGrant, Key: w.b.wireKey(w.Key), Limit: g.Limit, Need: g.Need, Want: want}
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
		w.AddLease(&lease.Lease{ID: r.Lease, Granted: r.Granted}, g.Start)
		return nil
	}
	wait := time.Duration(r.WaitNS)
	if r.WaitNS < 0 {
		wait = limits.Never
	}
	until := g.Start + int64(lease.DenyTTL)
	if wait != limits.Never {
		until = min(until, g.Start+int64(wait))
	}
	w.Deny = &lease.Denial{Until: until, Limit: g.Limit, Free: r.Remaining, Dim: limits.Dim(r.Dim), Wait: wait, At: g.Start}
	return nil
}

// prepare lists the window's operations for Sync and what to do with
// their answers. Locked; Ops held (released by the last answer).
func (w *window) prepare(ns int64) ([]api.WindowLeaseOp, []func(*api.WindowLeaseResult, error)) {
	w.Expire(limits.StampOf(time.Unix(0, ns)))
	w.EndLeases(ns)
	key := w.b.wireKey(w.Key)
	var ops []api.WindowLeaseOp
	var done []func(*api.WindowLeaseResult, error)
	for _, l := range w.Leases {
		if l.State != lease.Closing {
			continue
		}
		l.State = lease.Sending
		ops = append(ops, api.WindowLeaseOp{Op: api.LeaseClose, Key: key, Lease: l.ID, Used: l.UsedTotal()})
		done = append(done, func(r *api.WindowLeaseResult, err error) {
			if err != nil || r.Error != "" {
				l.State = lease.Closing // resent; the server ignores a close it has seen
				return
			}
			l.State, l.At = lease.Closed, limits.Stamp(r.At)
		})
	}
	for _, a := range w.Deltas {
		ops = append(ops, api.WindowLeaseOp{Op: api.LeaseAdjust, Key: key, At: int64(a.Bucket), Adjust: a.N})
		done = append(done, func(r *api.WindowLeaseResult, err error) {
			if (err != nil || r.Error != "") && (a.N[0] > 0 || a.N[1] > 0) {
				w.Deltas = append(w.Deltas, lease.Delta{Bucket: a.Bucket, N: limits.Units{max(a.N[0], 0), max(a.N[1], 0)}}) // refunds are dropped
			}
		})
	}
	w.Deltas = nil
	if len(ops) == 0 {
		if !w.Holds() {
			w.Unregister()
		}
		return nil, nil
	}
	// Answers are applied under the lock; the last one releases Ops.
	left := len(done)
	for i, f := range done {
		done[i] = func(r *api.WindowLeaseResult, err error) {
			w.Lock()
			f(r, err)
			left--
			last := left == 0
			if last && w.Holds() {
				w.Register()
			}
			w.Unlock()
			if last {
				w.Ops.Release()
			}
		}
	}
	return ops, done
}
