package sqlfront_test

// The differential test: every query of testdata/pgdiff/*.sql runs on
// Mandate (system tables on the embedded engine) and on a real PostgreSQL
// loaded with the same rows, and the answers must agree column type by
// column type (OIDs), row by row (the text PostgreSQL sends), or in the
// error's SQLSTATE. The differences that remain are listed, with their
// reasons, in testdata/pgdiff/differences.txt: a listed query that agrees,
// or an unlisted one that differs, fails the test.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgtest"
)

const pgdiffDir = "../testdata/pgdiff"

// engineWords are DuckDB's vocabulary, which no error may show.
var engineWords = regexp.MustCompile(`(?i)binder error|catalog error|conversion error|parser error|invalid input error|` +
	`out of range error|duckdb|INT32|INT64|VARCHAR|STRING_LITERAL|HUGEINT|values list|mandate_|system_access_audit|` +
	`candidate functions|did you mean|struct_pack|list_`)

// pgdiffQuery is one line of the corpus.
type pgdiffQuery struct {
	file string
	line int
	sql  string
}

func (q pgdiffQuery) String() string { return fmt.Sprintf("%s:%d: %s", q.file, q.line, q.sql) }

// readCorpus reads the corpus: one statement per line; blank lines and
// lines starting with -- are skipped.
func readCorpus(t *testing.T) []pgdiffQuery {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(pgdiffDir, "*.sql"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus in %s: %v", pgdiffDir, err)
	}
	var out []pgdiffQuery
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "--") {
				continue
			}
			out = append(out, pgdiffQuery{file: filepath.Base(f), line: i + 1, sql: strings.TrimSuffix(line, ";")})
		}
	}
	return out
}

// readDifferences reads differences.txt: "## reason" starts a group of
// queries (one a line, as written in the corpus) that differ for it.
func readDifferences(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(pgdiffDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	reason := ""
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "## "):
			reason = strings.TrimPrefix(line, "## ")
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			if reason == "" {
				t.Fatalf("differences.txt: %q has no reason", line)
			}
			out[strings.TrimSuffix(line, ";")] = reason
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// pgdiffResult is one side's answer.
type pgdiffResult struct {
	oids []uint32
	rows []string // each row's values, text or NULL, joined by " | "
	code string   // SQLSTATE, when it failed
	msg  string
	hint string
	pos  int32
}

func (r pgdiffResult) String() string {
	if r.code != "" {
		s := fmt.Sprintf("ERROR %s: %s", r.code, r.msg)
		if r.hint != "" {
			s += " HINT: " + r.hint
		}
		if r.pos > 0 {
			s += fmt.Sprintf(" at %d", r.pos)
		}
		return s
	}
	rows := r.rows
	if len(rows) > 8 {
		rows = append(append([]string{}, rows[:8]...), fmt.Sprintf("... %d rows", len(r.rows)))
	}
	return fmt.Sprintf("types %v rows [%s]", r.oids, strings.Join(rows, "; "))
}

func (r pgdiffResult) equal(o pgdiffResult) bool {
	if r.code != "" || o.code != "" {
		if r.code != o.code {
			return false
		}
		// For undefined columns and tables the message, the hint and
		// the position (psql's caret) are PostgreSQL's too.
		if r.code == "42703" || r.code == "42803" || r.code == "42702" || r.code == "42P01" && strings.HasPrefix(r.msg, "missing FROM") {
			return r.msg == o.msg && r.hint == o.hint && r.pos == o.pos
		}
		return true
	}
	return slices.Equal(r.oids, o.oids) && slices.Equal(r.rows, o.rows)
}

// run runs sql over the simple protocol (values in text, as psql sees
// them); rows are sorted unless the statement orders them.
func pgdiffRun(ctx context.Context, conn *pgx.Conn, sql string, ordered bool) pgdiffResult {
	var res pgdiffResult
	rows, err := conn.Query(ctx, sql, pgx.QueryExecModeSimpleProtocol)
	if err == nil {
		for _, fd := range rows.FieldDescriptions() {
			res.oids = append(res.oids, fd.DataTypeOID)
		}
		for rows.Next() {
			vals := rows.RawValues()
			parts := make([]string, len(vals))
			for i, v := range vals {
				if v == nil {
					parts[i] = "NULL"
				} else {
					parts[i] = string(v)
				}
			}
			res.rows = append(res.rows, strings.Join(parts, " | "))
		}
		rows.Close()
		err = rows.Err()
	}
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pgdiffResult{code: pe.Code, msg: pe.Message, hint: pe.Hint, pos: pe.Position}
		}
		return pgdiffResult{code: "connection", msg: err.Error()}
	}
	if !ordered {
		sort.Strings(res.rows)
	}
	return res
}

