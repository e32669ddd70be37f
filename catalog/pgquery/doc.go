// Package pgquery is the catalog.QueryEngine on PostgreSQL: the SELECTs of
// Mandate's system tables (validated, checked and written by
// sqlfront/systables in catalog.DialectPostgres) run on the PostgreSQL
// database that replicas share, so every replica answers from the same
// audit events.
//
// # Rules
//
// Each query runs on a connection of the engine's own pool (Options.MaxConns,
// a cap; admission stays in the SQL front end), which logs in as the query
// role, in one transaction that is always rolled back:
//
//	BEGIN READ ONLY;
//	set_config('statement_timeout', <what is left of ctx's deadline>, true)
//	set_config('TimeZone', <the session's TimeZone>, true)
//	set_config('search_path', '<views schema>', true)
//
// # The query role
//
// The boundary is the connection itself: the pool's session user is a
// LOGIN role, mandate_query_<hash of the database name>, that holds
// CONNECT on the database, USAGE on the views' schema and SELECT on its
// views only (now and, by default privileges, views created later by the
// store's user); NOINHERIT, no CREATEDB or CREATEROLE, member of no role
// (not of the store's user, not of pg_read_all_data), with
// default_transaction_read_only = on, statement_timeout, lock and
// idle-in-transaction timeouts, jit = off and search_path set on the role.
// RESET ROLE, SET ROLE and set_config('role', ...) are checked against the
// session user, so a statement that got past the front end's allow-lists
// with one of them stays that role: it cannot read the store's tables
// (catalog records, snapshots with sealed secrets, audit tables) nor call
// what PostgreSQL reserves to superusers and pg_read_server_files
// (pg_read_file, lo_import, ...); dblink and other extensions are not
// installed by Mandate.
//
// Open sets the role up with a connection of the store's user (it needs
// CREATEROLE), idempotent, in one transaction under an advisory lock, so
// replicas starting together do it once: CREATE ROLE (or ALTER ROLE of a
// NOLOGIN role an older version made), ALTER ROLE ... SET, the grants; then
// it refuses a role that is a superuser, has REPLICATION or BYPASSRLS, is
// a member of any role or can SELECT any relation outside the views'
// schema, pg_catalog and information_schema (grants to PUBLIC included).
// The password is 32 random bytes generated once and kept in the key
// store (Options.Keys, sealed by the caller; keystore.GetOrCreate, so the
// first replica's wins), read again by every new connection of the pool;
// statements carry a SCRAM-SHA-256 verifier, never the password, so the
// server's log holds none. Open connects as the role once: a password the
// database refuses is set again from the key store under the key store's
// lock of its name; RotatePassword (`mandate rotate-query-password`)
// replaces it under the same lock: ALTER ROLE first, then the key store.
// A new connection refused for its password in between waits for that
// lock and connects again with the password read anew, so a rotation
// needs no restart of any replica and fails no query; connections
// already open stay until they are closed. A pooled connection the server
// closed while idle (a restart, a failover, pg_terminate_backend) is
// replaced once, before the query's statement ran. A
// store's user without CREATEROLE gets an error that says what an
// administrator runs; the administrator's role is then given with
// Options.Login (its URL, with password): Open grants it the views, checks
// it as above and never alters it. pg_hba.conf must accept the role with
// a password (catalog/pgtest's server does: scram-sha-256 on loopback).
//
// A query whose ctx is done is cancelled on
// the server: a CancelRequest, sent again every 100 ms until the query
// stops (PostgreSQL ignores one that reaches the backend before the
// query does), the connection closed 5 s after the first; and
// statement_timeout stops it even if every cancel is lost. JIT is off: compiling a costly plan ignores a
// cancel for seconds.
//
// # Lookups by request_id
//
// audit_events has a partition per day, as many as the retention keeps (a
// year by default), and a request_id is not the partition key: a query
// that fixes request_id would plan and probe every partition (planning
// alone grows with their number). The store keeps the days on which each
// request id has events (catalog/pgstore's audit_request_days, written in
// the transaction of every append, so a request's payload and guardrail
// rows of later days are there too), readable by the query role through its
// view in the views' schema. A SELECT whose top-level WHERE says
// request_id = 'literal' or = $n (bound to a string) for an event view of
// its FROM (system_access_audit, system_ai_gateway_usage,
// system_ai_gateway_payloads, by name or alias) runs in a REPEATABLE READ
// transaction that first reads those days, and gets the condition
// "event_time within one of those days" on that view added (re-parsed and
// deparsed by pg_query): PostgreSQL prunes at planning to those days'
// partitions; a request id without events gets false. The answer is the
// same (the lookup and the query read one snapshot); a request id with
// more than 32 separate day ranges, a request_id fixed only through a
// join's equality, and a CTE named after a view are left as written. An
// error with a position is reported from the statement as written. A new
// pool connection plans a query of audit_events that reads nothing, so
// that a client's first query does not pay for the backend reading every
// partition's bounds (≈ 0.15–0.3 s with 365 partitions on a loaded host).
//
// # Virtual tables
//
// information_schema and the pg_catalog emulation are computed per query
// for the caller, as on DuckDB, and reach PostgreSQL as query parameters:
// the front end writes each such relation as
//
//	(SELECT * FROM json_to_recordset(CAST($n AS json)) AS t(col type, ...)) AS name
//
// and binds the rows as one JSON text. Nothing is written (no temporary
// table: a READ ONLY transaction may not create one, and one created
// outside would outlive the query or need cleanup), nothing is visible to
// another session, and the statement never names PostgreSQL's own
// pg_catalog relations: the emulated ones describe Mandate's catalog, the
// real ones would describe the store's internals. Only the relations a
// query names are computed; 1,000 rows of information_schema.columns are
// 586 KB of JSON built in 11.6 ms on a loaded 2-core machine
// (BenchmarkPGRows in sqlfront/systables, BENCHMARKS.md).
//
// # Results and errors
//
// Results are read in PostgreSQL's text format and decoded by the column
// type's OID (pgtype) into the Go values of catalog.DataType; each column
// reports its exact OID (catalog.ColumnType.OID) where the front end can
// write values of that type, else text. Errors keep PostgreSQL's own
// SQLSTATE, message, detail and hint (it is PostgreSQL); a column error
// names the column (catalog.QueryError.Name) so that the front end can
// point at it in the client's text.
package pgquery
