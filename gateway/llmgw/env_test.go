package llmgw

import (
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

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/identity"
	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/llm/llmtest"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// Fakes of the stage interfaces and of the catalog's model services.

// fakeJWT accepts "Authorization: Bearer <jwt>" for the JWTs in ids (any
// three-part string stands for a verified JWT here).
type fakeJWT struct{ ids map[string]*gateway.Identity }

func (a *fakeJWT) Authenticate(_ context.Context, r *http.Request, _ string) (*gateway.Identity, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, &gateway.AuthError{Status: 401, Code: "invalid_request", Description: identity.DescMissingToken}
	}
	id := a.ids[tok]
	if id == nil {
		return nil, &gateway.AuthError{Status: 401, Code: "invalid_token", Description: "token signature is invalid"}
	}
	return id, nil
}

// fakeTokens is gateway.AccessTokens over a map; drop revokes.
type fakeTokens struct {
	mu  sync.Mutex
	ids map[string]*gateway.Identity
}

func (f *fakeTokens) VerifyAccessToken(_ context.Context, tok string) (*gateway.Identity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id := f.ids[tok]; id != nil {
		return id, nil
	}
	return nil, &gateway.AuthError{Status: 401, Code: "invalid_token", Description: "unknown, expired or revoked access token"}
}

func (f *fakeTokens) drop(tok string) {
	f.mu.Lock()
	delete(f.ids, tok)
	f.mu.Unlock()
}

// fakeAuthz allows EXECUTE on the services in grants to the principals
// listed there (subject and actor alike).
type fakeAuthz struct {
	mu     sync.Mutex
	grants map[string][]string // securable full name → principals
	calls  []enforce.Request
}

func (a *fakeAuthz) Authorize(_ context.Context, r enforce.Request) (enforce.Decision, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, r)
	has := func(p string) bool {
		for _, g := range a.grants[r.Securable.Name] {
			if g == p {
				return true
			}
		}
		return false
	}
	if r.Privilege != PrivExecute || r.Securable.Type != TypeModelService {
		return enforce.Decision{Reason: "unexpected question"}, nil
	}
	if !has(r.Subject) {
		return enforce.Decision{Reason: `subject "` + r.Subject + `" lacks EXECUTE on MODEL SERVICE ` + r.Securable.Name}, nil
	}
	if r.Actor != "" && !has(r.Actor) {
		return enforce.Decision{Reason: `actor "` + r.Actor + `" lacks EXECUTE on MODEL SERVICE ` + r.Securable.Name}, nil
	}
	return enforce.Decision{Allowed: true, Reason: "granted"}, nil
}

// fakeModels resolves model services by short or full name.
type fakeModels struct {
	mu sync.Mutex
	m  map[string]*gateway.ModelService // by full name
}

func (f *fakeModels) ModelService(_ context.Context, name string) (*gateway.ModelService, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !strings.Contains(name, ".") {
		name = "system.ai." + name
	}
	if s := f.m[name]; s != nil {
		return s, nil
	}
	return nil, gateway.ErrNoModelService
}

func (f *fakeModels) ListModelServices(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.m {
		out = append(out, n)
	}
	return out, nil
}

type noCreds struct{}

func (noCreds) Authorization(context.Context, *gateway.Connection, *gateway.Identity) (string, error) {
	return "", errors.New("no connection credentials on the LLM endpoint")
}

// fakeAudit keeps one event per EventID, as the stores do: a completion
// replaces the outcome of the event it completes.
type fakeAudit struct {
	mu     sync.Mutex
	events []catalog.AuditEvent
	fail   atomic.Bool
	done   chan string // event ids of completions and single records
	// quiet: done is not signalled (benchmarks: a goroutine woken per
	// call is a hand-off the gateway's own audit log does not make).
	quiet bool
	// onQueue, when set, is told what the pipeline recorded: "request
	// queued" (to wait for), "record queued" (nobody waits: --audit-sync
	// off), "completion queued", "record written" (a call's only one).
	onQueue func(what string)
}

func (f *fakeAudit) queued(what string) {
	if f.onQueue != nil {
		f.onQueue(what)
	}
}

func (f *fakeAudit) Record(ctx context.Context, ev catalog.AuditEvent) error {
	err := f.record(ctx, ev)
	if err == nil {
		f.queued("record written")
	}
	return err
}

