package llmgw

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/llm"
)

// TestAuditJSONMatchesEncodingJSON: the audit row's request_params,
// request_tags and routing written by appends are the bytes encoding/json
// writes for the same values, escapes and omitted members included.
func TestAuditJSONMatchesEncodingJSON(t *testing.T) {
	n := 3
	odd := "a<b>&c \"q\" \\ \n\t\u2028 é \xff\x7f"
	params := []auditParams{
		{Endpoint: "chat.completions", BytesIn: 1, TraceID: "0af7651916cd43dd8448eb211c80319c"},
		{Endpoint: "models", Models: &n, BytesOut: 42},
		{Endpoint: "messages", RequestedModel: odd, Stream: true, MaxTokens: 2048, EstimatedInputTokens: 300, Tools: 2,
			BytesIn: 1 << 40, BytesOut: -1, TraceID: odd, UsageEstimated: true, FinishReasons: []string{"stop", odd},
			ResponseID: "chatcmpl-1", UpstreamRequestID: odd, AnsweredLocally: true},
		{Endpoint: "responses", FinishReasons: []string{}},
		{Endpoint: "responses", WebSearches: 8, FileSearches: 1 << 53},
		{Endpoint: "messages", WebSearches: 3},
	}
	for _, p := range params {
		want, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendParams(nil, &p); string(got) != string(want) {
			t.Errorf("params:\n got %s\nwant %s", got, want)
		}
	}
	for _, tags := range []map[string]string{{"project": "checkout"}, {"b": "2", "a": odd, odd: "<x>", "": ""}} {
		want, _ := json.Marshal(tags)
		if got := appendTags(nil, tags); string(got) != string(want) {
			t.Errorf("tags:\n got %s\nwant %s", got, want)
		}
	}
	for _, attempts := range [][]llm.Attempt{
		{},
		{{Service: "openai_prod", Provider: llm.ProviderOpenAI, Model: "gpt-4.1", Status: 200, LatencyMS: 12.345, Latency: time.Second}},
		{{Service: odd, Provider: llm.ProviderAnthropic, Model: odd, Status: 429, LatencyMS: 0, Error: odd},
			{Service: "s", Model: "m", LatencyMS: 1e-7}, {LatencyMS: 3e21}, {LatencyMS: 1234567.5}, {LatencyMS: -0.25}},
	} {
		want, _ := json.Marshal(attempts)
		if got := appendAttempts(nil, attempts); string(got) != string(want) {
			t.Errorf("routing:\n got %s\nwant %s", got, want)
		}
	}
	if got := appendAttempts(nil, nil); string(got) != "[]" { // no attempts: an empty list, as before
		t.Errorf("routing of none: %s", got)
	}
	if got := appendFloat(nil, math.NaN()); string(got) != "0" {
		t.Errorf("NaN: %s", got)
	}
}

// TestUserIDCache: the cached pseudonymous id is the computed one, per
// subject, and subjects beyond the cache's bounds still get theirs.
func TestUserIDCache(t *testing.T) {
	h := &Handler{cfg: Config{UserIDKey: []byte("0123456789abcdef0123456789abcdef")}}
	long := strings.Repeat("x", maxCachedSubject+1)
	for _, s := range []string{"alice@example.com", "bob@example.com", "alice@example.com", long, long} {
		if got, want := h.UserID(s), h.userID(s); got != want {
			t.Errorf("UserID(%.20q) = %s, want %s", s, got, want)
		}
	}
	if h.UserID("alice@example.com") == h.UserID("bob@example.com") {
		t.Error("two subjects share an id")
	}
	if n := h.nUserIDs.Load(); n != 2 {
		t.Errorf("%d subjects cached, want 2 (the long one is not)", n)
	}
}
