package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// RunConformance runs the conformance suite. Each subtest gets a new, empty
// store from newStore and closes it when it ends (newStore need not, but a
// second Close must return nil).
func RunConformance(t *testing.T, newStore func(t *testing.T) catalog.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s catalog.Store)
	}{
		{"EmptyStore", testEmptyStore},
		{"Meta", testMeta},
		{"Principals", testPrincipals},
		{"DeletePrincipalCascades", testDeletePrincipal},
		{"Memberships", testMemberships},
		{"Securables", testSecurables},
		{"DeleteSecurableCascades", testDeleteSecurable},
		{"Grants", testGrants},
		{"GrantsInterleaved", testGrantsInterleaved},
		{"ManyGrants", testManyGrants},
		{"Rollback", testRollback},
		{"PanicRollsBack", testPanic},
		{"ReadOwnWrites", testReadOwnWrites},
		{"Audit", testAudit},
		{"ManyAuditEvents", testManyAuditEvents},
		{"AuditZeroEvent", testAuditZero},
		{"AuditCompletion", testAuditCompletion},
		{"ConcurrentTransactions", testConcurrentTx},
		{"Closed", testClosed},
		{"ContextCanceled", testContextCanceled},
		{"ContextCanceledInTx", testContextCanceledInTx},
		{"ContextCanceledWaiting", testContextCanceledWaiting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.run(t, s)
		})
	}
}

// RunDurability writes every kind of row to a store opened on a fresh
// directory, closes it, reopens the directory and checks that the committed
// data (and only it) survived, twice over. open opens the store in dir,
// creating it if needed; the suite closes the stores.
func RunDurability(t *testing.T, open func(t *testing.T, dir string) catalog.Store) {
	dir := t.TempDir()
	s := open(t, dir)
	want := fixture(t, s)
	events := []catalog.AuditEvent{auditEvent(1, base), auditEvent(2, base.Add(time.Second))}
	if err := s.AppendAudit(t.Context(), events[0]); err != nil {
		t.Fatalf("AppendAudit: %v", err)
	}
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		return tx.AppendAudit(ctx, events[1])
	})
	// A rolled back transaction leaves nothing behind, on disk either.
	err := s.ReadWriteTx(t.Context(), func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.PutPrincipal(ctx, principal(99, "ghost", catalog.KindUser)))
		must(t, tx.AppendAudit(ctx, auditEvent(99, base)))
		must(t, tx.SetMeta(ctx, catalog.Meta{Revision: 99, NextID: 999}))
		return errBoom
	})
	if err != errBoom {
		t.Fatalf("ReadWriteTx = %v, want errBoom", err)
	}
	closeStore(t, s)

	s = open(t, dir)
	checkState(t, s, want)
	checkAudit(t, s, events)
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		must(t, tx.DeletePrincipal(ctx, 3))
		must(t, tx.AddGrant(ctx, catalog.Grant{Securable: 4, Principal: 2, Privilege: catalog.PrivManage, Grantor: 1}))
		must(t, tx.SetMeta(ctx, catalog.Meta{Revision: 2, NextID: 11}))
		return tx.AppendAudit(ctx, auditEvent(3, base.Add(2*time.Second)))
	})
	events = append(events, auditEvent(3, base.Add(2*time.Second)))
	want = snapshot(t, s)
	if len(want.Principals) != 3 || want.Meta.Revision != 2 || len(want.Grants) != 3 {
		t.Fatalf("unexpected state after the second round: %+v", want)
	}
	closeStore(t, s)

	s = open(t, dir)
	checkState(t, s, want)
	checkAudit(t, s, events)
	closeStore(t, s)
}

