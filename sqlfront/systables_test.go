package sqlfront_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgquery"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/sqlfront"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// sysFrontend is a frontend on the DuckDB store with its query engine, as
// mandate serve runs it.
type sysFrontend struct {
	*frontend
	Store    *duckstore.Store // the event stream
	Catalog  *memstore.Store  // the catalog's change records and snapshots
	Engine   *duckstore.QueryEngine
	Frontend *sqlfront.Frontend
	// Events is the event stream the catalog audits to and tests append
	// to: Store, or PostgreSQL's (catalog/pgstore) when the queries run
	// on PostgreSQL (sysOptions.pg), as mandate serve --store postgres://.
	Events catalog.EventStore
	// PGDatabase is the PostgreSQL database of Events (sysOptions.pg).
	PGDatabase string
}

// syncedEngine runs each query once the audit records of the catalog
// changes committed before it are in the event store (serve does the same).
type syncedEngine struct {
	catalog.QueryEngine
	svc *catalog.Service
}

func (e syncedEngine) Query(ctx context.Context, q catalog.Query, row func(values []any) error) error {
	if err := e.svc.SyncAudit(ctx); err != nil {
		return err
	}
	return e.QueryEngine.Query(ctx, q, row)
}

func startSysFrontend(tb testing.TB, mods ...func(*sysOptions)) *sysFrontend {
	tb.Helper()
	ctx := tb.Context()
	var o sysOptions
	for _, m := range mods {
		m(&o)
	}
	store, err := duckstore.Open(ctx, tb.TempDir(), o.store)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	qe, err := store.QueryEngine(o.query)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = qe.Close() })
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	kr, _ := catalog.NewKeyring(key)
	v, _ := pgwire.MakeVerifier(adminPassword)
	// The catalog's change records in memory, the event stream in DuckDB
	// (as served, without the log in front of it).
	cat := memstore.New()
	var events catalog.EventStore = store
	var pgQuery catalog.QueryEngine
	var pgDB string
	if o.pg != nil {
		events, pgQuery, pgDB = startPGEngine(tb, o.pg)
	}
	svc, err := catalog.Open(ctx, catalog.Options{Store: cat, Events: events, Keyring: kr, AdminVerifier: v})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = svc.Close() })
	tlsCfg, err := pgwire.LoadOrCreateTLS("", "", tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	fc := sqlfront.Config{Catalog: svc, Query: syncedEngine{qe, svc}}
	if pgQuery != nil {
		fc.Query = syncedEngine{pgQuery, svc}
	}
	if o.frontend != nil {
		o.frontend(&fc)
	}
	fe := sqlfront.New(fc)
	srv, err := pgwire.NewServer(pgwire.Config{TLS: tlsCfg, Auth: fe, Handler: fe,
		Logger: zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	})
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	return &sysFrontend{frontend: &frontend{Addr: ln.Addr().String(), Host: "127.0.0.1", Port: p, Svc: svc}, Store: store, Catalog: cat, Engine: qe, Frontend: fe, Events: events, PGDatabase: pgDB}
}

var pgTestDBs atomic.Int64

// startPGEngine creates a database on pgs and opens the PostgreSQL event
// stream on it (its migrations create the views in mandate_views) and
// the query engine over those views.
func startPGEngine(tb testing.TB, pgs *pgtest.Server) (*pgstore.Events, catalog.QueryEngine, string) {
	tb.Helper()
	db := fmt.Sprintf("mandate_q%d", pgTestDBs.Add(1))
	pgs.CreateDatabase(tb, db)
	ev, err := pgstore.OpenEvents(tb.Context(), pgs.URL(db), pgstore.EventOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ev.Close() })
	e, err := pgquery.Open(tb.Context(), pgs.URL(db), pgquery.Options{Keys: keystore.Dir(tb.TempDir())})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = e.Close() })
	return ev, e, db
}

