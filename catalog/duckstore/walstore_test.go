package duckstore

import (
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/storetest"
	"github.com/mandatehq/mandate/catalog/walstore"
)

// The production configuration: the write-ahead log in front of DuckDB.
func openWithLog(t *testing.T, dir string) catalog.Store {
	t.Helper()
	s, err := walstore.Open(t.Context(), dir, openT(t, dir), walstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformanceWithLog(t *testing.T) {
	storetest.RunConformance(t, func(t *testing.T) catalog.Store { return openWithLog(t, t.TempDir()) })
}

func TestDurabilityWithLog(t *testing.T) {
	storetest.RunDurability(t, openWithLog)
}
