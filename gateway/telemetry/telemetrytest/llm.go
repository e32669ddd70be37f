package telemetrytest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/pipeline"
	"github.com/mandatehq/mandate/gateway/telemetry"
)

// The minimal model-call path: an OpenAI-style chat completions upstream
// and a pipeline protocol that forwards to it and reports to telemetry
// exactly what the LLM adapter must report (SetLLMRequest in Resolve,
// StartAttempt and Outbound in Send, FirstToken and SetLLMResult in
// Relay). It stands in for the LLM adapter in the telemetry tests.

// LLMUpstream is a fake chat completions server: a JSON answer, or an SSE
// stream of two chunks and a usage chunk when the request has
// "stream": true. It records the traceparent of each request.
type LLMUpstream struct {
	*httptest.Server
	mu           sync.Mutex
	traceparents []string
}

// StartLLMUpstream starts the fake upstream; it stops with the test.
func StartLLMUpstream(t testing.TB) *LLMUpstream {
	u := &LLMUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.Close)
	return u
}

// Traceparents are the traceparent headers received so far.
func (u *LLMUpstream) Traceparents() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.traceparents...)
}

func (u *LLMUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.traceparents = append(u.traceparents, r.Header.Get("traceparent"))
	u.mu.Unlock()
	var req struct {
		Model  string `json:"model"`
		Stream bool   `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Model == "" {
		http.Error(w, `{"error":{"message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4}}}`,
			req.Model+"-2025")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for _, d := range []string{
		fmt.Sprintf(`{"id":"chatcmpl-2","model":%q,"choices":[{"index":0,"delta":{"content":"hel"}}]}`, req.Model+"-2025"),
		fmt.Sprintf(`{"id":"chatcmpl-2","model":%q,"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}`, req.Model+"-2025"),
		fmt.Sprintf(`{"id":"chatcmpl-2","model":%q,"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":2,"total_tokens":22}}`, req.Model+"-2025"),
	} {
		fmt.Fprintf(w, "data: %s\n\n", d)
		fl.Flush()
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
}

// LLMHandler serves POST /v1/chat/completions through p: the model names
// a model service system.ai.{model} routed to upstream (model "gpt-test"
// at destination "openai_test"), priced at $1/$2 per million input/output
// tokens.
func LLMHandler(p *pipeline.Pipeline, upstream string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &llmCall{upstream: upstream}
		x.call.Resource = "http://gateway/v1/chat/completions"
		p.Serve(w, r, &x.call, x)
	})
}

type llmCall struct {
	call     pipeline.Call
	upstream string
	stream   bool
	model    string
}

func (x *llmCall) Service() string { return "llm" }

func (x *llmCall) Resolve(ctx context.Context, c *pipeline.Call) error {
	body, err := io.ReadAll(io.LimitReader(c.Request.Body, 1<<20))
	if err != nil {
		return err
	}
	var req struct {
		Model     string `json:"model"`
		Stream    bool   `json:"stream"`
		MaxTokens int64  `json:"max_tokens"`
	}
	if json.Unmarshal(body, &req) != nil || req.Model == "" {
		return &pipeline.Error{Kind: pipeline.KindInvalid, Message: "the body must name a model"}
	}
	x.stream, x.model = req.Stream, req.Model
	c.Action = "chat.completions"
	c.Securable = enforce.SecurableRef{Type: "MODEL SERVICE", Name: "system.ai." + req.Model}
	c.Privilege = "EXECUTE"
	c.Context = map[string]any{"model": req.Model}
	c.Content = &pipeline.Content{Format: "openai.chat", Body: body}
	c.BytesIn = int64(len(body))
	telemetry.SetLLMRequest(ctx, telemetry.LLMRequest{Operation: "chat", Model: req.Model, MaxTokens: req.MaxTokens,
		Stream: req.Stream, Tags: map[string]string{"project": "checkout"}})
	telemetry.CapturePayloads(ctx)
	return nil
}

func (x *llmCall) Send(ctx context.Context, c *pipeline.Call, _ string) (*http.Response, error) {
	body := bytes.Replace(c.Content.Body, []byte(`"`+x.model+`"`), []byte(`"gpt-test"`), 1)
	ctx, end := telemetry.StartAttempt(ctx, telemetry.Attempt{Destination: "openai_test", Provider: "openai", Model: "gpt-test",
		URL: x.upstream})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, x.upstream+"/v1/chat/completions", bytes.NewReader(body))
	if err != nil {
		end(0, err)
		return nil, err
	}
	tp, ts := telemetry.Outbound(ctx, c)
	req.Header.Set("traceparent", tp)
	if ts != "" {
		req.Header.Set("tracestate", ts)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		end(0, err)
		return nil, err
	}
	end(resp.StatusCode, nil)
	return resp, nil
}

