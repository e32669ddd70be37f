package catalog

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Snapshot is an immutable view of the catalog's principals, securables
// and grants at one revision, with the privilege evaluator (the same code
// as Model.Check) and the name index of the authorization API. It is safe
// for concurrent use without locks; the Model it was taken from may go on
// changing. Taking one (Model.Snapshot) copies three slices of page
// pointers (one per 256 records); the pages and the records they point to
// are shared until the Model changes them.
type Snapshot struct {
	rev              Revision
	gen              uint64
	secGen, princGen uint64
	st               authzState
	// The name indexes (and the list of policies) are built on first use
	// or by Warm, outside the catalog's lock, from the frozen state; a
	// snapshot takes them from the previous one while no securable
	// (principal) was created, changed or dropped.
	names      atomic.Pointer[securableIndex]
	principals atomic.Pointer[principalIndex]
	mu         sync.Mutex // serializes building them
}

// principalIndex maps principal names to ID<<2 | kind code.
type principalIndex map[string]uint64

type securableIndex struct {
	byType   [8]typeNames        // the named types (TestTypeRegistry: at most 8)
	policies []*Securable        // by name
	pins     map[ID][]*Securable // tool pins by connection
}

type typeNames struct {
	t     SecurableType
	names map[string]ID // names -> ID (Resolve); -1: ambiguous
}

// of returns the name map of type t, or nil.
func (idx *securableIndex) of(t SecurableType) map[string]ID {
	for i := range idx.byType {
		if u := idx.byType[i].t; len(u) == len(t) && u == t {
			return idx.byType[i].names
		}
	}
	return nil
}

// Snapshot returns a snapshot of the model as it is. The caller must hold
// the model's read lock, which is needed only to copy three slices of
// page pointers; the snapshot keeps no reference to the Model. Repeated calls
// without a change return the same snapshot.
func (m *Model) Snapshot() *Snapshot {
	prev := m.last.Load()
	if prev != nil && prev.gen == m.gen && prev.rev == m.rev {
		return prev
	}
	s := &Snapshot{rev: m.rev, gen: m.gen, secGen: m.secGen, princGen: m.princGen, st: m.az.freeze()}
	m.epoch.Add(1) // records shared with s are copied before they change
	if prev != nil && prev.princGen == m.princGen {
		s.principals.Store(prev.principals.Load()) // nil if prev has not built it
	}
	if prev != nil && prev.secGen == m.secGen {
		s.names.Store(prev.names.Load())
	}
	m.last.Store(s)
	return s
}

