package llm_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"

	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

func openAIClient(h *harness) openai.Client {
	return openai.NewClient(option.WithBaseURL(h.URL+"/v1/"), option.WithAPIKey(inboundToken), option.WithMaxRetries(0))
}

// checkUpstreamAuth asserts what every upstream request must satisfy: the
// provider credential, never the inbound token.
func checkUpstreamAuth(t *testing.T, rec llmtest.Received) {
	t.Helper()
	for k, vs := range rec.Header {
		for _, v := range vs {
			if strings.Contains(v, inboundToken) {
				t.Errorf("upstream got the inbound token in %s", k)
			}
		}
	}
	if strings.Contains(string(rec.Body), inboundToken) {
		t.Error("upstream got the inbound token in the body")
	}
	if strings.HasPrefix(rec.Path, "/v1/messages") {
		if rec.Header.Get("X-Api-Key") != anthropicKey {
			t.Errorf("Anthropic upstream x-api-key = %q", rec.Header.Get("X-Api-Key"))
		}
	} else if rec.Header.Get("Authorization") != "Bearer "+openAIKey {
		t.Errorf("OpenAI upstream Authorization = %q", rec.Header.Get("Authorization"))
	}
}

// wantUsage compares a gateway result's usage with what the fake reported.
func wantUsage(t *testing.T, got llm.Usage, rec llmtest.Received) {
	t.Helper()
	if rec.Usage == nil {
		t.Fatal("the fake reported no usage")
	}
	u := rec.Usage
	want := llm.Usage{InputTokens: int64(u.Input), OutputTokens: int64(u.Output), CachedInputTokens: int64(u.Cached),
		CacheWriteTokens: int64(u.CacheWrite), ReasoningTokens: int64(u.Reasoning), TotalTokens: int64(u.Input + u.Output),
		ToolUses: llm.ToolUses{WebSearch: int64(u.WebSearches), FileSearch: int64(u.FileSearches)}}
	if got != want {
		t.Errorf("usage = %+v, want %+v", got, want)
	}
}

func weatherTool() openai.ChatCompletionToolUnionParam {
	return openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Current weather of a city"),
		Parameters: shared.FunctionParameters{
			"type":       "object",
			"properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required":   []string{"city"},
		},
	})
}

func TestOpenAIChat(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	for _, model := range []string{"gpt", "claude", "compat"} {
		t.Run(model, func(t *testing.T) {
			h.reset()
			resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model: model,
				Messages: []openai.ChatCompletionMessageParamUnion{
					openai.SystemMessage("You are terse."),
					openai.UserMessage("hello there mock:cached=5"),
				},
				MaxCompletionTokens: openai.Int(200),
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Choices[0].Message.Content; got != "Echo: hello there" {
				t.Errorf("content = %q", got)
			}
			if resp.Choices[0].FinishReason != "stop" {
				t.Errorf("finish_reason = %q", resp.Choices[0].FinishReason)
			}
			rec := h.fake.Last()
			checkUpstreamAuth(t, rec)
			res := h.result()
			wantUsage(t, res.Usage, rec)
			// what the client sees is the same normalized usage
			if resp.Usage.PromptTokens != res.Usage.InputTokens || resp.Usage.CompletionTokens != res.Usage.OutputTokens ||
				resp.Usage.PromptTokensDetails.CachedTokens != 5 || resp.Usage.TotalTokens != res.Usage.TotalTokens {
				t.Errorf("client usage %+v vs metered %+v", resp.Usage, res.Usage)
			}
			body := rec.JSON()
			switch model {
			case "gpt":
				if body["model"] != "gpt-4.1" || body["safety_identifier"] != pseudoUser {
					t.Errorf("upstream body = %s", rec.Body)
				}
			case "compat":
				if body["model"] != "llama-3" || body["user"] != pseudoUser {
					t.Errorf("upstream body = %s", rec.Body)
				}
			case "claude":
				md, _ := body["metadata"].(map[string]any)
				if body["model"] != "claude-sonnet-4-5" || md["user_id"] != pseudoUser || body["system"] == nil {
					t.Errorf("upstream body = %s", rec.Body)
				}
			}
			if res.Status != 200 || len(res.Attempts) != 1 || res.Attempts[0].Status != 200 {
				t.Errorf("result %+v", res)
			}
		})
	}
}

