package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// slowWriter stands in for a store whose every write costs an fsync: it
// records the batches it is given and can be made to fail or to block.
type slowWriter struct {
	delay time.Duration
	fail  atomic.Pointer[error]
	gate  chan struct{} // when set, each write waits for a receive

	mu      sync.Mutex
	batches [][]catalog.AuditEvent
}

func (w *slowWriter) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	if w.gate != nil {
		select {
		case <-w.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	time.Sleep(w.delay)
	if err := w.fail.Load(); err != nil {
		return *err
	}
	w.mu.Lock()
	w.batches = append(w.batches, append([]catalog.AuditEvent(nil), events...))
	w.mu.Unlock()
	return nil
}

func (w *slowWriter) stored() (writes, events int, all []catalog.AuditEvent) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.batches {
		events += len(b)
		all = append(all, b...)
	}
	return len(w.batches), events, all
}

func closeLog(t *testing.T, l *catalog.AuditLog) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// waitPending waits until the log holds n events (queued or being
// written): the producers started in goroutines have all called Record.
func waitPending(t *testing.T, l *catalog.AuditLog, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); l.Pending() != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d events in the log after 20s, want %d", l.Pending(), n)
		}
	}
}

// The interface the gateway's audit stage needs (gateway.AuditSink; the
// catalog cannot import the gateway).
var _ interface {
	Record(context.Context, catalog.AuditEvent) error
} = (*catalog.AuditLog)(nil)

func TestAuditLogGroupCommit(t *testing.T) {
	w := &slowWriter{delay: 2 * time.Millisecond}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{})
	defer closeLog(t, l)
	const n = 2000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- l.Record(t.Context(), catalog.AuditEvent{Service: "mcp", Action: "tools/call", RequestID: string(rune('a' + i%26))})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	writes, events, all := w.stored()
	if events != n {
		t.Fatalf("%d events stored, want %d", events, n)
	}
	// Every write takes 2 ms; 2000 serial writes would take 4 s.
	if writes > n/20 {
		t.Errorf("%d concurrent Records took %d store writes; want them to share writes", n, writes)
	}
	ids := map[string]bool{}
	for _, e := range all {
		if e.EventID == "" || e.Time.IsZero() || e.Time.Location() != time.UTC {
			t.Fatalf("event not filled in: id %q time %v", e.EventID, e.Time)
		}
		if ids[e.EventID] {
			t.Fatalf("duplicate event id %s", e.EventID)
		}
		ids[e.EventID] = true
	}
	t.Logf("%d Records, %d store writes", n, writes)
}

func TestAuditLogMaxBatch(t *testing.T) {
	w := &slowWriter{delay: 10 * time.Millisecond}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{MaxBatch: 10, MaxDelay: -1})
	defer closeLog(t, l)
	var wg sync.WaitGroup
	for range 95 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Record(t.Context(), catalog.AuditEvent{Action: "x"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	total, full := 0, 0
	for _, b := range w.batches {
		if len(b) > 10 {
			t.Errorf("a write of %d events; MaxBatch is 10", len(b))
		}
		if len(b) == 10 {
			full++
		}
		total += len(b)
	}
	if total != 95 || full == 0 {
		t.Errorf("%d events in %d writes, %d of them full; want 95 events and full writes", total, len(w.batches), full)
	}
}

func TestAuditLogErrorReachesEveryWaiter(t *testing.T) {
	w := &slowWriter{gate: make(chan struct{})}
	disk := catalog.Errorf(catalog.CodeUnavailable, "disk full")
	var e error = disk
	w.fail.Store(&e)
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{})
	defer closeLog(t, l)
	const n = 50
	errs := make(chan error, n)
	for range n {
		go func() { errs <- l.Record(t.Context(), catalog.AuditEvent{Action: "x"}) }()
	}
	waitPending(t, l, n)
	close(w.gate) // every write proceeds, and fails
	for range n {
		if err := <-errs; !errors.Is(err, disk) {
			t.Fatalf("Record = %v, want the store's error", err)
		}
	}
	// An unexpected store failure reaches the caller as unavailable.
	var internal error = errors.New("EIO")
	w.fail.Store(&internal)
	if err := l.Record(t.Context(), catalog.AuditEvent{Action: "x"}); !catalog.IsCode(err, catalog.CodeUnavailable) || !errors.Is(err, internal) {
		t.Fatalf("Record = %v, want CodeUnavailable wrapping the cause", err)
	}
	w.fail.Store(nil)
	if err := l.Record(t.Context(), catalog.AuditEvent{Action: "x"}); err != nil {
		t.Fatalf("Record after the store recovered: %v", err)
	}
}

