package duckstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"strconv"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/mandatehq/mandate/catalog"
)

// querier is what *sql.DB and *sql.Conn have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// writeTx buffers audit events. DuckDB spends from 0.3 to 2 ms on every
// statement whatever its size, and binding many parameters costs more
// still, so AppendAudit buffers the events; nothing in a transaction reads
// them, so they are written at the commit, by one table appender (past
// maxBuffered events at once). A failed write poisons the transaction:
// every later call fails, and so does the commit (DuckDB aborts a
// transaction in which a statement failed).
const maxBuffered = 10_000

// writeTx is a transaction open on the write connection.
type writeTx struct {
	conn     *sql.Conn
	finished bool  // committed or rolled back
	err      error // the failed write that poisoned the transaction

	// events are the buffered audit events, one slice per AppendAudit call
	// (copied once, never regrown), nevents their count.
	events  [][]catalog.AuditEvent
	nevents int
	// auditBytes is the size of the appended events (auditEventBytes).
	auditBytes int64
}

// check fails if the transaction is over or poisoned.
func (t *writeTx) check() error {
	if t.finished {
		return catalog.Errorf(catalog.CodeInternal, "audit store: transaction used after it finished")
	}
	return t.err
}

// fail poisons the transaction with err, if not nil.
func (t *writeTx) fail(err error) error {
	if err != nil && t.err == nil {
		t.err = err
	}
	return err
}

// flush writes the buffered events; write calls it before COMMIT.
func (t *writeTx) flush(ctx context.Context) error {
	if err := t.check(); err != nil {
		return err
	}
	return t.flushAudit(ctx)
}

// exec runs a statement.
func (t *writeTx) exec(ctx context.Context, op, query string, args ...any) error {
	if err := t.check(); err != nil {
		return err
	}
	if _, err := t.conn.ExecContext(ctx, query, args...); err != nil {
		return t.fail(translate(ctx, op, err))
	}
	return nil
}

// appendRows creates an appender on the write connection with newAppender,
// feeds it n rows from row and closes it, which appends the rows (or runs
// the appender's query over them) in the open transaction.
func (t *writeTx) appendRows(ctx context.Context, op string, n int, newAppender func(*duckdb.Conn) (*duckdb.Appender, error),
	row func(i int) []driver.Value) error {
	if err := ctx.Err(); err != nil {
		return t.fail(translate(ctx, op, err))
	}
	err := t.conn.Raw(func(dc any) error {
		c, ok := dc.(*duckdb.Conn)
		if !ok {
			return fmt.Errorf("driver connection is a %T, not a *duckdb.Conn", dc)
		}
		a, err := newAppender(c)
		if err != nil {
			return err
		}
		for i := range n {
			if err := a.AppendRow(row(i)...); err != nil {
				_ = a.CloseWithCancel(ctx)
				return err
			}
		}
		return a.CloseWithCancel(ctx)
	})
	return t.fail(translate(ctx, op, err))
}

// metaValue reads a key of mandate_meta in the transaction.
func (t *writeTx) metaValue(ctx context.Context, key string) (int64, error) {
	if err := t.check(); err != nil {
		return 0, err
	}
	v, err := metaValue(ctx, t.conn, key)
	return v, t.fail(err)
}

// setMeta sets keys of mandate_meta.
func (t *writeTx) setMeta(ctx context.Context, kv map[string]int64) error {
	for k, v := range kv {
		if err := t.exec(ctx, "set "+k, `UPDATE mandate_meta SET value = $1 WHERE key = $2`, v, k); err != nil {
			return err
		}
	}
	return nil
}

// metaValue reads a key of mandate_meta.
func metaValue(ctx context.Context, q querier, key string) (int64, error) {
	rows, err := q.QueryContext(ctx, `SELECT value FROM mandate_meta WHERE key = $1`, key)
	if err != nil {
		return 0, translate(ctx, "read "+key, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return 0, translate(ctx, "read "+key, err)
		}
		return 0, catalog.Errorf(catalog.CodeInternal, "audit store: mandate_meta lacks %s", key)
	}
	var v int64
	if err := rows.Scan(&v); err != nil {
		return 0, translate(ctx, "read "+key, err)
	}
	return v, nil
}

