package mcp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/gateway"
)

var (
	errTest      = errors.New("boom")
	authError403 = gateway.AuthError{Status: 403, Code: "insufficient_scope", Description: "needs mcp:tools", Scope: "mcp:tools"}
	signInErr    = gateway.SignInRequiredError{Connection: "system.ai.github", URL: "http://gw.example/connect/system.ai.github?state=abc"}
)

// rawUpstream serves a hand-written handler (a stateless upstream: no
// session ids).
func rawUpstream(t *testing.T, h http.HandlerFunc) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Like any real server: reading the body to its end lets net/http
		// notice a closed connection and cancel r.Context().
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

const callBody = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`

func TestUpstreamFailures(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	for _, tc := range []struct {
		name    string
		url     string
		handler http.HandlerFunc
		status  int
		msg     string
	}{
		{name: "down", url: closedURL, status: 502, msg: "upstream system.ai.github unavailable: connection refused"},
		{name: "slow", handler: func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}, status: 504, msg: "upstream system.ai.github unavailable: timed out"},
		{name: "5xx", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "database exploded at 10.1.2.3", 500)
		}, status: 502, msg: "upstream system.ai.github unavailable: it answered HTTP 500"},
		{name: "html", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, "<html>login</html>")
		}, status: 502, msg: "invalid response"},
		{name: "bad json", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"jsonrpc":"2.0","id":7,"result":`)
		}, status: 502, msg: "invalid response (not JSON)"},
		{name: "upstream refuses credential", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			w.WriteHeader(401)
		}, status: 502, msg: "refused the gateway's credentials (HTTP 401)"},
		{name: "empty stream", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(200)
		}, status: 502, msg: "ended the stream without a response"},
		{name: "redirect", handler: func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://evil.example/", http.StatusTemporaryRedirect)
		}, status: 502, msg: "redirect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if tc.handler != nil {
				url = rawUpstream(t, tc.handler).URL
			}
			client := DefaultUpstreamClient()
			client.Transport.(*http.Transport).ResponseHeaderTimeout = 200 * time.Millisecond
			e := newEnv(t, url, func(c *Config) { c.Upstream = client })
			start := time.Now()
			r := e.post("alice-token", "github", callBody, nil)
			code, msg, _ := r.rpcError()
			if r.status != tc.status || code != CodeInternalError || !strings.Contains(msg, tc.msg) {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			if strings.Contains(msg, "10.1.2.3") {
				t.Fatalf("upstream internals leaked: %s", msg)
			}
			if !strings.Contains(string(r.body), `"id":7`) {
				t.Fatalf("id lost: %s", r.body)
			}
			if r.header.Get("WWW-Authenticate") != "" {
				t.Fatal("upstream WWW-Authenticate relayed")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("took %v", d)
			}
			evs := e.audit.all()
			if len(evs) != 1 || evs[0].StatusCode != tc.status || evs[0].ErrorMessage == "" || evs[0].Decision != "allow" {
				t.Fatalf("audit %+v", evs)
			}
		})
	}

	// Through the SDK client, the session survives an upstream outage.
	up := newUpstream(t, nil)
	flaky := make(chan bool, 1)
	flaky <- false
	front := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		down := <-flaky
		flaky <- down
		if down {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		up.srv.Config.Handler.ServeHTTP(w, r)
	})
	e := newEnv(t, front.URL)
	cs := e.mustConnect("alice-token", "github", connectOpts{})
	<-flaky
	flaky <- true
	_, err := cs.CallTool(ctxTimeout(t), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
	if err == nil {
		t.Fatal("call during outage succeeded")
	}
	<-flaky
	flaky <- false
	if _, err := cs.CallTool(ctxTimeout(t), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err != nil {
		t.Fatalf("after outage: %v", err)
	}
}

// sseUpstream streams event 1, waits for next, then streams event 2 (the
// response); it reports when its request context ends.
func sseUpstream(t *testing.T, next <-chan struct{}, cancelled chan<- struct{}) *httptest.Server {
	return rawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "id: e1\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-r.Context().Done():
			cancelled <- struct{}{}
			return
		}
		fmt.Fprint(w, "id: e2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"done\"}]}}\n\n")
		w.(http.Flusher).Flush()
	})
}

