package pgquery_test

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgquery"
	"github.com/mandatehq/mandate/catalog/pgtest"
)

// setup starts PostgreSQL with a store's tables (private), a view of them
// in the views' schema, and the engine.
func setup(t *testing.T) (*pgtest.Server, *pgx.Conn, *pgquery.Engine) {
	t.Helper()
	pgs := pgtest.Start(t, pgtest.Options{})
	pgs.CreateDatabase(t, "mandate")
	owner := pgs.Connect(t, "mandate")
	for _, s := range []string{
		`CREATE TABLE mandate_catalog_snapshots (revision bigint, state bytea)`,
		`INSERT INTO mandate_catalog_snapshots VALUES (1, 'sealed secret')`,
		`CREATE TABLE audit_events (event_time timestamptz, request_id text, latency_ms double precision)`,
		`INSERT INTO audit_events VALUES ('2024-03-10 12:00:00+00', 'req-1', 1.5), ('2024-03-11 12:00:00+00', 'req-2', NULL)`,
		`CREATE SCHEMA mandate_views`,
		`CREATE VIEW mandate_views.system_access_audit AS SELECT event_time, request_id, latency_ms FROM audit_events`,
	} {
		if _, err := owner.Exec(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	e, err := pgquery.Open(t.Context(), pgs.URL("mandate"), pgquery.Options{MaxConns: 2, Keys: keystore.Dir(t.TempDir())})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return pgs, owner, e
}

func queryAll(ctx context.Context, e *pgquery.Engine, q catalog.Query) ([][]any, error) {
	var out [][]any
	err := e.Query(ctx, q, func(v []any) error {
		out = append(out, v)
		return nil
	})
	return out, err
}

func sqlState(err error) string {
	var qe *catalog.QueryError
	if errors.As(err, &qe) {
		return qe.SQLState
	}
	return ""
}

// The engine reads the views, in PostgreSQL's types, with the session's
// time zone, JSON virtual tables as parameters, and PostgreSQL's errors.
func TestQuery(t *testing.T) {
	_, _, e := setup(t)
	ctx := t.Context()
	if e.Dialect() != catalog.DialectPostgres {
		t.Fatal("dialect")
	}
	q := catalog.Query{SQL: `SELECT request_id, latency_ms, event_time, event_time::text AS t, count(*) OVER () AS n,
		CAST(1.50 AS numeric) AS d, interval '1 day 2 hours' AS i, ARRAY[1,2] AS a, '{"b":1, "a":2}'::jsonb AS j
		FROM system_access_audit WHERE request_id = $1`, Args: []any{"req-1"}, TimeZone: "America/New_York"}
	cols, params, err := e.Describe(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(params) != 1 || params[0].OID != 25 || len(cols) != 9 || cols[1].Type.OID != 701 || cols[2].Type.Data != catalog.DataTimestamptz ||
		cols[4].Type.OID != 20 || cols[5].Type.Data != catalog.DataNumeric || cols[7].Type.Data != catalog.DataList || cols[8].Type.OID != 3802 {
		t.Fatalf("cols %+v params %+v", cols, params)
	}
	rows, err := queryAll(ctx, e, q)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)
	if len(rows) != 1 || rows[0][0] != "req-1" || rows[0][1] != 1.5 || !rows[0][2].(time.Time).Equal(want) ||
		rows[0][3] != "2024-03-10 08:00:00-04" || rows[0][4] != int64(1) ||
		rows[0][5].(catalog.Decimal).Unscaled.Cmp(big.NewInt(150)) != 0 ||
		rows[0][6] != (catalog.Interval{Days: 1, Micros: 2 * 3600e6}) || fmt.Sprint(rows[0][7]) != "[1 2]" || rows[0][8] != `{"a": 2, "b": 1}` {
		t.Fatalf("rows %#v", rows)
	}
	// A virtual table: rows as a JSON parameter.
	vt := catalog.Query{SQL: `SELECT name, n FROM (SELECT * FROM json_to_recordset(CAST($1 AS json)) AS t(name text, n bigint)) v ORDER BY n`,
		Args: []any{`[{"name":"b","n":2},{"name":"a","n":1}]`}}
	if rows, err = queryAll(ctx, e, vt); err != nil || len(rows) != 2 || rows[0][0] != "a" {
		t.Fatalf("virtual table: %v %v", rows, err)
	}
	for sql, code := range map[string]string{
		`SELECT 1/0`:                             "22012",
		`SELECT nope FROM system_access_audit`:   "42703",
		`SELECT 'x'::int`:                        "22P02",
		`SELECT * FROM missing_relation`:         "42P01",
		`SELECT 9223372036854775807::bigint + 1`: "22003",
	} {
		_, err := queryAll(ctx, e, catalog.Query{SQL: sql})
		if sqlState(err) != code {
			t.Errorf("%s: %v, want %s", sql, err, code)
		}
		var qe *catalog.QueryError
		if code == "42703" && (!errors.As(err, &qe) || qe.Name != "nope") {
			t.Errorf("%s: %#v does not name the column", sql, err)
		}
	}
}

// The query role reads the views and nothing else: not the store's
// tables, not files, no writes, no way around the READ ONLY transaction.
// The front end never sends such statements; the role is the second wall.
func TestRole(t *testing.T) {
	_, owner, e := setup(t)
	ctx := t.Context()
	if rows, err := queryAll(ctx, e, catalog.Query{SQL: `SELECT count(*) FROM mandate_views.system_access_audit`}); err != nil || rows[0][0] != int64(2) {
		t.Fatalf("the view: %v %v", rows, err)
	}
	for sql, code := range map[string]string{
		`SELECT * FROM public.mandate_catalog_snapshots`:                     "42501",
		`SELECT * FROM public.audit_events`:                                  "42501",
		`SELECT pg_read_file('/etc/passwd')`:                                 "42501",
		`SELECT pg_ls_dir('.')`:                                              "42501",
		`SELECT lo_import('/etc/passwd')`:                                    "42501",
		`SELECT dblink('dbname=mandate', 'SELECT 1')`:                        "42883",
		`SELECT current_user = '` + e.Role() + `' AS is_role`:                "",
		`CREATE TEMP TABLE x (a int)`:                                        "25006",
		`WITH d AS (DELETE FROM mandate_views.system_access_audit) SELECT 1`: "42501",
		`SELECT 1 FROM pg_catalog.pg_authid`:                                 "42501",
	} {
		rows, err := queryAll(ctx, e, catalog.Query{SQL: sql})
		if got := sqlState(err); got != code {
			t.Errorf("%s: %v %v, want %q", sql, rows, err, code)
		}
		if code == "" && (len(rows) != 1 || rows[0][0] != true) {
			t.Errorf("%s: %v", sql, rows)
		}
	}
	var n int
	if err := owner.QueryRow(ctx, `SELECT count(*) FROM audit_events`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("the store's rows: %d %v", n, err)
	}
	// The role's attributes: a login role of its own, member of nothing,
	// read only by default.
	var login, super, createRole, createDB, inherit bool
	var member int
	var settings []string
	if err := owner.QueryRow(ctx, `SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolinherit,
		(SELECT count(*) FROM pg_auth_members WHERE member = r.oid), rolconfig FROM pg_roles r WHERE rolname = $1`, e.Role()).
		Scan(&login, &super, &createRole, &createDB, &inherit, &member, &settings); err != nil ||
		!login || super || createRole || createDB || inherit || member != 0 {
		t.Fatalf("role %s: login %v super %v createrole %v createdb %v inherit %v member of %d: %v", e.Role(), login, super, createRole, createDB, inherit, member, err)
	}
	for _, want := range []string{"default_transaction_read_only=on", "jit=off", "search_path=mandate_views"} {
		if !slices.Contains(settings, want) {
			t.Errorf("role settings %q lack %s", settings, want)
		}
	}
}

// The query pool logs in as the query role: a statement that leaves a
// role (RESET ROLE, SET ROLE, set_config('role', ...)) is still that role,
// and reads nothing but the views.
func TestLoginRole(t *testing.T) {
	pgs, _, e := setup(t)
	ctx := t.Context()
	// In one statement, through the engine: set_config first, then a
	// query run by query_to_xml with the privileges of the role now set.
	for _, role := range []string{"none", pgs.User} {
		for _, table := range []string{"public.audit_events", "public.mandate_catalog_snapshots"} {
			sql := fmt.Sprintf(`SELECT set_config('role', '%s', true) AS r, query_to_xml('SELECT * FROM %s', true, false, '') AS x`, role, table)
			if rows, err := queryAll(ctx, e, catalog.Query{SQL: sql}); sqlState(err) != "42501" {
				t.Errorf("%s: %v %v, want 42501", sql, rows, err)
			}
		}
	}
	// On the pool's connection itself.
	conn, err := e.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for _, s := range []struct{ sql, code string }{
		{`RESET ROLE`, ""},
		{`SELECT * FROM public.audit_events`, "42501"},
		{`SELECT * FROM public.mandate_catalog_snapshots`, "42501"},
		{`SET ROLE ` + pgs.User, "42501"},
		{`SET SESSION AUTHORIZATION ` + pgs.User, "42501"},
		{`SELECT set_config('role', '` + pgs.User + `', false)`, "42501"},
		{`SELECT * FROM public.audit_events`, "42501"},
		{`CREATE TABLE public.x (a int)`, "25006"}, // read only by default
		{`SELECT count(*) FROM system_access_audit`, ""},
	} {
		_, err := conn.Exec(ctx, s.sql)
		var pe *pgconn.PgError
		got := ""
		if errors.As(err, &pe) {
			got = pe.Code
		} else if err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
		if got != s.code {
			t.Errorf("%s: %v, want %q", s.sql, err, s.code)
		}
	}
	var who string
	if err := conn.QueryRow(ctx, `SELECT session_user`).Scan(&who); err != nil || who != e.Role() {
		t.Fatalf("session_user %q, want %q: %v", who, e.Role(), err)
	}
}

// openReplica opens an engine on pgs's database mandate with keys, as a
// replica does, closed when t ends.
func openReplica(t *testing.T, pgs *pgtest.Server, keys keystore.Store) *pgquery.Engine {
	t.Helper()
	e, err := pgquery.Open(t.Context(), pgs.URL("mandate"), pgquery.Options{MaxConns: 2, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// Replicas share the password through the key store; a rotation by one
// reaches the other's new connections; a role whose password drifted is
// set again from the key store.
func TestRolePassword(t *testing.T) {
	pgs := pgtest.Start(t, pgtest.Options{})
	pgs.CreateDatabase(t, "mandate")
	keys := keystore.Dir(t.TempDir())
	open := func(keys keystore.Store) *pgquery.Engine { return openReplica(t, pgs, keys) }
	one := func(e *pgquery.Engine) {
		t.Helper()
		if rows, err := queryAll(t.Context(), e, catalog.Query{SQL: `SELECT session_user = current_user`}); err != nil || rows[0][0] != true {
			t.Fatalf("%v %v", rows, err)
		}
	}
	a, b := open(keys), open(keys)
	one(a)
	one(b)
	if err := a.RotatePassword(t.Context()); err != nil {
		t.Fatal(err)
	}
	b.Pool().Reset() // new connections
	one(b)
	// Another key store (a password the database does not have): set
	// from it at open.
	c := open(keystore.Dir(t.TempDir()))
	one(c)
	owner := pgs.Connect(t, "mandate")
	if _, err := owner.Exec(t.Context(), `ALTER ROLE `+c.Role()+` PASSWORD 'drifted'`); err != nil {
		t.Fatal(err)
	}
	open(keys) // its password set again from the key store
	a.Pool().Reset()
	one(a)
}

// pausedCAS holds the first CompareAndSwap of a rotation until release is
// closed (after saying so on reached): the database has the new password,
// the key store not yet.
type pausedCAS struct {
	keystore.Store
	reached, release chan struct{}
	once             sync.Once
}

func (p *pausedCAS) CompareAndSwap(ctx context.Context, name string, ver int64, data []byte) (keystore.Blob, error) {
	p.once.Do(func() {
		close(p.reached)
		<-p.release
	})
	return p.Store.CompareAndSwap(ctx, name, ver, data)
}

// lockCalls says on called when Lock is called.
type lockCalls struct {
	keystore.Store
	called chan struct{}
}

func (l *lockCalls) Lock(ctx context.Context, name string) (func(), error) {
	select {
	case l.called <- struct{}{}:
	default:
	}
	return l.Store.Lock(ctx, name)
}

// A rotation while another replica serves: a new connection made while
// the database already has the new password and the key store not yet
// waits for the rotation to end and logs in with the new password; the
// old password no longer logs in.
func TestRotationWhileServing(t *testing.T) {
	pgs := pgtest.Start(t, pgtest.Options{})
	pgs.CreateDatabase(t, "mandate")
	keys := keystore.Dir(t.TempDir())
	open := func(keys keystore.Store) *pgquery.Engine { return openReplica(t, pgs, keys) }
	rotating := &pausedCAS{Store: keys, reached: make(chan struct{}), release: make(chan struct{})}
	serving := &lockCalls{Store: keys, called: make(chan struct{}, 1)}
	a, b := open(rotating), open(serving)
	query := func() error {
		rows, err := queryAll(t.Context(), b, catalog.Query{SQL: `SELECT session_user = current_user`})
		if err == nil && (len(rows) != 1 || rows[0][0] != true) {
			err = fmt.Errorf("rows %v", rows)
		}
		return err
	}
	if err := query(); err != nil {
		t.Fatal(err)
	}
	old, err := keys.Get(t.Context(), pgquery.PasswordName(b.Role()))
	if err != nil {
		t.Fatal(err)
	}
	rotated := make(chan error, 1)
	go func() { rotated <- a.RotatePassword(context.Background()) }()
	<-rotating.reached
	b.Pool().Reset() // the next query on a new connection
	done := make(chan error, 1)
	go func() { done <- query() }()
	select {
	case <-serving.called: // it waits for the rotation's lock
	case err := <-done:
		close(rotating.release)
		<-rotated
		t.Fatalf("a query on a new connection during the rotation: %v; want it to wait for the new password", err)
	}
	close(rotating.release)
	if err := <-rotated; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("the query after the rotation: %v", err)
	}
	login := func(password string) error {
		c, err := pgx.Connect(t.Context(), pgs.URLAs("mandate", b.Role(), password))
		if err == nil {
			_ = c.Close(context.Background())
		}
		return err
	}
	var pe *pgconn.PgError
	if err := login(string(old.Data)); !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Errorf("the old password: %v, want 28P01", err)
	}
	now, err := keys.Get(t.Context(), pgquery.PasswordName(b.Role()))
	if err != nil || string(now.Data) == string(old.Data) {
		t.Fatalf("the key store's password after the rotation: changed %v, %v", string(now.Data) != string(old.Data), err)
	}
	if err := login(string(now.Data)); err != nil {
		t.Errorf("the new password: %v", err)
	}
}

// A pooled connection the server closed while it was idle (a restart, a
// failover, pg_terminate_backend) is replaced: the next query works.
func TestServerClosedConnection(t *testing.T) {
	_, owner, e := setup(t)
	q := catalog.Query{SQL: `SELECT count(*) FROM system_access_audit`}
	if _, err := queryAll(t.Context(), e, q); err != nil {
		t.Fatal(err)
	}
	if _, err := owner.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, e.Role()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second) // a failure bound
	for {
		var n int
		if err := owner.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, e.Role()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the query role's backends did not end")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if rows, err := queryAll(t.Context(), e, q); err != nil || len(rows) != 1 || rows[0][0] != int64(2) {
		t.Fatalf("after the server closed the connection: %v, %v", rows, err)
	}
}

// A store's user without CREATEROLE: Open says what an administrator does;
// with the administrator's role (Options.Login) the engine grants it the
// views and runs as it; a role that can read more is refused.
func TestAdministratorRole(t *testing.T) {
	pgs := pgtest.Start(t, pgtest.Options{})
	su := pgs.Connect(t, "postgres")
	for _, s := range []string{
		`CREATE ROLE store LOGIN PASSWORD 'storepw'`,
		`CREATE DATABASE mandate OWNER store TEMPLATE template0`,
	} {
		if _, err := su.Exec(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	storeURL := pgs.URLAs("mandate", "store", "storepw")
	store, err := pgx.Connect(t.Context(), storeURL)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close(context.Background())
	for _, s := range []string{
		`CREATE TABLE audit_events (request_id text)`,
		`CREATE SCHEMA mandate_views`,
		`CREATE VIEW mandate_views.system_access_audit AS SELECT request_id FROM audit_events`,
	} {
		if _, err := store.Exec(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	_, err = pgquery.Open(t.Context(), storeURL, pgquery.Options{Keys: keystore.Dir(t.TempDir())})
	var ce *catalog.Error
	if !errors.As(err, &ce) || ce.Code != catalog.CodePermissionDenied || !strings.Contains(err.Error(), "CREATE ROLE") ||
		!strings.Contains(err.Error(), "--store-query-url") {
		t.Fatalf("without CREATEROLE: %v", err)
	}
	// The administrator creates the role as told; Open without its
	// credentials then says to pass them, not to create it again.
	named := regexp.MustCompile(`LOGIN role ("[^"]+")`).FindStringSubmatch(err.Error())
	if named == nil {
		t.Fatalf("without CREATEROLE: the role is not named: %v", err)
	}
	if _, err := su.Exec(t.Context(), `CREATE ROLE `+named[1]+` LOGIN NOINHERIT PASSWORD 'adminpw'`); err != nil {
		t.Fatal(err)
	}
	_, err = pgquery.Open(t.Context(), storeURL, pgquery.Options{Keys: keystore.Dir(t.TempDir())})
	if !errors.As(err, &ce) || ce.Code != catalog.CodePermissionDenied || !strings.Contains(err.Error(), "exists") ||
		strings.Contains(err.Error(), "CREATE ROLE") || !strings.Contains(err.Error(), "--store-query-url") {
		t.Fatalf("without CREATEROLE, the role created by an administrator: %v", err)
	}
	if _, err := su.Exec(t.Context(), `CREATE ROLE reader LOGIN NOINHERIT PASSWORD 'readerpw'`); err != nil {
		t.Fatal(err)
	}
	login := pgs.URLAs("mandate", "reader", "readerpw")
	e, err := pgquery.Open(t.Context(), storeURL, pgquery.Options{Login: login})
	if err != nil {
		t.Fatal(err)
	}
	if rows, err := queryAll(t.Context(), e, catalog.Query{SQL: `SELECT count(*), current_user FROM system_access_audit`}); err != nil || rows[0][1] != "reader" {
		t.Fatalf("%v %v", rows, err)
	}
	_ = e.Close()
	// An extension's relations readable by PUBLIC (pg_stat_statements, as
	// installed) do not stop it.
	if _, err := pgs.Connect(t, "mandate").Exec(t.Context(), `CREATE EXTENSION pg_stat_statements`); err != nil {
		t.Fatal(err)
	}
	e, err = pgquery.Open(t.Context(), storeURL, pgquery.Options{Login: login})
	if err != nil {
		t.Fatalf("with pg_stat_statements installed: %v", err)
	}
	_ = e.Close()
	// A role that can read a store's table is refused.
	if _, err := store.Exec(t.Context(), `GRANT SELECT ON audit_events TO PUBLIC`); err != nil {
		t.Fatal(err)
	}
	if _, err := pgquery.Open(t.Context(), storeURL, pgquery.Options{Login: login}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "can read audit_events") {
		t.Fatalf("a role that reads audit_events: %v", err)
	}
}

// A done ctx stops the query on the server (a CancelRequest), and the
// statement timeout comes from ctx's deadline.
func TestCancel(t *testing.T) {
	_, owner, e := setup(t)
	active := func() int {
		var n int
		if err := owner.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mandate-query'
			AND state = 'active' AND query LIKE '%pg_sleep%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := queryAll(ctx, e, catalog.Query{SQL: `SELECT pg_sleep(60)`})
		done <- err
	}()
	waitFor(t, "the query to run", func() bool { return active() == 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled query: %v", err)
	}
	waitFor(t, "the server to stop the query", func() bool { return active() == 0 })
	// The connection is reusable; the pool holds at most MaxConns.
	if _, err := queryAll(t.Context(), e, catalog.Query{SQL: `SELECT 1`}); err != nil {
		t.Fatal(err)
	}
	// statement_timeout from the deadline: the server stops the query
	// even if nobody cancels it.
	dctx, dcancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer dcancel()
	// No JIT: its compilation does not look at a cancel.
	var timeout, jit string
	err := e.Query(dctx, catalog.Query{SQL: `SELECT current_setting('statement_timeout'), current_setting('jit')`}, func(v []any) error {
		timeout, _ = v[0].(string)
		jit, _ = v[1].(string)
		return nil
	})
	if err != nil || timeout == "0" || timeout == "" || jit != "off" {
		t.Fatalf("statement_timeout %q jit %q: %v", timeout, jit, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
