package catalog

import (
	"sort"
	"sync/atomic"
)

// The privilege state: what the evaluator (privilege.go) reads, kept by
// the Model in step with every change and frozen into Snapshots.
//
// Principals and securables are records in tables indexed by ID
// (cowTable: pages copied on write). A record that a Snapshot may share is
// never changed: the Model stamps records (and the tables' pages) with its
// epoch, Freeze starts a new epoch, and a change to a record of an older
// epoch copies it first (with its slices and bitsets) and the page that
// points to it. Freezing therefore copies three slices of page pointers
// (one per 256 principals or securables), whatever the number of grants,
// and a change copies only the records and pages it touches. The transitive
// group sets (closures) are computed on first use and kept in a table
// that a change of memberships replaces; a Snapshot keeps the table of its
// revision.

// bitset is a set of group bits. A bitset in a record is immutable once
// the record may be shared (see ownNode).
type bitset []uint64

func (b bitset) has(i int32) bool {
	w := int(i >> 6)
	return i >= 0 && w < len(b) && b[w]&(1<<(uint(i)&63)) != 0
}

func (b bitset) with(i int32) bitset {
	for len(b) <= int(i>>6) {
		b = append(b, 0)
	}
	b[i>>6] |= 1 << (uint(i) & 63)
	return b
}

// without clears bit i and trims trailing zero words.
func (b bitset) without(i int32) bitset {
	if w := int(i >> 6); w < len(b) {
		b[w] &^= 1 << (uint(i) & 63)
	}
	n := len(b)
	for n > 0 && b[n-1] == 0 {
		n--
	}
	return b[:n]
}

func intersects(a, b bitset) bool {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i]&b[i] != 0 {
			return true
		}
	}
	return false
}

// principalRec is a principal as the evaluator sees it.
type principalRec struct {
	p      *Principal
	epoch  uint64
	gbit   int32         // dense group bit, -1 unless a group
	groups []ID          // direct groups
	direct []directGrant // grants to the principal itself, by securable ID
}

// directGrant is the privileges granted to one principal on one securable.
type directGrant struct {
	on  ID
	set PrivSet
}

// maxDepth bounds a securable's lineage: itself and its containers up to
// the metastore (metastore, catalog, schema, object, policy);
// TestTypeRegistry checks the registry stays within it.
const maxDepth = 6

// maxReqs bounds the requirements of one decision: the containers' USE
// privileges, the securable's own, the privilege.
const maxReqs = maxDepth + 1

// nodeRec is a securable as the evaluator sees it.
type nodeRec struct {
	sec        *Securable
	ti         *TypeInfo // nil for a type the registry does not know
	epoch      uint64
	id, parent ID
	owner      ID
	ownerGroup int32 // group bit of the owner, -1 unless the owner is a group
	usePriv    int8  // index of the type's USE privilege, -1 if none
	inherited  bool  // grants here apply to the securables inside (TypeInfo.Inherited)
	depth      uint8 // containers above it (the metastore: 0)
	// groups[p] is the set of groups granted privilege p on this
	// securable itself (inheritance is resolved when evaluating).
	groups [numPrivs]bitset
}

// closure is a principal's transitive groups: bits for the evaluator,
// and (computed on first use) the breadth-first paths for explanations.
type closure struct {
	id    ID
	admin bool   // metastore admin, itself or through a group
	bits  bitset // the groups, by group bit ("account users" for users and service principals)
	p     *Principal
	paths atomic.Pointer[closurePaths]
	// inline holds bits when they fit (up to 1,024 groups), so that a
	// decision finds them next to the closure rather than in another
	// cache line far away.
	inline [inlineWords]uint64
}

const inlineWords = 16

// closurePaths lists the principal and its groups breadth first (each
// principal's direct groups in name order), so that the path to each is a
// shortest one and explanations are deterministic.
type closurePaths struct {
	entries []closureEntry // entries[0] is the principal itself
	admin   int            // the first entry that is an admin, -1 if none
}

type closureEntry struct {
	p      *Principal
	gbit   int32
	parent int32 // entry this one was reached from, -1 for the root
}

