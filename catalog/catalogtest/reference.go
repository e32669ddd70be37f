package catalogtest

import (
	"sort"

	"github.com/mandatehq/mandate/catalog"
)

// Reference is a deliberately naive implementation of Mandate's privilege
// rules, written from the written matrix (catalog/testdata/privilege_matrix.txt)
// and the rules stated in catalog's doc, over the Model's public accessors
// only (principals, direct memberships, grants, owners, containers): no
// indexes, no bitsets, no caches. The property tests compare the evaluator
// (on the live Model and on Snapshots) and the decision engine with it.
//
// The rules, as written:
//   - metastore admins (Principal.Admin, themselves or through a group)
//     hold every privilege;
//   - a principal belongs to its groups transitively; users and service
//     principals also belong to "account users" (whose groups are not
//     followed);
//   - holding P on S needs USE CATALOG on S's catalog and USE SCHEMA on its
//     schema (for S itself: its own USE privilege, unless P is that
//     privilege or BROWSE), then P itself;
//   - a requirement is met by ownership of that securable by the principal
//     or one of its groups, or by a grant of P (or of ALL PRIVILEGES, unless
//     P is MANAGE) to the principal or one of its groups on that securable
//     or on a catalog or schema containing it.
type Reference struct{ M *catalog.Model }

// Closure returns p and its groups with their distance from p (breadth
// first over direct memberships).
func (r Reference) Closure(p catalog.ID) map[catalog.ID]int {
	pp, ok := r.M.Principal(p)
	if !ok {
		return nil
	}
	dist := map[catalog.ID]int{p: 0}
	queue := []catalog.ID{p}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, g := range r.M.GroupsOf(cur) {
			if _, seen := dist[g.ID]; !seen {
				dist[g.ID] = dist[cur] + 1
				queue = append(queue, g.ID)
			}
		}
	}
	if pp.Kind != catalog.KindGroup {
		if au, ok := r.M.PrincipalByName(catalog.AccountUsers); ok {
			if _, seen := dist[au.ID]; !seen {
				dist[au.ID] = 1
			}
		}
	}
	return dist
}

// Admin reports whether p is a metastore admin.
func (r Reference) Admin(p catalog.ID) bool {
	for q := range r.Closure(p) {
		if pp, _ := r.M.Principal(q); pp.Admin {
			return true
		}
	}
	return false
}

// Req is one requirement and how the reference says it is held.
type Req struct {
	Privilege catalog.Privilege
	On        *catalog.Securable
	Met       bool
	Basis     catalog.Basis
	GrantOn   *catalog.Securable
	// Holders are the acceptable holders to name: the owner, the principal
	// itself for its own grant, or the closest groups holding the grant.
	Holders   map[catalog.ID]bool
	GrantPriv catalog.Privilege
	Distance  int // of the holders from the principal
}

var usePriv = map[catalog.SecurableType]catalog.Privilege{
	catalog.TypeCatalog: catalog.PrivUseCatalog,
	catalog.TypeSchema:  catalog.PrivUseSchema,
}

// Requirements lists what holding priv on s needs, in order.
func (r Reference) Requirements(priv catalog.Privilege, s *catalog.Securable) []Req {
	anc := r.M.Ancestors(s) // s, ..., metastore
	var out []Req
	for i := len(anc) - 1; i >= 1; i-- {
		if u, ok := usePriv[anc[i].Type]; ok {
			out = append(out, Req{Privilege: u, On: anc[i]})
		}
	}
	if u, ok := usePriv[s.Type]; ok && u != priv && priv != catalog.PrivBrowse {
		out = append(out, Req{Privilege: u, On: s})
	}
	return append(out, Req{Privilege: priv, On: s})
}

func gives(set catalog.PrivSet, priv catalog.Privilege) (catalog.Privilege, bool) {
	if set.Has(priv) {
		return priv, true
	}
	if priv != catalog.PrivManage && set.Has(catalog.PrivAll) {
		return catalog.PrivAll, true
	}
	return "", false
}

