package main

import (
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// TestMCPPerUserOAuth: a per_user_oauth connection with the development
// identity provider playing the upstream's authorization server. alice's
// first call gets a sign-in URL; she approves on Mandate's consent page and
// signs in at the provider (code + PKCE with the resource parameter); her
// next call reaches the upstream with her own token for it, and bob, who
// has not connected, still gets a sign-in URL.
func TestMCPPerUserOAuth(t *testing.T) {
	t.Parallel()
	up := newMCPUpstream(t)
	s := startServer(t, serverOpts{args: []string{"--dev"}})
	var st struct {
		Issuer       string `json:"issuer"`
		ClientSecret string `json:"client_secret"`
	}
	b, err := os.ReadFile(filepath.Join(s.dataDir, "dev-idp.json"))
	if err != nil || json.Unmarshal(b, &st) != nil {
		t.Fatalf("dev-idp.json: %v", err)
	}
	c := s.admin(t)
	mustExec(t, c,
		`CREATE USER "alice@example.com"`,
		`CREATE USER "bob@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'per_user_oauth', scopes 'repo',
		   authorization_endpoint '`+st.Issuer+`/authorize', token_endpoint '`+st.Issuer+`/oauth/token',
		   client_id 'mandate-gateway', client_secret '`+st.ClientSecret+`')`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "bob@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "coding-agent"`)
	gwURL := "http://" + s.httpAddr + "/mcp/gh"
	alice := e2eToken(t, s, "alice@example.com", "coding-agent")

	signIn := signInURL(t, gwURL, alice)
	if !strings.HasPrefix(signIn, "http://"+s.httpAddr+"/oauth/connect?") {
		t.Fatalf("sign-in URL %q", signIn)
	}

	// alice's browser: consent page → approve → the provider's login →
	// Mandate's callback.
	body := approveSignIn(t, signIn, "http://"+s.httpAddr, st.Issuer)
	if !strings.Contains(strings.ToLower(string(body)), "connected") {
		t.Fatalf("after sign-in: %s", body)
	}

	sess, err := mcpConnect(t, gwURL, alice)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
		t.Fatalf("alice after connecting: %+v %v", res, err)
	}
	jwks := fetchJWKS(t, st.Issuer+"/keys")
	auths := up.seenAuths()
	sub, _, aud := jwtClaims(t, strings.TrimPrefix(auths[len(auths)-1], "Bearer "), jwks)
	if sub != "alice@example.com" || aud != up.srv.URL {
		t.Fatalf("upstream token sub=%q aud=%q", sub, aud)
	}
	for _, a := range auths {
		if strings.Contains(a, alice) {
			t.Fatal("the inbound token reached the upstream")
		}
	}
	// SHOW CONNECTION STATUS shows who has connected, without secrets.
	rows := queryRows(t, c, `SHOW CONNECTION STATUS`)
	if len(rows) != 1 || !strings.Contains(rows[0], "alice@example.com") || !strings.Contains(rows[0], "system.ai.gh") {
		t.Fatalf("SHOW CONNECTION STATUS = %q", rows)
	}
	if rows := queryRows(t, c, `SHOW CONNECTION STATUS FOR "bob@example.com"`); len(rows) != 0 {
		t.Fatalf("bob's connections: %q", rows)
	}
	// bob has not connected: alice's token is never used for him.
	if u := signInURL(t, gwURL, e2eToken(t, s, "bob@example.com", "coding-agent")); u == "" {
		t.Fatal("bob got no sign-in URL")
	}
}

// signInURL sends an initialize (the first message that needs the
// upstream credential) and returns the sign-in URL of the
// JSON-RPC error that asks the user to connect their account.
func signInURL(t *testing.T, gwURL, token string) string {
	t.Helper()
	status, body := rawPOST(t, gwURL, token, `{"jsonrpc":"2.0","id":9,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`)
	var rpc struct {
		Error struct {
			Message string `json:"message"`
			Data    struct {
				SignInURL string `json:"signInUrl"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &rpc); err != nil || rpc.Error.Data.SignInURL == "" {
		t.Fatalf("initialize before connecting: %d %s", status, body)
	}
	return rpc.Error.Data.SignInURL
}

func get(t *testing.T, c *http.Client, u string) string {
	t.Helper()
	resp, err := c.Get(u)
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

// approveSignIn walks alice's browser through a per-user OAuth sign-in:
// the consent page at signIn, "approve" posted to connect/oauth/connect,
// the development IdP's login at issuer when it asks; it returns the last
// page (Mandate's callback says "connected").
func approveSignIn(t *testing.T, signIn, connect, issuer string) []byte {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	page := get(t, browser, signIn)
	form := url.Values{"action": {"approve"}}
	for _, m := range hiddenInput.FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	resp, err := browser.PostForm(connect+"/oauth/connect", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(body), `name="authRequestID"`) { // the provider's login form
		var id string
		for _, m := range hiddenInput.FindAllStringSubmatch(string(body), -1) {
			if m[1] == "authRequestID" {
				id = m[2]
			}
		}
		body = []byte(get(t, browser, issuer+"/login?authRequestID="+url.QueryEscape(html.UnescapeString(id))+"&user=alice%40example.com"))
	}
	return body
}