// ordered reports whether the statement's result order is defined (a
// top-level ORDER BY).
func ordered(sql string) bool {
	tree, err := pg.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return false
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	return sel != nil && len(sel.SortClause) > 0
}

// pgdiffAudit is the seeded audit: varied services, users, JSON shapes,
// NULLs, latencies and times (across midnight in UTC and the 2024 US and
// EU daylight-saving changes).
func pgdiffAudit() []catalog.AuditEvent {
	base := time.Date(2024, 3, 9, 22, 30, 0, 0, time.UTC)
	users := []string{"alice@example.com", "bob@example.com", "Carol@Example.com", "svc-agent", ""}
	services := []string{"sql", "mcp", "llm", "authorization"}
	params := []string{
		`{"statement":"GRANT SELECT ON SCHEMA system.access TO alice"}`,
		`{"statement":"CREATE USER bob WITH PASSWORD '***'"}`,
		`{"tool":"search","arguments_size":120,"tags":["a","b"],"nested":{"k":1,"deep":{"x":[1,2,3]}}}`,
		`{"tool":"fetch_url","arguments_size":0,"ok":true,"ratio":0.25}`,
		`{"model":"gpt-4o","input_tokens":512,"output_tokens":64,"cost":0.0125}`,
		``,
		`{"statement":"SHOW GRANTS ON CATALOG sales","note":null}`,
		`{"tool":"100%_sure","arguments_size":7}`,
	}
	reasons := []string{"", "granted SELECT via group analysts", "lacks USE_CONNECTION on CONNECTION github",
		"Policy Deny: 50% budget", "under_score and back\\slash", "MiXeD case Reason"}
	var evs []catalog.AuditEvent
	for i := range 48 {
		ev := catalog.AuditEvent{
			EventID:       fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			Time:          base.Add(time.Duration(i*i*7919%(3*24*60)) * time.Minute).Add(time.Duration(i*137) * time.Microsecond),
			Service:       services[i%len(services)],
			Action:        []string{"GRANT", "CREATE USER", "tools/call", "chat.completions", "SHOW GRANTS", "REVOKE"}[i%6],
			UserIdentity:  users[i%len(users)],
			RunBy:         users[(i+1)%len(users)],
			RunAs:         []string{"", "claude-code", "codex"}[i%3],
			SourceIP:      fmt.Sprintf("10.0.%d.%d", i%3, i),
			UserAgent:     []string{"psql", "mcp-client/1.0", ""}[i%3],
			SessionID:     fmt.Sprintf("s-%d", i%5),
			RequestID:     fmt.Sprintf("req-%02d", i),
			SecurableType: []string{"CONNECTION", "TABLE", "", "CATALOG"}[i%4],
			SecurableName: []string{"system.ai.github", "system.access.audit", "", "sales"}[i%4],
			RequestParams: params[i%len(params)],
			Decision:      []string{"allow", "allow", "deny"}[i%3],
			Reason:        reasons[i%len(reasons)],
			LatencyMs:     []float64{0, 0.1, 1.5, 12.25, 1234.5678, 1e-3, 99.99, 250}[i%8] + float64(i),
		}
		if i%7 == 3 {
			ev.StatusCode, ev.ErrorMessage, ev.SQLState = 1, "permission denied", "42501"
		}
		evs = append(evs, ev)
	}
	return evs
}

// pgdiffGovernance creates the objects information_schema shows.
var pgdiffGovernance = []string{
	`CREATE USER alice WITH PASSWORD 'alice-pw'`,
	`CREATE USER bob WITH PASSWORD 'bob-pw'`,
	`CREATE SERVICE PRINCIPAL "claude-code"`,
	`CREATE GROUP analysts`,
	`CREATE GROUP "security-team"`,
	`ALTER GROUP analysts ADD USER alice`,
	`ALTER GROUP "security-team" ADD USER bob`,
	`CREATE CATALOG sales COMMENT 'sales data'`,
	`CREATE CATALOG hr`,
	`CREATE SCHEMA sales.tools`,
	`CREATE CONNECTION github TYPE MCP OPTIONS (url 'https://api.githubcopilot.com/mcp/')`,
	`CREATE CONNECTION sales.tools.crm TYPE MCP OPTIONS (url 'https://crm.example.com/mcp')`,
	`GRANT USE_CONNECTION ON CONNECTION github TO analysts`,
	`GRANT USE_CATALOG ON CATALOG sales TO alice`,
	`GRANT SELECT ON SCHEMA system.access TO "security-team"`,
}