func TestAuditLogCloseDrains(t *testing.T) {
	w := &slowWriter{gate: make(chan struct{})}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{MaxBatch: 7})
	const n = 40
	errs := make(chan error, n)
	for range n {
		go func() { errs <- l.Record(context.Background(), catalog.AuditEvent{Action: "x"}) }()
	}
	waitPending(t, l, n) // every Record is queued before Close
	closed := make(chan error, 1)
	go func() { closed <- l.Close(context.Background()) }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned %v while events were queued", err)
	case <-time.After(20 * time.Millisecond):
	}
	// Close before the drain finishes gives up waiting, not writing.
	short, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if err := l.Close(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a short deadline = %v", err)
	}
	close(w.gate)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("a Record queued before Close failed: %v", err)
		}
	}
	if _, events, _ := w.stored(); events != n {
		t.Fatalf("%d events written, want %d", events, n)
	}
	if err := l.Record(t.Context(), catalog.AuditEvent{}); !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Fatalf("Record after Close = %v, want unavailable", err)
	}
	if err := l.RecordBatch(t.Context(), []catalog.AuditEvent{{}}); !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Fatalf("RecordBatch after Close = %v, want unavailable", err)
	}
	if err := l.Close(t.Context()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestAuditLogContext(t *testing.T) {
	w := &slowWriter{gate: make(chan struct{})}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{})
	defer closeLog(t, l)
	defer close(w.gate)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.Record(ctx, catalog.AuditEvent{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Record with a write that does not finish = %v, want the deadline", err)
	}
	if err := l.Record(ctx, catalog.AuditEvent{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Record with a done context = %v", err)
	}
}

func TestAuditLogRecordBatch(t *testing.T) {
	w := &slowWriter{}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{MaxBatch: 4})
	defer closeLog(t, l)
	in := []catalog.AuditEvent{{EventID: "keep", Action: "a"}, {Action: "b"}, {Action: "c"}, {Action: "d"}, {Action: "e"}, {Action: "f"}}
	if err := l.RecordBatch(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	writes, events, all := w.stored()
	// Larger than MaxBatch: still one write, all or nothing.
	if writes != 1 || events != 6 {
		t.Fatalf("%d writes of %d events, want 1 of 6", writes, events)
	}
	if all[0].EventID != "keep" || all[1].EventID == "" || in[1].EventID != "" {
		t.Fatalf("ids: stored %q %q, caller's slice %q (must stay unchanged)", all[0].EventID, all[1].EventID, in[1].EventID)
	}
	// One invalid event: nothing is written.
	bad := []catalog.AuditEvent{{Action: "ok"}, {Action: "bad", StatusCode: math.MaxInt32 + 1}}
	if err := l.RecordBatch(t.Context(), bad); !catalog.IsCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("RecordBatch with a bad event = %v, want invalid argument", err)
	}
	if _, events, _ := w.stored(); events != 6 {
		t.Fatalf("%d events after a refused batch, want 6", events)
	}
	if err := l.RecordBatch(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestAuditEventValidate(t *testing.T) {
	for name, e := range map[string]catalog.AuditEvent{
		"status":   {StatusCode: -1 << 40},
		"nan":      {LatencyMs: math.NaN()},
		"inf":      {LatencyMs: math.Inf(1)},
		"revision": {Revision: -1},
	} {
		if err := e.Validate(); !catalog.IsCode(err, catalog.CodeInvalidArgument) {
			t.Errorf("%s: Validate = %v, want invalid argument", name, err)
		}
	}
	e := catalog.AuditEvent{UserAgent: "curl\xff/8", StatusCode: 500, LatencyMs: 1.5}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if e.UserAgent != "curl\uFFFD/8" {
		t.Fatalf("invalid UTF-8 not repaired: %q", e.UserAgent)
	}
}

// TestAuditLogWithStore runs the log against a real store and checks what
// a reader sees.
func TestAuditLogWithStore(t *testing.T) {
	st := memstore.New()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	l := catalog.NewAuditLog(st, catalog.AuditLogOptions{Now: func() time.Time { return at }})
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Record(t.Context(), catalog.AuditEvent{Service: "mcp", Decision: "allow"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	closeLog(t, l)
	es, err := st.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 100 || !es[0].Time.Equal(at) || es[0].Time.Location() != time.UTC {
		t.Fatalf("%d events, first at %v; want 100 at %v in UTC", len(es), es[0].Time, at)
	}
}

// Enqueue returns before the write; the ack tells when the event is
// durable. Events of Enqueue, Submit and Record reach the store in the
// order they were queued.
func TestAuditLogEnqueueAndSubmit(t *testing.T) {
	w := &slowWriter{gate: make(chan struct{})}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{})
	defer closeLog(t, l)
	ack, err := l.Enqueue(t.Context(), catalog.AuditEvent{Action: "request"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "completion", Completes: true}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if err := ack.Wait(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait before the write = %v", err)
	}
	recorded := make(chan error, 1)
	go func() { recorded <- l.Record(t.Context(), catalog.AuditEvent{Action: "record"}) }()
	close(w.gate)
	if err := ack.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-recorded; err != nil {
		t.Fatal(err)
	}
	if err := ack.Wait(t.Context()); err != nil {
		t.Fatalf("second Wait: %v", err)
	}
	_, _, all := w.stored()
	var got []string
	for _, e := range all {
		got = append(got, e.Action)
	}
	if len(got) != 3 || got[0] != "request" || got[1] != "completion" || got[2] != "record" || !all[1].Completes {
		t.Fatalf("stored %v", got)
	}
	if err := catalog.DoneAuditAck(errBoom).Wait(t.Context()); err != errBoom {
		t.Fatalf("DoneAuditAck = %v", err)
	}
}

var errBoom = errors.New("boom")

// After a failed write, Enqueue and Submit refuse at once (the gateway
// then does not forward the call) until a moment has passed; then events
// go through again and a successful write ends the refusals.
func TestAuditLogRefusesAfterFailure(t *testing.T) {
	w := &slowWriter{}
	disk := catalog.Errorf(catalog.CodeUnavailable, "disk full")
	var e error = disk
	w.fail.Store(&e)
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{})
	defer closeLog(t, l)
	ack, err := l.Enqueue(t.Context(), catalog.AuditEvent{Action: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ack.Wait(t.Context()); !errors.Is(err, disk) {
		t.Fatalf("Wait = %v, want the store's error", err)
	}
	if _, err := l.Enqueue(t.Context(), catalog.AuditEvent{Action: "x"}); !errors.Is(err, disk) {
		t.Fatalf("Enqueue right after a failure = %v", err)
	}
	if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "x"}); !errors.Is(err, disk) {
		t.Fatalf("Submit right after a failure = %v", err)
	}
	w.fail.Store(nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ack, err := l.Enqueue(t.Context(), catalog.AuditEvent{Action: "x"})
		if err == nil {
			if err := ack.Wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Enqueue still refused after the store recovered: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a bound
	}
	if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "x"}); err != nil {
		t.Fatalf("Submit after a successful write: %v", err)
	}
}

// MaxQueued bounds what Enqueue and Submit leave in the queue.
func TestAuditLogMaxQueued(t *testing.T) {
	w := &slowWriter{gate: make(chan struct{})}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{MaxQueued: 2, MaxBatch: 1})
	defer closeLog(t, l)
	for range 2 {
		if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.Submit(short, catalog.AuditEvent{Action: "x"}); !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Fatalf("Submit past MaxQueued = %v, want unavailable", err)
	}
	queued := make(chan error, 1)
	go func() { queued <- l.Submit(t.Context(), catalog.AuditEvent{Action: "x"}) }()
	w.gate <- struct{}{} // one write: room for one more
	if err := <-queued; err != nil {
		t.Fatal(err)
	}
	close(w.gate)
}

// Sync waits for what was queued before it, submitted events included.
func TestAuditLogSync(t *testing.T) {
	w := &slowWriter{gate: make(chan struct{})}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{})
	defer closeLog(t, l)
	if err := l.Sync(t.Context()); err != nil {
		t.Fatalf("Sync of an empty log: %v", err)
	}
	if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "completion"}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := l.Sync(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Sync before the write = %v", err)
	}
	close(w.gate)
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, n, _ := w.stored(); n != 1 {
		t.Fatalf("%d events stored after Sync", n)
	}
}

