package node_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
)

// discard is an audit store that keeps nothing (the durable path is
// measured in catalog/duckstore: BenchmarkAuditLog).
type discard struct{ n atomic.Int64 }

func (d *discard) AppendAudit(_ context.Context, events ...catalog.AuditEvent) error {
	d.n.Add(int64(len(events)))
	return nil
}

// BenchmarkAuditSink measures the HTTP path of a remote node's audit: 64
// producers call AuditSink.Record; the sink batches them into POST
// /api/v1/audit requests to the real handler (on loopback, in the same
// process), whose AuditLog hands them to a store that discards them. It
// reports events/s and requests made.
//
//	go test -run '^$' -bench BenchmarkAuditSink -benchtime 200000x ./gateway/node/
func BenchmarkAuditSink(b *testing.B) {
	st := &discard{}
	cs := newCatalogServer(b, st, nil, api.Options{})
	s := newSink(b, cs.config())
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := s.Record(context.Background(), event(int(i))); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if st.n.Load() != int64(b.N) {
		b.Fatalf("%d events arrived, want %d", st.n.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/float64(cs.count(api.AuditPath)), "events/request")
}
