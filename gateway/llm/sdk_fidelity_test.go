package llm_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/limitstage"
	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// What the providers really send back, per their SDKs' types (stop
// reasons, content block and delta variants, stream events, usage
// classes), through the gateway in every direction, streamed and not: the
// client's SDK must parse the answer, and the usage and cost must be what
// the provider bills.

// anMessage sends prompt through the Anthropic SDK to model and returns
// the message as the SDK built it. A stream is also checked against the
// protocol: blocks start in order, no delta or stop for a block that has
// stopped, every block stopped.
func anMessage(t *testing.T, h *harness, model, prompt string, stream, tools bool) anthropic.Message {
	t.Helper()
	client := anthropicClient(h)
	params := anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 1000,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}}
	if tools {
		params.Tools = []anthropic.ToolUnionParam{weatherToolAn()}
	}
	if !stream {
		m, err := client.Messages.New(t.Context(), params)
		if err != nil {
			t.Fatal(err)
		}
		return *m
	}
	s := client.Messages.NewStreaming(t.Context(), params)
	var msg anthropic.Message
	stopped := map[int64]bool{}
	for s.Next() {
		ev := s.Current()
		switch ev.Type {
		case "content_block_delta", "content_block_stop":
			if stopped[ev.Index] {
				t.Errorf("%s for block %d after its content_block_stop", ev.Type, ev.Index)
			}
			if ev.Type == "content_block_stop" {
				stopped[ev.Index] = true
			}
		}
		if err := msg.Accumulate(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range msg.Content {
		if !stopped[int64(i)] {
			t.Errorf("block %d never stopped", i)
		}
	}
	return msg
}

// oaChat sends prompt through the OpenAI SDK to model and returns the
// completion as the SDK built it (a stream accumulated, usage asked for).
func oaChat(t *testing.T, h *harness, model, prompt string, stream, tools bool) openai.ChatCompletion {
	t.Helper()
	client := openAIClient(h)
	params := openai.ChatCompletionNewParams{Model: model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
	if tools {
		params.Tools = []openai.ChatCompletionToolUnionParam{weatherTool()}
	}
	if !stream {
		c, err := client.Chat.Completions.New(t.Context(), params)
		if err != nil {
			t.Fatal(err)
		}
		return *c
	}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	s := client.Chat.Completions.NewStreaming(t.Context(), params)
	var acc openai.ChatCompletionAccumulator
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) == 0 {
		t.Fatal("no choices")
	}
	return acc.ChatCompletion
}

func streamName(stream bool) string {
	if stream {
		return "stream"
	}
	return "whole"
}

// TestUpstreamStopReasons: every stop reason each provider can send,
// in the client's vocabulary (doc.go's mapping), and metered in the
// destination's.
func TestUpstreamStopReasons(t *testing.T) {
	h := newHarness(t)
	cases := []struct{ client, model, upstream, want string }{
		{"anthropic", "claude", "end_turn", "end_turn"},
		{"anthropic", "claude", "max_tokens", "max_tokens"},
		{"anthropic", "claude", "stop_sequence", "stop_sequence"},
		{"anthropic", "claude", "tool_use", "tool_use"},
		{"anthropic", "claude", "pause_turn", "pause_turn"},
		{"anthropic", "claude", "refusal", "refusal"},
		{"anthropic", "claude", "model_context_window_exceeded", "model_context_window_exceeded"},
		{"openai", "claude", "end_turn", "stop"},
		{"openai", "claude", "max_tokens", "length"},
		{"openai", "claude", "stop_sequence", "stop"},
		{"openai", "claude", "tool_use", "tool_calls"},
		{"openai", "claude", "pause_turn", "stop"},
		{"openai", "claude", "refusal", "content_filter"},
		{"openai", "claude", "model_context_window_exceeded", "length"},
		{"openai", "gpt", "stop", "stop"},
		{"openai", "gpt", "length", "length"},
		{"openai", "gpt", "tool_calls", "tool_calls"},
		{"openai", "gpt", "content_filter", "content_filter"},
		{"openai", "gpt", "function_call", "function_call"},
		{"anthropic", "gpt", "stop", "end_turn"},
		{"anthropic", "gpt", "length", "max_tokens"},
		{"anthropic", "gpt", "tool_calls", "tool_use"},
		{"anthropic", "gpt", "content_filter", "refusal"},
		{"anthropic", "gpt", "function_call", "tool_use"},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(c.client+"/"+c.model+"/"+c.upstream+"/"+streamName(stream), func(t *testing.T) {
				h.reset()
				prompt := "hello mock:stop=" + c.upstream
				var got string
				if c.client == "anthropic" {
					got = string(anMessage(t, h, c.model, prompt, stream, false).StopReason)
				} else {
					got = oaChat(t, h, c.model, prompt, stream, false).Choices[0].FinishReason
				}
				if got != c.want {
					t.Errorf("client got %q, want %q", got, c.want)
				}
				if res := h.result(); !slices.Equal(res.FinishReasons, []string{c.upstream}) {
					t.Errorf("metered finish reasons %v, want [%s]", res.FinishReasons, c.upstream)
				}
			})
		}
	}
}

