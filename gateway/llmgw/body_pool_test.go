package llmgw

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestRequestBodyBufferReused: request bodies are read into buffers the
// Handler keeps and takes back once the call is over, and each call's
// captured payload still holds exactly its own request. The bodies differ
// in size and content call by call, so a buffer taken back too early would
// show in an earlier call's payload.
func TestRequestBodyBufferReused(t *testing.T) {
	e := newEnv(t)
	const calls = 12
	bodies := map[string]string{}
	reused := 0
	for i := range calls {
		tag := fmt.Sprintf("call-%02d", i)
		body := `{"model":"logged","messages":[{"role":"user","content":"` + tag + " " + strings.Repeat(string(rune('a'+i)), 40+i*97) + `"}]}`
		bodies[tag] = body
		resp, out := e.post("/llm/v1/chat/completions", body, map[string]string{"Authorization": "Bearer " + aliceToken})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", tag, resp.StatusCode, out)
		}
		e.event()
		// The buffer is back, empty, with room for this body (sync.Pool
		// may drop some, and then hands out an earlier one: counted, not
		// required each time).
		b := e.h.bodies.Get()
		if len(*b) != 0 {
			t.Fatalf("%s: pooled buffer holds %d bytes, want none", tag, len(*b))
		}
		if cap(*b) >= len(body) {
			reused++
		}
		e.h.bodies.Put(b)
	}
	if reused == 0 {
		t.Fatal("no request body's buffer came back to the Handler's pool")
	}
	waitUntil(t, "a payload event per call", func() bool { return len(e.audit.payloads()) == calls })
	for _, ev := range e.audit.payloads() {
		got := ev.Payload.RequestBody
		tag, _, _ := strings.Cut(strings.TrimPrefix(got, `{"model":"logged","messages":[{"role":"user","content":"`), " ")
		if want, ok := bodies[tag]; !ok || got != want {
			t.Errorf("payload %s: request body\n%s\nwant\n%s", tag, got, want)
		}
	}
}
