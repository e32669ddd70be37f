package pgquery_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgquery"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
)

var partitionRef = regexp.MustCompile(`audit_events_(p[0-9]{8}|default)`)

// A query that fixes request_id reads and plans only the partitions of the
// days that request has events on (its request row, and payload and
// guardrail rows days later), and returns every row of the request.
func TestRequestIDLookupBounded(t *testing.T) {
	pgs := pgtest.Start(t, pgtest.Options{})
	pgs.CreateDatabase(t, "mandate")
	ctx := t.Context()
	now := time.Now().UTC()
	ev, err := pgstore.OpenEvents(ctx, pgs.URL("mandate"), pgstore.EventOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	// Events at noon (one at 13:00): at any time of day each stays on its
	// day's partition.
	first := time.Date(now.Year(), now.Month(), now.Day(), 12, 0, 0, 0, time.UTC).AddDate(0, 0, -30)
	if _, err := ev.Pool().Exec(ctx, `SELECT mandate_audit_ensure_partitions($1::date, 34)`, first.Format(time.DateOnly)); err != nil {
		t.Fatal(err)
	}
	day := func(n int) time.Time { return first.AddDate(0, 0, n) }
	event := func(id, req string, at time.Time, service, action string) catalog.AuditEvent {
		return catalog.AuditEvent{EventID: id, Time: at, Service: service, Action: action, UserIdentity: "alice", RunBy: "alice",
			RunAs: "alice", RequestID: req, SecurableType: "SERVICE", SecurableName: "system.ai.gpt", RequestParams: `{}`, Decision: "allow"}
	}
	var evs []catalog.AuditEvent
	for i := range 30 { // other requests on every day
		evs = append(evs, event(fmt.Sprintf("o%d", i), fmt.Sprintf("other-%d", i), day(i), "llm", "chat"))
	}
	if err := ev.AppendAudit(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	// The request's rows on days 2, 3 (payload) and 20 (guardrail), in
	// separate appends as they come.
	for _, e := range []catalog.AuditEvent{
		event("r1", "req-x", day(2), "llm", "chat"),
		event("r2", "req-x", day(3), "llm", "payload"),
		event("r3", "req-x", day(20).Add(time.Hour), "llm", "guardrail"),
	} {
		if err := ev.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	e, err := pgquery.Open(ctx, pgs.URL("mandate"), pgquery.Options{Schema: pgstore.ViewsSchema, Keys: keystore.Dir(t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	want := func(days ...int) []string {
		var out []string
		for _, d := range days {
			out = append(out, "audit_events_p"+day(d).Format("20060102"))
		}
		return out
	}
	all := []string{"all"}
	for _, c := range []struct {
		sql   string
		args  []any
		rows  int
		parts []string
	}{
		{`SELECT event_id FROM system_access_audit WHERE request_id = 'req-x'`, nil, 2, want(2, 3, 20)},
		{`SELECT event_id FROM system_access_audit WHERE request_id = $1 AND decision = 'allow'`, []any{"req-x"}, 2, want(2, 3, 20)},
		{`SELECT count(*) FROM system_ai_gateway_payloads p WHERE 'req-x' = p.request_id`, nil, 1, want(2, 3, 20)},
		{`SELECT a.event_id FROM system_access_audit a JOIN system_ai_gateway_usage u ON u.request_id = a.request_id
			WHERE a.request_id = 'req-x'`, nil, 4, all}, // u is not bounded: its request_id is fixed through the join
		{`SELECT event_id FROM system_access_audit WHERE request_id = 'missing'`, nil, 0, nil},
		{`SELECT event_id FROM system_access_audit WHERE request_id = 'req-x' OR request_id = 'other-1'`, nil, 3, all},
	} {
		rows, err := queryAll(ctx, e, catalog.Query{SQL: c.sql, Args: c.args})
		if err != nil {
			t.Fatalf("%s: %v", c.sql, err)
		}
		n := len(rows)
		if strings.HasPrefix(c.sql, "SELECT count(*)") {
			n = int(rows[0][0].(int64))
		}
		if n != c.rows {
			t.Errorf("%s: %d rows, want %d", c.sql, n, c.rows)
		}
		plan, err := queryAll(ctx, e, catalog.Query{SQL: "EXPLAIN " + c.sql, Args: c.args})
		if err != nil {
			t.Fatalf("EXPLAIN %s: %v", c.sql, err)
		}
		var parts []string
		for _, r := range plan {
			for _, m := range partitionRef.FindAllString(r[0].(string), -1) {
				if m != "audit_events_default" && !slices.Contains(parts, m) {
					parts = append(parts, m)
				}
			}
		}
		slices.Sort(parts)
		if slices.Equal(c.parts, all) {
			if len(parts) < 20 {
				t.Errorf("%s: reads %d partitions, want all", c.sql, len(parts))
			}
			continue
		}
		if !slices.Equal(parts, c.parts) {
			t.Errorf("%s: reads partitions %v, want %v", c.sql, parts, c.parts)
		}
	}
	// A CTE named after a view is left alone.
	rows, err := queryAll(ctx, e, catalog.Query{SQL: `WITH system_access_audit AS (SELECT 'req-x' AS request_id, now() - interval '900 days' AS event_time)
		SELECT count(*) FROM system_access_audit WHERE request_id = 'req-x'`})
	if err != nil || rows[0][0] != int64(1) {
		t.Fatalf("CTE: %v %v", rows, err)
	}
	// Retention deletes the days with the partitions.
	if _, err := ev.DropExpired(ctx, day(10)); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := ev.Pool().QueryRow(ctx, `SELECT count(*) FROM audit_request_days WHERE request_id = 'req-x'`).Scan(&left); err != nil || left != 1 {
		t.Fatalf("request days after retention: %d %v", left, err)
	}
	if rows, err := queryAll(ctx, e, catalog.Query{SQL: `SELECT event_id FROM system_access_audit WHERE request_id = 'req-x'`}); err != nil || len(rows) != 1 {
		t.Fatalf("after retention: %v %v", rows, err)
	}
}
