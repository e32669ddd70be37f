package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/flight"
)

const (
	// maxDocument bounds a discovery document or JWKS read.
	maxDocument = 1 << 20
	// maxKeys bounds the keys kept of one JWKS (and so the keys tried for
	// a token without kid).
	maxKeys = 64
	// minRSABits is the smallest RSA modulus accepted.
	minRSABits = 2048
)

// errNoKeys: the issuer's signing keys could not be fetched yet.
var errNoKeys = errors.New("signing keys unavailable")

// verifyKey is one usable signing key of a JWKS.
type verifyKey struct {
	kid string
	alg string // the JWK's "alg", "" if none
	key any    // *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey
}

// keySet is one fetched JWKS.
type keySet struct {
	keys    []verifyKey
	expires time.Time
}

// keySource holds the signing keys of one issuer: fetched on first use,
// kept for the JWKS's max-age, refetched on an unknown kid at most once
// per MinRefreshInterval, one fetch at a time.
type keySource struct {
	a       *Authenticator
	iss     Issuer
	set     atomic.Pointer[keySet]
	flights flight.Group[*keySet]

	mu          sync.Mutex
	lastAttempt time.Time // of a fetch, successful or not
	lastErr     error
	jwksURL     string // discovered (Issuer.JWKSURL empty)
}

// verifySignature checks parsed's signature with the issuer's key for
// kid (or, without kid, with each key of the type alg needs).
func (s *keySource) verifySignature(ctx context.Context, parsed *jwt.JSONWebToken, alg, kid string) error {
	set, err := s.keys(ctx, false)
	if err != nil {
		s.a.log.Warn().Err(err).Str("iss", s.iss.URL).Msg("cannot verify token: no signing keys")
		return s.a.invalidToken("cannot verify token: the issuer's signing keys are unavailable")
	}
	cands, known := set.candidates(alg, kid)
	if !known {
		// An unknown kid may be a new key (rotation): refetch, rate limited.
		if fresh, err := s.keys(ctx, true); err == nil && fresh != set {
			cands, known = fresh.candidates(alg, kid)
		}
	}
	if !known {
		s.a.log.Debug().Str("iss", s.iss.URL).Str("kid", clip(kid)).Msg("token signed with an unknown key")
		return s.a.invalidToken("token signed with an unknown key")
	}
	if len(cands) == 0 {
		return s.a.invalidToken(fmt.Sprintf("no signing key of the issuer fits algorithm %s", alg))
	}
	for _, k := range cands {
		if err := parsed.Claims(k.key); err == nil {
			return nil
		}
	}
	return s.a.invalidToken("invalid token signature")
}

// candidates returns the keys that may verify a token of alg and kid.
// known is false when kid names no key of the set (or, without kid, when
// the set has no key at all of the type alg needs): worth a refetch.
func (ks *keySet) candidates(alg, kid string) (out []verifyKey, known bool) {
	for _, k := range ks.keys {
		if kid != "" {
			if k.kid != kid {
				continue
			}
			known = true
		}
		if fits(k, alg) {
			out = append(out, k)
		}
	}
	if kid == "" {
		known = len(out) > 0
	}
	return out, known
}

