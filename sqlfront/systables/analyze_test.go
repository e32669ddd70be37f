package systables

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// fakeEngine records what reaches the engine.
type fakeEngine struct{ sql []string }

func (f *fakeEngine) Describe(_ context.Context, q catalog.Query) ([]catalog.QueryColumn, []catalog.ColumnType, error) {
	f.sql = append(f.sql, q.SQL)
	return []catalog.QueryColumn{{Name: "x"}}, nil, nil
}

func (f *fakeEngine) Dialect() catalog.QueryDialect                                 { return catalog.DialectDuckDB }
func (f *fakeEngine) Query(context.Context, catalog.Query, func([]any) error) error { return nil }

type fakeSession struct{ user, db string }

func (s fakeSession) User() string     { return s.user }
func (s fakeSession) Database() string { return s.db }
func (s fakeSession) Param(n string) (string, bool) {
	return map[string]string{"timezone": "UTC"}[n], n == "timezone"
}
func (s fakeSession) ParamNames() []string  { return []string{"timezone"} }
func (s fakeSession) ServerVersion() string { return "16.4" }

func testEngine(t testing.TB) (*Engine, *fakeEngine, *catalog.Service) {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kr, _ := catalog.NewKeyring(key)
	v, _ := pgwire.MakeVerifier("pw")
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: v})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	fe := &fakeEngine{}
	return New(svc, fe), fe, svc
}

func prepare(t *testing.T, e *Engine, sess Session, sql string) (*Statement, error) {
	t.Helper()
	tree, err := pg.Parse(sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return e.Prepare(t.Context(), sess, sql, tree, nil)
}

func TestRewrite(t *testing.T) {
	e, _, _ := testEngine(t)
	admin := fakeSession{user: catalog.AdminUser, db: catalog.SystemCatalog}
	for _, c := range []struct {
		sql  string
		want []string // substrings of the engine's SQL
		not  []string
	}{
		{`SELECT count(*) FROM system.access.audit`, []string{`FROM "system_access_audit" AS "audit"`, `count(*) AS "count"`}, nil},
		{`SELECT a.event_id FROM access.audit a WHERE access.a.event_id = 'x'`, []string{`FROM "system_access_audit" AS "a"`, `("a"."event_id" = 'x')`}, []string{`"access"`}},
		{`SELECT system.access.audit.event_id FROM system.access.audit`, []string{`"audit"."event_id"`}, []string{`"system"`}},
		{`WITH audit_events AS (SELECT 1 AS x) SELECT x FROM audit_events`, []string{`"mandate_cte_1" AS`, `FROM "mandate_cte_1" AS "audit_events"`}, []string{`FROM "audit_events"`}},
		{`SELECT * FROM information_schema.catalogs`, []string{`mandate_virtual_table('information_schema.catalogs') AS "catalogs"`}, nil},
		{`SELECT relname FROM pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname OPERATOR(pg_catalog.~) '^(access)$' COLLATE pg_catalog.default`,
			[]string{`mandate_virtual_table('pg_catalog.pg_class') AS "c"`, `regexp_matches("n"."nspname", '^(access)$')`}, []string{"COLLATE", "JOIN pg_catalog", "OPERATOR"}},
		{`SELECT 'access.audit'::regclass`, []string{"SELECT 16"}, []string{"::regclass"}},
		{`SELECT current_user, current_database(), version()`, []string{`'admin' AS "current_user"`, `'system' AS "current_database"`, "PostgreSQL 16.4 (Mandate)"}, nil},
		{`SELECT current_setting('TimeZone')`, []string{`'UTC' AS "current_setting"`}, nil},
		{`SELECT pg_catalog.format_type(23, NULL)`, []string{"CASE 23 WHEN 16 THEN 'boolean'"}, nil},
		{`SELECT x::int8, y::text, z::double precision, w::timestamptz, v::jsonb FROM system.access.audit`, []string{`CAST("x" AS BIGINT)`, `CAST("y" AS VARCHAR)`, `CAST("z" AS DOUBLE)`, `CAST("w" AS TIMESTAMPTZ)`, `CAST("v" AS JSON)`}, nil},
		{`SELECT '\x0102'::bytea`, []string{`CAST('\x01\x02' AS BLOB)`}, nil},
		{`SELECT 1 WHERE 'a' = ANY(ARRAY['a'])`, []string{"list_transform(['a'], lambda mandate_e: ('a' = mandate_e))"}, nil},
		{`SELECT EXTRACT(epoch FROM now())`, []string{"CAST(epoch_us(CAST(now() AS TIMESTAMPTZ)) AS DECIMAL(38,0)) * 0.000001"}, nil},
	} {
		st, err := prepare(t, e, admin, c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		got := st.EngineSQL()
		for _, w := range c.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s\n  engine SQL %s\n  lacks %s", c.sql, got, w)
			}
		}
		for _, w := range c.not {
			if strings.Contains(got, w) {
				t.Errorf("%s\n  engine SQL %s\n  has %s", c.sql, got, w)
			}
		}
	}
}

