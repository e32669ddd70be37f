package llmgw

import (
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/pipeline"
)

// TestAnswerBeforeCompletion: a non-streamed answer reaches the client
// before its completion record is queued (the completion, built and
// queued in the audit stage, does not delay it), with --audit-sync on and
// off; the completion then carries the outcome and the usage.
func TestAnswerBeforeCompletion(t *testing.T) {
	for _, tc := range []struct {
		name  string
		async bool
	}{
		{"audit-sync on", false},
		{"audit-sync off", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(c *pipeline.Config) { c.AuditAsync = tc.async })
			got, first := make(chan struct{}), make(chan bool, 1)
			e.audit.onComplete = func() {
				// Bounded: an answer that waits for the completion never
				// comes before it.
				tm := time.NewTimer(10 * time.Second)
				defer tm.Stop()
				select {
				case <-got:
					first <- true
				case <-tm.C:
					first <- false
				}
			}
			chat := `{"model":"frontier","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`
			resp, body := e.post("/llm/v1/chat/completions", chat, map[string]string{"Authorization": "Bearer " + aliceToken})
			close(got)
			if resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) {
				t.Fatalf("status %d, Content-Length %d for %d bytes: %s", resp.StatusCode, resp.ContentLength, len(body), body)
			}
			if !<-first {
				t.Fatal("the answer reached the client only after its completion was queued")
			}
			ev := e.event()
			if u, _, _ := usageOf(t, ev); ev.StatusCode != 200 || u.OutputTokens == 0 {
				t.Fatalf("completion %+v, usage %+v", ev, ev.Usage)
			}
		})
	}
}
