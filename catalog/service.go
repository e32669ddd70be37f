package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// Caller identifies who runs a statement, for privilege checks and audit.
type Caller struct {
	Principal string // catalog principal name
	SourceIP  string
	UserAgent string
	SessionID string
	RequestID string
	Statement string // statement text with secrets redacted (audit only)
	// Via names the replica that forwarded the statement to this one (the
	// writer, Options.Remote); "" when its client sent it here. Audited in
	// the request parameters (forwarded_by).
	Via string
}

// WriteRequest describes one catalog change for the audit record.
type WriteRequest struct {
	Caller Caller
	Action string // audit action name, e.g. "GRANT", "CREATE CONNECTION"
	// SQLState maps an error to its SQLSTATE for the audit record (optional).
	SQLState func(error) string
}

// Options configure a Service.
type Options struct {
	// Store persists the catalog (change records and snapshots).
	Store Store
	// Events is the event stream the audit records of catalog changes are
	// forwarded to; default: Store, if it is an EventStore (memstore).
	Events EventStore
	// Audit records the audit events of statements that change nothing
	// (refused ones included); default: Events. mandate serve passes its
	// AuditLog (group commit).
	Audit   AuditWriter
	Keyring *Keyring
	Logger  zerolog.Logger
	Now     func() time.Time
	// AdminVerifier is the SCRAM verifier of the built-in admin user, used
	// only when the store is empty (first start).
	AdminVerifier string
	// MaxBatch bounds how many statements are group-committed together.
	MaxBatch int
	// SnapshotEvery writes a snapshot once this many change records were
	// committed since the last one (default DefaultSnapshotEvery).
	SnapshotEvery int
	// MaxStaleness, for a store shared with other processes (Watcher): a
	// replica that has not confirmed for this long that it applied every
	// committed change is stale (Stale), and decisions fail closed
	// (default DefaultMaxStaleness).
	MaxStaleness time.Duration
	// PollInterval, for a shared store: how often the newest revision is
	// polled besides the store's wake-ups (default DefaultPollInterval).
	PollInterval time.Duration
	// LockHeadAfter, for a store that can hold its head for one writer
	// (HeadLocker): a batch that lost the race this many times in a row
	// takes the head before its next attempt, which then cannot lose
	// (default DefaultLockHeadAfter). Holding the head keeps the other
	// replicas' appends waiting for a round trip and the planning, so
	// only a batch that keeps losing does.
	LockHeadAfter int
	// QueueFor, for a store that can hold its head (HeadLocker): after a
	// lost race, every batch takes the head before it plans, so that
	// writers of a contended head queue in the store instead of planning
	// and sending appends that lose (and reading the winner's records
	// back); as long as other writers' commits come between this
	// replica's own, it keeps queueing, and this long after the last sign
	// of another writer it appends without taking the head again (default
	// DefaultQueueFor; negative: never, only Options.LockHeadAfter).
	QueueFor time.Duration
	// ForwardLease, for replicas sharing one event stream: only the
	// replica holding the lease forwards the audit records of catalog
	// changes to it (the others follow its AuditedRevision, forward for
	// their own readers in SyncAudit, and take over when the holder
	// stops); nil: this Service forwards every change it commits or
	// applies.
	ForwardLease ForwardLease
	// ForwardTakeover, with a ForwardLease: a replica that does not hold
	// the lease forwards itself once the shared event stream has lacked a
	// change's audit this long (a holder alive but not forwarding)
	// (default DefaultForwardTakeover).
	ForwardTakeover time.Duration
	// Remote, for replicas sharing a store: statements that carry a
	// forwarded form (Statement.Forward) are sent to the writer replica
	// instead of being appended here (see remote.go); nil: never.
	Remote RemoteWriter
}

// Defaults of Options.
const (
	DefaultSnapshotEvery = 4096
	DefaultMaxStaleness  = 5 * time.Second
	DefaultPollInterval  = 50 * time.Millisecond
	DefaultLockHeadAfter = 3
	// DefaultQueueFor is Options.QueueFor's default.
	DefaultQueueFor = 250 * time.Millisecond
	// DefaultForwardTakeover is Options.ForwardTakeover's default.
	DefaultForwardTakeover = 10 * time.Second
	// commitTimeout bounds one append of a batch to the store.
	commitTimeout = 30 * time.Second
	// maxAttempts bounds how often a batch that lost the race to another
	// replica is planned again before its statements fail with 40001.
	maxAttempts = 16
)

