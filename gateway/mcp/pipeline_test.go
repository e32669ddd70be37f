package mcp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// rotatingCreds hands out "Bearer v<n>", a new n after each Invalidate of
// the current value (as upstream.Credentials does for cached modes).
type rotatingCreds struct {
	mu          sync.Mutex
	n           int
	invalidated []string
	renewable   bool
}

func (r *rotatingCreds) Authorization(context.Context, *gateway.Connection, *gateway.Identity) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprintf("Bearer v%d", r.n), nil
}

func (r *rotatingCreds) Invalidate(_ *gateway.Connection, _ *gateway.Identity, rejected string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.invalidated = append(r.invalidated, rejected)
	if rejected == fmt.Sprintf("Bearer v%d", r.n) {
		r.n++
	}
	return r.renewable
}

// jsonResult answers every request with a tools/call result.
func jsonResult(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"ok"}]}}`)
}

// A 401 or 403 on a cached upstream credential drops it and the call is
// sent once more with a fresh one; a second refusal, or a mode with
// nothing to renew, is the 502 it always was.
func TestUpstreamRefusesCachedCredential(t *testing.T) {
	for _, tc := range []struct {
		name      string
		refuse    func(auth string) int // status for this credential, 0: answer
		renewable bool
		status    int
		sends     int
		retried   bool
	}{
		{"401 then fresh", func(a string) int { return map[bool]int{true: 401}[a == "Bearer v0"] }, true, 200, 2, true},
		{"403 then fresh", func(a string) int { return map[bool]int{true: 403}[a == "Bearer v0"] }, true, 200, 2, true},
		{"refused twice", func(string) int { return 401 }, true, 502, 2, true},
		{"nothing to renew", func(string) int { return 401 }, false, 502, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var seen []string
			up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen = append(seen, r.Header.Get("Authorization"))
				mu.Unlock()
				if st := tc.refuse(r.Header.Get("Authorization")); st != 0 {
					w.WriteHeader(st)
					return
				}
				jsonResult(w)
			})
			creds := &rotatingCreds{renewable: tc.renewable}
			e := newEnv(t, up.URL, func(c *Config) { c.Credentials = creds })
			r := e.post("alice-token", "github", callBody, nil)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if len(seen) != tc.sends {
				t.Fatalf("upstream saw %v, want %d requests", seen, tc.sends)
			}
			if tc.sends == 2 && (seen[0] != "Bearer v0" || seen[1] != "Bearer v1") {
				t.Fatalf("credentials sent %v", seen)
			}
			if !slices.Equal(creds.invalidated[:1], []string{"Bearer v0"}) {
				t.Fatalf("invalidated %v", creds.invalidated)
			}
			evs := e.audit.all()
			if len(evs) != 1 || evs[0].StatusCode != tc.status || strings.Contains(evs[0].RequestParams, `"credential_retried":true`) != tc.retried {
				t.Fatalf("audit %+v", evs)
			}
		})
	}
}

// The Host header must name the public host (or, for a loopback public
// URL, any loopback host): DNS rebinding sends the attacker's name.
func TestHostHeader(t *testing.T) {
	up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) { jsonResult(w) })
	e := newEnv(t, up.URL)
	port := e.srv.URL[strings.LastIndexByte(e.srv.URL, ':')+1:]
	for _, tc := range []struct {
		host   string
		status int
	}{
		{"127.0.0.1:" + port, 200},
		{"localhost:" + port, 200},
		{"LOCALHOST:1234", 200}, // loopback names only resolve here
		{"[::1]:" + port, 200},
		{"evil.example:" + port, 403},
		{"127.0.0.1.evil.example", 403},
	} {
		req, _ := http.NewRequest(http.MethodPost, e.url("github"), strings.NewReader(callBody))
		req.Host = tc.host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer alice-token")
		r := e.do(req)
		if r.status != tc.status {
			t.Errorf("Host %q: %d %s", tc.host, r.status, r.body)
		}
	}
	// The refusal is audited, with the host, before any authentication.
	last := e.audit.all()[len(e.audit.all())-1]
	if last.Decision != "deny" || !strings.Contains(last.Reason, "host not allowed") || last.UserIdentity != "" {
		t.Fatalf("audit %+v", last)
	}

	// A public gateway takes its own host only, with the scheme's default
	// port when none is given (behind a TLS proxy).
	rule := func(public, host string) bool {
		h, err := New(Config{PublicURL: public, Auth: e.auth, Authz: e.authz, Connections: e.conns, Credentials: e.creds, Audit: e.audit})
		if err != nil {
			t.Fatal(err)
		}
		rec := &recorder{header: http.Header{}}
		req, _ := http.NewRequest(http.MethodPost, "http://x/mcp/github", strings.NewReader("{}"))
		req.Host = host
		h.ServeHTTP(rec, req)
		return rec.status != http.StatusForbidden
	}
	for _, tc := range []struct {
		public, host string
		ok           bool
	}{
		{"https://gw.example", "gw.example", true},
		{"https://gw.example", "GW.example.:443", true},
		{"https://gw.example", "gw.example:8443", false},
		{"https://gw.example:8443/base", "gw.example:8443", true},
		{"https://gw.example", "localhost", false},
		{"https://gw.example", "other.example", false},
		{"https://gw.example", "", false},
		{"http://[::1]:8470", "127.0.0.1:8470", true},
	} {
		if got := rule(tc.public, tc.host); got != tc.ok {
			t.Errorf("public %s, Host %q: admitted %v, want %v", tc.public, tc.host, got, tc.ok)
		}
	}
}

// recorder is a minimal http.ResponseWriter.
type recorder struct {
	header http.Header
	status int
	body   strings.Builder
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(200)
	return r.body.Write(b)
}

// A 403 tells the caller what is missing, not how the rest was granted;
// the audit row keeps the whole derivation.
func TestDenialCarriesBriefReason(t *testing.T) {
	up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) { jsonResult(w) })
	e := newEnv(t, up.URL)
	const full = `subject "alice@example.com" allowed: USE CATALOG on CATALOG system: USE CATALOG granted to GROUP "data-analysts" (via "alice@example.com" → "data-analysts"); USE CONNECTION on CONNECTION system.ai.github: USE CONNECTION granted to GROUP "secret-project"; actor "coding-agent" lacks USE CONNECTION on CONNECTION system.ai.github`
	e.authz.setDeny(func(enforce.Request) string { return full })
	r := e.post("alice-token", "github", callBody, nil)
	_, msg, _ := r.rpcError()
	if r.status != 403 || msg != `access to connection system.ai.github denied: actor "coding-agent" lacks USE CONNECTION on CONNECTION system.ai.github` {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), "data-analysts") || strings.Contains(string(r.body), "secret-project") {
		t.Fatalf("the 403 reveals group memberships: %s", r.body)
	}
	if ev := e.audit.all()[0]; ev.Reason != full || ev.Decision != "deny" {
		t.Fatalf("audit reason %q", ev.Reason)
	}
	for _, tc := range [][2]string{
		{full, `actor "coding-agent" lacks USE CONNECTION on CONNECTION system.ai.github`},
		{`subject "bob" lacks USE CONNECTION on CONNECTION x; actor "a" allowed: USE CONNECTION on CONNECTION x: granted to GROUP "g"`, `subject "bob" lacks USE CONNECTION on CONNECTION x`},
		{`subject "bob" lacks USE CATALOG on CATALOG c; actor "a" lacks USE CONNECTION on CONNECTION x`, `subject "bob" lacks USE CATALOG on CATALOG c; actor "a" lacks USE CONNECTION on CONNECTION x`},
		{`denied by policy: no pushes on Fridays`, `denied by policy: no pushes on Fridays`},
		{`subject "root" is a metastore admin via "admins": USE CONNECTION on CONNECTION x allowed`, `denied`},
	} {
		if got := pipeline.BriefReason(tc[0]); got != tc[1] {
			t.Errorf("BriefReason(%q) = %q, want %q", tc[0], got, tc[1])
		}
	}
}

// gatedQueue is an AuditQueue whose writes wait for the test: it shows
// when the gateway waits for durability and when it does not.
type gatedQueue struct {
	fakeAudit
	mu      sync.Mutex
	pending []chan struct{}
	queued  chan catalog.AuditEvent
}

func newGatedQueue() *gatedQueue { return &gatedQueue{queued: make(chan catalog.AuditEvent, 64)} }

func (g *gatedQueue) Enqueue(ctx context.Context, ev catalog.AuditEvent) (*catalog.AuditAck, error) {
	done := make(chan struct{})
	g.mu.Lock()
	g.pending = append(g.pending, done)
	g.mu.Unlock()
	g.add(ev)
	g.queued <- ev
	return ackOn(done), nil
}

func (g *gatedQueue) Submit(ctx context.Context, ev catalog.AuditEvent) error {
	g.add(ev)
	g.queued <- ev
	return nil
}

// release makes every queued event durable.
func (g *gatedQueue) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.pending {
		close(d)
	}
	g.pending = nil
}

// ackOn is an AuditAck done when done closes: a real AuditLog stands in.
func ackOn(done chan struct{}) *catalog.AuditAck {
	l := catalog.NewAuditLog(gateWriter{done}, catalog.AuditLogOptions{})
	ack, err := l.Enqueue(context.Background(), catalog.AuditEvent{Action: "gate"})
	if err != nil {
		panic(err)
	}
	go func() { <-done; _ = l.Close(context.Background()) }()
	return ack
}

type gateWriter struct{ done chan struct{} }

func (g gateWriter) AppendAudit(ctx context.Context, _ ...catalog.AuditEvent) error {
	select {
	case <-g.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// The request's record is queued before the call is forwarded and the
// answer waits for it to be durable (the fsync overlaps the upstream
// call); the completion follows, not waited for. With AuditAsync the
// answer does not wait at all.
func TestTwoPhaseAudit(t *testing.T) {
	for _, async := range []bool{false, true} {
		t.Run(fmt.Sprintf("async=%v", async), func(t *testing.T) {
			reached := make(chan struct{}, 1)
			up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				reached <- struct{}{}
				jsonResult(w)
			})
			q := newGatedQueue()
			e := newEnv(t, up.URL, func(c *Config) { c.Audit, c.AuditAsync = q, async })
			answered := make(chan rawResp, 1)
			go func() { answered <- e.post("alice-token", "github", callBody, nil) }()
			first := <-q.queued
			if first.Completes || first.StatusCode != 0 || first.Decision != "allow" || first.Action != "tools/call" {
				t.Fatalf("request record %+v", first)
			}
			<-reached // forwarded while the record is not yet durable
			if !async {
				select {
				case r := <-answered:
					t.Fatalf("answered before the request record was durable: %d", r.status)
				case <-time.After(50 * time.Millisecond):
				}
				q.release()
			}
			r := <-answered
			if r.status != 200 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			done := <-q.queued // queued before the answer was written
			if !done.Completes || done.EventID != first.EventID || !done.Time.Equal(first.Time) || done.StatusCode != 200 {
				t.Fatalf("completion %+v", done)
			}
			if evs := q.all(); len(evs) != 1 || evs[0].StatusCode != 200 || evs[0].LatencyMs <= 0 {
				t.Fatalf("merged %+v", evs)
			}
			q.release()
		})
	}
}

// A sink without a queue gets one record per call, before the answer.
func TestPlainAuditSink(t *testing.T) {
	up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) { jsonResult(w) })
	sink := &recordOnly{}
	e := newEnv(t, up.URL, func(c *Config) { c.Audit = sink })
	if r := e.post("alice-token", "github", callBody, nil); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	evs := sink.all()
	if len(evs) != 1 || evs[0].Completes || evs[0].StatusCode != 200 {
		t.Fatalf("records %+v", evs)
	}
}

type recordOnly struct {
	mu     sync.Mutex
	events []catalog.AuditEvent
}

func (r *recordOnly) Record(_ context.Context, ev catalog.AuditEvent) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	return nil
}

func (r *recordOnly) all() []catalog.AuditEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]catalog.AuditEvent(nil), r.events...)
}

// hooks implements the optional stages, to show where they run and that
// each fails closed.
type hooks struct {
	mu        sync.Mutex
	stages    []string
	limit     error
	denyCall  string
	rewrite   func([]byte) []byte
	settled   int
	metered   []int
	finished  atomic.Int64
	resultErr error
}

func (h *hooks) StartStage(ctx context.Context, c *pipeline.Call, s pipeline.Stage) (context.Context, func(*pipeline.Error)) {
	return ctx, func(err *pipeline.Error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		name := s.String()
		if err != nil {
			name += "!" + err.Kind.String()
		}
		h.stages = append(h.stages, name)
	}
}
func (h *hooks) Finished(*pipeline.Call) { h.finished.Add(1) }

// waitFinished waits until n calls have ended: an answer can reach the
// client before its call's last stages (audit) and observers have run.
func (h *hooks) waitFinished(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.finished.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d calls ended", h.finished.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *hooks) Reserve(context.Context, *pipeline.Call) (pipeline.Reservation, error) {
	if h.limit != nil {
		return nil, h.limit
	}
	return h, nil
}
func (h *hooks) Settle(_ context.Context, c *pipeline.Call, _ pipeline.Usage) {
	h.mu.Lock()
	h.settled++
	h.mu.Unlock()
}

func (h *hooks) Call(_ context.Context, c *pipeline.Call, in *pipeline.Content) (pipeline.Verdict, error) {
	if h.denyCall != "" && strings.Contains(string(in.Body), h.denyCall) {
		return pipeline.Verdict{Action: pipeline.Deny, Reason: "contains " + h.denyCall}, nil
	}
	return pipeline.Verdict{}, nil
}
func (h *hooks) Result(context.Context, *pipeline.Call) (pipeline.ResultGuard, error) {
	return h, h.resultErr
}
func (h *hooks) Piece(_ context.Context, c *pipeline.Call, out *pipeline.Content) (pipeline.Verdict, error) {
	if h.rewrite != nil {
		return pipeline.Verdict{Action: pipeline.Rewrite, Body: h.rewrite(out.Body)}, nil
	}
	return pipeline.Verdict{}, nil
}

func (h *hooks) Record(_ context.Context, c *pipeline.Call) {
	h.mu.Lock()
	h.metered = append(h.metered, c.Status)
	h.mu.Unlock()
}

func (h *hooks) reset() ([]string, int, []int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, n, m := h.stages, h.settled, h.metered
	h.stages, h.settled, h.metered = nil, 0, nil
	return s, n, m
}

func TestExtensionPoints(t *testing.T) {
	for _, mode := range []string{"json", "sse"} {
		t.Run(mode, func(t *testing.T) {
			up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				if mode == "sse" {
					w.Header().Set("Content-Type", "text/event-stream")
					fmt.Fprint(w, "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"card 4111111111111111\"}]}}\n\n")
					return
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"card 4111111111111111"}]}}`)
			})
			h := &hooks{}
			e := newEnv(t, up.URL, func(c *Config) { c.Limiter, c.Guard, c.Meter, c.Observer = h, h, h, h })

			// Allowed: every stage in order; the result guard masks.
			h.rewrite = func(b []byte) []byte { return []byte(strings.ReplaceAll(string(b), "4111111111111111", "****")) }
			r := e.post("alice-token", "github", callBody, nil)
			if r.status != 200 || !strings.Contains(string(r.body), "card ****") {
				t.Fatalf("%d %s", r.status, r.body)
			}
			h.waitFinished(t, 1)
			stages, settled, metered := h.reset()
			want := []string{"authenticate", "resolve", "authorize", "limits", "guard_call", "credential", "forward", "guard_result", "meter", "audit"}
			if !slices.Equal(stages, want) || settled != 1 || !slices.Equal(metered, []int{200}) {
				t.Fatalf("stages %v, settled %d, metered %v", stages, settled, metered)
			}

			// The call guard denies: nothing is forwarded.
			h.rewrite, h.denyCall = nil, `"hi"`
			r = e.post("alice-token", "github", callBody, nil)
			code, msg, _ := r.rpcError()
			if r.status != 200 || code != CodeDenied || !strings.Contains(msg, `contains "hi"`) {
				t.Fatalf("guard denial: %d %s", r.status, r.body)
			}
			h.waitFinished(t, 2)
			stages, settled, _ = h.reset()
			if stages[len(stages)-3] != "guard_call!guard_denied" || settled != 1 {
				t.Fatalf("stages %v, settled %d", stages, settled)
			}

			// The limiter refuses: 429 with Retry-After, audited.
			h.denyCall = ""
			h.limit = &pipeline.Error{Kind: pipeline.KindLimited, Message: "rate limit of 60 requests per minute reached", RetryAfter: 1500 * time.Millisecond}
			r = e.post("alice-token", "github", callBody, nil)
			code, _, _ = r.rpcError()
			if r.status != 429 || code != CodeLimited || r.header.Get("Retry-After") != "2" {
				t.Fatalf("limited: %d %v %s", r.status, r.header, r.body)
			}
			h.limit = errors.New("limits store down")
			if r = e.post("alice-token", "github", callBody, nil); r.status != 503 {
				t.Fatalf("limiter error: %d %s", r.status, r.body)
			}
			h.limit = nil
			// A result guard that cannot start fails closed (a JSON-RPC
			// error, as for a tool the caller may not use).
			h.resultErr = errors.New("classifier down")
			r = e.post("alice-token", "github", callBody, nil)
			if code, _, _ := r.rpcError(); r.status != 200 || code != CodeDenied || strings.Contains(string(r.body), "4111") {
				t.Fatalf("result guard error: %d %s", r.status, r.body)
			}
			h.waitFinished(t, 5)
			evs := e.audit.all()
			last := evs[len(evs)-1]
			if last.Decision != "deny" || last.StatusCode != 200 || !strings.Contains(last.Reason, "classifier down") {
				t.Fatalf("audit %+v", last)
			}
			if n := h.finished.Load(); n != 5 {
				t.Fatalf("Finished called %d times for 5 calls", n)
			}
		})
	}
}

