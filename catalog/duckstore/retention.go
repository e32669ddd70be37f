package duckstore

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
)

// Audit size bound (RetentionOptions.MaxBytes, --audit-max-size): when the
// audit events take more than MaxBytes, the oldest are deleted until they
// take at most nine tenths of it, the same way as expired ones. The size
// counted is the events' own: the bytes of their text columns plus
// auditRowOverhead per row (AuditSize). DuckDB compresses, so the file
// usually holds less; it reuses the blocks of deleted rows rather than
// shrinking. Measuring the table reads all of it, so it is measured only
// at start, after a deletion, and when the bytes committed since the last
// measurement (counted by the store as it appends) may have passed the
// bound; checking that costs nothing.

// auditRowOverhead is the size counted per audit row besides its text: the
// time, date, status code, latency and revision columns.
const auditRowOverhead = 32

// auditBytesSQL is the size of one audit_events row as AuditSize counts it.
const auditBytesSQL = `(strlen(event_id) + strlen(service_name) + strlen(action_name) + strlen(user_identity) +
	strlen(run_by) + strlen(run_as) + strlen(source_ip_address) + strlen(user_agent) + strlen(session_id) +
	strlen(request_id) + strlen(securable_type) + strlen(securable_name) + strlen(request_params) +
	strlen(error_message) + strlen(sql_state) + strlen(decision) + strlen(reason) +
	coalesce(strlen(trace_id), 0) + coalesce(strlen(span_id), 0) + coalesce(strlen(guardrails), 0) +
	coalesce(strlen(provider_service), 0) + coalesce(strlen(provider), 0) + coalesce(strlen(model), 0) +
	coalesce(strlen(request_tags), 0) + coalesce(strlen(routing), 0) +
	coalesce(strlen(request_body), 0) + coalesce(strlen(response_body), 0) + 32)`

// auditEventBytes is the size of e as AuditSize counts it.
func auditEventBytes(e *catalog.AuditEvent) int64 {
	return int64(len(e.EventID)+len(e.Service)+len(e.Action)+len(e.UserIdentity)+len(e.RunBy)+len(e.RunAs)+
		len(e.SourceIP)+len(e.UserAgent)+len(e.SessionID)+len(e.RequestID)+len(e.SecurableType)+
		len(e.SecurableName)+len(e.RequestParams)+len(e.ErrorMessage)+len(e.SQLState)+len(e.Decision)+
		len(e.Reason)+len(e.TraceID)+len(e.SpanID)+len(e.Guardrails)) + usageBytes(e.Usage) + payloadBytes(e.Payload) + auditRowOverhead
}

func usageBytes(u *catalog.LLMUsage) int64 {
	if u == nil {
		return 0
	}
	return int64(len(u.ProviderService) + len(u.Provider) + len(u.Model) + len(u.RequestTags) + len(u.Routing))
}

func payloadBytes(p *catalog.AuditPayload) int64 {
	if p == nil {
		return 0
	}
	return int64(len(p.RequestBody) + len(p.ResponseBody))
}

// AuditSize returns the size of the audit events (see RetentionOptions.MaxBytes).
func (e *QueryEngine) AuditSize(ctx context.Context) (int64, error) {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return 0, translate(ctx, "audit size", err)
	}
	defer conn.Close()
	var n int64
	if err := conn.QueryRowContext(ctx, `SELECT coalesce(sum(`+auditBytesSQL+`), 0)::BIGINT FROM audit_events`).Scan(&n); err != nil {
		return 0, translate(ctx, "audit size", err)
	}
	return n, nil
}

