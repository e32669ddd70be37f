package enforce

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// TestSnapshotAgreesWithCheck is the property test of the engine: random
// catalogs (users, service principals, nested groups, an admin group
// sometimes, catalogs, schemas and connections, random owners including
// groups, grants of every privilege including ALL PRIVILEGES and MANAGE,
// then revokes, drops, renames and membership removals) and, for every
// (principal, privilege, securable) question (or a large sample), the
// snapshot must agree with catalog.Model.Check: the decision, each
// requirement's result and basis, and the deny reason word for word. The
// fast path (Allowed), the explained path (Decide) and the on-behalf-of
// rule are checked against Check too.
//
// Each catalog has its own seed; set ENFORCE_PROPERTY_SEED to replay one.
func TestSnapshotAgreesWithCheck(t *testing.T) {
	base := uint64(time.Now().UnixNano())
	iterations := 150
	if testing.Short() {
		iterations = 20
	}
	if v := os.Getenv("ENFORCE_PROPERTY_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("ENFORCE_PROPERTY_SEED: %v", err)
		}
		base, iterations = s, 1
	}
	questions := 0
	for it := 0; it < iterations; it++ {
		seed := base + uint64(it)
		questions += checkRandomCatalog(t, seed)
		if t.Failed() {
			t.Fatalf("replay with ENFORCE_PROPERTY_SEED=%d go test -run TestSnapshotAgreesWithCheck ./enforce/", seed)
		}
	}
	t.Logf("%d catalogs, %d questions", iterations, questions)
	if questions < iterations*100 {
		t.Fatalf("only %d questions asked", questions)
	}
}

// gen generates one random catalog.
type gen struct {
	r          *rand.Rand
	principals []*catalog.Principal // as of the last refresh
	securables []*catalog.Securable
}

func (g *gen) refresh(m *catalog.Model) {
	g.principals = m.Principals("")
	g.securables = allSecurables(m)
}

func allSecurables(m *catalog.Model) []*catalog.Securable {
	out := []*catalog.Securable{m.Metastore()}
	for i := 0; i < len(out); i++ {
		out = append(out, m.Children(out[i].ID)...)
	}
	return out
}

func (g *gen) principal() *catalog.Principal { return g.principals[g.r.IntN(len(g.principals))] }

func (g *gen) group(m *catalog.Model) *catalog.Principal {
	gs := m.Principals(catalog.KindGroup)
	return gs[g.r.IntN(len(gs))]
}

func (g *gen) securable() *catalog.Securable { return g.securables[g.r.IntN(len(g.securables))] }

// path returns the catalog path of s (nil for the metastore).
func path(m *catalog.Model, s *catalog.Securable) []string {
	var p []string
	for _, a := range m.Ancestors(s) {
		if a.Type != catalog.TypeMetastore {
			p = append([]string{a.Name}, p...)
		}
	}
	return p
}

func (g *gen) grantRandom(tx *catalog.Tx, revoke bool) {
	m := tx.Model()
	s := g.securable()
	ti, _ := catalog.LookupType(s.Type)
	priv := ti.Privileges[g.r.IntN(len(ti.Privileges))]
	p := g.principal()
	if _, ok := m.Principal(p.ID); !ok {
		return
	}
	if revoke {
		_ = tx.Revoke([]catalog.Privilege{priv}, s.Type, path(m, s), []string{p.Name})
		return
	}
	_ = tx.Grant([]catalog.Privilege{priv}, s.Type, path(m, s), []string{p.Name})
}

func (g *gen) pick(names ...string) string { return names[g.r.IntN(len(names))] }

// build creates the first version of the catalog.
func (g *gen) build(tx *catalog.Tx) error {
	r := g.r
	for i := range 1 + r.IntN(6) {
		if err := tx.CreatePrincipal(catalog.KindUser, g.pick("u", "User ")+strconv.Itoa(i), nil, false); err != nil {
			return err
		}
	}
	for i := range r.IntN(4) {
		if err := tx.CreatePrincipal(catalog.KindServicePrincipal, "agent"+strconv.Itoa(i), nil, false); err != nil {
			return err
		}
	}
	for i := range r.IntN(7) {
		if err := tx.CreatePrincipal(catalog.KindGroup, "g"+strconv.Itoa(i), nil, false); err != nil {
			return err
		}
	}
	m := tx.Model()
	g.refresh(m)
	for range r.IntN(4 * len(g.principals)) {
		grp, mem := g.group(m), g.principal()
		_ = tx.AddMember(grp.Name, mem.Kind, mem.Name) // cycles and "account users" are refused
	}
	for c := range 1 + r.IntN(3) {
		cat := g.pick("c", "C") + strconv.Itoa(c)
		if err := tx.CreateCatalog(cat, false, nil); err != nil {
			return err
		}
		for s := range r.IntN(3) {
			sch := "s" + strconv.Itoa(s)
			if err := tx.CreateSchema([]string{cat, sch}, false, nil); err != nil {
				return err
			}
			for x := range r.IntN(3) {
				if err := tx.CreateConnection([]string{cat, sch, "x" + strconv.Itoa(x)}, "MCP", [][2]string{{"url", "https://example.com/mcp"}}, false, nil); err != nil {
					return err
				}
			}
		}
	}
	for x := range r.IntN(3) {
		if err := tx.CreateConnection([]string{catalog.SystemCatalog, "ai", "t" + strconv.Itoa(x)}, "MCP", [][2]string{{"url", "https://example.com/mcp"}}, false, nil); err != nil {
			return err
		}
	}
	if r.IntN(2) == 0 {
		if err := tx.CreateSchema([]string{catalog.SystemCatalog, "extra"}, false, nil); err != nil {
			return err
		}
		if err := tx.CreateConnection([]string{catalog.SystemCatalog, "extra", "t0"}, "MCP", [][2]string{{"url", "https://example.com/mcp"}}, false, nil); err != nil {
			return err
		}
	}
	g.refresh(m)
	for _, s := range g.securables {
		if r.IntN(3) == 0 {
			if err := tx.SetOwner(s.Type, path(m, s), g.principal().Name); err != nil {
				return err
			}
		}
	}
	g.refresh(m)
	for range r.IntN(12 * len(g.securables)) {
		g.grantRandom(tx, false)
	}
	return nil
}

