package catalog

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog/textcap"
)

// Defaults of AuditLogOptions.
const (
	DefaultAuditMaxBatch     = 4096
	DefaultAuditMaxDelay     = 500 * time.Microsecond
	DefaultAuditSubmitDelay  = 2 * time.Millisecond
	DefaultAuditWriteTimeout = 30 * time.Second
	DefaultAuditMaxQueued    = 4 * DefaultAuditMaxBatch

	// auditRetryAfter: after a failed write, Enqueue and Submit refuse
	// new events for this long (fail closed without first forwarding the
	// call they record); then events are let through again, and the next
	// write tells whether the store is back.
	auditRetryAfter = time.Second
)

// AuditLogOptions configure an AuditLog.
type AuditLogOptions struct {
	// MaxBatch bounds the events of one store write (default 4096). A
	// RecordBatch larger than that is written alone, in one write.
	MaxBatch int
	// MaxDelay bounds how long the writer waits for more events when the
	// batch at hand holds fewer blocked producers (Record, RecordBatch)
	// than the previous one (default 500 µs; negative: never wait).
	// Producers answered by one write usually come back with their next
	// event within microseconds, and one fsync then covers them all. A
	// lone event is never delayed by more than MaxDelay. Enqueue's events
	// do not count: their producers go on with their call once queued
	// (a gateway call forwards upstream) and do not come back when
	// answered, so waiting for them would only delay the batch. Nor does
	// the writer wait while the batch holds an Enqueue'd event: its call
	// waits for that write (a gateway answer) and would pay the delay.
	MaxDelay time.Duration
	// SubmitDelay bounds how long a batch of events nobody waits for
	// (Submit's) waits for an event somebody waits for, to share its
	// write (default 2 ms; negative: never wait). A gateway call's
	// completion then rides with the next call's request record instead
	// of taking an fsync of its own, which that record would have to wait
	// behind. After a write the writer also waits SubmitDelay on its own
	// timer before it goes idle; events nobody waits for that come
	// meanwhile do not wake it and are written when that timer fires.
	SubmitDelay time.Duration
	// WriteTimeout bounds one store write (default 30 s); a write that
	// times out fails every event of its batch.
	WriteTimeout time.Duration
	Logger       zerolog.Logger
	// Now fills in missing event times (default time.Now).
	Now func() time.Time
	// MaxQueued bounds the events queued by Enqueue and Submit and not
	// yet written (default 16384): past it they wait for the writer. It
	// bounds memory and, for callers that do not wait for durability, the
	// events a crash can lose.
	MaxQueued int
	// OnWrite, when set, is called after each store write with its event
	// count, duration and error (metrics).
	OnWrite func(events int, took time.Duration, err error)
}

// AuditLazyWriter is an AuditWriter that can also write events without
// making them durable at once: AppendAuditLazy returns once they are
// written where a process crash keeps them, and the writer makes them
// durable with its next AppendAudit or on its own within a bound it
// documents (catalog/auditwal: one fsync covers both). AuditLog writes a
// batch that holds only events nobody waits for (Submit's) this way, so
// that an fsync of theirs never holds up the next event somebody waits
// for: a gateway call's request record would otherwise often arrive while
// the previous call's completion is being fsynced, and wait for that
// fsync and then its own.
type AuditLazyWriter interface {
	AuditWriter
	AppendAuditLazy(ctx context.Context, events ...AuditEvent) error
}

// AuditPreparedWriter is an AuditWriter that takes AuditLog's batches as
// they are: AppendPrepared's events were validated (Validate) and their
// times are in UTC, and the slice is the writer's from then on (AuditLog
// never touches it again), so the writer need neither copy nor validate
// them a second time (catalog/auditwal keeps them in memory until they
// are applied). durable false is AppendAuditLazy (nobody waits for the
// events), true AppendAudit.
type AuditPreparedWriter interface {
	AuditWriter
	AppendPrepared(ctx context.Context, events []AuditEvent, durable bool) error
}

