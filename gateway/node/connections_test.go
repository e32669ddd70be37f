package node_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/flight/flighttest"
	"github.com/mandatehq/mandate/gateway/node"
)

// newCatalog opens a catalog with system.ai.my_github_mcp (a bearer token)
// and main.tools.jira (a client secret).
func newCatalog(t testing.TB) *catalog.Service {
	t.Helper()
	kr, err := catalog.NewKeyring([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	change(t, svc, func(tx *catalog.Tx) error {
		if err := tx.CreateConnection([]string{"system", "ai", "my_github_mcp"}, "MCP", [][2]string{
			{"url", "https://mcp.github.example/mcp"}, {"auth_mode", "shared_principal"}, {"bearer_token", "ghp_s3cret"},
			{"scopes", "repo read:org"}}, false, nil); err != nil {
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
	return svc
}

func change(t testing.TB, svc *catalog.Service, fn func(tx *catalog.Tx) error) catalog.Revision {
	t.Helper()
	rev, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, fn)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func setURL(t *testing.T, svc *catalog.Service, u string) catalog.Revision {
	return change(t, svc, func(tx *catalog.Tx) error {
		return tx.SetOptions([]string{"system", "ai", "my_github_mcp"}, [][2]string{{"url", u}})
	})
}

func TestConnections(t *testing.T) {
	svc := newCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	var known atomic.Int64
	known.Store(int64(svc.Revision()))
	cfg := cs.config()
	cfg.Revision = func() catalog.Revision { return catalog.Revision(known.Load()) }
	c, err := node.NewConnections(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := t.Context()
	path := api.ConnectionsPath + "my_github_mcp"

	conn, err := c.Connection(ctx, "my_github_mcp")
	if err != nil {
		t.Fatal(err)
	}
	if conn.Name != "system.ai.my_github_mcp" || conn.URL != "https://mcp.github.example/mcp" || conn.AuthMode != "shared_principal" ||
		conn.Secrets["bearer_token"] != "ghp_s3cret" || conn.Options["scopes"] != "repo read:org" || conn.Revision != svc.Revision() {
		t.Fatalf("connection %+v", conn)
	}
	if got := conn.Scopes(); len(got) != 2 {
		t.Fatalf("scopes %v", got)
	}
	jira, err := c.Connection(ctx, "main.tools.jira")
	if err != nil || jira.Secrets["client_secret"] != "cs-123" || jira.Options["client_id"] != "gw" {
		t.Fatalf("jira: %+v %v", jira, err)
	}
	// Cached: no second request, and the caller's copy is its own.
	conn.Secrets["bearer_token"] = "changed by the caller"
	again, err := c.Connection(ctx, "my_github_mcp")
	if err != nil || again.Secrets["bearer_token"] != "ghp_s3cret" {
		t.Fatalf("second lookup: %+v %v", again, err)
	}
	if n := cs.count(path); n != 1 {
		t.Fatalf("%d requests for two lookups at one revision, want 1", n)
	}
	// A new revision known to the node: resolved again.
	rev := setURL(t, svc, "https://mcp2.github.example/mcp")
	if conn, _ := c.Connection(ctx, "my_github_mcp"); conn.URL != "https://mcp.github.example/mcp" {
		t.Fatalf("the node did not know the new revision yet, but the answer changed: %s", conn.URL)
	}
	known.Store(int64(rev))
	conn, err = c.Connection(ctx, "my_github_mcp")
	if err != nil || conn.URL != "https://mcp2.github.example/mcp" || conn.Revision != rev || cs.count(path) != 2 {
		t.Fatalf("after the revision: %+v %v (%d requests)", conn, err, cs.count(path))
	}

	// Unknown: ErrNoConnection, cached per revision too.
	for range 2 {
		if _, err := c.Connection(ctx, "nope"); !errors.Is(err, gateway.ErrNoConnection) {
			t.Fatalf("unknown connection: %v", err)
		}
	}
	if n := cs.count(api.ConnectionsPath + "nope"); n != 1 {
		t.Fatalf("%d requests for an unknown name, want 1", n)
	}
	if _, err := c.Connection(ctx, "a.b.c.d"); !errors.Is(err, gateway.ErrNoConnection) {
		t.Fatalf("malformed name: %v", err)
	}
	// Created later: found once the node knows the revision.
	rev = change(t, svc, func(tx *catalog.Tx) error {
		return tx.CreateConnection([]string{"system", "ai", "nope"}, "MCP", [][2]string{{"url", "https://n.example/"}}, false, nil)
	})
	known.Store(int64(rev))
	if conn, err := c.Connection(ctx, "nope"); err != nil || conn.Name != "system.ai.nope" {
		t.Fatalf("after creation: %+v %v", conn, err)
	}
}

func TestConnectionsFailClosed(t *testing.T) {
	svc := newCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	var down atomic.Bool
	down.Store(true)
	cs.setBefore(func(w http.ResponseWriter, r *http.Request) bool {
		if down.Load() {
			http.Error(w, `{"error":"down"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	c, err := node.NewConnections(cs.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Connection(t.Context(), "my_github_mcp")
	if err == nil || errors.Is(err, gateway.ErrNoConnection) {
		t.Fatalf("catalog down: %v, want an error that is not ErrNoConnection", err)
	}
	down.Store(false)
	if _, err := c.Connection(t.Context(), "my_github_mcp"); err != nil {
		t.Fatalf("the failure was cached: %v", err)
	}
	// A wrong token is an error too.
	bad, _ := node.NewConnections(node.Config{BaseURL: cs.URL, Token: "wrong-token-wrong-token"})
	if _, err := bad.Connection(t.Context(), "my_github_mcp"); err == nil || errors.Is(err, gateway.ErrNoConnection) {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestConnectionsTTLAndSingleflight(t *testing.T) {
	svc := newCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	release := make(chan struct{})
	cs.setBefore(func(w http.ResponseWriter, r *http.Request) bool {
		<-release
		return false
	})
	path := api.ConnectionsPath + "my_github_mcp"
	// Concurrent misses share one request. The TTL is long here, so that
	// a goroutine the machine schedules only after the answer finds it
	// cached rather than expired.
	cfg := cs.config()
	cfg.ConnectionTTL = time.Hour
	c, err := node.NewConnections(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var wg sync.WaitGroup
	var started atomic.Int32
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Add(1)
			if _, err := c.Connection(context.Background(), "my_github_mcp"); err != nil {
				t.Error(err)
			}
		}()
	}
	// Released once every caller runs and the first request is held.
	for deadline := time.Now().Add(20 * time.Second); started.Load() < 20 || cs.count(path) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d callers started, %d requests after 20s", started.Load(), cs.count(path))
		}
	}
	close(release)
	wg.Wait()
	if n := cs.count(path); n != 1 {
		t.Fatalf("20 concurrent misses made %d requests, want 1", n)
	}
	if _, err := c.Connection(t.Context(), "my_github_mcp"); err != nil || cs.count(path) != 1 {
		t.Fatalf("within the TTL: %v, %d requests", err, cs.count(path))
	}
	// An answer older than the TTL is fetched again.
	cfg.ConnectionTTL = 50 * time.Millisecond
	short, err := node.NewConnections(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if _, err := short.Connection(t.Context(), "my_github_mcp"); err != nil || cs.count(path) != 2 {
		t.Fatalf("first call: %v, %d requests", err, cs.count(path))
	}
	time.Sleep(60 * time.Millisecond) // past the TTL
	if _, err := short.Connection(t.Context(), "my_github_mcp"); err != nil || cs.count(path) != 3 {
		t.Fatalf("after the TTL: %v, %d requests", err, cs.count(path))
	}
}

// TestConnectionsMissStraddlesFlight: a caller that missed the cache
// while another caller's request was answered (it joins no flight: that
// one is over) uses the cached answer rather than asking again.
func TestConnectionsMissStraddlesFlight(t *testing.T) {
	svc := newCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	cfg := cs.config()
	cfg.ConnectionTTL = time.Hour
	c, err := node.NewConnections(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get := func() error { _, err := c.Connection(context.Background(), "my_github_mcp"); return err }
	flighttest.Straddle(t, func(h func()) { node.SetAfterMiss(c, h) }, get, get)
	if n := cs.count(api.ConnectionsPath + "my_github_mcp"); n != 1 {
		t.Fatalf("%d requests, want 1: the late caller asked again for an answer in the cache", n)
	}
}

func TestLocalConnections(t *testing.T) {
	svc := newCatalog(t)
	c := node.NewLocalConnections(svc)
	ctx := t.Context()
	conn, err := c.Connection(ctx, "my_github_mcp")
	if err != nil || conn.Name != "system.ai.my_github_mcp" || conn.Secrets["bearer_token"] != "ghp_s3cret" || conn.Revision != svc.Revision() {
		t.Fatalf("%+v %v", conn, err)
	}
	conn.Options["url"] = "changed by the caller"
	if again, _ := c.Connection(ctx, "my_github_mcp"); again.Options["url"] != "https://mcp.github.example/mcp" {
		t.Fatalf("the cache shares its maps with callers: %v", again.Options)
	}
	rev := setURL(t, svc, "https://mcp3.github.example/mcp")
	conn, err = c.Connection(ctx, "my_github_mcp")
	if err != nil || conn.URL != "https://mcp3.github.example/mcp" || conn.Revision != rev {
		t.Fatalf("after a change: %+v %v", conn, err)
	}
	for _, name := range []string{"nope", "a.b.c.d", ""} {
		if _, err := c.Connection(ctx, name); !errors.Is(err, gateway.ErrNoConnection) {
			t.Fatalf("%q: %v, want ErrNoConnection", name, err)
		}
	}
}

// TestConnectionsStrictAnswer: an answer with a key twice (a second url
// that a lenient decoder would take) is an error, not a connection.
func TestConnectionsStrictAnswer(t *testing.T) {
	svc := newCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	cs.setBefore(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"name":"system.ai.my_github_mcp","url":"https://mcp.github.example/mcp","auth_mode":"none",` +
			`"options":{},"secrets":{},"revision":2,"url":"https://attacker.example/mcp"}`))
		return true
	})
	c, err := node.NewConnections(cs.config())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn, err := c.Connection(t.Context(), "my_github_mcp")
	if err == nil || !strings.Contains(err.Error(), "duplicate key") {
		t.Fatalf("Connection = %+v, %v; want an error naming the duplicate key", conn, err)
	}
}
