package nodelimits

import (
	"cmp"
	"context"
	"slices"

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
	na := &account{b: l.b, key: k}
	na.Init(0, na)
	na.Overdraw = true
	a, _ := l.b.accts.LoadOrStore(k, na)
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

// account is one budget account as this node sees it: the shared account
// client (lease.Account) over one lease of the server's account. Avail is
// the lease's slice − Cum − Reserved (a cost settled above its
// reservation draws it below zero: the slice is fixed at the server);
// Settle moves reservations to Cum, which the background work reports to
// the server (cumulative: a resend is idempotent).
type account struct {
	lease.Account
	b   *Backend
	key acctKey

	lease               int64
	spent               limits.Money // settled this month through earlier leases (State)
	lastUse             int64        // mono ns
	seen                int64        // mono ns of the last Usable
	old                 []oldLease   // leases to settle and give back (earlier month, Close)
	closing, registered bool
	returning           bool // the slice is being given back: not to be used
}

var _ lease.AccountTransport = (*account)(nil)

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

// Register implements lease.AccountTransport.
func (a *account) Register() { a.register() }

// Usable implements lease.AccountTransport: the slice is the node's while
// the server was reached within TTL/2 and it is not being given back.
func (a *account) Usable() bool {
	a.seen = mono()
	return a.lease != 0 && !a.returning && a.b.freshAt(a.seen)
}

// Took implements lease.AccountTransport.
func (a *account) Took(_, _ limits.Money) { a.lastUse = a.seen }

// NewMonth implements lease.AccountTransport: the earlier month's lease is
// settled and given back by the next round trip.
func (a *account) NewMonth(limits.Month) {
	if a.lease != 0 {
		a.old = append(a.old, oldLease{a.Month, a.lease, a.Cum})
		a.register()
	}
	a.lease, a.spent = 0, 0
}

func (a *account) State(month limits.Month) (limits.Money, limits.Money) {
	if month != a.Month {
		return 0, 0
	}
	return a.spent + a.Cum, a.Reserved
}

func (a *account) wire() (catalog.ID, string) { return a.b.principal(a.key.p) }

// Refill leases what amount needs (with a margin while the account is
// busy), settling what was settled in the same round trip. It returns nil
// when the account may answer: a slice was granted, or the server refused
// and the account refuses locally.
func (a *account) Refill(ctx context.Context, month limits.Month, amount, limit limits.Money) error {
	a.Waiters.Add(1)
	defer a.Waiters.Add(-1)
	if err := a.Ops.Acquire(ctx); err != nil {
		return err
	}
	defer a.Ops.Release()
	for range 2 {
		a.Lock()
		if !a.Roll(month) || (a.lease != 0 && amount <= a.Avail && a.b.fresh()) {
			a.Unlock()
			return nil
		}
		// 0 when the slice covers it but the node was out of touch: the
		// round trip confirms the lease is still the node's.
		need := max(amount-max(a.Avail, 0), 0)
		if a.lease == 0 {
			need = amount
		}
		if a.Denied(need, mono()) {
			a.Unlock()
			return nil
		}
		var want limits.Money
		if k := limits.Money(a.Waiters.Load()); k > 1 {
			want = amount * (k - 1)
		}
		if mono()-a.lastUse < int64(a.b.o.IdleReturn) { // busy: twice what the last slice served
			want = max(want, 2*amount, 2*a.Served)
		}
		p, name := a.wire()
		op := api.BudgetLeaseOp{Op: api.LeaseGrant, Budget: a.key.budget, Principal: p, PrincipalName: name, Month: int32(month),
			Lease: a.lease, Need: int64(need), Want: int64(want), Settled: int64(a.Cum)}
		sentCum := a.Cum
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
		if month != a.Month {
			a.Unlock()
			return nil
		}
		switch {
		case r.Unknown:
			a.forget()
			a.Unlock()
			continue
		case r.Refused:
			a.Sent = max(a.Sent, sentCum)
			a.Deny.Need, a.Deny.At = need, mono()
		default:
			if r.Lease != a.lease { // a new lease: the old one is gone
				a.forget()
				a.lease = r.Lease
			} else {
				a.Sent = max(a.Sent, sentCum)
			}
			a.Avail += limits.Money(r.Granted)
			a.Served = 0
			a.Deny.At = 0
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
	a.spent += a.Cum
	a.lease, a.Cum, a.Sent = 0, 0, 0
	a.Avail = -a.Reserved // the slice is gone
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
			a.Ops.Release()
		}, true
	}
	if a.lease == 0 {
		if a.registered && a.Reserved == 0 {
			a.registered = false
			a.b.mu.Lock()
			delete(a.b.accounts, a)
			a.b.mu.Unlock()
		}
		return nil, nil, false
	}
	idle := a.Reserved == 0 && (a.closing || mono()-a.lastUse >= int64(a.b.o.IdleReturn))
	if !idle && a.Cum == a.Sent {
		return nil, nil, true
	}
	kind := api.LeaseSettle
	if idle {
		kind = api.LeaseReturn
	}
	id, cum := a.lease, a.Cum
	a.returning = idle
	op = &api.BudgetLeaseOp{Op: kind, Budget: a.key.budget, Principal: p, PrincipalName: name, Month: int32(a.Month),
		Lease: id, Settled: int64(cum)}
	return op, func(r *api.BudgetLeaseResult, err error) {
		a.Lock()
		a.returning = false
		if err == nil && a.lease == id {
			switch {
			case r.Unknown:
				a.forget()
			case r.Error != "":
			case idle:
				a.spent += cum
				a.Cum -= cum
				a.lease, a.Sent = 0, 0
				a.Avail = -a.Cum - a.Reserved // the slice is gone
			default:
				a.Sent = max(a.Sent, cum)
			}
		}
		a.Unlock()
		a.Ops.Release()
	}, true
}
