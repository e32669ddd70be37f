package enforce

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mandatehq/mandate/catalog"
)

// Privilege indexes, in the order of catalog.KnownPrivileges.
const (
	pAll = iota
	pBrowse
	pCreateCatalog
	pCreateConnection
	pCreateSchema
	pManage
	pUseCatalog
	pUseConnection
	pUseSchema
	pSelect
	numPrivs
)

// privIndex returns the index of a privilege in its canonical spelling, or
// -1: catalog's one privilege index (the constants above follow it; a test
// checks they agree).
func privIndex(p catalog.Privilege) int { return catalog.PrivilegeIndex(p) }

// privName is the privilege at index i.
func privName(i int) catalog.Privilege { return catalog.PrivilegeAt(i) }

// mask is a set of privilege indexes.
type mask uint16

// want returns the grants that give privilege pi: pi itself and, except
// for MANAGE, ALL_PRIVILEGES.
func want(pi int) mask {
	if pi == pManage {
		return 1 << pManage
	}
	return 1<<pi | 1<<pAll
}

// Securable type slots of the name index.
const (
	tCatalog = iota
	tSchema
	tConnection
	tTable
	numNamed
)

func typeSlot(t catalog.SecurableType) int {
	switch t {
	case catalog.TypeCatalog:
		return tCatalog
	case catalog.TypeSchema:
		return tSchema
	case catalog.TypeConnection:
		return tConnection
	case catalog.TypeTable:
		return tTable
	case catalog.TypeMetastore:
		return numNamed
	}
	return -1
}

// span is a range of one of the Snapshot's arenas.
type span struct{ off, n uint32 }

// Principal kinds in the hot principal record.
const (
	kindUser uint8 = iota
	kindGroup
	kindServicePrincipal
	kindOther
)

func kindCode(k catalog.PrincipalKind) uint8 {
	switch k {
	case catalog.KindUser:
		return kindUser
	case catalog.KindGroup:
		return kindGroup
	case catalog.KindServicePrincipal:
		return kindServicePrincipal
	}
	return kindOther
}

// principal is the part of a user, group or service principal the allow
// path reads (16 bytes). Its closure bitset is at p*words in Snapshot.bits.
type principal struct {
	direct span  // its own grants in Snapshot.direct (users and service principals only)
	gbit   int32 // its group bit, -1 unless a group
	kind   uint8
	admin  bool // metastore admin, itself or through a group of its closure
}

// principalInfo is the cold part of a principal, for explanations.
type principalInfo struct {
	name   string
	kind   catalog.PrincipalKind
	groups span // its direct groups in Snapshot.groupsOf, by name
	self   bool // Principal.Admin
}

// directGrant is a grant to a user or service principal.
type directGrant struct {
	node int32
	set  mask
}

// node is the part of a securable the allow path reads, one 64-byte cache
// line.
type node struct {
	owner      int32 // principal index of the owner, -1 if none
	ownerGroup int32 // group bit of the owner, -1 unless the owner is a group
	inherit    int32 // the container whose grants apply here too, -1 if none (never the metastore)
	usePriv    int8  // index of the type's USE privilege, -1 if the type has none
	nuse       uint8
	_          [2]byte
	uses       [2]int32 // containers with a USE privilege (catalog, schema), outermost first
	// eff[p] is the offset in Snapshot.eff of the bitset (words long) of
	// the groups holding privilege p here through a grant on this
	// securable or a container it inherits from, with ALL_PRIVILEGES
	// expanded (except for MANAGE); 0 when no group holds it.
	eff [numPrivs]uint32
}

// nodeInfo is the cold part of a securable, for names and explanations.
type nodeInfo struct {
	id     catalog.ID
	typ    catalog.SecurableType
	full   string // display name (catalog.Securable.FullName)
	parent int32
	raw    [numPrivs]span // groups granted p on this securable itself, in Snapshot.raw
}

