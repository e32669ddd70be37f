package client_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/client"
)

// engineRig is the real thing on loopback: a catalog over memstore, the
// decision engine, the API and gateway-node clients. alice may use
// system.ai.my_github_mcp once granted.
type engineRig struct {
	svc     *catalog.Service
	eng     *enforce.Engine
	srv     *httptest.Server
	clients []*client.Client
}

var connPath = []string{catalog.SystemCatalog, "ai", "my_github_mcp"}

func newEngineRig(tb testing.TB, nClients int, cfg client.Config) *engineRig {
	tb.Helper()
	return newEngineRigWith(tb, nClients, cfg, enforce.Options{})
}

func newEngineRigWith(tb testing.TB, nClients int, cfg client.Config, opts enforce.Options) *engineRig {
	tb.Helper()
	ctx := context.Background()
	kr, err := catalog.NewKeyring(make([]byte, 32))
	if err != nil {
		tb.Fatal(err)
	}
	svc, err := catalog.Open(ctx, catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	r := &engineRig{svc: svc}
	r.write(tb, func(tx *catalog.Tx) error {
		if err := tx.CreatePrincipal(catalog.KindUser, reqAlice.Subject, nil, false); err != nil {
			return err
		}
		if err := tx.CreatePrincipal(catalog.KindServicePrincipal, reqAlice.Actor, nil, false); err != nil {
			return err
		}
		if err := tx.CreateConnection(connPath, "MCP", [][2]string{{"url", "https://mcp.github.example/mcp"}}, false, nil); err != nil {
			return err
		}
		return tx.Grant([]catalog.Privilege{catalog.PrivUseConnection}, catalog.TypeConnection, connPath, []string{reqAlice.Actor})
	})
	r.eng, err = enforce.NewEngine(ctx, svc, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.eng.Close() })
	r.srv = httptest.NewServer(api.NewHandler(r.eng, api.Options{Token: token}))
	tb.Cleanup(func() {
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
	for range nClients {
		c := cfg
		c.BaseURL, c.Token = r.srv.URL, token
		cl, err := client.New(c)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { cl.Close() })
		r.clients = append(r.clients, cl)
	}
	return r
}

func (r *engineRig) write(tb testing.TB, fn func(tx *catalog.Tx) error) catalog.Revision {
	tb.Helper()
	rev, err := r.svc.Write(context.Background(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, fn)
	if err != nil {
		tb.Fatal(err)
	}
	return rev
}

func (r *engineRig) grant(tb testing.TB) catalog.Revision {
	tb.Helper()
	return r.write(tb, func(tx *catalog.Tx) error {
		return tx.Grant([]catalog.Privilege{catalog.PrivUseConnection}, catalog.TypeConnection, connPath, []string{reqAlice.Subject})
	})
}

func (r *engineRig) revoke(tb testing.TB) catalog.Revision {
	tb.Helper()
	return r.write(tb, func(tx *catalog.Tx) error {
		return tx.Revoke([]catalog.Privilege{catalog.PrivUseConnection}, catalog.TypeConnection, connPath, []string{reqAlice.Subject})
	})
}

// warm grants and waits until every client answers allowed from its cache.
func (r *engineRig) warm(tb testing.TB) {
	tb.Helper()
	rev := r.grant(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i, c := range r.clients {
		if err := c.WaitRevision(ctx, rev); err != nil {
			tb.Fatalf("client %d did not see the grant (revision %d): %v", i, rev, err)
		}
		for range 2 { // the second answer comes from the cache
			if d, err := c.Authorize(ctx, reqAlice); err != nil || !d.Allowed {
				tb.Fatalf("client %d after the grant: %+v, %v", i, d, err)
			}
		}
	}
}

// revokeAndMeasure revokes and returns the time from just before the
// revoke until every client denies. Each client denies from the moment
// its watch delivers the revocation's revision (its cache is dropped
// then): the time is measured to the end of that first denying Authorize.
func (r *engineRig) revokeAndMeasure(tb testing.TB, patience time.Duration) time.Duration {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	revs := make(chan catalog.Revision, len(r.clients))
	start := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, len(r.clients))
	errs := make([]error, len(r.clients))
	for i, c := range r.clients {
		wg.Go(func() {
			rev := <-revs
			if errs[i] = c.WaitRevision(ctx, rev); errs[i] != nil {
				return
			}
			d, err := c.Authorize(ctx, reqAlice)
			took[i] = time.Since(start)
			if err != nil || d.Allowed {
				errs[i] = &deniedNot{d, err}
			}
		})
	}
	rev := r.revoke(tb)
	for range r.clients {
		revs <- rev
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			tb.Fatalf("client %d did not deny within %s of the revoke (revision %d): %v", i, patience, rev, err)
		}
	}
	return slices.Max(took)
}

type deniedNot struct {
	d   enforce.Decision
	err error
}

func (e *deniedNot) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return "still allowed: " + e.d.Reason
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// TestRevocationReachesAllNodes: the catalog and three gateway-node
// clients on loopback; each of 100 revokes must reach all three (every one
// denies) within 2 s.
func TestRevocationReachesAllNodes(t *testing.T) {
	r := newEngineRig(t, 3, client.Config{Heartbeat: time.Second})
	const revokes = 100
	var took []time.Duration
	for range revokes {
		r.warm(t)
		took = append(took, r.revokeAndMeasure(t, 2*time.Second))
	}
	slices.Sort(took)
	t.Logf("revoke → denial on all 3 nodes over %d revokes: p50 %s, p99 %s, max %s",
		revokes, percentile(took, 0.50), percentile(took, 0.99), took[len(took)-1])
}

// TestEngineIntegration: the client against the real engine, with the
// on-behalf-of rule (alice through coding-agent) and at_least_revision.
func TestEngineIntegration(t *testing.T) {
	r := newEngineRig(t, 1, client.Config{})
	c := r.clients[0]
	cases := []struct {
		name    string
		change  func(tb testing.TB) catalog.Revision
		req     enforce.Request
		allowed bool
	}{
		{"before the grant", nil, reqAlice, false},
		{"after the grant", r.grant, reqAlice, true},
		{"unknown subject", nil, enforce.Request{Subject: "mallory", Privilege: catalog.PrivUseConnection, Securable: reqAlice.Securable}, false},
		{"unknown connection", nil, enforce.Request{Subject: reqAlice.Subject, Privilege: catalog.PrivUseConnection,
			Securable: enforce.SecurableRef{Type: catalog.TypeConnection, Name: "nope"}}, false},
		{"after the revoke", r.revoke, reqAlice, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.change != nil {
				if err := c.WaitRevision(t.Context(), tc.change(t)); err != nil {
					t.Fatal(err)
				}
			}
			d := mustAuthorize(t, c, tc.req)
			if d.Allowed != tc.allowed || d.Reason == "" || d.Revision != r.eng.Revision() {
				t.Fatalf("%+v, want allowed=%v with a reason at revision %d", d, tc.allowed, r.eng.Revision())
			}
		})
	}
}

