package memstore

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// Store is an in-memory catalog.Store, catalog.EventStore and row store.
type Store struct {
	mu    sync.RWMutex
	wlock chan struct{} // one writer at a time; waiting honours ctx
	// head is held by an Append, and by a writer from LockHead until its
	// HeldHead appends or releases (as a database's lock of its head row).
	head   chan struct{}
	closed bool
	d      data

	// changed is closed (and replaced) at every Append (catalog.Watcher).
	changed   chan struct{}
	announced atomic.Int64
}

func norm(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

type data struct {
	meta       catalog.Meta
	principals map[catalog.ID]catalog.Principal
	members    map[catalog.Membership]struct{}
	securables map[catalog.ID]catalog.Securable
	grants     map[catalog.GrantKey]catalog.Grant
	audit      []catalog.AuditEvent

	// changes are the change records after pruned, oldest first.
	changes []catalog.Change
	pruned  catalog.Revision
	// snapshot is the revision of the newest snapshot written.
	snapshot catalog.Revision
	// audited is the event stream's AuditedRevision.
	audited catalog.Revision
	logSeq  int64
}

var (
	_ catalog.Store      = (*Store)(nil)
	_ catalog.EventStore = (*Store)(nil)
	_ catalog.Watcher    = (*Store)(nil)
	_ catalog.HeadLocker = (*Store)(nil)
)

// New returns an empty store.
func New() *Store {
	return &Store{wlock: make(chan struct{}, 1), head: make(chan struct{}, 1), changed: make(chan struct{}),
		d: data{principals: map[catalog.ID]catalog.Principal{}, members: map[catalog.Membership]struct{}{},
			securables: map[catalog.ID]catalog.Securable{}, grants: map[catalog.GrantKey]catalog.Grant{}}}
}

// --- catalog.Store ---

// Load implements catalog.Store: the rows at the newest revision, no
// change records after them.
func (s *Store) Load(ctx context.Context) (st *catalog.State, changes []catalog.Change, err error) {
	err = s.read(ctx, func(d *data) {
		st = &catalog.State{Revision: d.meta.Revision, NextID: d.meta.NextID, Principals: d.listPrincipals(),
			Memberships: d.listMemberships(), Securables: d.listSecurables(), Grants: d.listGrants()}
	})
	return st, nil, err
}

// Head implements catalog.Store.
func (s *Store) Head(ctx context.Context) (rev catalog.Revision, err error) {
	err = s.read(ctx, func(d *data) { rev = d.meta.Revision })
	return rev, err
}

// Append implements catalog.Store: the changes' ops are applied to the
// rows, and the records kept for Changes.
func (s *Store) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	if len(changes) == 0 {
		return ctx.Err()
	}
	if err := s.lockHead(ctx); err != nil {
		return err
	}
	defer func() { <-s.head }()
	return s.append(ctx, base, changes)
}

func (s *Store) lockHead(ctx context.Context) error {
	select {
	case s.head <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// LockHead implements catalog.HeadLocker.
func (s *Store) LockHead(ctx context.Context, rev catalog.Revision, _ bool) (catalog.HeldHead, *catalog.Conflict, error) {
	if err := s.lockHead(ctx); err != nil {
		return nil, nil, err
	}
	h := &heldHead{s: s}
	head, err := s.Head(ctx)
	var newer []catalog.Change
	if err == nil && head > rev {
		if newer, err = s.Changes(ctx, rev, 0); catalog.IsPruned(err) {
			newer, err = nil, nil
		}
	}
	if err != nil {
		h.Release()
		return nil, nil, err
	}
	return h, &catalog.Conflict{Head: head, Newer: newer}, nil
}

// heldHead is the head taken by LockHead.
type heldHead struct {
	s        *Store
	released bool
}

// Append implements catalog.HeldHead.
func (h *heldHead) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	if h.released {
		return catalog.Errorf(catalog.CodeInternal, "catalog store: append on a released head")
	}
	defer h.Release()
	if len(changes) == 0 {
		return ctx.Err()
	}
	return h.s.append(ctx, base, changes)
}

// Release implements catalog.HeldHead.
func (h *heldHead) Release() {
	if !h.released {
		h.released = true
		<-h.s.head
	}
}

// append is Append with the head held.
func (s *Store) append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	err := s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		t := tx.(*rwtx)
		if t.d.meta.Revision != base {
			return catalog.Errorf(catalog.CodeConflict, "catalog store: revision %d is no longer the newest (%d is)", base, t.d.meta.Revision)
		}
		meta := t.d.meta
		for i := range changes {
			c := &changes[i]
			if c.Revision != meta.Revision+1 {
				return catalog.Errorf(catalog.CodeInternal, "catalog store: change %d does not follow revision %d", c.Revision, meta.Revision)
			}
			for j := range c.Ops {
				if err := c.Ops[j].Apply(ctx, tx); err != nil {
					return err
				}
			}
			meta.Revision, meta.NextID = c.Revision, max(meta.NextID, c.NextID)
		}
		if err := tx.SetMeta(ctx, meta); err != nil {
			return err
		}
		n := len(t.d.changes)
		for i := range changes {
			t.d.changes = append(t.d.changes, cloneChange(changes[i]))
		}
		t.undo = append(t.undo, func() { t.d.changes = t.d.changes[:n] })
		return nil
	})
	if err == nil {
		s.mu.Lock()
		s.announced.Store(int64(changes[len(changes)-1].Revision))
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
	return err
}

