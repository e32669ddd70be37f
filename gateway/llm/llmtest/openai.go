package llmtest

import (
	"encoding/json"
	"net/http"
	"strconv"
)

var chatKeys = set("model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n", "stream",
	"stream_options", "stop", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs",
	"response_format", "seed", "tools", "tool_choice", "parallel_tool_calls", "user", "safety_identifier",
	"prompt_cache_key", "metadata", "store", "reasoning_effort", "modalities", "audio", "prediction", "service_tier",
	"verbosity", "web_search_options")

// Usage is what the fake reported for one request, normalized like
// llm.Usage: Input counts every input token (cached and cache writes
// included), Output includes Reasoning.
type Usage struct {
	Input, Output, Cached, CacheWrite, Reasoning int
	// WebSearches and FileSearches are the server tool uses billed per
	// use: Anthropic's usage.server_tool_use.web_search_requests, the
	// Responses API's web_search_call and file_search_call items, one web
	// search per choice of a chat completion with web_search_options.
	WebSearches, FileSearches int
}

func decodeBody(w http.ResponseWriter, r *http.Request, anthropic bool) (map[string]any, bool) {
	var m map[string]any
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(&m); err != nil || m == nil {
		writeErr(w, anthropic, 400, "invalid_request_error", "invalid JSON body")
		return nil, false
	}
	return m, true
}

