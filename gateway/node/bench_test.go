package node_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/node"
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

// BenchmarkLocalAccessTokens is mandate serve's verification of a valid
// access token (LocalAccessTokens), serial and from 32 goroutines.
//
//	go test -run '^$' -bench BenchmarkLocalAccessTokens -benchmem ./gateway/node/
func BenchmarkLocalAccessTokens(b *testing.B) {
	svc := llmCatalog(b)
	token := newToken(b, svc, "laptop")
	local := node.NewLocalAccessTokens(svc)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := local.VerifyAccessToken(b.Context(), token); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-32", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16) // × 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := local.VerifyAccessToken(b.Context(), token); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