// fits reports whether key k may verify alg: its type is alg's family
// (RSA for RS/PS, EC on the matching curve for ES, Ed25519 for EdDSA), and
// its "alg", if any, is alg.
func fits(k verifyKey, alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch key := k.key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return key.Curve == elliptic.P256()
		case "ES384":
			return key.Curve == elliptic.P384()
		case "ES512":
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// keys returns the issuer's key set. It fetches when there is none yet,
// when it is past its max-age, or when refresh is asked (unknown kid) —
// but never twice within MinRefreshInterval: then the current set (maybe
// stale) is returned, or the last error when there is none. Concurrent
// callers share one fetch (gateway/internal/flight); a caller whose miss
// straddles another caller's fetch takes the set that fetch stored.
func (s *keySource) keys(ctx context.Context, refresh bool) (*keySet, error) {
	cur := s.set.Load()
	if cur != nil && !refresh && s.a.now().Before(cur.expires) {
		return cur, nil
	}
	if h := s.a.afterMiss; h != nil {
		h()
	}
	// A set other than the one found wanting was stored since: a newer one.
	newer := func() (*keySet, bool) {
		set := s.set.Load()
		return set, set != nil && set != cur && s.a.now().Before(set.expires)
	}
	return s.flights.Do(ctx, "", DefaultFetchTimeout, newer, func(fctx context.Context) (*keySet, error) {
		now := s.a.now()
		cur := s.set.Load()
		s.mu.Lock()
		if !s.lastAttempt.IsZero() && now.Sub(s.lastAttempt) < MinRefreshInterval {
			err := s.lastErr
			s.mu.Unlock()
			if cur != nil {
				return cur, nil
			}
			if err == nil {
				err = errNoKeys
			}
			return nil, err
		}
		s.lastAttempt = now
		s.mu.Unlock()
		// The fetch outlives a caller that gives up: others may wait on it.
		set, err := s.fetch(fctx)
		s.mu.Lock()
		s.lastErr = err
		s.mu.Unlock()
		if err != nil {
			s.a.log.Warn().Err(err).Str("iss", s.iss.URL).Msg("fetching the issuer's signing keys failed")
			if cur != nil {
				return cur, nil // keep using the keys we have
			}
			return nil, err
		}
		s.set.Store(set)
		return set, nil
	})
}

// fetch reads the JWKS (discovering its URL first if needed).
func (s *keySource) fetch(ctx context.Context) (*keySet, error) {
	u := s.iss.JWKSURL
	discovered := false
	if u == "" {
		s.mu.Lock()
		u = s.jwksURL
		s.mu.Unlock()
		if u == "" {
			var err error
			if u, err = s.discover(ctx); err != nil {
				return nil, err
			}
			s.mu.Lock()
			s.jwksURL = u
			s.mu.Unlock()
		}
		discovered = true
	}
	body, hdr, err := s.a.get(ctx, u)
	if err != nil {
		if discovered { // the metadata may have changed: rediscover next time
			s.mu.Lock()
			s.jwksURL = ""
			s.mu.Unlock()
		}
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys, err := s.parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS %s: %w", u, err)
	}
	return &keySet{keys: keys, expires: s.a.now().Add(maxAge(hdr.Get("Cache-Control")))}, nil
}

// discover reads the jwks_uri of the issuer's metadata: OIDC Discovery,
// then RFC 8414.
func (s *keySource) discover(ctx context.Context) (string, error) {
	iu, _ := url.Parse(s.iss.URL)
	oidc := strings.TrimSuffix(s.iss.URL, "/") + "/.well-known/openid-configuration"
	rfc8414 := (&url.URL{Scheme: iu.Scheme, Host: iu.Host,
		Path: "/.well-known/oauth-authorization-server" + strings.TrimSuffix(iu.Path, "/")}).String()
	var errs []error
	for _, mu := range []string{oidc, rfc8414} {
		body, _, err := s.a.get(ctx, mu)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := strictjson.Unmarshal(body, &md, strictjson.Options{MaxBytes: maxDocument}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", mu, err))
			continue
		}
		if md.Issuer != s.iss.URL {
			errs = append(errs, fmt.Errorf("%s: issuer %q is not %q", mu, clip(md.Issuer), s.iss.URL))
			continue
		}
		if err := checkFetchURL(md.JWKSURI); err != nil {
			errs = append(errs, fmt.Errorf("%s: jwks_uri: %w", mu, err))
			continue
		}
		return md.JWKSURI, nil
	}
	return "", fmt.Errorf("discovery: %w", errors.Join(errs...))
}

// parseJWKS keeps the usable signing keys of a JWK Set: public RSA (at
// least 2048 bits), EC and Ed25519 keys whose "use" is "sig" or absent and
// whose "key_ops", if any, include "verify". Other keys are skipped, one
// bad key does not spoil the set; a key with private material is refused
// (the IdP publishes its secret: trusting it would trust anyone).
func (s *keySource) parseJWKS(body []byte) ([]verifyKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := strictjson.Unmarshal(body, &doc, strictjson.Options{MaxBytes: maxDocument}); err != nil {
		return nil, err
	}
	var out []verifyKey
	for i, raw := range doc.Keys {
		var meta struct {
			Kty    string   `json:"kty"`
			Use    string   `json:"use"`
			KeyOps []string `json:"key_ops"`
		}
		if json.Unmarshal(raw, &meta) != nil {
			continue
		}
		if meta.Use != "" && meta.Use != "sig" {
			continue
		}
		if len(meta.KeyOps) > 0 && !slices.Contains(meta.KeyOps, "verify") {
			continue
		}
		if meta.Kty != "RSA" && meta.Kty != "EC" && meta.Kty != "OKP" {
			continue // "oct" (never a JWKS key) and unknown types
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			s.a.log.Warn().Err(err).Str("iss", s.iss.URL).Int("key", i).Msg("JWKS key skipped")
			continue
		}
		vk := verifyKey{kid: k.KeyID, alg: k.Algorithm}
		switch key := k.Key.(type) {
		case *rsa.PublicKey:
			if key.N.BitLen() < minRSABits {
				s.a.log.Warn().Str("iss", s.iss.URL).Str("kid", clip(k.KeyID)).Msg("JWKS key skipped: RSA key under 2048 bits")
				continue
			}
			vk.key = key
		case *ecdsa.PublicKey:
			vk.key = key
		case ed25519.PublicKey:
			vk.key = key
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			s.a.log.Error().Str("iss", s.iss.URL).Str("kid", clip(k.KeyID)).
				Msg("JWKS publishes a PRIVATE key: key ignored; fix the issuer's configuration")
			continue
		default:
			continue
		}
		out = append(out, vk)
		if len(out) == maxKeys {
			break
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no usable signing key")
	}
	return out, nil
}

// get fetches u and returns its body (at most maxDocument bytes).
func (a *Authenticator) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.Request != nil && resp.Request.URL != nil {
		if err := checkFetchURL(resp.Request.URL.String()); err != nil {
			return nil, nil, fmt.Errorf("%s: redirected: %w", u, err)
		}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", u, err)
	}
	if len(body) > maxDocument {
		return nil, nil, fmt.Errorf("%s: document larger than %d bytes", u, maxDocument)
	}
	return body, resp.Header, nil
}

// maxAge is the lifetime of a JWKS response: Cache-Control max-age clamped
// to [MinKeysTTL, MaxKeysTTL]; no-store / no-cache count as 0 (so
// MinKeysTTL); DefaultKeysTTL without either.
func maxAge(cc string) time.Duration {
	ttl := time.Duration(-1)
	for _, d := range strings.Split(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		switch {
		case d == "no-store" || d == "no-cache":
			ttl = 0
		case strings.HasPrefix(d, "max-age="):
			if ttl == 0 {
				continue
			}
			n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
			if err == nil && n >= 0 {
				ttl = time.Duration(min(n, int64(MaxKeysTTL/time.Second))) * time.Second
			}
		}
	}
	if ttl < 0 {
		return DefaultKeysTTL
	}
	return min(max(ttl, MinKeysTTL), MaxKeysTTL)
}

// checkIssuerURL: an issuer identifier is an https URL (or http to a
// loopback host) without query or fragment.
func checkIssuerURL(raw string) error {
	if err := checkFetchURL(raw); err != nil {
		return fmt.Errorf("identity: issuer %q: %w", raw, err)
	}
	u, _ := url.Parse(raw)
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("identity: issuer %q: must have no query, fragment or user info", raw)
	}
	return nil
}

// checkFetchURL: keys and metadata come only from https, or from http on
// a loopback host (tests, a local IdP).
func checkFetchURL(raw string) error { return gateway.CheckSecureURL(raw) }

// checkRedirect (the default HTTP client's) follows redirects only to
// URLs checkFetchURL admits, at most 5.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	return checkFetchURL(req.URL.String())
}
