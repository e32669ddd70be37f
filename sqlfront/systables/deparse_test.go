package systables

import (
	"strings"
	"testing"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// The engine's SQL keeps PostgreSQL's tree: every operator expression is
// parenthesized, whatever the engine's precedences.
func TestDeparsePrecedence(t *testing.T) {
	e, _, _ := testEngine(t)
	admin := fakeSession{user: catalog.AdminUser, db: catalog.SystemCatalog}
	for _, c := range []struct{ sql, want string }{
		{`SELECT true OR '{"a":"x"}'::json->>'a' LIKE 'y'`,
			`(true OR (json_extract_string(CAST('{"a":"x"}' AS JSON), '$."a"') LIKE 'y' ESCAPE '\'))`},
		{`SELECT 1 FROM system.access.audit WHERE decision = 'deny' OR (request_params->>'statement') LIKE '%GRANT%'`,
			`(("decision" = 'deny') OR (json_extract_string("request_params", '$."statement"') LIKE '%GRANT%' ESCAPE '\'))`},
		{`SELECT 1 - 2 - 3, 1 - (2 - 3), 2 * 3 + 4`, `((1 - 2) - 3) AS "?column?", (1 - (2 - 3)) AS "?column?", ((2 * 3) + 4)`},
		{`SELECT NOT a = b AND c FROM (VALUES (1, 2, true)) t(a, b, c)`, `((NOT ("a" = "b")) AND "c")`},
		{`SELECT x FROM (VALUES (1)) t(x) ORDER BY x, -x DESC`, `ORDER BY 1 ASC NULLS LAST, (- "x") DESC NULLS FIRST`},
	} {
		st, err := prepare(t, e, admin, c.sql)
		if err != nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		if !strings.Contains(st.EngineSQL(), c.want) {
			t.Errorf("%s\n  engine SQL %s\n  lacks %s", c.sql, st.EngineSQL(), c.want)
		}
	}
}

// Errors found while the statement is written: PostgreSQL's codes, with
// positions; nesting that would grow the engine's text without bound is
// refused.
func TestDeparseErrors(t *testing.T) {
	e, fe, _ := testEngine(t)
	admin := fakeSession{user: catalog.AdminUser, db: catalog.SystemCatalog}
	deep := "x"
	for range 40 {
		deep = "(" + deep + " / x)"
	}
	for _, c := range []struct {
		sql, code string
		pos       int32
	}{
		{`SELECT 1/0 WHERE false`, "22012", 0},
		{`SELECT 1 + 'a'::text`, "42883", 10},
		{`SELECT 1 WHERE 1`, "42804", 0},
		{`SELECT CASE WHEN 1 THEN 2 END`, "42804", 0},
		{`SELECT x FROM (VALUES (1)) t(x) ORDER BY 2`, "42P10", 42},
		{`SELECT x::date AS d, x::text AS d FROM (VALUES ('2024-01-01')) t(x) ORDER BY d`, "42702", 78},
		{`SELECT "X" FROM (VALUES (1)) t(x)`, "42703", 8},
		{`SELECT 1 ORDER BY 1 FETCH FIRST 1 ROW WITH TIES`, "0A000", 0},
		{`SELECT ` + deep + ` FROM (VALUES (1)) t(x)`, "54001", 0},
	} {
		fe.sql = nil
		_, err := prepare(t, e, admin, c.sql)
		pe, ok := err.(*pgwire.Error)
		if !ok || pe.Code != c.code || pe.Position != c.pos {
			t.Errorf("%s: %#v, want %s at %d", c.sql, err, c.code, c.pos)
		}
		if len(fe.sql) > 0 {
			t.Errorf("%s reached the engine", c.sql)
		}
	}
}

func TestLevenshteinHint(t *testing.T) {
	d := newDeparser(fakeSession{}, nil, nil)
	d.scope = &scope{rels: []*srcRel{
		{name: "a", cols: []colInfo{{name: "event_time"}, {name: "event_id"}}},
		{name: "b", cols: []colInfo{{name: "event_time"}}},
	}}
	for _, c := range []struct{ qual, name, hint string }{
		{"a", "evnt_time", `Perhaps you meant to reference the column "a.event_time".`},
		{"", "evnt_time", `Perhaps you meant to reference the column "a.event_time" or the column "b.event_time".`},
		{"", "event_idd", `Perhaps you meant to reference the column "a.event_id".`},
		{"", "xyz", ""},
	} {
		u := d.explainMissing(nil, c.qual, c.name)
		if u.hint != c.hint {
			t.Errorf("%s.%s: hint %q, want %q", c.qual, c.name, u.hint, c.hint)
		}
	}
}

func TestSimilarToRegex(t *testing.T) {
	for _, c := range []struct{ pat, esc, want string }{
		{"a%", `\`, `^(?:a.*)$`},
		{"(a|b)_", `\`, `^(?:(?:a|b).)$`},
		{`a\%`, `\`, `^(?:a\%)$`},
		{"a#_", "#", `^(?:a\_)$`},
		{"a.c", `\`, `^(?:a\.c)$`},
		{"[a-c]+", `\`, `^(?:[a-c]+)$`},
	} {
		got, err := similarToRegex(c.pat, c.esc)
		if err != nil || got != c.want {
			t.Errorf("similarToRegex(%q, %q) = %q, %v; want %q", c.pat, c.esc, got, err, c.want)
		}
	}
}

func TestParseInterval(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"1 day", "(to_months(0) + to_days(1) + to_microseconds(CAST(0 AS BIGINT)))"},
		{"1 year 2 mons 3 days 04:05:06.5", "(to_months(14) + to_days(3) + to_microseconds(CAST(14706500000 AS BIGINT)))"},
		{"@ 1 hour ago", "(to_months(0) + to_days(0) + to_microseconds(CAST(-3600000000 AS BIGINT)))"},
		{"1.5 days", "(to_months(0) + to_days(1) + to_microseconds(CAST(43200000000 AS BIGINT)))"},
		{"10", "(to_months(0) + to_days(0) + to_microseconds(CAST(10000000 AS BIGINT)))"},
		{"90 minutes", "(to_months(0) + to_days(0) + to_microseconds(CAST(5400000000 AS BIGINT)))"},
	} {
		got, err := parseInterval(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseInterval(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	if _, err := parseInterval("xyz"); err == nil {
		t.Error("xyz parsed")
	}
}

// PostgreSQL's text output of the values pgtype writes otherwise.
func TestOutputText(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip(err)
	}
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	ts := time.Date(2024, 3, 10, 12, 0, 0, 500000000, time.UTC)
	for _, c := range []struct {
		got, want string
	}{
		{floatText(5, 64), "5"}, {floatText(0.1, 64), "0.1"}, {floatText(1e20, 64), "1e+20"}, {floatText(1e-5, 64), "1e-05"},
		{floatText(1234567.5, 64), "1234567.5"}, {floatText(123456789012345678, 64), "1.2345678901234568e+17"},
		{floatText(float64(float32(0.1)), 32), "0.1"},
		{intervalText(catalog.Interval{Days: 1}), "1 day"}, {intervalText(catalog.Interval{Months: 14, Days: 3, Micros: 14706500000}), "1 year 2 mons 3 days 04:05:06.5"},
		{intervalText(catalog.Interval{Days: -1, Micros: 3600e6}), "-1 days +01:00:00"}, {intervalText(catalog.Interval{}), "00:00:00"},
		{intervalText(catalog.Interval{Micros: -1e6}), "-00:00:01"},
		{tstzText(ts, time.UTC), "2024-03-10 12:00:00.5+00"}, {tstzText(ts, ny), "2024-03-10 08:00:00.5-04"},
		{tstzText(ts, kolkata), "2024-03-10 17:30:00.5+05:30"},
		{jsonbText(`{"b":2,"a":[1,{"d":null,"c":1.50}],"aa":"x\u0001/"}`), `{"a": [1, {"c": 1.50, "d": null}], "b": 2, "aa": "x\u0001/"}`},
		{jsonbText(`{"a":1,"a":2}`), `{"a": 2}`}, {jsonbText(`1e2`), `100`},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// Numeric constants divide with PostgreSQL's result scale.
func TestNumericDivScale(t *testing.T) {
	for _, c := range []struct {
		a, b  string
		scale int
	}{
		{"7.0", "2", 16}, {"1", "3.0", 20}, {"2.5", "0.5", 16}, {"30000", "3", 16}, {"1", "30000", 24}, {"7", "7", 20},
		{"1.123456789012345678901", "1", 21},
	} {
		if got := numericDivScale(c.a, c.b); got != c.scale {
			t.Errorf("%s / %s: scale %d, want %d", c.a, c.b, got, c.scale)
		}
	}
}

// A local time skipped or repeated by a daylight-saving change reads as
// PostgreSQL reads it.
func TestPGLocalTime(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip(err)
	}
	for _, c := range []struct {
		wall time.Time
		want string
	}{
		{time.Date(2024, 3, 10, 2, 30, 0, 0, time.UTC), "2024-03-10T07:30:00Z"},  // skipped: read as EST
		{time.Date(2024, 11, 3, 1, 30, 0, 0, time.UTC), "2024-11-03T06:30:00Z"},  // repeated: the later, EST
		{time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC), "2024-07-01T16:00:00Z"},   // EDT
		{time.Date(2024, 12, 24, 23, 0, 0, 0, time.UTC), "2024-12-25T04:00:00Z"}, // EST
	} {
		if got := pgLocalTime(c.wall, ny).UTC().Format(time.RFC3339); got != c.want {
			t.Errorf("%v: %s, want %s", c.wall, got, c.want)
		}
	}
}

func TestParseBoolAndArrays(t *testing.T) {
	for in, want := range map[string]bool{"t": true, "TRUE": true, "ye": true, "on": true, "1": true, "f": false, "of": false, "no": false, "0": false} {
		if got, ok := parseBool(in); !ok || got != want {
			t.Errorf("parseBool(%q) = %v, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "o", "maybe", "2"} {
		if _, ok := parseBool(in); ok {
			t.Errorf("parseBool(%q) accepted", in)
		}
	}
	got, err := parseArrayLiteral(`{a, "b c",NULL,"NULL","x\"y"}`)
	if err != nil || len(got) != 5 || *got[0] != "a" || *got[1] != "b c" || got[2] != nil || *got[3] != "NULL" || *got[4] != `x"y` {
		t.Errorf("parseArrayLiteral: %v %v", got, err)
	}
	if _, err := parseArrayLiteral("1,2"); err == nil {
		t.Error("no braces accepted")
	}
}

// BenchmarkDeparse compares the two ways of writing an analysed tree as
// the engine's SQL, side by side: PostgreSQL's deparser (pg_query, what
// the rewrite used before, which loses the precedences the engine needs)
// and this package's deparser with its type inference.
//
//	go test -run '^$' -bench BenchmarkDeparse ./sqlfront/systables/
func BenchmarkDeparse(b *testing.B) {
	e, _, _ := testEngine(b)
	admin := fakeSession{user: catalog.AdminUser, db: catalog.SystemCatalog}
	const sql = `SELECT user_identity, action_name, count(*), avg(latency_ms), max(event_time) FROM system.access.audit
		WHERE event_time > now() - interval '7 days' AND (decision = 'deny' OR request_params->>'tool' LIKE 'search%')
		GROUP BY 1, 2 ORDER BY 3 DESC, 1 LIMIT 20`
	tree, err := pg.Parse(sql)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.Prepare(b.Context(), admin, sql, tree, nil); err != nil { // analyses tree in place
		b.Fatal(err)
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	b.Run("pg_query.Deparse", func(b *testing.B) {
		for b.Loop() {
			if _, err := pg.Deparse(tree); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("deparser", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := newDeparser(admin, nil, nil).statement(sel); err != nil {
				b.Fatal(err)
			}
		}
	})
}
