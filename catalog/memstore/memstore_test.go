package memstore_test

import (
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/catalog/storetest"
)

func TestStore(t *testing.T) {
	storetest.RunStore(t, func(t *testing.T) catalog.Store { return memstore.New() })
}

func TestEvents(t *testing.T) {
	storetest.RunEvents(t, func(t *testing.T) catalog.EventStore { return memstore.New() })
}
