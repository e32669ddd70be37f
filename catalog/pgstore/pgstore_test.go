package pgstore_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