// Service is the catalog: the in-memory Model kept in step with a durable
// Store. Reads take a read lock on the Model; writes are queued to a single
// committer goroutine that plans each statement against the Model, appends
// the batch's changes to the store in one write (group commit), and only
// then answers the callers. A statement's effects are visible to readers
// only after its commit is durable: the committer holds the write lock
// across planning, takes the batch's effects out while the store writes,
// and applies them once the write succeeded.
//
// The audit records of a change are part of its change record; the
// Service forwards them to the event stream in the background (forward.go),
// so a flooded event stream never holds up a catalog write. Statements
// that change nothing are audited through Options.Audit before they are
// answered.
//
// On a store shared with other processes (replicas), revisions are
// assigned by the store: a batch planned against an older revision is
// refused by it (CodeConflict), the Service applies the newer records and
// plans the batch again. It follows the store (follow.go): polling its
// newest revision and waking on its hints, and reports how stale it may
// be (Staleness, Stale).
type Service struct {
	store   Store
	events  EventStore
	audit   AuditWriter
	watcher Watcher // nil: the store is this process's alone
	carrier Carrier // nil: notifications carry no records
	keyring *Keyring
	log     zerolog.Logger
	now     func() time.Time
	max     int
	opts    Options

	mu    sync.RWMutex
	model *Model
	// pending is the transaction block whose changes are left applied to
	// model after its last use (so that its next statement need not apply
	// them again); dirty says so to readers, who take them out first (see
	// cleanLocked). Both change only under the write lock.
	pending *Block
	dirty   atomic.Bool

	queue   chan *writeReq
	catchup chan struct{} // cap 1: the follower saw newer records
	// wanted is the newest revision the follower saw in the store: the
	// committer catches up only while it is behind it (a notification of
	// this replica's own commit needs no read).
	wanted  atomic.Int64
	done    chan struct{}
	stopped chan struct{} // the committer returned
	bg      sync.WaitGroup
	closeMu sync.Once

	subMu sync.Mutex
	subs  map[chan Revision]struct{}

	fwd  forwarder
	snap snapshotter
	sync syncState

	// The committer's view of other writers of a shared store (committer
	// only): until queueUntil its batches take the head first (QueueFor);
	// lastOwn is the revision of its last commit.
	queueUntil time.Time
	lastOwn    Revision
}

// Statement is one catalog change: its audit description and the planner
// call that makes it (see Write).
type Statement struct {
	Req WriteRequest
	Fn  func(tx *Tx) error
	// Forward is the statement in a form the writer replica plans it from
	// (Options.Remote), as Req.Caller; nil: it is committed here.
	Forward []byte
}

// writeReq is one change queued for the committer: one statement (Write)
// or the statements of a transaction block (Block.Commit), which commit
// together or not at all.
type writeReq struct {
	ctx   context.Context
	stmts []Statement
	block bool      // a transaction block: a failure is a conflict (see blockConflict)
	start time.Time // Options.Now, for the audit record's latency
	enq   time.Time // the wall clock, for batching
	res   chan writeRes
}

type writeRes struct {
	rev Revision
	err error
	// audit holds the audit records of statements that changed nothing
	// (refused ones included): the caller records them before answering.
	audit []AuditEvent
}

