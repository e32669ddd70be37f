package main

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/gateway/oauthconnect"
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

// adoptedSuffix is appended to DATA_DIR/user-tokens.json once its grants
// are in the shared store.
const adoptedSuffix = ".moved-to-store"

// adoptGrants moves the per-user OAuth grants of a replica's data
// directory (written before its keys moved to the shared store) into the
// shared token store, so that users need not connect again: a grant the
// store holds already (another replica's, or newer) is kept. The file is
// then renamed, so that a grant disconnected later is never brought back
// from it.
func adoptGrants(ctx context.Context, dataDir string, shared oauthconnect.TokenStore) (int, error) {
	path := filepath.Join(dataDir, userTokensFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	file, err := oauthconnect.NewFileTokenStore(path)
	if err != nil {
		return 0, err
	}
	all, err := file.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range all {
		t, err := file.Get(ctx, s.User, s.Connection)
		if err != nil {
			return n, err
		}
		put := func() error {
			if _, err := shared.Get(ctx, s.User, s.Connection); !errors.Is(err, oauthconnect.ErrNoToken) {
				return err // nil: the store's grant stays
			}
			n++
			return shared.Put(ctx, t)
		}
		if l, ok := shared.(oauthconnect.Locker); ok {
			unlock, err := l.Lock(ctx, s.User, s.Connection)
			if err != nil {
				return n, err
			}
			err = put()
			unlock()
			if err != nil {
				return n, err
			}
		} else if err := put(); err != nil {
			return n, err
		}
	}
	return n, os.Rename(path, path+adoptedSuffix)
}

// sharedCSRFKey is the key of the consent forms' CSRF tokens that replicas
// sharing keys use (a form one serves may be posted to another); nil
// without a shared store (a random key per process).
func sharedCSRFKey(ctx context.Context, keys keystore.Store) ([]byte, error) {
	if keys == nil {
		return nil, nil
	}
	b, err := keystore.GetOrCreate(ctx, keys, "oauth-csrf-key", func() ([]byte, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	})
	return b.Data, err
}
