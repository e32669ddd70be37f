package llmgw

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mandatehq/mandate/gateway/pipeline"
)

// flushLog is the gateway's response writer with its flushes logged.
type flushLog struct {
	http.ResponseWriter
	log func(string)
}

func (f *flushLog) Flush() {
	f.log("flush")
	_ = http.NewResponseController(f.ResponseWriter).Flush()
}

func (f *flushLog) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// TestWholeAnswersAfterTheirRecords: every non-streamed answer of the LLM
// API (each endpoint's, the models list's, a refusal's) declares its
// length and leaves after the call's final record is queued (its
// completion, or a refusal's only record), with --audit-sync on and off:
// a query after the answer sees the call complete. A forwarded call's
// answer leaves before the handler returns (flushed once metered), a
// refusal's when it returns.
func TestWholeAnswersAfterTheirRecords(t *testing.T) {
	chat := `{"model":"frontier","messages":[{"role":"user","content":"hi"}],"max_tokens":10}`
	msgs := `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	for _, mode := range []string{"on", "off"} {
		e := newEnv(t, func(c *pipeline.Config) { c.AuditAsync = mode == "off" })
		var mu sync.Mutex
		var order []string
		add := func(s string) {
			mu.Lock()
			order = append(order, s)
			mu.Unlock()
		}
		e.audit.onQueue = add
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.h.ServeHTTP(&flushLog{ResponseWriter: w, log: add}, r)
			add("returned")
		}))
		t.Cleanup(srv.Close)
		for _, tc := range []struct {
			name, method, path, body, token string
			status                          int
			final                           string // the call's final record
		}{
			{"chat completions", "POST", "/llm/v1/chat/completions", chat, aliceToken, 200, "completion queued"},
			{"responses", "POST", "/llm/v1/responses", `{"model":"frontier","input":"hi","max_output_tokens":16}`, aliceToken, 200, "completion queued"},
			{"embeddings", "POST", "/llm/v1/embeddings", `{"model":"frontier","input":"hi"}`, aliceToken, 200, "completion queued"},
			{"messages", "POST", "/llm/v1/messages", msgs, aliceToken, 200, "completion queued"},
			{"count tokens", "POST", "/llm/v1/messages/count_tokens", `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`, aliceToken, 200, "completion queued"},
			{"models", "GET", "/llm/v1/models", "", aliceToken, 200, "completion queued"},
			{"refusal", "POST", "/llm/v1/chat/completions", chat, bobToken, 403, map[string]string{"on": "record written", "off": "record queued"}[mode]},
		} {
			t.Run(mode+"/"+tc.name, func(t *testing.T) {
				mu.Lock()
				order = nil
				mu.Unlock()
				req, err := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+tc.token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != tc.status {
					t.Fatalf("status %d (%v): %s", resp.StatusCode, err, body)
				}
				if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
					t.Fatalf("Content-Length %d, Transfer-Encoding %v for %d bytes", resp.ContentLength, resp.TransferEncoding, len(body))
				}
				e.event()
				var ev []string
				waitUntil(t, "the handler's return", func() bool {
					mu.Lock()
					defer mu.Unlock()
					ev = slices.Clone(order)
					return slices.Contains(ev, "returned")
				})
				at := func(s string) int { return slices.Index(ev, s) }
				out := at("returned")
				if f := at("flush"); f >= 0 {
					out = f
				}
				if early := at("flush") >= 0; early != (tc.status == 200) {
					t.Errorf("answer flushed before the handler returned: %v (%v)", early, ev)
				}
				if f := at(tc.final); f < 0 || f > out {
					t.Errorf("the answer left before %q: %v", tc.final, ev)
				}
			})
		}
	}
}
