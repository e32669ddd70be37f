package llm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Limits bound what one request may hold. The zero value of a field means
// its default (DefaultMaxBody, ...).
type Limits struct {
	MaxBody     int64 // bytes of the request body
	MaxDepth    int   // nesting of objects and arrays
	MaxMessages int   // messages, input items or embedding inputs
	MaxTools    int   // tool definitions
}

const (
	// DefaultMaxBody matches Anthropic's 32 MB request limit (images and
	// documents travel base64-encoded in the body).
	DefaultMaxBody int64 = 32 << 20
	// DefaultMaxDepth leaves room for deeply nested tool schemas.
	DefaultMaxDepth    = 128
	DefaultMaxMessages = 100_000
	DefaultMaxTools    = 2048
	maxModelName       = 256
)

func (l Limits) withDefaults() Limits {
	if l.MaxBody <= 0 {
		l.MaxBody = DefaultMaxBody
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxMessages <= 0 {
		l.MaxMessages = DefaultMaxMessages
	}
	if l.MaxTools <= 0 {
		l.MaxTools = DefaultMaxTools
	}
	return l
}

// Tool is one tool the request offers the model.
type Tool struct {
	Type string `json:"type"` // function, custom, or a provider's server tool type (web_search_20250305, ...)
	Name string `json:"name"`
}

// Request is a parsed, validated client request. Body is the client's
// body as received (not copied); the other fields are what governance
// reads.
type Request struct {
	Endpoint Endpoint
	Body     []byte
	// Model is the request's model member: the model service's name.
	Model string
	// Stream is true when the client asked for server-sent events.
	Stream bool
	// IncludeUsage is true when the client itself asked for the usage
	// chunk of an OpenAI chat stream (stream_options.include_usage).
	IncludeUsage bool
	// MaxTokens is the output bound the client set (max_tokens,
	// max_completion_tokens or max_output_tokens, times n); 0 when unset.
	MaxTokens int64
	// InputTokens is an estimate of the input size in tokens for
	// reservations (text bytes / 4, plus per-message, per-image and tool
	// definition allowances); it is settled against the real usage later.
	InputTokens int64
	// Tools the request defines, and its tool_choice ("auto", "none",
	// "required"/"any", or "tool:NAME"; "" when unset).
	Tools      []Tool
	ToolChoice string
	// ResponseFormat is the structured-output type asked for (text,
	// json_object, json_schema); "" when unset.
	ResponseFormat string
	// User is the user id the client itself sent (user,
	// safety_identifier, metadata.user_id). The forwarder replaces it with
	// the pseudonymous id of the authenticated human.
	User string
	// Messages counts the conversation's messages (input items, embedding
	// inputs); Images counts image and document parts.
	Messages int
	Images   int

	// WebSearchOptions is set when a chat completions request asks the
	// search models for a web search (web_search_options), which the
	// provider bills per call.
	WebSearchOptions bool

	choices   int64 // n (chat completions)
	outputCap int64 // CapOutput's cap per choice (0: none)

	priced *pricedTools // nil: the request offers no priced per-use tool (the usual request)
}

// pricedTools is what a request offering priced per-use tools needs for
// ToolUseBound: the kinds offered, the sum of the bounds the client set on
// them, how many of them have none (each gets capped once CapToolUses set
// it).
type pricedTools struct {
	offer          ToolUses // 1 for each kind offered
	bound, unbound int64
	capped         int64
	maxCalls       int64 // max_tool_calls as read (Responses), when hasMaxCalls
	hasMaxCalls    bool
}

// pricedTools returns r.priced, allocated on first use.
func (r *Request) pricedTools() *pricedTools {
	if r.priced == nil {
		r.priced = &pricedTools{}
	}
	return r.priced
}

// ToolUses counts uses of the server tools a provider bills per use that
// a provider service's tool_prices can price: web searches (Anthropic's
// usage.server_tool_use.web_search_requests, the Responses API's
// web_search_call output items, one per choice of a chat completion with
// web_search_options) and file searches (file_search_call items).
type ToolUses struct {
	WebSearch  int64 `json:"web_search,omitempty"`
	FileSearch int64 `json:"file_search,omitempty"`
}

// DefaultMaxToolUses is the bound the gateway sets on the uses of the
// priced per-use tools of a budgeted request that has none
// (Request.CapToolUses): Anthropic web search tools get max_uses, a
// Responses request max_tool_calls. 8 is what Claude Code's own web
// search sends.
const DefaultMaxToolUses = 8

// PerUseTool names the first tool the request offers that the provider
// bills per use beyond tokens and that no tool_prices option can price
// (code execution, code interpreter, image generation: billed by
// container time or image tokens, see billedPerUse), or a priced kind of
// tool the endpoint's rules do not bound (a web_search tool type in a chat
// completions request); "" when there is none. The kinds a price covers
// are in ToolUseBound.
func (r *Request) PerUseTool() string {
	for _, t := range r.Tools {
		if billedPerUse(t.Type) && pricedKind(r.Endpoint, t.Type) == nil {
			return t.Type
		}
	}
	return ""
}

// pricedKind is the counter of the priced per-use tool kind a tool type
// is at endpoint e (nil: none): Anthropic's web_search_* tools and the
// Responses API's web_search, web_search_preview and file_search tools.
func pricedKind(e Endpoint, typ string) func(*ToolUses) *int64 {
	switch {
	case e == Messages && strings.HasPrefix(typ, "web_search_"), e == Responses && strings.HasPrefix(typ, "web_search"):
		return func(u *ToolUses) *int64 { return &u.WebSearch }
	case e == Responses && typ == "file_search":
		return func(u *ToolUses) *int64 { return &u.FileSearch }
	}
	return nil
}

// ToolUseBound is the most uses of each priced per-use tool kind the
// request offers that it can make once CapToolUses(n) applies: the bounds
// the client set (Anthropic: the sum of the web search tools' max_uses;
// Responses: max_tool_calls, which bounds every built-in tool call and so
// each kind; chat completions with web_search_options: one search per
// choice), n for each tool without one. Zero for a request offering none.
func (r *Request) ToolUseBound(n int64) ToolUses {
	pt := r.priced
	if pt == nil {
		return ToolUses{}
	}
	b := pt.bound + pt.unbound*min(max(n, 0), 1<<20) // bound ≤ 2^53, unbound ≤ the tools
	return ToolUses{WebSearch: pt.offer.WebSearch * b, FileSearch: pt.offer.FileSearch * b}
}

// ToolCapNeeded reports whether the request offers a priced per-use tool
// without a bound on its uses (CapToolUses would set one).
func (r *Request) ToolCapNeeded() bool { return r.priced != nil && r.priced.unbound > 0 }

// answerSearches is the web searches an answer from a destination of
// format f bills for a chat completions request with web_search_options:
// one per choice at an OpenAI-style destination (a translation to
// Anthropic drops the option).
func (r *Request) answerSearches(f Format) int64 {
	if r.Endpoint == ChatCompletions && r.WebSearchOptions && f == FormatOpenAI {
		return r.choices
	}
	return 0
}

// CapToolUses bounds the uses of each priced per-use tool the client left
// unbounded to n: the upstream request carries max_uses on each Anthropic
// web search tool without one, max_tool_calls on a Responses request
// without it. The gateway caps the calls a budget applies to, whose
// reservation needs the bound (ToolUseBound).
func (r *Request) CapToolUses(n int64) {
	if n > 0 && r.ToolCapNeeded() {
		r.priced.capped = n
	}
}

// billedPerUse reports whether a tool type is one the provider runs and
// bills per use on top of tokens (Anthropic web_search_*,
// code_execution_*; the Responses API's web_search(_preview),
// file_search, code_interpreter, image_generation): a token price cannot
// bound what a call offering one costs. Client-run tools (function,
// custom, Anthropic's computer, bash and text editor tools) cost tokens
// only.
func billedPerUse(typ string) bool {
	for _, p := range [...]string{"web_search", "code_execution", "code_interpreter", "file_search", "image_generation"} {
		if strings.HasPrefix(typ, p) {
			return true
		}
	}
	return false
}

// CapOutput holds a request the client sent without an output cap to n
// tokens per choice: MaxTokens becomes n times the choices, and the
// upstream request carries the cap (max_completion_tokens for OpenAI
// chat, max_tokens for OpenAI-compatible servers and Anthropic,
// max_output_tokens for the Responses API). A request with a cap, or of
// an endpoint without output (embeddings, count_tokens), is unchanged.
// The gateway caps calls whose rate limits or budgets need a bound on the
// output (Mandate's reservation is input estimate plus the cap).
func (r *Request) CapOutput(n int64) {
	if m := r.CappedMax(n); m > 0 {
		r.outputCap, r.MaxTokens = n, m
	}
}

// CappedMax is what MaxTokens would be after CapOutput(n): 0 when the
// request has a cap already or no output.
func (r *Request) CappedMax(n int64) int64 {
	if n <= 0 || r.MaxTokens > 0 {
		return 0
	}
	switch r.Endpoint {
	case ChatCompletions, Responses, Messages:
		return n * r.choices
	}
	return 0
}

// TextSpan is one piece of text of a request, for guardrails.
type TextSpan struct {
	Role string `json:"role"` // system, developer, user, assistant, tool
	// Kind is what the text is: text, tool_call (arguments), tool_result,
	// instructions, input (embeddings).
	Kind string `json:"kind"`
	Text string `json:"text"`
}

// ReadBody reads r's body within lim.MaxBody: 413 over it, 415 for a
// content type other than JSON (an absent one is accepted).
func ReadBody(r *http.Request, lim Limits) ([]byte, error) { return ReadBodyInto(r, lim, nil) }

// ReadBodyInto is ReadBody reading into dst's memory (a buffer of
// gateway/internal/bodypool; grown when the body does not fit).
func ReadBodyInto(r *http.Request, lim Limits, dst []byte) ([]byte, error) {
	lim = lim.withDefaults()
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" { // the usual value needs no parsing
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, &Error{Status: http.StatusUnsupportedMediaType, Message: "Content-Type must be application/json"}
		}
	}
	if r.ContentLength > lim.MaxBody {
		return nil, TooLarge(fmt.Sprintf("request body larger than %d bytes", lim.MaxBody))
	}
	if r.Body == nil {
		return nil, InvalidRequest("", "request body is empty")
	}
	n := r.ContentLength
	if n < 0 || n > 1<<20 {
		n = 64 << 10
	}
	buf := bytes.NewBuffer(dst[:0])
	buf.Grow(int(n) + bytes.MinRead)
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, lim.MaxBody+1)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, TooLarge(fmt.Sprintf("request body larger than %d bytes", lim.MaxBody))
		}
		return nil, InvalidRequest("", "reading the request body: "+err.Error())
	}
	if int64(buf.Len()) > lim.MaxBody {
		return nil, TooLarge(fmt.Sprintf("request body larger than %d bytes", lim.MaxBody))
	}
	return buf.Bytes(), nil
}

