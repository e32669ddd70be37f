package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
)

// Defaults of EventOptions.
const (
	DefaultEventConns      = 4
	DefaultPartitionsAhead = 3
	DefaultSpoolID         = "default"
)

// maxNewPartitions bounds the day partitions one append creates on demand
// (events of other days without one go to the default partition).
const maxNewPartitions = 8

// EventOptions configure an Events store.
type EventOptions struct {
	Logger zerolog.Logger
	// MaxConns bounds the event stream's own pool (default 4), apart from
	// the catalog's: a flood of events never holds up a catalog write.
	MaxConns int32
	// SpoolID names the local write-ahead log (catalog/auditwal) in front
	// of this store: LogSeq and ApplyLog keep its position in
	// mandate_audit_spools under this key. Each replica has its own
	// (DefaultSpoolID when empty).
	SpoolID string
	// PartitionsAhead is how many days after today get their partition
	// ahead of time (default 3).
	PartitionsAhead int
	// Retention bounds the days partitions are created for on demand: an
	// event older than this (catalog.DefaultAuditRetention when 0) goes to
	// the default partition, as does one more than PartitionsAhead+1 days
	// ahead.
	Retention time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Events is the catalog.EventStore of a PostgreSQL database shared by
// replicas (see the package documentation, "Event stream"). It is also
// the inner store of catalog/auditwal (LogSeq, ApplyLog).
type Events struct {
	pool *pgxpool.Pool
	log  zerolog.Logger
	opts EventOptions

	daysMu sync.Mutex
	days   map[int64]bool // days (Unix days, UTC) known to have a partition

	closed atomic.Bool
	once   sync.Once

	// sizeWarned is when EnforceMaxSize last logged that today's events
	// alone exceed the bound (Unix nanoseconds of opts.Now).
	sizeWarned atomic.Int64
}

// sizeWarnEvery bounds how often EnforceMaxSize, which runs every few
// seconds, repeats that today's events alone exceed the bound.
const sizeWarnEvery = time.Hour

var _ catalog.EventStore = (*Events)(nil)

// OpenEvents connects to the database at url with a pool of its own,
// creates or migrates the schema (as Open does) and creates the day
// partitions of yesterday through PartitionsAhead days ahead.
func OpenEvents(ctx context.Context, url string, o EventOptions) (*Events, error) {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultEventConns
	}
	if o.SpoolID == "" {
		o.SpoolID = DefaultSpoolID
	}
	if o.PartitionsAhead <= 0 {
		o.PartitionsAhead = DefaultPartitionsAhead
	}
	if o.Retention <= 0 {
		o.Retention = catalog.DefaultAuditRetention
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pool, err := newPool(ctx, url, o.MaxConns, "mandate-events")
	if err != nil {
		return nil, err
	}
	if err := migrate(ctx, pool, o.Logger); err != nil {
		pool.Close()
		return nil, err
	}
	e := &Events{pool: pool, log: o.Logger, opts: o, days: map[int64]bool{}}
	if err := e.EnsurePartitions(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return e, nil
}

// Pool is the event stream's connection pool (closed by Close).
func (e *Events) Pool() *pgxpool.Pool { return e.pool }

func (e *Events) check(ctx context.Context) error {
	if e.closed.Load() {
		return catalog.Errorf(catalog.CodeUnavailable, "audit store is closed")
	}
	if err := ctx.Err(); err != nil {
		return translate(ctx, "audit", err)
	}
	return nil
}

// Close implements catalog.EventStore.
func (e *Events) Close() error {
	e.once.Do(func() {
		e.closed.Store(true)
		e.pool.Close()
	})
	return nil
}

func unixDay(t time.Time) int64 {
	return t.UTC().Unix() / 86400
	// (times before 1970 round towards zero: only used as a map key)
}

// EnsurePartitions creates the partitions of yesterday through
// PartitionsAhead days ahead that are missing (replicas call it at start
// and daily; safe at once).
func (e *Events) EnsurePartitions(ctx context.Context) error {
	today := e.opts.Now().UTC().Truncate(24 * time.Hour)
	return e.ensure(ctx, today.AddDate(0, 0, -1), e.opts.PartitionsAhead+2)
}

// ensure creates the missing partitions of days first .. first+days-1
// (first at UTC midnight) and remembers them.
func (e *Events) ensure(ctx context.Context, first time.Time, days int) error {
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT mandate_audit_ensure_partitions($1::date, $2)`,
		first.Format(time.DateOnly), days).Scan(&n); err != nil {
		return translate(ctx, "create audit partitions", err)
	}
	if n > 0 {
		e.log.Debug().Int("created", n).Time("from", first).Msg("audit partitions created")
	}
	e.daysMu.Lock()
	for i := range days {
		e.days[unixDay(first.AddDate(0, 0, i))] = true
	}
	e.daysMu.Unlock()
	return nil
}

// ensureFor creates the missing partitions of the days of rows that lie
// within the retention and at most PartitionsAhead+1 days ahead (at most
// maxNewPartitions of them; the others' events go to the default
// partition).
func (e *Events) ensureFor(ctx context.Context, rows []catalog.AuditEvent) error {
	now := e.opts.Now()
	lo, hi := unixDay(now.Add(-e.opts.Retention)), unixDay(now)+int64(e.opts.PartitionsAhead)+1
	var missing []int64
	e.daysMu.Lock()
	last := int64(-1 << 62)
	for i := range rows {
		if rows[i].Time.Before(time.Unix(0, 0)) {
			continue
		}
		d := unixDay(rows[i].Time)
		if d == last || d < lo || d > hi || e.days[d] {
			continue
		}
		last = d
		dup := false
		for _, m := range missing {
			dup = dup || m == d
		}
		if !dup && len(missing) < maxNewPartitions {
			missing = append(missing, d)
		}
	}
	e.daysMu.Unlock()
	for _, d := range missing {
		if err := e.ensure(ctx, time.Unix(d*86400, 0).UTC(), 1); err != nil {
			return err
		}
	}
	return nil
}

// AppendAudit implements catalog.AuditWriter: one transaction.
func (e *Events) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	return e.write(ctx, writeReq{events: events})
}

// AppendChangeAudit implements catalog.EventStore: under a lock of the
// audited-revision row, so that replicas forwarding the same change
// records store their audit once.
func (e *Events) AppendChangeAudit(ctx context.Context, through catalog.Revision, events []catalog.AuditEvent) error {
	return e.write(ctx, writeReq{events: events, mark: through, change: true})
}

// ApplyLog implements auditwal.Inner: events, the new mark and this
// spool's position in one transaction. With a mark, the change audit
// among events that another replica stored already is skipped.
func (e *Events) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	return e.write(ctx, writeReq{events: events, mark: mark, seq: seq, spool: true})
}

// LogSeq implements auditwal.Inner: the last record of this store's spool
// (EventOptions.SpoolID) applied here.
func (e *Events) LogSeq(ctx context.Context) (int64, error) {
	if err := e.check(ctx); err != nil {
		return 0, err
	}
	var seq int64
	err := e.pool.QueryRow(ctx, `SELECT log_seq FROM mandate_audit_spools WHERE spool_id = $1`, e.opts.SpoolID).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return seq, translate(ctx, "read the audit spool position", err)
}

// AuditedRevision implements catalog.EventStore.
func (e *Events) AuditedRevision(ctx context.Context) (catalog.Revision, error) {
	if err := e.check(ctx); err != nil {
		return 0, err
	}
	var v int64
	err := e.pool.QueryRow(ctx, `SELECT value FROM mandate_meta WHERE key = 'audit_revision'`).Scan(&v)
	return catalog.Revision(v), translate(ctx, "read the audited revision", err)
}

type writeReq struct {
	events []catalog.AuditEvent
	mark   catalog.Revision
	change bool // AppendChangeAudit: every event is change audit
	spool  bool // ApplyLog: record seq
	seq    int64
}

func (e *Events) write(ctx context.Context, w writeReq) error {
	if err := e.check(ctx); err != nil {
		return err
	}
	for i := range w.events {
		if ev := &w.events[i]; ev.StatusCode != int(int32(ev.StatusCode)) {
			return catalog.Errorf(catalog.CodeInvalidArgument, "audit store: audit event %s: status code %d out of range",
				ev.EventID, ev.StatusCode)
		}
	}
	if len(w.events) == 0 && w.mark == 0 && !w.spool {
		return nil
	}
	rows, late := catalog.FoldCompletions(w.events)
	if err := e.ensureFor(ctx, rows); err != nil {
		return err
	}
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return translate(ctx, "append audit events", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if w.mark > 0 {
		var old int64
		if err := tx.QueryRow(ctx, `SELECT value FROM mandate_meta WHERE key = 'audit_revision' FOR UPDATE`).Scan(&old); err != nil {
			return translate(ctx, "lock the audited revision", err)
		}
		if rows, err = e.skipAudited(ctx, tx, rows, catalog.Revision(old), w.change); err != nil {
			return err
		}
		if int64(w.mark) > old {
			if _, err := tx.Exec(ctx, `UPDATE mandate_meta SET value = $1 WHERE key = 'audit_revision'`, int64(w.mark)); err != nil {
				return translate(ctx, "record the audited revision", err)
			}
		}
	}
	if len(rows) > 0 {
		if _, err := tx.Conn().PgConn().CopyFrom(ctx, newCopyReader(rows), copySQL); err != nil {
			return translate(ctx, "append audit events", err)
		}
		if err := requestDays(ctx, tx, rows); err != nil {
			return err
		}
	}
	if len(late) > 0 {
		if err := complete(ctx, tx, late); err != nil {
			return err
		}
	}
	if w.spool {
		if _, err := tx.Exec(ctx, `INSERT INTO mandate_audit_spools (spool_id, log_seq) VALUES ($1, $2)
			ON CONFLICT (spool_id) DO UPDATE SET log_seq = excluded.log_seq, applied_at = now()`, e.opts.SpoolID, w.seq); err != nil {
			return translate(ctx, "record the audit spool position", err)
		}
	}
	return translate(ctx, "append audit events", tx.Commit(ctx))
}

// requestDays records the days on which rows' request ids have events
// (audit_request_days: the query engine bounds a lookup by request_id to
// those days' partitions), one row per request id and day of the batch.
func requestDays(ctx context.Context, tx pgx.Tx, rows []catalog.AuditEvent) error {
	type key struct {
		id  string
		day time.Time
	}
	seen := make(map[key]bool, len(rows))
	ids := make([]string, 0, len(rows))
	days := make([]time.Time, 0, len(rows))
	for i := range rows {
		r := &rows[i]
		if r.RequestID == "" {
			continue
		}
		t := r.Time.UTC()
		k := key{r.RequestID, time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)}
		if seen[k] {
			continue
		}
		seen[k] = true
		ids = append(ids, text(r.RequestID))
		days = append(days, k.day)
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO audit_request_days (request_id, day)
		SELECT * FROM unnest($1::text[], $2::date[]) ON CONFLICT DO NOTHING`, ids, days)
	return translate(ctx, "record the days of request ids", err)
}

// skipAudited drops the change audit among rows that the store holds
// already (the mark is old): with change set every row is change audit
// (AppendChangeAudit); otherwise (a spool's batch, which mixes gateway
// events with forwarded change audit) the rows of service sql with a
// revision up to old are looked up by event id and dropped if stored.
func (e *Events) skipAudited(ctx context.Context, tx pgx.Tx, rows []catalog.AuditEvent, old catalog.Revision, change bool) ([]catalog.AuditEvent, error) {
	var ids []string
	var times []time.Time
	for i := range rows {
		r := &rows[i]
		if change && r.Revision <= old || !change && r.Service == "sql" && r.Revision > 0 && r.Revision <= old {
			ids, times = append(ids, r.EventID), append(times, utcMicro(r.Time))
		}
	}
	if len(ids) == 0 {
		return rows, nil
	}
	drop := map[string]bool{}
	if change {
		for _, id := range ids {
			drop[id] = true
		}
	} else {
		lo, hi := times[0], times[0]
		for _, t := range times {
			lo, hi = minTime(lo, t), maxTime(hi, t)
		}
		found, err := tx.Query(ctx, `SELECT a.event_id FROM audit_events a
			JOIN unnest($1::text[], $2::timestamptz[]) AS k(event_id, event_time)
			  ON a.event_id = k.event_id AND a.event_time = k.event_time
			WHERE a.event_time BETWEEN $3 AND $4`, ids, times, lo, hi)
		if err != nil {
			return nil, translate(ctx, "look up forwarded change audit", err)
		}
		for found.Next() {
			var id string
			if err := found.Scan(&id); err != nil {
				found.Close()
				return nil, translate(ctx, "look up forwarded change audit", err)
			}
			drop[id] = true
		}
		found.Close()
		if err := found.Err(); err != nil {
			return nil, translate(ctx, "look up forwarded change audit", err)
		}
	}
	if len(drop) == 0 {
		return rows, nil
	}
	keep := make([]catalog.AuditEvent, 0, len(rows))
	for i := range rows {
		r := &rows[i]
		candidate := change && r.Revision <= old || !change && r.Service == "sql" && r.Revision > 0 && r.Revision <= old
		if !candidate || !drop[r.EventID] {
			keep = append(keep, *r)
		}
	}
	return keep, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func utcMicro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// auditCopyColumns are the columns COPY fills (seq takes its default).
var auditCopyColumns = []string{"event_id", "event_time", "event_date", "service_name", "action_name",
	"user_identity", "run_by", "run_as", "source_ip_address", "user_agent", "session_id", "request_id",
	"securable_type", "securable_name", "request_params", "status_code", "error_message", "sql_state", "decision",
	"reason", "latency_ms", "revision", "trace_id", "span_id", "guardrails", "provider_service", "provider", "model",
	"input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens", "reasoning_tokens", "cost_nanos",
	"ttft_ms", "streaming", "request_tags", "routing", "request_body", "response_body", "json_invalid"}

// text makes s storable as PostgreSQL text: invalid UTF-8 and NUL bytes
// (which TEXT refuses, and with them the whole COPY) become U+FFFD.
func text(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// Bits of json_invalid.
const (
	badRequestParams = 1 << iota
	badGuardrails
	badRequestTags
	badRouting
)

// jsonInvalid returns the json_invalid bits of e's JSON columns.
func jsonInvalid(e *catalog.AuditEvent) int16 {
	var bits int16
	if !storableJSON(e.RequestParams) {
		bits |= badRequestParams
	}
	if !storableJSON(e.Guardrails) {
		bits |= badGuardrails
	}
	if u := e.Usage; u != nil {
		if !storableJSON(u.RequestTags) {
			bits |= badRequestTags
		}
		if !storableJSON(u.Routing) {
			bits |= badRouting
		}
	}
	return bits
}

// maxJSONDepth bounds the nesting the views cast (PostgreSQL's JSON
// parser recurses; deeper documents show as NULL).
const maxJSONDepth = 512

// storableJSON reports whether the views may cast s to json: "" (shown as
// NULL anyway), or JSON that PostgreSQL's json input accepts for certain
// (valid, nesting at most maxJSONDepth, no \u escapes of surrogates,
// which PostgreSQL checks more strictly than Go).
func storableJSON(s string) bool {
	if s == "" {
		return true
	}
	s = text(s)
	if !json.Valid([]byte(s)) {
		return false
	}
	depth, in, esc := 0, false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case in && esc:
			esc = false
			if c == 'u' && i+1 < len(s) && (s[i+1] == 'd' || s[i+1] == 'D') && i+2 < len(s) && strings.IndexByte("89abcdefABCDEF", s[i+2]) >= 0 {
				return false
			}
		case in && c == '\\':
			esc = true
		case c == '"':
			in = !in
		case !in && (c == '{' || c == '['):
			if depth++; depth > maxJSONDepth {
				return false
			}
		case !in && (c == '}' || c == ']'):
			depth--
		}
	}
	return true
}

// completeQuery applies completions to stored rows: the outcome and usage
// columns of the row with the same event_id and event_time (within $27..$28
// for partition pruning; the event_time index finds it).
const completeQuery = `UPDATE audit_events AS a SET session_id = v.session_id, request_params = v.request_params,
	status_code = v.status_code, error_message = v.error_message, sql_state = v.sql_state, decision = v.decision,
	reason = v.reason, latency_ms = v.latency_ms,
	trace_id = CASE WHEN v.trace_id = '' THEN a.trace_id ELSE v.trace_id END,
	span_id = CASE WHEN v.trace_id = '' THEN a.span_id ELSE v.span_id END,
	guardrails = v.guardrails, provider_service = v.provider_service, provider = v.provider, model = v.model,
	input_tokens = v.input_tokens, output_tokens = v.output_tokens, cached_input_tokens = v.cached_input_tokens,
	cache_write_tokens = v.cache_write_tokens, reasoning_tokens = v.reasoning_tokens, cost_nanos = v.cost_nanos,
	ttft_ms = v.ttft_ms, streaming = v.streaming, request_tags = v.request_tags, routing = v.routing,
	json_invalid = v.json_invalid
	FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[], $8::text[],
		$9::text[], $10::float8[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
		$17::int8[], $18::int8[], $19::int8[], $20::int8[], $21::int8[], $22::int8[], $23::float8[], $24::bool[],
		$25::text[], $26::text[], $29::int2[])
	  AS v(event_id, event_time, session_id, request_params, status_code, error_message, sql_state, decision,
		reason, latency_ms, trace_id, span_id, guardrails, provider_service, provider, model,
		input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost_nanos, ttft_ms, streaming,
		request_tags, routing, json_invalid)
	WHERE a.event_time BETWEEN $27 AND $28 AND a.event_time = v.event_time AND a.event_id = v.event_id`

// complete applies completions whose request was stored earlier, in
// order (a later completion of one event wins).
func complete(ctx context.Context, tx pgx.Tx, late []catalog.AuditEvent) error {
	// One UPDATE may touch a row once: later completions of an event
	// replace earlier ones of the same batch.
	last := make(map[string]int, len(late))
	for i := range late {
		last[late[i].EventID] = i
	}
	var (
		ids, sess, params, emsg, state, dec, reason, trace, span, guard []string
		provSvc, prov, model, tags, routing                             []string
		times                                                           []time.Time
		status                                                          []int32
		latency                                                         []float64
		in, out, cached, cw, reasoning, cost                            []*int64
		ttft                                                            []*float64
		streaming                                                       []*bool
		bad                                                             []int16
		lo, hi                                                          time.Time
	)
	for i := range late {
		c := &late[i]
		if last[c.EventID] != i {
			continue
		}
		ts := utcMicro(c.Time)
		if len(ids) == 0 {
			lo, hi = ts, ts
		}
		lo, hi = minTime(lo, ts), maxTime(hi, ts)
		ids, times, sess, params = append(ids, text(c.EventID)), append(times, ts), append(sess, text(c.SessionID)), append(params, text(c.RequestParams))
		status, emsg, state = append(status, int32(c.StatusCode)), append(emsg, text(c.ErrorMessage)), append(state, text(c.SQLState))
		dec, reason, latency = append(dec, text(c.Decision)), append(reason, text(c.Reason)), append(latency, c.LatencyMs)
		trace, span, guard = append(trace, text(c.TraceID)), append(span, text(c.SpanID)), append(guard, text(c.Guardrails))
		bad = append(bad, jsonInvalid(c))
		u := c.Usage
		if u == nil {
			u = &catalog.LLMUsage{}
		}
		provSvc, prov, model = append(provSvc, text(u.ProviderService)), append(prov, text(u.Provider)), append(model, text(u.Model))
		tags, routing = append(tags, text(u.RequestTags)), append(routing, text(u.Routing))
		if c.Usage == nil {
			in, out, cached, cw, reasoning, cost = append(in, nil), append(out, nil), append(cached, nil), append(cw, nil), append(reasoning, nil), append(cost, nil)
			ttft, streaming = append(ttft, nil), append(streaming, nil)
		} else {
			in, out, cached, cw = append(in, &u.InputTokens), append(out, &u.OutputTokens), append(cached, &u.CachedInputTokens), append(cw, &u.CacheWriteTokens)
			reasoning, cost = append(reasoning, &u.ReasoningTokens), append(cost, &u.CostNanos)
			ttft, streaming = append(ttft, &u.TTFTMs), append(streaming, &u.Streaming)
		}
	}
	args := []any{ids, times, sess, params, status, emsg, state, dec, reason, latency, trace, span, guard,
		provSvc, prov, model, in, out, cached, cw, reasoning, cost, ttft, streaming, tags, routing, lo, hi, bad}
	if _, err := tx.Exec(ctx, completeQuery, args...); err != nil {
		return translate(ctx, "complete audit events", err)
	}
	return nil
}

// listQuery reads events in time order; seq orders events of one time.
const listQuery = `SELECT event_id, event_time, service_name, action_name, user_identity, run_by, run_as,
	source_ip_address, user_agent, session_id, request_id, securable_type, securable_name, request_params,
	status_code, error_message, sql_state, decision, reason, latency_ms, revision, trace_id, span_id, guardrails,
	provider_service, provider, model, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
	reasoning_tokens, cost_nanos, ttft_ms, streaming, request_tags, routing, request_body, response_body
	FROM audit_events`

// ListAudit implements catalog.AuditReader.
func (e *Events) ListAudit(ctx context.Context, since time.Time, limit int) ([]catalog.AuditEvent, error) {
	if err := e.check(ctx); err != nil {
		return nil, err
	}
	query := listQuery
	var args []any
	if !since.IsZero() {
		query += ` WHERE event_time >= $1`
		args = append(args, utcMicro(since))
	}
	query += ` ORDER BY event_time, seq`
	if limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(limit)
	}
	rows, err := e.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, translate(ctx, "list audit events", err)
	}
	defer rows.Close()
	var out []catalog.AuditEvent
	for rows.Next() {
		var ev catalog.AuditEvent
		var status int32
		var rev int64
		var (
			in, out2, cached, cw, reasoning, cost *int64
			ttft                                  *float64
			streaming                             *bool
			reqBody, respBody                     *string
			provSvc, prov, model, tags, routing   string
		)
		if err := rows.Scan(&ev.EventID, &ev.Time, &ev.Service, &ev.Action, &ev.UserIdentity, &ev.RunBy, &ev.RunAs,
			&ev.SourceIP, &ev.UserAgent, &ev.SessionID, &ev.RequestID, &ev.SecurableType, &ev.SecurableName,
			&ev.RequestParams, &status, &ev.ErrorMessage, &ev.SQLState, &ev.Decision, &ev.Reason, &ev.LatencyMs,
			&rev, &ev.TraceID, &ev.SpanID, &ev.Guardrails, &provSvc, &prov, &model, &in, &out2, &cached, &cw, &reasoning,
			&cost, &ttft, &streaming, &tags, &routing, &reqBody, &respBody); err != nil {
			return nil, translate(ctx, "list audit events", err)
		}
		ev.Time, ev.StatusCode, ev.Revision = ev.Time.UTC(), int(status), catalog.Revision(rev)
		if in != nil {
			u := &catalog.LLMUsage{ProviderService: provSvc, Provider: prov, Model: model, InputTokens: *in,
				RequestTags: tags, Routing: routing}
			u.OutputTokens, u.CachedInputTokens, u.CacheWriteTokens = deref(out2), deref(cached), deref(cw)
			u.ReasoningTokens, u.CostNanos = deref(reasoning), deref(cost)
			if ttft != nil {
				u.TTFTMs = *ttft
			}
			if streaming != nil {
				u.Streaming = *streaming
			}
			ev.Usage = u
		}
		if reqBody != nil || respBody != nil {
			ev.Payload = &catalog.AuditPayload{}
			if reqBody != nil {
				ev.Payload.RequestBody = *reqBody
			}
			if respBody != nil {
				ev.Payload.ResponseBody = *respBody
			}
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, translate(ctx, "list audit events", err)
	}
	return out, nil
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// RetentionOptions configure RunRetention.
type RetentionOptions struct {
	// Keep is how long events are kept (catalog.DefaultAuditRetention when
	// 0; negative: forever).
	Keep time.Duration
	// Every is the pause between two passes (default one hour); each pass
	// also creates the partitions ahead.
	Every time.Duration
	// MaxBytes bounds the size of audit_events (0: no bound): checked
	// every SizeEvery (default 10 s) by EnforceMaxSize.
	MaxBytes  int64
	SizeEvery time.Duration
}

// RunRetention drops the day partitions whose whole day is older than
// o.Keep (and deletes such events from the default partition), and
// creates the partitions ahead, at once and then every o.Every until ctx
// is done. Failures are logged and retried at the next pass.
func (e *Events) RunRetention(ctx context.Context, o RetentionOptions) {
	if o.Keep == 0 {
		o.Keep = catalog.DefaultAuditRetention
	}
	if o.Every <= 0 {
		o.Every = time.Hour
	}
	if o.SizeEvery <= 0 {
		o.SizeEvery = 10 * time.Second
	}
	log := e.log.With().Str("component", "audit-retention").Logger()
	if o.MaxBytes > 0 {
		go func() {
			t := time.NewTicker(o.SizeEvery)
			defer t.Stop()
			for {
				dropped, err := e.EnforceMaxSize(ctx, o.MaxBytes)
				switch {
				case ctx.Err() != nil:
					return
				case err != nil:
					log.Error().Err(err).Msg("bounding the audit events' size failed; retrying at the next pass")
				case dropped > 0:
					log.Info().Int("partitions", dropped).Int64("max_bytes", o.MaxBytes).Msg("dropped the oldest audit partitions (size bound)")
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
	t := time.NewTicker(o.Every)
	defer t.Stop()
	for {
		if err := e.EnsurePartitions(ctx); err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("creating audit partitions failed; retrying at the next pass (events go to the default partition meanwhile)")
		}
		if o.Keep > 0 {
			dropped, err := e.DropExpired(ctx, e.opts.Now().Add(-o.Keep))
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				log.Error().Err(err).Msg("dropping expired audit partitions failed; retrying at the next pass")
			case dropped > 0:
				log.Info().Int("partitions", dropped).Msg("dropped expired audit partitions")
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DropExpired drops the day partitions that end at or before cutoff and
// deletes the default partition's events before it; it returns the number
// of partitions dropped. Each drop waits at most a second for its lock
// (a long query holds it), else it is left for the next pass.
func (e *Events) DropExpired(ctx context.Context, cutoff time.Time) (int, error) {
	if err := e.check(ctx); err != nil {
		return 0, err
	}
	rows, err := e.pool.Query(ctx, `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'audit_events'::regclass AND c.relname ~ '^audit_events_p[0-9]{8}$'`)
	if err != nil {
		return 0, translate(ctx, "list audit partitions", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, translate(ctx, "list audit partitions", err)
	}
	dropped := 0
	for _, name := range names {
		day, err := time.Parse("20060102", strings.TrimPrefix(name, "audit_events_p"))
		if err != nil || day.AddDate(0, 0, 1).After(cutoff) {
			continue
		}
		err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{name}.Sanitize())
			return err
		})
		if err != nil {
			return dropped, translate(ctx, fmt.Sprintf("drop audit partition %s", name), err)
		}
		dropped++
		e.daysMu.Lock()
		delete(e.days, unixDay(day))
		e.daysMu.Unlock()
	}
	if _, err := e.pool.Exec(ctx, `DELETE FROM audit_events_default WHERE event_time < $1`, cutoff); err != nil {
		return dropped, translate(ctx, "delete expired audit events", err)
	}
	// The days wholly before cutoff have no events left.
	if _, err := e.pool.Exec(ctx, `DELETE FROM audit_request_days WHERE day < $1::date`, cutoff.UTC().Format(time.DateOnly)); err != nil {
		return dropped, translate(ctx, "delete expired request days", err)
	}
	return dropped, nil
}

// sizeLock is the advisory lock of EnforceMaxSize: one replica at a time
// bounds the size; the others skip their pass.
const sizeLock = 0x6d616e64_73697a65 // "mandsize"

// EnforceMaxSize bounds audit_events (its partitions' pg_total_relation_size,
// indexes and TOAST included): past maxBytes, the oldest day partitions
// before today are dropped, with the default partition's events up to
// their end, until the size is at most 90% of maxBytes; it returns the
// number dropped. Dropping returns the space to the system at once, as
// DELETE does not. Today's and later partitions are never dropped: when
// they alone exceed the bound it is logged (once an hour). One replica at a time (an
// advisory lock tried, not awaited: the others skip their pass), in one
// transaction, each drop waiting at most a second for its lock.
func (e *Events) EnforceMaxSize(ctx context.Context, maxBytes int64) (int, error) {
	if err := e.check(ctx); err != nil {
		return 0, err
	}
	if maxBytes <= 0 {
		return 0, nil
	}
	type part struct {
		name string
		day  time.Time
		size int64
	}
	var dropped []part
	var total int64
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, int64(sizeLock)).Scan(&locked); err != nil || !locked {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_inherits i
			JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit_events'::regclass`)
		if err != nil {
			return err
		}
		var parts []part
		for rows.Next() {
			var p part
			if err := rows.Scan(&p.name, &p.size); err != nil {
				return err
			}
			total += p.size
			if d, err := time.Parse("20060102", strings.TrimPrefix(p.name, "audit_events_p")); err == nil && strings.HasPrefix(p.name, "audit_events_p") {
				p.day = d
				parts = append(parts, p)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if total <= maxBytes {
			return nil
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i].day.Before(parts[j].day) })
		today := e.opts.Now().UTC().Truncate(24 * time.Hour)
		if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '1s'`); err != nil {
			return err
		}
		target := maxBytes / 10 * 9
		for _, p := range parts {
			if total <= target || !p.day.Before(today) {
				break
			}
			if _, err := tx.Exec(ctx, `DROP TABLE IF EXISTS `+pgx.Identifier{p.name}.Sanitize()); err != nil {
				return err
			}
			total -= p.size
			dropped = append(dropped, p)
		}
		if len(dropped) == 0 {
			return nil
		}
		// The default partition's events up to the last day dropped go
		// too (the oldest first), and the days of request ids.
		end := dropped[len(dropped)-1].day.AddDate(0, 0, 1)
		if _, err := tx.Exec(ctx, `DELETE FROM audit_events_default WHERE event_time < $1`, end); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM audit_request_days WHERE day < $1::date`, end.Format(time.DateOnly))
		return err
	})
	if err != nil {
		return 0, translate(ctx, "bound the audit events' size", err)
	}
	e.daysMu.Lock()
	for _, p := range dropped {
		delete(e.days, unixDay(p.day))
	}
	e.daysMu.Unlock()
	if now, last := e.opts.Now(), e.sizeWarned.Load(); total > maxBytes && (last == 0 || now.Sub(time.Unix(0, last)) >= sizeWarnEvery) &&
		e.sizeWarned.CompareAndSwap(last, now.UnixNano()) {
		e.log.Warn().Int64("bytes", total).Int64("max_bytes", maxBytes).
			Msg("today's audit events alone exceed the size bound: they are kept (raise --audit-max-size; said once an hour)")
	}
	return len(dropped), nil
}
