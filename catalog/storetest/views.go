package storetest

import (
	"fmt"
	"math/big"
	"strconv"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// RunViews checks the relations behind the event system tables
// (catalog.AuditRelation, UsageRelation, PayloadsRelation) of a store's
// query engine: `SELECT *` answers the columns of catalog.AuditColumns,
// UsageColumns and PayloadColumns, in that order, each value of its
// column's Go type (catalog.DataType), and for the same events the same
// values, written once below (viewWant). Each dialect defines the views in
// its own migrations; this suite is what keeps them one definition. open
// returns an empty event store and a query engine over it that resolves
// the relations' names.
func RunViews(t *testing.T, open func(t *testing.T) (catalog.EventStore, catalog.QueryEngine)) {
	s, q := open(t)
	if err := s.AppendAudit(t.Context(), viewEvents()...); err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		rel  string
		cols []catalog.QueryColumn
	}{{catalog.AuditRelation, catalog.AuditColumns}, {catalog.UsageRelation, catalog.UsageColumns}, {catalog.PayloadsRelation, catalog.PayloadColumns}} {
		t.Run(v.rel, func(t *testing.T) {
			var got [][]string
			err := q.Query(t.Context(), catalog.Query{SQL: "SELECT * FROM " + v.rel + " ORDER BY event_time"}, func(vals []any) error {
				if len(vals) != len(v.cols) {
					return fmt.Errorf("%d columns, want %d", len(vals), len(v.cols))
				}
				row := make([]string, len(vals))
				for i, val := range vals {
					s, err := viewValue(v.cols[i].Type.Data, val)
					if err != nil {
						return fmt.Errorf("column %s: %w", v.cols[i].Name, err)
					}
					row[i] = s
				}
				got = append(got, row)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := viewWant[v.rel]
			if len(got) != len(want) {
				t.Fatalf("%d rows, want %d: %q", len(got), len(want), got)
			}
			for i := range got {
				for j, c := range v.cols {
					if got[i][j] != want[i][j] {
						t.Errorf("row %d, %s: got %s, want %s", i, c.Name, got[i][j], want[i][j])
					}
				}
			}
		})
	}
}

// viewEvents are the events every dialect's views are checked on: a
// catalog statement, one with JSON that is not JSON, an LLM call with
// usage, one refused before any upstream call, and a payload.
func viewEvents() []catalog.AuditEvent {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	llm := catalog.AuditServiceLLM
	return []catalog.AuditEvent{
		{EventID: "00000000-0000-4000-8000-000000000001", Time: t0, Service: "sql", Action: "GRANT", UserIdentity: "admin@example.com",
			RunBy: "alice@example.com", RunAs: "coding-agent", SourceIP: "127.0.0.1", UserAgent: "psql", SessionID: "s1",
			RequestID: "req-1", SecurableType: "CONNECTION", SecurableName: "system.ai.gh",
			RequestParams: `{"statement":"GRANT ...","n":2}`, StatusCode: 1, ErrorMessage: "denied \"x\"", SQLState: "42501",
			Decision: "deny", Reason: "no privilege", LatencyMs: 1.5, TraceID: "0af7651916cd43dd8448eb211c80319c", SpanID: "b7ad6b7169203331"},
		{EventID: "00000000-0000-4000-8000-000000000002", Time: t0.Add(time.Millisecond), Service: "mcp", Action: "tools/call",
			UserIdentity: "bob@example.com", RequestID: "req-2", SecurableType: "CONNECTION", SecurableName: "system.ai.gh",
			RequestParams: "not json", StatusCode: 200, Decision: "allow", LatencyMs: 0.25,
			Guardrails: `[{"policy":"pii","phase":"input","action":"mask"}]`},
		{EventID: "00000000-0000-4000-8000-000000000003", Time: t0.Add(2 * time.Millisecond), Service: llm, Action: "chat.completions",
			UserIdentity: "alice@example.com", RunBy: "alice@example.com", RunAs: "coding-agent", RequestID: "req-3",
			SecurableType: "MODEL SERVICE", SecurableName: "system.ai.chat", StatusCode: 200, Decision: "allow", LatencyMs: 812.125,
			TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", SpanID: "00f067aa0ba902b7",
			Usage: &catalog.LLMUsage{ProviderService: "system.ai.openai", Provider: "openai", Model: "gpt-4o", InputTokens: 10,
				OutputTokens: 20, CachedInputTokens: 3, CacheWriteTokens: 4, ReasoningTokens: 5, CostNanos: 1_500_000_001,
				TTFTMs: 41.5, Streaming: true, RequestTags: `{"team":"data"}`, Routing: `[{"destination":"gpt-4o","status":200}]`}},
		{EventID: "00000000-0000-4000-8000-000000000004", Time: t0.Add(3 * time.Millisecond), Service: llm, Action: "chat.completions",
			UserIdentity: "bob@example.com", RequestID: "req-4", SecurableType: "MODEL SERVICE", SecurableName: "system.ai.chat",
			StatusCode: 429, Decision: "deny", Reason: "rate limited", LatencyMs: 0.5},
		{EventID: "00000000-0000-4000-8000-000000000005", Time: t0.Add(4 * time.Millisecond), Service: llm, Action: catalog.AuditActionPayload,
			UserIdentity: "alice@example.com", RunAs: "coding-agent", RequestID: "req-3", SecurableType: "MODEL SERVICE",
			SecurableName: "system.ai.chat", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
			Payload: &catalog.AuditPayload{RequestBody: `{"messages":[]}`, ResponseBody: "data: {}\n\n"}},
	}
}

// viewValue writes a value in a form that tells its type apart, and fails
// when the value is not of t's Go type.
func viewValue(t catalog.DataType, v any) (string, error) {
	if v == nil {
		return "NULL", nil
	}
	ok := false
	var s string
	switch x := v.(type) {
	case string:
		ok, s = t == catalog.DataText || t == catalog.DataJSON, strconv.Quote(x)
	case int32:
		ok, s = t == catalog.DataInt32, strconv.FormatInt(int64(x), 10)
	case int64:
		ok, s = t == catalog.DataInt64, strconv.FormatInt(x, 10)
	case float64:
		ok, s = t == catalog.DataFloat64, strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		ok, s = t == catalog.DataBool, strconv.FormatBool(x)
	case time.Time:
		ok, s = t == catalog.DataTimestamptz || t == catalog.DataDate, x.UTC().Format(time.RFC3339Nano)
	case catalog.Decimal:
		ok, s = t == catalog.DataNumeric, new(big.Rat).SetFrac(x.Unscaled, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Scale)), nil)).FloatString(x.Scale)
	}
	if !ok {
		return "", fmt.Errorf("%T %v is not a %v", v, v, t)
	}
	return s, nil
}

