package sqlfront_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The queries the rewrite got wrong when it spliced text: PostgreSQL's
// precedence (->> binds tighter than LIKE and OR) must survive the trip to
// the engine.
func TestSystemTablesPrecedence(t *testing.T) {
	f := startSysFrontend(t)
	f.seedAudit(t, 6)
	conn := f.admin(t)
	var b *bool
	if err := conn.QueryRow(t.Context(), `SELECT true OR '{"a":"x"}'::json->>'a' LIKE 'y'`).Scan(&b); err != nil || b == nil || !*b {
		t.Errorf(`true OR json->>'a' LIKE 'y' = %v, %v; want true`, b, err)
	}
	var n, total int64
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM system.access.audit`).Scan(&total); err != nil || total < 6 {
		t.Fatalf("audit has %d rows, %v", total, err)
	}
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM system.access.audit WHERE true OR request_params->>'statement' LIKE '%x%'`).Scan(&n); err != nil || n != total {
		t.Errorf("WHERE true OR ... LIKE: %d rows, %v; want all %d", n, err, total)
	}
	// decision = 'deny' OR (...) LIKE: no row is denied, none has a
	// statement with GRANT; the old rewrite failed with a cast error.
	rows, err := conn.Query(t.Context(), `SELECT event_id FROM system.access.audit WHERE decision = 'deny' OR (request_params->>'statement') LIKE '%GRANT%'`)
	if err == nil {
		var ids []string
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if len(ids) != 0 {
			t.Errorf("rows %v", ids)
		}
	}
	if err != nil {
		t.Errorf("decision = 'deny' OR (...) LIKE: %v", err)
	}
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM system.access.audit WHERE request_params->>'tool' LIKE 't%' AND NOT request_params->>'tool' = 't1'`).Scan(&n); err != nil || n != 3 {
		t.Errorf("->> with LIKE and NOT: %d, %v; want 3", n, err)
	}
}

// PostgreSQL's errors, not the engine's: division by zero, an unknown
// column with its position and a hint (with and without an alias), and
// no engine vocabulary.
func TestSystemTablesErrors(t *testing.T) {
	f := startSysFrontend(t)
	f.seedAudit(t, 3)
	conn := f.admin(t)
	for _, c := range []struct {
		sql, code, msg, hint string
		pos                  int32
	}{
		{`SELECT 1/0`, "22012", "division by zero", "", 0},
		{`SELECT latency_ms / 0 FROM system.access.audit`, "22012", "division by zero", "", 0},
		{`SELECT count(*) % 0 FROM system.access.audit`, "22012", "division by zero", "", 0},
		{`SELECT 2147483647 + 1`, "22003", "integer out of range", "", 0},
		{`SELECT evnt_time FROM system.access.audit`, "42703", `column "evnt_time" does not exist`,
			`Perhaps you meant to reference the column "audit.event_time".`, 8},
		{`SELECT a.evnt_time FROM system.access.audit a`, "42703", `column a.evnt_time does not exist`,
			`Perhaps you meant to reference the column "a.event_time".`, 8},
		{`SELECT event_id FROM system.access.audit a WHERE a.evnt_id = 'x'`, "42703", `column a.evnt_id does not exist`,
			`Perhaps you meant to reference the column "a.event_id".`, 50},
		{`SELECT nothing_like_it FROM system.access.audit`, "42703", `column "nothing_like_it" does not exist`, "", 8},
		{`SELECT x.event_id FROM system.access.audit a`, "42P01", `missing FROM-clause entry for table "x"`, "", 8},
		{`SELECT 'x'::int`, "22P02", `invalid input syntax for type integer: "x"`, "", 0},
	} {
		_, err := conn.Exec(t.Context(), c.sql)
		if err == nil {
			t.Errorf("%s: no error", c.sql)
			continue
		}
		pe := asPgError(t, err)
		if pe.Code != c.code || pe.Message != c.msg || pe.Hint != c.hint || pe.Position != c.pos {
			t.Errorf("%s:\n got %s %q hint %q at %d\nwant %s %q hint %q at %d", c.sql, pe.Code, pe.Message, pe.Hint, pe.Position,
				c.code, c.msg, c.hint, c.pos)
		}
	}
	// In a multi-statement query the position counts from the start of
	// the text, as psql expects.
	_, err := conn.Exec(t.Context(), `SELECT 1; SELECT evnt_time FROM system.access.audit`)
	if pe := wantSQLState(t, err, "42703"); pe.Position != 18 {
		t.Errorf("position %d, want 18", pe.Position)
	}
}

// psql draws the caret under the misspelled column and prints the hint.
func TestSystemTablesPsqlCaret(t *testing.T) {
	f := startSysFrontend(t)
	_, stderr, code := runPsql(t, f.frontend, "-c", "SELECT event_id, evnt_time FROM system.access.audit")
	want := "ERROR:  column \"evnt_time\" does not exist\n" +
		"LINE 1: SELECT event_id, evnt_time FROM system.access.audit\n" +
		"                         ^\n" +
		"HINT:  Perhaps you meant to reference the column \"audit.event_time\".\n"
	if code == 0 || !strings.Contains(stderr, want) {
		t.Errorf("psql exit %d, stderr:\n%s\nwant:\n%s", code, stderr, want)
	}
}
