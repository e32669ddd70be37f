package upstream

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// privateMembers are the JWK members that carry private key material.
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

func TestJWKSPublishesOnlyPublicKeys(t *testing.T) {
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.RS256} {
		t.Run(string(alg), func(t *testing.T) {
			clk := newClock()
			ks, err := NewKeySet(context.Background(), KeySetConfig{Algorithm: alg, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			set, body, h := fetchJWKS(t, ks)
			var raw struct {
				Keys []map[string]any `json:"keys"`
			}
			if err := json.Unmarshal(body, &raw); err != nil {
				t.Fatal(err)
			}
			if len(raw.Keys) != 2 || len(set.Keys) != 2 {
				t.Fatalf("%d keys published, want current and next", len(raw.Keys))
			}
			for i, k := range raw.Keys {
				for _, m := range privateMembers {
					if _, ok := k[m]; ok {
						t.Fatalf("JWKS key %d has private member %q", i, m)
					}
				}
				if k["use"] != "sig" || k["alg"] != string(alg) || k["kid"] == "" {
					t.Errorf("key %v", k)
				}
				if !set.Keys[i].IsPublic() {
					t.Errorf("key %d is not public", i)
				}
			}
			cc := h.Get("Cache-Control")
			mustContain(t, cc, "max-age=")
			age, _ := strconv.Atoi(cc[strings.Index(cc, "max-age=")+8:])
			if time.Duration(age)*time.Second >= KeyRetention || age <= 0 {
				t.Errorf("Cache-Control %q: max-age must be shorter than the overlap %s", cc, KeyRetention)
			}
			if h.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", h.Get("Content-Type"))
			}
			// Conditional request and method handling.
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil)
			req.Header.Set("If-None-Match", h.Get("ETag"))
			ks.JWKSHandler().ServeHTTP(rec, req)
			if rec.Code != http.StatusNotModified {
				t.Errorf("If-None-Match: %d", rec.Code)
			}
			rec = httptest.NewRecorder()
			ks.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/.well-known/jwks.json", nil))
			if rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("POST: %d", rec.Code)
			}
		})
	}
}

func kids(set jose.JSONWebKeySet) map[string]bool {
	m := map[string]bool{}
	for _, k := range set.Keys {
		m[k.KeyID] = true
	}
	return m
}

func TestKeyRotation(t *testing.T) {
	clk := newClock()
	start := clk.Now()
	ks := newKeys(t, clk, t.TempDir())
	cr := newCreds(t, clk, func(c *Config) { c.Keys = ks })
	c := conn("mandate_jwt", nil, nil)
	ctx := context.Background()

	set0, _, _ := fetchJWKS(t, ks)
	tok1, err := cr.Authorization(ctx, c, alice(clk))
	if err != nil {
		t.Fatal(err)
	}
	_, kid1 := verifyMinted(t, ks, tok1, c.URL, clk.Now())
	next := ""
	for k := range kids(set0) {
		if k != kid1 {
			next = k
		}
	}
	if next == "" {
		t.Fatal("no next key published ahead of its use")
	}

	// Just before the rotation: a token minted now still signs with kid1.
	clk.Advance(DefaultRotation - time.Second)
	late, err := cr.Authorization(ctx, c, bob(clk))
	if err != nil {
		t.Fatal(err)
	}
	lateClaims, kidLate := verifyMinted(t, ks, late, c.URL, clk.Now())
	if kidLate != kid1 {
		t.Fatal("rotated early")
	}

	// Past the rotation: the pre-published key signs, the old one stays.
	clk.Advance(time.Second)
	id := alice(clk)
	id.Subject = "carol@example.com"
	tok2, err := cr.Authorization(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	_, kid2 := verifyMinted(t, ks, tok2, c.URL, clk.Now())
	if kid2 == kid1 || kid2 != next {
		t.Fatalf("after rotation kid %s (old %s, pre-published %s)", kid2, kid1, next)
	}
	set, _, _ := fetchJWKS(t, ks)
	if k := kids(set); !k[kid1] || !k[kid2] || len(k) != 3 {
		t.Fatalf("JWKS after rotation: %v", k)
	}
	// The token minted just before the rotation is still served from the
	// cache and verifies until it expires.
	if v, _ := cr.Authorization(ctx, c, bob(clk)); v != late {
		t.Fatal("token minted before the rotation was dropped from the cache early")
	}
	clk.Advance(lateClaims.Expiry.Time().Sub(clk.Now()) - time.Second)
	verifyMinted(t, ks, late, c.URL, clk.Now())

	// Once its tokens have expired (plus margin) the old key is dropped.
	clk.Advance(start.Add(DefaultRotation + KeyRetention).Sub(clk.Now()))
	set, _, _ = fetchJWKS(t, ks)
	if k := kids(set); k[kid1] || !k[kid2] || len(k) != 2 {
		t.Fatalf("JWKS after retention: %v", k)
	}
}

func TestKeysPersistAcrossRestart(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	ks1 := newKeys(t, clk, dir)
	set1, _, _ := fetchJWKS(t, ks1)
	path := filepath.Join(dir, "upstream-signing-keys.json")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %o", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}

	// A restart serves and signs with the same keys.
	ks2 := newKeys(t, clk, dir)
	set2, _, _ := fetchJWKS(t, ks2)
	if !equalKids(set1, set2) {
		t.Fatalf("keys changed across restart: %v vs %v", kids(set1), kids(set2))
	}
	cr := newCreds(t, clk, func(c *Config) { c.Keys = ks2 })
	tok, err := cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), alice(clk))
	if err != nil {
		t.Fatal(err)
	}
	verifyMinted(t, ks1, tok, "https://mcp.example.com/mcp", clk.Now())

	// Rotation while running persists; a restart after it keeps the old key.
	clk.Advance(DefaultRotation)
	setR, _, _ := fetchJWKS(t, ks2)
	ks3 := newKeys(t, clk, dir)
	set3, _, _ := fetchJWKS(t, ks3)
	if !equalKids(setR, set3) || len(set3.Keys) != 3 {
		t.Fatalf("after rotation and restart: %v vs %v", kids(setR), kids(set3))
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode after rewrite %o", fi.Mode().Perm())
	}

	// A restart after a long downtime rotates and drops what is due.
	clk.Advance(10 * DefaultRotation)
	ks4 := newKeys(t, clk, dir)
	set4, _, _ := fetchJWKS(t, ks4)
	if len(set4.Keys) != 2 {
		t.Fatalf("after downtime %d keys", len(set4.Keys))
	}

	// A key file readable by others is restricted on load.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	newKeys(t, clk, dir)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode not restricted: %o", fi.Mode().Perm())
	}

	// A corrupt key file is an error, not silently replaced.
	if err := os.WriteFile(path, []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewKeySet(context.Background(), KeySetConfig{Dir: dir, Now: clk.Now}); err == nil {
		t.Fatal("corrupt key file accepted")
	}
}

