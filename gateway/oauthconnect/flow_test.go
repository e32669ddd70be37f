package oauthconnect

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/logtest"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/flight/flighttest"
)

const connName = "system.ai.my_github_mcp"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer is the flows' log, read while they write it.
type syncBuffer = logtest.Buffer

type env struct {
	t        testing.TB
	as       *fakeAS
	up       *fakeUpstream
	gw       *httptest.Server
	k        *Connector
	conns    *connections
	clock    *clock
	logs     *syncBuffer
	keyring  *catalog.Keyring
	store    TokenStore
	path     string
	handler  http.Handler
	modifyFn func(*Config)
}

type envOpt func(*env)

func withConfig(f func(*Config)) envOpt { return func(e *env) { e.modifyFn = f } }

func newEnv(t testing.TB, opts ...envOpt) *env {
	t.Helper()
	e := &env{t: t, clock: &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, logs: &syncBuffer{}}
	for _, o := range opts {
		o(e)
	}
	e.as = newFakeAS(t)
	e.up = newFakeUpstream(t, e.as.srv.URL)
	e.as.resource = e.up.resource()
	e.gw = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { e.handler.ServeHTTP(w, r) }))
	t.Cleanup(e.gw.Close)
	e.as.redirectURI = e.gw.URL + "/oauth/callback"
	e.conns = &connections{m: map[string]*gateway.Connection{connName: {
		Name: connName, URL: e.up.resource(), AuthMode: "per_user_oauth",
		Options: map[string]string{"url": e.up.resource(), "auth_mode": "per_user_oauth", "scopes": "repo read:org", "client_id": "mandate-client"},
		Secrets: map[string]string{"client_secret": "s3cret-client"},
	}}}
	key := make([]byte, 32)
	rand.Read(key)
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	e.keyring = kr
	e.path = filepath.Join(t.TempDir(), "state", "oauth-tokens.json")
	e.store, err = NewFileTokenStore(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.k = e.newConnector()
	return e
}

