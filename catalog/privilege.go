package catalog

import (
	"fmt"
	"strings"
	"sync"
)

// The privilege evaluator: the one implementation of Mandate's privilege
// rules. It runs on an authzState, the Model's live one (statement
// planning, SHOW GRANTS, EXPLAIN ACCESS, information_schema) or a
// Snapshot's frozen one (the decision engine), and explains a decision as
// an option of the same code path: without an explanation it does not
// allocate.
//
// Semantics (Unity Catalog):
//   - metastore admins hold every privilege;
//   - using an object needs the USE privilege of every container (USE_CATALOG
//     on its catalog, USE_SCHEMA on its schema) besides the privilege itself;
//     a container's own other privileges (e.g. CREATE_SCHEMA on a catalog)
//     also need its USE privilege, except BROWSE (PrivilegeInfo.NoOwnUse);
//   - a privilege is held through a grant to the principal or to any group it
//     belongs to transitively ("account users" holds every user and service
//     principal), on the object itself or on a containing catalog or schema
//     (TypeInfo.Inherited; metastore grants are not inherited);
//   - ALL_PRIVILEGES is expanded at check time and covers every privilege
//     except MANAGE (PrivilegeInfo.NotInAll);
//   - the owner of an object (or a member of an owning group) holds every
//     privilege on that object.
//
// An explanation names, per requirement, the innermost securable with a
// qualifying grant and there a grant to the principal itself first, then
// the group closest to it (breadth first, groups in name order).

// lineage is a securable and its containers, innermost first, up to the
// metastore, with the grants to the principal itself on each (computed
// on first need): one decision visits each at most once.
type lineage struct {
	nodes [maxDepth]*nodeRec
	own   [maxDepth]PrivSet
	known uint8 // bit j: own[j] is computed
	k     int
}

// lineageOf fills l for n; false for an inconsistent state (a missing
// container): nothing is held then.
func (st *authzState) lineageOf(n *nodeRec, l *lineage) bool {
	for t := n; ; {
		if l.k == maxDepth {
			return false
		}
		l.nodes[l.k] = t
		l.k++
		if t.parent == 0 {
			return true
		}
		if t = st.node(t.parent); t == nil {
			return false
		}
	}
}

// ownOn returns the privileges granted to the principal pr itself on
// lineage entry j (a group's own grants are in the securable's group sets).
func (l *lineage) ownOn(j int, pr *principalRec) PrivSet {
	if l.known&(1<<j) == 0 {
		t := l.nodes[j]
		var set PrivSet
		if len(pr.direct) > 0 {
			set = directOn(pr.direct, t.id)
		}
		if pr.gbit >= 0 {
			for gp := range t.groups {
				if t.groups[gp].has(pr.gbit) {
					set |= 1 << gp
				}
			}
		}
		l.own[j], l.known = set, l.known|1<<j
	}
	return l.own[j]
}

// need is one requirement of a decision: privilege pi on lineage entry j.
type need struct {
	pi int
	j  int
}

// requirements lists what holding pi on l.nodes[0] needs, in the order
// checked: the containers' USE privileges (outermost first), the
// securable's own USE privilege, the privilege itself.
func requirements(pi int, l *lineage, out *[maxReqs]need) int {
	k := 0
	for j := l.k - 1; j >= 1; j-- {
		if u := l.nodes[j].usePriv; u >= 0 {
			out[k] = need{int(u), j}
			k++
		}
	}
	if u := int(l.nodes[0].usePriv); u >= 0 && u != pi && !privileges[pi].NoOwnUse {
		out[k] = need{u, 0}
		k++
	}
	out[k] = need{pi, 0}
	return k + 1
}

// granters lists the privileges whose grants give pi: pi itself and ALL
// PRIVILEGES unless pi is not in it.
func granters(pi int) ([2]int, int) {
	if privileges[pi].All || privileges[pi].NotInAll {
		return [2]int{pi}, 1
	}
	return [2]int{pi, allIndex}, 2
}

var allIndex = func() int {
	for i, p := range privileges {
		if p.All {
			return i
		}
	}
	panic("catalog: no ALL PRIVILEGES in the privilege registry")
}()