// AuditSyncWriter is an AuditPreparedWriter whose writes and syncs can
// be separate: AppendPrepared with durable false writes, and SyncAudit
// returns once everything written before it is durable (as durable true
// would have made it; a writer that does not sync on durable true returns
// at once). AuditLog then writes a batch somebody waits for as soon as
// the previous one is written, also while that one's sync runs, and one
// sync, started as soon as the previous sync ends, covers every batch
// written meanwhile: a batch that arrives during a sync waits for the
// rest of it and then for one sync, not for that sync, its own write
// and another sync.
type AuditSyncWriter interface {
	AuditPreparedWriter
	SyncAudit(ctx context.Context) error
}

// AuditLog makes audit events durable with group commit: concurrent
// Record calls are collected into batches, and each batch is one
// AppendAudit on the underlying writer (for walstore: one log record and
// one fsync; for an AuditSyncWriter a write, and a sync shared with the
// batches written while the previous sync ran). Record returns only once
// its event is durable, or with the error of the write (or sync) that
// carried it: the writer's failure reaches every waiter of the batch
// (fail closed). Enqueue queues an event and returns at once with an
// AuditAck to wait on later (the gateway writes a call's request record
// while the upstream call is in flight); Submit queues one nobody waits
// for (a completion). Events go to the store in the order they were
// queued. It is safe for concurrent use and satisfies gateway.AuditSink
// and gateway.AuditQueue.
type AuditLog struct {
	w   AuditWriter
	o   AuditLogOptions
	log zerolog.Logger

	mu     sync.Mutex
	queue  []*auditBatch // oldest first; only the last one takes new events
	closed bool
	want   int // while the writer waits to fill queue[0]: the acked events it waits for
	// wantBlocked: want counts blocked events (auditBatch.blocked) only.
	wantBlocked bool
	// queued counts the events of Enqueue and Submit not yet written.
	queued int
	// writing is the batch being written (no longer in queue).
	writing *auditBatch
	// failedAt is when the last write failed (zero after a success).
	failedAt time.Time
	lastErr  error
	// lingering: after a write, the writer waits SubmitDelay on its own
	// timer for the next events before it goes idle. Meanwhile an event
	// nobody waits for (Submit's) does not wake it: the timer picks it up
	// within SubmitDelay, as a kick would have (the writer would then
	// have waited SubmitDelay for a rider). A call's records then cost it
	// no hand-off to the writer (a goroutine wake-up, on an idle machine
	// an OS thread's) while calls keep coming.
	lingering bool
	// kicks counts the wake-ups sent to the writer (tests).
	kicks int
	// syncing are the batches written and not yet synced, oldest first
	// (AuditSyncWriter): the syncer's next sync covers them.
	syncing []*auditBatch

	kick    chan struct{} // cap 1: a batch is waiting
	stop    chan struct{} // closed by Close
	stopped chan struct{} // closed by the writer when it drained the queue
	// syncKick (cap 1) wakes the syncer; written is closed by the writer
	// when it wrote its last batch, synced by the syncer when it synced it.
	syncKick        chan struct{}
	written, synced chan struct{}
	once            sync.Once
}

// auditBatch is the events of one store write and its outcome.
type auditBatch struct {
	events []AuditEvent
	// acked counts the events whose producer may wait for the write
	// (Record, RecordBatch, Enqueue), queued those of Enqueue and Submit.
	acked, queued int
	// blocked counts the events whose producer blocks until the write
	// (Record, RecordBatch): answered, they come back with their next.
	blocked int
	sealed  bool          // takes no more events
	done    chan struct{} // closed once err is set
	err     error
}

// NewAuditLog starts an AuditLog in front of w. Close stops it.
func NewAuditLog(w AuditWriter, o AuditLogOptions) *AuditLog {
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultAuditMaxBatch
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = DefaultAuditMaxDelay
	}
	if o.SubmitDelay == 0 {
		o.SubmitDelay = DefaultAuditSubmitDelay
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultAuditWriteTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = DefaultAuditMaxQueued
	}
	l := &AuditLog{w: w, o: o, log: o.Logger.With().Str("component", "audit-log").Logger(),
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
		syncKick: make(chan struct{}, 1), written: make(chan struct{}), synced: make(chan struct{})}
	if sw, ok := w.(AuditSyncWriter); ok {
		go l.syncer(sw)
	} else {
		close(l.synced)
	}
	go l.writer()
	return l
}

