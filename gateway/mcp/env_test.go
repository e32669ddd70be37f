package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/identity"
)

// Fakes of the stage interfaces.

// fakeAuth accepts "Bearer <token>" for the tokens in ids.
type fakeAuth struct {
	ids map[string]*gateway.Identity
	err error // when set, every call fails with it
}

func (a *fakeAuth) Authenticate(_ context.Context, r *http.Request, resource string) (*gateway.Identity, error) {
	if a.err != nil {
		return nil, a.err
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, &gateway.AuthError{Status: 401, Code: "invalid_request", Description: identity.DescMissingToken}
	}
	id := a.ids[tok]
	if id == nil {
		return nil, &gateway.AuthError{Status: 401, Code: "invalid_token", Description: "unknown token"}
	}
	cp := *id
	cp.Token = tok
	return &cp, nil
}

// fakeAuthz allows everything deny does not deny.
type fakeAuthz struct {
	mu    sync.Mutex
	deny  func(r enforce.Request) string // reason, or "" to allow
	err   error
	calls []enforce.Request
}

func (a *fakeAuthz) Authorize(_ context.Context, r enforce.Request) (enforce.Decision, error) {
	a.mu.Lock()
	a.calls = append(a.calls, r)
	deny, err := a.deny, a.err
	a.mu.Unlock()
	if err != nil {
		return enforce.Decision{Reason: "authorization unavailable: denying"}, err
	}
	if deny != nil {
		if reason := deny(r); reason != "" {
			return enforce.Decision{Allowed: false, Reason: reason}, nil
		}
	}
	return enforce.Decision{Allowed: true, Reason: "granted"}, nil
}

func (a *fakeAuthz) setDeny(f func(r enforce.Request) string) {
	a.mu.Lock()
	a.deny = f
	a.mu.Unlock()
}

func (a *fakeAuthz) requests() []enforce.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]enforce.Request(nil), a.calls...)
}

type fakeConns struct {
	mu sync.Mutex
	m  map[string]*gateway.Connection // by path name
}

func (f *fakeConns) Connection(_ context.Context, name string) (*gateway.Connection, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.m[name]; ok {
		cp := *c
		return &cp, nil
	}
	return nil, gateway.ErrNoConnection
}

func (f *fakeConns) set(name string, c *gateway.Connection) {
	f.mu.Lock()
	f.m[name] = c
	f.mu.Unlock()
}

type fakeCreds struct {
	mu    sync.Mutex
	value string
	err   error
}

func (f *fakeCreds) Authorization(_ context.Context, c *gateway.Connection, id *gateway.Identity) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.value, f.err
}

func (f *fakeCreds) set(v string, err error) {
	f.mu.Lock()
	f.value, f.err = v, err
	f.mu.Unlock()
}

// fakeAudit is an AuditQueue that keeps one event per EventID, as the
// stores do: a completion replaces the outcome of the event it completes.
type fakeAudit struct {
	mu      sync.Mutex
	events  []catalog.AuditEvent
	records int // calls of Record, Enqueue and Submit
	fail    atomic.Bool
}

var _ gateway.AuditQueue = (*fakeAudit)(nil)

func (f *fakeAudit) Record(_ context.Context, ev catalog.AuditEvent) error {
	if f.fail.Load() {
		return errors.New("disk full")
	}
	f.add(ev)
	return nil
}

func (f *fakeAudit) Enqueue(ctx context.Context, ev catalog.AuditEvent) (*catalog.AuditAck, error) {
	return catalog.DoneAuditAck(f.Record(ctx, ev)), nil
}

func (f *fakeAudit) Submit(ctx context.Context, ev catalog.AuditEvent) error {
	return f.Record(ctx, ev)
}

func (f *fakeAudit) add(ev catalog.AuditEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records++
	if ev.Completes {
		for i := range f.events {
			if f.events[i].EventID == ev.EventID {
				f.events[i].CompleteWith(&ev)
				return
			}
		}
		panic("completion of an unknown event " + ev.EventID)
	}
	f.events = append(f.events, ev)
}

