package llmgw

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/llm/llmtest"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

func (e *env) openAI(token string) openai.Client {
	return openai.NewClient(option.WithBaseURL(e.URL+"/llm/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
}

// anthropicKey is a client that sends token as x-api-key (ANTHROPIC_API_KEY).
func (e *env) anthropicKey(token string) anthropic.Client {
	return anthropic.NewClient(aoption.WithBaseURL(e.URL+"/llm"), aoption.WithAPIKey(token), aoption.WithMaxRetries(0))
}

// checkUpstream asserts what every upstream request must satisfy: the
// provider credential, never an inbound one, and the pseudonymous user.
func (e *env) checkUpstream(rec llmtest.Received, inbound ...string) {
	e.t.Helper()
	for k, vs := range rec.Header {
		for _, v := range vs {
			for _, in := range inbound {
				if strings.Contains(v, in) {
					e.t.Errorf("upstream got the inbound token in %s", k)
				}
			}
		}
	}
	if strings.HasPrefix(rec.Path, "/v1/messages") {
		if rec.Header.Get("X-Api-Key") != anthropicKy || rec.Header.Get("Authorization") != "" {
			e.t.Errorf("Anthropic upstream credentials: x-api-key %q, authorization %q", rec.Header.Get("X-Api-Key"), rec.Header.Get("Authorization"))
		}
	} else if rec.Header.Get("Authorization") != "Bearer "+openAIKey {
		e.t.Errorf("OpenAI upstream Authorization = %q", rec.Header.Get("Authorization"))
	}
}

// TestChatCompletions: an OpenAI SDK call with an access token through the
// whole pipeline: the upstream gets the provider key and alice's
// pseudonym, the client the answer and the request id, the audit row the
// usage record, the limiter the estimate, destinations and settlement.
func TestChatCompletions(t *testing.T) {
	e := newEnv(t)
	c := e.openAI(aliceToken)
	var hdr http.Header
	resp, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model:     "frontier",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello there mock:cached=4")},
		MaxTokens: openai.Int(50),
	}, option.WithHeader(HeaderTags, `{"project":"checkout","team":"spoofed"}`),
		option.WithMiddleware(func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
			res, err := next(r)
			if res != nil {
				hdr = res.Header
			}
			return res, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Choices[0].Message.Content; got != "Echo: hello there" {
		t.Errorf("content %q", got)
	}
	ev := e.event()
	rec := e.fake.Last()
	e.checkUpstream(rec, aliceToken)
	body := rec.JSON()
	if body["model"] != "gpt-4.1" || body["safety_identifier"] != e.h.UserID(alice) || !strings.HasPrefix(e.h.UserID(alice), "mnd-") {
		t.Errorf("upstream body model %v safety_identifier %v", body["model"], body["safety_identifier"])
	}
	if strings.Contains(string(rec.Body), alice) {
		t.Error("the upstream learnt alice's name")
	}
	if hdr.Get("X-Request-Id") != ev.EventID || ev.RequestID != ev.EventID {
		t.Errorf("x-request-id %q, audit request_id %q event %q", hdr.Get("X-Request-Id"), ev.RequestID, ev.EventID)
	}
	if ev.Service != "llm" || ev.Action != "chat.completions" || ev.SecurableType != "MODEL SERVICE" || ev.SecurableName != "system.ai.frontier" ||
		ev.UserIdentity != alice || ev.RunAs != agent || ev.StatusCode != 200 || ev.Decision != "allow" {
		t.Errorf("audit row %+v", ev)
	}
	lu, routing, tags := usageOf(t, ev)
	u := rec.Usage
	if lu.ProviderService != "system.ai.openai_prod" || lu.Provider != "openai" || lu.Model != "gpt-4.1" || lu.InputTokens != int64(u.Input-4) ||
		lu.OutputTokens != int64(u.Output) || lu.CachedInputTokens != 4 || lu.Streaming {
		t.Errorf("usage columns %+v (fake usage %+v)", lu, u)
	}
	// $2, $0.50 and $8 per million tokens: 2,000, 500 and 8,000 nano-USD a token.
	wantNanos := int64(u.Input-4)*2000 + 4*500 + int64(u.Output)*8000
	if lu.CostNanos != wantNanos {
		t.Errorf("cost %d nano-USD, want %d", lu.CostNanos, wantNanos)
	}
	if tags["project"] != "checkout" || tags["team"] != "platform" {
		t.Errorf("request_tags %v: the header's, with the service's winning", tags)
	}
	if len(routing) != 1 || routing[0].Status != 200 || routing[0].Service != "system.ai.openai_prod" {
		t.Errorf("routing %+v", routing)
	}
	if p := params(t, ev); p.RequestedModel != "frontier" || p.MaxTokens != 50 || p.BytesOut == 0 {
		t.Errorf("request_params %+v", p)
	}
	l := e.limiter
	if len(l.calls) != 1 || l.calls[0].MaxTokens != 50 || l.calls[0].InputTokens <= 0 || len(l.calls[0].Destinations) != 1 ||
		!l.calls[0].Destinations[0].Priced || len(l.settled) != 1 || l.settled[0].OutputTokens != int64(u.Output) || l.costs[0] != wantNanos {
		t.Errorf("limiter saw %+v, settled %+v at %v", l.calls, l.settled, l.costs)
	}
}

// TestStreams: OpenAI and Anthropic streams through the pipeline, usage
// metered (the OpenAI client did not ask for it) and audited with ttft.
func TestStreams(t *testing.T) {
	e := newEnv(t)
	oc := e.openAI(aliceToken)
	st := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
		Model:    "frontier",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream me a longer answer please")},
	})
	var text string
	chunks := 0
	for st.Next() {
		chunks++
		if ch := st.Current(); len(ch.Choices) > 0 {
			text += ch.Choices[0].Delta.Content
		}
		if ch := st.Current(); ch.Usage.TotalTokens > 0 {
			t.Error("the client got the usage chunk it did not ask for")
		}
	}
	if err := st.Err(); err != nil || text != "Echo: stream me a longer answer please" || chunks < 4 {
		t.Fatalf("stream: %q in %d chunks, %v", text, chunks, err)
	}
	ev := e.event()
	p := params(t, ev)
	lu, _, _ := usageOf(t, ev)
	if !p.Stream || !lu.Streaming || lu.OutputTokens == 0 || lu.InputTokens == 0 || p.UsageEstimated || lu.TTFTMs <= 0 || ev.StatusCode != 200 || ev.ErrorMessage != "" {
		t.Errorf("streamed usage %+v, params %+v, row %+v", lu, p, ev)
	}

	anc := e.anthropicKey(aliceToken)
	ms := anc.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{
		Model: "claude", MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("stream from claude mock:cache_write=3"))},
	})
	var msg anthropic.Message
	for ms.Next() {
		if err := msg.Accumulate(ms.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := ms.Err(); err != nil || len(msg.Content) == 0 || msg.Content[0].Text != "Echo: stream from claude" {
		t.Fatalf("anthropic stream: %+v %v", msg.Content, err)
	}
	ev = e.event()
	lu, _, _ = usageOf(t, ev)
	rec := e.fake.Last()
	e.checkUpstream(rec, aliceToken)
	if meta, _ := rec.JSON()["metadata"].(map[string]any); meta["user_id"] != e.h.UserID(alice) {
		t.Errorf("upstream metadata %v", rec.JSON()["metadata"])
	}
	if ev.Action != "messages" || lu.CacheWriteTokens != 3 || lu.InputTokens != int64(rec.Usage.Input-3) || lu.Provider != "anthropic" {
		t.Errorf("anthropic usage %+v (fake %+v)", lu, rec.Usage)
	}
}

// TestCountTokensAndModels: count_tokens (an Anthropic SDK with a bearer
// JWT), and the models list with what subject and actor may both EXECUTE.
func TestCountTokensAndModels(t *testing.T) {
	e := newEnv(t)
	ac := anthropic.NewClient(aoption.WithBaseURL(e.URL+"/llm"), aoption.WithAuthToken(aliceJWT), aoption.WithMaxRetries(0))
	n, err := ac.Messages.CountTokens(t.Context(), anthropic.MessageCountTokensParams{
		Model:    "claude",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("count these tokens please"))},
	})
	if err != nil || n.InputTokens <= 0 {
		t.Fatalf("count_tokens: %+v %v", n, err)
	}
	if ev := e.event(); ev.Action != "messages.count_tokens" || ev.UserIdentity != alice || ev.RunAs != "" || ev.StatusCode != 200 {
		t.Errorf("count_tokens row %+v", ev)
	}

	// Through coding-agent: not secret (the agent lacks EXECUTE on it).
	oc := e.openAI(aliceToken)
	page, err := oc.Models.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"claude", "fallback", "frontier", "logged"}) {
		t.Errorf("models via coding-agent: %v", ids)
	}
	if ev := e.event(); ev.Action != "models" || ev.StatusCode != 200 || ev.Decision != "allow" {
		t.Errorf("models row %+v", ev)
	}
	// Alice herself (the JWT names no agent): secret too; Anthropic's format.
	ap, err := ac.Models.List(t.Context(), anthropic.ModelListParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ap.Data) != 5 {
		t.Errorf("models for alice: %d", len(ap.Data))
	}
	e.event()
}

