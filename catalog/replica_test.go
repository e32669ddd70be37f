package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/catalog/walstore"
)

// Replicas: several Services on one shared store (memstore is a
// catalog.Watcher, as pgstore is).

func openReplica(t *testing.T, st catalog.Store, ev catalog.EventStore, mods ...func(*catalog.Options)) *catalog.Service {
	t.Helper()
	kr, _ := catalog.NewKeyring(make([]byte, 32))
	o := catalog.Options{Store: st, Events: ev, Keyring: kr, AdminVerifier: "x", PollInterval: 5 * time.Millisecond}
	for _, m := range mods {
		m(&o)
	}
	svc, err := catalog.Open(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// waitRevision waits until svc is at revision rev or later.
func waitRevision(t *testing.T, svc *catalog.Service, rev catalog.Revision) {
	t.Helper()
	ch, cancel := svc.Subscribe()
	defer cancel()
	timeout := time.After(30 * time.Second) // a failure bound
	for svc.Revision() < rev {
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("replica at revision %d, want %d", svc.Revision(), rev)
		}
	}
}

func create(name string) func(tx *catalog.Tx) error {
	return func(tx *catalog.Tx) error { return tx.CreatePrincipal(catalog.KindGroup, name, nil, false) }
}

func principals(svc *catalog.Service) map[string]catalog.ID {
	out := map[string]catalog.ID{}
	svc.Read(func(m *catalog.Model) {
		for _, p := range m.Principals("") {
			out[p.Name] = p.ID
		}
	})
	return out
}

// A change committed on one replica is applied by the other.
func TestReplicasFollow(t *testing.T) {
	st := memstore.New()
	a, b := openReplica(t, st, st), openReplica(t, st, st)
	rev, err := a.Write(t.Context(), adminReq, create("from-a"))
	if err != nil {
		t.Fatal(err)
	}
	waitRevision(t, b, rev)
	if _, ok := principals(b)["from-a"]; !ok {
		t.Fatal("replica b lacks a's change")
	}
	rev, err = b.Write(t.Context(), adminReq, create("from-b"))
	if err != nil {
		t.Fatal(err)
	}
	waitRevision(t, a, rev)
	if fmt.Sprint(principals(a)) != fmt.Sprint(principals(b)) {
		t.Fatalf("replicas differ:\n%v\n%v", principals(a), principals(b))
	}
	if a.Staleness() > time.Minute || a.Stale() || b.Stale() {
		t.Errorf("staleness %v, stale %v %v", a.Staleness(), a.Stale(), b.Stale())
	}
}

// Concurrent writers on two replicas: every change commits (a batch that
// loses the race is planned again), none twice, IDs never collide, and the
// replicas converge.
func TestReplicasConcurrentWriters(t *testing.T) {
	st := memstore.New()
	reps := []*catalog.Service{openReplica(t, st, st), openReplica(t, st, st)}
	const each = 40
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	errs := make(chan error, 2*each)
	for r, svc := range reps {
		for w := range 4 {
			wg.Go(func() {
				for i := w; i < each; i += 4 {
					// A client retries a statement refused with 40001.
					for attempt := 0; ; attempt++ {
						_, err := svc.Write(t.Context(), adminReq, create(fmt.Sprintf("r%d-%d", r, i)))
						if catalog.IsCode(err, catalog.CodeConflict) && attempt < 10 {
							conflicts.Add(1)
							continue
						}
						if err != nil {
							errs <- err
						}
						break
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	head, err := st.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range reps {
		waitRevision(t, svc, head)
	}
	pa, pb := principals(reps[0]), principals(reps[1])
	if len(pa) != 2+2*each || fmt.Sprint(pa) != fmt.Sprint(pb) {
		t.Fatalf("%d principals; replicas equal: %v", len(pa), fmt.Sprint(pa) == fmt.Sprint(pb))
	}
	ids := map[catalog.ID]string{}
	for n, id := range pa {
		if other, dup := ids[id]; dup {
			t.Fatalf("ID %d of %s and %s", id, n, other)
		}
		ids[id] = n
	}
	cs, err := st.Changes(t.Context(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if catalog.Revision(len(cs)) != head {
		t.Fatalf("%d change records, head %d", len(cs), head)
	}
	t.Logf("%d statements refused with 40001 and retried", conflicts.Load())
}

// gated blocks Append while armed, after telling entered.
type gated struct {
	*memstore.Store
	mu      sync.Mutex
	entered chan struct{}
	release chan struct{}
}

func (g *gated) arm() (entered, release chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	return g.entered, g.release
}

func (g *gated) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	g.mu.Lock()
	entered, release := g.entered, g.release
	g.entered, g.release = nil, nil
	g.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
	return g.Store.Append(ctx, base, changes)
}

// The same change on two replicas at once: the one that commits second
// was planned against a revision that is no longer the newest; it is
// planned again on the newer catalog and refused as a duplicate, never
// applied twice or over the first.
func TestReplicasConflictReplans(t *testing.T) {
	st := memstore.New()
	gb := &gated{Store: st}
	a := openReplica(t, st, st)
	b := openReplica(t, gb, st)
	waitRevision(t, b, a.Revision())
	entered, release := gb.arm()
	bErr := make(chan error, 1)
	go func() {
		_, err := b.Write(context.Background(), adminReq, create("same"))
		bErr <- err
	}()
	<-entered // b planned "same" at the old revision and is appending
	if _, err := a.Write(t.Context(), adminReq, create("same")); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-bErr; !catalog.IsCode(err, catalog.CodeAlreadyExists) {
		t.Fatalf("b's CREATE GROUP after a's: %v, want already exists", err)
	}
	waitRevision(t, b, a.Revision())
	if n := len(principals(b)); n != 3 {
		t.Fatalf("%d principals, want 3", n)
	}
}

// Replicas that bootstrap an empty store together: one bootstrap commits.
func TestReplicasBootstrapRace(t *testing.T) {
	st := memstore.New()
	var wg sync.WaitGroup
	svcs := make([]*catalog.Service, 3)
	for i := range svcs {
		wg.Go(func() { svcs[i] = openReplica(t, st, st) })
	}
	wg.Wait()
	head, _ := st.Head(t.Context())
	for _, svc := range svcs {
		waitRevision(t, svc, head)
		if n := len(principals(svc)); n != 2 {
			t.Errorf("%d principals after the bootstrap race, want 2", n)
		}
	}
	es, err := svcs[0].Store().ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range es {
		if e.Action == "BOOTSTRAP" {
			n++
		}
	}
	if n != 1 || head != 1 {
		t.Fatalf("%d BOOTSTRAP audit records, head %d; want one of each", n, head)
	}
}

// unreachable fails Head, Changes and Append while down is set, as a
// database that cannot be reached.
type unreachable struct {
	*memstore.Store
	down atomic.Bool
}

var errDown = catalog.Errorf(catalog.CodeUnavailable, "catalog database unreachable")

func (u *unreachable) Head(ctx context.Context) (catalog.Revision, error) {
	if u.down.Load() {
		return 0, errDown
	}
	return u.Store.Head(ctx)
}

func (u *unreachable) Changes(ctx context.Context, after catalog.Revision, limit int) ([]catalog.Change, error) {
	if u.down.Load() {
		return nil, errDown
	}
	return u.Store.Changes(ctx, after, limit)
}

func (u *unreachable) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	if u.down.Load() {
		return errDown
	}
	return u.Store.Append(ctx, base, changes)
}

// While the store is unreachable, writes fail with CodeUnavailable, the
// catalog still answers until the staleness bound, then it is stale (the
// enforce engine denies); once the store is back it catches up.
func TestReplicaStaleness(t *testing.T) {
	st := memstore.New()
	u := &unreachable{Store: st}
	const bound = 300 * time.Millisecond
	svc := openReplica(t, u, st, func(o *catalog.Options) { o.MaxStaleness = bound })
	other := openReplica(t, st, st)
	if svc.Stale() {
		t.Fatal("stale at once")
	}
	u.down.Store(true)
	start := time.Now()
	if _, err := svc.Write(t.Context(), adminReq, create("g")); !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Fatalf("write while the store is down: %v, want unavailable", err)
	}
	// Another replica commits meanwhile: this one cannot know.
	rev, err := other.Write(t.Context(), adminReq, create("elsewhere"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second) // a failure bound
	for !svc.Stale() {
		if time.Now().After(deadline) {
			t.Fatal("never stale")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if since := time.Since(start); since < bound/2 {
		t.Errorf("stale after %v, before the bound of %v", since, bound)
	}
	if err := svc.StaleError(); !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Errorf("StaleError = %v", err)
	}
	u.down.Store(false)
	waitRevision(t, svc, rev)
	for deadline := time.Now().Add(30 * time.Second); svc.Stale(); {
		if time.Now().After(deadline) {
			t.Fatal("still stale after catching up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := principals(svc)["elsewhere"]; !ok {
		t.Fatal("the change made meanwhile is missing")
	}
}

// failingEvents fails AppendChangeAudit while failing is set.
type failingEvents struct {
	*memstore.Store
	failing atomic.Bool
}

func (f *failingEvents) AppendChangeAudit(ctx context.Context, through catalog.Revision, events []catalog.AuditEvent) error {
	if f.failing.Load() {
		return errors.New("disk full")
	}
	return f.Store.AppendChangeAudit(ctx, through, events)
}

// The audit records of changes reach the event store exactly once: if it
// fails, catalog writes go on and the records are forwarded from the
// change log later, also after a restart; snapshots prune only records the
// event store has.
func TestForwardingResumes(t *testing.T) {
	dir := t.TempDir()
	ev := &failingEvents{Store: memstore.New()}
	open := func() (*catalog.Service, *walstore.Store) {
		ws, err := walstore.Open(t.Context(), dir, walstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		svc := openReplica(t, ws, ev, func(o *catalog.Options) { o.SnapshotEvery = 5 })
		return svc, ws
	}
	svc, ws := open()
	if err := svc.SyncAudit(t.Context()); err != nil {
		t.Fatal(err)
	}
	ev.failing.Store(true)
	for i := range 12 {
		if _, err := svc.Write(t.Context(), adminReq, create(fmt.Sprint("g", i))); err != nil {
			t.Fatalf("write %d while the event store fails: %v", i, err)
		}
	}
	if err := svc.WriteSnapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	rev := svc.Revision()
	svc.Close()
	ws.Close()

	ev.failing.Store(false)
	svc, ws = open()
	defer ws.Close()
	if err := svc.SyncAudit(t.Context()); err != nil {
		t.Fatal(err)
	}
	es, err := ev.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range es {
		seen[e.EventID]++
		if seen[e.EventID] > 1 {
			t.Fatalf("event %s (%s) stored twice", e.EventID, e.Action)
		}
	}
	if len(es) != int(rev) || svc.AuditedRevision() != rev {
		t.Fatalf("%d audit records for %d changes (audited through %d)", len(es), rev, svc.AuditedRevision())
	}
	// Now everything is forwarded, a snapshot prunes the log.
	if err := svc.WriteSnapshot(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Changes(t.Context(), 0, 0); !catalog.IsPruned(err) {
		t.Fatalf("Changes(0) after the snapshot: %v, want ErrPruned", err)
	}
}

// deaf is a shared store whose notifications never arrive.
type deaf struct{ *memstore.Store }

func (deaf) Changed() <-chan struct{}    { return nil }
func (deaf) Announced() catalog.Revision { return 0 }

// A statement about an object another replica created a moment ago (its
// notification not yet arrived, no poll since) does not fail on this
// replica: the failure sends it to the database's head first, and it is
// planned again there.
func TestReplicaPlansAgainOnNewerHead(t *testing.T) {
	st := memstore.New()
	a := openReplica(t, st, st)
	b := openReplica(t, deaf{st}, st, func(o *catalog.Options) { o.PollInterval = time.Hour })
	if _, err := a.Write(t.Context(), adminReq, create("from-a")); err != nil {
		t.Fatal(err)
	}
	if _, ok := principals(b)["from-a"]; ok {
		t.Fatal("the test needs replica b not to have followed yet")
	}
	if _, err := b.Write(t.Context(), adminReq, func(tx *catalog.Tx) error {
		return tx.DropPrincipal(catalog.KindGroup, "from-a", false)
	}); err != nil {
		t.Fatalf("DROP GROUP on the replica that had not seen the CREATE: %v", err)
	}
	if _, ok := principals(b)["from-a"]; ok {
		t.Error("the group is still there")
	}
	// A statement that fails on the newest catalog too keeps its error.
	if _, err := b.Write(t.Context(), adminReq, func(tx *catalog.Tx) error {
		return tx.DropPrincipal(catalog.KindGroup, "never-was", false)
	}); !catalog.IsCode(err, catalog.CodeNotFound) {
		t.Errorf("DROP GROUP never-was: %v, want CodeNotFound", err)
	}
}

// observed counts a replica's reads of change records and, after each of
// its appends, waits until its follower has seen the append's notification
// (Announced is called by the follower only while the committer is in
// Append), so that the notification of its own commit always arrives
// before the commit is applied.
type observed struct {
	*memstore.Store
	reads     atomic.Int64
	heads     atomic.Int64 // calls of Head
	announced atomic.Int64 // calls of Announced
	// conflicts: a refused append brings the newer records back
	// (catalog.Conflict), as pgstore's does, and appends do not wait for
	// the follower.
	conflicts bool
	mu        sync.Mutex
	sizes     []int // change records per append
}

func (o *observed) Changes(ctx context.Context, after catalog.Revision, limit int) ([]catalog.Change, error) {
	o.reads.Add(1)
	return o.Store.Changes(ctx, after, limit)
}

func (o *observed) Head(ctx context.Context) (catalog.Revision, error) {
	o.heads.Add(1)
	return o.Store.Head(ctx)
}

func (o *observed) Announced() catalog.Revision {
	o.announced.Add(1)
	return o.Store.Announced()
}

func (o *observed) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	o.mu.Lock()
	o.sizes = append(o.sizes, len(changes))
	o.mu.Unlock()
	seen := o.announced.Load()
	err := o.Store.Append(ctx, base, changes)
	if err == nil && !o.conflicts {
		deadline := time.Now().Add(10 * time.Second) // a failure bound
		for o.announced.Load() == seen && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if o.conflicts && catalog.IsCode(err, catalog.CodeConflict) {
		newer, cerr := o.Store.Changes(ctx, base, 0)
		if cerr != nil {
			return cerr
		}
		return &catalog.Error{Code: catalog.CodeConflict, Msg: "lost", Err: &catalog.Conflict{Head: newer[len(newer)-1].Revision, Newer: newer}}
	}
	return err
}

func (o *observed) appendSizes() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]int(nil), o.sizes...)
}

// The notification of a replica's own commit makes it read nothing: the
// committer applied the commit itself.
func TestReplicaOwnNotificationReadsNothing(t *testing.T) {
	st := &observed{Store: memstore.New()}
	svc := openReplica(t, st, st.Store, func(o *catalog.Options) { o.PollInterval = time.Hour })
	if err := svc.SyncAudit(t.Context()); err != nil { // the forwarder's start reads the records
		t.Fatal(err)
	}
	st.reads.Store(0)
	var rev catalog.Revision
	for i := range 5 {
		r, err := svc.Write(t.Context(), adminReq, create(fmt.Sprintf("g%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		rev = r
	}
	// One more write: the committer has handled the wake-ups of the five
	// before it takes the next write.
	if _, err := svc.Write(t.Context(), adminReq, create("last")); err != nil {
		t.Fatal(err)
	}
	if n := st.reads.Load(); n != 0 {
		t.Errorf("%d reads of change records for the replica's own commits through revision %d, want 0", n, rev)
	}
}

// A wake-up that announces nothing newer than the replica holds (its own
// commit, announced after the committer applied it) costs no round trip:
// neither a read of records nor a poll of the head.
func TestReplicaLateOwnNotificationPollsNothing(t *testing.T) {
	st := &observed{Store: memstore.New(), conflicts: true} // appends wait for no follower
	w := &manualWatcher{}
	w.ch = make(chan struct{})
	svc := openReplica(t, struct {
		catalog.Store
		catalog.Watcher
	}{st, w}, st.Store, func(o *catalog.Options) { o.PollInterval = time.Hour })
	rev, err := svc.Write(t.Context(), adminReq, create("g"))
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.SyncAudit(t.Context()); err != nil { // the forwarder's start may read the records
		t.Fatal(err)
	}
	st.reads.Store(0)
	st.heads.Store(0)
	// Two late wake-ups of the commit: when the follower takes the
	// wake-up channel a third time, it has handled the first one whole.
	w.waitTaken(t, 1) // the follower holds the channel the first closes
	w.announce(rev)
	w.waitTaken(t, 2)
	w.announce(rev)
	w.waitTaken(t, 3)
	if r, h := st.reads.Load(), st.heads.Load(); r != 0 || h != 0 {
		t.Errorf("a wake-up for revision %d, already applied: %d reads of change records and %d polls of the head, want 0 and 0", rev, r, h)
	}
}

// manualWatcher is a catalog.Watcher whose wake-ups the test sends.
type manualWatcher struct {
	mu        sync.Mutex
	ch        chan struct{}
	announced catalog.Revision
	taken     int // calls of Changed
	takenCh   chan struct{}
}

func (w *manualWatcher) Changed() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.taken++
	if w.takenCh != nil {
		close(w.takenCh)
		w.takenCh = nil
	}
	return w.ch
}

func (w *manualWatcher) Announced() catalog.Revision {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.announced
}

// announce wakes the holders of the channel up with rev.
func (w *manualWatcher) announce(rev catalog.Revision) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.announced = max(w.announced, rev)
	close(w.ch)
	w.ch = make(chan struct{})
}

// waitTaken waits until Changed was called n times.
func (w *manualWatcher) waitTaken(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(30 * time.Second) // a failure bound
	for {
		w.mu.Lock()
		taken := w.taken
		if taken >= n {
			w.mu.Unlock()
			return
		}
		if w.takenCh == nil {
			w.takenCh = make(chan struct{})
		}
		ch := w.takenCh
		w.mu.Unlock()
		select {
		case <-ch:
		case <-timeout:
			t.Fatalf("the wake-up channel was taken %d times, want %d", taken, n)
		}
	}
}

// A batch that lost the race applies the records the store's refusal
// brought back (no read of its own) and takes the statements queued
// meanwhile into its next attempt: one append carries them all.
func TestReplicaLostRaceAppliesConflictAndGrowsBatch(t *testing.T) {
	st := memstore.New()
	ob := &observed{Store: st, conflicts: true}
	gb := &gated{Store: st}
	a := openReplica(t, st, st)
	b := openReplica(t, struct {
		catalog.Store
		catalog.Watcher
	}{&gatedObserved{gb, ob}, st}, st, func(o *catalog.Options) { o.PollInterval = time.Hour })
	waitRevision(t, b, a.Revision())
	if err := b.SyncAudit(t.Context()); err != nil { // the forwarder's start reads the records
		t.Fatal(err)
	}
	entered, release := gb.arm()
	errs := make(chan error, 4)
	go func() {
		_, err := b.Write(context.Background(), adminReq, create("b0"))
		errs <- err
	}()
	<-entered // b planned b0 and is appending
	if _, err := a.Write(t.Context(), adminReq, create("a0")); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		go func() {
			_, err := b.Write(context.Background(), adminReq, create(fmt.Sprintf("b%d", i)))
			errs <- err
		}()
	}
	deadline := time.Now().Add(30 * time.Second) // a failure bound
	for b.Queued() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the writes did not queue")
		}
		time.Sleep(time.Millisecond)
	}
	ob.reads.Store(0)
	ob.sizes = nil
	close(release)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := ob.reads.Load(); n != 0 {
		t.Errorf("replica b read change records %d times after losing the race, want 0 (the refusal carried them)", n)
	}
	if got := ob.appendSizes(); !slices.Equal(got, []int{1, 4}) {
		t.Errorf("change records per append of replica b: %v, want [1 4] (the lost batch, then it with the queued ones)", got)
	}
	ps := principals(b)
	for _, n := range []string{"a0", "b0", "b1", "b2", "b3"} {
		if _, ok := ps[n]; !ok {
			t.Errorf("replica b lacks %s", n)
		}
	}
}

// gatedObserved appends through gated (blocking while armed) and then
// observed (counting, and the refusal with the newer records).
type gatedObserved struct {
	g *gated
	o *observed
}

func (x *gatedObserved) Load(ctx context.Context) (*catalog.State, []catalog.Change, error) {
	return x.o.Load(ctx)
}
func (x *gatedObserved) Head(ctx context.Context) (catalog.Revision, error) { return x.o.Head(ctx) }
func (x *gatedObserved) Changes(ctx context.Context, after catalog.Revision, limit int) ([]catalog.Change, error) {
	return x.o.Changes(ctx, after, limit)
}
func (x *gatedObserved) WriteSnapshot(ctx context.Context, s *catalog.State) error {
	return x.o.WriteSnapshot(ctx, s)
}
func (x *gatedObserved) Prune(ctx context.Context, through catalog.Revision) error {
	return x.o.Prune(ctx, through)
}
func (x *gatedObserved) Close() error { return nil }
func (x *gatedObserved) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	x.g.mu.Lock()
	entered, release := x.g.entered, x.g.release
	x.g.entered, x.g.release = nil, nil
	x.g.mu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
	return x.o.Append(ctx, base, changes)
}

// Loading a catalog costs memory in proportion to its size: adding a
// membership must not start a new closure table each time (that made a
// load allocate principals × memberships slots).
func TestLoadIsLinear(t *testing.T) {
	const users = 4000
	st := &catalog.State{Revision: 1, NextID: users + 2}
	st.Principals = append(st.Principals, catalog.Principal{ID: 1, Name: "g", Kind: catalog.KindGroup})
	for i := range users {
		id := catalog.ID(i + 2)
		st.Principals = append(st.Principals, catalog.Principal{ID: id, Name: fmt.Sprintf("u%d", i), Kind: catalog.KindUser})
		st.Memberships = append(st.Memberships, catalog.Membership{Group: 1, Member: id})
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := catalog.ModelOf(st); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	// Quadratic: 4,000 tables of 4,000 slots, ≥ 128 MB; linear: a few MB.
	if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
		t.Fatalf("loading %d users with one membership each allocated %d MB", users, n>>20)
	}
}

// lockingGated is gated whose LockHead tells locked once it holds the
// head and then waits for proceed.
type lockingGated struct {
	*gated
	locked, proceed chan struct{}
}

func (l *lockingGated) LockHead(ctx context.Context, rev catalog.Revision, audit bool) (catalog.HeldHead, *catalog.Conflict, error) {
	h, c, err := l.gated.Store.LockHead(ctx, rev, audit)
	if err == nil {
		close(l.locked)
		<-l.proceed
	}
	return h, c, err
}

// A batch that lost the race (Options.LockHeadAfter times) takes the
// store's head before it plans again (HeadLocker): another replica's
// write waits behind it, so the next attempt commits, before that write.
func TestReplicaLostRaceTakesTheHead(t *testing.T) {
	st := memstore.New()
	gb := &lockingGated{gated: &gated{Store: st}, locked: make(chan struct{}), proceed: make(chan struct{})}
	ga := &gated{Store: st}
	a := openReplica(t, ga, st)
	b := openReplica(t, gb, st, func(o *catalog.Options) { o.PollInterval, o.LockHeadAfter = time.Hour, 1 })
	waitRevision(t, b, a.Revision())
	entered, release := gb.arm()
	bRev := make(chan catalog.Revision, 1)
	bErr := make(chan error, 1)
	go func() {
		rev, err := b.Write(context.Background(), adminReq, create("b0"))
		bRev <- rev
		bErr <- err
	}()
	<-entered // b planned b0 and is appending
	if _, err := a.Write(t.Context(), adminReq, create("a0")); err != nil {
		t.Fatal(err)
	}
	close(release) // b's append loses to a0
	select {
	case <-gb.locked:
	case <-time.After(30 * time.Second): // a failure bound
		t.Fatal("the replica that lost the race did not take the head")
	}
	aEntered, aRelease := ga.arm()
	aRev := make(chan catalog.Revision, 1)
	go func() {
		rev, err := a.Write(context.Background(), adminReq, create("a1"))
		if err != nil {
			t.Error(err)
		}
		aRev <- rev
	}()
	<-aEntered
	close(aRelease) // a1 goes to the store, which b's head holds
	close(gb.proceed)
	rb := <-bRev
	if err := <-bErr; err != nil {
		t.Fatalf("b0 after the lost race: %v", err)
	}
	if ra := <-aRev; rb >= ra {
		t.Fatalf("b0 committed at revision %d, a1 at %d: b's second attempt did not hold the head", rb, ra)
	}
	waitRevision(t, b, a.Revision())
	for _, n := range []string{"a0", "a1", "b0"} {
		if _, ok := principals(b)[n]; !ok {
			t.Errorf("replica b lacks %s", n)
		}
	}
}

// countingLocks is gated that counts the heads it was asked for and the
// reads of the head revision.
type countingLocks struct {
	*gated
	locks, heads atomic.Int32
}

func (c *countingLocks) Head(ctx context.Context) (catalog.Revision, error) {
	c.heads.Add(1)
	return c.gated.Store.Head(ctx)
}

func (c *countingLocks) LockHead(ctx context.Context, rev catalog.Revision, audit bool) (catalog.HeldHead, *catalog.Conflict, error) {
	c.locks.Add(1)
	return c.gated.Store.LockHead(ctx, rev, audit)
}

// While the head is contended a replica's batch takes it before it plans
// (Options.QueueFor), instead of sending an append that loses: from a
// lost race on, for as long as another writer's commits come between its
// own, and QueueFor past the last of them; then it appends without it.
func TestReplicaQueuesWhileContended(t *testing.T) {
	st := memstore.New()
	var (
		mu    sync.Mutex
		clock = time.Unix(1_000_000, 0)
	)
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	advance := func(d time.Duration) {
		mu.Lock()
		clock = clock.Add(d)
		mu.Unlock()
	}
	const queueFor = time.Minute
	gb := &countingLocks{gated: &gated{Store: st}}
	a := openReplica(t, st, st)
	b := openReplica(t, gb, st, func(o *catalog.Options) {
		// Only contention takes the head here, never a run of lost rounds.
		o.PollInterval, o.LockHeadAfter, o.QueueFor, o.Now = time.Hour, 100, queueFor, now
	})
	waitRevision(t, b, a.Revision())
	write := func(svc *catalog.Service, name string) {
		t.Helper()
		if _, err := svc.Write(t.Context(), adminReq, create(name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	locks := func(step string, want int32) {
		t.Helper()
		if n := gb.locks.Load(); n != want {
			t.Fatalf("%s: replica b took the head %d times, want %d", step, n, want)
		}
	}
	write(b, "b0")
	locks("uncontended", 0)

	entered, release := gb.arm()
	bErr := make(chan error, 1)
	go func() {
		_, err := b.Write(context.Background(), adminReq, create("b1"))
		bErr <- err
	}()
	<-entered // b planned b1 and is appending
	write(a, "a0")
	close(release) // b's append loses to a0; planned again, it commits
	if err := <-bErr; err != nil {
		t.Fatalf("b1 after the lost race: %v", err)
	}
	locks("the lost race itself", 0)

	write(b, "b2")
	locks("the batch after a lost race", 1)
	// A statement refused on the held head is not retried: the head it
	// holds is the newest, nothing to ask the store.
	heads := gb.heads.Load()
	if _, err := b.Write(t.Context(), adminReq, create("b0")); !catalog.IsCode(err, catalog.CodeAlreadyExists) {
		t.Fatalf("b0 again: %v, want already exists", err)
	}
	locks("a refused statement, contended", 2)
	if n := gb.heads.Load() - heads; n != 0 {
		t.Fatalf("a statement refused on the held head read the store's head %d times", n)
	}

	// Another writer's commit between b's: b still queues after the first
	// window would have ended, since the head it took was a's.
	write(a, "a1")
	advance(queueFor * 3 / 4)
	write(b, "b3")
	locks("contended", 3)
	advance(queueFor * 3 / 4)
	write(b, "b4")
	locks("still contended", 4)

	// No other writer since: QueueFor after the last one, b appends
	// without the head.
	advance(queueFor * 3 / 4)
	write(b, "b5")
	locks("alone again", 4)

	waitRevision(t, a, b.Revision())
	for _, svc := range []*catalog.Service{a, b} {
		p := principals(svc)
		for _, n := range []string{"a0", "a1", "b0", "b1", "b2", "b3", "b4", "b5"} {
			if _, ok := p[n]; !ok {
				t.Errorf("a replica lacks %s", n)
			}
		}
	}
}
