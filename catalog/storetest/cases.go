package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

func testEmptyStore(t *testing.T, s catalog.Store) {
	checkState(t, s, state{})
	checkAudit(t, s, nil)
}

func testMeta(t *testing.T, s catalog.Store) {
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.SetMeta(ctx, catalog.Meta{Revision: 5, NextID: 100}))
		must(t, tx.SetMeta(ctx, catalog.Meta{Revision: 7, NextID: 1 << 40}))
		m, err := tx.Meta(ctx)
		must(t, err)
		equal(t, "Meta in the transaction", m, catalog.Meta{Revision: 7, NextID: 1 << 40})
		return nil
	})
	m, err := s.Meta(t.Context())
	must(t, err)
	equal(t, "Meta", m, catalog.Meta{Revision: 7, NextID: 1 << 40})
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		return tx.SetMeta(ctx, catalog.Meta{Revision: 8, NextID: 1<<40 + 1})
	})
	m, err = s.Meta(t.Context())
	must(t, err)
	equal(t, "Meta after a second commit", m, catalog.Meta{Revision: 8, NextID: 1<<40 + 1})
}

func testPrincipals(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	checkState(t, s, want)

	// Replace every field of principal 2 but its ID.
	alice := want.Principals[1]
	alice.Name = `"Ålice" 'o''brien'; DROP TABLE principals; --`
	alice.Kind = catalog.KindServicePrincipal
	alice.Admin = true
	alice.Builtin = true
	alice.Password = ""
	alice.Comment = "new\ncomment ✓"
	alice.Created = base.Add(-24 * time.Hour)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.PutPrincipal(ctx, principal(2, "first replacement", catalog.KindUser)))
		return tx.PutPrincipal(ctx, alice)
	})
	want.Principals[1] = alice
	checkState(t, s, want)

	// Delete and re-insert the same ID in one transaction.
	back := principal(3, "bot again", catalog.KindServicePrincipal)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.DeletePrincipal(ctx, 3))
		return tx.PutPrincipal(ctx, back)
	})
	want.Principals[2] = back
	want.Grants = want.Grants[:2] // the grant to 3 went with the delete
	want.Memberships = want.Memberships[:1]
	checkState(t, s, want)
}

func testDeletePrincipal(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		// 2 is a member of 5 and of 6; 6 is a member of 5; 2 granted a grant.
		must(t, tx.PutPrincipal(ctx, principal(6, "nested", catalog.KindGroup)))
		must(t, tx.AddMembership(ctx, catalog.Membership{Group: 6, Member: 2}))
		must(t, tx.AddMembership(ctx, catalog.Membership{Group: 5, Member: 6}))
		must(t, tx.AddGrant(ctx, catalog.Grant{Securable: 2, Principal: 2, Privilege: catalog.PrivBrowse, Grantor: 1}))
		return tx.AddGrant(ctx, catalog.Grant{Securable: 2, Principal: 6, Privilege: catalog.PrivBrowse, Grantor: 1})
	})

	// Deleting group 6 removes the memberships on both sides and the grant to it.
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error { return tx.DeletePrincipal(ctx, 6) })
	want.Grants = append(want.Grants, catalog.Grant{Securable: 2, Principal: 2, Privilege: catalog.PrivBrowse, Grantor: 1})
	sortGrants(want.Grants)
	checkState(t, s, want)

	// Deleting user 2 removes its grants and memberships but keeps the grant
	// it made (to 3 on 4).
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error { return tx.DeletePrincipal(ctx, 2) })
	want.Principals = []catalog.Principal{want.Principals[0], want.Principals[2], want.Principals[3]}
	want.Memberships = []catalog.Membership{{Group: 5, Member: 3}}
	want.Grants = []catalog.Grant{
		{Securable: 2, Principal: 5, Privilege: catalog.PrivUseCatalog, Grantor: 1},
		{Securable: 3, Principal: 5, Privilege: catalog.PrivUseSchema, Grantor: 1},
		{Securable: 4, Principal: 3, Privilege: catalog.PrivUseConnection, Grantor: 2},
	}
	checkState(t, s, want)

	// Deleting a missing principal is a no-op.
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error { return tx.DeletePrincipal(ctx, 42) })
	checkState(t, s, want)
}

