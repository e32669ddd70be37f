package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway"
)

// AuditSink records a gateway node's audit events in the catalog over
// POST /api/v1/audit, with group commit: concurrent Records are collected
// into batches (a catalog.AuditLog whose writer is the catalog's API), and
// Record returns once the catalog answered that its event is durable. A
// failed request is retried with backoff while it may succeed (transport
// errors, 5xx, 429) for up to Config.WriteTimeout; an error reaches every
// Record of the batch, and the gateway then does not answer (fail closed).
//
// Delivery is at least once: when an answer is lost after the catalog
// wrote the events, the retry writes them again, with the same event_id.
type AuditSink struct {
	r   *remote
	log *catalog.AuditLog
}

var _ gateway.AuditQueue = (*AuditSink)(nil)

// NewAuditSink validates cfg and starts the sink. Close drains it.
func NewAuditSink(cfg Config) (*AuditSink, error) {
	r, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	s := &AuditSink{r: r}
	s.log = catalog.NewAuditLog(auditWriter{r}, catalog.AuditLogOptions{MaxBatch: cfg.MaxBatch,
		WriteTimeout: r.cfg.WriteTimeout, Logger: cfg.Logger.With().Str("component", "node-audit").Logger(),
		OnWrite: cfg.OnAuditWrite})
	return s, nil
}

// Record sends ev to the catalog and returns once it is durable there.
// EventID (a UUID) and Time are filled in when empty; an event that fails
// catalog.AuditEvent.Validate is refused at once.
func (s *AuditSink) Record(ctx context.Context, ev catalog.AuditEvent) error {
	return s.log.Record(ctx, ev)
}

// Enqueue queues ev for the catalog and returns at once; the ack's Wait
// returns once the catalog confirmed it durable (catalog.AuditLog.Enqueue).
func (s *AuditSink) Enqueue(ctx context.Context, ev catalog.AuditEvent) (*catalog.AuditAck, error) {
	return s.log.Enqueue(ctx, ev)
}

// Submit queues ev for the catalog without waiting (catalog.AuditLog.Submit).
func (s *AuditSink) Submit(ctx context.Context, ev catalog.AuditEvent) error {
	return s.log.Submit(ctx, ev)
}

// Queued is the number of events waiting to be sent.
func (s *AuditSink) Queued() int { return s.log.Queued() }

// Err is the last write's error when it failed less than within ago.
func (s *AuditSink) Err(within time.Duration) error { return s.log.Err(within) }

// Close refuses new events and waits until the queued ones are sent (or
// ctx ends).
func (s *AuditSink) Close(ctx context.Context) error {
	err := s.log.Close(ctx)
	s.r.close()
	return err
}

// auditWriter is the catalog.AuditWriter of the sink: one batch is sent as
// requests of bounded size, at most MaxInFlight at once.
type auditWriter struct{ r *remote }

func (w auditWriter) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	encoded := make([][]byte, len(events))
	for i := range events {
		b, err := json.Marshal(api.WireAuditEvent(events[i]))
		if err != nil {
			return catalog.Errorf(catalog.CodeInvalidArgument, "audit event %s cannot be encoded: %v", events[i].EventID, err)
		}
		encoded[i] = b
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(w.r.cfg.MaxInFlight)
	for start := 0; start < len(encoded); {
		end, size := start, 0
		for end < len(encoded) && end-start < w.r.cfg.MaxRequestEvents &&
			(end == start || size+len(encoded[end])+1 <= w.r.cfg.MaxRequestBytes) {
			size += len(encoded[end]) + 1
			end++
		}
		part := encoded[start:end]
		g.Go(func() error { return w.send(gctx, part) })
		start = end
	}
	return g.Wait()
}

// send posts events (encoded) until the catalog accepts them, splitting
// them when the catalog finds the request too large.
func (w auditWriter) send(ctx context.Context, events [][]byte) error {
	body := make([]byte, 0, 16+len(events)*(len(events[0])+1))
	body = append(body, `{"events":[`...)
	body = append(body, bytes.Join(events, []byte{','})...)
	body = append(body, "]}"...)
	for attempt := 0; ; attempt++ {
		var res api.AuditResponse
		err := w.r.do(ctx, http.MethodPost, api.AuditPath, body, &res)
		if err == nil && res.Accepted != len(events) {
			err = fmt.Errorf("the catalog accepted %d of %d audit events", res.Accepted, len(events))
		}
		if err == nil {
			return nil
		}
		var se *statusError
		if errors.As(err, &se) {
			switch {
			case se.status == http.StatusRequestEntityTooLarge && len(events) > 1:
				half := len(events) / 2
				if err := w.send(ctx, events[:half]); err != nil {
					return err
				}
				return w.send(ctx, events[half:])
			case se.status == http.StatusBadRequest || se.status == http.StatusRequestEntityTooLarge:
				return &catalog.Error{Code: catalog.CodeInvalidArgument, Msg: "the catalog refused audit events: " + se.msg, Err: err}
			}
		}
		if !transient(err) || ctx.Err() != nil {
			if cerr := ctx.Err(); cerr != nil {
				err = fmt.Errorf("%w (last error: %w)", cerr, err)
			}
			return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "audit events not recorded by the catalog: " + err.Error(), Err: err}
		}
		if attempt == 0 { // a catalog that stays down: one line per request, its end is logged by the audit log
			w.r.cfg.Logger.Warn().Err(err).Int("events", len(events)).Msg("audit request failed; retrying until the write times out")
		}
		if err := sleep(ctx, w.r.backoff(attempt)); err != nil {
			return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "audit events not recorded by the catalog: " + err.Error(), Err: err}
		}
	}
}
