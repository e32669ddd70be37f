package identity

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/gateway"
)

// Defaults and limits.
const (
	DefaultLeeway    = 30 * time.Second
	DefaultCacheSize = 10000
	DefaultCacheTTL  = 5 * time.Minute
	// DefaultFetchTimeout bounds one discovery or JWKS request.
	DefaultFetchTimeout = 10 * time.Second
	// MaxTokenSize is the largest bearer token accepted, in bytes.
	MaxTokenSize = 16 << 10
	// MinRefreshInterval is the least time between two fetches of one
	// issuer's JWKS: an unknown kid (or a failed fetch) triggers at most
	// one fetch per interval.
	MinRefreshInterval = 10 * time.Second
	// The JWKS cache lifetime: the response's Cache-Control max-age,
	// clamped to [MinKeysTTL, MaxKeysTTL], else DefaultKeysTTL.
	MinKeysTTL     = time.Minute
	MaxKeysTTL     = 24 * time.Hour
	DefaultKeysTTL = 10 * time.Minute
)

// DefaultAlgorithms is the signature algorithm allow-list used when
// Config.Algorithms is empty.
var DefaultAlgorithms = []string{"RS256", "ES256", "PS256", "EdDSA"}

// asymmetric are the algorithms Config.Algorithms may name. "none" and the
// HMAC algorithms (HS256/384/512) are never accepted: the keys come from a
// public JWKS, and a public key used as an HMAC secret is the classic key
// confusion attack.
var asymmetric = map[string]jose.SignatureAlgorithm{
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512,
	"EdDSA": jose.EdDSA,
}

// Descriptions of the invalid_request errors.
const (
	// DescMissingToken: no Authorization header, or one of another scheme
	// (Basic, ...), or "Bearer" without a token. WWWAuthenticate omits the
	// error attributes for it (RFC 6750 §3.1).
	DescMissingToken = "missing bearer token"
	// DescMalformedToken: more than one Authorization header, or a Bearer
	// credential that is not a token68 (spaces, commas, quotes, ...).
	DescMalformedToken = "malformed bearer token"
	// DescTokenInQuery: the request carries access_token in its query
	// string, which the MCP authorization spec forbids.
	DescTokenInQuery = "bearer tokens are not accepted in the query string; use the Authorization header"
	// DescNoIssuer: a JWT presented to an Authenticator with no issuer
	// configured.
	DescNoIssuer = "no identity provider is configured to verify JWTs: present a Mandate access token (CREATE ACCESS TOKEN)"
)

// Issuer is one trusted OIDC / OAuth 2.0 authorization server.
type Issuer struct {
	// URL is the issuer identifier; a token's "iss" must equal it exactly
	// (no normalization: mind the trailing slash your IdP uses). https, or
	// http to a loopback host (tests, local IdPs).
	URL string
	// JWKSURL is the issuer's JWK Set. Optional: when empty it is read from
	// the issuer's metadata, URL + "/.well-known/openid-configuration"
	// (OIDC Discovery), falling back to the RFC 8414 location
	// "/.well-known/oauth-authorization-server" + URL's path; the
	// metadata's "issuer" must equal URL.
	JWKSURL string
	// SubjectClaim names the claim that becomes Identity.Subject. Default
	// (""): "email" when present (and not "email_verified": false), else
	// "sub". Any other name (for example "preferred_username" or "upn")
	// must be a string claim present in every token of this issuer.
	SubjectClaim string
}

