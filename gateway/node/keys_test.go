package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/keystore/keystoretest"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/node"
)

// keysServer serves the API with inner as its key store and returns a
// node's client of it.
func keysServer(t *testing.T, inner keystore.Store, opts api.Options) (*catalogServer, *node.Keys) {
	t.Helper()
	opts.Keys = inner
	cs := newCatalogServer(t, nil, nil, opts)
	k, err := node.NewKeys(cs.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return cs, k
}

// The node's key store passes the conformance suite against the real API
// handler, over a data directory, bare and sealed.
func TestKeysConformance(t *testing.T) {
	t.Run("Dir", func(t *testing.T) {
		keystoretest.Run(t, func(t *testing.T) keystore.Store {
			_, k := keysServer(t, keystore.Dir(t.TempDir()), api.Options{})
			return k
		})
	})
	t.Run("Sealed", func(t *testing.T) {
		kr, err := catalog.NewKeyring(bytes.Repeat([]byte{7}, 32))
		if err != nil {
			t.Fatal(err)
		}
		keystoretest.Run(t, func(t *testing.T) keystore.Store {
			_, k := keysServer(t, keystore.Dir(t.TempDir()), api.Options{})
			return keystore.Sealed(k, kr)
		})
	})
}

// The same over the PostgreSQL key store replicas share: a node's lock is
// an advisory lock the server holds on its behalf across requests.
func TestKeysConformancePostgres(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	var n atomic.Int32
	keystoretest.Run(t, func(t *testing.T) keystore.Store {
		db := fmt.Sprintf("keys%d", n.Add(1))
		srv.CreateDatabase(t, db)
		pg, err := pgstore.Open(t.Context(), srv.URL(db), pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pg.Close() })
		_, k := keysServer(t, pg.Keys(), api.Options{})
		return k
	})
}

// A blob sealed by the node reaches the catalog's store sealed, the
// server's own sealed view of that store opens it, and a node with
// another master key cannot.
func TestKeysSealedEndToEnd(t *testing.T) {
	dir := t.TempDir()
	raw := keystore.Dir(dir)
	_, k := keysServer(t, raw, api.Options{})
	kr, _ := catalog.NewKeyring(bytes.Repeat([]byte{1}, 32))
	other, _ := catalog.NewKeyring(bytes.Repeat([]byte{2}, 32))
	secret := []byte("private signing key material")
	if _, err := keystore.Sealed(k, kr).Create(t.Context(), "upstream-signing-keys.json", secret); err != nil {
		t.Fatal(err)
	}
	stored, err := raw.Get(t.Context(), "upstream-signing-keys.json")
	if err != nil || bytes.Contains(stored.Data, secret) {
		t.Fatalf("the catalog stored %q, %v: not sealed", stored.Data, err)
	}
	if b, err := keystore.Sealed(raw, kr).Get(t.Context(), "upstream-signing-keys.json"); err != nil || !bytes.Equal(b.Data, secret) {
		t.Fatalf("the server's sealed view: %q, %v", b.Data, err)
	}
	if _, err := keystore.Sealed(k, other).Get(t.Context(), "upstream-signing-keys.json"); err == nil || !strings.Contains(err.Error(), "MANDATE_MASTER_KEY") {
		t.Fatalf("another master key: %v", err)
	}
}

