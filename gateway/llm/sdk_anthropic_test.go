package llm_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aoption "github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/openai/openai-go/v3"

	"github.com/mandatehq/mandate/gateway/llm"
)

func anthropicClient(h *harness, opts ...aoption.RequestOption) anthropic.Client {
	return anthropic.NewClient(append([]aoption.RequestOption{aoption.WithBaseURL(h.URL), aoption.WithAPIKey(inboundToken), aoption.WithMaxRetries(0)}, opts...)...)
}

func weatherToolAn() anthropic.ToolUnionParam {
	return anthropic.ToolUnionParam{OfTool: &anthropic.ToolParam{
		Name:        "get_weather",
		Description: anthropic.String("Current weather of a city"),
		InputSchema: anthropic.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}, Required: []string{"city"}},
	}}
}

func TestAnthropicMessages(t *testing.T) {
	h := newHarness(t)
	client := anthropicClient(h, aoption.WithHeader("anthropic-beta", "prompt-caching-2024-07-31"))
	for _, model := range []string{"claude", "gpt"} {
		t.Run(model, func(t *testing.T) {
			h.reset()
			msg, err := client.Messages.New(t.Context(), anthropic.MessageNewParams{
				Model:     anthropic.Model(model),
				MaxTokens: 300,
				System:    []anthropic.TextBlockParam{{Text: "You are terse.", CacheControl: anthropic.NewCacheControlEphemeralParam()}},
				Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello claude mock:cached=6 mock:cache_write=2"))},
				Metadata:  anthropic.MetadataParam{UserID: anthropic.String("agent-claimed-user")},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) != 1 || msg.Content[0].Text != "Echo: hello claude" || msg.StopReason != anthropic.StopReasonEndTurn {
				t.Errorf("message %+v", msg)
			}
			rec := h.fake.Last()
			checkUpstreamAuth(t, rec)
			res := h.result()
			wantUsage(t, res.Usage, rec)
			// The client's usage is Anthropic's: input excludes the cache classes.
			u := res.Usage
			if msg.Usage.InputTokens != u.UncachedInputTokens() || msg.Usage.CacheReadInputTokens != 6 || msg.Usage.OutputTokens != u.OutputTokens {
				t.Errorf("client usage %+v metered %+v", msg.Usage, u)
			}
			body := rec.JSON()
			if model == "claude" {
				md, _ := body["metadata"].(map[string]any)
				if md["user_id"] != pseudoUser || body["model"] != "claude-sonnet-4-5" || rec.Header.Get("Anthropic-Beta") != "prompt-caching-2024-07-31" {
					t.Errorf("upstream %s %v", rec.Body, rec.Header)
				}
				if msg.Usage.CacheCreationInputTokens != 2 {
					t.Errorf("cache writes %d", msg.Usage.CacheCreationInputTokens)
				}
			} else {
				if body["safety_identifier"] != pseudoUser || body["model"] != "gpt-4.1" || body["max_completion_tokens"] != float64(300) {
					t.Errorf("upstream %s", rec.Body)
				}
				if rec.Header.Get("Anthropic-Beta") != "" || rec.Header.Get("Anthropic-Version") != "" {
					t.Error("Anthropic headers reached an OpenAI destination")
				}
			}
		})
	}
}

func TestAnthropicStream(t *testing.T) {
	h := newHarness(t)
	client := anthropicClient(h)
	for _, model := range []string{"claude", "gpt"} {
		t.Run(model, func(t *testing.T) {
			h.reset()
			stream := client.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{
				Model:     anthropic.Model(model),
				MaxTokens: 300,
				Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("stream a somewhat longer answer mock:cached=3"))},
			})
			var msg anthropic.Message
			events := 0
			for stream.Next() {
				if err := msg.Accumulate(stream.Current()); err != nil {
					t.Fatal(err)
				}
				events++
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			if len(msg.Content) != 1 || msg.Content[0].Text != "Echo: stream a somewhat longer answer" || msg.StopReason != anthropic.StopReasonEndTurn {
				t.Errorf("message %+v", msg)
			}
			if events < 6 {
				t.Errorf("%d events", events)
			}
			res := h.result()
			rec := h.fake.Last()
			wantUsage(t, res.Usage, rec)
			if msg.Usage.InputTokens != res.Usage.UncachedInputTokens() || msg.Usage.CacheReadInputTokens != 3 || msg.Usage.OutputTokens != res.Usage.OutputTokens {
				t.Errorf("client usage %+v metered %+v", msg.Usage, res.Usage)
			}
		})
	}
}