// pgdiffCopied are the system tables copied to PostgreSQL: the audit into
// schema access; information_schema views, which PostgreSQL has of its
// own, into schema mandate_information_schema (queries name them
// system.information_schema.x; on PostgreSQL that becomes
// system.mandate_information_schema.x).
var pgdiffCopied = []string{"access.audit", "information_schema.catalogs", "information_schema.schemata",
	"information_schema.tables", "information_schema.connections", "information_schema.users",
	"information_schema.groups", "information_schema.group_members", "information_schema.table_privileges",
	"information_schema.connection_privileges"}

const pgInfoSchema = "mandate_information_schema"

func pgdiffPGName(table string) string {
	if s, ok := strings.CutPrefix(table, "information_schema."); ok {
		return pgInfoSchema + "." + s
	}
	return table
}

// pgdiffCopy copies a system table from Mandate into PostgreSQL with its
// PostgreSQL column types, through the text both send.
func pgdiffCopy(t *testing.T, from, to *pgx.Conn, table string) int {
	t.Helper()
	ctx := t.Context()
	rows, err := from.Query(ctx, "SELECT * FROM system."+table, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	var cols []string
	var names []string
	for _, fd := range rows.FieldDescriptions() {
		typ := map[uint32]string{16: "boolean", 20: "bigint", 21: "smallint", 23: "integer", 25: "text", 114: "json",
			701: "double precision", 1082: "date", 1184: "timestamptz"}[fd.DataTypeOID]
		if typ == "" {
			t.Fatalf("%s.%s: type OID %d not mapped", table, fd.Name, fd.DataTypeOID)
		}
		cols = append(cols, pgx.Identifier{fd.Name}.Sanitize()+" "+typ)
		names = append(names, fd.Name)
	}
	var data [][]any
	for rows.Next() {
		raw := rows.RawValues()
		vals := make([]any, len(raw))
		for i, v := range raw {
			if v != nil {
				vals[i] = string(v)
			}
		}
		data = append(data, vals)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	name := pgdiffPGName(table)
	schema, rel, _ := strings.Cut(name, ".")
	mustExec(t, to, "CREATE SCHEMA IF NOT EXISTS "+schema, fmt.Sprintf("CREATE TABLE %s.%s (%s)", schema, rel, strings.Join(cols, ", ")))
	ph := make([]string, len(names))
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d", i+1)
	}
	batch := &pgx.Batch{}
	for _, r := range data {
		batch.Queue(fmt.Sprintf("INSERT INTO %s.%s VALUES (%s)", schema, rel, strings.Join(ph, ", ")), r...)
	}
	if err := to.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatalf("load %s into PostgreSQL: %v", table, err)
	}
	return len(data)
}

// TestPostgresDifferential compares Mandate's answers with PostgreSQL's,
// with the system tables' queries on each engine: DuckDB (embedded) and
// PostgreSQL (catalog/pgquery, --store postgres://). Each engine has its
// list of remaining differences.
func TestPostgresDifferential(t *testing.T) {
	pgs := pgtest.Start(t, pgtest.Options{})
	for _, engine := range []string{"duckdb", "postgres"} {
		t.Run(engine, func(t *testing.T) { pgdiffEngine(t, pgs, engine) })
	}
}

