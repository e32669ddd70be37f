package llm

import "strings"

// Usage is a call's token usage, normalized once for every provider:
//
//   - InputTokens counts every input token: uncached, read from the cache
//     and written to the cache. OpenAI's prompt_tokens already include
//     cached tokens; Anthropic's input_tokens exclude both cache classes,
//     so an Anthropic usage is input_tokens + cache_read_input_tokens +
//     cache_creation_input_tokens here.
//   - CachedInputTokens (cache reads) and CacheWriteTokens are subsets of
//     InputTokens; UncachedInputTokens is the rest. CacheWrite1hTokens,
//     the cache writes with Anthropic's 1-hour TTL, are a subset of
//     CacheWriteTokens (the rest have the 5-minute TTL). Price each class
//     once: uncached × input price, cached × cached price, 5-minute cache
//     writes × cache-write price, 1-hour ones × their own price. Never add
//     CachedInputTokens to InputTokens.
//   - OutputTokens include ReasoningTokens (both providers bill thinking
//     as output).
//   - TotalTokens = InputTokens + OutputTokens.
type Usage struct {
	InputTokens       int64 `json:"input_tokens"`
	OutputTokens      int64 `json:"output_tokens"`
	CachedInputTokens int64 `json:"cached_input_tokens"`
	CacheWriteTokens  int64 `json:"cache_write_tokens"`
	ReasoningTokens   int64 `json:"reasoning_tokens"`
	TotalTokens       int64 `json:"total_tokens"`
	// ToolUses are the uses of the server tools billed per use that a
	// tool_prices option prices (not tokens): Anthropic's
	// usage.server_tool_use.web_search_requests, the Responses API's
	// web_search_call and file_search_call output items, one web search
	// per choice of a chat completion with web_search_options.
	ToolUses ToolUses `json:"tool_uses,omitzero"`
	// Estimated is true when the provider's own count was not received
	// (a stream that broke before its usage event): input is then the
	// request's estimate unless the provider had reported it, output is
	// the delivered text's size / 4.
	Estimated bool `json:"estimated,omitempty"`
	// CacheWrite1hTokens is the part of CacheWriteTokens with the 1-hour
	// TTL.
	CacheWrite1hTokens int64 `json:"cache_write_1h_tokens,omitempty"`
}

// UncachedInputTokens is the input neither read from nor written to the
// provider's cache.
func (u Usage) UncachedInputTokens() int64 {
	return max(0, u.InputTokens-u.CachedInputTokens-u.CacheWriteTokens)
}

func (u *Usage) finish() {
	u.TotalTokens = u.InputTokens + u.OutputTokens
}

// maxCount bounds every token count read from an upstream: 2^53, the
// largest integer every JSON client reads exactly, and small enough that
// no sum of counts overflows. An upstream's count is not trusted: a
// negative one is 0, a larger one is maxCount (it prices to at least
// what was delivered, so a budget is charged, never credited).
const maxCount = 1 << 53

// num is the count at path in obj (0 if absent or not an integer),
// within [0, maxCount].
func num(obj []byte, path ...string) int64 {
	v := obj
	for _, k := range path {
		var ok bool
		if v, ok = member(v, k); !ok {
			return 0
		}
	}
	n, _ := intValue(v)
	return min(max(n, 0), maxCount)
}

