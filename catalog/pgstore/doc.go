// Package pgstore is the catalog.Store of a PostgreSQL database that
// several Mandate processes (replicas) share: mandate serve --store
// postgres://user@host/db; and the event stream those replicas share
// (Events, a catalog.EventStore; see "Event stream" below). It passes
// storetest.RunStore, RunStoreDurability, RunEvents and
// RunEventsDurability (alone and behind catalog/auditwal) against a real
// PostgreSQL (catalog/pgtest).
//
// # Schema
//
// Open creates or migrates the schema (schema/postgres, versioned like the
// embedded store's): in one transaction under pg_advisory_xact_lock, so
// replicas starting together migrate once and the others find it done; a
// database written by a newer Mandate is refused (CodeIncompatibleData).
// Tables: mandate_catalog_head (the newest revision, one row),
// mandate_catalog_changes (revision, committed_at, record: the JSON of a
// catalog.Change in BYTEA), mandate_catalog_snapshots (revision, taken_at,
// state: the JSON of a catalog.State; the newest two are kept), and
// mandate_meta (schema_version).
//
// # Writers
//
// Revisions are assigned by the database: Append is one round trip, two
// prepared statements pipelined in one implicit transaction (one commit,
// one WAL flush): an UPDATE of the head row from base to base+n WHERE
// revision = base, with the INSERT of the records and the NOTIFY in the
// same statement, then a read of what a lost race needs. Concurrent
// appenders queue on the head row; the ones whose base is no longer the
// newest update nothing (READ COMMITTED re-checks the row the winner
// committed), write nothing, and get back the head and the records after
// their base (a CodeConflict error wrapping a *catalog.Conflict): the
// catalog Service applies them, plans its statements again (catalog.Block's
// COMMIT re-validation) with the statements queued meanwhile, and retries
// without another read. A batch that lost three times in a row takes the
// head first (LockHead, catalog.HeadLocker: BEGIN, the head row FOR
// UPDATE, then the records after the writer's revision read by the next
// statement, one round trip; the transaction holds the row, other
// appenders queue behind it, and ends with the append and COMMIT in one
// more round trip, or a ROLLBACK; idle_in_transaction_session_timeout
// bounds a writer that hangs to 10 s), so that its next attempt cannot
// lose: a replica that keeps losing to one that keeps winning no longer
// answers its clients 40001 (still the answer after sixteen lost
// rounds). No change is ever overwritten. An append whose connection fails
// after it was sent has an unknown outcome and says so (CodeUnavailable);
// the Service learns it from the records. (The first schema version's
// mandate_catalog_append does the same in PL/pgSQL, raising 40001; the
// binaries of that version call it, and both serialize on the same row.)
//
// # Followers
//
// An Append NOTIFYs mandate_catalog in the same statement with its
// records (notify.go): "<last> <first> <MAC> <records JSON, one a line>",
// as few payloads as fit under PostgreSQL's limit of 8,000 bytes, or
// "<revision>" alone for a record too large, past 64 KiB of records in
// one append, or when no key is set. Each Store keeps one connection
// LISTENing (reconnecting with backoff), keeps the last 512 revisions'
// carried records unchecked and undecoded, and closes its Changed channel
// at each notification and each reconnection; Carried (catalog.Carrier)
// checks and decodes the run of records after a revision, without their
// audit records for a replica that does not forward them (codec.go: the
// revision, next ID and ops a record starts with are read, the audit
// records after them are not even scanned), so a follower
// applies another replica's commit without reading it. Any role that can connect can
// NOTIFY any channel (pg_notify needs no privilege and runs in a read-only
// transaction: the system tables' query role could), so a carried record
// must carry an HMAC-SHA256 under a key every replica derives from the
// installation's master key (SetNotifyKey); one that does not is ignored
// and read from the table. Notifications are a hint: the Service also
// polls Head every 50 ms, and reads the records after its revision with
// Changes (the head and the records in one statement, so that a gap,
// records pruned, is told apart from a concurrent append: ErrPruned, the
// Service then reloads the snapshot) whenever the carried ones do not
// reach the revision it was told of.
//
// ForwardLease (catalog.ForwardLease) elects the replica that forwards the
// change audit into the shared event stream: a session-level advisory
// lock on a connection of its own, tried every second, with
// idle_session_timeout 5 s, so that a holder that died, was cut off or
// stopped renewing loses it within seconds.
//
// WriterLease elects the writer replica, the one the others forward their
// catalog statements to (catalog.Options.Remote): a row in
// mandate_writer_lease with the holder's address, the fingerprint of its
// TLS certificate (which the others pin) and an expiry in the database's
// clock, taken when free or expired and renewed by its holder in one
// statement that also returns the current holder. Exclusivity is a
// performance matter only: the head serializes every append.
//
// # Snapshots and pruning
//
// WriteSnapshot inserts the State (ON CONFLICT DO NOTHING: replicas may
// snapshot the same revision) and deletes all but the newest two. Prune
// deletes records a snapshot covers that are older than
// Options.KeepChanges (one hour), so that a replica that was away for less
// catches up from the records; records are committed in revision order,
// so it reads them from the oldest up to the first young one (not the
// hour it keeps: every replica prunes after each of its snapshots).
//
// # Errors
//
// translate maps driver errors: a done context is CodeUnavailable wrapping
// ctx.Err(); 40001 and 40P01 CodeConflict; 53300, 57P01-57P03, class 08 and
// any failure to reach the server CodeUnavailable (clients see 57P03);
// anything else CodeInternal. While the database is unreachable, catalog
// writes fail at once with CodeUnavailable; reads and decisions go on from
// the Service's model until its staleness bound.
//
// # Event stream
//
// Events (OpenEvents, a pool of its own: a flood of events never holds up
// a catalog write) keeps the audit events of every replica in
// audit_events (schema/postgres/0002_event_stream.sql): DuckDB's columns
// plus seq (a sequence: the order of appends, which orders events of the
// same time) and json_invalid. The table is partitioned by day of
// event_time (UTC). mandate_audit_ensure_partitions creates the missing
// day partitions under an advisory lock (CREATE TABLE, then ATTACH
// PARTITION, which does not block writers); Events calls it at open and
// every hour for yesterday through PartitionsAhead days ahead, and before
// an append for the days of its events within the retention that it has
// not seen (at most 8 per append). Events of other days (far past or
// future, or a day whose events are in the default partition already)
// land in audit_events_default: an append never fails for a missing
// partition. Indexes, per partition through the parent: a btree on
// (event_time, seq) for time ranges, ListAudit's order and the
// completions' lookups (an ever-growing key is cheap to maintain), and a
// btree on request_id. DropExpired (RunRetention, hourly) drops the day
// partitions wholly older than the retention (each waiting at most 1 s
// for its lock, else left for the next pass) and deletes the default
// partition's expired rows. EnforceMaxSize (RunRetention's MaxBytes,
// every 10 s) bounds the partitions' size (pg_total_relation_size): past
// the bound the oldest day partitions before today are dropped, with the
// default partition's events of those days, down to 90% of it, by one
// replica at a time (a tried advisory lock) in one transaction.
//
// audit_request_days (schema/postgres/0004_request_days.sql) holds one
// row per (request_id, day) with events, written after each COPY in its
// transaction (one INSERT ... unnest ON CONFLICT DO NOTHING of the batch's
// distinct pairs; a statement trigger doing the same cost 20-55% of the
// ingestion rate in its transition tables), deleted with the days;
// catalog/pgquery reads it to bound a lookup by request_id to those days'
// partitions. Events that replicas of an older version write during a
// rolling upgrade have no days there: a lookup by request_id misses them.
//
// A write is one transaction: the events in COPY's binary format (encoded
// by hand, copy.go), then the completions whose request was stored
// earlier, then the bookkeeping. A gateway call's completion (the
// outcome and the usage columns) is folded into its request's row in Go
// when both are in one batch (catalog.FoldCompletions), which is nearly
// always: the replica's spool (auditwal) holds records for ApplyDelay
// before applying them, so the two meet there. The rest are applied by one
// UPDATE ... FROM unnest($arrays) joined on (event_time, event_id), with
// the batch's time range as literal bounds for partition pruning and the
// event_time index finding each row. Storing completions as rows of their
// own that the views merge was rejected: every query of the views would
// pay a join or a window over the whole range for what ingestion does
// once, on few rows.
//
// The views the system tables read are in the schema mandate_views, with
// the names, columns and PostgreSQL types of DuckDB's (catalog.AuditColumns,
// UsageColumns, PayloadColumns), so a query role can be granted SELECT on
// that schema alone. JSON columns are stored as the gateway's text; the
// writer checks each (Go's JSON validity, nesting at most 512, no \u
// escapes of surrogates, which PostgreSQL checks more strictly) and sets a
// bit in json_invalid for the ones the views must show as NULL (as
// DuckDB's TRY_CAST does), so a view never raises. Text PostgreSQL refuses
// (NUL bytes, invalid UTF-8) is stored with U+FFFD in their place.
// ViewsReader runs Mandate's own queries over the views (budgets' spend).
//
// Replicas forward the audit records of the same catalog changes:
// AppendChangeAudit and ApplyLog with a mark lock the audited-revision row
// (mandate_meta 'audit_revision') FOR UPDATE, so the forwarders of one
// revision serialize; AppendChangeAudit skips events of revisions at or
// below it, and ApplyLog (whose batches mix gateway events, which also
// carry a revision, with forwarded change audit) skips the sql events of
// such revisions that are stored already (looked up by event id and
// time). Each replica's spool (EventOptions.SpoolID) has its position in
// mandate_audit_spools, written in the transaction that applies it: a
// spool record is applied exactly once, across crashes and outages.
package pgstore
