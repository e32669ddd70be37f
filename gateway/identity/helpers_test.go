package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/gateway"
)

const (
	gwURL    = "https://gw.example"
	resource = "https://gw.example/mcp/my_github_mcp"
)

// Keys are generated once per test binary.
var (
	keysOnce        sync.Once
	rsaKey, rsaKey2 *rsa.PrivateKey
	ecKey           *ecdsa.PrivateKey
	ec384Key        *ecdsa.PrivateKey
	edPub           ed25519.PublicKey
	edKey           ed25519.PrivateKey
)

func genKeys(tb testing.TB) {
	tb.Helper()
	keysOnce.Do(func() {
		var err error
		if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if rsaKey2, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			panic(err)
		}
		if ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if ec384Key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if edPub, edKey, err = ed25519.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// idp is a test OIDC issuer: discovery and JWKS, with request counters.
type idp struct {
	srv          *httptest.Server
	mu           sync.Mutex
	keys         []any // JWKS entries (jose.JSONWebKey or raw maps)
	cacheControl string
	down         bool
	issuerInDoc  string // overrides the discovery document's issuer
	onJWKS       func() // runs on each JWKS request (under mu)
	jwksHits     atomic.Int64
	discoHits    atomic.Int64
}

func newIDP(tb testing.TB) *idp {
	tb.Helper()
	genKeys(tb)
	p := &idp{}
	p.keys = []any{
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1", Use: "sig"},
		jose.JSONWebKey{Key: &ecKey.PublicKey, KeyID: "ec1", Use: "sig"},
		jose.JSONWebKey{Key: edPub, KeyID: "ed1"},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discoHits.Add(1)
		p.mu.Lock()
		down, iss := p.down, p.issuerInDoc
		p.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if iss == "" {
			iss = p.srv.URL
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": p.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.onJWKS != nil {
			p.onJWKS()
		}
		if p.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if p.cacheControl != "" {
			w.Header().Set("Cache-Control", p.cacheControl)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	})
	p.srv = httptest.NewServer(mux)
	tb.Cleanup(p.srv.Close)
	return p
}

func (p *idp) setKeys(keys ...any) {
	p.mu.Lock()
	p.keys = keys
	p.mu.Unlock()
}

func (p *idp) set(f func(*idp)) {
	p.mu.Lock()
	f(p)
	p.mu.Unlock()
}

func (p *idp) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

func (p *idp) issuer() Issuer { return Issuer{URL: p.srv.URL} }

// env is an Authenticator over one idp with a test clock.
type env struct {
	t   testing.TB
	idp *idp
	clk *clock
	a   *Authenticator
}

func newEnv(tb testing.TB, mod func(*Config)) *env {
	tb.Helper()
	p := newIDP(tb)
	clk := newClock()
	cfg := Config{Issuers: []Issuer{p.issuer()}, Audiences: []string{gwURL},
		HTTPClient: p.srv.Client(), Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return &env{t: tb, idp: p, clk: clk, a: a}
}

// with returns e reporting to t (for subtests).
func (e *env) with(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// claims returns the default claims of a user token valid now.
func (e *env) claims() map[string]any {
	now := e.clk.Now()
	return map[string]any{
		"iss":   e.idp.srv.URL,
		"aud":   gwURL,
		"sub":   "user-123",
		"email": "alice@example.com",
		"exp":   now.Add(time.Hour).Unix(),
		"iat":   now.Unix(),
		"scope": "mcp:tools read",
	}
}

// sign signs cl with key under alg, with kid in the header ("" for none).
func sign(tb testing.TB, alg jose.SignatureAlgorithm, key any, kid string, cl any) string {
	tb.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(cl).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// rs256 signs cl with the default RSA key.
func (e *env) rs256(cl map[string]any) string { return sign(e.t, jose.RS256, rsaKey, "rsa1", cl) }

func request(auth ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, resource, nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

func (e *env) auth(tok string) (*gateway.Identity, *gateway.AuthError) {
	e.t.Helper()
	return authReq(e.t, e.a, request("Bearer "+tok))
}

func authReq(tb testing.TB, a *Authenticator, r *http.Request) (*gateway.Identity, *gateway.AuthError) {
	tb.Helper()
	id, err := a.Authenticate(context.Background(), r, resource)
	if err == nil {
		if id == nil {
			tb.Fatal("nil identity without error")
		}
		return id, nil
	}
	var ae *gateway.AuthError
	if !errors.As(err, &ae) {
		tb.Fatalf("error %v (%T) is not a *gateway.AuthError", err, err)
	}
	if id != nil {
		tb.Fatal("identity with an error")
	}
	return nil, ae
}

// mustOK authenticates tok and fails the test on an error.
func (e *env) mustOK(tok string) *gateway.Identity {
	e.t.Helper()
	id, ae := e.auth(tok)
	if ae != nil {
		e.t.Fatalf("want success, got %d %s: %s", ae.Status, ae.Code, ae.Description)
	}
	return id
}

// mustFail authenticates tok and checks the error.
func (e *env) mustFail(tok string, status int, code string, descPart string) *gateway.AuthError {
	e.t.Helper()
	id, ae := e.auth(tok)
	checkErr(e.t, id, ae, status, code, descPart)
	if ae != nil && tok != "" && len(tok) > 8 && contains(ae.Description, tok) {
		e.t.Fatal("error description contains the token")
	}
	return ae
}

func checkErr(tb testing.TB, id *gateway.Identity, ae *gateway.AuthError, status int, code, descPart string) {
	tb.Helper()
	if ae == nil {
		tb.Fatalf("want %d %s (%s), got success: %+v", status, code, descPart, id)
	}
	if ae.Status != status || ae.Code != code || !contains(ae.Description, descPart) {
		tb.Fatalf("want %d %s containing %q, got %d %s: %q", status, code, descPart, ae.Status, ae.Code, ae.Description)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
