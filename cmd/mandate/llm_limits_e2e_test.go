package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// llmPost sends one LLM request with token in the client's header
// (x-api-key for Anthropic's paths), and header's name/value pairs, and
// returns the answer.
func llmPost(t testing.TB, base, path, token, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if strings.HasPrefix(path, "/v1/messages") {
		req.Header.Set("X-Api-Key", token)
		req.Header.Set("Anthropic-Version", "2023-06-01")
	} else {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return &http.Response{Header: http.Header{}}, ""
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestLLMLimitsEndToEnd: rate limits and budgets defined in SQL hold at the
// LLM endpoint of `mandate serve` — refusals in the client's format with
// Retry-After and the x-ratelimit-* headers, no upstream call, an audit
// row each; a budget under 32 concurrent callers is never overrun by more
// than one call; SHOW BUDGETS shows the live spend; a call without
// max_tokens under a budget is held to the default cap upstream.
func TestLLMLimitsEndToEnd(t *testing.T) {
	t.Parallel()
	e := startLLM(t)
	mustExec(t, e.admin,
		`CREATE USER "carol@example.com"`, `CREATE USER "dave@example.com"`, `CREATE USER "erin@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "carol@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.claude TO "carol@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "dave@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "erin@example.com"`)
	carol := e.token(t, "carol@example.com", "")
	dave := e.token(t, "dave@example.com", "")
	erin := e.token(t, "erin@example.com", "")
	// When carol's first admitted call was sent, and the month dave's
	// budget was spent in: the restart's checks hold while carol's window
	// still counts those calls and in that month.
	var carolFirst, daveMonth time.Time

	t.Run("rate limit", func(t *testing.T) {
		mustExec(t, e.admin,
			`ALTER MODEL SERVICE system.ai.frontier SET RATE LIMIT 3 REQUESTS PER MINUTE FOR USER "carol@example.com"`,
			`ALTER MODEL SERVICE system.ai.claude SET RATE LIMIT 1 REQUESTS, 100000 TOKENS PER MINUTE FOR USER "carol@example.com"`)
		chat := `{"model":"frontier","max_tokens":20,"messages":[{"role":"user","content":"limited"}]}`
		carolFirst = time.Now()
		for i := range 3 {
			resp, body := llmPost(t, e.base, "/v1/chat/completions", carol, chat)
			if resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-limit-requests") != "3" ||
				resp.Header.Get("x-ratelimit-remaining-requests") != strconv.Itoa(2-i) {
				t.Fatalf("call %d: %d %v %s", i, resp.StatusCode, resp.Header, body)
			}
		}
		before := e.fake.Count()
		resp, body := llmPost(t, e.base, "/v1/chat/completions", carol, chat)
		ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		if resp.StatusCode != 429 || ra < 1 || ra > 61 || resp.Header.Get("x-ratelimit-limit-requests") != "3" ||
			resp.Header.Get("x-ratelimit-remaining-requests") != "0" || resp.Header.Get("x-ratelimit-reset-requests") == "" ||
			!strings.Contains(body, `"code":"rate_limit_exceeded"`) {
			t.Fatalf("over the limit: %d %v %s", resp.StatusCode, resp.Header, body)
		}
		// Anthropic's client format: its error type and headers.
		msgs := `{"model":"claude","max_tokens":20,"messages":[{"role":"user","content":"limited"}]}`
		if resp, body := llmPost(t, e.base, "/v1/messages", carol, msgs); resp.StatusCode != 200 ||
			resp.Header.Get("anthropic-ratelimit-requests-remaining") != "0" || resp.Header.Get("anthropic-ratelimit-tokens-limit") != "100000" {
			t.Fatalf("anthropic call: %d %v %s", resp.StatusCode, resp.Header, body)
		}
		before++
		resp, body = llmPost(t, e.base, "/v1/messages", carol, msgs)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || resp.Header.Get("anthropic-ratelimit-requests-limit") != "1" ||
			!strings.Contains(body, `"type":"error"`) || !strings.Contains(body, `"type":"rate_limit_error"`) {
			t.Fatalf("anthropic over the limit: %d %v %s", resp.StatusCode, resp.Header, body)
		}
		if n := e.fake.Count(); n != before {
			t.Errorf("refused calls reached the upstream (%d requests, want %d)", n, before)
		}
		rows := e.usage(t, `SELECT service_name, status_code, provider_service IS NULL, routing IS NULL FROM system.ai_gateway.usage
			WHERE requester = 'carol@example.com' AND status_code = 429 ORDER BY service_name`, 2)
		if got := strings.Join(rows, ","); got != "system.ai.claude|429|true|true,system.ai.frontier|429|true|true" {
			t.Errorf("usage rows of the refusals: %s", got)
		}
		audit := queryRows(t, e.admin, `SELECT decision, reason LIKE '%rate%' FROM system.access.audit
			WHERE service_name = 'llm' AND user_identity = 'carol@example.com' AND response.status_code = 429`)
		if len(audit) != 2 {
			t.Errorf("audit rows of the refusals: %v", audit)
		}
	})

	t.Run("budget under 32 concurrent calls", func(t *testing.T) {
		mustExec(t, e.admin, `CREATE BUDGET dave_cap LIMIT 0.02 USD PER MONTH FOR USER "dave@example.com"`)
		chat := `{"model":"frontier","max_tokens":200,"messages":[{"role":"user","content":"spend mock:out=400"}]}`
		before := e.fake.Count()
		ok, refused := spendBudget(t, []string{e.base}, dave, chat)
		daveMonth = monthOf(time.Now())
		if n := e.fake.Count() - before; n != ok {
			t.Errorf("the upstream got %d calls for %d answered", n, ok)
		}
		rows := e.usage(t, `SELECT count(*) FILTER (WHERE status_code = 200), count(*) FILTER (WHERE status_code = 429),
			CAST(sum(cost_usd) * 1000000000 AS BIGINT), CAST(max(cost_usd) * 1000000000 AS BIGINT)
			FROM system.ai_gateway.usage WHERE requester = 'dave@example.com' HAVING count(*) >= `+strconv.Itoa(ok+refused), 1)
		var n200, n429, spent, most int64
		if _, err := fmt.Sscanf(strings.ReplaceAll(rows[0], "|", " "), "%d %d %d %d", &n200, &n429, &spent, &most); err != nil {
			t.Fatalf("%s: %v", rows[0], err)
		}
		const limit = 20_000_000 // nano-USD
		if int(n200) != ok || int(n429) != refused || spent > limit+most || spent < limit/2 {
			t.Errorf("usage: %d answered, %d refused, spent %d nano-USD (largest call %d) against a limit of %d", n200, n429, spent, most, limit)
		}
		t.Logf("%d calls answered, %d refused, spent $%.6f of $0.02", ok, refused, float64(spent)/1e9)
		// SHOW BUDGETS: the live spend, equal to the usage rows' sum.
		rs, err := e.admin.Query(t.Context(), `SHOW BUDGETS`)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for rs.Next() {
			v, err := rs.Values()
			if err != nil {
				t.Fatal(err)
			}
			if v[0] != "dave_cap" {
				continue
			}
			found = true
			nanos := func(x any) int64 {
				n, _ := x.(pgtype.Numeric)
				f, _ := n.Float64Value()
				return int64(f.Float64*1e9 + 0.5)
			}
			if nanos(v[7]) != spent || nanos(v[8]) != max(limit-spent, 0) {
				t.Errorf("SHOW BUDGETS: spent %d, remaining %d nano-USD; the usage rows spent %d", nanos(v[7]), nanos(v[8]), spent)
			}
		}
		if rs.Err() != nil || !found {
			t.Errorf("SHOW BUDGETS: %v, dave_cap found %v", rs.Err(), found)
		}
	})

	t.Run("default output cap under a budget", func(t *testing.T) {
		mustExec(t, e.admin, `CREATE BUDGET erin_cap LIMIT 5 USD PER MONTH FOR USER "erin@example.com"`)
		before := len(e.fake.Requests())
		resp, body := llmPost(t, e.base, "/v1/chat/completions", erin, `{"model":"frontier","messages":[{"role":"user","content":"uncapped"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		recs := e.fake.Requests()
		if len(recs) != before+1 {
			t.Fatalf("%d upstream requests", len(recs)-before)
		}
		var sent map[string]any
		if err := json.Unmarshal(recs[len(recs)-1].Body, &sent); err != nil || sent["max_completion_tokens"] != float64(4096) {
			t.Errorf("upstream body %s", recs[len(recs)-1].Body)
		}
		// Without a budget or token limit the request goes as sent.
		alice := e.token(t, "alice@example.com", "")
		if resp, body := llmPost(t, e.base, "/v1/chat/completions", alice, `{"model":"frontier","messages":[{"role":"user","content":"uncapped"}]}`); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		recs = e.fake.Requests()
		if b := recs[len(recs)-1].Body; bytes.Contains(b, []byte("max_completion_tokens")) || bytes.Contains(b, []byte("max_tokens")) {
			t.Errorf("an unlimited call was capped: %s", b)
		}
	})

	t.Run("unknown price fails closed under a budget", func(t *testing.T) {
		mustExec(t, e.admin,
			`CREATE MODEL PROVIDER SERVICE system.ai.unpriced OPTIONS (provider 'openai', url '`+e.fakeURL+`/v1', api_key '`+e2eOpenAIKey+`')`,
			`CREATE MODEL SERVICE system.ai.cheap OPTIONS (destinations 'unpriced/gpt-4.1=100')`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.cheap TO "erin@example.com"`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.cheap TO "alice@example.com"`)
		chat := `{"model":"cheap","max_tokens":20,"messages":[{"role":"user","content":"no price"}]}`
		before := e.fake.Count()
		resp, body := llmPost(t, e.base, "/v1/chat/completions", erin, chat)
		if resp.StatusCode != 403 || !strings.Contains(body, "price") || !strings.Contains(body, "erin_cap") {
			t.Errorf("a budgeted call to an unpriced destination: %d %s", resp.StatusCode, body)
		}
		if e.fake.Count() != before {
			t.Errorf("the refused call reached the upstream")
		}
		if resp, body := llmPost(t, e.base, "/v1/chat/completions", e.token(t, "alice@example.com", ""), chat); resp.StatusCode != 200 {
			t.Errorf("an unbudgeted call to an unpriced destination: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("tools billed per use fail closed under a budget", func(t *testing.T) {
		// Web search and code execution are billed per use beyond tokens:
		// no token price bounds them, so a budgeted call may not offer
		// them unless the provider service prices web search (tool_prices,
		// which openai_prod has not: the refusal says so); code execution
		// cannot be priced. Without a budget they pass.
		for _, tc := range []struct{ path, body, hint string }{
			{"/v1/messages", `{"model":"frontier","max_tokens":20,"tools":[{"type":"web_search_20250305","name":"web_search","max_uses":5}],"messages":[{"role":"user","content":"search"}]}`,
				"tool_prices 'web_search="},
			{"/v1/chat/completions", `{"model":"frontier","max_tokens":20,"web_search_options":{},"messages":[{"role":"user","content":"search"}]}`,
				"tool_prices 'web_search="},
			{"/v1/responses", `{"model":"frontier","max_output_tokens":20,"tools":[{"type":"code_interpreter","container":{"type":"auto"}}],"input":"run"}`,
				"container time"},
		} {
			before := e.fake.Count()
			resp, body := llmPost(t, e.base, tc.path, erin, tc.body)
			if resp.StatusCode != 400 || !strings.Contains(body, "bills per use") || !strings.Contains(body, "erin_cap") || !strings.Contains(body, tc.hint) {
				t.Errorf("%s: a budgeted call offering a tool billed per use: %d %s", tc.path, resp.StatusCode, body)
			}
			if e.fake.Count() != before {
				t.Errorf("%s: the refused call reached the upstream", tc.path)
			}
		}
		chat := `{"model":"frontier","max_tokens":20,"web_search_options":{},"messages":[{"role":"user","content":"search"}]}`
		if resp, body := llmPost(t, e.base, "/v1/chat/completions", e.token(t, "alice@example.com", ""), chat); resp.StatusCode != 200 {
			t.Errorf("an unbudgeted call offering web search: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("tools billed per use priced by tool_prices", func(t *testing.T) {
		// With tool_prices, a budgeted call offering web or file search
		// passes: it reserves its bound on the uses (the gateway's 8 when
		// the client set none, sent upstream as max_uses or
		// max_tool_calls) and is billed the searches it made.
		mustExec(t, e.admin,
			`CREATE MODEL PROVIDER SERVICE system.ai.anthropic_search OPTIONS (provider 'anthropic', url '`+e.fakeURL+`', api_key '`+e2eAnthropicKey+`',
				prices 'claude-sonnet-4-5=3.00/15.00/0.30/3.75', tool_prices 'web_search=10.00')`,
			`CREATE MODEL PROVIDER SERVICE system.ai.openai_search OPTIONS (provider 'openai', url '`+e.fakeURL+`/v1', api_key '`+e2eOpenAIKey+`',
				prices 'gpt-4.1=2.00/8.00/0.50', tool_prices 'web_search=25')`,
			`ALTER MODEL PROVIDER SERVICE system.ai.openai_search SET OPTIONS (provider 'openai', url '`+e.fakeURL+`/v1', api_key '`+e2eOpenAIKey+`',
				prices 'gpt-4.1=2.00/8.00/0.50', tool_prices 'web_search=10.00, file_search=2.50')`,
			`CREATE MODEL SERVICE system.ai.claude_search OPTIONS (destinations 'anthropic_search/claude-sonnet-4-5=100')`,
			`CREATE MODEL SERVICE system.ai.searching OPTIONS (destinations 'openai_search/gpt-4.1=100')`,
			`CREATE USER "grace@example.com"`, `CREATE USER "heidi@example.com"`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.claude_search TO "grace@example.com"`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.searching TO "grace@example.com"`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.searching TO "heidi@example.com"`,
			`CREATE BUDGET grace_cap LIMIT 5 USD PER MONTH FOR USER "grace@example.com"`,
			`CREATE BUDGET heidi_cap LIMIT 0.05 USD PER MONTH FOR USER "heidi@example.com"`)
		grace, heidi := e.token(t, "grace@example.com", ""), e.token(t, "heidi@example.com", "")
		// sent is the upstream request and what the fake billed for the
		// call just answered.
		sent := func() (map[string]any, *llmtest.Usage) {
			recs := e.fake.Requests()
			rec := recs[len(recs)-1]
			return rec.JSON(), rec.Usage
		}
		// Anthropic web search without max_uses: the gateway sends 8, the
		// provider (asked for 20 searches) stops there.
		resp, body := llmPost(t, e.base, "/v1/messages", grace, `{"model":"claude_search","max_tokens":50,
			"tools":[{"type":"web_search_20250305","name":"web_search"}],"messages":[{"role":"user","content":"search mock:websearch=20"}]}`)
		if resp.StatusCode != 200 {
			t.Fatalf("a budgeted Anthropic web search: %d %s", resp.StatusCode, body)
		}
		req, u := sent()
		tools, _ := req["tools"].([]any)
		if tool, _ := tools[0].(map[string]any); len(tools) != 1 || tool["max_uses"] != float64(8) || u == nil || u.WebSearches != 8 {
			t.Fatalf("upstream tools %v, billed %+v", req["tools"], u)
		}
		// claude-sonnet-4-5: $3 input, $15 output per million tokens; 8 searches at $10 per 1,000
		anthropicCost := int64(u.Input)*3_000 + int64(u.Output)*15_000 + 8*10_000_000
		// Responses, streamed, web and file search without max_tool_calls:
		// max_tool_calls 8 is sent; 2 web searches and 1 file search made.
		resp, body = llmPost(t, e.base, "/v1/responses", grace, `{"model":"searching","stream":true,"max_output_tokens":50,
			"tools":[{"type":"web_search"},{"type":"file_search","vector_store_ids":["vs_1"]}],"input":"search mock:websearch=2 mock:filesearch=1"}`)
		if resp.StatusCode != 200 || !strings.Contains(body, "response.completed") {
			t.Fatalf("a budgeted Responses web search: %d %s", resp.StatusCode, body)
		}
		req, u = sent()
		if req["max_tool_calls"] != float64(8) || u == nil || u.WebSearches != 2 || u.FileSearches != 1 {
			t.Fatalf("upstream max_tool_calls %v, billed %+v", req["max_tool_calls"], u)
		}
		// gpt-4.1: $2 input, $8 output; searches $10, file searches $2.50 per 1,000
		responsesCost := int64(u.Input)*2_000 + int64(u.Output)*8_000 + 2*10_000_000 + 1*2_500_000
		rows := e.usage(t, `SELECT service_name, CAST(cost_usd * 1000000000 AS BIGINT) FROM system.ai_gateway.usage
			WHERE requester = 'grace@example.com' AND status_code = 200 ORDER BY service_name`, 2)
		if want := fmt.Sprintf("system.ai.claude_search|%d,system.ai.searching|%d", anthropicCost, responsesCost); strings.Join(rows, ",") != want {
			t.Errorf("usage rows %v, want %s", rows, want)
		}
		// The uses are in the audit's request_params (the usage table has no column for them).
		audit := queryRows(t, e.admin, `SELECT action_name, request_params->>'web_searches', coalesce(request_params->>'file_searches', '-')
			FROM system.access.audit WHERE service_name = 'llm' AND user_identity = 'grace@example.com' AND response.status_code = 200
			ORDER BY action_name`)
		if got := strings.Join(audit, ","); got != "messages|8|-,responses|2|1" {
			t.Errorf("audit request_params: %s", got)
		}
		waitFor(t, 30*time.Second, "grace_cap's spend to be the two calls'", func() bool {
			return showBudgetSpent(t, e.admin, "grace_cap") == anthropicCost+responsesCost
		})
		// Under 32 concurrent callers a budget of 0.05 USD holds: each call
		// reserves 2 searches (max_tool_calls) and makes 1.
		before := len(e.fake.Requests()) // well below the fake's 1,000 kept
		ok, refused := spendBudgetAt(t, []string{e.base}, "/v1/responses", heidi,
			`{"model":"searching","max_output_tokens":50,"max_tool_calls":2,"tools":[{"type":"web_search"}],"input":"spend mock:websearch=1 mock:out=100"}`)
		searches := 0
		for _, r := range e.fake.Requests()[before:] {
			if r.Usage != nil {
				searches += r.Usage.WebSearches
			}
		}
		if searches != ok {
			t.Errorf("%d calls answered, %d searches made", ok, searches)
		}
		rows = e.usage(t, `SELECT count(*), CAST(sum(cost_usd) * 1000000000 AS BIGINT), CAST(max(cost_usd) * 1000000000 AS BIGINT)
			FROM system.ai_gateway.usage WHERE requester = 'heidi@example.com' AND status_code = 200 HAVING count(*) >= `+strconv.Itoa(ok), 1)
		var n, spent, most int64
		if _, err := fmt.Sscanf(strings.ReplaceAll(rows[0], "|", " "), "%d %d %d", &n, &spent, &most); err != nil {
			t.Fatalf("%s: %v", rows[0], err)
		}
		const limit = 50_000_000 // nano-USD
		if int(n) != ok || spent > limit+most || spent < int64(ok)*10_000_000 || spent < limit/2 {
			t.Errorf("%d calls answered (%d rows), %d refused: spent %d nano-USD (largest call %d) against %d", ok, n, refused, spent, most, limit)
		}
		t.Logf("web searches under a budget: %d calls answered, %d refused, spent $%.6f of $0.05", ok, refused, float64(spent)/1e9)
	})

	t.Run("budget scoped by service and tags", func(t *testing.T) {
		// The README's CREATE BUDGET ... ON MODEL SERVICE ... WHERE TAG:
		// its spend is summed from the usage rows with that tag, so its
		// calls pass and SHOW BUDGETS shows their cost, not the others'.
		mustExec(t, e.admin, `CREATE USER "frank@example.com"`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "frank@example.com"`,
			`CREATE BUDGET frank_checkout LIMIT 5 USD PER MONTH FOR USER "frank@example.com" ON MODEL SERVICE system.ai.frontier
				WHERE TAG project = 'checkout' AND TAG team = 'platform'`)
		frank := e.token(t, "frank@example.com", "")
		chat := `{"model":"frontier","max_tokens":20,"messages":[{"role":"user","content":"tagged mock:out=10"}]}`
		if resp, body := llmPost(t, e.base, "/v1/chat/completions", frank, chat, "X-Mandate-Request-Tags", `{"project":"checkout"}`); resp.StatusCode != 200 {
			t.Fatalf("a call under a tagged budget: %d %s", resp.StatusCode, body)
		}
		if resp, body := llmPost(t, e.base, "/v1/chat/completions", frank, chat, "X-Mandate-Request-Tags", `{"project":"other"}`); resp.StatusCode != 200 {
			t.Fatalf("a call outside the tagged budget: %d %s", resp.StatusCode, body)
		}
		rows := e.usage(t, `SELECT CAST(cost_usd * 1000000000 AS BIGINT) FROM system.ai_gateway.usage
			WHERE requester = 'frank@example.com' AND request_tags->>'project' = 'checkout' AND cost_usd > 0`, 1)
		// SHOW BUDGETS: the live spend of the tagged call only (the
		// engine settles it after the answer).
		want, err := strconv.ParseInt(rows[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("frank_checkout's spend in SHOW BUDGETS to be the tagged call's %d nano-USD", want), func() bool {
			return showBudgetSpent(t, e.admin, "frank_checkout") == want
		})
	})

	t.Run("1-hour cache writes priced and charged", func(t *testing.T) {
		// Anthropic bills cache writes with the 1-hour TTL at their own
		// price: the prices option's fifth field, else twice the input
		// ($6 at claude, whose prices give four). Each call writes 600
		// tokens to the cache, 400 of them for an hour; the usage row's
		// cache_write_tokens is both TTLs, its cost_usd prices each, and
		// the budget is charged exactly the rows' cost.
		mustExec(t, e.admin, `CREATE USER "gina@example.com"`,
			`CREATE MODEL PROVIDER SERVICE system.ai.anthropic_1h OPTIONS (provider 'anthropic', url '`+e.fakeURL+`', api_key '`+e2eAnthropicKey+`',
				prices 'claude-sonnet-4-5=3.00/15.00/0.30/3.75/4.50')`,
			`CREATE MODEL SERVICE system.ai.claude_1h OPTIONS (destinations 'anthropic_1h/claude-sonnet-4-5=100')`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.claude TO "gina@example.com"`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.claude_1h TO "gina@example.com"`,
			`CREATE BUDGET gina_cap LIMIT 5 USD PER MONTH FOR USER "gina@example.com"`)
		waitSnapshotCurrent(t, e.s)
		gina := e.token(t, "gina@example.com", "")
		const prompt = "cache this for an hour mock:input=1000 mock:cached=100 mock:cache_write=600 mock:cache_1h=400 mock:out=40"
		msgs := func(model string, stream bool) string {
			return fmt.Sprintf(`{"model":%q,"max_tokens":50,"stream":%v,"system":[{"type":"text","text":"a long system prompt",
				"cache_control":{"type":"ephemeral","ttl":"1h"}}],"messages":[{"role":"user","content":%q}]}`, model, stream, prompt)
		}
		for _, c := range []struct{ path, body string }{
			{"/v1/messages", msgs("claude", false)},
			{"/v1/messages", msgs("claude", true)},
			{"/v1/chat/completions", fmt.Sprintf(`{"model":"claude","max_tokens":50,"stream":true,"messages":[{"role":"user","content":%q}]}`, prompt)},
			{"/v1/messages", msgs("claude_1h", false)},
		} {
			if resp, body := llmPost(t, e.base, c.path, gina, c.body); resp.StatusCode != 200 {
				t.Fatalf("%s: %d %s", c.path, resp.StatusCode, body)
			}
		}
		rows := e.usage(t, `SELECT service_name, streaming, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
			CAST(cost_usd * 1000000000 AS BIGINT) FROM system.ai_gateway.usage WHERE requester = 'gina@example.com' ORDER BY event_time`, 4)
		var sum int64
		for i, r := range rows {
			var svc, streaming string
			var in, out, cached, written, cost int64
			if _, err := fmt.Sscanf(strings.ReplaceAll(r, "|", " "), "%s %s %d %d %d %d %d", &svc, &streaming, &in, &out, &cached, &written, &cost); err != nil {
				t.Fatalf("%s: %v", r, err)
			}
			// nano-USD a token: $3 → 3,000; 200 written for 5 minutes at
			// $3.75, 400 for an hour at $6 (derived) or $4.50 (given)
			hour := int64(6_000)
			if svc == "system.ai.claude_1h" {
				hour = 4_500
			}
			byHand := in*3_000 + out*15_000 + cached*300 + 200*3_750 + 400*hour
			if in != 300 || out <= 0 || cached != 100 || written != 600 || cost != byHand || streaming != fmt.Sprint(i == 1 || i == 2) {
				t.Errorf("usage row %s: cost by hand %d nano-USD", r, byHand)
			}
			sum += cost
		}
		waitFor(t, 30*time.Second, fmt.Sprintf("gina_cap's spend in SHOW BUDGETS to be the rows' %d nano-USD", sum), func() bool {
			return showBudgetSpent(t, e.admin, "gina_cap") == sum
		})
	})

	t.Run("restart", func(t *testing.T) {
		// Windows are replayed from the last minute's usage rows and the
		// budget's spend summed from the month's: both still hold.
		e.s.stop(t)
		s := startServer(t, serverOpts{dataDir: e.s.dataDir, args: []string{"--dev"}})
		base := "http://" + s.httpAddr + "/llm"
		before := e.fake.Count()
		if carolFirst.IsZero() || time.Since(carolFirst) >= limits.WindowLength-time.Second {
			t.Logf("carol's calls left the window %v ago: not checked", time.Since(carolFirst))
		} else if resp, body := llmPost(t, base, "/v1/chat/completions", carol,
			`{"model":"frontier","max_tokens":20,"messages":[{"role":"user","content":"after restart"}]}`); resp.StatusCode != 429 ||
			!strings.Contains(body, "rate_limit_exceeded") {
			t.Errorf("carol after a restart: %d %s", resp.StatusCode, body)
		}
		if !daveMonth.Equal(monthOf(time.Now())) {
			t.Logf("dave's budget was spent in %v, a month that has ended: not checked", daveMonth)
		} else if resp, body := llmPost(t, base, "/v1/chat/completions", dave,
			`{"model":"frontier","max_tokens":200,"messages":[{"role":"user","content":"after restart"}]}`); resp.StatusCode != 429 ||
			!strings.Contains(body, "insufficient_quota") {
			t.Errorf("dave after a restart: %d %s", resp.StatusCode, body)
		}
		if e.fake.Count() != before {
			t.Errorf("refused calls reached the upstream")
		}
	})
}

// TestMCPRateLimitEndToEnd: a connection's request limit holds through the
// same limits stage: the call over the limit is refused (-32005, HTTP 429
// with Retry-After), audited, and never reaches the MCP server.
func TestMCPRateLimitEndToEnd(t *testing.T) {
	t.Parallel()
	up := newMCPUpstream(t)
	s := startServer(t, serverOpts{args: []string{"--dev"}})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE USER "alice@example.com"`,
		`CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'mandate_jwt')`,
		`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "alice@example.com"`,
		`ALTER CONNECTION my_github_mcp SET RATE LIMIT 2 REQUESTS PER MINUTE FOR EACH USER`)
	token := e2eToken(t, s, "alice@example.com", "")
	sess, err := mcpConnect(t, "http://"+s.httpAddr+"/mcp/my_github_mcp", token)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	call := func() (*sdk.CallToolResult, error) {
		return sess.CallTool(t.Context(), &sdk.CallToolParams{Name: "search_repos", Arguments: map[string]any{"query": "mandate"}})
	}
	var err3 error
	for i := range 3 {
		before := len(up.seenAuths())
		res, err := call()
		if err != nil {
			if i < 2 {
				t.Errorf("call %d refused: %v\n%s", i, err, strings.Join(queryRows(t, c,
					`SELECT action_name, decision, response.status_code, reason FROM system.access.audit WHERE service_name = 'mcp' ORDER BY event_time`), "\n"))
			}
			err3 = err
			if len(up.seenAuths()) != before {
				t.Errorf("the refused call reached the MCP server")
			}
			break
		}
		if res.IsError {
			t.Fatalf("call %d: %+v", i, res)
		}
	}
	if err3 == nil || !strings.Contains(err3.Error(), "Too Many Requests") {
		t.Fatalf("the call over the limit: %v", err3)
	}
	// The refusal on the wire: 429, Retry-After, JSON-RPC -32005 naming
	// the limit.
	before := len(up.seenAuths())
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.httpAddr+"/mcp/my_github_mcp",
		strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"search_repos","arguments":{"query":"x"}}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", sess.ID())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":-32005`) ||
		!strings.Contains(string(body), "2 requests per minute") {
		t.Errorf("over the limit on the wire: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if len(up.seenAuths()) != before {
		t.Errorf("the refused call reached the MCP server")
	}
	waitFor(t, 30*time.Second, "the refusals' audit rows", func() bool {
		return len(queryRows(t, c, `SELECT 1 FROM system.access.audit WHERE service_name = 'mcp' AND action_name = 'tools/call' AND response.status_code = 429`)) == 2
	})
}

// TestLLMGatewayNodeLimits: `mandate gateway` nodes apply the catalog's
// rate limits and budgets exactly, with the server: they lease slices of
// the server's windows and budget accounts (POST /api/v1/limits/leases).
// A budget spent by 32 concurrent callers over the server and two nodes is
// never overrun by more than one call; against 10 requests per minute for
// each user, 32 callers spread over the two nodes pass at most 10 per user
// in total (each node alone would have admitted 10).
func TestLLMGatewayNodeLimits(t *testing.T) {
	t.Parallel()
	e := startLLM(t)
	mustExec(t, e.admin, `CREATE USER "carol@example.com"`, `CREATE USER "dave@example.com"`, `CREATE USER "erin@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "carol@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "dave@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "erin@example.com"`)
	tokens := map[string]string{}
	for _, u := range []string{"carol", "dave", "erin"} {
		tokens[u] = e.token(t, u+"@example.com", "")
	}
	bases := []string{e.base}
	var nodes []string
	for range 2 {
		_, addr := startOnFreeAddr(t, func(addr string) []string {
			return []string{"gateway", "--catalog", "http://" + e.s.httpAddr,
				"--node-token-file", filepath.Join(e.s.dataDir, "node-token"), "--http-addr", addr,
				"--oidc-issuer", "http://" + e.s.httpAddr + "/oidc", "--data-dir", nodeDataDir(t, e.s.dataDir, ""), "--max-staleness", "2s"}
		}, "Mandate gateway is ready")
		nodes, bases = append(nodes, addr), append(bases, "http://"+addr+"/llm")
	}
	chat := `{"model":"frontier","max_tokens":200,"messages":[{"role":"user","content":"spend mock:out=400"}]}`
	for _, b := range bases[1:] {
		if resp, body := llmPost(t, b, "/v1/chat/completions", tokens["carol"], chat); resp.StatusCode != 200 {
			t.Fatalf("through the node: %d %s", resp.StatusCode, body)
		}
	}

	// A budget: 32 callers over the server and both nodes.
	mustExec(t, e.admin, `CREATE BUDGET dave_cap LIMIT 0.02 USD PER MONTH FOR USER "dave@example.com"`)
	for _, n := range nodes { // the nodes apply the budget before their next call
		waitNodeCurrent(t, e.s.httpAddr, n)
	}
	ok, refused := spendBudget(t, bases, tokens["dave"], chat)
	rows := e.usage(t, `SELECT CAST(sum(cost_usd) * 1000000000 AS BIGINT), CAST(max(cost_usd) * 1000000000 AS BIGINT)
		FROM system.ai_gateway.usage WHERE requester = 'dave@example.com' AND status_code = 200 HAVING count(*) >= `+strconv.Itoa(ok), 1)
	var spent, most int64
	if _, err := fmt.Sscanf(strings.ReplaceAll(rows[0], "|", " "), "%d %d", &spent, &most); err != nil {
		t.Fatalf("%s: %v", rows[0], err)
	}
	const limit = 20_000_000 // nano-USD
	if spent > limit+most || spent < limit/2 {
		t.Errorf("budget over the server and two nodes: spent %d nano-USD (largest call %d) against a limit of %d", spent, most, limit)
	}
	t.Logf("budget: %d calls answered, %d refused, spent $%.6f of $0.02", ok, refused, float64(spent)/1e9)

	// 10 requests per minute for each user: 32 callers over the two nodes.
	mustExec(t, e.admin, `ALTER MODEL SERVICE system.ai.frontier SET RATE LIMIT 10 REQUESTS PER MINUTE FOR EACH USER`)
	waitFor(t, 30*time.Second, "the nodes to apply the rate limit", func() bool {
		for _, b := range bases[1:] {
			resp, _ := llmPost(t, b, "/v1/chat/completions", tokens["dave"], `{"model":"frontier","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`)
			if resp.Header.Get("x-ratelimit-limit-requests") != "10" && resp.StatusCode != 429 {
				return false
			}
		}
		return true
	})
	before := e.fake.Count()
	passed := rateLimitCallers(t, func(g int) string { return bases[1+(g/2)%2] }, tokens, chat)
	// carol spent one call through each node above, before the limit.
	for user, n := range passed {
		if n > 10 || n < 1 {
			t.Errorf("%s: %d calls passed over two nodes in one minute, want 1..10", user, n)
		}
	}
	if n := e.fake.Count() - before; n != passed["carol"]+passed["erin"] {
		t.Errorf("the upstream got %d calls for %d passed", n, passed["carol"]+passed["erin"])
	}
	t.Logf("rate limit over two nodes: %v passed", passed)
}

// TestReplicasLLMLimits: two `mandate serve` replicas on one PostgreSQL
// share the rate-limit windows and budgets (gateway/limits/pglimits): a
// limit of 4 requests per minute admits 4 calls in total however they
// are spread over the replicas.
func TestReplicasLLMLimits(t *testing.T) {
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey = e2eOpenAIKey
	c := startCluster(t, 2, nil, "--dev")
	a0, a1 := c.replicas[0].admin(t), c.replicas[1].admin(t)
	mustExec(t, a0, `CREATE USER "alice@example.com"`,
		`CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url '`+fakeURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00')`,
		`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=100')`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "alice@example.com"`,
		`ALTER MODEL SERVICE system.ai.frontier SET RATE LIMIT 4 REQUESTS PER MINUTE FOR EACH USER`)
	var tok string
	if err := a0.QueryRow(t.Context(), `CREATE ACCESS TOKEN FOR USER "alice@example.com"`).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	count := func(q string) int {
		rows, err := a1.Query(t.Context(), q)
		if err != nil {
			return -1 // not there yet
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			n++
		}
		return n
	}
	waitFor(t, 30*time.Second, "the rate limit and the token on replica 1", func() bool {
		return count(`SHOW RATE LIMITS ON MODEL SERVICE system.ai.frontier`) == 1 && count(`SHOW ACCESS TOKENS`) == 1
	})
	chat := `{"model":"frontier","max_tokens":20,"messages":[{"role":"user","content":"replicated"}]}`
	ok, start := 0, time.Now()
	for i := range 10 {
		r := c.replicas[i%2]
		resp, body := llmPost(t, "http://"+r.httpAddr+"/llm", "/v1/chat/completions", tok, chat)
		switch resp.StatusCode {
		case 200:
			ok++
		case 429:
		default:
			t.Fatalf("call %d on replica %d: %d %s", i, i%2, resp.StatusCode, body)
		}
	}
	if d := time.Since(start); d >= limits.WindowLength-time.Second {
		t.Skipf("the calls took %v: not one window", d)
	}
	// Never more than 4; the shared windows' only slack is on the safe
	// side (a unit leased and not yet given back may refuse one call).
	if ok > 4 || ok < 3 || fake.Count() != ok {
		t.Errorf("%d calls answered (the upstream got %d); the limit is 4 per minute across the replicas", ok, fake.Count())
	}
}

// spendBudget runs 32 callers, spread over bases, each calling until it is
// refused; every refusal must be the budget's 429 (insufficient_quota,
// with Retry-After). It returns how many calls were answered (at least
// one) and how many were refused (each refusal, as the usage rows count
// them). The calls and the caller's checks straight after fall in one
// month (awayFromMonthEnd).
func spendBudget(t *testing.T, bases []string, token, chat string) (ok, refused int) {
	t.Helper()
	return spendBudgetAt(t, bases, "/v1/chat/completions", token, chat)
}

// spendBudgetAt is spendBudget with requests of an OpenAI-format path
// (chat completions or responses).
func spendBudgetAt(t *testing.T, bases []string, path, token, chat string) (ok, refused int) {
	t.Helper()
	awayFromMonthEnd(t)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for range 40 { // bounded: the budget runs out after ~25 calls
				resp, body := llmPost(t, bases[g%len(bases)], path, token, chat)
				mu.Lock()
				switch {
				case resp.StatusCode == 200:
					ok++
				case resp.StatusCode == 429 && strings.Contains(body, `"code":"insufficient_quota"`) &&
					strings.Contains(body, "budget") && resp.Header.Get("Retry-After") != "":
					refused++
				default:
					t.Errorf("unexpected answer %d %s", resp.StatusCode, body)
				}
				mu.Unlock()
				if resp.StatusCode != 200 {
					return
				}
			}
		})
	}
	wg.Wait()
	if refused != 32 || ok == 0 {
		t.Fatalf("budget: %d calls answered, %d refused; want every caller refused in the end", ok, refused)
	}
	// A call is admitted only if its worst case fits beside the worst
	// cases of the calls in flight, so concurrent callers can be refused
	// well before the budget is spent (the more so the slower the calls
	// settle). One caller alone then spends the rest, until a call's
	// worst case no longer fits. Right after the concurrent callers, its
	// replica may still refuse for a moment what the others hold: their
	// unused slices come back after a second idle, and a replica
	// remembers a refusal for a second (lease.DenyTTL). So the caller
	// ends only once it has been refused for budgetSettle.
	var refusedSince time.Time
	for range 400 {
		resp, body := llmPost(t, bases[0], path, token, chat)
		if resp.StatusCode == 200 {
			ok++
			refusedSince = time.Time{}
			continue
		}
		if resp.StatusCode != 429 || !strings.Contains(body, `"code":"insufficient_quota"`) {
			t.Fatalf("unexpected answer %d %s", resp.StatusCode, body)
		}
		refused++
		if refusedSince.IsZero() {
			refusedSince = time.Now()
		}
		if time.Since(refusedSince) >= budgetSettle {
			return ok, refused
		}
		select {
		case <-t.Context().Done():
			t.Fatal("test ended spending a budget")
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("budget: one caller was never refused for good")
	return ok, refused
}

// budgetSettle is how long a budget's refusals must last to be taken for
// exhaustion rather than other replicas' slices not yet given back
// (IdleReturn, 1 s) or a remembered refusal (DenyTTL, 1 s).
const budgetSettle = 3 * time.Second

// monthEndMargin bounds how long a budget's spending and the checks
// straight after it take (a failure bound on a loaded machine).
const monthEndMargin = 2 * time.Minute

// awayFromMonthEnd waits for the next month when the current one (UTC)
// ends within monthEndMargin. Budgets count per calendar month: calls that
// straddle a month's end are charged to two months, and a budget renews
// at the turn.
func awayFromMonthEnd(t testing.TB) {
	t.Helper()
	now := time.Now()
	next := monthOf(now).AddDate(0, 1, 0)
	if wait := next.Sub(now); wait < monthEndMargin {
		t.Logf("waiting %v for the month to end: budgets count per calendar month", wait)
		time.Sleep(wait + time.Second) // for the wall clock (the server's too) to pass the turn
	}
}

// monthOf is the first instant of tm's month in UTC (budgets' months).
func monthOf(tm time.Time) time.Time {
	tm = tm.UTC()
	return time.Date(tm.Year(), tm.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// rateLimitCallers runs 32 callers, carol's and erin's in turn, each
// making 3 calls of chat through base(g) (g: the caller), and returns how
// many calls passed for each user; every refusal must be a 429 with
// Retry-After. It skips the test if the calls took longer than one
// minute's window.
func rateLimitCallers(t *testing.T, base func(g int) string, tokens map[string]string, chat string) map[string]int {
	t.Helper()
	start := time.Now()
	passed := map[string]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			user := []string{"carol", "erin"}[g%2]
			for range 3 {
				resp, body := llmPost(t, base(g), "/v1/chat/completions", tokens[user], chat)
				mu.Lock()
				switch {
				case resp.StatusCode == 200:
					passed[user]++
				case resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "":
				default:
					t.Errorf("unexpected answer %d %s", resp.StatusCode, body)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d >= 55*time.Second {
		t.Skipf("the callers took %v: not one window", d)
	}
	return passed
}
