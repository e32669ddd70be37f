package llm

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/mandatehq/mandate/gateway/internal/sse"
)

// streamTranslator converts the destination's stream events into the
// client's, one upstream event at a time: event appends zero or more
// client events to dst; end appends what closes the client's stream after
// the upstream ended cleanly. done reports whether the client's stream is
// complete (its terminal event was written).
type streamTranslator interface {
	event(dst []byte, name string, data []byte) ([]byte, error)
	end(dst []byte) []byte
	done() bool
}

// ---- Anthropic events → OpenAI chat completion chunks ----

type anToOAStream struct {
	includeUsage bool
	created      int64
	id, model    string
	tools        map[int]int // content block index → tool call index
	nTools       int
	usage        Usage
	finished     bool
}

func newAnToOAStream(includeUsage bool, now time.Time) *anToOAStream {
	return &anToOAStream{includeUsage: includeUsage, created: now.Unix(), tools: map[int]int{}}
}

type oaChunk struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices []oaChunkChoice `json:"choices"`
	Usage   *oaUsageOut     `json:"usage,omitempty"`
}

type oaChunkChoice struct {
	Index        int          `json:"index"`
	Delta        oaChunkDelta `json:"delta"`
	FinishReason *string      `json:"finish_reason"`
}

type oaChunkDelta struct {
	Role      string       `json:"role,omitempty"`
	Content   *string      `json:"content,omitempty"`
	ToolCalls []oaToolCall `json:"tool_calls,omitempty"`
}

func (t *anToOAStream) chunk(dst []byte, d oaChunkDelta, finish *string) []byte {
	c := oaChunk{ID: t.id, Object: "chat.completion.chunk", Created: t.created, Model: t.model,
		Choices: []oaChunkChoice{{Delta: d, FinishReason: finish}}}
	return sse.AppendEvent(dst, "", marshal(c))
}

type anStreamEvent struct {
	Type    string `json:"type"`
	Index   int    `json:"index"`
	Message struct {
		ID    string          `json:"id"`
		Model string          `json:"model"`
		Usage json.RawMessage `json:"usage"`
	} `json:"message"`
	ContentBlock struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
		Text string `json:"text"`
	} `json:"content_block"`
	Delta struct {
		Type        string  `json:"type"`
		Text        string  `json:"text"`
		PartialJSON string  `json:"partial_json"`
		StopReason  *string `json:"stop_reason"`
	} `json:"delta"`
	Usage json.RawMessage  `json:"usage"`
	Error *json.RawMessage `json:"error"`
}

func (t *anToOAStream) event(dst []byte, name string, data []byte) ([]byte, error) {
	if tv, _ := member(data, "type"); !knownAnEvent(tv) {
		return dst, nil // an event type added after this translator: nothing in chat completions
	}
	var ev anStreamEvent
	if err := decodeStrict(data, &ev); err != nil {
		return dst, err
	}
	switch ev.Type {
	case "message_start":
		t.id, t.model = short(ev.Message.ID), short(ev.Message.Model) // repeated in every chunk
		if len(ev.Message.Usage) > 0 {
			t.usage = usageAnthropic(ev.Message.Usage)
		}
		return t.chunk(dst, oaChunkDelta{Role: "assistant", Content: str("")}, nil), nil
	case "content_block_start":
		switch ev.ContentBlock.Type {
		case "tool_use":
			i := t.nTools
			t.nTools++
			t.tools[ev.Index] = i
			tc := oaToolCall{Index: &i, ID: ev.ContentBlock.ID, Type: "function"}
			tc.Function.Name = ev.ContentBlock.Name
			return t.chunk(dst, oaChunkDelta{ToolCalls: []oaToolCall{tc}}, nil), nil
		case "text":
			if ev.ContentBlock.Text != "" {
				return t.chunk(dst, oaChunkDelta{Content: str(ev.ContentBlock.Text)}, nil), nil
			}
		}
	case "content_block_delta":
		switch ev.Delta.Type {
		case "text_delta":
			return t.chunk(dst, oaChunkDelta{Content: str(ev.Delta.Text)}, nil), nil
		case "input_json_delta":
			i, ok := t.tools[ev.Index]
			if !ok || ev.Delta.PartialJSON == "" {
				return dst, nil
			}
			tc := oaToolCall{Index: &i}
			tc.Function.Arguments = ev.Delta.PartialJSON
			return t.chunk(dst, oaChunkDelta{ToolCalls: []oaToolCall{tc}}, nil), nil
		}
	case "message_delta":
		if kindOf(ev.Usage) == '{' {
			t.usage.addAnthropic(ev.Usage)
		}
		if ev.Delta.StopReason != nil {
			fr := mapStop(anStopToOA, *ev.Delta.StopReason, "stop")
			return t.chunk(dst, oaChunkDelta{}, &fr), nil
		}
	case "message_stop":
		if t.includeUsage {
			c := oaChunk{ID: t.id, Object: "chat.completion.chunk", Created: t.created, Model: t.model, Choices: []oaChunkChoice{}, Usage: oaUsageFrom(t.usage)}
			dst = sse.AppendEvent(dst, "", marshal(c))
		}
		t.finished = true
		return sse.AppendEvent(dst, "", []byte("[DONE]")), nil
	case "ping":
		return append(dst, ": ping\n\n"...), nil
	case "error":
		return dst, upstreamStreamError(data)
	}
	return dst, nil
}

