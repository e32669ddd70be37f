package sqlfront_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
)

// revision returns SHOW REVISION.
func revision(tb testing.TB, conn *pgx.Conn) int64 {
	tb.Helper()
	n, err := strconv.ParseInt(queryStrings(tb, conn, "SHOW REVISION")[0][0], 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// groups returns the names of SHOW GROUPS.
func groups(tb testing.TB, conn *pgx.Conn) []string {
	tb.Helper()
	var out []string
	for _, r := range queryStrings(tb, conn, "SHOW GROUPS") {
		out = append(out, r[0])
	}
	return out
}

// simpleQuery sends sql as one simple-protocol Query message and returns
// the first error.
func simpleQuery(tb testing.TB, conn *pgx.Conn, sql string) error {
	tb.Helper()
	_, err := conn.PgConn().Exec(tb.Context(), sql).ReadAll()
	return err
}

func wantTxStatus(tb testing.TB, conn *pgx.Conn, want byte) {
	tb.Helper()
	if got := conn.PgConn().TxStatus(); got != want {
		tb.Fatalf("TxStatus %q, want %q", got, want)
	}
}

// TestTransactionBlocks: governance statements inside BEGIN ... COMMIT take
// effect together at COMMIT (one revision, audited with it), are visible to
// the block's own later statements and reads only, and are discarded by
// ROLLBACK, an error, or a conflicting change committed meanwhile.
func TestTransactionBlocks(t *testing.T) {
	f := startFrontend(t)
	admin, other := f.admin(t), f.admin(t)
	mustExec(t, admin,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url 'https://gh.example/mcp')`,
		`CREATE USER alice WITH PASSWORD 'alice-pw'`,
		`GRANT CREATE_CATALOG ON METASTORE TO alice`)
	alice := f.mustConnect(t, "alice", "alice-pw", "")

	t.Run("rollback discards, the block reads its own writes", func(t *testing.T) {
		rev := revision(t, other)
		mustExec(t, admin, `BEGIN`, `CREATE GROUP g1`, `GRANT USE_CONNECTION ON CONNECTION gh TO g1`)
		wantTxStatus(t, admin, 'T')
		if got := grantees(t, admin, "gh"); !slices.Contains(got, "g1:USE CONNECTION") {
			t.Errorf("SHOW GRANTS inside the block = %v, want its own grant", got)
		}
		if got := queryStrings(t, admin, `EXPLAIN ACCESS FOR alice USE_CONNECTION ON CONNECTION gh`); got[len(got)-1][3] != "deny" {
			t.Errorf("EXPLAIN ACCESS inside the block: %v", got)
		}
		mustExec(t, admin, `ALTER GROUP g1 ADD USER alice`)
		if got := queryStrings(t, admin, `EXPLAIN ACCESS FOR alice USE_CONNECTION ON CONNECTION gh`); got[len(got)-1][3] != "allow" {
			t.Errorf("EXPLAIN ACCESS after ALTER GROUP in the block: %v, want allow", got)
		}
		if slices.Contains(groups(t, other), "g1") || slices.Contains(grantees(t, other, "gh"), "g1:USE CONNECTION") {
			t.Error("another session sees the block's changes before COMMIT")
		}
		// A connection created in the block: DESCRIBE sees it, secret sealed.
		mustExec(t, admin, `CREATE CONNECTION blk_c TYPE MCP OPTIONS (url 'https://blk.example/mcp', auth_mode 'shared_principal', bearer_token 'blk-token')`)
		desc := map[string]string{}
		for _, r := range queryStrings(t, admin, `DESCRIBE CONNECTION blk_c`) {
			desc[r[0]] = r[1]
		}
		if desc["option.bearer_token"] != "********" || desc["option.url"] != "https://blk.example/mcp" {
			t.Errorf("DESCRIBE inside the block: %v", desc)
		}
		mustExec(t, admin, `ROLLBACK`)
		wantTxStatus(t, admin, 'I')
		if slices.Contains(groups(t, admin), "g1") || revision(t, admin) != rev {
			t.Errorf("after ROLLBACK: groups %v, revision %d (was %d)", groups(t, admin), revision(t, admin), rev)
		}
		if evs := auditEvents(t, f, "CREATE GROUP", "g1"); len(evs) != 0 {
			t.Errorf("rolled-back statements audited: %+v", evs)
		}
	})

	t.Run("commit applies together under one revision", func(t *testing.T) {
		rev := revision(t, other)
		mustExec(t, admin, `BEGIN`, `CREATE GROUP g2`, `ALTER GROUP g2 ADD USER alice`, `GRANT USE_CONNECTION ON CONNECTION gh TO g2`)
		if revision(t, other) != rev {
			t.Fatal("revision moved before COMMIT")
		}
		mustExec(t, admin, `COMMIT`)
		if got := revision(t, other); got != rev+1 {
			t.Errorf("revision %d after COMMIT, want %d", got, rev+1)
		}
		if !slices.Contains(grantees(t, other, "gh"), "g2:USE CONNECTION") {
			t.Error("committed grant missing")
		}
		for _, a := range []string{"CREATE GROUP", "ALTER GROUP", "GRANT"} {
			evs := auditEvents(t, f, a, "g2")
			if len(evs) != 1 || int64(evs[0].Revision) != rev+1 || evs[0].StatusCode != 0 {
				t.Errorf("%s: audit events %+v, want one at revision %d", a, evs, rev+1)
			}
		}
	})

	t.Run("later statements are checked against the block", func(t *testing.T) {
		// alice may create a catalog; inside the block she owns it, so she
		// may create a schema in it and grant on it.
		mustExec(t, alice, `BEGIN`, `CREATE CATALOG alice_cat`, `CREATE SCHEMA alice_cat.s1`,
			`GRANT USE_SCHEMA ON SCHEMA alice_cat.s1 TO g2`)
		if got := granteeRows(t, alice, `SHOW GRANTS ON SCHEMA alice_cat.s1`); !slices.Equal(got, []string{"g2:USE SCHEMA"}) {
			t.Errorf("SHOW GRANTS in alice's block = %v", got)
		}
		mustExec(t, alice, `COMMIT`)
		if got := granteeRows(t, other, `SHOW GRANTS ON SCHEMA alice_cat.s1`); !slices.Equal(got, []string{"g2:USE SCHEMA"}) {
			t.Errorf("SHOW GRANTS after alice's COMMIT = %v", got)
		}
	})

	t.Run("an error aborts the block", func(t *testing.T) {
		rev := revision(t, other)
		mustExec(t, admin, `BEGIN`, `CREATE GROUP g3`)
		_, err := admin.Exec(t.Context(), `GRANT USE_CONNECTION ON CONNECTION nope TO g3`)
		wantSQLState(t, err, "42704")
		wantTxStatus(t, admin, 'E')
		_, err = admin.Exec(t.Context(), `SHOW USERS`)
		wantSQLState(t, err, "25P02")
		tag, err := admin.PgConn().Exec(t.Context(), `COMMIT`).ReadAll()
		if err != nil || tag[0].CommandTag.String() != "ROLLBACK" {
			t.Fatalf("COMMIT of a failed block: %v %v, want tag ROLLBACK", tag, err)
		}
		wantTxStatus(t, admin, 'I')
		if slices.Contains(groups(t, admin), "g3") || revision(t, admin) != rev {
			t.Error("COMMIT of a failed block applied something")
		}
	})

	t.Run("a conflicting commit fails the block", func(t *testing.T) {
		mustExec(t, admin, `BEGIN`, `CREATE GROUP g4a`, `CREATE GROUP g4`)
		mustExec(t, other, `CREATE GROUP g4`)
		_, err := admin.Exec(t.Context(), `COMMIT`)
		wantSQLState(t, err, "40001")
		wantTxStatus(t, admin, 'I')
		if slices.Contains(groups(t, admin), "g4a") {
			t.Error("part of a conflicting block was applied")
		}
	})

	t.Run("a privilege revoked before COMMIT fails closed", func(t *testing.T) {
		mustExec(t, admin, `GRANT MANAGE ON CONNECTION gh TO alice`)
		mustExec(t, alice, `BEGIN`, `GRANT USE_CONNECTION ON CONNECTION gh TO "account users"`)
		mustExec(t, admin, `REVOKE MANAGE ON CONNECTION gh FROM alice`)
		_, err := alice.Exec(t.Context(), `COMMIT`)
		wantSQLState(t, err, "40001")
		if slices.Contains(grantees(t, admin, "gh"), "account users:USE CONNECTION") {
			t.Error("a grant whose grantor lost MANAGE was committed")
		}
		evs := auditEvents(t, f, "GRANT", `TO "account users"`)
		if len(evs) != 1 || evs[0].Decision != "deny" || evs[0].SQLState != "42501" {
			t.Errorf("audit of the refused commit: %+v, want one deny 42501", evs)
		}
	})

	t.Run("savepoints", func(t *testing.T) {
		mustExec(t, admin, `BEGIN`, `CREATE GROUP s1`, `SAVEPOINT a`, `CREATE GROUP s_discarded`)
		_, err := admin.Exec(t.Context(), `DROP CATALOG nope`)
		wantSQLState(t, err, "42704")
		_, err = admin.Exec(t.Context(), `RELEASE SAVEPOINT a`)
		wantSQLState(t, err, "25P02")
		mustExec(t, admin, `ROLLBACK TO SAVEPOINT a`)
		wantTxStatus(t, admin, 'T')
		_, err = admin.Exec(t.Context(), `ROLLBACK TO SAVEPOINT nope`)
		wantSQLState(t, err, "3B001")
		mustExec(t, admin, `ROLLBACK TO a`, `CREATE GROUP s2`, `RELEASE a`, `COMMIT`)
		got := groups(t, other)
		if !slices.Contains(got, "s1") || !slices.Contains(got, "s2") || slices.Contains(got, "s_discarded") {
			t.Errorf("groups after savepoints %v: want s1, s2 and not s_discarded", got)
		}
		_, err = admin.Exec(t.Context(), `SAVEPOINT outside`)
		wantSQLState(t, err, "25P01")
	})
}

// TestImplicitTransactions: outside a block, the statements of one
// multi-statement Query message, and of one extended-protocol pipeline up
// to Sync, apply together or not at all, as in PostgreSQL.
func TestImplicitTransactions(t *testing.T) {
	f := startFrontend(t)
	admin, other := f.admin(t), f.admin(t)

	t.Run("multi-statement query", func(t *testing.T) {
		rev := revision(t, other)
		err := simpleQuery(t, admin, `CREATE GROUP m1; CREATE GROUP m2; DROP CATALOG nope`)
		wantSQLState(t, err, "42704")
		wantTxStatus(t, admin, 'I')
		if got := groups(t, other); slices.Contains(got, "m1") || slices.Contains(got, "m2") || revision(t, other) != rev {
			t.Fatalf("a failed multi-statement query applied part of itself: %v", got)
		}
		if err := simpleQuery(t, admin, `CREATE GROUP m1; CREATE GROUP m2; SHOW GROUPS`); err != nil {
			t.Fatal(err)
		}
		if got := groups(t, other); !slices.Contains(got, "m1") || !slices.Contains(got, "m2") || revision(t, other) != rev+1 {
			t.Fatalf("groups %v revision %d, want m1 and m2 under revision %d", got, revision(t, other), rev+1)
		}
	})

	t.Run("COMMIT inside a query ends the implicit transaction", func(t *testing.T) {
		err := simpleQuery(t, admin, `CREATE GROUP m3; COMMIT; CREATE GROUP m4; DROP CATALOG nope`)
		wantSQLState(t, err, "42704")
		if got := groups(t, other); !slices.Contains(got, "m3") || slices.Contains(got, "m4") {
			t.Fatalf("groups %v: want m3 (committed) and not m4", got)
		}
	})

	t.Run("BEGIN inside a query takes the earlier statements into the block", func(t *testing.T) {
		if err := simpleQuery(t, admin, `CREATE GROUP m5; BEGIN; CREATE GROUP m6`); err != nil {
			t.Fatal(err)
		}
		wantTxStatus(t, admin, 'T')
		if got := groups(t, other); slices.Contains(got, "m5") {
			t.Fatal("m5 committed although a BEGIN followed it")
		}
		mustExec(t, admin, `ROLLBACK`)
		if got := groups(t, other); slices.Contains(got, "m5") || slices.Contains(got, "m6") {
			t.Fatalf("groups %v after ROLLBACK", got)
		}
	})

	t.Run("an error in a block in a query leaves the block failed", func(t *testing.T) {
		err := simpleQuery(t, admin, `BEGIN; CREATE GROUP m7; DROP CATALOG nope; ROLLBACK`)
		wantSQLState(t, err, "42704")
		wantTxStatus(t, admin, 'E')
		mustExec(t, admin, `ROLLBACK`)
	})

	t.Run("statements that cannot run in a transaction block", func(t *testing.T) {
		wantSQLState(t, simpleQuery(t, admin, `CREATE GROUP d1; DISCARD ALL`), "25001")
		mustExec(t, admin, `BEGIN`)
		_, err := admin.Exec(t.Context(), `DISCARD ALL`)
		wantSQLState(t, err, "25001")
		mustExec(t, admin, `ROLLBACK`, `DISCARD ALL`)
		if slices.Contains(groups(t, other), "d1") {
			t.Error("the failed query's CREATE GROUP was applied")
		}
	})

	t.Run("pipeline", func(t *testing.T) {
		rev := revision(t, other)
		b := &pgx.Batch{}
		b.Queue(`CREATE GROUP p1`)
		b.Queue(`ALTER GROUP p1 ADD USER admin`)
		b.Queue(`DROP CATALOG nope`)
		err := admin.SendBatch(t.Context(), b).Close()
		wantSQLState(t, err, "42704")
		if got := groups(t, other); slices.Contains(got, "p1") || revision(t, other) != rev {
			t.Fatalf("a failed pipeline applied part of itself: %v", got)
		}
		b = &pgx.Batch{}
		b.Queue(`CREATE GROUP p1`)
		b.Queue(`ALTER GROUP p1 ADD USER admin`)
		b.Queue(`SHOW GRANTS TO p1`)
		if err := admin.SendBatch(t.Context(), b).Close(); err != nil {
			t.Fatal(err)
		}
		if got := revision(t, other); got != rev+1 {
			t.Errorf("revision %d after a pipeline of two changes, want %d", got, rev+1)
		}
		var member bool
		f.Svc.Read(func(m *catalog.Model) {
			g, _ := m.PrincipalByName("p1")
			a, _ := m.PrincipalByName(catalog.AdminUser)
			member = g != nil && m.IsMember(g.ID, a.ID)
		})
		if !member {
			t.Error("pipeline's ALTER GROUP missing")
		}
	})
}

// TestPsqlTransactions runs transaction blocks through psql scripts, as an
// administrator would: ROLLBACK, psql -1 (one transaction for the file)
// stopped by an error, ON_ERROR_ROLLBACK (a savepoint per statement), and a
// multi-statement -c.
func TestPsqlTransactions(t *testing.T) {
	f := startFrontend(t)
	admin := f.admin(t)
	psqlGroups := func() []string {
		t.Helper()
		return groups(t, admin)
	}

	t.Run("rollback and commit", func(t *testing.T) {
		script := writeScript(t, `\set grp 'psql team'
BEGIN;
CREATE GROUP :"grp";
SHOW GROUPS;
ROLLBACK;
SHOW GROUPS;
BEGIN;
CREATE GROUP :"grp";
COMMIT;
\echo :ERROR :SQLSTATE
`)
		stdout, stderr, code := runPsql(t, f, "-A", "-t", "-f", script)
		if code != 0 || stderr != "" {
			t.Fatalf("psql exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		want := "BEGIN\nCREATE GROUP\naccount users|f||every user and service principal\npsql team|f||\n" +
			"ROLLBACK\naccount users|f||every user and service principal\nBEGIN\nCREATE GROUP\nCOMMIT\nfalse 00000\n"
		if d := firstDiff(want, stdout); d != "" {
			t.Errorf("psql output:\n%s", d)
		}
		if !slices.Contains(psqlGroups(), "psql team") {
			t.Error("committed group missing")
		}
	})

	t.Run("single transaction stopped by an error", func(t *testing.T) {
		script := writeScript(t, "CREATE GROUP one_a;\nCREATE GROUP one_b;\nDROP CATALOG nope;\nCREATE GROUP one_c;\n")
		_, stderr, code := runPsql(t, f, "-1", "-f", script)
		if code != 3 || !strings.Contains(stderr, "catalog nope does not exist") {
			t.Fatalf("psql -1: exit %d, stderr %s; want 3 and the error", code, stderr)
		}
		for _, g := range psqlGroups() {
			if strings.HasPrefix(g, "one_") {
				t.Errorf("group %s applied although the single transaction failed", g)
			}
		}
	})

	t.Run("ON_ERROR_ROLLBACK", func(t *testing.T) {
		script := writeScript(t, "BEGIN;\nCREATE GROUP oer_a;\nDROP CATALOG nope;\n\\echo :LAST_ERROR_SQLSTATE\nCREATE GROUP oer_b;\nCOMMIT;\n")
		stdout, stderr, code := runPsql(t, f, "-v", "ON_ERROR_STOP=0", "-v", "ON_ERROR_ROLLBACK=on", "-f", script)
		if code != 0 || !strings.Contains(stderr, "catalog nope does not exist") || !strings.Contains(stdout, "42704\nCREATE GROUP\nCOMMIT\n") {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		got := psqlGroups()
		if !slices.Contains(got, "oer_a") || !slices.Contains(got, "oer_b") {
			t.Errorf("groups %v: want oer_a and oer_b (the failed statement rolled back to psql's savepoint)", got)
		}
	})

	t.Run("multi-statement command", func(t *testing.T) {
		_, _, code := runPsql(t, f, "-c", "CREATE GROUP multi_a; CREATE GROUP multi_b; DROP CATALOG nope")
		if code == 0 {
			t.Fatal("psql succeeded")
		}
		if got := psqlGroups(); slices.Contains(got, "multi_a") || slices.Contains(got, "multi_b") {
			t.Errorf("groups %v: a failed multi-statement command applied part of itself", got)
		}
	})
}