// mutate changes the catalog: revokes, grants, membership removals, a drop,
// a rename, a dropped principal.
func (g *gen) mutate(tx *catalog.Tx) error {
	r, m := g.r, tx.Model()
	g.refresh(m)
	for range r.IntN(3 * len(g.securables)) {
		g.grantRandom(tx, r.IntN(2) == 0)
	}
	for range r.IntN(4) {
		grp, mem := g.group(m), g.principal()
		if r.IntN(2) == 0 {
			_ = tx.RemoveMember(grp.Name, mem.Kind, mem.Name)
		} else {
			_ = tx.AddMember(grp.Name, mem.Kind, mem.Name)
		}
	}
	if s := g.securable(); r.IntN(3) == 0 && !s.Builtin {
		if err := tx.Drop(s.Type, path(m, s), false, true); err != nil {
			return err
		}
		g.refresh(m)
	}
	if s := g.securable(); r.IntN(3) == 0 && !s.Builtin && s.Type != catalog.TypeMetastore {
		if err := tx.Rename(s.Type, path(m, s), s.Name+"_r"); err != nil {
			return err
		}
		g.refresh(m)
	}
	if p := g.principal(); r.IntN(4) == 0 && !p.Builtin {
		_ = tx.DropPrincipal(p.Kind, p.Name, false) // refused while it owns something
	}
	for range r.IntN(2 * len(g.securables)) {
		g.grantRandom(tx, false)
	}
	return nil
}

// refs returns the names a securable answers to in the API.
func refs(m *catalog.Model, s *catalog.Securable) []SecurableRef {
	if s.Type == catalog.TypeMetastore {
		return []SecurableRef{{Type: s.Type}, {Type: s.Type, Name: "metastore"}}
	}
	p := path(m, s)
	out := []SecurableRef{{Type: s.Type, Name: strings.Join(p, ".")}}
	if f := s.FullName(); f != out[0].Name {
		out = append(out, SecurableRef{Type: s.Type, Name: f})
	}
	if len(p) > 1 && p[0] == catalog.SystemCatalog {
		out = append(out, SecurableRef{Type: s.Type, Name: strings.Join(p[1:], ".")})
		if len(p) == 3 && p[1] == "ai" {
			out = append(out, SecurableRef{Type: s.Type, Name: p[2]})
		}
	}
	return out
}

// checkRandomCatalog builds the catalog of seed and compares; it returns
// the number of questions asked.
func checkRandomCatalog(t *testing.T, seed uint64) int {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	admins := catalog.Principal{Name: "admins", Kind: catalog.KindGroup, Admin: r.IntN(3) == 0}
	svc := newService(t, admins)
	g := &gen{r: r}
	write(t, svc, g.build)
	n := compareAll(t, seed, svc, r)
	for range 1 + r.IntN(2) {
		write(t, svc, g.mutate)
		n += compareAll(t, seed, svc, r)
	}
	return n
}

type question struct {
	p    *catalog.Principal
	priv catalog.Privilege
	s    *catalog.Securable
}

