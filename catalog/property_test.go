package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/catalogtest"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// TestEvaluatorAgreesWithReference is the property test of the privilege
// evaluator: random catalogs (catalogtest.Random) and, for every
// (principal, privilege, securable) question or a large sample, the
// evaluator must agree with the naive reference (catalogtest.Reference)
// on the decision, each requirement (privilege, securable, met, basis,
// where the grant sits, which privilege was granted, a closest holder and
// its path) and the deny reason word for word; also CanManage, CanSee and
// the on-behalf-of rule (Access). It asks on the live Model (Check,
// memoized and not; Holds), on a Snapshot of it, and inside a statement
// being planned (the Model with the statement's own uncommitted changes,
// which the evaluator must see), and it re-asks an older Snapshot after the
// catalog changed: its answers must not move (copy on write).
//
// Each catalog has its own seed; set CATALOG_PROPERTY_SEED to replay one.
func TestEvaluatorAgreesWithReference(t *testing.T) {
	catalogtest.Property{Env: "CATALOG_PROPERTY_SEED", Package: "./catalog/", Iterations: 40, Short: 20, Check: checkRandomCatalog}.Run(t)
}

// serviceWithAdmins opens a catalog whose store holds, before the first
// start, a group "admins" (an admin group when admin is set: no statement
// can create one).
func serviceWithAdmins(t *testing.T, admin bool) *catalog.Service {
	t.Helper()
	ctx := context.Background()
	st := memstore.New()
	err := st.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		if err := tx.PutPrincipal(ctx, catalog.Principal{ID: 1, Name: "admins", Kind: catalog.KindGroup, Admin: admin}); err != nil {
			return err
		}
		return tx.SetMeta(ctx, catalog.Meta{NextID: 2})
	})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := catalog.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := catalog.Open(ctx, catalog.Options{Store: st, Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

type question struct {
	p    *catalog.Principal
	priv catalog.Privilege
	s    *catalog.Securable
}

// questions returns every question of m, or n random ones when there are
// more.
func questions(m *catalog.Model, r *rand.Rand, n int) []question {
	ps, ss, privs := m.Principals(""), catalogtest.AllSecurables(m), catalog.KnownPrivileges()
	var qs []question
	if len(ps)*len(ss)*len(privs) <= n {
		for _, p := range ps {
			for _, s := range ss {
				for _, pr := range privs {
					qs = append(qs, question{p, pr, s})
				}
			}
		}
		return qs
	}
	for range n {
		qs = append(qs, question{ps[r.IntN(len(ps))], privs[r.IntN(len(privs))], ss[r.IntN(len(ss))]})
	}
	return qs
}

func checkRandomCatalog(t *testing.T, seed uint64) int {
	t.Helper()
	r := catalogtest.Rand(seed)
	svc := serviceWithAdmins(t, r.IntN(3) == 0)
	g := &catalogtest.Random{R: r}
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}
	if _, err := svc.Write(t.Context(), admin, g.Build); err != nil {
		t.Fatalf("seed %d: build: %v", seed, err)
	}
	asked := 0
	for round := range 3 {
		var (
			old     *catalog.Snapshot
			answers map[question]bool
		)
		svc.Read(func(m *catalog.Model) {
			asked += compareModel(t, seed, m, r, true)
			old = m.Snapshot()
			answers = map[question]bool{}
			for _, q := range questions(m, r, 500) {
				answers[q] = old.Holds(q.p.ID, catalog.PrivilegeIndex(q.priv), q.s.ID)
			}
		})
		if round == 2 || t.Failed() {
			break
		}
		// Inside the statement: the evaluator sees its uncommitted changes.
		_, err := svc.Write(t.Context(), admin, func(tx *catalog.Tx) error {
			if err := g.Mutate(tx); err != nil {
				return err
			}
			asked += compareModel(t, seed, tx.Model(), r, false)
			return nil
		})
		if err != nil {
			t.Fatalf("seed %d: mutate: %v", seed, err)
		}
		// A statement that fails changes nothing.
		errUndo := errors.New("undo")
		if _, err := svc.Write(t.Context(), admin, func(tx *catalog.Tx) error {
			_ = g.Mutate(tx)
			return errUndo
		}); !errors.Is(err, errUndo) {
			t.Fatalf("seed %d: the failing statement: %v", seed, err)
		}
		for q, want := range answers {
			if got := old.Holds(q.p.ID, catalog.PrivilegeIndex(q.priv), q.s.ID); got != want {
				t.Fatalf("seed %d: an older snapshot changed its answer for %s %s on %s: %v, was %v", seed, q.p, q.priv, q.s.FullName(), got, want)
			}
		}
	}
	return asked
}

// compareModel compares the evaluator with the reference on m (and on a
// snapshot of m when snap is set); it returns the questions asked.
func compareModel(t *testing.T, seed uint64, m *catalog.Model, r *rand.Rand, snap bool) int {
	t.Helper()
	ref := catalogtest.Reference{M: m}
	var s *catalog.Snapshot
	if snap {
		s = m.Snapshot()
		if seed%2 == 0 { // the transitive groups in bulk; otherwise each on first use
			s.Warm()
		}
		if s.Revision() != m.Revision() {
			t.Errorf("seed %d: snapshot revision %d, model %d", seed, s.Revision(), m.Revision())
		}
	}
	qs := questions(m, r, 1000)
	for _, q := range qs {
		desc := func() string {
			return fmt.Sprintf("seed %d: %s holds %s on %s %s", seed, q.p, q.priv, q.s.Type, q.s.FullName())
		}
		want, reqs := ref.Check(q.p.ID, q.priv, q.s)
		d := m.Check(q.p.ID, q.priv, q.s.ID)
		compareDecision(t, desc, m, ref, q, &d, want, reqs)
		if got := m.Holds(q.p.ID, q.priv, q.s.ID); got != want {
			t.Errorf("%s: Holds %v, reference %v", desc(), got, want)
		}
		if s != nil {
			d := s.Check(q.p.ID, q.priv, q.s.ID)
			compareDecision(t, func() string { return desc() + " (snapshot)" }, m, ref, q, &d, want, reqs)
			if got := s.Holds(q.p.ID, catalog.PrivilegeIndex(q.priv), q.s.ID); got != want {
				t.Errorf("%s: snapshot Holds %v, reference %v", desc(), got, want)
			}
		}
		if t.Failed() {
			return len(qs)
		}
	}
	ps, ss := m.Principals(""), catalogtest.AllSecurables(m)
	for range 300 {
		p, sec := ps[r.IntN(len(ps))], ss[r.IntN(len(ss))]
		if got, _ := m.CanManage(p.ID, sec.ID); got != ref.CanManage(p.ID, sec) {
			t.Errorf("seed %d: CanManage(%s, %s) = %v, reference %v", seed, p, sec.FullName(), got, !got)
		}
		if got := m.CanSee(p.ID, sec.ID); got != ref.CanSee(p.ID, sec) {
			t.Errorf("seed %d: CanSee(%s, %s) = %v, reference %v", seed, p, sec.FullName(), got, !got)
		}
	}
	// The on-behalf-of rule over random subject/actor pairs.
	privs := catalog.KnownPrivileges()
	for range 100 {
		sub, act := ps[r.IntN(len(ps))], ps[r.IntN(len(ps))]
		priv, sec := privs[r.IntN(len(privs))], ss[r.IntN(len(ss))]
		subOK, _ := ref.Check(sub.ID, priv, sec)
		actOK, _ := ref.Check(act.ID, priv, sec)
		want := sub.Kind != catalog.KindGroup && subOK && act.Kind == catalog.KindServicePrincipal && actOK
		d := m.Access(sub.Name, act.Name, priv, sec.ID, true)
		if d.Allowed != want || d.Reason == "" || len(d.Steps) == 0 {
			t.Errorf("seed %d: Access(%s via %s, %s on %s) = %+v, want allowed=%v", seed, sub, act, priv, sec.FullName(), d, want)
		}
		if s != nil {
			sp := s.AccessPart(sub.Name, catalog.RoleSubject, catalog.PrivilegeIndex(priv), sec.ID, false)
			ap := s.AccessPart(act.Name, catalog.RoleActor, catalog.PrivilegeIndex(priv), sec.ID, false)
			if j := catalog.JoinAccess(sp, &ap); j.Allowed != d.Allowed || j.Reason != d.Reason || j.Brief != d.Brief {
				t.Errorf("seed %d: snapshot access %+v, model %+v", seed, j, d)
			}
		}
	}
	return len(qs)
}

func compareDecision(t *testing.T, desc func() string, m *catalog.Model, ref catalogtest.Reference, q question,
	d *catalog.Decision, want bool, reqs []catalogtest.Req) {
	t.Helper()
	if d.Allowed != want {
		t.Errorf("%s: evaluator %v (%s), reference %v", desc(), d.Allowed, d.Reason(), want)
		return
	}
	got := d.Reqs()
	if len(got) != len(reqs) {
		t.Errorf("%s: %d requirements, reference %d", desc(), len(got), len(reqs))
		return
	}
	for i := range got {
		g, w := &got[i], &reqs[i]
		if g.Privilege != w.Privilege || g.On.ID != w.On.ID || g.Met != w.Met || g.Basis != w.Basis {
			t.Errorf("%s: requirement %d is %s on %s met=%v basis=%d (%s); reference %s on %s met=%v basis=%d",
				desc(), i, g.Privilege, g.On.FullName(), g.Met, g.Basis, d.Explain(g), w.Privilege, w.On.FullName(), w.Met, w.Basis)
			continue
		}
		if !g.Met || g.Basis == catalog.BasisAdmin {
			continue
		}
		if h := d.Holder(g); h == nil || !w.Holders[h.ID] {
			t.Errorf("%s: requirement %d (%s) held by %v, reference one of %v on %s as %s", desc(), i, d.Explain(g), h, w.Holders, w.GrantOn.FullName(), w.GrantPriv)
			continue
		}
		if g.Basis == catalog.BasisGrant && (g.GrantOn.ID != w.GrantOn.ID || g.GrantPriv != w.GrantPriv) {
			t.Errorf("%s: requirement %d granted as %s on %s, reference %s on %s", desc(), i, g.GrantPriv, g.GrantOn.FullName(), w.GrantPriv, w.GrantOn.FullName())
		}
		// The path is a chain of direct memberships from the principal to the holder.
		path := d.Path(g)
		if len(path) == 0 {
			path = []string{q.p.Name}
		}
		if len(path) != w.Distance+1 || path[0] != q.p.Name || path[len(path)-1] != d.Holder(g).Name {
			t.Errorf("%s: requirement %d path %q, reference distance %d", desc(), i, path, w.Distance)
		}
		for k := 1; k < len(path); k++ {
			a, _ := m.PrincipalByName(path[k-1])
			b, _ := m.PrincipalByName(path[k])
			if !m.IsMember(b.ID, a.ID) && !(b.Name == catalog.AccountUsers && a.Kind != catalog.KindGroup) {
				t.Errorf("%s: requirement %d path %q: %s is not a member of %s", desc(), i, path, a.Name, b.Name)
			}
		}
	}
	if !want && !d.Admin {
		if r := ref.DenyReason(q.p, reqs); d.Reason() != r {
			t.Errorf("%s: reason %q, reference %q", desc(), d.Reason(), r)
		}
	}
}

// TestSnapshotsWhileWriting takes snapshots and evaluates on them outside
// the catalog's lock while statements change the catalog (run with -race:
// a record a snapshot shares must never be written), and checks every
// snapshot keeps the answers it gave first.
func TestSnapshotsWhileWriting(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	svc := serviceWithAdmins(t, false)
	g := &catalogtest.Random{R: r}
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}
	if _, err := svc.Write(t.Context(), admin, g.Build); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for w := range 3 {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				var s *catalog.Snapshot
				var ps []*catalog.Principal
				var ss []*catalog.Securable
				svc.Read(func(m *catalog.Model) {
					s, ps, ss = m.Snapshot(), m.Principals(""), catalogtest.AllSecurables(m)
				})
				first := make([]bool, 0, len(ps)*len(ss))
				for round := range 2 {
					k := 0
					for _, p := range ps {
						for _, sec := range ss {
							pi := (i + k + w) % len(catalog.KnownPrivileges())
							got := s.Holds(p.ID, pi, sec.ID)
							if round == 0 {
								first = append(first, got)
								d := s.Check(p.ID, catalog.PrivilegeAt(pi), sec.ID)
								_ = d.Reason()
							} else if got != first[k] {
								errs <- fmt.Errorf("snapshot at %d changed its answer for %s on %s", s.Revision(), p, sec.FullName())
								return
							}
							k++
						}
					}
				}
			}
		}()
	}
	for range 30 {
		if _, err := svc.Write(t.Context(), admin, g.Mutate); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