// Events nobody waits for ride with the next event somebody waits for
// (a call's completion with the next call's request record) instead of
// taking a write of their own.
func TestAuditLogSubmitRidesAlong(t *testing.T) {
	w := &slowWriter{}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{SubmitDelay: time.Hour})
	defer closeLog(t, l)
	if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "completion"}); err != nil {
		t.Fatal(err)
	}
	ack, err := l.Enqueue(t.Context(), catalog.AuditEvent{Action: "request"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ack.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if writes, events, _ := w.stored(); writes != 1 || events != 2 {
		t.Fatalf("%d writes of %d events, want one write of both", writes, events)
	}
	// Sync does not wait for a rider's delay either.
	if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "completion"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, events, _ := w.stored(); events != 3 {
		t.Fatalf("%d events after Sync, want 3", events)
	}
}

// TestAuditLogSubmitWhileLingering: after a write the writer lingers for
// SubmitDelay on its own timer; an event nobody waits for (a gateway
// call's records with --audit-sync off) does not wake it then, one
// somebody waits for does, and nothing queued is left behind.
func TestAuditLogSubmitWhileLingering(t *testing.T) {
	w := &slowWriter{}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{SubmitDelay: time.Hour})
	defer closeLog(t, l)
	if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "first"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(t.Context()); err != nil { // written now, then the writer lingers
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !l.Lingering(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the writer does not linger after a write")
		}
	}
	kicks := l.Kicks()
	if err := l.Submit(t.Context(), catalog.AuditEvent{Action: "unawaited"}); err != nil {
		t.Fatal(err)
	}
	if k := l.Kicks(); k != kicks {
		t.Fatalf("a Submit while the writer lingers woke it (%d wake-ups, want %d)", k, kicks)
	}
	// An event somebody waits for wakes it, joining the open batch.
	ack, err := l.Enqueue(t.Context(), catalog.AuditEvent{Action: "awaited"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := ack.Wait(ctx); err != nil {
		t.Fatalf("the awaited event: %v (held for the writer's linger)", err)
	}
	if writes, events, _ := w.stored(); writes != 2 || events != 3 {
		t.Fatalf("%d writes of %d events, want 2 writes of 3", writes, events)
	}
	// With a short delay the writer's timer writes what queued while it
	// lingered, and then goes idle: a later Submit wakes it.
	w2 := &slowWriter{}
	l2 := catalog.NewAuditLog(w2, catalog.AuditLogOptions{SubmitDelay: time.Millisecond})
	defer closeLog(t, l2)
	for i := range 3 {
		if err := l2.Submit(t.Context(), catalog.AuditEvent{Action: "completion"}); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
			if _, events, _ := w2.stored(); events == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("event %d not written", i+1)
			}
		}
	}
}

