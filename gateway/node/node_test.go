package node_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/logtest"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/api/apitest"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/node"
)

const token = "0123456789abcdef0123456789abcdef"

// catalogServer serves the real API handler with an AuditLog over st and
// connections from svc (either may be nil). before, if set, may answer a
// request itself (returning true) to simulate failures; requests counts
// what reached the server by path.
type catalogServer struct {
	*httptest.Server
	mu       sync.Mutex
	before   func(w http.ResponseWriter, r *http.Request) bool
	requests map[string]int
}

func (cs *catalogServer) setBefore(f func(w http.ResponseWriter, r *http.Request) bool) {
	cs.mu.Lock()
	cs.before = f
	cs.mu.Unlock()
}

func newCatalogServer(t testing.TB, st catalog.AuditWriter, svc *catalog.Service, opts api.Options) *catalogServer {
	t.Helper()
	opts.Token = token
	if st != nil {
		l := catalog.NewAuditLog(st, catalog.AuditLogOptions{})
		t.Cleanup(func() { _ = l.Close(context.Background()) })
		opts.Audit = l
	}
	if svc != nil {
		opts.Connections = api.ConnectionResolver(svc)
		opts.ModelServices, opts.ModelServiceNames = api.ModelServiceResolver(svc), api.ModelServiceNames(svc)
		opts.AccessTokens, opts.Limits = api.AccessTokenVerifier(svc), api.LimitsResolver(svc)
	}
	h := api.NewHandler(apitest.New(1), opts)
	cs := &catalogServer{requests: map[string]int{}}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		cs.requests[r.URL.Path]++
		before := cs.before
		cs.mu.Unlock()
		if before != nil && before(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(cs.Close)
	return cs
}

func (cs *catalogServer) count(path string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.requests[path]
}

func (cs *catalogServer) config() node.Config {
	return node.Config{BaseURL: cs.URL, Token: token, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}
}

func newSink(t testing.TB, cfg node.Config) *node.AuditSink {
	t.Helper()
	s, err := node.NewAuditSink(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func stored(t *testing.T, st *memstore.Store) []catalog.AuditEvent {
	t.Helper()
	es, err := st.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func event(i int) catalog.AuditEvent {
	return catalog.AuditEvent{Service: "mcp", Action: "tools/call", UserIdentity: "alice@example.com",
		SecurableType: "CONNECTION", SecurableName: "system.ai.gh", RequestID: strings.Repeat("r", i%7), Decision: "allow"}
}

func TestAuditSinkGroupCommit(t *testing.T) {
	st := memstore.New()
	cs := newCatalogServer(t, st, nil, api.Options{})
	s := newSink(t, cs.config())
	const n = 500
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Record(t.Context(), event(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	es := stored(t, st)
	if len(es) != n {
		t.Fatalf("%d events in the catalog, want %d", len(es), n)
	}
	ids := map[string]bool{}
	for _, e := range es {
		if e.EventID == "" || ids[e.EventID] || e.Time.IsZero() {
			t.Fatalf("event id %q (seen: %v), time %v", e.EventID, ids[e.EventID], e.Time)
		}
		ids[e.EventID] = true
	}
	if reqs := cs.count(api.AuditPath); reqs > n/5 {
		t.Errorf("%d Records took %d requests; want them batched", n, reqs)
	} else {
		t.Logf("%d Records, %d requests", n, reqs)
	}
}

func TestAuditSinkSplitsRequests(t *testing.T) {
	st := memstore.New()
	// The catalog takes at most 2 KiB per request; the node does not know.
	cs := newCatalogServer(t, st, nil, api.Options{MaxBody: 2048})
	cfg := cs.config()
	cfg.MaxRequestEvents = 3
	s := newSink(t, cfg)
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := event(i)
			ev.RequestParams = strings.Repeat("p", 300)
			if err := s.Record(t.Context(), ev); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if es := stored(t, st); len(es) != 60 {
		t.Fatalf("%d events stored, want 60", len(es))
	}
	// One event larger than the catalog's limit: refused, not retried.
	big := event(1)
	big.RequestParams = strings.Repeat("p", 4096)
	before := cs.count(api.AuditPath)
	if err := s.Record(t.Context(), big); !catalog.IsCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("Record of an oversized event = %v, want invalid argument", err)
	}
	if got := cs.count(api.AuditPath) - before; got != 1 {
		t.Fatalf("an oversized event took %d requests, want 1", got)
	}
}

func TestAuditSinkRetries(t *testing.T) {
	st := memstore.New()
	cs := newCatalogServer(t, st, nil, api.Options{})
	var fails atomic.Int32
	fails.Store(3)
	cs.setBefore(func(w http.ResponseWriter, r *http.Request) bool {
		if fails.Add(-1) >= 0 {
			if fails.Load() == 1 { // one hangs up without an answer
				hj, _ := w.(http.Hijacker)
				c, _, _ := hj.Hijack()
				c.Close()
				return true
			}
			http.Error(w, `{"error":"busy"}`, http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	s := newSink(t, cs.config())
	if err := s.Record(t.Context(), event(1)); err != nil {
		t.Fatalf("Record through three failures: %v", err)
	}
	if es := stored(t, st); len(es) != 1 {
		t.Fatalf("%d events stored, want 1", len(es))
	}
}

// lockedBuffer is the sink's log, read while its writers write it.
type lockedBuffer = logtest.Buffer

// TestAuditSinkRetryLoggedOnce: a catalog that stays down through many
// retries of one request gives one warning for it, not one per attempt.
func TestAuditSinkRetryLoggedOnce(t *testing.T) {
	cs := newCatalogServer(t, memstore.New(), nil, api.Options{})
	cs.setBefore(func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, `{"error":"down"}`, http.StatusBadGateway)
		return true
	})
	var logs lockedBuffer
	cfg := cs.config()
	cfg.WriteTimeout = 200 * time.Millisecond
	cfg.Logger = zerolog.New(&logs)
	s := newSink(t, cfg)
	if err := s.Record(t.Context(), event(1)); !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Fatalf("Record with the catalog down = %v, want unavailable", err)
	}
	if n := cs.count(api.AuditPath); n < 5 {
		t.Fatalf("%d requests: want several retries", n)
	}
	if n := strings.Count(logs.String(), "audit request failed"); n != 1 {
		t.Fatalf("%d retry warnings for one request, want 1:\n%s", n, logs.String())
	}
}

func TestAuditSinkFailsClosed(t *testing.T) {
	st := memstore.New()
	cs := newCatalogServer(t, st, nil, api.Options{})
	down := func(w http.ResponseWriter, r *http.Request) bool {
		http.Error(w, `{"error":"down"}`, http.StatusBadGateway)
		return true
	}
	cs.setBefore(down)
	cfg := cs.config()
	cfg.WriteTimeout = 100 * time.Millisecond
	s := newSink(t, cfg)
	start := time.Now()
	err := s.Record(t.Context(), event(1))
	if !catalog.IsCode(err, catalog.CodeUnavailable) || time.Since(start) > 5*time.Second {
		t.Fatalf("Record with the catalog down = %v after %v, want unavailable after the write timeout", err, time.Since(start))
	}
	if cs.count(api.AuditPath) < 2 {
		t.Fatalf("%d requests: the sink did not retry", cs.count(api.AuditPath))
	}
	// The caller's context bounds its wait (the sink goes on retrying).
	other := newCatalogServer(t, memstore.New(), nil, api.Options{})
	other.setBefore(down)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	cfg = other.config()
	cfg.WriteTimeout = 200 * time.Millisecond
	if err := newSink(t, cfg).Record(ctx, event(1)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Record with a short context = %v", err)
	}

	// A refused request is not retried.
	cs.setBefore(nil)
	for name, cfg := range map[string]node.Config{
		"wrong token": {BaseURL: cs.URL, Token: "wrong-token-wrong-token"},
		"bad event":   cs.config(),
	} {
		before := cs.count(api.AuditPath)
		ev := event(1)
		if name == "bad event" {
			ev.Service = "" // the catalog requires service_name
		}
		err := newSink(t, cfg).Record(t.Context(), ev)
		if err == nil || cs.count(api.AuditPath)-before != 1 {
			t.Fatalf("%s: Record = %v after %d requests, want an error after one", name, err, cs.count(api.AuditPath)-before)
		}
	}
	if es := stored(t, st); len(es) != 0 {
		t.Fatalf("%d events stored by refused requests", len(es))
	}
	// Invalid locally: refused before any request.
	before := cs.count(api.AuditPath)
	if err := newSink(t, cs.config()).Record(t.Context(), catalog.AuditEvent{Service: "mcp", Action: "x", StatusCode: 1 << 40}); !catalog.IsCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("Record of an invalid event = %v", err)
	}
	if cs.count(api.AuditPath) != before {
		t.Fatal("an invalid event was sent")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []node.Config{{}, {BaseURL: "ftp://x", Token: token}, {BaseURL: "http://x"}} {
		if _, err := node.NewAuditSink(cfg); err == nil {
			t.Errorf("NewAuditSink(%+v) succeeded", cfg)
		}
		if _, err := node.NewConnections(cfg); err == nil {
			t.Errorf("NewConnections(%+v) succeeded", cfg)
		}
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if tok, err := node.ReadTokenFile(write("ok", token+"\n", 0o600)); err != nil || tok != token {
		t.Fatalf("ReadTokenFile = %q, %v", tok, err)
	}
	for name, p := range map[string]string{
		"readable": write("readable", token, 0o644),
		"short":    write("short", "abc", 0o600),
		"two":      write("two", token+"\n"+token, 0o600),
		"missing":  filepath.Join(dir, "missing"),
	} {
		if _, err := node.ReadTokenFile(p); err == nil {
			t.Errorf("%s: ReadTokenFile succeeded", name)
		}
	}
}

var _ gateway.AuditSink = (*node.AuditSink)(nil)
