package duckstore

import (
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// DuckDB's views answer what every dialect's do (storetest.RunViews).
func TestViewsConformance(t *testing.T) {
	storetest.RunViews(t, func(t *testing.T) (catalog.EventStore, catalog.QueryEngine) { return engineT(t) })
}