// TestUpstreamContentAnthropicClient: content the upstream may send, as
// an Anthropic client sees it.
func TestUpstreamContentAnthropicClient(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name, model, prompt string
		tools               bool
		check               func(t *testing.T, m anthropic.Message)
	}{
		{"thinking and redacted thinking pass", "claude", "hello mock:reasoning=7", false, func(t *testing.T, m anthropic.Message) {
			if len(m.Content) != 3 || m.Content[0].Type != "thinking" || m.Content[0].Thinking != "The user wants an echo. " ||
				m.Content[0].Signature == "" || m.Content[1].Type != "redacted_thinking" || m.Content[1].Data == "" || m.Content[2].Text != "Echo: hello" {
				t.Errorf("content %+v", m.Content)
			}
			if m.Usage.OutputTokensDetails.ThinkingTokens != 7 {
				t.Errorf("usage %+v", m.Usage)
			}
		}},
		{"web search blocks and citations pass", "claude", "hello mock:websearch", false, func(t *testing.T, m anthropic.Message) {
			if len(m.Content) != 3 || m.Content[0].Type != "server_tool_use" || m.Content[0].Name != "web_search" ||
				m.Content[1].Type != "web_search_tool_result" || m.Content[1].ToolUseID != m.Content[0].ID ||
				m.Content[2].Text != "Echo: hello" || len(m.Content[2].Citations) != 1 || m.Content[2].Citations[0].URL != "https://example.com/echo" {
				t.Errorf("content %+v", m.Content)
			}
			if m.Usage.ServerToolUse.WebSearchRequests != 1 {
				t.Errorf("usage %+v", m.Usage)
			}
		}},
		{"unknown events and pings are harmless", "claude", "hello mock:odd", false, func(t *testing.T, m anthropic.Message) {
			if len(m.Content) != 1 || m.Content[0].Text != "Echo: hello" {
				t.Errorf("content %+v", m.Content)
			}
		}},
		{"parallel tool use", "claude", "weather? mock:tool mock:parallel=3", true, func(t *testing.T, m anthropic.Message) {
			checkAnTools(t, m, 3)
		}},
		{"openai refusal becomes text", "gpt", "hello mock:refusal", false, func(t *testing.T, m anthropic.Message) {
			if len(m.Content) != 1 || m.Content[0].Text != "I can't help with that." {
				t.Errorf("content %+v", m.Content)
			}
		}},
		{"openai parallel tool calls, interleaved", "gpt", "weather? mock:tool mock:parallel=3", true, func(t *testing.T, m anthropic.Message) {
			checkAnTools(t, m, 3)
		}},
		{"openai chunks without choices, ids repeated in each piece", "gpt", "weather? mock:tool mock:parallel=2 mock:odd", true, func(t *testing.T, m anthropic.Message) {
			checkAnTools(t, m, 2)
			if m.ID == "" || m.Model == "" {
				t.Errorf("id %q model %q", m.ID, m.Model)
			}
		}},
		{"openai annotations are dropped", "gpt", "hello mock:websearch", false, func(t *testing.T, m anthropic.Message) {
			if len(m.Content) != 1 || m.Content[0].Text != "Echo: hello" {
				t.Errorf("content %+v", m.Content)
			}
		}},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(c.name+"/"+streamName(stream), func(t *testing.T) {
				h.reset()
				m := anMessage(t, h, c.model, c.prompt, stream, c.tools)
				c.check(t, m)
				res := h.result()
				if res.Broken || res.Err != nil {
					t.Errorf("result %+v", res)
				}
				wantUsage(t, res.Usage, h.fake.Last())
			})
		}
	}
}

