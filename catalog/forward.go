package catalog

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// The audit records of a catalog change are durable in its change record;
// the forwarder copies them to the event stream (EventStore.
// AppendChangeAudit) in revision order, in the background: a slow or
// failing event stream delays only this copy, never a catalog write. The
// event stream remembers how far it got (AuditedRevision), so after a
// crash the copy resumes from the change records (the Service prunes none
// the event stream lacks), and records forwarded twice are stored once.

// Bounds of the forwarder's queue: past them it drops the queue and reads
// the change records from the store when it catches up.
const (
	forwardMaxQueued = 1 << 16
	forwardMaxBytes  = 64 << 20
	// forwardMaxEvents bounds one AppendChangeAudit.
	forwardMaxEvents = 4096
	// forwardRetry is the pause after a failed forward.
	forwardRetry = time.Second
	// forwardTimeout bounds one forward.
	forwardTimeout = time.Minute
	// closeForwardTimeout bounds the forwarding Close waits for.
	closeForwardTimeout = 5 * time.Second
	// forwardLeaseEvery is how often the lease (Options.ForwardLease) is
	// taken or renewed, and how often a replica that does not hold it
	// reads how far the holder got.
	forwardLeaseEvery = time.Second
	// forwardLinger is how long the forwarder lets commits accumulate
	// before it forwards them, unless a reader waits for them (SyncAudit):
	// one write (one fsync of the event store's log) then carries the
	// audit records of many group commits instead of one each, which would
	// compete with the catalog's own fsyncs.
	forwardLinger = 10 * time.Millisecond
)

type forwarder struct {
	mu       sync.Mutex
	queue    []Change // committed changes not yet forwarded, oldest first (unless overflow)
	bytes    int
	overflow bool     // the queue was dropped: read the records from the store
	head     Revision // the newest revision of the catalog
	kick     chan struct{}
	// urgent tells a lingering forwarder that a reader waits (SyncAudit).
	urgent  chan struct{}
	waiters atomic.Int64

	// forwarded is the revision through which the event stream holds the
	// change audit records; advanced is closed (and replaced) when it grows.
	forwarded atomic.Int64
	advMu     sync.Mutex
	advanced  chan struct{}
	// failing is set while forwards fail (SyncAudit then fails fast).
	failing atomic.Pointer[error]

	// lease (Options.ForwardLease, nil: always forward): this replica
	// forwards while it holds it (holding), or while a reader waits
	// (SyncAudit), or when the holder stopped forwarding (rescue);
	// otherwise it follows the shared event stream's AuditedRevision.
	lease   ForwardLease
	holding atomic.Bool
	rescue  atomic.Bool
	// lagRev is a revision the shared event stream lacked at lagSince
	// (the lease loop's watch of the holder).
	lagRev   Revision
	lagSince time.Time
	// takeover is Options.ForwardTakeover.
	takeover time.Duration
}

func (f *forwarder) init(mark, head Revision, lease ForwardLease, takeover time.Duration) {
	f.lease, f.takeover = lease, takeover
	f.holding.Store(lease == nil)
	f.kick = make(chan struct{}, 1)
	f.urgent = make(chan struct{}, 1)
	f.advanced = make(chan struct{})
	f.forwarded.Store(int64(mark))
	f.head = head
	f.overflow = mark < head // what is not forwarded yet is read from the store
	if mark < head {
		f.kick <- struct{}{}
	}
}

func (f *forwarder) done() Revision { return Revision(f.forwarded.Load()) }