// PruneAuditToSize deletes the oldest audit events until the rest take at
// most target bytes (AuditSize), batch rows per transaction, and returns
// how many it deleted. It finds the cutoff time from the sizes per hour
// and then per second within the hour that crosses the bound, and deletes
// whole seconds: what is left may be a little below target.
func (e *QueryEngine) PruneAuditToSize(ctx context.Context, target int64, batch int) (int64, error) {
	if target < 0 {
		target = 0
	}
	hours, err := e.auditHistogram(ctx, "hour", time.Time{}, time.Time{})
	if err != nil {
		return 0, err
	}
	var kept int64
	for _, h := range hours { // newest first
		if kept+h.bytes <= target {
			kept += h.bytes
			continue
		}
		secs, err := e.auditHistogram(ctx, "second", h.at, h.at.Add(time.Hour))
		if err != nil {
			return 0, err
		}
		cutoff := h.at
		for _, s := range secs {
			if kept+s.bytes > target {
				cutoff = s.at.Add(time.Second)
				break
			}
			kept += s.bytes
		}
		return e.PruneAudit(ctx, cutoff, batch)
	}
	return 0, nil
}

type sizeBucket struct {
	at    time.Time
	bytes int64
}

// auditHistogram returns the size of the events per unit (hour or second),
// newest first, within [from, to) when given.
func (e *QueryEngine) auditHistogram(ctx context.Context, unit string, from, to time.Time) ([]sizeBucket, error) {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return nil, translate(ctx, "audit size", err)
	}
	defer conn.Close()
	q := `SELECT date_trunc('` + unit + `', event_time) AS b, sum(` + auditBytesSQL + `)::BIGINT FROM audit_events`
	var args []any
	if !from.IsZero() {
		q += ` WHERE event_time >= $1 AND event_time < $2`
		args = append(args, from.UTC(), to.UTC())
	}
	rows, err := conn.QueryContext(ctx, q+` GROUP BY b ORDER BY b DESC`, args...)
	if err != nil {
		return nil, translate(ctx, "audit size", err)
	}
	defer rows.Close()
	var out []sizeBucket
	for rows.Next() {
		var b sizeBucket
		if err := rows.Scan(&b.at, &b.bytes); err != nil {
			return nil, translate(ctx, "audit size", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(ctx, "audit size", err)
	}
	return out, nil
}

// Audit retention: events older than the retention period are deleted in
// the background, in batches of DefaultPruneBatch rows, each its own short
// transaction on a connection of the query engine. Writers are not
// blocked: the store's write transactions only append to audit_events,
// and DuckDB's MVCC lets a delete of old rows commit beside them (a
// transaction conflicts only on rows both change); readers see a snapshot.
// The delete finds old rows through the zone maps of event_time (events
// are appended in time order), so a batch touches few row groups.

// DefaultPruneBatch is the number of rows one retention transaction deletes.
const DefaultPruneBatch = 50_000

// PruneAudit deletes the audit events whose event_time is before cutoff,
// batch rows per transaction (DefaultPruneBatch when batch <= 0), and
// returns how many it deleted. It stops early, with ctx's error, when ctx
// is done.
func (e *QueryEngine) PruneAudit(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultPruneBatch
	}
	var total int64
	for {
		if e.s.closed.Load() {
			return total, errClosed()
		}
		n, err := e.pruneBatch(ctx, cutoff.UTC(), batch)
		total += n
		if err != nil {
			return total, err
		}
		if n < int64(batch) {
			return total, nil
		}
	}
}

func (e *QueryEngine) pruneBatch(ctx context.Context, cutoff time.Time, batch int) (int64, error) {
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return 0, translate(ctx, "prune audit", err)
	}
	defer conn.Close()
	res, err := conn.ExecContext(ctx, `DELETE FROM audit_events WHERE rowid IN
		(SELECT rowid FROM audit_events WHERE event_time < $1 LIMIT $2)`, cutoff, int64(batch))
	if err != nil {
		return 0, translate(ctx, "prune audit", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, translate(ctx, "prune audit", err)
	}
	return n, nil
}