// holds reports whether the principal of closure c (record pr) holds
// privilege pi on lineage entry j by ownership, or by a grant there or on
// a container it inherits from (the next entries, while they are
// Inherited); r, if not nil, is filled with how.
func (st *authzState) holds(c *closure, pr *principalRec, l *lineage, j, pi int, r *Requirement) bool {
	if n := l.nodes[j]; n.owner == c.id || c.bits.has(n.ownerGroup) {
		if r != nil {
			r.Met, r.Basis, r.holderID = true, BasisOwner, n.owner
		}
		return true
	}
	gs, ng := granters(pi)
	for ; j < l.k; j++ {
		t := l.nodes[j]
		grp := -1 // a group of the principal holds a grant here
		for _, gp := range gs[:ng] {
			if intersects(c.bits, t.groups[gp]) {
				grp = gp
				break
			}
		}
		if grp >= 0 && r == nil {
			return true // no need to look for a grant to the principal itself
		}
		if own := l.ownOn(j, pr); own != 0 {
			for _, gp := range gs[:ng] {
				if own&(1<<gp) != 0 {
					if r != nil {
						r.Met, r.Basis, r.holderID, r.GrantOn, r.GrantPriv = true, BasisGrant, c.id, t.sec, privileges[gp].Privilege
					}
					return true
				}
			}
		}
		if grp >= 0 {
			ps := st.pathsOf(c)
			r.Met, r.Basis, r.GrantOn, r.GrantPriv = true, BasisGrant, t.sec, privileges[grp].Privilege
			r.holderID = ps.entries[max(ps.closest(t.groups[grp]), 0)].p.ID
			return true
		}
		if j+1 < l.k && !l.nodes[j+1].inherited {
			break
		}
	}
	return false
}

// decide is the privilege function: does the principal of closure c
// (record pr) hold privilege pi on n? With d it also fills d with every
// requirement and how it is held (the explanation); without, it stops at
// the first missing requirement and does not allocate.
func (st *authzState) decide(c *closure, pr *principalRec, pi int, n *nodeRec, d *Decision) bool {
	if c == nil || pr == nil || n == nil || pi < 0 || pi >= numPrivs {
		return false
	}
	if d == nil && c.admin {
		return true
	}
	var l lineage
	if !st.lineageOf(n, &l) {
		return false
	}
	var buf [maxReqs]need
	k := requirements(pi, &l, &buf)
	allowed := true
	for i := 0; i < k; i++ {
		var r *Requirement
		if d != nil {
			r = &d.reqs[i]
			*r = Requirement{Privilege: privileges[buf[i].pi].Privilege, On: l.nodes[buf[i].j].sec}
		}
		switch {
		case c.admin:
			r.Met, r.Basis = true, BasisAdmin
		case st.holds(c, pr, &l, buf[i].j, buf[i].pi, r):
		case d == nil:
			return false
		default:
			allowed = false
		}
	}
	if d != nil {
		d.n, d.Allowed, d.Admin = k, allowed, c.admin
		d.ps = st.pathsOf(c)
	}
	return allowed
}

// check answers and explains: the Decision of Model.Check.
func (st *authzState) check(p ID, priv Privilege, s ID) Decision {
	d := Decision{Privilege: priv}
	pi := PrivilegeIndex(priv)
	n := st.node(s)
	if n != nil {
		d.Securable = n.sec
	}
	c := st.closure(p)
	if c == nil {
		return d
	}
	d.Principal = c.p
	if pi < 0 || n == nil {
		return d // an unknown privilege is held by nobody
	}
	st.decide(c, st.principal(p), pi, n, &d)
	return d
}

// allowed answers without explaining (no allocation once the principal's
// closure is known).
func (st *authzState) allowed(p ID, pi int, s ID) bool {
	pr := st.principal(p)
	if pr == nil {
		return false
	}
	return st.decide(st.closureOf(p, pr), pr, pi, st.node(s), nil)
}

// Basis says how one requirement was met.
type Basis int