func TestOpenAIChatStream(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	for _, model := range []string{"gpt", "claude"} {
		for _, includeUsage := range []bool{false, true} {
			name := model
			if includeUsage {
				name += "/include_usage"
			}
			t.Run(name, func(t *testing.T) {
				h.reset()
				params := openai.ChatCompletionNewParams{
					Model:    model,
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream me a longer answer please mock:cached=4")},
				}
				if includeUsage {
					params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				stream := client.Chat.Completions.NewStreaming(t.Context(), params)
				var acc openai.ChatCompletionAccumulator
				chunks, usageChunks := 0, 0
				for stream.Next() {
					c := stream.Current()
					acc.AddChunk(c)
					chunks++
					if len(c.Choices) == 0 && c.Usage.TotalTokens > 0 {
						usageChunks++
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if got := acc.Choices[0].Message.Content; got != "Echo: stream me a longer answer please" {
					t.Errorf("content = %q", got)
				}
				if acc.Choices[0].FinishReason != "stop" {
					t.Errorf("finish_reason = %q", acc.Choices[0].FinishReason)
				}
				if chunks < 4 {
					t.Errorf("only %d chunks: not relayed event by event", chunks)
				}
				res := h.result()
				rec := h.fake.Last()
				checkUpstreamAuth(t, rec)
				wantUsage(t, res.Usage, rec)
				if includeUsage {
					if usageChunks != 1 || acc.Usage.PromptTokens != res.Usage.InputTokens || acc.Usage.PromptTokensDetails.CachedTokens != 4 {
						t.Errorf("usage chunks %d, client usage %+v, metered %+v", usageChunks, acc.Usage, res.Usage)
					}
				} else if usageChunks != 0 {
					t.Errorf("the client did not ask for usage but got %d usage chunks", usageChunks)
				}
				if model == "gpt" {
					so, _ := rec.JSON()["stream_options"].(map[string]any)
					if so["include_usage"] != true {
						t.Errorf("upstream was not asked for usage: %s", rec.Body)
					}
				}
				if res.TTFT <= 0 || res.TTFT > res.Latency || !res.Streaming || res.Broken {
					t.Errorf("result ttft %v latency %v streaming %v broken %v", res.TTFT, res.Latency, res.Streaming, res.Broken)
				}
			})
		}
	}
}

func TestOpenAIChatTools(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	for _, model := range []string{"gpt", "claude"} {
		for _, streaming := range []bool{false, true} {
			name := model
			if streaming {
				name += "/stream"
			}
			t.Run(name, func(t *testing.T) {
				h.reset()
				params := openai.ChatCompletionNewParams{
					Model:    model,
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris? call get_weather")},
					Tools:    []openai.ChatCompletionToolUnionParam{weatherTool()},
				}
				var msg openai.ChatCompletionMessage
				var finish string
				if streaming {
					stream := client.Chat.Completions.NewStreaming(t.Context(), params)
					var acc openai.ChatCompletionAccumulator
					for stream.Next() {
						acc.AddChunk(stream.Current())
					}
					if err := stream.Err(); err != nil {
						t.Fatal(err)
					}
					msg, finish = acc.Choices[0].Message, acc.Choices[0].FinishReason
				} else {
					resp, err := client.Chat.Completions.New(t.Context(), params)
					if err != nil {
						t.Fatal(err)
					}
					msg, finish = resp.Choices[0].Message, resp.Choices[0].FinishReason
				}
				h.result()
				if finish != "tool_calls" || len(msg.ToolCalls) != 1 {
					t.Fatalf("finish %q, tool calls %+v", finish, msg.ToolCalls)
				}
				tc := msg.ToolCalls[0]
				if tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"test"}` || tc.ID == "" {
					t.Errorf("tool call %+v", tc)
				}
				// second turn: the tool's result goes back
				params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage("sunny, 21°C", tc.ID))
				resp, err := client.Chat.Completions.New(t.Context(), params)
				if err != nil {
					t.Fatal(err)
				}
				h.result()
				if got := resp.Choices[0].Message.Content; got != "Tool result: sunny, 21°C" {
					t.Errorf("content = %q", got)
				}
				if resp.Choices[0].FinishReason != "stop" {
					t.Errorf("finish_reason = %q", resp.Choices[0].FinishReason)
				}
			})
		}
	}
}

func TestOpenAIStopReasons(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	for _, model := range []string{"gpt", "claude"} {
		t.Run(model, func(t *testing.T) {
			resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model:    model,
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("alpha beta STOP gamma")},
				Stop:     openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"STOP"}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if c := resp.Choices[0]; c.Message.Content != "Echo: alpha beta " || c.FinishReason != "stop" {
				t.Errorf("stop: %q %q", c.Message.Content, c.FinishReason)
			}
			resp, err = client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
				Model:     model,
				Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two three four five six seven")},
				MaxTokens: openai.Int(2),
			})
			if err != nil {
				t.Fatal(err)
			}
			if c := resp.Choices[0]; c.FinishReason != "length" || len(c.Message.Content) != 8 {
				t.Errorf("length: %q %q", c.Message.Content, c.FinishReason)
			}
		})
	}
}

func TestOpenAIEmbeddings(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
		h.reset()
		resp, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
			Model:          "gpt",
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"first text", "second text"}},
			EncodingFormat: format,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Data) != 2 || len(resp.Data[0].Embedding) != 8 || resp.Data[0].Embedding[0] == resp.Data[1].Embedding[0] {
			t.Errorf("%s: embeddings %+v", format, resp.Data)
		}
		rec := h.fake.Last()
		checkUpstreamAuth(t, rec)
		res := h.result()
		wantUsage(t, res.Usage, rec)
		if rec.JSON()["user"] != pseudoUser || resp.Usage.PromptTokens != res.Usage.InputTokens {
			t.Errorf("upstream body %s, usage %+v", rec.Body, resp.Usage)
		}
	}
	// embeddings only go to OpenAI-style destinations
	_, err := client.Embeddings.New(t.Context(), openai.EmbeddingNewParams{Model: "claude", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "embeddings") {
		t.Errorf("embeddings to Anthropic: %v", err)
	}
	h.result()
}

func TestOpenAIModels(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	page, err := client.Models.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[0].ID != "claude" || page.Data[1].OwnedBy != "mandate" {
		t.Errorf("models %+v", page.Data)
	}
}

func TestOpenAIResponses(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	params := responses.ResponseNewParams{
		Model:        "gpt",
		Instructions: openai.String("Be brief."),
		Input:        responses.ResponseNewParamsInputUnion{OfString: openai.String("hello responses mock:cached=2 mock:reasoning=3")},
	}
	resp, err := client.Responses.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.OutputText() != "Echo: hello responses" || resp.Usage.InputTokensDetails.CachedTokens != 2 {
		t.Errorf("response %q usage %+v", resp.OutputText(), resp.Usage)
	}
	rec := h.fake.Last()
	checkUpstreamAuth(t, rec)
	res := h.result()
	wantUsage(t, res.Usage, rec)
	if res.Usage.ReasoningTokens != 3 || rec.JSON()["safety_identifier"] != pseudoUser || rec.JSON()["model"] != "gpt-4.1" {
		t.Errorf("usage %+v body %s", res.Usage, rec.Body)
	}

	stream := client.Responses.NewStreaming(t.Context(), params)
	var text strings.Builder
	var completed bool
	for stream.Next() {
		ev := stream.Current()
		switch ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
		case "response.completed":
			completed = true
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if text.String() != "Echo: hello responses" || !completed {
		t.Errorf("streamed %q completed %v", text.String(), completed)
	}
	res = h.result()
	wantUsage(t, res.Usage, h.fake.Last())
	if res.FinishReasons[0] != "completed" {
		t.Errorf("finish %v", res.FinishReasons)
	}

	// The Responses API needs an OpenAI-style destination.
	params.Model = "claude"
	_, err = client.Responses.New(t.Context(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || !strings.Contains(apiErr.Message, "responses API") {
		t.Errorf("responses to Anthropic: %v", err)
	}
	h.result()
	// A mixed service routes Responses calls to its OpenAI-style part only.
	params.Model = "mixed"
	for range 4 {
		if _, err := client.Responses.New(t.Context(), params); err != nil {
			t.Fatal(err)
		}
		if d := h.result().Destination; d == nil || d.Provider != llm.ProviderOpenAI {
			t.Errorf("responses routed to %+v", d)
		}
	}
}

func TestOpenAIErrors(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}
	cases := []struct {
		name   string
		client openai.Client
		model  string
		prompt string
		status int
		typ    string
	}{
		{"unknown service", client, "nope", "hi", 404, "invalid_request_error"},
		{"bad inbound token", openai.NewClient(option.WithBaseURL(h.URL+"/v1/"), option.WithAPIKey("wrong"), option.WithMaxRetries(0)), "gpt", "hi", 401, "authentication_error"},
		{"upstream 429 without fallback", client, "alldown", "hi", 429, "rate_limit_error"},
		{"upstream 500", client, "gpt", "hi mock:status=500", 502, "server_error"},
		{"upstream 400", client, "gpt", "hi mock:status=400", 400, "invalid_request_error"},
		{"timeout", client, "slow", "hi mock:slow=2s", 504, "timeout_error"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h.reset()
			msgs[0] = openai.UserMessage(c.prompt)
			_, err := c.client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: c.model, Messages: msgs})
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v", err)
			}
			if apiErr.StatusCode != c.status || apiErr.Type != c.typ || apiErr.Message == "" {
				t.Errorf("status %d type %q message %q", apiErr.StatusCode, apiErr.Type, apiErr.Message)
			}
			if c.status == 429 && apiErr.Response.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
	// malformed and oversized bodies never reach the upstream
	h.reset()
	for _, body := range []string{`{"model":"gpt","messages":[}`, `{"model":"gpt","messages":[],"MODEL":"x"}`, `{"model":"gpt","messages":"x"}`, `{"model":"gpt","max_tokens":1.5,"messages":[{"role":"user","content":"x"}]}`} {
		resp := postJSON(t, h.URL+"/v1/chat/completions", body, nil)
		if resp.StatusCode != 400 || !strings.Contains(resp.body, `"type":"invalid_request_error"`) {
			t.Errorf("%s: %d %s", body, resp.StatusCode, resp.body)
		}
	}
	big := `{"model":"gpt","messages":[{"role":"user","content":"` + strings.Repeat("x", 2<<20) + `"}]}`
	if resp := postJSON(t, h.URL+"/v1/chat/completions", big, nil); resp.StatusCode != 413 {
		t.Errorf("oversized: %d %s", resp.StatusCode, resp.body)
	}
	if n := h.fake.Count(); n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
}

func TestFallback(t *testing.T) {
	h := newHarness(t)
	client := openAIClient(h)
	resp, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
		Model:    "fallback",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello fallback")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Message.Content != "Echo: hello fallback" {
		t.Errorf("content %q", resp.Choices[0].Message.Content)
	}
	res := h.result()
	if len(res.Attempts) != 2 || res.Attempts[0].Status != 429 || res.Attempts[0].Service != "system.ai.openai_down" ||
		res.Attempts[1].Status != 200 || res.Attempts[1].Provider != llm.ProviderAnthropic || res.Destination.Model != "claude-sonnet-4-5" {
		t.Errorf("attempts %+v", res.Attempts)
	}
	if h.down.Count() != 1 || h.fake.Count() != 1 {
		t.Errorf("down got %d, fallback got %d", h.down.Count(), h.fake.Count())
	}
}

type httpResp struct {
	*http.Response
	body string
}
