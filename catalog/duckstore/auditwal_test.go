package duckstore

import (
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// The production configuration: the write-ahead log in front of DuckDB.
func openWithLog(t *testing.T, dir string) catalog.EventStore {
	t.Helper()
	s, err := auditwal.Open(t.Context(), dir, openT(t, dir), auditwal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceWithLog(t *testing.T) {
	storetest.RunEvents(t, func(t *testing.T) catalog.EventStore { return openWithLog(t, t.TempDir()) })
}

func TestDurabilityWithLog(t *testing.T) {
	storetest.RunEventsDurability(t, openWithLog)
}
