package llm

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseRefuses(t *testing.T) {
	deep := strings.Repeat(`[`, 200) + strings.Repeat(`]`, 200)
	cases := []struct {
		name  string
		e     Endpoint
		body  string
		lim   Limits
		param string
		msg   string
	}{
		{"empty", ChatCompletions, ``, Limits{}, "", "empty"},
		{"not an object", ChatCompletions, `[1]`, Limits{}, "", "JSON object"},
		{"invalid json", ChatCompletions, `{"model":`, Limits{}, "", "invalid JSON"},
		{"invalid utf8", ChatCompletions, "{\"model\":\"a\xff\",\"messages\":[]}", Limits{}, "", "UTF-8"},
		{"duplicate key", ChatCompletions, `{"model":"a","max_tokens":1,"max_tokens":100000,"messages":[{"role":"user","content":"x"}]}`, Limits{}, "", "duplicate key"},
		{"case-folded duplicate", ChatCompletions, `{"model":"a","messages":[{"role":"user","content":"x"}],"tools":[],"Tools":[]}`, Limits{}, "", "duplicate key"},
		{"case-folded duplicate nested", Messages, `{"model":"a","max_tokens":5,"messages":[{"role":"user","content":"x","ROLE":"assistant"}]}`, Limits{}, "", "duplicate key"},
		{"too deep", ChatCompletions, `{"model":"a","messages":[{"role":"user","content":"x"}],"x":` + deep + `}`, Limits{}, "", "nested deeper"},
		{"too large", ChatCompletions, `{"model":"a","messages":[{"role":"user","content":"xxxxxxxxxxxxxxxx"}]}`, Limits{MaxBody: 20}, "", "larger than"},
		{"no model", ChatCompletions, `{"messages":[{"role":"user","content":"x"}]}`, Limits{}, "model", "required"},
		{"model not a string", ChatCompletions, `{"model":1,"messages":[{"role":"user","content":"x"}]}`, Limits{}, "model", "string"},
		{"no messages", ChatCompletions, `{"model":"a"}`, Limits{}, "messages", "required"},
		{"empty messages", ChatCompletions, `{"model":"a","messages":[]}`, Limits{}, "messages", "empty"},
		{"bad role", ChatCompletions, `{"model":"a","messages":[{"role":"root","content":"x"}]}`, Limits{}, "messages[0].role", "role"},
		{"bad content", ChatCompletions, `{"model":"a","messages":[{"role":"user","content":5}]}`, Limits{}, "messages[0].content", ""},
		{"too many messages", ChatCompletions, `{"model":"a","messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}]}`, Limits{MaxMessages: 1}, "messages", "more than 1"},
		{"too many tools", ChatCompletions, `{"model":"a","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}]}`, Limits{MaxTools: 1}, "tools", "more than 1"},
		{"fractional max_tokens", ChatCompletions, `{"model":"a","max_tokens":1.5,"messages":[{"role":"user","content":"x"}]}`, Limits{}, "max_tokens", "integer"},
		{"negative max_tokens", ChatCompletions, `{"model":"a","max_completion_tokens":-1,"messages":[{"role":"user","content":"x"}]}`, Limits{}, "max_completion_tokens", "integer"},
		{"stream not a bool", ChatCompletions, `{"model":"a","stream":"yes","messages":[{"role":"user","content":"x"}]}`, Limits{}, "stream", "boolean"},
		{"huge n", ChatCompletions, `{"model":"a","n":1000,"messages":[{"role":"user","content":"x"}]}`, Limits{}, "n", "128"},
		{"anthropic without max_tokens", Messages, `{"model":"a","messages":[{"role":"user","content":"x"}]}`, Limits{}, "max_tokens", "required"},
		{"anthropic tool role", Messages, `{"model":"a","max_tokens":5,"messages":[{"role":"tool","content":"x"}]}`, Limits{}, "messages[0].role", ""},
		{"anthropic block without type", Messages, `{"model":"a","max_tokens":5,"messages":[{"role":"user","content":[{"text":"x"}]}]}`, Limits{}, "messages[0].content[0].type", ""},
		{"anthropic tool without name", Messages, `{"model":"a","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"input_schema":{}}]}`, Limits{}, "tools[0].name", ""},
		{"embeddings stream", Embeddings, `{"model":"a","input":"x","stream":true}`, Limits{}, "stream", ""},
		{"embeddings no input", Embeddings, `{"model":"a"}`, Limits{}, "input", "required"},
		{"embeddings bad tokens", Embeddings, `{"model":"a","input":[["x"]]}`, Limits{}, "input", ""},
		{"responses bad item", Responses, `{"model":"a","input":[{"content":"x"}]}`, Limits{}, "input[0].type", ""},
		{"second message, second part", ChatCompletions, `{"model":"a","messages":[{"role":"user","content":"a"},{"role":"user","content":[{"type":"text","text":"x"},5]}]}`, Limits{}, "messages[1].content[1]", "messages[1].content[1] must be an object"},
		{"escaped role", ChatCompletions, `{"model":"a","messages":[{"role":"us\u0065r","content":"x"},{"role":"r\u006Fot","content":"x"}]}`, Limits{}, "messages[1].role", "messages[1].role must be"},
		{"anthropic second block", Messages, `{"model":"a","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"text":"y"}]}]}`, Limits{}, "messages[0].content[1].type", "messages[0].content[1].type must be a string"},
		{"responses second item", Responses, `{"model":"a","input":[{"role":"user","content":"x"},{"role":"root","content":"x"}]}`, Limits{}, "input[1].role", "input[1].role must be"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.e, []byte(c.body), c.lim)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v", err)
			}
			if (e.Status != 400 && e.Status != 413) || e.Param != c.param || !strings.Contains(e.Message, c.msg) {
				t.Errorf("status %d param %q message %q", e.Status, e.Param, e.Message)
			}
		})
	}
}

