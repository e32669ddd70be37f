package catalog

// op is one change to the catalog. The planner applies ops to the Model as it
// goes (so later checks in the same statement see them) and records their
// inverses; the committer appends them to the store as change records
// (record) and undoes them from the Model if the commit fails.
type op interface {
	apply(m *Model) (undo op)
	record() ChangeOp
}

type opPutPrincipal struct{ p *Principal }
type opDeletePrincipal struct{ id ID }
type opAddMember struct{ ms Membership }
type opRemoveMember struct{ ms Membership }
type opPutSecurable struct{ s *Securable }
type opDeleteSecurable struct{ id ID }
type opAddGrant struct{ g Grant }
type opRemoveGrant struct{ k GrantKey }

// opRestore undoes a change (a principal deletion's memberships and grants
// are restored by their own inverse ops, recorded before). It is never
// recorded in a change.
type opRestore struct{ fn func(m *Model) }

func (o opRestore) apply(m *Model) op { o.fn(m); return nil }
func (o opRestore) record() ChangeOp  { panic("catalog: an undo op is not part of a change") }

func (o opPutPrincipal) record() ChangeOp {
	p := *o.p
	return ChangeOp{Kind: OpPutPrincipal, Principal: &p}
}
func (o opDeletePrincipal) record() ChangeOp { return ChangeOp{Kind: OpDeletePrincipal, ID: o.id} }
func (o opAddMember) record() ChangeOp {
	ms := o.ms
	return ChangeOp{Kind: OpAddMember, Membership: &ms}
}
func (o opRemoveMember) record() ChangeOp {
	ms := o.ms
	return ChangeOp{Kind: OpRemoveMember, Membership: &ms}
}
func (o opPutSecurable) record() ChangeOp {
	s := *o.s
	s.full = ""
	return ChangeOp{Kind: OpPutSecurable, Securable: &s}
}
func (o opDeleteSecurable) record() ChangeOp { return ChangeOp{Kind: OpDeleteSecurable, ID: o.id} }
func (o opAddGrant) record() ChangeOp {
	g := o.g
	return ChangeOp{Kind: OpAddGrant, Grant: &g}
}
func (o opRemoveGrant) record() ChangeOp {
	k := o.k
	return ChangeOp{Kind: OpRemoveGrant, GrantKey: &k}
}

// opOf turns a recorded row change back into an op (the change records of
// other writers, and those replayed at start, apply to the Model).
func opOf(c *ChangeOp) (op, error) {
	switch {
	case c.Kind == OpPutPrincipal && c.Principal != nil:
		p := *c.Principal
		return opPutPrincipal{&p}, nil
	case c.Kind == OpDeletePrincipal:
		return opDeletePrincipal{c.ID}, nil
	case c.Kind == OpAddMember && c.Membership != nil:
		return opAddMember{*c.Membership}, nil
	case c.Kind == OpRemoveMember && c.Membership != nil:
		return opRemoveMember{*c.Membership}, nil
	case c.Kind == OpPutSecurable && c.Securable != nil:
		s := *c.Securable
		return opPutSecurable{&s}, nil
	case c.Kind == OpDeleteSecurable:
		return opDeleteSecurable{c.ID}, nil
	case c.Kind == OpAddGrant && c.Grant != nil:
		return opAddGrant{*c.Grant}, nil
	case c.Kind == OpRemoveGrant && c.GrantKey != nil:
		return opRemoveGrant{*c.GrantKey}, nil
	}
	return nil, Errorf(CodeIncompatibleData, "catalog: unknown change op %q", c.Kind)
}

func (o opPutPrincipal) apply(m *Model) op {
	old, ok := m.principals[o.p.ID]
	m.putPrincipal(o.p)
	if ok {
		return opPutPrincipal{old}
	}
	return opRestore{func(m *Model) { m.deletePrincipal(o.p.ID) }}
}

func (o opDeletePrincipal) apply(m *Model) op {
	old, ok := m.principals[o.id]
	if !ok {
		return opRestore{func(*Model) {}}
	}
	m.deletePrincipal(o.id)
	return opRestore{func(m *Model) { m.putPrincipal(old) }}
}

func (o opAddMember) apply(m *Model) op {
	had := m.IsMember(o.ms.Group, o.ms.Member)
	m.addMember(o.ms)
	if had {
		return opRestore{func(*Model) {}}
	}
	return opRestore{func(m *Model) { m.removeMember(o.ms) }}
}

func (o opRemoveMember) apply(m *Model) op {
	had := m.IsMember(o.ms.Group, o.ms.Member)
	m.removeMember(o.ms)
	if !had {
		return opRestore{func(*Model) {}}
	}
	return opRestore{func(m *Model) { m.addMember(o.ms) }}
}

func (o opPutSecurable) apply(m *Model) op {
	old, ok := m.securables[o.s.ID]
	m.putSecurable(o.s)
	if ok {
		return opRestore{func(m *Model) { cp := *old; m.putSecurable(&cp) }}
	}
	return opRestore{func(m *Model) { m.deleteSecurable(o.s.ID) }}
}

func (o opDeleteSecurable) apply(m *Model) op {
	old, ok := m.securables[o.id]
	if !ok {
		return opRestore{func(*Model) {}}
	}
	m.deleteSecurable(o.id)
	return opRestore{func(m *Model) { cp := *old; m.putSecurable(&cp) }}
}

func (o opAddGrant) apply(m *Model) op {
	k := o.g.Key()
	if m.HasGrant(k) {
		prev := Grant{Securable: k.Securable, Principal: k.Principal, Privilege: k.Privilege, Grantor: m.grantor[k]}
		m.addGrant(o.g)
		return opRestore{func(m *Model) { m.addGrant(prev) }}
	}
	m.addGrant(o.g)
	return opRestore{func(m *Model) { m.removeGrant(k) }}
}

func (o opRemoveGrant) apply(m *Model) op {
	if !m.HasGrant(o.k) {
		return opRestore{func(*Model) {}}
	}
	prev := Grant{Securable: o.k.Securable, Principal: o.k.Principal, Privilege: o.k.Privilege, Grantor: m.grantor[o.k]}
	m.removeGrant(o.k)
	return opRestore{func(m *Model) { m.addGrant(prev) }}
}