func pgdiffEngine(t *testing.T, pgs *pgtest.Server, engine string) {
	sys := pgs.Connect(t, "postgres")
	mustExec(t, sys, "DROP DATABASE IF EXISTS "+catalog.SystemCatalog+" WITH (FORCE)")
	pgs.CreateDatabase(t, catalog.SystemCatalog)
	pgc := pgs.Connect(t, catalog.SystemCatalog)
	var f *sysFrontend
	diffFile := "differences.txt"
	if engine == "postgres" {
		f = startSysFrontend(t, func(o *sysOptions) { o.pg = pgs })
		diffFile = "differences-postgres.txt"
	} else {
		f = startSysFrontend(t)
	}
	if err := f.Events.AppendAudit(t.Context(), pgdiffAudit()...); err != nil {
		t.Fatal(err)
	}
	admin := f.admin(t)
	mustExec(t, admin, pgdiffGovernance...)
	// The governance statements are audited with their catalog change:
	// the copy below has their events too.
	for _, table := range pgdiffCopied {
		pgdiffCopy(t, admin, pgc, table)
	}

	corpus := readCorpus(t)
	differences := readDifferences(t, diffFile)
	seen := map[string]bool{}
	matched, listed := 0, 0
	for _, q := range corpus {
		if seen[q.sql] {
			t.Errorf("%s: duplicate query", q)
			continue
		}
		seen[q.sql] = true
		pgSQL := strings.ReplaceAll(q.sql, "system.information_schema.", "system."+pgInfoSchema+".")
		ord := ordered(q.sql)
		want := pgdiffRun(t.Context(), pgc, pgSQL, ord)
		got := pgdiffRun(t.Context(), admin, q.sql, ord)
		if want.code == "connection" || got.code == "connection" {
			t.Fatalf("%s:\n  PostgreSQL %s\n  Mandate    %s", q, want, got)
		}
		if got.code != "" && engineWords.MatchString(got.msg+" "+got.hint) {
			t.Errorf("%s: the error speaks the engine's language: %s", q, got)
		}
		if strings.Contains(pgSQL, pgInfoSchema) {
			want.pos, got.pos = 0, 0 // the texts differ in length
		}
		reason, isListed := differences[q.sql]
		same := got.equal(want)
		switch {
		case same && isListed:
			t.Errorf("%s: now answers like PostgreSQL; remove it from %s (%s)", q, diffFile, reason)
		case !same && !isListed:
			t.Errorf("%s:\n  PostgreSQL %s\n  Mandate    %s", q, want, got)
		case same:
			matched++
		default:
			listed++
		}
	}
	for sql := range differences {
		if !seen[sql] {
			t.Errorf("%s lists a query the corpus does not have: %s", diffFile, sql)
		}
	}
	t.Logf("%d queries: %d answer like PostgreSQL %s, %d listed differences", len(corpus), matched, pgs.Version, listed)

	// Parameters take the type their context gives them, as PostgreSQL
	// infers it: both servers describe the same parameter and result
	// types, and answer alike for arguments sent as text.
	for _, c := range []struct {
		sql  string
		args []string
	}{
		{`SELECT $1`, []string{"x"}},
		{`SELECT $1 + 1, $2 || 'x', $3::date, $4 = 'a'`, []string{"41", "y", "2024-03-10", "a"}},
		{`SELECT count(*) FROM system.access.audit WHERE event_time > $1 AND latency_ms >= $2`, []string{"2024-03-10 12:00:00+00", "3.5"}},
		{`SELECT event_id FROM system.access.audit WHERE request_id = $1`, []string{"req-07"}},
		{`SELECT event_id FROM system.access.audit ORDER BY event_id LIMIT $1 OFFSET $2`, []string{"2", "3"}},
		{`SELECT $1::text IS NULL, coalesce($1, 'none')`, []string{"v"}},
		{`SELECT x FROM (VALUES (1), (2)) t(x) WHERE x = $1`, []string{"2"}},
		{`SELECT request_params->>$1 FROM system.access.audit WHERE event_id = $2`, []string{"tool", "00000000-0000-4000-8000-000000000002"}},
		{`SELECT $1::int / $2`, []string{"7", "2"}},
		{`SELECT $1::int / $2`, []string{"7", "0"}},
	} {
		want := pgdiffPrepared(t.Context(), pgc, c.sql, c.args)
		got := pgdiffPrepared(t.Context(), admin, c.sql, c.args)
		if want != got {
			t.Errorf("%s %q:\n  PostgreSQL %s\n  Mandate    %s", c.sql, c.args, want, got)
		}
	}
}

// pgdiffPrepared prepares sql (the server infers the parameter types)
// and runs it with text arguments: the types and the answer as text.
func pgdiffPrepared(ctx context.Context, conn *pgx.Conn, sql string, args []string) string {
	sd, err := conn.PgConn().Prepare(ctx, "", sql, nil)
	if err != nil {
		return "prepare: " + err.Error()
	}
	var fields []uint32
	for _, f := range sd.Fields {
		fields = append(fields, f.DataTypeOID)
	}
	vals := make([][]byte, len(args))
	for i, a := range args {
		vals[i] = []byte(a)
	}
	res := conn.PgConn().ExecPrepared(ctx, "", vals, nil, nil).Read()
	out := fmt.Sprintf("params %v fields %v", sd.ParamOIDs, fields)
	if res.Err != nil {
		var pe *pgconn.PgError
		if errors.As(res.Err, &pe) {
			return out + " ERROR " + pe.Code
		}
		return out + " ERROR " + res.Err.Error()
	}
	for _, r := range res.Rows {
		parts := make([]string, len(r))
		for i, v := range r {
			parts[i] = string(v)
			if v == nil {
				parts[i] = "NULL"
			}
		}
		out += " [" + strings.Join(parts, " | ") + "]"
	}
	return out
}