// Announced implements catalog.Watcher.
func (s *Store) Announced() catalog.Revision { return catalog.Revision(s.announced.Load()) }

// cloneChange copies c as the store keeps it.
func cloneChange(c catalog.Change) catalog.Change { return c.Normalized() }

// Changes implements catalog.Store.
func (s *Store) Changes(ctx context.Context, after catalog.Revision, limit int) (out []catalog.Change, err error) {
	pruned := false
	err = s.read(ctx, func(d *data) {
		if after >= d.meta.Revision {
			return
		}
		if after < d.pruned {
			pruned = true
			return
		}
		for _, c := range d.changes {
			if c.Revision > after {
				out = append(out, cloneChange(c))
				if limit > 0 && len(out) >= limit {
					break
				}
			}
		}
	})
	if err == nil && pruned {
		err = catalog.ErrPruned
	}
	return out, err
}

// WriteSnapshot implements catalog.Store (the rows are the snapshot).
func (s *Store) WriteSnapshot(ctx context.Context, st *catalog.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	if st.Revision > s.d.meta.Revision {
		return catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: snapshot of revision %d beyond the newest (%d)", st.Revision, s.d.meta.Revision)
	}
	s.d.snapshot = max(s.d.snapshot, st.Revision)
	return nil
}

// Prune implements catalog.Store.
func (s *Store) Prune(ctx context.Context, through catalog.Revision) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	through = min(through, s.d.snapshot)
	if through <= s.d.pruned {
		return nil
	}
	i := 0
	for i < len(s.d.changes) && s.d.changes[i].Revision <= through {
		i++
	}
	s.d.changes = append([]catalog.Change(nil), s.d.changes[i:]...)
	s.d.pruned = through
	return nil
}

// Changed implements catalog.Watcher: the channel is closed at the next
// Append.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// --- catalog.EventStore ---

// AuditedRevision implements catalog.EventStore.
func (s *Store) AuditedRevision(ctx context.Context) (rev catalog.Revision, err error) {
	err = s.read(ctx, func(d *data) { rev = d.audited })
	return rev, err
}

// AppendChangeAudit implements catalog.EventStore.
func (s *Store) AppendChangeAudit(ctx context.Context, through catalog.Revision, events []catalog.AuditEvent) error {
	return s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		t := tx.(*rwtx)
		old := t.d.audited
		var keep []catalog.AuditEvent
		for _, e := range events {
			if e.Revision > old {
				keep = append(keep, e)
			}
		}
		if err := tx.AppendAudit(ctx, keep...); err != nil {
			return err
		}
		if through > old {
			t.d.audited = through
			t.undo = append(t.undo, func() { t.d.audited = old })
		}
		return nil
	})
}

// LogSeq returns the log sequence set by ApplyLog (catalog/auditwal).
func (s *Store) LogSeq(ctx context.Context) (seq int64, err error) {
	err = s.read(ctx, func(d *data) { seq = d.logSeq })
	return seq, err
}

// ApplyLog appends events (completions applied in order), raises the
// AuditedRevision to mark and sets the log sequence, together
// (catalog/auditwal's inner store).
func (s *Store) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	return s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
		t := tx.(*rwtx)
		if err := tx.AppendAudit(ctx, events...); err != nil {
			return err
		}
		oldMark, oldSeq := t.d.audited, t.d.logSeq
		t.d.audited, t.d.logSeq = max(oldMark, mark), seq
		t.undo = append(t.undo, func() { t.d.audited, t.d.logSeq = oldMark, oldSeq })
		return nil
	})
}

func (s *Store) check(ctx context.Context) error {
	if s.closed {
		return catalog.Errorf(catalog.CodeUnavailable, "store is closed")
	}
	return ctx.Err()
}