// RetentionOptions configure RunAuditRetention.
type RetentionOptions struct {
	// Keep is how long events are kept (catalog.DefaultAuditRetention
	// when 0); a negative Keep disables retention.
	Keep time.Duration
	// Every is the pause between two passes (default one hour).
	Every time.Duration
	// Batch is the number of rows per delete (DefaultPruneBatch when 0).
	Batch int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxBytes bounds the size of the audit events (AuditSize; 0: no
	// bound): past it the oldest are deleted down to nine tenths of it.
	MaxBytes int64
	// SizeEvery is the pause between two checks of MaxBytes (default ten
	// seconds; a check that finds the bound not passed costs nothing).
	SizeEvery time.Duration
}

// RunAuditRetention deletes expired audit events once at start and then
// every o.Every, and with o.MaxBytes the oldest events past that size,
// checked every o.SizeEvery, until ctx is done; it returns when ctx is
// done. Failures are logged and retried at the next pass.
func (e *QueryEngine) RunAuditRetention(ctx context.Context, o RetentionOptions) {
	if o.Keep == 0 {
		o.Keep = catalog.DefaultAuditRetention
	}
	if o.Keep < 0 && o.MaxBytes <= 0 {
		return
	}
	if o.Every <= 0 {
		o.Every = time.Hour
	}
	if o.SizeEvery <= 0 {
		o.SizeEvery = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := e.log.With().Str("component", "audit-retention").Logger()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	var sizeC <-chan time.Time
	if o.MaxBytes > 0 {
		st := time.NewTicker(o.SizeEvery)
		defer st.Stop()
		sizeC = st.C
	}
	measured := int64(-1) // the size at the last measurement; -1: unknown
	for {
		if o.Keep > 0 {
			cutoff := o.Now().Add(-o.Keep)
			start := time.Now()
			n, err := e.PruneAudit(ctx, cutoff, o.Batch)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Error().Err(err).Int64("deleted", n).Msg("deleting expired audit events failed; retrying at the next pass")
			case n > 0:
				log.Info().Int64("deleted", n).Time("before", cutoff).Dur("took", time.Since(start)).Msg("deleted expired audit events")
				measured = -1
			}
		}
	size:
		for {
			if o.MaxBytes > 0 {
				measured = e.boundSize(ctx, o, measured, log)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				break size
			case <-sizeC:
			}
		}
	}
}

// boundSize deletes the oldest events if the audit events may take more
// than o.MaxBytes, and returns the size measured now (or still known).
func (e *QueryEngine) boundSize(ctx context.Context, o RetentionOptions, measured int64, log zerolog.Logger) int64 {
	if measured >= 0 && measured+e.s.auditAppended.Load() <= o.MaxBytes {
		return measured
	}
	appended := e.s.auditAppended.Load()
	n, err := e.AuditSize(ctx)
	if err != nil {
		if ctx.Err() == nil {
			log.Error().Err(err).Msg("measuring the audit events failed; retrying at the next check")
		}
		return -1
	}
	// Appends that committed while the size was read may be counted twice:
	// the bound errs on the side of deleting a little early.
	e.s.auditAppended.Add(-appended)
	if n <= o.MaxBytes {
		return n
	}
	target := o.MaxBytes / 10 * 9
	start := time.Now()
	deleted, err := e.PruneAuditToSize(ctx, target, o.Batch)
	switch {
	case ctx.Err() != nil:
		return -1
	case err != nil:
		log.Error().Err(err).Int64("deleted", deleted).Msg("deleting the oldest audit events (--audit-max-size) failed; retrying at the next check")
		return -1
	}
	log.Warn().Int64("deleted", deleted).Int64("size", n).Int64("max_size", o.MaxBytes).Dur("took", time.Since(start)).
		Msg("the audit events passed their size bound: deleted the oldest")
	appended = e.s.auditAppended.Load()
	if n, err = e.AuditSize(ctx); err != nil {
		return -1
	}
	e.s.auditAppended.Add(-appended)
	return n
}
