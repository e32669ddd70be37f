package catalog

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// snapshotTimeout bounds the writing of one snapshot.
const snapshotTimeout = 5 * time.Minute

// snapshotter writes a snapshot every Options.SnapshotEvery change
// records, one at a time, in the background.
type snapshotter struct {
	run      sync.Mutex // held while a snapshot is written
	mu       sync.Mutex
	last     Revision // revision of the newest snapshot written (or loaded)
	failures int
}

// maybeSnapshot starts writing a snapshot if enough change records were
// committed since the last one (and none is being written).
func (s *Service) maybeSnapshot(rev Revision) {
	s.snap.mu.Lock()
	due := int64(rev-s.snap.last) >= int64(s.opts.SnapshotEvery)
	s.snap.mu.Unlock()
	if !due || !s.snap.run.TryLock() {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		defer s.snap.run.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
		defer cancel()
		if err := s.writeSnapshot(ctx); err != nil {
			s.log.Error().Err(err).Msg("catalog snapshot failed; the change records are kept, will retry")
		}
	}()
}

// WriteSnapshot writes a snapshot of the committed catalog now (after the
// one being written, if any) and prunes the change records it covers
// whose audit records the event stream holds. The Service does so on its
// own every Options.SnapshotEvery changes.
func (s *Service) WriteSnapshot(ctx context.Context) error {
	s.snap.run.Lock()
	defer s.snap.run.Unlock()
	return s.writeSnapshot(ctx)
}

// writeSnapshot writes one snapshot; the caller holds snap.run.
func (s *Service) writeSnapshot(ctx context.Context) error {
	var st *State
	s.Read(func(m *Model) { st = m.State() })
	err := s.store.WriteSnapshot(ctx, st)
	if err == nil {
		// Records whose audit is not yet in the event stream stay (a start
		// forwards them from the store).
		through := min(st.Revision, s.fwd.done())
		if perr := s.store.Prune(ctx, through); perr != nil {
			s.log.Warn().Err(perr).Int64("through", int64(through)).Msg("catalog: pruning change records failed")
		}
	}
	s.snap.mu.Lock()
	if err == nil {
		s.snap.last, s.snap.failures = st.Revision, 0
	} else {
		s.snap.failures++
	}
	s.snap.mu.Unlock()
	if err == nil {
		s.log.Debug().Int64("revision", int64(st.Revision)).Msg("catalog snapshot written")
	}
	return err
}

// State returns the model's whole content, sorted as row stores list it:
// principals and securables by ID, memberships by (Group, Member), grants
// by (Securable, Principal, Privilege).
func (m *Model) State() *State {
	st := &State{Revision: m.rev, NextID: m.nextID}
	st.Principals = make([]Principal, 0, len(m.principals))
	for _, p := range m.principals {
		st.Principals = append(st.Principals, *p)
	}
	sort.Slice(st.Principals, func(i, j int) bool { return st.Principals[i].ID < st.Principals[j].ID })
	for g, ms := range m.members {
		for mem := range ms {
			st.Memberships = append(st.Memberships, Membership{Group: g, Member: mem})
		}
	}
	sort.Slice(st.Memberships, func(i, j int) bool {
		a, b := st.Memberships[i], st.Memberships[j]
		return a.Group < b.Group || a.Group == b.Group && a.Member < b.Member
	})
	st.Securables = make([]Securable, 0, len(m.securables))
	for _, sec := range m.securables {
		c := *sec
		c.full = ""
		st.Securables = append(st.Securables, c)
	}
	sort.Slice(st.Securables, func(i, j int) bool { return st.Securables[i].ID < st.Securables[j].ID })
	for sid, ps := range m.grantsOn {
		for pid, set := range ps {
			for _, pr := range set.List() {
				k := GrantKey{sid, pid, pr}
				st.Grants = append(st.Grants, Grant{Securable: sid, Principal: pid, Privilege: pr, Grantor: m.grantor[k]})
			}
		}
	}
	sort.Slice(st.Grants, func(i, j int) bool {
		a, b := st.Grants[i], st.Grants[j]
		if a.Securable != b.Securable {
			return a.Securable < b.Securable
		}
		if a.Principal != b.Principal {
			return a.Principal < b.Principal
		}
		return a.Privilege < b.Privilege
	})
	return st
}

// modelOf builds the Model of a snapshot plus the change records after it
// (records the snapshot covers are skipped; a gap is an error).
func modelOf(st *State, changes []Change) (*Model, error) {
	m := NewModel()
	for i := range st.Principals {
		p := st.Principals[i]
		m.putPrincipal(&p)
	}
	for _, x := range st.Memberships {
		m.addMember(x)
	}
	ss := append([]Securable(nil), st.Securables...)
	sort.Slice(ss, func(i, j int) bool { return ss[i].ID < ss[j].ID }) // parents before children
	for i := range ss {
		x := ss[i]
		x.full = ""
		m.putSecurable(&x)
	}
	for _, g := range st.Grants {
		m.addGrant(g)
	}
	m.rev = st.Revision
	if st.NextID > m.nextID {
		m.nextID = st.NextID
	}
	for i := range changes {
		if changes[i].Revision <= m.rev {
			continue
		}
		if err := m.applyChange(&changes[i]); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// applyChange applies a change record that follows the model's revision.
func (m *Model) applyChange(c *Change) error {
	if c.Revision != m.rev+1 {
		return Errorf(CodeIncompatibleData, "catalog: change record %d does not follow revision %d", c.Revision, m.rev)
	}
	ops := make([]op, len(c.Ops))
	for i := range c.Ops {
		o, err := opOf(&c.Ops[i])
		if err != nil {
			return fmt.Errorf("change record %d: %w", c.Revision, err)
		}
		ops[i] = o
	}
	for _, o := range ops {
		o.apply(m)
	}
	m.rev = c.Revision
	if c.NextID > m.nextID {
		m.nextID = c.NextID
	}
	return nil
}

// Replay returns the catalog of snapshot st plus the change records after
// it (those it covers are skipped; a gap is an error), as Open loads it.
func Replay(st *State, changes []Change) (*State, error) {
	m, err := modelOf(st, changes)
	if err != nil {
		return nil, err
	}
	return m.State(), nil
}