func testMemberships(t *testing.T, s catalog.Store) {
	m12, m13, m21 := catalog.Membership{Group: 1, Member: 2}, catalog.Membership{Group: 1, Member: 3}, catalog.Membership{Group: 2, Member: 1}
	check := func(want ...catalog.Membership) {
		t.Helper()
		checkState(t, s, state{Memberships: want})
	}
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AddMembership(ctx, m21))
		must(t, tx.AddMembership(ctx, m12))
		return tx.AddMembership(ctx, m12) // twice in one transaction
	})
	check(m12, m21)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AddMembership(ctx, m12)) // again, in another transaction
		return tx.RemoveMembership(ctx, catalog.Membership{Group: 9, Member: 9})
	})
	check(m12, m21)
	// Remove and re-add a committed membership, and add, remove, re-add a
	// new one, in one transaction.
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.RemoveMembership(ctx, m12))
		must(t, tx.AddMembership(ctx, m12))
		must(t, tx.AddMembership(ctx, m13))
		must(t, tx.RemoveMembership(ctx, m13))
		must(t, tx.AddMembership(ctx, m13))
		return tx.AddMembership(ctx, m13)
	})
	check(m12, m13, m21)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.RemoveMembership(ctx, m12))
		return tx.RemoveMembership(ctx, m12)
	})
	check(m13, m21)
}

func testSecurables(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	checkState(t, s, want)

	// nil and empty options and secrets round-trip as they are.
	empty := securable(7, catalog.TypeConnection, 3, "empty")
	empty.Options, empty.Secrets = map[string]string{}, []byte{}
	odd := securable(8, catalog.TypeConnection, 3, `odd "name" ü`)
	odd.Options = map[string]string{
		"":                    "empty key",
		"quote\"back\\slash":  "new\nline\ttab",
		"unicode ✓":           "ü\u0000nul",
		"json":                `{"nested": [1, 2]}`,
		"URL":                 "postgres://u@h:5432/db?sslmode=require&x=%20",
		"empty value follows": "",
	}
	odd.Secrets = []byte("\x00sealed\xff")
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.PutSecurable(ctx, empty))
		return tx.PutSecurable(ctx, odd)
	})
	want.Securables = append(want.Securables, empty, odd)
	checkState(t, s, want)

	// Replace every field: options and secrets to nil, to empty, to values.
	conn := want.Securables[3]
	conn.Type = catalog.TypeCatalog
	conn.Parent = 1
	conn.Name = "renamed"
	conn.Owner = 2
	conn.Comment = ""
	conn.Options, conn.Secrets = nil, nil
	conn.Builtin = true
	conn.Created = base.Add(-time.Hour)
	empty.Options, empty.Secrets = map[string]string{"k": "v"}, []byte{1}
	odd.Options, odd.Secrets = map[string]string{}, []byte{}
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.PutSecurable(ctx, conn))
		must(t, tx.PutSecurable(ctx, empty))
		return tx.PutSecurable(ctx, odd)
	})
	want.Securables[3], want.Securables[4], want.Securables[5] = conn, empty, odd
	checkState(t, s, want)

	// Delete and re-insert the same ID in one transaction.
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.DeleteSecurable(ctx, 8))
		return tx.PutSecurable(ctx, odd)
	})
	checkState(t, s, want)
}

func testDeleteSecurable(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AddGrant(ctx, catalog.Grant{Securable: 4, Principal: 2, Privilege: catalog.PrivManage, Grantor: 1}))
		must(t, tx.DeleteSecurable(ctx, 4))
		return tx.DeleteSecurable(ctx, 42) // missing: no-op
	})
	want.Securables = want.Securables[:3]
	want.Grants = want.Grants[:2]
	checkState(t, s, want)

	update(t, s, func(ctx context.Context, tx catalog.RWTx) error { return tx.DeleteSecurable(ctx, 2) })
	want.Securables = []catalog.Securable{want.Securables[0], want.Securables[2]}
	want.Grants = want.Grants[1:]
	checkState(t, s, want)
}

