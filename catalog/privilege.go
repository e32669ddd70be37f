package catalog

import (
	"fmt"
	"strings"
	"sync"
)

// closure is the transitive set of groups of a principal, with the path by
// which each was reached. Entry 0 is the principal itself. Closures are
// immutable once built and cached in the Model until memberships change.
type closure struct {
	entries []closureEntry
	index   map[ID]int
	admin   int      // index of the entry that makes the principal an admin, -1 if none
	bits    []uint64 // the groups of the closure by dense group index
	rootID  ID
	root    *Principal
	gen     uint64
	direct  *pnode // the root principal's state (own grants)
}

type closureEntry struct {
	p      *Principal
	parent int // index of the entry this one was reached from; -1 for the root
}

func (m *Model) closureOf(id ID) *closure {
	pn := m.pnodes.get(id)
	if pn == nil {
		return nil
	}
	if c := pn.cl.Load(); c != nil && c.gen == m.closureGen {
		return c
	}
	p := m.principals[id]
	c := &closure{index: map[ID]int{id: 0}, admin: -1, gen: m.closureGen, direct: pn, rootID: id, root: p}
	c.entries = append(c.entries, closureEntry{p: p, parent: -1})
	// Breadth first, so that the shortest path is recorded.
	for i := 0; i < len(c.entries); i++ {
		cur := c.entries[i].p.ID
		for g := range m.memberOf[cur] {
			if _, seen := c.index[g]; seen {
				continue
			}
			c.index[g] = len(c.entries)
			c.entries = append(c.entries, closureEntry{p: m.principals[g], parent: i})
		}
	}
	// Every user and service principal is in "account users".
	if p.Kind != KindGroup && m.accountUsrs != 0 {
		if _, seen := c.index[m.accountUsrs]; !seen {
			c.index[m.accountUsrs] = len(c.entries)
			c.entries = append(c.entries, closureEntry{p: m.principals[m.accountUsrs], parent: 0})
		}
	}
	for i, e := range c.entries {
		if e.p.Admin && c.admin < 0 {
			c.admin = i
		}
		if gi, ok := m.groupIdx[e.p.ID]; ok {
			c.bits = setBit(c.bits, gi)
		}
	}
	pn.cl.Store(c)
	return c
}

// path returns the names from the root to entry i ("alice" → "analysts" → "eng").
func (c *closure) path(i int) []string {
	var rev []string
	for ; i >= 0; i = c.entries[i].parent {
		rev = append(rev, c.entries[i].p.Name)
	}
	for l, r := 0, len(rev)-1; l < r; l, r = l+1, r-1 {
		rev[l], rev[r] = rev[r], rev[l]
	}
	return rev
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
	cl        *closure
	reqs      [4]Requirement
	n         int
}

// Reqs returns the requirements in the order checked: the USE privileges on
// the containers (outermost first), then the privilege itself.
func (d *Decision) Reqs() []Requirement { return d.reqs[:d.n] }

func (d *Decision) holderIndex(r *Requirement) int {
	if i, ok := d.cl.index[r.holderID]; ok {
		return i
	}
	return 0
}

// Path returns the membership path of requirement r's holder, from the
// principal to the grantee ("alice@example.com", "analysts", "data-team").
func (d *Decision) Path(r *Requirement) []string {
	if d.cl == nil || !r.Met || r.Basis == BasisAdmin {
		return nil
	}
	return d.cl.path(d.holderIndex(r))
}

// Holder returns the principal that holds requirement r (the grantee or owner).
func (d *Decision) Holder(r *Requirement) *Principal {
	if d.cl == nil || !r.Met {
		return nil
	}
	return d.cl.entries[d.holderIndex(r)].p
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

// Explain renders one requirement.
func (d *Decision) Explain(r *Requirement) string {
	what := fmt.Sprintf("%s on %s %s", r.Privilege.SQL(), r.On.Type, r.On.FullName())
	if !r.Met {
		return "missing " + what
	}
	via := ""
	if p := d.Path(r); len(p) > 1 {
		via = " (via " + quoteAll(p) + ")"
	}
	switch r.Basis {
	case BasisAdmin:
		return what + ": metastore admin"
	case BasisOwner:
		return fmt.Sprintf("%s: owned by %s%s", what, QuoteIdent(d.Holder(r).Name), via)
	default:
		inh := ""
		if r.GrantOn.ID != r.On.ID {
			inh = fmt.Sprintf(", inherited from %s %s", r.GrantOn.Type, r.GrantOn.FullName())
		}
		return fmt.Sprintf("%s: %s granted to %s %s%s%s", what, r.GrantPriv.SQL(), d.Holder(r).Kind, QuoteIdent(d.Holder(r).Name), inh, via)
	}
}

// Reason renders the decision as one line.
func (d *Decision) Reason() string {
	if d.Principal == nil {
		return "unknown principal"
	}
	who := QuoteIdent(d.Principal.Name)
	if d.Admin {
		r := d.reqs[d.n-1]
		via := ""
		if p := d.cl.path(d.cl.admin); len(p) > 1 {
			via = " (via " + quoteAll(p) + ")"
		}
		return fmt.Sprintf("%s is a metastore admin%s: %s on %s %s allowed", who, via, r.Privilege.SQL(), r.On.Type, r.On.FullName())
	}
	if m := d.Missing(); m != nil {
		return fmt.Sprintf("%s lacks %s on %s %s", who, m.Privilege.SQL(), m.On.Type, m.On.FullName())
	}
	parts := make([]string, d.n)
	for i := 0; i < d.n; i++ {
		parts[i] = d.Explain(&d.reqs[i])
	}
	return who + " allowed: " + strings.Join(parts, "; ")
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = QuoteIdent(n)
	}
	return strings.Join(q, " → ")
}

