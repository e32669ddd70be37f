package catalog

import "context"

// op is one change to the catalog. The planner applies ops to the Model as it
// goes (so later checks in the same statement see them) and records their
// inverses; the committer writes them to the store in one transaction and
// undoes them from the Model if the commit fails.
type op interface {
	apply(m *Model) (undo op)
	write(ctx context.Context, tx RWTx) error
}

type opPutPrincipal struct{ p *Principal }
type opDeletePrincipal struct{ id ID }
type opAddMember struct{ ms Membership }
type opRemoveMember struct{ ms Membership }
type opPutSecurable struct{ s *Securable }
type opDeleteSecurable struct{ id ID }
type opAddGrant struct{ g Grant }
type opRemoveGrant struct{ k GrantKey }

// opRestorePrincipal undoes a principal deletion (the memberships and grants
// are restored by their own inverse ops, recorded before).
type opRestore struct{ fn func(m *Model) }

func (o opRestore) apply(m *Model) op                             { o.fn(m); return nil }
func (o opRestore) write(context.Context, RWTx) error             { return nil }
func (o opPutPrincipal) write(ctx context.Context, tx RWTx) error { return tx.PutPrincipal(ctx, *o.p) }
func (o opDeletePrincipal) write(ctx context.Context, tx RWTx) error {
	return tx.DeletePrincipal(ctx, o.id)
}
func (o opAddMember) write(ctx context.Context, tx RWTx) error { return tx.AddMembership(ctx, o.ms) }
func (o opRemoveMember) write(ctx context.Context, tx RWTx) error {
	return tx.RemoveMembership(ctx, o.ms)
}
func (o opPutSecurable) write(ctx context.Context, tx RWTx) error { return tx.PutSecurable(ctx, *o.s) }
func (o opDeleteSecurable) write(ctx context.Context, tx RWTx) error {
	return tx.DeleteSecurable(ctx, o.id)
}
func (o opAddGrant) write(ctx context.Context, tx RWTx) error    { return tx.AddGrant(ctx, o.g) }
func (o opRemoveGrant) write(ctx context.Context, tx RWTx) error { return tx.RemoveGrant(ctx, o.k) }

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