// Config configures an Authenticator.
type Config struct {
	// Issuers are the trusted authorization servers. A token's "iss" must
	// match exactly one of them; each is trusted to name any subject. None:
	// every JWT is refused (a gateway that takes Mandate access tokens
	// only, WithAccessTokens).
	Issuers []Issuer
	// Audiences are the gateway's canonical URLs (RFC 8707), for example
	// "https://gw.example". A token's "aud" must contain one of them or the
	// resource URL passed to Authenticate. Compared exactly.
	Audiences []string
	// Algorithms is the signature algorithm allow-list (default
	// DefaultAlgorithms). Only asymmetric algorithms may be named: RS*,
	// PS*, ES* (256/384/512) and EdDSA; never "none", never HS*.
	Algorithms []string
	// Leeway is the clock skew allowed on exp, nbf and iat (default 30 s;
	// negative: none).
	Leeway time.Duration
	// RequiredScopes must all be granted to a token (optional); otherwise
	// Authenticate answers 403 insufficient_scope.
	RequiredScopes []string
	// CacheSize bounds the verified tokens remembered (default 10,000;
	// negative: no cache). CacheTTL bounds how long one is remembered
	// (default 5 min, and never past the token's exp): a key withdrawn from
	// the JWKS stops admitting cached tokens within CacheTTL.
	CacheSize int
	CacheTTL  time.Duration
	// HTTPClient fetches discovery documents and JWKS (default: a client
	// with a 10 s timeout that follows redirects only to https or loopback
	// http URLs). Whatever the client, a response whose final URL is not
	// https (or loopback http) is refused.
	HTTPClient *http.Client
	Logger     zerolog.Logger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Authenticator verifies inbound bearer JWTs. It is safe for concurrent
// use. Signing keys are fetched lazily, on the first token of each issuer,
// so the gateway can start before its IdP.
type Authenticator struct {
	cfg      Config
	log      zerolog.Logger
	now      func() time.Time
	hc       *http.Client
	algs     []jose.SignatureAlgorithm
	leeway   time.Duration
	issuers  map[string]*keySource
	audience map[string]bool
	scope    string // RequiredScopes joined, for AuthError.Scope
	cache    *tokenCache

	afterMiss func() // tests: runs between a signing-key miss and the flight
}

var _ gateway.Authenticator = (*Authenticator)(nil)

// New validates cfg and returns an Authenticator. It does not contact the
// issuers (see Warm).
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	_ = ctx // reserved: no I/O happens here, keys are fetched on first use
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("identity: at least one audience (the gateway's canonical URL) is required")
	}
	a := &Authenticator{cfg: cfg, log: cfg.Logger.With().Str("component", "identity").Logger(),
		now: cfg.Now, hc: cfg.HTTPClient, leeway: cfg.Leeway,
		issuers: make(map[string]*keySource, len(cfg.Issuers)), audience: make(map[string]bool)}
	if a.now == nil {
		a.now = time.Now
	}
	if a.hc == nil {
		a.hc = &http.Client{Timeout: DefaultFetchTimeout, CheckRedirect: checkRedirect}
	}
	switch {
	case a.leeway == 0:
		a.leeway = DefaultLeeway
	case a.leeway < 0:
		a.leeway = 0
	}
	for _, aud := range cfg.Audiences {
		if strings.TrimSpace(aud) == "" {
			return nil, errors.New("identity: empty audience")
		}
		a.audience[aud] = true
	}
	names := cfg.Algorithms
	if len(names) == 0 {
		names = DefaultAlgorithms
	}
	for _, n := range names {
		alg, ok := asymmetric[n]
		if !ok {
			return nil, fmt.Errorf("identity: signature algorithm %q is not allowed (allowed: RS256/384/512, PS256/384/512, ES256/384/512, EdDSA; never none or HS*)", n)
		}
		if !slices.Contains(a.algs, alg) {
			a.algs = append(a.algs, alg)
		}
	}
	for _, iss := range cfg.Issuers {
		if err := checkIssuerURL(iss.URL); err != nil {
			return nil, err
		}
		if iss.JWKSURL != "" {
			if err := checkFetchURL(iss.JWKSURL); err != nil {
				return nil, fmt.Errorf("identity: issuer %s: JWKSURL: %w", iss.URL, err)
			}
		}
		if _, dup := a.issuers[iss.URL]; dup {
			return nil, fmt.Errorf("identity: issuer %s configured twice", iss.URL)
		}
		a.issuers[iss.URL] = &keySource{a: a, iss: iss}
	}
	for _, s := range cfg.RequiredScopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			return nil, fmt.Errorf("identity: invalid required scope %q", s)
		}
	}
	a.scope = strings.Join(cfg.RequiredScopes, " ")
	size, ttl := cfg.CacheSize, cfg.CacheTTL
	if size == 0 {
		size = DefaultCacheSize
	}
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	if size > 0 {
		a.cache = newTokenCache(size, ttl)
	}
	return a, nil
}

// AuthorizationServers returns the configured issuer URLs, for the RFC
// 9728 metadata document (MetadataDocument).
func (a *Authenticator) AuthorizationServers() []string {
	out := make([]string, len(a.cfg.Issuers))
	for i, iss := range a.cfg.Issuers {
		out[i] = iss.URL
	}
	return out
}

// Warm fetches the signing keys of every issuer now (for example for a
// readiness check) and returns the failures joined. Authenticate does not
// need it: keys are fetched on first use anyway.
func (a *Authenticator) Warm(ctx context.Context) error {
	var errs []error
	for _, iss := range a.cfg.Issuers {
		if _, err := a.issuers[iss.URL].keys(ctx, true); err != nil {
			errs = append(errs, fmt.Errorf("issuer %s: %w", iss.URL, err))
		}
	}
	return errors.Join(errs...)
}

