// Package schema holds Mandate's versioned SQL migrations, one directory per
// SQL dialect, embedded into the binary.
//
// Each migration is a file named NNNN_name.sql (for example
// duckdb/0001_init.sql). Versions start at 1 and have no gaps, per dialect:
// duckdb/ is the embedded store (since version 4 the event stream only;
// LatestVersion is its highest version), postgres/ the PostgreSQL store of
// catalog/pgstore. A store applies the migrations newer than the version
// recorded in its mandate_meta table, in order, inside one transaction, and
// records the new schema_version there; it refuses a database whose
// schema_version is above its newest migration (written by a newer Mandate).
// PostgreSQL runs them under an advisory lock, so that replicas starting
// together migrate once.
//
// DuckDB tables:
//
//   - mandate_meta(key, value): schema_version, log_seq (the last
//     audit.wal record applied), audit_revision (catalog revision through
//     which the audit records of catalog changes are in audit_events);
//     revision and next_id are no longer kept (version 4).
//   - principals, memberships, securables, grants: the governance catalog
//     of data directories written before version 4 (the catalog has its
//     own files since, catalog/walstore); the upgrade reads and empties them.
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
// PostgreSQL tables (postgres/0001_catalog.sql): mandate_catalog_head,
// mandate_catalog_changes, mandate_catalog_snapshots and the function
// mandate_catalog_append, which serializes writers.
// postgres/0002_event_stream.sql: the shared event stream (catalog/pgstore
// Events): audit_events partitioned by day (audit_events_pYYYYMMDD,
// audit_events_default) with mandate_audit_ensure_partitions,
// mandate_audit_spools (each replica's spool position), mandate_meta
// audit_revision, and the system tables' views in the schema
// mandate_views.
//
// The system tables' views exist once per dialect (duckdb/0003,
// postgres/0002) and are one definition: their columns (names, order,
// types) are catalog.AuditColumns, UsageColumns and PayloadColumns, and
// their values for the same events are the table of
// catalog/storetest.RunViews, which both stores' tests run. A change to a
// view is a new migration in each dialect and a change to that table.
//
// Migrations are never edited once released: a change is a new file.
package schema
