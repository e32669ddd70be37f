package enforce

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/policy"
)

// PolicyHook evaluates policies on a request the grants allow, when a
// policy is attached to its securable or a container (NewPolicyHook: the
// catalog's Rego policies, prepared with the snapshot). It returns the
// messages of the policies that deny it (none: allowed). An error denies
// the request (fail closed). It must be safe for concurrent use.
type PolicyHook func(ctx context.Context, snap *Snapshot, req Request) (denyMessages []string, err error)

// Options configure an Engine.
type Options struct {
	Logger zerolog.Logger
	// WaitTimeout bounds how long DecideAt waits for a revision (default 2 s).
	WaitTimeout time.Duration
	// Policy, if set, is consulted after the grants allow a request whose
	// securable (or a container of it) has a policy attached; the engine
	// then prepares the catalog's policies with every snapshot.
	Policy PolicyHook
	// Guardrails, if set, prepares the catalog's guardrail policies with
	// every snapshot (gateway/guardstage), so that no request compiles
	// one; its result is the snapshot's Guardrails. It must not fail: a
	// guardrail that does not prepare is kept as one that denies.
	Guardrails func(ctx context.Context, cs *catalog.Snapshot) any
}

// DefaultWaitTimeout is the default of Options.WaitTimeout.
const DefaultWaitTimeout = 2 * time.Second

// compileTimeout bounds preparing a snapshot's policies.
const compileTimeout = 30 * time.Second

// Engine is the decision engine: it answers from the current Snapshot and
// recompiles it in the background after every catalog commit, swapping it
// atomically. Decisions never take a catalog lock or touch the store.
type Engine struct {
	svc  *catalog.Service
	opts Options
	log  zerolog.Logger

	snap     atomic.Pointer[Snapshot]
	policies policy.Cache                  // prepared policies, reused across revisions
	swapped  atomic.Pointer[chan struct{}] // closed (and replaced) at every swap

	subMu sync.Mutex
	subs  map[chan catalog.Revision]struct{}

	unsubscribe func()
	done        chan struct{}
	stopped     chan struct{}
	closeOnce   sync.Once
}

var _ Decider = (*Engine)(nil)

// NewEngine compiles the first snapshot of svc and starts following its
// commits. ctx bounds the construction only; Close stops the engine.
func NewEngine(ctx context.Context, svc *catalog.Service, o Options) (*Engine, error) {
	if o.WaitTimeout <= 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	e := &Engine{svc: svc, opts: o, log: o.Logger.With().Str("component", "enforce").Logger(),
		subs: map[chan catalog.Revision]struct{}{}, done: make(chan struct{}), stopped: make(chan struct{})}
	ch := make(chan struct{})
	e.swapped.Store(&ch)
	// Subscribe before compiling, so that no commit falls between the two.
	revs, cancel := svc.Subscribe()
	e.unsubscribe = cancel
	if err := ctx.Err(); err != nil {
		cancel()
		return nil, err
	}
	snap, err := e.compile(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	e.snap.Store(snap)
	go e.follow(revs)
	return e, nil
}

// compile builds a snapshot of the committed catalog: the catalog's read
// lock is held only while the catalog's snapshot is taken (copying three
// slices of pointers); transitive groups are computed and policies
// prepared after it. A panic (a catalog inconsistency) is turned into an
// error: the engine keeps its last snapshot rather than crash.
func (e *Engine) compile(ctx context.Context) (snap *Snapshot, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("enforce: compiling the catalog snapshot failed: %v", r)
		}
	}()
	var cs *catalog.Snapshot
	e.svc.Read(func(m *catalog.Model) { cs = m.Snapshot() })
	cs.Warm()
	var set *policy.Set
	if e.opts.Policy != nil {
		set = e.policies.Build(ctx, cs.Revision(), cs.Policies())
	}
	snap = newSnapshot(cs, set)
	if e.opts.Guardrails != nil {
		snap.guardrails = e.opts.Guardrails(ctx, cs)
	}
	return snap, nil
}

// follow recompiles after commits. The service's subscription keeps only
// the newest revision, so commits arriving during a compile coalesce into
// one more compile at the newest revision.
func (e *Engine) follow(revs <-chan catalog.Revision) {
	defer close(e.stopped)
	for {
		select {
		case <-e.done:
			return
		case rev := <-revs:
			if rev <= e.snap.Load().rev {
				continue
			}
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), compileTimeout)
			snap, err := e.compile(ctx)
			cancel()
			if err != nil {
				e.log.Error().Err(err).Int64("revision", int64(rev)).Msg("snapshot not updated")
				continue
			}
			e.swap(snap)
			e.log.Debug().Int64("revision", int64(snap.rev)).Dur("compile", time.Since(t0)).Msg("snapshot swapped")
		}
	}
}

func (e *Engine) swap(snap *Snapshot) {
	e.snap.Store(snap)
	next := make(chan struct{})
	close(*e.swapped.Swap(&next))
	e.subMu.Lock()
	defer e.subMu.Unlock()
	for c := range e.subs {
		select { // latest value: replace a revision not yet received
		case <-c:
		default:
		}
		c <- snap.rev
	}
}

