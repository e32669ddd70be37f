package devidp

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog/keystore"
)

const testAudience = "https://gw.example/mcp"

type testIdP struct {
	t      *testing.T
	srv    *httptest.Server
	p      *Provider
	dir    string
	issuer string
	client *Client
}

// startIdP serves a provider on dir under /oidc of an httptest server, as
// the lead mounts it (plus the RFC 8414 root path).
func startIdP(t *testing.T, dir string, mod func(*Config)) *testIdP {
	t.Helper()
	var h atomic.Pointer[http.Handler]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	cfg := Config{Issuer: srv.URL + "/oidc", DataDir: dir, Audience: testAudience, Logger: zerolog.Nop()}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	mux := http.NewServeMux()
	mux.Handle("/oidc/", p.Handler())
	mux.Handle(p.MetadataPath(), p.Handler())
	var hh http.Handler = mux
	h.Store(&hh)
	c, err := NewClient(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &testIdP{t: t, srv: srv, p: p, dir: dir, issuer: srv.URL + "/oidc", client: c}
}

// getJSON fetches url and decodes a JSON object.
func getJSON(t *testing.T, u string) map[string]any {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", u, resp.Status, b)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// verify checks token's RS256 signature against the provider's JWKS (found
// through discovery) and its iss and exp, and returns its claims.
func (e *testIdP) verify(token string) map[string]any {
	e.t.Helper()
	d := getJSON(e.t, e.issuer+PathDiscovery)
	resp, err := http.Get(d["jwks_uri"].(string))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		e.t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		e.t.Fatalf("not a JWS: %v", err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		e.t.Fatalf("kid %q not in the JWKS", jws.Signatures[0].Header.KeyID)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		e.t.Fatalf("signature: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		e.t.Fatal(err)
	}
	if c["iss"] != e.issuer {
		e.t.Errorf("iss = %v, want %s", c["iss"], e.issuer)
	}
	if exp, _ := c["exp"].(float64); time.Unix(int64(exp), 0).Before(time.Now()) || time.Unix(int64(exp), 0).After(time.Now().Add(61*time.Minute)) {
		e.t.Errorf("exp = %v, want about an hour from now", c["exp"])
	}
	return c
}

func aud(c map[string]any) []string {
	switch a := c["aud"].(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, v := range a {
			out = append(out, v.(string))
		}
		return out
	}
	return nil
}

func actSub(c map[string]any) string {
	act, _ := c["act"].(map[string]any)
	s, _ := act["sub"].(string)
	return s
}

// tokenRequest posts form to the token endpoint, authenticated with HTTP
// Basic as clientID/secret unless clientID is empty.
func (e *testIdP) tokenRequest(clientID, secret string, form url.Values) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.issuer+PathToken, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(clientID, secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf("token endpoint answered %d %q", resp.StatusCode, b)
	}
	return resp.StatusCode, m
}

func (e *testIdP) userToken(user string) string {
	e.t.Helper()
	tok, err := e.client.UserToken(context.Background(), user, TokenOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok.AccessToken
}

func (e *testIdP) agentToken(agent string) string {
	e.t.Helper()
	tok, err := e.client.ClientToken(context.Background(), agent, TokenOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok.AccessToken
}

func TestDiscovery(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	d := getJSON(t, e.issuer+PathDiscovery)
	for k, want := range map[string]string{
		"issuer":                 e.issuer,
		"authorization_endpoint": e.issuer + PathAuthorize,
		"token_endpoint":         e.issuer + PathToken,
		"jwks_uri":               e.issuer + PathJWKS,
		"introspection_endpoint": e.issuer + PathIntrospection,
		"userinfo_endpoint":      e.issuer + PathUserinfo,
		"revocation_endpoint":    e.issuer + PathRevocation,
	} {
		if d[k] != want {
			t.Errorf("%s = %v, want %s", k, d[k], want)
		}
	}
	contains := func(key, v string) {
		t.Helper()
		for _, x := range d[key].([]any) {
			if x == v {
				return
			}
		}
		t.Errorf("%s = %v lacks %s", key, d[key], v)
	}
	for _, g := range []string{"authorization_code", "refresh_token", "client_credentials",
		"urn:ietf:params:oauth:grant-type:token-exchange", "urn:ietf:params:oauth:grant-type:jwt-bearer"} {
		contains("grant_types_supported", g)
	}
	contains("code_challenge_methods_supported", "S256")
	contains("token_endpoint_auth_methods_supported", "client_secret_basic")
	contains("token_endpoint_auth_methods_supported", "client_secret_post")

	// RFC 8414: at the root with the issuer path appended, and under the issuer.
	for _, u := range []string{e.srv.URL + "/.well-known/oauth-authorization-server/oidc", e.issuer + PathASMetadata} {
		if m := getJSON(t, u); m["issuer"] != e.issuer || m["token_endpoint"] != e.issuer+PathToken {
			t.Errorf("%s: %v", u, m)
		}
	}
	// Nothing outside the issuer path.
	resp, err := http.Get(e.srv.URL + "/oidcx/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("outside the issuer path: %s", resp.Status)
	}
}

func TestClientCredentials(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	c := e.verify(e.agentToken("coding-agent"))
	if c["sub"] != "coding-agent" || c["client_id"] != "coding-agent" {
		t.Errorf("sub = %v, client_id = %v", c["sub"], c["client_id"])
	}
	if !slices.Equal(aud(c), []string{testAudience}) {
		t.Errorf("aud = %v", aud(c))
	}
	if c["email"] != nil || c["act"] != nil {
		t.Errorf("an agent's own token has email %v, act %v", c["email"], c["act"])
	}

	// client_secret_post, with a resource (RFC 8707) as the audience.
	status, m := e.tokenRequest("", "", url.Values{"grant_type": {"client_credentials"}, "client_id": {"coding-agent"},
		"client_secret": {e.p.ClientSecret()}, "resource": {"https://upstream.example/mcp"}, "scope": {"tools"}})
	if status != 200 {
		t.Fatalf("%d %v", status, m)
	}
	c = e.verify(m["access_token"].(string))
	if !slices.Equal(aud(c), []string{"https://upstream.example/mcp"}) || c["scope"] != "tools" {
		t.Errorf("aud = %v, scope = %v", aud(c), c["scope"])
	}
}

func TestWrongClientSecret(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	status, m := e.tokenRequest("coding-agent", "wrong-secret", url.Values{"grant_type": {"client_credentials"}})
	if status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("client_credentials with a wrong secret: %d %v", status, m)
	}
	status, m = e.tokenRequest("coding-agent", "wrong-secret", url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {e.userToken("alice@example.com")},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}})
	if status != http.StatusUnauthorized || m["error"] != "invalid_client" {
		t.Errorf("token exchange with a wrong secret: %d %v", status, m)
	}
	// The Client surfaces it as a *TokenError.
	e.client.secret = "wrong-secret"
	_, err := e.client.ClientToken(context.Background(), "coding-agent", TokenOptions{})
	var te *TokenError
	if !errors.As(err, &te) || te.Status != 401 || te.Code != "invalid_client" {
		t.Errorf("Client.ClientToken: %v", err)
	}
	if strings.Contains(err.Error(), e.p.ClientSecret()) {
		t.Error("the error shows the secret")
	}
}

func TestUserTokenJWTBearer(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	c := e.verify(e.userToken("alice@example.com"))
	if c["sub"] != "alice@example.com" || c["email"] != "alice@example.com" || c["act"] != nil {
		t.Errorf("claims: %v", c)
	}
	if !slices.Equal(aud(c), []string{testAudience}) {
		t.Errorf("aud = %v", aud(c))
	}
	tok, err := e.client.UserToken(context.Background(), "alice@example.com",
		TokenOptions{Audience: []string{"https://other.example"}, Scopes: []string{"read", "write"}})
	if err != nil {
		t.Fatal(err)
	}
	c = e.verify(tok.AccessToken)
	if !slices.Equal(aud(c), []string{"https://other.example"}) || c["scope"] != "read write" {
		t.Errorf("aud = %v, scope = %v", aud(c), c["scope"])
	}

	// userinfo and introspection know the token.
	user := e.userToken("alice@example.com")
	req, _ := http.NewRequest(http.MethodGet, e.issuer+PathUserinfo, nil)
	req.Header.Set("Authorization", "Bearer "+user)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ui map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ui)
	resp.Body.Close()
	if resp.StatusCode != 200 || ui["sub"] != "alice@example.com" || ui["email"] != "alice@example.com" {
		t.Errorf("userinfo: %s %v", resp.Status, ui)
	}
	req, _ = http.NewRequest(http.MethodPost, e.issuer+PathIntrospection, strings.NewReader(url.Values{"token": {user}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("mandate-gateway", e.p.ClientSecret())
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var in map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&in)
	resp.Body.Close()
	if in["active"] != true || in["sub"] != "alice@example.com" {
		t.Errorf("introspection: %s %v", resp.Status, in)
	}

	// An assertion signed with another key is refused.
	other, err := newRSAKey(e.client.userKey.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	forged := *e.client
	forged.userKey = other
	_, err = forged.UserToken(context.Background(), "alice@example.com", TokenOptions{})
	var te *TokenError
	if !errors.As(err, &te) || te.Status != 400 || te.Code != "invalid_grant" {
		t.Errorf("forged assertion: %v", err)
	}
	// An assertion for the wrong issuer (audience) is refused.
	wrongAud := *e.client
	wrongAud.Issuer = "http://elsewhere.example/oidc"
	assertion, err := wrongAud.userAssertion("alice@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	status, m := e.tokenRequest("", "", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}})
	if status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("assertion for another issuer: %d %v", status, m)
	}
}

func TestTokenExchange(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	ctx := context.Background()
	user, agent := e.userToken("alice@example.com"), e.agentToken("coding-agent")

	tok, err := e.client.Exchange(ctx, "coding-agent", user, agent, TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.IssuedTokenType != "urn:ietf:params:oauth:token-type:access_token" || !strings.EqualFold(tok.TokenType, "bearer") {
		t.Errorf("issued_token_type %q, token_type %q", tok.IssuedTokenType, tok.TokenType)
	}
	c := e.verify(tok.AccessToken)
	if c["sub"] != "alice@example.com" || actSub(c) != "coding-agent" || c["email"] != "alice@example.com" {
		t.Errorf("claims: %v", c)
	}
	if !slices.Equal(aud(c), []string{testAudience}) {
		t.Errorf("aud = %v", aud(c))
	}
	delegated := tok.AccessToken

	// resource and audience choose the aud.
	for _, param := range []string{"resource", "audience"} {
		status, m := e.tokenRequest("coding-agent", e.p.ClientSecret(), url.Values{
			"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":      {user},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			"actor_token":        {agent},
			"actor_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
			param:                {"https://upstream.example/mcp"},
		})
		if status != 200 {
			t.Fatalf("%s: %d %v", param, status, m)
		}
		c := e.verify(m["access_token"].(string))
		if !slices.Equal(aud(c), []string{"https://upstream.example/mcp"}) || actSub(c) != "coding-agent" {
			t.Errorf("%s: aud = %v, act = %v", param, aud(c), c["act"])
		}
	}

	// The gateway, as its own client, exchanges the delegated token for an
	// upstream audience: the act chain is kept.
	tok, err = e.client.Exchange(ctx, "mandate-gateway", delegated, "", TokenOptions{Audience: []string{"https://upstream.example/mcp"}})
	if err != nil {
		t.Fatal(err)
	}
	c = e.verify(tok.AccessToken)
	if c["sub"] != "alice@example.com" || actSub(c) != "coding-agent" || c["client_id"] != "mandate-gateway" ||
		!slices.Equal(aud(c), []string{"https://upstream.example/mcp"}) {
		t.Errorf("gateway exchange: %v", c)
	}

	// A further actor nests the earlier one (RFC 8693 section 4.1).
	tok, err = e.client.Exchange(ctx, "reviewer-agent", delegated, e.agentToken("reviewer-agent"), TokenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c = e.verify(tok.AccessToken)
	if actSub(c) != "reviewer-agent" || actSub(c["act"].(map[string]any)) != "coding-agent" {
		t.Errorf("nested act: %v", c["act"])
	}

	// subject_token_type jwt is accepted too.
	status, m := e.tokenRequest("coding-agent", e.p.ClientSecret(), url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {user},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
	})
	if status != 200 || e.verify(m["access_token"].(string))["sub"] != "alice@example.com" {
		t.Errorf("jwt subject token: %d %v", status, m)
	}
}

func TestTokenExchangeErrors(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	user := e.userToken("alice@example.com")
	other := startIdP(t, t.TempDir(), nil) // another provider's key
	foreign := other.userToken("alice@example.com")
	exchange := func(form url.Values) (int, map[string]any) {
		t.Helper()
		form.Set("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange")
		if form.Get("subject_token_type") == "" {
			form.Set("subject_token_type", "urn:ietf:params:oauth:token-type:access_token")
		}
		return e.tokenRequest("coding-agent", e.p.ClientSecret(), form)
	}
	for name, tc := range map[string]struct {
		form url.Values
		code string
	}{
		"garbage subject":        {url.Values{"subject_token": {"not-a-token"}}, "invalid_request"},
		"foreign subject":        {url.Values{"subject_token": {foreign}}, "invalid_request"},
		"foreign jwt subject":    {url.Values{"subject_token": {foreign}, "subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"}}, "invalid_request"},
		"missing subject":        {url.Values{}, "invalid_request"},
		"garbage actor":          {url.Values{"subject_token": {user}, "actor_token": {"x"}, "actor_token_type": {"urn:ietf:params:oauth:token-type:access_token"}}, "invalid_request"},
		"id_token requested":     {url.Values{"subject_token": {user}, "requested_token_type": {"urn:ietf:params:oauth:token-type:id_token"}}, "invalid_request"},
		"refresh subject type":   {url.Values{"subject_token": {user}, "subject_token_type": {"urn:ietf:params:oauth:token-type:refresh_token"}}, "invalid_request"},
		"resource with fragment": {url.Values{"subject_token": {user}, "resource": {"https://x.example/#frag"}}, "invalid_target"},
		"relative resource":      {url.Values{"subject_token": {user}, "resource": {"/mcp"}}, "invalid_target"},
	} {
		status, m := exchange(tc.form)
		if status != 400 || m["error"] != tc.code {
			t.Errorf("%s: %d %v, want 400 %s", name, status, m, tc.code)
		}
	}
}

func TestPrincipalExists(t *testing.T) {
	known := map[string]bool{"alice@example.com": true, "coding-agent": true}
	e := startIdP(t, t.TempDir(), func(c *Config) {
		c.PrincipalExists = func(_ context.Context, name string) (bool, error) { return known[name], nil }
	})
	ctx := context.Background()
	e.userToken("alice@example.com")
	e.agentToken("coding-agent")
	var te *TokenError
	// The error names the unknown user (not "invalid signature").
	if _, err := e.client.UserToken(ctx, "mallory@example.com", TokenOptions{}); !errors.As(err, &te) || te.Status != 400 ||
		te.Code != "access_denied" || !strings.Contains(err.Error(), `"mallory@example.com" is not a known principal`) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := e.client.ClientToken(ctx, "rogue-agent", TokenOptions{}); !errors.As(err, &te) || te.Status != 400 || te.Code != "access_denied" {
		t.Errorf("unknown agent: %v", err)
	}
	// An actor dropped from the catalog after its token was issued.
	agent := e.agentToken("coding-agent")
	delete(known, "coding-agent")
	if _, err := e.client.Exchange(ctx, "mandate-gateway", e.userToken("alice@example.com"), agent, TokenOptions{}); !errors.As(err, &te) || te.Code != "access_denied" {
		t.Errorf("unknown actor: %v", err)
	}
}

// browser follows one redirect at a time.
var browser = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, u string) *http.Response {
	t.Helper()
	resp, err := browser.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestAuthorizationCodePKCE(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	const (
		redirect = "http://127.0.0.1:9/callback"
		resource = "https://upstream.example/mcp"
		verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-dev-idp-test"
	)
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	authorize := url.Values{"client_id": {"mandate-gateway"}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"repo read:org"}, "state": {"st-123"}, "code_challenge": {challenge},
		"code_challenge_method": {"S256"}, "resource": {resource}}

	// authorize → login page → (sign in as alice) → callback → redirect_uri with the code.
	resp := get(t, e.issuer+PathAuthorize+"?"+authorize.Encode())
	login := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(login, e.issuer+PathLogin+"?authRequestID=") {
		t.Fatalf("authorize: %s → %q", resp.Status, login)
	}
	form, err := browser.Get(login)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(form.Body)
	form.Body.Close()
	if form.StatusCode != 200 || !strings.Contains(string(page), `name="user"`) || !strings.Contains(string(page), "Development only") {
		t.Errorf("login form: %s %s", form.Status, page)
	}
	resp = get(t, login+"&user="+url.QueryEscape("alice@example.com"))
	callback := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(callback, e.issuer+PathAuthCallback+"?") {
		t.Fatalf("login: %s → %q", resp.Status, callback)
	}
	resp = get(t, callback)
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || !strings.HasPrefix(back.String(), redirect+"?") {
		t.Fatalf("callback: %s → %q", resp.Status, back)
	}
	code := back.Query().Get("code")
	if code == "" || back.Query().Get("state") != "st-123" {
		t.Fatalf("redirect: %s", back)
	}

	secret := e.p.ClientSecret()
	exchange := func(v string, extra url.Values) (int, map[string]any) {
		t.Helper()
		f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {v}}
		for k, vs := range extra {
			f[k] = vs
		}
		return e.tokenRequest("mandate-gateway", secret, f)
	}
	if status, m := exchange("wrong-verifier-wrong-verifier-wrong-verifier-0", nil); status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("wrong code_verifier: %d %v", status, m)
	}
	if status, m := exchange(verifier, url.Values{"resource": {"https://other.example/mcp"}}); status != 400 || m["error"] != "invalid_target" {
		t.Errorf("another resource at the token endpoint: %d %v", status, m)
	}
	status, m := exchange(verifier, url.Values{"resource": {resource}})
	if status != 200 {
		t.Fatalf("code exchange: %d %v", status, m)
	}
	c := e.verify(m["access_token"].(string))
	if c["sub"] != "alice@example.com" || !slices.Equal(aud(c), []string{resource}) || c["client_id"] != "mandate-gateway" ||
		!strings.Contains(c["scope"].(string), "repo") {
		t.Errorf("access token: %v", c)
	}
	refresh, _ := m["refresh_token"].(string)
	if refresh == "" {
		t.Fatalf("no refresh token: %v", m)
	}
	if status, m := exchange(verifier, nil); status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("code used twice: %d %v", status, m)
	}

	// Refresh: a new access token for the same audience, and rotation.
	refreshWith := func(rt, sec string) (int, map[string]any) {
		t.Helper()
		return e.tokenRequest("mandate-gateway", sec, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	}
	if status, m := refreshWith(refresh, "wrong-secret"); status != 401 || m["error"] != "invalid_client" {
		t.Errorf("refresh with a wrong secret: %d %v", status, m)
	}
	status, m = refreshWith(refresh, secret)
	if status != 200 {
		t.Fatalf("refresh: %d %v", status, m)
	}
	c = e.verify(m["access_token"].(string))
	if c["sub"] != "alice@example.com" || !slices.Equal(aud(c), []string{resource}) {
		t.Errorf("refreshed token: %v", c)
	}
	if next, _ := m["refresh_token"].(string); next == "" || next == refresh {
		t.Errorf("refresh token not rotated: %v", m["refresh_token"])
	}
	if status, m := refreshWith(refresh, secret); status != 400 || m["error"] != "invalid_grant" {
		t.Errorf("spent refresh token: %d %v", status, m)
	}
}

