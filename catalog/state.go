package catalog

import (
	"sort"
	"sync/atomic"
)

// PrivilegeIndex is the position of a privilege (canonical spelling) in
// the privilege registry (KnownPrivileges) and its bit in a PrivSet, or -1
// for an unknown one. It is the one privilege index: the decision engine
// uses it too.
func PrivilegeIndex(p Privilege) int {
	for h := privHash(p); ; h = (h + 1) % uint(len(privTable)) {
		i := privTable[h]
		if i < 0 {
			return -1
		}
		if privileges[i].Privilege == p {
			return int(i)
		}
	}
}

// privTable finds a privilege by privHash with linear probing: on the
// allow path a privilege is looked up on every request, and this costs one
// string comparison where a scan of the registry costs several.
var privTable = func() (t [64]int8) {
	for i := range t {
		t[i] = -1
	}
	for i, p := range privileges {
		h := privHash(p.Privilege)
		for t[h] >= 0 {
			h = (h + 1) % uint(len(t))
		}
		t[h] = int8(i)
	}
	return t
}()

func privHash(p Privilege) uint {
	n := len(p)
	if n == 0 {
		return 0
	}
	return (uint(n)*31 + uint(p[0])*7 + uint(p[n-1])*3 + uint(p[n/2])) % 64
}

// PrivilegeAt is the privilege at index i of PrivilegeIndex ("" if none).
func PrivilegeAt(i int) Privilege {
	if i < 0 || i >= numPrivs {
		return ""
	}
	return privileges[i].Privilege
}

func privBit(p Privilege) PrivSet {
	if i := PrivilegeIndex(p); i >= 0 {
		return 1 << i
	}
	return 0
}

// PrivSet is a set of privileges as a bit mask.
type PrivSet uint32

// Has reports whether p is in the set.
func (s PrivSet) Has(p Privilege) bool { return s&privBit(p) != 0 }

// List returns the privileges in the set in stable order.
func (s PrivSet) List() []Privilege {
	var out []Privilege
	for i := range privileges {
		if s&(1<<i) != 0 {
			out = append(out, privileges[i].Privilege)
		}
	}
	return out
}

type childKey struct {
	parent ID
	typ    SecurableType
	name   string
}

// Model is the in-memory catalog: every principal, membership, securable and
// grant with the indexes the privilege function needs. It is not safe for
// concurrent mutation; the Service guards it with a RWMutex. Principal and
// Securable values are never mutated in place (copy on write), so pointers
// handed out stay consistent snapshots.
type Model struct {
	rev    Revision
	nextID ID

	principals  map[ID]*Principal
	byName      map[string]ID
	members     map[ID]map[ID]struct{} // group -> direct members
	memberOf    map[ID]map[ID]struct{} // member -> direct groups
	securables  map[ID]*Securable
	children    map[childKey]ID
	childrenOf  map[ID]map[ID]struct{}
	grantsOn    map[ID]map[ID]PrivSet // securable -> principal -> privileges
	grantsTo    map[ID]map[ID]PrivSet // principal -> securable -> privileges
	grantor     map[GrantKey]ID
	metastore   ID
	accountUsrs ID

	// folded counts the principals by FoldName (the confusable-name check).
	folded map[string]int
	// tokens indexes the access tokens by hash (tokens.go).
	tokens map[string]ID

	// az is the privilege state the evaluator reads (authz.go); epoch
	// stamps its records (Snapshot starts a new one) and freeBits are the
	// group bits of dropped groups.
	az       authzState
	epoch    atomic.Uint64
	freeBits []int32
	// secGen and princGen change with securables and principals (names a
	// Snapshot indexes); last is the newest Snapshot.
	secGen, princGen uint64
	last             atomic.Pointer[Snapshot]

	// gen changes with every mutation; the decision cache is valid for one gen.
	gen      uint64
	cache    decisionCache
	cacheOff bool // benchmarks of the uncached path
}

// NewModel returns an empty model.
func NewModel() *Model {
	m := &Model{
		nextID:     1,
		principals: map[ID]*Principal{}, byName: map[string]ID{},
		members: map[ID]map[ID]struct{}{}, memberOf: map[ID]map[ID]struct{}{},
		securables: map[ID]*Securable{}, children: map[childKey]ID{}, childrenOf: map[ID]map[ID]struct{}{},
		grantsOn: map[ID]map[ID]PrivSet{}, grantsTo: map[ID]map[ID]PrivSet{}, grantor: map[GrantKey]ID{},
		tokens: map[string]ID{},
	}
	m.epoch.Store(1)
	m.resetClosures()
	return m
}

// Revision returns the model's revision.
func (m *Model) Revision() Revision { return m.rev }