// Check answers "does principal p hold privilege priv on securable s, and
// why". It is the single privilege function of Mandate; the decision engine
// and the SQL front end both rely on it.
//
// Semantics (Unity Catalog):
//   - metastore admins hold every privilege;
//   - using an object needs the USE privilege of every container (USE_CATALOG
//     on its catalog, USE_SCHEMA on its schema) besides the privilege itself;
//     a container's own non-USE privileges (e.g. CREATE_SCHEMA on a catalog)
//     also need its USE privilege, except BROWSE;
//   - a privilege is held through a grant to the principal or to any group it
//     belongs to transitively ("account users" holds every user and service
//     principal), on the object itself or on a containing catalog or schema
//     (metastore grants are not inherited);
//   - ALL_PRIVILEGES is expanded at check time and covers every privilege
//     except MANAGE;
//   - the owner of an object (or a member of an owning group) holds every
//     privilege on that object.
//
// The caller must hold the model's read lock (or own the model).
func (m *Model) Check(p ID, priv Privilege, s ID) Decision {
	if m.cacheOff {
		return m.check(p, priv, s)
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
	d := m.check(p, priv, s)
	sh.put(k, m.gen, &d)
	return d
}

// check computes a decision (Check memoizes it per model generation).
func (m *Model) check(p ID, priv Privilege, s ID) Decision {
	d := Decision{Privilege: priv}
	if privBit(priv) == 0 {
		return d // an unknown privilege is held by nobody
	}
	n := m.nodes.get(s)
	if n == nil {
		return d
	}
	sec := n.sec
	d.Securable = sec
	cl := m.closureOf(p)
	if cl == nil {
		return d
	}
	d.cl = cl
	d.Principal = cl.root
	// requirements: USE privileges of containers, outermost first, then priv on s.
	var anc [4]*node
	na := 0
	for t := n; t != nil && na < len(anc); t = t.parent {
		anc[na] = t
		na++
	}
	var on [4]*node
	for i := na - 1; i >= 1; i-- {
		if ti := anc[i].ti; ti.UsePrivilege != "" {
			d.reqs[d.n] = Requirement{Privilege: ti.UsePrivilege, On: anc[i].sec}
			on[d.n] = anc[i]
			d.n++
		}
	}
	if ti := n.ti; ti.UsePrivilege != "" && ti.UsePrivilege != priv && priv != PrivBrowse {
		d.reqs[d.n] = Requirement{Privilege: ti.UsePrivilege, On: sec}
		on[d.n] = n
		d.n++
	}
	d.reqs[d.n] = Requirement{Privilege: priv, On: sec}
	on[d.n] = n
	d.n++
	d.Allowed = true
	d.Admin = cl.admin >= 0
	direct := cl.direct.direct
	for i := 0; i < d.n; i++ {
		r := &d.reqs[i]
		if d.Admin {
			r.Met, r.Basis = true, BasisAdmin
			continue
		}
		m.holds(cl, direct, on[i], r)
		if !r.Met {
			d.Allowed = false
		}
	}
	return d
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

// holds fills r from ownership or grants. direct is the principal's own
// grants (securable -> privileges); n is the node of r.On.
func (m *Model) holds(cl *closure, direct map[ID]PrivSet, n *node, r *Requirement) {
	root := cl.rootID
	if own := n.owner; own == root || (n.ownerGroup >= 0 && hasBit(cl.bits, n.ownerGroup)) {
		r.Met, r.Basis, r.holderID = true, BasisOwner, own
		return
	}
	want := privBit(r.Privilege)
	if r.Privilege != PrivManage {
		want |= privBit(PrivAll)
	}
	pi, ai := privIndex(r.Privilege), privIndex(PrivAll)
	// Inherit from containing schema and catalog, never from the metastore.
	start := n
	for ; n != nil && (!n.meta || n == start); n = n.parent {
		if set := direct[n.id]; set&want != 0 {
			t := n.sec
			r.Met, r.Basis, r.holderID, r.GrantOn = true, BasisGrant, root, t
			r.GrantPriv = r.Privilege
			if set&privBit(r.Privilege) == 0 {
				r.GrantPriv = PrivAll
			}
			return
		}
		if len(cl.bits) > 0 {
			gi, gp := firstCommon(cl.bits, n.groups[pi]), r.Privilege
			if gi < 0 && r.Privilege != PrivManage {
				gi, gp = firstCommon(cl.bits, n.groups[ai]), PrivAll
			}
			if gi >= 0 {
				r.Met, r.Basis, r.holderID, r.GrantOn, r.GrantPriv = true, BasisGrant, m.groupByIdx[gi], n.sec, gp
				return
			}
		}
	}
}

// CanManage answers "may principal p grant and revoke on securable s (and
// change it)": metastore admins, the owner of s or of a containing schema or
// catalog, and holders of MANAGE on s (directly or inherited, with the USE
// privileges of its containers). On refusal the message names what is
// missing.
func (m *Model) CanManage(p ID, s ID) (bool, string) {
	sec, ok := m.securables[s]
	cl := m.closureOf(p)
	if !ok || cl == nil {
		return false, "unknown principal or securable"
	}
	if cl.admin >= 0 {
		return true, "metastore admin"
	}
	for _, a := range m.Ancestors(sec) {
		if i, ok := cl.index[a.Owner]; ok && a.Type != TypeMetastore {
			return true, fmt.Sprintf("owner of %s %s (%s)", a.Type, m.FullName(a), quoteAll(cl.path(i)))
		}
	}
	d := m.Check(p, PrivManage, s)
	if d.Allowed {
		return true, d.Reason()
	}
	name := m.FullName(sec)
	if sec.Type == TypeMetastore {
		return false, fmt.Sprintf("%s is not a metastore admin", QuoteIdent(cl.entries[0].p.Name))
	}
	miss := d.Missing()
	if miss != nil && miss.Privilege != PrivManage {
		return false, fmt.Sprintf("%s needs MANAGE on %s %s or its ownership, and lacks %s on %s %s",
			QuoteIdent(cl.entries[0].p.Name), sec.Type, name, miss.Privilege.SQL(), miss.On.Type, miss.On.FullName())
	}
	return false, fmt.Sprintf("%s needs MANAGE on %s %s (or on a containing schema or catalog) or ownership of it or of a container",
		QuoteIdent(cl.entries[0].p.Name), sec.Type, name)
}

// IsAdmin reports whether p is a metastore admin (directly or through a group).
func (m *Model) IsAdmin(p ID) bool {
	cl := m.closureOf(p)
	return cl != nil && cl.admin >= 0
}

// InClosure reports whether principal p is q or belongs to q transitively
// (including "account users").
func (m *Model) InClosure(p, q ID) bool {
	cl := m.closureOf(p)
	if cl == nil {
		return false
	}
	_, ok := cl.index[q]
	return ok
}

// MemberClosure returns the IDs of p and all its groups, transitively.
func (m *Model) MemberClosure(p ID) []ID {
	cl := m.closureOf(p)
	if cl == nil {
		return nil
	}
	out := make([]ID, len(cl.entries))
	for i, e := range cl.entries {
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

// CanSee reports whether p may see securable s in listings and DESCRIBE:
// admins; owners of it or of a container; holders of any privilege on it;
// holders of a privilege on a container that is inherited by objects of its
// type (e.g. USE_CONNECTION on a schema for its connections), or BROWSE. A
// container's USE privilege alone does not reveal what is inside (as in
// Unity Catalog).
func (m *Model) CanSee(p ID, s ID) bool {
	sec, ok := m.securables[s]
	cl := m.closureOf(p)
	if !ok || cl == nil {
		return false
	}
	if cl.admin >= 0 {
		return true
	}
	var inherit PrivSet
	if ti, ok := typeRegistry[sec.Type]; ok {
		for _, pr := range ti.Privileges {
			inherit |= privBit(pr)
		}
	}
	inherit |= privBit(PrivBrowse)
	for i, a := range m.Ancestors(sec) {
		if a.Type == TypeMetastore {
			break
		}
		if _, ok := cl.index[a.Owner]; ok {
			return true
		}
		mask := inherit
		if i == 0 {
			mask = ^PrivSet(0)
		}
		g := m.grantsOn[a.ID]
		for _, e := range cl.entries {
			if g[e.p.ID]&mask != 0 {
				return true
			}
		}
	}
	return false
}
