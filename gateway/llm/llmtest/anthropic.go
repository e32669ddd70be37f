package llmtest

import (
	"encoding/json"
	"net/http"
	"strings"
)

var messagesKeys = set("model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
	"temperature", "top_p", "top_k", "tools", "tool_choice", "thinking", "service_tier", "container",
	"context_management", "mcp_servers", "output_config", "output_format", "cache_control", "inference_geo", "speed")

var countKeys = set("model", "messages", "system", "tools", "tool_choice", "thinking", "context_management",
	"mcp_servers", "output_config", "output_format", "cache_control")

// anthropicRequest validates a messages (or count_tokens) request as the
// Anthropic API does and returns what the fake needs to answer it.
type anthropicRequest struct {
	req           map[string]any
	model         string
	input         int
	last          string
	toolResult    string
	hasToolResult bool
	tools         []toolDef
}

func (s *Server) parseAnthropic(w http.ResponseWriter, r *http.Request, keys map[string]bool) (*anthropicRequest, bool) {
	if r.Header.Get("Anthropic-Version") == "" {
		writeErr(w, true, 400, "invalid_request_error", "anthropic-version: header is required")
		return nil, false
	}
	req, ok := decodeBody(w, r, true)
	if !ok {
		return nil, false
	}
	if msg := strictKeys(req, keys); msg != "" {
		writeErr(w, true, 400, "invalid_request_error", msg+": Extra inputs are not permitted")
		return nil, false
	}
	ar := &anthropicRequest{req: req}
	ar.model, _ = req["model"].(string)
	msgs, _ := req["messages"].([]any)
	if ar.model == "" || len(msgs) == 0 {
		writeErr(w, true, 400, "invalid_request_error", "model and messages are required")
		return nil, false
	}
	ar.input += tokens(textOf(req["system"]))
	var pending map[string]bool // tool_use ids of the previous assistant turn
	for i, m := range msgs {
		mm, _ := m.(map[string]any)
		role, _ := mm["role"].(string)
		if role != "user" && role != "assistant" && role != "system" {
			writeErr(w, true, 400, "invalid_request_error", "messages."+itoa(i)+".role: Input should be 'user', 'assistant' or 'system'")
			return nil, false
		}
		blocks, _ := mm["content"].([]any)
		text := textOf(mm["content"])
		ar.input += tokens(text)
		if role == "system" {
			continue
		}
		if role == "assistant" {
			if len(pending) > 0 {
				writeErr(w, true, 400, "invalid_request_error", "messages."+itoa(i)+": `tool_use` ids were found without `tool_result` blocks immediately after")
				return nil, false
			}
			pending = map[string]bool{}
			for _, b := range blocks {
				bm, _ := b.(map[string]any)
				if bm["type"] == "tool_use" {
					id, _ := bm["id"].(string)
					pending[id] = true
					in, _ := json.Marshal(bm["input"])
					ar.input += tokens(string(in))
				}
			}
			continue
		}
		results := 0
		for _, b := range blocks {
			bm, _ := b.(map[string]any)
			switch bm["type"] {
			case "tool_result":
				id, _ := bm["tool_use_id"].(string)
				if !pending[id] {
					writeErr(w, true, 400, "invalid_request_error", "messages."+itoa(i)+".content: unexpected `tool_use_id` found in `tool_result` blocks: "+id)
					return nil, false
				}
				delete(pending, id)
				results++
				ar.toolResult = textOf(bm["content"])
			case "image", "document":
				ar.input += 1600
			}
		}
		if len(pending) > 0 {
			writeErr(w, true, 400, "invalid_request_error", "messages."+itoa(i)+": `tool_use` ids were found without `tool_result` blocks immediately after")
			return nil, false
		}
		pending = nil
		ar.hasToolResult = results > 0
		if !ar.hasToolResult {
			ar.last = text
		}
	}
	if ts, ok := req["tools"].([]any); ok {
		b, _ := json.Marshal(ts)
		ar.input += tokens(string(b))
		for _, t := range ts {
			tm, _ := t.(map[string]any)
			if typ, ok := tm["type"].(string); ok && typ != "custom" {
				continue
			}
			name, _ := tm["name"].(string)
			schema, _ := tm["input_schema"].(map[string]any)
			ar.tools = append(ar.tools, toolDef{name: name, schema: schema})
		}
	}
	if tc, ok := req["tool_choice"].(map[string]any); ok && tc["type"] == "none" {
		ar.tools = nil
	}
	return ar, true
}

