package sqlfront_test

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
)

// queryStrings runs sql and returns its rows with every value as text
// (NULL as "NULL").
func queryStrings(tb testing.TB, conn *pgx.Conn, sql string, args ...any) [][]string {
	tb.Helper()
	rows, err := conn.Query(tb.Context(), sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			tb.Fatalf("%s: %v", sql, err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = formatValue(v)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return out
}

// grantees returns the non-inherited rows of SHOW GRANTS ON CONNECTION
// connection, sorted, as "principal:privilege".
func grantees(tb testing.TB, conn *pgx.Conn, connection string) []string {
	tb.Helper()
	return granteeRows(tb, conn, "SHOW GRANTS ON CONNECTION "+connection)
}

// granteeRows is grantees for a SHOW GRANTS statement (or its prepared name).
func granteeRows(tb testing.TB, conn *pgx.Conn, showGrants string) []string {
	tb.Helper()
	var out []string
	for _, r := range queryStrings(tb, conn, showGrants) {
		if r[4] == "NULL" {
			out = append(out, r[0]+":"+r[1])
		}
	}
	slices.Sort(out)
	return out
}

func TestPreparedStatements(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin,
		`CREATE GROUP analysts`,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url 'https://gh.example/mcp')`)
	ctx := t.Context()

	t.Run("governance statements", func(t *testing.T) {
		show, err := admin.Prepare(ctx, "show_gh", "SHOW GRANTS ON CONNECTION gh")
		if err != nil {
			t.Fatal(err)
		}
		if got := len(show.Fields); got != 5 {
			t.Fatalf("SHOW GRANTS describes %d columns, want 5", got)
		}
		grant, err := admin.Prepare(ctx, "grant_gh", "GRANT USE_CONNECTION ON CONNECTION gh TO analysts")
		if err != nil {
			t.Fatal(err)
		}
		if len(grant.Fields) != 0 {
			t.Fatalf("GRANT describes %d columns, want none", len(grant.Fields))
		}
		if got := granteeRows(t, admin, "show_gh"); len(got) != 0 {
			t.Fatalf("before GRANT: %v", got)
		}
		// Each prepared statement runs twice; SHOW reads at execution time.
		for i := range 2 {
			tag, err := admin.Exec(ctx, "grant_gh")
			if err != nil {
				t.Fatalf("execution %d of the prepared GRANT: %v", i+1, err)
			}
			if tag.String() != "GRANT" {
				t.Errorf("tag %q, want GRANT", tag)
			}
			if got, want := granteeRows(t, admin, "show_gh"), []string{"analysts:USE CONNECTION"}; !slices.Equal(got, want) {
				t.Errorf("execution %d: grants %v, want %v", i+1, got, want)
			}
		}
	})

	t.Run("parameters", func(t *testing.T) {
		sd, err := admin.Prepare(ctx, "setting", "SELECT current_setting($1)")
		if err != nil {
			t.Fatal(err)
		}
		if len(sd.ParamOIDs) != 1 {
			t.Fatalf("%d parameters, want 1", len(sd.ParamOIDs))
		}
		for _, tc := range []struct{ name, want string }{
			{"server_version", "16.4"},
			{"client_encoding", "UTF8"},
		} {
			var got string
			if err := admin.QueryRow(ctx, "setting", tc.name).Scan(&got); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got != tc.want {
				t.Errorf("current_setting(%q) = %q, want %q", tc.name, got, tc.want)
			}
		}
	})

	t.Run("one statement per Parse", func(t *testing.T) {
		_, err := admin.Prepare(ctx, "two", "SHOW USERS; SHOW GROUPS")
		wantSQLState(t, err, "42601")
	})
}

func TestSyntaxErrorPosition(t *testing.T) {
	f := startFrontend(t)
	conn := f.admin(t)
	const bad = "GRANT USE_CONNECTION ON CONNECTON x TO y"
	posOfTypo := int32(strings.Index(bad, "CONNECTON") + 1)
	tests := []struct {
		name string
		sql  string
		mode pgx.QueryExecMode
		pos  int32
		msg  string
	}{
		{"simple", bad, pgx.QueryExecModeSimpleProtocol, posOfTypo, `"CONNECTON"`},
		{"extended", bad, pgx.QueryExecModeCacheStatement, posOfTypo, `"CONNECTON"`},
		// Positions count from the start of the query string, in characters.
		{"second statement", "SHOW USERS; " + bad, pgx.QueryExecModeSimpleProtocol, 12 + posOfTypo, `"CONNECTON"`},
		{"after multibyte comment", "/* grüße */ " + bad, pgx.QueryExecModeSimpleProtocol, 12 + posOfTypo, `"CONNECTON"`},
		{"unknown privilege", "GRANT FLY ON CONNECTION x TO y", pgx.QueryExecModeSimpleProtocol, 7, "unknown privilege"},
		{"postgres grammar", "SELEC 1", pgx.QueryExecModeSimpleProtocol, 1, `"SELEC"`},
		{"postgres grammar after statement", "SHOW USERS; SELECT 1 +", pgx.QueryExecModeSimpleProtocol, 23, "end of input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := conn.Query(t.Context(), tc.sql, tc.mode)
			if err == nil {
				t.Fatal("no error")
			}
			pe := wantSQLState(t, err, "42601")
			if pe.Position != tc.pos {
				t.Errorf("Position = %d, want %d (%s)", pe.Position, tc.pos, pe.Message)
			}
			if !strings.Contains(pe.Message, tc.msg) {
				t.Errorf("message %q lacks %q", pe.Message, tc.msg)
			}
		})
	}
}

func TestLoginFailures(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin,
		`CREATE USER alice WITH PASSWORD 'alice-pw'`,
		`CREATE USER nopass`,
		`CREATE GROUP analysts`,
		`CREATE SERVICE PRINCIPAL agent WITH PASSWORD 'agent-pw'`)
	tests := []struct {
		name, user, password, database string
		codes                          []string
	}{
		{"wrong password", "alice", "wrong", "system", []string{"28P01"}},
		{"empty password", "alice", "", "system", []string{"28P01"}},
		{"unknown user", "nobody", "alice-pw", "system", []string{"28P01", "28000"}},
		{"group", "analysts", "alice-pw", "system", []string{"28P01", "28000"}},
		{"user without password", "nopass", "", "system", []string{"28P01"}},
		{"user names are case-sensitive", "Alice", "alice-pw", "system", []string{"28P01", "28000"}},
		{"unknown database", "alice", "alice-pw", "nope", []string{"3D000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.connect(t, tc.user, tc.password, tc.database)
			if err == nil {
				t.Fatal("connected")
			}
			pe := asPgError(t, err)
			if !slices.Contains(tc.codes, pe.Code) {
				t.Errorf("SQLSTATE %s (%s), want one of %v", pe.Code, pe.Message, tc.codes)
			}
			if pe.Severity != "FATAL" {
				t.Errorf("severity %s, want FATAL", pe.Severity)
			}
		})
	}
	t.Run("service principal with password", func(t *testing.T) {
		conn := f.mustConnect(t, "agent", "agent-pw", "")
		var user string
		if err := conn.QueryRow(t.Context(), "SELECT current_user").Scan(&user); err != nil {
			t.Fatal(err)
		}
		if user != "agent" {
			t.Errorf("current_user = %q", user)
		}
	})
	t.Run("dropped while connected", func(t *testing.T) {
		mustExec(t, admin, `CREATE USER temp WITH PASSWORD 'temp-pw'`)
		conn := f.mustConnect(t, "temp", "temp-pw", "")
		mustExec(t, admin, `DROP USER temp`)
		_, err := conn.Exec(t.Context(), "SHOW CATALOGS")
		wantSQLState(t, err, "42501")
		_, err = conn.Exec(t.Context(), "CREATE CATALOG c")
		wantSQLState(t, err, "42501")
		_, err = f.connect(t, "temp", "temp-pw", "")
		wantSQLState(t, err, "28P01")
	})
}

// TestConcurrentGrantRevoke runs GRANT/REVOKE from 8 connections at once
// (half of them on the simple protocol) and checks the final state over the
// wire, in the model and in the store.
func TestConcurrentGrantRevoke(t *testing.T) {
	const (
		workers = 8
		rounds  = 15
	)
	f := startFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin, `CREATE GROUP shared`,
		`CREATE CONNECTION hot TYPE MCP OPTIONS (url 'https://hot.example/mcp')`)
	conns := make([]*pgx.Conn, workers)
	for i := range conns {
		mustExec(t, admin, fmt.Sprintf(`CREATE GROUP g%d`, i))
		conns[i] = f.admin(t)
	}
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i, conn := range conns {
		mode := pgx.QueryExecModeCacheStatement
		if i%2 == 1 {
			mode = pgx.QueryExecModeSimpleProtocol
		}
		wg.Go(func() {
			run := func(sql string) bool {
				rows, err := conn.Query(t.Context(), sql, mode)
				if err == nil {
					rows.Close()
					err = rows.Err()
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d: %s: %w", i, sql, err)
					return false
				}
				return true
			}
			own := fmt.Sprintf(`CONNECTION hot TO g%d`, i)
			for r := range rounds {
				if !run(`GRANT USE_CONNECTION ON `+own) ||
					!run(`GRANT USE_CONNECTION, MANAGE ON CONNECTION hot TO shared`) ||
					!run(`REVOKE USE_CONNECTION ON CONNECTION hot FROM g`+fmt.Sprint(i)) ||
					!run(`REVOKE MANAGE ON CONNECTION hot FROM shared`) ||
					!run(`SHOW GRANTS ON CONNECTION hot`) {
					return
				}
				// Even workers end with their grant in place, odd ones without.
				if r == rounds-1 && i%2 == 0 && !run(`GRANT USE_CONNECTION ON `+own) {
					return
				}
			}
			run(`GRANT USE_CONNECTION ON CONNECTION hot TO shared`)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// USE_CONNECTION is granted to shared by every worker last. Its MANAGE
	// races (GRANT and REVOKE from all workers): the last one committed, in
	// the order of the audit log, decides.
	want := []string{"g0:USE CONNECTION", "g2:USE CONNECTION", "g4:USE CONNECTION", "g6:USE CONNECTION", "shared:USE CONNECTION"}
	evs, err := f.Svc.Store().ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	manage := false
	for _, e := range evs {
		switch st := auditStatement(t, e); {
		case e.StatusCode != 0:
		case st == "GRANT USE CONNECTION, MANAGE ON CONNECTION hot TO shared":
			manage = true
		case st == "REVOKE MANAGE ON CONNECTION hot FROM shared":
			manage = false
		}
	}
	if manage {
		want = append(want, "shared:MANAGE")
		slices.Sort(want)
	}
	if got := grantees(t, admin, "hot"); !slices.Equal(got, want) {
		t.Errorf("SHOW GRANTS after the race: %v, want %v (replaying the audit log)", got, want)
	}
	// The store holds exactly the model's grants (group commit lost nothing).
	stored := mustStoreGrants(t, f)
	var modelGrants int
	var missing []catalog.GrantKey
	f.Svc.Read(func(m *catalog.Model) {
		_, _, modelGrants = m.Stats()
		for _, g := range stored {
			if !m.HasGrant(g.Key()) {
				missing = append(missing, g.Key())
			}
		}
	})
	if len(stored) != modelGrants || len(missing) > 0 {
		t.Errorf("store has %d grants, model %d; in the store only: %v", len(stored), modelGrants, missing)
	}
}

func mustStoreGrants(tb testing.TB, f *frontend) []catalog.Grant {
	tb.Helper()
	gs, err := f.Svc.Store().ListGrants(tb.Context())
	if err != nil {
		tb.Fatal(err)
	}
	return gs
}

func TestTxStatus(t *testing.T) {
	f := startFrontend(t)
	for _, m := range goldenModes {
		t.Run(m.name, func(t *testing.T) {
			conn := f.admin(t)
			step := func(sql, code string, want byte) {
				t.Helper()
				rows, err := conn.Query(t.Context(), sql, m.mode)
				if err == nil {
					rows.Close()
					err = rows.Err()
				}
				if code == "" && err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
				if code != "" {
					wantSQLState(t, err, code)
				}
				if got := conn.PgConn().TxStatus(); got != want {
					t.Fatalf("after %s: TxStatus %q, want %q", sql, got, want)
				}
			}
			step("SHOW USERS", "", 'I')
			step("BEGIN", "", 'T')
			step("SHOW USERS", "", 'T')
			step("GRANT USE_CONNECTION ON CONNECTION nope TO admin", "42704", 'E')
			step("SHOW USERS", "25P02", 'E')
			// As in PostgreSQL, a syntax error is reported as such.
			step("GRANT USE_CONNECTION ON CONNECTON x TO y", "42601", 'E')
			step("ROLLBACK", "", 'I')
			step("SHOW USERS", "", 'I')
			step("BEGIN", "", 'T')
			step("SELEC 1", "42601", 'E')
			step("COMMIT", "", 'I')
			step("START TRANSACTION", "", 'T')
			step("COMMIT", "", 'I')
		})
	}
}

// auditEvents returns the audit events with action whose statement
// contains substr.
func auditEvents(tb testing.TB, f *frontend, action, substr string) []catalog.AuditEvent {
	tb.Helper()
	evs, err := f.Svc.Store().ListAudit(tb.Context(), time.Time{}, 0)
	if err != nil {
		tb.Fatal(err)
	}
	var out []catalog.AuditEvent
	for _, e := range evs {
		if e.Action == action && strings.Contains(auditStatement(tb, e), substr) {
			out = append(out, e)
		}
	}
	return out
}

func auditStatement(tb testing.TB, e catalog.AuditEvent) string {
	tb.Helper()
	var p struct{ Statement string }
	if err := json.Unmarshal([]byte(e.RequestParams), &p); err != nil {
		tb.Fatalf("request params %q: %v", e.RequestParams, err)
	}
	return p.Statement
}

func TestAudit(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	mustExec(t, admin,
		`CREATE USER alice WITH PASSWORD 'alice-pw'`,
		`CREATE GROUP analysts`,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url 'https://gh.example/mcp')`)
	alice := f.mustConnect(t, "alice", "alice-pw", "", func(c *pgx.ConnConfig) {
		c.RuntimeParams["application_name"] = "audit-test"
	})
	_, err := alice.Exec(t.Context(), `GRANT USE_CONNECTION ON CONNECTION gh TO "analysts"`)
	wantSQLState(t, err, "42501")
	mustExec(t, admin, `GRANT USE_CONNECTION ON CONNECTION gh TO analysts`)

	evs := auditEvents(t, f, "GRANT", "ON CONNECTION gh TO")
	if len(evs) != 2 {
		t.Fatalf("%d GRANT events, want 2: %+v", len(evs), evs)
	}
	host := func(c *pgx.Conn) string {
		h, _, err := net.SplitHostPort(c.PgConn().Conn().LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	tests := []struct {
		ev                       catalog.AuditEvent
		user, decision, sqlstate string
		ip, agent, statement     string
		status                   int
		committed                bool
	}{
		{evs[0], "alice", "deny", "42501", host(alice), "audit-test", `GRANT USE CONNECTION ON CONNECTION gh TO "analysts"`, 1, false},
		{evs[1], "admin", "allow", "", host(admin), "", `GRANT USE CONNECTION ON CONNECTION gh TO analysts`, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			e := tc.ev
			if e.UserIdentity != tc.user || e.Decision != tc.decision || e.SQLState != tc.sqlstate || e.StatusCode != tc.status {
				t.Errorf("user %q decision %q sqlstate %q status %d, want %q %q %q %d",
					e.UserIdentity, e.Decision, e.SQLState, e.StatusCode, tc.user, tc.decision, tc.sqlstate, tc.status)
			}
			if e.SourceIP != tc.ip || e.UserAgent != tc.agent || e.Service != "sql" || e.SessionID == "" {
				t.Errorf("source %q agent %q service %q session %q, want %q %q sql and a session id", e.SourceIP, e.UserAgent, e.Service, e.SessionID, tc.ip, tc.agent)
			}
			if e.SecurableType != "CONNECTION" || e.SecurableName != "system.ai.gh" {
				t.Errorf("securable %s %s, want CONNECTION system.ai.gh", e.SecurableType, e.SecurableName)
			}
			if got := auditStatement(t, e); got != tc.statement {
				t.Errorf("statement %q, want %q", got, tc.statement)
			}
			if (e.Revision > 0) != tc.committed {
				t.Errorf("revision %d, committed %v", e.Revision, tc.committed)
			}
			if tc.decision == "deny" && (!strings.Contains(e.Reason, "needs MANAGE on CONNECTION system.ai.gh") || !strings.Contains(e.ErrorMessage, "permission denied")) {
				t.Errorf("reason %q, error %q: want the missing privilege", e.Reason, e.ErrorMessage)
			}
		})
	}
}

// TestSecretsStayHidden checks that passwords and secret connection options
// appear neither in the audit log nor in DESCRIBE, SHOW CONNECTIONS or the
// store's plain fields.
func TestSecretsStayHidden(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	secrets := []string{"secret-pw", "client-secret-1", "bearer-token-2", "bearer-token-3", "client-secret-4", "new-pw-5"}
	mustExec(t, admin,
		`CREATE USER "bob@example.com" WITH PASSWORD 'secret-pw'`,
		`CREATE CONNECTION sf TYPE MCP OPTIONS (url 'https://sf.example/mcp', auth_mode 'shared_principal',
			client_id 'gw', client_secret 'client-secret-1', token_endpoint 'https://sf.example/token')`,
		`CREATE CONNECTION db TYPE MCP OPTIONS (url 'https://db.example/mcp', auth_mode 'shared_principal', bearer_token 'bearer-token-2')`,
		`ALTER CONNECTION db SET OPTIONS (url 'https://db.example/mcp', auth_mode 'shared_principal', "BEARER_TOKEN" = 'bearer-token-3')`,
		`ALTER USER "bob@example.com" WITH PASSWORD 'new-pw-5'`)
	// A refused statement with a secret is audited too.
	_, err := admin.Exec(t.Context(), `CREATE CONNECTION bad TYPE MCP OPTIONS (url 'https://bad.example/', auth_mode 'per_user_oauth', client_secret 'client-secret-4', bearer_token 'bearer-token-3')`)
	wantSQLState(t, err, "22023")
	if strings.Contains(err.Error(), "bearer-token-3") {
		t.Errorf("error %q shows the secret", err)
	}

	t.Run("audit", func(t *testing.T) {
		evs, err := f.Svc.Store().ListAudit(t.Context(), time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		masked := 0
		for _, e := range evs {
			text := fmt.Sprintf("%+v", e)
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("audit event %s leaks %q: %s", e.Action, s, text)
				}
			}
			if strings.Contains(auditStatement(t, e), "'********'") {
				masked++
			}
		}
		if masked != 6 {
			t.Errorf("%d audited statements with a masked secret, want 6", masked)
		}
	})
	t.Run("DESCRIBE and SHOW", func(t *testing.T) {
		var rows [][]string
		for _, q := range []string{"DESCRIBE CONNECTION sf", "DESCRIBE CONNECTION db", "SHOW CONNECTIONS", `DESCRIBE USER "bob@example.com"`} {
			rows = append(rows, queryStrings(t, admin, q)...)
		}
		found := map[string]string{}
		for _, r := range rows {
			for _, s := range secrets {
				if strings.Contains(strings.Join(r, " | "), s) {
					t.Errorf("row %v shows %q", r, s)
				}
			}
			if len(r) == 2 {
				found[r[0]] = r[1]
			}
		}
		for _, k := range []string{"option.client_secret", "option.bearer_token"} {
			if found[k] != "********" {
				t.Errorf("DESCRIBE %s = %q, want ********", k, found[k])
			}
		}
	})
	t.Run("store", func(t *testing.T) {
		ss, err := f.Svc.Store().ListSecurables(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			text := fmt.Sprintf("%v %s %s", s.Options, s.Secrets, s.Comment)
			for _, sec := range secrets {
				if strings.Contains(text, sec) {
					t.Errorf("securable %s stores %q in the clear", s.Name, sec)
				}
			}
		}
		ps, err := f.Svc.Store().ListPrincipals(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Password != "" && !strings.HasPrefix(p.Password, "SCRAM-SHA-256$") {
				t.Errorf("principal %s stores %q, want a SCRAM verifier", p.Name, p.Password)
			}
			for _, sec := range secrets {
				if strings.Contains(p.Password, sec) {
					t.Errorf("principal %s stores %q in the clear", p.Name, sec)
				}
			}
		}
	})
}

