package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// mcpUpstream is an MCP server made with the official SDK that records the
// Authorization header of every request and checks it is a Mandate JWT.
type mcpUpstream struct {
	srv   *httptest.Server
	mu    sync.Mutex
	auths []string
}

type repoQuery struct {
	Query string `json:"query"`
}

func newMCPUpstream(t testing.TB) *mcpUpstream {
	t.Helper()
	u := &mcpUpstream{}
	s := sdk.NewServer(&sdk.Implementation{Name: "github-like", Version: "1.0.0"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "search_repos", Description: "searches repositories"},
		func(ctx context.Context, req *sdk.CallToolRequest, a repoQuery) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "found: " + a.Query}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "delete_repo", Description: "deletes a repository"},
		func(ctx context.Context, req *sdk.CallToolRequest, a repoQuery) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "deleted " + a.Query}}}, nil, nil
		})
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.auths = append(u.auths, r.Header.Get("Authorization"))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *mcpUpstream) seenAuths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...)
}

// bearerClient adds a bearer token to every request.
type bearerClient struct {
	token string
	base  http.RoundTripper
}

func (b *bearerClient) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

func e2eToken(t testing.TB, s *server, user, agent string) string {
	t.Helper()
	args := []string{"dev-token", "--data-dir", s.dataDir, "--user", user}
	if agent != "" {
		args = append(args, "--agent", agent)
	}
	out, errOut, code := runBinary(t, baseEnv(), args...)
	if code != 0 {
		t.Fatalf("mandate dev-token: exit %d: %s", code, errOut)
	}
	return strings.TrimSpace(out)
}

func mcpConnect(t testing.TB, url, token string) (*sdk.ClientSession, error) {
	t.Helper()
	c := sdk.NewClient(&sdk.Implementation{Name: "e2e-agent", Version: "1.0.0"}, nil)
	hc := &http.Client{Transport: &bearerClient{token: token, base: http.DefaultTransport}, Timeout: 30 * time.Second}
	return c.Connect(t.Context(), &sdk.StreamableClientTransport{Endpoint: url, HTTPClient: hc, MaxRetries: -1}, nil)
}

