package sqlfront_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mandatehq/mandate/catalog"
)

// llmCall records one LLM call through the audit log as the gateway does:
// the request record, then its completion carrying the usage.
func llmCall(t *testing.T, log *catalog.AuditLog, id, user, agent string, at time.Time, u catalog.LLMUsage) {
	t.Helper()
	ctx := t.Context()
	req := catalog.AuditEvent{EventID: id, Time: at, Service: catalog.AuditServiceLLM, Action: "chat.completions",
		UserIdentity: user, RunBy: user, RunAs: agent, RequestID: "req-" + id, SecurableType: string(catalog.TypeModelService),
		SecurableName: "system.ai.frontier", Decision: "allow", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7"}
	ack, err := log.Enqueue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := ack.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	done := req
	done.Completes, done.StatusCode, done.LatencyMs, done.Usage = true, 200, 812.5, &u
	done.Guardrails = `[{"policy":"pii","phase":"call","mode":"enforce","action":"mask","entities":{"EMAIL":1}}]`
	if err := log.Submit(ctx, done); err != nil {
		t.Fatal(err)
	}
}

// system.ai_gateway.usage and .payloads are views over the audit events the
// gateway writes (request record, then completion): governed by SELECT like
// the audit table, joined with information_schema for cost by team, and
// the payload events never show in system.access.audit.
func TestAIGatewayUsageTables(t *testing.T) {
	f := startSysFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin,
		`CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw'`,
		`CREATE USER "bob@example.com" WITH PASSWORD 'bob-pw'`,
		`CREATE USER "carol@example.com" WITH PASSWORD 'carol-pw'`,
		`CREATE SERVICE PRINCIPAL "claude-code"`,
		`CREATE GROUP payments`, `CREATE GROUP search`,
		`ALTER GROUP payments ADD USER "alice@example.com", "bob@example.com"`,
		`ALTER GROUP search ADD USER "carol@example.com"`)
	log := catalog.NewAuditLog(f.Store, catalog.AuditLogOptions{})
	t.Cleanup(func() { _ = log.Close(context.Background()) })
	now := time.Now().UTC().Truncate(time.Millisecond)
	// The README's cost by team below counts this month's calls
	// (date_trunc('month', now()) when it runs): calls made in the last
	// hour of a month are put at the next one's start.
	if next := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC); next.Sub(now) < time.Hour {
		now = next
	}
	base := catalog.LLMUsage{ProviderService: "system.ai.openai_prod", Provider: "openai", Model: "gpt-4.1",
		InputTokens: 1000, OutputTokens: 200, CachedInputTokens: 100, CacheWriteTokens: 0, ReasoningTokens: 50,
		RequestTags: `{"project":"checkout","team":"platform"}`, Routing: `[{"destination":"system.ai.openai_prod/gpt-4.1","status":200}]`}
	calls := []struct {
		user string
		cost int64 // nano-USD
		tags string
	}{
		{"alice@example.com", 3_650_000, `{"project":"checkout"}`},
		{"bob@example.com", 1_000_000_001, `{"project":"checkout"}`},
		{"carol@example.com", 250_000_000, `{"project":"search-ranking"}`},
		{"alice@example.com", 7, `{"project":"search-ranking"}`},
	}
	for i, c := range calls {
		u := base
		u.CostNanos, u.RequestTags = c.cost, c.tags
		u.Streaming = i%2 == 1
		if u.Streaming {
			u.TTFTMs = 95.25
		}
		llmCall(t, log, fmt.Sprintf("e%d", i), c.user, "claude-code", now.Add(time.Duration(i)*time.Second), u)
	}
	// A captured payload of the first call.
	if err := log.Record(t.Context(), catalog.AuditEvent{EventID: "p0", Time: now, Service: catalog.AuditServiceLLM,
		Action: catalog.AuditActionPayload, UserIdentity: "alice@example.com", RunAs: "claude-code", RequestID: "req-e0",
		SecurableType: string(catalog.TypeModelService), SecurableName: "system.ai.frontier",
		Payload: &catalog.AuditPayload{RequestBody: `{"messages":[{"role":"user","content":"hi"}]}`, ResponseBody: `{"choices":[]}`}}); err != nil {
		t.Fatal(err)
	}
	if err := log.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}

	rows := queryRows(t, admin, `SELECT request_id, service_name, provider_service, provider, model, requester, run_as, status_code,
		input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, total_tokens, cost_usd::text,
		latency_ms, ttft_ms, streaming, request_tags->>'project', routing->0->>'status', trace_id
		FROM system.ai_gateway.usage ORDER BY event_time`)
	if len(rows) != 4 {
		t.Fatalf("%d usage rows, want 4: %v", len(rows), rows)
	}
	want := []any{"req-e1", "system.ai.frontier", "system.ai.openai_prod", "openai", "gpt-4.1", "bob@example.com", "claude-code",
		int32(200), int64(1000), int64(200), int64(100), int64(0), int64(50), int64(1300), "1.000000001", 812.5, 95.25, true,
		"checkout", "200", "4bf92f3577b34da6a3ce929d0e0e4736"}
	if got := rows[1]; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("usage row:\n got %v\nwant %v", got, want)
	}
	if rows[0][16] != nil {
		t.Errorf("ttft_ms of a call that did not stream: %v", rows[0][16])
	}
	// cost_usd is numeric, exact.
	var cost pgtype.Numeric
	if err := admin.QueryRow(t.Context(), `SELECT sum(cost_usd) FROM system.ai_gateway.usage`).Scan(&cost); err != nil {
		t.Fatal(err)
	}
	if v, _ := cost.Value(); v != "1.253650008" {
		t.Errorf("sum(cost_usd) = %v, want 1.253650008", v)
	}

	// The README's cost by team and by project.
	byTeam := queryRows(t, admin, `SELECT g.group_name AS team, sum(u.cost_usd)::text AS cost_usd, sum(u.total_tokens)::bigint AS tokens
		FROM system.ai_gateway.usage u
		JOIN system.information_schema.group_members g ON g.member_name = u.requester
		WHERE u.event_time >= date_trunc('month', now())
		GROUP BY g.group_name ORDER BY cost_usd DESC`)
	if fmt.Sprint(byTeam) != "[[payments 1.003650008 3900] [search 0.250000000 1300]]" {
		t.Errorf("cost by team: %v", byTeam)
	}
	byProject := queryRows(t, admin, `SELECT u.request_tags->>'project' AS project, count(*) AS calls, sum(u.cost_usd)::text
		FROM system.ai_gateway.usage u GROUP BY 1 ORDER BY 1`)
	if fmt.Sprint(byProject) != "[[checkout 2 1.003650001] [search-ranking 2 0.250000007]]" {
		t.Errorf("cost by project: %v", byProject)
	}

	// The same calls in the audit table, with trace and guardrail columns;
	// the payload event is not there.
	audit := queryRows(t, admin, `SELECT count(*), count(trace_id), min(guardrails->0->>'action') FROM system.access.audit WHERE service_name = 'llm'`)
	if fmt.Sprint(audit) != "[[4 4 mask]]" {
		t.Errorf("llm rows of system.access.audit: %v", audit)
	}
	payloads := queryRows(t, admin, `SELECT request_id, service_name, requester, run_as, request_body, response_body FROM system.ai_gateway.payloads`)
	if len(payloads) != 1 || payloads[0][0] != "req-e0" || !strings.Contains(payloads[0][4].(string), `"content":"hi"`) {
		t.Errorf("payloads: %v", payloads)
	}

	// Governed by SELECT like the audit table.
	alice := f.mustConnect(t, "alice@example.com", "alice-pw", "system")
	for _, q := range []string{`SELECT count(*) FROM system.ai_gateway.usage`, `SELECT count(*) FROM system.ai_gateway.payloads`} {
		_, err := alice.Exec(t.Context(), q)
		wantSQLState(t, err, "42501")
	}
	mustExec(t, admin, `GRANT SELECT ON TABLE system.ai_gateway.usage TO "alice@example.com"`)
	if n := queryRows(t, alice, `SELECT count(*) FROM system.ai_gateway.usage`); fmt.Sprint(n) != "[[4]]" {
		t.Errorf("alice with SELECT: %v", n)
	}
	_, err := alice.Exec(t.Context(), `SELECT count(*) FROM system.ai_gateway.payloads`)
	wantSQLState(t, err, "42501")
	// The engine's relations are not reachable by their own names.
	_, err = admin.Exec(t.Context(), `SELECT count(*) FROM system_ai_gateway_usage`)
	if err == nil {
		t.Error("the engine relation was readable by its own name")
	}
}

