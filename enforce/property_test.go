package enforce

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/catalogtest"
)

// TestSnapshotAgreesWithReference is the property test of the engine's
// side: random catalogs (catalogtest.Random) and, for a large sample of
// (subject, actor, privilege, securable) questions asked by every name the
// securable answers to in the API, the snapshot's fast path (Allowed, with
// its memo, also a tiny one whose answers evict each other) and its
// explained path (Decide, brief and with steps) must agree with the naive
// reference (catalogtest.Reference) under the on-behalf-of rule, and the
// deny reasons must name the reference's first missing requirement. (The
// evaluator itself is held to the reference requirement by requirement in
// catalog's TestEvaluatorAgreesWithReference.)
//
// Each catalog has its own seed; set ENFORCE_PROPERTY_SEED to replay one.
func TestSnapshotAgreesWithReference(t *testing.T) {
	catalogtest.Property{Env: "ENFORCE_PROPERTY_SEED", Package: "./enforce/", Iterations: 40, Short: 10, Check: checkRandomCatalog}.Run(t)
}

// refs returns the names a securable answers to in the API.
func refs(m *catalog.Model, s *catalog.Securable) []SecurableRef {
	if s.Type == catalog.TypeMetastore {
		return []SecurableRef{{Type: s.Type}, {Type: s.Type, Name: "metastore"}}
	}
	p := catalogtest.Path(m, s)
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

func checkRandomCatalog(t *testing.T, seed uint64) int {
	t.Helper()
	r := catalogtest.Rand(seed)
	admins := catalog.Principal{Name: "admins", Kind: catalog.KindGroup, Admin: r.IntN(3) == 0}
	svc := newService(t, admins)
	g := &catalogtest.Random{R: r}
	write(t, svc, g.Build)
	n := compareAll(t, seed, svc, r)
	for range 1 + r.IntN(2) {
		write(t, svc, g.Mutate)
		n += compareAll(t, seed, svc, r)
	}
	return n
}

func compareAll(t *testing.T, seed uint64, svc *catalog.Service, r *rand.Rand) int {
	t.Helper()
	asked := 0
	svc.Read(func(m *catalog.Model) {
		snap := Compile(m)
		if seed%2 == 0 { // a tiny memo: answers evict each other all the time
			snap.memo = newMemo(4)
		}
		if snap.Revision() != m.Revision() {
			t.Errorf("seed %d: snapshot revision %d, model %d", seed, snap.Revision(), m.Revision())
		}
		ref := catalogtest.Reference{M: m}
		ps, ss, privs := m.Principals(""), catalogtest.AllSecurables(m), catalog.KnownPrivileges()
		for _, s := range ss {
			for _, rf := range refs(m, s) {
				if n, res := snap.cs.Resolve(rf.Type, rf.Name); res != catalog.Resolved || n != s.ID {
					t.Errorf("seed %d: %s %q resolves to %d (%d), want %s", seed, rf.Type, rf.Name, n, res, s.FullName())
				}
			}
		}
		for range 600 {
			sub, priv, s := ps[r.IntN(len(ps))], privs[r.IntN(len(privs))], ss[r.IntN(len(ss))]
			var act *catalog.Principal
			if r.IntN(2) == 0 {
				act = ps[r.IntN(len(ps))]
			}
			rfs := refs(m, s)
			req := Request{Subject: sub.Name, Privilege: priv, Securable: rfs[r.IntN(len(rfs))]}
			subOK, subReqs := ref.Check(sub.ID, priv, s)
			want := sub.Kind != catalog.KindGroup && subOK
			var actOK bool
			var actReqs []catalogtest.Req
			if act != nil {
				req.Actor = act.Name
				actOK, actReqs = ref.Check(act.ID, priv, s)
				want = want && act.Kind == catalog.KindServicePrincipal && actOK
			}
			asked++
			desc := func() string { return fmt.Sprintf("seed %d: %+v", seed, req) }
			for range 2 { // computed, then (usually) remembered
				if got := snap.Allowed(req); got != want {
					t.Errorf("%s: Allowed %v, reference %v", desc(), got, want)
				}
			}
			brief := snap.Decide(req)
			full := req
			full.Explain = true
			d := snap.Decide(full)
			if d.Allowed != want || brief.Allowed != want || brief.Reason != d.Reason || brief.Steps != nil || len(d.Steps) == 0 {
				t.Errorf("%s: Decide %+v, brief %+v, reference %v", desc(), d, brief, want)
			}
			if sub.Kind != catalog.KindGroup && !subOK && !ref.Admin(sub.ID) {
				if w := "subject " + ref.DenyReason(sub, subReqs); !strings.HasPrefix(d.Reason, w) {
					t.Errorf("%s: reason %q, want it to start with %q", desc(), d.Reason, w)
				}
			}
			if act != nil && act.Kind == catalog.KindServicePrincipal && !actOK && !ref.Admin(act.ID) {
				if w := "; actor " + ref.DenyReason(act, actReqs); !strings.HasSuffix(d.Reason, w) {
					t.Errorf("%s: reason %q, want it to end with %q", desc(), d.Reason, w)
				}
			}
			if t.Failed() {
				return
			}
		}
	})
	return asked
}