// Open loads the catalog from the store (bootstrapping an empty store) and
// starts the committer, the forwarder of change audit records and, for a
// shared store, the follower.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.SnapshotEvery <= 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	if o.MaxStaleness <= 0 {
		o.MaxStaleness = DefaultMaxStaleness
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.ForwardTakeover <= 0 {
		o.ForwardTakeover = DefaultForwardTakeover
	}
	if o.LockHeadAfter <= 0 {
		o.LockHeadAfter = DefaultLockHeadAfter
	}
	if o.QueueFor == 0 {
		o.QueueFor = DefaultQueueFor
	}
	if o.Keyring == nil {
		return nil, Errorf(CodeInvalidArgument, "catalog: a keyring is required")
	}
	if o.Store == nil {
		return nil, Errorf(CodeInvalidArgument, "catalog: a store is required")
	}
	if o.Events == nil {
		ev, ok := o.Store.(EventStore)
		if !ok {
			return nil, Errorf(CodeInvalidArgument, "catalog: an event store is required")
		}
		o.Events = ev
	}
	if o.Audit == nil {
		o.Audit = o.Events
	}
	s := &Service{store: o.Store, events: o.Events, audit: o.Audit, keyring: o.Keyring, log: o.Logger, now: o.Now,
		max: o.MaxBatch, opts: o,
		queue: make(chan *writeReq, 1024), catchup: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{}),
		subs: map[chan Revision]struct{}{}}
	s.watcher, _ = o.Store.(Watcher)
	if s.watcher != nil {
		s.carrier, _ = o.Store.(Carrier)
	}
	loaded := time.Now()
	st, changes, err := o.Store.Load(ctx)
	if err != nil {
		return nil, err
	}
	m, err := modelOf(st, changes)
	if err != nil {
		return nil, err
	}
	s.model = m
	s.snap.last = st.Revision
	mark, err := o.Events.AuditedRevision(ctx)
	if err != nil {
		return nil, err
	}
	if mark > m.rev {
		s.log.Warn().Int64("event_store", int64(mark)).Int64("catalog", int64(m.rev)).
			Msg("the event store holds the audit of catalog revisions this catalog does not have")
	}
	s.fwd.init(mark, m.rev, o.ForwardLease, o.ForwardTakeover)
	s.sync.init(s, loaded)
	go s.committer()
	s.bg.Add(1)
	go s.forwarder()
	if o.ForwardLease != nil {
		s.bg.Add(1)
		go s.leaseLoop()
	}
	if s.watcher != nil {
		s.bg.Add(1)
		go s.follow()
	}
	// The committer (and the follower) run: read the Model under the lock.
	var empty, old bool
	s.Read(func(m *Model) { empty, old = m.metastore == 0, m.missingSystemTables() })
	if empty {
		if err := s.bootstrap(ctx, o.AdminVerifier); err != nil {
			s.Close()
			return nil, err
		}
	} else if old {
		// A catalog bootstrapped before the system tables existed.
		_, err := s.Write(ctx, WriteRequest{Caller: Caller{Principal: AdminUser, Statement: "-- add system tables"}, Action: "UPGRADE"},
			func(tx *Tx) error {
				if !tx.m.missingSystemTables() { // another replica added them
					tx.noAudit = true
					return nil
				}
				return tx.addSystemTables()
			})
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	if len(changes) >= o.SnapshotEvery {
		s.maybeSnapshot(s.Revision())
	}
	return s, nil
}

// Load reads the whole catalog from a row store into a new Model.
func Load(ctx context.Context, st Reader) (*Model, error) {
	state, err := ReadState(ctx, st)
	if err != nil {
		return nil, err
	}
	return modelOf(state, nil)
}

func (s *Service) bootstrap(ctx context.Context, adminVerifier string) error {
	_, err := s.Write(ctx, WriteRequest{Caller: Caller{Principal: AdminUser, Statement: "-- bootstrap"}, Action: "BOOTSTRAP"},
		func(tx *Tx) error {
			if tx.m.metastore != 0 { // another replica bootstrapped the store first
				tx.noAudit = true
				return nil
			}
			return tx.bootstrap(adminVerifier)
		})
	return err
}

// Close stops the committer (queued writes fail with CodeUnavailable) and
// the background work; the audit records of committed changes not yet
// forwarded are forwarded first (for a few seconds at most: what is left
// is forwarded at the next start). It does not close the stores.
func (s *Service) Close() error {
	s.closeMu.Do(func() {
		close(s.done)
		<-s.stopped
		s.sync.stop()
		s.bg.Wait()
		if s.fwd.holding.Load() {
			s.flushForward(closeForwardTimeout)
		}
		if s.fwd.lease != nil {
			s.fwd.lease.Release()
		}
	})
	return nil
}

