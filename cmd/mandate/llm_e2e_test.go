package main

// The LLM gateway through the binary, against the fake OpenAI/Anthropic
// upstream (gateway/llm/llmtest): the official OpenAI and Anthropic SDKs
// (Node, from testdata/llm-clients, and openai-go), Claude Code and Codex
// CLI each completing a turn, the refusals, a fallback, and the usage rows
// they leave in system.ai_gateway.usage.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// llmClientsDir holds the pinned LLM clients (make deps runs npm ci there)
// and the SDK scripts.
const llmClientsDir = "../../testdata/llm-clients"

// Provider keys the fake upstream demands: only the gateway holds them.
const (
	e2eOpenAIKey    = "sk-openai-upstream-e2e"
	e2eAnthropicKey = "sk-ant-upstream-e2e"
)

// llmEnv is a `mandate serve` with model services in front of the fake
// upstream, and the access tokens of the test's principals.
type llmEnv struct {
	s     *server
	admin *pgx.Conn
	fake  *llmtest.Server
	down  *llmtest.Server
	base  string // http://HOST:PORT/llm
	// fakeURL is the fake upstream's base URL.
	fakeURL string
}

// startLLM starts the binary and registers, in SQL, the provider services
// (one of them always answering 429), the model services and their grants.
func startLLM(t testing.TB, args ...string) *llmEnv {
	t.Helper()
	return startLLMWith(t, serverOpts{args: args})
}

