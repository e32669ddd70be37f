package llm

import (
	"encoding/json"
	"strings"
	"testing"
)

func partTexts(body []byte, ps []Part) []string {
	var out []string
	for _, p := range ps {
		raw := body[p.Start:p.End]
		var s string
		if json.Unmarshal(raw, &s) != nil {
			s = string(raw)
		}
		out = append(out, p.Role+"/"+p.Kind+":"+s)
	}
	return out
}

func TestRequestAndResponseParts(t *testing.T) {
	for _, tc := range []struct {
		e          Endpoint
		req, resp  string
		wantReq    string
		wantAnswer string
	}{
		{ChatCompletions,
			`{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi \u00e9"}]},{"role":"assistant","tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"1","content":"done"}]}`,
			`{"choices":[{"index":0,"message":{"role":"assistant","content":"ok","tool_calls":[{"function":{"name":"g","arguments":"{}"}}]}}]}`,
			`system/text:be brief|user/text:hi é|assistant/tool_call:{"a":1}|tool/tool_result:done`,
			`assistant/text:ok|assistant/tool_call:{}`},
		{Responses,
			`{"model":"m","instructions":"sys","input":[{"role":"user","content":"q"},{"type":"function_call_output","call_id":"1","output":"r"}]}`,
			`{"output":[{"type":"message","content":[{"type":"output_text","text":"a"}]},{"type":"function_call","arguments":"{\"x\":2}"}]}`,
			`system/instructions:sys|user/text:q|tool/tool_result:r`,
			`assistant/text:a|assistant/tool_call:{"x":2}`},
		{Messages,
			`{"model":"m","max_tokens":5,"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"u"},{"type":"tool_result","tool_use_id":"1","content":"tr"}]},{"role":"assistant","content":[{"type":"tool_use","id":"1","name":"f","input":{"k":"v"}}]}]}`,
			`{"content":[{"type":"text","text":"t"},{"type":"tool_use","name":"f","input":{"a":1}}]}`,
			`system/text:s|user/text:u|tool/tool_result:tr|assistant/tool_call:{"k":"v"}`,
			`assistant/text:t|assistant/tool_call:{"a":1}`},
	} {
		req, resp := []byte(tc.req), []byte(tc.resp)
		if got := strings.Join(partTexts(req, RequestParts(tc.e, req)), "|"); got != tc.wantReq {
			t.Errorf("%s request parts %s", tc.e, got)
		}
		if got := strings.Join(partTexts(resp, ResponseParts(tc.e, resp)), "|"); got != tc.wantAnswer {
			t.Errorf("%s answer parts %s", tc.e, got)
		}
	}
	if s, ok := ResponseFormatSchema(ChatCompletions, []byte(`{"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object"}}}}`)); !ok || string(s) != `{"type":"object"}` {
		t.Errorf("chat schema %s %v", s, ok)
	}
	if s, ok := ResponseFormatSchema(Responses, []byte(`{"text":{"format":{"type":"json_schema","name":"x","schema":{"type":"array"}}}}`)); !ok || string(s) != `{"type":"array"}` {
		t.Errorf("responses schema %s %v", s, ok)
	}
}

func TestStreamEvents(t *testing.T) {
	piece := []byte("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"a\\nb\"}}\n\n" +
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	evs, err := StreamEvents(Messages, piece)
	if err != nil || len(evs) != 3 {
		t.Fatalf("%d events, %v", len(evs), err)
	}
	if d := evs[0].Deltas; len(d) != 1 || d[0].Stream != "b1" || string(piece[d[0].Start:d[0].End]) != `"a\nb"` {
		t.Fatalf("delta %+v", evs[0].Deltas)
	}
	if evs[1].Ends[0] != "b1" || !evs[2].Done || string(piece[evs[1].Start:evs[1].End]) != "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n" {
		t.Fatalf("events %+v", evs)
	}
	if _, err := StreamEvents(ChatCompletions, []byte("data: {\"a\":1}\ndata: {\"b\":2}\n\n")); err == nil {
		t.Fatal("two data lines accepted")
	}
}
