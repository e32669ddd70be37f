package main

import (
	"net/http"
	"testing"
)

// TestAuditReadAfterAnswer: a query over the system tables sees every
// gateway call answered before it started, merged with its completion,
// although the audit log applies to DuckDB only every few seconds in the
// background: the query applies what is pending first — with
// --audit-sync on and off (off: also what the group commit still
// queues). Each call is queried at once after its answer, no wait.
func TestAuditReadAfterAnswer(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"on", "off"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			e := startLLM(t, "--audit-sync", mode)
			tok := e.token(t, "alice@example.com", "")
			for i := range 3 {
				resp, body := llmPost(t, e.base, "/v1/chat/completions", tok,
					`{"model":"frontier","max_tokens":64,"messages":[{"role":"user","content":"hi mock:out=16"}]}`)
				id := resp.Header.Get("X-Request-Id")
				if resp.StatusCode != http.StatusOK || id == "" {
					t.Fatalf("call %d: status %d, X-Request-Id %q: %s", i, resp.StatusCode, id, body)
				}
				var status, out int
				if err := e.admin.QueryRow(t.Context(), `SELECT status_code, output_tokens FROM system.ai_gateway.usage WHERE request_id = $1`, id).Scan(&status, &out); err != nil {
					t.Fatalf("call %d: its usage row right after the answer: %v", i, err)
				}
				if status != http.StatusOK || out <= 0 {
					t.Errorf("call %d: usage row status %d, %d output tokens; want 200 and the tokens (the completion merged)", i, status, out)
				}
				var n int
				if err := e.admin.QueryRow(t.Context(), `SELECT count(*) FROM system.access.audit WHERE request_id = $1 AND service_name = 'llm' AND response.status_code = 200`, id).Scan(&n); err != nil || n != 1 {
					t.Errorf("call %d: %d audit rows with status 200 right after the answer (%v), want 1", i, n, err)
				}
			}
		})
	}
}
