// Package systables runs SQL queries over Mandate's system tables for
// psql, notebooks and BI tools: system.access.audit, the views of
// system.information_schema and the pg_catalog relations that clients
// read for introspection.
//
// # Flow
//
// The SQL front end hands every SELECT that reads relations (or that its
// constant evaluator cannot answer) to Engine.Prepare with the statement's
// pg_query parse tree. Prepare:
//
//  1. validates the tree against an allow-list of node types (analyze.go):
//     only SELECT, with joins, CTEs, subqueries, aggregates, window
//     functions, set operations, ORDER BY and LIMIT; no INTO, FOR UPDATE,
//     data-modifying CTEs, or anything else (0A000);
//  2. resolves every relation: system.access.audit, system.information_schema.X,
//     pg_catalog.X (two-part names resolve in the session's catalog;
//     information_schema and pg_catalog in any catalog) or a CTE of the
//     statement. The store's own tables and the engine's catalogs are
//     42501, anything else 42P01;
//  3. allows only the functions of functions.go: the engine's file,
//     network, settings and catalog functions are 42501, unknown ones
//  42883. Session functions (current_user, current_setting, version())
//     become constants; pg_catalog functions (format_type,
//     pg_get_userbyid, obj_description, ...) become expressions over the
//     emulated pg_catalog relations; casts to regclass/regtype resolve
//     names; operators and type names are checked against allow-lists;
//  4. checks SELECT on each system table read (catalog.Model.Check: Unity
//     semantics, SELECT on the table or inherited from its schema or
//     catalog, plus USE_CATALOG and USE_SCHEMA; metastore admins hold
//     everything). A caller without it gets 42501. The check is repeated
//     at every execution;
//  5. writes the engine's SQL from the tree (deparse.go, typing.go,
//     operators.go, calls.go, casts.go) — never by splicing text: every
//     operator expression in parentheses, so that the engine reads the
//     tree PostgreSQL parsed whatever its own precedences. On the way it
//     infers every expression's PostgreSQL type and writes PostgreSQL's
//     semantics where the engine's differ: untyped literals take their
//     context's type (read here with PostgreSQL's input rules: booleans,
//     strict integers, intervals, timestamps in the session's TimeZone),
//     int / int truncates, division and modulo by zero fail (22012, via
//     the engine's error() and catalog.RaisePrefix), sum(int) is bigint,
//     avg(int) exact numeric, ORDER BY names NULLS FIRST/LAST explicitly,
//     LIKE escapes with a backslash, JSON keys are keys (never the
//     engine's paths), a timestamp with time zone is truncated, extracted
//     and shifted in the session's time zone, constants divide exactly.
//     Column references it cannot resolve are remembered: when the engine
//     fails to bind one, the error is PostgreSQL's (42703 with the
//     position and the closest column as a hint); a reference that differs
//     from a column only in case fails here, as in PostgreSQL;
//  6. asks the engine (catalog.QueryEngine, DuckDB in catalog/duckstore)
//     for the result columns and the parameter types, which become
//     PostgreSQL type OIDs (types.go), the inferred PostgreSQL type where
//     the engine's value carries it (report.go).
//
// Execute decodes the bound parameters (text: handed over as strings that
// the engine converts to the inferred type, as PostgreSQL treats untyped
// literals; binary: decoded by OID), runs the query (ctx carries the
// statement timeout and the client's CancelRequest; the engine interrupts
// the running query) and writes the rows, encoded by pgwire in text or
// binary as the client asked.
//
// # Where the rows come from
//
// system.access.audit is a view of the engine over the stored audit
// events (schema/duckdb/0002_system_tables.sql). Every other relation is
// a virtual table (catalog.VirtualTable): its rows are computed from the
// committed catalog Model, for the caller, when the engine binds the
// query, and handed to it through the query's context — not temp tables
// and not VALUES lists: nothing is written, nothing outlives the query,
// big catalogs do not become big SQL texts, and rows the caller may not
// see never reach the engine. The information_schema views show what the
// caller may see (catalog.Model.CanSee; the *_privileges views follow
// SHOW GRANTS: every grant for those who may manage the object, else the
// caller's own and its groups'; users, groups and members as SHOW USERS).
//
// # pg_catalog
//
// DuckDB has a pg_catalog of its own, but it describes the engine's
// tables (the store's internal ones), so it is never reached: pg_catalog
// relations are emulated here (relations.go) with PostgreSQL's column
// names and OIDs. The current catalog's schemas are the namespaces, the
// system tables the classes (relkind 'r', OID 16384 + securable ID), with
// their columns in pg_attribute and comments in pg_description; pg_type
// holds the types Mandate returns. Relations that clients expect but
// Mandate has nothing for (pg_index, pg_constraint, pg_policy,
// pg_inherits, pg_publication, pg_statistic_ext, ...) exist empty. This is
// what psql's \dt, \d, \dn and \l read; further clients (JDBC, SQLAlchemy,
// BI tools) add their relations and functions to the same tables. For
// Grafana, Metabase, pgJDBC and SQLAlchemy (testdata/clients): a scalar
// function in FROM is a one-row subquery; parse_ident and format of a
// constant are evaluated here; a computed name cast to regclass is looked
// up; information_schema.columns has PostgreSQL's numeric_precision,
// udt_schema, is_identity, ... after its own columns, and
// information_schema.table_constraints, key_column_usage and
// referential_constraints exist empty, as do pg_enum and pg_sequence.
//
// # Output
//
// Values are written as PostgreSQL writes them (types.go): floats with
// the shortest digits (exponent from 1e15), intervals in the postgres
// style, timestamps with time zone in the session's TimeZone, jsonb in its
// canonical form.
//
// # Engines and dialects
//
// The engine says its dialect (catalog.QueryEngine.Dialect). Steps 1–4
// are the same for both; step 5 differs:
//
//   - DuckDB (embedded, catalog/duckstore): the deparser writes the
//     PostgreSQL semantics described above in DuckDB's SQL, and the
//     virtual tables are read through the engine's table function.
//   - PostgreSQL (--store postgres://, catalog/pgquery; pgdialect.go):
//     nothing needs emulating, so the analysed tree is written as
//     PostgreSQL parsed it (libpg_query's deparser), with each virtual
//     table a subquery over json_to_recordset of a JSON parameter bound
//     at execution (the rows computed for the caller, nothing written),
//     parameters the client typed cast to their types, and the engine
//     relations resolved in the event stream's views schema. A few
//     functions emulated for DuckDB run natively (quote_ident, format,
//     array_upper, ...; pgNative), a few exist only there (justify_*,
//     make_interval, convert_from; pgOnly). Result and parameter types are
//     PostgreSQL's own; errors are PostgreSQL's, with the position of the
//     node it points at mapped back to the client's text. The corpus of
//     testdata/pgdiff answers like PostgreSQL 15 for every query
//     (differences-postgres.txt is empty).
//
// # Differences from PostgreSQL
//
// The differential test (sqlfront/pgdiff_test.go, corpus and the lists of
// remaining differences in testdata/pgdiff) compares every answer with
// PostgreSQL 15's, on both engines. What remains on DuckDB: the engine's decimals have one scale per
// column (PostgreSQL's numeric one per value) and at most 38 digits;
// numeric division of non-constants is computed in double precision;
// floating-point aggregates may differ in the last digit; float overflow
// gives Infinity; JSON extracted or built by functions is re-serialized;
// regular expressions are RE2's (no lookaround or back references).
package systables
