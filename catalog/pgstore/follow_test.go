package pgstore_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
)

// waitAnnounced waits until s's notifications announced revision rev.
// appendAnnounced appends batch through a, waits until b has the
// announcement of its last revision and returns the records as b reads
// them from the table.
func appendAnnounced(t *testing.T, a, b *pgstore.Store, batch []catalog.Change) []catalog.Change {
	t.Helper()
	if err := a.Append(t.Context(), 0, batch); err != nil {
		t.Fatal(err)
	}
	waitAnnounced(t, b, batch[len(batch)-1].Revision)
	want, err := b.Changes(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return want
}

func waitAnnounced(t *testing.T, s *pgstore.Store, rev catalog.Revision) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); s.Announced() < rev; { // a failure bound
		if time.Now().After(deadline) {
			t.Fatalf("revision %d not announced (at %d)", rev, s.Announced())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func groupChange(rev catalog.Revision, name string) catalog.Change {
	return catalog.Change{Revision: rev, NextID: catalog.ID(rev) + 1,
		Ops: []catalog.ChangeOp{{Kind: catalog.OpPutPrincipal,
			Principal: &catalog.Principal{ID: catalog.ID(rev), Name: name, Kind: catalog.KindGroup, Created: time.Now()}}},
		Audit: []catalog.AuditEvent{{EventID: fmt.Sprintf("ev-%d", rev), Time: time.Now(), Service: "sql",
			Action: "CREATE GROUP", UserIdentity: "admin", Revision: rev}}}
}

// The records of an append travel in its notifications, authenticated
// with the replicas' key: another replica gets them as Changes returns
// them (without the audit when asked so), a record too large for a payload
// is announced by its revision alone, and a record another database role
// NOTIFYs, or one sent under another key, is never carried.
func testCarriedRecords(t *testing.T, server *pgtest.Server, url string) {
	key := []byte("the installation's master key...")
	a, b := open(t, url), open(t, url)
	defer a.Close()
	defer b.Close()
	a.SetNotifyKey(key)
	b.SetNotifyKey(key)
	waitClosed(t, b.Changed()) // b listens
	batch := []catalog.Change{groupChange(1, "one"), groupChange(2, "two"), groupChange(3, "three")}
	want := appendAnnounced(t, a, b, batch)
	equalChanges(t, b.Carried(0, true), want)
	equalChanges(t, b.Carried(1, true), want[1:])
	ops := b.Carried(0, false)
	for i := range want {
		want[i].Audit = nil
	}
	equalChanges(t, ops, want)

	// Too large for a payload: announced, not carried; then the run of
	// carried records stops before it.
	big := groupChange(4, strings.Repeat("x", 9000))
	if err := a.Append(t.Context(), 3, []catalog.Change{big, groupChange(5, "five")}); err != nil {
		t.Fatal(err)
	}
	waitAnnounced(t, b, 5)
	if got := b.Carried(3, true); len(got) != 0 {
		t.Errorf("Carried(3) = %d records, want none (revision 4 is too large to carry)", len(got))
	}
	if got := b.Carried(4, true); len(got) != 1 || got[0].Revision != 5 {
		t.Errorf("Carried(4) = %v, want revision 5", got)
	}

	// Forged: another role's NOTIFY with a record and a made-up MAC, and
	// an append under another key.
	conn := server.Connect(t, dbName(url))
	forged := fmt.Sprintf(`6 6 %s {"rev":6,"next_id":7,"ops":[]}`, strings.Repeat("A", 43))
	if _, err := conn.Exec(t.Context(), `SELECT pg_notify($1, $2)`, pgstore.Channel, forged); err != nil {
		t.Fatal(err)
	}
	waitAnnounced(t, b, 6)
	if got := b.Carried(5, true); len(got) != 0 {
		t.Fatalf("a forged notification was carried: %v", got)
	}
	c := open(t, url)
	defer c.Close()
	c.SetNotifyKey([]byte("another installation's key......"))
	if err := c.Append(t.Context(), 5, []catalog.Change{groupChange(6, "six")}); err != nil {
		t.Fatal(err)
	}
	// A later append under the right key: once b has it, it has had the
	// one before (notifications arrive in commit order).
	if err := a.Append(t.Context(), 6, []catalog.Change{groupChange(7, "seven")}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); len(b.Carried(6, true)) == 0; { // a failure bound
		if time.Now().After(deadline) {
			t.Fatal("revision 7 was not carried")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if got := b.Carried(5, true); len(got) != 0 {
		t.Fatalf("a record under another key was carried: %v", got)
	}
	// Without a key nothing is carried.
	d := open(t, url)
	defer d.Close()
	if got := d.Carried(0, true); got != nil {
		t.Fatalf("a store without a key carried %v", got)
	}
}

func equalChanges(t *testing.T, got, want []catalog.Change) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := fmt.Sprintf("%+v", got[i].Normalized()), fmt.Sprintf("%+v", want[i].Normalized())
		if g != w {
			t.Fatalf("record %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

// One replica at a time holds the forward lease; it goes with the
// holder's session (released, or the connection ended), and the next to
// try takes it.
func testForwardLease(t *testing.T, server *pgtest.Server, url string) {
	e1, e2 := openEvents(t, url, pgstore.EventOptions{}), openEvents(t, url, pgstore.EventOptions{})
	l1, l2 := e1.ForwardLease(), e2.ForwardLease()
	defer l1.Release()
	defer l2.Release()
	hold := func(l *pgstore.ForwardLease) bool {
		t.Helper()
		ok, err := l.Hold(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !hold(l1) || hold(l2) || !hold(l1) || hold(l2) {
		t.Fatal("want l1 to hold the lease, l2 not")
	}
	l1.Release()
	if !hold(l2) || hold(l1) {
		t.Fatal("after l1's release want l2 to hold it")
	}
	// The holder's session ends (its process died): the lock goes with it.
	conn := server.Connect(t, dbName(url))
	if _, err := conn.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = 'mandate-forward-lease' AND datname = current_database()
		  AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)`); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); !hold(l1); { // a failure bound
		if time.Now().After(deadline) {
			t.Fatal("the lease of a terminated session was not taken over")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ok, _ := l2.Hold(t.Context()); ok {
		t.Fatal("the terminated holder still holds the lease")
	}
	a1, err := l1.AuditedRevision(t.Context())
	if err != nil || a1 != 0 {
		t.Fatalf("AuditedRevision = %d, %v", a1, err)
	}
}

// An append larger than one payload is carried in several, all of it.
func testCarriedManyRecords(t *testing.T, url string) {
	key := []byte("the installation's master key...")
	a, b := open(t, url), open(t, url)
	defer a.Close()
	defer b.Close()
	a.SetNotifyKey(key)
	b.SetNotifyKey(key)
	waitClosed(t, b.Changed())
	var batch []catalog.Change
	for i := range 60 {
		batch = append(batch, groupChange(catalog.Revision(i+1), fmt.Sprintf("%03d-%s", i, strings.Repeat("y", 400))))
	}
	want := appendAnnounced(t, a, b, batch)
	for deadline := time.Now().Add(30 * time.Second); len(b.Carried(0, true)) < 60; { // a failure bound
		if time.Now().After(deadline) {
			t.Fatalf("carried %d of 60 records", len(b.Carried(0, true)))
		}
		time.Sleep(2 * time.Millisecond)
	}
	equalChanges(t, b.Carried(0, true), want)
	equalChanges(t, b.Carried(37, true), want[37:])
}
