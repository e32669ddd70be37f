package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// loadBalancer is a round-robin reverse proxy in front of replicas, the
// URL they all have as --public-url. The development IdP (/oidc/), whose
// pending authorization requests live in one process's memory (it is not
// for production), is routed to the first replica, as a sticky rule of a
// real load balancer would; everything else, the gateway's sign-in pages
// included, goes round robin.
type loadBalancer struct {
	srv      *httptest.Server
	backends atomic.Pointer[[]*url.URL]
	next     atomic.Uint64
	// oidc, when set, takes /oidc/ instead of the first backend.
	oidc atomic.Pointer[url.URL]
}

func startLoadBalancer(t testing.TB) *loadBalancer {
	t.Helper()
	lb := &loadBalancer{}
	lb.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bs := lb.backends.Load()
		if bs == nil {
			http.Error(w, "no replicas yet", http.StatusServiceUnavailable)
			return
		}
		b := (*bs)[0]
		if o := lb.oidc.Load(); o != nil {
			b = o
		}
		if !strings.HasPrefix(r.URL.Path, "/oidc/") {
			b = (*bs)[lb.next.Add(1)%uint64(len(*bs))]
		}
		httputil.NewSingleHostReverseProxy(b).ServeHTTP(w, r)
	}))
	t.Cleanup(lb.srv.Close)
	return lb
}

func (lb *loadBalancer) route(rs []*server) {
	var bs []*url.URL
	for _, r := range rs {
		u, _ := url.Parse(r.httpURL)
		bs = append(bs, u)
	}
	lb.backends.Store(&bs)
}

// TestReplicasSharedKeys: 3 replicas behind a load balancer keep their
// keys and per-user tokens in PostgreSQL. All publish the same JWKS (the
// gateway's and the development IdP's); a dev-IdP token minted by one
// replica is accepted by another; the mandate_jwt an upstream receives
// from one replica verifies with the JWKS of another; a per-user OAuth
// sign-in through the load balancer (its steps on whichever replica) stores
// a grant that another replica uses.
func TestReplicasSharedKeys(t *testing.T) {
	lb := startLoadBalancer(t)
	c := startCluster(t, 3, nil, "--dev", "--public-url", lb.srv.URL)
	lb.route(c.replicas)
	r0, r1, r2 := c.replicas[0], c.replicas[1], c.replicas[2]

	// One JWKS, whichever replica answers.
	for _, path := range []string{"/.well-known/jwks.json", "/oidc/keys"} {
		first := getBody(t, r0.httpURL+path)
		for i, r := range c.replicas[1:] {
			if got := getBody(t, r.httpURL+path); got != first {
				t.Fatalf("%s differs on replica %d:\n%s\n%s", path, i+1, first, got)
			}
		}
	}

	up, idp := sharedKeysFixture(t, r0)
	for i, r := range c.replicas {
		waitFor(t, 30*time.Second, "the grants on every replica", func() bool { // the fixture's last two statements
			ok, _ := authorized(t, r, "alice@example.com", "oauth_tools")
			agentOK, _ := authorized(t, r, "coding-agent", "oauth_tools")
			return ok && agentOK
		})
		if d := readDevIdP(t, r); d.ClientSecret != idp.ClientSecret || d.Issuer != idp.Issuer {
			t.Fatalf("replica %d's dev-idp.json differs", i)
		}
	}

	// A dev-IdP token minted by replica 1 (client credentials, straight to
	// its token endpoint) calls the gateway of replica 2.
	agentTok := clientCredentials(t, r1.httpURL+"/oidc/oauth/token", "coding-agent", idp.ClientSecret)
	sess, err := mcpConnect(t, r2.httpURL+"/mcp/jwt_tools", agentTok)
	if err != nil {
		t.Fatalf("a token of replica 1's IdP on replica 2: %v", err)
	}
	if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
		t.Fatalf("tools/call through replica 2: %+v %v", res, err)
	}
	sess.Close()
	// The mandate_jwt replica 2 sent verifies with replica 0's JWKS.
	auths := up.seenAuths()
	sub, _, aud := jwtClaims(t, strings.TrimPrefix(auths[len(auths)-1], "Bearer "), fetchJWKS(t, r0.httpURL+"/.well-known/jwks.json"))
	if sub != "coding-agent" || aud != up.srv.URL {
		t.Fatalf("upstream token sub=%q aud=%q", sub, aud)
	}

	// An MCP session through the load balancer: initialize on one replica,
	// each later request on the next (round robin), one session throughout.
	sess, err = mcpConnect(t, lb.srv.URL+"/mcp/jwt_tools", agentTok)
	if err != nil {
		t.Fatalf("MCP through the load balancer: %v", err)
	}
	for i := range 4 {
		if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "lb"}}); err != nil || res.IsError {
			t.Fatalf("tools/call %d through the load balancer (another replica than the session's first): %+v %v", i, res, err)
		}
	}
	sess.Close()
	// alice connects her account through the load balancer (consent page,
	// form and callback each on the next replica)...
	alice := e2eToken(t, r0, "alice@example.com", "coding-agent")
	signIn := signInURL(t, r0.httpURL+"/mcp/oauth_tools", alice)
	body := approveSignIn(t, signIn, lb.srv.URL, idp.Issuer)
	if !strings.Contains(strings.ToLower(string(body)), "connected") {
		t.Fatalf("after sign-in: %s", body)
	}
	// ...and replica 1, which never saw the flow, uses her grant.
	sess, err = mcpConnect(t, r1.httpURL+"/mcp/oauth_tools", alice)
	if err != nil {
		t.Fatalf("alice's grant on replica 1: %v", err)
	}
	defer sess.Close()
	if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
		t.Fatalf("alice through replica 1: %+v %v", res, err)
	}
	auths = up.seenAuths()
	sub, _, aud = jwtClaims(t, strings.TrimPrefix(auths[len(auths)-1], "Bearer "), fetchJWKS(t, r2.httpURL+"/oidc/keys"))
	if sub != "alice@example.com" || aud != up.srv.URL {
		t.Fatalf("upstream token through replica 1: sub=%q aud=%q", sub, aud)
	}
	if rows := queryRows(t, r2.admin(t), `SHOW CONNECTION STATUS`); len(rows) != 1 || !strings.Contains(rows[0], "alice@example.com") {
		t.Fatalf("SHOW CONNECTION STATUS on replica 2 = %q", rows)
	}
}

