package upstream

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/oauth2"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/flight"
)

// Auth modes (the connection option auth_mode).
const (
	ModeNone            = "none"
	ModeSharedPrincipal = "shared_principal"
	ModeMandateJWT      = "mandate_jwt"
	ModeTokenExchange   = "token_exchange"
	ModePerUserOAuth    = "per_user_oauth"
)

// RFC 8693 token type identifiers.
const (
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	GrantTypeExchange    = "urn:ietf:params:oauth:grant-type:token-exchange"
)

const (
	// DefaultRequestTimeout bounds one request to a token endpoint.
	DefaultRequestTimeout = 10 * time.Second
	// RefreshMargin: a cached credential is replaced this long before it
	// expires (a quarter of its lifetime when that is shorter).
	RefreshMargin = 30 * time.Second
	// UnknownLifetime is how long a token whose lifetime the token
	// endpoint did not state (no expires_in, not a JWT with exp) is reused.
	UnknownLifetime = time.Minute
	// MintClientID is the client_id claim of mandate_jwt tokens.
	MintClientID = "mandate"
)

// Config configures Credentials.
type Config struct {
	// Issuer is the gateway's public URL: the iss of mandate_jwt tokens.
	// Upstreams find the signing keys at Issuer + /.well-known/jwks.json.
	Issuer string
	// Keys signs mandate_jwt tokens; nil disables mandate_jwt.
	Keys *KeySet
	// HTTPClient talks to token endpoints (default: 10 s timeout). It is
	// copied and never follows redirects: a redirected POST would carry
	// the subject token and client secret to another URL.
	HTTPClient *http.Client
	// MintLifetime of mandate_jwt tokens (default and maximum 5m).
	MintLifetime time.Duration
	// PerUserOAuth produces credentials for auth_mode per_user_oauth
	// (gateway/oauthconnect); nil makes that mode an error.
	PerUserOAuth gateway.Credentials
	Logger       zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time

	// SubjectTokenType of token exchanges: "access_token" (default) or
	// "jwt", or the full RFC 8693 URN.
	SubjectTokenType string
	// RequestTimeout bounds one token endpoint request (default 10 s).
	RequestTimeout time.Duration
	// MaxCacheEntries bounds the credential cache (default 100 000).
	MaxCacheEntries int
}

// Credentials implements gateway.Credentials: the credentials stage.
type Credentials struct {
	cfg              Config
	hc               *http.Client
	now              func() time.Time
	log              zerolog.Logger
	lifetime         time.Duration
	subjectTokenType string
	timeout          time.Duration

	cache   *cache
	fseed   maphash.Seed
	flights flight.Group[cacheEntry]
	stats   counters

	// testHookMiss runs on every cache miss before the shared fetch.
	testHookMiss func()
}

var (
	_ gateway.Credentials           = (*Credentials)(nil)
	_ gateway.CredentialInvalidator = (*Credentials)(nil)
)

// Stats are cumulative counters.
type Stats struct {
	Exchanges         int64 // RFC 8693 requests sent to token endpoints
	ExchangeErrors    int64 // of which failed
	ClientCredentials int64 // client-credentials requests sent
	ClientCredErrors  int64 // of which failed
	Mints             int64 // mandate_jwt tokens signed
	CacheHits         int64
	CacheMisses       int64
	Evictions         int64 // entries evicted because the cache was full
	CacheEntries      int   // entries now
}

type counters struct {
	exchanges, exchangeErrors, clientCreds, clientCredErrors, mints, hits, misses atomic.Int64
}

// New returns the credentials stage.
func New(cfg Config) (*Credentials, error) {
	cr := &Credentials{cfg: cfg, now: cfg.Now, log: cfg.Logger, fseed: maphash.MakeSeed()}
	if cr.now == nil {
		cr.now = time.Now
	}
	if cfg.Issuer != "" {
		u, err := url.Parse(cfg.Issuer)
		if err != nil || !u.IsAbs() || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("upstream: Issuer must be an absolute http(s) URL without query or credentials, got %q", cfg.Issuer)
		}
	}
	if cfg.Keys != nil && cfg.Issuer == "" {
		return nil, errors.New("upstream: Issuer is required with Keys (the iss of mandate_jwt tokens)")
	}
	switch {
	case cfg.MintLifetime == 0:
		cr.lifetime = MaxMintLifetime
	case cfg.MintLifetime < 10*time.Second || cfg.MintLifetime > MaxMintLifetime:
		return nil, fmt.Errorf("upstream: MintLifetime must be between 10s and %s, got %s", MaxMintLifetime, cfg.MintLifetime)
	default:
		cr.lifetime = cfg.MintLifetime
	}
	switch cfg.SubjectTokenType {
	case "", "access_token", TokenTypeAccessToken:
		cr.subjectTokenType = TokenTypeAccessToken
	case "jwt", TokenTypeJWT:
		cr.subjectTokenType = TokenTypeJWT
	default:
		return nil, fmt.Errorf("upstream: SubjectTokenType must be access_token or jwt, got %q", cfg.SubjectTokenType)
	}
	cr.timeout = cfg.RequestTimeout
	if cr.timeout <= 0 {
		cr.timeout = DefaultRequestTimeout
	}
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		cr.hc = &hc
	} else {
		cr.hc = &http.Client{Timeout: cr.timeout}
	}
	cr.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.MaxCacheEntries < 0 {
		return nil, errors.New("upstream: MaxCacheEntries must not be negative")
	}
	cr.cache = newCache(cfg.MaxCacheEntries)
	return cr, nil
}