func checkAnTools(t *testing.T, m anthropic.Message, n int) {
	t.Helper()
	ids := map[string]bool{}
	for _, b := range m.Content {
		var in map[string]any
		if b.Type != "tool_use" || b.Name != "get_weather" || json.Unmarshal(b.Input, &in) != nil || in["city"] != "test" || ids[b.ID] {
			t.Errorf("block %+v input %s", b, b.Input)
		}
		ids[b.ID] = true
	}
	if len(m.Content) != n || m.StopReason != anthropic.StopReasonToolUse {
		t.Errorf("%d blocks, stop %q, want %d tool_use", len(m.Content), m.StopReason, n)
	}
}

// TestUpstreamContentOpenAIClient: content the upstream may send, as an
// OpenAI chat client sees it.
func TestUpstreamContentOpenAIClient(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name, model, prompt string
		tools               bool
		check               func(t *testing.T, c openai.ChatCompletionChoice)
	}{
		{"refusal passes", "gpt", "hello mock:refusal", false, func(t *testing.T, c openai.ChatCompletionChoice) {
			if c.Message.Refusal != "I can't help with that." || c.Message.Content != "" {
				t.Errorf("message %+v", c.Message)
			}
		}},
		{"parallel tool calls, interleaved", "gpt", "weather? mock:tool mock:parallel=3", true, func(t *testing.T, c openai.ChatCompletionChoice) {
			checkOATools(t, c, 3)
		}},
		{"chunks without choices, ids repeated", "gpt", "weather? mock:tool mock:parallel=2 mock:odd", true, func(t *testing.T, c openai.ChatCompletionChoice) {
			checkOATools(t, c, 2)
		}},
		{"thinking is dropped, reasoning counted", "claude", "hello mock:reasoning=7", false, func(t *testing.T, c openai.ChatCompletionChoice) {
			if c.Message.Content != "Echo: hello" {
				t.Errorf("message %+v", c.Message)
			}
		}},
		{"web search blocks are dropped, the answer stays", "claude", "hello mock:websearch", false, func(t *testing.T, c openai.ChatCompletionChoice) {
			if c.Message.Content != "Echo: hello" || c.FinishReason != "stop" {
				t.Errorf("message %+v", c)
			}
		}},
		{"unknown events are ignored", "claude", "hello mock:odd", false, func(t *testing.T, c openai.ChatCompletionChoice) {
			if c.Message.Content != "Echo: hello" {
				t.Errorf("message %+v", c.Message)
			}
		}},
		{"anthropic parallel tool use", "claude", "weather? mock:tool mock:parallel=3", true, func(t *testing.T, c openai.ChatCompletionChoice) {
			checkOATools(t, c, 3)
		}},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(c.name+"/"+streamName(stream), func(t *testing.T) {
				h.reset()
				cc := oaChat(t, h, c.model, c.prompt, stream, c.tools)
				c.check(t, cc.Choices[0])
				res := h.result()
				if res.Broken || res.Err != nil {
					t.Errorf("result %+v", res)
				}
				wantUsage(t, res.Usage, h.fake.Last())
				if cc.Usage.PromptTokens != res.Usage.InputTokens || cc.Usage.CompletionTokens != res.Usage.OutputTokens ||
					cc.Usage.CompletionTokensDetails.ReasoningTokens != res.Usage.ReasoningTokens {
					t.Errorf("client usage %+v, metered %+v", cc.Usage, res.Usage)
				}
			})
		}
	}
}

