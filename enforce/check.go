package enforce

import (
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// Results of resolve besides a node index.
const (
	unknownSecurable = -1
	ambiguousName    = -2
	badType          = -3
)

// resolve maps a securable reference to a node. Names are matched as
// stored: dotted identifiers (catalog.schema.connection), or the display
// form with quoted identifiers (catalog.Securable.FullName); a one-part
// connection name means system.ai.<name> and two-part names resolve in the
// "system" catalog, as catalog.ResolveName does for the API. A name that
// matches nothing is retried in lower case (unquoted SQL identifiers are
// stored folded); only that retry allocates.
func (s *Snapshot) resolve(ref SecurableRef) int32 {
	slot := typeSlot(ref.Type)
	if slot < 0 {
		slot = typeSlot(catalog.SecurableType(strings.ToUpper(string(ref.Type))))
	}
	switch {
	case slot < 0:
		return badType
	case slot == numNamed:
		if s.metastore >= 0 && (ref.Name == "" || strings.EqualFold(ref.Name, catalog.MetastoreName)) {
			return s.metastore
		}
		return unknownSecurable
	}
	n, ok := s.names[slot][ref.Name]
	if !ok {
		if lower := strings.ToLower(ref.Name); lower != ref.Name {
			n, ok = s.names[slot][lower]
		}
	}
	switch {
	case !ok:
		return unknownSecurable
	case n < 0:
		return ambiguousName
	}
	return n
}

// privilege returns the index of p, accepting any spelling
// catalog.ParsePrivilege accepts (only the canonical one is free), or -1.
func privilege(p catalog.Privilege) int {
	if i := privIndex(p); i >= 0 {
		return i
	}
	q, err := catalog.ParsePrivilege(string(p))
	if err != nil {
		return -1
	}
	return privIndex(q)
}

// principal returns the index of the principal named name if it may act in
// role ("subject": a user or service principal; "actor": a service
// principal), or -1.
func (s *Snapshot) principal(name string, role string) int32 {
	v, ok := s.byName[name]
	if !ok {
		return -1
	}
	switch k := uint8(v & 3); {
	case k == kindServicePrincipal, k == kindUser && role == roleSubject:
		return int32(v >> 2)
	}
	return -1
}

const (
	roleSubject = "subject"
	roleActor   = "actor"
)

// Allowed answers r from grants alone (no policies) without explaining it:
// the subject must be a user or service principal holding the privilege,
// and the actor, if any, a service principal holding it too. It does not
// allocate for canonical privilege spellings and names that match as
// stored. It always agrees with Decide(r).Allowed.
//
// Answers are remembered per snapshot in a fixed table of exact keys
// (subject, actor, privilege, securable indexes packed in 63 bits, with
// the answer in the last bit), written and read atomically: a repeated
// question costs the two name lookups and one table read.
func (s *Snapshot) Allowed(r Request) bool {
	pi := privilege(r.Privilege)
	if pi < 0 {
		return false
	}
	n := s.resolve(r.Securable)
	if n < 0 {
		return false
	}
	sub := s.principal(r.Subject, roleSubject)
	if sub < 0 {
		return false
	}
	act := int32(-1)
	if r.Actor != "" {
		if act = s.principal(r.Actor, roleActor); act < 0 {
			return false
		}
	}
	if s.memo == nil {
		return s.holds(sub, pi, n) && (act < 0 || s.holds(act, pi, n))
	}
	key := uint64(sub)<<(memoPrincipalBits+memoNodeBits+4) | uint64(act+1)<<(memoNodeBits+4) | uint64(n)<<4 | uint64(pi)
	slot := &s.memo[(key*0x9E3779B97F4A7C15)>>32&s.memoMask]
	if e := slot.Load(); e != 0 && e>>1 == key {
		return e&1 == 1
	}
	ok := s.holds(sub, pi, n) && (act < 0 || s.holds(act, pi, n))
	e := key << 1
	if ok {
		e |= 1
	}
	slot.Store(e)
	return ok
}

// index returns the index of the principal named name.
func (s *Snapshot) index(name string) (int32, bool) {
	v, ok := s.byName[name]
	return int32(v >> 2), ok
}

// Holds reports whether principal (of any kind, groups included) holds
// privilege on the securable, with the semantics of catalog.Model.Check.
// Unknown principals, privileges and securables hold nothing.
func (s *Snapshot) Holds(principal string, priv catalog.Privilege, on SecurableRef) bool {
	pi := privilege(priv)
	n := s.resolve(on)
	p, ok := s.index(principal)
	return pi >= 0 && n >= 0 && ok && s.holds(p, pi, n)
}

// MemberOf reports whether principal is group or belongs to it, directly
// or transitively ("account users" holds every user and service
// principal). Policies may use it.
func (s *Snapshot) MemberOf(principal, group string) bool {
	p, ok := s.index(principal)
	g, ok2 := s.index(group)
	if !ok || !ok2 {
		return false
	}
	if p == g {
		return true
	}
	b := s.princ[g].gbit
	return b >= 0 && hasBit(s.closureBits(p), b)
}

// holds is the privilege function on the snapshot: the USE privileges of
// the containers (outermost first), the securable's own USE privilege for
// its other privileges except BROWSE, then the privilege itself; metastore
// admins hold everything.
func (s *Snapshot) holds(p int32, pi int, n int32) bool {
	pr := &s.princ[p]
	if pr.admin {
		return true
	}
	bits := s.closureBits(p)
	nd := &s.nodes[n]
	for _, c := range nd.uses[:nd.nuse] {
		if !s.has(p, pr, bits, int(s.nodes[c].usePriv), c) {
			return false
		}
	}
	if u := int(nd.usePriv); u >= 0 && u != pi && pi != pBrowse && !s.has(p, pr, bits, u, n) {
		return false
	}
	return s.has(p, pr, bits, pi, n)
}

// has reports whether p (closure bits) holds privilege pi on node n by
// ownership, a grant to one of its groups (inheritance resolved at compile
// time) or a grant to itself here or on a container it inherits from.
func (s *Snapshot) has(p int32, pr *principal, bits []uint64, pi int, n int32) bool {
	nd := &s.nodes[n]
	if nd.owner == p || (nd.ownerGroup >= 0 && hasBit(bits, nd.ownerGroup)) {
		return true
	}
	if e := int(nd.eff[pi]); e != 0 && intersects(bits, s.eff[e:e+len(bits)]) {
		return true
	}
	if pr.direct.n == 0 {
		return false
	}
	w := want(pi)
	d := s.direct[pr.direct.off : pr.direct.off+pr.direct.n]
	for t := n; t >= 0; t = s.nodes[t].inherit {
		if directOn(d, t)&w != 0 {
			return true
		}
	}
	return false
}

// directOn returns the privileges granted on node n in d (sorted by node).
func directOn(d []directGrant, n int32) mask {
	lo, hi := 0, len(d)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if d[mid].node < n {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(d) && d[lo].node == n {
		return d[lo].set
	}
	return 0
}

// PolicyTarget is what a policy evaluation needs to know from the snapshot
// about a request: the securable's full name, its catalog ID and its
// containers' (innermost first, the metastore last), and the subject's
// transitive groups by name. ok is false for an unknown securable.
func (s *Snapshot) PolicyTarget(r *Request) (name string, chain []catalog.ID, groups []string, ok bool) {
	n := s.resolve(r.Securable)
	if n < 0 {
		return "", nil, nil, false
	}
	for j := n; j >= 0; j = s.info[j].parent {
		chain = append(chain, s.info[j].id)
	}
	if p, known := s.index(r.Subject); known {
		c := s.closure(p)
		for _, g := range c.entries[1:] {
			groups = append(groups, s.pinfo[g].name)
		}
	}
	return s.info[n].full, chain, groups, true
}