// seedAudit appends n audit events, one a minute back from now: user
// u<i%3>, action A<i%4>, request req-<i>.
func (f *sysFrontend) seedAudit(tb testing.TB, n int) time.Time {
	tb.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	var evs []catalog.AuditEvent
	for i := range n {
		evs = append(evs, catalog.AuditEvent{EventID: fmt.Sprintf("e%d", i), Time: now.Add(-time.Duration(i) * time.Minute),
			Service: "mcp", Action: fmt.Sprintf("A%d", i%4), UserIdentity: fmt.Sprintf("u%d", i%3), RunBy: "alice",
			RunAs: "agent", RequestID: fmt.Sprintf("req-%d", i), RequestParams: fmt.Sprintf(`{"tool":"t%d"}`, i%2),
			Decision: "allow", LatencyMs: float64(i)})
	}
	if err := f.Events.AppendAudit(tb.Context(), evs...); err != nil {
		tb.Fatal(err)
	}
	return now
}

// TestSystemTablesOnPostgres runs the system-table tests with the queries
// on PostgreSQL (catalog/pgquery), as mandate serve --store postgres://
// does: one server, a database per test.
func TestSystemTablesOnPostgres(t *testing.T) {
	pgs := pgtest.Start(t, pgtest.Options{})
	onPG := func(o *sysOptions) { o.pg = pgs }
	for name, test := range map[string]func(*testing.T, *sysFrontend){
		"privileges": testSystemTablesPrivileges, "queries": testSystemTablesQueries, "types": testSystemTablesTypes,
		"parameters": testSystemTablesParameters, "forbidden": testSystemTablesForbidden, "cancel": testSystemTablesCancel,
		"psql": testSystemTablesPsql,
	} {
		t.Run(name, func(t *testing.T) { test(t, startSysFrontend(t, onPG)) })
	}
}

func queryRows(tb testing.TB, conn *pgx.Conn, sql string, args ...any) [][]any {
	tb.Helper()
	rows, err := conn.Query(tb.Context(), sql, args...)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	return out
}

// Privileges: metastore admins read the audit; others need SELECT on the
// table, its schema or catalog (USE on the containers is granted to
// "account users" at bootstrap); without it 42501.
func TestSystemTablesPrivileges(t *testing.T) { testSystemTablesPrivileges(t, startSysFrontend(t)) }

