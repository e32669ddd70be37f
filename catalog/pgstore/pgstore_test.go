package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/keystore/keystoretest"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/catalog/storetest"
	"github.com/mandatehq/mandate/schema"
)

// TestPostgres runs everything against one PostgreSQL server; each
// subtest creates databases of its own in it.
func TestPostgres(t *testing.T) {
	server := pgtest.Start(t, pgtest.Options{})
	var dbs atomic.Int64
	newDatabase := func(t *testing.T) string {
		t.Helper()
		name := fmt.Sprintf("mandate_%d", dbs.Add(1))
		server.CreateDatabase(t, name)
		return server.URL(name)
	}
	t.Run("Store", func(t *testing.T) {
		storetest.RunStore(t, func(t *testing.T) catalog.Store { return open(t, newDatabase(t)) })
	})
	t.Run("StoreDurability", func(t *testing.T) {
		var mu sync.Mutex
		urls := map[string]string{}
		storetest.RunStoreDurability(t, func(t *testing.T, dir string) catalog.Store {
			mu.Lock()
			defer mu.Unlock()
			if urls[dir] == "" {
				urls[dir] = newDatabase(t)
			}
			return open(t, urls[dir])
		})
	})
	t.Run("ConcurrentMigration", func(t *testing.T) { testConcurrentMigration(t, server, newDatabase(t)) })
	t.Run("ChangedNotification", func(t *testing.T) { testChangedNotification(t, newDatabase(t)) })
	t.Run("LostRace", func(t *testing.T) { testLostRace(t, server, newDatabase(t)) })
	t.Run("PruneKeepsYoung", func(t *testing.T) { testPruneKeepsYoung(t, server, newDatabase(t)) })
	t.Run("CarriedRecords", func(t *testing.T) { testCarriedRecords(t, server, newDatabase(t)) })
	t.Run("CarriedManyRecords", func(t *testing.T) { testCarriedManyRecords(t, newDatabase(t)) })
	t.Run("ForwardLease", func(t *testing.T) { testForwardLease(t, server, newDatabase(t)) })
	t.Run("WriterLease", func(t *testing.T) { testWriterLease(t, server, newDatabase(t)) })
	t.Run("Unreachable", testUnreachable)
	t.Run("Keys", func(t *testing.T) {
		keystoretest.Run(t, func(t *testing.T) keystore.Store { return openClosed(t, newDatabase(t)).Keys() })
	})
	t.Run("SealedKeys", func(t *testing.T) {
		kr, err := catalog.NewKeyring(make([]byte, 32))
		if err != nil {
			t.Fatal(err)
		}
		keystoretest.Run(t, func(t *testing.T) keystore.Store { return keystore.Sealed(openClosed(t, newDatabase(t)).Keys(), kr) })
	})
	t.Run("Events", func(t *testing.T) { testEvents(t, server, newDatabase) })
}

func open(t *testing.T, url string) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(t.Context(), url, pgstore.Options{KeepChanges: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openClosed is open with the store closed at the end of the test.
func openClosed(t *testing.T, url string) *pgstore.Store {
	s := open(t, url)
	t.Cleanup(func() { s.Close() })
	return s
}

// Replicas starting together on a new database migrate it once.
func testConcurrentMigration(t *testing.T, server *pgtest.Server, url string) {
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan error, n)
	stores := make(chan *pgstore.Store, n)
	for range n {
		wg.Go(func() {
			s, err := pgstore.Open(t.Context(), url, pgstore.Options{})
			if err != nil {
				errs <- err
				return
			}
			stores <- s
		})
	}
	wg.Wait()
	close(errs)
	close(stores)
	for err := range errs {
		t.Error(err)
	}
	for s := range stores {
		if h, err := s.Head(t.Context()); err != nil || h != 0 {
			t.Errorf("Head = %d, %v", h, err)
		}
		s.Close()
	}
	conn := server.Connect(t, dbName(url))
	var v int64
	ms, _ := schema.Migrations(schema.PostgreSQL)
	if err := conn.QueryRow(t.Context(), "SELECT value FROM mandate_meta WHERE key = 'schema_version'").Scan(&v); err != nil || v != int64(len(ms)) {
		t.Fatalf("schema_version = %d, %v; want %d", v, err, len(ms))
	}
	// A database of a newer Mandate is refused.
	if _, err := conn.Exec(t.Context(), "UPDATE mandate_meta SET value = 99 WHERE key = 'schema_version'"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgstore.Open(t.Context(), url, pgstore.Options{}); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
		t.Fatalf("Open of a newer schema: %v, want CodeIncompatibleData", err)
	}
}

func dbName(url string) string {
	rest := url[strings.LastIndex(url, "/")+1:]
	name, _, _ := strings.Cut(rest, "?")
	return name
}

// An append by one store wakes the others (NOTIFY); a notification is a
// hint, so the test only waits for it with a generous bound.
func testChangedNotification(t *testing.T, url string) {
	a, b := open(t, url), open(t, url)
	defer a.Close()
	defer b.Close()
	// The listener connects in the background and signals once connected.
	waitClosed(t, b.Changed())
	ch := b.Changed()
	c := catalog.Change{Revision: 1, NextID: 2, Ops: []catalog.ChangeOp{{Kind: catalog.OpPutPrincipal,
		Principal: &catalog.Principal{ID: 1, Name: "x", Kind: catalog.KindUser, Created: time.Now()}}}}
	if err := a.Append(t.Context(), 0, []catalog.Change{c}); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, ch)
}