// Principal returns the principal with id.
func (m *Model) Principal(id ID) (*Principal, bool) { p, ok := m.principals[id]; return p, ok }

// PrincipalByName looks a principal up by its exact name.
func (m *Model) PrincipalByName(name string) (*Principal, bool) {
	id, ok := m.byName[name]
	if !ok {
		return nil, false
	}
	return m.principals[id], true
}

// Securable returns the securable with id.
func (m *Model) Securable(id ID) (*Securable, bool) { s, ok := m.securables[id]; return s, ok }

// Metastore returns the metastore securable.
func (m *Model) Metastore() *Securable { return m.securables[m.metastore] }

// Child looks up a child of parent by type and name.
func (m *Model) Child(parent ID, typ SecurableType, name string) (*Securable, bool) {
	id, ok := m.children[childKey{parent, typ, name}]
	if !ok {
		return nil, false
	}
	return m.securables[id], true
}

// Children returns the children of parent sorted by name.
func (m *Model) Children(parent ID) []*Securable {
	out := make([]*Securable, 0, len(m.childrenOf[parent]))
	for id := range m.childrenOf[parent] {
		out = append(out, m.securables[id])
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Principals returns all principals of kind (all kinds when kind is "") sorted by name.
func (m *Model) Principals(kind PrincipalKind) []*Principal {
	var out []*Principal
	for _, p := range m.principals {
		if kind == "" || p.Kind == kind {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Members returns the direct members of group g sorted by name.
func (m *Model) Members(g ID) []*Principal {
	var out []*Principal
	for id := range m.members[g] {
		out = append(out, m.principals[id])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// GroupsOf returns the direct groups of principal p sorted by name.
func (m *Model) GroupsOf(p ID) []*Principal {
	var out []*Principal
	for id := range m.memberOf[p] {
		out = append(out, m.principals[id])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// IsMember reports whether member is a direct member of group.
func (m *Model) IsMember(group, member ID) bool { _, ok := m.members[group][member]; return ok }

// GrantsOn returns the grants on securable s (principal -> privileges).
func (m *Model) GrantsOn(s ID) map[ID]PrivSet { return m.grantsOn[s] }

// GrantsTo returns the grants to principal p (securable -> privileges).
func (m *Model) GrantsTo(p ID) map[ID]PrivSet { return m.grantsTo[p] }

// Grantor returns who granted k (0 if unknown).
func (m *Model) Grantor(k GrantKey) ID { return m.grantor[k] }

// Ancestors returns s and its ancestors, innermost first (s, schema,
// catalog, metastore).
func (m *Model) Ancestors(s *Securable) []*Securable {
	out := []*Securable{s}
	for s.Parent != 0 {
		p, ok := m.securables[s.Parent]
		if !ok {
			break
		}
		out = append(out, p)
		s = p
	}
	return out
}

// FullName returns the dotted name of a securable (catalog.schema.object);
// the metastore's name is "metastore".
func (m *Model) FullName(s *Securable) string { return s.FullName() }

func (m *Model) computeFull(s *Securable) string {
	if s.Type == TypeMetastore {
		return MetastoreName
	}
	if par, ok := m.securables[s.Parent]; ok && par.Type != TypeMetastore {
		return par.FullName() + "." + QuoteIdent(s.Name)
	}
	return QuoteIdent(s.Name)
}

// --- mutation (used by the Service's planner and by Load) ---

func (m *Model) putPrincipal(p *Principal) {
	m.gen++
	m.princGen++
	old, ok := m.principals[p.ID]
	if ok && old.Name != p.Name {
		delete(m.byName, old.Name)
	}
	m.countFolded(old, ok, -1)
	m.countFolded(p, true, 1)
	m.principals[p.ID] = p
	m.byName[p.Name] = p.ID
	if p.Builtin && p.Kind == KindGroup && p.Name == AccountUsers {
		m.accountUsrs = p.ID
	}
	m.azPutPrincipal(p)
	if p.ID >= m.nextID {
		m.nextID = p.ID + 1
	}
}

func (m *Model) deletePrincipal(id ID) {
	p, ok := m.principals[id]
	if !ok {
		return
	}
	m.gen++
	m.princGen++
	for g := range m.memberOf[id] {
		delete(m.members[g], id)
	}
	for mem := range m.members[id] {
		delete(m.memberOf[mem], id)
		m.azMembership(Membership{Group: id, Member: mem}, false)
	}
	delete(m.memberOf, id)
	delete(m.members, id)
	for s, set := range m.grantsTo[id] {
		for _, pr := range set.List() {
			m.removeGrant(GrantKey{s, id, pr})
		}
	}
	delete(m.grantsTo, id)
	m.azDeletePrincipal(id)
	delete(m.principals, id)
	delete(m.byName, p.Name)
	m.countFolded(p, true, -1)
}

func (m *Model) addMember(ms Membership) {
	m.gen++
	if m.members[ms.Group] == nil {
		m.members[ms.Group] = map[ID]struct{}{}
	}
	if m.memberOf[ms.Member] == nil {
		m.memberOf[ms.Member] = map[ID]struct{}{}
	}
	m.members[ms.Group][ms.Member] = struct{}{}
	m.memberOf[ms.Member][ms.Group] = struct{}{}
	m.azMembership(ms, true)
}

func (m *Model) removeMember(ms Membership) {
	m.gen++
	delete(m.members[ms.Group], ms.Member)
	delete(m.memberOf[ms.Member], ms.Group)
	m.azMembership(ms, false)
}

func (m *Model) putSecurable(s *Securable) {
	m.gen++
	m.secGen++
	if old, ok := m.securables[s.ID]; ok {
		delete(m.children, childKey{old.Parent, old.Type, old.Name})
		delete(m.childrenOf[old.Parent], old.ID)
		if old.Type == TypeAccessToken {
			delete(m.tokens, old.Options[optTokenHash])
		}
	}
	if s.Type == TypeAccessToken {
		m.tokens[s.Options[optTokenHash]] = s.ID
	}
	s.full = m.computeFull(s)
	m.securables[s.ID] = s
	m.azPutSecurable(s)
	// A rename changes the full names of all descendants: replace them with
	// fresh copies (values handed out before stay unchanged).
	for cid := range m.childrenOf[s.ID] {
		if c := m.securables[cid]; c != nil && c.full != s.full+"."+QuoteIdent(c.Name) {
			cp := *c
			m.putSecurable(&cp)
		}
	}
	if s.Type == TypeMetastore {
		m.metastore = s.ID
	} else {
		m.children[childKey{s.Parent, s.Type, s.Name}] = s.ID
		if m.childrenOf[s.Parent] == nil {
			m.childrenOf[s.Parent] = map[ID]struct{}{}
		}
		m.childrenOf[s.Parent][s.ID] = struct{}{}
	}
	if s.ID >= m.nextID {
		m.nextID = s.ID + 1
	}
}

func (m *Model) deleteSecurable(id ID) {
	m.gen++
	m.secGen++
	s, ok := m.securables[id]
	if !ok {
		return
	}
	for p, set := range m.grantsOn[id] {
		for _, pr := range set.List() {
			m.removeGrant(GrantKey{id, p, pr})
		}
	}
	delete(m.grantsOn, id)
	m.azDeleteSecurable(id)
	delete(m.children, childKey{s.Parent, s.Type, s.Name})
	delete(m.childrenOf[s.Parent], id)
	delete(m.securables, id)
	if s.Type == TypeAccessToken {
		delete(m.tokens, s.Options[optTokenHash])
	}
}

func (m *Model) addGrant(g Grant) {
	m.gen++
	b := privBit(g.Privilege)
	if m.grantsOn[g.Securable] == nil {
		m.grantsOn[g.Securable] = map[ID]PrivSet{}
	}
	if m.grantsTo[g.Principal] == nil {
		m.grantsTo[g.Principal] = map[ID]PrivSet{}
	}
	m.grantsOn[g.Securable][g.Principal] |= b
	m.grantsTo[g.Principal][g.Securable] |= b
	m.grantor[g.Key()] = g.Grantor
	m.azGrant(g.Securable, g.Principal, PrivilegeIndex(g.Privilege), true)
}

func (m *Model) removeGrant(k GrantKey) {
	m.gen++
	b := privBit(k.Privilege)
	if set, ok := m.grantsOn[k.Securable][k.Principal]; ok {
		if set &^= b; set == 0 {
			delete(m.grantsOn[k.Securable], k.Principal)
		} else {
			m.grantsOn[k.Securable][k.Principal] = set
		}
	}
	if set, ok := m.grantsTo[k.Principal][k.Securable]; ok {
		if set &^= b; set == 0 {
			delete(m.grantsTo[k.Principal], k.Securable)
		} else {
			m.grantsTo[k.Principal][k.Securable] = set
		}
	}
	delete(m.grantor, k)
	m.azGrant(k.Securable, k.Principal, PrivilegeIndex(k.Privilege), false)
}

// HasGrant reports whether exactly this grant exists.
func (m *Model) HasGrant(k GrantKey) bool {
	return m.grantsOn[k.Securable][k.Principal].Has(k.Privilege)
}

// Stats returns counts for diagnostics and benchmarks.
func (m *Model) Stats() (principals, securables, grants int) {
	for _, g := range m.grantsOn {
		for _, set := range g {
			grants += len(set.List())
		}
	}
	return len(m.principals), len(m.securables), grants
}
