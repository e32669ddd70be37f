package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// TestMigrateToPostgres: an embedded installation with grants, a
// connection with a sealed secret, model services, an access token and
// audit rows is copied by `mandate migrate` into PostgreSQL; mandate serve
// --store postgres:// on the copy shows the same SHOW GRANTS and DESCRIBE,
// publishes the same JWKS, calls upstreams with the sealed secrets,
// accepts the access token, and the audit rows are in PostgreSQL's event
// stream. Migrating a data directory in use is refused; migrating twice
// finds nothing left to do.
func TestMigrateToPostgres(t *testing.T) {
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey = e2eOpenAIKey
	up := newMCPUpstream(t)
	const bearer = "ghp_migrated_connection_secret_0123456789"
	src := startServer(t, serverOpts{args: []string{"--dev"}})
	a := src.admin(t)
	mustExec(t, a,
		`CREATE GROUP analysts`,
		`CREATE USER "alice@example.com"`,
		`ALTER GROUP analysts ADD USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'shared_principal', bearer_token '`+bearer+`')`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO analysts`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "coding-agent"`,
		`CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url '`+fakeURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00')`,
		`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=100')`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO analysts`)
	var tok string
	if err := a.QueryRow(t.Context(), `CREATE ACCESS TOKEN FOR USER "alice@example.com"`).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	chat := `{"model":"frontier","max_tokens":20,"messages":[{"role":"user","content":"before the move"}]}`
	if resp, body := llmPost(t, "http://"+src.httpAddr+"/llm", "/v1/chat/completions", tok, chat); resp.StatusCode != 200 {
		t.Fatalf("LLM call before: %d %s", resp.StatusCode, body)
	}
	queries := []string{`SHOW GRANTS ON CONNECTION gh`, `DESCRIBE CONNECTION gh`, `DESCRIBE MODEL SERVICE frontier`,
		`DESCRIBE MODEL PROVIDER SERVICE openai_prod`, `SHOW GROUPS`, `SHOW ACCESS TOKENS`}
	before := map[string][]string{}
	for _, q := range queries {
		before[q] = queryRows(t, a, q)
	}
	var auditRows int
	if err := a.QueryRow(t.Context(), `SELECT count(*) FROM system.access.audit`).Scan(&auditRows); err != nil || auditRows < 10 {
		t.Fatalf("audit rows before: %d, %v", auditRows, err)
	}
	jwks := getBody(t, "http://"+src.httpAddr+"/.well-known/jwks.json")

	pg := pgtest.Start(t, pgtest.Options{})
	pg.CreateDatabase(t, "target")
	url := pg.URL("target")
	if _, errOut, code := runBinary(t, nil, "migrate", "--from", src.dataDir, "--to", url); code == 0 || !strings.Contains(errOut, "in use") {
		t.Fatalf("migrate while serve runs: exit %d, %s", code, errOut)
	}
	a.Close(t.Context())
	src.stop(t)
	out, errOut, code := runBinary(t, nil, "migrate", "--from", src.dataDir, "--to", url)
	if code != 0 {
		t.Fatalf("migrate: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"upstream-signing-keys.json", "devidp-signing-key.json", "node-token", "audit events:", "MANDATE_MASTER_KEY"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("migrate:\n%s", out)
	if out, errOut, code := runBinary(t, nil, "migrate", "--from", src.dataDir, "--to", url); code != 0 || !strings.Contains(out, "nothing left to migrate") {
		t.Fatalf("second migrate: exit %d, %s%s", code, out, errOut)
	}

	key, err := os.ReadFile(filepath.Join(src.dataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	dst := startServer(t, serverOpts{args: []string{"--dev", "--store", url}, env: []string{"MANDATE_MASTER_KEY=" + strings.TrimSpace(string(key))}})
	b := dst.admin(t)
	for _, q := range queries {
		if got := queryRows(t, b, q); !slices.Equal(got, before[q]) {
			t.Errorf("%s after the move:\n%q\nbefore:\n%q", q, got, before[q])
		}
	}
	if got := getBody(t, "http://"+dst.httpAddr+"/.well-known/jwks.json"); got != jwks {
		t.Errorf("JWKS after the move:\n%s\nbefore:\n%s", got, jwks)
	}
	// The sealed secrets open: the model provider's key and the
	// connection's bearer token reach their upstreams.
	if resp, body := llmPost(t, "http://"+dst.httpAddr+"/llm", "/v1/chat/completions", tok, chat); resp.StatusCode != 200 {
		t.Fatalf("LLM call with the migrated access token: %d %s", resp.StatusCode, body)
	}
	sess, err := mcpConnect(t, "http://"+dst.httpAddr+"/mcp/gh", e2eToken(t, dst, "alice@example.com", "coding-agent"))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
		t.Fatalf("MCP call after the move: %+v %v", res, err)
	}
	if auths := up.seenAuths(); auths[len(auths)-1] != "Bearer "+bearer {
		t.Fatalf("the upstream saw %q, want the migrated bearer token", auths[len(auths)-1])
	}
	// The audit rows are in PostgreSQL's event stream.
	conn := pg.Connect(t, "target")
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM mandate_views.system_access_audit`).Scan(&n); err != nil || n < auditRows {
		t.Fatalf("audit rows in PostgreSQL: %d, %v; the source had %d", n, err, auditRows)
	}
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM mandate_views.system_ai_gateway_usage WHERE status_code = 200`).Scan(&n); err != nil || n < 1 {
		t.Fatalf("usage rows in PostgreSQL: %d, %v", n, err)
	}
}