// startLLMWith is startLLM with more of the server's options (flags after
// --dev, environment).
func startLLMWith(t testing.TB, o serverOpts) *llmEnv {
	t.Helper()
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey, fake.AnthropicKey = e2eOpenAIKey, e2eAnthropicKey
	down, downURL := llmtest.Start(t)
	down.ForceStatus = http.StatusTooManyRequests
	o.args = append([]string{"--dev"}, o.args...)
	s := startServer(t, o)
	admin := s.admin(t)
	mustExec(t, admin,
		`CREATE GROUP "data-analysts"`,
		`CREATE USER "alice@example.com"`,
		`CREATE USER "bob@example.com"`,
		`ALTER GROUP "data-analysts" ADD USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "claude-code"`,
		`CREATE SERVICE PRINCIPAL "codex"`,
		`CREATE SERVICE PRINCIPAL "rogue-agent"`,
		`CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url '`+fakeURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00/0.50')`,
		`CREATE MODEL PROVIDER SERVICE system.ai.anthropic_prod OPTIONS (provider 'anthropic', url '`+fakeURL+`', api_key '`+e2eAnthropicKey+`', prices 'claude-sonnet-4-5=3.00/15.00/0.30/3.75')`,
		`CREATE MODEL PROVIDER SERVICE system.ai.openai_down OPTIONS (provider 'openai', url '`+downURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00')`,
		`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=100', tags '{"team":"platform"}')`,
		`CREATE MODEL SERVICE system.ai.claude OPTIONS (destinations 'anthropic_prod/claude-sonnet-4-5=100')`,
		`CREATE MODEL SERVICE system.ai.resilient OPTIONS (destinations 'openai_down/gpt-4.1=100', fallbacks 'anthropic_prod/claude-sonnet-4-5', timeout '30s')`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "data-analysts"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.claude TO "data-analysts"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.resilient TO "data-analysts"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "claude-code"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.claude TO "claude-code"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "codex"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "bob@example.com"`,
		`REVOKE EXECUTE ON MODEL SERVICE system.ai.frontier FROM "bob@example.com"`)
	waitSnapshotCurrent(t, s) // the grants above apply before the first call
	return &llmEnv{s: s, admin: admin, fake: fake, down: down, base: "http://" + s.httpAddr + "/llm", fakeURL: fakeURL}
}

// token creates an access token for user (through agent when not "") and
// returns it.
func (e *llmEnv) token(t testing.TB, user, agent string) string {
	t.Helper()
	q := `CREATE ACCESS TOKEN FOR USER "` + user + `"`
	if agent != "" {
		q += ` VIA "` + agent + `"`
	}
	var tok string
	if err := e.admin.QueryRow(t.Context(), q).Scan(&tok); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return tok
}

// usage returns the rows of q over system.ai_gateway.usage once want rows
// are there (usage rows of calls answered a moment ago).
func (e *llmEnv) usage(t testing.TB, q string, want int) []string {
	t.Helper()
	var rows []string
	waitFor(t, 30*time.Second, fmt.Sprintf("%d usage rows for %s", want, q), func() bool {
		rows = queryRows(t, e.admin, q)
		return len(rows) >= want
	})
	return rows
}

// llmClients returns the pinned clients' bin directory (node, claude,
// codex), failing under CI and skipping elsewhere when they are missing.
func llmClients(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join(llmClientsDir, "node_modules", ".bin"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"node", "claude", "codex"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			missingTool(t, "the LLM clients ("+tool+")", "npm ci in testdata/llm-clients")
		}
	}
	return bin
}

// runSandboxed runs one client in a temporary HOME and working directory,
// with every proxy variable pointing at a closed port and only loopback
// exempt: it reaches Mandate and nothing else, and writes only there.
func runSandboxed(t *testing.T, bin string, env []string, name string, args ...string) string {
	t.Helper()
	stdout, stderr, err := runAgent(t, 2*time.Minute, bin, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout, stderr)
	}
	t.Logf("%s:\n%s", name, stdout)
	return stdout
}

// runAgent is runSandboxed that returns the client's failure (killed after
// timeout) with what it wrote.
func runAgent(t *testing.T, timeout time.Duration, bin string, env []string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	home := t.TempDir()
	work := filepath.Join(home, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Dir = work
	cmd.Env = append([]string{
		"PATH=" + bin + ":/usr/bin:/bin", "HOME=" + home, "TMPDIR=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"HTTP_PROXY=http://127.0.0.1:9", "HTTPS_PROXY=http://127.0.0.1:9", "ALL_PROXY=http://127.0.0.1:9",
		"http_proxy=http://127.0.0.1:9", "https_proxy=http://127.0.0.1:9", "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost",
	}, env...)
	cmd.Stdin = strings.NewReader("")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (killed after %s)", err, timeout)
	}
	return out.String(), errOut.String(), err
}

// TestLLMGatewayEndToEnd: real clients through `mandate serve`, each call a
// usage row; the upstream sees the provider keys and a pseudonym, never an
// inbound token or a name.
func TestLLMGatewayEndToEnd(t *testing.T) {
	t.Parallel()
	e := startLLM(t)
	alice := e.token(t, "alice@example.com", "")
	aliceCC := e.token(t, "alice@example.com", "claude-code")
	aliceCodex := e.token(t, "alice@example.com", "codex")
	checkUpstream := func(t *testing.T, inbound ...string) {
		t.Helper()
		for _, rec := range e.fake.Requests() {
			for _, tok := range inbound {
				if strings.Contains(fmt.Sprint(rec.Header), tok) || bytes.Contains(rec.Body, []byte(tok)) {
					t.Fatalf("the upstream got an inbound token (%s %s)", rec.Method, rec.Path)
				}
			}
			if bytes.Contains(rec.Body, []byte("alice@example.com")) {
				t.Fatalf("the upstream learnt alice's name: %s", rec.Body)
			}
		}
	}

	t.Run("openai-go", func(t *testing.T) {
		c := openai.NewClient(option.WithBaseURL(e.base+"/v1/"), option.WithAPIKey(alice), option.WithMaxRetries(0))
		resp, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier", MaxTokens: openai.Int(64),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello from go")}},
			option.WithHeader("X-Mandate-Request-Tags", `{"project":"checkout"}`))
		if err != nil || resp.Choices[0].Message.Content != "Echo: hello from go" {
			t.Fatalf("chat: %+v %v", resp, err)
		}
		st := c.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: "claude",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream from go to claude")}})
		var text string
		for st.Next() {
			if ch := st.Current(); len(ch.Choices) > 0 {
				text += ch.Choices[0].Delta.Content
			}
		}
		if err := st.Err(); err != nil || text != "Echo: stream from go to claude" {
			t.Fatalf("stream: %q %v", text, err)
		}
		rows := e.usage(t, `SELECT service_name, provider_service, provider, model, requester, coalesce(run_as, ''), status_code,
			input_tokens > 0, output_tokens > 0, cost_usd > 0, streaming, request_tags->>'project', request_tags->>'team'
			FROM system.ai_gateway.usage WHERE requester = 'alice@example.com' AND run_as IS NULL ORDER BY event_time`, 2)
		want := []string{
			"system.ai.frontier|system.ai.openai_prod|openai|gpt-4.1|alice@example.com||200|true|true|true|false|checkout|platform",
			"system.ai.claude|system.ai.anthropic_prod|anthropic|claude-sonnet-4-5|alice@example.com||200|true|true|true|true||",
		}
		if strings.Join(rows[:2], "\n") != strings.Join(want, "\n") {
			t.Errorf("usage rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
		}
		checkUpstream(t, alice)
	})

	bin := ""
	t.Run("node-sdks", func(t *testing.T) {
		bin = llmClients(t)
		run := func(script string, env ...string) string {
			return runSandboxed(t, bin, append(env, "MANDATE_TOKEN="+alice), "node", filepath.Join(must(filepath.Abs(llmClientsDir)), script))
		}
		out := run("openai.mjs", "MANDATE_LLM_URL="+e.base+"/v1", "MANDATE_MODEL=frontier")
		checkLines(t, out, []string{
			`openai chat "Echo: hello from node" true`,
			`openai stream "Echo: stream a longer answer from node" true true`,
			`openai tool_call tool_calls get_weather {"city":"test"}`,
			`openai tool_result "Tool result: sunny, 21 C"`,
			`openai embeddings 2 true`,
			`openai responses "Echo: hello responses"`,
			`openai models claude,frontier,resilient`,
			`openai unknown 404 model_not_found`,
		})
		// The OpenAI SDK to an Anthropic destination (translated).
		out = run("openai.mjs", "MANDATE_LLM_URL="+e.base+"/v1", "MANDATE_MODEL=claude", "MANDATE_EMBEDDINGS=off")
		checkLines(t, out, []string{
			`openai chat "Echo: hello from node" true`,
			`openai stream "Echo: stream a longer answer from node" true true`,
			`openai tool_call tool_calls get_weather {"city":"test"}`,
			`openai tool_result "Tool result: sunny, 21 C"`,
		})
		// The Anthropic SDK (x-api-key), to Anthropic and, translated, to OpenAI.
		for _, model := range []string{"claude", "frontier"} {
			out = run("anthropic.mjs", "MANDATE_LLM_BASE="+e.base, "MANDATE_MODEL="+model)
			checkLines(t, out, []string{
				`anthropic message "Echo: hello from node" end_turn true`,
				`anthropic stream "Echo: stream a longer answer from node" true true`,
				`anthropic tool_use tool_use get_weather {"city":"test"}`,
				`anthropic tool_result "Tool result: sunny, 21 C"`,
				`anthropic count_tokens true`,
				`anthropic unknown 404 not_found_error`,
			})
		}
		checkUpstream(t, alice)
	})

	t.Run("claude-code", func(t *testing.T) {
		bin = llmClients(t)
		out := runSandboxed(t, bin, []string{"ANTHROPIC_BASE_URL=" + e.base, "ANTHROPIC_AUTH_TOKEN=" + aliceCC,
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1", "ANTHROPIC_MODEL=claude",
			"ANTHROPIC_SMALL_FAST_MODEL=claude", "ANTHROPIC_DEFAULT_HAIKU_MODEL=claude", "ANTHROPIC_DEFAULT_SONNET_MODEL=claude",
			"ANTHROPIC_DEFAULT_OPUS_MODEL=claude"}, "claude", "-p", "say hello to mandate")
		if !strings.Contains(out, "say hello to mandate") {
			t.Fatalf("claude -p answered %q", out)
		}
		rows := e.usage(t, `SELECT service_name, provider, status_code, streaming, input_tokens > 0, output_tokens > 0, ttft_ms > 0
			FROM system.ai_gateway.usage WHERE run_as = 'claude-code' AND requester = 'alice@example.com'`, 1)
		for _, r := range rows {
			if r != "system.ai.claude|anthropic|200|true|true|true|true" {
				t.Errorf("claude-code usage row %s", r)
			}
		}
		checkUpstream(t, aliceCC)
	})

	t.Run("codex", func(t *testing.T) {
		bin = llmClients(t)
		home := t.TempDir()
		cfg := "model = \"frontier\"\nmodel_provider = \"mandate\"\n\n[model_providers.mandate]\nname = \"Mandate\"\n" +
			"base_url = \"" + e.base + "/v1\"\nenv_key = \"MANDATE_TOKEN\"\nwire_api = \"responses\"\n"
		if err := os.MkdirAll(filepath.Join(home, "codex"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, "codex", "config.toml"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		out := runSandboxed(t, bin, []string{"MANDATE_TOKEN=" + aliceCodex, "CODEX_HOME=" + filepath.Join(home, "codex")},
			"codex", "exec", "--skip-git-repo-check", "say hello to mandate")
		if !strings.Contains(out, "Echo: say hello to mandate") {
			t.Fatalf("codex exec answered %q", out)
		}
		rows := e.usage(t, `SELECT service_name, provider, model, status_code, streaming, output_tokens > 0
			FROM system.ai_gateway.usage WHERE run_as = 'codex'`, 1)
		for _, r := range rows {
			if r != "system.ai.frontier|openai|gpt-4.1|200|true|true" {
				t.Errorf("codex usage row %s", r)
			}
		}
		checkUpstream(t, aliceCodex)
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestLLMRefusalsEndToEnd: each refusal is a clear error in the client's
// format, an audit row, and no upstream call; a fallback shows both
// attempts.
func TestLLMRefusalsEndToEnd(t *testing.T) {
	t.Parallel()
	e := startLLM(t)
	alice := e.token(t, "alice@example.com", "claude-code")
	bob := e.token(t, "bob@example.com", "claude-code")
	rogue := e.token(t, "alice@example.com", "rogue-agent")
	var doomed string
	if err := e.admin.QueryRow(t.Context(), `CREATE ACCESS TOKEN doomed FOR USER "alice@example.com"`).Scan(&doomed); err != nil {
		t.Fatal(err)
	}
	mustExec(t, e.admin, `DROP ACCESS TOKEN doomed`)

	chat := `{"model":"frontier","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	msgs := `{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	big := bytes.Repeat([]byte("x"), 33<<20)
	cases := []struct {
		name, path, token, body string
		raw                     []byte
		status                  int
		want                    string
		action                  string
	}{
		{"no EXECUTE (user)", "/v1/chat/completions", bob, chat, nil, 403, `lacks EXECUTE on MODEL SERVICE system.ai.frontier`, "chat.completions"},
		{"no EXECUTE (agent)", "/v1/chat/completions", rogue, chat, nil, 403, `actor \"rogue-agent\" lacks EXECUTE`, "chat.completions"},
		{"revoked token", "/v1/messages", doomed, msgs, nil, 401, `"authentication_error"`, "messages"},
		{"unknown token", "/v1/messages", "mnd_" + strings.Repeat("A", 43), msgs, nil, 401, `"authentication_error"`, "messages"},
		{"unknown model service", "/v1/chat/completions", alice, strings.Replace(chat, "frontier", "nope", 1), nil, 404, `"code":"model_not_found"`, "chat.completions"},
		{"malformed body", "/v1/messages", alice, `{"model":"claude","messages":[`, nil, 400, `"invalid_request_error"`, "messages"},
		{"oversized body", "/v1/chat/completions", alice, "", big, 413, `larger than`, "chat.completions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := e.fake.Count()
			body := tc.raw
			if body == nil {
				body = []byte(tc.body)
			}
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.base+tc.path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if strings.HasPrefix(tc.path, "/v1/messages") {
				req.Header.Set("X-Api-Key", tc.token)
				req.Header.Set("Anthropic-Version", "2023-06-01")
			} else {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.want) {
				t.Fatalf("%d %s, want %d with %s", resp.StatusCode, b, tc.status, tc.want)
			}
			if e.fake.Count() != before {
				t.Errorf("the upstream was called")
			}
			q := fmt.Sprintf(`SELECT action_name, decision FROM system.access.audit WHERE service_name = 'llm' AND response.status_code = %d AND action_name = '%s'`, tc.status, tc.action)
			if tc.status == 401 {
				q = `SELECT action_name, decision FROM system.access.audit WHERE service_name = 'llm' AND response.status_code = 401`
			}
			deadline := time.Now().Add(30 * time.Second)
			for len(queryRows(t, e.admin, q)) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no audit row for the refusal; the LLM rows:\n%s", strings.Join(queryRows(t, e.admin,
						`SELECT action_name, decision, response, reason FROM system.access.audit WHERE service_name = 'llm'`), "\n"))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	t.Run("fallback", func(t *testing.T) {
		// claude-code holds no EXECUTE on resilient: alice herself calls.
		direct := e.token(t, "alice@example.com", "")
		c := openai.NewClient(option.WithBaseURL(e.base+"/v1/"), option.WithAPIKey(direct), option.WithMaxRetries(0))
		resp, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "resilient", MaxTokens: openai.Int(20),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("fall back")}})
		if err != nil || resp.Choices[0].Message.Content != "Echo: fall back" {
			t.Fatalf("fallback: %+v %v", resp, err)
		}
		rows := e.usage(t, `SELECT provider_service, json_array_length(routing), routing->0->>'service', routing->0->>'status', routing->1->>'service', routing->1->>'status'
			FROM system.ai_gateway.usage WHERE service_name = 'system.ai.resilient'`, 1)
		if rows[0] != "system.ai.anthropic_prod|2|system.ai.openai_down|429|system.ai.anthropic_prod|200" {
			t.Errorf("fallback row %s", rows[0])
		}
		if e.down.Count() != 1 {
			t.Errorf("the failing destination got %d requests", e.down.Count())
		}
	})
}