// knownAnEvent reports whether tv (a JSON string) is an Anthropic event
// type the translator reads; compared as raw bytes, unescaped only when
// it has an escape.
func knownAnEvent(tv []byte) bool {
	if bytes.IndexByte(tv, '\\') >= 0 {
		s, _ := stringValue(tv)
		tv = quoteJSON(s)
	}
	switch string(tv) {
	case `"message_start"`, `"content_block_start"`, `"content_block_delta"`, `"message_delta"`, `"message_stop"`, `"ping"`, `"error"`:
		return true
	}
	return false
}

func (t *anToOAStream) end(dst []byte) []byte { return dst }
func (t *anToOAStream) done() bool            { return t.finished }

// ---- OpenAI chat completion chunks → Anthropic events ----

// An OpenAI stream may interleave the argument pieces of parallel tool
// calls (and repeat a call's id with each piece); Anthropic blocks may
// interleave too, so each tool call is one tool_use block, open from its
// first piece until the choice finishes. Text goes to a text block, closed
// when a tool call starts (text after it opens a new one).
type oaToAnStream struct {
	started   bool
	finished  bool
	text      int         // index of the open text block, -1 if none
	blocks    int         // blocks started
	tools     map[int]int // tool call index → its content block
	toolIDs   map[int]string
	openTools []int // tool_use blocks not yet stopped, in order
	stop      string
	usage     Usage
	gotUsage  bool
	id, model string
}

func newOAToAnStream() *oaToAnStream {
	return &oaToAnStream{tools: map[int]int{}, toolIDs: map[int]string{}, text: -1}
}