func (e *env) newConnector() *Connector {
	e.t.Helper()
	aad := []byte("mandate-oauthconnect")
	cfg := Config{
		PublicURL: e.gw.URL + "/", Connections: e.conns, Store: e.store,
		Seal:       func(b []byte) ([]byte, error) { return e.keyring.Seal(b, aad) },
		Open:       func(b []byte) ([]byte, error) { return e.keyring.Open(b, aad) },
		HTTPClient: e.as.srv.Client(), Now: e.clock.Now,
		Logger: zerolog.New(e.logs).Level(zerolog.DebugLevel),
	}
	if e.modifyFn != nil {
		e.modifyFn(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.handler = k.Handler()
	return k
}

func (e *env) conn() *gateway.Connection {
	c, err := e.conns.Connection(context.Background(), connName)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func ident(user string) *gateway.Identity {
	return &gateway.Identity{Subject: user, Actor: "coding-agent", Token: "INBOUND-TOKEN-never-upstream"}
}

// browser is a user agent with its own cookie jar that trusts the test
// servers' certificate.
func (e *env) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: e.gw.Client().Transport, Jar: jar}
}

// stopAtCallback makes b stop before following the AS's redirect to the
// callback, so the test holds the callback URL.
func stopAtCallback(b *http.Client) *http.Client {
	c := *b
	c.CheckRedirect = func(r *http.Request, _ []*http.Request) error {
		if strings.HasSuffix(r.URL.Path, "/oauth/callback") {
			return http.ErrUseLastResponse
		}
		return nil
	}
	return &c
}

func (e *env) authorize(user string) (string, error) {
	return e.k.Authorization(context.Background(), e.conn(), ident(user))
}

// signInURL asks for a token and expects a SignInRequiredError.
func (e *env) signInURL(user string) string {
	e.t.Helper()
	h, err := e.authorize(user)
	var sr *gateway.SignInRequiredError
	if !errors.As(err, &sr) {
		e.t.Fatalf("Authorization(%s) = %q, %v; want SignInRequiredError", user, h, err)
	}
	if sr.Connection != connName || !strings.HasPrefix(sr.URL, e.gw.URL+"/oauth/connect?") {
		e.t.Fatalf("SignInRequiredError = %+v", sr)
	}
	return sr.URL
}

var (
	csrfRE   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	ticketRE = regexp.MustCompile(`name="ticket" value="([^"]+)"`)
)

func body(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// consent opens a sign-in URL and returns the form values of the consent
// page.
func (e *env) consent(b *http.Client, signIn string) url.Values {
	e.t.Helper()
	resp, err := b.Get(signIn)
	if err != nil {
		e.t.Fatal(err)
	}
	page := body(e.t, resp)
	if resp.StatusCode != 200 {
		e.t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	m, tm := csrfRE.FindStringSubmatch(page), ticketRE.FindStringSubmatch(page)
	if m == nil || tm == nil {
		e.t.Fatalf("consent page without form: %s", page)
	}
	return url.Values{"connection": {connName}, "ticket": {tm[1]}, "csrf": {m[1]}, "action": {"approve"}}
}

func (e *env) approve(b *http.Client, form url.Values) (*http.Response, string) {
	e.t.Helper()
	resp, err := b.PostForm(e.gw.URL+"/oauth/connect", form)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, body(e.t, resp)
}

// connect runs the whole sign-in of user in browser b.
func (e *env) connect(b *http.Client, user string) {
	e.t.Helper()
	resp, page := e.approve(b, e.consent(b, e.signInURL(user)))
	if resp.StatusCode != 200 || !strings.Contains(page, "Connected") {
		e.t.Fatalf("sign-in of %s: %d %s (AS refusals: %v)", user, resp.StatusCode, page, e.as.failures)
	}
}

func (e *env) mustBearer(user string) string {
	e.t.Helper()
	h, err := e.authorize(user)
	if err != nil {
		e.t.Fatalf("Authorization(%s): %v", user, err)
	}
	if !strings.HasPrefix(h, "Bearer AT-") {
		e.t.Fatalf("Authorization(%s) = %q", user, h)
	}
	return strings.TrimPrefix(h, "Bearer ")
}

func expectSignIn(t *testing.T, h string, err error) {
	t.Helper()
	var sr *gateway.SignInRequiredError
	if !errors.As(err, &sr) {
		t.Fatalf("got %q, %v; want SignInRequiredError", h, err)
	}
}

func expectStatus(t *testing.T, resp *http.Response, page string, status int, contains string) {
	t.Helper()
	if resp.StatusCode != status || !strings.Contains(page, contains) {
		t.Fatalf("got %d %q; want %d containing %q", resp.StatusCode, page, status, contains)
	}
}

func TestFullFlow(t *testing.T) {
	e := newEnv(t)
	alice := e.browser()

	// Not connected: a sign-in URL, and the AS has not been asked anything.
	signIn := e.signInURL("alice@example.com")
	if len(e.as.tokenRequests) != 0 {
		t.Fatal("token endpoint called before consent")
	}

	// The consent page says who connects what where.
	resp, err := alice.Get(signIn)
	if err != nil {
		t.Fatal(err)
	}
	page := body(t, resp)
	upHost := strings.TrimPrefix(e.up.srv.URL, "https://")
	for _, want := range []string{"alice@example.com", connName, upHost, "coding-agent", "Approve", "Deny", "repo read:org"} {
		if !strings.Contains(page, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"} {
		if resp.Header.Get(h) != want {
			t.Errorf("%s = %q, want %q", h, resp.Header.Get(h), want)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, e.as.srv.URL) {
		t.Errorf("CSP = %q", csp)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		cookie = c
	}
	if cookie == nil || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/oauth/" {
		t.Errorf("session cookie = %+v", cookie)
	}

	// Approve → AS → callback → stored.
	form := url.Values{"connection": {connName}, "ticket": {ticketRE.FindStringSubmatch(page)[1]},
		"csrf": {csrfRE.FindStringSubmatch(page)[1]}, "action": {"approve"}}
	resp, page = e.approve(alice, form)
	expectStatus(t, resp, page, 200, "Connected")

	// The authorization request carried everything.
	ar := e.as.authRequests[0]
	for k, want := range map[string]string{
		"response_type": "code", "client_id": "mandate-client", "redirect_uri": e.gw.URL + "/oauth/callback",
		"scope": "repo read:org", "code_challenge_method": "S256", "resource": e.up.resource(),
	} {
		if ar.Get(k) != want {
			t.Errorf("authorization request %s = %q, want %q", k, ar.Get(k), want)
		}
	}
	if len(ar.Get("state")) < 40 {
		t.Errorf("state %q is too short to be unguessable", ar.Get("state"))
	}
	tr := e.as.tokenRequests[0]
	if tr.Get("redirect_uri") != ar.Get("redirect_uri") || tr.Get("resource") != e.up.resource() || tr.Get("code_verifier") == "" {
		t.Errorf("token request = %v", tr)
	}
	if tr.Get("client_secret") != "" {
		t.Error("client secret sent in the form instead of basic auth")
	}

	// Authorization now returns the AS's token, from memory.
	at := e.mustBearer("alice@example.com")
	if at != e.as.accessIssued[0] {
		t.Fatalf("token %q, AS issued %q", at, e.as.accessIssued[0])
	}
	if at2 := e.mustBearer("alice@example.com"); at2 != at || len(e.as.tokenRequests) != 1 {
		t.Fatalf("second call: %q, %d token requests", at2, len(e.as.tokenRequests))
	}

	// Bob never gets alice's token.
	h, err := e.authorize("bob@example.com")
	expectSignIn(t, h, err)

	// Expiry: 30 s before the end the token is refreshed automatically,
	// with resource, and the rotated refresh token is stored.
	e.clock.Add(time.Hour - 30*time.Second)
	at3 := e.mustBearer("alice@example.com")
	if at3 == at || at3 != e.as.accessIssued[1] {
		t.Fatalf("after expiry: %q (issued %v)", at3, e.as.accessIssued)
	}
	rf := e.as.tokenRequests[1]
	if rf.Get("grant_type") != "refresh_token" || rf.Get("refresh_token") != e.as.refreshIssued[0] || rf.Get("resource") != e.up.resource() {
		t.Fatalf("refresh request = %v", rf)
	}
	e.clock.Add(time.Hour)
	at4 := e.mustBearer("alice@example.com")
	if rf := e.as.tokenRequests[2]; rf.Get("refresh_token") != e.as.refreshIssued[1] {
		t.Fatalf("the rotated refresh token was not used: %v", rf)
	}
	if at4 != e.as.accessIssued[2] {
		t.Fatalf("third token %q", at4)
	}

	// Status without secrets.
	st, err := e.k.Status(context.Background(), "alice@example.com")
	if err != nil || len(st) != 1 || st[0].Connection != connName || !st[0].Refreshable || strings.Join(st[0].Scopes, " ") != "repo read:org" ||
		!st[0].ExpiresAt.Equal(e.clock.Now().Add(time.Hour)) {
		t.Fatalf("Status = %+v, %v", st, err)
	}

	// The user revokes the app upstream: invalid_grant → sign in again.
	e.as.revokeAll()
	e.clock.Add(time.Hour)
	h, err = e.authorize("alice@example.com")
	expectSignIn(t, h, err)
	if st, _ := e.k.Status(context.Background(), ""); len(st) != 0 {
		t.Fatalf("revoked grant still listed: %+v", st)
	}

	// ... and can connect again.
	e.connect(alice, "alice@example.com")
	e.mustBearer("alice@example.com")

	// Nothing secret in the logs.
	logs := e.logs.String()
	for _, s := range append(append(e.as.accessIssued, e.as.refreshIssued...), "s3cret-client", "INBOUND-TOKEN") {
		if strings.Contains(logs, s) {
			t.Fatalf("log contains a secret %q:\n%s", s, logs)
		}
	}
	if !strings.Contains(logs, "account connected") {
		t.Errorf("no connect event in the log:\n%s", logs)
	}
}

func TestTokenFileSealedAndPrivate(t *testing.T) {
	e := newEnv(t)
	e.connect(e.browser(), "alice@example.com")
	e.connect(e.browser(), "bob@example.com")
	alice := e.mustBearer("alice@example.com")
	bob := e.mustBearer("bob@example.com")
	if alice == bob {
		t.Fatal("alice and bob share a token")
	}

	fi, err := os.Stat(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode().Perm())
	}
	raw, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(append(e.as.accessIssued, e.as.refreshIssued...), "AT-", "RT-", "s3cret-client") {
		if bytes.Contains(raw, []byte(s)) {
			t.Fatalf("token file contains plaintext %q", s)
		}
	}
	if !bytes.Contains(raw, []byte("alice@example.com")) {
		t.Fatal("token file lacks the grant")
	}
	if ents, _ := os.ReadDir(filepath.Dir(e.path)); len(ents) != 1 {
		t.Fatalf("leftover temporary files: %v", ents)
	}

	// A restarted gateway reads the grants back (same keyring).
	e.store, err = NewFileTokenStore(e.path)
	if err != nil {
		t.Fatal(err)
	}
	e.k = e.newConnector()
	if got := e.mustBearer("alice@example.com"); got != alice {
		t.Fatalf("after restart: %q, want %q", got, alice)
	}

	// Alice's sealed token pasted into bob's row does not open there.
	var f storeFile
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	var a *StoredToken
	for _, tk := range f.Tokens {
		if tk.User == "alice@example.com" {
			a = tk
		}
	}
	for _, tk := range f.Tokens {
		if tk.User == "bob@example.com" {
			tk.AccessToken, tk.RefreshToken = a.AccessToken, a.RefreshToken
		}
	}
	b, _ := json.Marshal(f)
	if err := os.WriteFile(e.path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	e.store, _ = NewFileTokenStore(e.path)
	e.k = e.newConnector()
	h, err := e.authorize("bob@example.com")
	if err == nil || strings.Contains(h, alice) || strings.Contains(err.Error(), alice) {
		t.Fatalf("bob with alice's sealed token: %q, %v", h, err)
	}
	if got := e.mustBearer("alice@example.com"); got != alice {
		t.Fatalf("alice: %q", got)
	}
}

func TestStateReplayAndForeignSession(t *testing.T) {
	e := newEnv(t)
	alice := stopAtCallback(e.browser())
	resp, _ := e.approve(alice, e.consent(alice, e.signInURL("alice@example.com")))
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("expected the AS redirect, got %d", resp.StatusCode)
	}
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, e.gw.URL+"/oauth/callback?") {
		t.Fatalf("AS redirected to %q", callback)
	}

	// Bob's browser (with its own sign-in session) presents alice's state.
	bob := e.browser()
	e.consent(bob, e.signInURL("bob@example.com"))
	resp, err := bob.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, resp, body(t, resp), 400, "different browser session")
	// Nobody got connected.
	h, err := e.authorize("alice@example.com")
	expectSignIn(t, h, err)
	h, err = e.authorize("bob@example.com")
	expectSignIn(t, h, err)

	// The state was used once: even alice's own browser cannot replay it.
	resp, err = alice.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, resp, body(t, resp), 400, "already used")

	// A fresh flow completes once; its replay is refused.
	resp, _ = e.approve(alice, e.consent(alice, e.signInURL("alice@example.com")))
	callback = resp.Header.Get("Location")
	resp, _ = alice.Get(callback)
	expectStatus(t, resp, body(t, resp), 200, "Connected")
	resp, _ = alice.Get(callback)
	expectStatus(t, resp, body(t, resp), 400, "already used")
	e.mustBearer("alice@example.com")

	// A browser with no session cookie at all.
	resp, _ = e.approve(alice, e.consent(alice, e.signInURL("carol@example.com")))
	callback = resp.Header.Get("Location")
	resp, err = e.gw.Client().Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, resp, body(t, resp), 400, "different browser session")
	if st, _ := e.k.Status(context.Background(), ""); len(st) != 1 || st[0].User != "alice@example.com" {
		t.Fatalf("Status = %+v", st)
	}
}

