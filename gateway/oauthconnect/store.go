package oauthconnect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog/privfile"
)

// ErrNoToken is returned by TokenStore.Get when the user has not connected
// the connection.
var ErrNoToken = errors.New("oauthconnect: no stored token")

// StoredToken is one user's upstream grant for one connection. AccessToken
// and RefreshToken are sealed (Config.Seal) together with the purpose, the
// user and the connection they belong to, so a sealed value copied to
// another row does not open there. A store never sees a plaintext token.
type StoredToken struct {
	User       string `json:"user"`
	Connection string `json:"connection"`
	// AccessToken is the sealed access token.
	AccessToken []byte `json:"access_token"`
	// RefreshToken is the sealed refresh token; nil when the authorization
	// server issued none.
	RefreshToken []byte `json:"refresh_token,omitempty"`
	// Expiry of the access token; zero when the authorization server did
	// not say (the token is then used until Invalidate).
	Expiry time.Time `json:"expiry,omitzero"`
	Scopes []string  `json:"scopes,omitempty"`
	// Resource, TokenEndpoint and ClientID the grant was obtained for: a
	// token is used only while the connection still has the same url
	// (resource) and client_id, and refreshed only at the same token
	// endpoint, so an ALTER CONNECTION never sends it to someone else.
	Resource      string    `json:"resource"`
	TokenEndpoint string    `json:"token_endpoint"`
	ClientID      string    `json:"client_id"`
	ConnectedAt   time.Time `json:"connected_at"`
	RefreshedAt   time.Time `json:"refreshed_at,omitzero"`
}

func (t *StoredToken) clone() *StoredToken {
	c := *t
	c.AccessToken = append([]byte(nil), t.AccessToken...)
	if t.RefreshToken != nil {
		c.RefreshToken = append([]byte(nil), t.RefreshToken...)
	}
	c.Scopes = append([]string(nil), t.Scopes...)
	return &c
}

func (t *StoredToken) status() Status {
	return Status{
		User: t.User, Connection: t.Connection, ConnectedAt: t.ConnectedAt, ExpiresAt: t.Expiry,
		RefreshedAt: t.RefreshedAt, Scopes: append([]string(nil), t.Scopes...), Refreshable: len(t.RefreshToken) > 0,
	}
}

// Status is who has connected what, without secrets (SHOW CONNECTION
// STATUS).
type Status struct {
	User        string    `json:"user"`
	Connection  string    `json:"connection"`
	ConnectedAt time.Time `json:"connected_at"`
	// ExpiresAt is the current access token's expiry (zero: unknown). With
	// Refreshable the grant outlives it: a new access token is fetched
	// automatically.
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	RefreshedAt time.Time `json:"refreshed_at,omitzero"`
	Scopes      []string  `json:"scopes,omitempty"`
	Refreshable bool      `json:"refreshable"`
}

// TokenStore keeps the sealed per-(user, connection) grants.
// Implementations are safe for concurrent use.
type TokenStore interface {
	// Get returns the user's grant for the connection, or ErrNoToken.
	Get(ctx context.Context, user, connection string) (*StoredToken, error)
	// Put creates or replaces the grant of (t.User, t.Connection).
	Put(ctx context.Context, t *StoredToken) error
	// Delete removes a grant; deleting a missing grant is not an error.
	Delete(ctx context.Context, user, connection string) error
	// List returns every grant's status, sorted by user and connection.
	List(ctx context.Context) ([]Status, error)
}

type storeKey struct{ user, connection string }

// memoryStore is the map both stores keep; the file store persists it.
type memoryStore struct {
	mu sync.Mutex
	m  map[storeKey]*StoredToken
}

// NewMemoryTokenStore returns a TokenStore that keeps grants in memory
// only (tests, single-node development): users connect again after a
// restart.
func NewMemoryTokenStore() TokenStore {
	return &memoryStore{m: map[storeKey]*StoredToken{}}
}

