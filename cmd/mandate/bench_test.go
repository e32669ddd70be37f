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
	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/catalog/walstore"
	"github.com/mandatehq/mandate/sqlfront"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// storeStats is what statsStore measured.
type storeStats struct {
	mu     sync.Mutex
	txs    int           // write transactions
	events int           // audit events: one per statement
	total  time.Duration // ReadWriteTx, call to return
	begin  time.Duration // call to fn: write lock and BEGIN
	fn     time.Duration // fn: the writes the store does not buffer (SetMeta's UPDATE)
	commit time.Duration // fn's return to ReadWriteTx's: the buffered writes (grants, audit) and COMMIT
}

func (s *storeStats) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txs, s.events, s.total, s.begin, s.fn, s.commit = 0, 0, 0, 0, 0, 0
}

// statsStore wraps a catalog.Store and times its write transactions.
type statsStore struct {
	catalog.Store
	st *storeStats
}

func (s statsStore) ReadWriteTx(ctx context.Context, fn func(ctx context.Context, tx catalog.RWTx) error) error {
	t0 := time.Now()
	var t1, t2 time.Time
	tx := &statsTx{}
	err := s.Store.ReadWriteTx(ctx, func(ctx context.Context, rw catalog.RWTx) error {
		t1 = time.Now()
		tx.RWTx = rw
		err := fn(ctx, tx)
		t2 = time.Now()
		return err
	})
	t3 := time.Now()
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	s.st.txs++
	s.st.events += tx.events
	s.st.total += t3.Sub(t0)
	if !t1.IsZero() {
		s.st.begin += t1.Sub(t0)
		s.st.fn += t2.Sub(t1)
		s.st.commit += t3.Sub(t2)
	}
	return err
}

// statsTx counts the audit events of a transaction.
type statsTx struct {
	catalog.RWTx
	events int
}

func (t *statsTx) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	t.events += len(events)
	return t.RWTx.AppendAudit(ctx, events...)
}

// startInProcess runs serve's stack (duckstore, with wal the write-ahead log
// of walstore in front of it as serve has, catalog, sqlfront, pgwire with
// TLS) in this process on a free port and returns its address.
func startInProcess(b *testing.B, opts duckstore.Options, wal bool, st *storeStats) string {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	key := make([]byte, 32)
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		b.Fatal(err)
	}
	duck, err := duckstore.Open(ctx, dir, opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = duck.Close() })
	var store catalog.Store = duck
	if wal {
		ws, err := walstore.Open(ctx, dir, duck, walstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = ws.Close() })
		store = ws
	}
	verifier, err := pgwire.MakeVerifier(e2eAdminPassword)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := catalog.Open(ctx, catalog.Options{Store: statsStore{Store: store, st: st}, Keyring: kr, AdminVerifier: verifier})
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
// connections of its own, against serve's stack: as served (walstore's log
// in front of DuckDB), and on DuckDB alone. It reports statements/s and
// where a group commit's time goes (means per store transaction of the
// catalog service): stmts/tx (batch size), begin-ms (call to fn: write lock,
// BEGIN on DuckDB), fn-ms (fn: the writes; DuckDB runs SetMeta's UPDATE
// here), commit-ms (fn's return to ReadWriteTx's: the log append and fsync,
// or on DuckDB the buffered grant changes and audit events and COMMIT), and
// the CPU time of the process (server and clients) per statement.
func BenchmarkWireGrants(b *testing.B) {
	const clients, perClient = 8, 4
	for _, bc := range []struct {
		name string
		opts duckstore.Options
		wal  bool
	}{
		{"served", duckstore.Options{}, true}, // as serve runs it: walstore over duckstore
		{"duckstore", duckstore.Options{}, false},
		{"duckstore,threads=1", duckstore.Options{Threads: 1}, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := &storeStats{}
			addr := startInProcess(b, bc.opts, bc.wal, st)
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
			if st.txs == 0 {
				return
			}
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(st.txs) }
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stmts/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/stmt")
			b.ReportMetric(float64(st.events)/float64(st.txs), "stmts/tx")
			b.ReportMetric(ms(st.begin), "begin-ms")
			b.ReportMetric(ms(st.fn), "fn-ms")
			b.ReportMetric(ms(st.commit), "commit-ms")
			b.ReportMetric(ms(st.total), "tx-ms")
		})
	}
}