func checkOATools(t *testing.T, c openai.ChatCompletionChoice, n int) {
	t.Helper()
	ids := map[string]bool{}
	for _, tc := range c.Message.ToolCalls {
		if tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"test"}` || tc.ID == "" || ids[tc.ID] {
			t.Errorf("tool call %+v", tc)
		}
		ids[tc.ID] = true
	}
	if len(c.Message.ToolCalls) != n || c.FinishReason != "tool_calls" {
		t.Errorf("%d tool calls, finish %q, want %d", len(c.Message.ToolCalls), c.FinishReason, n)
	}
}

// TestUpstreamResponsesEnds: a Responses answer that completes, fails or
// is incomplete, and events the client does not know yet.
func TestUpstreamResponsesEnds(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	cases := []struct{ prompt, status, final string }{
		{"hello mock:odd", "completed", "response.completed"},
		{"hello mock:stop=failed", "failed", "response.failed"},
		{"hello mock:stop=incomplete", "incomplete", "response.incomplete"},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(c.status+"/"+streamName(stream), func(t *testing.T) {
				h.reset()
				params := responses.ResponseNewParams{Model: "gpt", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(c.prompt)}}
				var status string
				if stream {
					s := client.Responses.NewStreaming(t.Context(), params)
					for s.Next() {
						if ev := s.Current(); ev.Type == c.final {
							status = string(ev.Response.Status)
						}
					}
					if err := s.Err(); err != nil {
						t.Fatal(err)
					}
				} else {
					r, err := client.Responses.New(t.Context(), params)
					if err != nil {
						t.Fatal(err)
					}
					status = string(r.Status)
				}
				if status != c.status {
					t.Errorf("status %q, want %q", status, c.status)
				}
				res := h.result()
				wantUsage(t, res.Usage, h.fake.Last())
				if !slices.Equal(res.FinishReasons, []string{c.status}) || res.Broken {
					t.Errorf("metered %v broken %v", res.FinishReasons, res.Broken)
				}
			})
		}
	}
}

// TestUpstreamResponsesErrorEvent: a Responses stream that the
// destination ends with an error event reaches the client as it came and
// is recorded as broken, with the destination's error, metered for what
// was delivered.
func TestUpstreamResponsesErrorEvent(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	s := client.Responses.NewStreaming(t.Context(), responses.ResponseNewParams{Model: "gpt",
		Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("a long enough answer to be cut mock:error-event")}})
	var gotError string
	for s.Next() {
		if ev := s.Current(); ev.Type == "error" {
			gotError = ev.Message
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if gotError != "mock stream error" {
		t.Errorf("client's error event: %q", gotError)
	}
	res := h.result()
	if e := llm.AsError(res.Err); !res.Broken || e == nil || e.Status != 502 || e.Message != "upstream: mock stream error" {
		t.Errorf("result broken %v err %v", res.Broken, res.Err)
	}
	if !res.Usage.Estimated || res.Usage.OutputTokens <= 0 {
		t.Errorf("usage %+v", res.Usage)
	}
}

// TestUpstreamOverloadedMidStream: an error event in the middle of a
// stream (Anthropic's overloaded_error, an OpenAI chat error line)
// reaches the client as an error and is recorded as the destination's
// error and status, not as a stream that merely ended early.
func TestUpstreamOverloadedMidStream(t *testing.T) {
	h := newHarness(t)
	const prompt = "a long enough answer to be cut mock:error-event"
	cases := []struct {
		client, model string
		status        int
		estimate      bool // the input count is the request's estimate (no message_start)
	}{
		{"anthropic", "claude", 529, false},
		{"openai", "claude", 529, false},
		{"openai", "gpt", 502, true}, // OpenAI's server_error
		{"anthropic", "gpt", 502, true},
	}
	for _, c := range cases {
		t.Run(c.client+"/"+c.model, func(t *testing.T) {
			h.reset()
			var err error
			if c.client == "anthropic" {
				ac := anthropicClient(h)
				s := ac.Messages.NewStreaming(t.Context(), anthropic.MessageNewParams{Model: anthropic.Model(c.model), MaxTokens: 100,
					Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}})
				for s.Next() {
				}
				err = s.Err()
			} else {
				oc := openAIClient(h)
				s := oc.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: c.model,
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}})
				for s.Next() {
				}
				err = s.Err()
			}
			if err == nil {
				t.Error("the client saw no error")
			}
			res := h.result()
			if e := llm.AsError(res.Err); !res.Broken || e == nil || e.Status != c.status || e.Message != "upstream: mock stream error" {
				t.Errorf("result broken %v err %v", res.Broken, res.Err)
			}
			if !res.Usage.Estimated || res.Usage.OutputTokens <= 0 || (!c.estimate && res.Usage.InputTokens != int64(h.fake.Last().Usage.Input)) {
				t.Errorf("usage %+v", res.Usage)
			}
		})
	}
}

// The price of the usage tests: USD per million tokens (1-hour cache
// writes not given: twice the input, $6). Web searches: $10 per 1,000,
// 0.01 USD (webSearchCost nano-USD) each.
var testPrice = gateway.ModelPrice{Input: 3, Output: 15, CachedInput: 0.30, CacheWrite: 3.75, HasCachedInput: true, HasCacheWrite: true,
	Tools: catalog.ToolPrices{PerThousand: [catalog.NumToolKinds]float64{catalog.ToolWebSearch: 10}, Set: [catalog.NumToolKinds]bool{catalog.ToolWebSearch: true}}}

const webSearchCost = 10_000_000

// TestUsageAndCostAsBilled: the usage recorded and its cost are what the
// provider bills, every cache class once, in every direction, streamed
// and not; the client sees the usage in its own provider's convention.
func TestUsageAndCostAsBilled(t *testing.T) {
	h := newHarness(t)
	// 1000 input tokens of which 600 read from and 300 written to the
	// cache (100 of those with the 1-hour TTL); 400 bytes of answer (100
	// tokens) and 40 of reasoning: 140 output tokens. Only Anthropic
	// reports the TTLs: OpenAI-style destinations' writes are all priced
	// at the cache-write price.
	const prompt = "hello mock:input=1000 mock:cached=600 mock:cache_write=300 mock:cache_1h=100 mock:reasoning=40 mock:out=400"
	want := llm.Usage{InputTokens: 1000, CachedInputTokens: 600, CacheWriteTokens: 300, OutputTokens: 140, ReasoningTokens: 40, TotalTokens: 1140}
	want1h := want
	want1h.CacheWrite1hTokens = 100
	// 100 uncached × $3 + 140 × $15 + 600 × $0.30 + 300 × $3.75, per million
	const wantCost = (100*3_000 + 140*15_000 + 600*300 + 300*3_750) // nano-USD
	// ... of which 100 written for an hour at $6 instead of $3.75
	const wantCost1h = (100*3_000 + 140*15_000 + 600*300 + 200*3_750 + 100*6_000)
	cases := []struct{ client, model, extra string }{
		{"openai", "gpt", ""},
		{"openai", "claude", ""},
		{"anthropic", "claude", ""},
		{"anthropic", "gpt", ""},
		// message_delta's usage in its other shapes (streams only differ)
		{"anthropic", "claude", " mock:delta=min"},
		{"anthropic", "claude", " mock:delta=input"},
		{"anthropic", "claude", " mock:delta=null"},
		{"openai", "claude", " mock:delta=input"},
		{"openai", "claude", " mock:delta=null"},
		// a web search's usage: its tokens are billed like any, the
		// searches at the tool price (webSearchCost)
		{"anthropic", "claude", " mock:websearch"},
		{"anthropic", "claude", " mock:websearch=3"},
	}
	for _, c := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(c.client+"/"+c.model+c.extra+"/"+streamName(stream), func(t *testing.T) {
				h.reset()
				p := prompt + c.extra
				want, wantCost := want, int64(wantCost)
				if c.model == "claude" {
					want, wantCost = want1h, wantCost1h
				}
				if c.client == "anthropic" {
					m := anMessage(t, h, c.model, p, stream, false)
					u := m.Usage
					if u.InputTokens != 100 || u.CacheReadInputTokens != 600 || u.CacheCreationInputTokens != 300 || u.OutputTokens != 140 ||
						u.CacheCreation.Ephemeral1hInputTokens != want.CacheWrite1hTokens {
						t.Errorf("client usage %+v", u)
					}
				} else {
					cc := oaChat(t, h, c.model, p, stream, false)
					u := cc.Usage
					if u.PromptTokens != 1000 || u.PromptTokensDetails.CachedTokens != 600 || u.CompletionTokens != 140 ||
						u.CompletionTokensDetails.ReasoningTokens != 40 || u.TotalTokens != 1140 {
						t.Errorf("client usage %+v", u)
					}
				}
				res := h.result()
				if rec := h.fake.Last(); rec.Usage != nil && rec.Usage.WebSearches > 0 {
					want.ToolUses.WebSearch = int64(rec.Usage.WebSearches)
					wantCost += int64(rec.Usage.WebSearches) * webSearchCost
				}
				if res.Usage != want {
					t.Errorf("metered %+v, want %+v", res.Usage, want)
				}
				// as the gateway records and settles it (llmgw: usage row,
				// cost, limits' token settlement)
				pu := pipeline.Usage{InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens, CachedInputTokens: res.Usage.CachedInputTokens,
					CacheWriteTokens: res.Usage.CacheWriteTokens, CacheWrite1hTokens: res.Usage.CacheWrite1hTokens, ReasoningTokens: res.Usage.ReasoningTokens}
				pu.ToolUses[catalog.ToolWebSearch] = res.Usage.ToolUses.WebSearch
				if cost := limitstage.Cost(testPrice, pu); cost != wantCost {
					t.Errorf("cost %d nano-USD, want %d", cost, wantCost)
				}
				if lu := limitstage.Usage(pu); lu.InputTokens != 100 || lu.Total() != 1140 {
					t.Errorf("settled %+v total %d", lu, lu.Total())
				}
			})
		}
	}
}

// TestToolUsesMetered: the uses of the server tools billed per use are
// metered as the provider bills them, streamed and not, in every
// direction: Anthropic's usage.server_tool_use, the Responses API's
// web_search_call and file_search_call items (a stream that breaks after
// them still counts them), one search per choice of a chat completion
// with web_search_options; a translation that drops the tool bills none.
func TestToolUsesMetered(t *testing.T) {
	h := newHarness(t)
	const webSearch = `"tools":[{"type":"web_search_20250305","name":"web_search"%s}]`
	user := func(prompt string) string { return `"messages":[{"role":"user","content":"` + prompt + `"}]` }
	for _, tc := range []struct {
		name, path, body string
		want             llm.ToolUses
		broken           bool
	}{
		{"anthropic web search", "/v1/messages", `{"model":"claude","max_tokens":50,` + fmt.Sprintf(webSearch, "") + `,` + user("hi mock:websearch=3") + `}`,
			llm.ToolUses{WebSearch: 3}, false},
		{"anthropic web search within max_uses", "/v1/messages", `{"model":"claude","max_tokens":50,` + fmt.Sprintf(webSearch, `,"max_uses":2`) + `,` + user("hi mock:websearch=5") + `}`,
			llm.ToolUses{WebSearch: 2}, false},
		{"anthropic web search, stream broken", "/v1/messages", `{"model":"claude","max_tokens":50,` + fmt.Sprintf(webSearch, "") + `,` + user("hi mock:websearch=2 mock:break") + `}`,
			llm.ToolUses{WebSearch: 2}, true},
		{"anthropic client, openai destination: the server tool is dropped", "/v1/messages", `{"model":"gpt","max_tokens":50,` + fmt.Sprintf(webSearch, "") + `,` + user("hi mock:websearch=3") + `}`,
			llm.ToolUses{}, false},
		{"chat web_search_options", "/v1/chat/completions", `{"model":"gpt","web_search_options":{},` + user("hi") + `}`,
			llm.ToolUses{WebSearch: 1}, false},
		{"chat web_search_options to anthropic: dropped", "/v1/chat/completions", `{"model":"claude","web_search_options":{},` + user("hi") + `}`,
			llm.ToolUses{}, false},
		{"responses web and file search", "/v1/responses", `{"model":"gpt","tools":[{"type":"web_search"},{"type":"file_search","vector_store_ids":["v"]}],"input":"hi mock:websearch=2 mock:filesearch=1"}`,
			llm.ToolUses{WebSearch: 2, FileSearch: 1}, false},
		{"responses within max_tool_calls", "/v1/responses", `{"model":"gpt","max_tool_calls":1,"tools":[{"type":"web_search"}],"input":"hi mock:websearch=3"}`,
			llm.ToolUses{WebSearch: 1}, false},
		{"responses, stream broken after the searches", "/v1/responses", `{"model":"gpt","tools":[{"type":"web_search_preview"}],"input":"hi mock:websearch=2 mock:break"}`,
			llm.ToolUses{WebSearch: 2}, true},
	} {
		for _, stream := range []bool{false, true} {
			if tc.broken && !stream {
				continue
			}
			t.Run(tc.name+"/"+streamName(stream), func(t *testing.T) {
				h.reset()
				body := tc.body
				if stream {
					body = `{"stream":true,` + body[1:]
				}
				if resp := postJSON(t, h.URL+tc.path, body, nil); resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, resp.body)
				}
				res := h.result()
				if res.Usage.ToolUses != tc.want {
					t.Errorf("metered tool uses %+v, want %+v", res.Usage.ToolUses, tc.want)
				}
				if rec := h.fake.Last(); rec.Usage == nil || !tc.broken && (rec.Usage.WebSearches != int(tc.want.WebSearch) || rec.Usage.FileSearches != int(tc.want.FileSearch)) {
					t.Errorf("the fake billed %+v", rec.Usage)
				}
			})
		}
	}
}
