package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"syscall"

	"encoding/json"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/catalog/proctest"
)

// TestMCPTokenExchange: a token_exchange connection. The gateway, as a
// client of the development identity provider (playing the enterprise
// IdP), exchanges alice's inbound token for one issued to the upstream;
// the upstream sees alice with coding-agent as actor, its own audience,
// never the inbound token; repeated calls reuse one exchange.
func TestMCPTokenExchange(t *testing.T) {
	t.Parallel()
	up := newMCPUpstream(t)
	s := startServer(t, serverOpts{args: []string{"--dev"}})
	var st struct {
		Issuer       string `json:"issuer"`
		ClientSecret string `json:"client_secret"`
	}
	b, err := os.ReadFile(filepath.Join(s.dataDir, "dev-idp.json"))
	if err != nil || json.Unmarshal(b, &st) != nil || st.ClientSecret == "" {
		t.Fatalf("dev-idp.json: %v", err)
	}
	c := s.admin(t)
	mustExec(t, c,
		`CREATE USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'token_exchange', scopes 'repo',
		   token_endpoint '`+st.Issuer+`/oauth/token', client_id 'mandate-gateway', client_secret '`+st.ClientSecret+`')`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "coding-agent"`)
	alice := e2eToken(t, s, "alice@example.com", "coding-agent")
	sess, err := mcpConnect(t, "http://"+s.httpAddr+"/mcp/gh", alice)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for i := range 5 {
		if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
			t.Fatalf("call %d: %+v %v", i, res, err)
		}
	}
	// A new inbound token of the same user and agent (an agent's token
	// refresh) reuses the cached exchange.
	sess2, err := mcpConnect(t, "http://"+s.httpAddr+"/mcp/gh", e2eToken(t, s, "alice@example.com", "coding-agent"))
	if err != nil {
		t.Fatal(err)
	}
	defer sess2.Close()
	if res, err := sess2.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
		t.Fatalf("call with a second inbound token: %+v %v", res, err)
	}
	jwks := fetchJWKS(t, st.Issuer+"/keys")
	distinct := map[string]bool{}
	for _, a := range up.seenAuths() {
		if strings.Contains(a, alice) {
			t.Fatal("the inbound token reached the upstream")
		}
		tok := strings.TrimPrefix(a, "Bearer ")
		distinct[tok] = true
		sub, act, aud := jwtClaims(t, tok, jwks)
		if sub != "alice@example.com" || act != "coding-agent" || aud != up.srv.URL {
			t.Fatalf("exchanged token: sub=%q act=%q aud=%q (%s)", sub, act, aud, payloadOf(tok))
		}
	}
	if len(distinct) != 1 {
		t.Fatalf("%d distinct upstream tokens for one user, agent and connection (two inbound tokens): want one exchange", len(distinct))
	}
}

// TestGatewayNode runs `mandate gateway` against the catalog of
// `mandate serve`: calls pass while granted and are refused after a REVOKE
// within the node's staleness bound.
func TestGatewayNode(t *testing.T) {
	t.Parallel()
	up := newMCPUpstream(t)
	s := startServer(t, serverOpts{args: []string{"--dev"}})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'mandate_jwt')`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "coding-agent"`)
	node, addr := startOnFreeAddr(t, func(addr string) []string {
		return []string{"gateway", "--catalog", "http://" + s.httpAddr,
			"--node-token-file", filepath.Join(s.dataDir, "node-token"), "--http-addr", addr,
			"--oidc-issuer", "http://" + s.httpAddr + "/oidc", "--public-url", "http://" + s.httpAddr,
			"--data-dir", nodeDataDir(t, s.dataDir, ""), "--max-staleness", "2s"}
	}, "Mandate gateway is ready")
	_ = node
	// The node's public URL is the catalog's here so that dev tokens (whose
	// audience is the serve process's URL) are accepted by both.
	alice := e2eToken(t, s, "alice@example.com", "coding-agent")
	sess, err := mcpConnect(t, "http://"+addr+"/mcp/gh", alice)
	if err != nil {
		t.Fatalf("alice through the node: %v", err)
	}
	defer sess.Close()
	if res, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}}); err != nil || res.IsError {
		t.Fatalf("call through the node: %+v %v", res, err)
	}
	// The node's audit records and the decisions it asked for reached the
	// catalog.
	waitFor(t, 10*time.Second, "the node's audit records in system.access.audit", func() bool {
		var mcpCalls, decisions int
		if err := c.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE service_name = 'mcp' AND action_name = 'tools/call' AND decision = 'allow'),
			count(*) FILTER (WHERE service_name = 'authorization' AND user_identity = 'alice@example.com')
			FROM system.access.audit`).Scan(&mcpCalls, &decisions); err != nil {
			t.Fatal(err)
		}
		return mcpCalls >= 1 && decisions >= 1
	})
	mustExec(t, c, `REVOKE USE_CONNECTION ON CONNECTION gh FROM "coding-agent"`)
	start := time.Now()
	waitFor(t, 10*time.Second, "the node to enforce the REVOKE", func() bool {
		_, err := sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "q"}})
		return err != nil
	})
	t.Logf("REVOKE enforced by the node after %v", time.Since(start))
}

