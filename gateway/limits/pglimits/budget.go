package pglimits

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/internal/lease"
)

// budgetKey identifies a budget's shared state: its name and scope (level,
// principal, service, tags), as the engine keeps a budget's running state
// across revisions. Every replica computes the same key from the same
// definition.
func budgetKey(b *limits.Budget) string {
	tags := slices.Clone(b.Tags)
	slices.SortFunc(tags, func(x, y limits.Tag) int {
		if c := strings.Compare(x.Key, y.Key); c != 0 {
			return c
		}
		return strings.Compare(x.Value, y.Value)
	})
	h := sha256.New()
	fmt.Fprintf(h, "%q\x00%d\x00%d\x00%d", b.Name, b.Level, b.Principal, b.Service)
	for _, t := range tags {
		fmt.Fprintf(h, "\x00%q\x00%q", t.Key, t.Value)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

type acctKey struct {
	budget uint32
	p      catalog.ID
}

// ledger is a budget's state as the engine sees it: a view of the shared
// accounts, seeded for its month from the SpendSource.
type ledger struct {
	b     *Backend
	id    uint32
	key   string
	def   limits.Budget
	month limits.Month
}

// budgetID interns a budget key.
func (b *Backend) budgetID(key string) uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	id, ok := b.budgets[key]
	if !ok {
		b.bkeys = append(b.bkeys, key)
		id = uint32(len(b.bkeys) - 1)
		b.budgets[key] = id
	}
	return id
}

// Ledger implements limits.Backend. The budget's month is seeded from the
// SpendSource by the first replica that loads it; when the database or the
// source cannot be reached, the ledger is returned unseeded and Sync
// retries: its calls are refused (BudgetUnavailable) until then.
func (b *Backend) Ledger(ctx context.Context, bud *limits.Budget, month limits.Month) (limits.Ledger, error) {
	key := budgetKey(bud)
	l := &ledger{b: b, id: b.budgetID(key), key: key, def: *bud, month: month}
	l.def.Tags = slices.Clone(bud.Tags)
	if err := b.seed(ctx, l); err != nil {
		b.mu.Lock()
		b.ledgers = append(b.ledgers, l)
		b.mu.Unlock()
	}
	return l, nil
}

type seedKey struct {
	budget uint32
	month  limits.Month
}

// seed makes sure the budget's month was seeded (by any replica).
func (b *Backend) seed(ctx context.Context, l *ledger) error {
	sk := seedKey{l.id, l.month}
	if _, ok := b.seeded.Load(sk); ok {
		return nil
	}
	var exists bool
	if err := b.rt(ctx, func(ctx context.Context) error {
		return b.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM limits_budgets WHERE budget = $1 AND month = $2)",
			l.key, int32(l.month)).Scan(&exists)
	}); err != nil {
		return err
	}
	if !exists {
		var ps, spent []int64
		if b.o.Spend != nil {
			s, err := b.o.Spend.MonthSpend(ctx, &l.def, l.month)
			if err != nil {
				return fmt.Errorf("%w: budget %s: spend: %w", limits.ErrUnavailable, l.def.Name, err)
			}
			if l.def.Level == limits.LevelEachUser {
				for p, m := range s.ByPrincipal {
					ps, spent = append(ps, int64(p)), append(spent, int64(m))
				}
			} else {
				ps, spent = []int64{0}, []int64{int64(s.Total)}
			}
		}
		if err := b.rt(ctx, func(ctx context.Context) error {
			_, err := b.pool.Exec(ctx, "SELECT limits_budget_seed($1, $2, $3, $4, $5, $6)",
				l.key, l.def.Name, int32(l.month), b.dbNow(), ps, spent)
			return err
		}); err != nil {
			return err
		}
	}
	b.seeded.Store(sk, struct{}{})
	return nil
}

