package duckstore

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// benchStore opens a store in a fresh directory holding `existing` grants.
func benchStore(b *testing.B, existing int) *Store {
	b.Helper()
	s, err := Open(b.Context(), b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	const perTx = 5000
	for done := 0; done < existing; done += perTx {
		err := s.ReadWriteTx(b.Context(), func(ctx context.Context, tx catalog.RWTx) error {
			for i := done; i < min(done+perTx, existing); i++ {
				if err := tx.AddGrant(ctx, benchGrant(-1-i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return s
}

// benchGrant is grant number i: securables of 100 principals each.
func benchGrant(i int) catalog.Grant {
	return catalog.Grant{Securable: catalog.ID(1_000_000 + i/100), Principal: catalog.ID(1 + i%100),
		Privilege: catalog.PrivUseConnection, Grantor: 1}
}

func benchEvent(i int) catalog.AuditEvent {
	return catalog.AuditEvent{
		EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Time: time.Now(), Service: "sql",
		Action: "GRANT", UserIdentity: "admin", SessionID: "s", RequestID: "r", SecurableType: "CONNECTION",
		SecurableName: "main.default.pg", RequestParams: `{"privilege":"USE CONNECTION","principal":"alice"}`,
		Decision: "allow", LatencyMs: 1.5, Revision: catalog.Revision(i),
	}
}

// commitGrants commits n grants, n audit events and the meta in one
// transaction.
func commitGrants(ctx context.Context, s *Store, first, n int) error {
	return s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		events := make([]catalog.AuditEvent, 0, n)
		for i := first; i < first+n; i++ {
			if err := tx.AddGrant(ctx, benchGrant(i)); err != nil {
				return err
			}
			events = append(events, benchEvent(i))
		}
		if err := tx.AppendAudit(ctx, events...); err != nil {
			return err
		}
		return tx.SetMeta(ctx, catalog.Meta{Revision: catalog.Revision(first + n), NextID: 10})
	})
}

// BenchmarkCommitGrant commits one grant, its audit event and the meta per
// durable transaction, serially.
func BenchmarkCommitGrant(b *testing.B) {
	for _, existing := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			s := benchStore(b, existing)
			i := 0
			for b.Loop() {
				if err := commitGrants(b.Context(), s, i, 1); err != nil {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "grants/s")
		})
	}
}

// BenchmarkCommitGrantBatch100 commits 100 grants and 100 audit events per
// durable transaction, as a group commit of 100 GRANT statements would.
func BenchmarkCommitGrantBatch100(b *testing.B) {
	for _, existing := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			s := benchStore(b, existing)
			i := 0
			for b.Loop() {
				if err := commitGrants(b.Context(), s, i, 100); err != nil {
					b.Fatal(err)
				}
				i += 100
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "grants/s")
		})
	}
}

// BenchmarkCommitGrantBatch8 commits 8 grants and 8 audit events per
// durable transaction: the batches a group commit makes of 8 clients that
// each wait for their GRANT to commit.
func BenchmarkCommitGrantBatch8(b *testing.B) {
	s := benchStore(b, 0)
	i := 0
	for b.Loop() {
		if err := commitGrants(b.Context(), s, i, 8); err != nil {
			b.Fatal(err)
		}
		i += 8
	}
	b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "grants/s")
}

// BenchmarkCommitGrantParallel8 is 8 clients committing one grant per
// transaction each, without group commit: the write lock serializes them.
func BenchmarkCommitGrantParallel8(b *testing.B) {
	s := benchStore(b, 0)
	b.SetParallelism(max(1, 8/testingProcs()))
	next := make(chan int, 1)
	next <- 0
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := <-next
			next <- i + 1
			if err := commitGrants(context.Background(), s, i, 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "grants/s")
}

// BenchmarkLoad lists 100,000 grants, as the catalog does at startup.
func BenchmarkLoad(b *testing.B) {
	const n = 100_000
	s := benchStore(b, n)
	for b.Loop() {
		gs, err := s.ListGrants(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if len(gs) != n {
			b.Fatalf("got %d grants, want %d", len(gs), n)
		}
	}
}

func testingProcs() int { return runtime.GOMAXPROCS(0) }
