package main

// Real PostgreSQL clients against "mandate serve": psycopg2, SQLAlchemy 1.4,
// pandas, pgJDBC and node-postgres run as subprocesses (testdata/clients),
// and the introspection queries of Grafana and Metabase are replayed over
// pgx. Each client connects over TLS (verify-full against the server's
// generated certificate) with a password, as a user granted SELECT on
// system.access.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// clientsDir holds the client scripts, the replayed queries and the pinned
// node-postgres (make deps runs npm ci there).
const clientsDir = "../../testdata/clients"

// clientTimeout bounds one client run (the JVM compiling Clients.java
// included).
const clientTimeout = 3 * time.Minute

// clientEnv is the connection of the clients: libpq's variables, which
// every script reads (psycopg2 through libpq itself).
type clientEnv struct {
	host, port, user, password, database, rootCert string
}

func (c clientEnv) vars() []string {
	return []string{"PGHOST=" + c.host, "PGPORT=" + c.port, "PGUSER=" + c.user, "PGPASSWORD=" + c.password,
		"PGDATABASE=" + c.database, "PGSSLMODE=verify-full", "PGSSLROOTCERT=" + c.rootCert, "PGCONNECT_TIMEOUT=30",
		"PGAPPNAME=mandate-clients-test"}
}

// missingTool fails in CI, where make deps installs every client, and
// skips elsewhere with how to install it.
func missingTool(t *testing.T, what, install string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (make deps installs it: %s)", what, install)
	}
	t.Skipf("%s is missing: %s (or make deps)", what, install)
}

// TestSQLClients seeds the audit with governance statements, then checks
// that each client reads it: the same rows as pgx, through the client's
// own parameter binding, with its own introspection.
func TestSQLClients(t *testing.T) {
	t.Parallel()
	testSQLClients(t, startServer(t, serverOpts{}))
}

// TestSQLClientsOnPostgres: the same clients against a replica on
// PostgreSQL (--store postgres://), whose system tables' SELECTs run on
// PostgreSQL over the shared event stream.
func TestSQLClientsOnPostgres(t *testing.T) {
	t.Parallel()
	testSQLClients(t, startCluster(t, 1, nil).replicas[0])
}

