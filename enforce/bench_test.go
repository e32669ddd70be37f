package enforce

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/catalogtest"
)

// issueSpec is the catalog of the issue's performance targets: 10,000
// users, 1,000 groups nested 5 deep, 1,000 connections, 100,000 grants.
var issueSpec = catalogtest.Spec{Users: 10000, Groups: 1000, Depth: 5, Catalogs: 10, Schemas: 10, Connections: 10, Grants: 100000, Seed: 1}

const benchAgent = "bench-agent"

// largeCatalog builds issueSpec plus a service principal holding USE
// CATALOG, USE SCHEMA and USE CONNECTION on every catalog (inherited by
// the schemas and connections) to act on the users' behalf.
func largeCatalog(b *testing.B) (*catalog.Service, *catalogtest.Built) {
	b.Helper()
	svc := newService(b)
	built, err := catalogtest.Build(b.Context(), svc, issueSpec)
	if err != nil {
		b.Fatal(err)
	}
	write(b, svc, func(tx *catalog.Tx) error {
		if err := tx.CreatePrincipal(catalog.KindServicePrincipal, benchAgent, nil, false); err != nil {
			return err
		}
		for c := range issueSpec.Catalogs {
			privs := []catalog.Privilege{catalog.PrivUseCatalog, catalog.PrivUseSchema, catalog.PrivUseConnection}
			if err := tx.Grant(privs, catalog.TypeCatalog, []string{fmt.Sprintf("cat%d", c)}, []string{benchAgent}); err != nil {
				return err
			}
		}
		return nil
	})
	return svc, built
}

// allowedQuestions returns n random (user, connection) USE CONNECTION
// requests that the grants allow, on behalf of the bench agent if obo.
func allowedQuestions(b *testing.B, snap *Snapshot, built *catalogtest.Built, n int, obo bool) []Request {
	b.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	var qs []Request
	for tries := 0; len(qs) < n; tries++ {
		if tries > 1000*n {
			b.Fatalf("only %d allowed questions found", len(qs))
		}
		c := built.Connections[r.IntN(len(built.Connections))]
		req := Request{Subject: built.Users[r.IntN(len(built.Users))], Privilege: catalog.PrivUseConnection,
			Securable: SecurableRef{Type: catalog.TypeConnection, Name: c[0] + "." + c[1] + "." + c[2]}}
		if obo {
			req.Actor = benchAgent
		}
		if snap.Allowed(req) {
			qs = append(qs, req)
		}
	}
	return qs
}

// timerOverhead is the median cost of the two time.Now calls around each
// measured operation (included in the reported percentiles).
func timerOverhead() time.Duration {
	lat := make([]time.Duration, 100000)
	for i := range lat {
		t0 := time.Now()
		lat[i] = time.Since(t0)
	}
	slices.Sort(lat)
	return lat[len(lat)/2]
}

// BenchmarkDecide measures decisions on the issue's catalog, allow path
// only, 4,096 random allowed (user, connection) questions asked round
// robin: Engine.Allowed (the zero-allocation path, subject alone and on
// behalf of an agent; repeated questions are answered from the snapshot's
// memo), the same on a copy of the snapshot without the memo (every
// question computed), and the contract's Decide with reasons and steps.
// p50/p99 are per call, timed with time.Now around each (the timer's own
// cost, timer-ns, is included in them).
func BenchmarkDecide(b *testing.B) {
	svc, built := largeCatalog(b)
	e := newEngine(b, svc, Options{})
	ctx := b.Context()
	overhead := timerOverhead()
	uncached := *e.Snapshot() // the same snapshot without the memo of answers
	uncached.memo = nil
	for _, mode := range []struct {
		name     string
		obo      bool
		explain  bool
		uncached bool
	}{
		{"Allowed/subject", false, false, false},
		{"Allowed/on-behalf-of", true, false, false},
		{"Allowed/subject/uncached", false, false, true},
		{"Allowed/on-behalf-of/uncached", true, false, true},
		{"Decide/subject", false, true, false},
		{"Decide/on-behalf-of", true, true, false},
		{"Decide/brief/subject", false, false, false},
		{"Decide/brief/on-behalf-of", true, false, false},
	} {
		brief := strings.HasPrefix(mode.name, "Decide/brief")
		qs := allowedQuestions(b, e.Snapshot(), built, 4096, mode.obo)
		b.Run(mode.name, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([]time.Duration, 0, min(b.N, 1<<20))
			denied := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				q := qs[i%len(qs)]
				t0 := time.Now()
				var ok bool
				switch {
				case mode.explain:
					q.Explain = true
					ok = e.Decide(ctx, q).Allowed
				case brief:
					ok = e.Decide(ctx, q).Allowed
				case mode.uncached:
					ok = uncached.Allowed(q)
				default:
					ok, _ = e.Allowed(ctx, q)
				}
				d := time.Since(t0)
				if len(lat) < cap(lat) {
					lat = append(lat, d)
				}
				if !ok {
					denied++
				}
			}
			b.StopTimer()
			if denied > 0 {
				b.Fatalf("%d allowed questions denied", denied)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(overhead.Nanoseconds()), "timer-ns")
		})
	}
}

// BenchmarkSnapshotRebuild measures the time from a committed GRANT (or
// REVOKE) to the engine answering from a snapshot that includes it
// (grant-to-swap) on the issue's catalog. (Taking the catalog's snapshot
// itself: BenchmarkSnapshot in catalog.)
func BenchmarkSnapshotRebuild(b *testing.B) {
	svc, built := largeCatalog(b)
	const toggled = "bench-toggled" // holds nothing else: every GRANT and REVOKE below changes the catalog
	write(b, svc, func(tx *catalog.Tx) error {
		return tx.CreatePrincipal(catalog.KindServicePrincipal, toggled, nil, false)
	})
	b.Run("grant-to-swap", func(b *testing.B) {
		e := newEngine(b, svc, Options{})
		revs, cancel := e.Subscribe()
		defer cancel()
		c := built.Connections[0]
		user := toggled
		revoke := func(tx *catalog.Tx) error {
			return tx.Revoke([]catalog.Privilege{catalog.PrivUseConnection}, catalog.TypeConnection, c, []string{user})
		}
		write(b, svc, revoke)
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rev, err := svc.Write(b.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "BENCH"},
				func(tx *catalog.Tx) error {
					privs := []catalog.Privilege{catalog.PrivUseConnection}
					if i%2 == 0 {
						return tx.Grant(privs, catalog.TypeConnection, c, []string{user})
					}
					return revoke(tx)
				})
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if err := waitRevision(b.Context(), e, revs, rev); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	})
}

// waitRevision waits until e answers at revision want or later.
func waitRevision(ctx context.Context, e *Engine, revs <-chan catalog.Revision, want catalog.Revision) error {
	for e.Revision() < want {
		select {
		case got := <-revs:
			if got >= want {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
