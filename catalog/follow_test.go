package catalog_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// carrying is a shared store whose notifications carry the change
// records (catalog.Carrier, as pgstore's do): the records after skip are
// not carried (a record too large for a payload, a missed notification),
// and Head and Changes fail while down (the database unreachable for
// queries while its notifications still arrive).
type carrying struct {
	*memstore.Store
	reads   atomic.Int64
	skip    atomic.Int64 // 0: every record is carried
	down    atomic.Bool
	audited atomic.Int64 // Carried calls that asked for the audit
}

func (c *carrying) Carried(after catalog.Revision, audit bool) []catalog.Change {
	if audit {
		c.audited.Add(1)
	}
	all, err := c.Store.Changes(context.Background(), after, 0)
	if err != nil {
		return nil
	}
	var out []catalog.Change
	for _, ch := range all {
		if s := c.skip.Load(); s != 0 && int64(ch.Revision) >= s {
			break
		}
		if !audit {
			ch.Audit = nil
		}
		out = append(out, ch)
	}
	return out
}

func (c *carrying) Head(ctx context.Context) (catalog.Revision, error) {
	if c.down.Load() {
		return 0, errDown
	}
	return c.Store.Head(ctx)
}

func (c *carrying) Changes(ctx context.Context, after catalog.Revision, limit int) ([]catalog.Change, error) {
	if c.down.Load() {
		return nil, errDown
	}
	c.reads.Add(1)
	return c.Store.Changes(ctx, after, limit)
}