// TestMCPGatewayEndToEnd walks the product brief through the binary: an
// MCP server registered in SQL and granted to a group; alice calls it
// through coding-agent with the official MCP SDK; bob, an agent without
// its own grant and a revoked alice are refused; the upstream sees a
// Mandate JWT naming alice and the agent, never the inbound token.
func TestMCPGatewayEndToEnd(t *testing.T) {
	t.Parallel()
	up := newMCPUpstream(t)
	s := startServer(t, serverOpts{args: []string{"--dev"}})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE GROUP "data-analysts"`,
		`CREATE USER "alice@example.com"`,
		`CREATE USER "bob@example.com"`,
		`ALTER GROUP "data-analysts" ADD USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE SERVICE PRINCIPAL "rogue-agent"`,
		`CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'mandate_jwt', scopes 'repo read:org', include_tools 'search_*')`,
		`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts"`,
		`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "coding-agent"`)
	gw := "http://" + s.httpAddr
	url := gw + "/mcp/my_github_mcp"

	alice := e2eToken(t, s, "alice@example.com", "coding-agent")
	sess, err := mcpConnect(t, url, alice)
	if err != nil {
		t.Fatalf("alice via coding-agent: %v", err)
	}
	defer sess.Close()
	tools, err := sess.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) != 1 || tools.Tools[0].Name != "search_repos" {
		var names []string
		for _, tl := range tools.Tools {
			names = append(names, tl.Name)
		}
		t.Fatalf("tools/list = %v, want only search_repos (include_tools 'search_*')", names)
	}
	res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "mandate"}})
	if err != nil || res.IsError || len(res.Content) == 0 || res.Content[0].(*sdk.TextContent).Text != "found: mandate" {
		t.Fatalf("tools/call search_repos: %+v, %v", res, err)
	}
	if _, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "delete_repo", Arguments: map[string]any{"query": "x"}}); err == nil {
		t.Fatal("tools/call of the hidden delete_repo succeeded")
	}

	// The upstream saw Mandate's JWT for alice acting through coding-agent,
	// for its own audience, and never the inbound token.
	jwks := fetchJWKS(t, gw+"/.well-known/jwks.json")
	auths := up.seenAuths()
	if len(auths) == 0 {
		t.Fatal("the upstream saw no request")
	}
	for _, a := range auths {
		if strings.Contains(a, alice) {
			t.Fatal("the inbound token reached the upstream")
		}
		tok, ok := strings.CutPrefix(a, "Bearer ")
		if !ok {
			t.Fatalf("upstream Authorization %q is not a bearer token", a)
		}
		var std jwt.Claims
		var cl struct {
			Act struct {
				Sub string `json:"sub"`
			} `json:"act"`
			Scope string `json:"scope"`
		}
		parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
		if err != nil {
			t.Fatal(err)
		}
		if err := parsed.Claims(jwks, &std, &cl); err != nil {
			t.Fatalf("upstream token does not verify against the gateway's JWKS: %v", err)
		}
		if std.Subject != "alice@example.com" || cl.Act.Sub != "coding-agent" || !std.Audience.Contains(up.srv.URL) || cl.Scope != "repo read:org" {
			t.Fatalf("upstream token claims sub=%q act=%q aud=%v scope=%q (%s)", std.Subject, cl.Act.Sub, std.Audience, cl.Scope, payloadOf(tok))
		}
		if life := std.Expiry.Time().Sub(std.IssuedAt.Time()); life <= 0 || life > 5*time.Minute {
			t.Fatalf("upstream token lifetime %v, want at most 5 minutes", life)
		}
	}

	// bob is not in data-analysts: refused at connect (HTTP 403).
	if _, err := mcpConnect(t, url, e2eToken(t, s, "bob@example.com", "coding-agent")); err == nil {
		t.Fatal("bob was let in")
	}
	// rogue-agent has no grant of its own: refused even for alice.
	if _, err := mcpConnect(t, url, e2eToken(t, s, "alice@example.com", "rogue-agent")); err == nil {
		t.Fatal("alice through rogue-agent was let in")
	}
	status, body := rawPOST(t, url, e2eToken(t, s, "bob@example.com", "coding-agent"),
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`)
	if status != http.StatusForbidden || !strings.Contains(body, "bob@example.com") {
		t.Fatalf("bob's initialize: %d %s, want 403 naming bob", status, body)
	}
	if status, _ := rawPOST(t, url, "", `{"jsonrpc":"2.0","id":1,"method":"ping"}`); status != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", status)
	}
	// alice holds USE_CONNECTION through data-analysts, rogue-agent not at
	// all: the caller learns what is missing, not alice's group
	// memberships; the audit row keeps the whole derivation.
	status, body = rawPOST(t, url, e2eToken(t, s, "alice@example.com", "rogue-agent"),
		`{"jsonrpc":"2.0","id":"rogue-1","method":"ping"}`)
	if status != http.StatusForbidden || !strings.Contains(body, `actor \"rogue-agent\" lacks USE CONNECTION`) || strings.Contains(body, "data-analysts") {
		t.Fatalf("alice through rogue-agent: %d %s, want 403 naming only what rogue-agent lacks", status, body)
	}
	var rogueReason string
	if err := c.QueryRow(t.Context(), `SELECT reason FROM system.access.audit WHERE request_id = 'rogue-1'`).Scan(&rogueReason); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rogueReason, "data-analysts") || !strings.Contains(rogueReason, "rogue-agent") {
		t.Fatalf("audit reason %q lacks the derivation", rogueReason)
	}
	// A forwarded call is recorded in two phases (the request before it is
	// forwarded, the completion after) and shows as one row with its
	// outcome.
	rows, err := c.Query(t.Context(), `SELECT request_id, (response->>'status_code')::int, latency_ms, (request_params->>'upstream_status')::int
		FROM system.access.audit WHERE action_name = 'tools/call' AND user_identity = 'alice@example.com'`)
	if err != nil {
		t.Fatal(err)
	}
	perRequest := map[string]int{}
	for rows.Next() {
		var id string
		var st int
		var lat float64
		var up *int
		if err := rows.Scan(&id, &st, &lat, &up); err != nil {
			t.Fatal(err)
		}
		perRequest[id]++
		if st != http.StatusOK || lat <= 0 {
			t.Errorf("tools/call %s: status %d, latency %v: the completion is not merged", id, st, lat)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(perRequest) != 2 {
		t.Errorf("tools/call rows by request id: %v, want alice's two calls", perRequest)
	}
	for id, n := range perRequest {
		if n != 1 {
			t.Errorf("tools/call %s has %d rows", id, n)
		}
	}

	// Every message is in system.access.audit with both identities.
	var calls, denied int
	rows, err = c.Query(t.Context(), `SELECT action_name, user_identity, identity_metadata::text, decision, securable_name, reason
		FROM system.access.audit WHERE service_name = 'mcp' ORDER BY event_time`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var action, user, meta, decision, securable, reason string
		if err := rows.Scan(&action, &user, &meta, &decision, &securable, &reason); err != nil {
			t.Fatal(err)
		}
		// Unauthenticated requests are audited with the name as requested
		// (the connection is resolved after authentication).
		if securable != "system.ai.my_github_mcp" && (user != "" || securable != "my_github_mcp") {
			t.Errorf("audit securable %q (user %q, action %q)", securable, user, action)
		}
		if action == "tools/call" && user == "alice@example.com" && decision == "allow" {
			calls++
			if !strings.Contains(meta, "coding-agent") || !strings.Contains(meta, "alice@example.com") {
				t.Errorf("identity_metadata %s lacks run_by/run_as", meta)
			}
		}
		if user == "bob@example.com" && decision == "deny" && strings.Contains(reason, "bob@example.com") {
			denied++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if calls < 1 || denied < 1 {
		t.Fatalf("audit: %d allowed tools/call by alice, %d denials of bob; want both", calls, denied)
	}

	// After the REVOKE alice's next call is refused.
	mustExec(t, c, `REVOKE USE_CONNECTION ON CONNECTION my_github_mcp FROM "data-analysts"`)
	waitFor(t, 10*time.Second, "the REVOKE to reach the gateway", func() bool {
		_, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "again"}})
		return err != nil
	})
}

