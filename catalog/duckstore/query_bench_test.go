package duckstore

import (
	"context"
	"database/sql/driver"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/mandatehq/mandate/catalog"
)

// TestAuditQueryPerformance loads MANDATE_AUDIT_ROWS audit events (e.g.
// 10000000) with DuckDB's appender and times the two target queries
// of the system tables: the 7-day top-20 aggregate (target 1 s) and a
// lookup by request_id (target 50 ms). It runs only when the variable is
// set; MANDATE_AUDIT_DIR keeps the data directory (to serve it and time
// the queries over the wire with psql):
//
//	MANDATE_AUDIT_ROWS=10000000 MANDATE_AUDIT_DIR=/tmp/audit10m \
//	  go test -run TestAuditQueryPerformance -v -timeout 30m ./catalog/duckstore/
func TestAuditQueryPerformance(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("MANDATE_AUDIT_ROWS"))
	if n <= 0 {
		t.Skip("set MANDATE_AUDIT_ROWS to run")
	}
	dir := os.Getenv("MANDATE_AUDIT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	ctx := t.Context()
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.QueryEngine(QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	var have int64
	if err := s.db.QueryRowContext(ctx, "SELECT count(*) FROM audit_events").Scan(&have); err != nil {
		t.Fatal(err)
	}
	end := time.Now().UTC()
	span := 90 * 24 * time.Hour // events spread over 90 days, appended in time order
	if have < int64(n) {
		start := time.Now()
		if err := loadAudit(ctx, s, int(have), n, end.Add(-span), span); err != nil {
			t.Fatal(err)
		}
		t.Logf("appended %d events in %v", n-int(have), time.Since(start).Round(time.Millisecond))
	}
	queries := []struct {
		name, sql string
		args      []any
		limit     time.Duration
	}{
		{"top20 over 7 days", `SELECT user_identity, action_name, count(*) FROM ` + catalog.AuditRelation +
			` WHERE event_time > now() - interval '7 days' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20`, nil, time.Second},
		{"lookup by request_id", `SELECT * FROM ` + catalog.AuditRelation + ` WHERE request_id = $1`,
			[]any{requestID(n / 2)}, 50 * time.Millisecond},
		{"lookup by request_id (literal)", `SELECT * FROM ` + catalog.AuditRelation + ` WHERE request_id = '` +
			requestID(n/3) + `'`, nil, 50 * time.Millisecond},
	}
	for _, q := range queries {
		var best time.Duration
		rows := 0
		for i := range 5 {
			rows = 0
			start := time.Now()
			err := e.Query(ctx, catalog.Query{SQL: q.sql, Args: q.args}, func([]any) error { rows++; return nil })
			d := time.Since(start)
			if err != nil {
				t.Fatalf("%s: %v", q.name, err)
			}
			if i == 0 || d < best {
				best = d
			}
			t.Logf("%s: run %d %v (%d rows)", q.name, i+1, d.Round(time.Microsecond), rows)
		}
		if rows == 0 {
			t.Errorf("%s: no rows", q.name)
		}
		if best > q.limit {
			t.Errorf("%s: best of 5 is %v, target %v", q.name, best, q.limit)
		}
	}
}

// loadAudit appends events [from, to) with the appender, in time order.
func loadAudit(ctx context.Context, s *Store, from, to int, start time.Time, span time.Duration) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		app, err := duckdb.NewAppenderFromConn(dc.(driver.Conn), "", "audit_events")
		if err != nil {
			return err
		}
		step := span / time.Duration(to)
		actions := []string{"tools/call", "tools/list", "initialize", "resources/read", "GRANT", "REVOKE", "CREATE CONNECTION", "prompts/get"}
		for i := from; i < to; i++ {
			at := start.Add(time.Duration(i) * step)
			user := fmt.Sprintf("user%03d@example.com", i%173)
			if err := app.AppendRow(fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), at, at.Truncate(24*time.Hour),
				"mcp", actions[(i/7)%len(actions)], user, user, "coding-agent", "10.1.2.3", "claude-code/1.0", "sess-1",
				requestID(i), "CONNECTION", "system.ai.github",
				`{"tool":"search_issues","arguments_size":123}`, int32(0), "", "", "allow", "granted", float64(i%100)/10,
				int64(0), // revision; then the AI gateway's columns (schema/duckdb/0003), empty
				"", "", "", "", "", "", nil, nil, nil, nil, nil, nil, nil, nil, "", "", nil, nil); err != nil {
				return err
			}
		}
		return app.Close()
	})
}

// requestID is a random-looking request ID (as gateways generate them), so
// that zone maps cannot find one without the index.
func requestID(i int) string {
	x := uint64(i) + 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	x ^= x >> 31
	return fmt.Sprintf("%016x-%08x", x, i)
}