// Record makes ev durable and returns nil once it is. A missing EventID
// (a new UUID) and Time (now) are filled in. An event that fails Validate
// is refused with CodeInvalidArgument and nothing is written. An error
// after ev was queued (the write failed, ctx ended, the log was closed)
// means ev may or may not have been written; the caller must treat the
// audited action as not audited.
func (l *AuditLog) Record(ctx context.Context, ev AuditEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.prepare(&ev); err != nil {
		return err
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errAuditClosed()
	}
	b := l.openBatch(1, true)
	b.events = append(b.events, ev)
	b.acked++
	b.blocked++
	l.added(b)
	l.mu.Unlock()
	return l.wait(ctx, b)
}

// AuditAck is the outcome of an event queued by Enqueue.
type AuditAck struct {
	b   *auditBatch
	err error
}

// DoneAuditAck returns an AuditAck whose Wait returns err at once, for
// sinks that write synchronously.
func DoneAuditAck(err error) *AuditAck { return &AuditAck{err: err} }

// closedChan is the Done channel of acks made by DoneAuditAck.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done is closed once Wait would return without waiting for the write.
func (a *AuditAck) Done() <-chan struct{} {
	if a.b == nil {
		return closedChan
	}
	return a.b.done
}

// Wait returns once the event is durable (nil), or with the error of the
// write that carried it, or ctx's error. It may be called any number of
// times.
func (a *AuditAck) Wait(ctx context.Context) error {
	if a.b == nil {
		return a.err
	}
	select {
	case <-a.b.done:
		return a.b.err
	default:
	}
	select {
	case <-a.b.done:
		return a.b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Enqueue queues ev like Record but returns at once: the AuditAck's Wait
// returns once ev is durable. An error means ev was not queued: the log
// is closed, ev is invalid, ctx ended while the queue was full
// (MaxQueued), or a write failed less than a second ago (fail closed: the
// caller should not act on what ev records).
func (l *AuditLog) Enqueue(ctx context.Context, ev AuditEvent) (*AuditAck, error) {
	b, err := l.queue1(ctx, &ev, true)
	if err != nil {
		return nil, err
	}
	return &AuditAck{b: b}, nil
}

// Submit queues ev like Enqueue for a caller that does not wait for it;
// a failed write of it is logged. Its errors are Enqueue's.
func (l *AuditLog) Submit(ctx context.Context, ev AuditEvent) error {
	_, err := l.queue1(ctx, &ev, false)
	return err
}

// queue1 queues ev for Enqueue (acked) and Submit.
func (l *AuditLog) queue1(ctx context.Context, ev *AuditEvent, acked bool) (*auditBatch, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := l.prepare(ev); err != nil {
		return nil, err
	}
	l.mu.Lock()
	for {
		if l.closed {
			l.mu.Unlock()
			return nil, errAuditClosed()
		}
		if !l.failedAt.IsZero() && time.Since(l.failedAt) < auditRetryAfter {
			err := l.lastErr
			l.mu.Unlock()
			return nil, err
		}
		if l.queued < l.o.MaxQueued || l.oldest() == nil {
			break
		}
		// Full: wait for the oldest batch to be written.
		done := l.oldest().done
		l.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, &Error{Code: CodeUnavailable, Msg: "audit log queue is full", Err: ctx.Err()}
		}
		l.mu.Lock()
	}
	b := l.openBatch(1, acked)
	b.events = append(b.events, *ev)
	b.queued++
	l.queued++
	if acked {
		b.acked++
	}
	l.added(b)
	l.mu.Unlock()
	return b, nil
}

// RecordBatch makes events durable together: they go to the store in one
// write (all or none), shared with other callers' events when they fit in
// the open batch. Missing IDs and times are filled in (events itself is
// not changed); if any event fails Validate nothing is written.
func (l *AuditLog) RecordBatch(ctx context.Context, events []AuditEvent) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	evs := make([]AuditEvent, len(events))
	copy(evs, events)
	for i := range evs {
		if err := l.prepare(&evs[i]); err != nil {
			return err
		}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errAuditClosed()
	}
	b := l.openBatch(len(evs), true)
	b.events = append(b.events, evs...)
	b.acked += len(evs)
	b.blocked += len(evs)
	l.added(b)
	l.mu.Unlock()
	return l.wait(ctx, b)
}

