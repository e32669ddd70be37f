package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mandatehq/mandate/gateway/internal/sse"
)

// The answer side: an upstream controls every byte the gateway reads
// back. These targets send an arbitrary upstream answer through the real
// Forwarder (an in-memory transport stands in for the network) for each
// (client format, upstream format) pair, and check what the client gets
// and what is metered.

// answerPair is one (client endpoint, destination provider) combination.
type answerPair struct {
	name     string
	endpoint Endpoint
	provider Provider
	body     string // the client's request (stream set by the target)
}

var answerPairs = []answerPair{
	{"chat→openai", ChatCompletions, ProviderOpenAI, `{"model":"m","messages":[{"role":"user","content":"hi"}]%s}`},
	{"chat→anthropic", ChatCompletions, ProviderAnthropic, `{"model":"m","messages":[{"role":"user","content":"hi"}]%s}`},
	{"messages→anthropic", Messages, ProviderAnthropic, `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]%s}`},
	{"messages→openai", Messages, ProviderOpenAICompatible, `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]%s}`},
	{"responses→openai", Responses, ProviderOpenAI, `{"model":"m","input":"hi"%s}`},
	{"embeddings→openai", Embeddings, ProviderOpenAI, `{"model":"m","input":"hi"%s}`},
	{"count_tokens→anthropic", CountTokens, ProviderAnthropic, `{"model":"m","messages":[{"role":"user","content":"hi"}]%s}`},
	{"chat→openai, usage not asked", ChatCompletions, ProviderOpenAI, `{"model":"m","messages":[{"role":"user","content":"hi"}]%s}`},
}

// roundTrip is an http.RoundTripper that answers every request with one
// canned response.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// forwardAnswer runs a call of pair p whose upstream answers status,
// ctype and body; it returns what the client got and the result.
func forwardAnswer(t *testing.T, p answerPair, stream bool, status int, ctype string, body []byte) (*httptest.ResponseRecorder, *Result) {
	t.Helper()
	opt := ""
	if stream {
		opt = `,"stream":true`
		if p.endpoint == ChatCompletions && !strings.Contains(p.name, "not asked") {
			opt += `,"stream_options":{"include_usage":true}`
		}
	}
	req, err := Parse(p.endpoint, []byte(fmt.Sprintf(p.body, opt)), Limits{})
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	fwd := &Forwarder{MaxEvent: 64 << 10, MaxResponseBody: 1 << 20, Now: func() time.Time { return goldenNow },
		Client: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			h := http.Header{}
			if ctype != "" {
				h.Set("Content-Type", ctype)
			}
			return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(bytes.NewReader(body)),
				ContentLength: int64(len(body)), Request: r}, nil
		})}}
	d := Destination{Service: "s", Provider: p.provider, BaseURL: "http://upstream.invalid/v1", Model: "m", Weight: 1}
	w := httptest.NewRecorder()
	res := fwd.Forward(t.Context(), w, &Call{Request: req, Route: Route{Destinations: []Destination{d}}, UserID: "u"})
	return w, res
}

// checkUsage states the metered usage's invariants: no class negative,
// the cache classes within the input (the 1-hour writes within the
// writes), reasoning within the output, the total their sum (so nothing
// wrapped around).
func checkUsage(t *testing.T, what string, u Usage) {
	t.Helper()
	if u.InputTokens < 0 || u.OutputTokens < 0 || u.CachedInputTokens < 0 || u.CacheWriteTokens < 0 || u.ReasoningTokens < 0 ||
		u.CachedInputTokens+u.CacheWriteTokens > u.InputTokens || u.ReasoningTokens > u.OutputTokens ||
		u.CacheWrite1hTokens < 0 || u.CacheWrite1hTokens > u.CacheWriteTokens ||
		u.TotalTokens != u.InputTokens+u.OutputTokens || u.TotalTokens < u.InputTokens {
		t.Fatalf("%s: metered usage %+v", what, u)
	}
}

// checkMeta states the bounds of what is kept of the provider's
// metadata (it goes to the audit row and the trace span).
func checkMeta(t *testing.T, what string, res *Result) {
	t.Helper()
	if len(res.ResponseID) > maxMeta || len(res.ResponseModel) > maxMeta || len(res.FinishReasons) > maxFinish {
		t.Fatalf("%s: id of %d bytes, model of %d, %d finish reasons", what, len(res.ResponseID), len(res.ResponseModel), len(res.FinishReasons))
	}
	for _, r := range res.FinishReasons {
		if len(r) > maxMeta {
			t.Fatalf("%s: finish reason of %d bytes", what, len(r))
		}
	}
}

