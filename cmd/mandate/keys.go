package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/gateway/oauthconnect"
	"github.com/mandatehq/mandate/gateway/upstream"
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

// gatewayKeys is the key store of the gateway's data plane that gateway
// nodes borrow (POST /api/v1/keys): the mandate_jwt signing keys and the
// per-user OAuth grants and sign-ins in progress. It holds the blobs as
// keystore.Sealed made them (sealed with the master key by the process
// that wrote them, the server or a node): the PostgreSQL table replicas
// share, or DATA_DIR/keys for an embedded installation.
func (s *stores) gatewayKeys(dataDir string) keystore.Store {
	if s.pg != nil {
		return s.pg.Keys()
	}
	return keystore.Dir(filepath.Join(dataDir, gatewayKeysDir))
}

// nodeKeyLocks bounds the key locks gateway nodes hold at once: with
// PostgreSQL each holds a connection of the catalog's pool (12), so a
// third of it at most; 0: the API's default.
func (s *stores) nodeKeyLocks() int {
	if s.pg != nil {
		return 4
	}
	return 0
}

// gatewayKeysDir is gatewayKeys' directory in an embedded data directory.
const gatewayKeysDir = "keys"

// nodeKeyNames are the names of the key store gateway nodes may use: the
// data plane's, not the development IdP's keys or the node token.
func nodeKeyNames(name string) bool {
	if name == upstream.KeyFileName {
		return true
	}
	for _, p := range oauthconnect.SharedNamePrefixes() {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// adoptKeyFile moves DATA_DIR/upstream-signing-keys.json (an embedded
// installation's mandate_jwt keys, before they moved to the key store)
// into keys, so that the JWKS upstreams cached stays valid: a blob the
// store holds already is kept. The file is then renamed.
func adoptKeyFile(ctx context.Context, dataDir string, keys keystore.Store) error {
	src := keystore.Dir(dataDir)
	b, err := src.Get(ctx, upstream.KeyFileName)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := keys.Create(ctx, upstream.KeyFileName, b.Data); err != nil {
		return err
	}
	p := filepath.Join(dataDir, upstream.KeyFileName)
	return os.Rename(p, p+adoptedSuffix)
}

// derivedKey derives a key for one purpose from the master key: the same
// in every process that has it (the server, its replicas and gateway
// nodes), unrelated to anything else the master key seals.
func derivedKey(masterKey []byte, purpose string) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}

// mcpSessionKey seals the MCP gateway's session ids: a session one
// replica or node opened is served by every other.
func mcpSessionKey(masterKey []byte) []byte {
	return derivedKey(masterKey, "mandate/mcp/session-id/v1")
}

// csrfKey keys the consent forms' CSRF tokens: a form one process serves
// may be posted to another behind a load balancer.
func csrfKey(masterKey []byte) []byte {
	return derivedKey(masterKey, "mandate/oauthconnect/csrf/v1")
}
