package sqlfront_test

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgtest"
)

// TestSystemTablesWireScale measures the 7-day top-20 aggregate and the
// request_id lookup over MANDATE_WIRE_AUDIT_ROWS audit events through
// Mandate's wire (pgx, extended protocol), with the queries on DuckDB
// (embedded) and on PostgreSQL (catalog/pgquery over the event stream's
// views), the same rows in both, runs alternated. Not part of make test:
//
//	MANDATE_WIRE_AUDIT_ROWS=10000000 go test -run TestSystemTablesWireScale -v -timeout 60m ./sqlfront/
func TestSystemTablesWireScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MANDATE_WIRE_AUDIT_ROWS"))
	if n <= 0 {
		t.Skip("set MANDATE_WIRE_AUDIT_ROWS to run")
	}
	ctx := t.Context()
	end := time.Now().UTC()
	span := 90 * 24 * time.Hour // as the DuckDB benchmark: 90 days in time order
	start := end.Add(-span)
	step := span / time.Duration(n)
	actions := []string{"tools/call", "tools/list", "initialize", "resources/read", "GRANT", "REVOKE", "CREATE CONNECTION", "prompts/get"}
	reqID := func(i int) string { h := md5.Sum([]byte(strconv.Itoa(i))); return hex.EncodeToString(h[:]) }

	// DuckDB: appended in batches through the event store.
	duck := startSysFrontend(t)
	t0 := time.Now()
	const batch = 50000
	for from := 0; from < n; from += batch {
		evs := make([]catalog.AuditEvent, 0, batch)
		for i := from; i < min(from+batch, n); i++ {
			at := start.Add(time.Duration(i) * step)
			user := fmt.Sprintf("user%03d@example.com", i%173)
			evs = append(evs, catalog.AuditEvent{EventID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), Time: at, Service: "mcp",
				Action: actions[(i/7)%len(actions)], UserIdentity: user, RunBy: user, RunAs: "coding-agent", SourceIP: "10.1.2.3",
				UserAgent: "claude-code/1.0", SessionID: "sess-1", RequestID: reqID(i), SecurableType: "CONNECTION",
				SecurableName: "system.ai.github", RequestParams: `{"tool":"search_issues","arguments_size":123}`, Decision: "allow",
				Reason: "granted", LatencyMs: float64(i%100) / 10})
		}
		if err := duck.Events.AppendAudit(ctx, evs...); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("DuckDB: appended %d events in %v", n, time.Since(t0).Round(time.Millisecond))

	// PostgreSQL: the event stream's tables, loaded by the server itself.
	pgs := pgtest.Start(t, pgtest.Options{})
	pgf := startSysFrontend(t, func(o *sysOptions) { o.pg = pgs })
	load := pgs.Connect(t, pgf.PGDatabase)
	t0 = time.Now()
	mustExec(t, load, fmt.Sprintf("SELECT mandate_audit_ensure_partitions(DATE '%s', 93)", start.Add(-24*time.Hour).Format("2006-01-02")))
	const chunk = 1000000
	for from := 0; from < n; from += chunk {
		_, err := load.Exec(ctx, `INSERT INTO audit_events (event_id, event_time, event_date, service_name, action_name, user_identity,
			run_by, run_as, source_ip_address, user_agent, session_id, request_id, securable_type, securable_name, request_params,
			status_code, error_message, sql_state, decision, reason, latency_ms, revision)
			SELECT lpad(to_hex(i), 8, '0') || '-0000-4000-8000-' || lpad(to_hex(i), 12, '0'), ts, (ts AT TIME ZONE 'UTC')::date,
				'mcp', ($5::text[])[(i / 7) % 8 + 1], u, u, 'coding-agent', '10.1.2.3', 'claude-code/1.0', 'sess-1', md5(i::text),
				'CONNECTION', 'system.ai.github', '{"tool":"search_issues","arguments_size":123}', 0, '', '', 'allow', 'granted',
				(i % 100) / 10.0, 0
			FROM (SELECT i, $1::timestamptz + i * $2::interval AS ts, 'user' || lpad((i % 173)::text, 3, '0') || '@example.com' AS u
				FROM generate_series($3::int, $4::int) AS i) s`,
			start, fmt.Sprintf("%d microseconds", step.Microseconds()), from, min(from+chunk, n)-1, actions)
		if err != nil {
			t.Fatal(err)
		}
	}
	mustExec(t, load, "ANALYZE audit_events")
	t.Logf("PostgreSQL: inserted %d events in %v", n, time.Since(t0).Round(time.Millisecond))

	queries := []struct {
		name, sql string
		args      []any
	}{
		{"top20 over 7 days", `SELECT user_identity, action_name, count(*) FROM system.access.audit WHERE event_time > now() - interval '7 days' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20`, nil},
		{"lookup by request_id", `SELECT * FROM system.access.audit WHERE request_id = $1`, []any{reqID(n / 2)}},
		{"lookup by request_id (literal)", `SELECT * FROM system.access.audit WHERE request_id = '` + reqID(n/3) + `'`, nil},
	}
	engines := []struct {
		name string
		conn *pgx.Conn
	}{{"duckdb", duck.admin(t)}, {"postgres", pgf.admin(t)}}
	type spread struct{ lo, hi time.Duration }
	res := map[string]*spread{}
	for run := range 5 {
		for _, q := range queries {
			for _, e := range engines {
				t0 := time.Now()
				rows := queryRows(t, e.conn, q.sql, q.args...)
				d := time.Since(t0)
				if len(rows) == 0 {
					t.Fatalf("%s on %s: no rows", q.name, e.name)
				}
				k := q.name + " | " + e.name
				if s := res[k]; s == nil {
					res[k] = &spread{d, d}
				} else {
					s.lo, s.hi = min(s.lo, d), max(s.hi, d)
				}
				t.Logf("run %d %s on %s: %v (%d rows)", run+1, q.name, e.name, d.Round(time.Microsecond), len(rows))
			}
		}
	}
	for _, q := range queries {
		for _, e := range engines {
			s := res[q.name+" | "+e.name]
			t.Logf("%s on %s: %v–%v", q.name, e.name, s.lo.Round(100*time.Microsecond), s.hi.Round(100*time.Microsecond))
		}
	}
}