func TestTicketChecks(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	signIn := e.signInURL("alice@example.com")
	u, _ := url.Parse(signIn)
	q := u.Query()
	get := func(q url.Values, accept string) (*http.Response, string) {
		r, _ := http.NewRequest(http.MethodGet, e.gw.URL+"/oauth/connect?"+q.Encode(), nil)
		if accept != "" {
			r.Header.Set("Accept", accept)
		}
		resp, err := b.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body(t, resp)
	}

	// Tampered ticket: every byte position matters.
	tk := q.Get("ticket")
	for _, i := range []int{0, len(tk) / 2, len(tk) - 1} {
		bad := []byte(tk)
		if bad[i] == 'A' {
			bad[i] = 'B'
		} else {
			bad[i] = 'A'
		}
		tq := url.Values{"connection": {connName}, "ticket": {string(bad)}}
		resp, page := get(tq, "")
		expectStatus(t, resp, page, 400, "not valid")
	}
	resp, page := get(url.Values{"connection": {connName}, "ticket": {tk[:len(tk)-8]}}, "")
	expectStatus(t, resp, page, 400, "not valid")
	// JSON for API clients.
	resp, page = get(url.Values{"connection": {connName}, "ticket": {"x"}}, "application/json")
	if resp.StatusCode != 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(page, `"error":"invalid_ticket"`) {
		t.Fatalf("JSON error: %d %s", resp.StatusCode, page)
	}
	// The ticket is for this connection only.
	resp, page = get(url.Values{"connection": {"system.ai.other"}, "ticket": {tk}}, "")
	expectStatus(t, resp, page, 400, "another connection")
	// A sealed stored token is not a ticket.
	e.connect(e.browser(), "bob@example.com")
	st, _ := e.store.Get(context.Background(), "bob@example.com", connName)
	resp, page = get(url.Values{"connection": {connName}, "ticket": {b64(st.AccessToken)}}, "")
	expectStatus(t, resp, page, 400, "not valid")

	// CSRF: a wrong token, and a POST without the session cookie.
	form := e.consent(b, signIn)
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("csrf", "forged")
	resp, page = e.approve(b, bad)
	expectStatus(t, resp, page, 400, "not sent by the sign-in page")
	resp, page = e.approve(e.browser(), form)
	expectStatus(t, resp, page, 400, "cookie")
	// A form from another browser's page does not validate with this
	// browser's cookie either.
	other := e.browser()
	e.consent(other, signIn)
	resp, page = e.approve(other, form)
	expectStatus(t, resp, page, 400, "not sent by the sign-in page")

	// Approve consumes the ticket: the link cannot be used twice.
	resp, page = e.approve(b, form)
	expectStatus(t, resp, page, 200, "Connected")
	resp, page = get(q, "")
	expectStatus(t, resp, page, 400, "already used")
	resp, page = e.approve(b, form)
	expectStatus(t, resp, page, 400, "already used")

	// Expired after TicketTTL.
	old := e.signInURL("carol@example.com")
	e.clock.Add(TicketTTL + time.Second)
	resp, err := b.Get(old)
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, resp, body(t, resp), 400, "expired")

	// Deny consumes the ticket and stores nothing.
	form = e.consent(b, e.signInURL("dave@example.com"))
	form.Set("action", "deny")
	resp, page = e.approve(b, form)
	expectStatus(t, resp, page, 200, "did not connect")
	h, err := e.authorize("dave@example.com")
	expectSignIn(t, h, err)
	if len(e.as.authRequests) != 2 {
		t.Fatalf("AS saw %d authorization requests", len(e.as.authRequests))
	}

	// Unknown paths and methods.
	r, _ := http.NewRequest(http.MethodDelete, e.gw.URL+"/oauth/callback", nil)
	resp, _ = b.Do(r)
	if resp.StatusCode != 405 {
		t.Fatalf("DELETE callback: %d", resp.StatusCode)
	}
	resp, _ = b.Get(e.gw.URL + "/oauth/nope")
	if resp.StatusCode != 404 {
		t.Fatalf("unknown page: %d", resp.StatusCode)
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestRefreshSingleFlight(t *testing.T) {
	e := newEnv(t)
	e.connect(e.browser(), "alice@example.com")
	e.clock.Add(2 * time.Hour)
	var wg sync.WaitGroup
	got := make([]string, 32)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := e.authorize("alice@example.com")
			if err != nil {
				t.Error(err)
			}
			got[i] = h
		}()
	}
	wg.Wait()
	if n := e.as.grants("refresh_token"); n != 1 {
		t.Fatalf("%d refresh requests, want 1", n)
	}
	for _, h := range got {
		if h != "Bearer "+e.as.accessIssued[1] {
			t.Fatalf("got %q, want the refreshed token", h)
		}
	}
}

