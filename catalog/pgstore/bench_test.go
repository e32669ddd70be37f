package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgquery"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// benchSettings make the benchmarks' server durable (pgtest's default is
// fsync off): what a production PostgreSQL does on every commit.
var benchSettings = map[string]string{"fsync": "on", "synchronous_commit": "on", "max_wal_size": "4GB"}

// BenchmarkEvents measures durable event ingestion into PostgreSQL (fsync
// and synchronous_commit on, on this machine):
//
//   - append/batch=N: AppendAudit of N events at a time, one transaction
//     each (COPY), from one goroutine;
//   - auditlog/producers=64: as serve does it: 64 producers call
//     AuditLog.Record (group commit) in a closed loop, into the replica's
//     spool (auditwal, one fsync per batch), applied to PostgreSQL in the
//     background; "sustained" includes draining the spool afterwards.
//
// Reported: events/s, sustained events/s, Record p50/p99, this process's
// CPU per event (the server's is on top; it runs on the same cores).
//
//	go test -run '^$' -bench BenchmarkEvents -benchtime 1000000x ./catalog/pgstore/
//
// The baseline (DuckDB behind the same spool) is duckstore's
// BenchmarkAuditLog.
func BenchmarkEvents(b *testing.B) {
	server := pgtest.Start(b, pgtest.Options{Settings: benchSettings})
	var dbs atomic.Int64
	newDB := func(b *testing.B) string {
		name := fmt.Sprintf("bench_%d", dbs.Add(1))
		server.CreateDatabase(b, name)
		return server.URL(name)
	}
	for _, batch := range []int{1000, 10000} {
		for _, ids := range benchIDs {
			b.Run("append/batch="+strconv.Itoa(batch)+"/ids="+ids.name, func(b *testing.B) { benchAppend(b, newDB(b), batch, ids.next) })
		}
	}
	b.Run("auditlog/producers=64", func(b *testing.B) { benchAuditLog(b, newDB(b), 64) })
}

// benchIDs are the request ids the append benchmarks give their events:
// sequential (storetest.GatewayEvent's "req-N"), random (UUIDv4) and
// time-ordered (UUIDv7). The index on request_id and audit_request_days'
// key take them in that order.
var benchIDs = []struct {
	name string
	next func(i int64) string
}{
	{"seq", nil},
	{"v4", func(int64) string { return uuid.NewString() }},
	{"v7", func(int64) string { return uuid.Must(uuid.NewV7()).String() }},
}

func benchAppend(b *testing.B, url string, batch int, id func(int64) string) {
	ctx := context.Background()
	e, err := pgstore.OpenEvents(ctx, url, pgstore.EventOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	events := make([]catalog.AuditEvent, batch)
	b.ResetTimer()
	cpu0, start := storetest.CPUTime(), time.Now()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for k := range n {
			events[k] = storetest.GatewayEvent(int64(i + k))
			if id != nil {
				events[k].RequestID = id(int64(i + k))
			}
		}
		if err := e.AppendAudit(ctx, events[:n]...); err != nil {
			b.Fatal(err)
		}
	}
	d, cpu := time.Since(start), storetest.CPUTime()-cpu0
	b.StopTimer()
	if n, err := countEvents(e)(context.Background()); err != nil || n != int64(b.N) {
		b.Fatalf("PostgreSQL holds %d events (%v), want %d", n, err, b.N)
	}
	b.ReportMetric(float64(b.N)/d.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-us/event")
}

// countEvents counts the events PostgreSQL holds.
func countEvents(e *pgstore.Events) func(context.Context) (int64, error) {
	return func(ctx context.Context) (n int64, err error) {
		err = e.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n)
		return n, err
	}
}

