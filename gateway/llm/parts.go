package llm

import (
	"bytes"
	"errors"
)

// Part is a span of a request, a response or a stream event that
// guardrails read and may rewrite in place: a text (a JSON string), tool
// call arguments (a JSON string holding JSON or, in Anthropic's format,
// an object), a tool result.
type Part struct {
	// Role is system, developer, user, assistant or tool.
	Role string
	// Kind is text, tool_call (arguments), tool_result, instructions,
	// input (embeddings), thinking or refusal.
	Kind string
	// Start and End are the JSON value's span in the body (a string with
	// its quotes, or an object).
	Start, End int
	// Stream names the text stream a delta belongs to (a choice, an
	// output item's content part, a content block); "" outside streams.
	Stream string
}

// RequestParts returns the texts of a request in e's format (validated
// by Parse): system prompts and instructions, message contents, tool call
// arguments and tool results, embedding inputs, in order.
func RequestParts(e Endpoint, body []byte) []Part {
	var out []Part
	add := func(role, kind string, raw []byte) {
		s := offsetIn(body, raw)
		out = append(out, Part{Role: role, Kind: kind, Start: s, End: s + len(raw)})
	}
	noImage := func() {}
	var n int
	var tb int64
	lim := int(^uint(0) >> 1)
	_ = eachMember(body, func(k, v []byte) bool {
		switch e {
		case ChatCompletions:
			if keyIs(k, "messages") {
				_ = walkChatMessages(v, lim, add, noImage, &n)
			}
		case Responses:
			if keyIs(k, "instructions") && kindOf(v) == '"' {
				add("system", "instructions", v)
			} else if keyIs(k, "input") {
				_ = walkResponsesInput(v, lim, add, noImage, &n)
			}
		case Embeddings:
			if keyIs(k, "input") {
				_ = walkEmbeddingInput(v, lim, add, &n, &tb)
			}
		case Messages, CountTokens:
			if keyIs(k, "system") {
				_ = walkAnthropicSystem(v, add)
			} else if keyIs(k, "messages") {
				_ = walkAnthropicMessages(v, lim, add, noImage, &n)
			}
		}
		return true
	})
	return out
}

// ResponseFormatSchema returns the JSON Schema a request asks the answer
// to follow: chat completions' response_format {"type":"json_schema",
// "json_schema":{"schema":…}} or the Responses API's text.format
// {"type":"json_schema","schema":…}; ok false for none.
func ResponseFormatSchema(e Endpoint, body []byte) (schema []byte, ok bool) {
	switch e {
	case ChatCompletions:
		rf, found := member(body, "response_format")
		if !found || kindOf(rf) != '{' {
			return nil, false
		}
		if t, _ := member(rf, "type"); string(t) != `"json_schema"` {
			return nil, false
		}
		js, found := member(rf, "json_schema")
		if !found {
			return nil, false
		}
		s, found := member(js, "schema")
		return s, found && (kindOf(s) == '{' || kindOf(s) == 't' || kindOf(s) == 'f')
	case Responses:
		tx, found := member(body, "text")
		if !found {
			return nil, false
		}
		f, found := member(tx, "format")
		if !found {
			return nil, false
		}
		if t, _ := member(f, "type"); string(t) != `"json_schema"` {
			return nil, false
		}
		s, found := member(f, "schema")
		return s, found && (kindOf(s) == '{' || kindOf(s) == 't' || kindOf(s) == 'f')
	}
	return nil, false
}

// ResponseParts returns the outputs of a (not streamed) response in e's
// client format: the answer's texts (refusals included) and the tool
// calls' arguments, in order.
func ResponseParts(e Endpoint, body []byte) []Part {
	var out []Part
	add := func(kind string, raw []byte) {
		s := offsetIn(body, raw)
		out = append(out, Part{Role: "assistant", Kind: kind, Start: s, End: s + len(raw)})
	}
	switch e {
	case ChatCompletions:
		choices, _ := member(body, "choices")
		_ = eachElement(choices, func(ch []byte) bool {
			msg, _ := member(ch, "message")
			chatMessageParts(msg, add)
			return true
		})
	case Responses:
		o, _ := member(body, "output")
		responsesOutputParts(o, add)
	case Messages:
		c, _ := member(body, "content")
		anthropicBlockParts(c, add)
	}
	return out
}

func chatMessageParts(msg []byte, add func(kind string, raw []byte)) {
	if kindOf(msg) != '{' {
		return
	}
	if c, ok := member(msg, "content"); ok && kindOf(c) == '"' {
		add("text", c)
	}
	if r, ok := member(msg, "refusal"); ok && kindOf(r) == '"' {
		add("refusal", r)
	}
	tcs, _ := member(msg, "tool_calls")
	_ = eachElement(tcs, func(tc []byte) bool {
		if fn, ok := member(tc, "function"); ok {
			if a, ok := member(fn, "arguments"); ok && kindOf(a) == '"' {
				add("tool_call", a)
			}
		}
		return true
	})
}