func (f *fakeAudit) record(_ context.Context, ev catalog.AuditEvent) error {
	if f.fail.Load() {
		return errors.New("disk full")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quiet { // nothing is read back: nothing kept, nobody signalled
		return nil
	}
	if ev.Completes {
		for i := range f.events {
			if f.events[i].EventID == ev.EventID {
				f.events[i].CompleteWith(&ev)
				f.done <- ev.EventID
				return nil
			}
		}
		panic("completion of an unknown event " + ev.EventID)
	}
	f.events = append(f.events, ev)
	if ev.StatusCode != 0 && ev.Action != catalog.AuditActionPayload {
		f.done <- ev.EventID
	}
	return nil
}

func (f *fakeAudit) Enqueue(ctx context.Context, ev catalog.AuditEvent) (*catalog.AuditAck, error) {
	err := f.record(ctx, ev)
	f.queued("request queued")
	return catalog.DoneAuditAck(err), nil
}

func (f *fakeAudit) Submit(ctx context.Context, ev catalog.AuditEvent) error {
	err := f.record(ctx, ev)
	if err == nil && ev.Completes {
		f.queued("completion queued")
	} else if err == nil {
		f.queued("record queued")
	}
	return err
}

// fakeLimiter refuses when refuse returns an error; it records what it
// reserved and settled.
type fakeLimiter struct {
	mu      sync.Mutex
	refuse  func(c *pipeline.Call) error
	admit   *pipeline.LimitInfo
	calls   []pipeline.ModelCall
	settled []pipeline.Usage
	costs   []int64
}

type fakeReservation struct{ l *fakeLimiter }

func (l *fakeLimiter) Reserve(_ context.Context, c *pipeline.Call) (pipeline.Reservation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.Model != nil {
		l.calls = append(l.calls, *c.Model)
	}
	if l.refuse != nil {
		if err := l.refuse(c); err != nil {
			return nil, err
		}
	}
	c.Limits = l.admit
	return fakeReservation{l}, nil
}

func (r fakeReservation) Settle(_ context.Context, c *pipeline.Call, u pipeline.Usage) {
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	r.l.settled = append(r.l.settled, u)
	if c.Model != nil {
		r.l.costs = append(r.l.costs, c.Model.CostNanos)
	}
}

// Principals and tokens of the tests.
const (
	alice       = "alice@example.com"
	bob         = "bob@example.com"
	agent       = "coding-agent"
	aliceToken  = "mnd_alice_via_agent"
	bobToken    = "mnd_bob_via_agent"
	aliceJWT    = "eyJhbGciOi.alice.sig"
	openAIKey   = "sk-openai-upstream"
	anthropicKy = "sk-ant-upstream"
)

// env is the LLM endpoint on a pipeline of fakes, in front of the fake
// upstream (llmtest): "fake" answers, "down" answers 429 to everything.
type env struct {
	t       testing.TB
	h       *Handler
	srv     *httptest.Server
	URL     string // the gateway's base URL
	fake    *llmtest.Server
	fakeURL string
	down    *llmtest.Server
	tokens  *fakeTokens
	authz   *fakeAuthz
	models  *fakeModels
	audit   *fakeAudit
	limiter *fakeLimiter
}

func newEnv(t testing.TB, configure ...func(*pipeline.Config)) *env {
	t.Helper()
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey, fake.AnthropicKey = openAIKey, anthropicKy
	down, downURL := llmtest.Start(t)
	down.ForceStatus = http.StatusTooManyRequests
	down.OpenAIKey = openAIKey
	e := &env{t: t, fake: fake, fakeURL: fakeURL, down: down,
		tokens: &fakeTokens{ids: map[string]*gateway.Identity{
			aliceToken: {Subject: alice, Actor: agent, TokenID: "t1"},
			bobToken:   {Subject: bob, Actor: agent, TokenID: "t2"},
		}},
		audit:   &fakeAudit{done: make(chan string, 1024)},
		limiter: &fakeLimiter{},
	}
	openai := &gateway.ProviderService{Name: "system.ai.openai_prod", Provider: "openai", URL: fakeURL + "/v1", APIKey: openAIKey,
		Prices: map[string]gateway.ModelPrice{"gpt-4.1": {Input: 2, Output: 8, CachedInput: 0.5, HasCachedInput: true}}}
	anthropic := &gateway.ProviderService{Name: "system.ai.anthropic_prod", Provider: "anthropic", URL: fakeURL, APIKey: anthropicKy,
		Prices: map[string]gateway.ModelPrice{"claude-sonnet-4-5": {Input: 3, Output: 15, CachedInput: 0.3, CacheWrite: 3.75, HasCachedInput: true, HasCacheWrite: true}}}
	openaiDown := &gateway.ProviderService{Name: "system.ai.openai_down", Provider: "openai", URL: downURL + "/v1", APIKey: openAIKey}
	e.models = &fakeModels{m: map[string]*gateway.ModelService{
		"system.ai.frontier": {Name: "system.ai.frontier", Destinations: []gateway.ModelDestination{{Provider: openai, Model: "gpt-4.1", Weight: 100}},
			Tags: map[string]string{"team": "platform"}},
		"system.ai.claude": {Name: "system.ai.claude", Destinations: []gateway.ModelDestination{{Provider: anthropic, Model: "claude-sonnet-4-5", Weight: 100}}},
		"system.ai.fallback": {Name: "system.ai.fallback", Destinations: []gateway.ModelDestination{{Provider: openaiDown, Model: "gpt-4.1", Weight: 100}},
			Fallbacks: []gateway.ModelDestination{{Provider: anthropic, Model: "claude-sonnet-4-5"}}},
		"system.ai.secret": {Name: "system.ai.secret", Destinations: []gateway.ModelDestination{{Provider: openai, Model: "gpt-4.1", Weight: 100}}},
		"system.ai.logged": {Name: "system.ai.logged", Destinations: []gateway.ModelDestination{{Provider: openai, Model: "gpt-4.1", Weight: 100}},
			LogPayloads: true, SampleRate: 1},
	}}
	e.authz = &fakeAuthz{grants: map[string][]string{
		"system.ai.frontier": {alice, agent},
		"system.ai.claude":   {alice, agent},
		"system.ai.fallback": {alice, agent},
		"system.ai.secret":   {alice}, // not the agent
		"system.ai.logged":   {alice, agent},
	}}
	auth := identity.WithAccessTokens(&fakeJWT{ids: map[string]*gateway.Identity{aliceJWT: {Subject: alice}}}, e.tokens)
	pc := pipeline.Config{PublicURL: "http://127.0.0.1:1", Auth: auth, Authz: e.authz, Credentials: noCreds{},
		Audit: e.audit, Limiter: e.limiter}
	for _, f := range configure {
		f(&pc)
	}
	p, err := pipeline.New(pc)
	if err != nil {
		t.Fatal(err)
	}
	e.h, err = New(Config{Pipeline: p, Models: e.models, UserIDKey: []byte(strings.Repeat("k", 32)), Limits: llm.Limits{MaxBody: 256 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	for _, r := range e.h.Routes() {
		mux.Handle(r, e.h)
	}
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.URL = e.srv.URL
	return e
}

// event waits for the call's final audit record (the completion, or the
// single record of a refusal) and returns the merged row.
func (e *env) event() catalog.AuditEvent {
	e.t.Helper()
	select {
	case id := <-e.audit.done:
		e.audit.mu.Lock()
		defer e.audit.mu.Unlock()
		for _, ev := range e.audit.events {
			if ev.EventID == id {
				return ev
			}
		}
		e.t.Fatalf("audit event %s vanished", id)
	case <-time.After(10 * time.Second):
		e.t.Fatal("no audit record for the call")
	}
	return catalog.AuditEvent{}
}

// params decodes an audit row's request_params.
func params(t *testing.T, ev catalog.AuditEvent) auditParams {
	t.Helper()
	var p auditParams
	if err := json.Unmarshal([]byte(ev.RequestParams), &p); err != nil {
		t.Fatalf("request_params %q: %v", ev.RequestParams, err)
	}
	return p
}

// usageOf returns an audit row's usage columns, its routing and tags.
func usageOf(t *testing.T, ev catalog.AuditEvent) (catalog.LLMUsage, []llm.Attempt, map[string]string) {
	t.Helper()
	if ev.Usage == nil {
		t.Fatalf("audit row without usage: %+v", ev)
	}
	var routing []llm.Attempt
	if err := json.Unmarshal([]byte(ev.Usage.Routing), &routing); err != nil {
		t.Fatalf("routing %q: %v", ev.Usage.Routing, err)
	}
	var tags map[string]string
	if ev.Usage.RequestTags != "" {
		if err := json.Unmarshal([]byte(ev.Usage.RequestTags), &tags); err != nil {
			t.Fatalf("request_tags %q: %v", ev.Usage.RequestTags, err)
		}
	}
	return *ev.Usage, routing, tags
}

// post sends a raw request; hdr sets headers ("" values delete).
func (e *env) post(path, body string, hdr map[string]string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.t.Context(), http.MethodPost, e.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return ctx, cancel
}

// waitUntil polls cond (a condition another goroutine makes true), at most
// 10 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// payloads returns the captured payload events.
func (f *fakeAudit) payloads() []catalog.AuditEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []catalog.AuditEvent
	for _, ev := range f.events {
		if ev.Action == catalog.AuditActionPayload {
			out = append(out, ev)
		}
	}
	return out
}
