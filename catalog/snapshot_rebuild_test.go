package catalog_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/catalogtest"
)

// TestSnapshotAgreesWithRebuild: the snapshot a Model keeps up to date
// change by change (records and table pages copied on write, name indexes
// and closures carried over from the previous snapshot) answers exactly as
// one rebuilt from scratch (a Model loaded from the catalog's state), over
// random sequences of GRANT, REVOKE, memberships, CREATE, DROP and RENAME
// on a catalog of several hundred principals and securables (several
// pages of the tables); and an older snapshot keeps its answers after the
// changes that followed it.
func TestSnapshotAgreesWithRebuild(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	svc := serviceWithAdmins(t, false)
	g := &catalogtest.Random{R: r}
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}
	write := func(fn func(tx *catalog.Tx) error) {
		t.Helper()
		if _, err := svc.Write(t.Context(), admin, fn); err != nil {
			t.Fatal(err)
		}
	}
	write(g.Build)
	// Spread principals and securables over several pages (IDs past 256).
	write(func(tx *catalog.Tx) error {
		for i := range 300 {
			var err error
			switch i % 3 {
			case 0:
				err = tx.CreateConnection([]string{"system", "ai", fmt.Sprintf("pages_c%d", i)}, "MCP",
					[][2]string{{"url", "https://example.com/mcp"}}, false, nil)
			case 1:
				err = tx.CreatePrincipal(catalog.KindGroup, fmt.Sprintf("pages-p%d", i), nil, false)
			default:
				err = tx.CreatePrincipal(catalog.KindUser, fmt.Sprintf("pages-p%d", i), nil, false)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	privs := catalog.KnownPrivileges()
	type answers struct {
		s   *catalog.Snapshot
		qs  []question
		got []string
	}
	ask := func(s *catalog.Snapshot, qs []question) []string {
		out := make([]string, len(qs))
		for i, q := range qs {
			pi := catalog.PrivilegeIndex(q.priv)
			d := s.Check(q.p.ID, q.priv, q.s.ID)
			out[i] = fmt.Sprintf("%v %v %s", s.Holds(q.p.ID, pi, q.s.ID), d.Allowed, d.Reason())
		}
		return out
	}
	var prev *answers
	for round := range 12 {
		// A few statements per revision, and several revisions per
		// snapshot now and then (a follower applies batches).
		for range 1 + r.IntN(3) {
			write(func(tx *catalog.Tx) error {
				m := tx.Model()
				ps, ss := m.Principals(""), catalogtest.AllSecurables(m)
				for range 1 + r.IntN(6) {
					p, s := ps[r.IntN(len(ps))], ss[r.IntN(len(ss))]
					priv := []catalog.Privilege{privs[r.IntN(len(privs))]}
					if r.IntN(2) == 0 {
						_ = tx.Grant(priv, s.Type, catalogtest.Path(m, s), []string{p.Name})
					} else {
						_ = tx.Revoke(priv, s.Type, catalogtest.Path(m, s), []string{p.Name})
					}
				}
				return nil
			})
			write(g.Mutate)
		}
		var inc, full *catalog.Snapshot
		var qs []question
		var names []string
		var ps []*catalog.Principal
		svc.Read(func(m *catalog.Model) {
			inc = m.Snapshot()
			rebuilt, err := catalog.ModelOf(m.State())
			if err != nil {
				t.Fatal(err)
			}
			full = rebuilt.Snapshot()
			qs = questions(m, r, 3000)
			ps = m.Principals("")
			for _, s := range catalogtest.AllSecurables(m) {
				names = append(names, string(s.Type)+" "+s.FullName())
			}
		})
		if inc.Revision() != full.Revision() {
			t.Fatalf("revisions %d and %d", inc.Revision(), full.Revision())
		}
		if round%2 == 0 {
			inc.Warm() // and lazily on the odd rounds
		}
		a, b := ask(inc, qs), ask(full, qs)
		for i := range qs {
			if a[i] != b[i] {
				t.Fatalf("round %d: %s %s on %s: kept up to date %q, rebuilt %q", round, qs[i].p.Name, qs[i].priv, qs[i].s.FullName(), a[i], b[i])
			}
		}
		for _, p := range ps {
			id1, k1, ok1 := inc.PrincipalByName(p.Name)
			id2, k2, ok2 := full.PrincipalByName(p.Name)
			g1, g2 := fmt.Sprint(inc.Groups(p.ID)), fmt.Sprint(full.Groups(p.ID))
			if id1 != id2 || k1 != k2 || ok1 != ok2 || g1 != g2 {
				t.Fatalf("round %d: principal %s: %d %s %v %s against %d %s %v %s", round, p.Name, id1, k1, ok1, g1, id2, k2, ok2, g2)
			}
		}
		for _, n := range names {
			var typ, name string
			fmt.Sscanf(n, "%s", &typ)
			name = n[len(typ)+1:]
			id1, r1 := inc.Resolve(catalog.SecurableType(typ), name)
			id2, r2 := full.Resolve(catalog.SecurableType(typ), name)
			if id1 != id2 || r1 != r2 {
				t.Fatalf("round %d: %s resolves to %d %v, rebuilt %d %v", round, n, id1, r1, id2, r2)
			}
		}
		if inc.MaxID() != full.MaxID() || len(inc.Policies()) != len(full.Policies()) {
			t.Fatalf("round %d: max ID %d/%d, policies %d/%d", round, inc.MaxID(), full.MaxID(), len(inc.Policies()), len(full.Policies()))
		}
		if prev != nil {
			if again := ask(prev.s, prev.qs); fmt.Sprint(again) != fmt.Sprint(prev.got) {
				t.Fatalf("round %d: the snapshot at %d changed its answers after later changes", round, prev.s.Revision())
			}
		}
		prev = &answers{s: inc, qs: qs, got: a}
	}
}

// TestWarmAfterChanges: Warm computes the transitive groups of every
// principal, also of one created after the previous snapshot was warmed
// (Warm skips its scan when no principal was added since: the table of
// closures remembers how far it is warm), and after a GRANT it has
// nothing to compute.
func TestWarmAfterChanges(t *testing.T) {
	svc := serviceWithAdmins(t, false)
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}
	write := func(fn func(tx *catalog.Tx) error) *catalog.Snapshot {
		t.Helper()
		if _, err := svc.Write(t.Context(), admin, fn); err != nil {
			t.Fatal(err)
		}
		var s *catalog.Snapshot
		svc.Read(func(m *catalog.Model) { s = m.Snapshot() })
		s.Warm()
		return s
	}
	all := func(s *catalog.Snapshot) {
		t.Helper()
		svc.Read(func(m *catalog.Model) {
			for _, p := range m.Principals("") {
				if !s.ClosureKnown(p.ID) {
					t.Fatalf("at %d: the groups of %s are not computed", s.Revision(), p.Name)
				}
			}
		})
	}
	all(write(func(tx *catalog.Tx) error {
		for i := range 5 {
			if err := tx.CreatePrincipal(catalog.KindUser, fmt.Sprintf("warm-u%d", i), nil, false); err != nil {
				return err
			}
		}
		return tx.CreatePrincipal(catalog.KindGroup, "warm-g", nil, false)
	}))
	// A follower applies other replicas' records: principals added to the
	// same table of closures as the last warm snapshot's.
	var st *catalog.State
	svc.Read(func(m *catalog.Model) { st = m.State() })
	m, err := catalog.ModelOf(st)
	if err != nil {
		t.Fatal(err)
	}
	m.Snapshot().Warm()
	for i := range 3 {
		id := m.NextID()
		c := catalog.Change{Revision: m.Revision() + 1, NextID: id + 1, Ops: []catalog.ChangeOp{{Kind: catalog.OpPutPrincipal,
			Principal: &catalog.Principal{ID: id, Name: fmt.Sprintf("warm-f%d", i), Kind: catalog.KindUser}}}}
		if err := m.ApplyChange(&c); err != nil {
			t.Fatal(err)
		}
		s := m.Snapshot()
		s.Warm()
		if !s.ClosureKnown(id) {
			t.Fatalf("the groups of a principal applied after the last warm snapshot are not computed")
		}
	}
	for i := range 5 { // each a principal more
		all(write(func(tx *catalog.Tx) error {
			return tx.CreatePrincipal(catalog.KindServicePrincipal, fmt.Sprintf("warm-sp%d", i), nil, false)
		}))
		all(write(func(tx *catalog.Tx) error {
			return tx.Grant([]catalog.Privilege{catalog.PrivUseCatalog}, catalog.TypeCatalog, []string{"system"}, []string{fmt.Sprintf("warm-sp%d", i)})
		}))
	}
}