// lazyWriter is a slowWriter that also writes lazily (AuditLazyWriter).
type lazyWriter struct {
	slowWriter
	lazy atomic.Int64 // events written by AppendAuditLazy
}

func (w *lazyWriter) AppendAuditLazy(ctx context.Context, events ...catalog.AuditEvent) error {
	w.lazy.Add(int64(len(events)))
	return w.slowWriter.AppendAudit(ctx, events...)
}

// TestAuditLogLazyForUnawaited: a batch of events nobody waits for
// (Submit's) goes to AppendAuditLazy, a batch with an event somebody
// waits for to AppendAudit, so that the durable write covers both.
func TestAuditLogLazyForUnawaited(t *testing.T) {
	w := &lazyWriter{}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{SubmitDelay: -1, MaxDelay: -1})
	defer closeLog(t, l)
	ctx := t.Context()
	if err := l.Submit(ctx, catalog.AuditEvent{Service: "llm", Action: "completion"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := w.lazy.Load(); n != 1 {
		t.Fatalf("a submitted event alone: %d lazy events, want 1", n)
	}
	if err := l.Record(ctx, catalog.AuditEvent{Service: "llm", Action: "request"}); err != nil {
		t.Fatal(err)
	}
	if n := w.lazy.Load(); n != 1 {
		t.Fatalf("a recorded event was written lazily (%d lazy events, want 1)", n)
	}
	if writes, events, _ := w.stored(); writes != 2 || events != 2 {
		t.Fatalf("%d writes of %d events, want 2 of 2", writes, events)
	}
}

// preparedWriter records AppendPrepared's calls; lazyPrepared also
// writes lazily (AuditLazyWriter).
type preparedWriter struct {
	slowWriter
	pmu     sync.Mutex
	durable []bool
	events  [][]catalog.AuditEvent
}

func (w *preparedWriter) AppendPrepared(_ context.Context, events []catalog.AuditEvent, durable bool) error {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	w.durable = append(w.durable, durable)
	w.events = append(w.events, events)
	return nil
}

func (w *preparedWriter) calls() ([]bool, [][]catalog.AuditEvent) {
	w.pmu.Lock()
	defer w.pmu.Unlock()
	return slices.Clone(w.durable), slices.Clone(w.events)
}

type lazyPrepared struct{ preparedWriter }

func (w *lazyPrepared) AppendAuditLazy(ctx context.Context, events ...catalog.AuditEvent) error {
	return w.slowWriter.AppendAudit(ctx, events...)
}

// TestAuditLogPrepared: a writer that takes prepared batches gets every
// batch through AppendPrepared, its events validated once by the log
// (invalid UTF-8 repaired), durable unless nobody waits for any of them
// and the writer writes lazily; AppendAudit and AppendAuditLazy are not
// called.
func TestAuditLogPrepared(t *testing.T) {
	for _, lazy := range []bool{false, true} {
		t.Run(fmt.Sprintf("lazy=%v", lazy), func(t *testing.T) {
			var w interface {
				catalog.AuditPreparedWriter
				calls() ([]bool, [][]catalog.AuditEvent)
				stored() (int, int, []catalog.AuditEvent)
			} = &preparedWriter{}
			if lazy {
				w = &lazyPrepared{}
			}
			l := catalog.NewAuditLog(w, catalog.AuditLogOptions{SubmitDelay: -1, MaxDelay: -1})
			defer closeLog(t, l)
			ctx := t.Context()
			if err := l.Submit(ctx, catalog.AuditEvent{Service: "llm", Action: "completion", UserAgent: "bad\xffagent"}); err != nil {
				t.Fatal(err)
			}
			if err := l.Sync(ctx); err != nil {
				t.Fatal(err)
			}
			if err := l.Record(ctx, catalog.AuditEvent{Service: "llm", Action: "request"}); err != nil {
				t.Fatal(err)
			}
			durable, events := w.calls()
			if want := []bool{!lazy, true}; !slices.Equal(durable, want) {
				t.Fatalf("AppendPrepared durable %v, want %v", durable, want)
			}
			if len(events) != 2 || len(events[0]) != 1 || len(events[1]) != 1 {
				t.Fatalf("batches %v, want two of one event", events)
			}
			if ua := events[0][0].UserAgent; ua != "bad\uFFFDagent" {
				t.Fatalf("user agent %q: not validated", ua)
			}
			if writes, _, _ := w.stored(); writes != 0 {
				t.Fatalf("%d writes through AppendAudit or AppendAuditLazy, want 0", writes)
			}
		})
	}
}

// gatedWriter tells when a write begins and waits to be let through.
type gatedWriter struct {
	entered, release chan struct{}
	mu               sync.Mutex
	sizes            []int
}

func (w *gatedWriter) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	w.entered <- struct{}{}
	<-w.release
	w.mu.Lock()
	w.sizes = append(w.sizes, len(events))
	w.mu.Unlock()
	return nil
}