// TestCaseVariantKeysDoNotReachTheUpstream: a member spelled in another
// case ("Tools") is not seen by the parser; the translation must not pick
// it up either (Go's encoding/json would match it case-insensitively).
func TestCaseVariantKeysDoNotReachTheUpstream(t *testing.T) {
	body := `{"model":"a","messages":[{"role":"user","content":"x"}],"Tools":[{"type":"function","function":{"name":"rm_rf"}}]}`
	req, err := Parse(ChatCompletions, []byte(body), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(req.Tools) != 0 {
		t.Fatalf("parser saw %v", req.Tools)
	}
	out, err := chatToMessages(req.Body, "claude", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "rm_rf") {
		t.Errorf("translation forwarded a member the parser did not see: %s", out)
	}
}

func TestParseExtracts(t *testing.T) {
	req, err := Parse(ChatCompletions, []byte(`{"model":"frontier","n":2,"max_tokens":10,"max_completion_tokens":50,"stream":true,
		"stream_options":{"include_usage":true},"tool_choice":"required","response_format":{"type":"json_object"},
		"messages":[{"role":"user","content":"abcdefgh"}],"safety_identifier":"s1"}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if req.Model != "frontier" || !req.Stream || !req.IncludeUsage || req.MaxTokens != 100 || req.ToolChoice != "required" ||
		req.ResponseFormat != "json_object" || req.User != "s1" || req.Messages != 1 || req.InputTokens != 2+tokensPerMessage+1 {
		t.Errorf("%+v", req)
	}
	req, err = Parse(Messages, []byte(`{"model":"m","max_tokens":7,"tool_choice":{"type":"tool","name":"t"},"metadata":{"user_id":"x"},
		"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]}]}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if req.MaxTokens != 7 || req.ToolChoice != "tool:t" || req.User != "x" || req.Images != 1 || req.InputTokens != tokensPerMessage+tokensPerImage {
		t.Errorf("%+v", req)
	}
	req, err = Parse(CountTokens, []byte(`{"model":"m","messages":[{"role":"user","content":"x"}]}`), Limits{})
	if err != nil || req.MaxTokens != 0 {
		t.Errorf("count_tokens: %v %+v", err, req)
	}
}

// TestPerUseTool: the tools a provider runs and bills beyond tokens in a
// way no price bounds are named; the kinds tool_prices prices (web and
// file search) are counted with the bound on their uses instead, the
// gateway's where the client set none; client-run tools are neither,
// whatever their name.
func TestPerUseTool(t *testing.T) {
	msg := `"messages":[{"role":"user","content":"x"}]`
	for _, tc := range []struct {
		e         Endpoint
		body      string
		unpriced  string
		bound     ToolUses // with the default bound for the unbounded ones
		needsCap  bool
		forwarded string // a fragment of the capped upstream body ("" none checked)
	}{
		{e: Messages, body: `{"model":"m","max_tokens":5,"tools":[{"name":"get_weather","input_schema":{"type":"object"}},{"type":"web_search_20250305","name":"web_search"}],` + msg + `}`,
			bound: ToolUses{WebSearch: 8}, needsCap: true, forwarded: `{"max_uses":8,"type":"web_search_20250305","name":"web_search"}`},
		{e: Messages, body: `{"model":"m","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":3}],` + msg + `}`,
			bound: ToolUses{WebSearch: 3}, forwarded: `{"type":"web_search_20250305","name":"web_search","max_uses":3}`},
		{e: Messages, body: `{"model":"m","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"a","max_uses":3},{"type":"web_search_20260209","name":"b","max_uses":null}],` + msg + `}`,
			bound: ToolUses{WebSearch: 11}, needsCap: true, forwarded: `{"type":"web_search_20260209","name":"b","max_uses":8}`},
		{e: Messages, body: `{"model":"m","max_tokens":5,"tools":[{"type":"code_execution_20250522","name":"code_execution"}],` + msg + `}`, unpriced: "code_execution_20250522"},
		{e: Messages, body: `{"model":"m","max_tokens":5,"tools":[{"name":"web_search","input_schema":{"type":"object"}},{"type":"bash_20250124","name":"bash"},{"type":"text_editor_20250429","name":"str_replace_based_edit_tool"}],` + msg + `}`},
		{e: ChatCompletions, body: `{"model":"m","web_search_options":{},` + msg + `}`, bound: ToolUses{WebSearch: 1}},
		{e: ChatCompletions, body: `{"model":"m","web_search_options":{},"n":3,` + msg + `}`, bound: ToolUses{WebSearch: 3}},
		{e: ChatCompletions, body: `{"model":"m","web_search_options":null,"tools":[{"type":"function","function":{"name":"web_search"}}],` + msg + `}`},
		{e: ChatCompletions, body: `{"model":"m","tools":[{"type":"web_search"}],` + msg + `}`, unpriced: "web_search"},
		{e: Responses, body: `{"model":"m","tools":[{"type":"web_search_preview"}],"input":"x"}`,
			bound: ToolUses{WebSearch: 8}, needsCap: true, forwarded: `"max_tool_calls":8,`},
		{e: Responses, body: `{"model":"m","max_tool_calls":2,"tools":[{"type":"function","name":"f"},{"type":"file_search","vector_store_ids":["v"]},{"type":"web_search"}],"input":"x"}`,
			bound: ToolUses{WebSearch: 2, FileSearch: 2}},
		{e: Responses, body: `{"model":"m","tools":[{"type":"image_generation"}],"input":"x"}`, unpriced: "image_generation"},
		{e: Responses, body: `{"model":"m","max_tool_calls":3,"tools":[{"type":"function","name":"f"}],"input":"x"}`},
		{e: Responses, body: `{"max_tool_calls":0,"model":"m","tools":[{"type":"web_search"}],"input":"x"}`},
		{e: Responses, body: `{"model":"m","tools":[{"type":"web_search"},{"type":"code_interpreter","container":{"type":"auto"}}],"input":"x"}`,
			unpriced: "code_interpreter", bound: ToolUses{WebSearch: 8}, needsCap: true},
	} {
		req, err := Parse(tc.e, []byte(tc.body), Limits{})
		if err != nil {
			t.Fatalf("%s: %v", tc.body, err)
		}
		if got := req.PerUseTool(); got != tc.unpriced {
			t.Errorf("%s: PerUseTool = %q, want %q", tc.body, got, tc.unpriced)
		}
		if got := req.ToolUseBound(DefaultMaxToolUses); got != tc.bound {
			t.Errorf("%s: ToolUseBound = %+v, want %+v", tc.body, got, tc.bound)
		}
		if got := req.ToolCapNeeded(); got != tc.needsCap {
			t.Errorf("%s: ToolCapNeeded = %v, want %v", tc.body, got, tc.needsCap)
		}
		d := &Destination{Provider: ProviderAnthropic, Model: "m"}
		if tc.e != Messages {
			d.Provider = ProviderOpenAI
		}
		if out := string(rewriteBody(req, d, "")); tc.needsCap && strings.Contains(out, `:8`) {
			t.Errorf("%s: bounded before CapToolUses: %s", tc.body, out)
		}
		req.CapToolUses(DefaultMaxToolUses)
		out := string(rewriteBody(req, d, ""))
		if tc.forwarded != "" && !strings.Contains(out, tc.forwarded) {
			t.Errorf("%s: capped upstream body %s, want %s in it", tc.body, out, tc.forwarded)
		}
		if !tc.needsCap && out != string(rewriteBody(req, d, "")) {
			t.Errorf("%s: changed by CapToolUses", tc.body)
		}
		if !json.Valid([]byte(out)) {
			t.Errorf("%s: capped body is not JSON: %s", tc.body, out)
		}
	}
	if _, err := Parse(Messages, []byte(`{"model":"m","max_tokens":5,"tools":[{"type":"web_search_20250305","name":"w","max_uses":0}],`+msg+`}`), Limits{}); err == nil {
		t.Error("max_uses 0 accepted")
	}
}

// TestCapOutput: a request without an output cap gets the gateway's, in
// the member each destination reads, and reserves it per choice; a
// request with a cap, and embeddings, keep theirs.
func TestCapOutput(t *testing.T) {
	openai := &Destination{Provider: ProviderOpenAI, Model: "gpt-4.1"}
	compat := &Destination{Provider: ProviderOpenAICompatible, Model: "llama"}
	cases := []struct {
		name string
		e    Endpoint
		d    *Destination
		in   string
		max  int64
		want string
	}{
		{"openai chat", ChatCompletions, openai, `{"model":"svc","n":2,"messages":[{"role":"user","content":"x"}]}`, 200,
			`{"max_completion_tokens":100,"model":"gpt-4.1","n":2,"messages":[{"role":"user","content":"x"}]}`},
		{"compatible chat", ChatCompletions, compat, `{"model":"svc","messages":[{"role":"user","content":"x"}]}`, 100,
			`{"max_tokens":100,"model":"llama","messages":[{"role":"user","content":"x"}]}`},
		{"responses", Responses, openai, `{"model":"svc","input":"x"}`, 100,
			`{"max_output_tokens":100,"model":"gpt-4.1","input":"x"}`},
		{"client's cap kept", ChatCompletions, openai, `{"model":"svc","max_tokens":7,"messages":[{"role":"user","content":"x"}]}`, 7,
			`{"model":"gpt-4.1","max_tokens":7,"messages":[{"role":"user","content":"x"}]}`},
		{"embeddings have no output", Embeddings, openai, `{"model":"svc","input":"x"}`, 0,
			`{"model":"gpt-4.1","input":"x"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := Parse(c.e, []byte(c.in), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			req.CapOutput(100)
			if req.MaxTokens != c.max {
				t.Errorf("MaxTokens %d, want %d", req.MaxTokens, c.max)
			}
			if got := string(rewriteBody(req, c.d, "")); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	req, err := Parse(ChatCompletions, []byte(`{"model":"svc","messages":[{"role":"user","content":"x"}]}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	req.CapOutput(100)
	out, err := prepare(req, &Destination{Provider: ProviderAnthropic, Model: "claude", BaseURL: "http://x"}, "", nil, nil, time.Unix(0, 0))
	if err != nil || !strings.Contains(string(out.Body), `"max_tokens":100`) {
		t.Errorf("translated for Anthropic: %v %s", err, out.Body)
	}
}

func TestRewriteBody(t *testing.T) {
	openai := &Destination{Provider: ProviderOpenAI, Model: "gpt-4.1"}
	compat := &Destination{Provider: ProviderOpenAICompatible, Model: "llama"}
	anth := &Destination{Provider: ProviderAnthropic, Model: "claude"}
	cases := []struct {
		name string
		e    Endpoint
		d    *Destination
		user string
		in   string
		want string
	}{
		{"model only, formatting kept", ChatCompletions, openai, "",
			`{ "model" : "svc",  "messages":[{"role":"user","content":"h\u00e9"}] }`,
			`{ "model" : "gpt-4.1",  "messages":[{"role":"user","content":"h\u00e9"}] }`},
		{"stream gets usage, user id set", ChatCompletions, openai, "u1",
			`{"model":"svc","stream":true,"messages":[{"role":"user","content":"x"}]}`,
			`{"stream_options":{"include_usage":true},"safety_identifier":"u1","model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"x"}]}`},
		{"stream_options kept, include_usage set", ChatCompletions, openai, "",
			`{"model":"svc","stream":true,"stream_options":{"include_usage":false,"x":1},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true,"x":1},"messages":[{"role":"user","content":"x"}]}`},
		{"empty stream_options", ChatCompletions, openai, "",
			`{"model":"svc","stream":true,"stream_options":{ },"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true },"messages":[{"role":"user","content":"x"}]}`},
		{"null stream_options", ChatCompletions, openai, "",
			`{"model":"svc","stream":true,"stream_options":null,"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"gpt-4.1","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
		{"client's ids replaced", ChatCompletions, openai, "u1",
			`{"model":"svc","user":"claimed","safety_identifier":"claimed","messages":[{"role":"user","content":"x"}]}`,
			`{"model":"gpt-4.1","user":"u1","safety_identifier":"u1","messages":[{"role":"user","content":"x"}]}`},
		{"compatible servers get user", ChatCompletions, compat, "u1",
			`{"model":"svc","messages":[{"role":"user","content":"x"}]}`,
			`{"user":"u1","model":"llama","messages":[{"role":"user","content":"x"}]}`},
		{"anthropic metadata inserted", Messages, anth, "u1",
			`{"model":"svc","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`,
			`{"metadata":{"user_id":"u1"},"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`},
		{"anthropic user_id replaced", Messages, anth, "u1",
			`{"model":"svc","max_tokens":5,"metadata":{"user_id":"claimed"},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"claude","max_tokens":5,"metadata":{"user_id":"u1"},"messages":[{"role":"user","content":"x"}]}`},
		{"anthropic empty metadata", Messages, anth, "u1",
			`{"model":"svc","max_tokens":5,"metadata":{},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"claude","max_tokens":5,"metadata":{"user_id":"u1"},"messages":[{"role":"user","content":"x"}]}`},
		{"count_tokens gets no metadata", CountTokens, anth, "u1",
			`{"model":"svc","messages":[{"role":"user","content":"x"}]}`,
			`{"model":"claude","messages":[{"role":"user","content":"x"}]}`},
		{"user id is JSON-quoted", Embeddings, openai, `a"b`,
			`{"model":"svc","input":"x"}`,
			`{"user":"a\"b","model":"gpt-4.1","input":"x"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := Parse(c.e, []byte(c.in), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got := string(rewriteBody(req, c.d, c.user)); got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	a := Destination{Service: "a", Provider: ProviderOpenAI, Model: "m", Weight: 80}
	b := Destination{Service: "b", Provider: ProviderAnthropic, Model: "m", Weight: 20}
	r := Route{Destinations: []Destination{a, b}, Fallbacks: []Destination{b, {Service: "c", Provider: ProviderOpenAICompatible, Model: "m"}}}
	names := func(p []*Destination) string {
		var s []string
		for _, d := range p {
			s = append(s, d.Service)
		}
		return strings.Join(s, ",")
	}
	counts := map[string]int{}
	for n := range 100 {
		p := r.Plan(ChatCompletions, func(int) int { return n })
		counts[names(p)]++
	}
	if counts["a,b,c"] != 80 || counts["b,c"] != 20 {
		t.Errorf("split %v", counts)
	}
	// Responses go to OpenAI-style destinations only: b is left out.
	if got := names(r.Plan(Responses, func(n int) int { return n - 1 })); got != "a,c" {
		t.Errorf("responses plan %s", got)
	}
	if got := names((&Route{Destinations: []Destination{b}}).Plan(Embeddings, nil)); got != "" {
		t.Errorf("embeddings plan %s", got)
	}
}

func TestRateLimited(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rl := &RateLimit{Requests: &Window{Limit: 60, Remaining: 0, Reset: 1500 * time.Millisecond}, Tokens: &Window{Limit: 200000, Remaining: 1234, Reset: 6 * time.Minute}, Now: now}
	for _, f := range []Format{FormatOpenAI, FormatAnthropic} {
		w := httptest.NewRecorder()
		WriteError(w, f, RateLimited(f, "60 requests per minute for each user", 1500*time.Millisecond, false, rl))
		h := w.Header()
		if w.Code != 429 || h.Get("Retry-After") != "2" || h.Get("X-Should-Retry") != "" || h.Get("x-ratelimit-limit-requests") != "60" ||
			h.Get("x-ratelimit-remaining-requests") != "0" || h.Get("x-ratelimit-reset-requests") != "1.5s" ||
			h.Get("x-ratelimit-remaining-tokens") != "1234" || h.Get("x-ratelimit-reset-tokens") != "6m0s" {
			t.Errorf("%s: %d %v", f, w.Code, h)
		}
		var body map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if f == FormatAnthropic {
			e, _ := body["error"].(map[string]any)
			if body["type"] != "error" || e["type"] != "rate_limit_error" || h.Get("anthropic-ratelimit-tokens-reset") != "2026-01-02T03:10:05Z" {
				t.Errorf("anthropic: %s %v", w.Body, h)
			}
		} else {
			e, _ := body["error"].(map[string]any)
			if e["code"] != "rate_limit_exceeded" || e["type"] != "rate_limit_error" || h.Get("anthropic-ratelimit-tokens-reset") != "" {
				t.Errorf("openai: %s", w.Body)
			}
		}
	}
	w := httptest.NewRecorder()
	WriteError(w, FormatOpenAI, BudgetExhausted("budget data-analysts exhausted for this month", time.Hour))
	if !strings.Contains(w.Body.String(), `"type":"insufficient_quota"`) || w.Code != 429 || w.Header().Get("Retry-After") != "3600" ||
		w.Header().Get("X-Should-Retry") != "false" {
		t.Errorf("budget: %d %s %v", w.Code, w.Body, w.Header())
	}
	// A request larger than the limit: never retried, no Retry-After.
	w = httptest.NewRecorder()
	WriteError(w, FormatAnthropic, RateLimited(FormatAnthropic, "request too large", 0, true, rl))
	if w.Code != 429 || w.Header().Get("Retry-After") != "" || w.Header().Get("X-Should-Retry") != "false" ||
		w.Header().Get("anthropic-ratelimit-tokens-limit") != "200000" {
		t.Errorf("final: %d %v", w.Code, w.Header())
	}
	// anything that is not an *Error is a 500 that does not leak its text
	w = httptest.NewRecorder()
	WriteError(w, FormatAnthropic, errors.New("secret dsn postgres://x:y@z"))
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret") || !strings.Contains(w.Body.String(), `"api_error"`) {
		t.Errorf("internal: %d %s", w.Code, w.Body)
	}
}

func TestUsageNormalization(t *testing.T) {
	cases := []struct {
		name string
		f    Format
		in   string
		want Usage
	}{
		{"openai chat", FormatOpenAI, `{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120,"prompt_tokens_details":{"cached_tokens":64},"completion_tokens_details":{"reasoning_tokens":5}}`,
			Usage{InputTokens: 100, OutputTokens: 20, CachedInputTokens: 64, ReasoningTokens: 5, TotalTokens: 120}},
		{"openai responses", FormatOpenAI, `{"input_tokens":100,"input_tokens_details":{"cached_tokens":64,"cache_write_tokens":10},"output_tokens":20,"output_tokens_details":{"reasoning_tokens":5},"total_tokens":120}`,
			Usage{InputTokens: 100, OutputTokens: 20, CachedInputTokens: 64, CacheWriteTokens: 10, ReasoningTokens: 5, TotalTokens: 120}},
		{"openai embeddings", FormatOpenAI, `{"prompt_tokens":8,"total_tokens":8}`, Usage{InputTokens: 8, TotalTokens: 8}},
		{"anthropic excludes the cache classes", FormatAnthropic, `{"input_tokens":36,"cache_creation_input_tokens":100,"cache_read_input_tokens":2048,"output_tokens":20}`,
			Usage{InputTokens: 2184, OutputTokens: 20, CachedInputTokens: 2048, CacheWriteTokens: 100, TotalTokens: 2204}},
		{"anthropic nulls", FormatAnthropic, `{"input_tokens":3,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,"output_tokens":1}`,
			Usage{InputTokens: 3, OutputTokens: 1, TotalTokens: 4}},
		{"anthropic thinking is reasoning within the output", FormatAnthropic, `{"input_tokens":5,"output_tokens":50,"output_tokens_details":{"thinking_tokens":30}}`,
			Usage{InputTokens: 5, OutputTokens: 50, ReasoningTokens: 30, TotalTokens: 55}},
		{"anthropic thinking beyond output is clamped", FormatAnthropic, `{"input_tokens":5,"output_tokens":2,"output_tokens_details":{"thinking_tokens":30}}`,
			Usage{InputTokens: 5, OutputTokens: 2, ReasoningTokens: 2, TotalTokens: 7}},
		{"anthropic cache TTL classes are not added again", FormatAnthropic,
			`{"input_tokens":10,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":100},"cache_read_input_tokens":0,"output_tokens":1,"server_tool_use":{"web_search_requests":2}}`,
			Usage{InputTokens: 310, OutputTokens: 1, CacheWriteTokens: 300, CacheWrite1hTokens: 100, TotalTokens: 311, ToolUses: ToolUses{WebSearch: 2}}},
		{"anthropic 1-hour cache writes beyond the writes are clamped", FormatAnthropic,
			`{"input_tokens":10,"cache_creation_input_tokens":50,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":80},"output_tokens":1}`,
			Usage{InputTokens: 60, OutputTokens: 1, CacheWriteTokens: 50, CacheWrite1hTokens: 50, TotalTokens: 61}},
		{"anthropic without the TTL breakdown: 5-minute writes", FormatAnthropic, `{"input_tokens":10,"cache_creation_input_tokens":50,"output_tokens":1}`,
			Usage{InputTokens: 60, OutputTokens: 1, CacheWriteTokens: 50, TotalTokens: 61}},
		{"openai cached beyond input is clamped", FormatOpenAI, `{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":64}}`,
			Usage{InputTokens: 10, OutputTokens: 1, CachedInputTokens: 10, TotalTokens: 11}},
		{"openai reasoning beyond output is clamped", FormatOpenAI, `{"prompt_tokens":10,"completion_tokens":1,"completion_tokens_details":{"reasoning_tokens":64}}`,
			Usage{InputTokens: 10, OutputTokens: 1, ReasoningTokens: 1, TotalTokens: 11}},
		{"an upstream's negative counts are 0", FormatOpenAI, `{"prompt_tokens":-10,"completion_tokens":-1}`, Usage{}},
		// Summed as received, these would wrap around to a negative input:
		// a budget credited by the upstream's numbers.
		{"an upstream's usage that overflows is capped, never negative", FormatAnthropic,
			`{"input_tokens":4611686018427387904,"cache_creation_input_tokens":4611686018427387904,"cache_read_input_tokens":9223372036854775807,"output_tokens":9223372036854775807}`,
			Usage{InputTokens: 3 * maxCount, OutputTokens: maxCount, CachedInputTokens: maxCount, CacheWriteTokens: maxCount, TotalTokens: 4 * maxCount}},
		{"an openai total that overflows is capped", FormatOpenAI, `{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775807}`,
			Usage{InputTokens: maxCount, OutputTokens: maxCount, TotalTokens: 2 * maxCount}},
	}
	for _, c := range cases {
		var got Usage
		if c.f == FormatAnthropic {
			got = usageAnthropic([]byte(c.in))
		} else {
			got = usageOpenAI([]byte(c.in))
		}
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
		if got.UncachedInputTokens()+got.CachedInputTokens+got.CacheWriteTokens != got.InputTokens {
			t.Errorf("%s: the input classes do not add up", c.name)
		}
	}
	// the two formats' views of one call agree after translation
	an := usageAnthropic([]byte(`{"input_tokens":36,"cache_creation_input_tokens":100,"cache_read_input_tokens":2048,"output_tokens":20,"output_tokens_details":{"thinking_tokens":5}}`))
	if back := usageOpenAI(marshal(oaUsageFrom(an))); back != an {
		t.Errorf("anthropic → openai → normalized: %+v vs %+v", back, an)
	}
	if back := usageAnthropic(marshal(anUsageFrom(an))); back != an {
		t.Errorf("anthropic → normalized → anthropic: %+v vs %+v", back, an)
	}
}

// TestAnthropicDeltaUsage: message_delta's usage counts are cumulative
// and replace message_start's one by one; one left out or null keeps
// message_start's.
func TestAnthropicDeltaUsage(t *testing.T) {
	const start = `{"type":"message_start","message":{"id":"msg_1","model":"claude","usage":{"input_tokens":100,"cache_read_input_tokens":600,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":200,"ephemeral_1h_input_tokens":100},"output_tokens":1}}}`
	all := Usage{InputTokens: 1000, CachedInputTokens: 600, CacheWriteTokens: 300, CacheWrite1hTokens: 100, OutputTokens: 140, TotalTokens: 1140}
	cases := []struct {
		name, delta string
		want        Usage
	}{
		{"every count", `{"input_tokens":100,"cache_read_input_tokens":600,"cache_creation_input_tokens":300,"output_tokens":140}`, all},
		{"output only", `{"output_tokens":140}`, all},
		{"input without the cache counts", `{"input_tokens":100,"output_tokens":140}`, all},
		{"input counts null", `{"input_tokens":null,"cache_read_input_tokens":null,"cache_creation_input_tokens":null,"output_tokens":140}`, all},
		{"a count that grew", `{"input_tokens":150,"output_tokens":140}`, Usage{InputTokens: 1050, CachedInputTokens: 600, CacheWriteTokens: 300, CacheWrite1hTokens: 100, OutputTokens: 140, TotalTokens: 1190}},
		{"thinking", `{"output_tokens":140,"output_tokens_details":{"thinking_tokens":40}}`,
			Usage{InputTokens: 1000, CachedInputTokens: 600, CacheWriteTokens: 300, CacheWrite1hTokens: 100, OutputTokens: 140, ReasoningTokens: 40, TotalTokens: 1140}},
		{"the TTL breakdown again", `{"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":50,"ephemeral_1h_input_tokens":250},"output_tokens":140}`,
			Usage{InputTokens: 1000, CachedInputTokens: 600, CacheWriteTokens: 300, CacheWrite1hTokens: 250, OutputTokens: 140, TotalTokens: 1140}},
		{"fewer writes than 1-hour writes: clamped", `{"cache_creation_input_tokens":60,"output_tokens":140}`,
			Usage{InputTokens: 760, CachedInputTokens: 600, CacheWriteTokens: 60, CacheWrite1hTokens: 60, OutputTokens: 140, TotalTokens: 900}},
	}
	for _, c := range cases {
		m := newMeter(FormatAnthropic, Messages)
		tr := newAnToOAStream(true, time.Unix(0, 0))
		for _, ev := range []string{start, `{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":` + c.delta + `}`} {
			m.event("", []byte(ev))
			if _, err := tr.event(nil, "", []byte(ev)); err != nil {
				t.Fatal(err)
			}
		}
		if got := m.result(0); got != c.want {
			t.Errorf("%s: metered %+v, want %+v", c.name, got, c.want)
		}
		if tr.usage != c.want {
			t.Errorf("%s: translated %+v, want %+v", c.name, tr.usage, c.want)
		}
	}
}

// TestUpstreamStreamErrors: the error events each provider sends in a
// stream, recognized and given the provider's status.
func TestUpstreamStreamErrors(t *testing.T) {
	cases := []struct {
		name   string
		f      Format
		event  string
		data   string
		status int // 0: not an error event
	}{
		{"anthropic overloaded", FormatAnthropic, "error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, 529},
		{"anthropic rate limit", FormatAnthropic, "error", `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`, 429},
		{"openai chat error line", FormatOpenAI, "", `{"error":{"message":"boom","type":"server_error","param":null,"code":null}}`, 502},
		{"openai chat rate limit", FormatOpenAI, "", `{"error":{"message":"slow down","type":"tokens","code":"rate_limit_exceeded"}}`, 429},
		{"responses error event", FormatOpenAI, "error", `{"type":"error","code":"server_error","message":"boom","param":null,"sequence_number":3}`, 502},
		{"responses rate limit, no event name", FormatOpenAI, "", `{"type":"error","code":"rate_limit_exceeded","message":"slow down","param":null}`, 429},
		{"a chat chunk", FormatOpenAI, "", `{"id":"c","choices":[{"delta":{"content":"error"}}]}`, 0},
		{"responses failed is an answer", FormatOpenAI, "response.failed", `{"type":"response.failed","response":{"status":"failed","error":{"code":"server_error","message":"x"}}}`, 0},
		{"anthropic ping", FormatAnthropic, "ping", `{"type":"ping"}`, 0},
	}
	for _, c := range cases {
		is := isErrorEvent(c.f, c.event, []byte(c.data))
		if is != (c.status != 0) {
			t.Errorf("%s: error event %v", c.name, is)
			continue
		}
		if is {
			if e := upstreamStreamError([]byte(c.data)); e.Status != c.status || !strings.HasPrefix(e.Message, "upstream: ") || strings.Contains(e.Message, "reported an error") {
				t.Errorf("%s: %+v", c.name, e)
			}
		}
	}
}

func TestKnownAnthropicEvent(t *testing.T) {
	for tv, want := range map[string]bool{`"message_stop"`: true, `"message\u005fstop"`: true, `"ping"`: true,
		`"message_annotation"`: false, `"content_block_stop"`: false, ``: false, `7`: false} {
		if got := knownAnEvent([]byte(tv)); got != want {
			t.Errorf("%s: %v", tv, got)
		}
	}
}

func TestEndpointFor(t *testing.T) {
	for path, want := range map[string]Endpoint{
		"/v1/chat/completions": ChatCompletions, "/llm/v1/chat/completions": ChatCompletions, "/v1/messages": Messages,
		"/llm/v1/messages/count_tokens": CountTokens, "/v1/responses": Responses, "/llm/v1/models": Models, "/v1/embeddings/": Embeddings,
	} {
		if got, ok := EndpointFor(path); !ok || got != want {
			t.Errorf("%s: %v", path, got)
		}
	}
	if _, ok := EndpointFor("/v1/files"); ok {
		t.Error("/v1/files resolved")
	}
	d := Destination{Provider: ProviderAnthropic, BaseURL: "https://api.anthropic.com"}
	if u := d.url(Messages); u != "https://api.anthropic.com/v1/messages" {
		t.Error(u)
	}
	d = Destination{Provider: ProviderOpenAICompatible, BaseURL: "https://x.example/openai/deployments/gpt/?api-version=2024-10-21"}
	if u := d.url(ChatCompletions); u != "https://x.example/openai/deployments/gpt/chat/completions?api-version=2024-10-21" {
		t.Error(u)
	}
}

func TestReadBody(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(`{"a":1}`))
	r.Header.Set("Content-Type", "text/plain")
	if _, err := ReadBody(r, Limits{}); AsError(err).Status != 415 {
		t.Errorf("text/plain: %v", err)
	}
	r = httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(strings.Repeat("x", 100)))
	r.ContentLength = -1
	if _, err := ReadBody(r, Limits{MaxBody: 10}); AsError(err).Status != 413 {
		t.Errorf("chunked oversize: %v", err)
	}
	r = httptest.NewRequest(http.MethodPost, "/v1/messages", strings.NewReader(`{"a":1}`))
	r.Header.Set("Content-Type", "application/json; charset=utf-8")
	if b, err := ReadBody(r, Limits{}); err != nil || string(b) != `{"a":1}` {
		t.Errorf("%q %v", b, err)
	}
}

// FuzzParse: no request body makes parsing, the fast path's edits or the
// translations panic, and every rewritten body is still valid JSON.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(uint8(endpointOfFile(p)), b)
	}
	f.Add(uint8(ChatCompletions), []byte(`{"model":"a","stream":true,"stream_options":{},"messages":[{"role":"tool","content":[]}]}`))
	f.Fuzz(func(t *testing.T, e uint8, body []byte) {
		ep := Endpoint(e%5) + 1
		if ep == Models {
			ep = CountTokens
		}
		req, err := Parse(ep, body, Limits{MaxDepth: 64})
		if err != nil {
			return
		}
		_ = req.Texts()
		for _, d := range []*Destination{{Provider: ProviderOpenAI, Model: "m"}, {Provider: ProviderAnthropic, Model: "m"}} {
			out, err := prepare(req, d, "u", nil, nil, time.Unix(0, 0))
			if err != nil {
				continue
			}
			if out.Body != nil && !json.Valid(out.Body) {
				t.Fatalf("invalid upstream body for %s: %s", d.Provider, out.Body)
			}
		}
	})
}

// TestSystemRoleInMessages: Claude Code sends instructions as a message
// of role system inside messages; it is accepted, forwarded as is to
// Anthropic and becomes a system message for OpenAI-style destinations.
func TestSystemRoleInMessages(t *testing.T) {
	body := []byte(`{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"},` +
		`{"role":"system","content":[{"type":"text","text":"# Environment"}]}]}`)
	req, err := Parse(Messages, body, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if req.Messages != 2 {
		t.Errorf("messages %d", req.Messages)
	}
	out, err := messagesToChat(req.Body, "gpt-4.1", ProviderOpenAI, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `{"role":"system","content":"# Environment"}`) {
		t.Errorf("translated: %s", out)
	}
	if _, err := Parse(Messages, []byte(`{"model":"m","max_tokens":10,"messages":[{"role":"tool","content":"x"}]}`), Limits{}); err == nil {
		t.Error("role tool accepted")
	}
}

// TestQuoteJSONMatchesEncodingJSON: the fast path quotes exactly as
// json.Marshal does, escapes and HTML characters included.
func TestQuoteJSONMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "gpt-4.1", "mnd-0123456789abcdef", "claude-sonnet-4-5@20250929", "a\"b", `a\b`, "a<b>&c",
		"tab\there", "nl\n", "\x00", "\x7f", "é", "\u2028", "bad\xffutf8", "~!#$%'()*+,-./:;=?@[]^_`{|}"} {
		want, _ := json.Marshal(s)
		if got := quoteJSON(s); string(got) != string(want) {
			t.Errorf("quoteJSON(%q) = %s, want %s", s, got, want)
		}
	}
}