// information_schema.service_privileges and model_services show what the
// caller may see, like connection_privileges; provider secrets never.
func TestServiceInformationSchema(t *testing.T) {
	f := startSysFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin,
		`CREATE USER bob WITH PASSWORD 'bob-pw'`,
		`CREATE GROUP analysts`,
		`CREATE MODEL PROVIDER SERVICE openai_prod OPTIONS (provider 'openai', api_key 'sk-never-shown', prices 'gpt-4.1=2/8')`,
		`CREATE MODEL SERVICE frontier OPTIONS (destinations 'openai_prod/gpt-4.1', tags '{"team":"platform"}')`,
		`CREATE MODEL SERVICE hidden OPTIONS (destinations 'openai_prod/gpt-4.1')`,
		`GRANT EXECUTE ON MODEL SERVICE frontier TO analysts`,
		`GRANT EXECUTE ON MODEL SERVICE frontier TO bob`,
		`GRANT EXECUTE ON SCHEMA system.ai TO analysts`)
	rows := queryRows(t, admin, `SELECT service_name, service_type, grantee, privilege_type, inherited_from
		FROM system.information_schema.service_privileges ORDER BY 1, 3, 4, 5`)
	got := fmt.Sprint(rows)
	for _, want := range []string{"[frontier MODEL SERVICE analysts EXECUTE <nil>]", "[frontier MODEL SERVICE bob EXECUTE <nil>]",
		"[frontier MODEL SERVICE analysts EXECUTE SCHEMA system.ai]", "[openai_prod MODEL PROVIDER SERVICE analysts EXECUTE SCHEMA system.ai]"} {
		if !strings.Contains(got, want) {
			t.Errorf("service_privileges lacks %s: %s", want, got)
		}
	}
	svc := queryRows(t, admin, `SELECT service_name, service_type, provider, destinations, service_options::text FROM system.information_schema.model_services ORDER BY 1`)
	if fmt.Sprint(svc) != `[[frontier MODEL SERVICE <nil> system.ai.openai_prod/gpt-4.1=100 {"tags":"{\"team\":\"platform\"}"}] [hidden MODEL SERVICE <nil> system.ai.openai_prod/gpt-4.1=100 {}] [openai_prod MODEL PROVIDER SERVICE openai <nil> {"prices":"gpt-4.1=2/8","provider":"openai","url":"https://api.openai.com/v1"}]]` {
		t.Errorf("model_services: %v", svc)
	}
	bob := f.mustConnect(t, "bob", "bob-pw", "system")
	rows = queryRows(t, bob, `SELECT service_name, grantee FROM system.information_schema.service_privileges ORDER BY 1, 2`)
	if fmt.Sprint(rows) != "[[frontier bob]]" {
		t.Errorf("bob's service_privileges: %v", rows)
	}
	rows = queryRows(t, bob, `SELECT service_name FROM system.information_schema.model_services ORDER BY 1`)
	if fmt.Sprint(rows) != "[[frontier]]" {
		t.Errorf("bob's model_services: %v", rows)
	}
}