func testSQLClients(t *testing.T, s *server) {
	admin := s.admin(t)
	seed := []string{
		`CREATE USER alice WITH PASSWORD 'alice-pw'`,
		`CREATE GROUP analysts`,
		`ALTER GROUP analysts ADD USER alice`,
		`CREATE CONNECTION github TYPE MCP OPTIONS (url 'https://api.githubcopilot.com/mcp/')`,
		`GRANT USE_CONNECTION ON CONNECTION github TO analysts`,
		`GRANT SELECT ON SCHEMA system.access TO alice`,
	}
	mustExec(t, admin, seed...)
	// What every client must read: the SQL audit counted by action.
	const agg = `SELECT action_name, count(*) FROM system.access.audit WHERE service_name = 'sql' GROUP BY action_name ORDER BY action_name`
	var want []string
	waitFor(t, 30*time.Second, "the audit of the seed statements", func() bool {
		want = queryRows(t, admin, agg)
		return slices.Contains(want, "GRANT|2") && slices.Contains(want, "CREATE USER|1") &&
			slices.Contains(want, "ALTER GROUP|1")
	})
	host, port, _ := net.SplitHostPort(s.sqlAddr)
	env := clientEnv{host: host, port: port, user: "alice", password: "alice-pw", database: "system",
		rootCert: filepath.Join(s.dataDir, "server.crt")}
	auditLines := func(prefix string) []string {
		out := make([]string, len(want))
		for i, w := range want {
			out[i] = prefix + " audit " + w
		}
		return out
	}
	auditColumns := "event_time,event_date,event_id,service_name,action_name,user_identity,identity_metadata," +
		"source_ip_address,user_agent,session_id,request_id,securable_type,securable_name,request_params,response," +
		"decision,reason,latency_ms,trace_id,span_id,guardrails"

	t.Run("psycopg2", func(t *testing.T) {
		py := findPython(t, "psycopg2", "apt-get install python3-psycopg2")
		out := runClient(t, env, py, "-B", filepath.Join(clientsDir, "clients.py"), "psycopg2")
		checkLines(t, out, append(auditLines("psycopg2"),
			"psycopg2 ssl True",
			"psycopg2 types datetime utc dict 0 float"))
	})
	t.Run("sqlalchemy", func(t *testing.T) {
		py := findPython(t, "sqlalchemy", "apt-get install python3-sqlalchemy")
		out := runClient(t, env, py, "-B", filepath.Join(clientsDir, "clients.py"), "sqlalchemy")
		checkLines(t, out, append(auditLines("sqlalchemy"),
			"sqlalchemy version 1.4",
			"sqlalchemy tables audit",
			"sqlalchemy columns "+auditColumns,
			"sqlalchemy types event_time=TIMESTAMP latency_ms=DOUBLE_PRECISION response=JSON"))
	})
	t.Run("pandas", func(t *testing.T) {
		py := findPython(t, "pandas", "apt-get install python3-pandas")
		out := runClient(t, env, py, "-B", filepath.Join(clientsDir, "clients.py"), "pandas")
		total := 0
		for _, w := range want {
			var n int
			_, _ = fmt.Sscanf(w[strings.LastIndexByte(w, '|')+1:], "%d", &n)
			total += n
		}
		checkLines(t, out, append(auditLines("pandas"),
			"pandas dtypes object int64",
			fmt.Sprintf("pandas read_sql_table %d datetime64[ns, UTC]", total)))
	})
	t.Run("pgjdbc", func(t *testing.T) {
		java, err := exec.LookPath("java")
		if err != nil {
			missingTool(t, "java", "apt-get install default-jre-headless")
		}
		const jar = "/usr/share/java/postgresql.jar"
		if _, err := os.Stat(jar); err != nil {
			missingTool(t, "pgJDBC ("+jar+")", "apt-get install libpostgresql-jdbc-java")
		}
		// -XX:-UsePerfData: no /tmp/hsperfdata_<user> (it ignores TMPDIR).
		out := runClient(t, env, java, "-XX:-UsePerfData", "-cp", jar, filepath.Join(clientsDir, "Clients.java"))
		checkLines(t, out, append(auditLines("jdbc"),
			"jdbc schemas contain access",
			"jdbc tables access.audit TABLE",
			"jdbc columns event_time:timestamptz,event_date:date,event_id:text,service_name:text,action_name:text,"+
				"user_identity:text,identity_metadata:json,source_ip_address:text,user_agent:text,session_id:text,"+
				"request_id:text,securable_type:text,securable_name:text,request_params:json,response:json,"+
				"decision:text,reason:text,latency_ms:float8,trace_id:text,span_id:text,guardrails:json",
			"jdbc prepared runs agree"))
	})
	t.Run("node-postgres", func(t *testing.T) {
		node, err := exec.LookPath("node")
		if err != nil {
			missingTool(t, "node", "apt-get install nodejs")
		}
		if _, err := os.Stat(filepath.Join(clientsDir, "node_modules", "pg", "package.json")); err != nil {
			missingTool(t, "node-postgres", "npm ci in testdata/clients")
		}
		out := runClient(t, env, node, filepath.Join(clientsDir, "clients.js"))
		checkLines(t, out, append(auditLines("pg"),
			"pg ssl true",
			"pg types Date object 0"))
	})
	for _, tool := range []string{"grafana", "metabase"} {
		t.Run(tool, func(t *testing.T) {
			queries := loadReplay(t, filepath.Join(clientsDir, tool+".sql"))
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
				cfg := s.connConfig(t, env.user, env.password, env.database)
				cfg.DefaultQueryExecMode = mode
				c, err := pgx.ConnectConfig(t.Context(), cfg)
				if err != nil {
					t.Fatalf("connect (%v): %v", mode, err)
				}
				for _, q := range queries {
					replay(t, c, mode, q)
				}
				_ = c.Close(t.Context())
			}
		})
	}
}