// AppendAudit is RecordBatch as a catalog.AuditWriter (the catalog
// Service records the audit of statements that change nothing with it).
func (l *AuditLog) AppendAudit(ctx context.Context, events ...AuditEvent) error {
	return l.RecordBatch(ctx, events)
}

// oldest is the batch being written, else the first queued one, else
// nil. Caller holds l.mu.
func (l *AuditLog) oldest() *auditBatch {
	if l.writing != nil {
		return l.writing
	}
	if len(l.queue) > 0 {
		return l.queue[0]
	}
	return nil
}

// openBatch returns the batch that takes n more events: the open one if
// they fit, else a new one. The writer is woken for a new batch, and for
// events somebody waits for (acked) while it lingers; not for events
// nobody waits for while it lingers. Caller holds l.mu.
func (l *AuditLog) openBatch(n int, acked bool) *auditBatch {
	if k := len(l.queue); k > 0 {
		if b := l.queue[k-1]; !b.sealed && (len(b.events)+n <= l.o.MaxBatch || len(b.events) == 0) {
			if acked && l.lingering { // b was queued without a wake-up
				l.wake()
			}
			return b
		}
		l.queue[k-1].sealed = true
	}
	// A small start: at a gateway's usual rates a batch holds a few
	// events, and an AuditEvent is about 400 bytes (64 of them were 25 KB
	// allocated and cleared per batch); append grows it when more come.
	b := &auditBatch{events: make([]AuditEvent, 0, min(max(n, 4), max(n, l.o.MaxBatch))), done: make(chan struct{})}
	l.queue = append(l.queue, b)
	if acked || !l.lingering {
		l.wake()
	}
	return b
}

// added seals a full batch and wakes the writer if it waits for b to
// fill. Caller holds l.mu.
func (l *AuditLog) added(b *auditBatch) {
	if len(b.events) >= l.o.MaxBatch {
		b.sealed = true
	}
	n := b.acked
	if l.wantBlocked {
		n = b.blocked
	}
	if l.want > 0 && (b.sealed || n >= l.want || l.wantBlocked && b.enqueued()) {
		l.want = 0
		l.wake()
	}
}

// wake tells the writer that something changed.
func (l *AuditLog) wake() {
	select {
	case l.kick <- struct{}{}:
		l.kicks++
	default:
	}
}