func (s *Server) countTokens(w http.ResponseWriter, r *http.Request) {
	ar, ok := s.parseAnthropic(w, r, countKeys)
	if !ok {
		return
	}
	s.setUsage(r, Usage{Input: ar.input})
	writeJSON(w, 200, map[string]any{"input_tokens": ar.input})
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	ar, ok := s.parseAnthropic(w, r, messagesKeys)
	if !ok {
		return
	}
	req := ar.req
	maxTokens := intOf(req["max_tokens"])
	if maxTokens < 1 {
		writeErr(w, true, 400, "invalid_request_error", "max_tokens: Field required")
		return
	}
	d := parseDirectives(ar.last, r.Header.Get("X-Mock"))
	if !s.pause(r, d.Slow) {
		return
	}
	if d.Status != 0 {
		writeErr(w, true, d.Status, errType(d.Status, true), "mock error "+itoa(d.Status))
		return
	}
	var stops []string
	if st, ok := req["stop_sequences"].([]any); ok {
		for _, x := range st {
			if s, ok := x.(string); ok {
				stops = append(stops, s)
			}
		}
	}
	a := makeAnswer(ar.last, d, maxTokens, stops, ar.tools, ar.toolResult, ar.hasToolResult)
	calls := 0
	if a.toolName != "" {
		calls = max(1, d.Parallel)
	}
	u := usageFor(ar.input, a, d)
	u.Output += max(0, calls-1) * (tokens(a.toolArgs) + tokens(a.toolName))
	if u.Input < u.Cached+u.CacheWrite {
		u.Input = u.Cached + u.CacheWrite
	}
	if d.WebSearch {
		u.WebSearches = d.Searches
		if mu, ok := webSearchMaxUses(req); ok {
			u.WebSearches = min(u.WebSearches, mu)
		}
	}
	s.setUsage(r, u)
	stop := "end_turn"
	var stopSeq any
	switch {
	case a.toolName != "":
		stop = "tool_use"
	case a.stop == "length":
		stop = "max_tokens"
	case a.stop == "stop_sequence":
		stop, stopSeq = "stop_sequence", a.stopSeq
	}
	if d.Stop != "" {
		stop = d.Stop
	}
	id := newID("msg_", ar.last+ar.model)
	cache1h := min(d.Cache1h, u.CacheWrite)
	usage := map[string]any{
		"input_tokens": u.Input - u.Cached - u.CacheWrite, "output_tokens": u.Output,
		"cache_creation_input_tokens": u.CacheWrite, "cache_read_input_tokens": u.Cached,
		"cache_creation": map[string]any{"ephemeral_5m_input_tokens": u.CacheWrite - cache1h, "ephemeral_1h_input_tokens": cache1h},
		"service_tier":   "standard",
	}
	if u.Reasoning > 0 {
		usage["output_tokens_details"] = map[string]any{"thinking_tokens": u.Reasoning}
	}
	if d.WebSearch {
		usage["server_tool_use"] = map[string]any{"web_search_requests": u.WebSearches, "web_fetch_requests": 0}
	}
	blocks := anthropicBlocks(ar, a, d, calls, u.WebSearches)
	if stream, _ := req["stream"].(bool); !stream {
		content := make([]any, len(blocks))
		for i, b := range blocks {
			content[i] = b.whole
		}
		writeJSON(w, 200, map[string]any{"id": id, "type": "message", "role": "assistant", "model": ar.model,
			"content": content, "stop_reason": stop, "stop_sequence": stopSeq, "usage": usage})
		return
	}
	sw := newStream(w)
	startUsage := map[string]any{}
	for k, v := range usage {
		startUsage[k] = v
	}
	startUsage["output_tokens"] = 1
	delete(startUsage, "output_tokens_details")
	delete(startUsage, "server_tool_use")
	sw.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": id, "type": "message", "role": "assistant", "model": ar.model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": startUsage}})
	if d.Odd {
		sw.event("message_annotation", map[string]any{"type": "message_annotation", "index": "x", "delta": "preview"})
	}
	for bi, b := range blocks {
		sw.event("content_block_start", map[string]any{"type": "content_block_start", "index": bi, "content_block": b.start})
		if bi == 0 {
			sw.event("ping", map[string]any{"type": "ping"})
		}
		for i, delta := range b.deltas {
			sw.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": bi, "delta": delta})
			if d.Odd {
				sw.event("ping", map[string]any{"type": "ping"})
			}
			if !b.answer {
				continue
			}
			if i == 0 && d.Break {
				return
			}
			if i == 0 && d.ErrorEvent {
				sw.event("error", map[string]any{"type": "error", "error": map[string]any{"type": "overloaded_error", "message": "mock stream error"}})
				return
			}
			if !s.pause(r, d.Slow) {
				return
			}
		}
		sw.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": bi})
	}
	var deltaUsage map[string]any
	switch d.Delta {
	case "min":
		deltaUsage = map[string]any{"output_tokens": u.Output}
	case "input":
		deltaUsage = map[string]any{"output_tokens": u.Output, "input_tokens": usage["input_tokens"]}
	case "null":
		deltaUsage = map[string]any{"output_tokens": u.Output, "input_tokens": nil, "cache_creation_input_tokens": nil, "cache_read_input_tokens": nil}
	default: // every count, cumulative (no cache_creation breakdown)
		deltaUsage = map[string]any{"output_tokens": u.Output, "input_tokens": usage["input_tokens"],
			"cache_creation_input_tokens": u.CacheWrite, "cache_read_input_tokens": u.Cached}
	}
	for _, k := range []string{"output_tokens_details", "server_tool_use"} { // cumulative: the final counts
		if v, ok := usage[k]; ok {
			deltaUsage[k] = v
		}
	}
	sw.event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": stopSeq},
		"usage": deltaUsage})
	sw.event("message_stop", map[string]any{"type": "message_stop"})
}