// Snapshot is an immutable, compiled view of the catalog at one revision:
// principals with their transitive groups as bitsets, securables with the
// groups holding each privilege (inheritance and ALL_PRIVILEGES resolved),
// owners, USE prerequisites and a name index. It answers the same questions
// as catalog.Model.Check without locks or allocations on the allow path.
// It is safe for concurrent use.
type Snapshot struct {
	rev   catalog.Revision
	words int // words per group bitset

	princ    []principal
	pinfo    []principalInfo
	byName   map[string]uint32 // name -> index<<2 | kind code
	bits     []uint64          // closure bitsets, words per principal
	direct   []directGrant
	groupsOf []int32 // direct groups of each principal (principal indexes)
	groupP   []int32 // group bit -> principal index
	acctUsrs int32   // "account users", -1 if absent

	nodes     []node
	info      []nodeInfo
	eff       []uint64 // words-long bitsets; the first one is empty
	raw       []uint64
	names     [numNamed]map[string]int32 // name -> node; -1 marks an ambiguous name
	metastore int32

	// memo remembers answers of Allowed (see memoKey); nil when the
	// catalog is too large for its keys.
	memo     []atomic.Uint64
	memoMask uint64
	// reasons remembers rendered reasons (see reasonMemo); nil: off.
	reasons *reasonMemo
}

// memoSize is the number of answers a snapshot remembers (256 KiB).
const memoSize = 1 << 15

// Limits of the memo's exact 63-bit keys.
const (
	memoPrincipalBits = 21
	memoNodeBits      = 17
)

// Revision returns the catalog revision the snapshot was compiled at.
func (s *Snapshot) Revision() catalog.Revision { return s.rev }

func (s *Snapshot) closureBits(p int32) []uint64 {
	o := int(p) * s.words
	return s.bits[o : o+s.words]
}

func hasBit(bs []uint64, i int32) bool {
	w := int(i >> 6)
	return w < len(bs) && bs[w]&(1<<(uint(i)&63)) != 0
}

// Compile builds a snapshot of m. The caller must hold m's read lock
// (catalog.Service.Read); the snapshot keeps no reference to m.
func Compile(m *catalog.Model) *Snapshot { return gather(m).compile() }

// source is what a snapshot is compiled from, copied out of the Model under
// its read lock (gather) so that the compilation itself (compile) runs
// without holding the catalog. Principal and Securable values are never
// mutated in place by the catalog, so keeping pointers to them is safe.
type source struct {
	rev        catalog.Revision
	principals []*catalog.Principal   // by name
	groups     []*catalog.Principal   // by name
	members    [][]*catalog.Principal // direct members of groups[i]
	secs       []*catalog.Securable   // breadth first from the metastore
	parents    []int32                // index in secs of each one's container, -1 for the metastore
	grants     []rawGrant             // ordered by securable
}

type rawGrant struct {
	node int32
	p    catalog.ID
	set  catalog.PrivSet
}

// gather copies what compile needs out of m, in three concurrent parts
// (concurrent reads of the Model under its read lock are safe).
func gather(m *catalog.Model) *source {
	src := &source{rev: m.Revision()}
	var wg sync.WaitGroup
	wg.Go(func() { src.principals = m.Principals("") })
	wg.Go(func() {
		src.groups = m.Principals(catalog.KindGroup)
		src.members = make([][]*catalog.Principal, len(src.groups))
		for i, g := range src.groups {
			src.members[i] = m.Members(g.ID)
		}
	})
	if ms := m.Metastore(); ms != nil {
		src.secs, src.parents = []*catalog.Securable{ms}, []int32{-1}
		for i := 0; i < len(src.secs); i++ {
			for _, c := range m.Children(src.secs[i].ID) {
				src.secs = append(src.secs, c)
				src.parents = append(src.parents, int32(i))
			}
		}
		n := 0
		for _, sec := range src.secs {
			n += len(m.GrantsOn(sec.ID))
		}
		src.grants = make([]rawGrant, 0, n)
		for i, sec := range src.secs {
			for p, set := range m.GrantsOn(sec.ID) {
				src.grants = append(src.grants, rawGrant{int32(i), p, set})
			}
		}
	}
	wg.Wait()
	return src
}

