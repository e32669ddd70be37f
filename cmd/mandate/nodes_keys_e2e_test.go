package main

import (
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestGatewayNodesSharedKeys: two `mandate gateway` nodes of an embedded
// `mandate serve` keep the mandate_jwt signing keys and users' upstream
// grants in the catalog's key store. The server and both nodes publish
// one JWKS; a mandate_jwt node A sends verifies with node B's JWKS and
// the server's; a per-user OAuth sign-in completed through node A (every
// gateway step of it on A) is used by node B and shown by the server.
func TestGatewayNodesSharedKeys(t *testing.T) {
	t.Parallel()
	lb := startLoadBalancer(t)
	s := startServer(t, serverOpts{args: []string{"--dev", "--public-url", lb.srv.URL}})
	var nodeURLs []string
	for range 2 {
		_, addr := startOnFreeAddr(t, func(addr string) []string {
			return []string{"gateway", "--catalog", "http://" + s.httpAddr,
				"--node-token-file", filepath.Join(s.dataDir, "node-token"), "--http-addr", addr,
				"--oidc-issuer", lb.srv.URL + "/oidc", "--public-url", lb.srv.URL,
				"--data-dir", nodeDataDir(t, s.dataDir, ""), "--max-staleness", "2s"}
		}, "Mandate gateway is ready")
		nodeURLs = append(nodeURLs, "http://"+addr)
	}
	a, b := nodeURLs[0], nodeURLs[1]
	// A node needs the catalog's master key: without one it does not
	// start; with another it starts but is not ready.
	nodeArgs := func(addr, dir string) []string {
		return []string{"gateway", "--catalog", "http://" + s.httpAddr, "--node-token-file", filepath.Join(s.dataDir, "node-token"),
			"--http-addr", addr, "--oidc-issuer", lb.srv.URL + "/oidc", "--public-url", lb.srv.URL, "--data-dir", dir}
	}
	for attempt := 1; ; attempt++ { // the node binds its address first: retried if another process took it
		_, errOut, code := runBinary(t, nil, nodeArgs(freeAddrs(t, 1)[0], t.TempDir())...)
		if attempt < 5 && strings.Contains(errOut, "address already in use") {
			continue
		}
		if code == 0 || !strings.Contains(errOut, "needs the catalog's master key") {
			t.Fatalf("a node without a master key: exit %d, %s", code, errOut)
		}
		break
	}
	_, wrong := startOnFreeAddr(t, func(addr string) []string {
		return nodeArgs(addr, nodeDataDir(t, "", strings.Repeat("ab", 32)))
	}, "Mandate gateway is ready")
	waitFor(t, 30*time.Second, "the node with another master key to report it", func() bool {
		resp, err := http.Get("http://" + wrong + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "does not open with this node's master key")
	})
	sURL, _ := url.Parse(s.httpURL)
	lb.oidc.Store(sURL)
	lb.route([]*server{s})

	// One JWKS: the server's and both nodes'.
	first := getBody(t, s.httpURL+"/.well-known/jwks.json")
	for _, n := range nodeURLs {
		if got := getBody(t, n+"/.well-known/jwks.json"); got != first {
			t.Fatalf("the JWKS of %s differs from the server's:\n%s\n%s", n, first, got)
		}
	}

	up, idp := sharedKeysFixture(t, s)

	// An agent's mandate_jwt minted by node A...
	agentTok := clientCredentials(t, s.httpURL+"/oidc/oauth/token", "coding-agent", idp.ClientSecret)
	var sess *sdk.ClientSession
	waitFor(t, 30*time.Second, "node A to know the grants", func() bool {
		var err error
		sess, err = mcpConnect(t, a+"/mcp/jwt_tools", agentTok)
		return err == nil
	})
	if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
		t.Fatalf("tools/call through node A: %+v %v", res, err)
	}
	sess.Close()
	// ...verifies with node B's JWKS and with the server's.
	auths := up.seenAuths()
	minted := strings.TrimPrefix(auths[len(auths)-1], "Bearer ")
	for _, jwks := range []string{b, s.httpURL} {
		sub, _, aud := jwtClaims(t, minted, fetchJWKS(t, jwks+"/.well-known/jwks.json"))
		if sub != "coding-agent" || aud != up.srv.URL {
			t.Fatalf("node A's token with the JWKS of %s: sub=%q aud=%q", jwks, sub, aud)
		}
	}

	// alice connects her account through node A: the consent page, the
	// form and the authorization server's redirect all reach node A.
	aURL, _ := url.Parse(a)
	lb.route([]*server{{httpURL: a}})
	lb.oidc.Store(sURL)
	alice := e2eToken(t, s, "alice@example.com", "coding-agent")
	signIn := signInURL(t, a+"/mcp/oauth_tools", alice)
	body := approveSignIn(t, signIn, lb.srv.URL, idp.Issuer)
	if !strings.Contains(strings.ToLower(string(body)), "connected") {
		t.Fatalf("after sign-in through node A (%s): %s", aURL.Host, body)
	}
	// Node B, which never saw the flow, uses her grant.
	var err error
	waitFor(t, 30*time.Second, "node B to know the grants", func() bool {
		sess, err = mcpConnect(t, b+"/mcp/oauth_tools", alice)
		return err == nil
	})
	defer sess.Close()
	if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
		t.Fatalf("alice through node B: %+v %v", res, err)
	}
	auths = up.seenAuths()
	sub, _, aud := jwtClaims(t, strings.TrimPrefix(auths[len(auths)-1], "Bearer "), fetchJWKS(t, s.httpURL+"/oidc/keys"))
	if sub != "alice@example.com" || aud != up.srv.URL {
		t.Fatalf("upstream token through node B: sub=%q aud=%q", sub, aud)
	}
	if rows := queryRows(t, s.admin(t), `SHOW CONNECTION STATUS`); len(rows) != 1 || !strings.Contains(rows[0], "alice@example.com") {
		t.Fatalf("SHOW CONNECTION STATUS on the server = %q", rows)
	}
}
