package duckstore

import (
	"context"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// durableOnly hides the log's AppendAuditLazy from catalog.AuditLog
// (every batch is fsynced, as before lazy writes) and counts the writes.
type durableOnly struct {
	*auditwal.Log
	durable *atomic.Int64
}

func (d durableOnly) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	d.durable.Add(1)
	return d.Log.AppendAudit(ctx, events...)
}

// AppendPrepared: every batch fsynced and counted.
func (d durableOnly) AppendPrepared(ctx context.Context, events []catalog.AuditEvent, _ bool) error {
	d.durable.Add(1)
	return d.Log.AppendPrepared(ctx, events, true)
}

// withLazy is durableOnly with the log's AppendAuditLazy.
type withLazy struct{ durableOnly }

func (d withLazy) AppendAuditLazy(ctx context.Context, events ...catalog.AuditEvent) error {
	return d.Log.AppendAuditLazy(ctx, events...)
}

func (d withLazy) AppendPrepared(ctx context.Context, events []catalog.AuditEvent, durable bool) error {
	if durable {
		d.durable.Add(1)
	}
	return d.Log.AppendPrepared(ctx, events, durable)
}

// BenchmarkAuditPath is the audit storage as a gateway call with
// --audit-sync on sees it, without HTTP: calls paced at BENCH_AUDIT_RATE
// per second (default 1,000), each queues its request record
// (catalog.AuditLog.Enqueue, group commit into catalog/auditwal in front of
// DuckDB), spends BENCH_AUDIT_UPSTREAM (default 500 µs) "upstream", waits
// for the record's acknowledgement and submits its completion. Reported:
// the wait after the upstream part (what the audit adds to the call's
// latency), p50 and p99; the delay of a probe goroutine that sleeps 1 ms
// in a loop beyond its 1 ms (what an apply burst takes from the other
// goroutines), p99 and max, and p50 and p90 of its sleeps that overlap an
// apply transaction; the process's CPU per call. Variants: before
// (every batch fsynced, an apply round in one transaction, DuckDB's
// default threads), each change alone, after (all of them), and nice
// (after, with the background applier at nice 10, as mandate serve runs
// it).
//
//	go test -run '^$' -bench BenchmarkAuditPath -benchtime 10000x ./catalog/duckstore/
func BenchmarkAuditPath(b *testing.B) {
	half := max(1, runtime.NumCPU()/2)
	one := auditwal.Options{ApplySlice: 1 << 16}
	b.Run("before", func(b *testing.B) { benchAuditPath(b, false, one, 0) })
	b.Run("lazy", func(b *testing.B) { benchAuditPath(b, true, one, 0) })
	b.Run("slices", func(b *testing.B) { benchAuditPath(b, false, auditwal.Options{}, 0) })
	b.Run("threads", func(b *testing.B) { benchAuditPath(b, false, one, half) })
	b.Run("after", func(b *testing.B) { benchAuditPath(b, true, auditwal.Options{}, half) })
	b.Run("nice", func(b *testing.B) { benchAuditPath(b, true, auditwal.Options{ApplyNice: 10}, half) })
}

func benchAuditPath(b *testing.B, lazy bool, o auditwal.Options, threads int) {
	ctx := context.Background()
	rate, upstream := 1000, 500*time.Microsecond
	if v, err := strconv.Atoi(os.Getenv("BENCH_AUDIT_RATE")); err == nil && v > 0 {
		rate = v
	}
	if v, err := time.ParseDuration(os.Getenv("BENCH_AUDIT_UPSTREAM")); err == nil {
		upstream = v
	}
	dir := b.TempDir()
	duck, err := Open(ctx, dir, Options{Threads: threads})
	if err != nil {
		b.Fatal(err)
	}
	var applying atomic.Bool
	wal, err := auditwal.Open(ctx, dir, watchApply{duck, &applying}, o)
	if err != nil {
		b.Fatal(err)
	}
	defer wal.Close()
	var durable atomic.Int64
	var w catalog.AuditWriter = durableOnly{wal, &durable}
	if lazy {
		w = withLazy{durableOnly{wal, &durable}}
	}
	al := catalog.NewAuditLog(w, catalog.AuditLogOptions{})
	defer al.Close(ctx)
	call := func(i int, done bool) catalog.AuditEvent {
		ev := storetest.GatewayEvent(int64(i))
		// A completion carries its request's time (the gateway's do): the
		// row it completes is found by id and time.
		ev.EventID, ev.Time, ev.StatusCode = strconv.Itoa(i), time.Unix(1_800_000_000, 0).Add(time.Duration(i)*time.Millisecond), 0
		ev.Service, ev.Action, ev.SecurableType, ev.SecurableName = "llm", "chat.completions", "MODEL SERVICE", "system.ai.frontier"
		ev.RequestParams = `{"model":"frontier","max_tokens":2048,"stream":false}`
		if done {
			ev.Completes, ev.StatusCode, ev.LatencyMs, ev.Usage = true, 200, 19.7, llmUsage
		}
		return ev
	}
	stop := make(chan struct{})
	var probe, during []time.Duration
	probed := make(chan struct{})
	go func() {
		defer close(probed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			busy := applying.Load()
			time.Sleep(time.Millisecond)
			d := time.Since(t0) - time.Millisecond
			probe = append(probe, d)
			if busy || applying.Load() {
				during = append(during, d)
			}
		}
	}()
	waits := make([]time.Duration, b.N)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0 := storetest.CPUTime()
	start := time.Now()
	for i := range b.N {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d) // the pace of the load, not a synchronisation
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ack, err := al.Enqueue(ctx, call(i, false))
			if err != nil {
				b.Error(err)
				return
			}
			time.Sleep(upstream) // the upstream call the record's fsync overlaps
			t0 := time.Now()
			if err := ack.Wait(ctx); err != nil {
				b.Error(err)
				return
			}
			waits[i] = time.Since(t0)
			if err := al.Submit(ctx, call(i, true)); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-probed
	if err := al.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	if err := wal.Flush(ctx); err != nil {
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
	slices.Sort(waits)
	slices.Sort(probe)
	b.ReportMetric(float64(waits[len(waits)/2].Microseconds()), "wait-p50-µs")
	b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "wait-p99-µs")
	b.ReportMetric(float64(probe[len(probe)*99/100].Microseconds()), "probe-p99-µs")
	b.ReportMetric(float64(probe[len(probe)-1].Microseconds()), "probe-max-µs")
	if len(during) > 0 {
		slices.Sort(during)
		b.ReportMetric(float64(during[len(during)/2].Microseconds()), "probe-in-apply-p50-µs")
		b.ReportMetric(float64(during[len(during)*9/10].Microseconds()), "probe-in-apply-p90-µs")
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/call")
	b.ReportMetric(float64(durable.Load())/float64(b.N), "fsynced-writes/call")
}

// watchApply is the store with a flag raised while an ApplyLog runs.
type watchApply struct {
	*Store
	applying *atomic.Bool
}

func (w watchApply) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	w.applying.Store(true)
	defer w.applying.Store(false)
	return w.Store.ApplyLog(ctx, seq, events, mark)
}
