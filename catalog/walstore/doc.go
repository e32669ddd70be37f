// Package walstore makes any catalog.Store fast to commit by putting a
// write-ahead log in front of it.
//
// Why: DuckDB spends several milliseconds of CPU on every transaction besides
// its own fsync, which caps durable GRANTs at a few hundred per second. A
// statement only needs to be durable when it returns, not yet in DuckDB.
//
// How:
//
//   - ReadWriteTx records the transaction's writes (principals, memberships,
//     securables, grants, audit events, meta) as one log record, appends it
//     to DATA_DIR/catalog.wal framed as [length][CRC-32C][JSON], and fsyncs
//     the file before returning. The catalog service already group-commits
//     many statements into one transaction, so one fsync covers them all.
//   - A record of audit events only (AppendAudit: the batches of
//     catalog.AuditLog) has a compact binary body instead of JSON
//     (auditcodec.go), about ten times cheaper to encode. Audit events are
//     validated when recorded (catalog.AuditEvent.Validate: what the inner
//     store would refuse at every apply is refused at once, invalid UTF-8 is
//     repaired), so one bad event cannot stall the applier. Concurrent
//     AppendAudit calls do not share an fsync: put a catalog.AuditLog in
//     front for group commit.
//   - Pending records are also held in memory until applied. Past
//     Options.MaxPendingBytes (256 MiB) of them, new transactions wait
//     within their context for the applier (backpressure): audit ingestion
//     faster than the inner store can apply is slowed down, not buffered
//     without bound.
//   - A background applier replays pending records into the inner store in
//     large transactions (every ApplyInterval, or sooner when MaxPending
//     records wait) and stores the last applied sequence number in the inner
//     store's Meta.LogSeq in the same transaction, so a record is applied
//     exactly once even across crashes. When nothing is pending the log is
//     truncated.
//   - Reads outside a transaction first apply everything pending, so they see
//     every committed write. Reads inside a transaction (not used by the
//     catalog service) are served from an in-memory overlay: the inner state
//     plus the transaction's own writes.
//   - Open replays records newer than Meta.LogSeq. A torn record at the end
//     of the log (a crash during the append, never acknowledged) is cut off.
package walstore