// A provider service's tool_prices: stored canonically and shown by
// DESCRIBE like prices, replaced by ALTER ... SET OPTIONS, refused with
// 22023 and a hint when invalid.
func TestToolPricesOption(t *testing.T) {
	f := startSysFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin, `CREATE MODEL PROVIDER SERVICE openai_prod OPTIONS (provider 'openai', api_key 'sk-x', prices 'gpt-4.1=2/8',
		tool_prices ' file_search = 2.50 , web_search=25.00')`)
	describe := func() string {
		for _, r := range queryRows(t, admin, `DESCRIBE MODEL PROVIDER SERVICE openai_prod`) {
			if len(r) >= 2 && r[0] == "option.tool_prices" {
				return fmt.Sprint(r[1])
			}
		}
		return ""
	}
	if got := describe(); got != "web_search=25, file_search=2.5" {
		t.Errorf("DESCRIBE tool_prices = %q", got)
	}
	mustExec(t, admin, `ALTER MODEL PROVIDER SERVICE openai_prod SET OPTIONS (provider 'openai', api_key 'sk-x', prices 'gpt-4.1=2/8', tool_prices 'web_search=10')`)
	if got := describe(); got != "web_search=10" {
		t.Errorf("DESCRIBE tool_prices after ALTER = %q", got)
	}
	for _, bad := range []string{"code_interpreter=1", "web_search=-1", "web_search=1, web_search=2", "web_search"} {
		_, err := admin.Exec(t.Context(), `CREATE MODEL PROVIDER SERVICE bad OPTIONS (provider 'openai', api_key 'sk-x', tool_prices '`+bad+`')`)
		if pe := wantSQLState(t, err, "22023"); pe != nil && !strings.Contains(pe.Message, "tool") {
			t.Errorf("tool_prices %q: %s", bad, pe.Message)
		}
	}
}

