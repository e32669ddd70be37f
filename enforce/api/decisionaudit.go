package api

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
)

// Decisions answered by the API are audited (service_name
// "authorization", action_name "authorize") off the request path: the
// handler queues one event per decision and a writer goroutine records
// them in batches through Options.Audit. The queue is bounded; when it is
// full the request waits for room (backpressure, not loss). Unlike an MCP
// call's record, a decision's record is not made durable before the answer:
// the gateway that acts on the decision writes its own durable record
// carrying the decision and reason.

// decisionQueueSize bounds the decisions waiting to be recorded. The
// queue holds pointers: a buffer of 65,536 events by value (392 bytes
// each, most of them pointers) would be 25 MB of the heap that the
// collector scans in every cycle whether the queue is used or not.
const decisionQueueSize = 1 << 16

type decisionAudit struct {
	q   chan *catalog.AuditEvent
	rec AuditRecorder
	log zerolog.Logger
}

func newDecisionAudit(ctx context.Context, rec AuditRecorder, log zerolog.Logger) *decisionAudit {
	a := &decisionAudit{q: make(chan *catalog.AuditEvent, decisionQueueSize), rec: rec, log: log}
	go a.run(ctx)
	return a
}

func (a *decisionAudit) run(ctx context.Context) {
	batch := make([]catalog.AuditEvent, 0, 4096)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-a.q:
			batch = append(batch[:0], *ev)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case ev := <-a.q:
				batch = append(batch, *ev)
			default:
				break fill
			}
		}
		if err := a.rec.RecordBatch(ctx, batch); err != nil && ctx.Err() == nil {
			a.log.Error().Err(err).Int("events", len(batch)).Msg("recording authorization decisions failed")
		}
	}
}

// record queues the audit events of one request's decisions.
func (a *decisionAudit) record(r *http.Request, reqs []enforce.Request, ds []enforce.Decision, start time.Time) {
	if a == nil {
		return
	}
	now := time.Now()
	lat := float64(now.Sub(start).Microseconds()) / 1000 / float64(len(ds))
	ip := r.RemoteAddr
	if host, _, err := net.SplitHostPort(ip); err == nil {
		ip = host
	}
	for i := range ds {
		q, d := &reqs[i], &ds[i]
		params := map[string]any{"privilege": string(q.Privilege)}
		for _, k := range []string{"method", "tool", "session_id"} {
			if v, ok := q.Context[k].(string); ok && v != "" {
				params[k] = v
			}
		}
		pj, _ := json.Marshal(params)
		ev := &catalog.AuditEvent{
			Time: now, Service: "authorization", Action: "authorize",
			UserIdentity: q.Subject, RunBy: q.Subject, RunAs: q.Actor,
			SourceIP: ip, UserAgent: r.UserAgent(),
			SecurableType: string(q.Securable.Type), SecurableName: q.Securable.Name,
			RequestParams: string(pj), Decision: "deny", Reason: d.Reason, LatencyMs: lat, Revision: d.Revision,
		}
		if d.Allowed {
			ev.Decision = "allow"
		}
		select {
		case a.q <- ev:
		case <-r.Context().Done():
			return
		}
	}
}