// Close stops following the catalog. Decisions keep being answered from
// the last snapshot.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		close(e.done)
		<-e.stopped
		e.unsubscribe()
	})
	return nil
}

// Snapshot returns the current snapshot.
func (e *Engine) Snapshot() *Snapshot { return e.snap.Load() }

// Revision is the revision of the current snapshot.
func (e *Engine) Revision() catalog.Revision { return e.snap.Load().rev }

// Subscribe delivers the revision of every new snapshot (latest value
// semantics). cancel releases the subscription.
func (e *Engine) Subscribe() (<-chan catalog.Revision, func()) {
	c := make(chan catalog.Revision, 1)
	e.subMu.Lock()
	e.subs[c] = struct{}{}
	e.subMu.Unlock()
	return c, func() {
		e.subMu.Lock()
		delete(e.subs, c)
		e.subMu.Unlock()
	}
}

// Allowed answers r without explaining it: grants (the on-behalf-of rule,
// see Snapshot.Allowed), then, if the grants allow and a policy applies to
// the securable, the policy hook. With canonical privilege spellings,
// names as stored and no policy that applies it does not allocate. It
// always agrees with Decide(ctx, r).Allowed.
func (e *Engine) Allowed(ctx context.Context, r Request) (bool, catalog.Revision) {
	snap := e.snap.Load()
	if e.svc.Stale() { // a replica behind its staleness bound fails closed
		return false, snap.rev
	}
	ok, n := snap.allowed(&r)
	if ok && e.opts.Policy != nil && snap.policyApplies(n) {
		msgs, err := e.opts.Policy(ctx, snap, r)
		ok = err == nil && len(msgs) == 0
	}
	return ok, snap.rev
}

// Decide answers r from the current snapshot, with the reason and the
// steps (EXPLAIN ACCESS rows). An unknown principal or securable is a
// denial with a reason.
func (e *Engine) Decide(ctx context.Context, r Request) Decision {
	return e.decide(ctx, e.snap.Load(), r)
}

func (e *Engine) decide(ctx context.Context, snap *Snapshot, r Request) Decision {
	if err := e.svc.StaleError(); err != nil { // a replica behind its staleness bound fails closed
		// Contextual: it holds for this moment only, so that no gateway
		// node caches the denial past the replica's catching up.
		return Decision{Revision: snap.rev, Reason: err.Error(), Contextual: true}
	}
	d := snap.Decide(r)
	if !d.Allowed || e.opts.Policy == nil && snap.guardOn == nil {
		return d
	}
	n, res := snap.cs.Resolve(r.Securable.Type, r.Securable.Name)
	d.Guarded = res == catalog.Resolved && snap.guardApplies(n)
	if e.opts.Policy == nil || res != catalog.Resolved || !snap.policyApplies(n) {
		return d
	}
	d.Contextual = true
	msgs, err := e.opts.Policy(ctx, snap, r)
	switch {
	case err != nil:
		d.Allowed, d.Reason = false, "policy evaluation failed: "+err.Error()
	case len(msgs) > 0:
		d.Allowed, d.Reason = false, "denied by policy: "+strings.Join(msgs, "; ")
	}
	return d
}

// Authorize is Decide with the signature data-plane callers share with
// enforce/client (gateway.Authorizer). It never fails in process.
func (e *Engine) Authorize(ctx context.Context, r Request) (Decision, error) {
	return e.Decide(ctx, r), nil
}

// DecideAt answers r from a snapshot at revision atLeast or newer, waiting
// for it at most Options.WaitTimeout and until ctx ends; then ErrStale.
func (e *Engine) DecideAt(ctx context.Context, r Request, atLeast catalog.Revision) (Decision, error) {
	snap, err := e.await(ctx, atLeast)
	if err != nil {
		return Decision{Revision: e.Revision(), Reason: err.Error()}, err
	}
	return e.decide(ctx, snap, r), nil
}

// await returns a snapshot at revision atLeast or newer.
func (e *Engine) await(ctx context.Context, atLeast catalog.Revision) (*Snapshot, error) {
	var timer <-chan time.Time
	for {
		swapped := *e.swapped.Load() // before the check: a swap after it closes this channel
		if snap := e.snap.Load(); snap.rev >= atLeast {
			return snap, nil
		}
		if timer == nil {
			t := time.NewTimer(e.opts.WaitTimeout)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-swapped:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (revision %d, have %d): %w", ErrStale, atLeast, e.Revision(), ctx.Err())
		case <-e.done:
			return nil, fmt.Errorf("%w (revision %d, have %d): the engine is closed", ErrStale, atLeast, e.Revision())
		case <-timer:
			return nil, fmt.Errorf("%w (revision %d, have %d after %s)", ErrStale, atLeast, e.Revision(), e.opts.WaitTimeout)
		}
	}
}