func TestAnthropicTools(t *testing.T) {
	h := newHarness(t)
	client := anthropicClient(h)
	for _, model := range []string{"claude", "gpt"} {
		for _, streaming := range []bool{false, true} {
			name := model
			if streaming {
				name += "/stream"
			}
			t.Run(name, func(t *testing.T) {
				params := anthropic.MessageNewParams{
					Model:     anthropic.Model(model),
					MaxTokens: 300,
					Tools:     []anthropic.ToolUnionParam{weatherToolAn()},
					Messages:  []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris? call get_weather"))},
				}
				var msg anthropic.Message
				if streaming {
					stream := client.Messages.NewStreaming(t.Context(), params)
					for stream.Next() {
						if err := msg.Accumulate(stream.Current()); err != nil {
							t.Fatal(err)
						}
					}
					if err := stream.Err(); err != nil {
						t.Fatal(err)
					}
				} else {
					m, err := client.Messages.New(t.Context(), params)
					if err != nil {
						t.Fatal(err)
					}
					msg = *m
				}
				h.result()
				if msg.StopReason != anthropic.StopReasonToolUse || len(msg.Content) != 1 || msg.Content[0].Type != "tool_use" {
					t.Fatalf("message %+v", msg)
				}
				tu := msg.Content[0]
				if tu.Name != "get_weather" || string(tu.Input) != `{"city":"test"}` || tu.ID == "" {
					t.Errorf("tool use %+v input %s", tu, tu.Input)
				}
				params.Messages = append(params.Messages, msg.ToParam(),
					anthropic.NewUserMessage(anthropic.NewToolResultBlock(tu.ID, "sunny, 21°C", false)))
				m, err := client.Messages.New(t.Context(), params)
				if err != nil {
					t.Fatal(err)
				}
				h.result()
				if len(m.Content) != 1 || m.Content[0].Text != "Tool result: sunny, 21°C" || m.StopReason != anthropic.StopReasonEndTurn {
					t.Errorf("second turn %+v", m)
				}
			})
		}
	}
}

func TestAnthropicStopReasons(t *testing.T) {
	h := newHarness(t)
	client := anthropicClient(h)
	for _, model := range []string{"claude", "gpt"} {
		t.Run(model, func(t *testing.T) {
			m, err := client.Messages.New(t.Context(), anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 2,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("one two three four five"))},
			})
			if err != nil {
				t.Fatal(err)
			}
			if m.StopReason != anthropic.StopReasonMaxTokens || m.Content[0].Text != "Echo: on" {
				t.Errorf("max_tokens: %+v", m)
			}
			h.result()
			m, err = client.Messages.New(t.Context(), anthropic.MessageNewParams{
				Model: anthropic.Model(model), MaxTokens: 100, StopSequences: []string{"STOP"},
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("alpha STOP beta"))},
			})
			if err != nil {
				t.Fatal(err)
			}
			h.result()
			want := anthropic.StopReasonStopSequence
			if model == "gpt" {
				want = anthropic.StopReasonEndTurn // OpenAI does not say which stop matched
			}
			if m.StopReason != want || m.Content[0].Text != "Echo: alpha " {
				t.Errorf("stop sequence: %+v", m)
			}
		})
	}
}