// The metadata and the resource honour a path in the public URL (RFC 9728
// §3.1: the well-known prefix goes between host and path).
func TestPublicURLWithPath(t *testing.T) {
	up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) { jsonResult(w) })
	e := newEnv(t, up.URL)
	h, err := New(Config{PublicURL: e.srv.URL + "/gw", Auth: e.auth, Authz: e.authz, Connections: e.conns, Credentials: e.creds,
		Audit: e.audit, AuthorizationServers: []string{"https://idp.example"}, Scopes: []string{"mcp:tools"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Routes(); !slices.Equal(got, []string{"/gw/mcp/", "/.well-known/oauth-protected-resource/gw/mcp/"}) {
		t.Fatalf("routes %v", got)
	}
	e.gw = h
	srv := e.srv
	swap := func(path string, hdr map[string]string) *recorder {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Host = strings.TrimPrefix(srv.URL, "http://")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, req)
		return rec
	}
	rec := swap("/.well-known/oauth-protected-resource/gw/mcp/github", nil)
	var md map[string]any
	if rec.status != 200 || json.Unmarshal([]byte(rec.body.String()), &md) != nil ||
		md["resource"] != srv.URL+"/gw/mcp/github" || fmt.Sprint(md["scopes_supported"]) != "[mcp:tools]" {
		t.Fatalf("metadata %d %s", rec.status, rec.body.String())
	}
	rec = swap("/gw/mcp/github", nil) // a GET without a token
	www := rec.header.Get("WWW-Authenticate")
	if rec.status != 401 || www != `Bearer resource_metadata="`+srv.URL+`/.well-known/oauth-protected-resource/gw/mcp/github"` {
		t.Fatalf("challenge %d %q", rec.status, www)
	}
	if rec = swap("/mcp/github", nil); rec.status != 404 {
		t.Fatalf("the path without the public URL's: %d", rec.status)
	}
}

// heldEnd is an Observer that holds each call's end (Finished) until the
// client has read the answer (got closed), at most 10 s, and reports
// whether the answer came first.
type heldEnd struct {
	got   chan struct{}
	first chan bool
}

func (o *heldEnd) StartStage(ctx context.Context, _ *pipeline.Call, _ pipeline.Stage) (context.Context, func(*pipeline.Error)) {
	return ctx, func(*pipeline.Error) {}
}

func (o *heldEnd) Finished(*pipeline.Call) {
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case <-o.got:
		o.first <- true
	case <-t.C:
		o.first <- false
	}
}

// A whole answer (a tools/call result, a notification's 202) declares its
// length and reaches the client once the call is metered and recorded,
// before the call's end: the audit stage and the observers do not delay
// it.
func TestAnswerBeforeCallEnd(t *testing.T) {
	up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if b, _ := io.ReadAll(r.Body); strings.Contains(string(b), `"notifications/`) {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		jsonResult(w)
	})
	for _, tc := range []struct {
		name, conn, body string
		status           int
	}{
		{"result", "github", callBody, 200},
		{"notification", "github", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, 202},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &heldEnd{got: make(chan struct{}), first: make(chan bool, 1)}
			e := newEnv(t, up.URL, func(c *Config) { c.Observer = obs })
			r := e.post("alice-token", tc.conn, tc.body, nil)
			close(obs.got)
			if r.status != tc.status {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if got := r.header.Get("Content-Length"); got != strconv.Itoa(len(r.body)) {
				t.Fatalf("Content-Length %q for a body of %d bytes", got, len(r.body))
			}
			if !<-obs.first {
				t.Fatal("the answer reached the client only after the call's end")
			}
		})
	}
}