func usageFor(input int, a answer, d Directives) Usage {
	if d.Input > 0 {
		input = d.Input
	}
	u := Usage{Input: input, Output: tokens(a.text) + tokens(a.toolArgs) + tokens(a.toolName) + d.Reasoning, Reasoning: d.Reasoning}
	u.Cached = min(d.Cached, input)
	u.CacheWrite = min(d.CacheWrite, input-u.Cached)
	return u
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(w, r, false)
	if !ok {
		return
	}
	if msg := strictKeys(req, chatKeys); msg != "" {
		writeErr(w, false, 400, "invalid_request_error", msg)
		return
	}
	model, _ := req["model"].(string)
	msgs, _ := req["messages"].([]any)
	if model == "" || len(msgs) == 0 {
		writeErr(w, false, 400, "invalid_request_error", "model and messages are required")
		return
	}
	input := 0
	last, toolResult, hasToolResult := "", "", false
	pending := map[string]bool{} // tool_call ids awaiting their result
	for i, m := range msgs {
		mm, _ := m.(map[string]any)
		role, _ := mm["role"].(string)
		text := textOf(mm["content"])
		input += tokens(text)
		switch role {
		case "user":
			last, hasToolResult = text, false
		case "tool":
			id, _ := mm["tool_call_id"].(string)
			if !pending[id] {
				writeErr(w, false, 400, "invalid_request_error", "messages with role 'tool' must be a response to a preceding message with 'tool_calls'")
				return
			}
			delete(pending, id)
			toolResult, hasToolResult = text, true
		case "assistant":
			if len(pending) > 0 {
				writeErr(w, false, 400, "invalid_request_error", "an assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'")
				return
			}
			tcs, _ := mm["tool_calls"].([]any)
			for _, tc := range tcs {
				tcm, _ := tc.(map[string]any)
				id, _ := tcm["id"].(string)
				pending[id] = true
				fn, _ := tcm["function"].(map[string]any)
				args, _ := fn["arguments"].(string)
				input += tokens(args)
			}
		case "system", "developer":
		default:
			writeErr(w, false, 400, "invalid_request_error", "invalid role at messages["+itoa(i)+"]")
			return
		}
	}
	var tools []toolDef
	if ts, ok := req["tools"].([]any); ok {
		b, _ := json.Marshal(ts)
		input += tokens(string(b))
		for _, t := range ts {
			tm, _ := t.(map[string]any)
			fn, _ := tm["function"].(map[string]any)
			name, _ := fn["name"].(string)
			schema, _ := fn["parameters"].(map[string]any)
			tools = append(tools, toolDef{name: name, schema: schema})
		}
	}
	if tc, ok := req["tool_choice"].(string); ok && tc == "none" {
		tools = nil
	}
	d := parseDirectives(last, r.Header.Get("X-Mock"))
	if !s.pause(r, d.Slow) {
		return
	}
	if d.Status != 0 {
		writeErr(w, false, d.Status, errType(d.Status, false), "mock error "+itoa(d.Status))
		return
	}
	maxTokens := intOf(req["max_completion_tokens"])
	if maxTokens == 0 {
		maxTokens = intOf(req["max_tokens"])
	}
	var stops []string
	switch st := req["stop"].(type) {
	case string:
		stops = []string{st}
	case []any:
		for _, x := range st {
			if s, ok := x.(string); ok {
				stops = append(stops, s)
			}
		}
	}
	a := makeAnswer(last, d, maxTokens, stops, tools, toolResult, hasToolResult)
	const refusal = "I can't help with that."
	if d.Refusal && a.toolName == "" {
		a.text = refusal
	}
	calls := 0
	if a.toolName != "" {
		calls = max(1, d.Parallel)
	}
	u := usageFor(input, a, d)
	u.Output += max(0, calls-1) * (tokens(a.toolArgs) + tokens(a.toolName))
	if wso, ok := req["web_search_options"]; ok && wso != nil {
		u.WebSearches = max(1, intOf(req["n"])) // billed per call, one search per choice
	}
	s.setUsage(r, u)
	finish := "stop"
	switch {
	case a.toolName != "":
		finish = "tool_calls"
	case a.stop == "length":
		finish = "length"
	}
	if d.Stop != "" {
		finish = d.Stop
	}
	id := newID("chatcmpl-", last+model)
	created := s.now().Unix()
	usage := map[string]any{
		"prompt_tokens": u.Input, "completion_tokens": u.Output, "total_tokens": u.Input + u.Output,
		"prompt_tokens_details":     map[string]any{"cached_tokens": u.Cached, "cache_write_tokens": u.CacheWrite, "audio_tokens": 0},
		"completion_tokens_details": map[string]any{"reasoning_tokens": u.Reasoning, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
	}
	var toolCalls []map[string]any
	for i := range calls {
		callID := newID("call_", a.toolName+last)
		if i > 0 {
			callID = newID("call_", a.toolName+last+itoa(i))
		}
		toolCalls = append(toolCalls, map[string]any{"id": callID, "type": "function", "function": map[string]any{"name": a.toolName, "arguments": a.toolArgs}})
	}
	if stream, _ := req["stream"].(bool); !stream {
		msg := map[string]any{"role": "assistant", "content": nil, "refusal": nil, "annotations": []any{}}
		switch {
		case toolCalls != nil:
			tcs := make([]any, len(toolCalls))
			for i, tc := range toolCalls {
				tcs[i] = tc
			}
			msg["tool_calls"] = tcs
		case d.Refusal:
			msg["refusal"] = a.text
		default:
			msg["content"] = a.text
		}
		if d.WebSearch && toolCalls == nil {
			msg["annotations"] = []any{map[string]any{"type": "url_citation", "url_citation": map[string]any{
				"start_index": 0, "end_index": len(a.text), "url": "https://example.com/echo", "title": "Echo facts"}}}
		}
		writeJSON(w, 200, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": model + "-2025-01-01",
			"choices":            []any{map[string]any{"index": 0, "message": msg, "logprobs": nil, "finish_reason": finish}},
			"usage":              usage,
			"service_tier":       "default",
			"system_fingerprint": "fp_fake",
		})
		return
	}
	so, _ := req["stream_options"].(map[string]any)
	include, _ := so["include_usage"].(bool)
	sw := newStream(w)
	chunk := func(delta map[string]any, fin any) {
		c := map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model + "-2025-01-01",
			"system_fingerprint": "fp_fake", "choices": []any{map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": fin}}}
		if include {
			c["usage"] = nil
		}
		sw.data(c)
	}
	if d.Odd { // Azure OpenAI's first chunk: the prompt's filter results, no choices
		sw.data(map[string]any{"id": "", "object": "", "created": 0, "model": "", "choices": []any{},
			"prompt_filter_results": []any{map[string]any{"prompt_index": 0, "content_filter_results": map[string]any{}}}})
	}
	chunk(map[string]any{"role": "assistant", "content": "", "refusal": nil}, nil)
	// pieces: the deltas after the role chunk; parallel tool calls are
	// announced first, then their argument pieces interleave.
	var pieces []map[string]any
	if toolCalls != nil {
		call := func(i int, fn map[string]any, announce bool) map[string]any {
			c := map[string]any{"index": i, "function": fn}
			if announce || d.Odd {
				c["id"], c["type"] = toolCalls[i]["id"], "function"
			}
			return map[string]any{"tool_calls": []any{c}}
		}
		for i := range toolCalls {
			pieces = append(pieces, call(i, map[string]any{"name": a.toolName, "arguments": ""}, true))
		}
		for _, p := range chunks(a.toolArgs, 8) {
			for i := range toolCalls {
				pieces = append(pieces, call(i, map[string]any{"arguments": p}, false))
			}
		}
	} else {
		key := "content"
		if d.Refusal {
			key = "refusal"
		}
		for _, p := range chunks(a.text, 16) {
			pieces = append(pieces, map[string]any{key: p})
		}
	}
	for i, p := range pieces {
		chunk(p, nil)
		if i == 0 && d.Break {
			return
		}
		if i == 0 && d.ErrorEvent {
			sw.data(map[string]any{"error": map[string]any{"message": "mock stream error", "type": "server_error", "param": nil, "code": nil}})
			return
		}
		if !s.pause(r, d.Slow) {
			return
		}
	}
	chunk(map[string]any{}, finish)
	if include {
		sw.data(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": model + "-2025-01-01",
			"system_fingerprint": "fp_fake", "choices": []any{}, "usage": usage})
	}
	sw.raw("[DONE]")
}

