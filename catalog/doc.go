// Package catalog is Mandate's governance catalog: the model (principals,
// securables in a three-level namespace, grants), the privilege semantics,
// the store interface and the Service that keeps them consistent.
//
// Layers:
//
//   - model.go: the types, and the two registries everything about
//     privileges is read from: privileges (PrivilegeInfo: SQL spelling,
//     ALL PRIVILEGES and what it leaves out, whether the securable's own
//     USE privilege is needed) and securable types (TypeInfo: container,
//     applicable privileges, USE privilege, whether grants are inherited
//     by what is inside, where one-part names resolve). Adding a privilege
//     or a securable type is an entry there, not code in the evaluator,
//     the decision engine or the SQL front end.
//   - state.go: the in-memory Model with its indexes (children by name,
//     grants by securable and by principal).
//   - authz.go: the privilege state the evaluator reads, kept by the Model
//     in step with every change: principal and securable records (a
//     principal's direct groups and own grants; a securable's owner,
//     containers and per privilege the bitset of groups granted it there)
//     and the principals' transitive groups as bitsets, computed on first
//     use. Records are copy on write: a Snapshot shares them, and the
//     Model copies a shared record before changing it.
//   - privilege.go: the privilege evaluator, the one implementation of the
//     rules: admins, USE prerequisites, inheritance from catalog and
//     schema, ownership, MANAGE, ALL PRIVILEGES expanded at check time,
//     transitive groups and "account users". The same code answers with or
//     without an explanation (without, it does not allocate). Model.Check
//     (explained, memoized per model generation), Model.Holds, CanManage
//     (may P grant on S) and CanSee (listing) run it on the Model as it is,
//     so a statement being planned sees its own earlier changes.
//     testdata/privilege_matrix.txt is the written matrix it is tested on;
//     the property test compares it with a deliberately naive reference
//     (catalogtest.Reference).
//   - access.go: the on-behalf-of rule (an agent acting for a human needs
//     the privilege, and so does the human) with its reasons and steps:
//     what the decision engine answers and EXPLAIN ACCESS prints.
//   - snapshot.go: Snapshot, an immutable view at one revision with the
//     same evaluator, safe without locks; taking one copies three slices
//     of page pointers (cowtable.go: one per 256 records, whatever the
//     catalog's size) under the read lock, its name indexes (the authorization
//     API's names) are built outside it. The decision engine decides from
//     Snapshots.
//   - tx.go: Tx, the planner of one change: every governance statement is a
//     Tx method that checks privileges and existence and emits ops.
//   - ops.go: ops apply to the Model (returning their inverse, for undo)
//     and become the ChangeOps of a change record.
//   - service.go: Service serialises writes through one committer goroutine
//     that group-commits queued statements: each changing statement (or
//     transaction block) is one change record with the next revision and
//     its audit records inside, appended in one Store.Append. Readers see
//     a change only once it is durable. On a store shared by replicas a
//     lost race (CodeConflict) or a statement failing on a catalog behind
//     the store's head is planned again after catching up (from the
//     records the refusal carried, a *Conflict, when the store sends
//     them), together with the statements queued meanwhile; a batch that
//     keeps losing takes the store's head first (HeadLocker,
//     Options.LockHeadAfter), so that its next attempt cannot lose, and
//     while the head is contended (a lost race, other writers' commits
//     between its own) every batch takes it before it plans
//     (Options.QueueFor): writers queue in the store instead of planning
//     and sending appends that lose.
//   - follow.go: a replica of a shared store (Watcher) polls the head
//     revision and wakes on the store's notifications, applies other
//     writers' records (reading only what it has not applied: its own
//     commits' notifications cost nothing; records the notifications
//     carried, Carrier, are applied without a read, and a gap is read),
//     and is Stale (StaleError) when it could not confirm for
//     Options.MaxStaleness that it has every change (carried records never
//     confirm it: only a read of the store's head does).
//   - forward.go: the audit records of change records are copied to the
//     event stream in the background (EventStore.AppendChangeAudit), so a
//     slow event stream never delays a catalog write. Replicas sharing an
//     event stream elect one forwarder (Options.ForwardLease); the others
//     follow its progress, forward for their own readers (SyncAudit) and
//     take over when it stops.
//   - remote.go: replicas may funnel their writes through one of them
//     (Options.Remote, a RemoteWriter): a statement with a forwarded form
//     (Statement.Forward, made by the SQL front end) is sent to the writer
//     replica, which plans and commits it as the same caller
//     (CommitForwarded) in its own group commits, so the store's head is
//     never contended; the sender records the audit of statements that
//     changed nothing and answers once it has applied the writer's
//     revision. Whatever did not reach the writer (ErrNotForwarded) is
//     committed here; an answer lost after the request may have reached it
//     is CodeOutcomeUnknown, never retried.
//   - persist.go: snapshots (Model.State, written every
//     Options.SnapshotEvery changes, then Store.Prune) and loading a Model
//     from a snapshot plus the records after it.
//   - block.go: Block, a transaction block: changes checked one by one
//     against the committed catalog plus the block (read-your-writes; its
//     changes stay applied to the Model between its statements and every
//     other reader takes them out first, so nobody else sees them),
//     committed together by the committer, planned again there (a change
//     that no longer applies is CodeConflict).
//   - store.go: two interfaces, split by what each part needs. Store is
//     the catalog's persistence (Load, Head, Append of change records,
//     Changes, WriteSnapshot, Prune): walstore (embedded: catalog.wal plus
//     catalog.snapshot), pgstore (PostgreSQL, shared by replicas),
//     memstore (tests). EventStore is the event stream (AppendAudit with
//     two-phase records, AppendChangeAudit, AuditedRevision, ListAudit):
//     auditwal in front of duckstore (embedded), memstore. storetest holds
//     one conformance suite per interface. The row-store roles (Reader,
//     RWTx) remain for upgrading data directories of the earlier layout.
//   - auditlog.go: AuditLog, group commit for audit events of the data plane
//     (MCP and LLM calls, authorization decisions, gateway nodes' records)
//     into the EventStore, with its own queue bound: Record returns once the
//     event is durable, many Records share one write (for auditwal: one log
//     record, one fsync). AuditEvent.Validate bounds every text field
//     (AuditMax*), so no request makes an audit row large.
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