// findPython returns a python3 that imports module: Debian's (where its
// python3-* packages install) or the one on PATH.
func findPython(t *testing.T, module, install string) string {
	t.Helper()
	var candidates []string
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		candidates = append(candidates, "/usr/bin/python3")
	}
	if p, err := exec.LookPath("python3"); err == nil && p != "/usr/bin/python3" {
		candidates = append(candidates, p)
	}
	for _, py := range candidates {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		err := exec.CommandContext(ctx, py, "-c", "import "+module).Run()
		cancel()
		if err == nil {
			return py
		}
	}
	missingTool(t, "python3 with "+module, install)
	return ""
}

// runClient runs a client to completion and returns its standard output;
// a client that fails fails the test with its output.
func runClient(t *testing.T, env clientEnv, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(append(os.Environ(), env.vars()...), "TMPDIR="+t.TempDir()) // nothing left behind
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	t.Logf("%s:\n%s", filepath.Base(args[len(args)-1]), stdout.String())
	return stdout.String()
}

// checkLines checks that out holds every line of want, the lines that
// share a prefix with an "audit" line in the same order.
func checkLines(t *testing.T, out string, want []string) {
	t.Helper()
	got := strings.Split(strings.TrimSpace(out), "\n")
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	var gotAudit, wantAudit []string
	for _, l := range got {
		if strings.Contains(l, " audit ") {
			gotAudit = append(gotAudit, l)
		}
	}
	for _, l := range want {
		if strings.Contains(l, " audit ") {
			wantAudit = append(wantAudit, l)
		}
	}
	if !slices.Equal(gotAudit, wantAudit) {
		t.Errorf("audit rows:\n%s\nwant (as pgx reads them):\n%s", strings.Join(gotAudit, "\n"), strings.Join(wantAudit, "\n"))
	}
}

// replayQuery is one statement of a replay file (testdata/clients/*.sql).
type replayQuery struct {
	name string
	sql  string
	args []any
	want []string
}

// loadReplay reads a replay file: a statement starts at its "-- name:"
// line; "-- source:", "-- args:" (text values separated by " | ") and
// "-- want:" lines describe it; every other line is its text.
func loadReplay(t *testing.T, path string) []replayQuery {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []replayQuery
	var cur *replayQuery
	var body []string
	flush := func() {
		if cur == nil {
			return
		}
		cur.sql = strings.TrimSuffix(strings.TrimSpace(strings.Join(body, "\n")), ";")
		if cur.sql == "" {
			t.Fatalf("%s: %q has no statement", path, cur.name)
		}
		out = append(out, *cur)
		cur, body = nil, nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "-- name:"):
			flush()
			cur = &replayQuery{name: strings.TrimSpace(strings.TrimPrefix(line, "-- name:"))}
		case cur == nil:
			// the file's header
		case strings.HasPrefix(line, "-- source:"):
		case strings.HasPrefix(line, "-- args:"):
			for _, a := range strings.Split(strings.TrimPrefix(line, "-- args:"), " | ") {
				cur.args = append(cur.args, strings.TrimSpace(a))
			}
		case strings.HasPrefix(line, "-- want:"):
			cur.want = append(cur.want, strings.TrimSpace(strings.TrimPrefix(line, "-- want:")))
		default:
			body = append(body, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	if len(out) == 0 {
		t.Fatalf("%s: no statements", path)
	}
	return out
}

// replay runs one statement: it must succeed, and each wanted value must
// be a field of some row.
func replay(t *testing.T, c *pgx.Conn, mode pgx.QueryExecMode, q replayQuery) {
	t.Helper()
	rows, err := c.Query(t.Context(), q.sql, q.args...)
	if err != nil {
		t.Errorf("%s (%v): %v", q.name, mode, err)
		return
	}
	fields := map[string]bool{}
	n := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Errorf("%s (%v): %v", q.name, mode, err)
			rows.Close()
			return
		}
		n++
		for _, v := range vals {
			if v != nil {
				fields[fmt.Sprint(v)] = true
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Errorf("%s (%v): %v", q.name, mode, err)
		return
	}
	for _, w := range q.want {
		if !fields[w] {
			t.Errorf("%s (%v): no row holds %q (%d rows)", q.name, mode, w, n)
		}
	}
}