// The secrets of the LLM objects: a provider's api_key is sealed, never
// shown and never in an audit record; an access token is shown once and
// only its hash is stored; a dropped or expired token is refused.
func TestLLMSecretsNeverStored(t *testing.T) {
	f := startSysFrontend(t)
	admin := f.admin(t)
	const apiKey = "sk-live-SECRET-0123456789"
	mustExec(t, admin, `CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw'`, `CREATE SERVICE PRINCIPAL "claude-code"`,
		`CREATE MODEL PROVIDER SERVICE openai_prod OPTIONS (provider 'openai', api_key '`+apiKey+`')`,
		`ALTER MODEL PROVIDER SERVICE openai_prod SET OPTIONS (provider 'openai', api_key '`+apiKey+`-2')`)
	alice := f.mustConnect(t, "alice@example.com", "alice-pw", "system")
	var token string
	if err := alice.QueryRow(t.Context(), `CREATE ACCESS TOKEN laptop VIA "claude-code" EXPIRES IN '30 days'`).Scan(&token); err != nil {
		t.Fatal(err)
	}
	if !catalog.LooksLikeAccessToken(token) {
		t.Fatalf("token %q", token)
	}
	// Nowhere in the stores: not in the catalog's snapshot or change
	// records, not in the audit.
	if err := f.Svc.WriteSnapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	st, changes, err := f.Catalog.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal([]any{st, changes})
	events, err := f.Store.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(events)
	for _, secret := range []string{apiKey, token, token[len(catalog.AccessTokenPrefix):]} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the catalog's store holds %q", secret)
		}
		if strings.Contains(string(a), secret) {
			t.Errorf("the audit holds %q", secret)
		}
	}
	if !strings.Contains(string(b), catalog.HashAccessToken(token)) {
		t.Error("the token's hash is not stored")
	}
	rows := queryRows(t, admin, `DESCRIBE MODEL PROVIDER SERVICE openai_prod`)
	if !strings.Contains(fmt.Sprint(rows), "[option.api_key ********]") || strings.Contains(fmt.Sprint(rows), apiKey) {
		t.Errorf("DESCRIBE: %v", rows)
	}
	// The token verifies as alice through the agent; expired later;
	// refused at once once dropped.
	f.Svc.Read(func(m *catalog.Model) {
		tok, err := m.VerifyAccessToken(token, time.Now())
		if err != nil || tok.User.Name != "alice@example.com" || tok.Agent == nil || tok.Agent.Name != "claude-code" {
			t.Errorf("verify: %+v %v", tok, err)
		}
		if _, err := m.VerifyAccessToken(token, time.Now().Add(31*24*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("an expired token verified: %v", err)
		}
		if _, err := m.VerifyAccessToken(token[:len(token)-1]+"A", time.Now()); err != catalog.ErrInvalidAccessToken && token[len(token)-1] != 'A' {
			t.Errorf("a wrong token: %v", err)
		}
	})
	mustExec(t, alice, `DROP ACCESS TOKEN laptop`)
	f.Svc.Read(func(m *catalog.Model) {
		if _, err := m.VerifyAccessToken(token, time.Now()); err != catalog.ErrInvalidAccessToken {
			t.Errorf("a dropped token: %v", err)
		}
	})
}