// A refusal's message reads as one sentence; why goes in the detail.
func TestRefusedMessage(t *testing.T) {
	e, _, _ := testEngine(t)
	admin := fakeSession{user: catalog.AdminUser, db: catalog.SystemCatalog}
	for _, c := range []struct{ sql, code, msg, detail string }{
		{`SELECT CAST(1 AS numeric(40,2))`, "0A000", "numeric(40,2) is not supported in queries over system tables",
			"The query engine's decimals have at most 38 digits."},
	} {
		_, err := prepare(t, e, admin, c.sql)
		pe, ok := err.(*pgwire.Error)
		if !ok || pe.Code != c.code || pe.Message != c.msg || pe.Detail != c.detail {
			t.Errorf("%s: %#v, want %s %q (%q)", c.sql, err, c.code, c.msg, c.detail)
		}
	}
}

// Refused statements never reach the engine.
func TestRefused(t *testing.T) {
	e, fe, _ := testEngine(t)
	admin := fakeSession{user: catalog.AdminUser, db: catalog.SystemCatalog}
	for _, c := range []struct{ sql, code string }{
		{`SELECT * FROM read_csv('/etc/passwd')`, "42501"},
		{`SELECT read_parquet('x')`, "42501"},
		{`SELECT * FROM glob('*')`, "42501"},
		{`SELECT * FROM audit_events`, "42501"},
		{`SELECT * FROM main.grants`, "42501"},
		{`SELECT * FROM memory.main.x`, "42501"},
		{`SELECT * FROM duckdb_functions()`, "42501"},
		{`SELECT * FROM nope`, "42P01"},
		{`SELECT * FROM sales.access.audit`, "42P01"},
		{`SELECT nosuchfn(1)`, "42883"},
		{`SELECT * FROM system.access.audit TABLESAMPLE SYSTEM (10)`, "0A000"},
		{`SELECT * INTO t FROM system.access.audit`, "0A000"},
		{`SELECT * FROM ONLY system.access.audit`, "0A000"},
		{`SELECT x::regoper FROM system.access.audit`, "0A000"},
		{`SELECT xmlelement(name a)`, "0A000"},
		{`WITH RECURSIVE r AS (SELECT 1 UNION ALL SELECT 1 FROM r) SELECT * FROM r FOR UPDATE`, "0A000"},
	} {
		fe.sql = nil
		_, err := prepare(t, e, admin, c.sql)
		pe, ok := err.(*pgwire.Error)
		if !ok || pe.Code != c.code {
			t.Errorf("%s: %v, want %s", c.sql, err, c.code)
		}
		if len(fe.sql) > 0 {
			t.Errorf("%s reached the engine: %v", c.sql, fe.sql)
		}
	}
}

func TestPrivilegeCheck(t *testing.T) {
	e, fe, svc := testEngine(t)
	_, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "CREATE USER"},
		func(tx *catalog.Tx) error { return tx.CreatePrincipal(catalog.KindUser, "alice", nil, false) })
	if err != nil {
		t.Fatal(err)
	}
	alice := fakeSession{user: "alice", db: catalog.SystemCatalog}
	_, err = prepare(t, e, alice, `SELECT * FROM system.information_schema.catalogs c, system.access.audit a`)
	if pe, ok := err.(*pgwire.Error); !ok || pe.Code != "42501" || !strings.Contains(pe.Detail, "lacks SELECT on TABLE system.access.audit") {
		t.Errorf("err = %#v", err)
	}
	if len(fe.sql) > 0 {
		t.Errorf("reached the engine: %v", fe.sql)
	}
	// pg_catalog needs no privilege.
	if _, err := prepare(t, e, alice, `SELECT relname FROM pg_catalog.pg_class`); err != nil {
		t.Error(err)
	}
}

func TestEngineStatement(t *testing.T) {
	for sql, want := range map[string]string{"ATTACH 'x'": "ATTACH", " -- c\n install httpfs": "INSTALL",
		"/* x */ PRAGMA version": "PRAGMA", "SET GLOBAL threads=1": "SET GLOBAL", "SELECT 1": "", "SET x = 1": ""} {
		got, ok := EngineStatement(sql)
		if got != want || ok != (want != "") {
			t.Errorf("%q: %q %v", sql, got, ok)
		}
	}
	if !IsEngineSetting("threads") || !IsEngineSetting("s3_region") || IsEngineSetting("search_path") || IsEngineSetting("my.x") {
		t.Error("IsEngineSetting")
	}
}