// securables returns the securable index, building it on first use.
func (s *Snapshot) securables() *securableIndex {
	if idx := s.names.Load(); idx != nil {
		return idx
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if idx := s.names.Load(); idx != nil {
		return idx
	}
	idx := s.indexSecurables()
	s.names.Store(&idx)
	return &idx
}

// principalNames returns the principal index, building it on first use.
func (s *Snapshot) principalNames() principalIndex {
	if idx := s.principals.Load(); idx != nil {
		return *idx
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if idx := s.principals.Load(); idx != nil {
		return *idx
	}
	idx := s.indexPrincipals()
	s.principals.Store(&idx)
	return idx
}

func (s *Snapshot) indexPrincipals() principalIndex {
	byName := make(principalIndex, s.st.princ.len())
	for _, pr := range s.st.princ.all {
		if pr != nil {
			byName[pr.p.Name] = uint64(pr.p.ID)<<2 | kindCode(pr.p.Kind)
		}
	}
	return byName
}

// Principal kinds in the principal index.
const (
	kindUser uint64 = iota
	kindGroup
	kindServicePrincipal
	kindOther
)

var kindOf = [...]PrincipalKind{KindUser, KindGroup, KindServicePrincipal, ""}

func kindCode(k PrincipalKind) uint64 {
	switch k {
	case KindUser:
		return kindUser
	case KindGroup:
		return kindGroup
	case KindServicePrincipal:
		return kindServicePrincipal
	}
	return kindOther
}

// indexSecurables registers the names each securable answers to in the
// API: "catalog.schema.name" as stored and the quoted display form
// (Securable.FullName); as ResolveName does for SQL, names under the
// "system" catalog also answer without it (two-part names resolve in
// "system" for the API) and a type with a Home answers to its one-part
// name there (system.ai.<connection>). A name two securables answer to
// is ambiguous. It also lists the policies.
func (s *Snapshot) indexSecurables() securableIndex {
	idx := securableIndex{}
	k := 0
	for t, ti := range typeRegistry {
		if ti.Named && ti.Depth() > 0 {
			idx.byType[k] = typeNames{t, map[string]ID{}}
			k++
		}
	}
	var path []string
	for _, n := range s.st.nodes.all {
		if n == nil {
			continue
		}
		if n.sec.Type == TypePolicy {
			idx.policies = append(idx.policies, n.sec)
		}
		if n.sec.Type == TypeToolPin {
			if idx.pins == nil {
				idx.pins = map[ID][]*Securable{}
			}
			idx.pins[n.sec.Parent] = append(idx.pins[n.sec.Parent], n.sec)
		}
		if n.ti == nil || !n.ti.Named || n.ti.Depth() == 0 {
			continue
		}
		path = path[:0]
		for t := n; t != nil && t.sec.Type != TypeMetastore; t = s.st.node(t.sec.Parent) {
			path = append(path, t.sec.Name)
		}
		for l, r := 0, len(path)-1; l < r; l, r = l+1, r-1 {
			path[l], path[r] = path[r], path[l]
		}
		if len(path) != n.ti.Depth() {
			continue
		}
		keys := []string{strings.Join(path, ".")}
		if full := n.sec.FullName(); full != keys[0] {
			keys = append(keys, full)
		}
		if len(path) >= 2 && path[0] == SystemCatalog {
			keys = append(keys, strings.Join(path[1:], "."))
		}
		if h := n.ti.Home; len(h) > 0 && len(h) == len(path)-1 && strings.Join(h, ".") == strings.Join(path[:len(h)], ".") {
			keys = append(keys, path[len(path)-1])
		}
		names := idx.of(n.sec.Type)
		for _, k := range keys {
			if prev, dup := names[k]; dup && prev != n.sec.ID {
				names[k] = -1
				continue
			}
			names[k] = n.sec.ID
		}
	}
	sort.Slice(idx.policies, func(i, j int) bool { return idx.policies[i].Name < idx.policies[j].Name })
	return idx
}

// Revision returns the catalog revision of the snapshot.
func (s *Snapshot) Revision() Revision { return s.rev }

// Warm computes every principal's transitive groups now, so that later
// decisions neither compute nor allocate them, and builds the name
// indexes (the decision engine calls it when it builds a snapshot, outside
// the catalog's lock).
func (s *Snapshot) Warm() {
	s.st.warmClosures()
	s.securables()
	s.principalNames()
}

// Resolution is the outcome of Resolve.
type Resolution int

const (
	Resolved    Resolution = iota
	NotFound               // no securable of the type answers to the name
	Ambiguous              // two securables answer to it
	UnknownType            // the type is not a named securable type
)

// Resolve maps a securable reference of the authorization API to its ID:
// a dotted name as stored (catalog.schema.connection) or the display form
// with quoted identifiers (Securable.FullName); a one-part connection name
// means system.ai.<name> and two-part names resolve in the "system"
// catalog, as ResolveName does. A name that matches nothing is retried in
// lower case (unquoted SQL identifiers are stored folded), and a type in
// upper case; only these retries allocate. The metastore answers to ""
// and "metastore".
func (s *Snapshot) Resolve(t SecurableType, name string) (ID, Resolution) {
	if id, ok := s.securables().of(t)[name]; ok {
		if id < 0 {
			return 0, Ambiguous
		}
		return id, Resolved
	}
	ti, ok := typeRegistry[t]
	if !ok {
		if up := SecurableType(strings.ToUpper(string(t))); up != t {
			return s.Resolve(up, name)
		}
		return 0, UnknownType
	}
	if t == TypeMetastore {
		if s.st.metastore != 0 && (name == "" || strings.EqualFold(name, MetastoreName)) {
			return s.st.metastore, Resolved
		}
		return 0, NotFound
	}
	if !ti.Named || ti.Depth() == 0 {
		return 0, UnknownType
	}
	if lower := strings.ToLower(name); lower != name {
		return s.Resolve(t, lower)
	}
	return 0, NotFound
}

// PrincipalByName returns the ID and kind of the principal named name.
func (s *Snapshot) PrincipalByName(name string) (ID, PrincipalKind, bool) {
	v, ok := s.principalNames()[name]
	if !ok {
		return 0, "", false
	}
	return ID(v >> 2), kindOf[v&3], true
}

// Principal returns the principal with id.
func (s *Snapshot) Principal(id ID) (*Principal, bool) {
	if pr := s.st.principal(id); pr != nil {
		return pr.p, true
	}
	return nil, false
}

// Securable returns the securable with id.
func (s *Snapshot) Securable(id ID) (*Securable, bool) {
	if n := s.st.node(id); n != nil {
		return n.sec, true
	}
	return nil, false
}

// MaxID bounds the IDs of the snapshot's principals and securables.
func (s *Snapshot) MaxID() ID { return ID(max(s.st.princ.len(), s.st.nodes.len())) }

// Holds reports whether principal p holds privilege pi (PrivilegeIndex) on
// securable on: the evaluator without its explanation. It does not
// allocate once the principal's groups are known (Warm).
func (s *Snapshot) Holds(p ID, pi int, on ID) bool { return s.st.allowed(p, pi, on) }

// Check is Model.Check on the snapshot.
func (s *Snapshot) Check(p ID, priv Privilege, on ID) Decision { return s.st.check(p, priv, on) }

// AccessPart evaluates the principal named name in role (RoleSubject,
// RoleActor) on privilege pi and securable on; see JoinAccess.
func (s *Snapshot) AccessPart(name, role string, pi int, on ID, steps bool) AccessPart {
	id, _, _ := s.PrincipalByName(name)
	return s.st.accessPart(name, id, role, pi, s.st.node(on), steps)
}

// MemberOf reports whether principal p is group g or belongs to it,
// directly or transitively ("account users" holds every user and service
// principal).
func (s *Snapshot) MemberOf(p, g ID) bool { return s.st.inClosure(p, g) }

// Groups returns the transitive groups of principal p by name, closest
// first.
func (s *Snapshot) Groups(p ID) []string {
	c := s.st.closure(p)
	if c == nil {
		return nil
	}
	ps := s.st.pathsOf(c)
	out := make([]string, 0, len(ps.entries)-1)
	for _, e := range ps.entries[1:] {
		out = append(out, e.p.Name)
	}
	return out
}

// Containers returns securable on and its containers, innermost first
// (the metastore last).
func (s *Snapshot) Containers(on ID) []ID {
	var out []ID
	for n := s.st.node(on); n != nil; n = s.st.node(n.sec.Parent) {
		out = append(out, n.sec.ID)
		if n.sec.Type == TypeMetastore {
			break
		}
	}
	return out
}

// Policies returns every policy of the snapshot, by name.
func (s *Snapshot) Policies() []*Securable { return s.securables().policies }