// AppendAudit appends events in this transaction. Buffered until the commit
// (see maxBuffered).
func (t *writeTx) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	if err := t.check(); err != nil {
		return err
	}
	for _, e := range events {
		if e.StatusCode != int(int32(e.StatusCode)) {
			return catalog.Errorf(catalog.CodeInvalidArgument, "audit store: audit event %s: status code %d out of range",
				e.EventID, e.StatusCode)
		}
	}
	if len(events) == 0 {
		return nil
	}
	// Not copied: the transaction writes them at its commit, before the
	// write that called this returns (and foldCompletions does not modify
	// them), so the caller's slice is read only while the caller waits.
	t.events = append(t.events, events)
	t.nevents += len(events)
	for i := range events {
		t.auditBytes += auditEventBytes(&events[i])
	}
	if t.nevents >= maxBuffered {
		return t.flushAudit(ctx)
	}
	return nil
}

// flushAudit writes the buffered events with a table appender, whose rows
// follow the columns of audit_events. Completions (AuditEvent.Completes)
// are folded into the buffered row they complete; the others update rows
// written earlier (completeAudit).
func (t *writeTx) flushAudit(ctx context.Context) error {
	if err := t.check(); err != nil || t.nevents == 0 {
		return err
	}
	chunks, n := t.events, t.nevents
	t.events, t.nevents = nil, 0
	chunks, n, late := foldCompletions(chunks, n)
	if n > 0 {
		if err := t.appendAudit(ctx, chunks, n); err != nil {
			return err
		}
	}
	return t.completeAudit(ctx, late)
}

// foldCompletions applies the completions among chunks to the rows they
// complete in chunks (rows that come before them) and drops them; it
// returns the remaining rows (n of them) and the completions whose row is
// not among them, in order. chunks is not modified: the rows are copied
// into one slice once, and completed there.
func foldCompletions(chunks [][]catalog.AuditEvent, n int) ([][]catalog.AuditEvent, int, []catalog.AuditEvent) {
	found := false
	for _, c := range chunks {
		for i := range c {
			found = found || c[i].Completes
		}
	}
	if !found {
		return chunks, n, nil
	}
	out := make([]catalog.AuditEvent, 0, n)
	// last: the latest row of each EventID in out; prev[j]: the row before
	// out[j] with the same EventID, or -1 (the same id twice is rare).
	last := make(map[string]int32, n)
	prev := make([]int32, 0, n)
	var late []catalog.AuditEvent
	for _, c := range chunks {
		for i := range c {
			e := &c[i]
			if !e.Completes {
				p, ok := last[e.EventID]
				if !ok {
					p = -1
				}
				last[e.EventID] = int32(len(out))
				prev = append(prev, p)
				out = append(out, *e)
				continue
			}
			j, ok := last[e.EventID]
			if !ok {
				late = append(late, *e)
			}
			for ; ok && j >= 0; j = prev[j] {
				out[j].CompleteWith(e)
			}
		}
	}
	return [][]catalog.AuditEvent{out}, len(out), late
}

// completionColumns are the columns of the rows the completion query
// appender feeds to completeQuery as appended_data.
var completionColumns = []string{"event_id", "event_time", "session_id", "request_params", "status_code",
	"error_message", "sql_state", "decision", "reason", "latency_ms", "trace_id", "span_id", "guardrails",
	"provider_service", "provider", "model", "input_tokens", "output_tokens", "cached_input_tokens",
	"cache_write_tokens", "reasoning_tokens", "cost_nanos", "ttft_ms", "streaming", "request_tags", "routing"}

// completeQuery updates the outcome columns of the rows completed. The
// time bounds let DuckDB skip every row group outside them (zone maps on
// event_time: events are appended in time order), so no index on
// event_id is needed.
const completeQuery = `UPDATE audit_events SET session_id = v.session_id, request_params = v.request_params,
	status_code = v.status_code, error_message = v.error_message, sql_state = v.sql_state, decision = v.decision,
	reason = v.reason, latency_ms = v.latency_ms,
	trace_id = CASE WHEN v.trace_id = '' THEN audit_events.trace_id ELSE v.trace_id END,
	span_id = CASE WHEN v.trace_id = '' THEN audit_events.span_id ELSE v.span_id END,
	guardrails = v.guardrails, provider_service = v.provider_service, provider = v.provider, model = v.model,
	input_tokens = v.input_tokens, output_tokens = v.output_tokens, cached_input_tokens = v.cached_input_tokens,
	cache_write_tokens = v.cache_write_tokens, reasoning_tokens = v.reasoning_tokens, cost_nanos = v.cost_nanos,
	ttft_ms = v.ttft_ms, streaming = v.streaming, request_tags = v.request_tags, routing = v.routing
	FROM appended_data AS v
	WHERE audit_events.event_time BETWEEN '%s' AND '%s'
	  AND audit_events.event_id = v.event_id AND audit_events.event_time = v.event_time`

