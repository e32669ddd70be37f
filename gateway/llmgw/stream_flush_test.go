package llmgw

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway"
)

// TestStreamFirstEventFlushed: a stream's first event reaches the client
// while the upstream still holds back its second (the gateway neither
// buffers the answer until a size or its end nor waits for more events),
// for the client's own format and for a translated stream.
func TestStreamFirstEventFlushed(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		chunk := func(delta, fin string) {
			_, _ = io.WriteString(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[{"index":0,"delta":`+delta+`,"finish_reason":`+fin+`}]}`+"\n\n")
			w.(http.Flusher).Flush()
		}
		chunk(`{"role":"assistant","content":""}`, "null")
		chunk(`{"content":"Hel"}`, "null")
		select { // the second part only once the client has the first
		case <-release:
		case <-r.Context().Done():
			return
		case <-time.After(30 * time.Second):
			return
		}
		chunk(`{"content":"lo"}`, "null")
		chunk(`{}`, `"stop"`)
		_, _ = io.WriteString(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4.1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`+"\n\ndata: [DONE]\n\n")
	}))
	defer up.Close()
	prov := &gateway.ProviderService{Name: "system.ai.gated", Provider: "openai", URL: up.URL + "/v1", APIKey: openAIKey,
		Prices: map[string]gateway.ModelPrice{"gpt-4.1": {Input: 2, Output: 8}}}
	e.models.m["system.ai.gated"] = &gateway.ModelService{Name: "system.ai.gated",
		Destinations: []gateway.ModelDestination{{Provider: prov, Model: "gpt-4.1", Weight: 100}}}
	e.authz.grants["system.ai.gated"] = []string{alice, agent}

	for _, tc := range []struct{ name, path, body, first, rest string }{
		{"openai", "/llm/v1/chat/completions", `{"model":"gated","stream":true,"messages":[{"role":"user","content":"hi"}]}`, `"Hel"`, "[DONE]"},
		{"anthropic translated", "/llm/v1/messages", `{"model":"gated","stream":true,"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}`, "message_start", "message_stop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release = make(chan struct{})
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+aliceToken)
			resp, err := http.DefaultClient.Do(req) // returns with the headers
			if err != nil {
				close(release)
				t.Fatalf("no response headers while the upstream holds its second event back: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				close(release)
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			br := bufio.NewReader(resp.Body)
			var got strings.Builder
			for !strings.Contains(got.String(), tc.first) {
				line, err := br.ReadString('\n')
				got.WriteString(line)
				if err != nil {
					close(release)
					t.Fatalf("the first event never reached the client before the upstream's second (%v); got %q", err, got.String())
				}
			}
			close(release)
			rest, err := io.ReadAll(br)
			if err != nil || !strings.Contains(string(rest), tc.rest) {
				t.Fatalf("rest of the stream: %v %q", err, rest)
			}
		})
	}
}