func TestRefreshFailureModes(t *testing.T) {
	e := newEnv(t)
	e.connect(e.browser(), "alice@example.com")
	first := e.mustBearer("alice@example.com")

	// The AS is down during the skew window: the still-valid token is used.
	e.clock.Add(time.Hour - 30*time.Second)
	e.as.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	if got := e.mustBearer("alice@example.com"); got != first {
		t.Fatalf("during an AS outage before expiry: %q", got)
	}
	// After expiry the failure is an error, not a sign-in and not the
	// stale token.
	e.clock.Add(time.Minute)
	h, err := e.authorize("alice@example.com")
	var sr *gateway.SignInRequiredError
	if err == nil || errors.As(err, &sr) {
		t.Fatalf("expired during an AS outage: %q, %v", h, err)
	}
	if st, _ := e.k.Status(context.Background(), "alice@example.com"); len(st) != 1 {
		t.Fatal("an AS outage dropped the grant")
	}
}

func TestNoRefreshTokenAndInvalidate(t *testing.T) {
	e := newEnv(t)
	e.as.set(func(a *fakeAS) { a.rotate = true })
	e.connect(e.browser(), "alice@example.com")
	at := e.mustBearer("alice@example.com")

	// Invalidate (the upstream said 401): the next call refreshes.
	if err := e.k.Invalidate(context.Background(), "alice@example.com", connName); err != nil {
		t.Fatal(err)
	}
	if got := e.mustBearer("alice@example.com"); got == at || e.as.grants("refresh_token") != 1 {
		t.Fatalf("after Invalidate: %q, %d refreshes", got, e.as.grants("refresh_token"))
	}

	// A grant without refresh token and without expiry is used until
	// Invalidate, then the user signs in again.
	e2 := newEnv(t)
	e2.as.set(func(a *fakeAS) { a.expiresIn = 0 })
	e2.as.set(func(a *fakeAS) { a.rotate = false })
	// the initial code grant always issues a refresh token in the fake;
	// drop it from the store to model an AS that issues none.
	e2.connect(e2.browser(), "alice@example.com")
	st, _ := e2.store.Get(context.Background(), "alice@example.com", connName)
	st.RefreshToken = nil
	e2.store.Put(context.Background(), st)
	e2.k = e2.newConnector()
	e2.clock.Add(1000 * time.Hour)
	e2.mustBearer("alice@example.com")
	e2.k.Invalidate(context.Background(), "alice@example.com", connName)
	h, err := e2.authorize("alice@example.com")
	expectSignIn(t, h, err)
}

