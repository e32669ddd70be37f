package enforce

import (
	"github.com/mandatehq/mandate/catalog"
)

// privilege returns the index of p (catalog.PrivilegeIndex), accepting
// any spelling catalog.ParsePrivilege accepts (only the canonical one is
// free), or -1.
func privilege(p catalog.Privilege) int {
	if i := catalog.PrivilegeIndex(p); i >= 0 {
		return i
	}
	q, err := catalog.ParsePrivilege(string(p))
	if err != nil {
		return -1
	}
	return catalog.PrivilegeIndex(q)
}

// principal returns the ID of the principal named name if it may act in
// role (catalog.RoleAccepts), or 0.
func (s *Snapshot) principal(name string, role string) catalog.ID {
	id, kind, ok := s.cs.PrincipalByName(name)
	if !ok || !catalog.RoleAccepts(role, kind) {
		return 0
	}
	return id
}

// Allowed answers r from grants alone (no policies) without explaining it:
// the subject must be a user or service principal holding the privilege,
// and the actor, if any, a service principal holding it too. It does not
// allocate for canonical privilege spellings and names that match as
// stored. It always agrees with Decide(r).Allowed.
func (s *Snapshot) Allowed(r Request) bool {
	ok, _ := s.allowed(&r)
	return ok
}

// allowed is Allowed, also returning the securable (0 if unknown).
//
// Answers are remembered per snapshot in a fixed table of exact keys
// (subject, actor, securable and privilege packed in 63 bits, with the
// answer in the last bit), two slots per key, written and read
// atomically: a repeated question costs the two name lookups and one
// table read.
func (s *Snapshot) allowed(r *Request) (bool, catalog.ID) {
	pi := privilege(r.Privilege)
	if pi < 0 {
		return false, 0
	}
	n, res := s.cs.Resolve(r.Securable.Type, r.Securable.Name)
	if res != catalog.Resolved {
		return false, 0
	}
	sub := s.principal(r.Subject, catalog.RoleSubject)
	if sub == 0 {
		return false, n
	}
	var act catalog.ID
	if r.Actor != "" {
		if act = s.principal(r.Actor, catalog.RoleActor); act == 0 {
			return false, n
		}
	}
	if s.memo == nil || sub >= 1<<memoPrincipalBits || act+1 >= 1<<memoPrincipalBits || n >= 1<<memoNodeBits || pi >= 1<<memoPrivBits {
		return s.cs.Holds(sub, pi, n) && (act == 0 || s.cs.Holds(act, pi, n)), n
	}
	key := uint64(sub)<<(memoPrincipalBits+memoNodeBits+memoPrivBits) | uint64(act+1)<<(memoNodeBits+memoPrivBits) |
		uint64(n)<<memoPrivBits | uint64(pi)
	// Two slots per key (a pair), so that two questions hashing to the
	// same slot do not keep evicting each other.
	slots := s.memo.slots()
	i := (key * 0x9E3779B97F4A7C15) >> 32 & uint64(len(slots)-1)
	a, b := &slots[i], &slots[i^1]
	ea, eb := a.Load(), b.Load()
	if ea != 0 && ea>>1 == key {
		return ea&1 == 1, n
	}
	if eb != 0 && eb>>1 == key {
		return eb&1 == 1, n
	}
	ok := s.cs.Holds(sub, pi, n) && (act == 0 || s.cs.Holds(act, pi, n))
	e := key << 1
	if ok {
		e |= 1
	}
	if ea != 0 && eb == 0 {
		a = b
	}
	a.Store(e)
	return ok, n
}

// Holds reports whether principal (of any kind, groups included) holds
// privilege on the securable (the catalog's evaluator). Unknown
// principals, privileges and securables hold nothing.
func (s *Snapshot) Holds(principal string, priv catalog.Privilege, on SecurableRef) bool {
	pi := privilege(priv)
	n, res := s.cs.Resolve(on.Type, on.Name)
	p, _, ok := s.cs.PrincipalByName(principal)
	return pi >= 0 && res == catalog.Resolved && ok && s.cs.Holds(p, pi, n)
}

// MemberOf reports whether principal is group or belongs to it, directly
// or transitively ("account users" holds every user and service
// principal). Policies may use it.
func (s *Snapshot) MemberOf(principal, group string) bool {
	p, _, ok := s.cs.PrincipalByName(principal)
	g, _, ok2 := s.cs.PrincipalByName(group)
	return ok && ok2 && s.cs.MemberOf(p, g)
}

// PolicyTarget is what a policy evaluation needs to know from the snapshot
// about a request: the securable's full name, its catalog ID and its
// containers' (innermost first, the metastore last), and the subject's
// transitive groups by name. ok is false for an unknown securable.
func (s *Snapshot) PolicyTarget(r *Request) (name string, chain []catalog.ID, groups []string, ok bool) {
	n, res := s.cs.Resolve(r.Securable.Type, r.Securable.Name)
	if res != catalog.Resolved {
		return "", nil, nil, false
	}
	sec, _ := s.cs.Securable(n)
	if p, _, known := s.cs.PrincipalByName(r.Subject); known {
		groups = s.cs.Groups(p)
	}
	return sec.FullName(), s.cs.Containers(n), groups, true
}
