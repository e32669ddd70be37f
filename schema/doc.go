// Package schema holds Mandate's versioned SQL migrations, one directory per
// SQL dialect, embedded into the binary.
//
// Each migration is a file named NNNN_name.sql (for example
// duckdb/0001_init.sql). Versions start at 1 and have no gaps; LatestVersion
// is the highest version, which every dialect must reach. A store applies the
// migrations newer than the version recorded in its mandate_meta table, in
// order, inside one transaction, and records the new schema_version there; it
// refuses a database whose schema_version is above LatestVersion (written by a
// newer Mandate).
//
// The statements are written in SQL that DuckDB and PostgreSQL both accept
// (TEXT, BIGINT, BOOLEAN, BYTEA, DOUBLE PRECISION, TIMESTAMPTZ, DATE), so a
// postgres/ directory can start as a copy.
//
// Tables:
//
//   - mandate_meta(key, value): schema_version, revision, next_id.
//   - principals, memberships, securables, grants: the governance catalog.
//     grants and memberships have no unique constraint on purpose: DuckDB
//     has raised "duplicate key" errors when a transaction deletes and
//     re-inserts a key of a unique index, which revoking and re-granting in
//     one batch does; the store's writers keep them unique. principals and
//     securables keep their PRIMARY KEY on id (delete and re-insert of an id
//     in one transaction is covered by the conformance suite and works with
//     DuckDB 1.5).
//   - audit_events: one column per catalog.AuditEvent field, named after
//     Databricks' system.access.audit so it can be exposed under that name.
//
// Migrations are never edited once released: a change is a new file.
package schema