// Parse validates body as a request to endpoint e and extracts what
// governance needs. Errors are *Error (400, 413) in terms the client can
// act on. Members Mandate does not read pass through unchecked beyond
// JSON validity, so new provider features keep working.
func Parse(e Endpoint, body []byte, lim Limits) (*Request, error) {
	lim = lim.withDefaults()
	if int64(len(body)) > lim.MaxBody {
		return nil, TooLarge(fmt.Sprintf("request body larger than %d bytes", lim.MaxBody))
	}
	if len(trimWS(body)) == 0 {
		return nil, InvalidRequest("", "request body is empty")
	}
	if err := checkJSON(body, lim.MaxDepth); err != nil {
		return nil, InvalidRequest("", "invalid JSON body: "+err.Error())
	}
	if kindOf(trimWS(body)) != '{' {
		return nil, InvalidRequest("", "request body must be a JSON object")
	}
	p := parser{req: &Request{Endpoint: e, Body: body, choices: 1}, lim: lim}
	var err error
	switch e {
	case ChatCompletions:
		err = p.chat()
	case Responses:
		err = p.responses()
	case Embeddings:
		err = p.embeddings()
	case Messages, CountTokens:
		err = p.messages(e == CountTokens)
	default:
		return nil, InvalidRequest("", "endpoint takes no body")
	}
	if err != nil {
		return nil, err
	}
	r := p.req
	if pt := r.priced; pt != nil {
		switch {
		case pt.offer == ToolUses{}: // max_tool_calls without a priced tool
			r.priced = nil
		case e == ChatCompletions: // web_search_options: one search per choice
			pt.bound = r.choices
		case e == Responses: // max_tool_calls bounds every built-in tool call
			if pt.hasMaxCalls {
				pt.bound = pt.maxCalls
			} else {
				pt.unbound = 1
			}
		}
	}
	r.MaxTokens *= r.choices
	r.InputTokens = estimateTokens(p.textBytes, p.toolBytes, r.Messages, r.Images)
	return r, nil
}