// TestRefusals: each refusal is a clear error in the client's format, an
// audit row, and no upstream call.
func TestRefusals(t *testing.T) {
	e := newEnv(t)
	chat := `{"model":"frontier","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`
	msgs := `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	cases := []struct {
		name, path, body string
		hdr              map[string]string
		status           int
		want             []string // in the body
		action           string
	}{
		{"no credential", "/llm/v1/chat/completions", chat, nil, 401, []string{`"type":"authentication_error"`, `"code":"invalid_api_key"`}, "chat.completions"},
		{"unknown token, anthropic", "/llm/v1/messages", msgs, map[string]string{"X-Api-Key": "mnd_nobody"}, 401,
			[]string{`"type":"error"`, `"authentication_error"`, "unknown, expired or revoked"}, "messages"},
		{"no EXECUTE (user)", "/llm/v1/chat/completions", chat, bearer(bobToken), 403, []string{`subject \"bob@example.com\" lacks EXECUTE`, `"permission_error"`}, "chat.completions"},
		{"no EXECUTE (agent)", "/llm/v1/chat/completions", strings.Replace(chat, "frontier", "secret", 1), bearer(aliceToken), 403,
			[]string{`actor \"coding-agent\" lacks EXECUTE`}, "chat.completions"},
		{"unknown model service", "/llm/v1/messages", strings.Replace(msgs, "claude", "nope", 1), bearer(aliceToken), 404,
			[]string{`"not_found_error"`, `model service \"nope\" does not exist`}, "messages"},
		{"malformed body", "/llm/v1/chat/completions", `{"model":"frontier","messages":[}`, bearer(aliceToken), 400, []string{`"invalid_request_error"`, "invalid JSON"}, "chat.completions"},
		{"missing model", "/llm/v1/messages", `{"max_tokens":10,"messages":[]}`, bearer(aliceToken), 400, []string{"model is required"}, "messages"},
		{"oversized body", "/llm/v1/chat/completions", `{"model":"frontier","messages":[{"role":"user","content":"` + strings.Repeat("x", 300<<10) + `"}]}`,
			bearer(aliceToken), 413, []string{"larger than"}, "chat.completions"},
		{"bad tags", "/llm/v1/chat/completions", chat, map[string]string{"Authorization": "Bearer " + aliceToken, HeaderTags: `{"a":1}`}, 400,
			[]string{HeaderTags, "not a string"}, "chat.completions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.fake.Count()
			resp, body := e.post(tc.path, tc.body, tc.hdr)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("body %s lacks %s", body, w)
				}
			}
			if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer resource_metadata="http://127.0.0.1:1/.well-known/oauth-protected-resource/llm"`) {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
			ev := e.event()
			if ev.Service != "llm" || ev.Action != tc.action || ev.StatusCode != tc.status || ev.Decision != "deny" {
				t.Errorf("audit row %+v", ev)
			}
			if n := e.fake.Count(); n != before {
				t.Errorf("the upstream was called (%d requests)", n-before)
			}
		})
	}
	// A revoked token is refused at once.
	if resp, _ := e.post("/llm/v1/chat/completions", chat, bearer(aliceToken)); resp.StatusCode != 200 {
		t.Fatalf("alice before revocation: %d", resp.StatusCode)
	}
	e.event()
	e.tokens.drop(aliceToken)
	before := e.fake.Count()
	if resp, body := e.post("/llm/v1/chat/completions", chat, bearer(aliceToken)); resp.StatusCode != 401 || !strings.Contains(body, "revoked") {
		t.Errorf("revoked token: %d %s", resp.StatusCode, body)
	}
	if ev := e.event(); ev.StatusCode != 401 || e.fake.Count() != before {
		t.Errorf("revoked token row %+v, upstream calls %d", ev, e.fake.Count()-before)
	}
}

// TestLimited: a Limiter's refusals reach the client as the providers'
// 429s (Retry-After, x-ratelimit-*; insufficient_quota for a budget), are
// audited and never reach the upstream; an admitted call carries the
// caller's position in its headers.
func TestLimited(t *testing.T) {
	e := newEnv(t)
	win := &pipeline.RateWindow{Limit: 60, Remaining: 0, Reset: 30 * time.Second}
	e.limiter.refuse = func(c *pipeline.Call) error {
		if c.Tags["project"] == "broke" {
			return &pipeline.Error{Kind: pipeline.KindLimited, RetryAfter: 20 * 24 * time.Hour, Limit: &pipeline.LimitInfo{Budget: true},
				Message: "budget checkout is exhausted for 2026-05 (500.00 USD per month, group \"data-analysts\"); it renews on 2026-06-01"}
		}
		return &pipeline.Error{Kind: pipeline.KindLimited, RetryAfter: 1500 * time.Millisecond, Limit: &pipeline.LimitInfo{Requests: win},
			Message: "rate limit exceeded: 60 requests per minute for each user on model service system.ai.frontier; retry after 2s"}
	}
	oc := e.openAI(aliceToken)
	_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 429 || oe.Code != "rate_limit_exceeded" || oe.Response.Header.Get("Retry-After") != "2" ||
		oe.Response.Header.Get("X-Ratelimit-Limit-Requests") != "60" || oe.Response.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Fatalf("rate limited: %v", err)
	}
	if ev := e.event(); ev.StatusCode != 429 || ev.Decision != "deny" || !strings.Contains(ev.Reason, "rate limit exceeded") {
		t.Errorf("row %+v", ev)
	}
	anc := e.anthropicKey(aliceToken)
	_, err = anc.Messages.New(t.Context(), anthropic.MessageNewParams{Model: "claude", MaxTokens: 10,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}})
	var ae *anthropic.Error
	if !errors.As(err, &ae) || ae.StatusCode != 429 || !strings.Contains(ae.RawJSON(), "rate_limit_error") ||
		ae.Response.Header.Get("Anthropic-Ratelimit-Requests-Limit") != "60" {
		t.Fatalf("anthropic rate limited: %v", err)
	}
	e.event()
	_, err = oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}, option.WithHeader(HeaderTags, `{"project":"broke"}`))
	if !errors.As(err, &oe) || oe.StatusCode != 429 || oe.Code != "insufficient_quota" || oe.Type != "insufficient_quota" || !strings.Contains(oe.Message, "budget checkout is exhausted") {
		t.Fatalf("budget: %v", err)
	}
	e.event()
	if n := e.fake.Count(); n != 0 {
		t.Errorf("%d upstream calls", n)
	}
	// Admitted: the position in x-ratelimit-*.
	e.limiter.refuse = nil
	e.limiter.admit = &pipeline.LimitInfo{Requests: &pipeline.RateWindow{Limit: 60, Remaining: 59, Reset: time.Second},
		Tokens: &pipeline.RateWindow{Limit: 1000, Remaining: 900, Reset: time.Second}}
	resp, body := e.post("/llm/v1/chat/completions", `{"model":"frontier","messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"Authorization": "Bearer " + aliceToken})
	if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "59" || resp.Header.Get("X-Ratelimit-Limit-Tokens") != "1000" {
		t.Errorf("admitted: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	e.event()
}

// TestLimitedFinal: a refusal the same request can never pass (larger
// than the rate limit, a budget exhausted for the month) tells the SDKs
// not to retry: with retries on, each makes one attempt and gets the
// error at once instead of retrying with backoff (as Claude Code would,
// for minutes).
func TestLimitedFinal(t *testing.T) {
	e := newEnv(t)
	win := &pipeline.RateWindow{Limit: 20000, Remaining: 20000, Reset: time.Second}
	e.limiter.refuse = func(c *pipeline.Call) error {
		if c.Tags["project"] == "broke" {
			return &pipeline.Error{Kind: pipeline.KindLimited, Status: 429, RetryAfter: 20 * 24 * time.Hour, Final: true,
				Limit: &pipeline.LimitInfo{Budget: true}, Message: "budget checkout is exhausted for 2026-05"}
		}
		return &pipeline.Error{Kind: pipeline.KindLimited, Status: 429, Final: true, Limit: &pipeline.LimitInfo{Tokens: win},
			Message: "request too large: it needs 32005 tokens, the rate limit allows 20000 tokens per minute"}
	}
	oc := openai.NewClient(option.WithBaseURL(e.URL+"/llm/v1/"), option.WithAPIKey(aliceToken), option.WithMaxRetries(2))
	ac := anthropic.NewClient(aoption.WithBaseURL(e.URL+"/llm"), aoption.WithAPIKey(aliceToken), aoption.WithMaxRetries(2))
	chat := func(opt option.RequestOption, _ aoption.RequestOption) error {
		_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}, opt)
		return err
	}
	messages := func(maxTokens int64) func(option.RequestOption, aoption.RequestOption) error {
		return func(_ option.RequestOption, aopt aoption.RequestOption) error {
			_, err := ac.Messages.New(t.Context(), anthropic.MessageNewParams{Model: "claude", MaxTokens: maxTokens,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}}, aopt)
			return err
		}
	}
	for _, tc := range []struct {
		name, project string
		call          func(opt option.RequestOption, aopt aoption.RequestOption) error
	}{
		{"openai too large", "", chat},
		{"anthropic too large", "", messages(4096)},
		{"openai budget", "broke", chat},
		{"anthropic budget", "broke", messages(10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tags := `{"project":"` + tc.project + `"}`
			e.limiter.mu.Lock()
			before := len(e.limiter.calls)
			e.limiter.mu.Unlock()
			err := tc.call(option.WithHeader(HeaderTags, tags), aoption.WithHeader(HeaderTags, tags))
			var oe *openai.Error
			var ae *anthropic.Error
			switch {
			case errors.As(err, &oe):
				if oe.StatusCode != 429 || oe.Response.Header.Get("X-Should-Retry") != "false" {
					t.Errorf("openai: %v %v", err, oe.Response.Header)
				}
			case errors.As(err, &ae):
				if ae.StatusCode != 429 || ae.Response.Header.Get("X-Should-Retry") != "false" {
					t.Errorf("anthropic: %v %v", err, ae.Response.Header)
				}
			default:
				t.Fatalf("not refused: %v", err)
			}
			e.limiter.mu.Lock()
			n := len(e.limiter.calls) - before
			e.limiter.mu.Unlock()
			for range n {
				e.event()
			}
			if n != 1 {
				t.Errorf("%d attempts, want 1 (the SDK retried a final refusal)", n)
			}
		})
	}
	if n := e.fake.Count(); n != 0 {
		t.Errorf("%d upstream calls", n)
	}
}

