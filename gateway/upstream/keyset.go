package upstream

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// Key lifecycle constants. A key is "next" (published, not yet signing),
// then "current" (signing), then "previous" (published, no longer signing),
// then dropped.
const (
	// MaxMintLifetime is the longest lifetime of a mandate_jwt token.
	MaxMintLifetime = 5 * time.Minute
	// KeyRetention is how long a key stays published after it stopped
	// signing: the longest token lifetime plus a margin for verifiers'
	// clock skew. A token minted just before a rotation verifies until it
	// expires.
	KeyRetention = MaxMintLifetime + 10*time.Minute
	// JWKSMaxAge is the Cache-Control max-age of the JWKS document. It is
	// shorter than KeyRetention and than the time a next key is published
	// before it signs (at least 2×JWKSMaxAge), so a verifier that honours
	// it always knows a key before the first token signed with it arrives
	// and never forgets a key while tokens signed with it are alive.
	JWKSMaxAge = 5 * time.Minute
	// DefaultRotation is the default signing-key rotation period.
	DefaultRotation = 24 * time.Hour
	// MinRotation is the shortest accepted rotation period.
	MinRotation = 2 * JWKSMaxAge
	// KeyFileName is the name of the key file in KeySetConfig.Dir.
	KeyFileName = "upstream-signing-keys.json"
)

// storeTimeout bounds one maintenance's reads and writes of the key store.
const storeTimeout = 10 * time.Second

// KeySetConfig configures a KeySet.
type KeySetConfig struct {
	// Dir is where the keys persist, as Dir/upstream-signing-keys.json
	// (mode 0600, written atomically). "" keeps the keys in memory only:
	// they change at every restart (development and tests).
	Dir string
	// Store, when set, keeps the keys instead of Dir: the blob named
	// KeyFileName (the same JSON as the file). Replicas that share a store
	// (PostgreSQL) share the keys: the first one to start creates them,
	// a rotation is a compare-and-swap (the loser reloads and uses the
	// winner's keys), and each replica reloads the keys every minute and
	// before every rotation, so all publish the same JWKS.
	Store keystore.Store
	// Deferred lets NewKeySet succeed while Store cannot be read (a
	// gateway node whose catalog is not reachable yet): the set starts
	// without keys, signing and the JWKS fail meanwhile (fail closed), and
	// each use tries the store again, at most once per second.
	Deferred bool
	// Rotation is how long a key signs before the next one takes over
	// (default 24h, at least MinRotation).
	Rotation time.Duration
	// Algorithm of new keys: ES256 (default), ES384, ES512, EdDSA, RS256 or
	// PS256. Keys already in the file keep their own algorithm until they
	// rotate out.
	Algorithm jose.SignatureAlgorithm
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Seal and Open encrypt the key file at rest (both or neither), for
	// example with the catalog keyring's AES-GCM. A plaintext file is read
	// and rewritten sealed once Seal is configured; a sealed file without
	// Open is an error.
	Seal func([]byte) ([]byte, error)
	Open func([]byte) ([]byte, error)
	// Logger reports rotations and persistence failures.
	Logger zerolog.Logger
}

// KeySet holds the gateway's signing keys for mandate_jwt tokens, rotates
// them on schedule (lazily, when a token is signed or the JWKS is served,
// and from a background check while the NewKeySet context lives) and
// publishes their public halves.
type KeySet struct {
	cfg KeySetConfig
	now func() time.Time
	log zerolog.Logger

	store keystore.Store // nil: memory only

	mu   sync.Mutex
	keys []*signingKey // sorted by activates
	// version is the stored blob's version keys were loaded from (0:
	// none stored yet).
	version int64
	st      atomic.Pointer[keyState]
	// failedAt and failed are the last failed load while no keys are
	// loaded (Deferred).
	failedAt time.Time
	failed   error
}

type signingKey struct {
	kid       string
	alg       jose.SignatureAlgorithm
	activates time.Time // when it starts signing
	priv      jose.JSONWebKey
	signer    jose.Signer
}

// keyState is the immutable snapshot used by the fast paths.
type keyState struct {
	current *signingKey
	// publishedUntil is when the current key leaves the JWKS at the
	// earliest (its successor's activation + KeyRetention).
	publishedUntil time.Time
	// check is when the key set must be maintained again (unix nanos).
	check int64
	jwks  []byte
	etag  string
}