// Token estimate: about 4 bytes of text per token (English prose and code
// with OpenAI's and Anthropic's tokenizers), a few tokens of framing per
// message, and a flat allowance per image or document (a 1092×1092 image
// is about 1,600 tokens with Anthropic, 1,105 with OpenAI at high detail).
const (
	bytesPerToken    = 4
	tokensPerMessage = 4
	tokensPerImage   = 1600
)

func estimateTokens(textBytes, toolBytes int64, messages, images int) int64 {
	return (textBytes+toolBytes+bytesPerToken-1)/bytesPerToken + int64(messages)*tokensPerMessage + int64(images)*tokensPerImage
}

type parser struct {
	req       *Request
	lim       Limits
	textBytes int64
	toolBytes int64
}

// text is the visitor Parse gives the walkers: it counts the bytes.
func (p *parser) text(_, _ string, raw []byte) { p.textBytes += int64(len(raw)) }

func (p *parser) image() { p.req.Images++ }

func (p *parser) model(v []byte, ok bool) error {
	if !ok {
		return InvalidRequest("model", "model is required")
	}
	s, isStr := stringValue(v)
	if !isStr || s == "" {
		return InvalidRequest("model", "model must be a non-empty string")
	}
	if len(s) > maxModelName {
		return InvalidRequest("model", "model name too long")
	}
	p.req.Model = s
	return nil
}