const (
	BasisNone  Basis = iota // not met
	BasisGrant              // a grant to the principal or one of its groups
	BasisOwner              // the principal (or one of its groups) owns the securable
	BasisAdmin              // metastore admin
)

// Requirement is one thing a decision needed: a privilege on a securable,
// and whether and how it was held.
type Requirement struct {
	Privilege Privilege
	On        *Securable
	Met       bool
	Basis     Basis
	GrantOn   *Securable // where the grant sits (On or an ancestor)
	GrantPriv Privilege  // the granted privilege (Privilege or ALL_PRIVILEGES)
	holderID  ID         // the grantee or owner
}

// Decision is the answer of Check: does the principal hold the privilege on
// the securable, and why. Reason renders the explanation.
type Decision struct {
	Allowed   bool
	Principal *Principal
	Privilege Privilege
	Securable *Securable
	Admin     bool
	ps        *closurePaths
	reqs      [maxReqs]Requirement
	n         int
}

// Reqs returns the requirements in the order checked: the USE privileges on
// the containers (outermost first), then the privilege itself.
func (d *Decision) Reqs() []Requirement { return d.reqs[:d.n] }

func (d *Decision) holderIndex(r *Requirement) int {
	if d.ps == nil {
		return -1
	}
	return d.ps.find(r.holderID)
}

// Path returns the membership path of requirement r's holder, from the
// principal to the grantee ("alice@example.com", "analysts", "data-team").
func (d *Decision) Path(r *Requirement) []string {
	if !r.Met || r.Basis == BasisAdmin {
		return nil
	}
	if i := d.holderIndex(r); i >= 0 {
		return d.ps.path(i)
	}
	return nil
}

// Holder returns the principal that holds requirement r (the grantee or owner).
func (d *Decision) Holder(r *Requirement) *Principal {
	if !r.Met {
		return nil
	}
	if i := d.holderIndex(r); i >= 0 {
		return d.ps.entries[i].p
	}
	return nil
}

// Missing returns the first unmet requirement, or nil.
func (d *Decision) Missing() *Requirement {
	for i := 0; i < d.n; i++ {
		if !d.reqs[i].Met {
			return &d.reqs[i]
		}
	}
	return nil
}

// What renders what requirement r asks for ("USE SCHEMA on SCHEMA eng.tools").
func (r *Requirement) What() string {
	return r.Privilege.SQL() + " on " + string(r.On.Type) + " " + r.On.FullName()
}

// via renders a membership path as " (via a → b)", or "" for the
// principal itself.
func via(path []string) string {
	if len(path) <= 1 {
		return ""
	}
	return " (via " + quoteAll(path) + ")"
}

// How renders how requirement r is held, or why it is not (the reason of
// an EXPLAIN ACCESS row and of an API step).
func (d *Decision) How(r *Requirement) string {
	if !r.Met {
		return "not granted to " + QuoteIdent(d.Principal.Name) +
			" or any of its groups, here or on a containing schema or catalog, and not owned by them"
	}
	switch r.Basis {
	case BasisAdmin:
		return "metastore admin" + d.adminVia()
	case BasisOwner:
		return "owned by " + QuoteIdent(d.Holder(r).Name) + via(d.Path(r))
	}
	inh := ""
	if r.GrantOn.ID != r.On.ID {
		inh = ", inherited from " + string(r.GrantOn.Type) + " " + r.GrantOn.FullName()
	}
	h := d.Holder(r)
	return r.GrantPriv.SQL() + " granted to " + string(h.Kind) + " " + QuoteIdent(h.Name) + inh + via(d.Path(r))
}

func (d *Decision) adminVia() string {
	if d.ps == nil || d.ps.admin < 0 {
		return ""
	}
	return via(d.ps.path(d.ps.admin))
}

// Explain renders one requirement: "what: how", or "missing what".
func (d *Decision) Explain(r *Requirement) string {
	if !r.Met {
		return "missing " + r.What()
	}
	return r.What() + ": " + d.How(r)
}

// Reason renders the decision as one line.
func (d *Decision) Reason() string { return d.reason(nil, nil) }

