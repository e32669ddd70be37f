package enforce

import (
	"fmt"
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// The explanation path: it recomputes a decision requirement by requirement
// from the snapshot's immutable copies (names, direct memberships, raw grant
// bitsets) and renders it with the wording of catalog.Decision.Reason. It
// allocates; the allow path (Snapshot.Allowed) does not come here.

// closure is a principal's transitive groups with the path to each,
// breadth first (shortest paths), groups in name order.
type closure struct {
	entries []int32 // principal indexes; entries[0] is the root
	parent  []int32 // entry each one was reached from; -1 for the root
}

func (s *Snapshot) closure(p int32) *closure {
	c := &closure{entries: make([]int32, 1, 64), parent: make([]int32, 1, 64)}
	c.entries[0], c.parent[0] = p, -1
	seen := make([]uint64, s.words) // groups by group bit
	if b := s.princ[p].gbit; b >= 0 {
		seen[b>>6] |= 1 << (uint(b) & 63)
	}
	add := func(g, from int32) {
		if b := s.princ[g].gbit; !hasBit(seen, b) {
			seen[b>>6] |= 1 << (uint(b) & 63)
			c.entries = append(c.entries, g)
			c.parent = append(c.parent, from)
		}
	}
	for i := 0; i < len(c.entries); i++ {
		for _, g := range s.memberGroups(c.entries[i]) {
			add(g, int32(i))
		}
	}
	if s.princ[p].kind != kindGroup && s.acctUsrs >= 0 {
		add(s.acctUsrs, 0)
	}
	return c
}

// find returns the entry of principal q, or -1.
func (c *closure) find(q int32) int32 {
	for i, e := range c.entries {
		if e == q {
			return int32(i)
		}
	}
	return -1
}

// path renders the names from the root to entry i, or "" for the root.
func (s *Snapshot) path(c *closure, i int32) string {
	if i <= 0 {
		return ""
	}
	var rev [16]int32
	names := rev[:0]
	for ; i >= 0; i = c.parent[i] {
		names = append(names, c.entries[i])
	}
	var b strings.Builder
	b.WriteString(" (via ")
	for k := len(names) - 1; k >= 0; k-- {
		b.WriteString(catalog.QuoteIdent(s.pinfo[names[k]].name))
		if k > 0 {
			b.WriteString(" → ")
		}
	}
	b.WriteString(")")
	return b.String()
}

type basis int

const (
	basisNone basis = iota
	basisGrant
	basisOwner
	basisAdmin
)

// requirement is one privilege a decision needs, and how it is held.
type requirement struct {
	priv      int
	on        int32
	basis     basis
	holder    int32 // closure entry of the grantee or owner
	grantOn   int32
	grantPriv int
}

func (r *requirement) met() bool { return r.basis != basisNone }

// requirements lists what holding pi on n needs, in the order of
// catalog.Model.Check.
func (s *Snapshot) requirements(pi int, n int32) []requirement {
	nd := &s.nodes[n]
	var rs []requirement
	for _, c := range nd.uses[:nd.nuse] {
		rs = append(rs, requirement{priv: int(s.nodes[c].usePriv), on: c})
	}
	if u := int(nd.usePriv); u >= 0 && u != pi && pi != pBrowse {
		rs = append(rs, requirement{priv: u, on: n})
	}
	return append(rs, requirement{priv: pi, on: n})
}

func (s *Snapshot) rawHas(n int32, pi int, gbit int32) bool {
	sp := s.info[n].raw[pi]
	return hasBit(s.raw[sp.off:sp.off+sp.n], gbit)
}

// why fills r's basis for the principal of closure c.
func (s *Snapshot) why(c *closure, r *requirement) {
	p := c.entries[0]
	if o := s.nodes[r.on].owner; o >= 0 {
		if k := c.find(o); k >= 0 {
			r.basis, r.holder = basisOwner, k
			return
		}
	}
	pr := &s.princ[p]
	d := s.direct[pr.direct.off : pr.direct.off+pr.direct.n]
	for t := r.on; t >= 0; t = s.nodes[t].inherit {
		if set := directOn(d, t); set&want(r.priv) != 0 {
			r.basis, r.holder, r.grantOn, r.grantPriv = basisGrant, 0, t, r.priv
			if set&(1<<r.priv) == 0 {
				r.grantPriv = pAll
			}
			return
		}
		for _, gp := range [2]int{r.priv, pAll} {
			if gp == pAll && r.priv == pManage {
				break
			}
			for k, e := range c.entries {
				if g := s.princ[e].gbit; g >= 0 && s.rawHas(t, gp, g) {
					r.basis, r.holder, r.grantOn, r.grantPriv = basisGrant, int32(k), t, gp
					return
				}
			}
		}
	}
}

func (s *Snapshot) what(r *requirement) string {
	in := &s.info[r.on]
	return privSQL(r.priv) + " on " + string(in.typ) + " " + in.full
}

// privSQL is catalog.Privilege.SQL without the allocation.
func privSQL(i int) string {
	switch i {
	case pAll:
		return "ALL PRIVILEGES"
	case pBrowse:
		return "BROWSE"
	case pCreateCatalog:
		return "CREATE CATALOG"
	case pCreateConnection:
		return "CREATE CONNECTION"
	case pCreateSchema:
		return "CREATE SCHEMA"
	case pManage:
		return "MANAGE"
	case pUseCatalog:
		return "USE CATALOG"
	case pUseConnection:
		return "USE CONNECTION"
	case pUseSchema:
		return "USE SCHEMA"
	}
	return privName(i).SQL()
}

// how renders how r is held (the part after "what: " in catalog.Decision.Explain).
func (s *Snapshot) how(c *closure, r *requirement) string {
	switch r.basis {
	case basisAdmin:
		return "metastore admin"
	case basisOwner:
		return "owned by " + catalog.QuoteIdent(s.pinfo[c.entries[r.holder]].name) + s.path(c, r.holder)
	case basisGrant:
		h := &s.pinfo[c.entries[r.holder]]
		inh := ""
		if r.grantOn != r.on {
			gi := &s.info[r.grantOn]
			inh = ", inherited from " + string(gi.typ) + " " + gi.full
		}
		return privSQL(r.grantPriv) + " granted to " + string(h.kind) + " " + catalog.QuoteIdent(h.name) + inh + s.path(c, r.holder)
	}
	return "not granted to " + catalog.QuoteIdent(s.pinfo[c.entries[0]].name) +
		" or any of its groups, here or on a containing schema or catalog, and not owned by them"
}

// explanation is one principal's part of a decision.
type explanation struct {
	allowed bool
	reason  string
	steps   []Step
}

// evaluate computes the requirements of pi on n for principal p and how
// each is held.
func (s *Snapshot) evaluate(p int32, pi int, n int32) (*closure, []requirement) {
	c := s.closure(p)
	rs := s.requirements(pi, n)
	for i := range rs {
		if s.princ[p].admin {
			rs[i].basis = basisAdmin
		} else {
			s.why(c, &rs[i])
		}
	}
	return c, rs
}

// explain evaluates principal p (valid for its role) on pi, n. Without
// steps only the reason is rendered (and remembered in the snapshot's
// reason memo).
func (s *Snapshot) explain(p int32, role string, pi int, n int32, steps bool) explanation {
	if !steps {
		if e, ok := s.reasons.get(p, role, pi, n); ok {
			return e
		}
	}
	pr, in := &s.princ[p], &s.pinfo[p]
	who := catalog.QuoteIdent(in.name)
	c, rs := s.evaluate(p, pi, n)
	e := explanation{allowed: true}
	var missing *requirement
	for i := range rs {
		if !rs[i].met() {
			e.allowed = false
			if missing == nil {
				missing = &rs[i]
			}
		}
	}
	if !steps && missing != nil && !pr.admin {
		e.reason = role + " " + who + " lacks " + s.what(missing)
		s.reasons.put(p, role, pi, n, e)
		return e
	}
	e.steps = make([]Step, 0, len(rs))
	for i := range rs {
		r := &rs[i]
		res := "allow"
		if !r.met() {
			res = "deny"
		}
		e.steps = append(e.steps, Step{Principal: in.name, Role: role, Check: s.what(r), Result: res, Reason: s.how(c, r)})
	}
	switch {
	case pr.admin:
		admin := int32(0)
		for k, q := range c.entries {
			if s.pinfo[q].self {
				admin = int32(k)
				break
			}
		}
		via := s.path(c, admin)
		for i := range e.steps {
			e.steps[i].Reason += via
		}
		e.reason = who + " is a metastore admin" + via + ": " + e.steps[len(rs)-1].Check + " allowed"
	case missing != nil:
		e.reason = who + " lacks " + s.what(missing)
	default:
		parts := make([]string, len(rs))
		for i := range rs {
			parts[i] = e.steps[i].Check + ": " + e.steps[i].Reason
		}
		e.reason = who + " allowed: " + strings.Join(parts, "; ")
	}
	e.reason = role + " " + e.reason
	if !steps {
		e.steps = nil
		s.reasons.put(p, role, pi, n, e)
	}
	return e
}

// explainRole checks that name may act in role and explains its part.
func (s *Snapshot) explainRole(name, role string, pi int, n int32, steps bool) explanation {
	deny := func(msg string) explanation {
		return explanation{reason: msg, steps: []Step{{Principal: name, Role: role, Check: "principal " + catalog.QuoteIdent(name), Result: "deny", Reason: msg}}}
	}
	if name == "" {
		return deny("no " + role + " given")
	}
	p, ok := s.index(name)
	if !ok {
		return deny(fmt.Sprintf("%s %s does not exist", role, catalog.QuoteIdent(name)))
	}
	if s.principal(name, role) < 0 {
		must := "a user or a service principal"
		if role == roleActor {
			must = "a service principal"
		}
		return deny(fmt.Sprintf("%s %s is a %s; the %s must be %s", role, catalog.QuoteIdent(name),
			strings.ToLower(string(s.pinfo[p].kind)), role, must))
	}
	return s.explain(p, role, pi, n, steps)
}

// Decide answers r from grants alone (no policies), with the reason and,
// when r.Explain, one Step per requirement of the subject and of the
// actor. The on-behalf-
// of rule: allowed only if the subject (a user or service principal) and
// the actor, if any (a service principal), both hold the privilege. Both
// are always evaluated so that the reason names each one's grants or
// missing privilege.
func (s *Snapshot) Decide(r Request) Decision {
	d := Decision{Revision: s.rev}
	pi := privilege(r.Privilege)
	if pi < 0 {
		d.Reason = fmt.Sprintf("unknown privilege %q", string(r.Privilege))
		return d
	}
	n := s.resolve(r.Securable)
	switch n {
	case badType:
		d.Reason = fmt.Sprintf("unsupported securable type %q", string(r.Securable.Type))
		return d
	case unknownSecurable:
		d.Reason = fmt.Sprintf("%s %s does not exist", strings.ToLower(string(r.Securable.Type)), r.Securable.Name)
		return d
	case ambiguousName:
		d.Reason = fmt.Sprintf("%s name %q is ambiguous; use the quoted full name", strings.ToLower(string(r.Securable.Type)), r.Securable.Name)
		return d
	}
	sub := s.explainRole(r.Subject, roleSubject, pi, n, r.Explain)
	d.Allowed, d.Reason, d.Steps = sub.allowed, sub.reason, sub.steps
	if r.Actor != "" {
		act := s.explainRole(r.Actor, roleActor, pi, n, r.Explain)
		d.Allowed = d.Allowed && act.allowed
		d.Reason += "; " + act.reason
		d.Steps = append(d.Steps, act.steps...)
	}
	if !r.Explain {
		d.Steps = nil
	}
	return d
}
