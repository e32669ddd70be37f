package duckstore

import (
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/google/uuid"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// countingWriter counts the writes that reach the store.
type countingWriter struct {
	catalog.AuditWriter
	writes atomic.Int64
}

func (c *countingWriter) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	c.writes.Add(1)
	return c.AuditWriter.AppendAudit(ctx, events...)
}

// BenchmarkAuditLog measures durable audit ingestion as the gateway does
// it: concurrent producers call AuditLog.Record, which returns once the
// event is fsynced in the write-ahead log; the log's applier moves the
// events into DuckDB meanwhile.
//
//   - max: 64 producers, each recording its next event as soon as the last
//     one returned (closed loop): the highest rate.
//   - rate=50000: 50,000 events per second, each recorded by a goroutine
//     of its own started at its scheduled time (open loop, as requests come
//     to a server; latency is counted from that time): the target
//     load, and the CPU it costs, which the gateway's traffic then lacks.
//
// Reported: events/s while producing, sustained events/s (including the
// time DuckDB then needed to catch up with what was still pending),
// events per fsync, Record latency p50/p99, and the CPU time of the
// process per event and in cores.
//
//	go test -run '^$' -bench BenchmarkAuditLog -benchtime 1500000x ./catalog/duckstore/
func BenchmarkAuditLog(b *testing.B) {
	b.Run("max", func(b *testing.B) { benchAuditLog(b, 64, 0) })
	b.Run("rate=50000", func(b *testing.B) { benchAuditLog(b, 0, 50_000) })
}