// held decides one requirement for principal p with closure cl.
func (r Reference) held(p catalog.ID, cl map[catalog.ID]int, q *Req) {
	if d, ok := cl[q.On.Owner]; ok {
		q.Met, q.Basis, q.Holders, q.Distance = true, catalog.BasisOwner, map[catalog.ID]bool{q.On.Owner: true}, d
		return
	}
	for _, a := range r.M.Ancestors(q.On) {
		if a.ID != q.On.ID && a.Type != catalog.TypeCatalog && a.Type != catalog.TypeSchema {
			break // only catalogs and schemas pass their grants on
		}
		grants := r.M.GrantsOn(a.ID)
		if gp, ok := gives(grants[p], q.Privilege); ok {
			q.Met, q.Basis, q.GrantOn, q.GrantPriv, q.Holders = true, catalog.BasisGrant, a, gp, map[catalog.ID]bool{p: true}
			return
		}
		wants := []catalog.Privilege{q.Privilege}
		if q.Privilege != catalog.PrivManage && q.Privilege != catalog.PrivAll {
			wants = append(wants, catalog.PrivAll)
		}
		for _, want := range wants {
			best, holders := -1, map[catalog.ID]bool{}
			for g, d := range cl {
				if g == p || !grants[g].Has(want) {
					continue
				}
				switch {
				case best < 0 || d < best:
					best, holders = d, map[catalog.ID]bool{g: true}
				case d == best:
					holders[g] = true
				}
			}
			if best >= 0 {
				q.Met, q.Basis, q.GrantOn, q.GrantPriv, q.Holders, q.Distance = true, catalog.BasisGrant, a, want, holders, best
				return
			}
		}
	}
}

// Check decides "does p hold priv on s" with each requirement.
func (r Reference) Check(p catalog.ID, priv catalog.Privilege, s *catalog.Securable) (bool, []Req) {
	reqs := r.Requirements(priv, s)
	cl := r.Closure(p)
	if cl == nil {
		return false, reqs
	}
	admin := r.Admin(p)
	ok := true
	for i := range reqs {
		if admin {
			reqs[i].Met, reqs[i].Basis = true, catalog.BasisAdmin
			continue
		}
		r.held(p, cl, &reqs[i])
		ok = ok && reqs[i].Met
	}
	return ok, reqs
}

// DenyReason is the reason of a denial: `"name" lacks USE SCHEMA on SCHEMA eng.tools`.
func (r Reference) DenyReason(p *catalog.Principal, reqs []Req) string {
	for _, q := range reqs {
		if !q.Met {
			return catalog.QuoteIdent(p.Name) + " lacks " + q.Privilege.SQL() + " on " + string(q.On.Type) + " " + q.On.FullName()
		}
	}
	return ""
}

// CanManage: admins, owners of s or of a container other than the
// metastore, holders of MANAGE on s.
func (r Reference) CanManage(p catalog.ID, s *catalog.Securable) bool {
	if r.Admin(p) {
		return true
	}
	cl := r.Closure(p)
	for _, a := range r.M.Ancestors(s) {
		if _, ok := cl[a.Owner]; ok && a.Type != catalog.TypeMetastore {
			return true
		}
	}
	ok, _ := r.Check(p, catalog.PrivManage, s)
	return ok
}

// CanSee: admins; owners of s or a container; any grant on s; on a
// container, a grant of a privilege that applies to s's type, or BROWSE.
func (r Reference) CanSee(p catalog.ID, s *catalog.Securable) bool {
	if r.Admin(p) {
		return true
	}
	cl := r.Closure(p)
	ti, _ := catalog.LookupType(s.Type)
	for i, a := range r.M.Ancestors(s) {
		if a.Type == catalog.TypeMetastore {
			break
		}
		if _, ok := cl[a.Owner]; ok {
			return true
		}
		for q := range cl {
			set := r.M.GrantsOn(a.ID)[q]
			if i == 0 && set != 0 || set.Has(catalog.PrivBrowse) {
				return true
			}
			for _, pr := range ti.Privileges {
				if set.Has(pr) {
					return true
				}
			}
		}
	}
	return false
}

// Principals returns every principal by name (for deterministic loops).
func (r Reference) Principals() []*catalog.Principal {
	ps := r.M.Principals("")
	sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	return ps
}
