package duckstore

import (
	"context"
	"database/sql/driver"
	"os"
	"strconv"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/mandatehq/mandate/catalog/storetest"
)

// TestAuditQueryPerformance loads MANDATE_AUDIT_ROWS audit events (e.g.
// 10000000) with DuckDB's appender and times the two target queries
// of the system tables: the 7-day top-20 aggregate (target 1 s) and a
// lookup by request_id (target 50 ms). It runs only when the variable is
// set; MANDATE_AUDIT_DIR keeps the data directory (to serve it and time
// the queries over the wire with psql); MANDATE_AUDIT_THREADS sets
// Options.Threads (DuckDB's worker threads, default one per core):
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
	threads, _ := strconv.Atoi(os.Getenv("MANDATE_AUDIT_THREADS"))
	s, err := Open(ctx, dir, Options{Threads: threads})
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
	if have < int64(n) {
		start := time.Now()
		if err := loadAudit(ctx, s, int(have), n, end); err != nil {
			t.Fatal(err)
		}
		t.Logf("appended %d events in %v", n-int(have), time.Since(start).Round(time.Millisecond))
	}
	storetest.RunPerfQueries(t, e, n, nil)
}

// loadAudit appends events [from, to) of storetest.PerfEvent (to of
// them, ending at end) with the appender, in time order.
func loadAudit(ctx context.Context, s *Store, from, to int, end time.Time) error {
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
		for i := from; i < to; i++ {
			ev := storetest.PerfEvent(i, to, end)
			if err := app.AppendRow(ev.EventID, ev.Time, ev.Time.Truncate(24*time.Hour),
				ev.Service, ev.Action, ev.UserIdentity, ev.RunBy, ev.RunAs, ev.SourceIP, ev.UserAgent, ev.SessionID,
				ev.RequestID, ev.SecurableType, ev.SecurableName,
				ev.RequestParams, int32(ev.StatusCode), ev.ErrorMessage, ev.SQLState, ev.Decision, ev.Reason, ev.LatencyMs,
				int64(0), // revision; then the AI gateway's columns (schema/duckdb/0003), empty
				"", "", "", "", "", "", nil, nil, nil, nil, nil, nil, nil, nil, "", "", nil, nil); err != nil {
				return err
			}
		}
		return app.Close()
	})
}