// forward queues the audit records of committed changes (in revision
// order); without audit the changes lack their Audit (decoded without it:
// a replica that does not forward), and the forwarder reads them from the
// store if it needs them.
func (s *Service) forward(changes []Change, audit bool) {
	if len(changes) == 0 {
		return
	}
	f := &s.fwd
	f.mu.Lock()
	f.head = max(f.head, changes[len(changes)-1].Revision)
	if !audit || !f.holding.Load() {
		f.queue, f.bytes, f.overflow = nil, 0, true
	} else if !f.overflow {
		for i := range changes {
			f.queue = append(f.queue, changes[i])
			f.bytes += auditBytes(changes[i].Audit)
		}
		if len(f.queue) > forwardMaxQueued || f.bytes > forwardMaxBytes {
			f.queue, f.bytes, f.overflow = nil, 0, true
		}
	}
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// reread makes the forwarder read the change records up to head from the
// store (the Model was reloaded from a snapshot).
func (f *forwarder) reread(head Revision) {
	f.mu.Lock()
	f.head = max(f.head, head)
	f.queue, f.bytes, f.overflow = nil, 0, true
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// auditBytes estimates the memory of events.
func auditBytes(events []AuditEvent) int {
	n := 0
	for i := range events {
		e := &events[i]
		n += 256 + len(e.Action) + len(e.UserIdentity) + len(e.SecurableName) + len(e.RequestParams) +
			len(e.ErrorMessage) + len(e.Reason) + len(e.UserAgent)
	}
	return n
}

// forwards reports whether this replica forwards now (see forwarder.lease).
func (f *forwarder) forwards() bool {
	return f.holding.Load() || f.rescue.Load() || f.waiters.Load() > 0
}

// forwarder runs until Close.
func (s *Service) forwarder() {
	defer s.bg.Done()
	for {
		select {
		case <-s.fwd.kick:
		case <-s.done:
			return
		}
		if !s.fwd.forwards() {
			continue
		}
		if !s.fwd.holding.Load() {
			// A reader waits, or the holder is stuck: start from what
			// the holder forwarded already.
			s.followLease()
		}
		if s.fwd.waiters.Load() == 0 {
			t := time.NewTimer(forwardLinger)
			select {
			case <-t.C:
			case <-s.fwd.urgent:
				t.Stop()
			case <-s.done:
				t.Stop()
				return
			}
		}
		for {
			more, err := s.forwardOnce()
			if err != nil {
				s.log.Error().Err(err).Int64("forwarded", int64(s.fwd.done())).
					Msg("forwarding the audit records of catalog changes to the event store failed; will retry")
				t := time.NewTimer(forwardRetry)
				select {
				case <-t.C:
				case <-s.done:
					t.Stop()
					return
				}
				continue
			}
			if !more {
				break
			}
		}
		if s.fwd.rescue.Load() && s.fwd.done() >= s.fwd.headRev() {
			s.fwd.rescue.Store(false)
		}
	}
}

func (f *forwarder) headRev() Revision {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.head
}

// leaseLoop takes or renews the forward lease every forwardLeaseEvery
// until Close; while another replica holds it, it follows the shared
// event stream's progress and watches that the holder forwards.
func (s *Service) leaseLoop() {
	defer s.bg.Done()
	t := time.NewTicker(forwardLeaseEvery)
	defer t.Stop()
	var lastErr time.Time
	for {
		ctx, cancel := context.WithTimeout(context.Background(), forwardLeaseEvery)
		held, err := s.fwd.lease.Hold(ctx)
		cancel()
		if err != nil && time.Since(lastErr) > 30*time.Second {
			lastErr = time.Now()
			s.log.Warn().Err(err).Msg("catalog: the lease of the change audit forwarder cannot be taken or renewed; retrying")
		}
		f := &s.fwd
		if held != f.holding.Load() {
			f.mu.Lock()
			f.holding.Store(held)
			f.queue, f.bytes, f.overflow = nil, 0, true // read what is not forwarded from the store
			f.lagSince = time.Time{}
			f.mu.Unlock()
			if held {
				s.log.Info().Msg("catalog: this replica forwards the audit of catalog changes to the event stream")
				f.wake()
			} else {
				s.log.Info().Msg("catalog: another replica forwards the audit of catalog changes")
			}
		}
		if !held {
			s.followLease()
		}
		select {
		case <-t.C:
		case <-s.done:
			return
		}
	}
}

// followLease raises the forwarded revision to the shared event stream's
// and, if that has lacked the same change for Options.ForwardTakeover, has this
// replica forward (rescue).
func (s *Service) followLease() {
	f := &s.fwd
	ctx, cancel := context.WithTimeout(context.Background(), forwardLeaseEvery)
	shared, err := f.lease.AuditedRevision(ctx)
	cancel()
	if err != nil {
		return
	}
	s.fwdAdvanced(shared)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case shared >= f.head:
		f.lagSince = time.Time{}
	case f.lagSince.IsZero() || shared >= f.lagRev:
		f.lagRev, f.lagSince = f.head, time.Now()
	case time.Since(f.lagSince) > f.takeover && !f.rescue.Load():
		s.log.Warn().Int64("forwarded", int64(shared)).Int64("revision", int64(f.lagRev)).
			Msg("catalog: the replica holding the lease has not forwarded the audit of catalog changes; forwarding it here")
		f.rescue.Store(true)
		f.lagSince = time.Time{}
		select {
		case f.kick <- struct{}{}:
		default:
		}
	}
}

func (f *forwarder) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// flushForward forwards what is left, for at most d (Close).
func (s *Service) flushForward(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		more, err := s.forwardOnce()
		if err != nil || !more {
			return
		}
	}
}