func closeStore(t *testing.T, s catalog.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// errBoom is the error the suite's transactions fail with.
var errBoom = errors.New("storetest: boom")

// base is the time of the fixtures: not UTC, with nanoseconds.
var base = time.Date(2025, 6, 1, 12, 30, 45, 123456789, time.FixedZone("CEST", 2*3600))

// state is everything a Reader returns.
type state struct {
	Meta        catalog.Meta
	Principals  []catalog.Principal
	Memberships []catalog.Membership
	Securables  []catalog.Securable
	Grants      []catalog.Grant
}

func snapshot(t *testing.T, r catalog.Reader) state {
	t.Helper()
	ctx := t.Context()
	var st state
	var err error
	if st.Meta, err = r.Meta(ctx); err != nil {
		t.Fatalf("Meta: %v", err)
	}
	if st.Principals, err = r.ListPrincipals(ctx); err != nil {
		t.Fatalf("ListPrincipals: %v", err)
	}
	if st.Memberships, err = r.ListMemberships(ctx); err != nil {
		t.Fatalf("ListMemberships: %v", err)
	}
	if st.Securables, err = r.ListSecurables(ctx); err != nil {
		t.Fatalf("ListSecurables: %v", err)
	}
	if st.Grants, err = r.ListGrants(ctx); err != nil {
		t.Fatalf("ListGrants: %v", err)
	}
	return st.normalized()
}

// normalized turns empty slices into nil, which the suite does not tell
// apart.
func (st state) normalized() state {
	if len(st.Principals) == 0 {
		st.Principals = nil
	}
	if len(st.Memberships) == 0 {
		st.Memberships = nil
	}
	if len(st.Securables) == 0 {
		st.Securables = nil
	}
	if len(st.Grants) == 0 {
		st.Grants = nil
	}
	return st
}

// checkState compares everything r returns with want (whose times need not
// be normalized).
func checkState(t *testing.T, r catalog.Reader, want state) {
	t.Helper()
	got := snapshot(t, r)
	want = want.normalized()
	for i := range want.Principals {
		want.Principals[i].Created = norm(want.Principals[i].Created)
	}
	for i := range want.Securables {
		want.Securables[i].Created = norm(want.Securables[i].Created)
	}
	equal(t, "Meta", got.Meta, want.Meta)
	equal(t, "ListPrincipals", got.Principals, want.Principals)
	equal(t, "ListMemberships", got.Memberships, want.Memberships)
	equal(t, "ListSecurables", got.Securables, want.Securables)
	equal(t, "ListGrants", got.Grants, want.Grants)
	for _, p := range got.Principals {
		if p.Created.Location() != time.UTC {
			t.Errorf("principal %d: Created in %v, want UTC", p.ID, p.Created.Location())
		}
	}
	for _, s := range got.Securables {
		if s.Created.Location() != time.UTC {
			t.Errorf("securable %d: Created in %v, want UTC", s.ID, s.Created.Location())
		}
	}
}

// checkAudit compares all audit events with want (in order).
func checkAudit(t *testing.T, s catalog.AuditReader, want []catalog.AuditEvent) {
	t.Helper()
	got, err := s.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	equal(t, "ListAudit", got, normEvents(want))
}

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

// norm is t as a store returns it: UTC, truncated to microseconds.
func norm(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func normEvents(es []catalog.AuditEvent) []catalog.AuditEvent {
	if len(es) == 0 {
		return nil
	}
	out := make([]catalog.AuditEvent, len(es))
	for i, e := range es {
		e.Time = norm(e.Time)
		out[i] = e
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// update runs fn in a transaction that must commit.
func update(t *testing.T, s catalog.Store, fn func(ctx context.Context, tx catalog.RWTx) error) {
	t.Helper()
	if err := s.ReadWriteTx(t.Context(), fn); err != nil {
		t.Fatalf("ReadWriteTx: %v", err)
	}
}

// wantCode checks that err is a *catalog.Error with the given code.
func wantCode(t *testing.T, what string, err error, code catalog.Code) {
	t.Helper()
	var ce *catalog.Error
	switch {
	case err == nil:
		t.Errorf("%s: no error, want a *catalog.Error with code %d", what, code)
	case !errors.As(err, &ce):
		t.Errorf("%s: error %v is a %T, want a *catalog.Error with code %d", what, err, err, code)
	case ce.Code != code:
		t.Errorf("%s: error %v has code %d, want %d", what, err, ce.Code, code)
	}
}

// wantCtxErr checks that err wraps target (context.Canceled or
// context.DeadlineExceeded).
func wantCtxErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want one wrapping %v", what, err, target)
	}
}

func principal(id catalog.ID, name string, kind catalog.PrincipalKind) catalog.Principal {
	return catalog.Principal{
		ID:       id,
		Name:     name,
		Kind:     kind,
		Password: fmt.Sprintf("SCRAM-SHA-256$4096:c2FsdA==$%d:a2V5", id),
		Comment:  "principal " + name,
		Created:  base.Add(time.Duration(id) * time.Minute),
	}
}

func securable(id catalog.ID, typ catalog.SecurableType, parent catalog.ID, name string) catalog.Securable {
	return catalog.Securable{
		ID:      id,
		Type:    typ,
		Parent:  parent,
		Name:    name,
		Owner:   1,
		Comment: "securable " + name,
		Created: base.Add(time.Duration(id) * time.Hour),
	}
}

func auditEvent(i int, at time.Time) catalog.AuditEvent {
	return catalog.AuditEvent{
		EventID:       fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		Time:          at,
		Service:       "sql",
		Action:        fmt.Sprintf("GRANT %d", i),
		UserIdentity:  "alice@example.com",
		RunBy:         "bob@example.com",
		RunAs:         "agent-7",
		SourceIP:      "127.0.0.1",
		UserAgent:     "psql/17 ünïcødé",
		SessionID:     fmt.Sprintf("session-%d", i),
		RequestID:     fmt.Sprintf("request-%d", i),
		SecurableType: "CONNECTION",
		SecurableName: `main.default."my conn"`,
		RequestParams: `{"privilege":"USE CONNECTION","secret":"[REDACTED]","quote":"it's"}`,
		StatusCode:    i % 2,
		ErrorMessage:  "line one\nline two",
		SQLState:      "42501",
		Decision:      "deny",
		Reason:        "no USE CONNECTION",
		LatencyMs:     12.345678 + float64(i),
		Revision:      catalog.Revision(40 + i),
	}
}

// fixture commits a small catalog and returns what the store should hold.
// Principals 1 (admin), 2, 3 (users), 5 (group with 2 and 3); securables
// 1 (metastore) .. 4 (connection with options and secrets).
func fixture(t *testing.T, s catalog.Store) state {
	t.Helper()
	admin := principal(1, catalog.AdminUser, catalog.KindUser)
	admin.Admin, admin.Builtin = true, true
	group := principal(5, "data engineers", catalog.KindGroup)
	group.Password = ""
	want := state{
		Meta:        catalog.Meta{Revision: 1, NextID: 6},
		Principals:  []catalog.Principal{admin, principal(2, "alice", catalog.KindUser), principal(3, "bot", catalog.KindServicePrincipal), group},
		Memberships: []catalog.Membership{{Group: 5, Member: 2}, {Group: 5, Member: 3}},
		Securables: []catalog.Securable{
			securable(1, catalog.TypeMetastore, 0, catalog.MetastoreName),
			securable(2, catalog.TypeCatalog, 1, "main"),
			securable(3, catalog.TypeSchema, 2, "default"),
			securable(4, catalog.TypeConnection, 3, "pg"),
		},
		Grants: []catalog.Grant{
			{Securable: 2, Principal: 5, Privilege: catalog.PrivUseCatalog, Grantor: 1},
			{Securable: 3, Principal: 5, Privilege: catalog.PrivUseSchema, Grantor: 1},
			{Securable: 4, Principal: 3, Privilege: catalog.PrivUseConnection, Grantor: 2},
		},
	}
	want.Securables[0].Builtin = true
	want.Securables[3].Options = map[string]string{"host": "db.internal", "port": "5432"}
	want.Securables[3].Secrets = []byte{0x00, 0x01, 0xfe, 0xff, 0x00}
	update(t, s, func(ctx context.Context, tx catalog.RWTx) error {
		// Out of order, to see the lists sorted.
		for i := len(want.Principals) - 1; i >= 0; i-- {
			must(t, tx.PutPrincipal(ctx, want.Principals[i]))
		}
		for i := len(want.Securables) - 1; i >= 0; i-- {
			must(t, tx.PutSecurable(ctx, want.Securables[i]))
		}
		for i := len(want.Memberships) - 1; i >= 0; i-- {
			must(t, tx.AddMembership(ctx, want.Memberships[i]))
		}
		for i := len(want.Grants) - 1; i >= 0; i-- {
			must(t, tx.AddGrant(ctx, want.Grants[i]))
		}
		return tx.SetMeta(ctx, want.Meta)
	})
	return want
}

// sortGrants sorts grants in the order ListGrants returns them.
func sortGrants(gs []catalog.Grant) {
	sort.Slice(gs, func(i, j int) bool {
		a, b := gs[i], gs[j]
		if a.Securable != b.Securable {
			return a.Securable < b.Securable
		}
		if a.Principal != b.Principal {
			return a.Principal < b.Principal
		}
		return a.Privilege < b.Privilege
	})
}