// fixedContext is a Request.LazyContext over a map.
type fixedContext map[string]any

func (f fixedContext) PolicyContext() map[string]any { return f }

// TestNodeCacheServesMessages: a gateway node answers MCP messages (each
// with its own context) from its cache while no policy applies to the
// connection; once a Rego policy is attached, the answers the policy took
// part in go to the catalog, decided per message; once it is dropped, the
// cache serves again.
func TestNodeCacheServesMessages(t *testing.T) {
	r := newEngineRigWith(t, 1, client.Config{}, enforce.Options{Policy: enforce.NewPolicyHook(time.Second)})
	c := r.clients[0]
	wait := func(rev catalog.Revision) {
		t.Helper()
		if err := c.WaitRevision(t.Context(), rev); err != nil {
			t.Fatal(err)
		}
	}
	wait(r.grant(t))
	msg := func(tool string) enforce.Request {
		q := reqAlice
		q.Context = map[string]any{"method": "tools/call", "tool": tool, "arguments": map[string]any{"q": tool}}
		return q
	}
	ask := func(tool string, allowed bool) {
		t.Helper()
		d, err := c.Authorize(t.Context(), msg(tool))
		if err != nil || d.Allowed != allowed {
			t.Fatalf("%s: %+v, %v; want allowed=%v", tool, d, err, allowed)
		}
	}
	hits := func() (int64, int64) { s := c.Stats(); return s.CacheHits, s.CacheMisses }
	ask("get_issue", true)
	h0, m0 := hits()
	for _, tool := range []string{"search", "get_issue", "list", "delete_repo"} {
		ask(tool, true)
	}
	if h, m := hits(); h-h0 != 4 || m != m0 {
		t.Fatalf("no policy: %d hits and %d misses for 4 messages, want 4 hits", h-h0, m-m0)
	}
	wait(r.write(t, func(tx *catalog.Tx) error {
		return tx.CreatePolicy("no_deletes", catalog.TypeConnection, connPath, `package p
deny contains msg if { startswith(input.tool, "delete_"); msg := "no deletes" }`)
	}))
	h0, m0 = hits()
	for range 2 {
		ask("get_issue", true)
		ask("delete_repo", false)
	}
	if h, m := hits(); h != h0 || m-m0 != 4 {
		t.Fatalf("with a policy: %d hits and %d misses for 4 messages, want 4 misses", h-h0, m-m0)
	}
	// A lazy context crosses the wire as the map it builds, alone and in
	// a batch.
	lazy := reqAlice
	lazy.LazyContext = fixedContext{"method": "tools/call", "tool": "delete_repo"}
	if d, err := c.Authorize(t.Context(), lazy); err != nil || d.Allowed {
		t.Fatalf("lazy context: %+v, %v; want the policy's denial", d, err)
	}
	if ds, err := c.AuthorizeBatch(t.Context(), []enforce.Request{reqAlice, lazy}); err != nil || !ds[0].Allowed || ds[1].Allowed {
		t.Fatalf("lazy context in a batch: %+v, %v; want allowed, denied", ds, err)
	}
	wait(r.write(t, func(tx *catalog.Tx) error { return tx.DropPolicy("no_deletes", false) }))
	ask("delete_repo", true)
	h0, _ = hits()
	ask("delete_repo", true)
	if h, _ := hits(); h-h0 != 1 {
		t.Fatal("the cache does not serve again once the policy is dropped")
	}
}
