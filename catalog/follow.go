package catalog

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// A store shared with other processes (Watcher) gets change records from
// every replica. The follower polls the store's newest revision every
// Options.PollInterval and whenever the store hints at a change; when it is
// ahead, the committer applies the missing records (catchUp), so that the
// Model only ever changes in the committer. A replica is synchronized as
// of time t when it applied every record committed before t; staleness is
// the time since. Past Options.MaxStaleness it is stale: the enforce engine
// then denies every request (fail closed) until it catches up.

// catchUpPage bounds the change records read at once.
const catchUpPage = 1024

// syncState tracks how current a replica's catalog is.
type syncState struct {
	shared bool
	bound  time.Duration

	mu       sync.Mutex
	syncedAt time.Time
	// polledHead is the head the follower last read from the store, at
	// polledAt: once the replica applied it (from records notifications
	// carried), it is synchronized as of polledAt.
	polledHead Revision
	polledAt   time.Time
	timer      *time.Timer
	stale      atomic.Bool
	log        func(stale bool, since time.Duration)
}

func (st *syncState) init(s *Service, loaded time.Time) {
	st.shared = s.watcher != nil
	st.bound = s.opts.MaxStaleness
	if !st.shared {
		return
	}
	st.log = func(stale bool, since time.Duration) {
		if stale {
			s.log.Error().Dur("since_sync", since).Dur("bound", st.bound).
				Msg("catalog replica is stale: decisions fail closed until it catches up with the store")
		} else {
			s.log.Info().Msg("catalog replica caught up with the store")
		}
	}
	st.syncedAt = loaded
	st.timer = time.AfterFunc(st.bound, st.check)
}

// synced records that every change committed before t is applied.
func (st *syncState) synced(t time.Time) {
	if !st.shared {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if t.After(st.syncedAt) {
		st.syncedAt = t
	}
	if d := time.Until(st.syncedAt.Add(st.bound)); d > 0 {
		if st.timer != nil {
			st.timer.Reset(d)
		}
		if st.stale.Swap(false) {
			st.log(false, 0)
		}
	}
}

// polled records that the store's head was head at t.
func (st *syncState) polled(head Revision, t time.Time) {
	st.mu.Lock()
	st.polledHead, st.polledAt = head, t
	st.mu.Unlock()
}

// applied records that the replica is at revision rev: synchronized as of
// the last poll whose head it has.
func (st *syncState) applied(rev Revision) {
	st.mu.Lock()
	head, at := st.polledHead, st.polledAt
	st.mu.Unlock()
	if head <= rev && !at.IsZero() {
		st.synced(at)
	}
}

// check runs when the bound may have passed.
func (st *syncState) check() {
	st.mu.Lock()
	defer st.mu.Unlock()
	since := time.Since(st.syncedAt)
	if since >= st.bound {
		if !st.stale.Swap(true) {
			st.log(true, since)
		}
		return
	}
	if st.timer != nil {
		st.timer.Reset(st.bound - since)
	}
}

func (st *syncState) stop() {
	if !st.shared {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.timer.Stop()
}

// Staleness returns how long ago this replica last knew that it had
// applied every committed change: 0 when the store is this process's
// alone (embedded).
func (s *Service) Staleness() time.Duration {
	if !s.sync.shared {
		return 0
	}
	s.sync.mu.Lock()
	defer s.sync.mu.Unlock()
	return time.Since(s.sync.syncedAt)
}

// MaxStaleness is the staleness bound (Options.MaxStaleness).
func (s *Service) MaxStaleness() time.Duration { return s.sync.bound }

// Stale reports whether the replica is past its staleness bound (cheap:
// one atomic load; the enforce engine checks it on every decision).
func (s *Service) Stale() bool { return s.sync.stale.Load() }

// StaleError returns an error saying how stale the replica is, or nil.
func (s *Service) StaleError() error {
	if !s.Stale() {
		return nil
	}
	return &Error{Code: CodeUnavailable,
		Msg: fmt.Sprintf("the catalog of this replica is stale: last synchronized with the store %s ago (bound %s)",
			s.Staleness().Round(time.Millisecond), s.sync.bound)}
}

// follow polls the shared store until Close.
func (s *Service) follow() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	timeout := min(max(s.opts.MaxStaleness/2, time.Second), 10*time.Second)
	var lastErr time.Time
	// The wake-up channel is taken before the revision it announces is
	// read, never after: a notification that comes in between closes the
	// channel held, instead of being missed until the next poll.
	changed := s.watcher.Changed()
	// What was announced before this goroutine ran closed no channel it
	// holds: catch up with it now, not at the first poll.
	if a := s.watcher.Announced(); a > s.Revision() {
		s.wantCatchUp(a)
	}
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-changed:
			changed = s.watcher.Changed()
			// A notification that announces a newer revision needs no
			// poll: the committer applies it at once. One that announces
			// nothing newer (this replica's own commit, announced after
			// the committer applied it) needs none either: the ticker's
			// polls confirm the replica is current.
			if a := s.watcher.Announced(); a > s.Revision() {
				s.wantCatchUp(a)
			}
			continue
		}
		started := time.Now()
		before := s.Revision()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		head, err := s.store.Head(ctx)
		cancel()
		switch {
		case err != nil:
			if time.Since(lastErr) > 10*time.Second {
				lastErr = time.Now()
				s.log.Warn().Err(err).Msg("catalog: cannot read the store's revision; retrying")
			}
		case head < before:
			if time.Since(lastErr) > 10*time.Second {
				lastErr = time.Now()
				s.log.Error().Int64("store", int64(head)).Int64("replica", int64(before)).
					Msg("catalog: the store is behind this replica (restored from a backup?); not synchronized")
			}
		case head > s.Revision():
			s.sync.polled(head, started)
			s.wantCatchUp(head)
		default:
			// At the head (or past it: the committer applied newer
			// records meanwhile).
			s.sync.synced(started)
		}
	}
}