// usageOpenAI reads an OpenAI usage object: chat completions
// (prompt_tokens, completion_tokens), Responses (input_tokens,
// output_tokens) and embeddings (prompt_tokens only).
func usageOpenAI(u []byte) Usage {
	var out Usage
	if _, ok := member(u, "prompt_tokens"); ok {
		out.InputTokens = num(u, "prompt_tokens")
		out.OutputTokens = num(u, "completion_tokens")
		out.CachedInputTokens = num(u, "prompt_tokens_details", "cached_tokens")
		out.CacheWriteTokens = num(u, "prompt_tokens_details", "cache_write_tokens")
		out.ReasoningTokens = num(u, "completion_tokens_details", "reasoning_tokens")
	} else {
		out.InputTokens = num(u, "input_tokens")
		out.OutputTokens = num(u, "output_tokens")
		out.CachedInputTokens = num(u, "input_tokens_details", "cached_tokens")
		out.CacheWriteTokens = num(u, "input_tokens_details", "cache_write_tokens")
		out.ReasoningTokens = num(u, "output_tokens_details", "reasoning_tokens")
	}
	// OpenAI's prompt_tokens already include both cache classes.
	out.CachedInputTokens = min(out.CachedInputTokens, out.InputTokens)
	out.CacheWriteTokens = min(out.CacheWriteTokens, out.InputTokens-out.CachedInputTokens)
	out.ReasoningTokens = min(out.ReasoningTokens, out.OutputTokens)
	out.finish()
	return out
}

// count is the count at path in obj within [0, maxCount], and whether
// it is there as a number (absent and null are not).
func count(obj []byte, path ...string) (int64, bool) {
	v := obj
	for _, k := range path {
		var ok bool
		if v, ok = member(v, k); !ok {
			return 0, false
		}
	}
	if kindOf(v) != '0' {
		return 0, false
	}
	return num(v), true
}

// usageAnthropic reads an Anthropic usage object (a message's, or
// message_start's). cache_creation_input_tokens already sums the
// cache_creation TTL classes (ephemeral_5m/1h_input_tokens), which are
// not added again: ephemeral_1h_input_tokens is the part of it with the
// 1-hour TTL; output_tokens_details.thinking_tokens is the reasoning
// within the output.
func usageAnthropic(u []byte) Usage {
	var out Usage
	out.addAnthropic(u)
	return out
}

// addAnthropic applies an Anthropic usage object to u. Each count in it
// is the message's cumulative total and replaces u's; a count that is
// absent or null keeps u's (message_delta's usage repeats only the counts
// that apply, and message_start has the last word on the others).
func (u *Usage) addAnthropic(obj []byte) {
	cr, cw := u.CachedInputTokens, u.CacheWriteTokens
	in := max(0, u.InputTokens-cr-cw) // Anthropic's own input_tokens
	if n, ok := count(obj, "input_tokens"); ok {
		in = n
	}
	if n, ok := count(obj, "cache_read_input_tokens"); ok {
		cr = n
	}
	if n, ok := count(obj, "cache_creation_input_tokens"); ok {
		cw = n
	}
	u.InputTokens, u.CachedInputTokens, u.CacheWriteTokens = in+cr+cw, cr, cw
	if n, ok := count(obj, "cache_creation", "ephemeral_1h_input_tokens"); ok {
		u.CacheWrite1hTokens = n
	}
	u.CacheWrite1hTokens = min(u.CacheWrite1hTokens, u.CacheWriteTokens)
	if n, ok := count(obj, "output_tokens"); ok {
		u.OutputTokens = n
	}
	if n, ok := count(obj, "output_tokens_details", "thinking_tokens"); ok {
		u.ReasoningTokens = n
	}
	if n, ok := count(obj, "server_tool_use", "web_search_requests"); ok {
		u.ToolUses.WebSearch = n
	}
	u.ReasoningTokens = min(u.ReasoningTokens, u.OutputTokens)
	u.finish()
}

// Finish reasons are reported in the client's vocabulary by the
// translators; the meter keeps the upstream's.

// meter follows one upstream response (a body or a stream of events in
// the upstream's format) and ends with its usage and metadata.
type meter struct {
	format   Format
	endpoint Endpoint

	id, model string
	finish    []string
	usage     Usage
	gotUsage  bool // the provider's final count arrived
	gotInput  bool // the input count arrived (Anthropic message_start)
	delivered int64
	// streamErr is the error a chat stream's data line reported (an
	// error object instead of a chunk).
	streamErr *Error
	// tools are the priced tool uses seen in the answer's content (a
	// Responses output's items; the items and Anthropic server tool blocks
	// a stream started), counted when the provider's usage has none or
	// fewer; searches the web searches a chat completion with
	// web_search_options bills (Request.answerSearches).
	tools, streamTools ToolUses
	searches           int64
}

