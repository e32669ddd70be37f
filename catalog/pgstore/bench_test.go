package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// benchSettings make the benchmarks' server durable (pgtest's default is
// fsync off): what a production PostgreSQL does on every commit.
var benchSettings = map[string]string{"fsync": "on", "synchronous_commit": "on", "max_wal_size": "4GB"}

// gatewayEvent is a typical audit record of one MCP tools/call (the same
// as duckstore's benchmark).
func gatewayEvent(i int64) catalog.AuditEvent {
	return catalog.AuditEvent{
		EventID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), Time: time.Now(),
		Service: "mcp", Action: "tools/call", UserIdentity: "alice@example.com", RunBy: "alice@example.com",
		RunAs: "coding-agent", SourceIP: "10.1.2.3", UserAgent: "claude-code/1.0.0 (linux)",
		SessionID: "8d3c1a2e-5b7f-4c61-9a0e-2f4b6d8e1c3a", RequestID: "req-" + strconv.FormatInt(i, 10),
		SecurableType: "CONNECTION", SecurableName: "system.ai.my_github_mcp",
		RequestParams: `{"method":"tools/call","tool":"search_issues","arguments":{"query":"label:bug state:open","per_page":30}}`,
		Decision:      "allow", Reason: "alice@example.com and coding-agent hold USE CONNECTION", LatencyMs: 12.5,
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

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
		b.Run("append/batch="+strconv.Itoa(batch), func(b *testing.B) { benchAppend(b, newDB(b), batch) })
	}
	b.Run("auditlog/producers=64", func(b *testing.B) { benchAuditLog(b, newDB(b), 64) })
}

func benchAppend(b *testing.B, url string, batch int) {
	ctx := context.Background()
	e, err := pgstore.OpenEvents(ctx, url, pgstore.EventOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	events := make([]catalog.AuditEvent, batch)
	b.ResetTimer()
	cpu0, start := cpuTime(), time.Now()
	for i := 0; i < b.N; i += batch {
		n := min(batch, b.N-i)
		for k := range n {
			events[k] = gatewayEvent(int64(i + k))
		}
		if err := e.AppendAudit(ctx, events[:n]...); err != nil {
			b.Fatal(err)
		}
	}
	d, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	checkCount(b, e, b.N)
	b.ReportMetric(float64(b.N)/d.Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-us/event")
}

func checkCount(b *testing.B, e *pgstore.Events, want int) {
	var n int
	if err := e.Pool().QueryRow(context.Background(), `SELECT count(*) FROM audit_events`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	if n != want {
		b.Fatalf("PostgreSQL holds %d events, want %d", n, want)
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
	lats := make([]time.Duration, b.N)
	var (
		wg    sync.WaitGroup
		fails atomic.Int64
		next  atomic.Int64
	)
	b.ResetTimer()
	cpu0, start := cpuTime(), time.Now()
	for range producers {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < b.N && fails.Load() == 0; i = int(next.Add(1)) - 1 {
				t := time.Now()
				if err := al.Record(ctx, gatewayEvent(int64(i))); err != nil {
					if fails.Add(1) == 1 {
						b.Error(err)
					}
					return
				}
				lats[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	produced := time.Since(start)
	if err := wal.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	total, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	if fails.Load() > 0 {
		return
	}
	checkCount(b, e, b.N)
	slices.Sort(lats)
	b.ReportMetric(float64(b.N)/produced.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/total.Seconds(), "sustained-events/s")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-us/event")
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
	e, err := pgstore.OpenEvents(ctx, server.URL("perf"), pgstore.EventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// The day partitions of the 90 days, as a replica running all along
	// would have created them.
	if _, err := e.Pool().Exec(ctx, `SELECT mandate_audit_ensure_partitions($1::date, 95)`, end.Add(-storetest.PerfSpan).Format(time.DateOnly)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const batch = 100_000
	events := make([]catalog.AuditEvent, 0, batch)
	for i := 0; i < n; i++ {
		events = append(events, storetest.PerfEvent(i, n, end))
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
	storetest.RunPerfQueries(t, e.Views(), n, func(q storetest.PerfQuery) {
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