func responsesOutputParts(o []byte, add func(kind string, raw []byte)) {
	_ = eachElement(o, func(item []byte) bool {
		responsesItemParts(item, add)
		return true
	})
}

func responsesItemParts(item []byte, add func(kind string, raw []byte)) {
	t, _ := member(item, "type")
	switch string(t) {
	case `"message"`:
		c, _ := member(item, "content")
		_ = eachElement(c, func(p []byte) bool {
			responsesContentPart(p, add)
			return true
		})
	case `"function_call"`:
		if a, ok := member(item, "arguments"); ok && kindOf(a) == '"' {
			add("tool_call", a)
		}
	case `"custom_tool_call"`:
		if a, ok := member(item, "input"); ok && kindOf(a) == '"' {
			add("tool_call", a)
		}
	}
}

func responsesContentPart(p []byte, add func(kind string, raw []byte)) {
	pt, _ := member(p, "type")
	switch string(pt) {
	case `"output_text"`:
		if s, ok := member(p, "text"); ok && kindOf(s) == '"' {
			add("text", s)
		}
	case `"refusal"`:
		if s, ok := member(p, "refusal"); ok && kindOf(s) == '"' {
			add("refusal", s)
		}
	}
}

func anthropicBlockParts(c []byte, add func(kind string, raw []byte)) {
	_ = eachElement(c, func(b []byte) bool {
		t, _ := member(b, "type")
		switch string(t) {
		case `"text"`:
			if s, ok := member(b, "text"); ok && kindOf(s) == '"' {
				add("text", s)
			}
		case `"tool_use"`, `"server_tool_use"`:
			if in, ok := member(b, "input"); ok {
				add("tool_call", in)
			}
		}
		return true
	})
}

// StreamEvent is one server-sent event of a stream piece in a client
// format, with what guardrails read in it.
type StreamEvent struct {
	// Start and End are the event's bytes in the piece (its blank line
	// included).
	Start, End int
	Name       string
	// Deltas are the text and argument deltas the event carries, each
	// with its stream (spans in the piece).
	Deltas []Part
	// Full are complete texts the event repeats (the Responses API's
	// done events and response.completed).
	Full []Part
	// Ends are the streams the event ends: a stream ends when its key has
	// one of these prefixes.
	Ends []string
	// Done: the event ends the answer ([DONE], message_stop,
	// response.completed); every stream ends before it.
	Done bool
}

// ErrStreamFormat is a stream piece guardrails cannot read.
var ErrStreamFormat = errors.New("unreadable stream event")

// StreamEvents splits a stream piece (the client's bytes of one or more
// server-sent events, as Reply.Relay writes them) into its events.
func StreamEvents(e Endpoint, piece []byte) ([]StreamEvent, error) {
	var out []StreamEvent
	for i := 0; i < len(piece); {
		end := bytes.Index(piece[i:], []byte("\n\n"))
		if end < 0 {
			end = len(piece)
		} else {
			end += i + 2
		}
		ev := StreamEvent{Start: i, End: end}
		var data []byte
		dataAt, lines := -1, 0
		for ls := i; ls < end; {
			le := ls + bytes.IndexByte(piece[ls:end], '\n')
			if le < ls {
				le = end
			}
			line := piece[ls:le] // a subslice of piece: offsets stay meaningful
			switch {
			case bytes.HasPrefix(line, []byte("event:")):
				ev.Name = string(bytes.TrimSpace(line[6:]))
			case bytes.HasPrefix(line, []byte("data:")):
				lines++
				ds := ls + 5
				if ds < le && piece[ds] == ' ' {
					ds++
				}
				dataAt, data = ds, piece[ds:le]
			}
			ls = le + 1
		}
		i = end
		if lines > 1 {
			return nil, ErrStreamFormat // the gateway writes one data line per event
		}
		if lines == 0 {
			out = append(out, ev)
			continue
		}
		if string(bytes.TrimSpace(data)) == "[DONE]" {
			ev.Done = true
			out = append(out, ev)
			continue
		}
		if kindOf(data) != '{' {
			return nil, ErrStreamFormat
		}
		add := func(list *[]Part, stream, kind string, raw []byte) {
			s := dataAt + offsetIn(data, raw)
			*list = append(*list, Part{Role: "assistant", Kind: kind, Stream: stream, Start: s, End: s + len(raw)})
		}
		switch e {
		case ChatCompletions:
			chatChunk(data, &ev, add)
		case Responses:
			responsesEvent(data, &ev, add)
		case Messages:
			anthropicEvent(data, &ev, add)
		}
		out = append(out, ev)
	}
	return out, nil
}

