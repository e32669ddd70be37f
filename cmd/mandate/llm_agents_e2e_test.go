package main

// Coding agents through the binary in real tool loops against the fake
// upstream: Claude Code asking for a tool (Bash) and answering after its
// result, against an Anthropic destination and, translated, against an
// OpenAI-style one; Codex CLI running a shell command; each turn's usage
// rows (tokens, cache tokens, cost by the prices, streaming, ttft); and
// refusals the agent shows at once instead of retrying.

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// claudeEnv is Claude Code's environment for model service model.
func (e *llmEnv) claudeEnv(token, model string) []string {
	return []string{"ANTHROPIC_BASE_URL=" + e.base, "ANTHROPIC_AUTH_TOKEN=" + token,
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "ANTHROPIC_MODEL=" + model,
		"ANTHROPIC_SMALL_FAST_MODEL=" + model, "ANTHROPIC_DEFAULT_HAIKU_MODEL=" + model, "ANTHROPIC_DEFAULT_SONNET_MODEL=" + model,
		"ANTHROPIC_DEFAULT_OPUS_MODEL=" + model}
}

// codexEnv writes a Codex home whose provider is Mandate (extra is more
// top-level configuration) and returns Codex's environment.
func (e *llmEnv) codexEnv(t *testing.T, token, extra string) []string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "codex")
	cfg := extra + "model = \"frontier\"\nmodel_provider = \"mandate\"\n\n[model_providers.mandate]\nname = \"Mandate\"\n" +
		"base_url = \"" + e.base + "/v1\"\nenv_key = \"MANDATE_TOKEN\"\nwire_api = \"responses\"\n"
	if err := os.MkdirAll(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"MANDATE_TOKEN=" + token, "CODEX_HOME=" + home}
}

// price is a destination's USD per million tokens: input, output, cached
// input, cache writes.
type price struct{ in, out, cached, write float64 }

// checkTurn asserts the usage rows of one agent turn (the tool call and
// the answer after its result): every row a streamed 200 with tokens, the
// cache counts the fake reported, a time to first token, and cost_usd the
// row's counts at the destination's prices.
func checkTurn(t *testing.T, e *llmEnv, where string, want int, cached, written int64, p price) {
	t.Helper()
	rows := e.usage(t, `SELECT status_code, streaming, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
		total_tokens, cost_usd::text, ttft_ms > 0, provider, model FROM system.ai_gateway.usage WHERE `+where+` ORDER BY event_time`, want)
	if len(rows) != want {
		t.Fatalf("%d usage rows for %s, want %d:\n%s", len(rows), where, want, strings.Join(rows, "\n"))
	}
	for _, r := range rows {
		f := strings.Split(r, "|")
		n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
		cost, _ := strconv.ParseFloat(f[7], 64)
		in, out, c, w, total := n(2), n(3), n(4), n(5), n(6)
		byHand := (float64(in)*p.in + float64(out)*p.out + float64(c)*p.cached + float64(w)*p.write) / 1e6
		if f[0] != "200" || f[1] != "true" || f[8] != "true" || in <= 0 || out <= 0 || c != cached || w != written ||
			total != in+out+c+w || fmt.Sprintf("%.9f", cost) != fmt.Sprintf("%.9f", byHand) {
			t.Errorf("usage row %s (cost by hand %.9f)", r, byHand)
		}
	}
}