// closureTable holds the closures of one membership state, by principal
// ID. Entries are filled on first use, by any reader (atomically); a change
// of memberships gives the Model a new table, so a table only ever holds
// closures that are valid for every state sharing it.
type closureTable struct {
	slots []atomic.Pointer[closure]
	epoch uint64      // the Model's epoch when the table was made
	used  atomic.Bool // a closure was stored in it
	// warm: the principals of an ID below it have their closure here (in
	// every state sharing the table, as far as warmClosures knows), so
	// that warming a snapshot after a change that added no principal
	// costs nothing. Only warmClosures reads it: a principal it misses
	// gets its closure on first use, as without it.
	warm atomic.Int64
}

// authzState is the privilege state: live in the Model, frozen in a
// Snapshot.
type authzState struct {
	princ     cowTable[*principalRec] // by principal ID
	nodes     cowTable[*nodeRec]      // by securable ID
	groupP    cowTable[ID]            // group bit -> principal ID (0: free)
	acctUsers ID
	metastore ID
	cl        *closureTable
}

func (st *authzState) principal(id ID) *principalRec {
	if id <= 0 || int(id) >= st.princ.len() {
		return nil
	}
	return st.princ.at(int(id))
}

func (st *authzState) node(id ID) *nodeRec {
	if id <= 0 || int(id) >= st.nodes.len() {
		return nil
	}
	return st.nodes.at(int(id))
}

// closure returns the closure of principal id (nil if unknown), computing
// and remembering it on first use.
func (st *authzState) closure(id ID) *closure {
	pr := st.principal(id)
	if pr == nil {
		return nil
	}
	return st.closureOf(id, pr)
}

// closureOf is closure for a known record.
func (st *authzState) closureOf(id ID, pr *principalRec) *closure {
	var slot *atomic.Pointer[closure]
	if st.cl != nil && int(id) < len(st.cl.slots) {
		slot = &st.cl.slots[id]
		if c := slot.Load(); c != nil {
			return c
		}
	}
	c := st.computeClosure(pr)
	if slot != nil {
		st.cl.used.Store(true)
	}
	if slot != nil && !slot.CompareAndSwap(nil, c) {
		return slot.Load()
	}
	return c
}

// computeClosure: a group's closure is itself and every group reachable
// through memberships (breadth first, so cycles are harmless); a user's
// or service principal's is the union of its direct groups' closures plus
// "account users" (whose own groups are not followed).
func (st *authzState) computeClosure(pr *principalRec) *closure {
	c := &closure{id: pr.p.ID, p: pr.p, admin: pr.p.Admin}
	if pr.gbit >= 0 {
		var bits bitset
		bits = bits.with(pr.gbit)
		queue := []*principalRec{pr}
		for i := 0; i < len(queue); i++ {
			for _, g := range queue[i].groups {
				gr := st.principal(g)
				if gr == nil || gr.gbit < 0 || bits.has(gr.gbit) {
					continue
				}
				bits = bits.with(gr.gbit)
				c.admin = c.admin || gr.p.Admin
				queue = append(queue, gr)
			}
		}
		c.setBits(bits)
		return c
	}
	var bits bitset
	for _, g := range pr.groups {
		gc := st.closure(g)
		if gc == nil || st.principal(g).gbit < 0 {
			continue
		}
		for len(bits) < len(gc.bits) {
			bits = append(bits, 0)
		}
		for i, w := range gc.bits {
			bits[i] |= w
		}
		c.admin = c.admin || gc.admin
	}
	if au := st.principal(st.acctUsers); au != nil && au.gbit >= 0 {
		bits = bits.with(au.gbit)
		c.admin = c.admin || au.p.Admin
	}
	c.setBits(bits)
	return c
}

// setBits stores bits in c, inline when they fit.
func (c *closure) setBits(bits bitset) {
	if len(bits) <= inlineWords {
		n := copy(c.inline[:], bits)
		bits = c.inline[:n:n]
	}
	c.bits = bits
}

