package pipeline

import (
	"context"
	"net/http"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// auditState is where a call's audit record stands.
type auditState struct {
	// begun: the request record was queued (two-phase), ack is its
	// acknowledgement (nil with --audit-sync off).
	begun bool
	ack   *catalog.AuditAck
	// durable: the request record was confirmed (or, with --audit-sync
	// off, need not be waited for).
	durable bool
	// done: the call's final record (its completion, or its only record)
	// was written or queued, or failed; nothing more is recorded.
	done bool
	// settled: the call's record is as the rule wants it before the
	// answer leaves: its request record durable (or, with --audit-sync
	// off, queued) and its final record written or queued, so that a query
	// after the answer sees the call complete. Only then may the pipeline
	// send an answer before the call's end (flushWhole).
	settled bool
}

// beginAudit queues the call's request record before it is forwarded
// (AuditQueue only): the record's fsync then overlaps the upstream call.
// If the record cannot even be queued (the log is closed, or its last
// write failed a moment ago), the call is not forwarded.
func (p *Pipeline) beginAudit(ctx context.Context, c *Call) *Error {
	if p.queue == nil {
		return nil
	}
	ev := c.event()
	ev.StatusCode, ev.LatencyMs, ev.ErrorMessage = 0, 0, ""
	var err error
	if p.cfg.AuditAsync {
		err = p.queue.Submit(c.bg(), ev)
	} else {
		c.audit.ack, err = p.queue.Enqueue(c.bg(), ev)
	}
	if err != nil {
		return p.auditFailed(c, err)
	}
	c.audit.begun = true
	c.audit.durable = p.cfg.AuditAsync
	return nil
}

// commit implements Call.Commit.
func (p *Pipeline) commit(c *Call, final bool) *Error {
	a := &c.audit
	if a.done {
		return nil
	}
	if a.begun {
		if !a.durable {
			err := p.waitAck(c, a.ack)
			if err != nil {
				a.done = true // the request record may be lost: record nothing more
				return p.auditFailed(c, err)
			}
			a.durable = true
		}
		if final {
			p.complete(c)
		}
		return nil
	}
	// One record for the whole call: a refusal, or a sink without a queue.
	a.done = true
	ev := c.event()
	if p.cfg.AuditAsync {
		if p.queue != nil {
			if err := p.queue.Submit(c.bg(), ev); err != nil {
				return p.auditFailed(c, err)
			}
			a.settled = true
			return nil
		}
		// Recorded in the background: not settled (a query after the
		// answer may not see it yet).
		go func() {
			ctx, cancel := p.auditContext(c)
			defer cancel()
			if err := p.cfg.Audit.Record(ctx, ev); err != nil {
				p.logAuditFailure(ev, err)
			}
		}()
		return nil
	}
	ctx, cancel := p.auditContext(c)
	defer cancel()
	if err := p.cfg.Audit.Record(ctx, ev); err != nil {
		return p.auditFailed(c, err)
	}
	a.settled = true
	return nil
}

// complete queues the completion of a two-phase record, not waiting.
func (p *Pipeline) complete(c *Call) {
	c.audit.done = true
	ev := c.event()
	ev.Completes = true
	if err := p.queue.Submit(c.bg(), ev); err != nil {
		// The request record is durable; the outcome is in the log.
		p.logAuditFailure(ev, err)
		return
	}
	c.audit.settled = true
}

// audit is the audit stage at the end of every call: what was not
// recorded yet is now (a call that ended without an answer, a stream's
// outcome).
func (p *Pipeline) audit(_ context.Context, c *Call) error {
	a := &c.audit
	if a.done {
		return nil
	}
	if a.begun {
		if a.durable {
			p.complete(c)
			return nil
		}
		// Not answered (the client left, or the relay failed before its
		// commit): the completion follows the request record.
		if err := p.waitAck(c, a.ack); err != nil {
			a.done = true
			p.logAuditFailure(c.event(), err)
			return nil
		}
		a.durable = true
		p.complete(c)
		return nil
	}
	if err := c.Commit(true); err != nil {
		p.logAuditFailure(c.event(), err)
	}
	return nil
}

// waitAck waits for the request record, at most AuditTimeout.
func (p *Pipeline) waitAck(c *Call, ack *catalog.AuditAck) error {
	select {
	case <-ack.Done():
		return ack.Wait(context.Background())
	default:
	}
	ctx, cancel := p.auditContext(c)
	defer cancel()
	return ack.Wait(ctx)
}

// bg is the context of queueing audit events: the request's values,
// never its cancellation (the call happened).
func (c *Call) bg() context.Context {
	if c.auditCtx == nil {
		c.auditCtx = context.WithoutCancel(c.Request.Context())
	}
	return c.auditCtx
}

func (p *Pipeline) auditContext(c *Call) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.bg(), p.cfg.AuditTimeout)
}

func (p *Pipeline) auditFailed(c *Call, err error) *Error {
	c.Logger().Error().Err(err).Str("action", c.Action).Str("securable", c.Securable.Name).
		Msg("audit record failed: refusing to answer (fail closed)")
	return &Error{Stage: StageAudit, Kind: KindAudit, Status: http.StatusServiceUnavailable, RetryAfter: time.Second,
		Message: "the gateway could not record this call in the audit log, so it was not answered; retry later", Cause: err}
}

func (p *Pipeline) logAuditFailure(ev catalog.AuditEvent, err error) {
	p.log.Error().Err(err).Str("event_id", ev.EventID).Str("action", ev.Action).Str("securable", ev.SecurableName).
		Bool("completion", ev.Completes).Msg("audit record failed")
}

// attach queues an extra event of c (Call.Attach), never waiting.
func (p *Pipeline) attach(c *Call, ev catalog.AuditEvent) {
	if p.queue != nil {
		if err := p.queue.Submit(c.bg(), ev); err != nil {
			p.logAuditFailure(ev, err)
		}
		return
	}
	go func() {
		ctx, cancel := p.auditContext(c)
		defer cancel()
		if err := p.cfg.Audit.Record(ctx, ev); err != nil {
			p.logAuditFailure(ev, err)
		}
	}()
}