func testGrants(t *testing.T, s catalog.Store) {
	g := func(sec, prin catalog.ID, p catalog.Privilege, grantor catalog.ID) catalog.Grant {
		return catalog.Grant{Securable: sec, Principal: prin, Privilege: p, Grantor: grantor}
	}
	check := func(want ...catalog.Grant) {
		t.Helper()
		checkState(t, s, state{Grants: want})
	}
	a := g(10, 2, catalog.PrivUseCatalog, 1)
	b := g(10, 2, catalog.PrivBrowse, 1)
	c := g(10, 1, catalog.PrivUseCatalog, 3)
	d := g(9, 5, catalog.PrivAll, 1)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		for _, x := range []catalog.Grant{a, b, c, d} {
			must(t, tx.AddGrant(ctx, x))
		}
		return nil
	})
	check(d, c, b, a) // sorted by securable, principal, privilege

	// Re-adding an existing grant adds nothing; with another grantor, the
	// grantor is replaced.
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error { return tx.AddGrant(ctx, a) })
	check(d, c, b, a)
	a7 := g(10, 2, catalog.PrivUseCatalog, 7)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AddGrant(ctx, a7))
		return tx.AddGrant(ctx, a7)
	})
	check(d, c, b, a7)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error { return tx.AddGrant(ctx, a) })
	check(d, c, b, a)

	// Removing a missing grant is a no-op; removing one privilege keeps the
	// others of the same securable and principal.
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.RemoveGrant(ctx, catalog.GrantKey{Securable: 10, Principal: 2, Privilege: catalog.PrivManage}))
		must(t, tx.RemoveGrant(ctx, catalog.GrantKey{Securable: 11, Principal: 2, Privilege: catalog.PrivBrowse}))
		return tx.RemoveGrant(ctx, b.Key())
	})
	check(d, c, a)

	// Remove and re-add a committed grant (its new grantor sticks), add,
	// remove and re-add a new one, in one transaction.
	a2 := g(10, 2, catalog.PrivUseCatalog, 8)
	e := g(12, 3, catalog.PrivManage, 1)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.RemoveGrant(ctx, a.Key()))
		must(t, tx.AddGrant(ctx, a2))
		must(t, tx.AddGrant(ctx, e))
		must(t, tx.RemoveGrant(ctx, e.Key()))
		must(t, tx.AddGrant(ctx, e))
		return tx.AddGrant(ctx, e)
	})
	check(d, c, a2, e)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.RemoveGrant(ctx, e.Key()))
		return tx.RemoveGrant(ctx, e.Key())
	})
	check(d, c, a2)
}

