package systables

import (
	"slices"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// TestClientRewrites covers what real clients' introspection needs
// (testdata/clients: Grafana, Metabase, SQLAlchemy, pgJDBC): scalar
// functions in FROM, parse_ident, format, _pg_expandarray, casts of
// computed names to regclass, and the information_schema relations they
// join with.
func TestClientRewrites(t *testing.T) {
	e, _, _ := testEngine(t)
	admin := fakeSession{user: catalog.AdminUser, db: catalog.SystemCatalog}
	for _, c := range []struct {
		sql  string
		want []string // substrings of the engine's SQL
		not  []string
	}{
		{`SELECT s[1] FROM string_to_array('a,b', ',') s`,
			[]string{`FROM (SELECT string_to_array('a,b', ',') AS "s") AS "s"`}, nil},
		{`SELECT x FROM string_to_array('a,b', ',') AS t(x)`, []string{`(SELECT string_to_array('a,b', ',') AS "x") AS "t"("x")`}, nil},
		{`SELECT * FROM generate_series(1, 3) i`, []string{`generate_series(1, 3)) AS "i"("i")`}, []string{"unnest"}},
		{`SELECT (parse_ident('access."Au""dit"'))[2]`, []string{`['access', 'Au"dit']`}, []string{"parse_ident("}},
		{`SELECT format('%s|%I.%I|%L|%%', 1, 'access', 'My T', NULL)`,
			[]string{"concat(coalesce(CAST(1 AS VARCHAR), ''), '|', (CASE WHEN regexp_full_match('access'", `'.', (CASE WHEN regexp_full_match('My T'`, `'|%'`},
			[]string{"format("}},
		{`SELECT CAST(CAST(format('%I.%I', 'access', 'audit') AS regclass) AS oid)`,
			[]string{`SELECT "regclass_c"."oid" AS "oid" FROM (mandate_virtual_table('pg_catalog.pg_class') AS "regclass_c"`}, []string{"AS regclass", "AS REGCLASS"}},
		{`SELECT c.relname::regclass FROM pg_class c`, []string{`SELECT "relname" AS "relname" FROM mandate_virtual_table('pg_catalog.pg_class')`}, nil},
		{`SELECT (information_schema._pg_expandarray(i.indkey)).n FROM pg_index i`,
			[]string{`struct_pack("x" := unnest("i"."indkey"), "n" := generate_subscripts("i"."indkey", 1))`}, nil},
		{`SELECT unnest(ix.indkey), generate_subscripts(ix.indkey, 1) FROM pg_index ix`, []string{`generate_subscripts("ix"."indkey", 1)`}, nil},
		{`SELECT numeric_precision, udt_schema, is_identity FROM information_schema.columns`,
			[]string{"mandate_virtual_table('information_schema.columns')"}, nil},
		{`SELECT * FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage kc USING (constraint_name)`,
			[]string{"mandate_virtual_table('information_schema.table_constraints')", "mandate_virtual_table('information_schema.key_column_usage')"}, nil},
		{`SELECT enumlabel FROM pg_enum`, []string{"mandate_virtual_table('pg_catalog.pg_enum')"}, nil},
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

// The rewrites open nothing: functions in FROM are checked as anywhere
// else, named arguments stay out of queries, format and parse_ident need
// constants.
func TestClientRewritesRefused(t *testing.T) {
	e, fe, _ := testEngine(t)
	admin := fakeSession{user: catalog.AdminUser, db: catalog.SystemCatalog}
	for _, c := range []struct{ sql, code string }{
		{`SELECT * FROM read_text('/etc/passwd') s`, "42501"},
		{`SELECT * FROM getenv('HOME') s`, "42501"},
		{`SELECT * FROM nosuchfn(1) s`, "42883"},
		{`SELECT * FROM mysch.string_to_array('a', ',') s`, "42883"},
		{`SELECT struct_pack(x => 1)`, "0A000"},
		{`SELECT format(event_id, 1) FROM system.access.audit`, "0A000"},
		{`SELECT format('%5s', 1)`, "0A000"},
		{`SELECT format('%s %s', 1)`, "22023"},
		{`SELECT parse_ident(event_id) FROM system.access.audit`, "0A000"},
		{`SELECT parse_ident('a.')`, "22023"},
		{`SELECT CAST(concat('a', 'b') AS regproc)`, "0A000"},
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

func TestSplitIdents(t *testing.T) {
	for _, c := range []struct {
		in     string
		strict bool
		want   []string // nil: an error
	}{
		{"access.audit", true, []string{"access", "audit"}},
		{"Access", true, []string{"access"}},
		{` "My ""T""" . X `, true, []string{`My "T"`, "x"}},
		{`a.b.c`, true, []string{"a", "b", "c"}},
		{"a b", true, nil},
		{"a b", false, []string{"a"}},
		{"a.", true, nil},
		{`"a`, true, nil},
		{`""`, true, nil},
		{"", true, nil},
	} {
		got, err := splitIdents(c.in, c.strict)
		if c.want == nil {
			if err == nil {
				t.Errorf("splitIdents(%q, %v) = %q, want an error", c.in, c.strict, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("splitIdents(%q, %v) = %q, %v; want %q", c.in, c.strict, got, err, c.want)
		}
	}
}

// information_schema.columns, pg_attribute and the relation the engine
// reads agree on the columns of information_schema.columns.
func TestInfoCompatColumns(t *testing.T) {
	st, ok := catalog.LookupSystemTable("information_schema", "columns")
	if !ok {
		t.Fatal("no information_schema.columns")
	}
	r, _ := lookupRelation("information_schema", "columns")
	cols := tableColumns(st)
	if len(r.cols) != len(cols) || len(cols) <= len(st.Columns) {
		t.Fatalf("relation has %d columns, tableColumns %d, catalog %d", len(r.cols), len(cols), len(st.Columns))
	}
	for _, name := range []string{"numeric_precision", "numeric_scale", "udt_schema", "is_identity", "is_generated"} {
		if !slices.ContainsFunc(cols, func(c catalog.QueryColumn) bool { return c.Name == name }) {
			t.Errorf("no column %s", name)
		}
	}
	if got := len(columnCompat("system", catalog.ColumnType{Data: catalog.DataFloat64})); got != len(cols)-len(st.Columns) {
		t.Errorf("columnCompat gives %d values for %d columns", got, len(cols)-len(st.Columns))
	}
}
