// Package duckstore is the embedded event stream (catalog.EventStore), kept
// in one DuckDB file: dir/catalog.duckdb, with DuckDB's write-ahead log
// beside it (catalog.duckdb.wal). It passes storetest.RunEvents and
// storetest.RunEventsDurability, alone and behind catalog/auditwal (the
// production configuration: auditwal.Inner is implemented by LogSeq and
// ApplyLog). The catalog itself is no longer kept here (catalog/walstore);
// the tables it had in data directories written before are read once by
// the upgrade (Legacy, FinishUpgrade in legacy.go).
//
// # Schema
//
// Open applies the migrations of package schema (dialect "duckdb") newer
// than the schema_version recorded in mandate_meta, in one transaction, and
// records the new version. A data directory whose schema_version is above
// schema.LatestVersion was written by a newer Mandate and is refused with
// CodeIncompatibleData, as are a file that is not a DuckDB database (or one
// from a newer DuckDB) and a DuckDB database that Mandate did not create.
//
// # Durability
//
// A write returns nil only once its transaction is durable. DuckDB
// appends a committing transaction to its WAL and fsyncs the WAL before
// COMMIT returns; it has no setting that turns this off (no equivalent of
// PostgreSQL's synchronous_commit or SQLite's synchronous). This was checked
// with strace on DuckDB 1.5.6 (one fsync of catalog.duckdb.wal per committed
// write transaction), and TestCommitFsyncsWAL checks it on every run where
// strace is installed. TestCrashDurability kills a committing process with
// SIGKILL and checks that every transaction it saw committed is recovered
// from the WAL; TestAuditCrashDurability does the same for the audit
// pipeline (catalog.AuditLog, auditwal, DuckDB) under 64 producers.
// Close checkpoints the WAL into the database file.
//
// One related setting differs from DuckDB's default: checkpoint_threshold,
// past which a commit also checkpoints the WAL into the database file, is
// 256 MiB instead of 16 MiB (Options.CheckpointThreshold). At 16 MiB,
// sustained audit ingestion spends a third of its CPU in checkpoints, each
// of which rewrites the audit table's last, partly filled row group; the
// price is a longer WAL to replay when DuckDB opens after a crash.
//
// # Concurrency
//
// One *sql.DB holds a small pool of DuckDB connections (Options.MaxConns).
// Reads outside a transaction run concurrently, each on a connection of the
// pool, and see the last committed state (DuckDB's MVCC). Write
// transactions run one at a time, under a lock whose wait honours ctx, on a
// connection the store keeps for them; so DuckDB never sees two writers and
// no transaction conflicts.
//
// DuckDB spends from 0.3 to 2 ms on each statement whatever its size, so a
// transaction buffers its audit events and writes them at the commit with
// one table appender (completions of rows written earlier: one UPDATE fed
// by a query appender). A transaction of a group commit thus costs BEGIN,
// one or two appenders, the bookkeeping (log_seq, audit_revision) and
// COMMIT, however many events it carries. A failed write, buffered or not,
// aborts the transaction: the commit then fails.
//
// # Hardening
//
// The database is opened with enable_external_access=false (no COPY,
// ATTACH, read_csv, httpfs: the file holds sealed secrets and must not reach
// other files), autoinstall_known_extensions=false,
// autoload_known_extensions=false, allow_community_extensions=false and
// allow_unsigned_extensions=false. DuckDB's statically linked extensions
// (core_functions, icu, json, parquet) stay available. After the migrations
// the store sets TimeZone=UTC and lock_configuration=true, so no statement
// can change the configuration afterwards, and checks that all of these hold.
//
// # Errors
//
// Driver errors are translated to *catalog.Error in one place (translate):
// a closed store, closed connection, I/O, connection, out-of-memory or fatal
// DuckDB error (DuckDB refuses all work after a fatal error such as a failed
// fsync, until reopened) is CodeUnavailable; a done context is CodeInternal
// wrapping ctx.Err(); anything else is CodeInternal. A directory locked by
// another process, or already open in this process, is CodeUnavailable.
//
// # Encoding
//
// Times are TIMESTAMPTZ, written in UTC and truncated to microseconds.
// Securable options are a JSON object in TEXT (NULL for a nil map), secrets
// a BLOB (NULL for nil); empty ones stay empty. Audit events with the same
// time are listed in the order they were appended (DuckDB's rowid: the
// table is append-only).
//
// # Query engine and audit retention
//
// Store.QueryEngine (query.go) is the catalog.QueryEngine behind SQL over
// system tables (sqlfront/systables): one trusted, already validated SELECT
// at a time per connection of a pool of its own (so analytical queries do
// not hold the store's connections), each in a READ ONLY transaction on
// the hardened database; ctx cancellation interrupts the running query.
// Options.MemoryLimit (DuckDB's memory_limit, shared with the store) bounds
// a query's hash tables, aggregate states and sorts, and its materialized
// result: beyond it the query fails with 53200 ("out of memory: ...",
// without DuckDB's advice about its settings) or spills, at most
// Options.MaxTempDirectorySize, to catalog.duckdb.tmp. Admission (how many
// queries at once, for whom) is the caller's (sqlfront).
// system.access.audit is the view system_access_audit
// (schema/duckdb/0002_system_tables.sql) with an ART index on request_id;
// time ranges use event_time's zone maps. Other system tables are virtual:
// their rows come with each query and are read through the table function
// mandate_virtual_table, which finds them in the query's context.
// QueryEngine.RunAuditRetention (retention.go) deletes expired audit
// events in small batches beside the writers (appends never conflict with
// deletes of old rows); this, and not the store's writer, is then a second
// writer of audit_events.
package duckstore