// testGrantsInterleaved mixes grant changes with the writes whose effect
// depends on them (cascading deletes) and with unrelated ones, in one
// transaction, the way a batch of statements does.
func testGrantsInterleaved(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	g := func(sec, prin catalog.ID, p catalog.Privilege, grantor catalog.ID) catalog.Grant {
		return catalog.Grant{Securable: sec, Principal: prin, Privilege: p, Grantor: grantor}
	}
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		// Granted, then its securable deleted: gone. The securable deleted,
		// then a grant on it: kept (the store does not check references).
		must(t, tx.AddGrant(ctx, g(4, 2, catalog.PrivManage, 1)))
		must(t, tx.AppendAudit(ctx, auditEvent(1, base)))
		must(t, tx.DeleteSecurable(ctx, 4))
		must(t, tx.AddGrant(ctx, g(4, 5, catalog.PrivAll, 1)))
		// The same for a principal.
		must(t, tx.PutPrincipal(ctx, principal(8, "temp", catalog.KindUser)))
		must(t, tx.AddGrant(ctx, g(2, 8, catalog.PrivBrowse, 1)))
		must(t, tx.SetMeta(ctx, catalog.Meta{Revision: 2, NextID: 9}))
		must(t, tx.DeletePrincipal(ctx, 8))
		must(t, tx.AddGrant(ctx, g(3, 8, catalog.PrivBrowse, 1)))
		// Add, remove, add with another grantor; remove, add a committed one;
		// add then remove.
		must(t, tx.AddGrant(ctx, g(2, 3, catalog.PrivUseCatalog, 1)))
		must(t, tx.AppendAudit(ctx, auditEvent(2, base.Add(time.Second))))
		must(t, tx.RemoveGrant(ctx, catalog.GrantKey{Securable: 2, Principal: 3, Privilege: catalog.PrivUseCatalog}))
		must(t, tx.AddMembership(ctx, catalog.Membership{Group: 5, Member: 1}))
		must(t, tx.AddGrant(ctx, g(2, 3, catalog.PrivUseCatalog, 2)))
		must(t, tx.RemoveGrant(ctx, catalog.GrantKey{Securable: 3, Principal: 5, Privilege: catalog.PrivUseSchema}))
		must(t, tx.AddGrant(ctx, g(3, 5, catalog.PrivUseSchema, 3)))
		must(t, tx.AddGrant(ctx, g(2, 1, catalog.PrivBrowse, 1)))
		must(t, tx.RemoveGrant(ctx, catalog.GrantKey{Securable: 2, Principal: 1, Privilege: catalog.PrivBrowse}))
		// Reads see all of it.
		gs, err := tx.ListGrants(ctx)
		must(t, err)
		wantGrants := []catalog.Grant{
			g(2, 3, catalog.PrivUseCatalog, 2),
			g(2, 5, catalog.PrivUseCatalog, 1),
			g(3, 5, catalog.PrivUseSchema, 3),
			g(3, 8, catalog.PrivBrowse, 1),
			g(4, 5, catalog.PrivAll, 1),
		}
		equal(t, "ListGrants in the transaction", gs, wantGrants)
		// And changes after a read.
		must(t, tx.RemoveGrant(ctx, catalog.GrantKey{Securable: 3, Principal: 8, Privilege: catalog.PrivBrowse}))
		return tx.AppendAudit(ctx, auditEvent(3, base.Add(2*time.Second)))
	})
	want.Meta = catalog.Meta{Revision: 2, NextID: 9}
	want.Memberships = append(want.Memberships[:0:0], catalog.Membership{Group: 5, Member: 1}, want.Memberships[0], want.Memberships[1])
	want.Securables = want.Securables[:3]
	want.Grants = []catalog.Grant{
		g(2, 3, catalog.PrivUseCatalog, 2),
		g(2, 5, catalog.PrivUseCatalog, 1),
		g(3, 5, catalog.PrivUseSchema, 3),
		g(4, 5, catalog.PrivAll, 1),
	}
	checkState(t, s, want)
	checkAudit(t, s, []catalog.AuditEvent{auditEvent(1, base), auditEvent(2, base.Add(time.Second)), auditEvent(3, base.Add(2*time.Second))})
}

func testManyGrants(t *testing.T, s catalog.Store) {
	const n = 2000
	var want []catalog.Grant
	privs := catalog.KnownPrivileges()
	for i := range n {
		want = append(want, catalog.Grant{
			Securable: catalog.ID(1 + i%37),
			Principal: catalog.ID(100 + i/len(privs)),
			Privilege: privs[i%len(privs)],
			Grantor:   catalog.ID(i),
		})
	}
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		for i := n - 1; i >= 0; i-- {
			must(t, tx.AddGrant(ctx, want[i]))
		}
		return nil
	})
	sortGrants(want)
	checkState(t, s, state{Grants: want})
}