func TestAuthorizeRefusals(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	base := url.Values{"client_id": {"mandate-gateway"}, "redirect_uri": {"http://localhost:8080/cb"}, "response_type": {"code"},
		"scope": {"openid"}, "state": {"s"}}

	// No PKCE: the error goes back to the (valid) redirect_uri.
	resp := get(t, e.issuer+PathAuthorize+"?"+base.Encode())
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("error") != "invalid_request" || !strings.HasPrefix(loc.String(), "http://localhost:8080/cb") {
		t.Errorf("without PKCE: %s → %s", resp.Status, loc)
	}
	// An unregistered redirect_uri gets no redirect at all.
	bad := url.Values{}
	for k, v := range base {
		bad[k] = v
	}
	bad.Set("redirect_uri", "https://evil.example/cb")
	bad.Set("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
	bad.Set("code_challenge_method", "S256")
	resp = get(t, e.issuer+PathAuthorize+"?"+bad.Encode())
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("foreign redirect_uri: %s → %q", resp.Status, resp.Header.Get("Location"))
	}
	// Login with an unknown request id.
	resp = get(t, e.issuer+PathLogin+"?authRequestID=nope&user=alice@example.com")
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("login for an unknown request: %s", resp.Status)
	}
	// login_hint signs in without the form.
	ok := url.Values{}
	for k, v := range bad {
		ok[k] = v
	}
	ok.Set("redirect_uri", "http://localhost:8080/cb")
	ok.Set("login_hint", "bob@example.com")
	resp = get(t, e.issuer+PathAuthorize+"?"+ok.Encode())
	resp = get(t, resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), e.issuer+PathAuthCallback) {
		t.Errorf("login_hint: %s → %q", resp.Status, resp.Header.Get("Location"))
	}
}

func TestStatePersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	kidOf := func(e *testIdP) string {
		var set jose.JSONWebKeySet
		resp, err := http.Get(e.issuer + PathJWKS)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) != 1 {
			t.Fatalf("jwks: %v %v", err, set)
		}
		return set.Keys[0].KeyID
	}
	e1 := startIdP(t, dir, nil)
	kid1, secret1 := kidOf(e1), e1.p.ClientSecret()
	tok := e1.userToken("alice@example.com")
	e1.srv.Close()
	e1.p.Close()

	e2 := startIdP(t, dir, nil) // another port: another issuer
	if kid2 := kidOf(e2); kid2 != kid1 {
		t.Errorf("kid changed across restart: %s → %s", kid1, kid2)
	}
	if e2.p.ClientSecret() != secret1 {
		t.Error("client secret changed across restart")
	}
	if e2.client.Issuer != e2.issuer {
		t.Errorf("dev-idp.json issuer %s, want the new %s", e2.client.Issuer, e2.issuer)
	}
	// The old token still verifies against the new JWKS (same key).
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || jws.Signatures[0].Header.KeyID != kid1 {
		t.Errorf("old token kid: %v", err)
	}
	for _, f := range []string{SigningKeyFile, StateFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", f, fi.Mode().Perm())
		}
	}
	// A state file others may read is refused.
	if err := os.Chmod(filepath.Join(dir, StateFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(context.Background(), Config{Issuer: "http://127.0.0.1:1/oidc", DataDir: dir, Audience: testAudience}); err == nil ||
		!strings.Contains(err.Error(), "may be read by others") {
		t.Errorf("world-readable %s: %v", StateFile, err)
	}
}

func TestClientErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewClient(dir); !errors.Is(err, ErrNoState) || !strings.Contains(err.Error(), StateFile) {
		t.Errorf("no state: %v", err)
	}
	e := startIdP(t, dir, nil)
	e.p.Close()
	if _, err := e.client.UserToken(context.Background(), "alice@example.com", TokenOptions{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("provider closed: %v", err)
	}
	e.srv.Close()
	if _, err := e.client.UserToken(context.Background(), "alice@example.com", TokenOptions{}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("provider not running: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]Config{
		"no data dir":  {Issuer: "http://127.0.0.1:1/oidc", Audience: testAudience},
		"no audience":  {Issuer: "http://127.0.0.1:1/oidc", DataDir: dir},
		"bad issuer":   {Issuer: "ftp://x/oidc", DataDir: dir, Audience: testAudience},
		"issuer query": {Issuer: "http://x/oidc?a=b", DataDir: dir, Audience: testAudience},
		"bad glob":     {Issuer: "http://x/oidc", DataDir: dir, Audience: testAudience, RedirectURIs: []string{"https://x/[a"}},
	} {
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Providers sharing a key store (replicas on one PostgreSQL) sign with one
// key and share the client secret and user assertion key; each data
// directory's dev-idp.json has the shared secrets and its own issuer.
func TestSharedKeys(t *testing.T) {
	keys := keystore.Dir(t.TempDir())
	shared := func(c *Config) { c.Keys = keys }
	a := startIdP(t, t.TempDir(), shared)
	b := startIdP(t, t.TempDir(), shared)
	jwks := func(e *testIdP) string {
		b, err := json.Marshal(getJSON(t, e.issuer+PathJWKS))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if ja, jb := jwks(a), jwks(b); ja != jb || !strings.Contains(ja, `"kid"`) {
		t.Fatalf("JWKS differ:\n%s\n%s", ja, jb)
	}
	if a.p.ClientSecret() != b.p.ClientSecret() {
		t.Fatal("client secrets differ")
	}
	// A token minted through b's client (b's data directory) verifies
	// with a's keys, and the other way round.
	// (Behind a load balancer the replicas share one issuer URL; here
	// each has its own, so only the signature is checked.)
	verifySig := func(e *testIdP, token string) {
		t.Helper()
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(jwks(e)), &set); err != nil {
			t.Fatal(err)
		}
		jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		keys := set.Key(jws.Signatures[0].Header.KeyID)
		if len(keys) != 1 {
			t.Fatalf("kid %q not in the other provider's JWKS", jws.Signatures[0].Header.KeyID)
		}
		if _, err := jws.Verify(keys[0]); err != nil {
			t.Fatal(err)
		}
	}
	verifySig(a, b.userToken("alice@example.com"))
	verifySig(b, a.agentToken("coding-agent"))
	// Not in a data directory of its own: the signing key lives in the store.
	if _, err := os.Stat(filepath.Join(a.dir, SigningKeyFile)); !os.IsNotExist(err) {
		t.Fatalf("signing key file in the data directory: %v", err)
	}
}

// TestAuthorizeBounds: GET /authorize needs no credential, so what it
// keeps is bounded: an oversized request is refused, at most
// maxAuthRequests are pending (then temporarily_unavailable until one
// expires), and a callback visited again replaces its code rather than
// adding one.
func TestAuthorizeBounds(t *testing.T) {
	now := time.Now()
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	e := startIdP(t, t.TempDir(), func(c *Config) { c.Now = func() time.Time { return *clock.Load() } })
	h := e.p.Handler()
	authorize := func(t *testing.T, mod func(url.Values)) *url.URL {
		t.Helper()
		v := url.Values{"client_id": {"mandate-gateway"}, "redirect_uri": {"http://localhost:8080/cb"}, "response_type": {"code"},
			"scope": {"openid"}, "state": {"s"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"},
			"code_challenge_method": {"S256"}}
		if mod != nil {
			mod(v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, e.issuer+PathAuthorize+"?"+v.Encode(), nil))
		loc, err := url.Parse(rec.Header().Get("Location"))
		if rec.Code != http.StatusFound || err != nil {
			t.Fatalf("authorize: %d %q", rec.Code, rec.Header().Get("Location"))
		}
		return loc
	}
	pending := func() int {
		e.p.store.mu.Lock()
		defer e.p.store.mu.Unlock()
		return len(e.p.store.authRequests)
	}
	for _, tc := range []struct {
		name  string
		param string
	}{{"state", "state"}, {"nonce", "nonce"}, {"login_hint", "login_hint"}, {"resource", "resource"}} {
		t.Run("oversized "+tc.name, func(t *testing.T) {
			loc := authorize(t, func(v url.Values) { v.Set(tc.param, "https://x.example/"+strings.Repeat("a", maxAuthRequestBytes)) })
			if loc.Query().Get("error") != "invalid_request" || pending() != 0 {
				t.Fatalf("%s of %d bytes: %s, %d pending", tc.name, maxAuthRequestBytes, loc, pending())
			}
		})
	}
	t.Run("callback again", func(t *testing.T) {
		login := authorize(t, nil)
		resp := get(t, login.String()+"&user="+url.QueryEscape("alice@example.com"))
		callback := resp.Header.Get("Location")
		for range 5 {
			if resp := get(t, callback); resp.StatusCode != http.StatusFound {
				t.Fatalf("callback: %s", resp.Status)
			}
		}
		e.p.store.mu.Lock()
		codes := len(e.p.store.codes)
		e.p.store.mu.Unlock()
		if codes != 1 {
			t.Fatalf("%d codes kept for one authorization request, want 1", codes)
		}
	})
	t.Run("flood", func(t *testing.T) {
		for pending() < maxAuthRequests {
			if loc := authorize(t, nil); loc.Query().Get("error") != "" {
				t.Fatalf("refused with %d pending: %s", pending(), loc)
			}
		}
		loc := authorize(t, nil)
		if loc.Query().Get("error") != "temporarily_unavailable" || pending() != maxAuthRequests {
			t.Fatalf("one more than %d: %s, %d pending", maxAuthRequests, loc, pending())
		}
		later := now.Add(authRequestLifetime + time.Second)
		clock.Store(&later)
		if loc := authorize(t, nil); loc.Query().Get("error") != "" || pending() != 1 {
			t.Fatalf("after expiry: %s, %d pending", loc, pending())
		}
	})
}

// TestFormBounds: a form posted to the token, authorize or login endpoint
// is read only up to 64 KiB (413 beyond), before any credential is
// checked; one just under the bound is read and judged on its content.
func TestFormBounds(t *testing.T) {
	e := startIdP(t, t.TempDir(), nil)
	for _, tc := range []struct {
		path   string
		size   int
		status int
	}{
		{PathToken, maxFormBytes + 1, http.StatusRequestEntityTooLarge},
		{PathAuthorize, maxFormBytes + 1, http.StatusRequestEntityTooLarge},
		{PathLogin, maxFormBytes + 1, http.StatusRequestEntityTooLarge},
		{PathToken, maxFormBytes - 100, http.StatusBadRequest},     // no grant type
		{PathLogin, maxFormBytes - 100, http.StatusBadRequest},     // no authRequestID
		{PathAuthorize, maxFormBytes - 100, http.StatusBadRequest}, // no client
	} {
		t.Run(tc.path+" "+strconv.Itoa(tc.size), func(t *testing.T) {
			body := "x=" + strings.Repeat("a", tc.size-2)
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.issuer+tc.path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("%d %s, want %d", resp.StatusCode, b, tc.status)
			}
		})
	}
}