// A follower applies the records the notifications carried and reads
// none; a record that was not carried (a gap) is read, and everything
// after it too.
func TestReplicaAppliesCarriedRecords(t *testing.T) {
	st := memstore.New()
	writer := openReplica(t, st, st)
	cs := &carrying{Store: st}
	// Only notifications wake it: no poll reads the head.
	follower := openReplica(t, cs, st, func(o *catalog.Options) { o.PollInterval = time.Hour })
	if err := follower.SyncAudit(t.Context()); err != nil { // the forwarder's start reads the records
		t.Fatal(err)
	}
	waitRevision(t, follower, writer.Revision())
	cs.reads.Store(0)
	var rev catalog.Revision
	for i := range 6 {
		r, err := writer.Write(t.Context(), adminReq, create(fmt.Sprintf("c%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		rev = r
	}
	waitRevision(t, follower, rev)
	if n := cs.reads.Load(); n != 0 {
		t.Errorf("%d reads of change records for carried records, want 0", n)
	}
	if _, ok := principals(follower)["c5"]; !ok {
		t.Fatal("the carried change is not applied")
	}
	// A gap: the next record is not carried, the ones after it are.
	cs.skip.Store(int64(rev) + 1)
	for i := range 3 {
		r, err := writer.Write(t.Context(), adminReq, create(fmt.Sprintf("gap%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		rev = r
	}
	waitRevision(t, follower, rev)
	if cs.reads.Load() == 0 {
		t.Error("the record that was not carried was not read")
	}
	for i := range 3 {
		if _, ok := principals(follower)[fmt.Sprintf("gap%d", i)]; !ok {
			t.Fatalf("gap%d is missing", i)
		}
	}
	// Every change's audit is in the event stream once.
	if err := follower.SyncAudit(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkAuditOnce(t, st, rev)
}

// Carried records are hints: they never count as having synchronized with
// the store. With the store unreachable for queries while notifications
// still bring records, the replica applies them and still turns stale at
// its bound (fail closed).
func TestReplicaCarriedRecordsDoNotSynchronize(t *testing.T) {
	st := memstore.New()
	// No snapshot on the writer: its prune could race with carrying's
	// read of a record from the store (a real notification carries the
	// record itself), and the loop below writes thousands.
	writer := openReplica(t, st, st, func(o *catalog.Options) { o.SnapshotEvery = 1 << 30 })
	cs := &carrying{Store: st}
	const bound = 300 * time.Millisecond
	follower := openReplica(t, cs, st, func(o *catalog.Options) { o.MaxStaleness = bound })
	waitRevision(t, follower, writer.Revision())
	cs.down.Store(true)
	start := time.Now()
	deadline := time.Now().Add(30 * time.Second) // a failure bound
	var rev catalog.Revision
	for i := 0; !follower.Stale(); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("never stale (at revision %d of %d)", follower.Revision(), rev)
		}
		r, err := writer.Write(t.Context(), adminReq, create(fmt.Sprintf("s%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		rev = r
		waitRevision(t, follower, rev) // applied from the notification
	}
	if since := time.Since(start); since < bound/2 {
		t.Errorf("stale after %v, before the bound of %v", since, bound)
	}
	// Once the store answers again, a poll confirms the head.
	cs.down.Store(false)
	for deadline := time.Now().Add(30 * time.Second); follower.Stale(); {
		if time.Now().After(deadline) {
			t.Fatal("still stale with the store back")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkAuditOnce checks that the event store holds one audit record of
// every change through rev (each change of these tests has one).
func checkAuditOnce(t *testing.T, ev *memstore.Store, rev catalog.Revision) {
	t.Helper()
	es, err := ev.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	revs := map[catalog.Revision]int{}
	for _, e := range es {
		seen[e.EventID]++
		if seen[e.EventID] > 1 {
			t.Fatalf("event %s (%s) stored twice", e.EventID, e.Action)
		}
		if e.Revision > 0 {
			revs[e.Revision]++
		}
	}
	for r := catalog.Revision(1); r <= rev; r++ {
		if revs[r] != 1 {
			t.Fatalf("revision %d has %d audit records, want 1", r, revs[r])
		}
	}
}

// memLease is a ForwardLease for Services on one memstore: the first to
// Hold holds it until Release.
type memLease struct {
	shared *leaseState
	ev     *memstore.Store
}

type leaseState struct {
	mu     sync.Mutex
	holder *memLease
}

func (l *memLease) Hold(ctx context.Context) (bool, error) {
	l.shared.mu.Lock()
	defer l.shared.mu.Unlock()
	if l.shared.holder == nil {
		l.shared.holder = l
	}
	return l.shared.holder == l, nil
}

func (l *memLease) AuditedRevision(ctx context.Context) (catalog.Revision, error) {
	return l.ev.AuditedRevision(ctx)
}

func (l *memLease) Release() {
	l.shared.mu.Lock()
	defer l.shared.mu.Unlock()
	if l.shared.holder == l {
		l.shared.holder = nil
	}
}

func (l *memLease) holds() bool {
	l.shared.mu.Lock()
	defer l.shared.mu.Unlock()
	return l.shared.holder == l
}

// waitHolder waits until one of leases is held and returns its index.
func waitHolder(t *testing.T, leases []*memLease) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		for i, l := range leases {
			if l.holds() {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("nobody took the lease")
		}
	}
}

// waitAudited waits until the shared event stream holds the change audit
// through rev (when: the situation, for the failure message).
func waitAudited(t *testing.T, st *memstore.Store, rev catalog.Revision, when string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		a, err := st.AuditedRevision(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if a >= rev {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s the event stream is audited through %d, want %d", when, a, rev)
		}
	}
}

// countingEvents counts a replica's forwards of change audit records.
type countingEvents struct {
	*memstore.Store
	events atomic.Int64
}

func (c *countingEvents) AppendChangeAudit(ctx context.Context, through catalog.Revision, events []catalog.AuditEvent) error {
	c.events.Add(int64(len(events)))
	return c.Store.AppendChangeAudit(ctx, through, events)
}

// With a forward lease, only its holder forwards the change audit of every
// replica's changes (the others learn how far it got); a replica's reader
// (SyncAudit) does not wait for the holder; when the holder goes, another
// replica takes over; every change's audit is stored exactly once.
func TestReplicasOneForwarder(t *testing.T) {
	st := memstore.New()
	state := &leaseState{}
	var evs [3]*countingEvents
	var leases [3]*memLease
	var svcs [3]*catalog.Service
	for i := range svcs {
		evs[i] = &countingEvents{Store: st}
		leases[i] = &memLease{shared: state, ev: st}
		svcs[i] = openReplica(t, st, evs[i], func(o *catalog.Options) { o.ForwardLease = leases[i] })
	}
	holder := waitHolder(t, leases[:])
	// Wait until the holder knows it (its lease loop ran).
	var rev catalog.Revision
	for i := range 12 {
		r, err := svcs[i%3].Write(t.Context(), adminReq, create(fmt.Sprintf("f%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		rev = max(rev, r)
	}
	for i := range svcs {
		waitRevision(t, svcs[i], rev)
	}
	// Every replica learns that the event stream holds them all.
	for i, svc := range svcs {
		for deadline := time.Now().Add(30 * time.Second); svc.AuditedRevision() < rev; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("replica %d: audited through %d, want %d", i, svc.AuditedRevision(), rev)
			}
		}
	}
	checkAuditOnce(t, st, rev)
	for i := range evs {
		if n := evs[i].events.Load(); i != holder && n != 0 {
			t.Errorf("replica %d, not the holder, forwarded %d audit records", i, n)
		}
	}
	// A reader on another replica sees its own change at once: that
	// replica forwards for it.
	other := (holder + 1) % 3
	r, err := svcs[other].Write(t.Context(), adminReq, create("mine"))
	if err != nil {
		t.Fatal(err)
	}
	if err := svcs[other].SyncAudit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if a := svcs[other].AuditedRevision(); a < r {
		t.Fatalf("after SyncAudit audited through %d, want %d", a, r)
	}
	// The holder goes: another replica takes over and forwards.
	svcs[holder].Close()
	before := [3]int64{}
	for i := range evs {
		before[i] = evs[i].events.Load()
	}
	third := (holder + 2) % 3
	for i := range 6 {
		r, err := svcs[third].Write(t.Context(), adminReq, create(fmt.Sprintf("after%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		rev = r
	}
	waitAudited(t, st, rev, "after the holder left")
	checkAuditOnce(t, st, rev)
	// Another replica takes the lease (its lease loop may run after the
	// changes were forwarded: wait for it, do not read it once).
	if h := waitHolder(t, leases[:]); h == holder {
		t.Fatalf("replica %d holds the lease after it closed", h)
	}
	took := 0
	for i := range evs {
		if i != holder && evs[i].events.Load() > before[i] {
			took++
		}
	}
	if took != 1 {
		t.Errorf("%d replicas forwarded after the holder left, want the one that took the lease", took)
	}
}

// A lease holder that keeps the lease but does not forward is taken over:
// once the shared event stream has lacked a change's audit for
// Options.ForwardTakeover, another replica forwards it, each change's
// audit stored once.
func TestReplicasForwardTakeover(t *testing.T) {
	st := memstore.New()
	state := &leaseState{}
	var evs [2]*failingEvents
	var leases [2]*memLease
	var svcs [2]*catalog.Service
	for i := range svcs {
		evs[i] = &failingEvents{Store: st}
		leases[i] = &memLease{shared: state, ev: st}
		svcs[i] = openReplica(t, st, evs[i], func(o *catalog.Options) {
			o.ForwardLease, o.ForwardTakeover = leases[i], 100*time.Millisecond
		})
	}
	holder := waitHolder(t, leases[:])
	evs[holder].failing.Store(true)
	var rev catalog.Revision
	for i := range 5 {
		r, err := svcs[i%2].Write(t.Context(), adminReq, create(fmt.Sprintf("t%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		rev = max(rev, r)
	}
	waitAudited(t, st, rev, "with the holder stuck")
	checkAuditOnce(t, st, rev)
	// The holder, whose event store refuses, kept the lease: another
	// replica forwarded.
	if !leases[holder].holds() {
		t.Fatal("the stuck holder lost the lease: the test did not test a takeover")
	}
}