func (s *Store) read(ctx context.Context, fn func(d *data)) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	fn(&s.d)
	return nil
}

// Meta implements catalog.Reader.
func (s *Store) Meta(ctx context.Context) (m catalog.Meta, err error) {
	err = s.read(ctx, func(d *data) { m = d.meta })
	return
}

// ListPrincipals implements catalog.Reader.
func (s *Store) ListPrincipals(ctx context.Context) (out []catalog.Principal, err error) {
	err = s.read(ctx, func(d *data) { out = d.listPrincipals() })
	return
}

// ListMemberships implements catalog.Reader.
func (s *Store) ListMemberships(ctx context.Context) (out []catalog.Membership, err error) {
	err = s.read(ctx, func(d *data) { out = d.listMemberships() })
	return
}

// ListSecurables implements catalog.Reader.
func (s *Store) ListSecurables(ctx context.Context) (out []catalog.Securable, err error) {
	err = s.read(ctx, func(d *data) { out = d.listSecurables() })
	return
}

// ListGrants implements catalog.Reader.
func (s *Store) ListGrants(ctx context.Context) (out []catalog.Grant, err error) {
	err = s.read(ctx, func(d *data) { out = d.listGrants() })
	return
}

// ListAudit implements catalog.AuditReader.
func (s *Store) ListAudit(ctx context.Context, since time.Time, limit int) (out []catalog.AuditEvent, err error) {
	err = s.read(ctx, func(d *data) {
		for _, e := range d.audit {
			if !e.Time.Before(since) {
				out = append(out, e)
				if limit > 0 && len(out) >= limit {
					break
				}
			}
		}
	})
	return
}

// AppendAudit implements catalog.AuditWriter.
func (s *Store) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	return s.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error { return tx.AppendAudit(ctx, events...) })
}

// ReadWriteTx implements catalog.Store.
func (s *Store) ReadWriteTx(ctx context.Context, fn func(ctx context.Context, tx catalog.RWTx) error) (err error) {
	select {
	case s.wlock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wlock }()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	tx := &rwtx{d: &s.d}
	rollback := func() {
		for i := len(tx.undo) - 1; i >= 0; i-- {
			tx.undo[i]()
		}
	}
	defer func() {
		if r := recover(); r != nil {
			rollback()
			panic(r)
		}
	}()
	if err := fn(ctx, tx); err != nil {
		rollback()
		return err
	}
	if err := ctx.Err(); err != nil {
		rollback()
		return err
	}
	return nil
}

// Close implements catalog.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (d *data) listPrincipals() []catalog.Principal {
	out := make([]catalog.Principal, 0, len(d.principals))
	for _, p := range d.principals {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (d *data) listMemberships() []catalog.Membership {
	out := make([]catalog.Membership, 0, len(d.members))
	for m := range d.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Member < out[j].Member
	})
	return out
}

