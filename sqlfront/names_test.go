package sqlfront_test

import (
	"strings"
	"testing"
)

// TestConfusablePrincipalNames: a new principal whose name differs from an
// existing one only in case, white space or invisible characters is
// refused (42710), and so is a name with white space at either end or
// invisible characters (42602); such names would pass for another
// principal (the admin) in listings and audit records.
func TestConfusablePrincipalNames(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin, `CREATE GROUP "data analysts"`, `CREATE USER "Alice Smith"`)
	for _, tc := range []struct{ sql, code, want string }{
		{`CREATE USER "Admin"`, "42710", `user "Admin" conflicts with the existing user admin`},
		{`CREATE SERVICE PRINCIPAL "ADMIN"`, "42710", `conflicts with the existing user admin`},
		{`CREATE GROUP "Data Analysts"`, "42710", `conflicts with the existing group "data analysts"`},
		{`CREATE USER "data  analysts"`, "42710", `conflicts with the existing group "data analysts"`},
		{`CREATE USER IF NOT EXISTS "alice smith"`, "42710", `conflicts with the existing user "Alice Smith"`},
		{`CREATE USER "admin "`, "42602", "must not begin or end with white space"},
		{`CREATE USER " admin"`, "42602", "must not begin or end with white space"},
		{"CREATE USER \"ad\u200bmin\"", "42602", "invisible characters"},
		{"CREATE USER \"ad\u00a0min\"", "42602", "white space other than spaces"},
		{"CREATE USER \"adm\u202ein\"", "42602", "invisible characters"},
		{"CREATE USER \"bob\x01\"", "22023", "control characters"},
	} {
		_, err := admin.Exec(t.Context(), tc.sql)
		pe := wantSQLState(t, err, tc.code)
		if !strings.Contains(pe.Message, tc.want) {
			t.Errorf("%s: %q, want %q", tc.sql, pe.Message, tc.want)
		}
	}
	mustExec(t, admin, `CREATE USER "Alice Smith 2"`, `CREATE USER "admin.backup"`, `CREATE USER IF NOT EXISTS "Alice Smith"`)
	users := queryStrings(t, admin, "SHOW USERS")
	if len(users) != 4 {
		t.Errorf("SHOW USERS = %v, want admin, Alice Smith, Alice Smith 2, admin.backup", users)
	}
}

// TestCreatePolicyChecksPrivilegeFirst: a caller who may not create the
// policy gets the privilege error (42501), whatever the source, and the
// server compiles nothing for them; one who may gets the compile error.
func TestCreatePolicyChecksPrivilegeFirst(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url 'https://gh.example/mcp')`,
		`CREATE USER alice WITH PASSWORD 'alice-pw'`,
		`CREATE USER bob WITH PASSWORD 'bob-pw'`,
		`GRANT MANAGE ON CONNECTION gh TO bob`)
	alice := f.mustConnect(t, "alice", "alice-pw", "")
	bob := f.mustConnect(t, "bob", "bob-pw", "")
	const broken = `CREATE POLICY p1 ON CONNECTION gh AS $$ package p deny contains msg if { $$`
	_, err := alice.Exec(t.Context(), broken)
	pe := wantSQLState(t, err, "42501")
	if !strings.Contains(pe.Message, "permission denied to create a policy on connection system.ai.gh") {
		t.Errorf("alice: %q", pe.Message)
	}
	evs := auditEvents(t, f, "CREATE POLICY", "p1")
	if len(evs) != 1 || evs[0].Decision != "deny" || evs[0].UserIdentity != "alice" {
		t.Errorf("audit of alice's refused policy: %+v", evs)
	}
	_, err = bob.Exec(t.Context(), broken)
	if pe := wantSQLState(t, err, "22023"); !strings.Contains(pe.Message, "invalid policy") {
		t.Errorf("bob: %q, want the compile error", pe.Message)
	}
	if evs := auditEvents(t, f, "CREATE POLICY", "p1"); len(evs) != 2 || evs[1].UserIdentity != "bob" || evs[1].SQLState != "22023" {
		t.Errorf("audit of bob's invalid policy: %+v", evs)
	}
	// Inside a block the check sees the block's own changes: a policy on a
	// catalog created earlier in the block.
	mustExec(t, admin, `BEGIN`, `CREATE CATALOG eng`, `CREATE POLICY eng_policy ON CATALOG eng AS $$
package p
deny contains "no" if { input.tool == "x" }
$$`, `COMMIT`)
	if got := queryStrings(t, admin, `SHOW POLICIES ON CATALOG eng`); len(got) != 1 || got[0][0] != "eng_policy" {
		t.Errorf("SHOW POLICIES = %v", got)
	}
}
