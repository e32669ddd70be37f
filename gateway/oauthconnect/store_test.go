package oauthconnect

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog/keystore"
)

func testStores(t *testing.T) map[string]func() TokenStore {
	return map[string]func() TokenStore{
		"memory": NewMemoryTokenStore,
		"file": func() TokenStore {
			s, err := NewFileTokenStore(filepath.Join(t.TempDir(), "tokens.json"))
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"shared": func() TokenStore { return NewSharedTokenStore(keystore.Dir(t.TempDir())) },
	}
}

func TestTokenStores(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for name, mk := range testStores(t) {
		t.Run(name, func(t *testing.T) {
			s := mk()
			if _, err := s.Get(ctx, "alice", "c"); !errors.Is(err, ErrNoToken) {
				t.Fatalf("Get on empty: %v", err)
			}
			if err := s.Put(ctx, &StoredToken{User: "alice"}); err == nil {
				t.Fatal("incomplete token accepted")
			}
			a := &StoredToken{User: "alice", Connection: "c", AccessToken: []byte{1, 2}, RefreshToken: []byte{3},
				Expiry: now, Scopes: []string{"repo"}, ConnectedAt: now}
			if err := s.Put(ctx, a); err != nil {
				t.Fatal(err)
			}
			a.AccessToken[0] = 9 // the store kept its own copy
			got, err := s.Get(ctx, "alice", "c")
			if err != nil || got.AccessToken[0] != 1 || !got.Expiry.Equal(now) {
				t.Fatalf("Get = %+v, %v", got, err)
			}
			got.Scopes[0] = "x"
			if g2, _ := s.Get(ctx, "alice", "c"); g2.Scopes[0] != "repo" {
				t.Fatal("Get returned shared memory")
			}
			s.Put(ctx, &StoredToken{User: "bob", Connection: "c", AccessToken: []byte{4}, ConnectedAt: now})
			s.Put(ctx, &StoredToken{User: "alice", Connection: "b", AccessToken: []byte{5}, ConnectedAt: now})
			l, err := s.List(ctx)
			if err != nil || len(l) != 3 || l[0].User != "alice" || l[0].Connection != "b" || l[1].Connection != "c" ||
				!l[1].Refreshable || l[2].User != "bob" || l[2].Refreshable {
				t.Fatalf("List = %+v, %v", l, err)
			}
			if err := s.Delete(ctx, "alice", "c"); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "alice", "c"); err != nil {
				t.Fatalf("second Delete: %v", err)
			}
			if _, err := s.Get(ctx, "alice", "c"); !errors.Is(err, ErrNoToken) {
				t.Fatalf("after Delete: %v", err)
			}
			var wg sync.WaitGroup
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.Put(ctx, &StoredToken{User: "u", Connection: string(rune('a' + i)), AccessToken: []byte{1}})
				}()
			}
			wg.Wait()
			if l, _ := s.List(ctx); len(l) != 22 {
				t.Fatalf("after concurrent puts: %d", len(l))
			}
		})
	}
}

func TestFileTokenStorePersistsAndTightensMode(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "tokens.json")
	s, err := NewFileTokenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, &StoredToken{User: "alice", Connection: "c", AccessToken: []byte("sealed")}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Dir(path)); fi.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v", fi.Mode().Perm())
	}
	os.Chmod(path, 0o644)
	s2, err := NewFileTokenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Get(ctx, "alice", "c"); err != nil || string(got.AccessToken) != "sealed" {
		t.Fatalf("reopened: %+v, %v", got, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode not tightened: %v", fi.Mode().Perm())
	}
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, err := NewFileTokenStore(path); err == nil {
		t.Fatal("corrupt file accepted")
	}
	// A failed write leaves memory as it was.
	dir := filepath.Join(t.TempDir(), "ro")
	s3, _ := NewFileTokenStore(filepath.Join(dir, "tokens.json"))
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if os.Getuid() != 0 {
		if err := s3.Put(ctx, &StoredToken{User: "a", Connection: "c", AccessToken: []byte{1}}); err == nil {
			t.Fatal("write to a read-only directory succeeded")
		}
		if _, err := s3.Get(ctx, "a", "c"); !errors.Is(err, ErrNoToken) {
			t.Fatal("failed Put is visible")
		}
	}
}
