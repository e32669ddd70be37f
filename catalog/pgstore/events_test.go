package pgstore_test

import (
	"sync"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/catalog/storetest"
)

func openEvents(t *testing.T, url string, o pgstore.EventOptions) *pgstore.Events {
	t.Helper()
	e, err := pgstore.OpenEvents(t.Context(), url, o)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testEvents runs the event stream's conformance suite, alone and behind
// the local write-ahead log (the production configuration), and the
// PostgreSQL-specific cases.
func testEvents(t *testing.T, server *pgtest.Server, newDatabase func(t *testing.T) string) {
	t.Run("Conformance", func(t *testing.T) {
		storetest.RunEvents(t, func(t *testing.T) catalog.EventStore {
			return openEvents(t, newDatabase(t), pgstore.EventOptions{})
		})
	})
	// One database per directory: reopening finds what was written.
	var mu sync.Mutex
	urls := map[string]string{}
	dbFor := func(t *testing.T, dir string) string {
		mu.Lock()
		defer mu.Unlock()
		if urls[dir] == "" {
			urls[dir] = newDatabase(t)
		}
		return urls[dir]
	}
	t.Run("Durability", func(t *testing.T) {
		storetest.RunEventsDurability(t, func(t *testing.T, dir string) catalog.EventStore {
			return openEvents(t, dbFor(t, dir), pgstore.EventOptions{})
		})
	})
	withLog := func(t *testing.T, dir string) catalog.EventStore {
		t.Helper()
		l, err := auditwal.Open(t.Context(), dir, openEvents(t, dbFor(t, dir), pgstore.EventOptions{SpoolID: dir}), auditwal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	t.Run("ConformanceWithLog", func(t *testing.T) {
		storetest.RunEvents(t, func(t *testing.T) catalog.EventStore { return withLog(t, t.TempDir()) })
	})
	t.Run("DurabilityWithLog", func(t *testing.T) { storetest.RunEventsDurability(t, withLog) })
}