func newMeter(f Format, e Endpoint) *meter { return &meter{format: f, endpoint: e} }

// maxMeta bounds each provider string kept for the call (response id,
// model, finish reason) and maxFinish the number of finish reasons: they
// go to the audit row and the trace span, and the stream translators
// repeat the id and model in every chunk, so an upstream must not grow
// them at will.
const (
	maxMeta   = 256
	maxFinish = 8
)

// short is s cut to at most maxMeta bytes, at a rune boundary.
func short(s string) string {
	if len(s) <= maxMeta {
		return s
	}
	return strings.ToValidUTF8(s[:maxMeta], "")
}

func (m *meter) setStr(dst *string, v []byte) {
	if *dst == "" {
		s, _ := stringValue(v)
		*dst = short(s)
	}
}

func (m *meter) addFinish(s string) {
	if s == "" || len(m.finish) >= maxFinish {
		return
	}
	s = short(s)
	for _, f := range m.finish {
		if f == s {
			return
		}
	}
	m.finish = append(m.finish, s)
}

// body meters a whole (non-streamed) response body.
func (m *meter) body(b []byte) {
	_ = eachMember(b, func(k, v []byte) bool {
		switch {
		case keyIs(k, "id"):
			m.setStr(&m.id, v)
		case keyIs(k, "model"):
			m.setStr(&m.model, v)
		case keyIs(k, "usage") && kindOf(v) == '{':
			m.setUsage(v)
		case keyIs(k, "choices"):
			_ = eachElement(v, func(c []byte) bool {
				if fr, ok := member(c, "finish_reason"); ok {
					s, _ := stringValue(fr)
					m.addFinish(s)
				}
				return true
			})
		case keyIs(k, "stop_reason"):
			s, _ := stringValue(v)
			m.addFinish(s)
		case keyIs(k, "status") && m.endpoint == Responses:
			s, _ := stringValue(v)
			m.addFinish(s)
		case keyIs(k, "output") && m.endpoint == Responses:
			m.tools = ToolUses{}
			_ = eachElement(v, func(item []byte) bool {
				m.tools.addItem(item)
				return true
			})
		case keyIs(k, "input_tokens") && m.endpoint == CountTokens:
			m.usage.InputTokens = num(v)
			m.usage.finish()
			m.gotUsage = true
		}
		return true
	})
}

func (m *meter) setUsage(u []byte) {
	if m.format == FormatAnthropic {
		m.usage = usageAnthropic(u)
	} else {
		m.usage = usageOpenAI(u)
	}
	m.gotUsage = true
}

// event meters one stream event's data (JSON) of type name (Anthropic and
// Responses name their events; OpenAI chat chunks have none).
func (m *meter) event(name string, data []byte) {
	if m.format == FormatAnthropic {
		m.anthropicEvent(data)
		return
	}
	if m.endpoint == Responses {
		m.responsesEvent(data)
		return
	}
	// chat completion chunk
	_ = eachMember(data, func(k, v []byte) bool {
		switch {
		case keyIs(k, "id"):
			m.setStr(&m.id, v)
		case keyIs(k, "model"):
			m.setStr(&m.model, v)
		case keyIs(k, "usage") && kindOf(v) == '{':
			m.setUsage(v)
		case keyIs(k, "choices"):
			_ = eachElement(v, func(c []byte) bool {
				if fr, ok := member(c, "finish_reason"); ok {
					s, _ := stringValue(fr)
					m.addFinish(s)
				}
				if d, ok := member(c, "delta"); ok {
					if s, ok := member(d, "content"); ok && kindOf(s) == '"' {
						m.delivered += int64(len(s) - 2)
					}
					if tc, ok := member(d, "tool_calls"); ok {
						m.delivered += int64(len(tc)) / 2
					}
				}
				return true
			})
		case keyIs(k, "error") && kindOf(v) == '{' && m.streamErr == nil:
			m.streamErr = upstreamStreamError(data)
		}
		return true
	})
}