func (src *source) compile() *Snapshot {
	s := &Snapshot{rev: src.rev, acctUsrs: -1, metastore: -1}
	ids := s.compilePrincipals(src)
	s.compileSecurables(src, ids)
	if len(s.princ) < 1<<memoPrincipalBits-1 && len(s.nodes) < 1<<memoNodeBits {
		s.memo, s.memoMask = make([]atomic.Uint64, memoSize), memoSize-1
	}
	s.reasons = new(reasonMemo)
	return s
}

// principalIDs maps catalog principal IDs to snapshot indexes.
type principalIDs []int32

func (ids principalIDs) get(id catalog.ID) (int32, bool) {
	if id <= 0 || int(id) >= len(ids) || ids[id] < 0 {
		return -1, false
	}
	return ids[id], true
}

// compilePrincipals indexes the principals and computes their closures.
func (s *Snapshot) compilePrincipals(src *source) principalIDs {
	ps := src.principals // sorted by name: indexes and group bits are deterministic
	var maxID catalog.ID
	for _, p := range ps {
		maxID = max(maxID, p.ID)
	}
	s.princ = make([]principal, len(ps))
	s.pinfo = make([]principalInfo, len(ps))
	s.byName = make(map[string]uint32, len(ps))
	for i, p := range ps {
		pr, in := &s.princ[i], &s.pinfo[i]
		pr.kind, pr.gbit = kindCode(p.Kind), -1
		in.name, in.kind, in.self = p.Name, p.Kind, p.Admin
		s.byName[p.Name] = uint32(i)<<2 | uint32(pr.kind)
		if p.Kind == catalog.KindGroup {
			pr.gbit = int32(len(s.groupP))
			s.groupP = append(s.groupP, int32(i))
			if p.Builtin && p.Name == catalog.AccountUsers {
				s.acctUsrs = int32(i)
			}
		}
	}
	pidx := make(principalIDs, maxID+1)
	for i := range pidx {
		pidx[i] = -1
	}
	for i, p := range ps {
		pidx[p.ID] = int32(i)
	}

	// Direct memberships, gathered per group in name order and sorted by
	// member with a stable counting sort: each principal's groups stay in
	// name order, so explanations are deterministic.
	type edge struct{ member, group int32 }
	var edges []edge
	for i, g := range src.groups {
		gi, ok := pidx.get(g.ID)
		if !ok {
			continue
		}
		for _, mem := range src.members[i] {
			if mi, ok := pidx.get(mem.ID); ok {
				edges = append(edges, edge{mi, gi})
			}
		}
	}
	counts := make([]uint32, len(ps)+1)
	for _, e := range edges {
		counts[e.member+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	s.groupsOf = make([]int32, len(edges))
	fill := append([]uint32(nil), counts[:len(ps)]...)
	for _, e := range edges {
		s.groupsOf[fill[e.member]] = e.group
		fill[e.member]++
	}
	for i := range s.pinfo {
		s.pinfo[i].groups = span{counts[i], counts[i+1] - counts[i]}
	}

	// Transitive closures. A group's closure is itself and every group
	// reachable through memberships (breadth first, so cycles are harmless);
	// a user's or service principal's is the union of its direct groups'
	// closures plus "account users" (whose own groups are not followed,
	// exactly as catalog.Model.Check does).
	w := (len(s.groupP) + 63) / 64
	s.words = w
	s.bits = make([]uint64, len(ps)*w)
	admins := make([]uint64, w)
	var queue []int32
	for _, g := range s.groupP {
		pr := &s.princ[g]
		bs := s.closureBits(g)
		bs[pr.gbit>>6] |= 1 << (uint(pr.gbit) & 63)
		queue = append(queue[:0], g)
		for i := 0; i < len(queue); i++ {
			for _, parent := range s.memberGroups(queue[i]) {
				b := s.princ[parent].gbit
				if !hasBit(bs, b) {
					bs[b>>6] |= 1 << (uint(b) & 63)
					queue = append(queue, parent)
				}
			}
		}
		if s.pinfo[g].self {
			admins[pr.gbit>>6] |= 1 << (uint(pr.gbit) & 63)
		}
	}
	for i := range s.princ {
		if s.princ[i].kind == kindGroup {
			continue
		}
		bs := s.closureBits(int32(i))
		for _, g := range s.memberGroups(int32(i)) {
			for k, x := range s.closureBits(g) {
				bs[k] |= x
			}
		}
		if s.acctUsrs >= 0 {
			b := s.princ[s.acctUsrs].gbit
			bs[b>>6] |= 1 << (uint(b) & 63)
		}
	}
	for i := range s.princ {
		pr := &s.princ[i]
		pr.admin = s.pinfo[i].self || intersects(s.closureBits(int32(i)), admins)
	}
	return pidx
}

func (s *Snapshot) memberGroups(p int32) []int32 {
	g := s.pinfo[p].groups
	return s.groupsOf[g.off : g.off+g.n]
}

func intersects(a, b []uint64) bool {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i]&b[i] != 0 {
			return true
		}
	}
	return false
}

