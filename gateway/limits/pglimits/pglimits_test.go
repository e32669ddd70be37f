package pglimits_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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

func (e *env) pool(t *testing.T) (*pgxpool.Pool, string) {
	t.Helper()
	db := fmt.Sprintf("limits%d", e.n.Add(1))
	e.srv.CreateDatabase(t, db)
	return e.poolOf(t, db), db
}

func (e *env) poolOf(t *testing.T, db string) *pgxpool.Pool {
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

type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

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
	t.Run("Restart", func(t *testing.T) { testRestart(t, e) }) // last: restarts the server
}