func TestDisconnect(t *testing.T) {
	e := newEnv(t)
	e.connect(e.browser(), "alice@example.com")
	e.connect(e.browser(), "bob@example.com")
	e.mustBearer("alice@example.com")
	if err := e.k.Disconnect(context.Background(), "alice@example.com", connName); err != nil {
		t.Fatal(err)
	}
	h, err := e.authorize("alice@example.com")
	expectSignIn(t, h, err)
	e.mustBearer("bob@example.com")
	if len(e.as.revoked) != 1 || e.as.revoked[0] != e.as.refreshIssued[0] {
		t.Fatalf("revoked %v, want alice's refresh token", e.as.revoked)
	}
	st, _ := e.k.Status(context.Background(), "")
	if len(st) != 1 || st[0].User != "bob@example.com" {
		t.Fatalf("Status = %+v", st)
	}
	if err := e.k.Disconnect(context.Background(), "alice@example.com", connName); err != nil {
		t.Fatalf("second Disconnect: %v", err)
	}
}

func TestConnectionChanged(t *testing.T) {
	e := newEnv(t)
	e.connect(e.browser(), "alice@example.com")
	at := e.mustBearer("alice@example.com")
	// ALTER CONNECTION ... url: the old grant is never sent to the new URL.
	e.conns.update(connName, func(c *gateway.Connection) { c.URL = "https://elsewhere.example/mcp"; c.Options["url"] = c.URL })
	h, err := e.authorize("alice@example.com")
	expectSignIn(t, h, err)
	if strings.Contains(h, at) {
		t.Fatal("token sent to the new url")
	}
	// Changed between Approve and callback: refused.
	e = newEnv(t)
	b := stopAtCallback(e.browser())
	resp, _ := e.approve(b, e.consent(b, e.signInURL("alice@example.com")))
	e.conns.update(connName, func(c *gateway.Connection) { c.Options["client_id"] = "another-client" })
	resp, _ = b.Get(resp.Header.Get("Location"))
	expectStatus(t, resp, body(t, resp), 400, "changed during the sign-in")

	// Wrong auth mode and missing client_id are errors, not sign-in links.
	c := e.conn()
	c.AuthMode = "none"
	if _, err := e.k.Authorization(context.Background(), c, ident("alice@example.com")); err == nil {
		t.Fatal("auth_mode none accepted")
	}
	c = e.conn()
	delete(c.Options, "client_id")
	_, err = e.k.Authorization(context.Background(), c, ident("alice@example.com"))
	if err == nil || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("missing client_id: %v", err)
	}
	if _, err := e.k.Authorization(context.Background(), e.conn(), &gateway.Identity{}); err == nil {
		t.Fatal("empty subject accepted")
	}
}