// rollbackWrites changes every table, the meta and the audit log.
func rollbackWrites(t *testing.T, ctx context.Context, tx catalog.RWTx) {
	t.Helper()
	must(t, tx.PutPrincipal(ctx, principal(9, "new", catalog.KindUser)))
	must(t, tx.PutPrincipal(ctx, principal(2, "replaced", catalog.KindGroup)))
	must(t, tx.DeletePrincipal(ctx, 3))
	must(t, tx.AddMembership(ctx, catalog.Membership{Group: 5, Member: 9}))
	must(t, tx.RemoveMembership(ctx, catalog.Membership{Group: 5, Member: 2}))
	must(t, tx.PutSecurable(ctx, securable(20, catalog.TypeCatalog, 1, "new")))
	must(t, tx.PutSecurable(ctx, securable(2, catalog.TypeCatalog, 1, "replaced")))
	must(t, tx.DeleteSecurable(ctx, 3))
	must(t, tx.AddGrant(ctx, catalog.Grant{Securable: 20, Principal: 9, Privilege: catalog.PrivAll, Grantor: 1}))
	must(t, tx.RemoveGrant(ctx, catalog.GrantKey{Securable: 2, Principal: 5, Privilege: catalog.PrivUseCatalog}))
	must(t, tx.SetMeta(ctx, catalog.Meta{Revision: 2, NextID: 21}))
	must(t, tx.AppendAudit(ctx, auditEvent(2, base)))
}

func testRollback(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	events := []catalog.AuditEvent{auditEvent(1, base)}
	must(t, s.AppendAudit(t.Context(), events...))

	err := s.ReadWriteTx(t.Context(), func(ctx context.Context, tx catalog.RWTx) error {
		rollbackWrites(t, ctx, tx)
		return errBoom
	})
	if err != errBoom {
		t.Errorf("ReadWriteTx = %v, want the error fn returned", err)
	}
	checkState(t, s, want)
	checkAudit(t, s, events)

	// A *catalog.Error from fn comes back as it is, too.
	cerr := catalog.Errorf(catalog.CodeNotFound, "no such thing")
	err = s.ReadWriteTx(t.Context(), func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AddGrant(ctx, catalog.Grant{Securable: 1, Principal: 1, Privilege: catalog.PrivAll, Grantor: 1}))
		return cerr
	})
	if err != cerr {
		t.Errorf("ReadWriteTx = %v, want the *catalog.Error fn returned", err)
	}
	checkState(t, s, want)

	// The store still works.
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		return tx.SetMeta(ctx, catalog.Meta{Revision: 2, NextID: 6})
	})
	want.Meta.Revision = 2
	checkState(t, s, want)
}

func testPanic(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	func() {
		defer func() {
			if r := recover(); r != "storetest panic" {
				t.Errorf("recovered %v, want the panic of fn", r)
			}
		}()
		_ = s.ReadWriteTx(t.Context(), func(ctx context.Context, tx catalog.RWTx) error {
			rollbackWrites(t, ctx, tx)
			panic("storetest panic")
		})
	}()
	checkState(t, s, want)
	checkAudit(t, s, nil)
	// The store still works.
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		return tx.SetMeta(ctx, catalog.Meta{Revision: 2, NextID: 6})
	})
	want.Meta.Revision = 2
	checkState(t, s, want)
}

func testReadOwnWrites(t *testing.T, s catalog.Store) {
	before := fixture(t, s)
	var inside state
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		rollbackWrites(t, ctx, tx)
		inside = snapshot(t, tx)
		return nil
	})
	after := snapshot(t, s)
	equal(t, "state after commit", after, inside)

	p9, p2 := principal(9, "new", catalog.KindUser), principal(2, "replaced", catalog.KindGroup)
	s20, s2 := securable(20, catalog.TypeCatalog, 1, "new"), securable(2, catalog.TypeCatalog, 1, "replaced")
	want := state{
		Meta:        catalog.Meta{Revision: 2, NextID: 21},
		Principals:  []catalog.Principal{before.Principals[0], p2, before.Principals[3], p9},
		Memberships: []catalog.Membership{{Group: 5, Member: 9}},
		Securables:  []catalog.Securable{before.Securables[0], s2, before.Securables[3], s20},
		Grants:      []catalog.Grant{{Securable: 20, Principal: 9, Privilege: catalog.PrivAll, Grantor: 1}},
	}
	checkState(t, s, want)
	checkAudit(t, s, []catalog.AuditEvent{auditEvent(2, base)})
}

