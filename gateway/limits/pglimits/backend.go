package pglimits

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/internal/lease"
)

// Options configure a Backend. Zero values take the defaults.
type Options struct {
	// Name identifies the replica in limits_replicas (default host:pid).
	Name string
	// Now is the clock; it must be the Limiter's (limits.Options.Now).
	// nil: time.Now, and grants are dated by the database's clock, so that
	// replicas' clock skew does not matter. Set (tests): grants are dated
	// by Now too.
	Now func() time.Time
	// Spend gives a budget's month spend from the usage rows; the first
	// replica that loads a budget for a month seeds the shared figures
	// with it (later ones find them). nil: budgets start at zero.
	Spend limits.SpendSource
	// WindowLease is how long leased rate-limit units may be used (2 s).
	WindowLease time.Duration
	// ReplicaTTL is how long a replica's budget leases outlive its last
	// heartbeat before the others forfeit them (30 s).
	ReplicaTTL time.Duration
	// SyncInterval is the period of the background work: settles,
	// returns, releases (50 ms). Negative: no background goroutine; the
	// caller runs Sync (tests).
	SyncInterval time.Duration
	// IdleReturn is how long a budget slice may sit unused before it is
	// given back (1 s).
	IdleReturn time.Duration
	// ContendedWait bounds how long a budget refill waits for other
	// replicas to give back unused slices before refusing (1 s).
	ContendedWait time.Duration
	// Timeout bounds one database round trip (2 s).
	Timeout time.Duration
	// MaxConns is the size of the pool Open creates (8); New uses the
	// pool it is given.
	MaxConns int32
}

func (o *Options) defaults() {
	if o.Name == "" {
		h, _ := os.Hostname()
		o.Name = fmt.Sprintf("%s:%d", h, os.Getpid())
	}
	if o.WindowLease <= 0 {
		o.WindowLease = 2 * time.Second
	}
	if o.ReplicaTTL <= 0 {
		o.ReplicaTTL = 30 * time.Second
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 50 * time.Millisecond
	}
	if o.IdleReturn <= 0 {
		o.IdleReturn = time.Second
	}
	if o.ContendedWait <= 0 {
		o.ContendedWait = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
}

// Backend is the PostgreSQL backend of gateway/limits: every replica's
// Limiter uses one, on one database. Safe for concurrent use.
type Backend struct {
	pool    *pgxpool.Pool
	ownPool bool // Open's: Close closes it
	o       Options
	now     func() time.Time
	dbClock bool
	replica int64

	live atomic.Int64 // live replicas at the last heartbeat

	lc       lease.Client // the windows' lease client (and the windows with leases or pending operations)
	mu       sync.Mutex
	accounts map[acctKey]*account // every budget account this replica touched
	budgets  map[string]uint32    // budget key → small id (acctKey)
	bkeys    []string             // id → budget key
	ledgers  []*ledger            // ledgers not yet seeded
	orphans  []*winReq            // what retired windows still have to send

	accts  sync.Map // acctKey → *account: every account, for lock-free lookups
	seeded sync.Map // seedKey → struct{}: budget months known to be seeded

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	// prefetches are the budget prefetches in flight (account.prefetch);
	// pmu orders their start after the Closed check, so that Close and
	// kill, once they hold it, wait for every one started.
	pmu        sync.Mutex
	prefetches sync.WaitGroup
	lastBeat   atomic.Int64 // local ns of the last heartbeat

	stats    stats
	leaseSeq atomic.Int64 // the replica's lease ids: replica<<40 | seq
}

// newLeaseID is a window lease id of this replica's own (never one of
// limits_lease_seq's, which stay far below 1<<40).
func (b *Backend) newLeaseID() int64 { return b.replica<<40 | b.leaseSeq.Add(1) }

type stats struct {
	roundTrips, grants, refusals, errors, prefetches, forfeits atomic.Int64
}

// Stats are counters since New.
type Stats struct {
	// RoundTrips is the number of database round trips (heartbeats,
	// grants, background batches).
	RoundTrips int64
	// Grants and Refusals count leases granted and refused (windows and
	// budgets); Prefetches the grants asked for ahead of need.
	Grants, Refusals, Prefetches int64
	// Errors counts failed round trips.
	Errors int64
	// Forfeits counts leases of gone replicas this replica forfeited.
	Forfeits int64
	// Live is the number of live replicas at the last heartbeat.
	Live int64
}

// Stats returns the counters.
func (b *Backend) Stats() Stats {
	return Stats{RoundTrips: b.stats.roundTrips.Load(), Grants: b.stats.grants.Load(), Refusals: b.stats.refusals.Load(),
		Prefetches: b.stats.prefetches.Load(), Errors: b.stats.errors.Load(), Forfeits: b.stats.forfeits.Load(),
		Live: b.live.Load()}
}

// Replica is this backend's replica id in limits_replicas.
func (b *Backend) Replica() int64 { return b.replica }

var _ limits.Backend = (*Backend)(nil)

// Open connects to the database at url (a postgres:// URL or a libpq
// connection string) with a pool of its own (Options.MaxConns
// connections, application_name mandate-limits unless the URL sets one),
// so that limit round trips never queue behind other queries, and
// returns New's backend; Close closes the pool too.
func Open(ctx context.Context, url string, o Options) (*Backend, error) {
	o.defaults()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parser's message may quote the URL, password included.
		return nil, errors.New("pglimits: the PostgreSQL URL is malformed")
	}
	cfg.MaxConns = o.MaxConns
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "mandate-limits"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pglimits: connect: %w", err)
	}
	b, err := New(ctx, pool, o)
	if err != nil {
		pool.Close()
		return nil, err
	}
	b.ownPool = true
	return b, nil
}