// Read runs fn with the committed Model under the read lock. fn must not
// keep the Model.
func (s *Service) Read(fn func(m *Model)) {
	s.mu.RLock()
	if !s.dirty.Load() {
		defer s.mu.RUnlock()
		fn(s.model)
		return
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cleanLocked()
	fn(s.model)
}

// Revision returns the current committed revision.
func (s *Service) Revision() Revision {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.model.rev
}

// Keyring returns the keyring that seals connection secrets.
func (s *Service) Keyring() *Keyring { return s.keyring }

// View is the committed catalog as rows and the audit events, as a store
// would return them (Service.Store).
type View interface {
	Reader
	AuditReader
}

// Store returns a View of the committed catalog (rows in the order of the
// row stores) and of the event stream (after the audit records of every
// committed change were forwarded to it), for tests and diagnostics.
func (s *Service) Store() View { return view{s} }

type view struct{ s *Service }

func (v view) state() *State {
	var st *State
	v.s.Read(func(m *Model) { st = m.State() })
	return st
}

func (v view) Meta(ctx context.Context) (Meta, error) {
	st := v.state()
	return Meta{Revision: st.Revision, NextID: st.NextID}, ctx.Err()
}
func (v view) ListPrincipals(ctx context.Context) ([]Principal, error) {
	return v.state().Principals, ctx.Err()
}
func (v view) ListMemberships(ctx context.Context) ([]Membership, error) {
	return v.state().Memberships, ctx.Err()
}
func (v view) ListSecurables(ctx context.Context) ([]Securable, error) {
	return v.state().Securables, ctx.Err()
}
func (v view) ListGrants(ctx context.Context) ([]Grant, error) { return v.state().Grants, ctx.Err() }
func (v view) ListAudit(ctx context.Context, since time.Time, limit int) ([]AuditEvent, error) {
	if err := v.s.SyncAudit(ctx); err != nil {
		return nil, err
	}
	return v.s.events.ListAudit(ctx, since, limit)
}

// Subscribe returns a channel that receives the new revision after every
// commit (latest value only; slow receivers miss intermediate revisions but
// always get the newest). cancel releases it.
func (s *Service) Subscribe() (ch <-chan Revision, cancel func()) {
	c := make(chan Revision, 1)
	s.subMu.Lock()
	s.subs[c] = struct{}{}
	s.subMu.Unlock()
	return c, func() {
		s.subMu.Lock()
		delete(s.subs, c)
		s.subMu.Unlock()
	}
}

func (s *Service) publish(rev Revision) {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for c := range s.subs {
		select {
		case c <- rev:
		default:
			select { // replace the stale value
			case <-c:
			default:
			}
			select {
			case c <- rev:
			default:
			}
		}
	}
}

// Write runs fn as one catalog change: fn plans the change through tx (its
// checks see the committed state plus its own earlier changes); the change
// is committed durably together with its audit record before Write returns.
// A failed fn changes nothing but is audited too (refused GRANTs included).
// Changes that must commit together go through a Block (see Begin).
func (s *Service) Write(ctx context.Context, req WriteRequest, fn func(tx *Tx) error) (Revision, error) {
	return s.submit(ctx, []Statement{{Req: req, Fn: fn}}, false)
}

// WriteStatement is Write of a Statement: one that carries a forwarded
// form (Statement.Forward) may be committed by the writer replica
// (Options.Remote).
func (s *Service) WriteStatement(ctx context.Context, st Statement) (Revision, error) {
	return s.submit(ctx, []Statement{st}, false)
}

// submit queues statements as one change for the committer and waits for
// the outcome.
func (s *Service) submit(ctx context.Context, stmts []Statement, block bool) (Revision, error) {
	if rev, ok, err := s.forwarded(ctx, stmts, block); ok {
		return rev, err
	}
	return s.submitLocal(ctx, stmts, block)
}

// submitLocal queues statements for this replica's committer.
func (s *Service) submitLocal(ctx context.Context, stmts []Statement, block bool) (Revision, error) {
	r := s.enqueue(ctx, stmts, block)
	return s.recordAudit(ctx, r.rev, r.audit, r.err)
}

// enqueue queues statements for this replica's committer and waits for the
// outcome.
func (s *Service) enqueue(ctx context.Context, stmts []Statement, block bool) writeRes {
	w, err := s.queueWrite(ctx, stmts, block)
	if err != nil {
		return writeRes{err: err}
	}
	return <-w.res // always wait: once queued the change may commit
}

// queueWrite queues statements for this replica's committer; the outcome
// comes on the request's res (error: not queued).
func (s *Service) queueWrite(ctx context.Context, stmts []Statement, block bool) (*writeReq, error) {
	w := &writeReq{ctx: ctx, stmts: stmts, block: block, start: s.now(), enq: time.Now(), res: make(chan writeRes, 1)}
	select {
	case s.queue <- w:
		return w, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.done:
		return nil, Errorf(CodeUnavailable, "catalog is shutting down")
	}
}

// recordAudit records the audit records of statements that changed
// nothing before their answer (rev, err) goes out: no answer without its
// audit record.
func (s *Service) recordAudit(ctx context.Context, rev Revision, audit []AuditEvent, err error) (Revision, error) {
	if len(audit) > 0 {
		if aerr := s.audit.AppendAudit(ctx, audit...); aerr != nil {
			s.log.Error().Err(aerr).Str("action", audit[0].Action).Msg("could not audit a statement that changed nothing")
			if err == nil {
				rev, err = 0, &Error{Code: CodeUnavailable, Msg: "the statement's audit record could not be written", Err: aerr}
			}
		}
	}
	return rev, err
}

func (s *Service) committer() {
	defer close(s.stopped)
	var (
		lastSize int           // requests the last commit answered
		lastEnd  time.Time     // when it answered them
		lastDur  time.Duration // how long it took
	)
	for {
		var first *writeReq
		select {
		case first = <-s.queue:
		case <-s.catchup:
			if w := Revision(s.wanted.Load()); w > s.Revision() {
				s.catchUpTo(w)
			}
			continue
		case <-s.done:
			for {
				select {
				case w := <-s.queue:
					w.res <- writeRes{err: Errorf(CodeUnavailable, "catalog is shutting down")}
				default:
					return
				}
			}
		}
		batch := []*writeReq{first}
		returning := 0 // requests sent after the last commit answered
		if first.enq.After(lastEnd) {
			returning++
		}
	drain:
		for len(batch) < s.max {
			select {
			case w := <-s.queue:
				batch = append(batch, w)
				if w.enq.After(lastEnd) {
					returning++
				}
			default:
				break drain
			}
		}
		// The clients answered by the last commit are about to send their
		// next statement (those in the batch queued while it committed):
		// wait a moment for them, so that one commit carries them all. The
		// wait is bounded by half the last commit's time (a store with slow
		// commits, PostgreSQL, gains most), and ends as soon as they are in.
		if returning < lastSize && len(batch) < s.max {
			t := time.NewTimer(min(maxGroupWait, max(groupWait, lastDur/2)))
		wait:
			for returning < lastSize && len(batch) < s.max {
				select {
				case w := <-s.queue:
					batch = append(batch, w)
					if w.enq.After(lastEnd) {
						returning++
					}
				case <-t.C:
					break wait
				}
			}
			t.Stop()
		}
		// Another replica announced a newer revision: apply it before
		// planning, so that the batch is not refused for a stale base.
		if s.watcher != nil {
			if a := s.watcher.Announced(); a > s.Revision() {
				s.catchUpTo(a)
			}
		}
		t0 := time.Now()
		s.commitBatch(batch)
		lastSize, lastEnd, lastDur = len(batch), time.Now(), time.Since(t0)
	}
}

// Bounds of the committer's wait to fill a batch.
const (
	groupWait    = 200 * time.Microsecond
	maxGroupWait = 2 * time.Millisecond
)

// commitBatch commits a batch; one that loses the race to another writer
// of a shared store is planned again on the newer catalog.
//
// On a store that can hold its head for one writer (HeadLocker), a batch
// that lost Options.LockHeadAfter times in a row makes its next attempt
// one that cannot lose: the committer takes the head (queueing behind the
// writer holding it), applies what it lacks and plans again while the
// other replicas' appends wait. Else the replica that just won, which
// knows the new head first, could win again and again while a loser's
// statements waited (and failed with 40001 after maxAttempts rounds).
//
// While the head is contended (Options.QueueFor) a batch takes the head
// before its first attempt: an append that waits for another writer's
// lock on the head loses anyway once that writer commits, so the planning,
// the encoding and the sending of it would be thrown away.
func (s *Service) commitBatch(batch []*writeReq) {
	var held HeldHead
	defer func() {
		if held != nil {
			held.Release()
		}
	}()
	if s.opts.QueueFor > 0 && s.now().Before(s.queueUntil) {
		if held = s.lockHead(); held != nil {
			// Statements queued while it waited join the batch.
			batch = s.drain(batch)
		}
	}
	for attempt := 1; ; attempt++ {
		results, conflict := s.tryCommit(batch, attempt < maxAttempts, held)
		if held != nil { // appended (which released it), or nothing to append
			held.Release()
			held = nil
		}
		if conflict != nil {
			s.queueUntil = s.now().Add(s.opts.QueueFor)
			s.applyConflict(conflict)
			if attempt < maxAttempts {
				// Statements queued meanwhile join the next attempt: one
				// commit carries them instead of another round of waits.
				batch = s.drain(batch)
				if attempt >= s.opts.LockHeadAfter {
					held = s.lockHead()
				}
				continue
			}
			results = make([]writeRes, len(batch))
			for i := range results {
				results[i].err = errLostRace(attempt)
			}
		}
		for i, w := range batch {
			w.res <- results[i]
		}
		return
	}
}

// drain adds the queued requests to batch, up to Options.MaxBatch,
// without waiting.
func (s *Service) drain(batch []*writeReq) []*writeReq {
	for len(batch) < s.max {
		select {
		case w := <-s.queue:
			batch = append(batch, w)
		default:
			return batch
		}
	}
	return batch
}

// lostRace is how a batch lost the race to another writer: what the store
// told with its refusal (a zero Conflict if nothing), and when the append
// was sent.
type lostRace struct {
	Conflict
	sent time.Time
}

// applyConflict applies the records a refused append brought back and
// reads the rest from the store, if any are missing (committer only).
func (s *Service) applyConflict(c *lostRace) {
	if len(c.Newer) > 0 {
		if err := s.applyForeign(c.Newer, true); err != nil {
			s.log.Error().Err(err).Msg("catalog: applying change records failed; reloading")
			s.reload()
			return
		}
	}
	if c.Head == 0 || s.Revision() < c.Head {
		s.catchUp()
		return
	}
	// The store read the records after the append was sent: every change
	// committed before then is applied.
	s.sync.synced(c.sent)
}

// lockHead takes the head of a store that can hold it (HeadLocker) and
// applies the records this replica lacks; nil if the store cannot or the
// lock failed (the next attempt appends without it).
func (s *Service) lockHead() HeldHead {
	locker, ok := s.store.(HeadLocker)
	if !ok {
		return nil
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	// The change audit only if this replica forwards it (as catchUpTo).
	audit := s.fwd.holding.Load()
	held, c, err := locker.LockHead(ctx, s.Revision(), audit)
	if err != nil {
		s.log.Warn().Err(err).Msg("catalog: taking the store's head failed; appending without it")
		return nil
	}
	if len(c.Newer) > 0 {
		if err := s.applyForeign(c.Newer, audit); err != nil {
			held.Release()
			s.log.Error().Err(err).Msg("catalog: applying change records failed; reloading")
			s.reload()
			return nil
		}
	}
	if s.Revision() < c.Head {
		s.catchUp() // more than a page behind
		if s.Revision() < c.Head {
			held.Release()
			return nil
		}
	}
	if c.Head > s.lastOwn {
		// Another writer committed since this replica's last commit: the
		// head is still contended.
		s.queueUntil = s.now().Add(s.opts.QueueFor)
	}
	// The records were read after the head was taken: every change
	// committed before is applied, and none can be committed meanwhile.
	s.sync.synced(started)
	return held
}

// errLostRace is the error of statements whose batch lost the race to
// other replicas' changes attempts times in a row.
func errLostRace(attempts int) error {
	return &Error{Code: CodeConflict, Msg: "could not serialize access due to concurrent update",
		Detail: fmt.Sprintf("other replicas committed catalog changes first, %d times in a row; nothing was applied", attempts),
		Hint:   "retry the statement"}
}

// tryCommit plans the batch against the committed catalog and appends its
// changes to the store. A conflict means another writer appended first:
// nothing was applied and no one was answered. mayRetry: a failed
// statement may be planned again if the store is ahead (else its error
// stands).
//
// held, if not nil, is the store's head taken by lockHead: the append goes
// through it.
func (s *Service) tryCommit(batch []*writeReq, mayRetry bool, held HeldHead) (results []writeRes, conflict *lostRace) {
	results = make([]writeRes, len(batch))
	var (
		undo    []op
		ops     []op
		changes []Change
		ok      []int
		refused bool // a statement failed
	)
	s.mu.Lock()
	s.cleanLocked()
	startRev := s.model.rev
	rev := startRev
	for i, w := range batch {
		if err := w.ctx.Err(); err != nil {
			results[i].err = err
			continue
		}
		// The statements of one request commit together: planned in order
		// (each sees the ones before), and all undone if one fails.
		var (
			reqUndo, reqOps []op
			txs             []*Tx
			failed          bool
		)
		for k, st := range w.stmts {
			tx := &Tx{m: s.model, svc: s, name: st.Req.Caller.Principal}
			err := s.plan(tx, st.Fn)
			reqUndo = appendOps(reqUndo, tx.undo)
			if err != nil {
				for j := len(reqUndo) - 1; j >= 0; j-- {
					reqUndo[j].apply(s.model)
				}
				results[i].err = err
				if w.block {
					results[i].err = blockConflict(k, st, err)
				}
				if !tx.noAudit {
					results[i].audit = append(results[i].audit, s.auditEvent(w.start, st.Req, tx, 0, err))
				}
				failed = true
				break
			}
			txs = append(txs, tx)
			reqOps = appendOps(reqOps, tx.ops)
		}
		if failed {
			refused = true
			continue
		}
		if len(reqOps) > 0 {
			rev++
		}
		var events []AuditEvent
		for k, tx := range txs {
			if !tx.noAudit {
				events = append(events, s.auditEvent(w.start, w.stmts[k].Req, tx, rev, nil))
			}
		}
		results[i].rev = rev
		ok = append(ok, i)
		if len(reqOps) == 0 { // changed nothing: audited by the caller
			results[i].audit = events
			continue
		}
		undo = appendOps(undo, reqUndo)
		ops = appendOps(ops, reqOps)
		c := Change{Revision: rev, NextID: s.model.nextID, Ops: make([]ChangeOp, len(reqOps)), Audit: events}
		for j, o := range reqOps {
			c.Ops[j] = o.record()
		}
		changes = append(changes, c)
	}
	// Take the batch's effects out of the Model again while the store
	// commits, so that readers never see an undurable change and are not
	// blocked by the fsync; re-apply them once the commit succeeded (the
	// committer is the only writer, so the result is the same).
	for j := len(undo) - 1; j >= 0; j-- {
		undo[j].apply(s.model)
	}
	nextID := s.model.nextID
	s.mu.Unlock()
	// A statement that failed on a shared catalog may have failed only
	// because this replica has not yet applied another's change (an object
	// created there a moment ago): if the database is ahead, plan again
	// after catching up, as for a lost race. A batch holding the head
	// planned on its newest revision: no need to ask.
	if refused && mayRetry && held == nil && s.watcher != nil && s.behind() {
		return nil, &lostRace{}
	}
	if len(changes) == 0 {
		return results, nil
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	var commitErr error
	if held != nil {
		commitErr = held.Append(ctx, startRev, changes)
	} else {
		commitErr = s.store.Append(ctx, startRev, changes)
	}
	cancel()
	if IsCode(commitErr, CodeConflict) {
		lost := &lostRace{sent: started}
		if c := (*Conflict)(nil); errors.As(commitErr, &c) && (len(c.Newer) == 0 || c.Newer[0].Revision == startRev+1) {
			lost.Conflict = *c
		}
		return nil, lost
	}
	s.mu.Lock()
	s.cleanLocked() // a block may have been used while the store committed
	if commitErr == nil {
		for _, o := range ops {
			o.apply(s.model)
		}
		s.model.rev = rev
		s.model.nextID = max(s.model.nextID, nextID)
	}
	s.mu.Unlock()
	if commitErr != nil {
		s.log.Error().Err(commitErr).Int("statements", len(batch)).Msg("catalog commit failed")
		err := commitErr
		if CodeOf(err) == CodeInternal {
			err = &Error{Code: CodeUnavailable, Msg: "catalog store commit failed; the change was not applied", Err: commitErr}
		}
		for _, i := range ok {
			results[i] = writeRes{err: err}
		}
		return results, nil
	}
	s.lastOwn = rev
	s.sync.synced(started)
	s.publish(rev)
	s.forward(changes, true)
	s.maybeSnapshot(rev)
	return results, nil
}

// appendOps is append(dst, src...), but src itself when dst is empty: a
// batch of one statement plans without copying its ops and undo steps
// (the slices appended to are the planner's, which nothing reads past
// their length).
func appendOps(dst, src []op) []op {
	if len(dst) == 0 {
		return src
	}
	return append(dst, src...)
}

// behind reports whether the store's head is past the committed catalog
// (false when the store cannot tell: the statement's own error stands).
func (s *Service) behind() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	head, err := s.store.Head(ctx)
	return err == nil && head > s.Revision()
}

// plan runs fn, converting a panic into an internal error so that one bad
// statement cannot take the catalog down.
func (s *Service) plan(tx *Tx, fn func(tx *Tx) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error().Interface("panic", r).Msg("catalog statement panicked")
			err = Errorf(CodeInternal, "internal error")
		}
	}()
	if err := tx.resolveCaller(); err != nil {
		return err
	}
	return fn(tx)
}

