package catalog

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
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
	Store   Store
	Keyring *Keyring
	Logger  zerolog.Logger
	Now     func() time.Time
	// AdminVerifier is the SCRAM verifier of the built-in admin user, used
	// only when the store is empty (first start).
	AdminVerifier string
	// MaxBatch bounds how many statements are group-committed together.
	MaxBatch int
}

// Service is the catalog: the in-memory Model kept in step with a durable
// Store. Reads take a read lock on the Model; writes are queued to a single
// committer goroutine that plans each statement against the Model, writes
// the batch to the store in one transaction (group commit), and only then
// answers the callers. A statement's effects are visible to readers only
// after its commit is durable: the committer holds the write lock across
// plan and commit, and undoes the batch from the Model if the commit fails.
type Service struct {
	store   Store
	keyring *Keyring
	log     zerolog.Logger
	now     func() time.Time
	max     int

	mu    sync.RWMutex
	model *Model
	// pending is the transaction block whose changes are left applied to
	// model after its last use (so that its next statement need not apply
	// them again); dirty says so to readers, who take them out first (see
	// cleanLocked). Both change only under the write lock.
	pending *Block
	dirty   atomic.Bool

	queue   chan *writeReq
	done    chan struct{}
	stopped chan struct{}
	closeMu sync.Once

	subMu sync.Mutex
	subs  map[chan Revision]struct{}
}

// Statement is one catalog change: its audit description and the planner
// call that makes it (see Write).
type Statement struct {
	Req WriteRequest
	Fn  func(tx *Tx) error
}

// writeReq is one change queued for the committer: one statement (Write)
// or the statements of a transaction block (Block.Commit), which commit
// together or not at all.
type writeReq struct {
	ctx   context.Context
	stmts []Statement
	block bool // a transaction block: a failure is a conflict (see blockConflict)
	start time.Time
	res   chan writeRes
}

type writeRes struct {
	rev Revision
	err error
}