type devIdPState struct {
	Issuer       string `json:"issuer"`
	ClientSecret string `json:"client_secret"`
}

func readDevIdP(t testing.TB, s *server) devIdPState {
	t.Helper()
	var st devIdPState
	b, err := os.ReadFile(filepath.Join(s.dataDir, "dev-idp.json"))
	if err != nil || json.Unmarshal(b, &st) != nil {
		t.Fatalf("dev-idp.json: %v", err)
	}
	return st
}

func getBody(t testing.TB, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	return string(b)
}

// clientCredentials asks a token endpoint for an agent's own token.
func clientCredentials(t testing.TB, tokenURL, clientID, secret string) string {
	t.Helper()
	resp, err := http.PostForm(tokenURL, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &tr) != nil || tr.AccessToken == "" {
		t.Fatalf("client_credentials at %s: %d %s", tokenURL, resp.StatusCode, b)
	}
	return tr.AccessToken
}

// sharedKeysFixture creates, through s, alice, the coding-agent and two
// connections to a new MCP upstream: jwt_tools (mandate_jwt) and
// oauth_tools (per-user OAuth at s's development IdP), both usable by
// them.
func sharedKeysFixture(t *testing.T, s *server) (*mcpUpstream, devIdPState) {
	t.Helper()
	up := newMCPUpstream(t)
	idp := readDevIdP(t, s)
	mustExec(t, s.admin(t),
		`CREATE USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION jwt_tools TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'mandate_jwt')`,
		`CREATE CONNECTION oauth_tools TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'per_user_oauth', scopes 'repo',
		   authorization_endpoint '`+idp.Issuer+`/authorize', token_endpoint '`+idp.Issuer+`/oauth/token',
		   client_id 'mandate-gateway', client_secret '`+idp.ClientSecret+`')`,
		`GRANT USE_CONNECTION ON CONNECTION jwt_tools TO "coding-agent"`,
		`GRANT USE_CONNECTION ON CONNECTION oauth_tools TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION oauth_tools TO "coding-agent"`)
	return up, idp
}
