package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/embedded"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/sqlfront"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// storeStats is what statsStore measured.
type storeStats struct {
	mu      sync.Mutex
	appends int           // store appends (group commits)
	changes int           // change records: one per statement that changed something
	total   time.Duration // Append, call to return
}

func (s *storeStats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.appends, s.changes, s.total = 0, 0, 0
}

// statsStore wraps a catalog.Store and times its appends.
type statsStore struct {
	catalog.Store
	st *storeStats
}

func (s statsStore) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	t0 := time.Now()
	err := s.Store.Append(ctx, base, changes)
	d := time.Since(t0)
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	s.st.appends++
	s.st.changes += len(changes)
	s.st.total += d
	return err
}

// benchStores opens the stores of a benchmark in dir: the catalog's, the
// event stream.
type benchStores func(b *testing.B, dir string) (catalog.Store, catalog.EventStore)

// embeddedStores is serve's embedded configuration.
func embeddedStores(b *testing.B, dir string) (catalog.Store, catalog.EventStore) {
	st, err := embedded.Open(context.Background(), dir, embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st.Catalog, st.Events
}

// durablePG are the settings of a PostgreSQL server that benchmarks run
// against: durable commits, as in production (catalog/pgtest turns them
// off for tests).
var durablePG = map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}

// postgresStores is serve with --store postgres://...: the catalog in a
// PostgreSQL server started for the benchmark, the event stream embedded.
func postgresStores(b *testing.B, dir string) (catalog.Store, catalog.EventStore) {
	srv := pgtest.Start(b, pgtest.Options{Settings: durablePG})
	srv.CreateDatabase(b, "mandate")
	pg, err := pgstore.Open(context.Background(), srv.URL("mandate"), pgstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = pg.Close() })
	ev, err := embedded.OpenEvents(context.Background(), dir, embedded.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ev.Close() })
	return pg, ev.Events
}

// startInProcess runs serve's stack (the stores, the catalog with its
// audit log, sqlfront, pgwire with TLS) in this process on a free port and
// returns its address.
func startInProcess(b *testing.B, open benchStores, st *storeStats) string {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	key := make([]byte, 32)
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		b.Fatal(err)
	}
	store, events := open(b, dir)
	audit := catalog.NewAuditLog(events, catalog.AuditLogOptions{})
	b.Cleanup(func() { _ = audit.Close(context.Background()) })
	verifier, err := pgwire.MakeVerifier(e2eAdminPassword)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := catalog.Open(ctx, catalog.Options{Store: statsStore{Store: store, st: st}, Events: events, Audit: audit,
		Keyring: kr, AdminVerifier: verifier})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Close() })
	tlsCfg, err := pgwire.LoadOrCreateTLS("", "", dir)
	if err != nil {
		b.Fatal(err)
	}
	fe := sqlfront.New(sqlfront.Config{Catalog: svc})
	srv, err := pgwire.NewServer(pgwire.Config{TLS: tlsCfg, Auth: fe, Handler: fe})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(sctx, ln) }()
	b.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWireGrants is the loadgen workload in process: 8 pgx clients
// over TLS, each alternating GRANT and REVOKE USE_CONNECTION on 4
// connections of its own, against serve's stack: the embedded stores
// (catalog/walstore for the catalog, the audit records forwarded to
// auditwal and DuckDB), and a PostgreSQL catalog (catalog/pgstore; the
// server of catalog/pgtest with fsync and synchronous_commit on, on this
// machine). It reports statements/s, the change records per store append
// (batch size), the mean time of an append (append-ms: the log write and
// fsync, or PostgreSQL's round trip and commit), and the CPU time of this
// process (server and clients, not PostgreSQL) per statement.
func BenchmarkWireGrants(b *testing.B) {
	const clients, perClient = 8, 4
	for _, bc := range []struct {
		name string
		open benchStores
	}{
		{"embedded", embeddedStores},
		{"postgres", postgresStores},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := &storeStats{}
			addr := startInProcess(b, bc.open, st)
			cfg := &loadgenConfig{addr: addr, user: "admin", password: e2eAdminPassword, database: "system", sslmode: "require"}
			ctx := context.Background()
			admin, err := cfg.connect(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer admin.Close(ctx)
			var setup strings.Builder
			setup.WriteString(`CREATE GROUP "bench";`)
			for i := range clients {
				for k := range perClient {
					fmt.Fprintf(&setup, `CREATE CONNECTION "bench_%d_%d" TYPE MCP OPTIONS (url 'https://bench.invalid/mcp');`, i, k)
				}
			}
			if _, err := admin.Exec(ctx, setup.String()); err != nil {
				b.Fatal(err)
			}
			conns := make(chan *pgx.Conn, clients)
			for range clients {
				c, err := cfg.connect(ctx)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close(ctx)
				conns <- c
			}
			var nextClient atomic.Int32
			b.SetParallelism((clients + 1) / 2) // × GOMAXPROCS goroutines: 8 on 2 cores
			st.reset()
			cpu0 := processCPU(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(nextClient.Add(1)-1) % clients
				var c *pgx.Conn
				select {
				case c = <-conns:
				default:
					b.Error("more goroutines than clients")
					return
				}
				granted := make([]bool, perClient)
				for n := 0; pb.Next(); n++ {
					k := n % perClient
					sql := fmt.Sprintf(`GRANT USE_CONNECTION ON CONNECTION "bench_%d_%d" TO "bench"`, i, k)
					if granted[k] {
						sql = fmt.Sprintf(`REVOKE USE_CONNECTION ON CONNECTION "bench_%d_%d" FROM "bench"`, i, k)
					}
					if _, err := c.Exec(ctx, sql); err != nil {
						b.Error(err)
						return
					}
					granted[k] = !granted[k]
				}
			})
			b.StopTimer()
			cpu := processCPU(b) - cpu0
			st.mu.Lock()
			defer st.mu.Unlock()
			if st.appends == 0 {
				return
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stmts/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/stmt")
			b.ReportMetric(float64(st.changes)/float64(st.appends), "changes/append")
			b.ReportMetric(float64(st.total)/float64(time.Millisecond)/float64(st.appends), "append-ms")
		})
	}
}