// Open loads the catalog from the store (bootstrapping an empty store) and
// starts the committer.
func Open(ctx context.Context, o Options) (*Service, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 512
	}
	if o.Keyring == nil {
		return nil, Errorf(CodeInvalidArgument, "catalog: a keyring is required")
	}
	s := &Service{store: o.Store, keyring: o.Keyring, log: o.Logger, now: o.Now, max: o.MaxBatch,
		queue: make(chan *writeReq, 1024), done: make(chan struct{}), stopped: make(chan struct{}),
		subs: map[chan Revision]struct{}{}}
	m, err := Load(ctx, o.Store)
	if err != nil {
		return nil, err
	}
	s.model = m
	go s.committer()
	if m.metastore == 0 {
		if err := s.bootstrap(ctx, o.AdminVerifier); err != nil {
			s.Close()
			return nil, err
		}
	} else if m.missingSystemTables() {
		// A catalog bootstrapped before the system tables existed.
		_, err := s.Write(ctx, WriteRequest{Caller: Caller{Principal: AdminUser, Statement: "-- add system tables"}, Action: "UPGRADE"},
			func(tx *Tx) error { return tx.addSystemTables() })
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Load reads the whole catalog from a store into a new Model.
func Load(ctx context.Context, st Reader) (*Model, error) {
	m := NewModel()
	meta, err := st.Meta(ctx)
	if err != nil {
		return nil, err
	}
	ps, err := st.ListPrincipals(ctx)
	if err != nil {
		return nil, err
	}
	for i := range ps {
		p := ps[i]
		m.putPrincipal(&p)
	}
	ms, err := st.ListMemberships(ctx)
	if err != nil {
		return nil, err
	}
	for _, x := range ms {
		m.addMember(x)
	}
	ss, err := st.ListSecurables(ctx)
	if err != nil {
		return nil, err
	}
	sort.Slice(ss, func(i, j int) bool { return ss[i].ID < ss[j].ID }) // parents before children
	for i := range ss {
		x := ss[i]
		m.putSecurable(&x)
	}
	gs, err := st.ListGrants(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range gs {
		m.addGrant(g)
	}
	m.rev = meta.Revision
	if meta.NextID > m.nextID {
		m.nextID = meta.NextID
	}
	return m, nil
}

func (s *Service) bootstrap(ctx context.Context, adminVerifier string) error {
	_, err := s.Write(ctx, WriteRequest{Caller: Caller{Principal: AdminUser, Statement: "-- bootstrap"}, Action: "BOOTSTRAP"},
		func(tx *Tx) error { return tx.bootstrap(adminVerifier) })
	return err
}

// Close stops the committer; queued writes fail with CodeUnavailable.
func (s *Service) Close() error {
	s.closeMu.Do(func() {
		close(s.done)
		<-s.stopped
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

// Store returns the underlying store.
func (s *Service) Store() Store { return s.store }

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

// submit queues statements as one change for the committer and waits for
// the outcome.
func (s *Service) submit(ctx context.Context, stmts []Statement, block bool) (Revision, error) {
	w := &writeReq{ctx: ctx, stmts: stmts, block: block, start: s.now(), res: make(chan writeRes, 1)}
	select {
	case s.queue <- w:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-s.done:
		return 0, Errorf(CodeUnavailable, "catalog is shutting down")
	}
	r := <-w.res // always wait: once queued the change may commit
	return r.rev, r.err
}

func (s *Service) committer() {
	defer close(s.stopped)
	lastSize := 0
	for {
		var first *writeReq
		select {
		case first = <-s.queue:
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
	drain:
		for len(batch) < s.max {
			select {
			case w := <-s.queue:
				batch = append(batch, w)
			default:
				break drain
			}
		}
		// Clients answered by the last commit are about to send their next
		// statement: wait a moment for them so one commit carries them all.
		if len(batch) < lastSize && len(batch) < s.max {
			t := time.NewTimer(groupWait)
		wait:
			for len(batch) < lastSize && len(batch) < s.max {
				select {
				case w := <-s.queue:
					batch = append(batch, w)
				case <-t.C:
					break wait
				}
			}
			t.Stop()
		}
		lastSize = len(batch)
		s.commitBatch(batch)
	}
}

// groupWait bounds how long the committer waits to fill a batch.
const groupWait = 200 * time.Microsecond

func (s *Service) commitBatch(batch []*writeReq) {
	results := make([]writeRes, len(batch))
	var (
		undo   []op
		ops    []op
		events []AuditEvent
		ok     []int
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
			reqUndo = append(reqUndo, tx.undo...)
			if err != nil {
				for j := len(reqUndo) - 1; j >= 0; j-- {
					reqUndo[j].apply(s.model)
				}
				results[i].err = err
				if w.block {
					results[i].err = blockConflict(k, st, err)
				}
				if !tx.noAudit {
					events = append(events, s.auditEvent(w.start, st.Req, tx, 0, err))
				}
				failed = true
				break
			}
			txs = append(txs, tx)
			reqOps = append(reqOps, tx.ops...)
		}
		if failed {
			continue
		}
		if len(reqOps) > 0 {
			rev++
			undo = append(undo, reqUndo...)
			ops = append(ops, reqOps...)
		}
		results[i].rev = rev
		ok = append(ok, i)
		for k, tx := range txs {
			events = append(events, s.auditEvent(w.start, w.stmts[k].Req, tx, rev, nil))
		}
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
	var commitErr error
	if len(events) > 0 || len(ops) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		commitErr = s.store.ReadWriteTx(ctx, func(ctx context.Context, stx RWTx) error {
			for _, o := range ops {
				if err := o.write(ctx, stx); err != nil {
					return err
				}
			}
			if len(events) > 0 {
				if err := stx.AppendAudit(ctx, events...); err != nil {
					return err
				}
			}
			if rev != startRev {
				return stx.SetMeta(ctx, Meta{Revision: rev, NextID: nextID})
			}
			return nil
		})
		cancel()
	}
	s.mu.Lock()
	s.cleanLocked() // a block may have been used while the store committed
	if commitErr != nil {
		s.log.Error().Err(commitErr).Int("statements", len(batch)).Msg("catalog commit failed")
		err := commitErr
		if CodeOf(err) == CodeInternal {
			err = &Error{Code: CodeUnavailable, Msg: "catalog store commit failed; the change was not applied", Err: commitErr}
		}
		for _, i := range ok {
			results[i] = writeRes{err: err}
		}
	} else {
		for _, o := range ops {
			o.apply(s.model)
		}
		s.model.rev = rev
	}
	s.mu.Unlock()
	if commitErr == nil && rev != startRev {
		s.publish(rev)
	}
	for i, w := range batch {
		w.res <- results[i]
	}
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
	params, _ := json.Marshal(map[string]string{"statement": c.Statement})
	ev := AuditEvent{
		EventID: uuid.NewString(), Time: s.now().UTC(), Service: "sql", Action: req.Action,
		UserIdentity: c.Principal, RunBy: c.Principal, SourceIP: c.SourceIP, UserAgent: c.UserAgent,
		SessionID: c.SessionID, RequestID: c.RequestID, SecurableType: tx.auditType, SecurableName: tx.auditName,
		RequestParams: string(params), Decision: "allow", Revision: rev,
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

// AppendAudit writes events outside a catalog change (e.g. failed logins).
func (s *Service) AppendAudit(ctx context.Context, events ...AuditEvent) error {
	return s.store.AppendAudit(ctx, events...)
}