func testSystemTablesPrivileges(t *testing.T, f *sysFrontend) {
	f.seedAudit(t, 5)
	admin := f.admin(t)
	mustExec(t, admin,
		`CREATE USER alice WITH PASSWORD 'alice-pw'`,
		`CREATE USER bob WITH PASSWORD 'bob-pw'`,
		`CREATE GROUP "security-team"`,
		`ALTER GROUP "security-team" ADD USER bob`,
		`CREATE CATALOG sales`)
	if rows := queryRows(t, admin, `SELECT count(*) FROM system.access.audit`); len(rows) != 1 {
		t.Fatalf("admin: %v", rows)
	}
	alice := f.mustConnect(t, "alice", "alice-pw", "")
	bob := f.mustConnect(t, "bob", "bob-pw", "")
	for _, c := range []*pgx.Conn{alice, bob} {
		_, err := c.Exec(t.Context(), `SELECT count(*) FROM system.access.audit`)
		pe := wantSQLState(t, err, "42501")
		if !strings.Contains(pe.Message, "permission denied for table system.access.audit") || pe.Hint == "" {
			t.Errorf("message %q hint %q", pe.Message, pe.Hint)
		}
	}
	// Joins with another table do not get around it.
	_, err := alice.Exec(t.Context(), `SELECT * FROM system.information_schema.catalogs c, (SELECT count(*) FROM access.audit) x`)
	wantSQLState(t, err, "42501")

	// GRANT SELECT ON SCHEMA lets alice read every table of the schema.
	mustExec(t, admin, `GRANT SELECT ON SCHEMA system.access TO alice`)
	if rows := queryRows(t, alice, `SELECT count(*) FROM access.audit WHERE service_name = 'mcp'`); rows[0][0] != int64(5) {
		t.Errorf("alice: %v", rows)
	}
	// GRANT SELECT ON TABLE to a group lets its members read.
	mustExec(t, admin, `GRANT SELECT ON TABLE system.access.audit TO "security-team"`)
	if rows := queryRows(t, bob, `SELECT count(*) FROM system.access.audit WHERE service_name = 'mcp'`); rows[0][0] != int64(5) {
		t.Errorf("bob: %v", rows)
	}
	// A prepared statement checks again at each execution.
	_, err = bob.Prepare(t.Context(), "audit", `SELECT count(*) FROM system.access.audit`)
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, admin, `REVOKE SELECT ON TABLE system.access.audit FROM "security-team"`)
	_, err = bob.Exec(t.Context(), "audit")
	wantSQLState(t, err, "42501")

	// information_schema is readable by everyone, filtered to what the
	// caller may see.
	rows := queryRows(t, alice, `SELECT catalog_name FROM information_schema.catalogs ORDER BY 1`)
	if len(rows) != 1 || rows[0][0] != "system" {
		t.Errorf("alice sees catalogs %v", rows)
	}
	rows = queryRows(t, admin, `SELECT catalog_name FROM information_schema.catalogs ORDER BY 1`)
	if len(rows) != 2 {
		t.Errorf("admin sees catalogs %v", rows)
	}
	mustExec(t, admin, `GRANT USE_CATALOG ON CATALOG sales TO alice`)
	rows = queryRows(t, alice, `SELECT grantee, catalog_name, privilege_type FROM system.information_schema.catalog_privileges WHERE catalog_name = 'sales'`)
	if len(rows) != 1 || rows[0][0] != "alice" || rows[0][2] != "USE CATALOG" {
		t.Errorf("alice's catalog privileges %v", rows)
	}
	rows = queryRows(t, alice, `SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'access'`)
	if len(rows) != 1 || rows[0][1] != "audit" {
		t.Errorf("alice sees tables %v", rows)
	}
	rows = queryRows(t, bob, `SELECT table_name FROM information_schema.tables WHERE table_schema = 'access'`)
	if len(rows) != 0 {
		t.Errorf("bob sees tables %v", rows)
	}
	rows = queryRows(t, alice, `SELECT group_name, member_name FROM information_schema.group_members WHERE group_name = 'security-team'`)
	if len(rows) != 1 || rows[0][1] != "bob" {
		t.Errorf("members %v", rows)
	}
	// Revoking SELECT on information_schema closes it.
	mustExec(t, admin, `REVOKE SELECT ON SCHEMA system.information_schema FROM "account users"`)
	_, err = alice.Exec(t.Context(), `SELECT * FROM information_schema.catalogs`)
	wantSQLState(t, err, "42501")
	// SHOW GRANTS knows tables.
	rows = queryRows(t, admin, `SHOW GRANTS ON TABLE system.access.audit`)
	found := false
	for _, r := range rows {
		found = found || fmt.Sprint(r[0]) == "alice" && fmt.Sprint(r[1]) == "SELECT"
	}
	if !found {
		t.Errorf("SHOW GRANTS ON TABLE: %v", rows)
	}
}

// Aggregates, window functions, CTEs, subqueries, joins, date functions,
// ORDER BY and LIMIT run on the engine with PostgreSQL's column names.
func TestSystemTablesQueries(t *testing.T) { testSystemTablesQueries(t, startSysFrontend(t)) }

