package duckstore

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/schema"
)

// metaOf reads a mandate_meta value.
func metaOf(t *testing.T, s *Store, key string) int64 {
	t.Helper()
	var v int64
	if err := s.db.QueryRowContext(t.Context(), `SELECT value FROM mandate_meta WHERE key = $1`, key).Scan(&v); err != nil {
		t.Fatalf("read mandate_meta %s: %v", key, err)
	}
	return v
}

// tables lists the tables of the database.
func tables(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.db.QueryContext(t.Context(),
		`SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' ORDER BY table_name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return names
}

func TestMigrateFreshAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v := metaOf(t, s, "schema_version"); v != schema.LatestVersion {
		t.Errorf("schema_version = %d, want %d", v, schema.LatestVersion)
	}
	want := []string{"audit_events", "grants", "mandate_meta", "memberships", "principals", "securables", "system_access_audit",
		"system_ai_gateway_payloads", "system_ai_gateway_usage"}
	if got := tables(t, s); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("tables = %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		t.Errorf("database file: %v", err)
	}
	if v := metaOf(t, s, "audit_revision"); v != 0 {
		t.Errorf("audit_revision of a new store = %d", v)
	}
	must(t, s.AppendChangeAudit(t.Context(), 3, nil))
	must(t, s.Close())

	// Reopening migrates nothing (0001 would fail on the existing tables)
	// and keeps the data.
	s = openT(t, dir)
	if v := metaOf(t, s, "schema_version"); v != schema.LatestVersion {
		t.Errorf("schema_version after reopen = %d, want %d", v, schema.LatestVersion)
	}
	if m, err := s.AuditedRevision(t.Context()); err != nil || m != 3 {
		t.Errorf("AuditedRevision after reopen = %d, %v", m, err)
	}
}

func TestMigrateUpgrade(t *testing.T) {
	ms, err := schema.Migrations(schema.DuckDB)
	must(t, err)
	dir := t.TempDir()
	s, err := open(t.Context(), dir, Options{}, ms)
	must(t, err)
	must(t, s.Close())

	// A migration that fails leaves the database as it was.
	bad := append(ms[:len(ms):len(ms)],
		schema.Migration{Version: len(ms) + 1, Name: "half", SQL: "CREATE TABLE half_done (x INTEGER); SELECT no_such_column FROM grants;"})
	_, err = open(t.Context(), dir, Options{}, bad)
	if catalog.CodeOf(err) != catalog.CodeInternal || !strings.Contains(err.Error(), "half") {
		t.Fatalf("open with a failing migration: %v, want an internal error naming it", err)
	}

	next := append(ms[:len(ms):len(ms)],
		schema.Migration{Version: len(ms) + 1, Name: "extra", SQL: "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (42);"})
	s, err = open(t.Context(), dir, Options{}, next)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	if v := metaOf(t, s, "schema_version"); v != int64(len(next)) {
		t.Errorf("schema_version = %d, want %d", v, len(next))
	}
	for _, table := range tables(t, s) {
		if table == "half_done" {
			t.Error("the failed migration left table half_done behind")
		}
	}
	var x int
	must(t, s.db.QueryRowContext(t.Context(), "SELECT x FROM extra").Scan(&x))
	if x != 42 {
		t.Errorf("extra.x = %d", x)
	}
}

func TestMigrateRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(t.Context(), dir, Options{})
	must(t, err)
	_, err = s.db.ExecContext(t.Context(), `UPDATE mandate_meta SET value = $1 WHERE key = 'schema_version'`,
		int64(schema.LatestVersion+1))
	must(t, err)
	must(t, s.Close())

	_, err = Open(t.Context(), dir, Options{})
	var ce *catalog.Error
	if !errors.As(err, &ce) || ce.Code != catalog.CodeIncompatibleData {
		t.Fatalf("Open = %v, want a *catalog.Error with CodeIncompatibleData", err)
	}
	want := "data directory was written by a newer Mandate (schema version 2, this binary supports 1); upgrade Mandate"
	if schema.LatestVersion == 1 && ce.Msg != want {
		t.Errorf("message = %q, want %q", ce.Msg, want)
	}
	if !strings.Contains(ce.Detail, dir) {
		t.Errorf("detail %q does not name the directory", ce.Detail)
	}
	// The refused open released the database: it opens again once fixed.
	s, err = open(t.Context(), dir, Options{}, append(mustMigrations(t), schema.Migration{
		Version: schema.LatestVersion + 1, Name: "future", SQL: "SELECT 1"}))
	must(t, err)
	must(t, s.Close())
}

func TestOpenRefusesForeignData(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		code  catalog.Code
		msg   string
	}{
		{
			name: "not a DuckDB file",
			setup: func(t *testing.T, dir string) {
				must(t, os.WriteFile(filepath.Join(dir, FileName), []byte("PGDMP not a duckdb file at all, just some bytes"), 0o600))
			},
			code: catalog.CodeIncompatibleData,
			msg:  "cannot be read by this Mandate",
		},
		{
			name: "a DuckDB database Mandate did not create",
			setup: func(t *testing.T, dir string) {
				db, err := sql.Open("duckdb", filepath.Join(dir, FileName))
				must(t, err)
				_, err = db.ExecContext(t.Context(), "CREATE TABLE other (x INTEGER)")
				must(t, err)
				must(t, db.Close())
			},
			code: catalog.CodeIncompatibleData,
			msg:  "did not create",
		},
		{
			name: "no schema_version",
			setup: func(t *testing.T, dir string) {
				s, err := Open(t.Context(), dir, Options{})
				must(t, err)
				_, err = s.db.ExecContext(t.Context(), "DELETE FROM mandate_meta WHERE key = 'schema_version'")
				must(t, err)
				must(t, s.Close())
			},
			code: catalog.CodeIncompatibleData,
			msg:  "no schema_version",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			s, err := Open(t.Context(), dir, Options{})
			if err == nil {
				_ = s.Close()
				t.Fatal("Open succeeded")
			}
			if catalog.CodeOf(err) != tt.code || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Open = %v (code %d), want code %d and %q", err, catalog.CodeOf(err), tt.code, tt.msg)
			}
		})
	}
}

func mustMigrations(t *testing.T) []schema.Migration {
	t.Helper()
	ms, err := schema.Migrations(schema.DuckDB)
	must(t, err)
	return ms
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A data directory of schema version 2 (audit events without the usage,
// trace and guardrail columns) keeps its events when it is migrated: they
// show in system.access.audit with NULL trace ids, no usage rows, and new
// events carry the new columns.
func TestMigrateAIGatewayColumns(t *testing.T) {
	ms, err := schema.Migrations(schema.DuckDB)
	must(t, err)
	dir := t.TempDir()
	s, err := open(t.Context(), dir, Options{}, ms[:2])
	must(t, err)
	_, err = s.db.ExecContext(t.Context(), `INSERT INTO audit_events VALUES ('old-1', TIMESTAMPTZ '2026-01-02 03:04:05+00',
		DATE '2026-01-02', 'mcp', 'tools/call', 'alice', 'alice', 'agent', '10.0.0.1', 'ua', 's', 'r-old', 'CONNECTION',
		'system.ai.gh', '{"tool":"x"}', 200, '', '', 'allow', '', 1.5, 0)`)
	must(t, err)
	must(t, s.Close())

	s, err = open(t.Context(), dir, Options{}, ms)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	var id string
	var trace, guard any
	must(t, s.db.QueryRowContext(t.Context(), `SELECT event_id, trace_id, guardrails FROM system_access_audit`).Scan(&id, &trace, &guard))
	if id != "old-1" || trace != nil || guard != nil {
		t.Errorf("old event after the migration: %s %v %v", id, trace, guard)
	}
	ev := catalog.AuditEvent{EventID: "new-1", Time: time.Now().UTC(), Service: catalog.AuditServiceLLM, Action: "chat.completions",
		UserIdentity: "alice", RequestID: "r-new", SecurableName: "system.ai.frontier", StatusCode: 200, TraceID: "abc",
		Usage: &catalog.LLMUsage{Provider: "openai", Model: "gpt-4.1", InputTokens: 7, OutputTokens: 3, CostNanos: 1500}}
	must(t, s.AppendAudit(t.Context(), ev))
	var n, total int64
	var cost string
	must(t, s.db.QueryRowContext(t.Context(), `SELECT count(*), sum(total_tokens)::BIGINT, sum(cost_usd)::VARCHAR FROM system_ai_gateway_usage`).Scan(&n, &total, &cost))
	if n != 1 || total != 10 || cost != "0.000001500" {
		t.Errorf("usage after the migration: %d rows, %d tokens, cost %s", n, total, cost)
	}
	got, err := s.ListAudit(t.Context(), time.Time{}, 0)
	must(t, err)
	if len(got) != 2 || got[0].Usage != nil || got[1].Usage == nil || got[1].Usage.CostNanos != 1500 || got[1].TraceID != "abc" {
		t.Errorf("ListAudit: %+v", got)
	}
}
