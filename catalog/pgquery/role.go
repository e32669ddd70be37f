package pgquery

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgscram"
)

// roleSettings are the query role's defaults (ALTER ROLE ... SET): a
// session of the role is read only, bounded and without JIT even before
// the engine sets anything (and if something resets what it sets).
var roleSettings = [][2]string{
	{"default_transaction_read_only", "on"},
	{"statement_timeout", "300s"},
	{"idle_in_transaction_session_timeout", "60s"},
	{"lock_timeout", "10s"},
	{"jit", "off"},
	{"search_path", ""}, // the views' schema (set per engine)
}

// PasswordName is the key store's name of the query role's password
// (sealed by the caller's key store, like every blob there).
func PasswordName(role string) string { return "pgquery-password-" + role }

// adminHelp tells an administrator how to create the query role when the
// store's user may not.
func adminHelp(role, schema string) string {
	r, s := pgx.Identifier{role}.Sanitize(), pgx.Identifier{schema}.Sanitize()
	var b strings.Builder
	fmt.Fprintf(&b, "an administrator creates the query role once: CREATE ROLE %s LOGIN NOINHERIT PASSWORD '...'", r)
	for _, kv := range roleSettings {
		v := kv[1]
		if kv[0] == "search_path" {
			v = s
		} else {
			v = "'" + v + "'"
		}
		fmt.Fprintf(&b, "; ALTER ROLE %s SET %s = %s", r, kv[0], v)
	}
	fmt.Fprintf(&b, "; GRANT CONNECT ON DATABASE <the database> TO %s — and gives its credentials to every replica (serve's --store-query-url postgres://%s:PASSWORD@host/db); Mandate grants it SELECT on %s", r, role, s)
	return b.String()
}

// setup creates or checks the query role on the store's connection admin,
// in one transaction under an advisory lock (replicas starting together
// do it once; the others find it done). See the package doc.
func (e *Engine) setup(ctx context.Context, admin *pgx.Conn, password string) error {
	fail := func(err error) error { return unavailable(ctx, "set up the query role", err) }
	tx, err := admin.Begin(ctx)
	if err != nil {
		return fail(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(setupLock)); err != nil {
		return fail(err)
	}
	role := pgx.Identifier{e.role}.Sanitize()
	var canCreateRoles bool
	if err := tx.QueryRow(ctx, "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").Scan(&canCreateRoles); err != nil {
		return fail(err)
	}
	var login, super, createRole, createDB, replication, bypassRLS, inherit bool
	err = tx.QueryRow(ctx, `SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolinherit
		FROM pg_roles WHERE rolname = $1`, e.role).Scan(&login, &super, &createRole, &createDB, &replication, &bypassRLS, &inherit)
	exists := err == nil
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fail(err)
	}
	var stmts []string
	withPassword := "" // CREATE ROLE or ALTER ROLE, with the password
	switch {
	case e.adminLogin && !exists:
		return catalog.Errorf(catalog.CodeInvalidArgument, "query engine: the query role %s does not exist", role)
	case e.adminLogin:
		// An administrator's role: checked below, never altered.
	case !canCreateRoles && exists && login && !createRole && !createDB && !inherit:
		// Most likely the one an administrator created as adminHelp says,
		// which this user cannot alter: it is theirs, given as Login.
		return catalog.Errorf(catalog.CodePermissionDenied,
			"query engine: the query role %s exists but the PostgreSQL user lacks CREATEROLE to manage it: if an administrator created it, "+
				"give every replica its credentials with --store-query-url postgres://%s:PASSWORD@host/db "+
				"(mandate rotate-query-password takes the same flag: that role's password is the administrator's to rotate)",
			role, e.role)
	case !canCreateRoles && (!exists || !login || createRole || createDB || inherit):
		return catalog.Errorf(catalog.CodePermissionDenied,
			"query engine: the PostgreSQL user lacks CREATEROLE, so it cannot create the LOGIN role %s that system-table queries run as: %s",
			role, adminHelp(e.role, e.schema))
	case !exists:
		withPassword = "CREATE ROLE "
	case !login || createRole || createDB || inherit:
		// A role of an older version (NOLOGIN, used with SET ROLE), or one
		// altered since: made a login role again.
		withPassword = "ALTER ROLE "
	}
	if withPassword != "" {
		v, err := pgscram.Verifier(password)
		if err != nil {
			return fail(err)
		}
		stmts = append(stmts, withPassword+role+" LOGIN NOINHERIT NOCREATEDB NOCREATEROLE PASSWORD "+quoteLiteral(v))
	}
	if super || replication || bypassRLS {
		return catalog.Errorf(catalog.CodePermissionDenied,
			"query engine: the query role %s is a superuser or has REPLICATION or BYPASSRLS: it must read only %s (ALTER ROLE %s NOSUPERUSER NOREPLICATION NOBYPASSRLS, as a superuser)",
			role, e.schema, role)
	}
	if !e.adminLogin {
		for _, kv := range roleSettings {
			v := quoteLiteral(kv[1])
			if kv[0] == "search_path" {
				v = pgx.Identifier{e.schema}.Sanitize()
			}
			stmts = append(stmts, "ALTER ROLE "+role+" SET "+kv[0]+" = "+v)
		}
	}
	var hasConnect bool
	if exists {
		if err := tx.QueryRow(ctx, "SELECT has_database_privilege($1, current_database(), 'CONNECT')", e.role).Scan(&hasConnect); err != nil {
			return fail(err)
		}
	}
	if !hasConnect {
		var db string
		if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
			return fail(err)
		}
		stmts = append(stmts, "GRANT CONNECT ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO "+role)
	}
	var schemaExists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", e.schema).Scan(&schemaExists); err != nil {
		return fail(err)
	}
	if schemaExists {
		s := pgx.Identifier{e.schema}.Sanitize()
		stmts = append(stmts, "GRANT USAGE ON SCHEMA "+s+" TO "+role,
			"GRANT SELECT ON ALL TABLES IN SCHEMA "+s+" TO "+role,
			"ALTER DEFAULT PRIVILEGES IN SCHEMA "+s+" GRANT SELECT ON TABLES TO "+role)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42501" {
				what := s
				if strings.Contains(s, " PASSWORD ") {
					what = s[:strings.Index(s, " PASSWORD ")] + " PASSWORD ..."
				}
				return catalog.Errorf(catalog.CodePermissionDenied, "query engine: %s: %s (%s)", what, pe.Message, adminHelp(e.role, e.schema))
			}
			return fail(err)
		}
	}
	// The role reads the views and nothing else: no membership (of the
	// store's user or pg_read_all_data), no table outside the views'
	// schema (a grant to PUBLIC included). Relations of an extension
	// (pg_stat_statements' views, readable by PUBLIC as installed, in
	// many production databases) are the extension's to guard; a query
	// cannot name them anyway (the front end allows only the views).
	var memberOf []string
	rows, err := tx.Query(ctx, `SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
		JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = $1 ORDER BY 1`, e.role)
	if err != nil {
		return fail(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return fail(err)
		}
		memberOf = append(memberOf, n)
	}
	if err := rows.Err(); err != nil {
		return fail(err)
	}
	if len(memberOf) > 0 {
		return catalog.Errorf(catalog.CodePermissionDenied,
			"query engine: the query role %s is a member of %s: it must read only %s (REVOKE %s FROM %s)",
			role, strings.Join(memberOf, ", "), e.schema, strings.Join(memberOf, ", "), role)
	}
	var readable string
	err = tx.QueryRow(ctx, `SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema', $2)
		AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
		AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
		AND has_table_privilege($1, c.oid, 'SELECT') LIMIT 1`, e.role, e.schema).Scan(&readable)
	if err == nil {
		return catalog.Errorf(catalog.CodePermissionDenied,
			"query engine: the query role %s can read %s: it must read only %s (REVOKE SELECT ON %s FROM %s, or from PUBLIC)",
			role, readable, e.schema, readable, role)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fail(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fail(err)
	}
	return nil
}

