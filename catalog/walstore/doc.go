// Package walstore is the embedded catalog.Store: the catalog's change
// records in a log file, DATA_DIR/catalog.wal, and its newest snapshot in
// DATA_DIR/catalog.snapshot. It passes storetest.RunStore and
// storetest.RunStoreDurability.
//
//   - Append writes the changes of one group commit as one record (framed
//     as catalog/internal/wal describes: length, CRC-32C, the revision of
//     its last change, then 0xC1 and the changes as JSON, times in UTC to
//     the microsecond) and fsyncs the file before returning: one fsync
//     covers every statement of the batch. A failed write is cut off again.
//     Revisions are the caller's (one committer per data directory); an
//     Append whose base is not the newest revision is CodeConflict.
//   - WriteSnapshot writes the whole catalog (0xC2 and the State as JSON,
//     in the same framing) to a temporary file, fsyncs it, renames it over
//     catalog.snapshot and fsyncs the directory.
//   - Prune drops the records the snapshot covers by rewriting the log
//     without them (temporary file, fsync, rename), when that drops at
//     least 1 MiB or half of it.
//   - Open reads the records back: a torn record at the end (a crash
//     during an append, never acknowledged) is cut off; a bad record with
//     others after it, a gap between records, or a log that starts after
//     the snapshot's revision + 1 is corruption and refused
//     (CodeIncompatibleData), as is a log in the format of the Mandate whose
//     catalog lived in DuckDB tables (catalog/embedded upgrades such a
//     directory before opening it; ReadLegacy reads that format).
//   - Load reads the snapshot and the records after it; Changes reads
//     records from the log (an index of their offsets is kept in memory).
package walstore
