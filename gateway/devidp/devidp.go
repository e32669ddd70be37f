package devidp

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"
	httphelper "github.com/zitadel/oidc/v3/pkg/http"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// Paths the provider serves, relative to the issuer URL.
const (
	PathDiscovery     = "/.well-known/openid-configuration"
	PathASMetadata    = "/.well-known/oauth-authorization-server" // same document (RFC 8414)
	PathJWKS          = "/keys"
	PathAuthorize     = "/authorize"
	PathAuthCallback  = "/authorize/callback"
	PathLogin         = "/login"
	PathToken         = "/oauth/token"
	PathIntrospection = "/oauth/introspect"
	PathUserinfo      = "/userinfo"
	PathRevocation    = "/revoke"
	PathEndSession    = "/end_session"
)

// Config configures the development identity provider.
type Config struct {
	// Issuer is the provider's URL, e.g. http://127.0.0.1:8470/oidc; every
	// path above is served under it. http is allowed (development only).
	Issuer string
	// DataDir holds devidp-signing-key.json and dev-idp.json.
	DataDir string
	// Keys, when set, holds the signing key, the shared client secret and
	// the user assertion key instead of DataDir (the blobs named
	// SigningKeyFile and StateFile): replicas sharing it (PostgreSQL) sign
	// with one key and accept each other's tokens. DataDir/dev-idp.json is
	// still written, with this process's issuer, for local tools
	// (`mandate dev-token`).
	Keys keystore.Store
	// Audience is the aud of access tokens when the request names no
	// resource or audience: the gateway's canonical URL.
	Audience string
	// PrincipalExists, when set, is asked whether a user or agent name is
	// known before a token is issued for it (as subject or actor); false
	// refuses, an error fails the request. Nil accepts every name.
	PrincipalExists func(ctx context.Context, name string) (bool, error)
	// RedirectURIs are further allowed redirect_uri patterns (doublestar
	// globs, e.g. "https://gw.example/oauth/**"), beyond loopback URLs and
	// the issuer's own origin.
	RedirectURIs []string
	// TokenLifetime of access tokens (default 1 hour); RefreshTokenLifetime
	// of refresh tokens (default 24 hours).
	TokenLifetime        time.Duration
	RefreshTokenLifetime time.Duration
	// Logger receives one line per issued token (no token values).
	Logger zerolog.Logger
	// Now is the clock for expiries of tokens, codes and refresh tokens
	// (default time.Now).
	Now func() time.Time
}

const (
	defaultTokenLifetime   = time.Hour
	defaultRefreshLifetime = 24 * time.Hour
	authRequestLifetime    = 10 * time.Minute
	// maxAuthRequests bounds the authorization requests pending at once:
	// anyone may start one (GET /authorize needs no credential), so more
	// are refused (temporarily_unavailable) until some complete or expire.
	maxAuthRequests = 1024
	// maxAuthRequestBytes bounds what one authorization request keeps in
	// memory (state, nonce, login_hint, redirect_uri, scopes, resources,
	// the code challenge); a larger one is invalid_request.
	maxAuthRequestBytes = 8 << 10
)

// Provider is a running development identity provider.
type Provider struct {
	cfg    Config
	issuer string // without a trailing slash
	prefix string // the issuer's path, without a trailing slash ("" at the root)
	// metadataPath is the RFC 8414 section 3 metadata URL's path for an
	// issuer with a path: /.well-known/oauth-authorization-server/oidc.
	metadataPath string
	origin       string // scheme://host of the issuer
	op           *op.Provider
	store        *storage
	state        *state

	closeOnce sync.Once
}