func equalKids(a, b jose.JSONWebKeySet) bool {
	ka, kb := kids(a), kids(b)
	if len(ka) != len(kb) {
		return false
	}
	for k := range ka {
		if !kb[k] {
			return false
		}
	}
	return true
}

func aesHooks(t *testing.T) (seal, open func([]byte) ([]byte, error)) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, _ := cipher.NewGCM(block)
	seal = func(p []byte) ([]byte, error) {
		nonce := make([]byte, gcm.NonceSize())
		_, _ = rand.Read(nonce)
		return gcm.Seal(nonce, nonce, p, nil), nil
	}
	open = func(s []byte) ([]byte, error) {
		if len(s) < gcm.NonceSize() {
			return nil, errors.New("short")
		}
		return gcm.Open(nil, s[:gcm.NonceSize()], s[gcm.NonceSize():], nil)
	}
	return seal, open
}

func TestKeyFileSealedAtRest(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	path := filepath.Join(dir, KeyFileName)

	// A plaintext file (no hooks) holds the private key...
	plain := newKeys(t, clk, dir)
	setPlain, _, _ := fetchJWKS(t, plain)
	data, _ := os.ReadFile(path)
	if !bytes.Contains(data, []byte(`"d":`)) {
		t.Fatal("plaintext key file without the private key?")
	}

	// ...and is rewritten sealed once hooks are configured, same keys.
	seal, open := aesHooks(t)
	ks, err := NewKeySet(context.Background(), KeySetConfig{Dir: dir, Now: clk.Now, Seal: seal, Open: open})
	if err != nil {
		t.Fatal(err)
	}
	set, _, _ := fetchJWKS(t, ks)
	if !equalKids(set, setPlain) {
		t.Fatal("keys changed when sealing")
	}
	data, _ = os.ReadFile(path)
	if bytes.Contains(data, []byte(`"d":`)) || bytes.Contains(data, []byte(`"kty"`)) || !bytes.Contains(data, []byte(`"sealed"`)) {
		t.Fatalf("key file not sealed: %s", data)
	}
	ks2, err := NewKeySet(context.Background(), KeySetConfig{Dir: dir, Now: clk.Now, Seal: seal, Open: open})
	if err != nil {
		t.Fatal(err)
	}
	set2, _, _ := fetchJWKS(t, ks2)
	if !equalKids(set, set2) {
		t.Fatal("sealed keys did not survive a restart")
	}
	if _, err := NewKeySet(context.Background(), KeySetConfig{Dir: dir, Now: clk.Now}); err == nil {
		t.Fatal("sealed file read without Open")
	}
	_, wrongOpen := aesHooks(t)
	if _, err := NewKeySet(context.Background(), KeySetConfig{Dir: dir, Now: clk.Now, Seal: seal, Open: wrongOpen}); err == nil {
		t.Fatal("sealed file opened with the wrong key")
	}
	if _, err := NewKeySet(context.Background(), KeySetConfig{Dir: dir, Now: clk.Now, Seal: seal}); err == nil {
		t.Fatal("Seal without Open accepted")
	}
}