// TestFallback: the first destination answers 429, the fallback answers;
// the row shows both attempts; streams fall back as well.
func TestFallback(t *testing.T) {
	e := newEnv(t)
	oc := e.openAI(aliceToken)
	resp, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "fallback", MaxTokens: openai.Int(20),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("fall back please")}})
	if err != nil || resp.Choices[0].Message.Content != "Echo: fall back please" {
		t.Fatalf("fallback: %+v %v", resp, err)
	}
	lu, routing, _ := usageOf(t, e.event())
	if len(routing) != 2 || routing[0].Service != "system.ai.openai_down" || routing[0].Status != 429 ||
		routing[1].Service != "system.ai.anthropic_prod" || routing[1].Status != 200 || lu.Provider != "anthropic" || lu.CostNanos == 0 {
		t.Errorf("routing %+v, answered by %s", routing, lu.ProviderService)
	}
	if e.down.Count() != 1 || e.fake.Count() != 1 {
		t.Errorf("down got %d, fallback %d", e.down.Count(), e.fake.Count())
	}
	st := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: "fallback",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream after falling back")}})
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if lu, routing, _ := usageOf(t, e.event()); len(routing) != 2 || routing[1].Status != 200 || !lu.Streaming {
		t.Errorf("stream routing %+v", routing)
	}
	// Every destination failing: the last failure in the client's format.
	e.models.mu.Lock()
	e.models.m["system.ai.fallback"].Fallbacks = nil
	e.models.mu.Unlock()
	_, err = oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "fallback",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("no luck")}})
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 429 || !strings.Contains(oe.Message, "rate limiting") {
		t.Fatalf("all down: %v", err)
	}
	ev := e.event()
	if _, routing, _ := usageOf(t, ev); ev.StatusCode != 429 || ev.Decision != "allow" || !strings.Contains(ev.ErrorMessage, "1 attempts") ||
		len(routing) != 1 || routing[0].Status != 429 {
		t.Errorf("all-down row %+v", ev)
	}
}

