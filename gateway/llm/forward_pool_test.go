package llm

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestAnswerBufferReused: a non-streamed answer is read into a buffer the
// Forwarder keeps, and each client still gets exactly its own answer,
// relayed or not. The answers differ in size and content call by call, so
// a buffer handed on too early would show in a later client's bytes.
func TestAnswerBufferReused(t *testing.T) {
	var n atomic.Int64
	answer := func(i int64) string {
		return fmt.Sprintf(`{"id":"chatcmpl-%d","object":"chat.completion","model":"gpt-4.1","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":%d,"total_tokens":%d}}`,
			i, strings.Repeat(string(rune('a'+i%26)), int(64+(i*37)%700)), i+1, i+4)
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(answer(n.Add(1))))
	}))
	t.Cleanup(up.Close)
	f := NewForwarder()
	route := Route{Destinations: []Destination{{Service: "p", Provider: ProviderOpenAI, BaseURL: up.URL + "/v1", Model: "gpt-4.1", Weight: 1}}}
	req, err := Parse(ChatCompletions, []byte(`{"model":"frontier","messages":[{"role":"user","content":"hi"}]}`), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	reused := 0
	for i := int64(1); i <= 20; i++ {
		rep := f.Open(t.Context(), &Call{Request: req, Route: route, Header: http.Header{}})
		if rep.Err != nil {
			t.Fatalf("call %d: %v", i, rep.Err)
		}
		if i%4 == 0 { // not relayed: Close alone gives the buffer back
			rep.Close()
			continue
		}
		w := httptest.NewRecorder()
		if err := rep.Relay(t.Context(), w); err != nil {
			t.Fatalf("call %d: relay: %v", i, err)
		}
		if got, want := w.Body.String(), answer(i); got != want {
			t.Fatalf("call %d: the client got\n%s\nwant\n%s", i, got, want)
		}
		if got := rep.Result.Usage.OutputTokens; got != i+1 {
			t.Fatalf("call %d: output tokens %d, want %d", i, got, i+1)
		}
		// The buffer is back in the pool, empty, with room for this
		// answer (sync.Pool may drop some, and then hands out an earlier
		// one: counted, not required each time).
		b := f.bodies.Get()
		if len(*b) != 0 {
			t.Fatalf("call %d: pooled buffer holds %d bytes, want none", i, len(*b))
		}
		if cap(*b) >= len(answer(i)) {
			reused++
		}
		f.bodies.Put(b)
	}
	if reused == 0 {
		t.Fatal("no answer's buffer came back to the Forwarder's pool")
	}
}
