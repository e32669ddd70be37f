package telemetry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// exportQueue is the span processor between the gateway and the OTLP
// exporter: a bounded queue that a request never waits on. OnEnd drops
// the span (and counts it) when the queue is full; one goroutine exports
// batches of up to maxBatch spans, at least every batchTimeout; a batch
// whose export fails (the collector is down, slow past exportTimeout, or
// refuses it) is dropped and counted too. The SDK's BatchSpanProcessor
// does the same but counts its drops only through its experimental
// self-observability; the gateway's metric needs them.
//
// The queue is a slice under a mutex, not a channel: OnEnd appends and
// wakes the export goroutine only when a batch is full, so a call's ten
// spans cost ten appends, not ten goroutine wake-ups.
type exportQueue struct {
	exp           sdktrace.SpanExporter
	mu            sync.Mutex
	buf           []sdktrace.ReadOnlySpan // guarded by mu
	maxQueue      int
	kick          chan struct{} // a batch is full (capacity 1)
	flush         chan chan struct{}
	stop          chan struct{}
	done          chan struct{}
	maxBatch      int
	batchTimeout  time.Duration
	exportTimeout time.Duration
	log           zerolog.Logger

	dropped  atomic.Int64
	exported atomic.Int64
	failures atomic.Int64
	// lastLog rate-limits the log line of failed exports (unix nanos).
	lastLog atomic.Int64

	stopOnce sync.Once
	stopped  atomic.Bool
}

var _ sdktrace.SpanProcessor = (*exportQueue)(nil)

func newExportQueue(exp sdktrace.SpanExporter, maxQueue, maxBatch int, batchTimeout, exportTimeout time.Duration, log zerolog.Logger) *exportQueue {
	q := &exportQueue{exp: exp, maxQueue: maxQueue, buf: make([]sdktrace.ReadOnlySpan, 0, min(maxQueue, maxBatch)),
		kick: make(chan struct{}, 1), flush: make(chan chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		maxBatch: maxBatch, batchTimeout: batchTimeout, exportTimeout: exportTimeout, log: log}
	go q.run()
	return q
}

func (q *exportQueue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues s for export, or drops it at once when the queue is full.
func (q *exportQueue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() || q.stopped.Load() {
		return
	}
	q.mu.Lock()
	if len(q.buf) >= q.maxQueue {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	q.buf = append(q.buf, s)
	full := len(q.buf) == q.maxBatch
	q.mu.Unlock()
	if full {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// Len is the number of spans waiting for export.
func (q *exportQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.buf)
}

func (q *exportQueue) run() {
	defer close(q.done)
	var spare []sdktrace.ReadOnlySpan
	// drain exports everything queued, in batches of maxBatch; the
	// queue's slice and the spare one swap, so that OnEnd appends to one
	// while the other is exported.
	drain := func() {
		q.mu.Lock()
		batch := q.buf
		q.buf = spare[:0]
		q.mu.Unlock()
		for i := 0; i < len(batch); i += q.maxBatch {
			q.export(batch[i:min(i+q.maxBatch, len(batch))])
		}
		clear(batch)
		spare = batch[:0]
	}
	timer := time.NewTimer(q.batchTimeout)
	defer timer.Stop()
	for {
		select {
		case <-q.kick:
			drain()
		case <-timer.C:
			drain()
			timer.Reset(q.batchTimeout)
		case ack := <-q.flush:
			drain()
			close(ack)
		case <-q.stop:
			drain()
			return
		}
	}
}

func (q *exportQueue) export(batch []sdktrace.ReadOnlySpan) {
	ctx, cancel := context.WithTimeout(context.Background(), q.exportTimeout)
	err := q.exp.ExportSpans(ctx, batch)
	cancel()
	if err == nil {
		q.exported.Add(int64(len(batch)))
		return
	}
	q.dropped.Add(int64(len(batch)))
	q.failures.Add(1)
	// One line a minute at most: a collector that is down must not flood
	// the log either.
	now := time.Now().UnixNano()
	if last := q.lastLog.Load(); now-last >= int64(time.Minute) && q.lastLog.CompareAndSwap(last, now) {
		q.log.Warn().Err(err).Int("spans", len(batch)).Int64("dropped_total", q.dropped.Load()).
			Msg("trace export failed; spans dropped (requests are not affected)")
	}
}

// ForceFlush exports every span queued before it (or returns ctx's error).
func (q *exportQueue) ForceFlush(ctx context.Context) error {
	if q.stopped.Load() {
		return nil
	}
	ack := make(chan struct{})
	select {
	case q.flush <- ack:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued and stops; then the exporter.
func (q *exportQueue) Shutdown(ctx context.Context) error {
	var err error
	q.stopOnce.Do(func() {
		q.stopped.Store(true)
		close(q.stop)
		select {
		case <-q.done:
		case <-ctx.Done():
			err = ctx.Err()
		}
		err = errors.Join(err, q.exp.Shutdown(ctx))
	})
	return err
}