func compareAll(t *testing.T, seed uint64, svc *catalog.Service, r *rand.Rand) int {
	t.Helper()
	asked := 0
	svc.Read(func(m *catalog.Model) {
		snap := Compile(m)
		if seed%2 == 0 { // a tiny memo: answers evict each other all the time
			snap.memo, snap.memoMask = make([]atomic.Uint64, 4), 3
		}
		if snap.Revision() != m.Revision() {
			t.Errorf("seed %d: snapshot revision %d, model %d", seed, snap.Revision(), m.Revision())
		}
		ps, ss, privs := m.Principals(""), allSecurables(m), catalog.KnownPrivileges()
		var qs []question
		if total := len(ps) * len(ss) * len(privs); total <= 4000 {
			for _, p := range ps {
				for _, s := range ss {
					for _, pr := range privs {
						qs = append(qs, question{p, pr, s})
					}
				}
			}
		} else {
			for range 4000 {
				qs = append(qs, question{ps[r.IntN(len(ps))], privs[r.IntN(len(privs))], ss[r.IntN(len(ss))]})
			}
		}
		for _, s := range ss {
			for _, ref := range refs(m, s) {
				if n := snap.resolve(ref); n < 0 || snap.info[n].full != s.FullName() {
					t.Errorf("seed %d: %s %q resolves to %d, want %s", seed, ref.Type, ref.Name, n, s.FullName())
				}
			}
		}
		for _, q := range qs {
			asked++
			compareOne(t, seed, m, snap, q, r.IntN(len(qs)) < 400)
			if t.Failed() {
				return
			}
		}
		// The on-behalf-of rule over random subject/actor pairs.
		sps := m.Principals(catalog.KindServicePrincipal)
		if len(sps) == 0 {
			return
		}
		for range 200 {
			sub, act := ps[r.IntN(len(ps))], sps[r.IntN(len(sps))]
			priv, s := privs[r.IntN(len(privs))], ss[r.IntN(len(ss))]
			ref := refs(m, s)[0]
			req := Request{Subject: sub.Name, Actor: act.Name, Privilege: priv, Securable: ref}
			want := sub.Kind != catalog.KindGroup && m.Check(sub.ID, priv, s.ID).Allowed && m.Check(act.ID, priv, s.ID).Allowed
			if got := snap.Allowed(req); got != want {
				t.Errorf("seed %d: Allowed(%+v) = %v, want %v", seed, req, got, want)
			}
			if d := snap.Decide(req); d.Allowed != want {
				t.Errorf("seed %d: Decide(%+v) = %v (%s), want %v", seed, req, d.Allowed, d.Reason, want)
			}
		}
	})
	return asked
}

// compareOne compares one question; explain also compares requirement by
// requirement and the reason.
func compareOne(t *testing.T, seed uint64, m *catalog.Model, snap *Snapshot, q question, explain bool) {
	t.Helper()
	d := m.Check(q.p.ID, q.priv, q.s.ID)
	ref := refs(m, q.s)[0]
	desc := func() string {
		return fmt.Sprintf("seed %d: %s holds %s on %s %s", seed, q.p, q.priv, q.s.Type, q.s.FullName())
	}
	if got := snap.Holds(q.p.Name, q.priv, ref); got != d.Allowed {
		t.Errorf("%s: snapshot %v, catalog %v (%s)", desc(), got, d.Allowed, d.Reason())
		return
	}
	if q.p.Kind != catalog.KindGroup {
		req := Request{Subject: q.p.Name, Privilege: q.priv, Securable: ref}
		for range 2 { // computed, then (usually) remembered
			if got := snap.Allowed(req); got != d.Allowed {
				t.Errorf("%s: Allowed %v, catalog %v", desc(), got, d.Allowed)
			}
		}
		if explain {
			full := req
			full.Explain = true
			got := snap.Decide(full)
			if got.Allowed != d.Allowed || len(got.Steps) != len(d.Reqs()) || got.Reason == "" {
				t.Errorf("%s: Decide %+v, catalog %v", desc(), got, d.Reason())
			}
			for range 2 { // the brief path, computed then remembered, says the same
				if brief := snap.Decide(req); brief.Allowed != got.Allowed || brief.Reason != got.Reason || brief.Steps != nil {
					t.Errorf("%s: brief Decide %+v, with steps %+v", desc(), brief, got)
				}
			}
		}
	}
	if !explain {
		return
	}
	p, _ := snap.index(q.p.Name)
	n := snap.resolve(ref)
	_, rs := snap.evaluate(p, privIndex(q.priv), n)
	want := d.Reqs()
	if len(rs) != len(want) {
		t.Errorf("%s: %d requirements, catalog %d", desc(), len(rs), len(want))
		return
	}
	for i := range rs {
		w := &want[i]
		if snap.info[rs[i].on].full != w.On.FullName() || privName(rs[i].priv) != w.Privilege {
			t.Errorf("%s: requirement %d is %s, catalog %s on %s", desc(), i, snap.what(&rs[i]), w.Privilege, w.On.FullName())
		}
		if basis(w.Basis) != rs[i].basis {
			t.Errorf("%s: requirement %d (%s) basis %d, catalog %d", desc(), i, snap.what(&rs[i]), rs[i].basis, w.Basis)
		}
		if w.Basis == catalog.BasisGrant && snap.info[rs[i].grantOn].full != w.GrantOn.FullName() {
			t.Errorf("%s: requirement %d granted on %s, catalog %s", desc(), i, snap.info[rs[i].grantOn].full, w.GrantOn.FullName())
		}
	}
	if !d.Allowed && !d.Admin {
		for _, steps := range []bool{true, false} {
			got := strings.TrimPrefix(snap.explain(p, roleSubject, privIndex(q.priv), n, steps).reason, roleSubject+" ")
			if got != d.Reason() {
				t.Errorf("%s: reason %q (steps %v), catalog %q", desc(), got, steps, d.Reason())
			}
		}
	}
}
