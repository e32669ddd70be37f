package client_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/api/apitest"
	"github.com/mandatehq/mandate/enforce/client"
)

const token = "0123456789abcdef0123456789abcdef"

var (
	grantAlice = apitest.Key{Subject: "alice@example.com", Privilege: catalog.PrivUseConnection, Type: catalog.TypeConnection, Name: "my_github_mcp"}
	reqAlice   = enforce.Request{Subject: "alice@example.com", Actor: "coding-agent", Privilege: catalog.PrivUseConnection,
		Securable: enforce.SecurableRef{Type: catalog.TypeConnection, Name: "my_github_mcp"}}
)

// catalogServer is the API over a fake decider on loopback, counting the
// requests per path and recording the since of every watch request.
type catalogServer struct {
	d        *apitest.Decider
	srv      *httptest.Server
	handler  http.Handler
	requests sync.Map // path → *atomic.Int64
	mu       sync.Mutex
	sinces   []string
}

func (cs *catalogServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n, _ := cs.requests.LoadOrStore(r.URL.Path, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	if r.URL.Path == api.WatchPath {
		cs.mu.Lock()
		cs.sinces = append(cs.sinces, r.URL.Query().Get("since"))
		cs.mu.Unlock()
	}
	cs.handler.ServeHTTP(w, r)
}

func (cs *catalogServer) count(path string) int64 {
	n, ok := cs.requests.Load(path)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

func (cs *catalogServer) firstSince() string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.sinces) == 0 {
		return ""
	}
	return cs.sinces[0]
}

// startCatalog serves a fake at revision 3 (alice holds USE CONNECTION)
// on addr ("" for any free loopback port).
func startCatalog(t testing.TB, d *apitest.Decider, addr string, opts api.Options) *catalogServer {
	t.Helper()
	if d == nil {
		d = apitest.New(2)
		d.Grant(grantAlice)
	}
	if opts.Token == "" {
		opts.Token = token
	}
	cs := &catalogServer{d: d, handler: api.NewHandler(d, opts)}
	cs.srv = httptest.NewUnstartedServer(cs)
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		cs.srv.Listener.Close()
		cs.srv.Listener = ln
	}
	cs.srv.Start()
	t.Cleanup(cs.stop)
	return cs
}

// stop makes the catalog go away: listener and every connection closed.
func (cs *catalogServer) stop() {
	cs.srv.CloseClientConnections()
	cs.srv.Close()
}

func newClient(t testing.TB, url string, cfg client.Config) *client.Client {
	t.Helper()
	cfg.BaseURL = url
	if cfg.Token == "" {
		cfg.Token = token
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = 50 * time.Millisecond
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or the test's patience ends.
func waitFor(t testing.TB, what string, patience time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", patience, what)
		}
		<-tick.C
	}
}

func mustAuthorize(t *testing.T, c *client.Client, r enforce.Request) enforce.Decision {
	t.Helper()
	d, err := c.Authorize(t.Context(), r)
	if err != nil {
		t.Fatalf("Authorize: %v (%+v)", err, d)
	}
	return d
}

func TestNewRejectsBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  client.Config
		want string
	}{
		{"no URL", client.Config{Token: token}, "BaseURL"},
		{"not http", client.Config{BaseURL: "ftp://x", Token: token}, "BaseURL"},
		{"no host", client.Config{BaseURL: "http://", Token: token}, "BaseURL"},
		{"no token", client.Config{BaseURL: "http://127.0.0.1:1"}, "token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, err := client.New(c.cfg)
			if err == nil {
				cl.Close()
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestCache: answers decided by grants alone are cached per revision
// whatever the request's context (every MCP message carries one), answers
// a policy took part in are not.
func TestCache(t *testing.T) {
	withContext := func(r enforce.Request, tool string) enforce.Request {
		r.Context = map[string]any{"method": "tools/call", "tool": tool}
		return r
	}
	policed := reqAlice
	policed.Securable.Name = "policed"
	keyPoliced := grantAlice
	keyPoliced.Name = "policed"
	deniedPoliced := policed
	deniedPoliced.Subject = "bob@example.com"
	explained := reqAlice
	explained.Explain = true
	cases := []struct {
		name      string
		cacheSize int
		reqs      []enforce.Request // asked in turn, 3 rounds
		allowed   bool
		wantCalls int64
	}{
		{"hit after the first answer", 0, []enforce.Request{reqAlice}, true, 1},
		{"contexts do not matter to grants", 0, []enforce.Request{withContext(reqAlice, "a"), withContext(reqAlice, "b"), reqAlice}, true, 1},
		{"a policy took part: not cached", 0, []enforce.Request{withContext(policed, "a")}, true, 3},
		{"denied by grants under a policy: cached", 0, []enforce.Request{withContext(deniedPoliced, "a"), withContext(deniedPoliced, "b")}, false, 1},
		{"explained answers are cached apart", 0, []enforce.Request{reqAlice, explained}, true, 2},
		{"cache disabled", -1, []enforce.Request{reqAlice}, true, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := apitest.New(1)
			d.Grant(grantAlice)
			d.Grant(keyPoliced)
			d.Policy(keyPoliced) // revision 4
			cs := startCatalog(t, d, "", api.Options{})
			cl := newClient(t, cs.srv.URL, client.Config{CacheSize: c.cacheSize})
			for range 3 {
				for _, r := range c.reqs {
					if d := mustAuthorize(t, cl, r); d.Allowed != c.allowed || d.Revision != 4 || r.Explain != (len(d.Steps) > 0) {
						t.Fatalf("answer %+v to %+v, want allowed=%v at revision 4", d, r, c.allowed)
					}
				}
			}
			if got := cs.count(api.AuthorizePath); got != c.wantCalls {
				t.Fatalf("%d API calls, want %d", got, c.wantCalls)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		cs := startCatalog(t, nil, "", api.Options{})
		cl := newClient(t, cs.srv.URL, client.Config{CacheSize: 2})
		reqs := make([]enforce.Request, 3)
		for i := range reqs {
			reqs[i] = reqAlice
			reqs[i].Subject = fmt.Sprint("user", i)
		}
		calls := func(rs ...enforce.Request) int64 {
			before := cs.count(api.AuthorizePath)
			for _, r := range rs {
				mustAuthorize(t, cl, r)
			}
			return cs.count(api.AuthorizePath) - before
		}
		if got := calls(reqs[0], reqs[1], reqs[0], reqs[1]); got != 2 {
			t.Fatalf("%d API calls for two requests twice with room for two, want 2", got)
		}
		calls(reqs[2]) // evicts one of the two
		// At most two of the three fit: one of these two was evicted (and
		// asking for it again may evict the other).
		if got := calls(reqs[0], reqs[1]); got < 1 || got > 2 {
			t.Fatalf("%d API calls after an eviction, want 1 or 2", got)
		}
	})
}

func TestInvalidation(t *testing.T) {
	cases := []struct {
		name    string
		change  func(d *apitest.Decider) catalog.Revision
		allowed bool
	}{
		{"revoke", func(d *apitest.Decider) catalog.Revision { return d.Revoke(grantAlice) }, false},
		{"unrelated change", func(d *apitest.Decider) catalog.Revision { return d.Bump() }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cs := startCatalog(t, nil, "", api.Options{})
			cl := newClient(t, cs.srv.URL, client.Config{})
			mustAuthorize(t, cl, reqAlice)
			mustAuthorize(t, cl, reqAlice) // cached
			if got := cs.count(api.AuthorizePath); got != 1 {
				t.Fatalf("%d API calls before the change, want 1", got)
			}
			rev := c.change(cs.d)
			if err := cl.WaitRevision(t.Context(), rev); err != nil {
				t.Fatal(err)
			}
			d := mustAuthorize(t, cl, reqAlice)
			if d.Allowed != c.allowed || d.Revision != rev {
				t.Fatalf("after the change: %+v, want allowed=%v at revision %d", d, c.allowed, rev)
			}
			if got := cs.count(api.AuthorizePath); got != 2 {
				t.Fatalf("%d API calls, want 2: the cache was not dropped", got)
			}
		})
	}
}

func TestStalenessAndReconnect(t *testing.T) {
	const maxStale = 400 * time.Millisecond
	cs := startCatalog(t, nil, "", api.Options{})
	addr := cs.srv.Listener.Addr().String()
	cl := newClient(t, cs.srv.URL, client.Config{MaxStaleness: maxStale, BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	mustAuthorize(t, cl, reqAlice)
	waitFor(t, "the watch to connect", 5*time.Second, func() bool { return cl.Stats().Watching })

	cs.stop()
	gone := time.Now()
	d, err := cl.Authorize(t.Context(), reqAlice)
	if time.Since(gone) < maxStale/2 && (err != nil || !d.Allowed) {
		t.Fatalf("within MaxStaleness of the last heartbeat the cache must answer: %+v, %v", d, err)
	}
	waitFor(t, "a staleness denial", 5*time.Second, func() bool {
		d, err = cl.Authorize(t.Context(), reqAlice)
		return !d.Allowed
	})
	if time.Since(gone) < maxStale-50*time.Millisecond {
		t.Fatalf("denied %s after the catalog went away, before MaxStaleness %s", time.Since(gone), maxStale)
	}
	if !errors.Is(err, client.ErrStale) || !strings.HasPrefix(d.Reason, "authorization freshness unknown for ") ||
		!strings.HasSuffix(d.Reason, " (catalog unreachable): denying") {
		t.Fatalf("denial %q, %v; want the staleness reason and ErrStale", d.Reason, err)
	}
	if cl.Stats().Watching {
		t.Fatal("still watching a catalog that is gone")
	}

	// The grant is revoked while this node cannot hear it; the catalog
	// comes back on the same address.
	rev := cs.d.Revoke(grantAlice)
	back := startCatalog(t, cs.d, addr, api.Options{})
	if err := cl.WaitRevision(t.Context(), rev); err != nil {
		t.Fatal(err)
	}
	if got := back.firstSince(); got != "3" {
		t.Fatalf("the watch resumed with since=%q, want 3", got)
	}
	d = mustAuthorize(t, cl, reqAlice)
	if d.Allowed || d.Revision != rev || !strings.Contains(d.Reason, "lacks") {
		t.Fatalf("after the reconnect: %+v, want the catalog's denial at revision %d", d, rev)
	}
	if st := cl.Stats(); !st.Watching || st.Connects < 2 || st.Age > maxStale {
		t.Fatalf("stats after the reconnect: %+v", st)
	}
}

func TestAPIAnswersKeepFreshness(t *testing.T) {
	// The watch is refused (a proxy that drops it): freshness comes from
	// API answers alone, and the cache is used only while they are recent.
	d := apitest.New(2)
	d.Grant(grantAlice)
	inner := api.NewHandler(d, api.Options{Token: token})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.WatchPath {
			http.Error(w, `{"error":"no watch here"}`, http.StatusBadGateway)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	const maxStale = 200 * time.Millisecond
	cl := newClient(t, srv.URL, client.Config{MaxStaleness: maxStale, BackoffMin: 20 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	mustAuthorize(t, cl, reqAlice)
	start := d.Calls()
	mustAuthorize(t, cl, reqAlice)
	waitFor(t, "the cache to be bypassed once stale", 5*time.Second, func() bool {
		dec := mustAuthorize(t, cl, reqAlice)
		if !dec.Allowed {
			t.Fatalf("denied while the API answers: %+v", dec)
		}
		return d.Calls() > start
	})
}

func TestFailsClosed(t *testing.T) {
	unknownPriv := reqAlice
	unknownPriv.Privilege = "FLY"
	cases := []struct {
		name    string
		handler http.HandlerFunc
		token   string
		req     enforce.Request
		reason  string
		target  error
	}{
		{"wrong token", nil, "not-the-token-0000", reqAlice, "missing or invalid node token", client.ErrUnavailable},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
		}, "", reqAlice, "500 Internal Server Error", client.ErrUnavailable},
		{"garbage answer", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("<html>"))
		}, "", reqAlice, "undecodable answer", client.ErrUnavailable},
		{"malformed request", nil, "", unknownPriv, `refused (unknown privilege "FLY")`, nil},
		// An answer with a key twice is refused, not read as "last wins".
		{"duplicate key in the answer", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"allowed":false,"reason":"no","revision":3,"allowed":true}`))
		}, "", reqAlice, "duplicate key", client.ErrUnavailable},
		{"answer nested too deep", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(`{"allowed":true,"reason":"x","revision":3,"steps":` + strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000) + `}`))
		}, "", reqAlice, "nested deeper", client.ErrUnavailable},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			url := startCatalog(t, nil, "", api.Options{}).srv.URL
			if c.handler != nil {
				srv := httptest.NewServer(c.handler)
				t.Cleanup(srv.Close)
				url = srv.URL
			}
			cl := newClient(t, url, client.Config{Token: c.token})
			d, err := cl.Authorize(t.Context(), c.req)
			if err == nil || d.Allowed || !strings.Contains(d.Reason, c.reason) || !strings.HasSuffix(d.Reason, ": denying") {
				t.Fatalf("%+v, %v; want a denial saying %q", d, err, c.reason)
			}
			if c.target != nil && !errors.Is(err, c.target) {
				t.Fatalf("error %v is not %v", err, c.target)
			}
			var ae *client.APIError
			if c.name == "malformed request" && (!errors.As(err, &ae) || ae.Status != 400) {
				t.Fatalf("error %v, want an APIError 400", err)
			}
		})
	}
}

func TestAuthorizeBatch(t *testing.T) {
	cs := startCatalog(t, nil, "", api.Options{})
	// A batch of 1000 decisions with policies may take longer than the
	// default 1 s per call on a loaded machine under -race.
	cl := newClient(t, cs.srv.URL, client.Config{RequestTimeout: 30 * time.Second})
	policed := grantAlice
	policed.Name = "policed"
	cs.d.Grant(policed)
	cs.d.Policy(policed)
	reqs := make([]enforce.Request, 2500)
	for i := range reqs {
		reqs[i] = reqAlice
		if i%2 == 1 {
			reqs[i].Subject = fmt.Sprint("user", i)
		}
		reqs[i].Context = map[string]any{"i": i}
		if i%5 == 0 {
			reqs[i].Securable.Name = "policed"
		}
	}
	check := func(t *testing.T, ds []enforce.Decision) {
		t.Helper()
		if len(ds) != len(reqs) {
			t.Fatalf("%d answers for %d requests", len(ds), len(reqs))
		}
		for i, d := range ds {
			if d.Allowed != (i%2 == 0) || d.Revision != 5 {
				t.Fatalf("answer %d: %+v, want allowed=%v", i, d, i%2 == 0)
			}
		}
	}
	ds, err := cl.AuthorizeBatch(t.Context(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	check(t, ds)
	if got := cs.count(api.AuthorizePath); got != 3 {
		t.Fatalf("%d API calls for 2500 requests, want 3 batches of at most %d", got, client.MaxBatch)
	}
	// Again: only the 250 answers a policy took part in (alice on the
	// policed connection) go to the API.
	calls := cs.d.Calls()
	ds, err = cl.AuthorizeBatch(t.Context(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	check(t, ds)
	if got := cs.d.Calls() - calls; got != 250 {
		t.Fatalf("%d decisions asked of the catalog, want the 250 a policy took part in", got)
	}
	t.Run("fails closed", func(t *testing.T) {
		cs.stop()
		cl := newClient(t, cs.srv.URL, client.Config{})
		ds, err := cl.AuthorizeBatch(t.Context(), reqs[:3])
		if err == nil || len(ds) != 3 {
			t.Fatalf("%v, %v", ds, err)
		}
		for _, d := range ds {
			if d.Allowed || d.Reason == "" {
				t.Fatalf("answer %+v with the catalog gone", d)
			}
		}
	})
}

func TestClose(t *testing.T) {
	cs := startCatalog(t, nil, "", api.Options{})
	cl := newClient(t, cs.srv.URL, client.Config{})
	mustAuthorize(t, cl, reqAlice)
	waitFor(t, "the watch to connect", 5*time.Second, func() bool { return cs.d.Subscribers() == 1 })
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := cl.Authorize(t.Context(), reqAlice)
	if !errors.Is(err, client.ErrClosed) || d.Allowed {
		t.Fatalf("after Close: %+v, %v", d, err)
	}
	waitFor(t, "the watch to end at the server", 5*time.Second, func() bool { return cs.d.Subscribers() == 0 })
}

func TestCatalogRestoredFromBackup(t *testing.T) {
	// The catalog was at revision 10; it comes back restored at revision 3.
	d := apitest.New(9)
	d.Grant(grantAlice)
	cs := startCatalog(t, d, "", api.Options{})
	addr := cs.srv.Listener.Addr().String()
	cl := newClient(t, cs.srv.URL, client.Config{BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	if d := mustAuthorize(t, cl, reqAlice); !d.Allowed || d.Revision != 10 {
		t.Fatalf("%+v", d)
	}
	cs.stop()
	restored := apitest.New(2)
	restored.Grant(grantAlice)
	startCatalog(t, restored, addr, api.Options{})
	waitFor(t, "the client to follow the catalog back to revision 3", 5*time.Second, func() bool { return cl.Revision() == 3 })
	// Not 503: requests now ask for at_least_revision=3.
	if d := mustAuthorize(t, cl, reqAlice); !d.Allowed || d.Revision != 3 {
		t.Fatalf("after the restore: %+v", d)
	}
}