// checkClientUsage states the same of a usage object written to the
// client (OpenAI's or Anthropic's members).
func checkClientUsage(t *testing.T, what string, u []byte) {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(u, &raw); err != nil {
		t.Fatalf("%s: usage %s: %v", what, u, err)
	}
	get := func(k string) int64 {
		var n int64
		if r, ok := raw[k]; ok {
			if err := json.Unmarshal(r, &n); err != nil {
				t.Fatalf("%s: usage %s: %s: %v", what, u, k, err)
			}
		}
		if n < 0 {
			t.Fatalf("%s: usage %s: %s negative", what, u, k)
		}
		return n
	}
	if _, ok := raw["prompt_tokens"]; ok {
		if get("total_tokens") != get("prompt_tokens")+get("completion_tokens") {
			t.Fatalf("%s: usage %s: total is not the sum", what, u)
		}
		return
	}
	get("input_tokens")
	get("output_tokens")
	get("cache_read_input_tokens")
	get("cache_creation_input_tokens")
}

// isClientError reports whether b is an error body of the client's format.
func isClientError(f Format, b []byte) bool {
	var e struct {
		Type  string `json:"type"`
		Error *struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error == nil || e.Error.Message == "" {
		return false
	}
	return f != FormatAnthropic || e.Type == "error"
}

func answerSeeds(f *testing.F, dir, ext string) [][]byte {
	files, _ := filepath.Glob(filepath.Join("testdata", dir, "*."+ext))
	var out [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// Bound on a translated answer: at most answerAmp bytes per upstream
// byte, plus answerFixed for the members the translation always writes.
const (
	answerAmp   = 16
	answerFixed = 1024
)

// FuzzAnswer: a non-streamed upstream answer, any bytes, for every pair.
// The client gets the upstream's body as is (same format), a valid JSON
// translation with sound usage, or an error body of its format; the
// metered usage keeps its invariants.
func FuzzAnswer(f *testing.F) {
	seeds := answerSeeds(f, "responses", "json")
	seeds = append(seeds,
		[]byte(`{"input_tokens":42}`),
		[]byte(`{"input_tokens":-5}`),
		[]byte(`{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1]}],"model":"m","usage":{"prompt_tokens":3,"total_tokens":3}}`),
		[]byte(`{"id":"resp_1","object":"response","status":"completed","model":"m","output":[],"usage":{"input_tokens":5,"output_tokens":7,"output_tokens_details":{"reasoning_tokens":9}}}`),
		[]byte(`{"id":"msg","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"x"}],"stop_reason":"end_turn","usage":{"input_tokens":4611686018427387904,"cache_read_input_tokens":4611686018427387904,"cache_creation_input_tokens":4611686018427387904,"output_tokens":9223372036854775807}}`),
		[]byte(`{"id":"msg","type":"message","role":"assistant","model":"m","content":[],"stop_reason":"end_turn","usage":{"input_tokens":1,"cache_creation_input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":-3,"ephemeral_1h_input_tokens":9223372036854775807},"output_tokens":1}}`),
		[]byte(`{"id":"c","model":"m","choices":[{"message":{"content":"x"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775807}}`),
		[]byte(`{"error":{"type":"overloaded_error","message":"busy"}}`),
		[]byte(`{"choices":[{"message":{"tool_calls":[{"function":{"arguments":"[1]"}}]}}]}`),
	)
	for _, s := range seeds {
		for i := range answerPairs {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, sel uint8, body []byte) {
		p := answerPairs[int(sel)%len(answerPairs)]
		status := []int{200, 200, 200, 200, 400, 429, 500, 201}[int(sel)/len(answerPairs)%8]
		w, res := forwardAnswer(t, p, false, status, "application/json", body)
		cf := p.endpoint.Format()
		out := w.Body.Bytes()
		if w.Code != http.StatusOK {
			if !isClientError(cf, out) {
				t.Fatalf("%s: status %d with %q", p.name, w.Code, out)
			}
			return
		}
		checkUsage(t, p.name, res.Usage)
		checkMeta(t, p.name, res)
		if cf == p.provider.Format() {
			if !bytes.Equal(out, body) {
				t.Fatalf("%s: same format, but the client got %q for %q", p.name, out, body)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%s: translated %q into invalid JSON %q", p.name, body, out)
		}
		var ans struct {
			Usage json.RawMessage `json:"usage"`
		}
		_ = json.Unmarshal(out, &ans)
		checkClientUsage(t, p.name, ans.Usage)
		// A translation is a small multiple of what it translates (an
		// empty tool call, {}, becomes a 30-byte tool_use block).
		if len(out) > answerAmp*len(body)+answerFixed {
			t.Fatalf("%s: %d bytes translated into %d", p.name, len(body), len(out))
		}
	})
}

// streamPairs are the pairs that stream (embeddings and count_tokens do
// not).
var streamPairs = []int{0, 1, 2, 3, 4, 7}

// Bound on a stream's client bytes: at most streamAmp bytes per upstream
// byte, plus streamFixed for the gateway's own closing and error events.
const (
	streamAmp   = 32
	streamFixed = 4096
)

// FuzzStream: an upstream stream, any bytes, through the real Reader and
// relay for every pair that streams. Every event the client gets reads
// back, its data is JSON or [DONE] (or, relayed as is, an upstream event
// as received); nothing follows the client's terminal event; the client's
// bytes stay within streamAmp per upstream byte (plus streamFixed); the
// metered usage keeps its invariants.
func FuzzStream(f *testing.F) {
	seeds := answerSeeds(f, "streams", "sse")
	seeds = append(seeds,
		[]byte("data: [DONE]\n\ndata: [DONE]\n\n"),
		[]byte("data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":4611686018427387904,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\"}}]}}]}\n\n"+
			"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":4611686018427387904,\"function\":{\"arguments\":\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n"+
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9223372036854775807,\"completion_tokens\":9223372036854775807,\"completion_tokens_details\":{\"reasoning_tokens\":5}}}\n\ndata: [DONE]\n\n"),
		[]byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n"+
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"a\",\"model\":\"m\",\"usage\":{\"input_tokens\":4611686018427387904,\"cache_read_input_tokens\":4611686018427387904}}}\n\n"+
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"b\",\"model\":\"n\",\"usage\":{\"input_tokens\":1}}}\n\n"+
			"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":9223372036854775807,\"input_tokens\":9223372036854775807}}\n\n"+
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"+
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"),
		[]byte("event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"status\":\"in_progress\"}}\n\n"+
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n"+
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\",\"usage\":{\"input_tokens\":-3,\"output_tokens\":2}}}\n\n"),
		[]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"busy\"}}\n\n"),
		[]byte("data: {\"error\":{\"message\":\"bad\",\"type\":\"requests\"}}\n\n"),
		[]byte(": ping\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n"),
	)
	// An id and a model as large as an event may be, then many small
	// events that each become a chunk repeating them.
	big := strings.Repeat("x", 30000)
	amp := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"" + big + "\",\"model\":\"" + big + "\"}}\n\n" +
		strings.Repeat("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\"}}\n\n", 64)
	finish := strings.Repeat("data: {\"id\":\""+big+"\",\"choices\":[{\"finish_reason\":\"a\"},{\"finish_reason\":\"b\"},{\"finish_reason\":\"c\"}]}\n\n", 3)
	for i := range 32 {
		finish += fmt.Sprintf("data: {\"choices\":[{\"finish_reason\":\"r%d\"}]}\n\n", i)
	}
	seeds = append(seeds, []byte(amp), []byte(finish))
	for _, s := range seeds {
		for _, i := range streamPairs {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, sel uint8, stream []byte) {
		checkStream(t, answerPairs[streamPairs[int(sel)%len(streamPairs)]], stream)
	})
}

// checkStream relays stream for pair p and checks what the client got
// (see FuzzStream).
func checkStream(t *testing.T, p answerPair, stream []byte) {
	t.Helper()
	{
		w, res := forwardAnswer(t, p, true, http.StatusOK, "text/event-stream", stream)
		cf := p.endpoint.Format()
		out := w.Body.Bytes()
		checkUsage(t, p.name, res.Usage)
		checkMeta(t, p.name, res)
		if w.Code != http.StatusOK {
			if !isClientError(cf, out) {
				t.Fatalf("%s: status %d with %q", p.name, w.Code, out)
			}
			return
		}
		if len(out) > streamAmp*len(stream)+streamFixed {
			t.Fatalf("%s: %d upstream bytes became %d for the client", p.name, len(stream), len(out))
		}
		translated := cf != p.provider.Format()
		rd := sse.NewReader(bytes.NewReader(out), 1<<30)
		defer rd.Release()
		ended := false
		for {
			err := rd.NextContent()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: the client's stream %q does not read back: %v", p.name, out, err)
			}
			data := rd.Data
			if !translated && bytes.Contains(stream, rd.Raw) {
				continue // an upstream event, relayed as received
			}
			if ended {
				t.Fatalf("%s: event %q after the client's stream ended", p.name, rd.Raw)
			}
			if string(data) == "[DONE]" || string(rd.Name) == "message_stop" {
				ended = true
				continue
			}
			if !json.Valid(data) {
				t.Fatalf("%s: event data %q is not JSON", p.name, data)
			}
			if u, ok := member(data, "usage"); ok && kindOf(u) == '{' {
				checkClientUsage(t, p.name, u)
			}
		}
		if res.Err != nil {
			var e *Error
			if !errors.As(res.Err, &e) && !errors.Is(res.Err, context.Canceled) {
				t.Fatalf("%s: stream error %T %v", p.name, res.Err, res.Err)
			}
		}
	}
}

// streamEvents are the upstream events FuzzStreamEvents composes streams
// of, both formats mixed; NUM is a number and STR a string it picks.
var streamEvents = []string{
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"STR\",\"model\":\"m\",\"usage\":{\"input_tokens\":NUM,\"cache_read_input_tokens\":NUM}}}\n\n",
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"cache_creation_input_tokens\":NUM,\"cache_creation\":{\"ephemeral_1h_input_tokens\":NUM}}}}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":NUM,\"content_block\":{\"type\":\"tool_use\",\"id\":\"STR\",\"name\":\"f\"}}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":NUM,\"content_block\":{\"type\":\"text\",\"text\":\"STR\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":NUM,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"STR\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":NUM,\"delta\":{\"type\":\"text_delta\",\"text\":\"STR\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":NUM}\n\n",
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"STR\"},\"usage\":{\"output_tokens\":NUM}}\n\n",
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":NUM,\"input_tokens\":NUM,\"cache_creation_input_tokens\":NUM}}\n\n",
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	"event: ping\ndata: {\"type\":\"ping\"}\n\n",
	"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"STR\",\"message\":\"mNUM\"}}\n\n",
	"data: {\"id\":\"STR\",\"choices\":[{\"delta\":{\"content\":\"STR\"},\"finish_reason\":null}],\"n\":NUM}\n\n",
	"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":NUM,\"id\":\"STR\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n",
	"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":NUM,\"function\":{\"arguments\":\"STR\"}}]}}]}\n\n",
	"data: {\"choices\":[{\"delta\":{\"refusal\":\"STR\"},\"finish_reason\":\"STR\"}],\"n\":NUM}\n\n",
	"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":NUM,\"completion_tokens\":NUM,\"prompt_tokens_details\":{\"cached_tokens\":NUM},\"completion_tokens_details\":{\"reasoning_tokens\":NUM},\"x\":\"STR\"}}\n\n",
	"data: [DONE]\n\n",
	"data: {\"error\":{\"message\":\"STR\",\"type\":\"requests\"},\"n\":NUM}\n\n",
	"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"STR\",\"n\":NUM}\n\n",
	"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"STR\",\"status\":\"completed\",\"usage\":{\"input_tokens\":NUM,\"output_tokens\":NUM}}}\n\n",
	": keep-alive\n\n",
}

var (
	streamNumbers = []int64{0, 1, 2, 3, -1, 1 << 31, 1 << 53, 1 << 62, 1<<63 - 1, -1 << 63}
	streamStrings = []string{"", "x", "end_turn", "tool_calls", "stop", "{\\\"a\\\":", "}", "\\u2028\\u0000", "overloaded_error", "rate_limit_error"}
)

// FuzzStreamEvents: streams composed of well-formed upstream events in any
// order and number (out of order, repeated message_start, a delta before
// its block, a tool index of 2^62, [DONE] twice, ...), for every pair
// that streams, with FuzzStream's checks. Each byte triple picks an event,
// a number and a string.
func FuzzStreamEvents(f *testing.F) {
	f.Add(uint8(1), []byte{0, 0, 1, 2, 0, 1, 4, 1, 1, 6, 0, 2, 8, 0, 0})
	f.Add(uint8(1), []byte{3, 7, 5, 0, 8, 0, 1, 7, 1, 3, 7, 6, 8, 0, 0, 8, 0, 0})
	f.Add(uint8(3), []byte{11, 1, 1, 12, 7, 1, 13, 7, 5, 13, 7, 6, 14, 0, 3, 15, 8, 0, 16, 0, 0, 16, 0, 0})
	f.Add(uint8(0), []byte{11, 1, 1, 15, 8, 0, 16, 0, 0, 11, 1, 1, 16, 0, 0})
	f.Add(uint8(4), []byte{18, 0, 1, 19, 8, 0, 18, 0, 1})
	f.Add(uint8(3), []byte{17, 0, 9})
	f.Add(uint8(1), []byte{9, 0, 0, 10, 0, 8})
	f.Fuzz(func(t *testing.T, sel uint8, ops []byte) {
		var stream []byte
		for i := 0; i+2 < len(ops); i += 3 {
			r := strings.NewReplacer("NUM", strconv.FormatInt(streamNumbers[int(ops[i+1])%len(streamNumbers)], 10),
				"STR", streamStrings[int(ops[i+2])%len(streamStrings)])
			stream = append(stream, r.Replace(streamEvents[int(ops[i])%len(streamEvents)])...)
		}
		checkStream(t, answerPairs[streamPairs[int(sel)%len(streamPairs)]], stream)
	})
}

// TestUpstreamAnswerRules: what the gateway does with an upstream's
// absurd answers, each a rule the fuzz targets found wanting.
func TestUpstreamAnswerRules(t *testing.T) {
	big := strings.Repeat("é", 20000)
	reasons := ""
	for i := range 20 {
		reasons += fmt.Sprintf(`{"finish_reason":"r%d"},`, i)
	}
	for _, tc := range []struct {
		name   string
		pair   int
		stream bool
		body   string
		usage  Usage
		check  func(t *testing.T, out []byte, res *Result)
	}{
		{name: "a negative count_tokens answer meters 0 tokens", pair: 6,
			body: `{"input_tokens":-5}`, usage: Usage{}},
		{name: "a count_tokens answer beyond the bound meters the bound", pair: 6,
			body: `{"input_tokens":9223372036854775807}`, usage: Usage{InputTokens: maxCount, TotalTokens: maxCount}},
		{name: "an anthropic usage that would overflow is capped in the translation too", pair: 1,
			body:  `{"type":"message","content":[],"usage":{"input_tokens":9223372036854775807,"cache_read_input_tokens":9223372036854775807,"output_tokens":1}}`,
			usage: Usage{InputTokens: 2 * maxCount, CachedInputTokens: maxCount, OutputTokens: 1, TotalTokens: 2*maxCount + 1},
			check: func(t *testing.T, out []byte, _ *Result) {
				if !bytes.Contains(out, []byte(fmt.Sprintf(`"total_tokens":%d`, 2*maxCount+1))) {
					t.Errorf("client usage %s", out)
				}
			}},
		{name: "the id, the model and the finish reasons kept are bounded", pair: 0,
			body:  `{"id":"` + big + `","model":"` + big + `","choices":[` + reasons + `{}]}`,
			usage: Usage{InputTokens: 5, TotalTokens: 5, Estimated: true},
			check: func(t *testing.T, _ []byte, res *Result) {
				if len(res.ResponseID) > maxMeta || len(res.ResponseModel) > maxMeta || !utf8.ValidString(res.ResponseID) ||
					len(res.FinishReasons) != maxFinish || res.FinishReasons[maxFinish-1] != "r7" {
					t.Errorf("id %d bytes, model %d, finish reasons %q", len(res.ResponseID), len(res.ResponseModel), res.FinishReasons)
				}
			}},
		{name: "nothing follows the client's end of a translated stream", pair: 1, stream: true,
			body: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"a\",\"model\":\"m\",\"usage\":{\"input_tokens\":3}}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n" +
				"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"late\"}}\n\n" +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
			usage: Usage{InputTokens: 3, TotalTokens: 4, OutputTokens: 1, Estimated: true},
			check: func(t *testing.T, out []byte, _ *Result) {
				if bytes.Count(out, []byte("[DONE]")) != 1 || bytes.Contains(out, []byte("late")) {
					t.Errorf("client stream %s", out)
				}
			}},
		{name: "a model name in every chunk is bounded", pair: 1, stream: true,
			body: "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"a\",\"model\":\"" + big + "\"}}\n\n" +
				strings.Repeat("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\"}}\n\n", 10) +
				"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
			usage: Usage{InputTokens: 5, TotalTokens: 5, Estimated: true},
			check: func(t *testing.T, out []byte, _ *Result) {
				if len(out) > 12*(maxMeta+512) {
					t.Errorf("%d bytes for the client", len(out))
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctype := "application/json"
			if tc.stream {
				ctype = "text/event-stream"
			}
			w, res := forwardAnswer(t, answerPairs[tc.pair], tc.stream, http.StatusOK, ctype, []byte(tc.body))
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			if res.Usage != tc.usage {
				t.Errorf("usage %+v, want %+v", res.Usage, tc.usage)
			}
			if tc.check != nil {
				tc.check(t, w.Body.Bytes(), res)
			}
		})
	}
}