type oaChunkIn struct {
	ID      string `json:"id"`
	Model   string `json:"model"`
	Choices []struct {
		Delta struct {
			Content   *string      `json:"content"`
			Refusal   *string      `json:"refusal"`
			ToolCalls []oaToolCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage  `json:"usage"`
	Error *json.RawMessage `json:"error"`
}

func anEvent(dst []byte, name string, v any) []byte { return sse.AppendEvent(dst, name, marshal(v)) }

func (t *oaToAnStream) start(dst []byte) []byte {
	t.started = true
	return anEvent(dst, "message_start", map[string]any{
		"type": "message_start",
		"message": map[string]any{
			"id": t.id, "type": "message", "role": "assistant", "model": t.model,
			"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]int64{"input_tokens": 0, "output_tokens": 0},
		},
	})
}

func (t *oaToAnStream) stopBlock(dst []byte, i int) []byte {
	return anEvent(dst, "content_block_stop", map[string]any{"type": "content_block_stop", "index": i})
}

// closeBlocks stops the open text block and every open tool_use block.
func (t *oaToAnStream) closeBlocks(dst []byte) []byte {
	if t.text >= 0 {
		dst = t.stopBlock(dst, t.text)
		t.text = -1
	}
	for _, i := range t.openTools {
		dst = t.stopBlock(dst, i)
	}
	t.openTools = t.openTools[:0]
	return dst
}

// startBlock starts the next content block and returns its index.
func (t *oaToAnStream) startBlock(dst []byte, block map[string]any) ([]byte, int) {
	i := t.blocks
	t.blocks++
	return anEvent(dst, "content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": block}), i
}

func (t *oaToAnStream) textDelta(dst []byte, s string) []byte {
	if t.text < 0 {
		dst, t.text = t.startBlock(dst, map[string]any{"type": "text", "text": ""})
	}
	return anEvent(dst, "content_block_delta", map[string]any{"type": "content_block_delta", "index": t.text, "delta": map[string]string{"type": "text_delta", "text": s}})
}

// toolDelta relays one piece of tool call idx: a new call (an index not
// seen, or a different id at a known index) starts a tool_use block.
func (t *oaToAnStream) toolDelta(dst []byte, idx int, tc *oaToolCall) []byte {
	block, ok := t.tools[idx]
	if !ok || (tc.ID != "" && tc.ID != t.toolIDs[idx]) {
		if t.text >= 0 {
			dst = t.stopBlock(dst, t.text)
			t.text = -1
		}
		dst, block = t.startBlock(dst, map[string]any{"type": "tool_use", "id": tc.ID, "name": tc.Function.Name, "input": map[string]any{}})
		t.tools[idx], t.toolIDs[idx] = block, tc.ID
		t.openTools = append(t.openTools, block)
	}
	if tc.Function.Arguments == "" {
		return dst
	}
	return anEvent(dst, "content_block_delta", map[string]any{"type": "content_block_delta", "index": block, "delta": map[string]string{"type": "input_json_delta", "partial_json": tc.Function.Arguments}})
}

func (t *oaToAnStream) event(dst []byte, _ string, data []byte) ([]byte, error) {
	if string(data) == "[DONE]" {
		return t.finish(dst), nil
	}
	var c oaChunkIn
	if err := decodeStrict(data, &c); err != nil {
		return dst, err
	}
	if c.Error != nil {
		return dst, upstreamStreamError(data)
	}
	if t.id == "" && c.ID != "" {
		t.id, t.model = short(c.ID), short(c.Model) // repeated in message_start
	}
	if len(c.Choices) == 0 && kindOf(c.Usage) != '{' {
		return dst, nil // nothing for the client (Azure's prompt_filter_results chunk)
	}
	if !t.started {
		dst = t.start(dst)
	}
	if len(c.Usage) > 0 && kindOf(c.Usage) == '{' {
		t.usage, t.gotUsage = usageOpenAI(c.Usage), true
	}
	for _, ch := range c.Choices {
		d := ch.Delta
		if d.Content != nil && *d.Content != "" {
			dst = t.textDelta(dst, *d.Content)
		}
		if d.Refusal != nil && *d.Refusal != "" {
			dst = t.textDelta(dst, *d.Refusal)
		}
		for j := range d.ToolCalls {
			tc := &d.ToolCalls[j]
			idx := 0
			if tc.Index != nil {
				idx = *tc.Index
			}
			dst = t.toolDelta(dst, idx, tc)
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			t.stop = mapStop(oaStopToAn, *ch.FinishReason, "end_turn")
			dst = t.closeBlocks(dst)
		}
	}
	return dst, nil
}

// finish closes the Anthropic stream: message_delta with the stop reason
// and the usage, then message_stop.
func (t *oaToAnStream) finish(dst []byte) []byte {
	if t.finished {
		return dst
	}
	if !t.started {
		dst = t.start(dst)
	}
	dst = t.closeBlocks(dst)
	t.finished = true
	stop := t.stop
	if stop == "" {
		stop = "end_turn"
	}
	dst = anEvent(dst, "message_delta", map[string]any{
		"type":  "message_delta",
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": anUsageFrom(t.usage),
	})
	return anEvent(dst, "message_stop", map[string]string{"type": "message_stop"})
}

func (t *oaToAnStream) end(dst []byte) []byte {
	if !t.started || t.stop == "" {
		return dst // no finish_reason: the stream was cut; the relay reports it
	}
	return t.finish(dst)
}

func (t *oaToAnStream) done() bool { return t.finished }

// upstreamStreamError is the error an upstream reported inside its
// stream, as an *Error for the client.
// A Responses error event is itself the error object (type "error",
// code, message).
func upstreamStreamError(data []byte) *Error {
	e, ok := member(data, "error")
	if !ok {
		e = data
	}
	msg := ""
	if m, ok := member(e, "message"); ok {
		msg, _ = stringValue(m)
	} else {
		msg, _ = stringValue(e)
	}
	if msg == "" {
		msg = "the model provider reported an error"
	}
	tv, _ := member(e, "type")
	t, _ := stringValue(tv)
	if t == "" || t == "error" {
		cv, _ := member(e, "code")
		t, _ = stringValue(cv)
	}
	status := 502
	switch t {
	case "overloaded_error":
		status = 529
	case "rate_limit_error", "rate_limit_exceeded", "tokens", "requests":
		status = 429
	case "invalid_request_error":
		status = 400
	}
	return &Error{Status: status, Message: "upstream: " + msg}
}
