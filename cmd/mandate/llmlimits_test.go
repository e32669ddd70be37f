package main

import (
	"fmt"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/catalog"
)

// TestCatalogIDs: the limits stage's names resolve at the current catalog
// revision, cached or not: a dropped name is unknown from the revision
// that dropped it, a re-created one has its new ID, a renamed securable
// answers to its new name only; unknown names take no room and the cache
// stays within its bound.
func TestCatalogIDs(t *testing.T) {
	conn := func(name string) func(tx *catalog.Tx) error {
		return func(tx *catalog.Tx) error {
			return tx.CreateConnection([]string{"system", "ai", name}, "MCP", [][2]string{{"url", "http://127.0.0.1:1/mcp"}}, false, nil)
		}
	}
	svc := limitsCatalog(t, conn("gh"))
	change := func(fn func(tx *catalog.Tx) error) {
		t.Helper()
		if _, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, fn); err != nil {
			t.Fatal(err)
		}
	}
	ids := newCatalogIDs(svc)
	type want struct {
		name  string
		conn  bool // a connection's name, else a principal's
		known bool
		newID bool // an ID other than before the step (else the same)
	}
	idOf := map[string]catalog.ID{}
	check := func(step string, ws ...want) {
		t.Helper()
		for range 2 { // the second time from the cache
			for _, w := range ws {
				var id catalog.ID
				var ok bool
				if w.conn {
					id, ok = ids.SecurableID(catalog.TypeConnection, "system.ai."+w.name)
				} else {
					id, ok = ids.PrincipalID(w.name)
				}
				switch {
				case ok != w.known:
					t.Fatalf("%s: %s known %v, want %v", step, w.name, ok, w.known)
				case ok && w.newID && id == idOf[w.name]:
					t.Fatalf("%s: %s kept its old ID %d", step, w.name, id)
				case ok && !w.newID && idOf[w.name] != 0 && id != idOf[w.name]:
					t.Fatalf("%s: %s ID %d, was %d", step, w.name, id, idOf[w.name])
				}
			}
		}
		for _, w := range ws {
			if w.known {
				if w.conn {
					idOf[w.name], _ = ids.SecurableID(catalog.TypeConnection, "system.ai."+w.name)
				} else {
					idOf[w.name], _ = ids.PrincipalID(w.name)
				}
			}
		}
	}
	check("start", want{name: "alice@example.com", known: true}, want{name: "gh", conn: true, known: true},
		want{name: "bob"}, want{name: "other", conn: true})
	change(func(tx *catalog.Tx) error { return tx.DropPrincipal(catalog.KindUser, "alice@example.com", false) })
	check("dropped", want{name: "alice@example.com"}, want{name: "gh", conn: true, known: true})
	change(func(tx *catalog.Tx) error {
		return tx.CreatePrincipal(catalog.KindUser, "alice@example.com", nil, false)
	})
	check("re-created", want{name: "alice@example.com", known: true, newID: true})
	change(func(tx *catalog.Tx) error {
		return tx.Rename(catalog.TypeConnection, []string{"system", "ai", "gh"}, "gh2")
	})
	check("renamed", want{name: "gh", conn: true}, want{name: "gh2", conn: true, known: true})
	change(func(tx *catalog.Tx) error {
		if err := tx.Drop(catalog.TypeConnection, []string{"system", "ai", "gh2"}, false, false); err != nil {
			return err
		}
		return conn("gh2")(tx)
	})
	check("re-created connection", want{name: "gh2", conn: true, known: true, newID: true})

	// Unknown names take no room; known ones at most the bound.
	before := ids.ids.Len()
	for i := range 1000 {
		if _, ok := ids.PrincipalID(fmt.Sprintf("nobody%d", i)); ok {
			t.Fatal("an unknown principal resolved")
		}
	}
	after := ids.ids.Len()
	if after != before {
		t.Fatalf("unknown names cached: %d entries, were %d", after, before)
	}
	change(func(tx *catalog.Tx) error {
		for i := range maxCachedIDs + 10 {
			if err := tx.CreatePrincipal(catalog.KindUser, fmt.Sprintf("user%d", i), nil, false); err != nil {
				return err
			}
		}
		return nil
	})
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Go(func() {
			for i := g; i < maxCachedIDs+10; i += 2 {
				if _, ok := ids.PrincipalID(fmt.Sprintf("user%d", i)); !ok {
					t.Errorf("user%d unknown", i)
					return
				}
			}
		})
	}
	wg.Wait()
	n := ids.ids.Len()
	if n == 0 || n > maxCachedIDs {
		t.Fatalf("cached IDs: %d, want 1..%d", n, maxCachedIDs)
	}
}