func openStream(t *testing.T, ctx context.Context, e *env) (*http.Response, *bufio.Reader) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url("github"), strings.NewReader(callBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer alice-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp, bufio.NewReader(resp.Body)
}

// readEvent reads one event's lines.
func readEvent(t *testing.T, br *bufio.Reader) string {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (so far %q)", err, b.String())
		}
		if line == "\n" {
			return b.String()
		}
		b.WriteString(line)
	}
}

func TestSSERelayedPerEvent(t *testing.T) {
	next, cancelled := make(chan struct{}), make(chan struct{}, 1)
	e := newEnv(t, sseUpstream(t, next, cancelled).URL)
	resp, br := openStream(t, context.Background(), e)
	defer resp.Body.Close()
	// Event 1 arrives while the upstream is still holding event 2.
	got := make(chan string, 1)
	go func() { got <- readEvent(t, br) }()
	select {
	case ev := <-got:
		if !strings.Contains(ev, "notifications/progress") || !strings.Contains(ev, "id: e1") {
			t.Fatalf("event 1: %q", ev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("event 1 was not relayed before event 2 was sent")
	}
	// The request's audit record was durable before event 1 reached the
	// client; its outcome is not known yet (status 0).
	evs := e.audit.all()
	if len(evs) != 1 || evs[0].StatusCode != 0 || evs[0].Decision != "allow" {
		t.Fatalf("audit %+v", evs)
	}
	close(next)
	if ev := readEvent(t, br); !strings.Contains(ev, `"text":"done"`) {
		t.Fatalf("event 2: %q", ev)
	}
	// The completion was queued before the response reached the client:
	// still one row, now with the outcome.
	evs = e.audit.all()
	if len(evs) != 1 || evs[0].StatusCode != 200 || !strings.Contains(evs[0].RequestParams, `"bytes_out":`) {
		t.Fatalf("audit after the response %+v", evs)
	}
}

// TestSSERelaysOnlyWhatItRead: an upstream's event reaches the client
// only as the relay parsed and inspected it. An event of another type is
// not relayed; a bare CR, which a client reads as a line end (here: a
// blank line, ending the event, and a second event), breaks the stream
// before anything of it is sent.
func TestSSERelaysOnlyWhatItRead(t *testing.T) {
	const response = `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"done"}]}}`
	const hidden = `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"HIDDEN"}]}}`
	for _, tc := range []struct {
		name, stream string
		status       int
		want         string // the client's body (200), or in it; HIDDEN never is
	}{
		{"an event of another type", "event: other\ndata: " + hidden + "\n\nevent: message\ndata: " + response + "\n\n", 200,
			"event: message\ndata: " + response + "\n\n"},
		{"a bare CR", "data: " + response + "\r\rdata: " + hidden + "\n\n", http.StatusBadGateway, "unreadable stream"},
		// Relayed without the mark, as the one message it read.
		{"a byte-order mark first", "\xef\xbb\xbfdata: " + response + "\n\n", 200, "data: " + response + "\n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := rawUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.WriteHeader(200)
				fmt.Fprint(w, tc.stream)
			})
			e := newEnv(t, up.URL)
			r := e.post("alice-token", "github", callBody, nil)
			body := string(r.body)
			if r.status != tc.status || strings.Contains(body, "HIDDEN") || !strings.Contains(body, tc.want) || r.status == 200 && body != tc.want {
				t.Fatalf("%d %q", r.status, body)
			}
		})
	}
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	next, cancelled := make(chan struct{}), make(chan struct{}, 1)
	defer close(next)
	e := newEnv(t, sseUpstream(t, next, cancelled).URL)
	ctx, cancel := context.WithCancel(context.Background())
	resp, br := openStream(t, ctx, e)
	defer resp.Body.Close()
	readEvent(t, br)
	cancel() // the agent goes away mid-stream
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled")
	}
}