func (f *fakeAudit) all() []catalog.AuditEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]catalog.AuditEvent(nil), f.events...)
}

// actions lists the audited actions in order.
func (f *fakeAudit) actions() []string {
	var out []string
	for _, ev := range f.all() {
		out = append(out, ev.Action)
	}
	return out
}

// upstream is an MCP server made with the official SDK, wrapped to record
// what reaches it.
type upstream struct {
	srv *httptest.Server
	mu  sync.Mutex
	// authorization headers and cookies the upstream received
	auths, cookies []string
	methods        []string // JSON-RPC methods (or HTTP method for GET/DELETE)
	sessionIDs     []string
	slowStarted    chan struct{}
	slowCancelled  chan struct{}
}

type echoArgs struct {
	Text string `json:"text"`
}

type repoArgs struct {
	Repo string `json:"repo"`
}

func newSDKServer(u *upstream) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "upstream", Version: "1.0.0"}, nil)
	sdk.AddTool(s, &sdk.Tool{Name: "echo", Description: "echoes text"},
		func(ctx context.Context, req *sdk.CallToolRequest, a echoArgs) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "echo: " + a.Text}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "delete_repo", Description: "deletes a repository"},
		func(ctx context.Context, req *sdk.CallToolRequest, a repoArgs) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "deleted " + a.Repo}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "push", Description: "pushes to a repository"},
		func(ctx context.Context, req *sdk.CallToolRequest, a repoArgs) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "pushed " + a.Repo}}}, nil, nil
		})
	sdk.AddTool(s, &sdk.Tool{Name: "secret_tool", Description: "hidden by include_tools"},
		func(ctx context.Context, req *sdk.CallToolRequest, a echoArgs) (*sdk.CallToolResult, any, error) {
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: "secret"}}}, nil, nil
		})
	return s
}

func newUpstream(t *testing.T, opts *sdk.StreamableHTTPOptions) *upstream {
	t.Helper()
	u := &upstream{slowStarted: make(chan struct{}, 1), slowCancelled: make(chan struct{}, 1)}
	s := newSDKServer(u)
	h := sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, opts)
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				Method string `json:"method"`
			}
			_ = json.Unmarshal(body, &m)
			method = m.Method
			if method == "" {
				method = "response"
			}
		}
		u.mu.Lock()
		u.auths = append(u.auths, r.Header.Get("Authorization"))
		u.cookies = append(u.cookies, r.Header.Get("Cookie"))
		u.methods = append(u.methods, method)
		u.sessionIDs = append(u.sessionIDs, r.Header.Get("Mcp-Session-Id"))
		u.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) seen() (auths, cookies, methods, sessions []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.auths...), append([]string(nil), u.cookies...),
		append([]string(nil), u.methods...), append([]string(nil), u.sessionIDs...)
}

func (u *upstream) count(method string) int {
	_, _, ms, _ := u.seen()
	n := 0
	for _, m := range ms {
		if m == method {
			n++
		}
	}
	return n
}

// env is a gateway in front of upstreams, with fake stages.
type env struct {
	t     testing.TB
	gw    *Handler
	srv   *httptest.Server
	auth  *fakeAuth
	authz *fakeAuthz
	conns *fakeConns
	creds *fakeCreds
	audit *fakeAudit
	mu    sync.Mutex
	now   time.Time
}

const upstreamCredential = "Bearer upstream-credential-for-github"