// NewKeySet loads the keys from cfg.Dir (creating them on first use),
// rotates what is due and persists the result. While ctx lives a
// background check rotates on schedule even without traffic.
func NewKeySet(ctx context.Context, cfg KeySetConfig) (*KeySet, error) {
	if cfg.Rotation == 0 {
		cfg.Rotation = DefaultRotation
	}
	if cfg.Rotation < MinRotation {
		return nil, fmt.Errorf("upstream: key rotation period %s is shorter than the minimum %s", cfg.Rotation, MinRotation)
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = jose.ES256
	}
	if _, err := generateKey(cfg.Algorithm, true); err != nil {
		return nil, err
	}
	if (cfg.Seal == nil) != (cfg.Open == nil) {
		return nil, errors.New("upstream: KeySetConfig needs both Seal and Open, or neither")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k := &KeySet{cfg: cfg, now: cfg.Now, log: cfg.Logger, store: cfg.Store}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.Dir != "" && k.store == nil {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("upstream: key directory: %w", err)
		}
		k.store = keystore.Dir(cfg.Dir)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.maintainLocked(ctx, k.now()); err != nil {
		if !cfg.Deferred || k.store == nil {
			return nil, err
		}
		k.log.Warn().Err(err).Msg("upstream: signing keys not loaded yet (the key store does not answer): calls that need them fail until it does")
		k.failedAt, k.failed = time.Now(), err
	}
	if ctx.Done() != nil {
		go k.background(ctx)
	}
	return k, nil
}

func (k *KeySet) background(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if k.store == nil {
				_, _ = k.state()
				continue
			}
			// Pick up keys another replica stored (and rotate when due).
			k.mu.Lock()
			mctx, cancel := context.WithTimeout(ctx, storeTimeout)
			if err := k.maintainLocked(mctx, k.now()); err != nil {
				k.log.Error().Err(err).Msg("upstream: signing keys")
			}
			cancel()
			k.mu.Unlock()
		}
	}
}