func TestSDKCancellationReachesUpstream(t *testing.T) {
	// The SDK client cancels a call by closing its request and sending
	// notifications/cancelled; both pass the gateway.
	started, stopped := make(chan struct{}), make(chan struct{})
	s := sdk.NewServer(&sdk.Implementation{Name: "slow", Version: "1"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "slow"}, func(ctx context.Context, req *sdk.CallToolRequest, a echoArgs) (*sdk.CallToolResult, any, error) {
		close(started)
		<-ctx.Done()
		close(stopped)
		return nil, nil, ctx.Err()
	})
	up := rawUpstream(t, sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil).ServeHTTP)
	e := newEnv(t, up.URL)
	cs := e.mustConnect("alice-token", "github", connectOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "slow", Arguments: map[string]any{"text": "x"}})
		done <- err
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("call ended before the tool started: %v", err)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream tool was not cancelled")
	}
	<-done
	// The notification is audited once the upstream has answered it.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.Join(e.audit.actions(), ","), "notifications/cancelled") {
		if time.Now().After(deadline) {
			t.Fatalf("audited %v", e.audit.actions())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRequestLimits(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, up.srv.URL, func(c *Config) { c.MaxBody = 1024 })
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("a", 2000) + `"}}}`
	r := e.post("alice-token", "github", big, nil)
	if code, _, _ := r.rpcError(); r.status != http.StatusRequestEntityTooLarge || code != CodeInvalidRequest {
		t.Fatalf("oversized: %d %s", r.status, r.body)
	}
	// Chunked (no Content-Length) too.
	req, _ := http.NewRequest(http.MethodPost, e.url("github"), struct{ *strings.Reader }{strings.NewReader(big)})
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer alice-token")
	if r := e.do(req); r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked oversized: %d", r.status)
	}
	for _, tc := range []struct {
		body   string
		status int
		code   int
	}{
		{`[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, 400, CodeInvalidRequest},
		{`{"jsonrpc":"2.0","id":1,"method":"ping"`, 400, CodeParseError},
		{`{"jsonrpc":"1.0","id":1,"method":"ping"}`, 400, CodeInvalidRequest},
		{`{"jsonrpc":"2.0","id":null,"method":"ping"}`, 400, CodeInvalidRequest},
		{`{"jsonrpc":"2.0","id":1}`, 400, CodeInvalidRequest},
		{`"hello"`, 400, CodeInvalidRequest},
		{``, 400, CodeInvalidRequest},
		// Read two ways by different decoders: refused.
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"},"Params":{"name":"delete_repo"}}`, 400, CodeInvalidRequest},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","name":"echo"}}`, 400, CodeInvalidRequest},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"a":1,"\u0061":2}}}`, 400, CodeInvalidRequest},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}`, 200, CodeInvalidParams},
	} {
		r := e.post("alice-token", "github", tc.body, nil)
		if code, _, _ := r.rpcError(); r.status != tc.status || code != tc.code {
			t.Errorf("%s: %d %s", tc.body, r.status, r.body)
		}
	}
	if n := len(up.methods); n != 0 {
		t.Fatalf("upstream saw %v", up.methods)
	}
	// Unsupported protocol version.
	r = e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Protocol-Version": "2024-01-01"})
	if code, _, _ := r.rpcError(); r.status != 400 || code != CodeUnsupportedProtocolVersion {
		t.Fatalf("version: %d %s", r.status, r.body)
	}
	// Wrong content type.
	r = e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Content-Type": "text/plain"})
	if r.status != http.StatusUnsupportedMediaType {
		t.Fatalf("content type: %d", r.status)
	}
}