// resetPassword sets the role's password to the key store's, under the
// key store's lock of its name (a replica rotating it waits, and the one
// that comes second sets the same password).
func (e *Engine) resetPassword(ctx context.Context, admin *pgx.Conn) error {
	unlock, err := e.keys.Lock(ctx, PasswordName(e.role))
	if err != nil {
		return unavailable(ctx, "lock the query role's password", err)
	}
	defer unlock()
	b, err := e.keys.Get(ctx, PasswordName(e.role))
	if err != nil {
		return passwordError(ctx, err)
	}
	return e.alterPassword(ctx, admin, string(b.Data))
}

// RotatePassword gives the query role a new password: generated, stored
// in the key store (compare-and-swap) and set with ALTER ROLE, under the
// key store's lock of its name. Connections already open stay; new ones
// of every replica read the new password from the key store. Not
// available with an administrator's role (Options.Login).
func (e *Engine) RotatePassword(ctx context.Context) error {
	if e.adminLogin {
		return catalog.Errorf(catalog.CodeInvalidArgument, "query engine: the query role's password is the administrator's (rotate it there)")
	}
	admin, err := pgx.ConnectConfig(ctx, e.adminCfg)
	if err != nil {
		return unavailable(ctx, "connect", err)
	}
	defer func() { _ = admin.Close(context.Background()) }()
	name := PasswordName(e.role)
	unlock, err := e.keys.Lock(ctx, name)
	if err != nil {
		return unavailable(ctx, "lock the query role's password", err)
	}
	defer unlock()
	old, err := e.keys.Get(ctx, name)
	if err != nil {
		return passwordError(ctx, err)
	}
	pw, err := newPassword()
	if err != nil {
		return err
	}
	// The database first: until the key store has the new password, new
	// connections fail and are retried; the other order would leave the
	// key store with a password the database refuses if ALTER failed.
	if err := e.alterPassword(ctx, admin, string(pw)); err != nil {
		return err
	}
	if _, err := e.keys.CompareAndSwap(ctx, name, old.Version, pw); err != nil {
		// Put the old one back: the key store is the truth.
		_ = e.alterPassword(context.Background(), admin, string(old.Data))
		return unavailable(ctx, "store the query role's password", err)
	}
	e.password.Store(string(pw))
	return nil
}

func (e *Engine) alterPassword(ctx context.Context, admin *pgx.Conn, password string) error {
	v, err := pgscram.Verifier(password)
	if err != nil {
		return err
	}
	_, err = admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{e.role}.Sanitize()+" PASSWORD "+quoteLiteral(v))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return catalog.Errorf(catalog.CodePermissionDenied, "query engine: ALTER ROLE %s PASSWORD ...: %s (%s)",
			pgx.Identifier{e.role}.Sanitize(), pe.Message, adminHelp(e.role, e.schema))
	}
	if err != nil {
		return unavailable(ctx, "set the query role's password", err)
	}
	return nil
}

// newPassword is 32 random bytes in hex (ASCII: nothing for SASLprep to
// change).
func newPassword() ([]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return []byte(hex.EncodeToString(b[:])), nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