// anBlock is one content block of an answer: whole (a message's), and as
// streamed (its content_block_start and deltas).
type anBlock struct {
	whole, start map[string]any
	deltas       []map[string]any
	answer       bool // the text or tool call the prompt asked for
}

// anthropicBlocks builds an answer's content blocks: thinking (with
// mock:reasoning), the web searches (mock:websearch), then the tool calls or
// the text.
func anthropicBlocks(ar *anthropicRequest, a answer, d Directives, calls, searches int) []anBlock {
	var out []anBlock
	if d.Reasoning > 0 {
		const thought, sig = "The user wants an echo. ", "EqQBCkYIBxgCKkB0ZXN0LXNpZ25hdHVyZQ=="
		out = append(out, anBlock{
			whole: map[string]any{"type": "thinking", "thinking": thought, "signature": sig},
			start: map[string]any{"type": "thinking", "thinking": "", "signature": ""},
			deltas: []map[string]any{
				{"type": "thinking_delta", "thinking": thought[:9]}, {"type": "thinking_delta", "thinking": thought[9:]},
				{"type": "signature_delta", "signature": sig},
			},
		}, anBlock{
			whole: map[string]any{"type": "redacted_thinking", "data": "RWRhY3RlZCB0aGlua2luZw=="},
			start: map[string]any{"type": "redacted_thinking", "data": "RWRhY3RlZCB0aGlua2luZw=="},
		})
	}
	const url, title = "https://example.com/echo", "Echo facts"
	for i := range searches {
		srv := newID("srvtoolu_", ar.last+itoa(i))
		if i == 0 {
			srv = newID("srvtoolu_", ar.last)
		}
		query := map[string]any{"query": "echo"}
		out = append(out, anBlock{
			whole:  map[string]any{"type": "server_tool_use", "id": srv, "name": "web_search", "input": query},
			start:  map[string]any{"type": "server_tool_use", "id": srv, "name": "web_search", "input": map[string]any{}},
			deltas: []map[string]any{{"type": "input_json_delta", "partial_json": `{"query":"echo"}`}},
		})
		res := map[string]any{"type": "web_search_tool_result", "tool_use_id": srv, "content": []any{map[string]any{
			"type": "web_search_result", "url": url, "title": title, "encrypted_content": "ZW5jcnlwdGVk", "page_age": "April 30, 2025"}}}
		out = append(out, anBlock{whole: res, start: res})
	}
	if a.toolName != "" {
		var in any
		_ = json.Unmarshal([]byte(a.toolArgs), &in)
		for i := range calls {
			toolID := newID("toolu_", a.toolName+ar.last)
			if i > 0 {
				toolID = newID("toolu_", a.toolName+ar.last+itoa(i))
			}
			b := anBlock{answer: i == 0,
				whole: map[string]any{"type": "tool_use", "id": toolID, "name": a.toolName, "input": in},
				start: map[string]any{"type": "tool_use", "id": toolID, "name": a.toolName, "input": map[string]any{}}}
			for _, p := range chunks(a.toolArgs, 8) {
				b.deltas = append(b.deltas, map[string]any{"type": "input_json_delta", "partial_json": p})
			}
			out = append(out, b)
		}
		return out
	}
	b := anBlock{answer: true,
		whole: map[string]any{"type": "text", "text": a.text},
		start: map[string]any{"type": "text", "text": ""}}
	if d.WebSearch {
		cite := map[string]any{"type": "web_search_result_location", "url": url, "title": title, "encrypted_index": "ZW5j", "cited_text": "echo"}
		b.whole["citations"] = []any{cite}
		b.start["citations"] = []any{}
		b.deltas = append(b.deltas, map[string]any{"type": "citations_delta", "citation": cite})
	}
	for _, p := range chunks(a.text, 16) {
		b.deltas = append(b.deltas, map[string]any{"type": "text_delta", "text": p})
	}
	return append(out, b)
}

// webSearchMaxUses is the max_uses of the request's web search tool, if
// it sets one.
func webSearchMaxUses(req map[string]any) (int, bool) {
	ts, _ := req["tools"].([]any)
	for _, t := range ts {
		tm, _ := t.(map[string]any)
		if typ, _ := tm["type"].(string); strings.HasPrefix(typ, "web_search_") {
			if mu, ok := tm["max_uses"].(float64); ok {
				return int(mu), true
			}
		}
	}
	return 0, false
}