// compileSecurables indexes the securables, their names and grants.
func (s *Snapshot) compileSecurables(src *source, ids principalIDs) {
	secs, parents := src.secs, src.parents // containers before their contents
	for i := range s.names {
		s.names[i] = make(map[string]int32)
	}
	if len(secs) == 0 {
		return
	}
	s.metastore = 0
	s.nodes = make([]node, len(secs))
	s.info = make([]nodeInfo, len(secs))

	// Grants: group grants become bitsets per securable and privilege;
	// grants to users and service principals are kept per principal,
	// ordered by securable (counting sort on the principal).
	type gg struct {
		node int32
		gbit int32
		set  mask
	}
	type dg struct {
		p int32
		g directGrant
	}
	groupGrants := make([]gg, 0, len(src.grants)/2)
	directs := make([]dg, 0, len(src.grants)/2)
	var conv [1024]mask // catalog.PrivSet -> mask, for the sets that occur
	var known [1024]bool
	toMask := func(ps catalog.PrivSet) mask {
		if ps < 1024 && known[ps] {
			return conv[ps]
		}
		var mk mask
		for i := 0; i < numPrivs; i++ {
			if ps.Has(privName(i)) {
				mk |= 1 << i
			}
		}
		if ps < 1024 {
			conv[ps], known[ps] = mk, true
		}
		return mk
	}
	for _, g := range src.grants {
		p, ok := ids.get(g.p)
		if !ok {
			continue
		}
		mk := toMask(g.set)
		if mk == 0 {
			continue
		}
		if b := s.princ[p].gbit; b >= 0 {
			groupGrants = append(groupGrants, gg{g.node, b, mk})
		} else {
			directs = append(directs, dg{p, directGrant{g.node, mk}})
		}
	}
	counts := make([]uint32, len(s.princ)+1)
	for _, d := range directs {
		counts[d.p+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	s.direct = make([]directGrant, len(directs))
	fill := append([]uint32(nil), counts[:len(s.princ)]...)
	for _, d := range directs {
		s.direct[fill[d.p]] = d.g
		fill[d.p]++
	}
	for i := range s.princ {
		s.princ[i].direct = span{counts[i], counts[i+1] - counts[i]}
	}

	w := s.words
	scratch := make([]uint64, numPrivs*w)
	s.eff = make([]uint64, w, 4*w*len(secs)) // offset 0: the empty set
	k := 0                                   // next group grant
	for i, sec := range secs {
		nd, in := &s.nodes[i], &s.info[i]
		in.id, in.typ, in.full, in.parent = sec.ID, sec.Type, sec.FullName(), parents[i]
		nd.owner, nd.ownerGroup, nd.inherit, nd.usePriv = -1, -1, -1, -1
		if o, ok := ids.get(sec.Owner); ok {
			nd.owner, nd.ownerGroup = o, s.princ[o].gbit
		}
		if ti, ok := catalog.LookupType(sec.Type); ok && ti.UsePrivilege != "" {
			nd.usePriv = int8(privIndex(ti.UsePrivilege))
		}
		if par := parents[i]; par >= 0 {
			pn := &s.nodes[par]
			nd.uses, nd.nuse = pn.uses, pn.nuse
			if pn.usePriv >= 0 && int(nd.nuse) < len(nd.uses) {
				nd.uses[nd.nuse] = par
				nd.nuse++
			}
			if s.info[par].typ != catalog.TypeMetastore {
				nd.inherit = par
			}
		}

		// Raw group grants on this securable, then the effective sets
		// (shared with the container when this securable adds nothing).
		clear(scratch)
		for ; k < len(groupGrants) && groupGrants[k].node == int32(i); k++ {
			g := groupGrants[k]
			for p := 0; p < numPrivs; p++ {
				if g.set&(1<<p) != 0 {
					scratch[p*w+int(g.gbit>>6)] |= 1 << (uint(g.gbit) & 63)
				}
			}
		}
		row := func(p int) []uint64 { return scratch[p*w : (p+1)*w] }
		for p := 0; p < numPrivs; p++ {
			in.raw[p] = appendTrimmed(&s.raw, row(p))
		}
		for p := 0; p < numPrivs; p++ {
			var inherited uint32
			if nd.inherit >= 0 {
				inherited = s.nodes[nd.inherit].eff[p]
			}
			if in.raw[p].n == 0 && (p == pManage || in.raw[pAll].n == 0) {
				nd.eff[p] = inherited
				continue
			}
			off := len(s.eff)
			s.eff = append(s.eff, row(p)...)
			set := s.eff[off:]
			if p != pManage {
				for j, x := range row(pAll) {
					set[j] |= x
				}
			}
			for j, x := range s.eff[inherited : inherited+uint32(w)] {
				set[j] |= x
			}
			nd.eff[p] = uint32(off)
		}
		s.indexName(secs, parents, i)
	}
}

// appendTrimmed appends bs without its trailing zero words to the arena.
func appendTrimmed(arena *[]uint64, bs []uint64) span {
	n := len(bs)
	for n > 0 && bs[n-1] == 0 {
		n--
	}
	if n == 0 {
		return span{}
	}
	off := len(*arena)
	*arena = append(*arena, bs[:n]...)
	return span{uint32(off), uint32(n)}
}

// indexName registers the names node i answers to (see resolve).
func (s *Snapshot) indexName(secs []*catalog.Securable, parents []int32, i int) {
	var path []string
	for j := int32(i); j >= 0 && s.info[j].typ != catalog.TypeMetastore; j = parents[j] {
		path = append([]string{secs[j].Name}, path...)
	}
	slot := typeSlot(s.info[i].typ)
	if slot < 0 || slot == numNamed || len(path) == 0 {
		return
	}
	keys := []string{strings.Join(path, ".")}
	if full := s.info[i].full; full != keys[0] {
		keys = append(keys, full)
	}
	if len(path) >= 2 && path[0] == catalog.SystemCatalog {
		// Two-part names resolve in the current catalog, "system" for the
		// API; one-part connection names mean system.ai.<name>.
		keys = append(keys, strings.Join(path[1:], "."))
		if len(path) == 3 && path[1] == "ai" && slot == tConnection {
			keys = append(keys, path[2])
		}
	}
	names := s.names[slot]
	for _, k := range keys {
		if prev, dup := names[k]; dup && prev != int32(i) {
			names[k] = -1 // ambiguous
			continue
		}
		names[k] = int32(i)
	}
}
