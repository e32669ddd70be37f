package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuthorizationAPI: the binary serves /api/v1/authorize behind the node
// token, answers with the on-behalf-of rule and a revision, and never
// answers a request for a newer revision from an older snapshot.
func TestAuthorizationAPI(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE GROUP "data-analysts"`,
		`CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw'`,
		`ALTER GROUP "data-analysts" ADD USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url 'https://mcp.github.example/mcp')`,
		`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts"`,
		`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "coding-agent"`)
	var rev int64
	if err := c.QueryRow(t.Context(), `SHOW REVISION`).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(s.dataDir, "node-token"))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(s.dataDir, "node-token")); st.Mode().Perm() != 0o600 {
		t.Errorf("node-token mode %v, want 0600", st.Mode().Perm())
	}
	post := func(token, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+s.httpAddr+"/api/v1/authorize", bytes.NewBufferString(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	body := func(subject, actor string) string {
		b, _ := json.Marshal(map[string]any{"subject": subject, "actor": actor, "privilege": "USE_CONNECTION",
			"securable": map[string]any{"type": "CONNECTION", "name": "my_github_mcp"}, "at_least_revision": rev})
		return string(b)
	}
	token := strings.TrimSpace(string(tok))
	if code, _ := post("", body("alice@example.com", "coding-agent")); code != http.StatusUnauthorized {
		t.Fatalf("without the node token: %d, want 401", code)
	}
	if code, _ := post("wrong-token-wrong-token", body("alice@example.com", "coding-agent")); code != http.StatusUnauthorized {
		t.Fatalf("with a wrong token: %d, want 401", code)
	}
	code, out := post(token, body("alice@example.com", "coding-agent"))
	if code != 200 || out["allowed"] != true || out["revision"].(float64) < float64(rev) {
		t.Fatalf("alice via coding-agent: %d %v", code, out)
	}
	mustExec(t, c, `REVOKE USE_CONNECTION ON CONNECTION my_github_mcp FROM "coding-agent"`)
	if err := c.QueryRow(t.Context(), `SHOW REVISION`).Scan(&rev); err != nil {
		t.Fatal(err)
	}
	code, out = post(token, body("alice@example.com", "coding-agent"))
	if code != 200 || out["allowed"] != false || !strings.Contains(out["reason"].(string), "coding-agent") {
		t.Fatalf("after the REVOKE (at_least_revision %d): %d %v", rev, code, out)
	}
	if code, _ := post(token, `{"subject": "alice@example.com", "privilege": "USE_CONNECTION"`); code != http.StatusBadRequest {
		t.Fatalf("malformed JSON: %d, want 400", code)
	}
}

// TestGatewaysOffWithoutIssuer: a server without --oidc-issuer (or --dev)
// serves no MCP or LLM calls, and tells a caller why instead of asking for
// the node token.
func TestGatewaysOffWithoutIssuer(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	for _, path := range []string{"/llm/v1/chat/completions", "/llm/v1/messages", "/mcp/demo_mcp"} {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", "http://"+s.httpAddr+path,
			strings.NewReader(`{"model":"frontier","messages":[{"role":"user","content":"hello"}]}`))
		req.Header.Set("Authorization", "Bearer mnd_0123456789012345678901234567890123456789012")
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(out.Error, "--oidc-issuer") {
			t.Errorf("POST %s without an issuer: %d %q, want 404 naming --oidc-issuer", path, resp.StatusCode, out.Error)
		}
	}
	if !strings.Contains(s.stderr.String(), "MCP and LLM gateways off") {
		t.Errorf("no warning that the gateways are off in the log:\n%s", s.stderr.String())
	}
}