// state returns the current snapshot, rotating first when due.
func (k *KeySet) state() (*keyState, error) {
	now := k.now()
	st := k.st.Load()
	if st != nil && now.UnixNano() < st.check {
		return st, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	st = k.st.Load()
	if st != nil && now.UnixNano() < st.check {
		return st, nil
	}
	if st == nil && k.failed != nil && time.Since(k.failedAt) < time.Second {
		return nil, k.failed // Deferred: the store failed a moment ago
	}
	// A shared store that does not answer delays this caller by at most
	// storeTimeout; the keys in memory serve meanwhile.
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := k.maintainLocked(ctx, now); err != nil {
		if k.st.Load() == nil {
			k.failedAt, k.failed = time.Now(), err
		}
		return nil, err
	}
	return k.st.Load(), nil
}

// maintainLocked reloads the stored keys, promotes the next key when its
// time has come, makes sure a next key exists, drops keys whose retention
// ended, persists changes (compare-and-swap: when another replica stored
// first, its keys are loaded and the maintenance runs again on them) and
// publishes a new snapshot.
func (k *KeySet) maintainLocked(ctx context.Context, now time.Time) error {
	for attempt := 0; ; attempt++ {
		err := k.maintainOnce(ctx, now)
		if errors.Is(err, keystore.ErrConflict) && attempt < 8 {
			continue
		}
		return err
	}
}

func (k *KeySet) maintainOnce(ctx context.Context, now time.Time) error {
	dirty, unsaved := false, false
	if k.store != nil {
		keys, version, rewrite, err := k.load(ctx)
		switch {
		case err != nil && k.st.Load() == nil:
			return err
		case err != nil:
			// Maintain from memory (nothing is written while the store
			// cannot be read); read again in a minute.
			k.log.Error().Err(err).Msg("upstream: cannot read the signing keys")
			unsaved = true
		default:
			k.keys, k.version, dirty = keys, version, rewrite
		}
	}
	keys := k.keys
	if len(keys) == 0 {
		first, err := k.newKey(now)
		if err != nil {
			return err
		}
		keys = []*signingKey{first}
		dirty = true
	}
	// The current key is the newest one active at now; if every key is in
	// the future (clock went back), the oldest signs.
	cur := 0
	for i, key := range keys {
		if !key.activates.After(now) {
			cur = i
		}
	}
	if cur == len(keys)-1 {
		// No next key: publish one, at least 2×JWKSMaxAge before it signs.
		at := keys[cur].activates.Add(k.cfg.Rotation)
		if min := now.Add(2 * JWKSMaxAge); at.Before(min) {
			at = min
		}
		next, err := k.newKey(at)
		if err != nil {
			return err
		}
		keys = append(keys, next)
		dirty = true
		k.log.Info().Str("kid", next.kid).Time("activates", at).Msg("upstream: new signing key published")
	}
	// Drop previous keys whose successor has been signing for KeyRetention.
	kept := keys[:0:0]
	for i, key := range keys {
		if i < cur && !now.Before(keys[i+1].activates.Add(KeyRetention)) {
			k.log.Info().Str("kid", key.kid).Msg("upstream: signing key retired from the JWKS")
			dirty = true
			continue
		}
		kept = append(kept, key)
	}
	keys = kept
	k.keys = keys
	cur = 0
	for i, key := range keys {
		if !key.activates.After(now) {
			cur = i
		}
	}

	check := keys[cur+1].activates // promotion of the next key
	for i := 0; i < cur; i++ {
		if d := keys[i+1].activates.Add(KeyRetention); d.Before(check) {
			check = d
		}
	}
	if unsaved {
		if retry := now.Add(time.Minute); retry.Before(check) {
			check = retry
		}
	}
	if dirty && k.store != nil && !unsaved {
		if err := k.persist(ctx); err != nil {
			if errors.Is(err, keystore.ErrConflict) {
				return err
			}
			if k.st.Load() == nil {
				return err
			}
			// Keep serving from memory; retry in a minute.
			k.log.Error().Err(err).Msg("upstream: cannot persist signing keys")
			if retry := now.Add(time.Minute); retry.Before(check) {
				check = retry
			}
		}
	}
	jwks, err := publicJWKS(keys)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(jwks)
	k.st.Store(&keyState{
		current:        keys[cur],
		publishedUntil: keys[cur+1].activates.Add(KeyRetention),
		check:          check.UnixNano(),
		jwks:           jwks,
		etag:           `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
	})
	return nil
}

func (k *KeySet) newKey(activates time.Time) (*signingKey, error) {
	priv, err := generateKey(k.cfg.Algorithm, false)
	if err != nil {
		return nil, err
	}
	return makeKey(jose.JSONWebKey{Key: priv, Algorithm: string(k.cfg.Algorithm), Use: "sig"}, activates)
}

// makeKey derives the kid (RFC 7638 thumbprint) and the signer.
func makeKey(jwk jose.JSONWebKey, activates time.Time) (*signingKey, error) {
	if jwk.IsPublic() || !jwk.Valid() {
		return nil, errors.New("upstream: signing key is not a valid private key")
	}
	pub := jwk.Public()
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("upstream: key thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	jwk.Use = "sig"
	alg := jose.SignatureAlgorithm(jwk.Algorithm)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jwk},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return nil, fmt.Errorf("upstream: signer: %w", err)
	}
	return &signingKey{kid: jwk.KeyID, alg: alg, activates: activates.UTC(), priv: jwk, signer: signer}, nil
}

func generateKey(alg jose.SignatureAlgorithm, checkOnly bool) (crypto.Signer, error) {
	var curve elliptic.Curve
	switch alg {
	case jose.ES256:
		curve = elliptic.P256()
	case jose.ES384:
		curve = elliptic.P384()
	case jose.ES512:
		curve = elliptic.P521()
	case jose.EdDSA, jose.RS256, jose.PS256:
	default:
		return nil, fmt.Errorf("upstream: unsupported signing algorithm %q (use ES256, ES384, ES512, EdDSA, RS256 or PS256)", alg)
	}
	if checkOnly {
		return nil, nil
	}
	switch {
	case curve != nil:
		return ecdsa.GenerateKey(curve, rand.Reader)
	case alg == jose.EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	default:
		return rsa.GenerateKey(rand.Reader, 3072)
	}
}

// publicJWKS renders the public halves of keys as a JWK Set.
func publicJWKS(keys []*signingKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, key := range keys {
		pub := key.priv.Public()
		if !pub.IsPublic() || !pub.Valid() {
			return nil, errors.New("upstream: cannot derive a public key")
		}
		pub.Certificates = nil
		set.Keys = append(set.Keys, pub)
	}
	return json.Marshal(set)
}

// JWKSHandler serves the public signing keys (current, previous and next)
// as a JWK Set; mount it at /.well-known/jwks.json under the Issuer. Only
// public key material is ever rendered.
func (k *KeySet) JWKSHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		st, err := k.state()
		if err != nil {
			k.log.Error().Err(err).Msg("upstream: jwks")
			http.Error(w, "signing keys unavailable", http.StatusServiceUnavailable)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(JWKSMaxAge/time.Second)))
		h.Set("ETag", st.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if match := r.Header.Get("If-None-Match"); match != "" && match == st.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		h.Set("Content-Length", strconv.Itoa(len(st.jwks)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(st.jwks)
	})
}

// JWKS returns the published JWK Set document (public keys only).
func (k *KeySet) JWKS() ([]byte, error) {
	st, err := k.state()
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), st.jwks...), nil
}

// --- persistence ---

type keyFile struct {
	Version int          `json:"version"`
	Keys    []keyFileKey `json:"keys,omitempty"`
	// Sealed is the Seal-encrypted JSON of a keyFile with Keys.
	Sealed []byte `json:"sealed,omitempty"`
}

type keyFileKey struct {
	Activates time.Time       `json:"activates"`
	JWK       json.RawMessage `json:"jwk"` // private JWK
}

func (k *KeySet) path() string {
	if k.cfg.Dir == "" || k.cfg.Store != nil {
		return "the key store's " + KeyFileName
	}
	return filepath.Join(k.cfg.Dir, KeyFileName)
}

// load reads the key file; rewrite reports that it must be written again
// (its mode was too open, or it is plaintext and Seal is configured).
func (k *KeySet) load(ctx context.Context) (keys []*signingKey, version int64, rewrite bool, err error) {
	p := k.path()
	if k.cfg.Dir != "" && k.cfg.Store == nil {
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return nil, 0, false, fmt.Errorf("upstream: key file %s is readable by others and cannot be restricted: %w", p, err)
			}
			k.log.Warn().Str("path", p).Msg("upstream: key file was readable by others; mode set to 0600")
		}
	}
	blob, err := k.store.Get(ctx, KeyFileName)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("upstream: key file: %w", err)
	}
	keys, rewrite, err = k.parse(p, blob.Data)
	return keys, blob.Version, rewrite, err
}

func (k *KeySet) parse(p string, data []byte) (keys []*signingKey, rewrite bool, err error) {
	var f keyFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, false, fmt.Errorf("upstream: key file %s is corrupt: %w", p, err)
	}
	if f.Version != 1 {
		return nil, false, fmt.Errorf("upstream: key file %s has unknown version %d", p, f.Version)
	}
	if f.Sealed != nil {
		if k.cfg.Open == nil {
			return nil, false, fmt.Errorf("upstream: key file %s is encrypted but no Open hook is configured", p)
		}
		plain, err := k.cfg.Open(f.Sealed)
		if err != nil {
			return nil, false, fmt.Errorf("upstream: key file %s cannot be decrypted: %w", p, err)
		}
		f = keyFile{}
		if err := json.Unmarshal(plain, &f); err != nil {
			return nil, false, fmt.Errorf("upstream: key file %s is corrupt: %w", p, err)
		}
	} else if k.cfg.Seal != nil {
		rewrite = true
	}
	for _, fk := range f.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(fk.JWK); err != nil {
			return nil, false, fmt.Errorf("upstream: key file %s: bad key: %w", p, err)
		}
		if _, err := generateKey(jose.SignatureAlgorithm(jwk.Algorithm), true); err != nil {
			return nil, false, fmt.Errorf("upstream: key file %s: %w", p, err)
		}
		key, err := makeKey(jwk, fk.Activates)
		if err != nil {
			return nil, false, fmt.Errorf("upstream: key file %s: %w", p, err)
		}
		keys = append(keys, key)
	}
	sort.SliceStable(keys, func(i, j int) bool { return keys[i].activates.Before(keys[j].activates) })
	return keys, rewrite, nil
}

// persist stores the keys as one blob, compare-and-swap on the version
// they were loaded from (keystore.ErrConflict: another replica was first).
// In a data directory the file is written atomically: a 0600 temporary
// file in Dir, fsync, rename over the old file, fsync of the directory.
func (k *KeySet) persist(ctx context.Context) error {
	f := keyFile{Version: 1}
	for _, key := range k.keys {
		raw, err := key.priv.MarshalJSON()
		if err != nil {
			return fmt.Errorf("upstream: encode key: %w", err)
		}
		f.Keys = append(f.Keys, keyFileKey{Activates: key.activates, JWK: raw})
	}
	data, err := json.Marshal(f)
	if err != nil {
		return err
	}
	if k.cfg.Seal != nil {
		sealed, err := k.cfg.Seal(data)
		if err != nil {
			return fmt.Errorf("upstream: seal key file: %w", err)
		}
		data, err = json.Marshal(keyFile{Version: 1, Sealed: sealed})
		if err != nil {
			return err
		}
	}
	b, err := k.store.CompareAndSwap(ctx, KeyFileName, k.version, data)
	if err != nil {
		if errors.Is(err, keystore.ErrConflict) {
			return err
		}
		return fmt.Errorf("upstream: %w", err)
	}
	k.version = b.Version
	return nil
}