// TestAuditLogEnqueueNotHeldForComebacks: the writer waits (MaxDelay) for
// blocked producers answered by the previous write to come back, but not
// for Enqueue's: a gateway call's request record is written at once even
// when the previous batch held more of them.
func TestAuditLogEnqueueNotHeldForComebacks(t *testing.T) {
	w := &gatedWriter{entered: make(chan struct{}), release: make(chan struct{})}
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{MaxDelay: time.Hour, SubmitDelay: -1})
	defer closeLog(t, l)
	ctx := t.Context()
	enqueue := func(action string) *catalog.AuditAck {
		t.Helper()
		ack, err := l.Enqueue(ctx, catalog.AuditEvent{Service: "llm", Action: action})
		if err != nil {
			t.Fatal(err)
		}
		return ack
	}
	enqueue("first")
	<-w.entered                                          // first is being written, alone
	second, third := enqueue("second"), enqueue("third") // the next batch: two
	w.release <- struct{}{}
	<-w.entered                 // second and third are being written
	fourth := enqueue("fourth") // the next batch: one
	w.release <- struct{}{}
	if err := errors.Join(second.Wait(ctx), third.Wait(ctx)); err != nil {
		t.Fatal(err)
	}
	// The batch of one must go to the writer now, not after MaxDelay.
	select {
	case <-w.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("a batch of one Enqueue was held back for producers that do not come back")
	}
	w.release <- struct{}{}
	if err := fourth.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !slices.Equal(w.sizes, []int{1, 2, 1}) {
		t.Fatalf("batches of %v events, want [1 2 1]", w.sizes)
	}
}

