package api_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/enforce/api"
)

// newCatalog opens a catalog holding system.ai.my_github_mcp (with a
// bearer token), system.ai."My Tools" and main.tools.jira.
func newCatalog(t *testing.T) *catalog.Service {
	svc, _ := newCatalogStore(t)
	return svc
}

// newCatalogStore is newCatalog with its store.
func newCatalogStore(t *testing.T) (*catalog.Service, *memstore.Store) {
	t.Helper()
	kr, err := catalog.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: st, Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	_, err = svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"},
		func(tx *catalog.Tx) error {
			if err := tx.CreateConnection([]string{"system", "ai", "my_github_mcp"}, "MCP", [][2]string{
				{"url", "https://mcp.github.example/mcp"}, {"auth_mode", "shared_principal"},
				{"bearer_token", "ghp_s3cret"}, {"scopes", "repo read:org"}}, false, nil); err != nil {
				return err
			}
			if err := tx.CreateConnection([]string{"system", "ai", "My Tools"}, "MCP", [][2]string{
				{"url", "https://tools.example/mcp"}}, false, nil); err != nil {
				return err
			}
			if err := tx.CreateCatalog("main", false, nil); err != nil {
				return err
			}
			if err := tx.CreateSchema([]string{"main", "tools"}, false, nil); err != nil {
				return err
			}
			return tx.CreateConnection([]string{"main", "tools", "jira"}, "MCP", [][2]string{
				{"url", "https://jira.example/mcp"}, {"auth_mode", "token_exchange"}, {"client_id", "gw"},
				{"client_secret", "cs-123"}, {"token_endpoint", "https://idp.example/token"}}, false, nil)
		})
	if err != nil {
		t.Fatal(err)
	}
	return svc, st
}

func TestConnectionResolver(t *testing.T) {
	svc := newCatalog(t)
	resolve := api.ConnectionResolver(svc)
	ctx := t.Context()
	for name, want := range map[string]string{
		"my_github_mcp":                 "system.ai.my_github_mcp",
		"MY_GITHUB_MCP":                 "system.ai.my_github_mcp",
		"ai.my_github_mcp":              "system.ai.my_github_mcp",
		"system.ai.my_github_mcp":       "system.ai.my_github_mcp",
		`"system"."ai"."my_github_mcp"`: "system.ai.my_github_mcp",
		`"My Tools"`:                    `system.ai."My Tools"`,
		`system.ai."My Tools"`:          `system.ai."My Tools"`,
		"main.tools.jira":               "main.tools.jira",
	} {
		info, err := resolve(ctx, name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if info.Name != want || info.Revision != svc.Revision() {
			t.Errorf("%s resolved to %s at %d, want %s at %d", name, info.Name, info.Revision, want, svc.Revision())
		}
	}
	info, err := resolve(ctx, "my_github_mcp")
	if err != nil {
		t.Fatal(err)
	}
	if info.URL != "https://mcp.github.example/mcp" || info.AuthMode != "shared_principal" ||
		info.Options["scopes"] != "repo read:org" || info.Secrets["bearer_token"] != "ghp_s3cret" {
		t.Fatalf("info = %+v", info)
	}
	if _, leaked := info.Options["bearer_token"]; leaked {
		t.Fatal("a secret among the plain options")
	}
	for name, code := range map[string]catalog.Code{
		"nope":                 catalog.CodeNotFound,
		`"MY_GITHUB_MCP"`:      catalog.CodeNotFound, // quoted: matched as written
		"main.other.jira":      catalog.CodeNotFound,
		"a.b.c.d":              catalog.CodeInvalidArgument,
		"":                     catalog.CodeInvalidArgument,
		"system..x":            catalog.CodeInvalidArgument,
		`"open`:                catalog.CodeInvalidArgument,
		`system.ai.my"github"`: catalog.CodeInvalidArgument,
		`"a"b`:                 catalog.CodeInvalidArgument,
		"x.":                   catalog.CodeInvalidArgument,
	} {
		if _, err := resolve(ctx, name); !catalog.IsCode(err, code) {
			t.Errorf("%q: %v, want code %d", name, err, code)
		}
	}
}

func TestConnectionsAPI(t *testing.T) {
	svc := newCatalog(t)
	srv := newServer(t, newFake(), api.Options{Connections: api.ConnectionResolver(svc)})
	get := func(name, auth string) response {
		return call(t, srv, http.MethodGet, api.ConnectionsPath+url.PathEscape(name), auth, nil)
	}
	r := get("main.tools.jira", "Bearer "+token)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store (the answer holds secrets)", cc)
	}
	var info api.ConnectionInfo
	r.json(t, &info)
	if info.Name != "main.tools.jira" || info.URL != "https://jira.example/mcp" || info.AuthMode != "token_exchange" ||
		info.Options["client_id"] != "gw" || info.Secrets["client_secret"] != "cs-123" || info.Revision != svc.Revision() {
		t.Fatalf("answer %+v", info)
	}
	r = get(`"My Tools"`, "Bearer "+token)
	var tools api.ConnectionInfo
	r.json(t, &tools)
	if r.status != http.StatusOK || tools.Name != `system.ai."My Tools"` || tools.AuthMode != "none" || len(tools.Secrets) != 0 || tools.Secrets == nil {
		t.Fatalf("status %d, answer %s", r.status, r.body)
	}

	for _, tc := range []struct {
		name, auth string
		status     int
	}{
		{"my_github_mcp", "", http.StatusUnauthorized},
		{"my_github_mcp", "Bearer wrong-token-wrong-token", http.StatusUnauthorized},
		{"nope", "Bearer " + token, http.StatusNotFound},
		{"a.b.c.d", "Bearer " + token, http.StatusBadRequest},
		{"", "Bearer " + token, http.StatusBadRequest},
	} {
		r := get(tc.name, tc.auth)
		if r.status != tc.status {
			t.Errorf("%q: status %d, want %d: %s", tc.name, r.status, tc.status, r.body)
			continue
		}
		msg := r.errorText(t)
		if strings.Contains(string(r.body), "ghp_s3cret") {
			t.Errorf("%q: the secret is in an error answer: %s", tc.name, msg)
		}
	}
	r = call(t, srv, http.MethodPost, api.ConnectionsPath+"my_github_mcp", "Bearer "+token, strings.NewReader("{}"))
	if r.status != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d", r.status)
	}
	// Not configured: 503.
	bare := newServer(t, newFake(), api.Options{})
	if r := call(t, bare, http.MethodGet, api.ConnectionsPath+"x", "Bearer "+token, nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("without Options.Connections: status %d", r.status)
	}
}

