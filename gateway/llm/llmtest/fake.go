package llmtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is a fake OpenAI and Anthropic API. Its zero value is not
// usable; use New or Start.
type Server struct {
	// OpenAIKey and AnthropicKey, when set, are the credentials the fake
	// demands (Authorization: Bearer for OpenAI paths; x-api-key or Bearer
	// for Anthropic paths); a request without them gets a 401.
	OpenAIKey    string
	AnthropicKey string
	// MaxRecorded bounds the requests kept (the oldest are dropped);
	// 0 means 1000, a negative value records nothing (benchmarks).
	MaxRecorded int
	// Now is the fake's clock (created timestamps); time.Now if nil.
	Now func() time.Time
	// ForceStatus, when set, answers every request with this error status
	// (a destination that is down or rate limited).
	ForceStatus int

	mu       sync.Mutex
	received []*Received
	count    int
	canceled int
	mux      *http.ServeMux
}

// Received is one request the fake got.
type Received struct {
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	Body     []byte
	// Usage is what the fake reported for the request (nil if it
	// reported none: errors, models).
	Usage *Usage
}

type recKey struct{}

// JSON decodes the recorded body into a generic map (nil if not an
// object).
func (r Received) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// New returns a fake ready to serve.
func New() *Server {
	s := &Server{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.chat)
	mux.HandleFunc("POST /v1/responses", s.responses)
	mux.HandleFunc("POST /v1/embeddings", s.embeddings)
	mux.HandleFunc("GET /v1/models", s.models)
	mux.HandleFunc("POST /v1/messages", s.messages)
	mux.HandleFunc("POST /v1/messages/count_tokens", s.countTokens)
	s.mux = mux
	return s
}

// TB is the part of testing.TB that Start needs.
type TB interface {
	Helper()
	Cleanup(func())
}

// Start runs a new fake on a free loopback port until the test ends and
// returns it with its base URL (http://127.0.0.1:port, without /v1).
func Start(t TB) (*Server, string) {
	t.Helper()
	s := New()
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

// ServeHTTP records the request and answers it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, "read error", http.StatusBadRequest)
		return
	}
	if rec := s.record(r, body); rec != nil {
		r = r.WithContext(context.WithValue(r.Context(), recKey{}, rec))
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !s.authorized(r) {
		anth := strings.HasPrefix(r.URL.Path, "/v1/messages")
		writeErr(w, anth, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return
	}
	if s.ForceStatus != 0 {
		anth := strings.HasPrefix(r.URL.Path, "/v1/messages")
		writeErr(w, anth, s.ForceStatus, errType(s.ForceStatus, anth), "forced error "+strconv.Itoa(s.ForceStatus))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Canceled is the number of requests whose client went away while the
// fake was waiting (mock:slow) to answer or to send the next event.
func (s *Server) Canceled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.canceled
}

func (s *Server) record(r *http.Request, body []byte) *Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count++
	max := s.MaxRecorded
	if max < 0 {
		return nil
	}
	if max == 0 {
		max = 1000
	}
	if len(s.received) >= max {
		s.received = append(s.received[:0], s.received[1:]...)
	}
	rec := &Received{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
	s.received = append(s.received, rec)
	return rec
}

func (s *Server) setUsage(r *http.Request, u Usage) {
	rec, _ := r.Context().Value(recKey{}).(*Received)
	if rec == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec.Usage = &u
}

// Requests returns the recorded requests, oldest first.
func (s *Server) Requests() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, len(s.received))
	for i, r := range s.received {
		out[i] = *r
	}
	return out
}

// Count is the number of requests received (recorded or not).
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Last returns the last recorded request (zero if none).
func (s *Server) Last() Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.received) == 0 {
		return Received{}
	}
	return *s.received[len(s.received)-1]
}

// Reset forgets the recorded requests.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received, s.count = nil, 0
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) authorized(r *http.Request) bool {
	if strings.HasPrefix(r.URL.Path, "/v1/messages") {
		if s.AnthropicKey == "" {
			return true
		}
		return r.Header.Get("X-Api-Key") == s.AnthropicKey || r.Header.Get("Authorization") == "Bearer "+s.AnthropicKey
	}
	if s.OpenAIKey == "" {
		return true
	}
	return r.Header.Get("Authorization") == "Bearer "+s.OpenAIKey
}

// ---- directives ----