func TestAuthorizationServerResponses(t *testing.T) {
	// The user denies at the AS.
	e := newEnv(t)
	e.as.set(func(a *fakeAS) { a.deny = true })
	b := e.browser()
	resp, page := e.approve(b, e.consent(b, e.signInURL("alice@example.com")))
	expectStatus(t, resp, page, 400, "access_denied")

	// RFC 9207: a response naming another issuer is refused; one without
	// iss when the AS promised it is refused.
	e = newEnv(t)
	e.as.set(func(a *fakeAS) { a.issParam = true; a.wrongIss = true })
	b = e.browser()
	resp, page = e.approve(b, e.consent(b, e.signInURL("alice@example.com")))
	expectStatus(t, resp, page, 400, "expected authorization server")
	e.as.set(func(a *fakeAS) { a.wrongIss = false })
	e.connect(e.browser(), "alice@example.com")

	// Wrong client secret: the code exchange fails with a clear error.
	e = newEnv(t)
	e.conns.update(connName, func(c *gateway.Connection) { c.Secrets["client_secret"] = "wrong" })
	b = e.browser()
	resp, page = e.approve(b, e.consent(b, e.signInURL("alice@example.com")))
	expectStatus(t, resp, page, 400, "invalid_client")
	if strings.Contains(page, "wrong") && strings.Contains(page, "client_secret") {
		t.Fatal("secret echoed")
	}

	// A flow older than FlowTTL is refused.
	e = newEnv(t)
	b = stopAtCallback(e.browser())
	resp, _ = e.approve(b, e.consent(b, e.signInURL("alice@example.com")))
	e.clock.Add(FlowTTL + time.Second)
	resp, _ = b.Get(resp.Header.Get("Location"))
	expectStatus(t, resp, body(t, resp), 400, "too long")
}

func TestPublicClient(t *testing.T) {
	e := newEnv(t)
	e.as.set(func(a *fakeAS) { a.clientSecret = "" })
	e.conns.update(connName, func(c *gateway.Connection) { delete(c.Secrets, "client_secret") })
	e.connect(e.browser(), "alice@example.com")
	e.mustBearer("alice@example.com")
	if e.as.tokenRequests[0].Get("client_id") != "mandate-client" {
		t.Fatal("public client did not identify itself")
	}
}