// Stats returns the counters.
func (cr *Credentials) Stats() Stats {
	return Stats{
		Exchanges:         cr.stats.exchanges.Load(),
		ExchangeErrors:    cr.stats.exchangeErrors.Load(),
		ClientCredentials: cr.stats.clientCreds.Load(),
		ClientCredErrors:  cr.stats.clientCredErrors.Load(),
		Mints:             cr.stats.mints.Load(),
		CacheHits:         cr.stats.hits.Load(),
		CacheMisses:       cr.stats.misses.Load(),
		Evictions:         cr.cache.evictions(),
		CacheEntries:      cr.cache.len(),
	}
}

// Authorization returns the Authorization header value for the upstream
// of c, for the caller id, by c.AuthMode: "" for none, "Bearer ..."
// otherwise. It never returns id.Token.
func (cr *Credentials) Authorization(ctx context.Context, c *gateway.Connection, id *gateway.Identity) (string, error) {
	v, _, err := cr.authorization(ctx, c, id)
	return v, err
}

func (cr *Credentials) authorization(ctx context.Context, c *gateway.Connection, id *gateway.Identity) (string, int64, error) {
	if c == nil {
		return "", 0, errors.New("upstream: no connection")
	}
	var (
		v   string
		exp int64
		hit bool
		err error
	)
	switch mode := authMode(c); mode {
	case ModeNone:
		return "", 0, nil
	case ModeSharedPrincipal:
		v, exp, hit, err = cr.sharedPrincipal(ctx, c)
	case ModeMandateJWT:
		v, exp, hit, err = cr.mandateJWT(c, id)
	case ModeTokenExchange:
		v, exp, hit, err = cr.tokenExchange(ctx, c, id)
	case ModePerUserOAuth:
		if cr.cfg.PerUserOAuth == nil {
			return "", 0, fmt.Errorf("upstream %s: per_user_oauth is not configured on this gateway", c.Name)
		}
		v, err = cr.cfg.PerUserOAuth.Authorization(ctx, c, id)
	case "":
		return "", 0, fmt.Errorf("upstream %s: connection has no auth_mode", c.Name)
	default:
		return "", 0, fmt.Errorf("upstream %s: unknown auth_mode %q", c.Name, mode)
	}
	if err != nil {
		return "", 0, err
	}
	// Last line of defence against token passthrough: a fresh value must
	// not contain the caller's token; a cached one (checked when it was
	// fresh) must not be it.
	if id != nil && passesThrough(v, id.Token, hit) {
		if !hit {
			cr.invalidate(c, id, "", false)
		}
		return "", 0, fmt.Errorf("upstream %s: refusing to send the inbound token upstream (token passthrough)", c.Name)
	}
	return v, exp, nil
}

func passesThrough(v, tok string, cached bool) bool {
	if tok == "" || len(v) < len(tok) {
		return false
	}
	if cached {
		return v == tok || v[len(v)-len(tok):] == tok
	}
	return strings.Contains(v, tok)
}

func authMode(c *gateway.Connection) string {
	if c.AuthMode != "" {
		return c.AuthMode
	}
	return c.Options[catalog.OptAuthMode]
}

// Invalidate implements gateway.CredentialInvalidator: after the upstream
// refused rejected (HTTP 401 or 403), it drops the credential cached for
// (c, id) if it is still rejected (a fresher one that a concurrent call
// obtained stays), and reports whether Authorization can produce another
// one: true for the modes Credentials caches (shared_principal,
// mandate_jwt, token_exchange), false for none and per_user_oauth.
func (cr *Credentials) Invalidate(c *gateway.Connection, id *gateway.Identity, rejected string) bool {
	return cr.invalidate(c, id, rejected, true)
}

