package main

import (
	"slices"
	"strings"
	"testing"
)

// TestKillMidTransaction: kill -9 while a transaction block is open, after
// some of its statements ran, leaves nothing of it after a restart (no
// change, no audit record), while a block whose COMMIT returned and a
// change committed by another session meanwhile are all there.
func TestKillMidTransaction(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	c := s.admin(t)
	mustExec(t, c, `BEGIN`,
		`CREATE GROUP committed_g`,
		`CREATE CONNECTION committed_c TYPE MCP OPTIONS (url 'https://mcp.example/mcp')`,
		`GRANT USE_CONNECTION ON CONNECTION committed_c TO committed_g`,
		`COMMIT`)
	open := s.admin(t)
	mustExec(t, open, `BEGIN`,
		`CREATE GROUP pending_g`,
		`GRANT USE_CONNECTION ON CONNECTION committed_c TO pending_g`,
		`REVOKE USE_CONNECTION ON CONNECTION committed_c FROM committed_g`,
		`CREATE USER pending_u WITH PASSWORD 'pending-pw'`)
	if got := queryRows(t, open, `SHOW GRANTS ON CONNECTION committed_c`); !slices.ContainsFunc(got, func(r string) bool { return strings.HasPrefix(r, "pending_g|") }) {
		t.Fatalf("the open block does not see its own grant: %q", got)
	}
	mustExec(t, c, `CREATE GROUP after_block`)
	rev := queryRows(t, c, `SHOW REVISION`)
	s.kill(t) // between two statements of the open block

	s2 := startServer(t, serverOpts{dataDir: s.dataDir})
	a := s2.admin(t)
	if got := queryRows(t, a, `SHOW REVISION`); !slices.Equal(got, rev) {
		t.Errorf("revision after restart %v, want %v (the last commit before the kill)", got, rev)
	}
	groups := queryRows(t, a, `SHOW GROUPS`)
	has := func(rows []string, prefix string) bool {
		return slices.ContainsFunc(rows, func(r string) bool { return strings.HasPrefix(r, prefix) })
	}
	if !has(groups, "committed_g|") || !has(groups, "after_block|") || has(groups, "pending_g|") {
		t.Errorf("groups after restart: %q, want committed_g and after_block, not pending_g", groups)
	}
	if has(queryRows(t, a, `SHOW USERS`), "pending_u|") {
		t.Error("user of the uncommitted block exists after restart")
	}
	grants := queryRows(t, a, `SHOW GRANTS ON CONNECTION committed_c`)
	if !has(grants, "committed_g|USE CONNECTION|") || has(grants, "pending_g|") {
		t.Errorf("grants after restart: %q, want committed_g's only", grants)
	}
	if got := queryRows(t, a, `SELECT count(*) FROM system.access.audit WHERE request_params->>'statement' LIKE '%pending_%'`); !slices.Equal(got, []string{"0"}) {
		t.Errorf("audit records of the uncommitted block: %v, want none", got)
	}
	// The committed block's three statements; not the uncommitted REVOKE.
	if got := queryRows(t, a, `SELECT count(*) FROM system.access.audit WHERE request_params->>'statement' LIKE '%committed_%'`); !slices.Equal(got, []string{"3"}) {
		t.Errorf("audit records naming committed_*: %v, want the committed block's 3", got)
	}
}
