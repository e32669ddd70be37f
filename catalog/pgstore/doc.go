// Package pgstore is the catalog.Store of a PostgreSQL database that
// several Mandate processes (replicas) share: mandate serve --store
// postgres://user@host/db. It passes storetest.RunStore and
// RunStoreDurability against a real PostgreSQL (catalog/pgtest).
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
// without another read; after sixteen lost races it answers 40001 to the
// client. No change is ever overwritten. An append whose connection fails
// after it was sent has an unknown outcome and says so (CodeUnavailable);
// the Service learns it from the records. (The first schema version's
// mandate_catalog_append does the same in PL/pgSQL, raising 40001; the
// binaries of that version call it, and both serialize on the same row.)
//
// # Followers
//
// mandate_catalog_append NOTIFYs mandate_catalog with the new head. Each
// Store keeps one connection LISTENing (reconnecting with backoff) and
// closes its Changed channel at each notification and each reconnection.
// Notifications are a hint: the Service also polls Head every 50 ms, and
// reads the records after its revision with Changes (the head and the
// records in one statement, so that a gap, records pruned, is told apart
// from a concurrent append: ErrPruned, the Service then reloads the
// snapshot).
//
// # Snapshots and pruning
//
// WriteSnapshot inserts the State (ON CONFLICT DO NOTHING: replicas may
// snapshot the same revision) and deletes all but the newest two. Prune
// deletes records a snapshot covers that are older than
// Options.KeepChanges (one hour), so that a replica that was away for less
// catches up from the records.
//
// # Errors
//
// translate maps driver errors: a done context is CodeUnavailable wrapping
// ctx.Err(); 40001 and 40P01 CodeConflict; 53300, 57P01-57P03, class 08 and
// any failure to reach the server CodeUnavailable (clients see 57P03);
// anything else CodeInternal. While the database is unreachable, catalog
// writes fail at once with CodeUnavailable; reads and decisions go on from
// the Service's model until its staleness bound.
package pgstore
