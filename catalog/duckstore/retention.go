package duckstore

import (
	"context"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

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
}

// RunAuditRetention deletes expired audit events once at start and then
// every o.Every until ctx is done; it returns when ctx is done. Failures
// are logged and retried at the next pass.
func (e *QueryEngine) RunAuditRetention(ctx context.Context, o RetentionOptions) {
	if o.Keep == 0 {
		o.Keep = catalog.DefaultAuditRetention
	}
	if o.Keep < 0 {
		return
	}
	if o.Every <= 0 {
		o.Every = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := e.log.With().Str("component", "audit-retention").Logger()
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
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
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
