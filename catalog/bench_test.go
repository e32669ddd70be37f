package catalog_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/catalogtest"
)

// BenchmarkCheck measures the privilege function on the large catalog
// (10,000 users, 1,000 groups nested 5 deep, 100,000 grants): a random user,
// USE_CONNECTION, a random connection. It reports p50/p99 latencies.
func BenchmarkCheck(b *testing.B) {
	svc := newService(b)
	built, err := catalogtest.Build(b.Context(), svc, catalogtest.Large)
	if err != nil {
		b.Fatal(err)
	}
	type q struct{ p, s catalog.ID }
	var qs []q
	svc.Read(func(m *catalog.Model) {
		r := rand.New(rand.NewPCG(7, 8))
		for i := 0; i < 4096; i++ {
			u, _ := m.PrincipalByName(built.Users[r.IntN(len(built.Users))])
			c, err := m.Lookup(catalog.TypeConnection, built.Connections[r.IntN(len(built.Connections))])
			if err != nil {
				b.Fatal(err)
			}
			qs = append(qs, q{u.ID, c.ID})
		}
		for _, x := range qs { // warm the membership closures and the cache
			m.Check(x.p, catalog.PrivUseConnection, x.s)
		}
	})
	for _, mode := range []struct {
		name  string
		cache bool
	}{{"cached", true}, {"uncached", false}} {
		b.Run(mode.name, func(b *testing.B) {
			allowed := 0
			lat := make([]time.Duration, 0, b.N)
			svc.Read(func(m *catalog.Model) { m.SetCheckCache(mode.cache) })
			defer svc.Read(func(m *catalog.Model) { m.SetCheckCache(true) })
			b.ResetTimer()
			svc.Read(func(m *catalog.Model) {
				for i := 0; i < b.N; i++ {
					x := qs[i%len(qs)]
					t0 := time.Now()
					d := m.Check(x.p, catalog.PrivUseConnection, x.s)
					lat = append(lat, time.Since(t0))
					if d.Allowed {
						allowed++
					}
				}
			})
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(float64(allowed)/float64(b.N), "allowed-ratio")
		})
	}
}
