package limits

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// SpendSource gives the settled spend of a budget's scope for a month, so
// that budgets survive a restart: the integrator sums cost_usd of the
// month's usage rows that the budget applies to (its principal, service
// and tag filters) from the event store.
type SpendSource interface {
	MonthSpend(ctx context.Context, b *Budget, month Month) (MonthSpend, error)
}

// MonthSpend is a scope's spend for a month: Total for a budget of one
// scope; ByPrincipal (subject → spend) for FOR EACH USER.
type MonthSpend struct {
	Total       Money
	ByPrincipal map[catalog.ID]Money
}

// SpendSourceFunc adapts a function to SpendSource.
type SpendSourceFunc func(ctx context.Context, b *Budget, month Month) (MonthSpend, error)

func (f SpendSourceFunc) MonthSpend(ctx context.Context, b *Budget, month Month) (MonthSpend, error) {
	return f(ctx, b, month)
}

// Memory is the in-process backend: every counter is local and
// authoritative (one replica). Budgets start from the SpendSource.
type Memory struct {
	spend SpendSource
}

// NewMemory returns the in-memory backend; spend may be nil (budgets then
// start the month at zero).
func NewMemory(spend SpendSource) *Memory { return &Memory{spend: spend} }

var _ Backend = (*Memory)(nil)

// Window implements Backend.
func (m *Memory) Window(WindowKey) Window { return &memWindow{} }

// Ledger implements Backend.
func (m *Memory) Ledger(ctx context.Context, b *Budget, month Month) (Ledger, error) {
	l := &memLedger{month: month}
	if m.spend == nil {
		return l, nil
	}
	s, err := m.spend.MonthSpend(ctx, b, month)
	if err != nil {
		return nil, err
	}
	if b.Level == LevelEachUser {
		l.preload = s.ByPrincipal
	} else {
		l.preload = map[catalog.ID]Money{0: s.Total}
	}
	return l, nil
}

// errLocal is Refill's answer in memory: there is no capacity elsewhere.
var errLocal = errors.New("limits: the in-memory backend holds the whole capacity")

// memWindow keeps the charged buckets of the last window, oldest first
// (a bucket is one entry, both dimensions): a key with a few calls a
// minute holds a few entries in the struct itself; a busy key at most
// Buckets. total is the sum of the live entries e[h:].
type memWindow struct {
	sync.Mutex
	retired bool
	total   Units
	h       int
	e       []entry
	inl     [3]entry // e's first backing array
}

type entry struct {
	s Stamp
	n Units
}

// expire drops the buckets that have left the window at bucket s.
func (w *memWindow) expire(s Stamp) {
	for w.h < len(w.e) && int64(s-w.e[w.h].s) >= Buckets {
		w.total[0] -= w.e[w.h].n[0]
		w.total[1] -= w.e[w.h].n[1]
		w.h++
	}
	if w.h == len(w.e) {
		w.e, w.h = w.e[:0], 0
	}
}

// charge adds n in bucket s, which it returns; a bucket older than the
// newest charged one (a clock that went back) is charged to the newest,
// which counts longer.
func (w *memWindow) charge(s Stamp, n Units) Stamp {
	w.total[0], w.total[1] = sat(w.total[0], n[0]), sat(w.total[1], n[1])
	if len(w.e) > w.h {
		if last := &w.e[len(w.e)-1]; last.s >= s {
			last.n[0], last.n[1] = sat(last.n[0], n[0]), sat(last.n[1], n[1])
			return last.s
		}
	}
	if w.e == nil {
		w.e = w.inl[:0]
	}
	if len(w.e) == cap(w.e) && w.h > 0 {
		k := copy(w.e, w.e[w.h:])
		w.e, w.h = w.e[:k], 0
	}
	w.e = append(w.e, entry{s, n})
	return s
}

// find returns the live entry of bucket s, or nil.
func (w *memWindow) find(s Stamp) *entry {
	for i := len(w.e) - 1; i >= w.h; i-- {
		switch {
		case w.e[i].s == s:
			return &w.e[i]
		case w.e[i].s < s:
			return nil
		}
	}
	return nil
}

// emptyAt is when dimension d's count is zero again: when its newest
// charged bucket leaves the window.
func (w *memWindow) emptyAt(d Dim, now time.Time) time.Duration {
	for i := len(w.e) - 1; i >= w.h; i-- {
		if w.e[i].n[d] > 0 {
			return time.Duration(int64(w.e[i].s+Stamp(Buckets))*int64(Granularity) - now.UnixNano())
		}
	}
	return 0
}

