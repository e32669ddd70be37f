package llm_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// The keys of the test: the client's inbound token (what an agent holds)
// and the provider credentials (what only the gateway holds).
const (
	inboundToken = "mandate-inbound-token-abc"
	openAIKey    = "sk-openai-upstream-key"
	anthropicKey = "sk-ant-upstream-key"
	pseudoUser   = "u_5f2b9c0e7d1a"
)

var fixedNow = time.Unix(1_750_000_000, 0)

// harness is a minimal gateway built on package llm, in front of the fake
// upstream: it stands in for the pipeline (authentication, resolution and
// the rest), which is not this package's job.
type harness struct {
	t    *testing.T
	fake *llmtest.Server
	// down is a second fake that answers every request with an error
	// status (a destination that is failing), for fallback tests.
	down   *llmtest.Server
	URL    string // the gateway's base URL (…/v1 is appended by clients)
	routes map[string]llm.Route

	results chan *llm.Result
	mu      sync.Mutex
	hooks   llm.Hooks
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey, fake.AnthropicKey = openAIKey, anthropicKey
	fake.Now = func() time.Time { return fixedNow }
	down, downURL := llmtest.Start(t)
	down.ForceStatus = http.StatusTooManyRequests
	h := &harness{t: t, fake: fake, down: down, results: make(chan *llm.Result, 256)}
	gpt := llm.Destination{Service: "system.ai.openai_prod", Provider: llm.ProviderOpenAI, BaseURL: fakeURL + "/v1", Model: "gpt-4.1", APIKey: openAIKey, Weight: 100}
	claude := llm.Destination{Service: "system.ai.anthropic_prod", Provider: llm.ProviderAnthropic, BaseURL: fakeURL, Model: "claude-sonnet-4-5", APIKey: anthropicKey, Weight: 100}
	compat := llm.Destination{Service: "system.ai.vllm", Provider: llm.ProviderOpenAICompatible, BaseURL: fakeURL + "/v1", Model: "llama-3", APIKey: openAIKey, Weight: 100}
	gptDown := llm.Destination{Service: "system.ai.openai_down", Provider: llm.ProviderOpenAI, BaseURL: downURL + "/v1", Model: "gpt-4.1", APIKey: openAIKey, Weight: 100}
	h.routes = map[string]llm.Route{
		"gpt":      {Destinations: []llm.Destination{gpt}},
		"claude":   {Destinations: []llm.Destination{claude}},
		"compat":   {Destinations: []llm.Destination{compat}},
		"fallback": {Destinations: []llm.Destination{gptDown}, Fallbacks: []llm.Destination{claude}},
		"alldown":  {Destinations: []llm.Destination{gptDown}},
		"mixed":    {Destinations: []llm.Destination{claude, gpt}},
		"slow":     {Destinations: []llm.Destination{gpt}, Timeout: 200 * time.Millisecond},
	}
	fwd := llm.NewForwarder()
	fwd.Now = func() time.Time { return fixedNow }
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.serve(fwd, w, r)
	}))
	t.Cleanup(ts.Close)
	h.URL = ts.URL
	return h
}

func (h *harness) serve(fwd *llm.Forwarder, w http.ResponseWriter, r *http.Request) {
	cf := llm.ClientFormat(r)
	e, ok := llm.EndpointFor(r.URL.Path)
	if !ok || r.Method != e.Method() {
		llm.WriteError(w, cf, &llm.Error{Status: http.StatusNotFound, Message: "no such endpoint"})
		return
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" {
		tok = r.Header.Get("X-Api-Key")
	}
	if tok != inboundToken {
		llm.WriteError(w, cf, llm.Unauthorized("invalid access token"))
		return
	}
	if e == llm.Models {
		llm.WriteModels(w, r, []llm.ModelInfo{{ID: "claude", Created: fixedNow}, {ID: "gpt", Created: fixedNow}})
		return
	}
	body, err := llm.ReadBody(r, llm.Limits{MaxBody: 1 << 20})
	if err != nil {
		llm.WriteError(w, cf, err)
		return
	}
	req, err := llm.Parse(e, body, llm.Limits{MaxBody: 1 << 20})
	if err != nil {
		llm.WriteError(w, cf, err)
		return
	}
	route, ok := h.routes[req.Model]
	if !ok {
		llm.WriteError(w, cf, llm.NotFound("model service "+req.Model+" does not exist or you lack EXECUTE on it"))
		return
	}
	h.mu.Lock()
	hooks := h.hooks
	h.mu.Unlock()
	call := &llm.Call{Request: req, Route: route, UserID: pseudoUser, Header: r.Header, Query: r.URL.Query(), Hooks: hooks}
	res := fwd.Forward(r.Context(), w, call)
	h.results <- res
}

// result returns the result of the next finished call (bounded wait: a
// streamed call's handler may finish after the client read the last
// event).
func (h *harness) result() *llm.Result {
	h.t.Helper()
	select {
	case r := <-h.results:
		return r
	case <-time.After(10 * time.Second):
		h.t.Fatal("no call result recorded")
		return nil
	}
}

func (h *harness) setHooks(hk llm.Hooks) {
	h.mu.Lock()
	h.hooks = hk
	h.mu.Unlock()
}

// reset forgets earlier results and requests.
func (h *harness) reset() {
	for {
		select {
		case <-h.results:
		default:
			h.fake.Reset()
			return
		}
	}
}
