package enforce

import (
	"fmt"
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// Decide answers r from grants alone (no policies), with the reason and,
// when r.Explain, one Step per requirement of the subject and of the
// actor. The on-behalf-of rule (catalog.JoinAccess): allowed only if the
// subject (a user or service principal) and the actor, if any (a service
// principal), both hold the privilege. Both are always evaluated so that
// the reason names each one's grants or missing privilege. Reasons and
// steps are the catalog's (catalog.Snapshot.AccessPart), the same EXPLAIN
// ACCESS prints; without Explain each principal's part is remembered for
// the life of the snapshot.
func (s *Snapshot) Decide(r Request) Decision {
	d := Decision{Revision: s.rev}
	pi := privilege(r.Privilege)
	if pi < 0 {
		d.Reason = fmt.Sprintf("unknown privilege %q", string(r.Privilege))
		return d
	}
	n, res := s.cs.Resolve(r.Securable.Type, r.Securable.Name)
	switch res {
	case catalog.UnknownType:
		d.Reason = fmt.Sprintf("unsupported securable type %q", string(r.Securable.Type))
		return d
	case catalog.NotFound:
		d.Reason = fmt.Sprintf("%s %s does not exist", strings.ToLower(string(r.Securable.Type)), r.Securable.Name)
		return d
	case catalog.Ambiguous:
		d.Reason = fmt.Sprintf("%s name %q is ambiguous; use the quoted full name", strings.ToLower(string(r.Securable.Type)), r.Securable.Name)
		return d
	}
	sub := s.part(r.Subject, catalog.RoleSubject, pi, n, r.Explain)
	var act *catalog.AccessPart
	if r.Actor != "" {
		a := s.part(r.Actor, catalog.RoleActor, pi, n, r.Explain)
		act = &a
	}
	j := catalog.JoinAccess(sub, act)
	d.Allowed, d.Reason = j.Allowed, j.Reason
	if r.Explain {
		d.Steps = j.Steps
	}
	return d
}

// part is one principal's part of a decision; without steps it is
// remembered in the snapshot's reason memo.
func (s *Snapshot) part(name, role string, pi int, n catalog.ID, steps bool) catalog.AccessPart {
	id, _, known := s.cs.PrincipalByName(name)
	if steps || !known {
		return s.cs.AccessPart(name, role, pi, n, steps)
	}
	if p, ok := s.reasons.get(id, role, pi, n); ok {
		return p
	}
	p := s.cs.AccessPart(name, role, pi, n, false)
	s.reasons.put(id, role, pi, n, p)
	return p
}
