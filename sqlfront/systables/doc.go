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
//     names; PostgreSQL operators and types map to the engine's;
//  4. checks SELECT on each system table read (catalog.Model.Check: Unity
//     semantics, SELECT on the table or inherited from its schema or
//     catalog, plus USE_CATALOG and USE_SCHEMA; metastore admins hold
//     everything). A caller without it gets 42501. The check is repeated
//     at every execution;
//  5. deparses the rewritten tree and asks the engine (catalog.QueryEngine,
//     DuckDB in catalog/duckstore) for the result columns and the
//     parameter types, which become PostgreSQL type OIDs (types.go).
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
// # Differences from PostgreSQL
//
// Queries run with the engine's semantics where PostgreSQL's cannot be
// mapped: numeric without precision is DECIMAL(18,3), timestamps are shown in UTC whatever
// TimeZone says, jsonb is json (a result column cast to jsonb is
// reported as jsonb), and ~ matches anywhere (mapped to regexp_matches).
package systables