// The LLM objects in transaction blocks: all or nothing, and a token
// created in a block that rolls back never verifies.
func TestLLMObjectsInTransactionBlocks(t *testing.T) {
	f := startSysFrontend(t)
	admin := f.admin(t)
	exists := func(name string) bool {
		n := queryRows(t, admin, `SELECT count(*) FROM system.information_schema.model_services WHERE service_name = $1`, name)
		return fmt.Sprint(n) == "[[1]]"
	}
	tx, err := admin.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE MODEL PROVIDER SERVICE p OPTIONS (provider 'openai', api_key 'k')`,
		`CREATE MODEL SERVICE s OPTIONS (destinations 'p/gpt-4.1')`,
		`ALTER MODEL SERVICE s SET RATE LIMIT 10 REQUESTS PER MINUTE`,
		`CREATE BUDGET b LIMIT 5 USD PER MONTH FOR EACH USER ON MODEL SERVICE s`} {
		if _, err := tx.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var token string
	if err := tx.QueryRow(t.Context(), `CREATE ACCESS TOKEN`).Scan(&token); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if exists("p") || exists("s") {
		t.Fatal("a rolled back block left services behind")
	}
	f.Svc.Read(func(m *catalog.Model) {
		if _, err := m.VerifyAccessToken(token, time.Now()); err == nil {
			t.Error("the token of a rolled back block verifies")
		}
		if len(m.Budgets()) != 0 || len(m.AllRateLimits()) != 0 {
			t.Error("a rolled back block left limits behind")
		}
	})
	err = pgx.BeginFunc(t.Context(), admin, func(tx pgx.Tx) error {
		for _, q := range []string{`CREATE MODEL PROVIDER SERVICE p OPTIONS (provider 'openai', api_key 'k')`,
			`CREATE MODEL SERVICE s OPTIONS (destinations 'p/gpt-4.1')`,
			`ALTER MODEL SERVICE s SET RATE LIMIT 10 REQUESTS PER MINUTE FOR EACH USER`} {
			if _, err := tx.Exec(t.Context(), q); err != nil {
				return err
			}
		}
		return tx.QueryRow(t.Context(), `CREATE ACCESS TOKEN`).Scan(&token)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !exists("p") || !exists("s") {
		t.Fatal("a committed block's services are missing")
	}
	f.Svc.Read(func(m *catalog.Model) {
		if tok, err := m.VerifyAccessToken(token, time.Now()); err != nil || tok.User.Name != catalog.AdminUser {
			t.Errorf("the token of a committed block: %+v %v", tok, err)
		}
		if l := m.AllRateLimits(); len(l) != 1 || l[0].Level != catalog.LevelEachUser || l[0].Requests != 10 {
			t.Errorf("rate limits: %+v", l)
		}
	})
}