var responsesKeys = set("model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "stream",
	"max_output_tokens", "reasoning", "store", "include", "prompt_cache_key", "text", "temperature", "top_p", "user",
	"safety_identifier", "metadata", "previous_response_id", "truncation", "service_tier", "background",
	"max_tool_calls", "top_logprobs", "prompt", "stream_options", "conversation", "client_metadata")

func (s *Server) responses(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(w, r, false)
	if !ok {
		return
	}
	if msg := strictKeys(req, responsesKeys); msg != "" {
		writeErr(w, false, 400, "invalid_request_error", msg)
		return
	}
	model, _ := req["model"].(string)
	if model == "" {
		writeErr(w, false, 400, "invalid_request_error", "model is required")
		return
	}
	input := 0
	if ins, ok := req["instructions"].(string); ok {
		input += tokens(ins)
	}
	last, toolResult, hasToolResult := "", "", false
	switch in := req["input"].(type) {
	case string:
		last = in
		input += tokens(in)
	case []any:
		for _, it := range in {
			im, _ := it.(map[string]any)
			typ, _ := im["type"].(string)
			role, _ := im["role"].(string)
			switch {
			case typ == "message" || (typ == "" && role != ""):
				text := textOf(im["content"])
				input += tokens(text)
				if role == "user" {
					last, hasToolResult = text, false
				}
			case typ == "function_call_output":
				out := textOf(im["output"])
				input += tokens(out)
				toolResult, hasToolResult = out, true
			case typ == "function_call":
				args, _ := im["arguments"].(string)
				input += tokens(args)
			}
		}
	default:
		writeErr(w, false, 400, "invalid_request_error", "input is required")
		return
	}
	var tools []toolDef
	if ts, ok := req["tools"].([]any); ok {
		b, _ := json.Marshal(ts)
		input += tokens(string(b))
		for _, t := range ts {
			tm, _ := t.(map[string]any)
			if tm["type"] != "function" {
				continue
			}
			name, _ := tm["name"].(string)
			schema, _ := tm["parameters"].(map[string]any)
			tools = append(tools, toolDef{name: name, schema: schema})
		}
	}
	d := parseDirectives(last, r.Header.Get("X-Mock"))
	if !s.pause(r, d.Slow) {
		return
	}
	if d.Status != 0 {
		writeErr(w, false, d.Status, errType(d.Status, false), "mock error "+itoa(d.Status))
		return
	}
	a := makeAnswer(last, d, intOf(req["max_output_tokens"]), nil, tools, toolResult, hasToolResult)
	u := usageFor(input, a, d)
	// The built-in tool calls first, no more than max_tool_calls.
	u.WebSearches, u.FileSearches = d.Searches, d.FileSearch
	if mtc, ok := req["max_tool_calls"].(float64); ok {
		u.WebSearches = min(u.WebSearches, int(mtc))
		u.FileSearches = min(u.FileSearches, int(mtc)-u.WebSearches)
	}
	var toolItems []any
	for i := range u.WebSearches {
		toolItems = append(toolItems, map[string]any{"type": "web_search_call", "id": newID("ws_", last+itoa(i)), "status": "completed",
			"action": map[string]any{"type": "search", "query": "echo"}})
	}
	for i := range u.FileSearches {
		toolItems = append(toolItems, map[string]any{"type": "file_search_call", "id": newID("fs_", last+itoa(i)), "status": "completed",
			"queries": []any{"echo"}, "results": nil})
	}
	s.setUsage(r, u)
	id := newID("resp_", last+model)
	status := "completed"
	var incomplete any
	var failure any
	switch {
	case a.stop == "length":
		status, incomplete = "incomplete", map[string]any{"reason": "max_output_tokens"}
	case d.Stop == "incomplete":
		status, incomplete = "incomplete", map[string]any{"reason": "content_filter"}
	case d.Stop == "failed":
		status, failure = "failed", map[string]any{"code": "server_error", "message": "mock failure"}
	}
	var item map[string]any
	if a.toolName != "" {
		item = map[string]any{"type": "function_call", "id": newID("fc_", last), "call_id": newID("call_", a.toolName+last), "name": a.toolName, "arguments": a.toolArgs, "status": "completed"}
	} else {
		item = map[string]any{"type": "message", "id": newID("msg_", last), "status": "completed", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": a.text, "annotations": []any{}, "logprobs": []any{}}}}
	}
	usage := map[string]any{
		"input_tokens": u.Input, "input_tokens_details": map[string]any{"cached_tokens": u.Cached, "cache_write_tokens": u.CacheWrite},
		"output_tokens": u.Output, "output_tokens_details": map[string]any{"reasoning_tokens": u.Reasoning},
		"total_tokens": u.Input + u.Output,
	}
	resp := func(st string, output []any, usage any) map[string]any {
		return map[string]any{"id": id, "object": "response", "created_at": s.now().Unix(), "status": st, "model": model + "-2025-01-01",
			"output": output, "usage": usage, "incomplete_details": incomplete, "error": failure, "parallel_tool_calls": true,
			"tool_choice": "auto", "tools": []any{}, "text": map[string]any{"format": map[string]any{"type": "text"}}}
	}
	output := append(toolItems, item)
	if stream, _ := req["stream"].(bool); !stream {
		writeJSON(w, 200, resp(status, output, usage))
		return
	}
	sw := newStream(w)
	seq := 0
	ev := func(typ string, v map[string]any) {
		v["type"] = typ
		v["sequence_number"] = seq
		seq++
		sw.event(typ, v)
	}
	ev("response.created", map[string]any{"response": resp("in_progress", []any{}, nil)})
	ev("response.in_progress", map[string]any{"response": resp("in_progress", []any{}, nil)})
	if d.Odd {
		ev("response.future_event", map[string]any{"detail": map[string]any{"index": "x"}})
	}
	for i, ti := range toolItems {
		added := map[string]any{}
		for k, v := range ti.(map[string]any) {
			added[k] = v
		}
		added["status"] = "in_progress"
		ev("response.output_item.added", map[string]any{"output_index": i, "item": added})
		ev("response.output_item.done", map[string]any{"output_index": i, "item": ti})
	}
	oi := len(toolItems) // the answer's output_index
	if a.toolName != "" {
		added := map[string]any{}
		for k, v := range item {
			added[k] = v
		}
		added["arguments"], added["status"] = "", "in_progress"
		ev("response.output_item.added", map[string]any{"output_index": oi, "item": added})
		for _, p := range chunks(a.toolArgs, 8) {
			ev("response.function_call_arguments.delta", map[string]any{"output_index": oi, "item_id": item["id"], "delta": p})
		}
		ev("response.function_call_arguments.done", map[string]any{"output_index": oi, "item_id": item["id"], "arguments": a.toolArgs})
	} else {
		ev("response.output_item.added", map[string]any{"output_index": oi, "item": map[string]any{"type": "message", "id": item["id"], "status": "in_progress", "role": "assistant", "content": []any{}}})
		ev("response.content_part.added", map[string]any{"output_index": oi, "item_id": item["id"], "content_index": 0, "part": map[string]any{"type": "output_text", "text": "", "annotations": []any{}}})
		for i, p := range chunks(a.text, 16) {
			ev("response.output_text.delta", map[string]any{"output_index": oi, "item_id": item["id"], "content_index": 0, "delta": p, "logprobs": []any{}})
			if i == 0 && d.Break {
				return
			}
			if i == 0 && d.ErrorEvent {
				ev("error", map[string]any{"code": "server_error", "message": "mock stream error", "param": nil})
				return
			}
			if !s.pause(r, d.Slow) {
				return
			}
		}
		ev("response.output_text.done", map[string]any{"output_index": oi, "item_id": item["id"], "content_index": 0, "text": a.text, "logprobs": []any{}})
		ev("response.content_part.done", map[string]any{"output_index": oi, "item_id": item["id"], "content_index": 0, "part": map[string]any{"type": "output_text", "text": a.text, "annotations": []any{}}})
	}
	ev("response.output_item.done", map[string]any{"output_index": oi, "item": item})
	final := "response.completed"
	if status != "completed" {
		final = "response." + status
	}
	ev(final, map[string]any{"response": resp(status, output, usage)})
}

func (s *Server) embeddings(w http.ResponseWriter, r *http.Request) {
	req, ok := decodeBody(w, r, false)
	if !ok {
		return
	}
	if msg := strictKeys(req, set("model", "input", "encoding_format", "dimensions", "user")); msg != "" {
		writeErr(w, false, 400, "invalid_request_error", msg)
		return
	}
	d := parseDirectives(r.Header.Get("X-Mock"))
	var inputs []string
	switch in := req["input"].(type) {
	case string:
		inputs = []string{in}
	case []any:
		for _, x := range in {
			switch v := x.(type) {
			case string:
				inputs = append(inputs, v)
			default:
				b, _ := json.Marshal(v)
				inputs = append(inputs, string(b))
			}
		}
	}
	if len(inputs) > 0 {
		d = parseDirectives(append(inputs, r.Header.Get("X-Mock"))...)
	}
	if d.Status != 0 {
		writeErr(w, false, d.Status, errType(d.Status, false), "mock error "+itoa(d.Status))
		return
	}
	if len(inputs) == 0 {
		writeErr(w, false, 400, "invalid_request_error", "input is required")
		return
	}
	dims := intOf(req["dimensions"])
	if dims <= 0 {
		dims = 8
	}
	b64 := req["encoding_format"] == "base64"
	data := make([]any, 0, len(inputs))
	total := 0
	for i, in := range inputs {
		total += tokens(in)
		v := embed(in, dims)
		var e any = v
		if b64 {
			e = embeddingBase64(v)
		}
		data = append(data, map[string]any{"object": "embedding", "index": i, "embedding": e})
	}
	s.setUsage(r, Usage{Input: total})
	model, _ := req["model"].(string)
	writeJSON(w, 200, map[string]any{"object": "list", "data": data, "model": model, "usage": map[string]any{"prompt_tokens": total, "total_tokens": total}})
}

func (s *Server) models(w http.ResponseWriter, r *http.Request) {
	var data []any
	for _, m := range []string{"gpt-4.1", "gpt-4.1-mini", "text-embedding-3-small"} {
		data = append(data, map[string]any{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"})
	}
	writeJSON(w, 200, map[string]any{"object": "list", "data": data})
}

func itoa(n int) string { return strconv.Itoa(n) }
