package nodelimits

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/internal/lease"
)

type acctKey struct {
	budget string
	p      catalog.ID
}

// ledger is a budget as the node sees it: accounts leased from the
// server's.
type ledger struct {
	b     *Backend
	ident string
}

// Ledger implements limits.Backend: the spend lives at the server, so
// nothing is loaded.
func (b *Backend) Ledger(_ context.Context, bud *limits.Budget, month limits.Month) (limits.Ledger, error) {
	return &ledger{b: b, ident: bud.Ident()}, nil
}

func (l *ledger) Account(p catalog.ID) limits.Account {
	k := acctKey{l.ident, p}
	if a, ok := l.b.accts.Load(k); ok {
		return a.(*account)
	}
	a, _ := l.b.accts.LoadOrStore(k, &account{b: l.b, key: k, ops: lease.NewSem()})
	return a.(*account)
}

// Accounts lists this node's figures (the server's SHOW BUDGETS has
// everyone's).
func (l *ledger) Accounts(month limits.Month) []limits.AccountState {
	var out []limits.AccountState
	l.b.accts.Range(func(k, v any) bool {
		if k.(acctKey).budget != l.ident {
			return true
		}
		a := v.(*account)
		a.Lock()
		s, r := a.State(month)
		a.Unlock()
		if s != 0 || r != 0 {
			out = append(out, limits.AccountState{Principal: k.(acctKey).p, Spent: s, Reserved: r})
		}
		return true
	})
	slices.SortFunc(out, func(x, y limits.AccountState) int { return cmp.Compare(x.Principal, y.Principal) })
	return out
}

// account is one budget account as this node sees it: a lease holds slice
// money of the server's account; Take reserves from what is left of it
// (slice − cum − reserved), Settle moves reservations to cum, which the
// background work reports to the server (cumulative: a resend is
// idempotent).
type account struct {
	sync.Mutex
	b     *Backend
	key   acctKey
	month limits.Month

	lease               int64
	slice, cum, sent    limits.Money
	reserved            limits.Money
	spent               limits.Money // settled this month through earlier leases (State)
	lastUse             int64        // mono ns
	old                 []oldLease   // leases to settle and give back (earlier month, Close)
	closing, registered bool
	returning           bool         // the slice is being given back: not to be used
	served              limits.Money // reserved from the slices since the last grant
	deny                struct {
		need limits.Money
		at   int64
	}
	waiters atomic.Int32
	ops     lease.Sem
}

type oldLease struct {
	month limits.Month
	lease int64
	cum   limits.Money
}

func (a *account) register() {
	if !a.registered {
		a.registered = true
		a.b.mu.Lock()
		a.b.accounts[a] = struct{}{}
		a.b.mu.Unlock()
	}
}

func (a *account) avail() limits.Money { return a.slice - a.cum - a.reserved }

// roll starts a later month; the earlier month's lease is settled and
// given back by the next round trip.
func (a *account) roll(month limits.Month) bool {
	if month > a.month {
		if a.lease != 0 {
			a.old = append(a.old, oldLease{a.month, a.lease, a.cum})
			a.register()
		}
		a.month, a.lease, a.slice, a.cum, a.sent, a.reserved, a.spent, a.deny.at = month, 0, 0, 0, 0, 0, 0, 0
	}
	return month == a.month
}

func (a *account) Take(month limits.Month, amount, limit limits.Money) limits.Verdict {
	if !a.roll(month) {
		return limits.Verdict{Wait: time.Second}
	}
	if amount <= 0 {
		return limits.Verdict{OK: true}
	}
	ns := mono()
	if a.lease != 0 && !a.returning && amount <= a.avail() && a.b.freshAt(ns) {
		a.reserved += amount
		a.served += amount
		a.lastUse = ns
		return limits.Verdict{OK: true}
	}
	if a.deny.at != 0 && amount-max(a.avail(), 0) >= a.deny.need && ns-a.deny.at < int64(lease.DenyTTL) {
		return limits.Verdict{}
	}
	return limits.Verdict{Refill: true}
}

func (a *account) Put(month limits.Month, amount limits.Money) {
	if month == a.month && amount > 0 {
		a.reserved -= min(amount, a.reserved)
	}
}

func (a *account) Settle(month limits.Month, reserved, actual limits.Money) {
	if month != a.month {
		return
	}
	a.reserved -= min(max(reserved, 0), a.reserved)
	a.cum += max(actual, 0)
	a.register()
}

func (a *account) State(month limits.Month) (limits.Money, limits.Money) {
	if month != a.month {
		return 0, 0
	}
	return a.spent + a.cum, a.reserved
}

func (a *account) wire() (catalog.ID, string) { return a.b.principal(a.key.p) }