func TestAnthropicCountTokens(t *testing.T) {
	h := newHarness(t)
	client := anthropicClient(h)
	params := anthropic.MessageCountTokensParams{
		Model:    "claude",
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("count these tokens please"))},
	}
	n, err := client.Messages.CountTokens(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	rec := h.fake.Last()
	res := h.result()
	if rec.Path != "/v1/messages/count_tokens" || n.InputTokens != int64(rec.Usage.Input) || res.Usage.InputTokens != n.InputTokens {
		t.Errorf("forwarded count %d, fake %v, metered %+v", n.InputTokens, rec.Usage, res.Usage)
	}
	if _, ok := rec.JSON()["metadata"]; ok {
		t.Error("count_tokens got metadata (Anthropic refuses it)")
	}
	// an OpenAI-style destination has no counting endpoint: the gateway's estimate
	h.reset()
	params.Model = "gpt"
	n, err = client.Messages.CountTokens(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	res = h.result()
	if !res.Local || n.InputTokens <= 0 || n.InputTokens != res.Usage.InputTokens || h.fake.Count() != 0 {
		t.Errorf("local count %d result %+v upstream calls %d", n.InputTokens, res, h.fake.Count())
	}
}

func TestAnthropicErrors(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name   string
		client anthropic.Client
		model  string
		prompt string
		status int
		typ    string
	}{
		{"unknown service", anthropicClient(h), "nope", "hi", 404, "not_found_error"},
		{"bad inbound token", anthropic.NewClient(aoption.WithBaseURL(h.URL), aoption.WithAPIKey("wrong"), aoption.WithMaxRetries(0)), "claude", "hi", 401, "authentication_error"},
		{"upstream 429", anthropicClient(h), "alldown", "hi", 429, "rate_limit_error"},
		{"upstream overloaded", anthropicClient(h), "claude", "hi mock:status=529", 529, "overloaded_error"},
		{"upstream 500 via translation", anthropicClient(h), "gpt", "hi mock:status=500", 502, "api_error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.client.Messages.New(t.Context(), anthropic.MessageNewParams{
				Model: anthropic.Model(c.model), MaxTokens: 10,
				Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(c.prompt))},
			})
			var apiErr *anthropic.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v", err)
			}
			raw := apiErr.RawJSON()
			if apiErr.StatusCode != c.status || !strings.Contains(raw, `"type":"`+c.typ+`"`) || !strings.Contains(raw, `"type":"error"`) {
				t.Errorf("status %d body %s", apiErr.StatusCode, raw)
			}
		})
	}
	// max_tokens is required by the Anthropic format
	resp := postJSON(t, h.URL+"/v1/messages", `{"model":"claude","messages":[{"role":"user","content":"x"}]}`, nil)
	if resp.StatusCode != 400 || !strings.Contains(resp.body, `"type":"invalid_request_error"`) || !strings.Contains(resp.body, "max_tokens") {
		t.Errorf("missing max_tokens: %d %s", resp.StatusCode, resp.body)
	}
}

// TestStreamBreaks: a stream the upstream cuts (or reports an error in)
// after the first content ends with an in-stream error in the client's
// format, and is metered for what was delivered.
func TestStreamBreaks(t *testing.T) {
	h := newHarness(t)
	oc := openAIClient(h)
	ac := anthropicClient(h)
	for _, model := range []string{"gpt", "claude"} {
		for _, directive := range []string{"mock:break", "mock:error-event"} {
			t.Run(model+"/"+directive, func(t *testing.T) {
				h.reset()
				stream := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
					Model:    model,
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a long enough answer to be cut " + directive)},
				})
				var text strings.Builder
				for stream.Next() {
					if c := stream.Current(); len(c.Choices) > 0 {
						text.WriteString(c.Choices[0].Delta.Content)
					}
				}
				if stream.Err() == nil || text.Len() == 0 {
					t.Errorf("OpenAI client: err %v after %q", stream.Err(), text.String())
				}
				res := h.result()
				if !res.Broken || res.Err == nil || res.Usage.OutputTokens <= 0 || res.Usage.InputTokens <= 0 {
					t.Errorf("result broken %v err %v usage %+v", res.Broken, res.Err, res.Usage)
				}
				if model == "gpt" && !res.Usage.Estimated {
					t.Error("an OpenAI stream cut before its usage chunk must be an estimate")
				}
				if model == "claude" && res.Usage.InputTokens != int64(h.fake.Last().Usage.Input) {
					t.Errorf("Anthropic's message_start input count was not kept: %+v", res.Usage)
				}

				astream := ac.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{
					Model: anthropic.Model(model), MaxTokens: 100,
					Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("a long enough answer to be cut " + directive))},
				})
				n := 0
				for astream.Next() {
					n++
				}
				if astream.Err() == nil || n == 0 {
					t.Errorf("Anthropic client: err %v after %d events", astream.Err(), n)
				}
				if res := h.result(); !res.Broken {
					t.Errorf("anthropic client result %+v", res)
				}
			})
		}
	}
}