func chatChunk(data []byte, ev *StreamEvent, add func(list *[]Part, stream, kind string, raw []byte)) {
	choices, _ := member(data, "choices")
	_ = eachElement(choices, func(ch []byte) bool {
		idx, _ := member(ch, "index")
		key := "c" + string(idx) + "/"
		if d, ok := member(ch, "delta"); ok {
			if c, ok := member(d, "content"); ok && kindOf(c) == '"' {
				add(&ev.Deltas, key, "text", c)
			}
			if r, ok := member(d, "refusal"); ok && kindOf(r) == '"' {
				add(&ev.Deltas, key+"r", "refusal", r)
			}
			tcs, _ := member(d, "tool_calls")
			_ = eachElement(tcs, func(tc []byte) bool {
				ti, _ := member(tc, "index")
				if fn, ok := member(tc, "function"); ok {
					if a, ok := member(fn, "arguments"); ok && kindOf(a) == '"' {
						add(&ev.Deltas, key+"t"+string(ti), "tool_call", a)
					}
				}
				return true
			})
		}
		if fr, ok := member(ch, "finish_reason"); ok && !isNull(fr) {
			ev.Ends = append(ev.Ends, key)
		}
		return true
	})
}

func responsesEvent(data []byte, ev *StreamEvent, add func(list *[]Part, stream, kind string, raw []byte)) {
	tv, _ := member(data, "type")
	t, _ := stringValue(tv)
	oi, _ := member(data, "output_index")
	ci, _ := member(data, "content_index")
	text := "o" + string(oi) + "/c" + string(ci)
	args := "o" + string(oi) + "/a"
	switch t {
	case "response.output_text.delta", "response.refusal.delta":
		if d, ok := member(data, "delta"); ok && kindOf(d) == '"' {
			add(&ev.Deltas, text, "text", d)
		}
	case "response.function_call_arguments.delta", "response.custom_tool_call_input.delta":
		if d, ok := member(data, "delta"); ok && kindOf(d) == '"' {
			add(&ev.Deltas, args, "tool_call", d)
		}
	case "response.output_text.done":
		if s, ok := member(data, "text"); ok && kindOf(s) == '"' {
			add(&ev.Full, text, "text", s)
		}
		ev.Ends = append(ev.Ends, text)
	case "response.refusal.done":
		if s, ok := member(data, "refusal"); ok && kindOf(s) == '"' {
			add(&ev.Full, text, "refusal", s)
		}
		ev.Ends = append(ev.Ends, text)
	case "response.function_call_arguments.done", "response.custom_tool_call_input.done":
		key := "arguments"
		if t == "response.custom_tool_call_input.done" {
			key = "input"
		}
		if s, ok := member(data, key); ok && kindOf(s) == '"' {
			add(&ev.Full, args, "tool_call", s)
		}
		ev.Ends = append(ev.Ends, args)
	case "response.content_part.done", "response.content_part.added":
		if p, ok := member(data, "part"); ok {
			responsesContentPart(p, func(kind string, raw []byte) { add(&ev.Full, text, kind, raw) })
		}
	case "response.output_item.done", "response.output_item.added":
		if it, ok := member(data, "item"); ok {
			responsesItemParts(it, func(kind string, raw []byte) { add(&ev.Full, "o"+string(oi)+"/", kind, raw) })
		}
		if t == "response.output_item.done" {
			ev.Ends = append(ev.Ends, "o"+string(oi)+"/")
		}
	case "response.completed", "response.incomplete", "response.failed":
		if r, ok := member(data, "response"); ok {
			o, _ := member(r, "output")
			responsesOutputParts(o, func(kind string, raw []byte) { add(&ev.Full, "", kind, raw) })
		}
		ev.Done = true
	}
}

func anthropicEvent(data []byte, ev *StreamEvent, add func(list *[]Part, stream, kind string, raw []byte)) {
	tv, _ := member(data, "type")
	idx, _ := member(data, "index")
	key := "b" + string(idx)
	switch string(tv) {
	case `"content_block_delta"`:
		d, _ := member(data, "delta")
		dt, _ := member(d, "type")
		switch string(dt) {
		case `"text_delta"`:
			if s, ok := member(d, "text"); ok && kindOf(s) == '"' {
				add(&ev.Deltas, key, "text", s)
			}
		case `"input_json_delta"`:
			if s, ok := member(d, "partial_json"); ok && kindOf(s) == '"' {
				add(&ev.Deltas, key, "tool_call", s)
			}
		}
	case `"content_block_stop"`:
		ev.Ends = append(ev.Ends, key)
	case `"message_stop"`:
		ev.Done = true
	}
}