// A secret that does not decrypt (wrong master key) is a 500 without
// details, never a connection without its secrets.
func TestConnectionsAPIUndecryptable(t *testing.T) {
	svc, st := newCatalogStore(t)
	resolve := api.ConnectionResolver(svc)
	other, err := catalog.NewKeyring([]byte("another key, 32 bytes long......"))
	if err != nil {
		t.Fatal(err)
	}
	svc2, err := catalog.Open(t.Context(), catalog.Options{Store: st, Keyring: other})
	if err != nil {
		t.Fatal(err)
	}
	defer svc2.Close()
	srv := newServer(t, newFake(), api.Options{Connections: api.ConnectionResolver(svc2)})
	r := call(t, srv, http.MethodGet, api.ConnectionsPath+"my_github_mcp", "Bearer "+token, nil)
	if r.status != http.StatusInternalServerError || r.errorText(t) != "internal error" {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if _, err := resolve(context.Background(), "my_github_mcp"); err != nil {
		t.Fatalf("the right key: %v", err)
	}
	if info, err := api.ConnectionResolver(svc2)(context.Background(), "My Tools"); err != nil || len(info.Secrets) != 0 {
		t.Fatalf("a connection without secrets: %+v %v", info, err)
	}
}

// TestConnectionSecretsNeverInCleartext: decrypted secrets go only over
// TLS or to a loopback peer; a plain-HTTP request from another address is
// 403 before anything is resolved, unless the listener is declared to sit
// behind a TLS-terminating proxy.
func TestConnectionSecretsNeverInCleartext(t *testing.T) {
	svc := newCatalog(t)
	get := func(opts api.Options, remote string, tlsOn bool) (int, string) {
		opts.Token = token
		opts.Connections = api.ConnectionResolver(svc)
		h := api.NewHandler(newFake(), opts)
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, api.ConnectionsPath+"my_github_mcp", nil)
		req.RemoteAddr = remote
		if !tlsOn {
			req.TLS = nil
		} else {
			req.TLS = &tls.ConnectionState{HandshakeComplete: true}
		}
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	cases := []struct {
		name   string
		opts   api.Options
		remote string
		tls    bool
		want   int
	}{
		{"cleartext from another host", api.Options{}, "203.0.113.5:40000", false, http.StatusForbidden},
		{"cleartext from an IPv6 host", api.Options{}, "[2001:db8::5]:40000", false, http.StatusForbidden},
		{"TLS from another host", api.Options{}, "203.0.113.5:40000", true, http.StatusOK},
		{"cleartext from loopback", api.Options{}, "127.0.0.1:40000", false, http.StatusOK},
		{"cleartext from IPv6 loopback", api.Options{}, "[::1]:40000", false, http.StatusOK},
		{"behind a TLS proxy", api.Options{AllowCleartextSecrets: true}, "203.0.113.5:40000", false, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := get(c.opts, c.remote, c.tls)
			if code != c.want {
				t.Fatalf("status %d %s, want %d", code, body, c.want)
			}
			if code == http.StatusForbidden && (strings.Contains(body, "ghp_s3cret") || !strings.Contains(body, "only over TLS")) {
				t.Fatalf("refusal %s", body)
			}
			if code == http.StatusOK && !strings.Contains(body, "ghp_s3cret") {
				t.Fatalf("answer without the secret: %s", body)
			}
		})
	}
}

// TestNodeTokenFailuresAudited: a request without the right node token
// is audited through Options.AuthFailures.
func TestNodeTokenFailuresAudited(t *testing.T) {
	var got []catalog.AuditEvent
	rec := catalog.AuditRecorderFunc(func(_ context.Context, ev catalog.AuditEvent) error {
		got = append(got, ev)
		return nil
	})
	srv := newServer(t, newFake(), api.Options{AuthFailures: rec})
	call(t, srv, http.MethodGet, api.RevisionPath, "Bearer wrong", nil)
	call(t, srv, http.MethodGet, api.RevisionPath, "", nil)
	call(t, srv, http.MethodGet, api.RevisionPath, "Bearer "+token, nil)
	if len(got) != 2 || got[0].Reason != "invalid node token" || got[1].Reason != "missing node token" ||
		got[0].StatusCode != 401 || got[0].Decision != "deny" || got[0].SourceIP != "127.0.0.1" || !catalog.IsAuthFailure(&got[0]) {
		t.Fatalf("audited %+v", got)
	}
}