// TestStreamRelaysOnlyWhatItRead: a destination's stream event with a
// bare CR, which a client reads as a line end (here: the event's end and
// a second event the relay never metered or inspected), fails the
// attempt; nothing of it reaches the client.
func TestStreamRelaysOnlyWhatItRead(t *testing.T) {
	h := newHarness(t)
	chunk := func(text string) string {
		return `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":{"content":"` + text + `"},"finish_reason":null}]}`
	}
	raw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: "+chunk("ok")+"\r\rdata: "+chunk("HIDDEN")+"\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(raw.Close)
	h.routes["smuggler"] = llm.Route{Destinations: []llm.Destination{{Service: "system.ai.smuggler", Provider: llm.ProviderOpenAI,
		BaseURL: raw.URL + "/v1", Model: "gpt-4.1", APIKey: openAIKey, Weight: 100}}}
	oc := openAIClient(h)
	stream := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
		Model: "smuggler", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	})
	var text strings.Builder
	for stream.Next() {
		if c := stream.Current(); len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
	}
	var apiErr *openai.Error
	if !errors.As(stream.Err(), &apiErr) || apiErr.StatusCode != http.StatusBadGateway || text.Len() > 0 {
		t.Fatalf("err %v after %q", stream.Err(), text.String())
	}
	if res := h.result(); res.Err == nil || !strings.Contains(res.Err.Error(), "invalid stream event") {
		t.Errorf("result err %v", res.Err)
	}
}

// TestClientDisconnectCancelsUpstream: the client going away mid-stream
// cancels the upstream request.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt","stream":true,"messages":[{"role":"user","content":"slowly please mock:slow=30s"}]}`))
	req.Header.Set("Authorization", "Bearer "+inboundToken)
	req.Header.Set("Content-Type", "application/json")
	// the fake sleeps 30s before its first event: leave as soon as the
	// request reached it
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for h.fake.Count() == 0 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		cancel()
	}()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	res := h.result()
	if res.Err == nil {
		t.Errorf("result %+v", res)
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.fake.Canceled() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the upstream request was not canceled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHooks: the hooks see the rewritten body, every event, and can stop
// a stream.
func TestHooks(t *testing.T) {
	h := newHarness(t)
	var before *llm.Outbound
	var events int
	var after *llm.Result
	h.setHooks(llm.Hooks{
		BeforeForward: func(_ context.Context, out *llm.Outbound) error { before = out; return nil },
		OnEvent: func(_ context.Context, ev *llm.Event) error {
			events++
			if strings.Contains(string(ev.Out), "forbidden") {
				return llm.Forbidden("guardrail: forbidden word in the answer")
			}
			return nil
		},
		After: func(_ context.Context, res *llm.Result) { after = res },
	})
	ac := anthropicClient(h)
	stream := ac.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{
		Model: "gpt", MaxTokens: 100,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("say forbidden things"))},
	})
	for stream.Next() {
	}
	var apiErr *anthropic.Error
	if !errors.As(stream.Err(), &apiErr) || !strings.Contains(apiErr.RawJSON(), "permission_error") {
		t.Errorf("stream err %v", stream.Err())
	}
	res := h.result()
	if before == nil || !before.Translated || !strings.Contains(string(before.Body), `"model":"gpt-4.1"`) || events == 0 || after != res || !res.Broken {
		t.Errorf("before %+v events %d after %v", before, events, after)
	}
}

func postJSON(t *testing.T, url, body string, hdr map[string]string) httpResp {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+inboundToken)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(bufio.NewReader(resp.Body))
	return httpResp{resp, string(b)}
}