func benchAuditLog(b *testing.B, producers int, rate float64) {
	ctx := context.Background()
	duck, wal := openAuditWAL(b, auditwal.Options{})
	cw := &countingWriter{AuditWriter: wal}
	al := catalog.NewAuditLog(cw, catalog.AuditLogOptions{})
	defer al.Close(ctx)
	run, ok := storetest.BenchAuditLog(b, al, storetest.AuditLoad{Producers: producers, Rate: rate},
		wal.Flush, // a read applies what is pending
		func(ctx context.Context) (n int64, err error) {
			err = duck.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events`).Scan(&n)
			return n, err
		})
	if !ok {
		return
	}
	b.ReportMetric(float64(b.N)/float64(cw.writes.Load()), "events/fsync")
	b.ReportMetric(float64(run.Total-run.Produced)/1e6, "catchup-ms")
	b.ReportMetric(run.CPU.Seconds()/run.Total.Seconds(), "cpu-cores")
}

// openAuditWAL opens a DuckDB store in a temporary directory and the
// write-ahead log in front of it, closed when b ends.
func openAuditWAL(b *testing.B, o auditwal.Options) (*Store, *auditwal.Log) {
	ctx := context.Background()
	dir := b.TempDir()
	duck, err := Open(ctx, dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	wal, err := auditwal.Open(ctx, dir, duck, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = wal.Close() })
	return duck, wal
}

// BenchmarkAuditTwoPhase is the gateway's two-phase audit of one call at a
// paced rate (open loop) through AuditLog → auditwal → DuckDB: the request
// record is enqueued, the completion submitted 200 µs later (an upstream
// call), as --audit-sync on and off both do. Reported: how long after its
// enqueue the request record was durable (p50/p99/max): with
// --audit-sync on the answer waits for it (the part longer than the
// upstream call is added latency); with off it is the window a crash can
// lose. Then every pair must be one row in DuckDB with the outcome.
// cpu-µs/call is the process's CPU (the load generator's goroutines
// included) over the run and the final apply, per call. The llm variant
// is an LLM call's pair (its completion carries the usage columns) of a
// 20 ms call at 2,000 calls/s, as in the binary's throughput benchmark.
//
//	go test -run '^$' -bench BenchmarkAuditTwoPhase -benchtime 20000x ./catalog/duckstore/
func BenchmarkAuditTwoPhase(b *testing.B) {
	for _, rate := range []float64{1000, 10000} {
		b.Run("calls/s="+strconv.Itoa(int(rate)), func(b *testing.B) { benchTwoPhase(b, rate, 200*time.Microsecond, false) })
	}
	b.Run("llm/calls/s=2000/call=20ms", func(b *testing.B) { benchTwoPhase(b, 2000, 20*time.Millisecond, true) })
}

// llmUsage is the usage of a typical LLM call's completion.
var llmUsage = &catalog.LLMUsage{ProviderService: "system.ai.openai_prod", Provider: "openai", Model: "gpt-4.1",
	InputTokens: 230, OutputTokens: 1024, CostNanos: 8652000, RequestTags: `{"project":"checkout"}`,
	Routing: `[{"destination":"openai_prod/gpt-4.1","status":200,"latency_ms":19.7}]`}

func benchTwoPhase(b *testing.B, rate float64, call time.Duration, llm bool) {
	ctx := context.Background()
	duck, wal := openAuditWAL(b, auditwal.Options{})
	al := catalog.NewAuditLog(wal, catalog.AuditLogOptions{})
	defer al.Close(ctx)
	lag := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	var fails atomic.Int64
	b.ResetTimer()
	cpu0 := storetest.CPUTime()
	start := time.Now()
	for i := range b.N {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if d := time.Until(due); d > time.Millisecond {
			time.Sleep(d) // the pace of the load
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := storetest.GatewayEvent(int64(i))
			if llm {
				ev.Service, ev.Action, ev.SecurableType, ev.SecurableName = "llm", "chat.completions", "MODEL SERVICE", "system.ai.frontier"
				ev.RequestParams = `{"model":"frontier","max_tokens":2048,"stream":false}`
			}
			ev.EventID, ev.Time = strconv.Itoa(i), time.Now()
			ev.StatusCode, ev.LatencyMs = 0, 0
			t0 := time.Now()
			ack, err := al.Enqueue(ctx, ev)
			if err == nil {
				durable := make(chan struct{})
				go func() { // when it is durable, whatever the upstream does
					if ack.Wait(ctx) == nil {
						lag[i] = time.Since(t0)
					}
					close(durable)
				}()
				time.Sleep(call) // the upstream call
				err = ack.Wait(ctx)
				<-durable
			}
			if err == nil {
				ev.Completes, ev.StatusCode, ev.LatencyMs = true, 200, 0.4
				if llm {
					ev.Usage = llmUsage
				}
				err = al.Submit(ctx, ev)
			}
			if err != nil && fails.Add(1) == 1 {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	if err := al.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	if err := wal.Flush(ctx); err != nil { // applies what is pending
		b.Fatal(err)
	}
	cpu := storetest.CPUTime() - cpu0
	b.StopTimer()
	var rows, done int64
	if err := duck.db.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE status_code = 200) FROM audit_events`).Scan(&rows, &done); err != nil {
		b.Fatal(err)
	}
	if rows != int64(b.N) || done != int64(b.N) {
		b.Fatalf("DuckDB holds %d rows, %d completed, want %d of each", rows, done, b.N)
	}
	slices.Sort(lag)
	b.ReportMetric(float64(lag[len(lag)/2].Microseconds()), "durable-p50-µs")
	b.ReportMetric(float64(lag[len(lag)*99/100].Microseconds()), "durable-p99-µs")
	b.ReportMetric(float64(lag[len(lag)-1].Microseconds()), "durable-max-µs")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/call")
}

// BenchmarkAuditLateCompletion is the cost of completions whose request
// row DuckDB already holds (the write-ahead log applied it before the
// completion came: a long call, or a query flushed it): one UPDATE per
// applied batch, pruned to the recent row groups by event_time, next to
// appending as many new rows, in a table of 2,000,000 rows.
//
//	go test -run '^$' -bench BenchmarkAuditLateCompletion -benchtime 50x ./catalog/duckstore/
func BenchmarkAuditLateCompletion(b *testing.B) {
	ctx := context.Background()
	st, err := Open(ctx, b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const prefill, batch = 2_000_000, 20
	base := time.Now().Add(-time.Hour)
	evs := make([]catalog.AuditEvent, 0, 100_000)
	for i := 0; i < prefill; i++ {
		ev := storetest.GatewayEvent(int64(i))
		ev.EventID, ev.Time, ev.StatusCode = strconv.Itoa(i), base.Add(time.Duration(i)*time.Millisecond), 0
		evs = append(evs, ev)
		if len(evs) == cap(evs) {
			if err := st.AppendAudit(ctx, evs...); err != nil {
				b.Fatal(err)
			}
			evs = evs[:0]
		}
	}
	next := prefill
	for _, mode := range []string{"append", "complete"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				evs := make([]catalog.AuditEvent, batch)
				for j := range evs {
					ev := storetest.GatewayEvent(int64(next))
					ev.EventID, ev.Time = strconv.Itoa(next), base.Add(time.Duration(next)*time.Millisecond)
					if mode == "complete" { // the most recent prefilled rows
						idx := prefill - 1 - j
						ev.EventID, ev.Time = strconv.Itoa(idx), base.Add(time.Duration(idx)*time.Millisecond)
						ev.Completes, ev.StatusCode = true, 200
					}
					evs[j] = ev
					next++
				}
				if err := st.AppendAudit(ctx, evs...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	var done int64
	if err := st.db.QueryRowContext(ctx, `SELECT count(*) FROM audit_events WHERE status_code = 200`).Scan(&done); err != nil || done != batch {
		b.Fatalf("%d rows completed (%v), want %d", done, err, batch)
	}
}

// BenchmarkApplyLog is the inner store's share of the audit path: one
// auditwal batch of 2,000 LLM calls (each its request and its completion,
// merged into one row) applied in one transaction, as the write-ahead
// log's applier does every second at 2,000 calls/s. Reported per call
// (the CPU of building the events included).
//
//	go test -run '^$' -bench BenchmarkApplyLog -benchtime 100x ./catalog/duckstore/
func BenchmarkApplyLog(b *testing.B) {
	ctx := context.Background()
	st, err := Open(ctx, b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const calls = 2000
	base := time.Now()
	next := 0
	b.ResetTimer()
	cpu0 := storetest.CPUTime()
	for i := range b.N {
		b.StopTimer()
		evs := make([]catalog.AuditEvent, 0, 2*calls)
		for range calls {
			ev := storetest.GatewayEvent(int64(next))
			ev.EventID, ev.Time, ev.StatusCode = strconv.Itoa(next), base.Add(time.Duration(next)*time.Millisecond), 0
			ev.Service, ev.Action, ev.SecurableType, ev.SecurableName = "llm", "chat.completions", "MODEL SERVICE", "system.ai.frontier"
			evs = append(evs, ev)
			ev.Completes, ev.StatusCode, ev.Usage = true, 200, llmUsage
			evs = append(evs, ev)
			next++
		}
		b.StartTimer()
		if err := st.ApplyLog(ctx, int64(i+1), evs, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((storetest.CPUTime()-cpu0).Nanoseconds())/1e3/float64(b.N*calls), "cpu-µs/call")
}

// BenchmarkAuditPairs is the audit storage's CPU per LLM call without a
// load generator's timers in the way: one writer appends records to the
// write-ahead log as fast as their fsyncs allow, each with the requests of
// 8 new calls and the completions of the 8 calls started 32 calls earlier
// (32 calls in flight, as with 32 connections), with the log's default
// options (its applier moving the records into DuckDB meanwhile), then
// flushes. Reported: the process's CPU per call. on: each record fsynced
// before AppendAudit returns (--audit-sync on); off: the log fsynced every
// 100 ms in the background (--audit-sync off).
//
//	go test -run '^$' -bench BenchmarkAuditPairs -benchtime 20000x ./catalog/duckstore/
func BenchmarkAuditPairs(b *testing.B) {
	b.Run("on", func(b *testing.B) { benchAuditPairs(b, 0, 0, auditwal.Options{}) })
	b.Run("off", func(b *testing.B) { benchAuditPairs(b, 0, 0, auditwal.Options{SyncInterval: 100 * time.Millisecond}) })
}

// BenchmarkAuditPairsPaced is BenchmarkAuditPairs at 400 calls/s (a
// record every 20 ms), where each apply transaction's fixed cost is
// shared by fewer calls: with the log's defaults (apply every 5 s or at
// 8,192 events) and with the former ones (every 1 s or at 4,096 records).
//
//	go test -run '^$' -bench BenchmarkAuditPairsPaced -benchtime 4000x ./catalog/duckstore/
func BenchmarkAuditPairsPaced(b *testing.B) {
	const every = 20 * time.Millisecond
	b.Run("defaults", func(b *testing.B) { benchAuditPairs(b, every, 0, auditwal.Options{}) })
	b.Run("apply-1s", func(b *testing.B) {
		benchAuditPairs(b, every, 0, auditwal.Options{ApplyInterval: time.Second, MaxPending: 4096 * 16})
	})
}

// benchAuditPairs appends a record every pace (0: as fast as the log
// takes them); o configures the log.
func benchAuditPairs(b *testing.B, pace time.Duration, _ int, o auditwal.Options) {
	ctx := context.Background()
	duck, wal := openAuditWAL(b, o)
	const perRecord, inFlight = 8, 32
	call := func(i int, done bool) catalog.AuditEvent {
		ev := storetest.GatewayEvent(int64(i))
		ev.EventID, ev.Time, ev.StatusCode = strconv.Itoa(i), time.Unix(1_800_000_000, 0).Add(time.Duration(i)*time.Millisecond), 0
		ev.Service, ev.Action, ev.SecurableType, ev.SecurableName = "llm", "chat.completions", "MODEL SERVICE", "system.ai.frontier"
		ev.RequestParams = `{"model":"frontier","max_tokens":2048,"stream":false}`
		if done {
			ev.Completes, ev.StatusCode, ev.LatencyMs, ev.Usage = true, 200, 19.7, llmUsage
		}
		return ev
	}
	b.ResetTimer()
	cpu0 := storetest.CPUTime()
	evs := make([]catalog.AuditEvent, 0, 2*perRecord)
	start := time.Now()
	for i := 0; i < b.N+inFlight; i += perRecord {
		if pace > 0 {
			if d := time.Until(start.Add(time.Duration(i/perRecord) * pace)); d > 0 {
				time.Sleep(d) // the pace of the load, not a synchronisation
			}
		}
		evs = evs[:0]
		for j := i; j < i+perRecord; j++ {
			if j < b.N {
				evs = append(evs, call(j, false))
			}
			if k := j - inFlight; k >= 0 && k < b.N {
				evs = append(evs, call(k, true))
			}
		}
		if err := wal.AppendAudit(ctx, evs...); err != nil {
			b.Fatal(err)
		}
	}
	if err := wal.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	cpu := storetest.CPUTime() - cpu0
	b.StopTimer()
	var rows, done int64
	if err := duck.db.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE status_code = 200 AND output_tokens = 1024) FROM audit_events`).Scan(&rows, &done); err != nil {
		b.Fatal(err)
	}
	if rows != int64(b.N) || done != int64(b.N) {
		b.Fatalf("DuckDB holds %d rows, %d completed, want %d of each", rows, done, b.N)
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/call")
}

// BenchmarkApplyParts splits the CPU of one apply transaction (rows of
// LLM calls, request and completion merged, as ApplyLog writes them) into
// its parts, per row: BEGIN, filling the table appender (AppendRow: Go
// values into DuckDB's chunk), closing it (DuckDB's local storage),
// the bookkeeping UPDATE, COMMIT (storage, DuckDB's WAL and its fsync) and,
// once at the end, a CHECKPOINT (compression into the database file,
// which DuckDB otherwise does when its WAL reaches checkpoint_threshold).
// BENCH_APPLY_ROWS sets the rows per transaction (default 2,000);
// BENCH_APPLY_NOINDEX=1 drops the request_id index first (its share);
// BENCH_APPLY_IDS=v4 or v7 gives each row a request_id as the gateway's
// LLM calls have (their event ID: random v4, or time-ordered v7) instead
// of storetest's "req-N".
//
//	go test -run '^$' -bench BenchmarkApplyParts -benchtime 60x ./catalog/duckstore/
func BenchmarkApplyParts(b *testing.B) {
	ctx := context.Background()
	o := Options{}
	if v, err := strconv.Atoi(os.Getenv("BENCH_DUCK_THREADS")); err == nil {
		o.Threads = v
	}
	st, err := Open(ctx, b.TempDir(), o)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if os.Getenv("BENCH_APPLY_NOINDEX") != "" { // the request_id index's share
		if _, err := st.wconn.ExecContext(ctx, `DROP INDEX audit_events_request_id`); err != nil {
			b.Fatal(err)
		}
	}
	calls := 2000
	if v, err := strconv.Atoi(os.Getenv("BENCH_APPLY_ROWS")); err == nil && v > 0 {
		calls = v
	}
	requestID := map[string]func() string{"": nil, "v4": uuid.NewString, "v7": catalog.NewEventID}[os.Getenv("BENCH_APPLY_IDS")]
	base := time.Now()
	next := 0
	var parts [6]time.Duration
	for range b.N {
		evs := make([]catalog.AuditEvent, 0, calls)
		for range calls {
			ev := storetest.GatewayEvent(int64(next))
			ev.EventID, ev.Time, ev.StatusCode = strconv.Itoa(next), base.Add(time.Duration(next)*time.Millisecond), 200
			ev.Service, ev.Action, ev.SecurableType, ev.SecurableName = "llm", "chat.completions", "MODEL SERVICE", "system.ai.frontier"
			ev.Usage = llmUsage
			if requestID != nil {
				ev.RequestID = requestID()
			}
			evs = append(evs, ev)
			next++
		}
		t0 := storetest.CPUTime()
		if _, err := st.wconn.ExecContext(ctx, "BEGIN TRANSACTION"); err != nil {
			b.Fatal(err)
		}
		t1 := storetest.CPUTime()
		var ar auditRow
		var t2 time.Duration
		err = st.wconn.Raw(func(dc any) error {
			a, err := duckdb.NewAppenderFromConn(dc.(*duckdb.Conn), "", "audit_events")
			if err != nil {
				return err
			}
			for i := range evs {
				if err := a.AppendRow(ar.set(&evs[i])...); err != nil {
					return err
				}
			}
			t2 = storetest.CPUTime()
			return a.Close()
		})
		if err != nil {
			b.Fatal(err)
		}
		t3 := storetest.CPUTime()
		if _, err := st.wconn.ExecContext(ctx, `UPDATE mandate_meta SET value = $1 WHERE key = $2`, 1, "log_seq"); err != nil {
			b.Fatal(err)
		}
		t4 := storetest.CPUTime()
		if _, err := st.wconn.ExecContext(ctx, "COMMIT"); err != nil {
			b.Fatal(err)
		}
		t5 := storetest.CPUTime()
		parts[0] += t1 - t0
		parts[1] += t2 - t1
		parts[2] += t3 - t2
		parts[3] += t4 - t3
		parts[4] += t5 - t4
	}
	t0 := storetest.CPUTime()
	if _, err := st.wconn.ExecContext(ctx, "CHECKPOINT"); err != nil {
		b.Fatal(err)
	}
	parts[5] = storetest.CPUTime() - t0
	n := float64(b.N * calls)
	for i, name := range []string{"begin", "fill", "close", "meta", "commit", "ckpt"} {
		b.ReportMetric(float64(parts[i].Nanoseconds())/1e3/n, name+"-µs/row")
	}
}