func testAudit(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	e1 := auditEvent(1, base)
	e2 := auditEvent(2, base.Add(time.Hour))
	e3 := auditEvent(3, base.Add(-time.Hour).In(time.FixedZone("PST", -8*3600)))
	e4 := auditEvent(4, base.Add(30*time.Minute+999*time.Nanosecond))
	must(t, s.AppendAudit(ctx, e1, e2))
	must(t, s.AppendAudit(ctx))
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AppendAudit(ctx, e3))
		must(t, tx.AppendAudit(ctx))
		return tx.AppendAudit(ctx, e4)
	})
	all := []catalog.AuditEvent{e3, e1, e4, e2}
	checkAudit(t, s, all)
	got, err := s.ListAudit(ctx, time.Time{}, 0)
	must(t, err)
	for _, e := range got {
		if e.Time.Location() != time.UTC {
			t.Errorf("event %s: time in %v, want UTC", e.EventID, e.Time.Location())
		}
	}

	tests := []struct {
		name  string
		since time.Time
		limit int
		want  []catalog.AuditEvent
	}{
		{"all", time.Time{}, 0, all},
		{"negative limit", time.Time{}, -1, all},
		{"limit", time.Time{}, 2, all[:2]},
		{"limit above count", time.Time{}, 10, all},
		{"since is inclusive", norm(e1.Time), 0, all[1:]},
		{"since just after", norm(e1.Time).Add(time.Microsecond), 0, all[2:]},
		{"since in another zone", norm(e4.Time).In(time.FixedZone("X", 5*3600+1800)), 0, all[2:]},
		{"since and limit", norm(e1.Time), 1, all[1:2]},
		{"since after all", base.Add(2 * time.Hour), 0, nil},
		{"since before all", base.Add(-2 * time.Hour), 0, all},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAudit(t.Context(), tt.since, tt.limit)
			must(t, err)
			if len(got) == 0 {
				got = nil
			}
			equal(t, "ListAudit", got, normEvents(tt.want))
		})
	}

	// Events with the same time are all listed.
	e5, e6 := auditEvent(5, base.Add(3*time.Hour)), auditEvent(6, base.Add(3*time.Hour))
	must(t, s.AppendAudit(ctx, e5, e6))
	got, err = s.ListAudit(ctx, norm(e5.Time), 0)
	must(t, err)
	if len(got) != 2 || got[0].EventID == got[1].EventID {
		t.Fatalf("ListAudit since the tie = %+v, want events 5 and 6", got)
	}
	if got[0].EventID == e6.EventID {
		got[0], got[1] = got[1], got[0]
	}
	equal(t, "events with the same time", got, normEvents([]catalog.AuditEvent{e5, e6}))
}

func testManyAuditEvents(t *testing.T, s catalog.Store) {
	var want []catalog.AuditEvent
	for i := range 450 {
		want = append(want, auditEvent(i, base.Add(time.Duration(i)*time.Millisecond)))
	}
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AppendAudit(ctx, want[:300]...))
		for _, e := range want[300:400] {
			must(t, tx.AppendAudit(ctx, e))
		}
		return nil
	})
	must(t, s.AppendAudit(t.Context(), want[400:]...))
	checkAudit(t, s, want)
}

func testAuditZero(t *testing.T, s catalog.Store) {
	// The zero event round-trips, zero time included.
	must(t, s.AppendAudit(t.Context(), catalog.AuditEvent{}))
	checkAudit(t, s, []catalog.AuditEvent{{}})
}