// TestStatementParamsMatchEncodingJSON: a change's audit request_params,
// written by appends, are the bytes json.Marshal writes for
// {"statement": stmt}, escapes included.
func TestStatementParamsMatchEncodingJSON(t *testing.T) {
	for _, stmt := range []string{
		"", "GRANT USE_CONNECTION ON CONNECTION c TO `g`",
		"GRANT SELECT ON TABLE \"a b\".c TO x", `CREATE CONNECTION c OPTIONS (url 'https://h/p?a=1&b=<2>')`,
		"a\\b \n\t\r\x00\x1f\x7f é \u2028\u2029 \xff", "ok ~ {} [] ' ,:",
	} {
		want, err := json.Marshal(map[string]string{"statement": stmt})
		if err != nil {
			t.Fatal(err)
		}
		if got := catalog.StatementParams(stmt); got != string(want) {
			t.Errorf("%q:\n got %s\nwant %s", stmt, got, want)
		}
	}
}

// TestAuditLogEnqueueNotHeldForBlockedComebacks: after a write that
// answered blocked producers (Record: a catalog statement's audit, a
// refused call's record), the writer waits MaxDelay for them to come
// back, but not while the batch holds an Enqueue'd event: a gateway
// call's answer waits for that write. Whether the Enqueue'd event is
// there when the writer takes the batch or joins it while the writer
// waits, the batch is written at once.
func TestAuditLogEnqueueNotHeldForBlockedComebacks(t *testing.T) {
	tests := []struct {
		name string
		// blockedFirst: a lone Record is queued first, and the Enqueue
		// joins its batch once the writer waits for comebacks.
		blockedFirst bool
		sizes        []int
	}{
		{"a lone Enqueue", false, []int{2, 1}},
		{"an Enqueue joining a wait for comebacks", true, []int{2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &gatedWriter{entered: make(chan struct{}), release: make(chan struct{})}
			l := catalog.NewAuditLog(w, catalog.AuditLogOptions{MaxDelay: time.Hour, SubmitDelay: -1})
			defer closeLog(t, l)
			ctx := t.Context()
			record := func(action string) <-chan error {
				done := make(chan error, 1)
				go func() { done <- l.Record(ctx, catalog.AuditEvent{Service: "catalog", Action: action}) }()
				return done
			}
			// A write that answers two blocked producers.
			errs := make(chan error, 1)
			go func() {
				errs <- l.RecordBatch(ctx, []catalog.AuditEvent{{Service: "catalog", Action: "a"}, {Service: "catalog", Action: "b"}})
			}()
			<-w.entered
			w.release <- struct{}{}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			var blocked <-chan error
			if tt.blockedFirst {
				blocked = record("c")
				for deadline := time.Now().Add(10 * time.Second); !l.Filling(); { // the writer waits for a second producer
					if time.Now().After(deadline) {
						t.Fatal("the writer did not wait for blocked producers to come back")
					}
					time.Sleep(time.Millisecond)
				}
			}
			ack, err := l.Enqueue(ctx, catalog.AuditEvent{Service: "llm", Action: "chat"})
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-w.entered:
			case <-time.After(10 * time.Second):
				t.Fatal("a batch with an Enqueue'd event was held back for blocked producers to come back")
			}
			w.release <- struct{}{}
			if err := ack.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			if blocked != nil {
				if err := <-blocked; err != nil {
					t.Fatal(err)
				}
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if !slices.Equal(w.sizes, tt.sizes) {
				t.Fatalf("batches of %v events, want %v", w.sizes, tt.sizes)
			}
		})
	}
}

// syncWriter is an AuditSyncWriter whose syncs wait to be released: it
// records what each write and sync covered.
type syncWriter struct {
	mu      sync.Mutex
	written int           // events written
	synced  int           // events durable
	syncs   []int         // events written when each sync started
	release chan struct{} // one receive per sync
	failing error         // the syncs' error
}

func (w *syncWriter) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	return errors.New("AppendAudit called")
}