// Authenticate verifies the request's bearer token for resource (the
// canonical URL of the addressed endpoint, also accepted as audience).
// Errors are *gateway.AuthError. The Identity returned for a cached token
// is shared by every request presenting that token: treat it as read-only.
func (a *Authenticator) Authenticate(ctx context.Context, r *http.Request, resource string) (*gateway.Identity, error) {
	if r.URL != nil && strings.Contains(r.URL.RawQuery, "access_token") {
		if q, err := url.ParseQuery(r.URL.RawQuery); err != nil || q.Has("access_token") {
			return nil, a.invalidRequest(DescTokenInQuery)
		}
	}
	tok, desc := bearerToken(r.Header)
	if desc != "" {
		return nil, a.invalidRequest(desc)
	}
	if len(tok) > MaxTokenSize {
		return nil, a.invalidToken(fmt.Sprintf("token too large (more than %d bytes)", MaxTokenSize))
	}
	if a.cache != nil {
		if e, until := a.cache.get(tok); e != nil {
			now := a.now()
			if now.Add(-a.leeway).After(e.id.Expiry) {
				// Kept: presenting it again is answered as cheaply. A full
				// shard drops expired entries first.
				return nil, a.invalidToken("token is expired")
			}
			if now.UnixNano() < until {
				if e.audOK || (resource != "" && slices.Contains(e.aud, resource)) {
					return e.id, nil
				}
				return nil, a.invalidToken("token audience does not include this resource")
			}
			a.cache.remove(tok)
		}
	}
	if !isToken68(tok) {
		return nil, a.invalidRequest(DescMalformedToken)
	}
	id, aud, audOK, err := a.verify(ctx, tok, resource)
	if err != nil {
		return nil, err
	}
	if a.cache != nil {
		a.cache.put(tok, id, aud, audOK, a.now(), a.leeway)
	}
	return id, nil
}

// claims are the claims of an access token that Authenticate reads.
type claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	IssuedAt  *jwt.NumericDate `json:"iat"`

	Email         string   `json:"email"`
	EmailVerified flexBool `json:"email_verified"`
	ClientID      *string  `json:"client_id"`
	AZP           string   `json:"azp"`
	Scope         *strList `json:"scope"`
	Scp           *strList `json:"scp"`
	Act           *actor   `json:"act"`

	// Markers of tokens issued to a client for itself (no user).
	GrantType string `json:"gty"`   // Auth0: "client-credentials"
	IDType    string `json:"idtyp"` // Microsoft Entra: "app"

	// User claims: any of them means a user is behind the token. Only
	// their presence matters (any JSON type).
	PreferredUsername present `json:"preferred_username"`
	UPN               present `json:"upn"`
	Name              present `json:"name"`
	GivenName         present `json:"given_name"`
	FamilyName        present `json:"family_name"`
}

// actor is an RFC 8693 "act" claim; the outermost is the current actor,
// nested ones are earlier actors in the delegation chain (not used).
type actor struct {
	Sub string `json:"sub"`
}