// jwtClaims verifies tok against jwks and returns sub, act.sub and aud.
func jwtClaims(t testing.TB, tok string, jwks *jose.JSONWebKeySet) (sub, act, aud string) {
	t.Helper()
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA, jose.PS256})
	if err != nil {
		t.Fatalf("upstream token: %v", err)
	}
	var std jwt.Claims
	var ext struct {
		Act struct {
			Sub string `json:"sub"`
		} `json:"act"`
	}
	if err := parsed.Claims(jwks, &std, &ext); err != nil {
		t.Fatalf("upstream token does not verify: %v", err)
	}
	return std.Subject, ext.Act.Sub, strings.Join(std.Audience, " ")
}

// process is a started mandate subprocess other than serve.
type process struct {
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   <-chan struct{} // closed when the process has exited
}

// startProcess starts the binary with args and waits until its stdout
// contains ready; it is stopped with SIGTERM when the test ends.
func startProcess(t testing.TB, args []string, ready string) *process {
	t.Helper()
	p, err := launchProcess(t, args, ready)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startOnFreeAddr starts the binary with args(addr), addr a free loopback
// address, as startProcess does. Another process may take addr before the
// binary binds it: a start that fails so is retried on another address.
func startOnFreeAddr(t testing.TB, args func(addr string) []string, ready string) (*process, string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr := freeAddrs(t, 1)[0]
		p, err := launchProcess(t, args(addr), ready)
		if err == nil {
			return p, addr
		}
		if attempt < 5 && p.exited() && strings.Contains(p.stderr.String(), "address already in use") {
			t.Logf("port taken, retrying: %s", p.stderr.String())
			continue
		}
		t.Fatal(err)
	}
}