func waitClosed(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second): // a failure bound
		t.Fatal("no notification")
	}
}

// With the server unreachable, calls fail with CodeUnavailable, quickly.
func testUnreachable(t *testing.T) {
	// A port nothing listens on.
	_, err := pgstore.Open(t.Context(), "postgres://mandate@127.0.0.1:1/mandate?sslmode=disable&connect_timeout=5", pgstore.Options{})
	if !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Fatalf("Open of an unreachable server: %v, want CodeUnavailable", err)
	}
	_, err = pgstore.Open(t.Context(), "postgres://a:b@h:x:y/%zz", pgstore.Options{})
	if !catalog.IsCode(err, catalog.CodeInvalidArgument) || strings.Contains(err.Error(), "a:b") {
		t.Fatalf("Open of a malformed URL: %v", err)
	}
}

// An append on a stale base is refused with the records after the base
// (catalog.Conflict), also when it waited for the winner's transaction on
// the head row: the refusal reads what the winner committed.
func testLostRace(t *testing.T, server *pgtest.Server, url string) {
	ctx := t.Context()
	a, b := open(t, url), open(t, url)
	defer a.Close()
	defer b.Close()
	mk := func(rev catalog.Revision, name string) catalog.Change {
		return catalog.Change{Revision: rev, NextID: catalog.ID(rev) + 1, Ops: []catalog.ChangeOp{{Kind: catalog.OpPutPrincipal,
			Principal: &catalog.Principal{ID: catalog.ID(rev), Name: name, Kind: catalog.KindUser, Created: time.Now()}}},
			Audit: []catalog.AuditEvent{{EventID: name, Action: "CREATE USER", Revision: rev}}}
	}
	lost := func(err error, head catalog.Revision, names ...string) {
		t.Helper()
		var c *catalog.Conflict
		if !catalog.IsCode(err, catalog.CodeConflict) || !errors.As(err, &c) {
			t.Fatalf("append on a stale base: %v, want CodeConflict with a *catalog.Conflict", err)
		}
		var got []string
		for _, ch := range c.Newer {
			got = append(got, ch.Ops[0].Principal.Name)
		}
		if c.Head != head || fmt.Sprint(got) != fmt.Sprint(names) {
			t.Fatalf("conflict: head %d, newer %v; want %d, %v", c.Head, got, head, names)
		}
	}
	if err := a.Append(ctx, 0, []catalog.Change{mk(1, "one")}); err != nil {
		t.Fatal(err)
	}
	lost(b.Append(ctx, 0, []catalog.Change{mk(1, "other")}), 1, "one")

	// A winner holds the head row: the loser waits for its commit.
	conn := server.Connect(t, dbName(url))
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	body, err := json.Marshal(mk(2, "two").Normalized())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE mandate_catalog_head SET revision = 2 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO mandate_catalog_changes (revision, record) VALUES (2, $1)", body); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- b.Append(context.Background(), 1, []catalog.Change{mk(2, "loser")}) }()
	waiting := server.Connect(t, dbName(url))
	waitLockWait(t, waiting) // the append waits for the head row
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	lost(<-done, 2, "two")
	if err := b.Append(ctx, 2, []catalog.Change{mk(3, "three")}); err != nil {
		t.Fatal(err)
	}
	if h, err := a.Head(ctx); err != nil || h != 3 {
		t.Fatalf("Head = %d, %v; want 3", h, err)
	}

	// A writer that holds the head (LockHead) gets the records it lacks,
	// their audit part only when it asks for it; another writer's append
	// waits for it and loses to its append.
	held, c, err := a.LockHead(ctx, 1, false)
	if err != nil {
		t.Fatal(err)
	}
	held.Release()
	if len(c.Newer) != 2 || c.Newer[0].Ops[0].Principal.Name != "two" || len(c.Newer[0].Audit)+len(c.Newer[1].Audit) != 0 {
		t.Fatalf("LockHead(1) without audit = %+v", c.Newer)
	}
	held, c, err = a.LockHead(ctx, 1, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Head != 3 || len(c.Newer) != 2 || c.Newer[0].Ops[0].Principal.Name != "two" || c.Newer[1].Ops[0].Principal.Name != "three" {
		t.Fatalf("LockHead(1) = head %d, %d records; want 3, [two three]", c.Head, len(c.Newer))
	}
	if len(c.Newer[0].Audit) != 1 || c.Newer[0].Audit[0].EventID != "two" {
		t.Fatalf("LockHead(1) with audit: %+v", c.Newer[0].Audit)
	}
	go func() { done <- b.Append(context.Background(), 3, []catalog.Change{mk(4, "waiter")}) }()
	waitLockWait(t, waiting)
	if err := held.Append(ctx, 3, []catalog.Change{mk(4, "four")}); err != nil {
		t.Fatal(err)
	}
	held.Release() // a no-op after Append
	lost(<-done, 4, "four")
	// Released without an append, the head is free again and unchanged.
	held, c, err = a.LockHead(ctx, 4, true)
	if err != nil || c.Head != 4 || len(c.Newer) != 0 {
		t.Fatalf("LockHead(4) = %+v, %v", c, err)
	}
	go func() { done <- b.Append(context.Background(), 4, []catalog.Change{mk(5, "five")}) }()
	waitLockWait(t, waiting)
	held.Release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h, err := a.Head(ctx); err != nil || h != 5 {
		t.Fatalf("Head = %d, %v; want 5", h, err)
	}
}

// waitLockWait waits until a backend of the database waits for a lock.
func waitLockWait(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a failure bound
	for {
		var n int
		if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no backend waits for a lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Import makes a state the catalog of an empty database (revisions go on
// after it) and refuses a database that holds one.
func TestImport(t *testing.T) {
	server := pgtest.Start(t, pgtest.Options{})
	server.CreateDatabase(t, "imp")
	s := openClosed(t, server.URL("imp"))
	ctx := t.Context()
	st := &catalog.State{Revision: 41, NextID: 7, Principals: []catalog.Principal{{ID: 5, Name: "alice@example.com", Kind: catalog.KindUser}}}
	if err := s.Import(ctx, st); err != nil {
		t.Fatal(err)
	}
	got, changes, err := s.Load(ctx)
	if err != nil || got.Revision != 41 || got.NextID != 7 || len(got.Principals) != 1 || len(changes) != 0 {
		t.Fatalf("Load after Import = %+v, %d changes, %v", got, len(changes), err)
	}
	if h, err := s.Head(ctx); err != nil || h != 41 {
		t.Fatalf("Head = %d, %v", h, err)
	}
	if err := s.Append(ctx, 41, []catalog.Change{{Revision: 42, NextID: 7}}); err != nil {
		t.Fatalf("Append after Import: %v", err)
	}
	if err := s.Import(ctx, st); !catalog.IsCode(err, catalog.CodeAlreadyExists) {
		t.Fatalf("second Import: %v, want CodeAlreadyExists", err)
	}
}

// Prune deletes the records a snapshot covers that are older than
// Options.KeepChanges, and keeps the younger ones.
func testPruneKeepsYoung(t *testing.T, server *pgtest.Server, url string) {
	ctx := t.Context()
	s, err := pgstore.Open(ctx, url, pgstore.Options{KeepChanges: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var changes []catalog.Change
	for rev := catalog.Revision(1); rev <= 6; rev++ {
		changes = append(changes, catalog.Change{Revision: rev, NextID: catalog.ID(rev) + 1, Ops: []catalog.ChangeOp{{Kind: catalog.OpPutPrincipal,
			Principal: &catalog.Principal{ID: catalog.ID(rev), Name: fmt.Sprint("p", rev), Kind: catalog.KindUser, Created: time.Now()}}}})
	}
	if err := s.Append(ctx, 0, changes); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteSnapshot(ctx, &catalog.State{Revision: 5, NextID: 6}); err != nil {
		t.Fatal(err)
	}
	conn := server.Connect(t, dbName(url))
	if _, err := conn.Exec(ctx, `UPDATE mandate_catalog_changes SET committed_at = now() - interval '2 hours' WHERE revision <= 3`); err != nil {
		t.Fatal(err)
	}
	for _, through := range []catalog.Revision{6, 6} { // twice: the second finds nothing to delete
		if err := s.Prune(ctx, through); err != nil {
			t.Fatal(err)
		}
		var revs []int64
		rows, err := conn.Query(ctx, `SELECT revision FROM mandate_catalog_changes ORDER BY revision`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var r int64
			if err := rows.Scan(&r); err != nil {
				t.Fatal(err)
			}
			revs = append(revs, r)
		}
		if rows.Err() != nil || fmt.Sprint(revs) != "[4 5 6]" {
			t.Fatalf("after Prune(%d): records %v (%v), want [4 5 6]", through, revs, rows.Err())
		}
	}
}
