package llmgw

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/mandatehq/mandate/gateway/llm"
)

// TestPolicyContextLazy: the authorization question carries the policy
// context as a builder, not a map, and the map it builds is the one the
// gateway built for every call before (legacyPolicyContext, kept here as
// it was), value for value and type for type, so policies see the same
// input document.
func TestPolicyContextLazy(t *testing.T) {
	e := newEnv(t)
	lim := e.h.cfg.Limits
	for _, tc := range []struct {
		name, path, body, tags string
		endpoint               llm.Endpoint
		service                string
	}{
		{"chat with tools, max_tokens and tags", "/llm/v1/chat/completions",
			`{"model":"frontier","messages":[{"role":"user","content":"hi"}],"max_tokens":300,"n":2,` +
				`"tools":[{"type":"function","function":{"name":"search","parameters":{"type":"object"}}},` +
				`{"type":"function","function":{"name":"shell","parameters":{"type":"object"}}}]}`,
			`{"project":"checkout","team":"spoofed"}`, llm.ChatCompletions, "system.ai.frontier"},
		{"anthropic stream with tools", "/llm/v1/messages",
			`{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}],` +
				`"tools":[{"name":"get_weather","input_schema":{"type":"object"}}]}`,
			`{"cost_center":"42"}`, llm.Messages, "system.ai.claude"},
		{"chat without tools or tags", "/llm/v1/chat/completions",
			`{"model":"frontier","messages":[{"role":"user","content":"hi"}]}`, "", llm.ChatCompletions, "system.ai.frontier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{"Authorization": "Bearer " + aliceToken}
			if tc.tags != "" {
				hdr[HeaderTags] = tc.tags
			}
			e.authz.mu.Lock()
			e.authz.calls = nil
			e.authz.mu.Unlock()
			if resp, body := e.post(tc.path, tc.body, hdr); resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			e.authz.mu.Lock()
			calls := e.authz.calls
			e.authz.mu.Unlock()
			if len(calls) != 1 {
				t.Fatalf("%d authorization questions", len(calls))
			}
			r := calls[0]
			if r.Context != nil || r.LazyContext == nil {
				t.Fatalf("the question carries a built context (%v) or no builder", r.Context)
			}
			req, err := llm.Parse(tc.endpoint, []byte(tc.body), lim)
			if err != nil {
				t.Fatal(err)
			}
			var hv []string
			if tc.tags != "" {
				hv = []string{tc.tags}
			}
			ht, err := parseTags(hv)
			if err != nil {
				t.Fatal(err)
			}
			svc, _ := e.models.ModelService(t.Context(), tc.service)
			want := legacyPolicyContext(tc.endpoint, req, mergeTags(ht, svc.Tags), "127.0.0.1")
			got := r.ContextMap()
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("lazy context\n%#v\nwant\n%#v", got, want)
			}
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if string(gj) != string(wj) {
				t.Fatalf("lazy context %s, want %s", gj, wj)
			}
		})
	}
}

// legacyPolicyContext is the policy context as the gateway built it
// eagerly for every call (the reference the lazy builder must match).
func legacyPolicyContext(ep llm.Endpoint, req *llm.Request, ctags map[string]string, sourceIP string) map[string]any {
	tools := make([]any, len(req.Tools))
	for i, t := range req.Tools {
		tools[i] = t.Name
	}
	tags := make(map[string]any, len(ctags))
	for k, v := range ctags {
		tags[k] = v
	}
	return map[string]any{
		"method":        ep.String(),
		"model":         req.Model,
		"stream":        req.Stream,
		"request_bytes": len(req.Body),
		"max_tokens":    req.MaxTokens,
		"tools":         tools,
		"tags":          tags,
		"source_ip":     sourceIP,
	}
}
