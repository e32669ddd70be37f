package oauthconnect

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/gateway"
)

// fakeAS is an OAuth 2.1 authorization server for the tests: an authorize
// endpoint that approves at once and redirects with a code, a token
// endpoint that checks everything the gateway must send (client auth,
// exact redirect_uri, PKCE S256, resource), refresh with rotation,
// revocation, and RFC 8414 / OpenID metadata.
type fakeAS struct {
	t   testing.TB
	srv *httptest.Server

	mu           sync.Mutex
	clientID     string
	clientSecret string // "" = public client
	redirectURI  string // the one registered redirect URI
	resource     string // the only resource it issues tokens for
	metadata     string // "oauth" (RFC 8414), "oidc" (openid-configuration only), "none"
	noS256       bool   // metadata omits S256
	issParam     bool   // send iss in the authorization response
	wrongIss     bool
	deny         bool // authorize answers error=access_denied
	rotate       bool // refresh returns a new refresh token
	expiresIn    int

	codes         map[string]*asCode
	refresh       map[string]bool // live refresh tokens
	accessIssued  []string
	refreshIssued []string
	authRequests  []url.Values
	tokenRequests []url.Values
	metadataHits  int
	revoked       []string
	failures      []string // what the AS refused, for the test log
}

type asCode struct {
	challenge, redirectURI, resource, clientID string
	used                                       bool
}

func newFakeAS(t testing.TB) *fakeAS {
	a := &fakeAS{
		t: t, clientID: "mandate-client", clientSecret: "s3cret-client", metadata: "oauth", rotate: true, expiresIn: 3600,
		codes: map[string]*asCode{}, refresh: map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server", a.serveMetadata("oauth"))
	mux.HandleFunc("/.well-known/openid-configuration", a.serveMetadata("oidc"))
	mux.HandleFunc("/authorize", a.authorize)
	mux.HandleFunc("/token", a.token)
	mux.HandleFunc("/revoke", a.revoke)
	a.srv = httptest.NewTLSServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAS) serveMetadata(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.metadata != kind {
			http.NotFound(w, r)
			return
		}
		a.metadataHits++
		md := map[string]any{
			"issuer": a.srv.URL, "authorization_endpoint": a.srv.URL + "/authorize", "token_endpoint": a.srv.URL + "/token",
			"revocation_endpoint": a.srv.URL + "/revoke", "response_types_supported": []string{"code"},
			"token_endpoint_auth_methods_supported":          []string{"client_secret_basic", "none"},
			"authorization_response_iss_parameter_supported": a.issParam,
		}
		if !a.noS256 {
			md["code_challenge_methods_supported"] = []string{"S256"}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(md)
	}
}

func (a *fakeAS) refuse(w http.ResponseWriter, status int, code, why string) {
	a.failures = append(a.failures, code+": "+why)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": why})
}

func (a *fakeAS) authorize(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	q := r.URL.Query()
	a.authRequests = append(a.authRequests, q)
	// An unregistered redirect URI is never redirected to (exact match).
	if q.Get("client_id") != a.clientID || q.Get("redirect_uri") != a.redirectURI {
		a.refuse(w, 400, "invalid_request", "unknown client or redirect_uri")
		return
	}
	switch {
	case q.Get("response_type") != "code":
		a.refuse(w, 400, "unsupported_response_type", q.Get("response_type"))
		return
	case q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43:
		a.refuse(w, 400, "invalid_request", "PKCE S256 required")
		return
	case q.Get("resource") != a.resource:
		a.refuse(w, 400, "invalid_target", "resource "+q.Get("resource"))
		return
	case q.Get("state") == "":
		a.refuse(w, 400, "invalid_request", "no state")
		return
	}
	back := url.Values{"state": {q.Get("state")}}
	if a.deny {
		back.Set("error", "access_denied")
		back.Set("error_description", "the user said no")
	} else {
		code := "code-" + rand.Text()
		a.codes[code] = &asCode{challenge: q.Get("code_challenge"), redirectURI: q.Get("redirect_uri"), resource: q.Get("resource"), clientID: q.Get("client_id")}
		back.Set("code", code)
	}
	if a.issParam {
		iss := a.srv.URL
		if a.wrongIss {
			iss = "https://evil.example"
		}
		back.Set("iss", iss)
	}
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
}

func (a *fakeAS) clientOK(r *http.Request) bool {
	if a.clientSecret == "" {
		_, _, basic := r.BasicAuth()
		return !basic && r.PostForm.Get("client_id") == a.clientID
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		return false
	}
	id, _ = url.QueryUnescape(id)
	secret, _ = url.QueryUnescape(secret)
	return id == a.clientID && secret == a.clientSecret
}

func (a *fakeAS) token(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		a.refuse(w, 400, "invalid_request", "POST a form")
		return
	}
	f := r.PostForm
	a.tokenRequests = append(a.tokenRequests, f)
	if len(r.URL.Query()) > 0 {
		a.refuse(w, 400, "invalid_request", "parameters in the query")
		return
	}
	if !a.clientOK(r) {
		a.refuse(w, 401, "invalid_client", "client authentication failed")
		return
	}
	if f.Get("resource") != a.resource {
		a.refuse(w, 400, "invalid_target", "resource "+f.Get("resource"))
		return
	}
	switch f.Get("grant_type") {
	case "authorization_code":
		c := a.codes[f.Get("code")]
		switch {
		case c == nil || c.used:
			a.refuse(w, 400, "invalid_grant", "unknown or used code")
			return
		case f.Get("redirect_uri") != c.redirectURI:
			a.refuse(w, 400, "invalid_grant", "redirect_uri differs from the authorization request")
			return
		case s256(f.Get("code_verifier")) != c.challenge:
			a.refuse(w, 400, "invalid_grant", "PKCE verification failed")
			return
		case c.resource != f.Get("resource"):
			a.refuse(w, 400, "invalid_target", "resource differs")
			return
		}
		c.used = true
		a.issue(w, true)
	case "refresh_token":
		rt := f.Get("refresh_token")
		if !a.refresh[rt] {
			a.refuse(w, 400, "invalid_grant", "refresh token revoked or unknown")
			return
		}
		if a.rotate {
			delete(a.refresh, rt)
		}
		a.issue(w, a.rotate)
	default:
		a.refuse(w, 400, "unsupported_grant_type", f.Get("grant_type"))
	}
}

