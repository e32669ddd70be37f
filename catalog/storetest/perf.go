package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// The audit-query performance harness of the event stores (duckstore's
// TestAuditQueryPerformance, pgstore's TestEventQueryPerformance): the
// same rows, the same queries and targets, whatever the store.

// PerfSpan is the time the harness's events cover, appended in time order
// up to the load's end.
const PerfSpan = 90 * 24 * time.Hour

var perfActions = []string{"tools/call", "tools/list", "initialize", "resources/read", "GRANT", "REVOKE", "CREATE CONNECTION", "prompts/get"}

// PerfEvent is event i of the n a load appends, ending at end: MCP calls
// of 173 users over PerfSpan, eight actions, a random-looking request ID.
func PerfEvent(i, n int, end time.Time) catalog.AuditEvent {
	at := end.Add(-PerfSpan).Add(time.Duration(i) * (PerfSpan / time.Duration(n)))
	user := fmt.Sprintf("user%03d@example.com", i%173)
	return catalog.AuditEvent{EventID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), Time: at,
		Service: "mcp", Action: perfActions[(i/7)%len(perfActions)], UserIdentity: user, RunBy: user, RunAs: "coding-agent",
		SourceIP: "10.1.2.3", UserAgent: "claude-code/1.0", SessionID: "sess-1", RequestID: PerfRequestID(i),
		SecurableType: "CONNECTION", SecurableName: "system.ai.github",
		RequestParams: `{"tool":"search_issues","arguments_size":123}`, Decision: "allow", Reason: "granted",
		LatencyMs: float64(i%100) / 10}
}

// PerfRequestID is event i's request ID: random-looking (as gateways
// generate them), so that zone maps cannot find one without the index.
func PerfRequestID(i int) string {
	x := uint64(i) + 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	x ^= x >> 31
	return fmt.Sprintf("%016x-%08x", x, i)
}

// PerfQuery is a timed query of the system tables and its target.
type PerfQuery struct {
	Name, SQL string
	Args      []any
	Limit     time.Duration
}

// PerfQueries are the target queries over n loaded events: the 7-day
// top-20 aggregate (1 s) and a lookup by request_id, as a parameter and as
// a literal (50 ms).
func PerfQueries(n int) []PerfQuery {
	return []PerfQuery{
		{"top20 over 7 days", `SELECT user_identity, action_name, count(*) FROM ` + catalog.AuditRelation +
			` WHERE event_time > now() - interval '7 days' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20`, nil, time.Second},
		{"lookup by request_id", `SELECT * FROM ` + catalog.AuditRelation + ` WHERE request_id = $1`,
			[]any{PerfRequestID(n / 2)}, 50 * time.Millisecond},
		{"lookup by request_id (literal)", `SELECT * FROM ` + catalog.AuditRelation + ` WHERE request_id = '` +
			PerfRequestID(n/3) + `'`, nil, 50 * time.Millisecond},
	}
}

// RunPerfQueries runs each of PerfQueries(n) five times on e, logs each
// run, and fails a query that answers no rows or whose best run misses
// its target; after, if set, is called after each query's runs (a store's
// own measurements: CPU, plan).
func RunPerfQueries(t *testing.T, e catalog.QueryEngine, n int, after func(PerfQuery)) {
	t.Helper()
	for _, q := range PerfQueries(n) {
		var best time.Duration
		rows := 0
		for i := range 5 {
			rows = 0
			start := time.Now()
			err := e.Query(t.Context(), catalog.Query{SQL: q.SQL, Args: q.Args}, func([]any) error { rows++; return nil })
			d := time.Since(start)
			if err != nil {
				t.Fatalf("%s: %v", q.Name, err)
			}
			if i == 0 || d < best {
				best = d
			}
			t.Logf("%s: run %d %v (%d rows)", q.Name, i+1, d.Round(time.Microsecond), rows)
		}
		if rows == 0 {
			t.Errorf("%s: no rows", q.Name)
		}
		if best > q.Limit {
			t.Errorf("%s: best of 5 is %v, target %v", q.Name, best, q.Limit)
		}
		if after != nil {
			after(q)
		}
	}
}
