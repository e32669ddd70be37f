package llmgw

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestComplete: the gateway's own call of a model service (a guardrail's
// classifier) takes the service's route with its provider credentials,
// falls back like a client's call, answers in the OpenAI chat format
// whatever the destination's provider, and leaves no audit row.
func TestComplete(t *testing.T) {
	e := newEnv(t)
	req := `{"model":"x","max_tokens":16,"messages":[{"role":"system","content":"classify"},{"role":"user","content":"is this safe"}]}`
	for _, svc := range []string{"frontier", "claude", "system.ai.fallback"} {
		out, err := e.h.Complete(t.Context(), svc, []byte(req))
		if err != nil {
			t.Fatalf("%s: %v", svc, err)
		}
		var ans struct {
			Choices []struct{ Message struct{ Content string } }
		}
		if err := json.Unmarshal(out, &ans); err != nil || len(ans.Choices) != 1 || ans.Choices[0].Message.Content != "Echo: is this safe" {
			t.Fatalf("%s answered %s (%v)", svc, out, err)
		}
	}
	e.audit.mu.Lock()
	n := len(e.audit.events)
	e.audit.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d audit rows for the gateway's own calls", n)
	}
	for _, tc := range []struct{ svc, body, want string }{
		{"nowhere", req, "model service nowhere"},
		{"frontier", `{"model":"x","messages":[{"role":"user","content":"mock:status=400"}]}`, "answered 400"},
		{"frontier", `{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "does not stream"},
		{"frontier", `{"model":"x"`, "JSON"},
	} {
		if _, err := e.h.Complete(t.Context(), tc.svc, []byte(tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want %q", tc.svc, tc.body, err, tc.want)
		}
	}
}
