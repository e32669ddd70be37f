package duckstore

import (
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// openT opens a store in dir and closes it when the test ends.
func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunEvents(t, func(t *testing.T) catalog.EventStore { return openT(t, t.TempDir()) })
}

func TestDurability(t *testing.T) {
	storetest.RunEventsDurability(t, func(t *testing.T, dir string) catalog.EventStore { return openT(t, dir) })
}