// Directives steer the fake. They come from the text of the last user
// message (or the X-Mock header), as space-separated words:
//
//	mock:status=429      answer with this HTTP status (429, 500, 503, 529, 400, ...)
//	mock:slow=50ms       wait this long before answering (and between stream events)
//	mock:break           cut a stream after its first content event (no terminal event)
//	mock:error-event     send an error event in the middle of a stream
//	mock:tool            call a tool (the first offered, or the one named in the prompt)
//	mock:out=1024        answer with about this many bytes of text
//	mock:cached=N        report N input tokens read from the cache
//	mock:cache_write=N   report N input tokens written to the cache (Anthropic)
//	mock:reasoning=N     report N reasoning tokens, counted in output (OpenAI
//	                     reasoning_tokens; Anthropic thinking_tokens, with a
//	                     thinking and a redacted_thinking block before the answer)
//	mock:cache_1h=N      of the cache writes, N with the 1-hour TTL (Anthropic cache_creation)
//	mock:stop=REASON     end with this stop reason / finish reason, in the provider's
//	                     vocabulary (Anthropic end_turn, max_tokens, stop_sequence,
//	                     tool_use, pause_turn, refusal, model_context_window_exceeded;
//	                     OpenAI stop, length, tool_calls, content_filter,
//	                     function_call; Responses failed, incomplete)
//	mock:refusal         OpenAI: refuse (message.refusal, content null)
//	mock:websearch[=N]   Anthropic: N web searches first (default 1; a server_tool_use and
//	                     a web_search_tool_result block each, usage.server_tool_use), and
//	                     an answer with citations; no more than the web search tool's
//	                     max_uses. Responses: N web_search_call output items first (no
//	                     more than max_tool_calls). OpenAI chat: url_citation annotations
//	mock:filesearch=N    Responses: N file_search_call output items first (with the web
//	                     searches, no more than max_tool_calls)
//	mock:parallel=N      call the tool N times in parallel (OpenAI streams interleave
//	                     the calls' argument pieces)
//	mock:odd             the unusual but valid stream shapes: OpenAI, a first chunk
//	                     with no choices (Azure's prompt_filter_results) and tool call
//	                     pieces that repeat the call's id; Anthropic, an event type
//	                     the clients do not know yet and extra pings; Responses, an
//	                     unknown event type
//	mock:input=N         report N input tokens (every class: cached and cache writes included)
//	mock:delta=V         Anthropic message_delta usage: output_tokens only (min), with
//	                     input_tokens but no cache counts (input), or the input counts
//	                     null (null); by default every count, cumulative
//
// Without mock:tool, a prompt that asks to "use the tool" or names an
// offered tool ("call get_weather") also calls it.
type Directives struct {
	Status     int
	Slow       time.Duration
	Break      bool
	ErrorEvent bool
	Tool       bool
	Out        int
	Cached     int
	CacheWrite int
	Reasoning  int
	Cache1h    int
	Stop       string
	Refusal    bool
	WebSearch  bool
	Searches   int // web searches (mock:websearch=N; 1 without N)
	FileSearch int
	Parallel   int
	Odd        bool
	Delta      string
	Input      int
}

var directiveRE = regexp.MustCompile(`mock:([a-z0-9_\-]+)(?:=([0-9a-z_]+))?`)

func parseDirectives(texts ...string) Directives {
	var d Directives
	for _, t := range texts {
		for _, m := range directiveRE.FindAllStringSubmatch(t, -1) {
			n, _ := strconv.Atoi(m[2])
			switch m[1] {
			case "status":
				d.Status = n
			case "slow":
				d.Slow, _ = time.ParseDuration(m[2])
			case "break":
				d.Break = true
			case "error-event":
				d.ErrorEvent = true
			case "tool":
				d.Tool = true
			case "out":
				d.Out = n
			case "cached":
				d.Cached = n
			case "cache_write":
				d.CacheWrite = n
			case "reasoning":
				d.Reasoning = n
			case "cache_1h":
				d.Cache1h = n
			case "stop":
				d.Stop = m[2]
			case "refusal":
				d.Refusal = true
			case "websearch":
				d.WebSearch, d.Searches = true, max(n, 1)
			case "filesearch":
				d.FileSearch = n
			case "parallel":
				d.Parallel = n
			case "odd":
				d.Odd = true
			case "delta":
				d.Delta = m[2]
			case "input":
				d.Input = n
			}
		}
	}
	return d
}

// tokens is the fake's tokenizer: one token per 4 bytes, rounded up.
func tokens(s string) int { return (len(s) + 3) / 4 }

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-Id", "req_fake")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeErr(w http.ResponseWriter, anthropic bool, status int, typ, msg string) {
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if anthropic {
		writeJSON(w, status, map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}})
		return
	}
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": typ, "param": nil, "code": nil}})
}

func errType(status int, anthropic bool) string {
	switch {
	case status == 429:
		return "rate_limit_error"
	case status == 529 || status == 503:
		return "overloaded_error"
	case status >= 500:
		if anthropic {
			return "api_error"
		}
		return "server_error"
	}
	return "invalid_request_error"
}

// pause sleeps for d or until the request is canceled.
func (s *Server) pause(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		s.mu.Lock()
		s.canceled++
		s.mu.Unlock()
		return false
	}
}