// warmClosures computes every closure not known yet, in bulk: groups
// first (breadth first), then users and service principals as the union
// of their groups' closures, with the bitsets in one allocation.
func (st *authzState) warmClosures() {
	if st.cl == nil || int64(st.princ.len()) <= st.cl.warm.Load() {
		return
	}
	defer func() { // every principal of this state has its closure now
		for n := int64(st.princ.len()); ; {
			if w := st.cl.warm.Load(); w >= n || st.cl.warm.CompareAndSwap(w, n) {
				return
			}
		}
	}()
	words := (st.groupP.len() + 63) / 64
	var todo []ID
	for id, pr := range st.princ.all {
		if pr != nil && int(id) < len(st.cl.slots) && st.cl.slots[id].Load() == nil {
			todo = append(todo, ID(id))
		}
	}
	if len(todo) == 0 {
		return
	}
	var arena []uint64
	if words > inlineWords {
		arena = make([]uint64, len(todo)*words)
	}
	cls := make([]closure, len(todo))
	var queue []*principalRec
	for pass := 0; pass < 2; pass++ { // groups, then the others
		for i, id := range todo {
			pr := st.princ.at(int(id))
			if (pr.gbit >= 0) != (pass == 0) {
				continue
			}
			c := &cls[i]
			bits := bitset(c.inline[:min(words, inlineWords):min(words, inlineWords)])
			if words > inlineWords {
				bits = arena[i*words : (i+1)*words : (i+1)*words]
			}
			c.id, c.p, c.admin = pr.p.ID, pr.p, pr.p.Admin
			if pr.gbit >= 0 {
				bits[pr.gbit>>6] |= 1 << (uint(pr.gbit) & 63)
				queue = append(queue[:0], pr)
				for k := 0; k < len(queue); k++ {
					for _, g := range queue[k].groups {
						gr := st.principal(g)
						if gr == nil || gr.gbit < 0 || bits.has(gr.gbit) {
							continue
						}
						bits[gr.gbit>>6] |= 1 << (uint(gr.gbit) & 63)
						c.admin = c.admin || gr.p.Admin
						queue = append(queue, gr)
					}
				}
			} else {
				for _, g := range pr.groups {
					gr := st.principal(g)
					if gr == nil || gr.gbit < 0 {
						continue
					}
					gc := st.closure(g)
					for w, x := range gc.bits {
						bits[w] |= x
					}
					c.admin = c.admin || gc.admin
				}
				if au := st.principal(st.acctUsers); au != nil && au.gbit >= 0 {
					bits[au.gbit>>6] |= 1 << (uint(au.gbit) & 63)
					c.admin = c.admin || au.p.Admin
				}
			}
			n := len(bits)
			for n > 0 && bits[n-1] == 0 {
				n--
			}
			c.bits = bits[:n]
			st.cl.used.Store(true)
			st.cl.slots[id].CompareAndSwap(nil, c)
		}
	}
}

// pathsOf returns the breadth-first paths of c (computed on first use).
func (st *authzState) pathsOf(c *closure) *closurePaths {
	if ps := c.paths.Load(); ps != nil {
		return ps
	}
	root := st.principal(c.id)
	ps := &closurePaths{admin: -1}
	gbit := int32(-1)
	if root != nil {
		gbit = root.gbit
	}
	ps.entries = append(ps.entries, closureEntry{p: c.p, gbit: gbit, parent: -1})
	var seen bitset
	if gbit >= 0 {
		seen = seen.with(gbit)
	}
	add := func(g *principalRec, from int) {
		if g == nil || g.gbit < 0 || seen.has(g.gbit) {
			return
		}
		seen = seen.with(g.gbit)
		ps.entries = append(ps.entries, closureEntry{p: g.p, gbit: g.gbit, parent: int32(from)})
	}
	var direct []*principalRec
	for i := 0; i < len(ps.entries); i++ {
		rec := st.principal(ps.entries[i].p.ID)
		if rec == nil {
			continue
		}
		direct = direct[:0]
		for _, g := range rec.groups {
			if gr := st.principal(g); gr != nil {
				direct = append(direct, gr)
			}
		}
		if i == 0 && gbit < 0 {
			// Users and service principals are in "account users" directly.
			if au := st.principal(st.acctUsers); au != nil {
				direct = append(direct, au)
			}
		}
		sort.Slice(direct, func(a, b int) bool { return direct[a].p.Name < direct[b].p.Name })
		for _, gr := range direct {
			add(gr, i)
		}
	}
	for i, e := range ps.entries {
		if e.p.Admin {
			ps.admin = i
			break
		}
	}
	if !c.paths.CompareAndSwap(nil, ps) {
		return c.paths.Load()
	}
	return ps
}

// path returns the names from the root to entry i.
func (ps *closurePaths) path(i int) []string {
	var rev []string
	for ; i >= 0; i = int(ps.entries[i].parent) {
		rev = append(rev, ps.entries[i].p.Name)
	}
	for l, r := 0, len(rev)-1; l < r; l, r = l+1, r-1 {
		rev[l], rev[r] = rev[r], rev[l]
	}
	return rev
}

