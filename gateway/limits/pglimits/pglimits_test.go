package pglimits_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/limitstest"
	"github.com/mandatehq/mandate/gateway/limits/pglimits"
)

// env is one PostgreSQL server for the package's tests; each test gets
// databases of its own.
type env struct {
	srv *pgtest.Server
	n   atomic.Int64
}

func (e *env) pool(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	db := fmt.Sprintf("limits%d", e.n.Add(1))
	e.srv.CreateDatabase(t, db)
	return e.poolOf(t, db), db
}

func (e *env) poolOf(t testing.TB, db string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(e.srv.URL(db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

type clock = limitstest.Clock

var newClock = limitstest.NewClock

// t0 is mid-month, bucket aligned.
var t0 = time.Date(2026, 7, 14, 10, 0, 0, 0, time.UTC)

func newBackend(t *testing.T, pool *pgxpool.Pool, o pglimits.Options) *pglimits.Backend {
	t.Helper()
	b, err := pglimits.New(t.Context(), pool, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

// TestPostgres runs everything that needs the server, sharing one.
func TestPostgres(t *testing.T) {
	e := &env{srv: pgtest.Start(t, pgtest.Options{})}
	t.Run("Conformance", func(t *testing.T) {
		limitstest.Run(t, func(t *testing.T) limits.Backend {
			pool, _ := e.pool(t)
			c := newClock(t0)
			return newBackend(t, pool, pglimits.Options{Now: c.Now, SyncInterval: -1})
		})
	})
	t.Run("ReplicasWindow", func(t *testing.T) { testReplicasWindow(t, e) })
	t.Run("ReplicasBudget", func(t *testing.T) { testReplicasBudget(t, e) })
	t.Run("KillBudget", func(t *testing.T) { testKillBudget(t, e) })
	t.Run("Zombie", func(t *testing.T) { testZombie(t, e) })
	t.Run("KillWindow", func(t *testing.T) { testKillWindow(t, e) })
	t.Run("Open", func(t *testing.T) { testOpen(t, e) })
	t.Run("ManyKeys", func(t *testing.T) { testManyKeys(t, e) })
	t.Run("LostGrant", func(t *testing.T) { testLostGrant(t, e) })
	t.Run("Restart", func(t *testing.T) { testRestart(t, e) }) // last: restarts the server
}

// testOpen: Open makes a pool of its own (named mandate-limits in
// pg_stat_activity), the Limiter admits through it, and Close gives the
// unused units back, leaves the used one counted, deregisters the replica
// and closes the pool. A malformed URL is refused without echoing it.
func testOpen(t *testing.T, e *env) {
	pool, db := e.pool(t)
	b, err := pglimits.Open(t.Context(), e.srv.URL(db), pglimits.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lim := limits.New(limits.Options{Backend: b})
	defs := limits.Definitions{RateLimits: []limits.RateLimit{{Securable: 100, SecurableName: "system.ai.frontier",
		Level: limits.LevelEachUser, Requests: 1000}}}
	if err := lim.Apply(t.Context(), defs); err != nil {
		t.Fatal(err)
	}
	for range 20 { // busy: the lease grows beyond the need
		r, err := lim.Reserve(t.Context(), &limits.Call{Kind: limits.ModelService, Securable: 100, Subject: 1})
		if err != nil {
			t.Fatal(err)
		}
		lim.Settle(r, limits.Usage{}, 0)
	}
	var conns int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'mandate-limits'", db).Scan(&conns); err != nil || conns == 0 {
		t.Errorf("connections named mandate-limits: %d, %v", conns, err)
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	var units, replicas int64
	if err := pool.QueryRow(t.Context(), "SELECT COALESCE(sum(requests), 0), (SELECT count(*) FROM limits_replicas) FROM limits_window_units").Scan(&units, &replicas); err != nil {
		t.Fatal(err)
	}
	if units != 20 || replicas != 0 {
		t.Errorf("after Close: %d units counted (want the 20 used), %d replicas registered", units, replicas)
	}
	// The server ends a closed connection's backend asynchronously: wait
	// for it (10 s: a failure bound).
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'mandate-limits'", db).Scan(&conns); err != nil {
			t.Fatal(err)
		}
		if conns == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Close, %d connections named mandate-limits", conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := pglimits.Open(t.Context(), "postgres://u:s3cret@[::1/x", pglimits.Options{}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("malformed URL: %v", err)
	}
}

// testManyKeys: a call charged to 5 keys none of which holds a lease yet
// (a service limit, a group limit, the agent's limit, a group budget, a
// budget per user) is admitted: each key that needs a round trip gets one.
func testManyKeys(t *testing.T, e *env) {
	pool, _ := e.pool(t)
	c := newClock(t0)
	b := newBackend(t, pool, pglimits.Options{Now: c.Now, SyncInterval: -1})
	lim := limits.New(limits.Options{Backend: b, Now: c.Now})
	const agent = catalog.ID(900)
	defs := limits.Definitions{
		RateLimits: []limits.RateLimit{
			{Securable: svc, SecurableName: "system.ai.frontier", Level: limits.LevelService, Requests: 1000, Tokens: 1 << 30},
			{Securable: svc, SecurableName: "system.ai.frontier", Level: limits.LevelGroup, Principal: g1, PrincipalName: "analysts", Requests: 100},
			{Securable: svc, SecurableName: "system.ai.frontier", Level: limits.LevelServicePrincipal, Principal: agent, PrincipalName: "agent", Requests: 100},
		},
		Budgets: []limits.Budget{
			{Name: "analysts", Limit: 100 * limits.USD, Level: limits.LevelGroup, Principal: g1, PrincipalName: "analysts"},
			{Name: "each", Limit: 10 * limits.USD, Level: limits.LevelEachUser},
		},
		Members: map[catalog.ID][]catalog.ID{g1: {alice, bob}},
	}
	if err := lim.Apply(t.Context(), defs); err != nil {
		t.Fatal(err)
	}
	for _, subj := range []catalog.ID{alice, bob} {
		cl := call(subj, 100, 100)
		cl.Actor = agent
		r, err := lim.Reserve(t.Context(), cl)
		if err != nil {
			t.Fatalf("first call of %d: %v", subj, err)
		}
		lim.Settle(r, limits.Usage{InputTokens: 100, OutputTokens: 10}, limits.USD/1000)
	}
}