func testConcurrentTx(t *testing.T, s catalog.Store) {
	const workers, perWorker = 8, 25
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				err := s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
					m, err := tx.Meta(ctx)
					if err != nil {
						return err
					}
					err = tx.AddGrant(ctx, catalog.Grant{Securable: catalog.ID(w + 1), Principal: catalog.ID(i + 1),
						Privilege: catalog.PrivUseCatalog, Grantor: catalog.ID(m.Revision + 1)})
					if err != nil {
						return err
					}
					return tx.SetMeta(ctx, catalog.Meta{Revision: m.Revision + 1, NextID: m.NextID + 1})
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d, transaction %d: %w", w, i, err)
				}
			}
		})
	}
	// A reader sees the revision grow and never a torn transaction.
	done := make(chan struct{})
	readerErr := make(chan error, 1)
	go func() {
		defer close(readerErr)
		last := catalog.Revision(0)
		for {
			select {
			case <-done:
				return
			default:
			}
			m, err := s.Meta(ctx)
			if err != nil {
				readerErr <- err
				return
			}
			if m.Revision < last || catalog.ID(m.Revision) != m.NextID {
				readerErr <- fmt.Errorf("after revision %d, Meta = %+v", last, m)
				return
			}
			last = m.Revision
		}
	}()
	wg.Wait()
	close(done)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := <-readerErr; err != nil {
		t.Errorf("reader: %v", err)
	}
	m, err := s.Meta(ctx)
	must(t, err)
	equal(t, "Meta", m, catalog.Meta{Revision: workers * perWorker, NextID: workers * perWorker})
	gs, err := s.ListGrants(ctx)
	must(t, err)
	if len(gs) != workers*perWorker {
		t.Fatalf("got %d grants, want %d", len(gs), workers*perWorker)
	}
	// Each transaction saw the revision of the one before: the grantors
	// (revision at the time) are 1..n, each once.
	seen := make(map[catalog.ID]bool)
	for _, g := range gs {
		if g.Grantor < 1 || g.Grantor > workers*perWorker || seen[g.Grantor] {
			t.Fatalf("grant %+v: revision seen twice or out of range", g)
		}
		seen[g.Grantor] = true
	}
}

func testClosed(t *testing.T, s catalog.Store) {
	fixture(t, s)
	must(t, s.Close())
	ctx := t.Context()
	_, err := s.Meta(ctx)
	wantCode(t, "Meta", err, catalog.CodeUnavailable)
	_, err = s.ListPrincipals(ctx)
	wantCode(t, "ListPrincipals", err, catalog.CodeUnavailable)
	_, err = s.ListMemberships(ctx)
	wantCode(t, "ListMemberships", err, catalog.CodeUnavailable)
	_, err = s.ListSecurables(ctx)
	wantCode(t, "ListSecurables", err, catalog.CodeUnavailable)
	_, err = s.ListGrants(ctx)
	wantCode(t, "ListGrants", err, catalog.CodeUnavailable)
	_, err = s.ListAudit(ctx, time.Time{}, 0)
	wantCode(t, "ListAudit", err, catalog.CodeUnavailable)
	wantCode(t, "AppendAudit", s.AppendAudit(ctx, auditEvent(1, base)), catalog.CodeUnavailable)
	called := false
	err = s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		called = true
		return nil
	})
	wantCode(t, "ReadWriteTx", err, catalog.CodeUnavailable)
	if called {
		t.Error("ReadWriteTx called fn on a closed store")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testContextCanceled(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		name   string
		ctx    context.Context
		target error
	}{{"canceled", canceled, context.Canceled}, {"deadline", expired, context.DeadlineExceeded}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.ctx
			_, err := s.Meta(ctx)
			wantCtxErr(t, "Meta", err, c.target)
			_, err = s.ListPrincipals(ctx)
			wantCtxErr(t, "ListPrincipals", err, c.target)
			_, err = s.ListMemberships(ctx)
			wantCtxErr(t, "ListMemberships", err, c.target)
			_, err = s.ListSecurables(ctx)
			wantCtxErr(t, "ListSecurables", err, c.target)
			_, err = s.ListGrants(ctx)
			wantCtxErr(t, "ListGrants", err, c.target)
			_, err = s.ListAudit(ctx, time.Time{}, 0)
			wantCtxErr(t, "ListAudit", err, c.target)
			wantCtxErr(t, "AppendAudit", s.AppendAudit(ctx, auditEvent(1, base)), c.target)
			err = s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
				return tx.AddGrant(ctx, catalog.Grant{Securable: 1, Principal: 1, Privilege: catalog.PrivAll, Grantor: 1})
			})
			wantCtxErr(t, "ReadWriteTx", err, c.target)
			checkState(t, s, want)
			checkAudit(t, s, nil)
		})
	}
}

