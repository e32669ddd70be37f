package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/gateway/devidp"
)

const devTokenAudience = "http://127.0.0.1:8470/mcp"

// startDevIdP serves the development provider on dataDir from an httptest
// server (issuer URL/oidc) and returns that server.
func startDevIdP(t *testing.T, dataDir string) *httptest.Server {
	t.Helper()
	var h atomic.Pointer[http.Handler]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	p, err := devidp.New(context.Background(), devidp.Config{Issuer: srv.URL + "/oidc", DataDir: dataDir,
		Audience: devTokenAudience, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	mux := http.NewServeMux()
	mux.Handle("/oidc/", p.Handler())
	var hh http.Handler = mux
	h.Store(&hh)
	return srv
}

// verifiedClaims checks token against the JWKS at srv and returns its claims.
func verifiedClaims(t *testing.T, srv *httptest.Server, token string) map[string]any {
	t.Helper()
	resp, err := http.Get(srv.URL + "/oidc" + devidp.PathJWKS)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("%q is not a JWT: %v", token, err)
	}
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatal("the token's kid is not in the JWKS")
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func runDevTokenArgs(args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := runDevToken(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestDevToken(t *testing.T) {
	dir := t.TempDir()
	srv := startDevIdP(t, dir)
	audOf := func(c map[string]any) []string {
		switch a := c["aud"].(type) {
		case string:
			return []string{a}
		case []any:
			var s []string
			for _, v := range a {
				s = append(s, v.(string))
			}
			return s
		}
		return nil
	}

	// The agent on the user's behalf.
	out, _, err := runDevTokenArgs("--data-dir", dir, "--user", "alice@example.com", "--agent", "coding-agent")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("stdout is not one line: %q", out)
	}
	c := verifiedClaims(t, srv, strings.TrimSpace(out))
	act, _ := c["act"].(map[string]any)
	if c["sub"] != "alice@example.com" || act["sub"] != "coding-agent" || c["email"] != "alice@example.com" ||
		!slices.Equal(audOf(c), []string{devTokenAudience}) {
		t.Errorf("claims: %v", c)
	}

	// --audience.
	out, _, err = runDevTokenArgs("--data-dir", dir, "--user", "alice@example.com", "--agent", "coding-agent",
		"--audience", "https://upstream.example/mcp", "--scope", "repo read:org")
	if err != nil {
		t.Fatal(err)
	}
	c = verifiedClaims(t, srv, strings.TrimSpace(out))
	if !slices.Equal(audOf(c), []string{"https://upstream.example/mcp"}) || c["scope"] != "repo read:org" {
		t.Errorf("aud %v, scope %v", c["aud"], c["scope"])
	}

	// The user alone, with the data dir from the environment.
	t.Setenv("MANDATE_DATA_DIR", dir)
	out, _, err = runDevTokenArgs("--user", "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	c = verifiedClaims(t, srv, strings.TrimSpace(out))
	if c["sub"] != "alice@example.com" || c["act"] != nil {
		t.Errorf("user token: %v", c)
	}
}

func TestDevTokenErrors(t *testing.T) {
	empty := t.TempDir()
	_, _, err := runDevTokenArgs("--data-dir", empty, "--user", "alice@example.com")
	if !errors.Is(err, devidp.ErrNoState) || !strings.Contains(err.Error(), "dev-idp.json") ||
		!strings.Contains(err.Error(), "mandate serve --dev --data-dir "+empty) {
		t.Errorf("missing dev-idp.json: %v", err)
	}

	dir := t.TempDir()
	srv := startDevIdP(t, dir)
	srv.Close()
	_, _, err = runDevTokenArgs("--data-dir", dir, "--user", "alice@example.com", "--agent", "coding-agent")
	if !errors.Is(err, devidp.ErrNotRunning) || !strings.Contains(err.Error(), "mandate serve --dev --data-dir "+dir) {
		t.Errorf("provider not running: %v", err)
	}

	if _, _, err := runDevTokenArgs("--data-dir", dir); err == nil || !strings.Contains(err.Error(), "--user is required") {
		t.Errorf("without --user: %v", err)
	}
	if _, _, err := runDevTokenArgs("--user", "a@b", "extra"); err == nil {
		t.Error("a positional argument was accepted")
	}
	if _, stderr, err := runDevTokenArgs("--bogus"); err == nil || !strings.Contains(stderr, "bogus") {
		t.Errorf("unknown flag: %v %q", err, stderr)
	}
	out, _, err := runDevTokenArgs("--help")
	if !errors.Is(err, errHelp) || !strings.Contains(out, "Usage: mandate dev-token") || !strings.Contains(out, "--agent") ||
		!strings.Contains(out, "Not for production") {
		t.Errorf("--help: %v %q", err, out)
	}
}
