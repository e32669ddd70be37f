package main

import (
	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
)

// sharedKeys is the key store the replicas of a PostgreSQL catalog share
// (the mandate_jwt signing keys, the development IdP's keys, the node
// token, per-user OAuth grants), every blob sealed with the master key;
// nil for an embedded installation, whose keys stay in its data directory.
func (s *stores) sharedKeys(kr *catalog.Keyring) keystore.Store {
	if s.pg == nil {
		return nil
	}
	return keystore.Sealed(s.pg.Keys(), kr)
}
