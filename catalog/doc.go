// Package catalog is Mandate's governance catalog: the model (principals,
// securables in a three-level namespace, grants), the privilege semantics,
// the store interface and the Service that keeps them consistent.
//
// Layers:
//
//   - model.go, state.go: the types and the in-memory Model with its indexes
//     (children by name, grants by securable and by principal, dense group
//     indexes and per-securable group bitsets for the privilege check).
//   - privilege.go: Check, the one function answering "does principal P hold
//     privilege X on securable S, and why" (Unity Catalog semantics: USE
//     prerequisites, inheritance from catalog and schema, ownership, MANAGE,
//     ALL PRIVILEGES expanded at check time, transitive groups, metastore
//     admins), plus CanManage (may P grant on S) and CanSee (listing).
//     testdata/privilege_matrix.txt is the written matrix it is tested on.
//   - tx.go: Tx, the planner of one change: every governance statement is a
//     Tx method that checks privileges and existence and emits ops.
//   - ops.go: ops apply to the Model (returning their inverse, for undo) and
//     write to a store transaction.
//   - service.go: Service serialises writes through one committer goroutine
//     that group-commits queued statements into one store transaction with
//     their audit events and assigns each change the next revision. Readers
//     see a change only once it is durable.
//   - block.go: Block, a transaction block: changes checked one by one
//     against the committed catalog plus the block (read-your-writes; its
//     changes stay applied to the Model between its statements and every
//     other reader takes them out first, so nobody else sees them),
//     committed together by the committer, planned again there (a change
//     that no longer applies is CodeConflict).
//   - store.go: the Store interface, built from small roles (SpiceDB style).
//     Implementations: duckstore (embedded), memstore (tests), walstore (a
//     write-ahead log in front of another store); storetest is the
//     conformance suite every implementation runs.
//   - auditlog.go: AuditLog, group commit for audit events of the data plane
//     (MCP messages, authorization decisions, gateway nodes' records):
//     Record returns once the event is durable, many Records share one
//     store write (for walstore: one log record, one fsync).
//     AuditEvent.Validate bounds every text field (AuditMax*), so no
//     request makes an audit row large.
//   - auditfail.go: FailureAudit, a recorder in front of another that
//     aggregates failures anyone can cause without a credential (failed
//     logins, unauthenticated requests) into one summary row per source
//     and window.
//   - query.go: QueryEngine, the read-only SQL engine system tables run on
//     (implemented by duckstore; the front end analyses and rewrites the
//     statements first, see sqlfront/systables).
//   - keyring.go: AES-256-GCM sealing of connection secrets.
//   - options.go: connection option validation; LooksSecret and RedactURL,
//     the one rule for which values are secrets wherever text is recorded.
//
// Errors are *Error with a Code; the SQL front end maps codes to SQLSTATEs
// in one place.
package catalog