func benchAuditLog(b *testing.B, url string, producers int) {
	ctx := context.Background()
	e, err := pgstore.OpenEvents(ctx, url, pgstore.EventOptions{SpoolID: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	wal, err := auditwal.Open(ctx, b.TempDir(), e, auditwal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer wal.Close()
	al := catalog.NewAuditLog(wal, catalog.AuditLogOptions{})
	defer al.Close(ctx)
	storetest.BenchAuditLog(b, al, storetest.AuditLoad{Producers: producers}, wal.Flush, countEvents(e))
}

// TestEventQueryPerformance loads MANDATE_AUDIT_ROWS audit events (e.g.
// 10000000) into PostgreSQL with COPY (90 days in time order, 173 users, 8
// actions, random request ids: the same rows as duckstore's
// TestAuditQueryPerformance) and times the two target queries of the
// system tables against the views, 5 runs each: the 7-day top-20
// aggregate (target 1 s) and a lookup by request_id (target 50 ms). It
// runs only when the variable is set:
//
//	MANDATE_AUDIT_ROWS=10000000 go test -run TestEventQueryPerformance -v -timeout 60m ./catalog/pgstore/
//
// MANDATE_AUDIT_DAYS=365 spreads them over a year's day partitions. The
// queries run through the system tables' query engine (catalog/pgquery,
// which bounds a lookup by request_id to the request's days), then
// through the views reader (the statements as written).
func TestEventQueryPerformance(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MANDATE_AUDIT_ROWS"))
	if n <= 0 {
		t.Skip("set MANDATE_AUDIT_ROWS to run")
	}
	ctx := t.Context()
	settings := map[string]string{"shared_buffers": "1GB"} // the 7 days' partitions stay in the server's buffers
	for k, v := range benchSettings {
		settings[k] = v
	}
	server := pgtest.Start(t, pgtest.Options{Settings: settings})
	server.CreateDatabase(t, "perf")
	end := time.Now().UTC()
	days, _ := strconv.Atoi(os.Getenv("MANDATE_AUDIT_DAYS"))
	span := storetest.PerfSpan
	if days > 0 {
		span = time.Duration(days) * 24 * time.Hour
	}
	days = int(span / (24 * time.Hour))
	e, err := pgstore.OpenEvents(ctx, server.URL("perf"), pgstore.EventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// The day partitions of the 90 days, as a replica running all along
	// would have created them.
	if _, err := e.Pool().Exec(ctx, `SELECT mandate_audit_ensure_partitions($1::date, $2)`, end.Add(-span).Format(time.DateOnly), days+5); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const batch = 100_000
	events := make([]catalog.AuditEvent, 0, batch)
	for i := 0; i < n; i++ {
		ev := storetest.PerfEvent(i, n, end)
		ev.Time = end.Add(-span).Add(time.Duration(i) * (span / time.Duration(n))) // over MANDATE_AUDIT_DAYS
		events = append(events, ev)
		if len(events) == batch || i == n-1 {
			if err := e.AppendAudit(ctx, events...); err != nil {
				t.Fatal(err)
			}
			events = events[:0]
		}
	}
	load := time.Since(start)
	if _, err := e.Pool().Exec(ctx, `ANALYZE audit_events`); err != nil {
		t.Fatal(err)
	}
	var size string
	if err := e.Pool().QueryRow(ctx, `SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit_events'::regclass`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d events with COPY in %v (%.0f/s, %d per transaction), ANALYZE in %v; %s with indexes",
		n, load.Round(time.Millisecond), float64(n)/load.Seconds(), batch, (time.Since(start) - load).Round(time.Millisecond), size)
	// Planning and execution as the server reports them.
	planning := regexp.MustCompile(`^(Planning|Execution) Time`)
	explain := func(t *testing.T, engine catalog.QueryEngine, q storetest.PerfQuery) {
		var plan []string
		if err := engine.Query(ctx, catalog.Query{SQL: `EXPLAIN (ANALYZE, SUMMARY) ` + q.SQL, Args: q.Args}, func(v []any) error {
			if l, _ := v[0].(string); planning.MatchString(l) {
				plan = append(plan, l)
			}
			return nil
		}); err != nil {
			t.Fatalf("%s: EXPLAIN: %v", q.Name, err)
		}
		t.Logf("%s: %s", q.Name, strings.Join(plan, ", "))
	}
	// The system tables' query engine (catalog/pgquery) bounds a lookup
	// by request_id to the request's days; the views reader below runs
	// the statements as written (every partition planned and probed).
	qe, err := pgquery.Open(ctx, server.URL("perf"), pgquery.Options{Schema: pgstore.ViewsSchema, Keys: keystore.Dir(t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	defer qe.Close()
	t.Run("query engine", func(t *testing.T) {
		storetest.RunPerfQueries(t, qe, n, func(q storetest.PerfQuery) { explain(t, qe, q) })
	})
	t.Run("views", func(t *testing.T) {
		storetest.RunPerfQueries(t, e.Views(), n, func(q storetest.PerfQuery) {
			explain(t, e.Views(), q)
			// The query's CPU time in one backend without parallel workers
			// (what it costs, whatever the machine's load): the server runs
			// on this machine, so its /proc entry is readable.
			if cpu, err := backendCPU(ctx, server, q.SQL, q.Args); err == nil {
				t.Logf("%s: %v of CPU in one backend (no parallel workers)", q.Name, cpu)
			} else {
				t.Logf("%s: CPU not measured: %v", q.Name, err)
			}
			// The plan, for the record.
			plan, err := pgx.CollectRows(must2(e.Pool().Query(ctx, `EXPLAIN (ANALYZE, BUFFERS) `+
				replaceRelation(q.SQL), q.Args...)), pgx.RowTo[string])
			if err == nil && testing.Verbose() {
				for _, l := range plan {
					t.Log("  " + l)
				}
			}
		})
	})
}

// backendCPU runs sql once (after a warm-up run) on one connection with
// max_parallel_workers_per_gather = 0 and returns the CPU time (user and
// system) its backend spent, from /proc/PID/stat (10 ms ticks).
func backendCPU(ctx context.Context, server *pgtest.Server, sql string, args []any) (time.Duration, error) {
	conn, err := pgx.Connect(ctx, server.URL("perf"))
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var pid int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, `SET max_parallel_workers_per_gather = 0; SET search_path = `+pgstore.ViewsSchema); err != nil {
		return 0, err
	}
	ticks := func() (int64, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64) // utime, stime: fields 14 and 15
		s, _ := strconv.ParseInt(f[12], 10, 64)
		return u + s, nil
	}
	run := func() error {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
		}
		return rows.Err()
	}
	if err := run(); err != nil {
		return 0, err
	}
	const runs = 5
	t0, err := ticks()
	if err != nil {
		return 0, err
	}
	for range runs {
		if err := run(); err != nil {
			return 0, err
		}
	}
	t1, err := ticks()
	if err != nil {
		return 0, err
	}
	return time.Duration(t1-t0) * 10 * time.Millisecond / runs, nil
}

func must2(r pgx.Rows, err error) pgx.Rows {
	if err != nil {
		panic(err)
	}
	return r
}

func replaceRelation(sql string) string {
	return "/* plan */ " + strings.ReplaceAll(sql, catalog.AuditRelation, pgstore.ViewsSchema+"."+catalog.AuditRelation)
}
