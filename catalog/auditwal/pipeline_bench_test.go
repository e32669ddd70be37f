package auditwal_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// notSyncWriter hides the log's SyncAudit: catalog.AuditLog then writes
// and syncs each batch in one call, the next batch waiting for both.
type notSyncWriter struct{ *auditwal.Log }

func (w notSyncWriter) SyncAudit() {} // shadows the method with another signature

// BenchmarkEnqueueToAck measures how long a gateway call's request
// record waits from catalog.AuditLog.Enqueue until it is durable in the
// log on disk, at a paced rate (one Enqueue every 1/rate, each waited for
// on its own goroutine, with its completion submitted after it): the log
// syncing separately (a batch written while the previous one syncs) and
// writing and syncing in one call. The variants alternate within a run
// (one second each, rounds as given by -benchtime Nx).
func BenchmarkEnqueueToAck(b *testing.B) {
	for _, rate := range []int{1000, 3000} {
		b.Run(fmt.Sprintf("%d/s", rate), func(b *testing.B) {
			variants := []struct {
				name string
				wrap func(*auditwal.Log) catalog.AuditWriter
			}{
				{"separate-sync", func(l *auditwal.Log) catalog.AuditWriter { return l }},
				{"write-and-sync", func(l *auditwal.Log) catalog.AuditWriter { return notSyncWriter{l} }},
			}
			lat := make([][]time.Duration, len(variants))
			for range b.N {
				for i, v := range variants {
					lat[i] = append(lat[i], paceEnqueues(b, v.wrap, rate, time.Second)...)
				}
			}
			for i, v := range variants {
				auditwal.ReportLatencies(b, v.name, lat[i])
			}
		})
	}
}

// paceEnqueues opens a log, enqueues rate records a second for d, each
// followed by its completion, and returns each record's wait for its
// ack.
func paceEnqueues(b *testing.B, wrap func(*auditwal.Log) catalog.AuditWriter, rate int, d time.Duration) []time.Duration {
	b.Helper()
	ctx := b.Context()
	l, err := auditwal.Open(ctx, b.TempDir(), memstore.New(), auditwal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	a := catalog.NewAuditLog(wrap(l), catalog.AuditLogOptions{})
	defer a.Close(context.Background())
	n := int(d.Seconds() * float64(rate))
	waits := make(chan time.Duration, n)
	every := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range n {
		if sleep := time.Until(start.Add(time.Duration(i) * every)); sleep > 0 {
			time.Sleep(sleep)
		}
		t0 := time.Now()
		id := fmt.Sprintf("call-%d", i)
		ack, err := a.Enqueue(ctx, catalog.AuditEvent{EventID: id, Service: "mcp", Action: "tools/call", RequestParams: `{"name":"search","arguments":{"q":"x"}}`})
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			if err := ack.Wait(ctx); err != nil {
				b.Error(err)
			}
			waits <- time.Since(t0)
			_ = a.Submit(ctx, catalog.AuditEvent{EventID: id, Completes: true, Service: "mcp", Action: "tools/call", StatusCode: 200, LatencyMs: 0.4})
		}()
	}
	out := make([]time.Duration, 0, n)
	for range n {
		out = append(out, <-waits)
	}
	return out
}