func (a *fakeAS) issue(w http.ResponseWriter, withRefresh bool) {
	at := "AT-" + rand.Text()
	a.accessIssued = append(a.accessIssued, at)
	resp := map[string]any{"access_token": at, "token_type": "Bearer", "scope": "repo read:org"}
	if a.expiresIn > 0 {
		resp["expires_in"] = a.expiresIn
	}
	if withRefresh {
		rt := "RT-" + rand.Text()
		a.refresh[rt] = true
		a.refreshIssued = append(a.refreshIssued, rt)
		resp["refresh_token"] = rt
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

func (a *fakeAS) revoke(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.ParseForm() != nil || !a.clientOK(r) {
		a.refuse(w, 401, "invalid_client", "client authentication failed")
		return
	}
	a.revoked = append(a.revoked, r.PostForm.Get("token"))
	delete(a.refresh, r.PostForm.Get("token"))
}

// revokeAll kills every refresh token (the user revoked the app upstream).
func (a *fakeAS) revokeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refresh = map[string]bool{}
}

func (a *fakeAS) grants(grant string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, f := range a.tokenRequests {
		if f.Get("grant_type") == grant {
			n++
		}
	}
	return n
}

func (a *fakeAS) set(f func(a *fakeAS)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// fakeUpstream is the upstream MCP server: it publishes RFC 9728
// metadata (or only a 401 challenge) naming the fake AS.
type fakeUpstream struct {
	srv  *httptest.Server
	mu   sync.Mutex
	mode string // "path" (path-inserted well-known), "root", "challenge", "none", "wrong-resource"
	as   string
}

func newFakeUpstream(t testing.TB, as string) *fakeUpstream {
	u := &fakeUpstream{mode: "path", as: as}
	u.srv = httptest.NewTLSServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeUpstream) resource() string { return u.srv.URL + "/mcp" }

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	mode := u.mode
	u.mu.Unlock()
	prm := func() {
		res := u.resource()
		if mode == "wrong-resource" {
			res = "https://other.example/mcp"
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"resource": res, "authorization_servers": []string{u.as}})
	}
	switch {
	case r.URL.Path == "/.well-known/oauth-protected-resource/mcp" && (mode == "path" || mode == "wrong-resource"):
		prm()
	case r.URL.Path == "/.well-known/oauth-protected-resource" && mode == "root":
		prm()
	case r.URL.Path == "/custom/prm" && mode == "challenge":
		prm()
	case r.URL.Path == "/mcp":
		if mode == "challenge" {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", resource_metadata="`+u.srv.URL+`/custom/prm", scope="repo"`)
		}
		w.WriteHeader(http.StatusUnauthorized)
	default:
		http.NotFound(w, r)
	}
}

// connections is a gateway.Connections over a map.
type connections struct {
	mu sync.Mutex
	m  map[string]*gateway.Connection
}

func (c *connections) Connection(_ context.Context, name string) (*gateway.Connection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if x, ok := c.m[name]; ok {
		cp := *x
		return &cp, nil
	}
	return nil, fmt.Errorf("%w: %s", gateway.ErrNoConnection, name)
}

func (c *connections) update(name string, f func(*gateway.Connection)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := *c.m[name]
	x.Options = cloneMap(x.Options)
	x.Secrets = cloneMap(x.Secrets)
	f(&x)
	c.m[name] = &x
}

func cloneMap(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

// hits is how many times the metadata was fetched.
func (a *fakeAS) hits() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.metadataHits
}
