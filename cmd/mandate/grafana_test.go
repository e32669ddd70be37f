package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/mandatehq/mandate/gateway/llm/llmtest"
	"github.com/mandatehq/mandate/gateway/telemetry/telemetrytest"
)

// dashboardPath is the Grafana dashboard shipped for operators.
const dashboardPath = "../../deploy/grafana/mandate.json"

type dashQuery struct {
	panel, kind, text string // kind: sql or promql
}

// dashboardQueries reads every query of the dashboard.
func dashboardQueries(t *testing.T) []dashQuery {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Expr   string `json:"expr"`
		RawSQL string `json:"rawSql"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var out []dashQuery
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				switch tg.Datasource.Type {
				case "prometheus":
					out = append(out, dashQuery{p.Title, "promql", tg.Expr})
				case "grafana-postgresql-datasource", "postgres":
					out = append(out, dashQuery{p.Title, "sql", tg.RawSQL})
				default:
					t.Errorf("panel %q: unknown data source type %q", p.Title, tg.Datasource.Type)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// grafanaSQL expands the Grafana macros the dashboard uses the way the
// PostgreSQL data source does.
func grafanaSQL(q string, from, to time.Time) string {
	for {
		i := strings.Index(q, "$__timeFilter(")
		if i < 0 {
			return q
		}
		j := strings.IndexByte(q[i:], ')')
		col := q[i+len("$__timeFilter(") : i+j]
		q = q[:i] + fmt.Sprintf("%s BETWEEN '%s' AND '%s'", col, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339)) + q[i+j+1:]
	}
}

// grafanaPromQL replaces the Grafana variables of an expression.
func grafanaPromQL(q string) string { return strings.ReplaceAll(q, "$__rate_interval", "30s") }

// TestGrafanaDashboard: every SQL query of deploy/grafana/mandate.json runs
// against Mandate (pgx, as a user with SELECT on system.access, with the
// macros expanded as Grafana does) and returns the gateway calls made;
// every PromQL expression is accepted by a real Prometheus scraping
// Mandate, and the request and audit series return data.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	queries := dashboardQueries(t)
	up := newTracedUpstream(t)
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey = e2eOpenAIKey
	s := startServer(t, serverOpts{args: []string{"--dev"}})
	admin := s.admin(t)
	mustExec(t, admin,
		`CREATE USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE USER grafana WITH PASSWORD 'grafana-pw'`,
		`GRANT SELECT ON SCHEMA system.access TO grafana`,
		`GRANT SELECT ON SCHEMA system.ai_gateway TO grafana`,
		`CREATE CONNECTION dash_mcp TYPE MCP OPTIONS (url '`+up.srv.URL+`', auth_mode 'none')`,
		`GRANT USE_CONNECTION ON CONNECTION dash_mcp TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION dash_mcp TO "coding-agent"`,
		// A model service, for the usage panels.
		`CREATE MODEL PROVIDER SERVICE system.ai.openai_dash OPTIONS (provider 'openai', url '`+fakeURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00')`,
		`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_dash/gpt-4.1=100')`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "alice@example.com"`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "coding-agent"`)
	url := "http://" + s.httpAddr + "/mcp/dash_mcp"
	tok := e2eToken(t, s, "alice@example.com", "coding-agent")
	call := func() {
		st, sess, body := mcpPOST(t, url, tok, "", nil,
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"agent","version":"1"}}}`)
		if st != http.StatusOK {
			t.Fatalf("initialize: %d %s", st, body)
		}
		mcpPOST(t, url, tok, sess, nil, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
		if st, _, body := mcpPOST(t, url, tok, sess, nil, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_repos","arguments":{"query":"x"}}}`); st != http.StatusOK {
			t.Fatalf("tools/call: %d %s", st, body)
		}
	}
	call()
	llmTok := ""
	if err := admin.QueryRow(t.Context(), `CREATE ACCESS TOKEN FOR USER "alice@example.com" VIA "coding-agent"`).Scan(&llmTok); err != nil {
		t.Fatal(err)
	}
	waitSnapshotCurrent(t, s)
	oc := openai.NewClient(option.WithBaseURL("http://"+s.httpAddr+"/llm/v1/"), option.WithAPIKey(llmTok), option.WithMaxRetries(0))
	if _, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("a call for the dashboard")}},
		option.WithHeader("X-Mandate-Request-Tags", `{"project":"dash"}`)); err != nil {
		t.Fatal(err)
	}

	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://grafana:grafana-pw@%s/system?sslmode=require", s.sqlAddr))
	if err != nil {
		t.Fatal(err)
	}
	cfg.TLSConfig.InsecureSkipVerify = true //nolint:gosec // the certificate is not what this test checks
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	from, to := time.Now().Add(-time.Hour), time.Now().Add(time.Minute)
	nSQL := 0
	for _, q := range queries {
		if q.kind != "sql" {
			continue
		}
		nSQL++
		sql := grafanaSQL(q.text, from, to)
		waitFor(t, 10*time.Second, "rows of panel "+q.panel, func() bool {
			rows, err := conn.Query(t.Context(), sql)
			if err != nil {
				t.Fatalf("panel %q: %v\n%s", q.panel, err, sql)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatalf("panel %q: %v\n%s", q.panel, err, sql)
			}
			// Every panel but the denials has the calls made above.
			return n > 0 || strings.Contains(q.panel, "denial")
		})
	}
	if nSQL == 0 {
		t.Fatal("no SQL panel in the dashboard")
	}

	prom := telemetrytest.StartPrometheus(t, telemetrytest.ScrapeTarget{Addr: s.httpAddr})
	waitFor(t, 30*time.Second, "Prometheus to scrape Mandate", func() bool { return prom.TargetsUp(t.Context(), 1) })
	// Rates need two scrapes with traffic between them.
	call()
	for _, q := range queries {
		if q.kind != "promql" {
			continue
		}
		expr := grafanaPromQL(q.text)
		mustHaveData := strings.Contains(expr, "mandate_requests_total") && !strings.Contains(expr, `decision="deny"`) &&
			!strings.Contains(expr, "5xx") || strings.Contains(expr, "mandate_audit_events_written_total") ||
			strings.Contains(expr, "mandate_catalog_revision")
		waitFor(t, 30*time.Second, "PromQL of panel "+q.panel, func() bool {
			r, err := prom.Query(t.Context(), expr)
			if err != nil {
				t.Fatalf("panel %q: %v", q.panel, err)
			}
			if r.Status != "success" {
				t.Fatalf("panel %q: %s: %s\n%s", q.panel, r.ErrorType, r.Error, expr)
			}
			return !mustHaveData || len(r.Data.Result) > 0
		})
	}
}