type chunk struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		Prompt     int64 `json:"prompt_tokens"`
		Completion int64 `json:"completion_tokens"`
		Details    struct {
			Cached int64 `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

func (x *llmCall) Relay(ctx context.Context, c *pipeline.Call, resp *http.Response) error {
	res := telemetry.LLMResult{Provider: "openai", Destination: "openai_test", Model: "gpt-test", Streaming: x.stream}
	note := func(ch *chunk) {
		if ch.ID != "" {
			res.ResponseID = ch.ID
		}
		if ch.Model != "" {
			res.ResponseModel = ch.Model
		}
		for _, ci := range ch.Choices {
			if ci.FinishReason != "" {
				res.FinishReasons = append(res.FinishReasons, ci.FinishReason)
			}
		}
		if u := ch.Usage; u != nil {
			c.Usage = pipeline.Usage{InputTokens: u.Prompt, OutputTokens: u.Completion, CachedInputTokens: u.Details.Cached}
		}
	}
	finish := func() {
		res.Usage = c.Usage
		res.CostUSD = float64(c.Usage.InputTokens)*1e-6 + float64(c.Usage.OutputTokens)*2e-6
		telemetry.SetLLMResult(ctx, res)
	}
	w := c.Writer()
	if resp.StatusCode != http.StatusOK {
		return &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway, Message: "upstream failed"}
	}
	if !x.stream {
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return err
		}
		var ch chunk
		_ = json.Unmarshal(body, &ch)
		note(&ch)
		finish()
		out, gerr := c.GuardPiece(ctx, "openai.chat", body, true)
		if gerr != nil {
			return gerr
		}
		c.Status, c.BytesOut = http.StatusOK, int64(len(out))
		if err := c.Commit(true); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(out)
		return nil
	}
	sc := bufio.NewScanner(resp.Body)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		data := strings.TrimPrefix(line, "data: ")
		if data != "[DONE]" {
			var ch chunk
			_ = json.Unmarshal([]byte(data), &ch)
			note(&ch)
		}
		ev := []byte("data: " + data + "\n\n")
		out, gerr := c.GuardPiece(ctx, "openai.chat.stream", ev, data == "[DONE]")
		if gerr != nil {
			return gerr
		}
		if first {
			first = false
			c.Status = http.StatusOK
			if err := c.Commit(false); err != nil {
				return err
			}
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			telemetry.FirstToken(ctx)
		}
		_, _ = w.Write(out)
		c.BytesOut += int64(len(out))
		http.NewResponseController(w).Flush()
	}
	finish()
	if err := c.Commit(true); err != nil {
		return err
	}
	return nil
}

func (x *llmCall) Render(c *pipeline.Call, err *pipeline.Error) pipeline.Answer {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"type": err.Kind.String(), "message": err.Message}})
	return pipeline.Answer{Status: err.Status, ContentType: "application/json", Body: b}
}

func (x *llmCall) AuditParams(c *pipeline.Call) string {
	b, _ := json.Marshal(map[string]any{"input_tokens": c.Usage.InputTokens, "output_tokens": c.Usage.OutputTokens})
	return string(b)
}

// Fakes of the pipeline's dependencies.

// Auth accepts "Bearer USER" and "Bearer USER/AGENT".
type Auth struct{}

func (Auth) Authenticate(_ context.Context, r *http.Request, _ string) (*gateway.Identity, error) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return nil, &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "no token"}
	}
	user, agent, _ := strings.Cut(tok, "/")
	return &gateway.Identity{Subject: user, Actor: agent, TokenID: "t-" + user, Expiry: time.Now().Add(time.Hour)}, nil
}

// Authz allows every call but those to securables whose name ends in
// "denied".
type Authz struct{}

func (Authz) Authorize(_ context.Context, r enforce.Request) (enforce.Decision, error) {
	if strings.HasSuffix(r.Securable.Name, "denied") {
		return enforce.Decision{Allowed: false, Reason: "no EXECUTE on " + r.Securable.Name, Revision: 7}, nil
	}
	return enforce.Decision{Allowed: true, Reason: "granted", Revision: 7}, nil
}

// NoCredentials gives every upstream no credential.
type NoCredentials struct{}

func (NoCredentials) Authorization(context.Context, *gateway.Connection, *gateway.Identity) (string, error) {
	return "", nil
}

// Audit records events in memory.
type Audit struct {
	mu     sync.Mutex
	events []catalog.AuditEvent
}

func (a *Audit) Record(_ context.Context, ev catalog.AuditEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

// Events are the events recorded so far.
func (a *Audit) Events() []catalog.AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]catalog.AuditEvent(nil), a.events...)
}