func (s *memoryStore) Get(_ context.Context, user, connection string) (*StoredToken, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.m[storeKey{user, connection}]
	if !ok {
		return nil, ErrNoToken
	}
	return t.clone(), nil
}

func (s *memoryStore) Put(_ context.Context, t *StoredToken) error {
	if err := validStored(t); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[storeKey{t.User, t.Connection}] = t.clone()
	return nil
}

func (s *memoryStore) Delete(_ context.Context, user, connection string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, storeKey{user, connection})
	return nil
}

func (s *memoryStore) List(context.Context) ([]Status, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listLocked(), nil
}

func (s *memoryStore) listLocked() []Status {
	out := make([]Status, 0, len(s.m))
	for _, t := range s.m {
		out = append(out, t.status())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].User != out[j].User {
			return out[i].User < out[j].User
		}
		return out[i].Connection < out[j].Connection
	})
	return out
}

func validStored(t *StoredToken) error {
	if t == nil || t.User == "" || t.Connection == "" || len(t.AccessToken) == 0 {
		return errors.New("oauthconnect: a stored token needs a user, a connection and a sealed access token")
	}
	return nil
}

// fileStore is a memoryStore written through to a JSON file.
type fileStore struct {
	memoryStore
	path string
}

type storeFile struct {
	Version int            `json:"version"`
	Tokens  []*StoredToken `json:"tokens"`
}

// NewFileTokenStore returns a TokenStore kept in the JSON file at path
// (created with mode 0600, its directory with 0700). Every change rewrites
// the file atomically: a temporary file in the same directory, fsync,
// rename, fsync of the directory. The file holds sealed values only.
func NewFileTokenStore(path string) (TokenStore, error) {
	s := &fileStore{memoryStore: memoryStore{m: map[storeKey]*StoredToken{}}, path: path}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("oauthconnect: token store directory: %w", err)
		}
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("oauthconnect: token store: %w", err)
	}
	var f storeFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("oauthconnect: token store %s is corrupt: %v", path, err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("oauthconnect: token store %s has unknown version %d", path, f.Version)
	}
	for _, t := range f.Tokens {
		if err := validStored(t); err != nil {
			return nil, fmt.Errorf("oauthconnect: token store %s is corrupt: %v", path, err)
		}
		s.m[storeKey{t.User, t.Connection}] = t
	}
	// A file left readable by others (copied, restored from a backup) is
	// closed again.
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() != 0o600 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("oauthconnect: token store: %w", err)
		}
	}
	return s, nil
}

func (s *fileStore) Put(_ context.Context, t *StoredToken) error {
	if err := validStored(t); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := storeKey{t.User, t.Connection}
	old, had := s.m[k]
	s.m[k] = t.clone()
	if err := s.writeLocked(); err != nil {
		if had {
			s.m[k] = old
		} else {
			delete(s.m, k)
		}
		return err
	}
	return nil
}

func (s *fileStore) Delete(_ context.Context, user, connection string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := storeKey{user, connection}
	old, had := s.m[k]
	if !had {
		return nil
	}
	delete(s.m, k)
	if err := s.writeLocked(); err != nil {
		s.m[k] = old
		return err
	}
	return nil
}

func (s *fileStore) writeLocked() error {
	f := storeFile{Version: 1, Tokens: make([]*StoredToken, 0, len(s.m))}
	for _, t := range s.m {
		f.Tokens = append(f.Tokens, t)
	}
	sort.Slice(f.Tokens, func(i, j int) bool {
		a, b := f.Tokens[i], f.Tokens[j]
		if a.User != b.User {
			return a.User < b.User
		}
		return a.Connection < b.Connection
	})
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("oauthconnect: token store: %w", err)
	}
	return writeFileAtomic(s.path, b)
}

// writeFileAtomic replaces path with b (catalog/privfile: 0600, fsync,
// rename, fsync of the directory).
func writeFileAtomic(path string, b []byte) error {
	if err := privfile.Write(path, b); err != nil {
		return fmt.Errorf("oauthconnect: token store: %w", err)
	}
	return nil
}