func (m *meter) responsesEvent(data []byte) {
	tv, _ := member(data, "type")
	t, _ := stringValue(tv)
	switch t {
	case "response.created", "response.in_progress", "response.completed", "response.incomplete", "response.failed":
		resp, ok := member(data, "response")
		if !ok {
			return
		}
		m.body(resp)
		if t != "response.created" && t != "response.in_progress" {
			if s, ok := member(resp, "status"); ok {
				str, _ := stringValue(s)
				m.finish = m.finish[:0]
				m.addFinish(str)
			}
		}
	case "response.output_item.added":
		if item, ok := member(data, "item"); ok {
			m.streamTools.addItem(item)
		}
	default:
		if d, ok := member(data, "delta"); ok && kindOf(d) == '"' {
			m.delivered += int64(len(d) - 2)
		}
	}
}

// addItem counts a Responses output item that is a priced tool's use.
func (u *ToolUses) addItem(item []byte) {
	tv, _ := member(item, "type")
	switch string(tv) {
	case `"web_search_call"`:
		u.WebSearch = min(u.WebSearch+1, maxCount)
	case `"file_search_call"`:
		u.FileSearch = min(u.FileSearch+1, maxCount)
	}
}

func (m *meter) anthropicEvent(data []byte) {
	tv, _ := member(data, "type")
	t, _ := stringValue(tv)
	switch t {
	case "message_start":
		msg, _ := member(data, "message")
		if v, ok := member(msg, "id"); ok {
			m.setStr(&m.id, v)
		}
		if v, ok := member(msg, "model"); ok {
			m.setStr(&m.model, v)
		}
		if u, ok := member(msg, "usage"); ok {
			m.usage = usageAnthropic(u)
			m.gotInput = true
		}
	case "content_block_start":
		if b, ok := member(data, "content_block"); ok {
			if tv, _ := member(b, "type"); string(tv) == `"server_tool_use"` {
				if nv, _ := member(b, "name"); string(nv) == `"web_search"` {
					m.streamTools.WebSearch = min(m.streamTools.WebSearch+1, maxCount)
				}
			}
		}
	case "content_block_delta":
		d, _ := member(data, "delta")
		_ = eachMember(d, func(k, v []byte) bool {
			if (keyIs(k, "text") || keyIs(k, "partial_json") || keyIs(k, "thinking")) && kindOf(v) == '"' {
				m.delivered += int64(len(v) - 2)
			}
			return true
		})
	case "message_delta":
		if d, ok := member(data, "delta"); ok {
			if sr, ok := member(d, "stop_reason"); ok {
				s, _ := stringValue(sr)
				m.addFinish(s)
			}
		}
		if u, ok := member(data, "usage"); ok && kindOf(u) == '{' {
			m.usage.addAnthropic(u)
			m.gotUsage = true
		}
	}
}

// result is the metered usage; estimate is the request's input estimate,
// used when the provider never reported the input.
func (m *meter) result(estimate int64) Usage {
	u := m.usage
	// The tool uses are the most any account of the answer gives: the
	// provider's count, the items of its output, what a stream started.
	tu := &u.ToolUses
	tu.WebSearch = max(tu.WebSearch, m.tools.WebSearch, m.streamTools.WebSearch, m.searches)
	tu.FileSearch = max(tu.FileSearch, m.tools.FileSearch, m.streamTools.FileSearch)
	if m.gotUsage {
		u.finish()
		return u
	}
	u.Estimated = true
	if !m.gotInput {
		u.InputTokens = estimate
	}
	u.OutputTokens = max(u.OutputTokens, (m.delivered+bytesPerToken-1)/bytesPerToken)
	u.finish()
	return u
}