// TestBrokenStreamAndDisconnect: a stream the upstream cuts is metered for
// what was delivered and audited; a client that goes away cancels the
// upstream call.
func TestBrokenStreamAndDisconnect(t *testing.T) {
	e := newEnv(t)
	oc := e.openAI(aliceToken)
	st := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: "frontier",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("this one breaks mock:break")}})
	for st.Next() {
	}
	if st.Err() == nil {
		t.Error("the broken stream ended without an error")
	}
	ev := e.event()
	p := params(t, ev)
	if lu, _, _ := usageOf(t, ev); !p.UsageEstimated || lu.OutputTokens == 0 || !strings.Contains(ev.ErrorMessage, "stream broken") || ev.StatusCode != 200 {
		t.Errorf("broken stream row %+v, usage %+v", ev, lu)
	}
	if len(e.limiter.settled) != 1 || e.limiter.settled[0].OutputTokens == 0 {
		t.Errorf("settled %+v", e.limiter.settled)
	}

	ctx, cancel := contextWithCancel(t)
	st = oc.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "frontier",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a slow and long answer mock:slow=2s")}})
	if !st.Next() {
		t.Fatalf("no first chunk: %v", st.Err())
	}
	cancel()
	for st.Next() {
	}
	ev = e.event()
	waitUntil(t, "the upstream call canceled", func() bool { return e.fake.Canceled() == 1 })
	if ev.ErrorMessage != "client disconnected" {
		t.Errorf("disconnect row %+v", ev)
	}
}