// TestLLMAgentsEndToEnd: Claude Code and Codex CLI complete tool-use turns
// through `mandate serve`, and refusals reach them in their own format.
func TestLLMAgentsEndToEnd(t *testing.T) {
	t.Parallel()
	bin := llmClients(t)
	e := startLLM(t)
	aliceCC := e.token(t, "alice@example.com", "claude-code")
	aliceCodex := e.token(t, "alice@example.com", "codex")
	anthropicPrice := price{3, 15, 0.30, 3.75}
	openAIPrice := price{2, 8, 0.50, 2} // no cache-write price: input's

	// The fake calls the Bash tool (its command "test"), then answers
	// with the tool's result; it reports cache reads and writes.
	const ccPrompt = "check the tree mock:tool Bash mock:cached=1000 mock:cache_write=2000"
	for _, tc := range []struct{ name, model, service string }{
		{"claude-code tool turn to anthropic", "claude", "system.ai.claude"},
		{"claude-code tool turn translated to openai", "frontier", "system.ai.frontier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runSandboxed(t, bin, e.claudeEnv(aliceCC, tc.model), "claude", "-p", ccPrompt, "--allowedTools", "Bash")
			if !strings.Contains(out, "Tool result: (Bash completed with no output)") {
				t.Fatalf("claude -p answered %q", out)
			}
			p := anthropicPrice
			if tc.model == "frontier" {
				p = openAIPrice
			}
			checkTurn(t, e, `run_as = 'claude-code' AND service_name = '`+tc.service+`'`, 2, 1000, 2000, p)
		})
	}

	t.Run("codex shell turn", func(t *testing.T) {
		out := runSandboxed(t, bin, e.codexEnv(t, aliceCodex, ""), "codex", "exec", "--skip-git-repo-check",
			"check the tree mock:tool mock:cached=500 mock:reasoning=7")
		if !strings.Contains(out, "Tool result:") || !strings.Contains(out, "Process exited with code 1") {
			t.Fatalf("codex exec answered %q", out)
		}
		checkTurn(t, e, `run_as = 'codex'`, 2, 500, 0, openAIPrice)
		rows := queryRows(t, e.admin, `SELECT reasoning_tokens FROM system.ai_gateway.usage WHERE run_as = 'codex'`)
		if strings.Join(rows, ",") != "7,7" {
			t.Errorf("codex reasoning tokens %v", rows)
		}
	})

	// A user whose token limit is smaller than one of Claude Code's
	// requests (its max_tokens alone is 32000), and a user whose budget is
	// spent: the agents stop at once with Mandate's message.
	mustExec(t, e.admin,
		`CREATE USER "carol@example.com"`,
		`ALTER GROUP "data-analysts" ADD USER "carol@example.com"`,
		`ALTER MODEL SERVICE system.ai.claude SET RATE LIMIT 100 REQUESTS, 20000 TOKENS PER MINUTE FOR USER "carol@example.com"`,
		`CREATE BUDGET carol_cap LIMIT 0.000001 USD PER MONTH FOR USER "carol@example.com" ON MODEL SERVICE system.ai.frontier`)
	waitSnapshotCurrent(t, e.s)
	carolCC := e.token(t, "carol@example.com", "claude-code")
	carolCodex := e.token(t, "carol@example.com", "codex")
	refused := func(t *testing.T, q string) {
		t.Helper()
		waitFor(t, 30*time.Second, "the refusal's audit row", func() bool { return len(queryRows(t, e.admin, q)) > 0 })
		if rows := queryRows(t, e.admin, q); len(rows) != 1 {
			t.Errorf("%d refusals (the agent retried), want 1", len(rows))
		}
	}

	t.Run("claude-code over a token limit", func(t *testing.T) {
		before := e.fake.Count()
		stdout, stderr, err := runAgent(t, 40*time.Second, bin, e.claudeEnv(carolCC, "claude"), "claude", "-p", "hello")
		if err == nil || !strings.Contains(stdout+stderr, "429") || !strings.Contains(stdout+stderr, "request too large") {
			t.Fatalf("claude -p: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		if e.fake.Count() != before {
			t.Errorf("the upstream was called")
		}
		refused(t, `SELECT 1 FROM system.access.audit WHERE service_name = 'llm' AND decision = 'deny'
			AND response.status_code = 429 AND user_identity = 'carol@example.com' AND action_name = 'messages'`)
	})

	t.Run("codex over its budget", func(t *testing.T) {
		// Codex offers web_search, which a budget refuses (billed per use):
		// under a budget it is configured without it.
		stdout, stderr, err := runAgent(t, 40*time.Second, bin, e.codexEnv(t, carolCodex, "web_search = \"disabled\"\n"),
			"codex", "exec", "--skip-git-repo-check", "hello")
		if err == nil || !strings.Contains(stdout+stderr, "Quota exceeded") {
			t.Fatalf("codex exec: %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
		}
		refused(t, `SELECT 1 FROM system.access.audit WHERE service_name = 'llm' AND decision = 'deny'
			AND response.status_code = 429 AND user_identity = 'carol@example.com' AND action_name = 'responses'`)
	})

	t.Run("codex under a budget with web search priced", func(t *testing.T) {
		// Once the provider service prices web search (tool_prices),
		// Codex as installed, web_search offered, works under a budget:
		// the gateway bounds the searches (max_tool_calls) and bills them.
		mustExec(t, e.admin,
			`ALTER MODEL PROVIDER SERVICE system.ai.openai_prod SET OPTIONS (provider 'openai', url '`+e.fakeURL+`/v1', api_key '`+e2eOpenAIKey+`',
				prices 'gpt-4.1=2.00/8.00/0.50', tool_prices 'web_search=10.00')`,
			`CREATE USER "dan@example.com"`,
			`ALTER GROUP "data-analysts" ADD USER "dan@example.com"`,
			`CREATE BUDGET dan_cap LIMIT 5 USD PER MONTH FOR USER "dan@example.com" ON MODEL SERVICE system.ai.frontier`)
		waitSnapshotCurrent(t, e.s)
		danCodex := e.token(t, "dan@example.com", "codex")
		before := len(e.fake.Requests())
		out := runSandboxed(t, bin, e.codexEnv(t, danCodex, ""), "codex", "exec", "--skip-git-repo-check", "hello mock:websearch=2")
		if !strings.Contains(out, "Echo: hello") {
			t.Fatalf("codex exec answered %q", out)
		}
		var want []string
		for _, rec := range e.fake.Requests()[before:] {
			req := rec.JSON()
			tools, _ := req["tools"].([]any)
			offered := false
			for _, tl := range tools {
				if tm, _ := tl.(map[string]any); strings.HasPrefix(fmt.Sprint(tm["type"]), "web_search") {
					offered = true
				}
			}
			u := rec.Usage
			if !offered || u == nil {
				t.Fatalf("codex's request %s (billed %+v): want web search offered", rec.Body, u)
			}
			if mtc, ok := req["max_tool_calls"].(float64); !ok || mtc < 1 || int(mtc) < u.WebSearches {
				t.Errorf("codex's request went without a bound on its tool calls: max_tool_calls %v", req["max_tool_calls"])
			}
			t.Logf("codex offered web search; max_tool_calls %v upstream; %d searches billed", req["max_tool_calls"], u.WebSearches)
			// gpt-4.1: $2 input, $0.50 cached, $8 output per million tokens; $10 per 1,000 searches
			want = append(want, strconv.FormatInt(int64(u.Input-u.Cached)*2_000+int64(u.Cached)*500+int64(u.Output)*8_000+int64(u.WebSearches)*10_000_000, 10))
		}
		rows := e.usage(t, `SELECT CAST(cost_usd * 1000000000 AS BIGINT) FROM system.ai_gateway.usage
			WHERE requester = 'dan@example.com' AND status_code = 200 ORDER BY event_time`, len(want))
		if len(want) == 0 || strings.Join(rows, ",") != strings.Join(want, ",") {
			t.Errorf("codex's usage rows cost %v nano-USD, by hand %v", rows, want)
		}
	})
}
