package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// RunStore runs the conformance suite of catalog.Store. Each subtest gets
// a new, empty store from newStore and closes it when it ends (newStore
// need not, but a second Close must return nil).
func RunStore(t *testing.T, newStore func(t *testing.T) catalog.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s catalog.Store)
	}{
		{"Empty", testEmpty},
		{"AppendLoad", testAppendLoad},
		{"RoundTrip", testRoundTrip},
		{"Conflict", testConflict},
		{"ConcurrentAppends", testConcurrentAppends},
		{"Changes", testChanges},
		{"SnapshotPrune", testSnapshotPrune},
		{"SecurableTypes", testSecurableTypes},
		{"LargeChange", testLargeChange},
		{"Closed", testClosed},
		{"ContextCanceled", testContextCanceled},
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

// RunStoreDurability appends changes to a store opened on a fresh
// directory, snapshots, appends more, closes it and checks after reopening
// that everything committed (and only that) is loaded, twice over. open
// opens the store in dir (for a database-backed store: the same database
// each time), creating it if needed; the suite closes the stores.
func RunStoreDurability(t *testing.T, open func(t *testing.T, dir string) catalog.Store) {
	dir := t.TempDir()
	ctx := t.Context()
	s := open(t, dir)
	changes := fixture()
	mustAppend(t, s, 0, changes[:1]...)
	mustAppend(t, s, 1, changes[1:]...)
	// A conflicting append leaves nothing behind, on disk either.
	ghost := change(2, 99, []catalog.ChangeOp{putPrincipal(principal(99, "ghost", catalog.KindUser))}, 99)
	wantCode(t, "Append on a stale base", s.Append(ctx, 1, []catalog.Change{ghost}), catalog.CodeConflict)
	want := replay(t, &catalog.State{}, changes)
	closeStore(t, s)

	s = open(t, dir)
	checkLoad(t, s, want)
	checkChanges(t, s, 0, changes)
	st := replay(t, &catalog.State{}, changes)
	must(t, s.WriteSnapshot(ctx, st))
	must(t, s.Prune(ctx, st.Revision))
	more := []catalog.Change{
		change(3, 12, []catalog.ChangeOp{{Kind: catalog.OpDeletePrincipal, ID: 2}, addGrant(4, 5, catalog.PrivManage, 1)}, 30),
		change(4, 12, []catalog.ChangeOp{putPrincipal(principal(11, "carol", catalog.KindUser))}, 31),
	}
	mustAppend(t, s, 2, more...)
	want = replay(t, want, more)
	closeStore(t, s)

	s = open(t, dir)
	checkLoad(t, s, want)
	checkChanges(t, s, 2, more)
	if h, err := s.Head(ctx); err != nil || h != 4 {
		t.Errorf("Head = %d, %v; want 4", h, err)
	}
	closeStore(t, s)
}

func closeStore(t *testing.T, s interface{ Close() error }) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// base is the time of the fixtures: not UTC, with nanoseconds.
var base = time.Date(2025, 6, 1, 12, 30, 45, 123456789, time.FixedZone("CEST", 2*3600))

// norm is t as a store returns it: UTC, truncated to microseconds.
func norm(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

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

func putPrincipal(p catalog.Principal) catalog.ChangeOp {
	return catalog.ChangeOp{Kind: catalog.OpPutPrincipal, Principal: &p}
}

func putSecurable(s catalog.Securable) catalog.ChangeOp {
	return catalog.ChangeOp{Kind: catalog.OpPutSecurable, Securable: &s}
}

func addMember(g, m catalog.ID) catalog.ChangeOp {
	return catalog.ChangeOp{Kind: catalog.OpAddMember, Membership: &catalog.Membership{Group: g, Member: m}}
}

func addGrant(s, p catalog.ID, priv catalog.Privilege, grantor catalog.ID) catalog.ChangeOp {
	return catalog.ChangeOp{Kind: catalog.OpAddGrant, Grant: &catalog.Grant{Securable: s, Principal: p, Privilege: priv, Grantor: grantor}}
}

func removeGrant(s, p catalog.ID, priv catalog.Privilege) catalog.ChangeOp {
	return catalog.ChangeOp{Kind: catalog.OpRemoveGrant, GrantKey: &catalog.GrantKey{Securable: s, Principal: p, Privilege: priv}}
}

// change builds change rev with one audit record (event i) per op.
func change(rev catalog.Revision, nextID catalog.ID, ops []catalog.ChangeOp, event int) catalog.Change {
	c := catalog.Change{Revision: rev, NextID: nextID, Ops: ops}
	e := auditEvent(event, base.Add(time.Duration(rev)*time.Second))
	e.Revision = rev
	c.Audit = []catalog.AuditEvent{e}
	return c
}

// fixture is two changes: a small catalog (principals 1 admin, 2 alice,
// 3 bot, 5 a group with 2 and 3; securables 1 metastore .. 4 a connection
// with options and secrets; grants), then changes of every kind.
func fixture() []catalog.Change {
	admin := principal(1, catalog.AdminUser, catalog.KindUser)
	admin.Admin, admin.Builtin = true, true
	group := principal(5, "data engineers", catalog.KindGroup)
	group.Password = ""
	ms := securable(1, catalog.TypeMetastore, 0, catalog.MetastoreName)
	ms.Builtin = true
	conn := securable(4, catalog.TypeConnection, 3, "pg")
	conn.Options = map[string]string{"host": "db.internal", "port": "5432"}
	conn.Secrets = []byte{0x00, 0x01, 0xfe, 0xff, 0x00}
	c1 := change(1, 6, []catalog.ChangeOp{
		putPrincipal(admin), putPrincipal(principal(2, "alice", catalog.KindUser)),
		putPrincipal(principal(3, "bot", catalog.KindServicePrincipal)), putPrincipal(group),
		putSecurable(ms), putSecurable(securable(2, catalog.TypeCatalog, 1, "main")),
		putSecurable(securable(3, catalog.TypeSchema, 2, "default")), putSecurable(conn),
		addMember(5, 2), addMember(5, 3),
		addGrant(2, 5, catalog.PrivUseCatalog, 1), addGrant(3, 5, catalog.PrivUseSchema, 1),
		addGrant(4, 3, catalog.PrivUseConnection, 2), addGrant(4, 2, catalog.PrivManage, 1),
	}, 1)
	alice := principal(2, `"Ålice" 'o''brien'; DROP TABLE principals; --`, catalog.KindUser)
	alice.Comment = "new\ncomment ✓"
	renamed := securable(2, catalog.TypeCatalog, 1, "Main Catalog")
	c2 := change(2, 11, []catalog.ChangeOp{
		putPrincipal(alice),                       // replace every field but the ID
		{Kind: catalog.OpDeletePrincipal, ID: 3},  // its grant and membership go with it
		{Kind: catalog.OpDeleteSecurable, ID: 42}, // missing: a no-op
		removeGrant(4, 2, catalog.PrivManage),
		addGrant(2, 5, catalog.PrivUseCatalog, 2), // again: a new grantor
		putSecurable(renamed),
		putPrincipal(principal(10, "grp", catalog.KindGroup)),
		addMember(10, 2), addMember(10, 2), // twice
		{Kind: catalog.OpRemoveMember, Membership: &catalog.Membership{Group: 9, Member: 9}},
	}, 2)
	c2.Audit = append(c2.Audit, auditEvent(3, base.Add(-time.Hour)))
	c2.Audit[1].Revision = 2
	return []catalog.Change{c1, c2}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustAppend(t *testing.T, s catalog.Store, baseRev catalog.Revision, changes ...catalog.Change) {
	t.Helper()
	if err := s.Append(t.Context(), baseRev, changes); err != nil {
		t.Fatalf("Append(%d, %d changes): %v", baseRev, len(changes), err)
	}
}

func replay(t *testing.T, st *catalog.State, changes []catalog.Change) *catalog.State {
	t.Helper()
	out, err := catalog.Replay(st, changes)
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return out
}

// checkLoad checks that what s loads is want.
func checkLoad(t *testing.T, s catalog.Store, want *catalog.State) {
	t.Helper()
	st, changes, err := s.Load(t.Context())
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for i, c := range changes {
		if c.Revision <= st.Revision || (i > 0 && c.Revision != changes[i-1].Revision+1) {
			t.Fatalf("Load: snapshot at %d, then change records %v: not the records after it", st.Revision, revisions(changes))
		}
	}
	got := replay(t, st, changes)
	equal(t, "loaded catalog", normState(got), normState(want))
}

// checkChanges checks that the records after after are want (as appended,
// normalized).
func checkChanges(t *testing.T, s catalog.Store, after catalog.Revision, want []catalog.Change) {
	t.Helper()
	got, err := s.Changes(t.Context(), after, 0)
	if err != nil {
		t.Fatalf("Changes(%d): %v", after, err)
	}
	equal(t, fmt.Sprintf("Changes(%d)", after), normChanges(got), normChanges(want))
	for _, c := range got {
		for _, o := range c.Ops {
			if o.Principal != nil && o.Principal.Created.Location() != time.UTC {
				t.Errorf("change %d: principal created in %v, want UTC", c.Revision, o.Principal.Created.Location())
			}
		}
		for _, e := range c.Audit {
			if e.Time.Location() != time.UTC {
				t.Errorf("change %d: audit time in %v, want UTC", c.Revision, e.Time.Location())
			}
		}
	}
}

func revisions(cs []catalog.Change) []catalog.Revision {
	out := make([]catalog.Revision, len(cs))
	for i, c := range cs {
		out[i] = c.Revision
	}
	return out
}

// normState normalizes times and empty slices.
func normState(st *catalog.State) *catalog.State {
	c := *st
	c.Principals = append([]catalog.Principal(nil), st.Principals...)
	for i := range c.Principals {
		c.Principals[i].Created = norm(c.Principals[i].Created)
	}
	c.Securables = append([]catalog.Securable(nil), st.Securables...)
	for i := range c.Securables {
		c.Securables[i].Created = norm(c.Securables[i].Created)
	}
	if len(c.Principals) == 0 {
		c.Principals = nil
	}
	if len(c.Securables) == 0 {
		c.Securables = nil
	}
	if len(c.Memberships) == 0 {
		c.Memberships = nil
	}
	if len(c.Grants) == 0 {
		c.Grants = nil
	}
	return &c
}

// normChanges returns the records as a store returns them.
func normChanges(cs []catalog.Change) []catalog.Change {
	if len(cs) == 0 {
		return nil
	}
	out := make([]catalog.Change, len(cs))
	for i, c := range cs {
		c.Ops = append([]catalog.ChangeOp(nil), c.Ops...)
		for j := range c.Ops {
			o := &c.Ops[j]
			if o.Principal != nil {
				p := *o.Principal
				p.Created = norm(p.Created)
				o.Principal = &p
			}
			if o.Securable != nil {
				s := *o.Securable
				s.Created = norm(s.Created)
				o.Securable = &s
			}
		}
		c.Audit = normEvents(c.Audit)
		out[i] = c
	}
	return out
}

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

func equal(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s:\n got  %+v\n want %+v", what, got, want)
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

// --- cases ---

func testEmpty(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	st, changes, err := s.Load(ctx)
	must(t, err)
	if st.Revision != 0 || len(st.Principals)+len(st.Securables)+len(st.Memberships)+len(st.Grants) != 0 || len(changes) != 0 {
		t.Errorf("a new store loads %+v and %d records, want an empty State", st, len(changes))
	}
	if h, err := s.Head(ctx); err != nil || h != 0 {
		t.Errorf("Head = %d, %v; want 0", h, err)
	}
	if cs, err := s.Changes(ctx, 0, 0); err != nil || len(cs) != 0 {
		t.Errorf("Changes(0) = %v, %v; want none", cs, err)
	}
}

func testAppendLoad(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	changes := fixture()
	mustAppend(t, s, 0, changes[0])
	mustAppend(t, s, 1, changes[1])
	if h, err := s.Head(ctx); err != nil || h != 2 {
		t.Fatalf("Head = %d, %v; want 2", h, err)
	}
	want := replay(t, &catalog.State{}, changes)
	// What the fixture's second change did, spelled out.
	if len(want.Principals) != 4 || want.Principals[1].Name[0] != '"' || len(want.Memberships) != 2 ||
		len(want.Grants) != 2 || want.Grants[0].Grantor != 2 || want.Securables[1].Name != "Main Catalog" || want.NextID != 11 {
		t.Fatalf("unexpected replay of the fixture: %+v", want)
	}
	checkLoad(t, s, want)
	checkChanges(t, s, 0, changes)
}

func testRoundTrip(t *testing.T, s catalog.Store) {
	withEmpty := securable(20, catalog.TypeConnection, 3, "empty")
	withEmpty.Options, withEmpty.Secrets = map[string]string{}, []byte{}
	withNil := securable(21, catalog.TypeConnection, 3, "nil")
	weird := securable(22, catalog.TypeConnection, 3, "quote\"s 'and' \\ ünï\x01")
	weird.Options = map[string]string{"k\"ey": "v\nal\u2028ue", "": ""}
	weird.Secrets = []byte(strings.Repeat("\x00\xff", 300))
	p := principal(100_000, strings.Repeat("long name ", 50), catalog.KindUser)
	p.Created = time.Time{}.Add(time.Microsecond)
	c := change(1, 100_001, []catalog.ChangeOp{putSecurable(withEmpty), putSecurable(withNil), putSecurable(weird), putPrincipal(p)}, 7)
	c.Audit = append(c.Audit, catalog.AuditEvent{Revision: 1}) // the zero event, but for its revision
	mustAppend(t, s, 0, c)
	got, err := s.Changes(t.Context(), 0, 0)
	must(t, err)
	checkChanges(t, s, 0, []catalog.Change{c})
	if len(got) == 1 && len(got[0].Ops) == 4 {
		if o := got[0].Ops[0].Securable; o.Options == nil || o.Secrets == nil {
			t.Errorf("empty Options and Secrets came back nil: %+v", o)
		}
		if o := got[0].Ops[1].Securable; o.Options != nil || o.Secrets != nil {
			t.Errorf("nil Options and Secrets came back non-nil: %+v", o)
		}
	}
}

func testConflict(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	changes := fixture()
	mustAppend(t, s, 0, changes...)
	extra := change(3, 12, []catalog.ChangeOp{putPrincipal(principal(11, "x", catalog.KindUser))}, 9)
	for _, b := range []catalog.Revision{0, 1, 3, 7} {
		e := extra
		e.Revision = b + 1
		wantCode(t, fmt.Sprintf("Append on base %d", b), s.Append(ctx, b, []catalog.Change{e}), catalog.CodeConflict)
	}
	if h, err := s.Head(ctx); err != nil || h != 2 {
		t.Fatalf("Head = %d, %v after refused appends; want 2", h, err)
	}
	checkChanges(t, s, 0, changes)
	mustAppend(t, s, 2, extra)
}

func testConcurrentAppends(t *testing.T, s catalog.Store) {
	const writers, each = 4, 12
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < each; {
				head, err := s.Head(ctx)
				if err != nil {
					errs <- err
					return
				}
				id := catalog.ID(1000*(w+1) + i)
				c := change(head+1, id+1, []catalog.ChangeOp{putPrincipal(principal(id, fmt.Sprintf("w%d-%d", w, i), catalog.KindUser))}, int(id))
				switch err := s.Append(ctx, head, []catalog.Change{c}); {
				case err == nil:
					i++
				case catalog.IsCode(err, catalog.CodeConflict):
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cs, err := s.Changes(ctx, 0, 0)
	must(t, err)
	if len(cs) != writers*each {
		t.Fatalf("%d records, want %d", len(cs), writers*each)
	}
	seen := map[string]bool{}
	for i, c := range cs {
		if c.Revision != catalog.Revision(i+1) {
			t.Fatalf("record %d has revision %d", i, c.Revision)
		}
		name := c.Ops[0].Principal.Name
		if seen[name] {
			t.Fatalf("%s appended twice", name)
		}
		seen[name] = true
	}
	st, rest, err := s.Load(ctx)
	must(t, err)
	if got := replay(t, st, rest); len(got.Principals) != writers*each {
		t.Fatalf("loaded %d principals, want %d", len(got.Principals), writers*each)
	}
}

func testChanges(t *testing.T, s catalog.Store) {
	var all []catalog.Change
	for i := 1; i <= 10; i++ {
		c := change(catalog.Revision(i), catalog.ID(i+1), []catalog.ChangeOp{putPrincipal(principal(catalog.ID(i), fmt.Sprint("p", i), catalog.KindUser))}, i)
		all = append(all, c)
	}
	mustAppend(t, s, 0, all[:3]...)
	mustAppend(t, s, 3, all[3:]...)
	for _, tc := range []struct {
		after     catalog.Revision
		limit     int
		from, end int
	}{{0, 0, 0, 10}, {0, 4, 0, 4}, {3, 4, 3, 7}, {8, 5, 8, 10}, {9, 0, 9, 10}, {10, 0, 10, 10}, {12, 0, 10, 10}} {
		got, err := s.Changes(t.Context(), tc.after, tc.limit)
		must(t, err)
		equal(t, fmt.Sprintf("Changes(%d, %d)", tc.after, tc.limit), normChanges(got), normChanges(all[tc.from:tc.end]))
	}
}

func testSnapshotPrune(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	changes := fixture()
	for i := 3; i <= 6; i++ {
		changes = append(changes, change(catalog.Revision(i), catalog.ID(20+i),
			[]catalog.ChangeOp{putPrincipal(principal(catalog.ID(20+i), fmt.Sprint("p", i), catalog.KindUser)), addMember(5, catalog.ID(20+i))}, i))
	}
	mustAppend(t, s, 0, changes...)
	at4 := replay(t, &catalog.State{}, changes[:4])
	must(t, s.WriteSnapshot(ctx, at4))
	must(t, s.Prune(ctx, 4))
	want := replay(t, &catalog.State{}, changes)
	checkLoad(t, s, want)
	checkChanges(t, s, 4, changes[4:])
	// Records before the snapshot are gone or complete, never with a gap.
	got, err := s.Changes(ctx, 0, 0)
	if err != nil {
		if !catalog.IsPruned(err) {
			t.Fatalf("Changes(0) after Prune: %v, want ErrPruned or the records", err)
		}
	} else {
		equal(t, "Changes(0) of a store that kept the records", normChanges(got), normChanges(changes))
	}
	// Appends continue, a later snapshot wins.
	c7 := change(7, 40, []catalog.ChangeOp{{Kind: catalog.OpDeletePrincipal, ID: 24}}, 7)
	mustAppend(t, s, 6, c7)
	want = replay(t, want, []catalog.Change{c7})
	must(t, s.WriteSnapshot(ctx, want))
	must(t, s.Prune(ctx, 7))
	checkLoad(t, s, want)
	if cs, err := s.Changes(ctx, 7, 0); err != nil || len(cs) != 0 {
		t.Errorf("Changes(7) = %v, %v; want none", cs, err)
	}
}

// testSecurableTypes: the securables of the AI gateway (model services,
// access tokens, rate limits, budgets, tool pins, policies) are stored as
// generic securables, with their grants, in change records and snapshots;
// a change's audit records keep the usage, payload, trace and guardrail
// columns.
func testSecurableTypes(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	changes := fixture()
	ops := []catalog.ChangeOp{}
	id := catalog.ID(100)
	for _, typ := range []catalog.SecurableType{catalog.TypeProviderService, catalog.TypeModelService, catalog.TypeAccessToken,
		catalog.TypeRateLimit, catalog.TypeBudget, catalog.TypeToolPin, catalog.TypePolicy} {
		if _, ok := catalog.LookupType(typ); !ok {
			t.Fatalf("securable type %s is not registered", typ)
		}
		sec := securable(id, typ, 3, strings.ToLower(strings.ReplaceAll(string(typ), " ", "_")))
		sec.Options = map[string]string{"kind": string(typ), "json": `{"a":[1,2]}`}
		sec.Secrets = []byte{0xA5, 0x00, byte(id)}
		ops = append(ops, putSecurable(sec))
		id++
	}
	ops = append(ops, addGrant(100, 2, catalog.PrivExecute, 1), addGrant(101, 5, catalog.PrivExecute, 1),
		addGrant(3, 5, catalog.PrivCreateService, 1))
	c3 := change(3, id, ops, 3)
	llm := auditEvent(4, base)
	llm.Revision, llm.Service, llm.TraceID, llm.SpanID = 3, catalog.AuditServiceLLM, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	llm.Guardrails = `[{"policy":"pii","action":"mask"}]`
	llm.Usage = &catalog.LLMUsage{ProviderService: "system.ai.openai", Provider: "openai", Model: "gpt-4.1", InputTokens: 10,
		OutputTokens: 20, CachedInputTokens: 3, CacheWriteTokens: 4, ReasoningTokens: 5, CostNanos: 123, TTFTMs: 1.5, Streaming: true,
		RequestTags: `{"team":"a"}`, Routing: `[{"status":200}]`}
	llm.Payload = &catalog.AuditPayload{RequestBody: `{"messages":[]}`, ResponseBody: "{}"}
	c3.Audit = append(c3.Audit, llm)
	changes = append(changes, c3)
	mustAppend(t, s, 0, changes...)
	checkChanges(t, s, 0, changes)
	want := replay(t, &catalog.State{}, changes)
	checkLoad(t, s, want)
	must(t, s.WriteSnapshot(ctx, want))
	must(t, s.Prune(ctx, 3))
	checkLoad(t, s, want)
	n := 0
	for _, sec := range want.Securables {
		if sec.ID >= 100 {
			n++
		}
	}
	if n != 7 {
		t.Errorf("the snapshot holds %d of the 7 securables of the new types", n)
	}
}

func testLargeChange(t *testing.T, s catalog.Store) {
	var ops []catalog.ChangeOp
	ops = append(ops, putPrincipal(principal(1, "g", catalog.KindGroup)))
	for i := 2; i < 3000; i++ {
		ops = append(ops, putPrincipal(principal(catalog.ID(i), fmt.Sprint("u", i), catalog.KindUser)), addMember(1, catalog.ID(i)))
	}
	c := change(1, 3000, ops, 1)
	c.Audit[0].RequestParams = `{"statement":"` + strings.Repeat("x", 64<<10) + `"}`
	mustAppend(t, s, 0, c)
	checkChanges(t, s, 0, []catalog.Change{c})
	checkLoad(t, s, replay(t, &catalog.State{}, []catalog.Change{c}))
}

func testClosed(t *testing.T, s catalog.Store) {
	ctx := t.Context()
	changes := fixture()
	mustAppend(t, s, 0, changes...)
	must(t, s.Close())
	_, _, err := s.Load(ctx)
	wantCode(t, "Load", err, catalog.CodeUnavailable)
	_, err = s.Head(ctx)
	wantCode(t, "Head", err, catalog.CodeUnavailable)
	_, err = s.Changes(ctx, 0, 0)
	wantCode(t, "Changes", err, catalog.CodeUnavailable)
	wantCode(t, "Append", s.Append(ctx, 2, []catalog.Change{change(3, 20, nil, 3)}), catalog.CodeUnavailable)
	wantCode(t, "WriteSnapshot", s.WriteSnapshot(ctx, replay(t, &catalog.State{}, changes)), catalog.CodeUnavailable)
	wantCode(t, "Prune", s.Prune(ctx, 1), catalog.CodeUnavailable)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func testContextCanceled(t *testing.T, s catalog.Store) {
	changes := fixture()
	mustAppend(t, s, 0, changes[0])
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	want := replay(t, &catalog.State{}, changes[:1])
	for _, c := range []struct {
		name   string
		ctx    context.Context
		target error
	}{{"canceled", canceled, context.Canceled}, {"deadline", expired, context.DeadlineExceeded}} {
		t.Run(c.name, func(t *testing.T) {
			ctx := c.ctx
			_, _, err := s.Load(ctx)
			wantCtxErr(t, "Load", err, c.target)
			_, err = s.Head(ctx)
			wantCtxErr(t, "Head", err, c.target)
			_, err = s.Changes(ctx, 0, 0)
			wantCtxErr(t, "Changes", err, c.target)
			wantCtxErr(t, "Append", s.Append(ctx, 1, changes[1:]), c.target)
			wantCtxErr(t, "WriteSnapshot", s.WriteSnapshot(ctx, want), c.target)
			wantCtxErr(t, "Prune", s.Prune(ctx, 1), c.target)
			checkLoad(t, s, want)
			checkChanges(t, s, 0, changes[:1])
		})
	}
}
