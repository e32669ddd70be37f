package storetest

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// The event-ingestion benchmarks of the event stores (duckstore's
// BenchmarkAuditLog, pgstore's BenchmarkEvents): the same event, the same
// load through catalog.AuditLog and the same metrics, whatever the store.

// GatewayEvent is event i of an ingestion benchmark: a typical audit
// record of one MCP tools/call through the gateway, with an ID (shaped as
// a UUID, from i) and the time now, as a store's AppendAudit takes it.
func GatewayEvent(i int64) catalog.AuditEvent {
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

// CPUTime is the CPU time (user and system) the process used so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// AuditLoad is how BenchAuditLog records its events.
type AuditLoad struct {
	// Producers goroutines each record their next event as soon as the
	// last one returned (closed loop): the highest rate.
	Producers int
	// Rate, when set, is events per second, each recorded by a goroutine
	// of its own started at its scheduled time (open loop, as requests
	// come to a server; latency is counted from that time); Producers is
	// then not used.
	Rate float64
}

// IngestRun is what BenchAuditLog measured, for a store's own metrics:
// the time producing took, the time until the store held every event,
// and the process's CPU time over both.
type IngestRun struct {
	Produced, Total, CPU time.Duration
}

// BenchAuditLog measures durable event ingestion as the gateway does it:
// b.N events (GatewayEvent) recorded through al (catalog.AuditLog over
// the store's write-ahead log or spool) as load says; then flush returns
// once the store holds everything, and count must answer b.N. Reported:
// events/s while producing, sustained-events/s (flush included), the
// Record latency p50-ms and p99-ms, and the process's cpu-us/event. It
// returns false, with the error reported, if a Record failed.
func BenchAuditLog(b *testing.B, al *catalog.AuditLog, load AuditLoad, flush func(context.Context) error,
	count func(context.Context) (int64, error)) (IngestRun, bool) {
	ctx := context.Background()
	var (
		lats  = make([]time.Duration, b.N) // by event
		wg    sync.WaitGroup
		fails atomic.Int64
	)
	record := func(i int, due time.Time) {
		if err := al.Record(ctx, GatewayEvent(int64(i))); err != nil {
			if fails.Add(1) == 1 {
				b.Error(err)
			}
			return
		}
		lats[i] = time.Since(due)
	}
	b.ResetTimer()
	cpu0 := CPUTime()
	start := time.Now()
	if load.Rate == 0 {
		var next atomic.Int64
		for range load.Producers {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < b.N && fails.Load() == 0; i = int(next.Add(1)) - 1 {
					record(i, time.Now())
				}
			})
		}
	} else {
		// Each event is a request of its own, as in a server: one
		// goroutine each, started at its time.
		for i := range b.N {
			due := start.Add(time.Duration(float64(i) / load.Rate * float64(time.Second)))
			if d := time.Until(due); d > time.Millisecond { // timers are coarser than 20 µs: start them by the millisecond
				time.Sleep(d)
			}
			wg.Go(func() { record(i, due) })
		}
	}
	wg.Wait()
	run := IngestRun{Produced: time.Since(start)}
	if err := flush(ctx); err != nil {
		b.Fatal(err)
	}
	run.Total, run.CPU = time.Since(start), CPUTime()-cpu0
	b.StopTimer()
	if fails.Load() > 0 {
		return run, false
	}
	n, err := count(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if n != int64(b.N) {
		b.Fatalf("the store holds %d audit events, want %d", n, b.N)
	}
	slices.Sort(lats)
	b.ReportMetric(float64(b.N)/run.Produced.Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/run.Total.Seconds(), "sustained-events/s")
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(run.CPU.Nanoseconds())/1e3/float64(b.N), "cpu-us/event")
	return run, true
}