func (w *memWindow) Take(now time.Time, n, limit Units) Verdict {
	if w.retired {
		return Verdict{Retired: true}
	}
	s := StampOf(now)
	w.expire(s)
	var v Verdict
	refused := false
	for d := range limit {
		if limit[d] <= 0 || n[d] <= limit[d]-w.total[d] {
			continue
		}
		wait := Never
		if n[d] <= limit[d] {
			// The oldest buckets leave first: bucket t stops counting at
			// t+Buckets.
			freed := int64(0)
			for i := w.h; i < len(w.e); i++ {
				freed += w.e[i].n[d]
				if n[d] <= limit[d]-(w.total[d]-freed) {
					wait = max(time.Duration(int64(w.e[i].s+Stamp(Buckets))*int64(Granularity)-now.UnixNano()), time.Millisecond)
					break
				}
			}
		}
		if !refused {
			v = Verdict{Dim: Dim(d), Wait: wait}
			refused = true
		} else if v.Wait != Never && (wait == Never || wait > v.Wait) {
			v.Wait = wait
		}
	}
	if refused {
		return v
	}
	var m Units
	for d := range limit {
		if limit[d] > 0 {
			m[d] = max(n[d], 0)
		}
	}
	if m != (Units{}) {
		s = w.charge(s, m)
	}
	v = Verdict{OK: true, At: s}
	for d := range limit {
		if limit[d] > 0 {
			v.Remaining[d] = max(limit[d]-w.total[d], 0)
			v.Reset[d] = w.emptyAt(Dim(d), now)
		}
	}
	return v
}

func (w *memWindow) Put(now time.Time, at Stamp, n Units) {
	w.expire(StampOf(now))
	e := w.find(at)
	if e == nil {
		return
	}
	for d := range n {
		k := min(max(n[d], 0), e.n[d])
		e.n[d] -= k
		w.total[d] -= k
	}
}

func (w *memWindow) Add(now time.Time, at Stamp, n Units) bool {
	if w.retired {
		return false
	}
	s := StampOf(now)
	w.expire(s)
	n[0], n[1] = max(n[0], 0), max(n[1], 0)
	if e := w.find(at); e != nil {
		e.n[0], e.n[1] = sat(e.n[0], n[0]), sat(e.n[1], n[1])
		w.total[0], w.total[1] = sat(w.total[0], n[0]), sat(w.total[1], n[1])
		return true
	}
	if n != (Units{}) {
		w.charge(s, n)
	}
	return true
}

func (w *memWindow) Status(now time.Time, limit Units) (rem Units, reset [2]time.Duration) {
	w.expire(StampOf(now))
	for d := range limit {
		rem[d] = max(limit[d]-w.total[d], 0)
		reset[d] = w.emptyAt(Dim(d), now)
	}
	return rem, reset
}

func (w *memWindow) Retire(now time.Time) bool {
	w.expire(StampOf(now))
	w.retired = w.retired || w.total == Units{}
	return w.retired
}

func (w *memWindow) Refill(context.Context, time.Time, Units, Units) error { return errLocal }

type memLedger struct {
	month    Month
	preload  map[catalog.ID]Money // spend loaded for month
	accounts readMap[catalog.ID, *memAccount]
}

func (l *memLedger) Account(p catalog.ID) Account {
	if a, ok := l.accounts.load(p); ok {
		return a
	}
	return l.accounts.get(p, func() *memAccount {
		return &memAccount{month: l.month, spent: max(l.preload[p], 0)}
	})
}

func (l *memLedger) Accounts(month Month) []AccountState {
	type acct struct {
		p catalog.ID
		a *memAccount
	}
	var accts []acct
	l.accounts.mu.Lock()
	l.accounts.each(func(p catalog.ID, a *memAccount) { accts = append(accts, acct{p, a}) })
	var pending []catalog.ID // preloaded spend with no account yet
	if month == l.month {
		for p, m := range l.preload {
			if _, ok := l.accounts.dirty[p]; !ok && m > 0 {
				pending = append(pending, p)
			}
		}
	}
	l.accounts.mu.Unlock()
	var out []AccountState
	for _, x := range accts {
		x.a.Lock()
		s, r := x.a.State(month)
		x.a.Unlock()
		if s != 0 || r != 0 {
			out = append(out, AccountState{Principal: x.p, Spent: s, Reserved: r})
		}
	}
	for _, p := range pending {
		out = append(out, AccountState{Principal: p, Spent: l.preload[p]})
	}
	slices.SortFunc(out, func(a, b AccountState) int { return cmp.Compare(a.Principal, b.Principal) })
	return out
}

type memAccount struct {
	sync.Mutex
	month           Month
	spent, reserved Money
}

// roll starts a later month afresh; it reports whether month is current.
func (a *memAccount) roll(month Month) bool {
	if month > a.month {
		a.month, a.spent, a.reserved = month, 0, 0
	}
	return month == a.month
}

func (a *memAccount) Take(month Month, amount, limit Money) Verdict {
	if !a.roll(month) {
		// The clock went back over a month boundary: this month's figures
		// are gone, so nothing can be admitted against them.
		return Verdict{Wait: time.Second}
	}
	if amount <= 0 || amount <= limit-addMoney(a.spent, a.reserved) {
		a.reserved = addMoney(a.reserved, max(amount, 0))
		return Verdict{OK: true}
	}
	return Verdict{}
}

func (a *memAccount) Put(month Month, amount Money) {
	if a.roll(month) {
		a.reserved = max(a.reserved-max(amount, 0), 0)
	}
}

func (a *memAccount) Settle(month Month, reserved, actual Money) {
	if a.roll(month) {
		a.reserved = max(a.reserved-max(reserved, 0), 0)
		a.spent = addMoney(a.spent, max(actual, 0))
	}
}

func (a *memAccount) State(month Month) (Money, Money) {
	if month != a.month {
		return 0, 0
	}
	return a.spent, a.reserved
}

func (a *memAccount) Refill(context.Context, Month, Money, Money) error { return errLocal }