// KeyNames limits what nodes may read and write; the endpoint refuses
// malformed and oversized requests and answers only over TLS or loopback
// (the handler's common rule, tested with connections).
func TestKeysRefusals(t *testing.T) {
	cs, k := keysServer(t, keystore.Dir(t.TempDir()), api.Options{KeyNames: func(n string) bool { return strings.HasPrefix(n, "user-token:") }})
	ctx := t.Context()
	if _, err := k.Create(ctx, "user-token:a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		func() error { _, err := k.Get(ctx, "node-token"); return err }(),
		func() error { _, err := k.List(ctx, ""); return err }(),
		func() error { _, err := k.Lock(ctx, "devidp-signing-key.json"); return err }(),
	} {
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("a name outside KeyNames: %v, want 403", err)
		}
	}
	post := func(body string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cs.URL+api.KeysPath, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	big, _ := json.Marshal(api.KeyRequest{Op: api.KeyCreate, Name: "user-token:big", Data: make([]byte, keystore.MaxBlob+1)})
	for body, want := range map[string]int{
		`{"op":"get","name":"user-token:a","extra":1}`:   400,
		`{"op":"get","name":"user-token:a","op":"list"}`: 400,
		`{"op":"drop","name":"user-token:a"}`:            400,
		`{"op":"get","name":""}`:                         400,
		`{"op":"renew"}`:                                 400,
		string(big):                                      413,
		`{"op":"get","name":"user-token:a"}`:             200,
	} {
		if got := post(body); got != want {
			t.Errorf("%.60s: %d, want %d", body, got, want)
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cs.URL+api.KeysPath, strings.NewReader(`{"op":"get","name":"user-token:a"}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the node token: %v %v", resp.StatusCode, err)
	}
}

// A lock is a lease: renewed while held (it outlives its TTL), released
// by unlock, and released by the catalog when the node stops renewing it
// (a node that died).
func TestKeysLockLease(t *testing.T) {
	const ttl = 150 * time.Millisecond
	cs, a := keysServer(t, keystore.Dir(t.TempDir()), api.Options{KeyLockTTL: ttl})
	b, err := node.NewKeys(cs.config())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	unlock, err := a.Lock(ctx, "lock:grant")
	if err != nil {
		t.Fatal(err)
	}
	// Held across several TTLs thanks to the renewals.
	short, cancel := context.WithTimeout(ctx, 4*ttl)
	if u, err := b.Lock(short, "lock:grant"); err == nil {
		u()
		t.Fatal("a renewed lock was taken by another node")
	}
	cancel()
	unlock()
	u, err := b.Lock(ctx, "lock:grant")
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	u()

	// A node that dies: it took the lock (a bare request) and never renews.
	body, _ := json.Marshal(api.KeyRequest{Op: api.KeyLock, Name: "lock:grant"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cs.URL+api.KeysPath, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got api.KeyResponse
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || got.Lease == "" {
		t.Fatalf("bare lock: %+v, %v", got, err)
	}
	start := time.Now()
	bounded, cancel := context.WithTimeout(ctx, 10*time.Second) // a failure bound
	defer cancel()
	u, err = b.Lock(bounded, "lock:grant")
	if err != nil {
		t.Fatalf("a dead node's lock was not released: %v", err)
	}
	u()
	if waited := time.Since(start); waited < ttl/2 {
		t.Fatalf("the dead node's lock was taken after %s, before its lease could expire", waited)
	}
	// Beyond MaxKeyLocks a lock waits as for a held one, whatever its name.
	// The lease is short: the request given up on below may still win the
	// slot on a loaded machine (before the server sees its client gone),
	// and its lease, which nobody renews, must then expire within the
	// bounded wait that follows.
	_, c := keysServer(t, keystore.Dir(t.TempDir()), api.Options{MaxKeyLocks: 1, KeyLockTTL: time.Second})
	ux, err := c.Lock(ctx, "lock:x")
	if err != nil {
		t.Fatal(err)
	}
	short, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
	if u, err := c.Lock(short, "lock:y"); err == nil {
		u()
		t.Fatal("a second lock beyond MaxKeyLocks 1 was granted")
	}
	cancel()
	ux()
	bounded, cancel = context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	uy, err := c.Lock(bounded, "lock:y")
	if err != nil {
		t.Fatalf("after the first was released: %v", err)
	}
	uy()

	// Its renewal now finds the lease gone.
	body, _ = json.Marshal(api.KeyRequest{Op: api.KeyRenew, Lease: got.Lease})
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, cs.URL+api.KeysPath, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got = api.KeyResponse{}
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || !got.Gone {
		t.Fatalf("renewal of an expired lease: %+v, %v", got, err)
	}
}