func (w *syncWriter) AppendPrepared(_ context.Context, events []catalog.AuditEvent, durable bool) error {
	if durable {
		return errors.New("a durable write: the sync was not separate")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.written += len(events)
	return nil
}

func (w *syncWriter) SyncAudit(ctx context.Context) error {
	w.mu.Lock()
	upTo := w.written
	w.syncs = append(w.syncs, upTo)
	w.mu.Unlock()
	select {
	case <-w.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failing != nil {
		return w.failing
	}
	w.synced = max(w.synced, upTo)
	return nil
}

func (w *syncWriter) state() (written, synced int, syncs []int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written, w.synced, slices.Clone(w.syncs)
}

// TestAuditLogSyncsSeparately: with an AuditSyncWriter, a batch that
// arrives while the previous batch's sync runs is written at once, and
// is acknowledged by the next sync, which starts as soon as that one
// ends and covers every batch written meanwhile; not by the sync that
// was running. A failed sync fails the batches it covers.
func TestAuditLogSyncsSeparately(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"synced", nil},
		{"sync fails", catalog.Errorf(catalog.CodeInternal, "disk gone")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &syncWriter{release: make(chan struct{})}
			l := catalog.NewAuditLog(w, catalog.AuditLogOptions{SubmitDelay: -1, MaxDelay: -1})
			defer func() {
				close(w.release) // every later sync returns at once
				closeLog(t, l)
			}()
			ctx := t.Context()
			waitFor := func(what string, cond func(written int, syncs []int) bool) {
				t.Helper()
				for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
					written, _, syncs := w.state()
					if cond(written, syncs) {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: written %d, syncs %v", what, written, syncs)
					}
				}
			}
			first, err := l.Enqueue(ctx, catalog.AuditEvent{Action: "first"})
			if err != nil {
				t.Fatal(err)
			}
			waitFor("the first sync", func(_ int, syncs []int) bool { return len(syncs) == 1 })
			// While the first sync runs, two more batches come: both are
			// written at once.
			second, err := l.Enqueue(ctx, catalog.AuditEvent{Action: "second"})
			if err != nil {
				t.Fatal(err)
			}
			waitFor("the second batch written during the first sync", func(written int, _ []int) bool { return written == 2 })
			third, err := l.Enqueue(ctx, catalog.AuditEvent{Action: "third"})
			if err != nil {
				t.Fatal(err)
			}
			waitFor("the third batch written during the first sync", func(written int, _ []int) bool { return written == 3 })
			select {
			case <-first.Done():
				t.Fatal("the first batch acknowledged before its sync ended")
			case <-second.Done():
				t.Fatal("the second batch acknowledged before a sync covered it")
			default:
			}
			check := func(what string, a *catalog.AuditAck) {
				t.Helper()
				err := a.Wait(ctx)
				if tt.err == nil && err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if tt.err != nil && catalog.CodeOf(err) != catalog.CodeUnavailable {
					t.Fatalf("%s after a failed sync: %v, want unavailable", what, err)
				}
			}
			w.mu.Lock()
			w.failing = tt.err
			w.mu.Unlock()
			w.release <- struct{}{}
			check("the first batch", first)
			// The next sync starts at once and covers both later batches.
			waitFor("the second sync", func(_ int, syncs []int) bool { return len(syncs) == 2 })
			if _, _, syncs := w.state(); syncs[1] != 3 {
				t.Fatalf("the second sync covers %d events, want 3", syncs[1])
			}
			select {
			case <-second.Done():
				t.Fatal("the second batch acknowledged before its sync ended")
			default:
			}
			w.release <- struct{}{}
			check("the second batch", second)
			check("the third batch", third)
		})
	}
}

// TestNewEventID: event IDs are UUIDv7 and sort in the order they were
// minted (the event stores' request_id indexes rely on it), within one
// millisecond too.
func TestNewEventID(t *testing.T) {
	ids := make([]string, 2000)
	for i := range ids {
		ids[i] = catalog.NewEventID()
	}
	for i, id := range ids {
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 || u.String() != id {
			t.Fatalf("id %d %q: version %d, variant %v, %v; want a canonical UUIDv7", i, id, u.Version(), u.Variant(), err)
		}
		if i > 0 && id <= ids[i-1] {
			t.Fatalf("id %d %q does not sort after %q", i, id, ids[i-1])
		}
	}
	if at := time.Unix(uuid.MustParse(ids[0]).Time().UnixTime()); time.Since(at).Abs() > time.Minute {
		t.Errorf("id %s carries the time %v, want now", ids[0], at)
	}
}
