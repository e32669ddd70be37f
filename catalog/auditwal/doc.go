// Package auditwal puts a write-ahead log in front of an event store
// (duckstore), so that audit events are durable with one fsync and reach
// DuckDB in large batches: DuckDB spends milliseconds of CPU on every
// transaction besides its own fsync.
//
//   - AppendAudit validates and encodes the events (the binary form of
//     catalog/internal/wal, about ten times cheaper than JSON), appends
//     them to DATA_DIR/audit.wal as one record and fsyncs before
//     returning. A catalog.AuditLog in front of it group-commits the
//     gateway's events, so one fsync covers thousands.
//   - The log writes through the page cache and fsyncs with fdatasync
//     (on Linux). Appends with O_DIRECT and RWF_DSYNC were measured
//     too: the primitive alone is faster on the VM of BENCHMARKS.md, but
//     end to end they doubled the p99 of a gateway call.
//   - The log keeps 1 MiB allocated after its last record, reading as
//     zeros (fallocate where the filesystem has it), prepared in the
//     background: an append writes within the file's size, so its sync
//     commits no size change. Zeros after the last record are the end
//     of the log (wal.Read); a clean Close cuts them off.
//   - With Options.SyncInterval (--audit-sync off) AppendAudit writes
//     without an fsync and a background loop fsyncs the log every
//     SyncInterval: a process crash loses nothing written, an OS crash
//     the last SyncInterval; a failed fsync fails every later append.
//   - AppendAuditLazy (catalog.AuditLazyWriter) writes without an fsync:
//     the next AppendAudit's fsync covers its record, or, if none comes, a
//     timer fsyncs within Options.LazySyncDelay (10 ms). catalog.AuditLog
//     writes the batches nobody waits for this way (the gateway's call
//     completions with --audit-sync on), so that a request record never
//     waits behind a completion's fsync. A process crash loses nothing
//     written; an OS crash at most the lazy records of the last 10 ms.
//   - SyncAudit (catalog.AuditSyncWriter) makes every record written
//     before it durable, with one fsync unless they are already:
//     catalog.AuditLog writes a batch somebody waits for with
//     AppendPrepared(durable false) and syncs it with SyncAudit on a
//     goroutine of its own, so that the batches arriving during a sync
//     are written meanwhile and the next sync, right after it, covers
//     them all. With SyncInterval it returns at once.
//   - AppendChangeAudit (the audit records of catalog changes, forwarded by
//     catalog.Service) logs the events of revisions above AuditedRevision
//     with the new mark (a record starting with 0xAC and the mark).
//   - Pending records are also held in memory until applied. Past
//     Options.MaxPendingBytes (256 MiB) of them, AppendAudit waits within
//     its context for the applier (backpressure): ingestion faster than
//     DuckDB can apply is slowed down, not buffered without bound. This is
//     the event stream's own backpressure: catalog writes never wait for
//     it (the catalog has its own log, catalog/walstore), and neither does
//     AppendChangeAudit.
//   - A background applier replays pending records into the inner store
//     (every ApplyInterval, 5 s, or sooner when MaxPending events, 8192,
//     wait: an inner transaction costs DuckDB about 13 ms of CPU whatever
//     its size), leaving those younger than ApplyDelay (100 ms) for the
//     next round, so that a gateway call's completion is merged into its
//     request's row before DuckDB sees it instead of updating it there. The
//     calls in flight when a batch ends have their request in it and their
//     completion in a later record: a completion already logged by then is
//     taken into the batch (one merged row) and skipped when its own record
//     is applied; replayed after a crash, it completes the row again with
//     the same outcome. Each batch is one Inner.ApplyLog, which stores the
//     last record's sequence number and the mark in the same transaction,
//     so a record is applied exactly once even across crashes. A round of
//     the applier goes in slices of at most Options.ApplySlice events
//     (2048, about 1,000 rows), each its own transaction, pausing after
//     each as long as it took: an apply never takes the CPU in one long
//     burst that gateway calls would queue behind. When nothing is pending the log is
//     truncated; under steady writes it is rewritten once RotateBytes of it
//     are applied.
//   - With Options.ApplyNice the background applier runs on an OS thread
//     of its own at that nice value (catalog/internal/lowprio): DuckDB
//     with threads = 1 applies on the calling thread, so under contention
//     the kernel gives the gateway's request path the core before the
//     apply's bursts. Never starved: a niced thread keeps a share of a
//     contended core, and reads apply on their own threads.
//   - Reads (ListAudit, and Flush for the query engine) first apply
//     everything pending, so they see every durable event.
//   - Open replays records newer than the inner store's LogSeq. A torn
//     record at the end of the log (a crash during the append, never
//     acknowledged) is cut off; a bad record followed by others is
//     corruption and refused.
package auditwal