func boolMember(v []byte, name string) (bool, error) {
	switch string(v) {
	case "true":
		return true, nil
	case "false", "null":
		return false, nil
	}
	return false, InvalidRequest(name, name+" must be a boolean")
}

func countMember(v []byte, name string, min int64) (int64, error) {
	if isNull(v) {
		return 0, nil
	}
	n, ok := intValue(v)
	if !ok || n < min {
		return 0, InvalidRequest(name, fmt.Sprintf("%s must be an integer of at least %d", name, min))
	}
	return n, nil
}

func optString(v []byte, name string) (string, error) {
	if isNull(v) {
		return "", nil
	}
	s, ok := stringValue(v)
	if !ok {
		return "", InvalidRequest(name, name+" must be a string")
	}
	return s, nil
}

// members reads the top-level members; fn returns an error to stop.
func (p *parser) members(fn func(key string, v []byte) error) error {
	var err error
	scanErr := eachMember(p.req.Body, func(k, v []byte) bool {
		key, ok := unquote(k)
		if !ok {
			err = errScan
			return false
		}
		err = fn(key, v)
		return err == nil
	})
	if err != nil {
		return err
	}
	if scanErr != nil {
		return InvalidRequest("", "invalid JSON body")
	}
	return nil
}

// chat parses an OpenAI chat completions request.
func (p *parser) chat() error {
	r := p.req
	var modelV, messagesV []byte
	var haveModel, haveMessages bool
	err := p.members(func(key string, v []byte) error {
		var err error
		switch key {
		case "model":
			modelV, haveModel = v, true
		case "messages":
			messagesV, haveMessages = v, true
		case "stream":
			r.Stream, err = boolMember(v, key)
		case "stream_options":
			if isNull(v) {
				break
			}
			if kindOf(v) != '{' {
				return InvalidRequest(key, "stream_options must be an object")
			}
			if iu, ok := member(v, "include_usage"); ok {
				r.IncludeUsage, err = boolMember(iu, "stream_options.include_usage")
			}
		case "max_tokens", "max_completion_tokens":
			var n int64
			n, err = countMember(v, key, 0)
			r.MaxTokens = max(r.MaxTokens, n)
		case "n":
			var n int64
			if n, err = countMember(v, key, 1); err == nil && n > 0 {
				if n > 128 {
					return InvalidRequest(key, "n must be at most 128")
				}
				r.choices = n
			}
		case "tools":
			err = p.tools(v, FormatOpenAI)
		case "tool_choice":
			err = p.toolChoiceOpenAI(v)
		case "web_search_options":
			r.WebSearchOptions = !isNull(v)
			if r.WebSearchOptions {
				r.pricedTools().offer.WebSearch = 1
			}
		case "response_format":
			if isNull(v) {
				break
			}
			if kindOf(v) != '{' {
				return InvalidRequest(key, "response_format must be an object")
			}
			t, _ := member(v, "type")
			s, ok := stringValue(t)
			if !ok {
				return InvalidRequest("response_format.type", "response_format.type must be a string")
			}
			r.ResponseFormat = s
		case "user", "safety_identifier":
			var s string
			if s, err = optString(v, key); err == nil && s != "" {
				r.User = s
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := p.model(modelV, haveModel); err != nil {
		return err
	}
	if !haveMessages {
		return InvalidRequest("messages", "messages is required")
	}
	return walkChatMessages(messagesV, p.lim.MaxMessages, p.text, p.image, &r.Messages)
}

// enumValue is stringValue for members whose values come from a small
// vocabulary (roles, content part, block and input item types): a value
// of it without escapes is its constant, so reading it allocates nothing.
func enumValue(v []byte) (string, bool) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		if s, ok := vocabulary[string(v[1:len(v)-1])]; ok {
			return s, true
		}
	}
	return stringValue(v)
}

// vocabulary holds enumValue's constants (read-only).
var vocabulary = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{"system", "developer", "user", "assistant", "tool", "function",
		"text", "input_text", "output_text", "refusal", "image_url", "input_image", "file", "input_file", "input_audio",
		"message", "function_call", "custom_tool_call", "function_call_output", "custom_tool_call_output",
		"thinking", "image", "document", "tool_use", "server_tool_use", "tool_result"} {
		m[s] = s
	}
	return m
}()

var chatRoles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

// walkChatMessages validates an OpenAI messages array and reports its
// texts to text(role, kind, rawJSONString) and its images to image.
func walkChatMessages(v []byte, maxMessages int, text func(role, kind string, raw []byte), image func(), count *int) error {
	if kindOf(v) != '[' {
		return InvalidRequest("messages", "messages must be an array")
	}
	i := 0
	var err error
	scanErr := eachElement(v, func(m []byte) bool {
		n := i
		param := func() string { return "messages[" + strconv.Itoa(n) + "]" } // built only for an error
		i++
		if i > maxMessages {
			err = InvalidRequest("messages", fmt.Sprintf("more than %d messages", maxMessages))
			return false
		}
		if kindOf(m) != '{' {
			err = InvalidRequest(param(), param()+" must be an object")
			return false
		}
		var role string
		var content, toolCalls []byte
		_ = eachMember(m, func(k, val []byte) bool {
			switch {
			case keyIs(k, "role"):
				role, _ = enumValue(val)
			case keyIs(k, "content"):
				content = val
			case keyIs(k, "tool_calls"):
				toolCalls = val
			}
			return true
		})
		if !chatRoles[role] {
			err = InvalidRequest(param()+".role", fmt.Sprintf("%s.role must be one of system, developer, user, assistant, tool", param()))
			return false
		}
		if err = walkChatContent(content, role, func() string { return param() + ".content" }, text, image); err != nil {
			return false
		}
		if len(toolCalls) > 0 && !isNull(toolCalls) {
			if kindOf(toolCalls) != '[' {
				err = InvalidRequest(param()+".tool_calls", "tool_calls must be an array")
				return false
			}
			_ = eachElement(toolCalls, func(tc []byte) bool {
				if fn, ok := member(tc, "function"); ok {
					if args, ok := member(fn, "arguments"); ok && kindOf(args) == '"' {
						text(role, "tool_call", args)
					}
				}
				return true
			})
		}
		return true
	})
	if err != nil {
		return err
	}
	if scanErr != nil {
		return InvalidRequest("messages", "invalid messages")
	}
	if i == 0 {
		return InvalidRequest("messages", "messages must not be empty")
	}
	*count = i
	return nil
}

// walkChatContent reads a message's content; param names it in errors
// (built only for one).
func walkChatContent(content []byte, role string, param func() string, text func(role, kind string, raw []byte), image func()) error {
	kind := "text"
	if role == "tool" {
		kind = "tool_result"
	}
	switch kindOf(content) {
	case 0, 'n':
		return nil
	case '"':
		text(role, kind, content)
		return nil
	case '[':
	default:
		p := param()
		return InvalidRequest(p, p+" must be a string, an array of parts or null")
	}
	var err error
	j := 0
	_ = eachElement(content, func(part []byte) bool {
		k := j
		pp := func() string { return param() + "[" + strconv.Itoa(k) + "]" }
		j++
		if kindOf(part) != '{' {
			err = InvalidRequest(pp(), pp()+" must be an object")
			return false
		}
		tv, _ := member(part, "type")
		t, ok := enumValue(tv)
		if !ok {
			err = InvalidRequest(pp()+".type", pp()+".type must be a string")
			return false
		}
		switch t {
		case "text", "input_text", "output_text", "refusal":
			key := "text"
			if t == "refusal" {
				key = "refusal"
			}
			if s, ok := member(part, key); ok && kindOf(s) == '"' {
				text(role, kind, s)
			}
		case "image_url", "input_image", "file", "input_file", "input_audio":
			image()
		}
		return true
	})
	return err
}

// tools validates a tools array (OpenAI chat, Responses, or Anthropic)
// and records each tool's type and name.
func (p *parser) tools(v []byte, f Format) error {
	if isNull(v) {
		return nil
	}
	if kindOf(v) != '[' {
		return InvalidRequest("tools", "tools must be an array")
	}
	p.toolBytes += int64(len(v))
	var err error
	i := 0
	_ = eachElement(v, func(t []byte) bool {
		param := "tools[" + strconv.Itoa(i) + "]"
		i++
		if i > p.lim.MaxTools {
			err = InvalidRequest("tools", fmt.Sprintf("more than %d tools", p.lim.MaxTools))
			return false
		}
		if kindOf(t) != '{' {
			err = InvalidRequest(param, param+" must be an object")
			return false
		}
		var tool Tool
		if tv, ok := member(t, "type"); ok {
			tool.Type, _ = stringValue(tv)
		}
		if nv, ok := member(t, "name"); ok {
			tool.Name, _ = stringValue(nv)
		}
		if f == FormatOpenAI && tool.Name == "" && tool.Type != "" {
			// chat completions nest the definition: {"type":"function","function":{"name":...}}
			if inner, ok := member(t, tool.Type); ok && kindOf(inner) == '{' {
				if nv, ok := member(inner, "name"); ok {
					tool.Name, _ = stringValue(nv)
				}
			}
		}
		if f == FormatAnthropic {
			if tool.Type == "" {
				tool.Type = "custom"
			}
			if tool.Name == "" {
				err = InvalidRequest(param+".name", param+".name is required")
				return false
			}
		} else if tool.Type == "" {
			err = InvalidRequest(param+".type", param+".type is required")
			return false
		}
		if kind := pricedKind(p.req.Endpoint, tool.Type); kind != nil {
			pt := p.req.pricedTools()
			*kind(&pt.offer) = 1
			if p.req.Endpoint == Messages { // each web search tool has its own max_uses
				mu, _ := member(t, "max_uses")
				n, merr := countMember(mu, param+".max_uses", 1)
				if merr != nil && len(mu) > 0 {
					err = merr
					return false
				}
				if n > 0 {
					pt.bound = min(pt.bound+n, maxCount)
				} else {
					pt.unbound++
				}
			}
		}
		p.req.Tools = append(p.req.Tools, tool)
		return true
	})
	return err
}

func (p *parser) toolChoiceOpenAI(v []byte) error {
	switch kindOf(v) {
	case 'n':
		return nil
	case '"':
		p.req.ToolChoice, _ = stringValue(v)
		return nil
	case '{':
		tv, _ := member(v, "type")
		t, _ := stringValue(tv)
		name := ""
		if nv, ok := member(v, "name"); ok {
			name, _ = stringValue(nv)
		} else if fn, ok := member(v, "function"); ok {
			nv, _ := member(fn, "name")
			name, _ = stringValue(nv)
		}
		if name != "" {
			p.req.ToolChoice = "tool:" + name
		} else {
			p.req.ToolChoice = t
		}
		return nil
	}
	return InvalidRequest("tool_choice", "tool_choice must be a string or an object")
}

// responses parses an OpenAI Responses API request.
func (p *parser) responses() error {
	r := p.req
	var modelV []byte
	var haveModel bool
	err := p.members(func(key string, v []byte) error {
		var err error
		switch key {
		case "model":
			modelV, haveModel = v, true
		case "input":
			err = walkResponsesInput(v, p.lim.MaxMessages, p.text, p.image, &r.Messages)
		case "instructions":
			switch kindOf(v) {
			case 'n':
			case '"':
				p.text("system", "instructions", v)
			default:
				err = InvalidRequest(key, "instructions must be a string")
			}
		case "stream":
			r.Stream, err = boolMember(v, key)
		case "max_output_tokens":
			r.MaxTokens, err = countMember(v, key, 0)
		case "max_tool_calls":
			var n int64
			if n, err = countMember(v, key, 0); err == nil && !isNull(v) {
				pt := r.pricedTools()
				pt.maxCalls, pt.hasMaxCalls = n, true
			}
		case "tools":
			err = p.tools(v, FormatOpenAI)
		case "tool_choice":
			err = p.toolChoiceOpenAI(v)
		case "text":
			if fv, ok := member(v, "format"); ok {
				if tv, ok := member(fv, "type"); ok {
					r.ResponseFormat, _ = stringValue(tv)
				}
			}
		case "user", "safety_identifier":
			var s string
			if s, err = optString(v, key); err == nil && s != "" {
				r.User = s
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	return p.model(modelV, haveModel)
}

// walkResponsesInput validates a Responses input (a string or an array of
// items) and reports its texts and images.
func walkResponsesInput(v []byte, maxItems int, text func(role, kind string, raw []byte), image func(), count *int) error {
	switch kindOf(v) {
	case 'n':
		return nil
	case '"':
		text("user", "text", v)
		*count = 1
		return nil
	case '[':
	default:
		return InvalidRequest("input", "input must be a string or an array of items")
	}
	i := 0
	var err error
	scanErr := eachElement(v, func(item []byte) bool {
		n := i
		param := func() string { return "input[" + strconv.Itoa(n) + "]" } // built only for an error
		i++
		if i > maxItems {
			err = InvalidRequest("input", fmt.Sprintf("more than %d input items", maxItems))
			return false
		}
		if kindOf(item) != '{' {
			err = InvalidRequest(param(), param()+" must be an object")
			return false
		}
		var typ, role string
		if tv, ok := member(item, "type"); ok {
			typ, _ = enumValue(tv)
		}
		if rv, ok := member(item, "role"); ok {
			role, _ = enumValue(rv)
		}
		switch {
		case typ == "message" || (typ == "" && role != ""):
			if !chatRoles[role] {
				err = InvalidRequest(param()+".role", param()+".role must be one of system, developer, user, assistant")
				return false
			}
			c, _ := member(item, "content")
			err = walkChatContent(c, role, func() string { return param() + ".content" }, text, image)
		case typ == "function_call" || typ == "custom_tool_call":
			key := "arguments"
			if typ == "custom_tool_call" {
				key = "input"
			}
			if a, ok := member(item, key); ok && kindOf(a) == '"' {
				text("assistant", "tool_call", a)
			}
		case strings.HasSuffix(typ, "_call_output"):
			if o, ok := member(item, "output"); ok {
				if kindOf(o) == '"' {
					text("tool", "tool_result", o)
				} else {
					err = walkChatContent(o, "tool", func() string { return param() + ".output" }, text, image)
				}
			}
		case typ == "":
			err = InvalidRequest(param()+".type", param()+".type is required")
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	if scanErr != nil {
		return InvalidRequest("input", "invalid input")
	}
	*count = i
	return nil
}

// embeddings parses an OpenAI embeddings request.
func (p *parser) embeddings() error {
	r := p.req
	var modelV, inputV []byte
	var haveModel, haveInput bool
	err := p.members(func(key string, v []byte) error {
		var err error
		switch key {
		case "model":
			modelV, haveModel = v, true
		case "input":
			inputV, haveInput = v, true
		case "user":
			r.User, err = optString(v, key)
		case "stream":
			return InvalidRequest(key, "embeddings do not stream")
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := p.model(modelV, haveModel); err != nil {
		return err
	}
	if !haveInput {
		return InvalidRequest("input", "input is required")
	}
	return walkEmbeddingInput(inputV, p.lim.MaxMessages, p.text, &r.Messages, &p.textBytes)
}

func walkEmbeddingInput(v []byte, maxItems int, text func(role, kind string, raw []byte), count *int, tokenBytes *int64) error {
	switch kindOf(v) {
	case '"':
		text("user", "input", v)
		*count = 1
		return nil
	case '[':
	default:
		return InvalidRequest("input", "input must be a string, an array of strings or an array of token arrays")
	}
	n := 0
	var err error
	scanErr := eachElement(v, func(e []byte) bool {
		n++
		if n > maxItems {
			err = InvalidRequest("input", fmt.Sprintf("more than %d inputs", maxItems))
			return false
		}
		switch kindOf(e) {
		case '"':
			text("user", "input", e)
		case '0':
			*tokenBytes += bytesPerToken // one token id
		case '[':
			_ = eachElement(e, func(t []byte) bool {
				if kindOf(t) != '0' {
					err = InvalidRequest("input", "token arrays must hold integers")
					return false
				}
				*tokenBytes += bytesPerToken
				return true
			})
		default:
			err = InvalidRequest("input", "input must be a string, an array of strings or an array of token arrays")
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	if scanErr != nil || n == 0 {
		return InvalidRequest("input", "input must not be empty")
	}
	*count = n
	return nil
}

// messages parses an Anthropic messages (or count_tokens) request.
func (p *parser) messages(countOnly bool) error {
	r := p.req
	var modelV, messagesV []byte
	var haveModel, haveMessages, haveMax bool
	err := p.members(func(key string, v []byte) error {
		var err error
		switch key {
		case "model":
			modelV, haveModel = v, true
		case "messages":
			messagesV, haveMessages = v, true
		case "system":
			err = walkAnthropicSystem(v, p.text)
		case "max_tokens":
			haveMax = true
			r.MaxTokens, err = countMember(v, key, 1)
			if err == nil && isNull(v) {
				haveMax = false
			}
		case "stream":
			r.Stream, err = boolMember(v, key)
		case "tools":
			err = p.tools(v, FormatAnthropic)
		case "tool_choice":
			if isNull(v) {
				break
			}
			if kindOf(v) != '{' {
				return InvalidRequest(key, "tool_choice must be an object")
			}
			tv, _ := member(v, "type")
			t, _ := stringValue(tv)
			if t == "tool" {
				nv, _ := member(v, "name")
				n, _ := stringValue(nv)
				t = "tool:" + n
			}
			r.ToolChoice = t
		case "metadata":
			if isNull(v) {
				break
			}
			if kindOf(v) != '{' {
				return InvalidRequest(key, "metadata must be an object")
			}
			if u, ok := member(v, "user_id"); ok {
				r.User, err = optString(u, "metadata.user_id")
			}
		case "output_config":
			if fv, ok := member(v, "format"); ok && !isNull(fv) {
				tv, _ := member(fv, "type")
				r.ResponseFormat, _ = stringValue(tv)
				if r.ResponseFormat == "" {
					r.ResponseFormat = "json_schema"
				}
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := p.model(modelV, haveModel); err != nil {
		return err
	}
	if !countOnly && !haveMax {
		return InvalidRequest("max_tokens", "max_tokens is required")
	}
	if countOnly {
		r.MaxTokens = 0
	}
	if !haveMessages {
		return InvalidRequest("messages", "messages is required")
	}
	return walkAnthropicMessages(messagesV, p.lim.MaxMessages, p.text, p.image, &r.Messages)
}

func walkAnthropicSystem(v []byte, text func(role, kind string, raw []byte)) error {
	switch kindOf(v) {
	case 'n':
		return nil
	case '"':
		text("system", "text", v)
		return nil
	case '[':
	default:
		return InvalidRequest("system", "system must be a string or an array of text blocks")
	}
	var err error
	_ = eachElement(v, func(b []byte) bool {
		if kindOf(b) != '{' {
			err = InvalidRequest("system", "system blocks must be objects")
			return false
		}
		if t, ok := member(b, "text"); ok && kindOf(t) == '"' {
			text("system", "text", t)
		}
		return true
	})
	return err
}

func walkAnthropicMessages(v []byte, maxMessages int, text func(role, kind string, raw []byte), image func(), count *int) error {
	if kindOf(v) != '[' {
		return InvalidRequest("messages", "messages must be an array")
	}
	i := 0
	var err error
	scanErr := eachElement(v, func(m []byte) bool {
		n := i
		param := func() string { return "messages[" + strconv.Itoa(n) + "]" } // built only for an error
		i++
		if i > maxMessages {
			err = InvalidRequest("messages", fmt.Sprintf("more than %d messages", maxMessages))
			return false
		}
		if kindOf(m) != '{' {
			err = InvalidRequest(param(), param()+" must be an object")
			return false
		}
		rv, _ := member(m, "role")
		role, _ := enumValue(rv)
		if role != "user" && role != "assistant" && role != "system" {
			// system: instructions in the conversation (Claude Code sends
			// its environment so)
			err = InvalidRequest(param()+".role", param()+".role must be user, assistant or system")
			return false
		}
		c, ok := member(m, "content")
		if !ok {
			err = InvalidRequest(param()+".content", param()+".content is required")
			return false
		}
		err = walkAnthropicContent(c, role, func() string { return param() + ".content" }, text, image)
		return err == nil
	})
	if err != nil {
		return err
	}
	if scanErr != nil {
		return InvalidRequest("messages", "invalid messages")
	}
	if i == 0 {
		return InvalidRequest("messages", "messages must not be empty")
	}
	*count = i
	return nil
}

// walkAnthropicContent reads a message's content; param names it in
// errors (built only for one).
func walkAnthropicContent(c []byte, role string, param func() string, text func(role, kind string, raw []byte), image func()) error {
	switch kindOf(c) {
	case '"':
		text(role, "text", c)
		return nil
	case '[':
	default:
		p := param()
		return InvalidRequest(p, p+" must be a string or an array of content blocks")
	}
	var err error
	j := 0
	_ = eachElement(c, func(b []byte) bool {
		k := j
		bp := func() string { return param() + "[" + strconv.Itoa(k) + "]" }
		j++
		if kindOf(b) != '{' {
			err = InvalidRequest(bp(), bp()+" must be an object")
			return false
		}
		tv, _ := member(b, "type")
		t, ok := enumValue(tv)
		if !ok {
			err = InvalidRequest(bp()+".type", bp()+".type must be a string")
			return false
		}
		switch t {
		case "text":
			if s, ok := member(b, "text"); ok && kindOf(s) == '"' {
				text(role, "text", s)
			}
		case "thinking":
			if s, ok := member(b, "thinking"); ok && kindOf(s) == '"' {
				text(role, "thinking", s)
			}
		case "image", "document":
			if src, ok := member(b, "source"); ok {
				if st, ok := member(src, "type"); ok && string(st) == `"text"` {
					if d, ok := member(src, "data"); ok && kindOf(d) == '"' {
						text(role, "text", d)
						return true
					}
				}
			}
			image()
		case "tool_use", "server_tool_use":
			if in, ok := member(b, "input"); ok {
				text(role, "tool_call", in)
			}
		case "tool_result":
			if rc, ok := member(b, "content"); ok {
				switch kindOf(rc) {
				case '"':
					text("tool", "tool_result", rc)
				case '[':
					err = walkAnthropicContent(rc, "tool", func() string { return bp() + ".content" }, func(_, _ string, raw []byte) { text("tool", "tool_result", raw) }, image)
				}
			}
		}
		return err == nil
	})
	return err
}

// Texts returns the request's texts (system prompts, message contents,
// tool call arguments and tool results) decoded, in order: RequestParts'
// spans, decoded. It walks the body again: the fast path does not pay for
// it.
func (r *Request) Texts() []TextSpan {
	parts := RequestParts(r.Endpoint, r.Body)
	out := make([]TextSpan, 0, len(parts))
	for _, p := range parts {
		raw := r.Body[p.Start:p.End]
		s, ok := stringValue(raw)
		if !ok {
			s = string(raw) // a tool_use input object: its JSON
		}
		out = append(out, TextSpan{Role: p.Role, Kind: p.Kind, Text: s})
	}
	return out
}
