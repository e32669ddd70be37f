package parser

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		name string
		sql  string
		want []Piece
	}{
		{"empty", "", nil},
		{"only whitespace and comments", " ; -- x;\n /* y; */ ;;", nil},
		{"one", "SELECT 1", []Piece{{"SELECT 1", 0}}},
		{"trailing semicolon", "SELECT 1;", []Piece{{"SELECT 1", 0}}},
		{"two trimmed", "  SELECT 1 ;\n\tSHOW USERS  ;  ", []Piece{{"SELECT 1", 2}, {"SHOW USERS", 14}}},
		{"leading and trailing comments dropped", "/* a */ SELECT 1 -- b\n; -- c", []Piece{{"SELECT 1", 8}}},
		{"inner comment kept", "SELECT /* ; */ 1", []Piece{{"SELECT /* ; */ 1", 0}}},
		{"nested comment", "SELECT /* /* ; */ ; */ 1; SELECT 2", []Piece{{"SELECT /* /* ; */ ; */ 1", 0}, {"SELECT 2", 26}}},
		{"line comment", "SELECT 1 -- ; x\n, 2; SELECT 3", []Piece{{"SELECT 1 -- ; x\n, 2", 0}, {"SELECT 3", 21}}},
		{"string", "SELECT ';'';'; SELECT 2", []Piece{{"SELECT ';'';'", 0}, {"SELECT 2", 15}}},
		{"E string", `SELECT E'\';'; SELECT 2`, []Piece{{`SELECT E'\';'`, 0}, {"SELECT 2", 15}}},
		{"quoted identifier", `SELECT ";"";"; SELECT 2`, []Piece{{`SELECT ";"";"`, 0}, {"SELECT 2", 15}}},
		{"backtick identifier", "DROP CATALOG `a;b`; SHOW CATALOGS", []Piece{{"DROP CATALOG `a;b`", 0}, {"SHOW CATALOGS", 20}}},
		{"dollar quote", "SELECT $$;$$; SELECT $f$ $$; $f$", []Piece{{"SELECT $$;$$", 0}, {"SELECT $f$ $$; $f$", 14}}},
		{"governance", `GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts";` + "\n" +
			`REVOKE USE_CONNECTION ON CONNECTION my_prod_db_mcp FROM "contractors";`,
			[]Piece{{`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts"`, 0},
				{`REVOKE USE_CONNECTION ON CONNECTION my_prod_db_mcp FROM "contractors"`, 69}}},
		{"parentheses", "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); NOTIFY t); SELECT 1",
			[]Piece{{"CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); NOTIFY t)", 0}, {"SELECT 1", 78}}},
		{"unbalanced close paren", "SELECT 1); SELECT 2", []Piece{{"SELECT 1)", 0}, {"SELECT 2", 11}}},
		{"function body", "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SELECT 3",
			[]Piece{{"CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END", 0}, {"SELECT 3", 118}}},
		{"procedure body", "create procedure p() begin atomic select 1; end; select 2",
			[]Piece{{"create procedure p() begin atomic select 1; end", 0}, {"select 2", 49}}},
		{"begin transaction", "BEGIN; SELECT 1; END", []Piece{{"BEGIN", 0}, {"SELECT 1", 7}, {"END", 17}}},
		{"unterminated string", "SELECT 1; SELECT 'a; b", []Piece{{"SELECT 1", 0}, {"SELECT 'a; b", 10}}},
		{"unterminated comment", "SELECT 1; /* a; b", []Piece{{"SELECT 1", 0}, {"/* a; b", 10}}},
		{"parameter is not a dollar quote", "SELECT $1; SELECT $2", []Piece{{"SELECT $1", 0}, {"SELECT $2", 11}}},
		{"identifier with dollars", "SELECT a$$b; SELECT 2", []Piece{{"SELECT a$$b", 0}, {"SELECT 2", 13}}},
		{"non-ASCII identifier with dollars", "SELECT a€$$; SELECT 2 --$$", []Piece{{"SELECT a€$$", 0}, {"SELECT 2", 15}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Split(tc.sql)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Split(%q)\n got: %+v\nwant: %+v", tc.sql, got, tc.want)
			}
			checkPieces(t, tc.sql, got)
		})
	}
}

// checkPieces checks the invariants of Split's result.
// pgSpace is PostgreSQL's whitespace (scan.l "space"): ASCII only. Other
// Unicode spaces such as U+00A0 are identifier characters to PostgreSQL.
const pgSpace = " \t\n\r\f\v"