// completeAudit applies completions to rows written by earlier
// transactions, with one UPDATE fed by a query appender.
func (t *writeTx) completeAudit(ctx context.Context, late []catalog.AuditEvent) error {
	if len(late) == 0 {
		return nil
	}
	lo, hi := utc(late[0].Time), utc(late[0].Time)
	for i := range late {
		ts := utc(late[i].Time)
		if ts.Before(lo) {
			lo = ts
		}
		if ts.After(hi) {
			hi = ts
		}
	}
	const layout = "2006-01-02 15:04:05.999999+00"
	query := fmt.Sprintf(completeQuery, lo.Format(layout), hi.Format(layout))
	types, err := completionTypes()
	if err != nil {
		return t.fail(translate(ctx, "complete audit events", err))
	}
	return t.appendRows(ctx, "complete audit events", len(late), func(c *duckdb.Conn) (*duckdb.Appender, error) {
		return duckdb.NewQueryAppender(c, query, "", types, completionColumns)
	}, func(i int) []driver.Value {
		e := &late[i]
		row := []driver.Value{e.EventID, utc(e.Time), e.SessionID, e.RequestParams, int32(e.StatusCode),
			e.ErrorMessage, e.SQLState, e.Decision, e.Reason, e.LatencyMs, e.TraceID, e.SpanID, e.Guardrails,
			"", "", "", nil, nil, nil, nil, nil, nil, nil, nil, "", ""}
		if u := e.Usage; u != nil {
			copy(row[13:], []driver.Value{u.ProviderService, u.Provider, u.Model, u.InputTokens, u.OutputTokens,
				u.CachedInputTokens, u.CacheWriteTokens, u.ReasoningTokens, u.CostNanos, u.TTFTMs, u.Streaming,
				u.RequestTags, u.Routing})
		}
		return row
	})
}

func completionTypes() ([]duckdb.TypeInfo, error) {
	var out []duckdb.TypeInfo
	for _, ty := range []duckdb.Type{duckdb.TYPE_VARCHAR, duckdb.TYPE_TIMESTAMP_TZ, duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR,
		duckdb.TYPE_INTEGER, duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR,
		duckdb.TYPE_DOUBLE, duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR,
		duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR, duckdb.TYPE_BIGINT, duckdb.TYPE_BIGINT,
		duckdb.TYPE_BIGINT, duckdb.TYPE_BIGINT, duckdb.TYPE_BIGINT, duckdb.TYPE_BIGINT, duckdb.TYPE_DOUBLE,
		duckdb.TYPE_BOOLEAN, duckdb.TYPE_VARCHAR, duckdb.TYPE_VARCHAR} {
		ti, err := duckdb.NewTypeInfo(ty)
		if err != nil {
			return nil, err
		}
		out = append(out, ti)
	}
	return out, nil
}

// appendAudit appends n events of chunks with a table appender.
func (t *writeTx) appendAudit(ctx context.Context, chunks [][]catalog.AuditEvent, n int) error {
	var ar auditRow
	chunk, next := 0, 0
	return t.appendRows(ctx, "append audit events", n, func(c *duckdb.Conn) (*duckdb.Appender, error) {
		return duckdb.NewAppenderFromConn(c, "", "audit_events")
	}, func(int) []driver.Value {
		for next == len(chunks[chunk]) {
			chunk, next = chunk+1, 0
		}
		next++
		return ar.set(&chunks[chunk][next-1])
	})
}

// auditRow is the row an audit event is appended as. AppendRow copies the
// values, so one row serves all events; a text column keeps its value
// (already boxed as a driver.Value) while consecutive events repeat it,
// which most columns do (service, action, identities, connection,
// decision), saving an allocation per column and row.
type auditRow struct {
	row  [auditColumns]driver.Value
	text [auditColumns]string
	set0 bool
}

// auditColumns is the number of columns of audit_events.
const auditColumns = 40

func (r *auditRow) str(i int, s string) {
	if !r.set0 || r.text[i] != s {
		r.row[i], r.text[i] = s, s
	}
}