func newEnv(t testing.TB, upstreamURL string, configure ...func(*Config)) *env {
	t.Helper()
	e := &env{
		t: t,
		auth: &fakeAuth{ids: map[string]*gateway.Identity{
			"alice-token": {Subject: "alice@example.com", Actor: "coding-agent", TokenID: "t-alice"},
			"bob-token":   {Subject: "bob@example.com", Actor: "coding-agent", TokenID: "t-bob"},
			"agent-token": {Subject: "coding-agent", TokenID: "t-agent"},
		}},
		authz: &fakeAuthz{},
		conns: &fakeConns{m: map[string]*gateway.Connection{}},
		creds: &fakeCreds{value: upstreamCredential},
		audit: &fakeAudit{},
		now:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	e.conns.set("github", &gateway.Connection{
		Name: "system.ai.github", URL: upstreamURL, AuthMode: "shared_principal",
		Options: map[string]string{catalog.OptURL: upstreamURL, catalog.OptAuthMode: "shared_principal"}, Revision: 7,
	})
	e.conns.set("other", &gateway.Connection{
		Name: "system.ai.other", URL: upstreamURL, AuthMode: "none",
		Options: map[string]string{catalog.OptURL: upstreamURL}, Revision: 7,
	})
	var h http.Handler
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(e.srv.Close)
	cfg := Config{
		PublicURL:            e.srv.URL,
		Auth:                 e.auth,
		Authz:                e.authz,
		Connections:          e.conns,
		Credentials:          e.creds,
		Audit:                e.audit,
		AuthorizationServers: []string{"https://idp.example"},
		Now:                  e.clock,
	}
	for _, f := range configure {
		f(&cfg)
	}
	gw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.gw, h = gw, gw
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.mu.Unlock()
}

func (e *env) url(conn string) string { return e.srv.URL + "/mcp/" + conn }

// bearer adds a token (and a cookie, which must never reach the upstream).
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	r.Header.Set("Cookie", "gateway_session=must-not-leak")
	return b.base.RoundTrip(r)
}

func httpClient(token string) *http.Client {
	return &http.Client{Transport: bearer{token, http.DefaultTransport}}
}

type connectOpts struct {
	standaloneSSE bool
	client        *sdk.ClientOptions
	version       string
}

// connect opens an MCP client session to conn through the gateway.
func (e *env) connect(token, conn string, o connectOpts) (*sdk.ClientSession, error) {
	c := sdk.NewClient(&sdk.Implementation{Name: "agent", Version: "1.0.0"}, o.client)
	tr := &sdk.StreamableClientTransport{
		Endpoint:             e.url(conn),
		HTTPClient:           httpClient(token),
		DisableStandaloneSSE: !o.standaloneSSE,
		MaxRetries:           -1,
	}
	var so *sdk.ClientSessionOptions
	if o.version != "" {
		so = &sdk.ClientSessionOptions{ProtocolVersion: o.version}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Connect(ctx, tr, so)
}

func (e *env) mustConnect(token, conn string, o connectOpts) *sdk.ClientSession {
	e.t.Helper()
	cs, err := e.connect(token, conn, o)
	if err != nil {
		e.t.Fatalf("connect: %v", err)
	}
	e.t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// rawResp is one raw HTTP exchange with the gateway.
type rawResp struct {
	status int
	header http.Header
	body   []byte
}

func (r rawResp) rpcError() (code int, msg string, data json.RawMessage) {
	var m struct {
		Error *struct {
			Code    int             `json:"code"`
			Message string          `json:"message"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if json.Unmarshal(r.body, &m) != nil || m.Error == nil {
		return 0, "", nil
	}
	return m.Error.Code, m.Error.Message, m.Error.Data
}

// post sends one raw message to the gateway.
func (e *env) post(token, conn, body string, hdr map[string]string) rawResp {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url(conn), strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) rawResp {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResp{resp.StatusCode, resp.Header, b}
}

// initialize runs the legacy handshake by hand and returns the gateway
// session id ("" for a stateless upstream).
func (e *env) initialize(token, conn string) string {
	e.t.Helper()
	r := e.post(token, conn, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`,
		map[string]string{"Mcp-Protocol-Version": "2025-11-25"})
	if r.status != 200 {
		e.t.Fatalf("initialize: %d %s", r.status, r.body)
	}
	sid := r.header.Get("Mcp-Session-Id")
	r = e.post(token, conn, `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		map[string]string{"Mcp-Protocol-Version": "2025-11-25", "Mcp-Session-Id": sid})
	if r.status != 202 {
		e.t.Fatalf("initialized: %d %s", r.status, r.body)
	}
	return sid
}

func toolNames(res *sdk.ListToolsResult) []string {
	var out []string
	for _, t := range res.Tools {
		out = append(out, t.Name)
	}
	return out
}

func textOf(res *sdk.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*sdk.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}