// reason is Reason with the requirements' What and How already rendered
// (nil: render them here).
func (d *Decision) reason(what, how []string) string {
	if d.Principal == nil {
		return "unknown principal"
	}
	who := QuoteIdent(d.Principal.Name)
	if d.n == 0 {
		return who + " holds nothing on an unknown securable or privilege"
	}
	if d.Admin {
		return who + " is a metastore admin" + d.adminVia() + ": " + d.reqs[d.n-1].What() + " allowed"
	}
	if m := d.Missing(); m != nil {
		return who + " lacks " + m.What()
	}
	var b strings.Builder
	b.WriteString(who)
	b.WriteString(" allowed: ")
	for i := 0; i < d.n; i++ {
		if i > 0 {
			b.WriteString("; ")
		}
		if what != nil {
			b.WriteString(what[i])
			b.WriteString(": ")
			b.WriteString(how[i])
		} else {
			b.WriteString(d.Explain(&d.reqs[i]))
		}
	}
	return b.String()
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = QuoteIdent(n)
	}
	return strings.Join(q, " → ")
}

// Check answers "does principal p hold privilege priv on securable s, and
// why" on the Model as it is (a statement being planned sees its own
// earlier changes). See the evaluator's semantics at the top of this file.
// Decisions are memoized per model generation.
//
// The caller must hold the model's read lock (or own the model).
func (m *Model) Check(p ID, priv Privilege, s ID) Decision {
	if m.cacheOff {
		return m.az.check(p, priv, s)
	}
	k := checkKey{p, s, priv}
	sh := m.cache.shard(k)
	sh.mu.RLock()
	if sh.gen == m.gen {
		if d, ok := sh.m[k]; ok {
			sh.mu.RUnlock()
			return *d
		}
	}
	sh.mu.RUnlock()
	d := m.az.check(p, priv, s)
	sh.put(k, m.gen, &d)
	return d
}

// Holds is Check without the explanation.
func (m *Model) Holds(p ID, priv Privilege, s ID) bool {
	return m.az.allowed(p, PrivilegeIndex(priv), s)
}

// checkKey identifies a question to Check.
type checkKey struct {
	p, s ID
	priv Privilege
}

// decisionCache memoizes decisions for one generation of the Model (any
// change to the Model starts a new generation). Readers share it under the
// Model's read lock, so it is sharded with its own locks; each shard is
// bounded and starts over when full.
type decisionCache struct {
	shards [64]cacheShard
}

type cacheShard struct {
	mu  sync.RWMutex
	gen uint64
	m   map[checkKey]*Decision
}

const cacheShardMax = 512

func (c *decisionCache) shard(k checkKey) *cacheShard {
	return &c.shards[(uint64(k.p)*0x9E3779B97F4A7C15^uint64(k.s))>>58]
}

func (sh *cacheShard) put(k checkKey, gen uint64, d *Decision) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen || sh.m == nil || len(sh.m) >= cacheShardMax {
		if sh.gen > gen {
			return // a newer generation already started
		}
		sh.m = make(map[checkKey]*Decision, 64)
		sh.gen = gen
	}
	sh.m[k] = d
}

// owns reports whether the principal of c or one of its groups owns n.
func (st *authzState) owns(c *closure, n *nodeRec) bool {
	return n.owner == c.id || c.bits.has(n.ownerGroup)
}