func TestOrigin(t *testing.T) {
	up := newUpstream(t, nil)
	e := newEnv(t, up.srv.URL, func(c *Config) { c.AllowedOrigins = []string{"https://app.example"} })
	for _, tc := range []struct {
		origin string
		status int
	}{
		{"https://evil.example", 403},
		{"null", 403},
		{"https://app.example", 200},
		{"http://localhost:6274", 200}, // the gateway is on loopback
		{"http://127.0.0.1:9999", 200},
		{"", 200},
	} {
		r := e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Origin": tc.origin})
		if r.status != tc.status {
			t.Errorf("origin %q: %d %s", tc.origin, r.status, r.body)
		}
		if tc.status == 200 && tc.origin != "" && r.header.Get("Access-Control-Allow-Origin") != tc.origin {
			t.Errorf("origin %q: no CORS header", tc.origin)
		}
	}
	// A public gateway does not take localhost origins.
	h, err := New(Config{PublicURL: "https://gw.example", Auth: e.auth, Authz: e.authz, Connections: e.conns, Credentials: e.creds, Audit: e.audit})
	if err != nil {
		t.Fatal(err)
	}
	if h.p.OriginAllowed("http://localhost:3000") || !h.p.OriginAllowed("https://gw.example") {
		t.Fatal("origin rules for a public gateway")
	}
}