func TestSessionParameters(t *testing.T) {
	f := startFrontend(t)
	conn := f.mustConnect(t, "admin", adminPassword, "", func(c *pgx.ConnConfig) {
		c.RuntimeParams["application_name"] = "wire-test"
	})
	pg := conn.PgConn()
	for _, tc := range []struct{ name, want string }{
		{"server_version", "16.4"},
		{"client_encoding", "UTF8"},
		{"is_superuser", "on"},
		{"session_authorization", "admin"},
		{"application_name", "wire-test"},
	} {
		if got := pg.ParameterStatus(tc.name); got != tc.want {
			t.Errorf("ParameterStatus(%s) = %q, want %q", tc.name, got, tc.want)
		}
	}
	mustExec(t, conn, `SET application_name = 'renamed'`, `SET TimeZone = 'Europe/Paris'`)
	if got := pg.ParameterStatus("application_name"); got != "renamed" {
		t.Errorf("application_name after SET = %q (no ParameterStatus)", got)
	}
	if got := pg.ParameterStatus("TimeZone"); got != "Europe/Paris" {
		t.Errorf("TimeZone after SET = %q (no ParameterStatus)", got)
	}

	t.Run("SHOW ALL", func(t *testing.T) {
		rows, err := conn.Query(t.Context(), "SHOW ALL", pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		if got := rows.FieldDescriptions(); len(got) != 3 || got[0].Name != "name" || got[1].Name != "setting" {
			t.Fatalf("columns %v", got)
		}
		settings := map[string]string{}
		n := 0
		for rows.Next() {
			var name, setting, desc string
			if err := rows.Scan(&name, &setting, &desc); err != nil {
				t.Fatal(err)
			}
			settings[name] = setting
			n++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if tag := rows.CommandTag().String(); tag != fmt.Sprintf("SHOW %d", n) {
			t.Errorf("tag %q for %d rows", tag, n)
		}
		for k, want := range map[string]string{"server_version": "16.4", "application_name": "renamed", "timezone": "Europe/Paris"} {
			if settings[k] != want {
				t.Errorf("SHOW ALL %s = %q, want %q", k, settings[k], want)
			}
		}
	})
}

func TestParameterTypesFromCasts(t *testing.T) {
	f := startFrontend(t)
	conn := f.admin(t)
	var (
		i int32
		b bool
		s string
		n int64
	)
	// pgx sends int/bool/int8 parameters in binary once the server describes
	// them with the cast's type.
	if err := conn.QueryRow(t.Context(), "SELECT $1::int, $2::bool, $3::text, $4::int8", 145, true, "x", int64(1)<<40).Scan(&i, &b, &s, &n); err != nil {
		t.Fatal(err)
	}
	if i != 145 || !b || s != "x" || n != 1<<40 {
		t.Fatalf("got %d %v %q %d", i, b, s, n)
	}
}