func (d *data) listSecurables() []catalog.Securable {
	out := make([]catalog.Securable, 0, len(d.securables))
	for _, s := range d.securables {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (d *data) listGrants() []catalog.Grant {
	out := make([]catalog.Grant, 0, len(d.grants))
	for _, g := range d.grants {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Securable != b.Securable {
			return a.Securable < b.Securable
		}
		if a.Principal != b.Principal {
			return a.Principal < b.Principal
		}
		return a.Privilege < b.Privilege
	})
	return out
}

type rwtx struct {
	d    *data
	undo []func()
}

var _ catalog.RWTx = (*rwtx)(nil)

func (t *rwtx) Meta(context.Context) (catalog.Meta, error) { return t.d.meta, nil }
func (t *rwtx) ListPrincipals(context.Context) ([]catalog.Principal, error) {
	return t.d.listPrincipals(), nil
}
func (t *rwtx) ListMemberships(context.Context) ([]catalog.Membership, error) {
	return t.d.listMemberships(), nil
}
func (t *rwtx) ListSecurables(context.Context) ([]catalog.Securable, error) {
	return t.d.listSecurables(), nil
}
func (t *rwtx) ListGrants(context.Context) ([]catalog.Grant, error) { return t.d.listGrants(), nil }

func (t *rwtx) SetMeta(_ context.Context, m catalog.Meta) error {
	old := t.d.meta
	t.d.meta = m
	t.undo = append(t.undo, func() { t.d.meta = old })
	return nil
}

func (t *rwtx) PutPrincipal(_ context.Context, p catalog.Principal) error {
	p.Created = norm(p.Created)
	old, had := t.d.principals[p.ID]
	t.d.principals[p.ID] = p
	t.undo = append(t.undo, func() {
		if had {
			t.d.principals[p.ID] = old
		} else {
			delete(t.d.principals, p.ID)
		}
	})
	return nil
}

func (t *rwtx) DeletePrincipal(ctx context.Context, id catalog.ID) error {
	for k := range t.d.grants {
		if k.Principal == id {
			_ = t.RemoveGrant(ctx, k)
		}
	}
	for m := range t.d.members {
		if m.Group == id || m.Member == id {
			_ = t.RemoveMembership(ctx, m)
		}
	}
	old, had := t.d.principals[id]
	if had {
		delete(t.d.principals, id)
		t.undo = append(t.undo, func() { t.d.principals[id] = old })
	}
	return nil
}

func (t *rwtx) AddMembership(_ context.Context, m catalog.Membership) error {
	if _, ok := t.d.members[m]; !ok {
		t.d.members[m] = struct{}{}
		t.undo = append(t.undo, func() { delete(t.d.members, m) })
	}
	return nil
}

func (t *rwtx) RemoveMembership(_ context.Context, m catalog.Membership) error {
	if _, ok := t.d.members[m]; ok {
		delete(t.d.members, m)
		t.undo = append(t.undo, func() { t.d.members[m] = struct{}{} })
	}
	return nil
}

func (t *rwtx) PutSecurable(_ context.Context, s catalog.Securable) error {
	s.Created = norm(s.Created)
	old, had := t.d.securables[s.ID]
	t.d.securables[s.ID] = s
	t.undo = append(t.undo, func() {
		if had {
			t.d.securables[s.ID] = old
		} else {
			delete(t.d.securables, s.ID)
		}
	})
	return nil
}

func (t *rwtx) DeleteSecurable(ctx context.Context, id catalog.ID) error {
	for k := range t.d.grants {
		if k.Securable == id {
			_ = t.RemoveGrant(ctx, k)
		}
	}
	old, had := t.d.securables[id]
	if had {
		delete(t.d.securables, id)
		t.undo = append(t.undo, func() { t.d.securables[id] = old })
	}
	return nil
}

func (t *rwtx) AddGrant(_ context.Context, g catalog.Grant) error {
	k := g.Key()
	old, had := t.d.grants[k]
	t.d.grants[k] = g
	t.undo = append(t.undo, func() {
		if had {
			t.d.grants[k] = old
		} else {
			delete(t.d.grants, k)
		}
	})
	return nil
}

func (t *rwtx) RemoveGrant(_ context.Context, k catalog.GrantKey) error {
	if old, ok := t.d.grants[k]; ok {
		delete(t.d.grants, k)
		t.undo = append(t.undo, func() { t.d.grants[k] = old })
	}
	return nil
}

func (t *rwtx) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	// Completions apply in order with the events around them.
	start := 0
	for i := range events {
		if !events[i].Completes {
			continue
		}
		if err := t.appendAudit(events[start:i]); err != nil {
			return err
		}
		start = i + 1
		t.complete(&events[i])
	}
	return t.appendAudit(events[start:])
}

// complete applies completion c to the row it completes, if stored.
func (t *rwtx) complete(c *catalog.AuditEvent) {
	for i := len(t.d.audit) - 1; i >= 0; i-- {
		if t.d.audit[i].EventID == c.EventID {
			old := t.d.audit[i]
			t.d.audit[i].CompleteWith(c)
			// Later changes are undone first, so index i is this row again.
			t.undo = append(t.undo, func() { t.d.audit[i] = old })
			return
		}
	}
}

func (t *rwtx) appendAudit(events []catalog.AuditEvent) error {
	if len(events) == 0 {
		return nil
	}
	ordered := true
	last := time.Time{}
	if n := len(t.d.audit); n > 0 {
		last = t.d.audit[n-1].Time
	}
	for i := range events {
		if norm(events[i].Time).Before(last) {
			ordered = false
		}
		last = norm(events[i].Time)
	}
	if ordered { // the common case: append in place, undo truncates
		n := len(t.d.audit)
		for _, e := range events {
			e.Time = norm(e.Time)
			t.d.audit = append(t.d.audit, e)
		}
		t.undo = append(t.undo, func() { t.d.audit = t.d.audit[:n] })
		return nil
	}
	old := t.d.audit
	cp := make([]catalog.AuditEvent, len(old), len(old)+len(events))
	copy(cp, old)
	for _, e := range events {
		e.Time = norm(e.Time)
		cp = append(cp, e)
	}
	sort.SliceStable(cp, func(i, j int) bool { return cp[i].Time.Before(cp[j].Time) })
	t.d.audit = cp
	t.undo = append(t.undo, func() { t.d.audit = old })
	return nil
}