// TestAuditFailure: a call whose audit record cannot be written is not
// answered.
func TestAuditFailure(t *testing.T) {
	e := newEnv(t)
	e.audit.fail.Store(true)
	resp, body := e.post("/llm/v1/chat/completions", `{"model":"frontier","messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"Authorization": "Bearer " + aliceToken})
	if resp.StatusCode != 503 || strings.Contains(body, "Echo") || !strings.Contains(body, "audit") {
		t.Errorf("audit down: %d %s", resp.StatusCode, body)
	}
}

// TestTags: the header's bounds.
func TestTags(t *testing.T) {
	many := "{"
	for i := range 17 {
		if i > 0 {
			many += ","
		}
		many += `"k` + string(rune('a'+i)) + `":"v"`
	}
	many += "}"
	for _, tc := range []struct {
		in   string
		want string // error substring; "" = accepted
	}{
		{`{"project":"checkout"}`, ""},
		{`{}`, ""},
		{`[1]`, "not a JSON object"},
		{`{"a":"b"} x`, "trailing"},
		{`{"a":"b","a":"c"}`, "twice"},
		{`{"":"x"}`, "empty key"},
		{`{"a":{"b":"c"}}`, "not a string"},
		{`{"` + strings.Repeat("k", 65) + `":"v"}`, "longer than 64"},
		{`{"k":"` + strings.Repeat("v", 257) + `"}`, "at most 256 bytes"},
		{`{"a b":"v"}`, "letters, digits"},
		{many, "more than 16"},
		{"{\"a\":\"\xff\"}", "UTF-8"},
	} {
		_, err := parseTags([]string{tc.in})
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("parseTags(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
	if _, err := parseTags([]string{`{}`, `{}`}); err == nil {
		t.Error("two headers accepted")
	}
}

// TestPayloads: a service with log_payloads captures the request and the
// answer (as the client got it, streams included) into payload events
// joined to the call by request_id; others capture nothing.
func TestPayloads(t *testing.T) {
	e := newEnv(t)
	oc := e.openAI(aliceToken)
	if _, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("not logged")}}); err != nil {
		t.Fatal(err)
	}
	e.event()
	if _, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "logged",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("log this one")}}); err != nil {
		t.Fatal(err)
	}
	call := e.event()
	st := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: "logged",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("log this stream")}})
	for st.Next() {
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	stream := e.event()
	var pl []catalog.AuditEvent
	waitUntil(t, "two payload events", func() bool { pl = e.audit.payloads(); return len(pl) == 2 })
	byReq := map[string]catalog.AuditEvent{}
	for _, ev := range pl {
		byReq[ev.RequestID] = ev
	}
	p1, p2 := byReq[call.RequestID], byReq[stream.RequestID]
	if p1.Payload == nil || !strings.Contains(p1.Payload.RequestBody, "log this one") || !strings.Contains(p1.Payload.ResponseBody, "Echo: log this one") ||
		p1.UserIdentity != alice || p1.RunAs != agent || p1.SecurableName != "system.ai.logged" || p1.EventID == call.EventID {
		t.Errorf("payload of the call %+v", p1)
	}
	if p2.Payload == nil || !strings.Contains(p2.Payload.ResponseBody, "data: ") || !strings.Contains(p2.Payload.ResponseBody, "data: [DONE]") {
		t.Errorf("payload of the stream %+v", p2.Payload)
	}
}