// canManage: metastore admins, the owner of s or of a containing schema or
// catalog, and holders of MANAGE on s (directly or inherited, with the USE
// privileges of its containers).
func (st *authzState) canManage(p ID, s ID) (bool, string) {
	n, c := st.node(s), st.closure(p)
	if n == nil || c == nil {
		return false, "unknown principal or securable"
	}
	if c.admin {
		return true, "metastore admin"
	}
	for t := n; t != nil && t.sec.Type != TypeMetastore; t = st.node(t.parent) {
		if st.owns(c, t) {
			ps := st.pathsOf(c)
			return true, fmt.Sprintf("owner of %s %s (%s)", t.sec.Type, t.sec.FullName(), quoteAll(ps.path(max(ps.find(t.owner), 0))))
		}
	}
	d := st.check(p, PrivManage, s)
	if d.Allowed {
		return true, d.Reason()
	}
	sec, who := n.sec, QuoteIdent(c.p.Name)
	if sec.Type == TypeMetastore {
		return false, fmt.Sprintf("%s is not a metastore admin", who)
	}
	if miss := d.Missing(); miss != nil && miss.Privilege != PrivManage {
		return false, fmt.Sprintf("%s needs MANAGE on %s %s or its ownership, and lacks %s",
			who, sec.Type, sec.FullName(), miss.What())
	}
	return false, fmt.Sprintf("%s needs MANAGE on %s %s (or on a containing schema or catalog) or ownership of it or of a container",
		who, sec.Type, sec.FullName())
}

// canSee: admins; owners of s or of a container; holders of any privilege
// on s; holders of a privilege on a container that is inherited by objects
// of s's type (e.g. USE_CONNECTION on a schema for its connections), or
// BROWSE. A container's USE privilege alone does not reveal what is inside
// (as in Unity Catalog).
func (st *authzState) canSee(p ID, s ID) bool {
	n, c := st.node(s), st.closure(p)
	if n == nil || c == nil {
		return false
	}
	if c.admin {
		return true
	}
	inherit := privBit(PrivBrowse)
	if n.ti != nil {
		for _, pr := range n.ti.Privileges {
			inherit |= privBit(pr)
		}
	}
	pr := st.principal(p)
	for t, mask := n, ^PrivSet(0); t != nil && t.sec.Type != TypeMetastore; t, mask = st.node(t.parent), inherit {
		if st.owns(c, t) {
			return true
		}
		if pr != nil && directOn(pr.direct, t.id)&mask != 0 {
			return true
		}
		for gp := 0; gp < numPrivs; gp++ {
			if mask&(1<<gp) != 0 && intersects(c.bits, t.groups[gp]) {
				return true
			}
		}
	}
	return false
}

// CanManage answers "may principal p grant and revoke on securable s (and
// change it)": metastore admins, the owner of s or of a containing schema or
// catalog, and holders of MANAGE on s (directly or inherited, with the USE
// privileges of its containers). On refusal the message names what is
// missing.
func (m *Model) CanManage(p ID, s ID) (bool, string) { return m.az.canManage(p, s) }

// CanSee reports whether p may see securable s in listings and DESCRIBE:
// admins; owners of it or of a container; holders of any privilege on it;
// holders of a privilege on a container that is inherited by objects of its
// type (e.g. USE_CONNECTION on a schema for its connections), or BROWSE. A
// container's USE privilege alone does not reveal what is inside (as in
// Unity Catalog).
func (m *Model) CanSee(p ID, s ID) bool { return m.az.canSee(p, s) }

// IsAdmin reports whether p is a metastore admin (directly or through a group).
func (m *Model) IsAdmin(p ID) bool {
	c := m.az.closure(p)
	return c != nil && c.admin
}

// inClosure reports whether p is q or belongs to q transitively.
func (st *authzState) inClosure(p, q ID) bool {
	c := st.closure(p)
	if c == nil || st.principal(q) == nil {
		return false
	}
	return p == q || c.bits.has(st.principal(q).gbit)
}

// InClosure reports whether principal p is q or belongs to q transitively
// (including "account users").
func (m *Model) InClosure(p, q ID) bool { return m.az.inClosure(p, q) }

// MemberClosure returns the IDs of p and all its groups, transitively,
// breadth first.
func (m *Model) MemberClosure(p ID) []ID {
	c := m.az.closure(p)
	if c == nil {
		return nil
	}
	ps := m.az.pathsOf(c)
	out := make([]ID, len(ps.entries))
	for i, e := range ps.entries {
		out[i] = e.p.ID
	}
	return out
}

// WouldCycle reports whether adding member to group would create a cycle
// (group is member itself, or group is already inside member transitively).
func (m *Model) WouldCycle(group, member ID) bool {
	if group == member {
		return true
	}
	return m.InClosure(group, member)
}