// invalidate drops the cached credential of (c, id): any value when
// matchOnly is false, else only rejected.
func (cr *Credentials) invalidate(c *gateway.Connection, id *gateway.Identity, rejected string, matchOnly bool) bool {
	if c == nil {
		return false
	}
	var k cacheKey
	switch authMode(c) {
	case ModeSharedPrincipal:
		k = cr.clientCredentialsKey(c)
	case ModeMandateJWT:
		if id == nil {
			return false
		}
		k = mintKey(c, id)
	case ModeTokenExchange:
		if id == nil {
			return false
		}
		k = cr.exchangeKey(c, id)
	default:
		return false
	}
	if matchOnly {
		cr.cache.deleteValue(&k, rejected)
	} else {
		cr.cache.delete(&k)
	}
	return true
}

// TokenSource returns an oauth2.TokenSource over Authorization for one
// connection and caller (for oauth2.Transport and similar). Tokens come
// from the shared cache; Token fails for auth_mode none.
func (cr *Credentials) TokenSource(ctx context.Context, c *gateway.Connection, id *gateway.Identity) oauth2.TokenSource {
	return &tokenSource{ctx: ctx, cr: cr, c: c, id: id}
}

type tokenSource struct {
	ctx context.Context
	cr  *Credentials
	c   *gateway.Connection
	id  *gateway.Identity
}

func (ts *tokenSource) Token() (*oauth2.Token, error) {
	v, exp, err := ts.cr.authorization(ts.ctx, ts.c, ts.id)
	if err != nil {
		return nil, err
	}
	typ, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(typ, "Bearer") || tok == "" {
		return nil, fmt.Errorf("upstream %s: connection has no bearer credential", ts.c.Name)
	}
	t := &oauth2.Token{AccessToken: tok, TokenType: "Bearer"}
	if exp > 0 {
		t.Expiry = time.Unix(0, exp)
	}
	return t, nil
}

// --- shared helpers ---

// audience is the audience option, else the upstream URL.
func audience(c *gateway.Connection) string {
	if a := c.Options[catalog.OptAudience]; a != "" {
		return a
	}
	return c.URL
}

// fingerprint is a keyed 64-bit hash of a secret for cache keys: equal
// secrets give equal keys, and the secret itself is not kept.
func (cr *Credentials) fingerprint(s string) uint64 {
	if s == "" {
		return 0
	}
	return maphash.String(cr.fseed, s)
}

// refreshAt is when a credential valid from now until exp stops being
// served: RefreshMargin (or a quarter of its lifetime) before exp.
func refreshAt(now, exp time.Time) time.Time {
	life := exp.Sub(now)
	m := RefreshMargin
	if life/4 < m {
		m = life / 4
	}
	return exp.Add(-m)
}

// flightKey renders k unambiguously for the flight group.
func flightKey(k *cacheKey) string {
	var b strings.Builder
	b.Grow(256)
	b.WriteByte('0' + k.kind)
	for _, s := range [...]string{k.conn, k.url, k.audience, k.scopes, k.subject, k.actor, k.endpoint, k.clientID, k.tokenID} {
		b.WriteByte('|')
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	b.WriteByte('|')
	b.WriteString(strconv.FormatUint(k.secretFP, 16))
	b.WriteByte('|')
	b.WriteString(hex.EncodeToString(k.tokenSum[:]))
	return b.String()
}

// shared runs fetch once per key among concurrent callers
// (gateway/internal/flight): the flight asks the cache again first, fetch
// runs detached from any one caller's cancellation (bounded by the
// request timeout), so a caller that gives up does not fail the others;
// each caller still returns when its own ctx ends.
func (cr *Credentials) shared(ctx context.Context, k *cacheKey, fetch func(context.Context) (cacheEntry, error)) (cacheEntry, error) {
	cr.stats.misses.Add(1)
	if h := cr.testHookMiss; h != nil {
		h()
	}
	return cr.flights.Do(ctx, flightKey(k), cr.timeout, func() (cacheEntry, bool) { return cr.cache.get(k, cr.now().UnixNano()) },
		func(fctx context.Context) (cacheEntry, error) {
			e, err := fetch(fctx)
			if err != nil {
				return cacheEntry{}, err
			}
			if now := cr.now().UnixNano(); e.refreshAt > now {
				cr.cache.put(k, e, now)
			}
			return e, nil
		})
}

// checkInbound fails closed for a missing or expired caller.
func checkInbound(c *gateway.Connection, id *gateway.Identity, now time.Time) error {
	if id == nil || id.Subject == "" {
		return fmt.Errorf("upstream %s: auth_mode %s needs an authenticated caller", c.Name, authMode(c))
	}
	if !id.Expiry.IsZero() && !now.Before(id.Expiry) {
		return fmt.Errorf("upstream %s: the caller's token has expired", c.Name)
	}
	return nil
}

// validToken reports whether tok can be sent as a bearer token: visible
// ASCII only (no spaces or control characters that could split headers).
func validToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= 0x20 || tok[i] >= 0x7f {
			return false
		}
	}
	return true
}