// New loads or creates the provider's keys and secret in cfg.DataDir and
// returns the provider. It logs a warning that it is for development only.
func New(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("devidp: DataDir is required")
	}
	if cfg.Audience == "" {
		return nil, errors.New("devidp: Audience (the gateway's canonical URL) is required")
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("devidp: Issuer %q must be an http(s) URL without query or fragment", cfg.Issuer)
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = defaultTokenLifetime
	}
	if cfg.RefreshTokenLifetime <= 0 {
		cfg.RefreshTokenLifetime = defaultRefreshLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	for _, g := range cfg.RedirectURIs {
		if err := validGlob(g); err != nil {
			return nil, fmt.Errorf("devidp: RedirectURIs %q: %v", g, err)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("devidp: data dir: %w", err)
	}
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	var signingKey *jose.JSONWebKey
	var st *state
	if cfg.Keys != nil {
		signingKey, st, err = loadOrCreateShared(ctx, cfg.Keys, cfg.DataDir, issuer, cfg.Audience)
	} else {
		signingKey, err = loadOrCreateSigningKey(cfg.DataDir)
		if err == nil {
			st, err = loadOrCreateState(cfg.DataDir, issuer, cfg.Audience)
		}
	}
	if err != nil {
		return nil, err
	}
	p := &Provider{
		cfg:    cfg,
		issuer: issuer,
		prefix: strings.TrimSuffix(u.Path, "/"),
		origin: u.Scheme + "://" + u.Host,
		state:  st,
	}
	p.metadataPath = PathASMetadata + p.prefix
	p.store = newStorage(p, signingKey)

	// The AES key protects opaque tokens, which this provider never issues;
	// a fresh random key per process makes sure none is ever accepted.
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, err
	}
	p.op, err = op.NewProvider(&op.Config{
		CryptoKey:             cryptoKey,
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
	}, p.store, op.StaticIssuer(issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	p.store.op = p.op
	cfg.Logger.Warn().Str("issuer", issuer).Str("data_dir", cfg.DataDir).
		Msg("development identity provider enabled: any client_id with the shared secret, login without password; NOT FOR PRODUCTION")
	return p, nil
}

// Issuer returns the issuer URL (no trailing slash).
func (p *Provider) Issuer() string { return p.issuer }

// ClientSecret returns the shared development client secret (also in
// DATA_DIR/dev-idp.json). Never log it.
func (p *Provider) ClientSecret() string { return p.state.ClientSecret }

// MetadataPath is the path of the RFC 8414 metadata URL for this issuer at
// the server's root (/.well-known/oauth-authorization-server/oidc for an
// issuer .../oidc). Handler serves it too, if it is routed there.
func (p *Provider) MetadataPath() string { return p.metadataPath }

// Handler serves the provider. Mount it at the issuer's path with the path
// kept (for issuer http://host/oidc: mux.Handle("/oidc/", h)); it answers
// ISSUER/.well-known/openid-configuration, ISSUER/keys, ... (the Path*
// constants) and, when routed to it, MetadataPath.
func (p *Provider) Handler() http.Handler { return http.HandlerFunc(p.serveHTTP) }

// Close forgets the in-memory authorization requests, codes and refresh
// tokens. It is safe to call more than once.
func (p *Provider) Close() error {
	p.closeOnce.Do(p.store.close)
	return nil
}

func (p *Provider) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == p.metadataPath {
		p.serveOP(w, r, PathDiscovery)
		return
	}
	rel, ok := strings.CutPrefix(r.URL.Path, p.prefix)
	if !ok || (rel != "" && rel[0] != '/') {
		http.NotFound(w, r)
		return
	}
	if p.store.closed() {
		http.Error(w, "the development identity provider is closed", http.StatusServiceUnavailable)
		return
	}
	r = r.WithContext(op.ContextWithIssuer(r.Context(), p.issuer))
	switch rel {
	case PathLogin:
		p.login(w, r)
	case PathAuthorize:
		p.authorize(w, r, rel)
	case PathToken:
		p.token(w, r, rel)
	case PathASMetadata:
		p.serveOP(w, r, PathDiscovery)
	default:
		p.serveOP(w, r, rel)
	}
}

// serveOP hands r to the zitadel provider with the path relative to the issuer.
func (p *Provider) serveOP(w http.ResponseWriter, r *http.Request, rel string) {
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = rel, ""
	r2.URL = &u
	p.op.ServeHTTP(w, r2)
}

// authorize records the RFC 8707 resource (or audience) parameters of an
// authorization request for CreateAuthRequest, then lets op handle it.
func (p *Provider) authorize(w http.ResponseWriter, r *http.Request, rel string) {
	if status, err := parseForm(w, r); err != nil {
		http.Error(w, "cannot parse the request", status)
		return
	}
	targets, err := requestedTargets(r.Form)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.serveOP(w, r.WithContext(withTargets(r.Context(), p.orDefault(targets))), rel)
}

// token maps resource and audience parameters onto the token's audience
// for each grant, handles the JWT bearer grant, and passes the rest to op.
func (p *Provider) token(w http.ResponseWriter, r *http.Request, rel string) {
	if r.Method == http.MethodOptions {
		p.serveOP(w, r, rel) // CORS preflight
		return
	}
	w.Header().Set("Cache-Control", "no-store") // RFC 6749 section 5.1
	w.Header().Set("Pragma", "no-cache")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		httphelper.MarshalJSONWithStatus(w, oidc.ErrInvalidRequest().WithDescription("the token endpoint takes POST"), http.StatusMethodNotAllowed)
		return
	}
	if status, err := parseForm(w, r); status == http.StatusRequestEntityTooLarge {
		httphelper.MarshalJSONWithStatus(w, oidc.ErrInvalidRequest().WithDescription("the form is larger than 64 KiB"), status)
		return
	} else if err != nil {
		op.RequestError(w, r, oidc.ErrInvalidRequest().WithDescription("cannot parse the form"), nil)
		return
	}
	targets, err := requestedTargets(r.Form)
	if err != nil {
		op.RequestError(w, r, err, nil)
		return
	}
	switch oidc.GrantType(r.Form.Get("grant_type")) {
	case oidc.GrantTypeBearer:
		p.jwtBearer(w, r, p.orDefault(targets))
		return
	case oidc.GrantTypeTokenExchange:
		// op takes the issued token's aud from the audience parameter.
		r.Form["audience"] = p.orDefault(targets)
	case oidc.GrantTypeClientCredentials:
		r = r.WithContext(withTargets(r.Context(), p.orDefault(targets)))
	case oidc.GrantTypeCode, oidc.GrantTypeRefreshToken:
		// The audience was fixed by the authorization request; a resource
		// named again must be one of it (RFC 8707 section 2.2).
		if len(targets) > 0 {
			granted, ok := p.store.grantedAudience(r.Form.Get("code"), r.Form.Get("refresh_token"))
			if ok && !subset(targets, granted) {
				op.RequestError(w, r, oidc.ErrInvalidTarget().WithDescription("the resource was not part of the authorization"), nil)
				return
			}
		}
	}
	p.serveOP(w, r, rel)
}