// find returns the entry of principal id, or -1.
func (ps *closurePaths) find(id ID) int {
	for i, e := range ps.entries {
		if e.p.ID == id {
			return i
		}
	}
	return -1
}

// closest returns the first entry (breadth first) whose group is in set,
// or -1.
func (ps *closurePaths) closest(set bitset) int {
	for i, e := range ps.entries {
		if e.gbit >= 0 && set.has(e.gbit) {
			return i
		}
	}
	return -1
}

// directOn returns the privileges granted on securable on in d (sorted).
func directOn(d []directGrant, on ID) PrivSet {
	lo, hi := 0, len(d)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if d[mid].on < on {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(d) && d[lo].on == on {
		return d[lo].set
	}
	return 0
}

// freeze returns a copy of the live state that later changes to the Model
// do not affect (the records it shares are copied before they change).
func (st *authzState) freeze() authzState {
	f := *st
	f.princ = st.princ.freeze()
	f.nodes = st.nodes.freeze()
	f.groupP = st.groupP.freeze()
	return f
}

// --- maintenance by the Model (under its write lock) ---

// ownPrincipal returns the live record of id, copied first if a Snapshot
// may share it.
func (m *Model) ownPrincipal(id ID) *principalRec {
	rec := m.az.principal(id)
	if rec == nil || rec.epoch == m.epoch.Load() {
		return rec
	}
	cp := *rec
	cp.epoch = m.epoch.Load()
	cp.groups = append([]ID(nil), rec.groups...)
	cp.direct = append([]directGrant(nil), rec.direct...)
	m.az.princ.set(int(id), &cp, cp.epoch)
	return &cp
}

// ownNode is ownPrincipal for securables.
func (m *Model) ownNode(id ID) *nodeRec {
	rec := m.az.node(id)
	if rec == nil || rec.epoch == m.epoch.Load() {
		return rec
	}
	cp := *rec
	cp.epoch = m.epoch.Load()
	for i, b := range rec.groups {
		if len(b) > 0 {
			cp.groups[i] = append(bitset(nil), b...)
		}
	}
	m.az.nodes.set(int(id), &cp, cp.epoch)
	return &cp
}

// resetClosures starts a new closure table (memberships changed). A
// table that holds no closure and that no Snapshot shares (made in this
// epoch) is as good as a new one and is kept: loading a catalog adds its
// memberships one after the other, and a new table each time made the
// load quadratic (principals × memberships).
func (m *Model) resetClosures() {
	if cl := m.az.cl; cl != nil && cl.epoch == m.epoch.Load() && !cl.used.Load() && len(cl.slots) >= m.az.princ.len() {
		cl.warm.Store(0)
		return
	}
	m.az.cl = &closureTable{slots: make([]atomic.Pointer[closure], m.az.princ.len()+64), epoch: m.epoch.Load()}
}

// azPutPrincipal records a new or changed principal.
func (m *Model) azPutPrincipal(p *Principal) {
	epoch := m.epoch.Load()
	m.az.princ.grow(int(p.ID)+1, epoch)
	if rec := m.ownPrincipal(p.ID); rec != nil {
		old := rec.p
		rec.p = p
		if old.Name != p.Name || old.Admin != p.Admin || old.Kind != p.Kind {
			m.resetClosures()
		}
	} else {
		rec := &principalRec{p: p, epoch: m.epoch.Load(), gbit: -1}
		if p.Kind == KindGroup {
			if n := len(m.freeBits); n > 0 {
				rec.gbit, m.freeBits = m.freeBits[n-1], m.freeBits[:n-1]
				m.az.groupP.set(int(rec.gbit), p.ID, epoch)
			} else {
				rec.gbit = int32(m.az.groupP.len())
				m.az.groupP.appendv(p.ID, epoch)
			}
		}
		for g := range m.memberOf[p.ID] {
			rec.groups = append(rec.groups, g)
		}
		m.az.princ.set(int(p.ID), rec, epoch)
		if cl := m.az.cl; cl != nil && int64(p.ID) < cl.warm.Load() {
			cl.warm.Store(int64(p.ID)) // an ID below the others' (loading): warm it too
		}
		if m.az.cl == nil || int(p.ID) >= len(m.az.cl.slots) {
			// A larger table keeping the closures already computed.
			old := m.az.cl
			m.resetClosures()
			if old != nil {
				for i := range old.slots {
					if c := old.slots[i].Load(); c != nil {
						m.az.cl.used.Store(true)
						m.az.cl.slots[i].Store(c)
					}
				}
			}
		}
	}
	if p.Builtin && p.Kind == KindGroup && p.Name == AccountUsers && m.az.acctUsers != p.ID {
		m.az.acctUsers = p.ID
		m.resetClosures()
	}
}

// azDeletePrincipal forgets a principal (its grants are already revoked).
func (m *Model) azDeletePrincipal(id ID) {
	rec := m.az.principal(id)
	if rec == nil {
		return
	}
	if rec.gbit >= 0 {
		m.az.groupP.set(int(rec.gbit), 0, m.epoch.Load())
		m.freeBits = append(m.freeBits, rec.gbit)
	}
	m.az.princ.set(int(id), nil, m.epoch.Load())
	if m.az.acctUsers == id {
		m.az.acctUsers = 0
	}
	m.resetClosures()
}

// azMembership records that member joined (or left) group.
func (m *Model) azMembership(ms Membership, add bool) {
	rec := m.ownPrincipal(ms.Member)
	if rec == nil {
		return
	}
	i := 0
	for ; i < len(rec.groups) && rec.groups[i] != ms.Group; i++ {
	}
	switch {
	case add && i == len(rec.groups):
		rec.groups = append(rec.groups, ms.Group)
	case !add && i < len(rec.groups):
		rec.groups = append(rec.groups[:i], rec.groups[i+1:]...)
	}
	m.resetClosures()
}

// azPutSecurable records a new or changed securable (its container is
// recorded before it).
func (m *Model) azPutSecurable(s *Securable) {
	m.az.nodes.grow(int(s.ID)+1, m.epoch.Load())
	rec := m.ownNode(s.ID)
	if rec == nil {
		rec = &nodeRec{epoch: m.epoch.Load()}
		m.az.nodes.set(int(s.ID), rec, rec.epoch)
	}
	rec.sec, rec.ti, rec.id, rec.parent, rec.owner = s, typeRegistry[s.Type], s.ID, s.Parent, s.Owner
	rec.ownerGroup = -1
	if o := m.az.principal(s.Owner); o != nil {
		rec.ownerGroup = o.gbit
	}
	rec.usePriv, rec.inherited = -1, false
	if rec.ti != nil {
		if rec.ti.UsePrivilege != "" {
			rec.usePriv = int8(PrivilegeIndex(rec.ti.UsePrivilege))
		}
		rec.inherited = rec.ti.Inherited && s.Type != TypeMetastore
	}
	rec.depth = 0
	if s.Type == TypeMetastore {
		rec.parent = 0
	} else if par := m.az.node(s.Parent); par != nil {
		if int(par.depth)+2 > maxDepth {
			panic("catalog: securable nested deeper than maxDepth")
		}
		rec.depth = par.depth + 1
	}
	if s.Type == TypeMetastore {
		m.az.metastore = s.ID
	}
}

// azDeleteSecurable forgets a securable (its grants are already revoked).
func (m *Model) azDeleteSecurable(id ID) {
	if m.az.node(id) != nil {
		m.az.nodes.set(int(id), nil, m.epoch.Load())
	}
}

// azGrant records privilege pi granted to (or revoked from) principal p on
// securable on.
func (m *Model) azGrant(on ID, p ID, pi int, add bool) {
	pr := m.az.principal(p)
	if pr == nil || pi < 0 {
		return
	}
	if pr.gbit >= 0 {
		n := m.ownNode(on)
		if n == nil {
			return
		}
		if add {
			n.groups[pi] = n.groups[pi].with(pr.gbit)
		} else {
			n.groups[pi] = n.groups[pi].without(pr.gbit)
		}
		return
	}
	pr = m.ownPrincipal(p)
	d := pr.direct
	i := sort.Search(len(d), func(i int) bool { return d[i].on >= on })
	bit := PrivSet(1) << pi
	switch {
	case i < len(d) && d[i].on == on:
		if add {
			d[i].set |= bit
		} else if d[i].set &^= bit; d[i].set == 0 {
			pr.direct = append(d[:i], d[i+1:]...)
		}
	case add:
		d = append(d, directGrant{})
		copy(d[i+1:], d[i:])
		d[i] = directGrant{on: on, set: bit}
		pr.direct = d
	}
}