func testSystemTablesQueries(t *testing.T, f *sysFrontend) {
	seeded := f.seedAudit(t, 100)
	conn := f.admin(t)
	rows, err := conn.Query(t.Context(), `SELECT user_identity, action_name, count(*) FROM system.access.audit
		WHERE event_time > now() - interval '7 days' AND service_name = 'mcp' GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 20`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fd := range rows.FieldDescriptions() {
		names = append(names, fd.Name)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "user_identity,action_name,count" || len(got) != 12 || got[0][2] != int64(9) {
		t.Errorf("columns %v rows %v", names, got)
	}

	for _, c := range []struct {
		sql  string
		want string
	}{
		{`WITH per_user AS (SELECT user_identity AS u, count(*) AS n FROM system.access.audit WHERE service_name = 'mcp' GROUP BY 1)
		  SELECT u, n, rank() OVER (ORDER BY n DESC, u) FROM per_user ORDER BY u`, "[[u0 34 1] [u1 33 2] [u2 33 3]]"},
		{`SELECT request_id, latency_ms, sum(latency_ms) OVER (PARTITION BY user_identity ORDER BY latency_ms) AS running
		  FROM access.audit WHERE user_identity = 'u1' ORDER BY latency_ms LIMIT 3`, "[[req-1 1 1] [req-4 4 5] [req-7 7 12]]"},
		{`SELECT count(*) FROM access.audit a WHERE latency_ms > (SELECT avg(latency_ms) FROM access.audit WHERE service_name = 'mcp')`, "[[50]]"},
		{`SELECT a.request_id FROM access.audit a JOIN access.audit b ON a.request_id = b.request_id
		  WHERE a.latency_ms = 3`, "[[req-3]]"},
		{`SELECT request_params->>'tool' AS tool, count(*) FROM system.access.audit WHERE service_name = 'mcp' GROUP BY 1 ORDER BY 1`, "[[t0 50] [t1 50]]"},
		{`SELECT identity_metadata->>'run_as' FROM system.access.audit WHERE service_name = 'mcp' LIMIT 1`, "[[agent]]"},
		// The newest event's day is the seeding's, which midnight may have
		// left behind by the time of the query: current_date is not before it.
		{`SELECT count(DISTINCT date_trunc('hour', event_time)) > 0, max(event_date) = DATE '` + seeded.Format(time.DateOnly) + `',
		  current_date >= max(event_date) FROM system.access.audit`, "[[true true true]]"},
		{`SELECT action_name FROM access.audit WHERE action_name LIKE 'A%' AND action_name ~ '[12]' GROUP BY 1 ORDER BY 1`, "[[A1] [A2]]"},
		{`SELECT 'a' UNION ALL SELECT 'b' ORDER BY 1 DESC`, "[[b] [a]]"},
		{`SELECT x FROM generate_series(1, 3) AS x ORDER BY x DESC LIMIT 1`, "[[3]]"},
		{`SELECT EXTRACT(year FROM TIMESTAMPTZ '2024-05-06 00:00:00+00')::text`, "[[2024]]"},
		{`SELECT current_user, current_database(), current_setting('application_name') FROM system.access.audit LIMIT 1`, "[[admin system ]]"},
		{`SELECT c.catalog_name, count(s.schema_name) FROM information_schema.catalogs c LEFT JOIN information_schema.schemata s
		  USING (catalog_name) GROUP BY 1`, "[[system 4]]"},
		{`SELECT now() - interval '1 day' < now()`, "[[true]]"},
		{`SELECT to_char(TIMESTAMPTZ '2024-03-05 14:07:09+00', 'YYYY-MM-DD HH24:MI "h"')`, "[[2024-03-05 14:07 h]]"},
		{`SELECT 7/2, -7/2, (7.0/2)::text`, "[[3 -3 3.5000000000000000]]"},
		// A template (col_description) over a template (a computed
		// name cast to regclass) over the emulated pg_class (Metabase).
		{`SELECT col_description(format('%I.%I', c.table_schema, c.table_name)::regclass::oid, c.ordinal_position)
		  FROM information_schema.columns c WHERE c.table_schema = 'access' AND c.column_name = 'event_time'`, "[[when the event happened]]"},
	} {
		rows := queryRows(t, conn, c.sql)
		if fmt.Sprint(rows) != c.want {
			t.Errorf("%s\n got %v\nwant %s", c.sql, rows, c.want)
		}
	}
	// Errors keep the client's names.
	_, err = conn.Exec(t.Context(), `SELECT nope FROM system.access.audit`)
	pe := wantSQLState(t, err, "42703")
	if strings.Contains(pe.Message, catalog.AuditRelation) {
		t.Errorf("message names the engine's relation: %s", pe.Message)
	}
	_, err = conn.Exec(t.Context(), `SELECT * FROM access.nope`)
	wantSQLState(t, err, "42P01")
}

// Result types carry PostgreSQL's OIDs and round-trip in text and binary.
func TestSystemTablesTypes(t *testing.T) { testSystemTablesTypes(t, startSysFrontend(t)) }

func testSystemTablesTypes(t *testing.T, f *sysFrontend) {
	f.seedAudit(t, 1)
	conn := f.admin(t)
	const q = `SELECT true AS b, CAST(1 AS int2) AS i2, 2::int4 AS i4, 3::int8 AS i8, 1.5::float4 AS f4, 2.5::float8 AS f8,
		1.25::numeric(10,2) AS n, 'x'::text AS t, $1::bytea AS by, DATE '2020-01-02' AS d,
		TIMESTAMPTZ '2020-01-02 03:04:05.123456+00' AS ts, '6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid AS u,
		identity_metadata AS j, request_params::jsonb AS jb, event_time, NULL::text AS nul
		FROM system.access.audit WHERE service_name = 'mcp'`
	wantOIDs := []uint32{16, 21, 23, 20, 700, 701, 1700, 25, 17, 1082, 1184, 2950, 114, 3802, 1184, 25}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		rows, err := conn.Query(t.Context(), q, mode, []byte{1, 2, 0xff})
		if err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		for i, fd := range rows.FieldDescriptions() {
			if fd.DataTypeOID != wantOIDs[i] {
				t.Errorf("mode %v: column %s OID %d, want %d", mode, fd.Name, fd.DataTypeOID, wantOIDs[i])
			}
		}
		var (
			b             bool
			i2            int16
			i4            int32
			i8            int64
			f4            float32
			f8            float64
			n             pgtype.Numeric
			tx            string
			by            []byte
			d, ts, evtime time.Time
			u             [16]byte
			j             map[string]any
			jb            map[string]any
			nul           *string
		)
		if !rows.Next() {
			t.Fatalf("mode %v: no row: %v", mode, rows.Err())
		}
		if err := rows.Scan(&b, &i2, &i4, &i8, &f4, &f8, &n, &tx, &by, &d, &ts, &u, &j, &jb, &evtime, &nul); err != nil {
			t.Fatalf("mode %v: scan: %v", mode, err)
		}
		rows.Close()
		nv, _ := n.Value()
		if !b || i2 != 1 || i4 != 2 || i8 != 3 || f4 != 1.5 || f8 != 2.5 || nv != "1.25" || tx != "x" ||
			string(by) != "\x01\x02\xff" || !d.Equal(time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)) ||
			!ts.Equal(time.Date(2020, 1, 2, 3, 4, 5, 123456000, time.UTC)) || u[0] != 0x6b || j["run_as"] != "agent" ||
			jb["tool"] != "t0" || nul != nil || evtime.IsZero() {
			t.Errorf("mode %v: %v %v %v %v %v %v %v %q %x %v %v %x %v %v %v %v", mode, b, i2, i4, i8, f4, f8, nv, tx, by, d, ts, u, j, jb, evtime, nul)
		}
	}
	// Big numbers keep their digits.
	var n pgtype.Numeric
	if err := conn.QueryRow(t.Context(), `SELECT 12345678901234567890.123::numeric(38,3) FROM system.access.audit`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want, _ := new(big.Int).SetString("12345678901234567890123", 10); n.Int.Cmp(want) != 0 || n.Exp != -3 {
		t.Errorf("numeric = %v e%d", n.Int, n.Exp)
	}
}

// Bind parameters of the extended protocol, typed by the engine.
func TestSystemTablesParameters(t *testing.T) { testSystemTablesParameters(t, startSysFrontend(t)) }

func testSystemTablesParameters(t *testing.T, f *sysFrontend) {
	now := f.seedAudit(t, 50)
	conn := f.admin(t)
	var id string
	if err := conn.QueryRow(t.Context(), `SELECT event_id FROM system.access.audit WHERE request_id = $1`, "req-7").Scan(&id); err != nil || id != "e7" {
		t.Errorf("by request_id: %q %v", id, err)
	}
	var n int64
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM system.access.audit WHERE event_time > $1 AND latency_ms >= $2`,
		now.Add(-10*time.Minute-time.Second), 3).Scan(&n); err != nil || n != 8 {
		t.Errorf("by time: %d %v", n, err)
	}
	var ids []string
	rows, err := conn.Query(t.Context(), `SELECT event_id FROM system.access.audit WHERE service_name = 'mcp' ORDER BY latency_ms LIMIT $1 OFFSET $2`, 2, 1)
	if err == nil {
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	if err != nil || strings.Join(ids, ",") != "e1,e2" {
		t.Errorf("limit: %v %v", ids, err)
	}
	var s string
	if err := conn.QueryRow(t.Context(), `SELECT $1::text || '!' FROM system.access.audit LIMIT 1`, "hi").Scan(&s); err != nil || s != "hi!" {
		t.Errorf("text: %q %v", s, err)
	}
	var isNull *int64
	if err := conn.QueryRow(t.Context(), `SELECT max(latency_ms)::int8 FROM system.access.audit WHERE user_identity = $1`, nil).Scan(&isNull); err != nil || isNull != nil {
		t.Errorf("null: %v %v", isNull, err)
	}
}

// Everything but reading system tables fails with 42501 or 0A000.
func TestSystemTablesForbidden(t *testing.T) { testSystemTablesForbidden(t, startSysFrontend(t)) }

func testSystemTablesForbidden(t *testing.T, f *sysFrontend) {
	conn := f.admin(t)
	for _, c := range []struct{ sql, code string }{
		{`SELECT * FROM read_csv('/etc/passwd')`, "42501"},
		{`SELECT read_csv('/etc/passwd')`, "42501"},
		{`SELECT * FROM read_text('/etc/passwd')`, "42501"},
		{`SELECT * FROM system.access.audit, read_csv_auto('/etc/passwd')`, "42501"},
		{`ATTACH '/tmp/x.duckdb' AS x`, "0A000"},
		{`DETACH x`, "0A000"},
		{`COPY (SELECT 1) TO '/tmp/x.csv'`, "0A000"},
		{`INSTALL httpfs`, "0A000"},
		{`LOAD httpfs`, "0A000"},
		{`PRAGMA database_list`, "0A000"},
		{`SET threads = 1`, "42501"},
		{`SET enable_external_access = true`, "42501"},
		{`SET GLOBAL threads = 1`, "0A000"},
		{`RESET memory_limit`, "42501"},
		{`SELECT * FROM audit_events`, "42501"},
		{`SELECT * FROM system_access_audit`, "42501"},
		{`SELECT * FROM securables`, "42501"},
		{`SELECT * FROM main.principals`, "42501"},
		{`SELECT * FROM mandate_meta`, "42501"},
		{`SELECT * FROM duckdb_settings()`, "42501"},
		{`SELECT * FROM duckdb_tables`, "42501"},
		{`SELECT * FROM sqlite_master`, "42501"},
		{`SELECT current_setting('threads')`, "42704"},
		{`SELECT getenv('HOME')`, "42501"},
		{`SELECT * FROM query('SELECT 1')`, "42501"},
		{`SELECT * INTO x FROM system.access.audit`, "0A000"},
		{`SELECT * FROM system.access.audit FOR UPDATE`, "0A000"},
		{`WITH d AS (DELETE FROM system.access.audit RETURNING *) SELECT * FROM d`, "0A000"},
		{`DELETE FROM system.access.audit`, "0A000"},
		{`INSERT INTO system.access.audit (event_id) VALUES ('x')`, "0A000"},
		{`CREATE TABLE t (a int)`, "0A000"},
		{`CHECKPOINT`, "0A000"},
		{`EXPORT DATABASE '/tmp/x'`, "0A000"},
		{`SELECT * FROM 'data.csv'`, "42601"},
	} {
		_, err := conn.Exec(t.Context(), c.sql)
		if err == nil {
			t.Errorf("%s: no error", c.sql)
			continue
		}
		pe := asPgError(t, err)
		if pe.Code != c.code {
			t.Errorf("%s: %s %s, want %s", c.sql, pe.Code, pe.Message, c.code)
		}
		if pe.Code == "XX000" || pe.Message == "" {
			t.Errorf("%s: unclear error %s %q", c.sql, pe.Code, pe.Message)
		}
	}
	// The connection still works, and so does the engine.
	if rows := queryRows(t, conn, `SELECT count(*) FROM system.access.audit`); len(rows) != 1 {
		t.Fatal(rows)
	}
}

// statement_timeout and CancelRequest stop a running query.
func TestSystemTablesCancel(t *testing.T) { testSystemTablesCancel(t, startSysFrontend(t)) }

func testSystemTablesCancel(t *testing.T, f *sysFrontend) {
	f.seedAudit(t, 3000)
	conn := f.admin(t)
	const long = `SELECT count(*) FROM system.access.audit a, system.access.audit b, system.access.audit c WHERE a.latency_ms + b.latency_ms <> c.latency_ms`
	mustExec(t, conn, `SET statement_timeout = '300ms'`)
	start := time.Now()
	_, err := conn.Exec(t.Context(), long)
	wantSQLState(t, err, "57014")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("statement timeout took %v", d)
	}
	mustExec(t, conn, `SET statement_timeout = 0`)

	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), long)
		done <- err
	}()
	waitRunning(t, f, 1) // a cancel that arrives before the query is lost, as in PostgreSQL
	start = time.Now()
	if err := conn.PgConn().CancelRequest(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		wantSQLState(t, err, "57014")
	case <-time.After(10 * time.Second):
		t.Fatal("CancelRequest did not stop the query")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if rows := queryRows(t, conn, `SELECT count(*) FROM system.access.audit WHERE service_name = 'mcp'`); rows[0][0] != int64(3000) {
		t.Errorf("after cancel: %v", rows)
	}
}

// psql: \dt access.* lists audit, \d access.audit describes it.
func TestSystemTablesPsql(t *testing.T) { testSystemTablesPsql(t, startSysFrontend(t)) }

func testSystemTablesPsql(t *testing.T, f *sysFrontend) {
	f.seedAudit(t, 3)
	out, errOut, code := runPsql(t, f.frontend, "-c", `\dt access.*`, "-c", `\d access.audit`, "-c", `\dn`, "-c", `\l`,
		"-c", `\dt information_schema.*`, "-c", `SELECT action_name, count(*) FROM system.access.audit GROUP BY 1 ORDER BY 1`,
		"-c", `\dt ai_gateway.*`, "-c", `SELECT count(*) AS llm_calls FROM system.ai_gateway.usage`)
	if code != 0 {
		t.Fatalf("psql exit %d: %s\n%s", code, errOut, out)
	}
	for _, want := range []string{
		" access | audit | table | admin",
		`Table "access.audit"`,
		" event_time        | timestamp with time zone |",
		" identity_metadata | json                     |",
		" latency_ms        | double precision         |",
		" access     | admin",
		" ai_gateway | admin",
		" system | admin",
		" information_schema | catalogs ",
		" A0          |     1",
		" ai_gateway | payloads | table | admin",
		" ai_gateway | usage    | table | admin",
		" llm_calls ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("psql output lacks %q:\n%s", want, out)
		}
	}
	if errOut != "" {
		t.Errorf("stderr: %s", errOut)
	}
}

// Retention deletes old events, keeps new ones.
func TestSystemTablesRetention(t *testing.T) {
	f := startSysFrontend(t)
	f.seedAudit(t, 120) // two hours
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		f.Engine.RunAuditRetention(ctx, duckstore.RetentionOptions{Keep: time.Hour, Every: time.Hour, Batch: 7})
		close(done)
	}()
	conn := f.admin(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int64
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM system.access.audit WHERE service_name = 'mcp'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 60 || n == 61 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events left", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if err := errors.Join(); err != nil {
		t.Fatal(err)
	}
}
