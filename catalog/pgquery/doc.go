// Package pgquery is the catalog.QueryEngine on PostgreSQL: the SELECTs of
// Mandate's system tables (validated, checked and written by
// sqlfront/systables in catalog.DialectPostgres) run on the PostgreSQL
// database that replicas share, so every replica answers from the same
// audit events.
//
// # Rules
//
// Each query runs on a connection of the engine's own pool (Options.MaxConns,
// a cap; admission stays in the SQL front end) in one transaction that is
// always rolled back:
//
//	BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
//	SET LOCAL ROLE <Options.Role>;          -- reads only the views' schema
//	set_config('statement_timeout', <what is left of ctx's deadline>, true)
//	set_config('TimeZone', <the session's TimeZone>, true)
//	set_config('search_path', '<views schema>', true)
//
// The role (Setup, run by Open, idempotent and safe from several replicas
// at once under an advisory lock) is NOLOGIN, granted to the store's user,
// and holds USAGE on the views' schema and SELECT on its views only: it
// cannot read the store's tables (catalog records, snapshots with sealed
// secrets, audit tables) nor call the functions PostgreSQL reserves to
// superusers and pg_read_server_files (pg_read_file, lo_import, ...);
// dblink and other extensions are not installed by Mandate. The front end
// never lets such a call through (its allow-lists); the role is the second
// wall, against reading by privilege. It is not a wall against SET ROLE:
// PostgreSQL checks SET ROLE, RESET ROLE and set_config('role', ...)
// against the session user (the store's), so a statement that reached the
// engine with one of them could leave the role; the front end refuses SET
// and set_config (tests in sqlfront). A LOGIN role with a pool of its own
// would close that; not done. A query whose ctx is done is cancelled on
// the server (a CancelRequest through pgconn's
// CancelRequestContextWatcherHandler), and statement_timeout stops it even
// if the cancel is lost. JIT is off: compiling a costly plan ignores a
// cancel for seconds.
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