// verify is the uncached path: parse, pick the issuer and key, check the
// signature and the claims, map to an Identity.
func (a *Authenticator) verify(ctx context.Context, tok, resource string) (*gateway.Identity, []string, bool, error) {
	parsed, err := jwt.ParseSigned(tok, a.algs)
	if err != nil {
		var bad *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &bad) {
			return nil, nil, false, a.invalidToken(fmt.Sprintf("signing algorithm %q is not allowed", clip(string(bad.Got))))
		}
		return nil, nil, false, a.invalidToken("malformed token")
	}
	if len(parsed.Headers) != 1 {
		return nil, nil, false, a.invalidToken("malformed token")
	}
	hdr := parsed.Headers[0]
	alg := hdr.Algorithm
	// The payload decoded here is the very byte string whose signature is
	// verified below: decoding once leaves no room for a parser
	// differential between the claims checked and the claims used.
	var c claims
	if err := parsed.UnsafeClaimsWithoutVerification(&c); err != nil {
		return nil, nil, false, a.invalidToken("malformed token claims")
	}
	src := a.issuers[c.Issuer]
	if src == nil && len(a.issuers) == 0 {
		return nil, nil, false, a.invalidToken(DescNoIssuer)
	}
	if src == nil {
		a.log.Debug().Str("iss", clip(c.Issuer)).Msg("token of an untrusted issuer")
		return nil, nil, false, a.invalidToken("token issuer is not trusted")
	}
	if err := src.verifySignature(ctx, parsed, alg, hdr.KeyID); err != nil {
		return nil, nil, false, err
	}

	now := a.now()
	if c.Expiry == nil {
		return nil, nil, false, a.invalidToken("token has no expiry (exp)")
	}
	times := jwt.Claims{Expiry: c.Expiry, NotBefore: c.NotBefore, IssuedAt: c.IssuedAt}
	switch err := times.ValidateWithLeeway(jwt.Expected{Time: now}, a.leeway); {
	case err == nil:
	case errors.Is(err, jwt.ErrExpired):
		return nil, nil, false, a.invalidToken("token is expired")
	case errors.Is(err, jwt.ErrNotValidYet):
		return nil, nil, false, a.invalidToken("token is not valid yet (nbf)")
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return nil, nil, false, a.invalidToken("token is issued in the future (iat)")
	default:
		return nil, nil, false, a.invalidToken("invalid token times")
	}
	audOK := false
	resOK := false
	for _, aud := range c.Audience {
		if a.audience[aud] {
			audOK = true
		} else if resource != "" && aud == resource {
			resOK = true
		}
	}
	if !audOK && !resOK {
		return nil, nil, false, a.invalidToken("token audience does not include this resource")
	}

	id, err := a.identity(&c, src.iss, parsed)
	if err != nil {
		return nil, nil, false, err
	}
	id.Token = strings.Clone(tok)
	sum := sha256.Sum256([]byte(tok))
	id.TokenID = hex.EncodeToString(sum[:16])
	for _, s := range a.cfg.RequiredScopes {
		if !slices.Contains(id.Scopes, s) {
			return nil, nil, false, &gateway.AuthError{Status: http.StatusForbidden, Code: "insufficient_scope",
				Description: "token lacks a required scope", Scope: a.scope}
		}
	}
	return id, slices.Clone([]string(c.Audience)), audOK, nil
}

// identity maps verified claims to an Identity (without Token, TokenID).
func (a *Authenticator) identity(c *claims, iss Issuer, parsed *jwt.JSONWebToken) (*gateway.Identity, error) {
	id := &gateway.Identity{Issuer: iss.URL, Expiry: c.Expiry.Time()}
	if c.ClientID != nil && *c.ClientID != "" {
		id.ClientID = *c.ClientID
	} else {
		id.ClientID = c.AZP
	}
	switch {
	case c.Scope != nil:
		id.Scopes = *c.Scope
	case c.Scp != nil:
		id.Scopes = *c.Scp
	}

	if c.Act != nil {
		if c.Act.Sub == "" {
			return nil, a.invalidToken("act claim has no sub")
		}
		id.Actor = c.Act.Sub
	} else if id.ClientID != "" && a.clientOnly(c, id.ClientID) {
		// The client acts on its own: the subject is the agent's service
		// principal, named by its client id.
		id.Subject = id.ClientID
		return id, nil
	}

	switch iss.SubjectClaim {
	case "":
		if c.Email != "" && c.EmailVerified != flexFalse {
			id.Subject = c.Email
		} else {
			id.Subject = c.Subject
		}
	case "email":
		if c.Email == "" {
			return nil, a.invalidToken("token has no email claim")
		}
		if c.EmailVerified == flexFalse {
			return nil, a.invalidToken("token email is not verified")
		}
		id.Subject = c.Email
	case "sub":
		id.Subject = c.Subject
	default:
		var extra map[string]any
		if err := parsed.UnsafeClaimsWithoutVerification(&extra); err != nil {
			return nil, a.invalidToken("malformed token claims")
		}
		s, _ := extra[iss.SubjectClaim].(string)
		if s == "" {
			return nil, a.invalidToken(fmt.Sprintf("token has no %s claim", iss.SubjectClaim))
		}
		id.Subject = s
	}
	if id.Subject == "" {
		return nil, a.invalidToken("token has no subject")
	}
	return id, nil
}

// clientOnly reports whether a token without "act" was issued to client
// clientID for itself (client credentials): sub is the client id (or azp),
// or the IdP marks it so (Auth0 gty, Entra idtyp). Nothing weaker: a user
// token read as the client's own would give the user's call the agent's
// privileges, and the agent must never exceed the human.
func (a *Authenticator) clientOnly(c *claims, clientID string) bool {
	if c.Subject == clientID || c.Subject == c.AZP && c.AZP != "" {
		return true
	}
	return c.GrantType == "client-credentials" || c.IDType == "app"
}

func (a *Authenticator) invalidRequest(desc string) *gateway.AuthError {
	return &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_request", Description: desc, Scope: a.scope}
}

func (a *Authenticator) invalidToken(desc string) *gateway.AuthError {
	return &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: desc, Scope: a.scope}
}

// clip shortens an attacker-chosen string before it goes into a
// description or a log line.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
