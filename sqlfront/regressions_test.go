package sqlfront_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestRegressions holds regression tests of bugs found in review: prepared
// statements after DEALLOCATE/DISCARD ALL, RESET to startup values, startup
// parameter validation, URL credentials in the audit log, SHOW GRANTS order.
func TestRegressions(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	ctx := t.Context()
	startupApp := func(c *pgx.ConnConfig) { c.RuntimeParams["application_name"] = "startup-app" }

	t.Run("DEALLOCATE ALL forgets the prepared statements", func(t *testing.T) {
		conn := f.admin(t)
		queryStrings(t, conn, "SHOW USERS") // prepared as stmtcache_<hash>
		if err := conn.DeallocateAll(ctx); err != nil {
			t.Fatal(err)
		}
		// pgx prepares the statement again under the same name: 42P05 today.
		rows, err := conn.Query(ctx, "SHOW USERS")
		if err == nil {
			rows.Close()
			err = rows.Err()
		}
		if err != nil {
			t.Errorf("query after DeallocateAll: %v", err)
		}
	})

	t.Run("DISCARD ALL resets the session", func(t *testing.T) {
		conn := f.mustConnect(t, "admin", adminPassword, "", startupApp)
		mustExec(t, conn, "SET application_name = 'changed'", "DISCARD ALL")
		if got := queryStrings(t, conn, "SHOW application_name")[0][0]; got != "startup-app" {
			t.Errorf("application_name after DISCARD ALL = %q, want startup-app", got)
		}
	})

	t.Run("RESET restores the value from the startup packet", func(t *testing.T) {
		conn := f.mustConnect(t, "admin", adminPassword, "", startupApp)
		for _, reset := range []string{"RESET ALL", "RESET application_name", "SET application_name TO DEFAULT"} {
			mustExec(t, conn, "SET application_name = 'changed'", reset)
			if got := queryStrings(t, conn, "SHOW application_name")[0][0]; got != "startup-app" {
				t.Errorf("application_name after %s = %q, want startup-app", reset, got)
			}
		}
	})

	t.Run("startup parameters agree with SHOW", func(t *testing.T) {
		conn, err := f.connect(t, "admin", adminPassword, "", func(c *pgx.ConnConfig) {
			c.RuntimeParams["client_encoding"] = "LATIN1"
			c.RuntimeParams["server_version"] = "99.0"
		})
		if err != nil {
			wantSQLState(t, err, "22023") // refusing LATIN1 is fine too
			return
		}
		for _, p := range []string{"client_encoding", "server_version"} {
			shown := queryStrings(t, conn, "SHOW "+p)[0][0]
			if reported := conn.PgConn().ParameterStatus(p); shown != reported {
				t.Errorf("SHOW %s = %q but ParameterStatus says %q", p, shown, reported)
			}
		}
	})

	t.Run("audit redacts credentials in URLs", func(t *testing.T) {
		_, err := admin.Exec(ctx, `CREATE CONNECTION leak TYPE MCP OPTIONS (url 'https://user:hunter2@mcp.example/mcp')`)
		wantSQLState(t, err, "22023")
		for _, e := range auditEvents(t, f, "CREATE CONNECTION", "leak") {
			if strings.Contains(e.RequestParams, "hunter2") {
				t.Errorf("audit keeps the password of the refused URL: %s", e.RequestParams)
			}
		}
	})

	t.Run("SHOW GRANTS TO has a stable order", func(t *testing.T) {
		mustExec(t, admin, "CREATE GROUP ordered")
		for _, n := range []string{"c1", "c2", "c3", "c4", "c5", "c6"} {
			mustExec(t, admin, "CREATE CONNECTION "+n+" TYPE MCP OPTIONS (url 'https://x.example/')",
				"GRANT USE_CONNECTION ON CONNECTION "+n+" TO ordered")
		}
		for range 20 {
			var keys []string
			for _, r := range queryStrings(t, admin, "SHOW GRANTS TO ordered") {
				keys = append(keys, r[3])
			}
			if !slices.IsSorted(keys) {
				t.Fatalf("SHOW GRANTS TO ordered lists %v", keys)
			}
		}
	})
}