// wantCatchUp asks the committer to apply the records through rev (it
// skips the read if it got there first: its own commit, whose
// notification raced its answer).
func (s *Service) wantCatchUp(rev Revision) {
	for {
		old := s.wanted.Load()
		if int64(rev) <= old || s.wanted.CompareAndSwap(old, int64(rev)) {
			break
		}
	}
	select {
	case s.catchup <- struct{}{}:
	default:
	}
}

// catchUpTo applies the change records other writers appended through
// revision target at least (committer only): the ones the store's
// notifications carried (Carrier) when they reach it, else read.
func (s *Service) catchUpTo(target Revision) {
	if s.carrier != nil {
		audit := s.fwd.holding.Load()
		if c := s.carrier.Carried(s.Revision(), audit); len(c) > 0 && c[len(c)-1].Revision >= target {
			if err := s.applyForeign(c, audit); err != nil {
				s.log.Error().Err(err).Msg("catalog: applying change records failed; reloading")
				s.reload()
				return
			}
			s.sync.applied(s.Revision())
			return
		}
	}
	s.catchUp()
}

// catchUp applies the change records other writers appended (committer
// only).
func (s *Service) catchUp() {
	for {
		started := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		changes, err := s.store.Changes(ctx, s.Revision(), catchUpPage)
		cancel()
		if IsPruned(err) {
			s.reload()
			return
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("catalog: reading new change records failed")
			return
		}
		if len(changes) > 0 {
			if err := s.applyForeign(changes, true); err != nil {
				s.log.Error().Err(err).Msg("catalog: applying change records failed; reloading")
				s.reload()
				return
			}
		}
		if len(changes) < catchUpPage {
			s.sync.synced(started)
			return
		}
	}
}

// applyForeign applies change records of other writers (without their
// Audit unless audit).
func (s *Service) applyForeign(changes []Change, audit bool) error {
	s.mu.Lock()
	s.cleanLocked()
	var err error
	applied := 0
	for i := range changes {
		if changes[i].Revision <= s.model.rev {
			continue
		}
		if err = s.model.applyChange(&changes[i]); err != nil {
			break
		}
		applied = i + 1
	}
	rev := s.model.rev
	s.mu.Unlock()
	if applied > 0 {
		s.publish(rev)
		s.forward(changes[:applied], audit)
	}
	return err
}

// reload replaces the Model with the store's newest snapshot and the
// records after it (a replica that fell behind the pruned records).
func (s *Service) reload() {
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	st, changes, err := s.store.Load(ctx)
	if err == nil {
		var m *Model
		if m, err = modelOf(st, changes); err == nil {
			s.mu.Lock()
			s.cleanLocked()
			s.model = m
			s.mu.Unlock()
			s.log.Info().Int64("revision", int64(m.rev)).Msg("catalog reloaded from the store's snapshot")
			s.publish(m.rev)
			s.fwd.reread(m.rev)
			s.sync.synced(started)
			return
		}
	}
	s.log.Error().Err(err).Msg("catalog: reloading from the store failed")
}