// jwtBearer is the RFC 7523 JWT bearer grant: a user token for the subject
// of an assertion signed with the user assertion key.
func (p *Provider) jwtBearer(w http.ResponseWriter, r *http.Request, audience []string) {
	ctx := r.Context()
	req, err := op.ParseJWTProfileGrantRequest(r, p.op.Decoder())
	if err != nil {
		op.RequestError(w, r, err, nil)
		return
	}
	if req.Assertion == "" {
		op.RequestError(w, r, oidc.ErrInvalidRequest().WithDescription("assertion missing"), nil)
		return
	}
	tr, err := op.VerifyJWTAssertion(ctx, req.Assertion, p.op.JWTProfileVerifier(ctx))
	if err != nil {
		var oe *oidc.Error
		if errors.As(err, &oe) && oe.ErrorType == oidc.ServerError {
			op.RequestError(w, r, err, nil)
			return
		}
		op.RequestError(w, r, oidc.ErrInvalidGrant().WithDescription("the assertion is not valid: %v", err), nil)
		return
	}
	if tr.Scopes, err = p.store.ValidateJWTProfileScopes(ctx, tr.Subject, req.Scope); err != nil {
		op.RequestError(w, r, err, nil)
		return
	}
	tr.Audience = audience
	resp, err := op.CreateJWTTokenResponse(ctx, tr, p.op)
	if err != nil {
		op.RequestError(w, r, err, nil)
		return
	}
	httphelper.MarshalJSON(w, resp)
}

func (p *Provider) orDefault(targets []string) []string {
	if len(targets) == 0 {
		return []string{p.cfg.Audience}
	}
	return targets
}

// requestedTargets returns the resource (RFC 8707) and audience (RFC 8693)
// parameters, deduplicated; resources must be absolute URIs without a
// fragment.
func requestedTargets(form url.Values) ([]string, error) {
	var out []string
	for _, v := range form["resource"] {
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || u.Fragment != "" {
			return nil, oidc.ErrInvalidTarget().WithDescription("resource must be an absolute URI without a fragment")
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	for _, v := range form["audience"] {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

func subset(a, b []string) bool {
	for _, v := range a {
		if !slices.Contains(b, v) {
			return false
		}
	}
	return true
}

type targetsKey struct{}

func withTargets(ctx context.Context, t []string) context.Context {
	return context.WithValue(ctx, targetsKey{}, t)
}

func targetsFrom(ctx context.Context) []string {
	t, _ := ctx.Value(targetsKey{}).([]string)
	return t
}

// maxFormBytes bounds the body of a form posted to the authorize, token
// and login endpoints: read before any credential is checked, so it is
// kept far below the listener's bound.
const maxFormBytes = 64 << 10

// parseForm parses r's form (ParseForm) with its body bounded by
// maxFormBytes. On failure it returns the status to answer: 413 for a
// larger body, else 400.
func parseForm(w http.ResponseWriter, r *http.Request) (int, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return http.StatusRequestEntityTooLarge, err
		}
		return http.StatusBadRequest, err
	}
	return 0, nil
}