func (r *auditRow) set(e *catalog.AuditEvent) []driver.Value {
	ts := utc(e.Time)
	r.str(0, e.EventID)
	r.row[1], r.row[2] = ts, time.Date(ts.Year(), ts.Month(), ts.Day(), 0, 0, 0, 0, time.UTC)
	for i, s := range [...]string{e.Service, e.Action, e.UserIdentity, e.RunBy, e.RunAs, e.SourceIP, e.UserAgent,
		e.SessionID, e.RequestID, e.SecurableType, e.SecurableName, e.RequestParams} {
		r.str(3+i, s)
	}
	r.row[15] = int32(e.StatusCode)
	for i, s := range [...]string{e.ErrorMessage, e.SQLState, e.Decision, e.Reason} {
		r.str(16+i, s)
	}
	r.row[20], r.row[21] = e.LatencyMs, int64(e.Revision)
	r.str(22, e.TraceID)
	r.str(23, e.SpanID)
	r.str(24, e.Guardrails)
	if u := e.Usage; u != nil {
		r.str(25, u.ProviderService)
		r.str(26, u.Provider)
		r.str(27, u.Model)
		r.row[28], r.row[29], r.row[30], r.row[31], r.row[32], r.row[33] = u.InputTokens, u.OutputTokens,
			u.CachedInputTokens, u.CacheWriteTokens, u.ReasoningTokens, u.CostNanos
		r.row[34], r.row[35] = u.TTFTMs, u.Streaming
		r.str(36, u.RequestTags)
		r.str(37, u.Routing)
	} else {
		r.str(25, "")
		r.str(26, "")
		r.str(27, "")
		for i := 28; i <= 35; i++ {
			r.row[i] = nil
		}
		r.str(36, "")
		r.str(37, "")
	}
	if p := e.Payload; p != nil {
		r.row[38], r.row[39] = p.RequestBody, p.ResponseBody
	} else {
		r.row[38], r.row[39] = nil, nil
	}
	r.set0 = true
	return r.row[:]
}

// utc returns t in UTC truncated to microseconds, the precision of
// TIMESTAMPTZ.
func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func listAudit(ctx context.Context, q querier, since time.Time, limit int) ([]catalog.AuditEvent, error) {
	query := `SELECT event_id, event_time, service_name, action_name, user_identity, run_by, run_as,
		source_ip_address, user_agent, session_id, request_id, securable_type, securable_name, request_params,
		status_code, error_message, sql_state, decision, reason, latency_ms, revision, trace_id, span_id, guardrails,
		provider_service, provider, model, input_tokens, output_tokens, cached_input_tokens, cache_write_tokens,
		reasoning_tokens, cost_nanos, ttft_ms, streaming, request_tags, routing, request_body, response_body
		FROM audit_events`
	var args []any
	if !since.IsZero() {
		query += ` WHERE event_time >= $1`
		args = append(args, utc(since))
	}
	// rowid orders events with the same time by insertion: the table is
	// append-only, so DuckDB's row ids only grow.
	query += ` ORDER BY event_time, rowid`
	if limit > 0 {
		query += ` LIMIT ` + strconv.Itoa(limit)
	}
	var es []catalog.AuditEvent
	err := list(ctx, q, "list audit events", query, args, func(rows *sql.Rows) error {
		var e catalog.AuditEvent
		var status int64
		var rev int64
		var (
			trace, span, guard, provSvc, prov, model, tags, routing sql.NullString
			in, out, cached, cw, reasoning, cost                    sql.NullInt64
			ttft                                                    sql.NullFloat64
			streaming                                               sql.NullBool
			reqBody, respBody                                       sql.NullString
		)
		if err := rows.Scan(&e.EventID, &e.Time, &e.Service, &e.Action, &e.UserIdentity, &e.RunBy, &e.RunAs,
			&e.SourceIP, &e.UserAgent, &e.SessionID, &e.RequestID, &e.SecurableType, &e.SecurableName,
			&e.RequestParams, &status, &e.ErrorMessage, &e.SQLState, &e.Decision, &e.Reason, &e.LatencyMs,
			&rev, &trace, &span, &guard, &provSvc, &prov, &model, &in, &out, &cached, &cw, &reasoning, &cost,
			&ttft, &streaming, &tags, &routing, &reqBody, &respBody); err != nil {
			return err
		}
		e.Time, e.StatusCode, e.Revision = e.Time.UTC(), int(status), catalog.Revision(rev)
		e.TraceID, e.SpanID, e.Guardrails = trace.String, span.String, guard.String
		if in.Valid {
			e.Usage = &catalog.LLMUsage{ProviderService: provSvc.String, Provider: prov.String, Model: model.String,
				InputTokens: in.Int64, OutputTokens: out.Int64, CachedInputTokens: cached.Int64, CacheWriteTokens: cw.Int64,
				ReasoningTokens: reasoning.Int64, CostNanos: cost.Int64, TTFTMs: ttft.Float64, Streaming: streaming.Bool,
				RequestTags: tags.String, Routing: routing.String}
		}
		if reqBody.Valid || respBody.Valid {
			e.Payload = &catalog.AuditPayload{RequestBody: reqBody.String, ResponseBody: respBody.String}
		}
		es = append(es, e)
		return nil
	})
	return es, err
}