func checkPieces(t *testing.T, sql string, pieces []Piece) {
	t.Helper()
	prev := 0
	for _, p := range pieces {
		if p.Offset < prev || p.Offset+len(p.Text) > len(sql) {
			t.Fatalf("piece %q at %d out of order or out of range (prev end %d, len %d)", p.Text, p.Offset, prev, len(sql))
		}
		if sql[p.Offset:p.Offset+len(p.Text)] != p.Text {
			t.Fatalf("piece %q does not match sql at offset %d", p.Text, p.Offset)
		}
		if p.Text == "" || strings.TrimLeft(p.Text, pgSpace) != p.Text {
			t.Fatalf("piece %q is empty or has leading space", p.Text)
		}
		// Only an unterminated string, identifier or comment, which runs
		// to the end of the input, can end a piece with whitespace.
		if strings.TrimRight(p.Text, pgSpace) != p.Text && p.Offset+len(p.Text) != len(sql) {
			t.Fatalf("piece %q has trailing space", p.Text)
		}
		if again := Split(p.Text); len(again) != 1 || again[0] != (Piece{p.Text, 0}) {
			t.Fatalf("Split(%q) = %+v, want the piece itself", p.Text, again)
		}
		prev = p.Offset + len(p.Text)
	}
}

func TestIsGovernance(t *testing.T) {
	tests := []struct {
		sql  string
		want bool
	}{
		{`GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts"`, true},
		{`revoke all on catalog c from u`, true},
		{`GRANT SELECT ON TABLE t TO u`, true},
		{`CREATE CATALOG c`, true},
		{`create schema s`, true},
		{`CREATE CONNECTION x TYPE mcp`, true},
		{`CREATE USER u`, true},
		{`CREATE GROUP g`, true},
		{`CREATE SERVICE PRINCIPAL p`, true},
		{`DROP CONNECTION x`, true},
		{`DROP SERVICE PRINCIPAL p`, true},
		{`ALTER GROUP g ADD USER u`, true},
		{`ALTER CATALOG c OWNER TO u`, true},
		{`COMMENT ON CATALOG c IS 'x'`, true},
		{`COMMENT ON CONNECTION x IS NULL`, true},
		{`SHOW GRANTS ON METASTORE`, true},
		{`SHOW CATALOGS`, true},
		{`SHOW SCHEMAS IN c`, true},
		{`SHOW CONNECTIONS`, true},
		{`SHOW USERS`, true},
		{`SHOW GROUPS`, true},
		{`SHOW SERVICE PRINCIPALS`, true},
		{`DESCRIBE CONNECTION x`, true},
		{`DESC USER u`, true},
		{"  /* c */ -- d\n\tSHOW grants TO u", true},
		{`SHOW USERS; SELECT 1`, true},
		{``, false},
		{`-- only a comment`, false},
		{`SELECT 1`, false},
		{`SET search_path = x`, false},
		{`SHOW search_path`, false},
		{`SHOW transaction isolation level`, false},
		{`SHOW ALL`, false},
		{`SHOW SERVICE`, false},
		{`SHOW "grants"`, false},
		{`BEGIN`, false},
		{`CREATE TABLE t (a int)`, false},
		{`CREATE SERVICE x`, false},
		{`CREATE "catalog" c`, false},
		{`DROP TABLE t`, false},
		{`ALTER TABLE t ADD c int`, false},
		{`COMMENT ON TABLE t IS 'x'`, false},
		{`COMMENT ON COLUMN t.c IS 'x'`, false},
		{`DESCRIBE`, false},
		{`DESC TABLE t`, false},
		{`EXPLAIN SELECT 1`, false},
		{`EXPLAIN ACCESS FOR a USE CONNECTION ON CONNECTION c`, true},
		{`SHOW REVISION`, true},
		{`SHOW revision_setting`, false},
		{`'GRANT'`, false},
		{`/* unterminated GRANT`, false},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			if got := IsGovernance(tc.sql); got != tc.want {
				t.Fatalf("IsGovernance(%q) = %v, want %v", tc.sql, got, tc.want)
			}
		})
	}
}

// TestIsGovernanceValid checks that every valid statement is recognised.
func TestIsGovernanceValid(t *testing.T) {
	for _, tc := range validCases() {
		t.Run(tc.sql, func(t *testing.T) {
			if !IsGovernance(tc.sql) {
				t.Fatalf("IsGovernance(%q) = false", tc.sql)
			}
			if !IsGovernance(tc.want.String()) {
				t.Fatalf("IsGovernance(%q) = false", tc.want.String())
			}
		})
	}
}

func FuzzSplit(f *testing.F) {
	for _, tc := range validCases() {
		f.Add(tc.sql)
	}
	for _, s := range []string{
		"SELECT ';'; SELECT $$;$$; /* ; /* ; */ */ SELECT \"a;\"",
		"CREATE FUNCTION f() BEGIN ATOMIC SELECT 1; END; SELECT 2",
		"SELECT (1; 2); E'\\';'; $a$ $b$ ; $a$",
		"x; -- y\n; `a;b`",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		pieces := Split(sql)
		checkPieces(t, sql, pieces)
		_ = IsGovernance(sql)
	})
}