func TestKeySetConfigValidation(t *testing.T) {
	if _, err := NewKeySet(context.Background(), KeySetConfig{Rotation: time.Minute}); err == nil {
		t.Fatal("1m rotation accepted")
	}
	if _, err := NewKeySet(context.Background(), KeySetConfig{Algorithm: "HS256"}); err == nil {
		t.Fatal("HS256 accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := NewKeySet(ctx, KeySetConfig{}); err == nil {
		t.Fatal("cancelled context accepted")
	}
}

func TestKeySetBackgroundStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ks, err := NewKeySet(ctx, KeySetConfig{Rotation: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := ks.JWKS(); err != nil {
		t.Fatal(err)
	}
}

// Replicas sharing a key store: started at once they agree on one key set,
// a token minted by one verifies with the JWKS of another, and a rotation
// that each replica attempts at the same moment leaves one set, which all
// publish.
func TestKeysSharedStore(t *testing.T) {
	clk := newClock()
	store := keystore.Dir(t.TempDir())
	const n = 3
	sets := make([]*KeySet, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sets[i], errs[i] = NewKeySet(context.Background(), KeySetConfig{Store: store, Now: clk.Now})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	same := func(when string) {
		t.Helper()
		first, _, _ := fetchJWKS(t, sets[0])
		for _, ks := range sets[1:] {
			set, _, _ := fetchJWKS(t, ks)
			if !equalKids(first, set) {
				t.Fatalf("%s: replicas publish different keys: %v vs %v", when, kids(first), kids(set))
			}
		}
	}
	same("start")
	cr := newCreds(t, clk, func(c *Config) { c.Keys = sets[1] })
	tok, err := cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), alice(clk))
	if err != nil {
		t.Fatal(err)
	}
	verifyMinted(t, sets[2], tok, "https://mcp.example.com/mcp", clk.Now())

	clk.Advance(DefaultRotation)
	for i := range n { // all rotate at once
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = sets[i].JWKS() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	same("after rotation")
	if set, _, _ := fetchJWKS(t, sets[0]); len(set.Keys) != 3 {
		t.Fatalf("after rotation: %v, want previous, current and next", kids(set))
	}
}

// downStore fails every call while down is set.
type downStore struct {
	keystore.Store
	down atomic.Bool
}

func (d *downStore) Get(ctx context.Context, name string) (keystore.Blob, error) {
	if d.down.Load() {
		return keystore.Blob{}, errors.New("the catalog does not answer")
	}
	return d.Store.Get(ctx, name)
}

// Deferred: a key store that does not answer at start lets NewKeySet
// succeed, signing and the JWKS fail closed meanwhile, and the keys the
// store holds are used once it answers (not keys of the set's own).
func TestKeysDeferred(t *testing.T) {
	clk := newClock()
	shared := keystore.Dir(t.TempDir())
	first, err := NewKeySet(context.Background(), KeySetConfig{Store: shared, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	store := &downStore{Store: shared}
	store.down.Store(true)
	if _, err := NewKeySet(context.Background(), KeySetConfig{Store: store, Now: clk.Now}); err == nil {
		t.Fatal("NewKeySet without Deferred succeeded while the store is down")
	}
	ks, err := NewKeySet(context.Background(), KeySetConfig{Store: store, Now: clk.Now, Deferred: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.JWKS(); err == nil {
		t.Fatal("JWKS served without keys")
	}
	cr := newCreds(t, clk, func(c *Config) { c.Keys = ks })
	if _, err := cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), alice(clk)); err == nil {
		t.Fatal("a token was minted without the store's keys")
	}
	store.down.Store(false)
	var tok string
	for deadline := time.Now().Add(10 * time.Second); ; { // the retry comes at most 1 s after the last failure
		if tok, err = cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), alice(clk)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no token once the store answers: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	verifyMinted(t, first, tok, "https://mcp.example.com/mcp", clk.Now())
}