// strictKeys refuses members a provider does not know (both providers
// answer 400 to unknown request members).
func strictKeys(m map[string]any, allowed map[string]bool) string {
	var bad []string
	for k := range m {
		if !allowed[k] {
			bad = append(bad, k)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		return "Unrecognized request argument supplied: " + strings.Join(bad, ", ")
	}
	return ""
}

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// answer is what the fake says: the echo of the last user text, sized by
// mock:out, cut by max tokens and stop sequences.
type answer struct {
	text     string
	stop     string // "", "length", "stop_sequence"
	stopSeq  string
	toolName string
	toolArgs string
}

func makeAnswer(last string, d Directives, maxTokens int, stops []string, tools []toolDef, toolResult string, hasToolResult bool) answer {
	var a answer
	if hasToolResult {
		a.text = "Tool result: " + toolResult
	} else if t := pickTool(last, d, tools); t != nil {
		a.toolName = t.name
		a.toolArgs = argsFor(t.schema)
		return a
	} else {
		a.text = "Echo: " + strings.TrimSpace(directiveRE.ReplaceAllString(last, ""))
	}
	if d.Out > 0 {
		var b strings.Builder
		for b.Len() < d.Out {
			b.WriteString("lorem ipsum dolor sit amet ")
		}
		a.text = b.String()[:d.Out]
	}
	for _, s := range stops {
		if s == "" {
			continue
		}
		if i := strings.Index(a.text, s); i >= 0 {
			a.text, a.stop, a.stopSeq = a.text[:i], "stop_sequence", s
			break
		}
	}
	if maxTokens > 0 && tokens(a.text) > maxTokens {
		a.text, a.stop = a.text[:maxTokens*4], "length"
	}
	return a
}

type toolDef struct {
	name   string
	schema map[string]any
}

func pickTool(last string, d Directives, tools []toolDef) *toolDef {
	if len(tools) == 0 {
		return nil
	}
	for i := range tools {
		if strings.Contains(last, tools[i].name) && (d.Tool || strings.Contains(last, "call "+tools[i].name)) {
			return &tools[i]
		}
	}
	if d.Tool || strings.Contains(strings.ToLower(last), "use the tool") {
		return &tools[0]
	}
	return nil
}

// argsFor builds arguments that satisfy a JSON schema's required
// properties: "test" for strings, 1 for numbers, true, [] and {}.
func argsFor(schema map[string]any) string {
	args := map[string]any{}
	props, _ := schema["properties"].(map[string]any)
	req, _ := schema["required"].([]any)
	for _, r := range req {
		name, _ := r.(string)
		p, _ := props[name].(map[string]any)
		switch p["type"] {
		case "number", "integer":
			args[name] = 1
		case "boolean":
			args[name] = true
		case "array":
			args[name] = []any{}
		case "object":
			args[name] = map[string]any{}
		default:
			if enum, ok := p["enum"].([]any); ok && len(enum) > 0 {
				args[name] = enum[0]
			} else {
				args[name] = "test"
			}
		}
	}
	b, _ := json.Marshal(args)
	return string(b)
}

// chunks splits s into stream deltas of about n bytes.
func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		cut := n
		if i := strings.IndexByte(s[n:], ' '); i >= 0 && i < 16 {
			cut = n + i + 1
		}
		out = append(out, s[:cut])
		s = s[cut:]
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}

func textOf(v any) string {
	switch c := v.(type) {
	case string:
		return c
	case []any:
		var parts []string
		for _, p := range c {
			pm, _ := p.(map[string]any)
			if t, ok := pm["text"].(string); ok {
				parts = append(parts, t)
			}
			if t, ok := pm["content"]; ok && pm["type"] == "tool_result" {
				parts = append(parts, textOf(t))
			}
		}
		return strings.Join(parts, "\n")
	}
	return ""
}

func intOf(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func embed(text string, dims int) []float64 {
	out := make([]float64, dims)
	h := sha256.Sum256([]byte(text))
	var norm float64
	for i := range out {
		seed := sha256.Sum256(append(h[:], byte(i), byte(i>>8)))
		v := float64(int16(binary.LittleEndian.Uint16(seed[:2]))) / 32768
		out[i] = v
		norm += v * v
	}
	norm = math.Sqrt(norm)
	for i := range out {
		out[i] = math.Round(out[i]/norm*1e6) / 1e6
	}
	return out
}

func embeddingBase64(v []float64) string {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(f)))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func newID(prefix string, seed string) string {
	h := sha256.Sum256([]byte(seed))
	return prefix + fmt.Sprintf("%x", h[:8])
}

// stream writes server-sent events, flushing each.
type stream struct {
	w http.ResponseWriter
	f http.Flusher
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Request-Id", "req_fake")
	w.WriteHeader(200)
	f, _ := w.(http.Flusher)
	return &stream{w: w, f: f}
}

func (s *stream) write(b []byte) {
	_, _ = s.w.Write(b)
	if s.f != nil {
		s.f.Flush()
	}
}

func (s *stream) data(v any) {
	b, _ := json.Marshal(v)
	s.write(append(append([]byte("data: "), b...), '\n', '\n'))
}

func (s *stream) event(name string, v any) {
	b, _ := json.Marshal(v)
	s.write(append(append([]byte("event: "+name+"\ndata: "), b...), '\n', '\n'))
}

func (s *stream) raw(data string) { s.write([]byte("data: " + data + "\n\n")) }
