package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestInFlightPerSubjectEndToEnd: with --http-max-requests-per-subject 2,
// a user whose two calls are held upstream is refused a third (429 with
// Retry-After, in the OpenAI and the Anthropic format, through any agent)
// while another user gets through; once the held calls end the user is
// served again.
func TestInFlightPerSubjectEndToEnd(t *testing.T) {
	t.Parallel()
	e := startLLM(t, "--http-max-requests-per-subject", "2")
	entered, release := make(chan struct{}), make(chan struct{})
	held := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		e.fake.ServeHTTP(w, r)
	}))
	t.Cleanup(held.Close)
	mustExec(t, e.admin,
		`CREATE MODEL PROVIDER SERVICE system.ai.held_prod OPTIONS (provider 'openai', url '`+held.URL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00')`,
		`CREATE MODEL SERVICE system.ai.slow OPTIONS (destinations 'held_prod/gpt-4.1=100')`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.slow TO "data-analysts"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.slow TO "claude-code"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "bob@example.com"`)
	waitSnapshotCurrent(t, e.s)
	alice := e.token(t, "alice@example.com", "claude-code")
	aliceCodex := e.token(t, "alice@example.com", "codex")
	bob := e.token(t, "bob@example.com", "claude-code")

	post := func(path, token, body string) (*http.Response, string) {
		t.Helper()
		return llmPost(t, e.base, path, token, body)
	}
	slow := `{"model":"slow","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	chat := `{"model":"frontier","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	msgs := `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	done := make(chan int, 2)
	for range 2 {
		go func() {
			resp, _ := post("/v1/chat/completions", alice, slow)
			done <- resp.StatusCode
		}()
	}
	for range 2 {
		<-entered
	}
	for _, tc := range []struct {
		name, path, token, body string
		status                  int
		want                    string
	}{
		{"alice, OpenAI format", "/v1/chat/completions", alice, chat, 429, `"code":"rate_limit_exceeded"`},
		{"alice through another agent", "/v1/chat/completions", aliceCodex, chat, 429, `"code":"rate_limit_exceeded"`},
		{"alice, Anthropic format", "/v1/messages", alice, msgs, 429, `"type":"rate_limit_error"`},
		{"bob", "/v1/chat/completions", bob, chat, 200, `"chat.completion"`},
	} {
		resp, body := post(tc.path, tc.token, tc.body)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d %s, want %d with %s", tc.name, resp.StatusCode, body, tc.status, tc.want)
		}
		if tc.status == 429 && (resp.Header.Get("Retry-After") != "1" || !strings.Contains(body, "at most 2 at once")) {
			t.Errorf("%s: Retry-After %q, body %s", tc.name, resp.Header.Get("Retry-After"), body)
		}
	}
	close(release)
	for range 2 {
		if st := <-done; st != 200 {
			t.Errorf("held call: %d", st)
		}
	}
	// The slots come back when the calls end (their audit rows are
	// written before that, so wait for them to be released).
	waitFor(t, 30*time.Second, "alice served again", func() bool {
		resp, _ := post("/v1/chat/completions", alice, chat)
		return resp.StatusCode == 200
	})
	var rows []string
	waitFor(t, 30*time.Second, "the refusals' audit rows", func() bool {
		rows = queryRows(t, e.admin, `SELECT decision FROM system.access.audit WHERE service_name = 'llm' AND response.status_code = 429`)
		return len(rows) >= 3
	})
	if len(rows) != 3 || rows[0] != "deny" {
		t.Errorf("refusals audited: %v, want 3", rows)
	}
}