func TestBrowserUser(t *testing.T) {
	e := newEnv(t, withConfig(func(c *Config) {
		c.BrowserUser = func(r *http.Request) (string, error) {
			if u := r.Header.Get("X-Test-User"); u != "" {
				return u, nil
			}
			return "", errors.New("not signed in")
		}
	}))
	signIn := e.signInURL("alice@example.com")
	get := func(who string) (*http.Response, string) {
		r, _ := http.NewRequest(http.MethodGet, signIn, nil)
		if who != "" {
			r.Header.Set("X-Test-User", who)
		}
		resp, err := e.browser().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body(t, resp)
	}
	resp, page := get("mallory@example.com")
	expectStatus(t, resp, page, 403, "signed in as mallory@example.com")
	resp, page = get("")
	expectStatus(t, resp, page, 401, "Sign in to Mandate")
	resp, page = get("alice@example.com")
	expectStatus(t, resp, page, 200, "Approve")
}

func TestOnConnected(t *testing.T) {
	var mu sync.Mutex
	var got []string
	e := newEnv(t, withConfig(func(c *Config) {
		c.OnConnected = func(user, conn string) { mu.Lock(); got = append(got, user+" "+conn); mu.Unlock() }
	}))
	e.connect(e.browser(), "alice@example.com")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "alice@example.com "+connName {
		t.Fatalf("OnConnected calls %v", got)
	}
}

func TestNewValidates(t *testing.T) {
	seal := func(b []byte) ([]byte, error) { return b, nil }
	conns := &connections{}
	for _, cfg := range []Config{
		{PublicURL: "https://gw.example", Connections: conns},
		{PublicURL: "https://gw.example", Seal: seal, Open: seal},
		{PublicURL: "http://gw.example", Connections: conns, Seal: seal, Open: seal},
		{PublicURL: "gw.example", Connections: conns, Seal: seal, Open: seal},
		{PublicURL: "https://gw.example?x=1", Connections: conns, Seal: seal, Open: seal},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg.PublicURL)
		}
	}
	// The redirect URI is one exact string, however PublicURL is written.
	for _, pu := range []string{"https://gw.example/mandate", "https://gw.example/mandate/", "https://gw.example/mandate//"} {
		k, err := New(Config{PublicURL: pu, Connections: conns, Seal: seal, Open: seal})
		if err != nil || k.RedirectURI() != "https://gw.example/mandate/oauth/callback" || k.cookiePath != "/mandate/oauth/" {
			t.Fatalf("New(%s): %v %q", pu, err, k.RedirectURI())
		}
	}
	if _, err := New(Config{PublicURL: "http://127.0.0.1:8470", Connections: conns, Seal: seal, Open: seal}); err != nil {
		t.Fatalf("loopback http refused: %v", err)
	}
}

// BenchmarkAuthorizationCached is the per-call cost once a user has
// connected (the access token served from memory).
func BenchmarkAuthorizationCached(b *testing.B) {
	e := newEnv(b)
	e.connect(e.browser(), "alice@example.com")
	c, id := e.conn(), ident("alice@example.com")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := e.k.Authorization(ctx, c, id); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Replicas sharing one token store (PostgreSQL in production) refresh an
// expired grant once: the authorization server rotates refresh tokens and
// refuses a used one, so a second refresh would lose the grant. The one
// that refreshes first wins; the others read its token and use it.
func TestSharedStoreRefreshOnce(t *testing.T) {
	e := newEnv(t)
	e.store = NewSharedTokenStore(keystore.Dir(t.TempDir()))
	e.k = e.newConnector()
	e.connect(e.browser(), "alice@example.com")
	replicas := []*Connector{e.k, e.newConnector(), e.newConnector()}
	e.clock.Add(2 * time.Hour)
	var wg sync.WaitGroup
	got := make([]string, 3*len(replicas))
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := replicas[i%len(replicas)].Authorization(context.Background(), e.conn(), ident("alice@example.com"))
			if err != nil {
				t.Error(err)
			}
			got[i] = h
		}()
	}
	wg.Wait()
	if n := e.as.grants("refresh_token"); n != 1 {
		t.Fatalf("%d refresh requests, want 1", n)
	}
	for _, h := range got {
		if h != "Bearer "+e.as.accessIssued[1] {
			t.Fatalf("got %q, want the refreshed token", h)
		}
	}
	// A disconnect on one replica is seen by the others once their cache
	// is rechecked.
	if err := replicas[1].Disconnect(context.Background(), "alice@example.com", connName); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(SharedRecheck)
	_, err := replicas[2].Authorization(context.Background(), e.conn(), ident("alice@example.com"))
	var si *gateway.SignInRequiredError
	if !errors.As(err, &si) {
		t.Fatalf("after a disconnect on another replica: %v, want sign-in required", err)
	}
}

