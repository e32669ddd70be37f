package main

import (
	"strings"
	"testing"
	"time"
)

// TestSystemTablesServe: mandate serve wires the query engine: the audit
// of its own statements is readable with SQL, privileges apply, and
// --audit-retention is accepted.
func TestSystemTablesServe(t *testing.T) {
	testSystemTablesServe(t, startServer(t, serverOpts{args: []string{"--audit-retention", "720h"}}))
}

// TestSystemTablesServeOnPostgres: the same with --store postgres://,
// the queries on PostgreSQL; then a rotation of the query role's password
// while the replica serves.
func TestSystemTablesServeOnPostgres(t *testing.T) {
	c := startCluster(t, 1, nil, "--audit-retention", "720h")
	testSystemTablesServe(t, c.replicas[0])
	t.Run("RotateQueryPassword", func(t *testing.T) { testRotateQueryPassword(t, c) })
}

func testSystemTablesServe(t *testing.T, s *server) {
	admin := s.admin(t)
	mustExec(t, admin, `CREATE USER alice WITH PASSWORD 'alice-pw'`, `CREATE GROUP "security-team"`)
	var rows []string
	waitFor(t, 10*time.Second, "the audit of CREATE USER", func() bool {
		rows = queryRows(t, admin, `SELECT action_name, user_identity, response->>'status_code' FROM system.access.audit
			WHERE service_name = 'sql' AND action_name = 'CREATE USER'`)
		return len(rows) == 1
	})
	if rows[0] != "CREATE USER|admin|0" {
		t.Errorf("audit row %q", rows[0])
	}
	alice, err := s.connect(t, "alice", "alice-pw", "system")
	if err != nil {
		t.Fatal(err)
	}
	_, err = alice.Exec(t.Context(), `SELECT count(*) FROM system.access.audit`)
	if sqlState(err) != "42501" {
		t.Errorf("alice: %v, want 42501", err)
	}
	mustExec(t, admin, `GRANT SELECT ON SCHEMA system.access TO alice`)
	if got := queryRows(t, alice, `SELECT count(*) > 0 FROM system.access.audit`); strings.Join(got, ",") != "true" {
		t.Errorf("alice after GRANT: %v", got)
	}
	if got := queryRows(t, alice, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'access'`); strings.Join(got, ",") != "audit" {
		t.Errorf("alice's tables: %v", got)
	}
}

func TestAuditRetentionFlag(t *testing.T) {
	_, stderr, code := runBinary(t, baseEnv(), "serve", "--audit-retention", "-1h")
	if code == 0 || !strings.Contains(stderr, "--audit-retention") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