func TestAuditFailureFailsClosed(t *testing.T) {
	for _, mode := range responseModes {
		t.Run(mode.name, func(t *testing.T) {
			up := newUpstream(t, mode.opts)
			e := newEnv(t, up.srv.URL)
			cs := e.mustConnect("alice-token", "github", connectOpts{})
			e.audit.fail.Store(true)
			_, err := cs.CallTool(ctxTimeout(t), &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
			if err == nil {
				t.Fatal("a call was answered without an audit record")
			}
			r := e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, map[string]string{"Mcp-Session-Id": cs.ID(), "Mcp-Protocol-Version": "2025-11-25"})
			code, msg, _ := r.rpcError()
			if r.status != 503 || code != CodeInternalError || !strings.Contains(msg, "audit") {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			// Nothing reaches the client unaudited, not even a 401.
			r = e.post("", "github", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, nil)
			if r.status != 503 || r.header.Get("WWW-Authenticate") != "" {
				t.Fatalf("unauthenticated with a broken sink: %d %v", r.status, r.header)
			}
			// A new session is not handed out unaudited.
			before := e.gw.Sessions()
			r = e.post("alice-token", "github", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"x","version":"1"}}}`, nil)
			if r.status != 503 || r.header.Get("Mcp-Session-Id") != "" || e.gw.Sessions() != before {
				t.Fatalf("initialize with a broken sink: %d %q", r.status, r.header.Get("Mcp-Session-Id"))
			}
			e.audit.fail.Store(false)
		})
	}
}

func TestStandaloneStreamAndResumption(t *testing.T) {
	up := newUpstream(t, &sdk.StreamableHTTPOptions{EventStore: sdk.NewMemoryEventStore(nil)})
	e := newEnv(t, up.srv.URL)
	cs := e.mustConnect("alice-token", "github", connectOpts{standaloneSSE: true})
	if _, err := cs.ListTools(ctxTimeout(t), nil); err != nil {
		t.Fatal(err)
	}
	// The standalone GET stream was authorized and audited with method GET.
	deadline := time.Now().Add(5 * time.Second)
	for up.count("GET") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if up.count("GET") == 0 {
		t.Fatal("no GET stream reached the upstream")
	}
	var sawGET bool
	for time.Now().Before(deadline) && !sawGET {
		for _, ev := range e.audit.all() {
			sawGET = sawGET || (ev.Action == "GET" && ev.Decision == "allow" && ev.SessionID == cs.ID())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !sawGET {
		t.Fatalf("GET not audited: %v", e.audit.actions())
	}
	var sawGETAuthz bool
	for _, r := range e.authz.requests() {
		sawGETAuthz = sawGETAuthz || r.ContextMap()["method"] == "GET"
	}
	if !sawGETAuthz {
		t.Fatal("GET not authorized")
	}
	// GET without a session on a stateful upstream: 400; with another
	// user's session: 404.
	req, _ := http.NewRequest(http.MethodGet, e.url("github"), nil)
	req.Header.Set("Authorization", "Bearer alice-token")
	req.Header.Set("Accept", "text/event-stream")
	if r := e.do(req); r.status != 400 {
		t.Fatalf("GET without session: %d", r.status)
	}
	req.Header.Set("Authorization", "Bearer bob-token")
	req.Header.Set("Mcp-Session-Id", cs.ID())
	if r := e.do(req); r.status != 404 {
		t.Fatalf("GET with alice's session as bob: %d", r.status)
	}
}

func TestStateless2026(t *testing.T) {
	up := newUpstream(t, &sdk.StreamableHTTPOptions{Stateless: true})
	e := newEnv(t, up.srv.URL)
	e.conns.m["github"].Options["include_tools"] = "echo"
	cs := e.mustConnect("alice-token", "github", connectOpts{})
	if v := cs.InitializeResult().ProtocolVersion; v != "2026-07-28" {
		t.Fatalf("negotiated %s", v)
	}
	ctx := ctxTimeout(t)
	lt, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := toolNames(lt); len(got) != 1 || got[0] != "echo" {
		t.Fatalf("tools %v", got)
	}
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "new"}})
	if err != nil || textOf(res) != "echo: new" {
		t.Fatalf("call: %v %v", res, err)
	}
	if e.gw.Sessions() != 0 || cs.ID() != "" {
		t.Fatal("2026-07-28 must not create sessions")
	}
	// Header/body mismatch.
	hdr := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "push"}
	r := e.post("alice-token", "github", callBody, hdr)
	if code, _, _ := r.rpcError(); r.status != 400 || code != CodeHeaderMismatch {
		t.Fatalf("Mcp-Name mismatch: %d %s", r.status, r.body)
	}
	hdr["Mcp-Method"], hdr["Mcp-Name"] = "tools/list", "echo"
	if r := e.post("alice-token", "github", callBody, hdr); r.status != 400 {
		t.Fatalf("Mcp-Method mismatch: %d %s", r.status, r.body)
	}
	// GET and DELETE are not part of 2026-07-28.
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		req, _ := http.NewRequest(m, e.url("github"), nil)
		req.Header.Set("Authorization", "Bearer alice-token")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		if r := e.do(req); r.status != 405 || r.header.Get("Allow") != "POST" {
			t.Fatalf("%s: %d", m, r.status)
		}
	}
}

func TestSessionTableBounded(t *testing.T) {
	tab := newSessionTable(3, 3, time.Hour)
	now := time.Now()
	var ids []string
	for i := 0; i < 10; i++ {
		s := &session{id: newSessionID(), subject: "a", conn: "c"}
		tab.add(s, now.Add(time.Duration(i)*time.Second))
		ids = append(ids, s.id)
	}
	if tab.len() != 3 {
		t.Fatalf("%d sessions", tab.len())
	}
	if tab.get(ids[9], "a", "", "c", now.Add(10*time.Second)) == nil {
		t.Fatal("the newest session was evicted")
	}
	// One subject's flood replaces its own sessions, not another's.
	tab = newSessionTable(100, 10, time.Hour)
	bob := &session{id: newSessionID(), subject: "bob", conn: "c"}
	tab.add(bob, now)
	var alice []string
	for i := range 1000 {
		s := &session{id: newSessionID(), subject: "alice", conn: "c"}
		tab.add(s, now.Add(time.Duration(i+1)*time.Second))
		alice = append(alice, s.id)
	}
	at := now.Add(2000 * time.Second)
	if tab.len() != 11 || tab.get(bob.id, "bob", "", "c", at) == nil {
		t.Fatalf("after alice's 1,000 sessions: %d sessions, bob's gone: %v", tab.len(), tab.get(bob.id, "bob", "", "c", at) == nil)
	}
	if tab.get(alice[999], "alice", "", "c", at) == nil || tab.get(alice[989], "alice", "", "c", at) != nil {
		t.Fatal("alice's flood did not keep her 10 newest sessions")
	}
	tab.remove(alice[999])
	if tab.len() != 10 || len(tab.bySubject["alice"]) != 9 {
		t.Fatalf("after a removal: %d sessions, alice %d", tab.len(), len(tab.bySubject["alice"]))
	}
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := newSessionID()
		if len(id) != 32 || seen[id] {
			t.Fatalf("session id %q", id)
		}
		seen[id] = true
	}
}
