package limits

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// Per-key operations for a lease server (gateway/limits/nodelimits): the
// catalog server lends slices of its own windows and budget accounts to
// gateway nodes, so that a node's leases and the server's own calls are
// counted by one set of counters, whatever the server's Backend (in
// memory, or pglimits' leases from PostgreSQL). These run the windows'
// and accounts' own Take, Put, Add and Settle under their locks, with the
// backend's Refill when a shared backend is short; the lease rules (what
// is dated where, when unused units come back) are the caller's.

// ErrNoLimit is returned for a key or budget the installed definitions do
// not have (a node ahead of or behind the server's revision).
var ErrNoLimit = errors.New("limits: no such limit or budget at this revision")

// Ident identifies a budget's running state: its name and scope (level,
// principal, service, tags). Apply keeps a budget's ledger while its
// Ident stays the same; a gateway node names budgets by it.
func (b *Budget) Ident() string { return b.ident() }

// Now is the Limiter's clock.
func (l *Limiter) Now() time.Time { return l.now() }

// windowOf returns the live window of key: the fixed window of a service
// or group limit of the installed definitions, else the per-principal
// window (created when missing).
func (l *Limiter) windowOf(key WindowKey) (Window, error) {
	sk := slotKey{key.Securable, key.Scope, key.Principal}
	switch key.Scope {
	case ScopePrincipal:
		if key.Principal == 0 {
			return nil, ErrNoLimit
		}
		return l.windows.get(sk, l.now, l.backend), nil
	case ScopeService, ScopeGroup:
		l.mu.Lock()
		w := l.static[sk]
		l.mu.Unlock()
		if w == nil {
			return nil, ErrNoLimit
		}
		return w, nil
	}
	return nil, ErrNoLimit
}

// TakeWindow charges n to key's window under limit now, if it fits (the
// window's Take, refilled from the backend when a shared backend is
// short, with Reserve's rules: a store that refuses or whose slices do not
// last is a refusal). A refusal is a Verdict without OK; an error wraps
// ErrNoLimit or ErrUnavailable.
func (l *Limiter) TakeWindow(ctx context.Context, key WindowKey, n, limit Units) (Verdict, error) {
	for attempt := 0; attempt < 1000; attempt++ {
		w, err := l.windowOf(key)
		if err != nil {
			return Verdict{}, err
		}
		now := l.now()
		w.Lock()
		v := w.Take(now, n, limit)
		w.Unlock()
		switch {
		case v.Retired:
			continue
		case !v.Refill:
			return v, nil
		case attempt >= 4: // as Reserve: a refusal that may have aged, retried soon
			return Verdict{Wait: time.Second}, nil
		}
		if err := w.Refill(ctx, now, n, limit); errors.Is(err, ErrUnavailable) {
			return Verdict{}, err
		} else if err != nil { // the store refused: as Reserve, a refusal
			return Verdict{Wait: time.Second}, nil
		}
	}
	return Verdict{}, errors.New("limits: windows swept under a lease 1000 times")
}

// PutWindow gives back n charged to key's window in bucket at.
func (l *Limiter) PutWindow(key WindowKey, at Stamp, n Units) {
	w, err := l.windowOf(key)
	if err != nil {
		return
	}
	w.Lock()
	w.Put(l.now(), at, n)
	w.Unlock()
}

// AddWindow charges n to key's window unconditionally, in the current
// bucket, which it returns.
func (l *Limiter) AddWindow(key WindowKey, n Units) Stamp {
	now := l.now()
	s := StampOf(now)
	w, err := l.windowOf(key)
	if err != nil {
		return s
	}
	l.add(w, slotKey{key.Securable, key.Scope, key.Principal}, now, s, n)
	return s
}

// WindowStatus is the window's remaining units under limit now.
func (l *Limiter) WindowStatus(key WindowKey, limit Units) Units {
	w, err := l.windowOf(key)
	if err != nil {
		return Units{}
	}
	w.Lock()
	rem, _ := w.Status(l.now(), limit)
	w.Unlock()
	return rem
}

// budgetAccount returns the account of principal in the budget named by
// ident (0 for a budget of one scope), and the budget's limit.
func (l *Limiter) budgetAccount(ident string, principal catalog.ID) (Account, Money, error) {
	p := l.pol.Load()
	for _, bp := range p.budgets {
		if bp.def.ident() != ident {
			continue
		}
		if bp.ledger.err != nil {
			return nil, 0, fmt.Errorf("%w: budget %s: %w", ErrUnavailable, bp.def.Name, bp.ledger.err)
		}
		if bp.ledger.shared != nil {
			return bp.ledger.shared, bp.def.Limit, nil
		}
		if principal == 0 {
			return nil, 0, ErrNoLimit
		}
		return bp.ledger.ledger.Account(principal), bp.def.Limit, nil
	}
	return nil, 0, ErrNoLimit
}

// Month is the Limiter's current calendar month.
func (l *Limiter) Month() Month { return l.monthOf(l.now()) }

// TakeBudget reserves amount on the account if spent + reserved + amount
// stays within the budget's limit (refilled from the backend when a
// shared backend is short). A refusal is a Verdict without OK.
func (l *Limiter) TakeBudget(ctx context.Context, ident string, principal catalog.ID, month Month, amount Money) (Verdict, error) {
	a, limit, err := l.budgetAccount(ident, principal)
	if err != nil {
		return Verdict{}, err
	}
	for attempt := 0; ; attempt++ {
		a.Lock()
		v := a.Take(month, amount, limit)
		a.Unlock()
		if !v.Refill {
			return v, nil
		}
		if attempt >= 4 {
			return Verdict{}, fmt.Errorf("%w: the shared store's slices do not last", ErrUnavailable)
		}
		if err := a.Refill(ctx, month, amount, limit); errors.Is(err, ErrUnavailable) {
			return Verdict{}, err
		} else if err != nil { // the store refused (slices held elsewhere): exhausted, as Reserve
			return Verdict{}, nil
		}
	}
}

// BudgetState is the account's spent and reserved money and the budget's
// limit.
func (l *Limiter) BudgetState(ident string, principal catalog.ID, month Month) (spent, reserved, limit Money, err error) {
	a, limit, err := l.budgetAccount(ident, principal)
	if err != nil {
		return 0, 0, 0, err
	}
	a.Lock()
	spent, reserved = a.State(month)
	a.Unlock()
	return spent, reserved, limit, nil
}

// SettleBudget replaces reserved of the account's reservation with the
// actual cost; PutBudget gives back a reservation not used.
func (l *Limiter) SettleBudget(ident string, principal catalog.ID, month Month, reserved, actual Money) error {
	a, _, err := l.budgetAccount(ident, principal)
	if err != nil {
		return err
	}
	a.Lock()
	a.Settle(month, reserved, actual)
	a.Unlock()
	return nil
}

// PutBudget gives back amount reserved on the account.
func (l *Limiter) PutBudget(ident string, principal catalog.ID, month Month, amount Money) error {
	a, _, err := l.budgetAccount(ident, principal)
	if err != nil {
		return err
	}
	a.Lock()
	a.Put(month, amount)
	a.Unlock()
	return nil
}
