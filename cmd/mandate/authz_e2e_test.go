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