// forwardOnce forwards the next changes; more is false when there was
// nothing to forward.
func (s *Service) forwardOnce() (more bool, err error) {
	f := &s.fwd
	done := f.done()
	f.mu.Lock()
	head := f.head
	if done >= head {
		f.mu.Unlock()
		return false, nil
	}
	var changes []Change
	if !f.overflow && len(f.queue) > 0 && f.queue[0].Revision <= done+1 {
		n, events := 0, 0
		for n < len(f.queue) && (n == 0 || events+len(f.queue[n].Audit) <= forwardMaxEvents) {
			events += len(f.queue[n].Audit)
			f.bytes -= auditBytes(f.queue[n].Audit)
			n++
		}
		changes = f.queue[:n:n]
		f.queue = f.queue[n:]
		if len(f.queue) == 0 {
			f.queue, f.bytes = nil, 0
		}
	} else {
		// Read from the store what is not queued; changes committed
		// meanwhile are queued again from here on.
		f.queue, f.bytes, f.overflow = nil, 0, false
	}
	f.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), forwardTimeout)
	defer cancel()
	if changes == nil {
		changes, err = s.store.Changes(ctx, done, 256)
		if IsPruned(err) {
			return true, s.skipPruned(ctx, done)
		}
		if err != nil {
			s.fwdFailed(err)
			return false, err
		}
		if len(changes) == 0 {
			return false, nil
		}
	}
	var events []AuditEvent
	through := done
	for i := range changes {
		c := &changes[i]
		if c.Revision <= done {
			continue
		}
		events = append(events, c.Audit...)
		through = c.Revision
	}
	if through == done {
		return true, nil
	}
	if err := s.events.AppendChangeAudit(ctx, through, events); err != nil {
		// The changes are read from the store again.
		f.mu.Lock()
		f.queue, f.bytes, f.overflow = nil, 0, true
		f.mu.Unlock()
		s.fwdFailed(err)
		return false, err
	}
	s.fwdAdvanced(through)
	return true, nil
}

// skipPruned handles change records pruned before this event store got
// their audit records (a replica whose own event store fell far behind):
// it continues after the newest snapshot, and says what is missing.
func (s *Service) skipPruned(ctx context.Context, done Revision) error {
	st, _, err := s.store.Load(ctx)
	if err != nil {
		s.fwdFailed(err)
		return err
	}
	if st.Revision <= done {
		return nil
	}
	s.log.Warn().Int64("from", int64(done+1)).Int64("through", int64(st.Revision)).
		Msg("the audit records of these catalog changes were pruned before this event store received them")
	if err := s.events.AppendChangeAudit(ctx, st.Revision, nil); err != nil {
		s.fwdFailed(err)
		return err
	}
	s.fwdAdvanced(st.Revision)
	return nil
}

func (s *Service) fwdFailed(err error) { s.fwd.failing.Store(&err) }

func (s *Service) fwdAdvanced(through Revision) {
	f := &s.fwd
	f.failing.Store(nil)
	f.advMu.Lock()
	if int64(through) > f.forwarded.Load() {
		f.forwarded.Store(int64(through))
		close(f.advanced)
		f.advanced = make(chan struct{})
	}
	f.advMu.Unlock()
}

// AuditedRevision returns the revision through which the audit records of
// catalog changes are in the event stream.
func (s *Service) AuditedRevision() Revision { return s.fwd.done() }

// SyncAudit returns once the audit records of every change committed
// before the call are in the event stream (a query of system.access.audit
// sees its own statements), or with ctx's error, or at once with the last
// error of the forwarder while forwarding fails.
func (s *Service) SyncAudit(ctx context.Context) error {
	target := s.Revision()
	f := &s.fwd
	if f.done() >= target {
		return nil
	}
	f.waiters.Add(1)
	defer f.waiters.Add(-1)
	select {
	case f.urgent <- struct{}{}:
	default:
	}
	f.wake() // a replica that does not hold the lease forwards for its reader
	for {
		f.advMu.Lock()
		adv := f.advanced
		f.advMu.Unlock()
		if f.done() >= target {
			return nil
		}
		if e := f.failing.Load(); e != nil {
			return &Error{Code: CodeUnavailable, Msg: "the audit records of recent catalog changes are not in the event store yet: " + (*e).Error(), Err: *e}
		}
		select {
		case <-adv:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
