package catalog_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/catalogtest"
	"github.com/mandatehq/mandate/catalog/memstore"
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

// BenchmarkSnapshot measures taking a Snapshot of the large catalog after
// one change, as the decision engine does after every commit (the change
// itself is not timed): the catalog's read lock is held for Model.Snapshot
// (copying the slices of records; rebuilding the name indexes when a
// securable or principal changed), then Warm computes the transitive
// groups a membership change invalidated, outside the lock.
func BenchmarkSnapshot(b *testing.B) {
	svc := newService(b)
	built, err := catalogtest.Build(b.Context(), svc, catalogtest.Large)
	if err != nil {
		b.Fatal(err)
	}
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "BENCH"}
	write := func(fn func(tx *catalog.Tx) error) {
		if _, err := svc.Write(b.Context(), admin, fn); err != nil {
			b.Fatal(err)
		}
	}
	user, conn := built.Users[0], built.Connections[0]
	privs := []catalog.Privilege{catalog.PrivUseConnection}
	created := 0
	for _, c := range []struct {
		name   string
		change func(i int) func(tx *catalog.Tx) error
	}{
		{"after-grant", func(i int) func(tx *catalog.Tx) error {
			return func(tx *catalog.Tx) error {
				if i%2 == 0 {
					return tx.Grant(privs, catalog.TypeConnection, conn, []string{user})
				}
				return tx.Revoke(privs, catalog.TypeConnection, conn, []string{user})
			}
		}},
		{"after-membership", func(i int) func(tx *catalog.Tx) error {
			return func(tx *catalog.Tx) error {
				if i%2 == 0 {
					return tx.AddMember(built.Groups[len(built.Groups)-1], catalog.KindUser, user)
				}
				return tx.RemoveMember(built.Groups[len(built.Groups)-1], catalog.KindUser, user)
			}
		}},
		{"after-new-connection", func(int) func(tx *catalog.Tx) error {
			return func(tx *catalog.Tx) error {
				created++
				return tx.CreateConnection([]string{conn[0], conn[1], fmt.Sprintf("bench%d", created)}, "MCP", [][2]string{{"url", "https://example.com/mcp"}}, false, nil)
			}
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var locked time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				write(c.change(i))
				b.StartTimer()
				t0 := time.Now()
				var s *catalog.Snapshot
				svc.Read(func(m *catalog.Model) { s = m.Snapshot() })
				locked += time.Since(t0)
				s.Warm()
			}
			b.ReportMetric(float64(locked.Microseconds())/float64(b.N), "µs-under-lock")
		})
	}
}

// BenchmarkGrantWrites measures GRANT and REVOKE statements on the large
// catalog through Service.Write (planning with its privilege checks,
// memstore commit), one statement per write, by the admin and by a user
// who owns the catalog (whose right to grant is evaluated).
func BenchmarkGrantWrites(b *testing.B) {
	svc := newService(b)
	built, err := catalogtest.Build(b.Context(), svc, catalogtest.Large)
	if err != nil {
		b.Fatal(err)
	}
	const owner = "bench-owner@example.com"
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "BENCH"}
	if _, err := svc.Write(b.Context(), admin, func(tx *catalog.Tx) error {
		if err := tx.CreatePrincipal(catalog.KindUser, owner, nil, false); err != nil {
			return err
		}
		return tx.SetOwner(catalog.TypeCatalog, built.Connections[0][:1], owner)
	}); err != nil {
		b.Fatal(err)
	}
	privs := []catalog.Privilege{catalog.PrivUseConnection}
	for _, caller := range []string{catalog.AdminUser, owner} {
		b.Run(strings.SplitN(caller, "@", 2)[0], func(b *testing.B) {
			req := catalog.WriteRequest{Caller: catalog.Caller{Principal: caller}, Action: "BENCH"}
			r := rand.New(rand.NewPCG(3, 4))
			for i := 0; i < b.N; i++ {
				conn := built.Connections[r.IntN(len(built.Connections)/10)] // the owner's catalog
				user := built.Users[r.IntN(len(built.Users))]
				_, err := svc.Write(b.Context(), req, func(tx *catalog.Tx) error {
					if i%2 == 0 {
						return tx.Grant(privs, catalog.TypeConnection, conn, []string{user})
					}
					return tx.Revoke(privs, catalog.TypeConnection, conn, []string{user})
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkModelMemory reports what the large catalog costs a replica:
// the size of its snapshot as the stores write it (snapshot-MB, the JSON
// of the State), the Go heap of the Model built from it (model-MB, after a
// GC, with nothing else of the catalog alive; the enforce engine's
// compiled snapshot not included), and the time to decode the snapshot
// and build the Model (the loop: a replica's start, without the I/O).
func BenchmarkModelMemory(b *testing.B) {
	body := func() []byte {
		kr, err := catalog.NewKeyring(make([]byte, 32))
		if err != nil {
			b.Fatal(err)
		}
		svc, err := catalog.Open(b.Context(), catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: "x"})
		if err != nil {
			b.Fatal(err)
		}
		defer svc.Close()
		if _, err := catalogtest.Build(b.Context(), svc, catalogtest.Large); err != nil {
			b.Fatal(err)
		}
		var st *catalog.State
		svc.Read(func(m *catalog.Model) { st = m.State() })
		body, err := json.Marshal(st.Normalized())
		if err != nil {
			b.Fatal(err)
		}
		return body
	}()
	load := func() *catalog.Model {
		var st catalog.State
		if err := json.Unmarshal(body, &st); err != nil {
			b.Fatal(err)
		}
		m, err := catalog.ModelOf(&st)
		if err != nil {
			b.Fatal(err)
		}
		return m
	}
	for b.Loop() {
		load()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := load()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(m)
	b.ReportMetric(float64(len(body))/(1<<20), "snapshot-MB")
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "model-MB")
}