// viewWant are the rows of each relation for viewEvents, in event_time
// order: what every dialect answers.
var viewWant = map[string][][]string{
	catalog.AuditRelation: {
		{
			`2026-03-01T12:00:00Z`,                   // event_time
			`2026-03-01T00:00:00Z`,                   // event_date
			`"00000000-0000-4000-8000-000000000001"`, // event_id
			`"sql"`,                                  // service_name
			`"GRANT"`,                                // action_name
			`"admin@example.com"`,                    // user_identity
			`"{\"run_by\":\"alice@example.com\",\"run_as\":\"coding-agent\"}"`, // identity_metadata
			`"127.0.0.1"`,    // source_ip_address
			`"psql"`,         // user_agent
			`"s1"`,           // session_id
			`"req-1"`,        // request_id
			`"CONNECTION"`,   // securable_type
			`"system.ai.gh"`, // securable_name
			`"{\"statement\":\"GRANT ...\",\"n\":2}"`,                                              // request_params
			`"{\"status_code\":1,\"error_message\":\"denied \\\"x\\\"\",\"sql_state\":\"42501\"}"`, // response
			`"deny"`,                             // decision
			`"no privilege"`,                     // reason
			`1.5`,                                // latency_ms
			`"0af7651916cd43dd8448eb211c80319c"`, // trace_id
			`"b7ad6b7169203331"`,                 // span_id
			`NULL`,                               // guardrails
		},
		{
			`2026-03-01T12:00:00.001Z`,               // event_time
			`2026-03-01T00:00:00Z`,                   // event_date
			`"00000000-0000-4000-8000-000000000002"`, // event_id
			`"mcp"`,                                  // service_name
			`"tools/call"`,                           // action_name
			`"bob@example.com"`,                      // user_identity
			`"{\"run_by\":\"\",\"run_as\":\"\"}"`,    // identity_metadata
			`""`,                                     // source_ip_address
			`""`,                                     // user_agent
			`""`,                                     // session_id
			`"req-2"`,                                // request_id
			`"CONNECTION"`,                           // securable_type
			`"system.ai.gh"`,                         // securable_name
			`NULL`,                                   // request_params
			`"{\"status_code\":200,\"error_message\":\"\",\"sql_state\":\"\"}"`, // response
			`"allow"`, // decision
			`""`,      // reason
			`0.25`,    // latency_ms
			`NULL`,    // trace_id
			`NULL`,    // span_id
			`"[{\"policy\":\"pii\",\"phase\":\"input\",\"action\":\"mask\"}]"`, // guardrails
		},
		{
			`2026-03-01T12:00:00.002Z`,               // event_time
			`2026-03-01T00:00:00Z`,                   // event_date
			`"00000000-0000-4000-8000-000000000003"`, // event_id
			`"llm"`,                                  // service_name
			`"chat.completions"`,                     // action_name
			`"alice@example.com"`,                    // user_identity
			`"{\"run_by\":\"alice@example.com\",\"run_as\":\"coding-agent\"}"`, // identity_metadata
			`""`,               // source_ip_address
			`""`,               // user_agent
			`""`,               // session_id
			`"req-3"`,          // request_id
			`"MODEL SERVICE"`,  // securable_type
			`"system.ai.chat"`, // securable_name
			`NULL`,             // request_params
			`"{\"status_code\":200,\"error_message\":\"\",\"sql_state\":\"\"}"`, // response
			`"allow"`,                            // decision
			`""`,                                 // reason
			`812.125`,                            // latency_ms
			`"4bf92f3577b34da6a3ce929d0e0e4736"`, // trace_id
			`"00f067aa0ba902b7"`,                 // span_id
			`NULL`,                               // guardrails
		},
		{
			`2026-03-01T12:00:00.003Z`,               // event_time
			`2026-03-01T00:00:00Z`,                   // event_date
			`"00000000-0000-4000-8000-000000000004"`, // event_id
			`"llm"`,                                  // service_name
			`"chat.completions"`,                     // action_name
			`"bob@example.com"`,                      // user_identity
			`"{\"run_by\":\"\",\"run_as\":\"\"}"`,    // identity_metadata
			`""`,                                     // source_ip_address
			`""`,                                     // user_agent
			`""`,                                     // session_id
			`"req-4"`,                                // request_id
			`"MODEL SERVICE"`,                        // securable_type
			`"system.ai.chat"`,                       // securable_name
			`NULL`,                                   // request_params
			`"{\"status_code\":429,\"error_message\":\"\",\"sql_state\":\"\"}"`, // response
			`"deny"`,         // decision
			`"rate limited"`, // reason
			`0.5`,            // latency_ms
			`NULL`,           // trace_id
			`NULL`,           // span_id
			`NULL`,           // guardrails
		},
	},
	catalog.UsageRelation: {
		{
			`2026-03-01T12:00:00.002Z`, // event_time
			`"req-3"`,                  // request_id
			`"system.ai.chat"`,         // service_name
			`"system.ai.openai"`,       // provider_service
			`"openai"`,                 // provider
			`"gpt-4o"`,                 // model
			`"alice@example.com"`,      // requester
			`"coding-agent"`,           // run_as
			`200`,                      // status_code
			`10`,                       // input_tokens
			`20`,                       // output_tokens
			`3`,                        // cached_input_tokens
			`4`,                        // cache_write_tokens
			`5`,                        // reasoning_tokens
			`37`,                       // total_tokens
			`1.500000001`,              // cost_usd
			`812.125`,                  // latency_ms
			`41.5`,                     // ttft_ms
			`true`,                     // streaming
			`"{\"team\":\"data\"}"`,    // request_tags
			`"[{\"destination\":\"gpt-4o\",\"status\":200}]"`, // routing
			`"4bf92f3577b34da6a3ce929d0e0e4736"`,              // trace_id
			`"00f067aa0ba902b7"`,                              // span_id
		},
		{
			`2026-03-01T12:00:00.003Z`, // event_time
			`"req-4"`,                  // request_id
			`"system.ai.chat"`,         // service_name
			`NULL`,                     // provider_service
			`NULL`,                     // provider
			`NULL`,                     // model
			`"bob@example.com"`,        // requester
			`NULL`,                     // run_as
			`429`,                      // status_code
			`NULL`,                     // input_tokens
			`NULL`,                     // output_tokens
			`NULL`,                     // cached_input_tokens
			`NULL`,                     // cache_write_tokens
			`NULL`,                     // reasoning_tokens
			`NULL`,                     // total_tokens
			`NULL`,                     // cost_usd
			`0.5`,                      // latency_ms
			`NULL`,                     // ttft_ms
			`NULL`,                     // streaming
			`NULL`,                     // request_tags
			`NULL`,                     // routing
			`NULL`,                     // trace_id
			`NULL`,                     // span_id
		},
	},
	catalog.PayloadsRelation: {
		{
			`2026-03-01T12:00:00.004Z`,           // event_time
			`"req-3"`,                            // request_id
			`"system.ai.chat"`,                   // service_name
			`"alice@example.com"`,                // requester
			`"coding-agent"`,                     // run_as
			`"{\"messages\":[]}"`,                // request_body
			`"data: {}\n\n"`,                     // response_body
			`"4bf92f3577b34da6a3ce929d0e0e4736"`, // trace_id
		},
	},
}