// Refill leases what amount needs (with a margin while the account is
// busy), settling what was settled in the same round trip. It returns nil
// when the account may answer: a slice was granted, or the server refused
// and the account refuses locally.
func (a *account) Refill(ctx context.Context, month limits.Month, amount, limit limits.Money) error {
	a.waiters.Add(1)
	defer a.waiters.Add(-1)
	if err := a.ops.Acquire(ctx); err != nil {
		return err
	}
	defer a.ops.Release()
	for range 2 {
		a.Lock()
		if !a.roll(month) || (a.lease != 0 && amount <= a.avail() && a.b.fresh()) {
			a.Unlock()
			return nil
		}
		// 0 when the slice covers it but the node was out of touch: the
		// round trip confirms the lease is still the node's.
		need := max(amount-max(a.avail(), 0), 0)
		if a.lease == 0 {
			need = amount
		}
		if a.deny.at != 0 && need >= a.deny.need && mono()-a.deny.at < int64(lease.DenyTTL) {
			a.Unlock()
			return nil
		}
		var want limits.Money
		if k := limits.Money(a.waiters.Load()); k > 1 {
			want = amount * (k - 1)
		}
		if mono()-a.lastUse < int64(a.b.o.IdleReturn) { // busy: twice what the last slice served
			want = max(want, 2*amount, 2*a.served)
		}
		p, name := a.wire()
		op := api.BudgetLeaseOp{Op: api.LeaseGrant, Budget: a.key.budget, Principal: p, PrincipalName: name, Month: int32(month),
			Lease: a.lease, Need: int64(need), Want: int64(want), Settled: int64(a.cum)}
		sentCum := a.cum
		a.Unlock()
		resp, err := a.b.rt(ctx, &api.LeaseRequest{Budgets: []api.BudgetLeaseOp{op}})
		if err != nil {
			return err
		}
		r := &resp.Budgets[0]
		if r.Error != "" {
			return resultErr(r.Error, r.Unavailable)
		}
		a.Lock()
		if month != a.month {
			a.Unlock()
			return nil
		}
		switch {
		case r.Unknown:
			a.forget()
			a.Unlock()
			continue
		case r.Refused:
			a.sent = max(a.sent, sentCum)
			a.deny.need, a.deny.at = need, mono()
		default:
			if r.Lease != a.lease { // a new lease: the old one is gone
				a.forget()
				a.lease = r.Lease
			} else {
				a.sent = max(a.sent, sentCum)
			}
			a.slice += limits.Money(r.Granted)
			a.served = 0
			a.deny.at = 0
			a.register()
		}
		a.Unlock()
		return nil
	}
	return nil
}

// forget drops the lease (taken back by the server: forfeited after the
// TTL, or the server restarted); its settled cost stays in State.
func (a *account) forget() {
	a.spent += a.cum
	a.lease, a.slice, a.cum, a.sent = 0, 0, 0, 0
}

// prepare is the account's operation for Sync: earlier leases to give
// back first, else the settled cost to report, or the idle slice to give
// back. held reports whether the account holds a slice (heartbeats keep
// it). Locked; ops held (released by done, or by the caller when op is
// nil).
func (a *account) prepare() (op *api.BudgetLeaseOp, done func(*api.BudgetLeaseResult, error), held bool) {
	p, name := a.wire()
	if len(a.old) > 0 {
		o := a.old[0]
		op = &api.BudgetLeaseOp{Op: api.LeaseReturn, Budget: a.key.budget, Principal: p, PrincipalName: name, Month: int32(o.month),
			Lease: o.lease, Settled: int64(o.cum)}
		return op, func(r *api.BudgetLeaseResult, err error) {
			a.Lock()
			if err == nil && r.Error == "" {
				a.old = a.old[1:]
			}
			a.Unlock()
			a.ops.Release()
		}, true
	}
	if a.lease == 0 {
		if a.registered && a.reserved == 0 {
			a.registered = false
			a.b.mu.Lock()
			delete(a.b.accounts, a)
			a.b.mu.Unlock()
		}
		return nil, nil, false
	}
	idle := a.reserved == 0 && (a.closing || mono()-a.lastUse >= int64(a.b.o.IdleReturn))
	if !idle && a.cum == a.sent {
		return nil, nil, true
	}
	kind := api.LeaseSettle
	if idle {
		kind = api.LeaseReturn
	}
	lease, cum := a.lease, a.cum
	a.returning = idle
	op = &api.BudgetLeaseOp{Op: kind, Budget: a.key.budget, Principal: p, PrincipalName: name, Month: int32(a.month),
		Lease: lease, Settled: int64(cum)}
	return op, func(r *api.BudgetLeaseResult, err error) {
		a.Lock()
		a.returning = false
		if err == nil && a.lease == lease {
			switch {
			case r.Unknown:
				a.forget()
			case r.Error != "":
			case idle:
				a.spent += cum
				a.cum -= cum
				a.lease, a.slice, a.sent = 0, 0, 0
			default:
				a.sent = max(a.sent, cum)
			}
		}
		a.Unlock()
		a.ops.Release()
	}, true
}