// wait waits for b's write, or for ctx.
func (l *AuditLog) wait(ctx context.Context, b *auditBatch) error {
	select {
	case <-b.done:
		return b.err
	default:
	}
	select {
	case <-b.done:
		return b.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// NewEventID returns a new audit event ID: a UUIDv7, whose first 48 bits
// are the time in milliseconds, so that IDs minted one after another sort
// one after another. Gateway calls use their event ID as the request_id
// that the event stores index, and an index takes time-ordered keys near
// its right edge, where a random (v4) key lands on any page: PostgreSQL
// ingested audit rows 1.3 to 2.9 times as fast with them, the more the
// larger its index (BENCHMARKS.md, "Time-ordered event IDs").
func NewEventID() string {
	id, err := uuid.NewV7()
	if err != nil { // the random source failed: a v4 fails the same way
		return uuid.NewString()
	}
	return id.String()
}

// prepare fills in the ID and time and validates ev.
func (l *AuditLog) prepare(ev *AuditEvent) error {
	if ev.EventID == "" {
		ev.EventID = NewEventID()
	}
	if ev.Time.IsZero() {
		ev.Time = l.o.Now()
	}
	ev.Time = ev.Time.UTC()
	return ev.Validate()
}

// Bounds of an audit event's text, in bytes: Validate cuts longer text
// (textcap: a prefix and a marker saying how much was cut), so that no
// request, authenticated or not, can make one audit row large.
const (
	// AuditMaxShort bounds ids and codes: event_id, service_name,
	// source_ip_address, session_id, request_id, securable_type,
	// sql_state, decision.
	AuditMaxShort = 256
	// AuditMaxName bounds names: action_name, user_identity, run_by,
	// run_as, user_agent, securable_name.
	AuditMaxName = 512
	// AuditMaxText bounds error_message and reason.
	AuditMaxText = 4096
	// AuditMaxParams bounds request_params (JSON): its longest strings are
	// cut first, so that it stays valid JSON. It also bounds the JSON
	// columns guardrails, request_tags and routing (a JSON value cut
	// this way stays valid).
	AuditMaxParams = 64 << 10
	// AuditMaxPayload bounds each captured body of a payload event.
	AuditMaxPayload = 64 << 10
)

// Validate checks that e can be stored by every store: StatusCode fits in
// 32 bits, LatencyMs is a finite number, Revision is not negative. Text
// is not refused but normalized in place, as audit text often comes from
// request headers: invalid UTF-8 bytes become U+FFFD, then text longer
// than its bound (AuditMaxShort, AuditMaxName, AuditMaxText,
// AuditMaxParams) is cut. Every path into a store validates (AuditLog,
// walstore, the node API's ingestion), so the bounds hold for every
// producer.
func (e *AuditEvent) Validate() error {
	if e.StatusCode != int(int32(e.StatusCode)) {
		return Errorf(CodeInvalidArgument, "audit event %s: status_code %d is out of range", e.EventID, e.StatusCode)
	}
	if math.IsNaN(e.LatencyMs) || math.IsInf(e.LatencyMs, 0) {
		return Errorf(CodeInvalidArgument, "audit event %s: latency_ms must be a finite number", e.EventID)
	}
	if e.Revision < 0 {
		return Errorf(CodeInvalidArgument, "audit event %s: revision must not be negative", e.EventID)
	}
	type field struct {
		p     *string
		limit int
		json  bool
	}
	fields := [...]field{
		{&e.EventID, AuditMaxShort, false}, {&e.Service, AuditMaxShort, false}, {&e.Action, AuditMaxName, false},
		{&e.UserIdentity, AuditMaxName, false}, {&e.RunBy, AuditMaxName, false}, {&e.RunAs, AuditMaxName, false},
		{&e.SourceIP, AuditMaxShort, false}, {&e.UserAgent, AuditMaxName, false}, {&e.SessionID, AuditMaxShort, false},
		{&e.RequestID, AuditMaxShort, false}, {&e.SecurableType, AuditMaxShort, false}, {&e.SecurableName, AuditMaxName, false},
		{&e.RequestParams, AuditMaxParams, true}, {&e.ErrorMessage, AuditMaxText, false}, {&e.SQLState, AuditMaxShort, false},
		{&e.Decision, AuditMaxShort, false}, {&e.Reason, AuditMaxText, false},
		{&e.TraceID, AuditMaxShort, false}, {&e.SpanID, AuditMaxShort, false}, {&e.Guardrails, AuditMaxParams, true},
	}
	for _, f := range fields {
		capField(f.p, f.limit, f.json)
	}
	if u := e.Usage; u != nil {
		if u.InputTokens < 0 || u.OutputTokens < 0 || u.CachedInputTokens < 0 || u.CacheWriteTokens < 0 || u.ReasoningTokens < 0 || u.CostNanos < 0 {
			return Errorf(CodeInvalidArgument, "audit event %s: token counts and cost must not be negative", e.EventID)
		}
		if math.IsNaN(u.TTFTMs) || math.IsInf(u.TTFTMs, 0) {
			return Errorf(CodeInvalidArgument, "audit event %s: ttft_ms must be a finite number", e.EventID)
		}
		cp := *u // the caller's value stays as it was
		e.Usage = &cp
		capField(&cp.ProviderService, AuditMaxName, false)
		capField(&cp.Provider, AuditMaxShort, false)
		capField(&cp.Model, AuditMaxName, false)
		capField(&cp.RequestTags, AuditMaxParams, true)
		capField(&cp.Routing, AuditMaxParams, true)
	}
	if pl := e.Payload; pl != nil {
		cp := *pl
		e.Payload = &cp
		capField(&cp.RequestBody, AuditMaxPayload, false)
		capField(&cp.ResponseBody, AuditMaxPayload, false)
	}
	return nil
}

// capField makes *p valid UTF-8 and cuts it to limit bytes (JSON text so
// that it stays valid JSON).
func capField(p *string, limit int, json bool) {
	if !utf8.ValidString(*p) {
		*p = strings.ToValidUTF8(*p, "\uFFFD")
	}
	if len(*p) > limit {
		if json {
			*p = capJSON(*p, limit)
		} else {
			*p = textcap.String(*p, limit)
		}
	}
}

// capJSON bounds JSON text (request_params, ...) to limit bytes, keeping
// it valid: one long string (a statement) keeps most of the room; several
// are cut shorter; what still does not fit is replaced by its size.
func capJSON(p string, limit int) string {
	for _, each := range [...]int{limit - 1024, 1024} {
		if c := textcap.JSONStrings([]byte(p), each); len(c) <= limit {
			return string(c)
		}
	}
	return `{"truncated_bytes":` + strconv.Itoa(len(p)) + `}`
}

func errAuditClosed() error { return Errorf(CodeUnavailable, "audit log is closed") }

// writer writes the queued batches one at a time, oldest first. After
// writing it lingers for SubmitDelay (see AuditLog.lingering).
func (l *AuditLog) writer() {
	defer func() {
		close(l.written)
		<-l.synced
		close(l.stopped)
	}()
	lastSize := 0
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	armed := false // linger runs
	for {
		var lingerC <-chan time.Time
		if armed {
			lingerC = linger.C
		}
		timedOut := false
		select {
		case <-l.kick:
		case <-lingerC:
			timedOut, armed = true, false
		case <-l.stop:
			// Close refuses new events: drain what is queued and stop.
			for l.writeNext(&lastSize, false) {
			}
			return
		}
		l.mu.Lock()
		l.lingering = false
		l.mu.Unlock()
		// Woken by its own timer, the writer writes at once what queued
		// while it lingered (those events waited their SubmitDelay).
		wrote := false
		for l.writeNext(&lastSize, !timedOut || wrote) {
			wrote = true
		}
		if wrote && l.o.SubmitDelay > 0 {
			linger.Reset(l.o.SubmitDelay)
			armed = true
		}
		if armed { // after a write, or woken with nothing to write
			l.mu.Lock()
			l.lingering = true
			l.mu.Unlock()
		}
	}
}

// writeNext writes the oldest queued batch; false when none is queued.
func (l *AuditLog) writeNext(lastSize *int, mayWait bool) bool {
	l.mu.Lock()
	if len(l.queue) == 0 {
		l.mu.Unlock()
		return false
	}
	b := l.queue[0]
	// The previous write answered more blocked producers than this batch
	// holds: give them a moment to come back so that one write carries
	// them all. (Events of Submit and Enqueue do not count: their
	// producers are not blocked, so there is no one to come back.)
	switch {
	case !mayWait || b.sealed:
	case b.acked == 0 && l.o.SubmitDelay > 0:
		// Nobody waits for these: let them ride with the next event
		// somebody waits for.
		l.mu.Unlock()
		l.fill(b, 1, l.o.SubmitDelay, false)
		l.mu.Lock()
	case b.blocked < *lastSize && !b.enqueued() && l.o.MaxDelay > 0:
		l.mu.Unlock()
		l.fill(b, *lastSize, l.o.MaxDelay, true)
		l.mu.Lock()
	}
	b.sealed = true
	l.queue[0] = nil
	l.queue = l.queue[1:]
	if len(l.queue) == 0 {
		l.queue = nil // let the backing array go
	}
	l.writing = b
	l.mu.Unlock()
	*lastSize = b.blocked

	ctx, cancel := context.WithTimeout(context.Background(), l.o.WriteTimeout)
	t0 := time.Now()
	var err error
	sw, pipelined := l.w.(AuditSyncWriter)
	pipelined = pipelined && b.acked > 0
	if pipelined { // written now, durable with the syncer's next sync
		err = sw.AppendPrepared(ctx, b.events, false)
	} else if pw, ok := l.w.(AuditPreparedWriter); ok {
		_, lazy := l.w.(AuditLazyWriter)
		err = pw.AppendPrepared(ctx, b.events, !lazy || b.acked > 0)
	} else if lw, ok := l.w.(AuditLazyWriter); ok && b.acked == 0 {
		err = lw.AppendAuditLazy(ctx, b.events...)
	} else {
		err = l.w.AppendAudit(ctx, b.events...)
	}
	cancel()
	if l.o.OnWrite != nil {
		l.o.OnWrite(len(b.events), time.Since(t0), err)
	}
	l.mu.Lock()
	l.writing = nil
	l.queued -= b.queued
	if pipelined && err == nil {
		l.syncing = append(l.syncing, b)
		l.mu.Unlock()
		select {
		case l.syncKick <- struct{}{}:
		default:
		}
		return true
	}
	l.mu.Unlock()
	l.settle([]*auditBatch{b}, err)
	return true
}

// settle ends batches with the outcome of their write (and sync): their
// waiters get err, and a failure refuses new events for a while.
func (l *AuditLog) settle(batches []*auditBatch, err error) {
	if err != nil {
		events, unawaited := 0, 0
		for _, b := range batches {
			events += len(b.events)
			unawaited += len(b.events) - b.acked
		}
		l.log.Error().Err(err).Int("events", events).Int("unawaited", unawaited).
			Msg("audit write failed; the events' callers get the error (events submitted without a waiter are lost)")
		if CodeOf(err) == CodeInternal {
			err = &Error{Code: CodeUnavailable, Msg: "audit store write failed; the events may not have been recorded", Err: err}
		}
	}
	l.mu.Lock()
	if err != nil {
		l.failedAt, l.lastErr = time.Now(), err
	} else {
		l.failedAt, l.lastErr = time.Time{}, nil
	}
	l.mu.Unlock()
	for _, b := range batches {
		b.err = err
		b.events = nil
		close(b.done)
	}
}

// syncer makes the batches the writer wrote durable (AuditSyncWriter):
// each sync covers every batch written before it starts, and the next
// one starts as soon as it ends. It returns once the writer has stopped
// and its last batch is synced.
func (l *AuditLog) syncer(sw AuditSyncWriter) {
	defer close(l.synced)
	for {
		l.mu.Lock()
		batches := l.syncing
		l.syncing = nil
		l.mu.Unlock()
		if len(batches) == 0 {
			select {
			case <-l.syncKick:
				continue
			case <-l.written:
			}
			l.mu.Lock()
			left := len(l.syncing)
			l.mu.Unlock()
			if left == 0 {
				return
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.o.WriteTimeout)
		err := sw.SyncAudit(ctx)
		cancel()
		l.settle(batches, err)
	}
}

// enqueued reports whether b holds an event of Enqueue: its producer
// waits for the write without blocking until it (a gateway call in
// flight), so a wait for blocked producers to come back would delay it.
// Caller holds l.mu.
func (b *auditBatch) enqueued() bool { return b.acked > b.blocked }

// fill waits up to delay for b to hold want acked events (blocked ones
// only if blocked, and then only while b holds no Enqueue'd event), or
// to be sealed.
func (l *AuditLog) fill(b *auditBatch, want int, delay time.Duration, blocked bool) {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		l.mu.Lock()
		n := b.acked
		if blocked {
			n = b.blocked
		}
		if n >= want || b.sealed || blocked && b.enqueued() {
			l.want = 0
			l.mu.Unlock()
			return
		}
		l.want, l.wantBlocked = want, blocked
		l.mu.Unlock()
		select {
		case <-l.kick: // b grew or was sealed: re-check
			continue
		case <-t.C:
		case <-l.stop:
		}
		l.mu.Lock()
		l.want = 0
		l.mu.Unlock()
		return
	}
}

// Queued is the number of events queued by Enqueue and Submit and not
// yet written.
func (l *AuditLog) Queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}

// Err is the error of the last write when it failed less than within ago
// (readiness probes), else nil.
func (l *AuditLog) Err(within time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastErr != nil && time.Since(l.failedAt) < within {
		return l.lastErr
	}
	return nil
}

// Sync returns once every event queued before it was written (or its
// write failed): a reader of the store then sees them, completions
// submitted without a waiter included.
func (l *AuditLog) Sync(ctx context.Context) error {
	l.mu.Lock()
	last := l.writing
	if n := len(l.syncing); last == nil && n > 0 {
		last = l.syncing[n-1]
	}
	if n := len(l.queue); n > 0 {
		last = l.queue[n-1]
		if !last.sealed { // someone waits now: no reason to delay it
			last.sealed = true
			l.wake()
		}
	}
	l.mu.Unlock()
	if last == nil {
		return nil
	}
	select {
	case <-last.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close refuses new events, waits until every queued event is written
// (their Record calls return) and stops the log. If ctx ends first Close
// returns its error; the queued events are still written.
func (l *AuditLog) Close(ctx context.Context) error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.stop)
	})
	select {
	case <-l.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
