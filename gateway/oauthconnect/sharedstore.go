package oauthconnect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// Locker is implemented by token stores that several processes share
// (replicas on one database). Lock serializes the read-modify-write of one
// grant across all of them: a refresh (providers rotate refresh tokens, so
// two replicas refreshing with the same one would make the second fail and
// drop the grant), a new connect, Disconnect and Invalidate. The Connector
// takes it around those, and re-reads the grant under it: when another
// replica refreshed first, its token is used.
type Locker interface {
	Lock(ctx context.Context, user, connection string) (unlock func(), err error)
}

// sharedPrefix starts the key-store names of grants.
const sharedPrefix = "user-token:"

// SharedNamePrefixes returns the prefixes of every key-store name the
// shared token store uses (grants, their locks, sign-ins in progress,
// used tickets).
func SharedNamePrefixes() []string {
	return []string{sharedPrefix, "lock:" + sharedPrefix, flowPrefix, noncePrefix, userFlowsPrefix, "lock:" + userFlowsPrefix}
}

type sharedStore struct {
	ks keystore.Store

	mu        sync.Mutex
	lastPrune time.Time
}

// NewSharedTokenStore returns a TokenStore kept in a key store (the
// PostgreSQL one of --store postgres://, wrapped in keystore.Sealed), one
// blob per grant: the StoredToken's JSON, its access and refresh tokens
// sealed by the Connector as everywhere. It implements Locker with the key
// store's locks, and FlowStore.
func NewSharedTokenStore(ks keystore.Store) TokenStore { return &sharedStore{ks: ks} }

func sharedName(user, connection string) string {
	return sharedPrefix + url.QueryEscape(user) + ":" + url.QueryEscape(connection)
}

func (s *sharedStore) Get(ctx context.Context, user, connection string) (*StoredToken, error) {
	b, err := s.ks.Get(ctx, sharedName(user, connection))
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, ErrNoToken
	}
	if err != nil {
		return nil, err
	}
	t, err := decodeShared(b)
	if err != nil {
		return nil, err
	}
	if t.User != user || t.Connection != connection {
		return nil, fmt.Errorf("oauthconnect: stored grant %s belongs to another user or connection", b.Name)
	}
	return t, nil
}

func decodeShared(b keystore.Blob) (*StoredToken, error) {
	t := new(StoredToken)
	if err := json.Unmarshal(b.Data, t); err != nil {
		return nil, fmt.Errorf("oauthconnect: stored grant %s is corrupt: %v", b.Name, err)
	}
	if err := validStored(t); err != nil {
		return nil, fmt.Errorf("oauthconnect: stored grant %s is corrupt: %v", b.Name, err)
	}
	return t, nil
}

func (s *sharedStore) Put(ctx context.Context, t *StoredToken) error {
	if err := validStored(t); err != nil {
		return err
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	name := sharedName(t.User, t.Connection)
	// Last writer wins (callers hold the grant's Lock): swap on whatever
	// version is there.
	for range 8 {
		cur, err := s.ks.Get(ctx, name)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			cur.Version = 0
		case err != nil:
			return err
		}
		_, err = s.ks.CompareAndSwap(ctx, name, cur.Version, data)
		if !errors.Is(err, keystore.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("oauthconnect: the grant of %s for %s keeps changing", t.User, t.Connection)
}

func (s *sharedStore) Delete(ctx context.Context, user, connection string) error {
	return s.ks.Delete(ctx, sharedName(user, connection))
}

func (s *sharedStore) List(ctx context.Context) ([]Status, error) {
	bs, err := s.ks.List(ctx, sharedPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]Status, 0, len(bs))
	for _, b := range bs {
		t, err := decodeShared(b)
		if err != nil {
			return nil, err
		}
		out = append(out, t.status())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return strings.Compare(out[i].Connection, out[j].Connection) < 0
	})
	return out, nil
}

func (s *sharedStore) Lock(ctx context.Context, user, connection string) (func(), error) {
	return s.ks.Lock(ctx, "lock:"+sharedName(user, connection))
}