// New migrates the limits_ tables (Migrate), registers the replica and
// starts the background work on pool. Close gives the leases back.
func New(ctx context.Context, pool *pgxpool.Pool, o Options) (*Backend, error) {
	o.defaults()
	b := &Backend{pool: pool, o: o, now: o.Now, dbClock: o.Now == nil,
		accounts: map[acctKey]*account{}, budgets: map[string]uint32{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	if b.now == nil {
		b.now = time.Now
	}
	b.lc.Now, b.lc.WindowLease = b.now, o.WindowLease
	b.live.Store(1)
	if err := Migrate(ctx, pool); err != nil {
		return nil, err
	}
	if err := b.rt(ctx, func(ctx context.Context) error {
		return pool.QueryRow(ctx, "SELECT nextval('limits_replica_seq')").Scan(&b.replica)
	}); err != nil {
		return nil, fmt.Errorf("pglimits: register: %w", err)
	}
	if err := b.heartbeat(ctx); err != nil {
		return nil, fmt.Errorf("pglimits: register: %w", err)
	}
	if o.SyncInterval > 0 {
		go lease.Loop(o.SyncInterval, b.kick, b.stop, b.done, b.Sync)
	} else {
		close(b.done)
	}
	return b, nil
}

// dbNow is the time to date a database operation with: nil for the
// database's clock, else the clock's.
func (b *Backend) dbNow() *int64 { return b.dbTime(b.now().UnixNano()) }

// dbTime is dbNow for a local time ns (an operation's own clock reading).
func (b *Backend) dbTime(ns int64) *int64 {
	if b.dbClock {
		return nil
	}
	return &ns
}

// rt runs one database round trip with the timeout, counting it.
func (b *Backend) rt(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	b.stats.roundTrips.Add(1)
	if err := f(ctx); err != nil {
		b.stats.errors.Add(1)
		return fmt.Errorf("%w: %w", limits.ErrUnavailable, err)
	}
	return nil
}

func (b *Backend) heartbeat(ctx context.Context) error {
	var now, live, forfeited int64
	err := b.rt(ctx, func(ctx context.Context) error {
		return b.pool.QueryRow(ctx, "SELECT now_ns, live, forfeited_leases FROM limits_heartbeat($1, $2, $3, $4)",
			b.replica, b.o.Name, b.dbNow(), int64(b.o.ReplicaTTL)).Scan(&now, &live, &forfeited)
	})
	if err != nil {
		return err
	}
	b.live.Store(live)
	b.stats.forfeits.Add(forfeited)
	b.lastBeat.Store(b.now().UnixNano())
	return nil
}

// wake asks the background loop to run soon.
func (b *Backend) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Sync runs one round of the background work now: the heartbeat when it
// is due (housekeeping included: forfeiting the leases of gone replicas),
// the rate-limit leases that ended (unused units back, used ones dated to
// the buckets they were used in), refunds and extra charges, budget
// settles, slices contended by other replicas or idle given back, and
// seeding of budgets that could not be seeded. The background loop calls
// it every SyncInterval; tests without the loop call it directly.
func (b *Backend) Sync(ctx context.Context) error {
	var errs []error
	if time.Duration(b.now().UnixNano()-b.lastBeat.Load()) >= b.o.ReplicaTTL/6 {
		errs = append(errs, b.heartbeat(ctx))
	}
	errs = append(errs, b.seedPending(ctx), b.syncWindows(ctx), b.syncAccounts(ctx))
	return errors.Join(errs...)
}

// Heartbeat refreshes this replica and runs the shared housekeeping now
// (tests: after a replica was killed and its TTL passed).
func (b *Backend) Heartbeat(ctx context.Context) error { return b.heartbeat(ctx) }

// Close stops the background work and gives back what this replica holds:
// unused rate-limit units (used ones stay counted in their buckets),
// settled costs, unused budget slices. Reservations of calls still in
// flight are left in their leases, which the other replicas forfeit
// (charge as spent) once this replica's row is gone: close after the
// gateway has drained. The pool is closed if Open made it.
func (b *Backend) Close(ctx context.Context) error {
	if b.lc.Closed.Swap(true) {
		return nil
	}
	if b.ownPool {
		defer b.pool.Close()
	}
	close(b.stop)
	<-b.done
	b.waitPrefetches()
	b.lc.CloseAll()
	b.accts.Range(func(_, v any) bool {
		a := v.(*account)
		a.Lock()
		a.closing = true
		if a.Avail > 0 || a.Reserved > 0 || a.Cum != a.Sent || len(a.old) > 0 {
			a.register()
		}
		a.Unlock()
		return true
	})
	err := errors.Join(b.syncWindows(ctx), b.syncAccounts(ctx))
	if err == nil {
		err = b.rt(ctx, func(ctx context.Context) error {
			_, err := b.pool.Exec(ctx, "DELETE FROM limits_replicas WHERE replica = $1", b.replica)
			return err
		})
	}
	return err
}

// kill stops the background work without giving anything back (a crash,
// for tests).
func (b *Backend) kill() {
	if b.lc.Closed.Swap(true) {
		return
	}
	close(b.stop)
	<-b.done
	b.waitPrefetches()
}

// waitPrefetches waits for the budget prefetches in flight (Closed is
// set: none starts after pmu was held once). pmu is not held during the
// wait: maybePrefetch takes it under an account's lock, which a prefetch
// in flight needs to finish.
func (b *Backend) waitPrefetches() {
	b.pmu.Lock()
	//lint:ignore SA2001 the empty critical section orders maybePrefetch's Closed check before Wait
	b.pmu.Unlock()
	b.prefetches.Wait()
}

// sendBatch runs a batch of statements in one round trip (one implicit
// transaction) and reads each statement's rows with read(i, rows).
func (b *Backend) sendBatch(ctx context.Context, batch *pgx.Batch, read func(i int, row pgx.Row) error) error {
	return b.rt(ctx, func(ctx context.Context) error {
		br := b.pool.SendBatch(ctx, batch)
		var err error
		for i := range batch.Len() {
			if err = read(i, br.QueryRow()); err != nil {
				break
			}
		}
		return errors.Join(err, br.Close())
	})
}