// With a shared store the steps of one sign-in may reach different
// replicas: the consent page is served by one, the form posted to another
// and the authorization server's redirect handled by a third; a state and
// a ticket are still used once.
func TestSharedStoreSignInAcrossReplicas(t *testing.T) {
	csrfKey := make([]byte, 32)
	rand.Read(csrfKey)
	e := newEnv(t, withConfig(func(c *Config) { c.CSRFKey = csrfKey }))
	e.store = NewSharedTokenStore(keystore.Dir(t.TempDir()))
	ka, kb, kc := e.newConnector(), e.newConnector(), e.newConnector()
	e.k = ka
	user := "alice@example.com"
	b := e.browser()
	e.handler = ka.Handler()
	form := e.consent(b, e.signInURL(user))
	e.handler = kb.Handler()
	resp, page := e.approve(stopAtCallback(b), form)
	callback := resp.Header.Get("Location")
	if !strings.Contains(callback, "/oauth/callback?") {
		t.Fatalf("approve on another replica: %d %s", resp.StatusCode, page)
	}
	e.handler = kc.Handler()
	resp, err := b.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	if page := body(t, resp); resp.StatusCode != 200 || !strings.Contains(page, "Connected") {
		t.Fatalf("callback on a third replica: %d %s", resp.StatusCode, page)
	}
	if h, err := kb.Authorization(context.Background(), e.conn(), ident(user)); err != nil || !strings.HasPrefix(h, "Bearer AT-") {
		t.Fatalf("Authorization after the sign-in = %q, %v", h, err)
	}
	// The state and the ticket were used, whichever replica sees them again.
	e.handler = ka.Handler()
	resp, err = b.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, resp, body(t, resp), http.StatusBadRequest, "unknown, expired or was already used")
	resp, page = e.approve(b, form)
	expectStatus(t, resp, page, http.StatusBadRequest, "already used")
}

// countingStore counts the grants read.
type countingStore struct {
	TokenStore
	gets atomic.Int32
}

func (s *countingStore) Get(ctx context.Context, user, connection string) (*StoredToken, error) {
	s.gets.Add(1)
	return s.TokenStore.Get(ctx, user, connection)
}

// TestAuthorizationMissStraddlesFlight: a call that missed the token cache
// while another call's load was answered (it joins no flight: that one is
// over) uses the cached token rather than reading the store again.
func TestAuthorizationMissStraddlesFlight(t *testing.T) {
	e := newEnv(t)
	e.connect(e.browser(), "alice@example.com")
	store := &countingStore{TokenStore: e.store}
	e.modifyFn = func(c *Config) { c.Store = store }
	e.k = e.newConnector() // an empty token cache over the same grants
	flighttest.Straddle(t, func(h func()) { e.k.afterMiss = h },
		func() error { _, err := e.authorize("alice@example.com"); return err },
		func() error { e.mustBearer("alice@example.com"); return nil })
	if n := store.gets.Load(); n != 1 {
		t.Fatalf("%d reads of the grant, want 1: the late call loaded again what was cached", n)
	}
}

// TestFlowsPerUser: one user approving sign-ins without end keeps at most
// maxUserFlows in progress (the newest), and cannot fill the table that
// other users' sign-ins need.
func TestFlowsPerUser(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	var states []string
	for i := range maxFlows {
		st := fmt.Sprintf("alice-%d", i)
		fl := &flow{user: "alice@example.com", connection: connName, expires: e.clock.Now().Add(FlowTTL + time.Duration(i)*time.Millisecond)}
		if !e.k.putFlow(ctx, st, fl) {
			t.Fatalf("alice's flow %d refused", i)
		}
		states = append(states, st)
	}
	if !e.k.putFlow(ctx, "bob-0", &flow{user: "bob@example.com", connection: connName, expires: e.clock.Now().Add(FlowTTL)}) {
		t.Fatal("bob's sign-in refused after alice's flood")
	}
	e.k.fmu.Lock()
	n, newest := len(e.k.flows), e.k.flows[states[len(states)-1]] != nil
	e.k.fmu.Unlock()
	if n != maxUserFlows+1 || !newest {
		t.Fatalf("%d flows kept (alice's newest kept: %v), want %d", n, newest, maxUserFlows+1)
	}
	if e.k.takeFlow(ctx, states[0]) != nil || e.k.takeFlow(ctx, "bob-0") == nil {
		t.Fatal("alice's oldest flow kept or bob's lost")
	}
}