// seedPending retries the seeds that failed.
func (b *Backend) seedPending(ctx context.Context) error {
	b.mu.Lock()
	ls := b.ledgers
	b.ledgers = nil
	b.mu.Unlock()
	var errs []error
	var failed []*ledger
	for _, l := range ls {
		if err := b.seed(ctx, l); err != nil {
			errs = append(errs, err)
			failed = append(failed, l)
		}
	}
	if len(failed) > 0 {
		b.mu.Lock()
		b.ledgers = append(b.ledgers, failed...)
		b.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (l *ledger) Account(p catalog.ID) limits.Account {
	k := acctKey{l.id, p}
	if a, ok := l.b.accts.Load(k); ok {
		return a.(*account)
	}
	na := &account{b: l.b, key: k, l: l}
	na.Init(l.month, na)
	a, _ := l.b.accts.LoadOrStore(k, na)
	return a.(*account)
}

// Accounts reads the month's figures from the database (every replica's
// spend), plus what this replica settled and has not sent yet; when the
// database cannot be reached, this replica's figures alone.
func (l *ledger) Accounts(month limits.Month) []limits.AccountState {
	type row struct{ spent, leased int64 }
	rows := map[catalog.ID]row{}
	ctx := context.Background()
	err := l.b.rt(ctx, func(ctx context.Context) error {
		rs, err := l.b.pool.Query(ctx, `SELECT principal, spent + forfeited, leased FROM limits_budget_accounts
			WHERE budget = $1 AND month = $2 AND (spent + forfeited > 0 OR leased > 0)`, l.key, int32(month))
		if err != nil {
			return err
		}
		var p, s, ld int64
		_, err = pgx.ForEachRow(rs, []any{&p, &s, &ld}, func() error {
			rows[catalog.ID(p)] = row{s, ld}
			return nil
		})
		return err
	})
	var out []limits.AccountState
	seen := map[catalog.ID]bool{}
	l.b.accts.Range(func(k, v any) bool {
		ak := k.(acctKey)
		if ak.budget != l.id {
			return true
		}
		a := v.(*account)
		a.Lock()
		spent, reserved := a.State(month)
		pending := a.Cum - a.Sent
		a.Unlock()
		if err == nil {
			r := rows[ak.p]
			spent, reserved = limits.Money(r.spent)+max(pending, 0), max(limits.Money(r.leased), reserved)
			seen[ak.p] = true
		}
		if spent != 0 || reserved != 0 {
			out = append(out, limits.AccountState{Principal: ak.p, Spent: spent, Reserved: reserved})
		}
		return true
	})
	if err == nil {
		for p, r := range rows {
			if !seen[p] {
				out = append(out, limits.AccountState{Principal: p, Spent: limits.Money(r.spent), Reserved: limits.Money(r.leased)})
			}
		}
	}
	slices.SortFunc(out, func(a, b limits.AccountState) int { return cmp.Compare(a.Principal, b.Principal) })
	return out
}

// account is one budget account as this replica sees it: the shared
// account client (lease.Account) over the replica's lease of the database
// account, which holds Avail + Reserved + the cost settled locally and not
// yet sent (Cum − Sent); Take and Settle move money between these in
// memory, round trips settle and lease.
type account struct {
	lease.Account
	b   *Backend
	key acctKey
	l   *ledger

	spentDB   limits.Money // the account's spend (every replica) at the last round trip, incl. forfeited
	refreshed int64        // real time of spentDB
	needClose bool         // give the whole lease back (idle); retried until done
	old       []oldLease   // earlier months' leases to settle and give back

	lastUses       uint64
	idleSince      int64        // real time when Uses stopped changing
	grantAt        int64        // real time of the last grant
	lastWant       limits.Money // the speculative part asked for last (0: not busy)
	notice         bool         // another replica is short of what this one holds
	contendedUntil int64        // real time: until then, lease exactly what is needed
	waitFailed     int64        // real time a wait for other replicas' slices last ended without them
	closing        bool         // Close: give everything back
	registered     bool

	pending     atomic.Int64 // sum of the amounts refills are waiting for
	prefetching bool
}

var _ lease.AccountTransport = (*account)(nil)

type oldLease struct {
	month limits.Month
	cum   limits.Money
}

func (a *account) register() {
	if !a.registered {
		a.registered = true
		a.b.mu.Lock()
		a.b.accounts[a.key] = a
		a.b.mu.Unlock()
	}
}

// Register implements lease.AccountTransport.
func (a *account) Register() { a.register() }

// Usable implements lease.AccountTransport: a slice is the replica's
// until it gives it back.
func (a *account) Usable() bool { return true }

// Took implements lease.AccountTransport.
func (a *account) Took(amount, limit limits.Money) { a.maybePrefetch(amount, limit) }

// NewMonth implements lease.AccountTransport: the earlier month's lease is
// settled and given back by the next round trip (calls in flight across
// the boundary are not carried over, as in the engine).
func (a *account) NewMonth(limits.Month) {
	if a.Cum > 0 || a.Avail > 0 || a.Reserved > 0 || a.Sent > 0 {
		a.old = append(a.old, oldLease{a.Month, a.Cum})
		a.register()
	}
	a.spentDB, a.refreshed, a.needClose, a.grantAt, a.lastWant = 0, 0, false, 0, 0
}

func (a *account) State(month limits.Month) (limits.Money, limits.Money) {
	if month != a.Month {
		return 0, 0
	}
	return a.spentDB + (a.Cum - a.Sent), a.Reserved
}

// acctOp is one round trip's worth for one account lease.
type acctOp struct {
	a       *account
	month   limits.Month
	settled limits.Money
	release limits.Money
	close   bool
	old     bool // an earlier month's lease
	refresh bool // nothing to change: read the figures

	grant                     bool
	limit, need, demand, want limits.Money
	localStart                int64 // the clock's (dates the operation)
	mono                      int64 // real time (idleness, refusals)
	prefetch                  bool

	// result
	granted, spent, leased, amount limits.Money
	revived, exhausted, contended  bool
}

const budgetSQL = `SELECT granted, o_spent, o_leased, o_amount, revived, exhausted, contended
FROM limits_budget($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`

func (b *Backend) budgetArgs(op *acctOp) []any {
	return []any{b.replica, b.dbTime(op.localStart), int64(b.o.ReplicaTTL), op.a.l.key, int64(op.a.key.p), int32(op.month),
		int64(op.settled), int64(op.release), op.close, op.grant, int64(op.limit), int64(op.need), int64(op.demand), int64(op.want)}
}

func (op *acctOp) scan(row pgx.Row) error {
	var g, s, l, am int64
	if err := row.Scan(&g, &s, &l, &am, &op.revived, &op.exhausted, &op.contended); err != nil {
		return err
	}
	op.granted, op.spent, op.leased, op.amount = limits.Money(g), limits.Money(s), limits.Money(l), limits.Money(am)
	return nil
}

// apply takes in the result of a round trip. Locked.
func (a *account) apply(op *acctOp) {
	if op.old {
		a.old = slices.DeleteFunc(a.old, func(o oldLease) bool { return o.month == op.month && o.cum == op.settled })
		return
	}
	if op.month != a.Month {
		return
	}
	a.spentDB, a.refreshed = op.spent, op.mono
	if op.refresh {
		return
	}
	a.Sent = max(a.Sent, op.settled)
	if op.close {
		a.needClose = false
	}
	if op.grant {
		if op.granted > 0 {
			a.Avail += op.granted
			a.Served = 0
			// idle from now, not from before the round trip: a slow one
			// must not make the slice idle before its caller's retry
			a.idleSince, a.grantAt, a.lastWant = mono(), op.mono, op.want
			a.Deny.At = 0
			a.b.stats.grants.Add(1)
			if op.prefetch {
				a.b.stats.prefetches.Add(1)
			}
			a.register()
		} else if !op.contended {
			a.b.stats.refusals.Add(1)
		}
		if op.exhausted {
			a.Deny.Need, a.Deny.At = op.need, op.mono
		}
	}
}

// want is the speculative part of a slice: when the last slice was
// granted less than IdleReturn ago, twice what was reserved from it (with
// this call), so that slices grow while the account is busy and the next
// one lasts longer; 0 otherwise (an occasional call leases what it needs).
// While another replica is short, 0.
func (a *account) want(ns int64, amount limits.Money) limits.Money {
	if ns < a.contendedUntil || a.grantAt == 0 || ns-a.grantAt >= int64(a.b.o.IdleReturn) {
		return 0
	}
	return 2 * (a.Served + amount)
}

// maybePrefetch leases the next slice in the background when a
// speculative one runs low (no clock read on this path).
func (a *account) maybePrefetch(amount, limit limits.Money) {
	if a.prefetching || a.lastWant == 0 || a.Avail >= a.lastWant/2 {
		return
	}
	b := a.b
	b.pmu.Lock()
	defer b.pmu.Unlock()
	if b.lc.Closed.Load() {
		return
	}
	a.prefetching = true
	b.prefetches.Add(1)
	go a.prefetch(limit, 2*(a.Served+amount))
}

func (a *account) prefetch(limit, want limits.Money) {
	defer a.b.prefetches.Done()
	defer func() {
		a.Lock()
		a.prefetching = false
		a.Unlock()
	}()
	if !a.Ops.TryAcquire() {
		return
	}
	defer a.Ops.Release()
	ctx, cancel := context.WithTimeout(context.Background(), a.b.o.Timeout)
	defer cancel()
	if _, ok := a.b.seeded.Load(seedKey{a.key.budget, a.Month}); !ok && a.Month == a.l.month {
		return
	}
	a.Lock()
	op := &acctOp{a: a, month: a.Month, settled: a.Cum, grant: true, limit: limit, want: want, prefetch: true,
		localStart: a.b.now().UnixNano(), mono: mono()}
	a.Unlock()
	err := a.b.rt(ctx, func(ctx context.Context) error {
		return op.scan(a.b.pool.QueryRow(ctx, budgetSQL, a.b.budgetArgs(op)...))
	})
	if err == nil {
		a.Lock()
		a.apply(op)
		a.Unlock()
	}
}

// Refill leases a slice covering amount (settled costs ride along). When
// the slice is short only because other replicas hold the rest, it waits
// (up to ContendedWait) for them to give back what they do not use. It
// returns nil when the account may now answer: a slice was granted, or the
// budget is exhausted and the account refuses locally for a while.
func (a *account) Refill(ctx context.Context, month limits.Month, amount, limit limits.Money) error {
	arrival := mono()
	a.Waiters.Add(1)
	a.pending.Add(int64(amount))
	defer func() {
		a.Waiters.Add(-1)
		a.pending.Add(-int64(amount))
	}()
	if err := a.Ops.Acquire(ctx); err != nil {
		return err
	}
	defer a.Ops.Release()
	if month == a.l.month {
		if err := a.b.seed(ctx, a.l); err != nil {
			return err
		}
	}
	// Callers that queued behind a wait that failed do not wait again.
	deadline := arrival + int64(a.b.o.ContendedWait)
	a.Lock()
	if a.waitFailed > arrival {
		deadline = 0
	}
	a.Unlock()
	backoff := 5 * time.Millisecond
	for {
		a.Lock()
		ns := mono()
		if !a.Roll(month) || amount <= a.Avail {
			a.Unlock()
			return nil
		}
		need := amount - a.Avail
		if a.Denied(need, ns) {
			a.Unlock()
			return nil
		}
		op := &acctOp{a: a, month: month, settled: a.Cum, grant: true, limit: limit, need: need,
			demand: max(need, limits.Money(a.pending.Load())-a.Avail), want: a.want(ns, amount), localStart: a.b.now().UnixNano(), mono: ns}
		if op.demand > need && a.contendedUntil > ns {
			op.demand = need
		}
		a.Unlock()
		err := a.b.rt(ctx, func(ctx context.Context) error {
			return op.scan(a.b.pool.QueryRow(ctx, budgetSQL, a.b.budgetArgs(op)...))
		})
		if err != nil {
			return err
		}
		a.Lock()
		a.apply(op)
		now := mono()
		if op.contended {
			a.contendedUntil = now + int64(2*a.b.o.ContendedWait)
			if now >= deadline {
				a.waitFailed = now
				a.b.stats.refusals.Add(1)
			}
		}
		a.Unlock()
		switch {
		case !op.contended:
			return nil // granted, or exhausted (the account refuses)
		case now >= deadline:
			return errContended // refused as exhausted, without retrying
		}
		a.b.wake()
		t := time.NewTimer(time.Duration(min(int64(backoff), deadline-now)))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", limits.ErrUnavailable, ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// syncAccounts sends, in one round trip, the settled costs, the slices
// given back (idle, contended by another replica, Close) and the earlier
// months' leases of every account that has some, refreshes the figures of
// budget-wide accounts, and learns which of the slices it holds other
// replicas are short of.
func (b *Backend) syncAccounts(ctx context.Context) error {
	now := b.now().UnixNano()
	ns := mono()
	b.mu.Lock()
	accts := make([]*account, 0, len(b.accounts))
	for _, a := range b.accounts {
		accts = append(accts, a)
	}
	b.mu.Unlock()
	var ops []*acctOp
	var held []*account // accounts whose op semaphore this round holds
	holds := false
	idleFor := int64(b.o.IdleReturn)
	for _, a := range accts {
		if !a.Ops.TryAcquire() {
			continue
		}
		a.Lock()
		a.Roll(limits.MonthOf(time.Unix(0, now)))
		n0 := len(ops)
		for _, o := range a.old {
			ops = append(ops, &acctOp{a: a, month: o.month, settled: o.cum, close: true, old: true, localStart: now, mono: ns})
		}
		if a.Uses != a.lastUses {
			a.lastUses, a.idleSince = a.Uses, ns
		}
		op := &acctOp{a: a, month: a.Month, settled: a.Cum, localStart: now, mono: ns}
		switch {
		case a.closing && a.Reserved == 0:
			op.close, a.Avail = true, 0
		case a.closing || a.notice:
			op.release, a.Avail = a.Avail, 0
			if a.notice {
				a.contendedUntil = ns + int64(2*b.o.ContendedWait)
			}
		case a.needClose || (a.Avail > 0 && a.Reserved == 0 && ns-a.idleSince >= idleFor) ||
			(a.Avail > 0 && a.Reserved == 0 && a.contendedUntil > ns):
			op.close, a.Avail, a.needClose = true, 0, true
		}
		a.notice = false
		switch {
		case op.close || op.release > 0 || a.Cum > a.Sent:
			ops = append(ops, op)
		case a.key.p == 0 && ns-a.refreshed >= int64(time.Second):
			op.refresh = true
			ops = append(ops, op)
		}
		if a.Avail > 0 {
			holds = true
		}
		if len(ops) == n0 && a.Avail == 0 && a.Reserved == 0 && len(a.old) == 0 && a.Cum == a.Sent && a.key.p != 0 {
			a.registered = false
			b.mu.Lock()
			delete(b.accounts, a.key)
			b.mu.Unlock()
		}
		a.Unlock()
		if len(ops) == n0 {
			a.Ops.Release()
			continue
		}
		held = append(held, a)
	}
	defer func() {
		for _, a := range held {
			a.Ops.Release()
		}
	}()
	if len(ops) == 0 && !holds {
		return nil
	}
	// Lock order in the database: accounts by key.
	slices.SortFunc(ops, func(x, y *acctOp) int {
		return cmp.Or(strings.Compare(x.a.l.key, y.a.l.key), cmp.Compare(x.a.key.p, y.a.key.p), cmp.Compare(x.month, y.month))
	})
	batch := &pgx.Batch{}
	for _, op := range ops {
		if op.refresh {
			batch.Queue(`SELECT 0::bigint, COALESCE((SELECT spent + forfeited FROM limits_budget_accounts
				WHERE budget = $1 AND principal = $2 AND month = $3), 0), 0::bigint, 0::bigint, false, false, false`,
				op.a.l.key, int64(op.a.key.p), int32(op.month))
			continue
		}
		batch.Queue(budgetSQL, b.budgetArgs(op)...)
	}
	var contended [][3]int64
	if holds {
		batch.Queue(`SELECT COALESCE(array_agg(c.budget), '{}'), COALESCE(array_agg(c.principal), '{}'), COALESCE(array_agg(c.month::bigint), '{}')
			FROM limits_budget_contention c JOIN limits_budget_leases l
			  ON l.budget = c.budget AND l.principal = c.principal AND l.month = c.month
			WHERE l.replica = $1 AND l.amount > 0 AND c.since_ns > limits_now($2) - $3`,
			b.replica, b.dbNow(), int64(2*b.o.ContendedWait))
	}
	var keys []string
	err := b.sendBatch(ctx, batch, func(i int, row pgx.Row) error {
		if i < len(ops) {
			return ops[i].scan(row)
		}
		var ps, ms []int64
		if err := row.Scan(&keys, &ps, &ms); err != nil {
			return err
		}
		for j := range ps {
			contended = append(contended, [3]int64{int64(j), ps[j], ms[j]})
		}
		return nil
	})
	for _, op := range ops {
		a := op.a
		a.Lock()
		if err == nil {
			a.apply(op)
		}
		a.Unlock()
	}
	if err != nil {
		return err
	}
	for _, c := range contended {
		id, ok := b.budgetIDOf(keys[c[0]])
		if !ok {
			continue
		}
		if v, ok := b.accts.Load(acctKey{id, catalog.ID(c[1])}); ok {
			a := v.(*account)
			a.Lock()
			if a.Month == limits.Month(c[2]) && a.Avail > 0 {
				a.notice = true
				b.wake()
			}
			a.Unlock()
		}
	}
	return nil
}

func (b *Backend) budgetIDOf(key string) (uint32, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id, ok := b.budgets[key]
	return id, ok
}

// errContended ends a Refill whose slice other replicas hold in calls in
// flight (or, gone, until their TTL): the call is refused as the budget's
// (spent + reserved + amount > limit, as in one process).
var errContended = errors.New("pglimits: the rest of the budget is reserved by other replicas")

// mono is the real time in ns (monotonic): contention, idleness and
// refusal caches of budgets are about real time, whatever the clock.
func mono() int64 { return lease.Mono() }