func rawPOST(t testing.TB, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", url, bytes.NewBufferString(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func fetchJWKS(t testing.TB, url string) *jose.JSONWebKeySet {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ks jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&ks); err != nil || len(ks.Keys) == 0 {
		t.Fatalf("JWKS at %s: %v (%d keys)", url, err, len(ks.Keys))
	}
	return &ks
}

func payloadOf(tok string) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "not a JWT"
	}
	b, _ := base64.RawURLEncoding.DecodeString(parts[1])
	return string(b)
}

// TestGatewaysWithoutIssuer: a server without --oidc-issuer (or --dev)
// serves its MCP and LLM gateways on Mandate access tokens alone, refuses
// a JWT saying why, and says so in its log.
func TestGatewaysWithoutIssuer(t *testing.T) {
	t.Parallel()
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey = e2eOpenAIKey
	up := newMCPUpstream(t)
	s := startServer(t, serverOpts{})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "claude-code"`,
		`CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url '`+fakeURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00')`,
		`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=100')`,
		`CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'mandate_jwt')`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "alice@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "claude-code"`,
		`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "claude-code"`)
	waitSnapshotCurrent(t, s)
	var tok string
	if err := c.QueryRow(t.Context(), `CREATE ACCESS TOKEN FOR USER "alice@example.com" VIA "claude-code"`).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	// A well-formed JWT of some identity provider, which this server has none of.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	idpJWT, err := jwt.Signed(signer).Claims(map[string]any{"iss": "https://idp.example", "sub": "alice@example.com",
		"aud": "http://" + s.httpAddr, "exp": time.Now().Add(time.Hour).Unix()}).Serialize()
	if err != nil {
		t.Fatal(err)
	}

	chat := func(bearer string) (int, string) {
		t.Helper()
		return rawPOST(t, "http://"+s.httpAddr+"/llm/v1/chat/completions", bearer,
			`{"model":"frontier","max_tokens":10,"messages":[{"role":"user","content":"hello"}]}`)
	}
	if code, body := chat(tok); code != http.StatusOK || !strings.Contains(body, `"chat.completion"`) {
		t.Fatalf("LLM call with an access token: %d %s", code, body)
	}
	if code, body := chat(idpJWT); code != http.StatusUnauthorized || !strings.Contains(body, "no identity provider is configured") {
		t.Fatalf("LLM call with a JWT: %d %s, want 401 saying no identity provider is configured", code, body)
	}

	sess, err := mcpConnect(t, "http://"+s.httpAddr+"/mcp/my_github_mcp", tok)
	if err != nil {
		t.Fatalf("MCP with an access token: %v", err)
	}
	defer sess.Close()
	res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "mandate"}})
	if err != nil || res.IsError || len(res.Content) == 0 || res.Content[0].(*sdk.TextContent).Text != "found: mandate" {
		t.Fatalf("MCP tools/call with an access token: %+v, %v", res, err)
	}
	if code, body := rawPOST(t, "http://"+s.httpAddr+"/mcp/my_github_mcp", idpJWT, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); code != http.StatusUnauthorized {
		t.Fatalf("MCP with a JWT: %d %s, want 401", code, body)
	}
	if !strings.Contains(s.stderr.String(), "accept Mandate access tokens only") {
		t.Errorf("no warning in the log that the gateways take access tokens only:\n%s", s.stderr.String())
	}
}