func (s *Service) auditEvent(start time.Time, req WriteRequest, tx *Tx, rev Revision, err error) AuditEvent {
	c := req.Caller
	params := statementParams(c.Statement)
	if c.Via != "" {
		q, _ := json.Marshal(map[string]string{"statement": c.Statement, "forwarded_by": c.Via})
		params = string(q)
	}
	ev := AuditEvent{
		EventID: NewEventID(), Time: s.now().UTC(), Service: "sql", Action: req.Action,
		UserIdentity: c.Principal, RunBy: c.Principal, SourceIP: c.SourceIP, UserAgent: c.UserAgent,
		SessionID: c.SessionID, RequestID: c.RequestID, SecurableType: tx.auditType, SecurableName: tx.auditName,
		RequestParams: params, Decision: "allow", Revision: rev,
		LatencyMs: float64(s.now().Sub(start).Microseconds()) / 1000,
	}
	if err != nil {
		ev.StatusCode = 1
		ev.ErrorMessage = err.Error()
		if req.SQLState != nil {
			ev.SQLState = req.SQLState(err)
		}
		if IsCode(err, CodePermissionDenied) || IsCode(err, CodeReadOnly) {
			ev.Decision = "deny"
			ev.Reason = err.Error()
		} else {
			ev.Decision = ""
		}
	}
	return ev
}

// statementParams is a change's audit request_params,
// {"statement": stmt}, as json.Marshal writes the map (escapes included,
// TestStatementParamsMatchEncodingJSON) without its reflection: one string
// per statement.
func statementParams(stmt string) string {
	const head, tail = `{"statement":"`, `"}`
	for i := 0; i < len(stmt); i++ {
		if c := stmt[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(map[string]string{"statement": stmt}) // escapes: encoding/json's own
			return string(q)
		}
	}
	var b strings.Builder
	b.Grow(len(head) + len(stmt) + len(tail))
	b.WriteString(head)
	b.WriteString(stmt)
	b.WriteString(tail)
	return b.String()
}

// AppendAudit writes events outside a catalog change (e.g. failed logins)
// through Options.Audit.
func (s *Service) AppendAudit(ctx context.Context, events ...AuditEvent) error {
	return s.audit.AppendAudit(ctx, events...)
}