func testContextCanceledInTx(t *testing.T, s catalog.Store) {
	want := fixture(t, s)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	err := s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		rollbackWrites(t, ctx, tx)
		cancel()
		return nil
	})
	wantCtxErr(t, "ReadWriteTx canceled before commit", err, context.Canceled)
	checkState(t, s, want)
	checkAudit(t, s, nil)
}

func testContextCanceledWaiting(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	releaseFirst := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseFirst) // before the store is closed, should the test fail
	first := make(chan error, 1)
	go func() {
		first <- s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
			close(entered)
			<-release
			return tx.SetMeta(ctx, catalog.Meta{Revision: 1, NextID: 1})
		})
	}()
	<-entered

	// A second transaction waits for the first; canceling its context ends
	// the wait. (A store that runs both at once must still not commit the
	// second, whose fn returns only once its context is done.)
	ctx2, cancel := context.WithCancel(ctx)
	second := make(chan error, 1)
	go func() {
		second <- s.ReadWriteTx(ctx2, func(ctx context.Context, tx catalog.RWTx) error {
			if err := tx.SetMeta(ctx, catalog.Meta{Revision: 99, NextID: 99}); err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		})
	}()
	cancel()
	select {
	case err := <-second:
		wantCtxErr(t, "second ReadWriteTx", err, context.Canceled)
	case <-time.After(30 * time.Second):
		t.Fatal("ReadWriteTx kept waiting for the write lock after its context was canceled")
	}
	releaseFirst()
	if err := <-first; err != nil {
		t.Fatalf("first ReadWriteTx: %v", err)
	}
	m, err := s.Meta(ctx)
	must(t, err)
	equal(t, "Meta", m, catalog.Meta{Revision: 1, NextID: 1})
}

// testAuditCompletion: a completion replaces the outcome columns of the
// row with its EventID, whether that row is in the same transaction, an
// earlier one or the same AppendAudit call; the other columns, the time
// and the order stay; a completion of an unknown event is dropped; a
// rolled back completion changes nothing.
func testAuditCompletion(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	request := func(i int, at time.Time) catalog.AuditEvent {
		e := auditEvent(i, at)
		e.Service, e.Action, e.StatusCode, e.ErrorMessage, e.Decision, e.Reason, e.LatencyMs = "mcp", "tools/call", 0, "", "allow", "granted", 0
		e.RequestParams, e.SessionID = `{"phase":"request"}`, ""
		return e
	}
	completion := func(r catalog.AuditEvent, status int) catalog.AuditEvent {
		c := r
		c.Completes = true
		c.UserIdentity, c.Action = "someone-else", "ignored" // not outcome columns
		c.SessionID, c.RequestParams, c.StatusCode, c.ErrorMessage = "sess-"+r.EventID[len(r.EventID)-2:], `{"bytes_out":12}`, status, "upstream said no"
		c.SQLState, c.Decision, c.Reason, c.LatencyMs = "", "deny", "guard denied the result", 1.5
		return c
	}
	completed := func(r, c catalog.AuditEvent) catalog.AuditEvent {
		r.CompleteWith(&c)
		return r
	}
	r1, r2, r3, r4 := request(11, base), request(12, base.Add(time.Second)), request(13, base.Add(2*time.Second)), request(14, base.Add(3*time.Second))
	must(t, s.AppendAudit(ctx, r1, r2))
	c1, c3, c4 := completion(r1, 200), completion(r3, 502), completion(r4, 404)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AppendAudit(ctx, c1, r3))   // r1 is in an earlier transaction
		return tx.AppendAudit(ctx, c3, r4, c4) // r3 in this one; r4 in the same call
	})
	unknown := completion(request(99, base), 200)
	must(t, s.AppendAudit(ctx, unknown))
	err := s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.AppendAudit(ctx, completion(r2, 500)))
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("ReadWriteTx = %v, want errBoom", err)
	}
	checkAudit(t, s, []catalog.AuditEvent{completed(r1, c1), r2, completed(r3, c3), completed(r4, c4)})
	// The same completion again is idempotent.
	must(t, s.AppendAudit(ctx, c1))
	checkAudit(t, s, []catalog.AuditEvent{completed(r1, c1), r2, completed(r3, c3), completed(r4, c4)})
}