// launchProcess is startProcess returning its error: the process has
// exited (or was killed) when it is not nil.
func launchProcess(t testing.TB, args []string, ready string) (*process, error) {
	t.Helper()
	p := &process{cmd: exec.Command(mandateBinary(t), args...)}
	p.cmd.Env = baseEnv()
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	// Killed if this test process dies without stopping it (-timeout).
	child, err := proctest.Start(p.cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	p.done = child.Done()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	deadline := time.Now().Add(startTimeout)
	for !strings.Contains(p.stdout.String(), ready) {
		select {
		case <-p.done:
			return p, fmt.Errorf("%v exited: %s\n%s", args[0], p.stdout.String(), p.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Kill()
			<-p.done
			return p, fmt.Errorf("%v not ready: %s\n%s", args[0], p.stdout.String(), p.stderr.String())
		}
	}
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// TestMCPUpstreamFailures: an upstream that is down or answers 5xx gives
// the agent a clear JSON-RPC error through the binary, never a hang. An
// upstream that refuses the cached mandate_jwt (it rotated its trust, say)
// gets one retry with a freshly minted one, not a 502 until the token
// expires.
func TestMCPUpstreamFailures(t *testing.T) {
	t.Parallel()
	down := freeAddrs(t, 1)[0] // nothing listens there once freeAddrs returns
	failing := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream exploded", http.StatusInternalServerError)
	}))
	var refusedMu sync.Mutex
	var refused []string // the credentials the upstream turned down
	var rejectNext atomic.Bool
	picky := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rejectNext.CompareAndSwap(true, false) {
			refusedMu.Lock()
			refused = append(refused, r.Header.Get("Authorization"))
			refusedMu.Unlock()
			http.Error(w, "token no longer accepted", http.StatusUnauthorized)
			return
		}
		refusedMu.Lock()
		again := slices.Contains(refused, r.Header.Get("Authorization"))
		refusedMu.Unlock()
		if again {
			http.Error(w, "the refused token came back", http.StatusUnauthorized)
			return
		}
		fastUpstream(w, r)
	}))
	s := startServer(t, serverOpts{args: []string{"--dev"}})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION down TYPE MCP OPTIONS (url 'http://`+down+`/mcp')`,
		`CREATE CONNECTION failing TYPE MCP OPTIONS (url '`+failing+`/mcp')`,
		`CREATE CONNECTION picky TYPE MCP OPTIONS (url '`+picky+`/mcp', auth_mode 'mandate_jwt')`,
		`GRANT USE_CONNECTION ON CATALOG system TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CATALOG system TO "coding-agent"`)
	token := e2eToken(t, s, "alice@example.com", "coding-agent")
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"e2e","version":"1"}}}`
	for _, tc := range []struct{ conn, want string }{
		{"down", "upstream system.ai.down unavailable"},
		{"failing", "upstream system.ai.failing unavailable: it answered HTTP 500"},
	} {
		status, body := rawPOST(t, "http://"+s.httpAddr+"/mcp/"+tc.conn, token, init)
		if status < 500 || !strings.Contains(body, tc.want) || !strings.Contains(body, `"jsonrpc":"2.0"`) {
			t.Errorf("%s: %d %s, want a 5xx JSON-RPC error containing %q", tc.conn, status, body, tc.want)
		}
	}

	// The first call caches a mandate_jwt; the upstream then refuses it
	// once: the next call still succeeds, with a new token.
	pickyURL := "http://" + s.httpAddr + "/mcp/picky"
	client := &http.Client{Timeout: 10 * time.Second}
	if err := callTool(client, pickyURL, token, 100); err != nil {
		t.Fatal(err)
	}
	rejectNext.Store(true)
	if err := callTool(client, pickyURL, token, 101); err != nil {
		t.Fatalf("after the upstream refused the cached credential: %v", err)
	}
	if err := callTool(client, pickyURL, token, 102); err != nil {
		t.Fatalf("with the renewed credential: %v", err)
	}
	refusedMu.Lock()
	n := len(refused)
	refusedMu.Unlock()
	if n != 1 {
		t.Fatalf("the upstream refused %d credentials, want 1", n)
	}
	var retried string
	if err := c.QueryRow(t.Context(), `SELECT request_params->>'credential_retried' FROM system.access.audit WHERE request_id = '101'`).Scan(&retried); err != nil || retried != "true" {
		t.Fatalf("audit of the retried call: %q, %v", retried, err)
	}
}

// nodeDataDir is a gateway node's data directory holding the catalog's
// master key (a copy of catalogDir/master.key, or key when set): nodes
// seal what they keep in the catalog's key store with it.
func nodeDataDir(t testing.TB, catalogDir, key string) string {
	t.Helper()
	if key == "" {
		b, err := os.ReadFile(filepath.Join(catalogDir, "master.key"))
		if err != nil {
			t.Fatal(err)
		}
		key = string(b)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "master.key"), []byte(strings.TrimSpace(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
