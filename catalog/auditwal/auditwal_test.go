package auditwal

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/internal/lowprio"
	"github.com/mandatehq/mandate/catalog/internal/wal"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/catalog/storetest"
)

// keepOpen lets a memstore outlive the Log that wraps it, standing in for
// a durable inner store across "restarts".
type keepOpen struct{ *memstore.Store }

func (keepOpen) Close() error { return nil }

func TestEvents(t *testing.T) {
	storetest.RunEvents(t, func(t *testing.T) catalog.EventStore {
		l, err := Open(t.Context(), t.TempDir(), memstore.New(), Options{ApplyInterval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestEventsNeverApplied(t *testing.T) {
	// Everything stays in the log until a read needs it.
	storetest.RunEvents(t, func(t *testing.T) catalog.EventStore {
		l, err := Open(t.Context(), t.TempDir(), memstore.New(), Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func TestEventsDurability(t *testing.T) {
	var mu sync.Mutex
	inners := map[string]*memstore.Store{}
	storetest.RunEventsDurability(t, func(t *testing.T, dir string) catalog.EventStore {
		mu.Lock()
		in := inners[dir]
		if in == nil {
			in = memstore.New()
			inners[dir] = in
		}
		mu.Unlock()
		l, err := Open(t.Context(), dir, keepOpen{in}, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

func event(i int) catalog.AuditEvent {
	return catalog.AuditEvent{EventID: "e" + string(rune('a'+i%26)), Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Second),
		Service: "mcp", Action: "tools/call", RequestParams: `{"x":1}`}
}

// crash abandons l without applying what is pending, as a kill -9 would.
func crash(l *Log) {
	l.closed.Store(true)
	close(l.done)
	<-l.stopped
	if l.syncStopped != nil {
		<-l.syncStopped
	}
	l.zeroers.Wait()
	l.f.Close()
}

// end is the offset after l's last record (the file may hold
// preallocated zeros after it).
func end(l *Log) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// tear writes the first half of a record where the next append would have
// written it, as a crash during that append leaves it.
func tear(t *testing.T, dir string, at int64) {
	t.Helper()
	torn, err := encode(nil, &record{seq: 99, events: []catalog.AuditEvent{event(9)}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(torn[:len(torn)/2], at); err != nil {
		t.Fatal(err)
	}
}

// reopenAfterCrash crashes l, opens its directory again with o (closed
// when the test ends) and checks that the log holds exactly want.
func reopenAfterCrash(t *testing.T, l *Log, dir string, inner Inner, o Options, want []catalog.AuditEvent) *Log {
	t.Helper()
	crash(l)
	l, err := Open(t.Context(), dir, inner, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got, err := l.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("audit after a crash:\n got %+v\nwant %+v", got, want)
	}
	return l
}

// TestSyncInterval: with SyncInterval (--audit-sync off) an AppendAudit
// writes without an fsync and the syncer fsyncs later, while change
// records still fsync at once; a process crash loses none of what was
// written.
func TestSyncInterval(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	l, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30, SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	syncs := func(l *Log) int64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.syncs
	}
	var want []catalog.AuditEvent
	for i := range 20 {
		if err := l.AppendAudit(ctx, event(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, event(i))
	}
	if n := syncs(l); n != 0 {
		t.Fatalf("%d fsyncs for 20 appends with SyncInterval, want none", n)
	}
	ch := event(20)
	ch.Revision = 1
	if err := l.AppendChangeAudit(ctx, 1, []catalog.AuditEvent{ch}); err != nil {
		t.Fatal(err)
	}
	want = append(want, ch)
	if n := syncs(l); n != 1 {
		t.Fatalf("%d fsyncs after a change record, want 1", n)
	}
	l = reopenAfterCrash(t, l, dir, inner, Options{SyncInterval: time.Millisecond}, want)
	if err := l.AppendAudit(ctx, event(21)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); syncs(l) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the syncer did not fsync the log within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAppendAuditLazy: a lazy record is written without an fsync; the
// next AppendAudit's one fsync covers it, and without one the lazy timer
// fsyncs within LazySyncDelay; a process crash loses none of it.
func TestAppendAuditLazy(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	l, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30, LazySyncDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	syncs := func(l *Log) (int64, bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.syncs, l.unsynced
	}
	var want []catalog.AuditEvent
	for i := range 5 {
		if err := l.AppendAuditLazy(ctx, event(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, event(i))
	}
	if n, unsynced := syncs(l); n != 0 || !unsynced {
		t.Fatalf("after 5 lazy appends: %d fsyncs, unsynced %v; want 0, true", n, unsynced)
	}
	if err := l.AppendAudit(ctx, event(5)); err != nil {
		t.Fatal(err)
	}
	want = append(want, event(5))
	if n, unsynced := syncs(l); n != 1 || unsynced {
		t.Fatalf("after an AppendAudit: %d fsyncs, unsynced %v; want 1, false", n, unsynced)
	}
	if err := l.AppendAuditLazy(ctx, event(6)); err != nil {
		t.Fatal(err)
	}
	want = append(want, event(6))
	// The timer fsyncs only records left unsynced for LazySyncDelay: one
	// written just now waits (an AppendAudit will likely cover it).
	l.lazySync()
	if n, unsynced := syncs(l); n != 1 || !unsynced {
		t.Fatalf("the timer on a fresh lazy record: %d fsyncs, unsynced %v; want 1, true", n, unsynced)
	}
	l.mu.Lock()
	l.lazySince = l.lazySince.Add(-time.Hour)
	l.mu.Unlock()
	l.lazySync()
	if n, unsynced := syncs(l); n != 2 || unsynced {
		t.Fatalf("the timer on a lazy record an hour old: %d fsyncs, unsynced %v; want 2, false", n, unsynced)
	}
	if err := l.AppendAuditLazy(ctx, event(7)); err != nil {
		t.Fatal(err)
	}
	want = append(want, event(7))
	l = reopenAfterCrash(t, l, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30, LazySyncDelay: time.Millisecond}, want)
	if err := l.AppendAuditLazy(ctx, event(8)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if n, unsynced := syncs(l); n == 1 && !unsynced {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lazy record was not fsynced within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAppendPrepared: a batch of catalog.AuditLog is logged as it is,
// not copied (the log keeps the caller's events, times cut to the
// microsecond in place), fsynced only when durable, and replayed after a
// crash like any record.
func TestAppendPrepared(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	o := Options{ApplyInterval: time.Hour, MaxPending: 1 << 30, LazySyncDelay: time.Hour}
	l, err := Open(ctx, dir, inner, o)
	if err != nil {
		t.Fatal(err)
	}
	syncs := func() int64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.syncs
	}
	lazy := []catalog.AuditEvent{event(0), event(1)}
	lazy[0].Time = lazy[0].Time.Add(1500 * time.Nanosecond)
	if err := l.AppendPrepared(ctx, lazy, false); err != nil {
		t.Fatal(err)
	}
	if n := syncs(); n != 0 {
		t.Fatalf("a lazy batch: %d fsyncs, want 0", n)
	}
	if got := lazy[0].Time.Nanosecond() % 1000; got != 0 {
		t.Fatalf("time kept %d ns below the microsecond", got)
	}
	l.mu.Lock()
	kept := &l.pending[len(l.pending)-1].events[0] == &lazy[0]
	l.mu.Unlock()
	if !kept {
		t.Fatal("the log copied a prepared batch instead of keeping it")
	}
	durable := []catalog.AuditEvent{event(2)}
	if err := l.AppendPrepared(ctx, durable, true); err != nil {
		t.Fatal(err)
	}
	if n := syncs(); n != 1 {
		t.Fatalf("a durable batch: %d fsyncs, want 1", n)
	}
	want := append(append([]catalog.AuditEvent(nil), lazy...), durable...)
	reopenAfterCrash(t, l, dir, inner, o, want)
}

// TestReplayAfterCrash: records logged but not applied are applied at the
// next Open, exactly once; a torn record at the end is cut off.
func TestReplayAfterCrash(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	l, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	var want []catalog.AuditEvent
	for i := range 6 {
		e := event(i)
		if i%3 == 0 { // the AI gateway's columns: the third binary form
			e.Service, e.TraceID, e.Guardrails = catalog.AuditServiceLLM, "4bf92f3577b34da6a3ce929d0e0e4736", `[{"policy":"pii"}]`
			e.Usage = &catalog.LLMUsage{Provider: "openai", Model: "gpt-4.1", InputTokens: int64(i + 1), CostNanos: 7}
		}
		if i%2 == 0 {
			if err := l.AppendAudit(ctx, e, e); err != nil {
				t.Fatal(err)
			}
			want = append(want, e, e)
		} else {
			e.Revision = catalog.Revision(i)
			if err := l.AppendChangeAudit(ctx, catalog.Revision(i), []catalog.AuditEvent{e}); err != nil {
				t.Fatal(err)
			}
			want = append(want, e)
		}
	}
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 0 {
		t.Fatal("applied before the crash; the test needs the records pending")
	}
	at := end(l)
	crash(l)
	tear(t, dir, at)

	for range 2 { // exactly once: a second open replays nothing again
		l, err = Open(ctx, dir, inner, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := l.ListAudit(ctx, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("audit after replay:\n got %+v\nwant %+v", got, want)
		}
		if m, _ := l.AuditedRevision(ctx); m != 5 {
			t.Fatalf("AuditedRevision after replay = %d, want 5", m)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, FileName)); st.Size() != 0 {
		t.Fatalf("log not truncated after everything was applied: %d bytes", st.Size())
	}
}

// stalling is an inner store whose applies fail while stalled is set, as a
// store that cannot keep up would.
type stalling struct {
	keepOpen
	stalled atomic.Bool
}

func (s *stalling) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	if s.stalled.Load() {
		return catalog.Errorf(catalog.CodeUnavailable, "busy")
	}
	return s.keepOpen.ApplyLog(ctx, seq, events, mark)
}

// TestMaxPendingBytes: AppendAudit waits while too much waits to be
// applied; AppendChangeAudit does not.
func TestMaxPendingBytes(t *testing.T) {
	ctx := t.Context()
	inner := &stalling{keepOpen: keepOpen{memstore.New()}}
	inner.stalled.Store(true)
	l, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: 5 * time.Millisecond, MaxPendingBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	events := []catalog.AuditEvent{event(1), event(2), event(3), event(4), event(5), event(6), event(7), event(8)}
	n := 0
	for {
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := l.AppendAudit(short, events...)
		cancel()
		if err != nil {
			if !catalog.IsCode(err, catalog.CodeUnavailable) || n == 0 {
				t.Fatalf("AppendAudit %d: %v, want unavailable once over the limit", n, err)
			}
			break
		}
		if n++; n > 100 {
			t.Fatal("the log took 100 records over its limit without waiting")
		}
	}
	ch := event(20)
	ch.Revision = 3
	if err := l.AppendChangeAudit(ctx, 3, []catalog.AuditEvent{ch}); err != nil {
		t.Fatalf("AppendChangeAudit over the limit: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- l.AppendAudit(ctx, events...) }()
	inner.stalled.Store(false) // the applier catches up, the writer goes on
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if es, err := l.ListAudit(ctx, time.Time{}, 0); err != nil || len(es) != (n+1)*len(events)+1 {
		t.Fatalf("%d events, %v; want %d", len(es), err, (n+1)*len(events)+1)
	}
}

func TestFlush(t *testing.T) {
	ctx := t.Context()
	inner := keepOpen{memstore.New()}
	l, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.AppendAudit(ctx, event(1)); err != nil {
		t.Fatal(err)
	}
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 0 {
		t.Fatal("applied before Flush; the test needs it pending")
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 1 {
		t.Fatalf("%d events in the inner store after Flush, want 1", len(es))
	}
}

// A bad record followed by others is corruption: refused.
func TestCorruptionRefused(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	l, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := l.AppendAudit(ctx, event(i)); err != nil {
			t.Fatal(err)
		}
	}
	crash(l)
	path := filepath.Join(dir, FileName)
	b, _ := os.ReadFile(path)
	b[wal.HeaderSize+2] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, dir, inner, Options{}); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
		t.Fatalf("Open of a log corrupt in the middle: %v, want a refusal", err)
	}
}

// BenchmarkAppendAudit measures one durable AppendAudit of 64 events (a
// typical group-commit batch): encoding, write and fsync.
func BenchmarkAppendAudit(b *testing.B) {
	l, err := Open(b.Context(), b.TempDir(), memstore.New(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	events := make([]catalog.AuditEvent, 64)
	for i := range events {
		events[i] = event(i)
	}
	for b.Loop() {
		if err := l.AppendAudit(b.Context(), events...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
}

// applyCounter counts the inner store's ApplyLog transactions.
type applyCounter struct {
	keepOpen
	n atomic.Int64
}

func (c *applyCounter) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	c.n.Add(1)
	return c.keepOpen.ApplyLog(ctx, seq, events, mark)
}

// The background applier leaves the youngest records pending, so that a
// completion appended right after its request reaches the inner store in
// the same transaction (merged) rather than as an update; Flush applies
// all.
func TestApplyDelay(t *testing.T) {
	ctx := t.Context()
	inner := &applyCounter{keepOpen: keepOpen{memstore.New()}}
	l, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	old, req := event(1), event(2)
	if err := l.AppendAudit(ctx, old); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	if err := l.AppendAudit(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := l.apply(ctx, cut, 0); err != nil { // what the applier does with cut = now - ApplyDelay
		t.Fatal(err)
	}
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 1 || es[0].EventID != old.EventID {
		t.Fatalf("inner store after applying the old records: %+v", es)
	}
	done := req
	done.Completes, done.StatusCode = true, 200
	if err := l.AppendAudit(ctx, done); err != nil {
		t.Fatal(err)
	}
	before := inner.n.Load()
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := inner.n.Load() - before; n != 1 {
		t.Fatalf("Flush applied the request and its completion in %d transactions, want 1", n)
	}
	es, _ := inner.ListAudit(ctx, time.Time{}, 0)
	if len(es) != 2 || es[1].EventID != req.EventID || es[1].StatusCode != 200 {
		t.Fatalf("inner store after Flush: %+v", es)
	}
}

// recorder records the events of each ApplyLog and fails them while
// stalled is set.
type recorder struct {
	keepOpen
	stalled atomic.Bool
	mu      sync.Mutex
	applied [][]catalog.AuditEvent
}

func (r *recorder) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	if r.stalled.Load() {
		return catalog.Errorf(catalog.CodeUnavailable, "busy")
	}
	r.mu.Lock()
	r.applied = append(r.applied, append([]catalog.AuditEvent(nil), events...))
	r.mu.Unlock()
	return r.keepOpen.ApplyLog(ctx, seq, events, mark)
}

// A completion logged after its request's record but still pending when
// the request's record is applied goes with it, in the same transaction
// (one merged row, no update of a stored row), and is not applied again
// with its own record; a failed apply leaves it to its record, and a
// crash before its record is applied replays it harmlessly.
func TestCompletionPulledIntoRequestBatch(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := &recorder{keepOpen: keepOpen{memstore.New()}}
	l, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	req, other := event(1), event(2)
	if err := l.AppendAudit(ctx, req); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	done := req
	done.Completes, done.StatusCode = true, 200
	done.Usage = &catalog.LLMUsage{Provider: "openai", Model: "gpt-4.1", InputTokens: 3, OutputTokens: 5, CostNanos: 9}
	if err := l.AppendAudit(ctx, other, done); err != nil { // a younger record
		t.Fatal(err)
	}
	l.mu.Lock()
	if !l.pending[1].at.After(cut) { // appended after cut, so later on any clock; make sure
		l.pending[1].at = cut.Add(time.Nanosecond)
	}
	l.mu.Unlock()

	inner.stalled.Store(true)
	if _, err := l.apply(ctx, cut, 0); err == nil {
		t.Fatal("apply succeeded on a stalled store")
	}
	inner.stalled.Store(false)
	if _, err := l.apply(ctx, cut, 0); err != nil {
		t.Fatal(err)
	}
	if len(inner.applied) != 1 || len(inner.applied[0]) != 2 || inner.applied[0][0].Completes || !inner.applied[0][1].Completes {
		t.Fatalf("the request's record was applied as %+v, want the request and its completion", inner.applied)
	}
	row := func() catalog.AuditEvent {
		t.Helper()
		es, _ := inner.ListAudit(ctx, time.Time{}, 0)
		if len(es) == 0 || es[0].EventID != req.EventID {
			t.Fatalf("inner store holds %+v", es)
		}
		return es[0]
	}
	want := row()
	if want.StatusCode != 200 || want.Usage == nil || want.Usage.OutputTokens != 5 {
		t.Fatalf("row after the first apply: %+v", want)
	}

	// A crash now: the completion's record is replayed, completing the row
	// again with the same outcome.
	crash(l)
	l, err = Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := inner.applied[len(inner.applied)-1]; len(got) != 2 || !got[1].Completes {
		t.Fatalf("replay applied %+v, want the later record whole", got)
	}
	if got := row(); !reflect.DeepEqual(got, want) {
		t.Fatalf("row after the replay: %+v, want %+v", got, want)
	}
	if es, _ := inner.ListAudit(ctx, time.Time{}, 0); len(es) != 2 {
		t.Fatalf("inner store holds %d rows, want 2", len(es))
	}

	// Without a crash, the record whose completion was taken applies the
	// rest only.
	req2, done2 := event(3), event(3)
	done2.Completes, done2.StatusCode = true, 201
	if err := l.AppendAudit(ctx, req2); err != nil {
		t.Fatal(err)
	}
	cut = time.Now()
	if err := l.AppendAudit(ctx, done2); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	if !l.pending[1].at.After(cut) {
		l.pending[1].at = cut.Add(time.Nanosecond)
	}
	l.mu.Unlock()
	n := len(inner.applied)
	if _, err := l.apply(ctx, cut, 0); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := inner.applied[n:]; len(got) != 2 || len(got[0]) != 2 || len(got[1]) != 0 {
		t.Fatalf("applied %+v, want [request completion] then []", got)
	}
}

// TestMaxPendingCountsEvents: the applier runs once MaxPending events
// wait, however few records hold them (a group-commit record carries many
// events under load), and not before.
func TestMaxPendingCountsEvents(t *testing.T) {
	ctx := t.Context()
	inner := &applyCounter{keepOpen: keepOpen{memstore.New()}}
	l, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: time.Hour, MaxPending: 10, ApplyDelay: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	events := make([]catalog.AuditEvent, 9)
	for i := range events {
		events[i] = event(i)
	}
	if err := l.AppendAudit(ctx, events...); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	kicked := len(l.kick) > 0
	l.mu.Unlock()
	if kicked || inner.n.Load() != 0 {
		t.Fatal("applied (or kicked) with 9 of 10 events pending")
	}
	if err := l.AppendAudit(ctx, event(9)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); inner.n.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("10 events in 2 records pending, MaxPending 10: not applied within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestApplySlices: the background applier applies what is pending in
// transactions of at most ApplySlice events (whole records), each event
// exactly once; a crash between two slices loses nothing and applies
// nothing twice.
func TestApplySlices(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := &recorder{keepOpen: keepOpen{memstore.New()}}
	o := Options{ApplyInterval: time.Hour, MaxPending: 1 << 30, ApplyDelay: -1, ApplySlice: 3}
	l, err := Open(ctx, dir, inner, o)
	if err != nil {
		t.Fatal(err)
	}
	var want []catalog.AuditEvent
	for i := 0; i < 20; i += 2 {
		if err := l.AppendAudit(ctx, event(i), event(i+1)); err != nil {
			t.Fatal(err)
		}
		want = append(want, event(i), event(i+1))
	}
	applied := func() (n, events int) {
		inner.mu.Lock()
		defer inner.mu.Unlock()
		for _, b := range inner.applied {
			events += len(b)
		}
		return len(inner.applied), events
	}
	// One slice, then a crash before the next.
	more, err := l.apply(ctx, time.Now(), o.ApplySlice)
	if err != nil || !more {
		t.Fatalf("first slice: more %v, err %v; want more, nil", more, err)
	}
	if n, events := applied(); n != 1 || events != 2 {
		t.Fatalf("first slice: %d transactions of %d events, want 1 of 2 (one record)", n, events)
	}
	crash(l)
	l, err = Open(ctx, dir, inner, o) // replays the 9 records left: Open applies them at once
	if err != nil {
		t.Fatal(err)
	}
	if n, events := applied(); n != 2 || events != 20 {
		t.Fatalf("after the crash: %d transactions of %d events in all, want 2 of 20", n, events)
	}
	for i := 20; i < 40; i += 2 {
		if err := l.AppendAudit(ctx, event(i), event(i+1)); err != nil {
			t.Fatal(err)
		}
		want = append(want, event(i), event(i+1))
	}
	l.kick <- struct{}{} // the applier's round: ten slices of one record
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, events := applied(); events == 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the applier did not apply every slice within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	inner.mu.Lock()
	for i, b := range inner.applied[2:] {
		if len(b) != 2 {
			t.Errorf("background transaction %d applied %d events, want one record of 2", i, len(b))
		}
	}
	inner.mu.Unlock()
	got, err := l.ListAudit(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("applied:\n got %+v\nwant %+v", got, want)
	}
}

// niceOf records the nice value of the thread each ApplyLog runs on.
type niceOf struct {
	keepOpen
	nices chan int
}

func (n niceOf) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	v, err := lowprio.Nice()
	if err != nil {
		return err
	}
	n.nices <- v
	return n.keepOpen.ApplyLog(ctx, seq, events, mark)
}

// TestApplyNice: with ApplyNice the background applier applies on a
// thread of lower priority; Flush (a query's read) applies on its
// caller's thread, at the caller's priority.
func TestApplyNice(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-thread priorities are Linux's")
	}
	ctx := t.Context()
	base, err := lowprio.Nice()
	if err != nil {
		t.Fatal(err)
	}
	if base > 14 {
		t.Skipf("the test runs at nice %d already", base)
	}
	open := func(maxPending int) (*Log, niceOf) {
		inner := niceOf{keepOpen{memstore.New()}, make(chan int, 4)}
		l, err := Open(ctx, t.TempDir(), inner, Options{ApplyInterval: time.Hour, MaxPending: maxPending, ApplyDelay: -1, ApplyNice: base + 5})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, inner
	}
	bg, inner := open(1) // every append kicks the applier
	if err := bg.AppendAudit(ctx, event(1)); err != nil {
		t.Fatal(err)
	}
	if got := <-inner.nices; got != base+5 {
		t.Errorf("background apply at nice %d, want %d", got, base+5)
	}
	fg, inner := open(1 << 30) // the applier never runs: only Flush applies
	if err := fg.AppendAudit(ctx, event(2)); err != nil {
		t.Fatal(err)
	}
	if err := fg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := <-inner.nices; got != base {
		t.Errorf("Flush applied at nice %d, want the caller's %d", got, base)
	}
}

// TestPreallocatedAppends: the log keeps zero-filled space after its last
// record, so that appends overwrite blocks within the file's size (their
// fdatasync commits no size change); after a crash a torn record among
// the zeros is cut off and every acknowledged record replays.
func TestPreallocatedAppends(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := keepOpen{memstore.New()}
	o := Options{ApplyInterval: time.Hour, MaxPending: 1 << 30}
	l, err := Open(ctx, dir, inner, o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	fileSize := func() int64 {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	want := []catalog.AuditEvent{event(0)}
	if err := l.AppendAudit(ctx, event(0)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); fileSize() < end(l)+preallocAhead/2; {
		if time.Now().After(deadline) {
			t.Fatalf("no space preallocated after the log's end: file %d bytes, log %d", fileSize(), end(l))
		}
		time.Sleep(time.Millisecond)
	}
	size := fileSize()
	for i := 1; i < 20; i++ {
		if err := l.AppendAudit(ctx, event(i)); err != nil {
			t.Fatal(err)
		}
		want = append(want, event(i))
	}
	if got := fileSize(); got != size {
		t.Fatalf("appends in preallocated space changed the file's size: %d, was %d", got, size)
	}
	at := end(l)
	crash(l)
	tear(t, dir, at)
	l, err = Open(ctx, dir, inner, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	got, err := l.ListAudit(ctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("audit after a crash:\n got %+v\nwant %+v", got, want)
	}
}

// TestCloseLeavesNoPreallocation: a clean Close cuts the preallocated
// zeros off, also when records stay in the log (the inner store refused
// them), so that the file holds only records.
func TestCloseLeavesNoPreallocation(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := &stalling{keepOpen: keepOpen{memstore.New()}}
	inner.stalled.Store(true)
	l, err := Open(ctx, dir, inner, Options{ApplyInterval: time.Hour, MaxPending: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendAudit(ctx, event(0)); err != nil {
		t.Fatal(err)
	}
	l.zeroers.Wait() // the preallocation the append started
	at := end(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != at {
		t.Fatalf("after Close the log is %d bytes, want %d (its records only)", st.Size(), at)
	}
}

// TestSyncAudit: SyncAudit fsyncs what was written since the last fsync,
// and nothing when everything written is durable already (a durable
// append, an earlier SyncAudit) or when the log syncs on its own interval.
func TestSyncAudit(t *testing.T) {
	tests := []struct {
		name      string
		o         Options
		wantSyncs []int64 // l.syncs after each step
	}{
		{"sync on", Options{LazySyncDelay: time.Hour}, []int64{0, 1, 1, 2, 2}},
		{"sync off", Options{SyncInterval: time.Hour}, []int64{0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			tt.o.ApplyInterval, tt.o.MaxPending = time.Hour, 1<<30
			l, err := Open(ctx, t.TempDir(), keepOpen{memstore.New()}, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			syncs := func() int64 {
				l.mu.Lock()
				defer l.mu.Unlock()
				return l.syncs
			}
			steps := []func() error{
				func() error { return l.AppendPrepared(ctx, []catalog.AuditEvent{event(1)}, false) },
				func() error { return l.SyncAudit(ctx) },
				func() error { return l.SyncAudit(ctx) }, // nothing new
				func() error { return l.AppendPrepared(ctx, []catalog.AuditEvent{event(2)}, true) },
				func() error { return l.SyncAudit(ctx) }, // durable already
			}
			for i, step := range steps {
				if err := step(); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if got := syncs(); got != tt.wantSyncs[i] {
					t.Fatalf("after step %d: %d fsyncs, want %d", i, got, tt.wantSyncs[i])
				}
			}
		})
	}
}

// ReportLatencies reports the p50 and p99 of l (sorted in place) as the
// benchmark's metrics name-p50-µs and name-p99-µs.
func ReportLatencies(b *testing.B, name string, l []time.Duration) {
	b.Helper()
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	q := func(f float64) float64 { return float64(l[int(f*float64(len(l)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), name+"-p50-µs")
	b.ReportMetric(q(0.99), name+"-p99-µs")
}
