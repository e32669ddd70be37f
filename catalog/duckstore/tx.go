package duckstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
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

// rwTx buffers grant changes and audit events. DuckDB spends from 0.3 to
// 2 ms on every statement whatever its size, and binding many parameters
// costs more still, so:
//
//   - AddGrant and RemoveGrant only record the net effect per grant key (the
//     last call wins: add with its grantor, or remove). The changes are
//     written when something depends on them: ListGrants, DeletePrincipal,
//     DeleteSecurable (whose cascades must see them) and the commit; at most
//     one DELETE and one MERGE, each fed by a DuckDB query appender.
//   - AppendAudit buffers the events; nothing in a transaction reads them, so
//     they are written at the commit, by one table appender.
//
// Past maxBuffered entries a buffer is written at once. A failed write,
// buffered or not, poisons the transaction: every later call fails, and so
// does the commit (DuckDB aborts a transaction in which a statement failed).
const maxBuffered = 10_000

// grantChange is the net effect of the grant calls on one key.
type grantChange struct {
	add     bool
	grantor catalog.ID
}

// rwTx is a catalog.RWTx over the transaction open on the write connection.
type rwTx struct {
	conn     *sql.Conn
	finished bool  // committed or rolled back
	err      error // the failed write that poisoned the transaction

	grants map[catalog.GrantKey]grantChange
	order  []catalog.GrantKey // the keys of grants, first change first
	// events are the buffered audit events, one slice per AppendAudit call
	// (copied once, never regrown), nevents their count.
	events  [][]catalog.AuditEvent
	nevents int
	// auditBytes is the size of the appended events (auditEventBytes).
	auditBytes int64
}

var _ catalog.RWTx = (*rwTx)(nil)

// check fails if the transaction is over or poisoned.
func (t *rwTx) check() error {
	if t.finished {
		return catalog.Errorf(catalog.CodeInternal, "catalog store: transaction used after it finished")
	}
	return t.err
}

// fail poisons the transaction with err, if not nil.
func (t *rwTx) fail(err error) error {
	if err != nil && t.err == nil {
		t.err = err
	}
	return err
}

// flush writes both buffers; ReadWriteTx calls it before COMMIT.
func (t *rwTx) flush(ctx context.Context) error {
	if err := t.check(); err != nil {
		return err
	}
	if err := t.flushGrants(ctx); err != nil {
		return err
	}
	return t.flushAudit(ctx)
}

// exec runs statements in order, stopping at the first error.
func (t *rwTx) exec(ctx context.Context, op string, stmts ...stmt) error {
	if err := t.check(); err != nil {
		return err
	}
	for _, st := range stmts {
		if _, err := t.conn.ExecContext(ctx, st.sql, st.args...); err != nil {
			return t.fail(translate(ctx, op, err))
		}
	}
	return nil
}

type stmt struct {
	sql  string
	args []any
}

// appendRows creates an appender on the write connection with newAppender,
// feeds it n rows from row and closes it, which appends the rows (or runs
// the appender's query over them) in the open transaction.
func (t *rwTx) appendRows(ctx context.Context, op string, n int, newAppender func(*duckdb.Conn) (*duckdb.Appender, error),
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

func (t *rwTx) Meta(ctx context.Context) (catalog.Meta, error) {
	if err := t.check(); err != nil {
		return catalog.Meta{}, err
	}
	m, err := readMeta(ctx, t.conn)
	return m, t.fail(err)
}

func (t *rwTx) ListPrincipals(ctx context.Context) ([]catalog.Principal, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	r, err := listPrincipals(ctx, t.conn)
	return r, t.fail(err)
}

func (t *rwTx) ListMemberships(ctx context.Context) ([]catalog.Membership, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	r, err := listMemberships(ctx, t.conn)
	return r, t.fail(err)
}

func (t *rwTx) ListSecurables(ctx context.Context) ([]catalog.Securable, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	r, err := listSecurables(ctx, t.conn)
	return r, t.fail(err)
}

func (t *rwTx) ListGrants(ctx context.Context) ([]catalog.Grant, error) {
	if err := t.check(); err != nil {
		return nil, err
	}
	if err := t.flushGrants(ctx); err != nil {
		return nil, err
	}
	r, err := listGrants(ctx, t.conn)
	return r, t.fail(err)
}

// SetMeta records the revision and the next free ID.
func (t *rwTx) SetMeta(ctx context.Context, m catalog.Meta) error {
	return t.exec(ctx, "set meta", stmt{
		`UPDATE mandate_meta SET value = CASE key WHEN 'revision' THEN $1 WHEN 'next_id' THEN $2 ELSE $3 END
		 WHERE key IN ('revision', 'next_id', 'log_seq')`,
		[]any{int64(m.Revision), int64(m.NextID), m.LogSeq},
	})
}

// PutPrincipal inserts or replaces the principal with p.ID.
func (t *rwTx) PutPrincipal(ctx context.Context, p catalog.Principal) error {
	return t.exec(ctx, "put principal", stmt{
		`INSERT INTO principals (id, name, kind, admin, builtin, password, comment, created)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		 ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, admin = excluded.admin,
		   builtin = excluded.builtin, password = excluded.password, comment = excluded.comment,
		   created = excluded.created`,
		[]any{int64(p.ID), p.Name, string(p.Kind), p.Admin, p.Builtin, p.Password, p.Comment, utc(p.Created)},
	})
}

// DeletePrincipal removes the principal, the grants to it and the
// memberships it is part of.
func (t *rwTx) DeletePrincipal(ctx context.Context, id catalog.ID) error {
	if err := t.flushGrants(ctx); err != nil {
		return err
	}
	return t.exec(ctx, "delete principal",
		stmt{`DELETE FROM grants WHERE principal_id = $1`, []any{int64(id)}},
		stmt{`DELETE FROM memberships WHERE group_id = $1 OR member_id = $1`, []any{int64(id)}},
		stmt{`DELETE FROM principals WHERE id = $1`, []any{int64(id)}},
	)
}

// AddMembership adds m unless it exists.
func (t *rwTx) AddMembership(ctx context.Context, m catalog.Membership) error {
	return t.exec(ctx, "add membership", stmt{
		`INSERT INTO memberships (group_id, member_id) SELECT $1, $2
		 WHERE NOT EXISTS (SELECT 1 FROM memberships WHERE group_id = $1 AND member_id = $2)`,
		[]any{int64(m.Group), int64(m.Member)},
	})
}

// RemoveMembership removes m if it exists.
func (t *rwTx) RemoveMembership(ctx context.Context, m catalog.Membership) error {
	return t.exec(ctx, "remove membership", stmt{
		`DELETE FROM memberships WHERE group_id = $1 AND member_id = $2`,
		[]any{int64(m.Group), int64(m.Member)},
	})
}

// PutSecurable inserts or replaces the securable with s.ID. Options are
// stored as a JSON object (NULL for a nil map), secrets as a BLOB (NULL for
// nil).
func (t *rwTx) PutSecurable(ctx context.Context, s catalog.Securable) error {
	var options, secrets any
	if s.Options != nil {
		b, err := json.Marshal(s.Options)
		if err != nil {
			return catalog.Internal(err, "catalog store: put securable: encode options")
		}
		options = string(b)
	}
	if s.Secrets != nil {
		secrets = s.Secrets
	}
	return t.exec(ctx, "put securable", stmt{
		`INSERT INTO securables (id, type, parent_id, name, owner_id, comment, options, secrets, builtin, created)
		 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		 ON CONFLICT (id) DO UPDATE SET type = excluded.type, parent_id = excluded.parent_id, name = excluded.name,
		   owner_id = excluded.owner_id, comment = excluded.comment, options = excluded.options,
		   secrets = excluded.secrets, builtin = excluded.builtin, created = excluded.created`,
		[]any{int64(s.ID), string(s.Type), int64(s.Parent), s.Name, int64(s.Owner), s.Comment, options, secrets,
			s.Builtin, utc(s.Created)},
	})
}

// DeleteSecurable removes the securable and the grants on it.
func (t *rwTx) DeleteSecurable(ctx context.Context, id catalog.ID) error {
	if err := t.flushGrants(ctx); err != nil {
		return err
	}
	return t.exec(ctx, "delete securable",
		stmt{`DELETE FROM grants WHERE securable_id = $1`, []any{int64(id)}},
		stmt{`DELETE FROM securables WHERE id = $1`, []any{int64(id)}},
	)
}

// AddGrant adds g; if a grant with its key exists, only its grantor is set
// to g's (as the catalog Model does). Buffered (see maxBuffered).
func (t *rwTx) AddGrant(ctx context.Context, g catalog.Grant) error {
	return t.noteGrant(ctx, g.Key(), grantChange{add: true, grantor: g.Grantor})
}

// RemoveGrant removes the grant with key k if it exists. Buffered (see
// maxBuffered).
func (t *rwTx) RemoveGrant(ctx context.Context, k catalog.GrantKey) error {
	return t.noteGrant(ctx, k, grantChange{})
}

func (t *rwTx) noteGrant(ctx context.Context, k catalog.GrantKey, c grantChange) error {
	if err := t.check(); err != nil {
		return err
	}
	if t.grants == nil {
		t.grants = make(map[catalog.GrantKey]grantChange)
	}
	if _, seen := t.grants[k]; !seen {
		t.order = append(t.order, k)
	}
	t.grants[k] = c
	if len(t.order) >= maxBuffered {
		return t.flushGrants(ctx)
	}
	return nil
}

// grantColumns are the columns of the rows a grant query appender feeds to
// its query as the table appended_data.
var grantColumns = []string{"s", "p", "pr", "g"}

func grantTypes() ([]duckdb.TypeInfo, error) {
	bigint, err := duckdb.NewTypeInfo(duckdb.TYPE_BIGINT)
	if err != nil {
		return nil, err
	}
	varchar, err := duckdb.NewTypeInfo(duckdb.TYPE_VARCHAR)
	if err != nil {
		return nil, err
	}
	return []duckdb.TypeInfo{bigint, bigint, varchar, bigint}, nil
}

const deleteGrants = `DELETE FROM grants USING appended_data AS v
	WHERE grants.securable_id = v.s AND grants.principal_id = v.p AND grants.privilege = v.pr`

const mergeGrants = `MERGE INTO grants USING appended_data AS v
	ON grants.securable_id = v.s AND grants.principal_id = v.p AND grants.privilege = v.pr
	WHEN MATCHED AND grants.grantor_id <> v.g THEN UPDATE SET grantor_id = v.g
	WHEN NOT MATCHED THEN INSERT (securable_id, principal_id, privilege, grantor_id) VALUES (v.s, v.p, v.pr, v.g)`

// flushGrants writes the buffered grant changes: the removals with one
// DELETE, the additions with one MERGE. Each key is in one of the two.
func (t *rwTx) flushGrants(ctx context.Context) error {
	if err := t.check(); err != nil || len(t.order) == 0 {
		return err
	}
	var removes, adds []catalog.GrantKey
	for _, k := range t.order {
		if t.grants[k].add {
			adds = append(adds, k)
		} else {
			removes = append(removes, k)
		}
	}
	grants := t.grants
	t.grants, t.order = nil, nil
	types, err := grantTypes()
	if err != nil {
		return t.fail(translate(ctx, "write grants", err))
	}
	if len(removes) > 0 {
		err := t.appendRows(ctx, "remove grants", len(removes), func(c *duckdb.Conn) (*duckdb.Appender, error) {
			return duckdb.NewQueryAppender(c, deleteGrants, "", types[:3], grantColumns[:3])
		}, func(i int) []driver.Value {
			k := removes[i]
			return []driver.Value{int64(k.Securable), int64(k.Principal), string(k.Privilege)}
		})
		if err != nil {
			return err
		}
	}
	if len(adds) > 0 {
		return t.appendRows(ctx, "add grants", len(adds), func(c *duckdb.Conn) (*duckdb.Appender, error) {
			return duckdb.NewQueryAppender(c, mergeGrants, "", types, grantColumns)
		}, func(i int) []driver.Value {
			k := adds[i]
			return []driver.Value{int64(k.Securable), int64(k.Principal), string(k.Privilege), int64(grants[k].grantor)}
		})
	}
	return nil
}

// AppendAudit appends events in this transaction. Buffered until the commit
// (see maxBuffered).
func (t *rwTx) AppendAudit(ctx context.Context, events ...catalog.AuditEvent) error {
	if err := t.check(); err != nil {
		return err
	}
	for _, e := range events {
		if e.StatusCode != int(int32(e.StatusCode)) {
			return catalog.Errorf(catalog.CodeInvalidArgument, "catalog store: audit event %s: status code %d out of range",
				e.EventID, e.StatusCode)
		}
	}
	if len(events) == 0 {
		return nil
	}
	t.events = append(t.events, append([]catalog.AuditEvent(nil), events...))
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
func (t *rwTx) flushAudit(ctx context.Context) error {
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
// complete in chunks and drops them; it returns the remaining rows (n of
// them) and the completions whose row is not among them, in order.
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
	rows := make(map[string][]*catalog.AuditEvent)
	var late []catalog.AuditEvent
	out := make([]catalog.AuditEvent, 0, n)
	for _, c := range chunks {
		for i := range c {
			e := &c[i]
			if !e.Completes {
				rows[e.EventID] = append(rows[e.EventID], e)
				continue
			}
			rs, ok := rows[e.EventID]
			if !ok {
				late = append(late, *e)
			}
			for _, r := range rs {
				r.CompleteWith(e)
			}
		}
	}
	for _, c := range chunks {
		for i := range c {
			if !c[i].Completes {
				out = append(out, c[i])
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
func (t *rwTx) completeAudit(ctx context.Context, late []catalog.AuditEvent) error {
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
func (t *rwTx) appendAudit(ctx context.Context, chunks [][]catalog.AuditEvent, n int) error {
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

func readMeta(ctx context.Context, q querier) (catalog.Meta, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, value FROM mandate_meta WHERE key IN ('revision', 'next_id', 'log_seq')`)
	if err != nil {
		return catalog.Meta{}, translate(ctx, "read meta", err)
	}
	defer rows.Close()
	var m catalog.Meta
	seen := 0
	for rows.Next() {
		var key string
		var v int64
		if err := rows.Scan(&key, &v); err != nil {
			return catalog.Meta{}, translate(ctx, "read meta", err)
		}
		switch key {
		case "revision":
			m.Revision = catalog.Revision(v)
		case "next_id":
			m.NextID = catalog.ID(v)
		case "log_seq":
			m.LogSeq = v
		}
		seen++
	}
	if err := rows.Err(); err != nil {
		return catalog.Meta{}, translate(ctx, "read meta", err)
	}
	if seen != 3 {
		return catalog.Meta{}, catalog.Errorf(catalog.CodeInternal, "catalog store: mandate_meta lacks revision, next_id or log_seq")
	}
	return m, nil
}

// list runs query and calls scan for each row.
func list(ctx context.Context, q querier, op, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return translate(ctx, op, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return translate(ctx, op, err)
		}
	}
	if err := rows.Err(); err != nil {
		return translate(ctx, op, err)
	}
	return nil
}

func listPrincipals(ctx context.Context, q querier) ([]catalog.Principal, error) {
	var ps []catalog.Principal
	err := list(ctx, q, "list principals",
		`SELECT id, name, kind, admin, builtin, password, comment, created FROM principals ORDER BY id`, nil,
		func(rows *sql.Rows) error {
			var p catalog.Principal
			var id int64
			var kind string
			if err := rows.Scan(&id, &p.Name, &kind, &p.Admin, &p.Builtin, &p.Password, &p.Comment, &p.Created); err != nil {
				return err
			}
			p.ID, p.Kind, p.Created = catalog.ID(id), catalog.PrincipalKind(kind), p.Created.UTC()
			ps = append(ps, p)
			return nil
		})
	return ps, err
}

func listMemberships(ctx context.Context, q querier) ([]catalog.Membership, error) {
	var ms []catalog.Membership
	err := list(ctx, q, "list memberships",
		`SELECT group_id, member_id FROM memberships ORDER BY group_id, member_id`, nil,
		func(rows *sql.Rows) error {
			var g, m int64
			if err := rows.Scan(&g, &m); err != nil {
				return err
			}
			ms = append(ms, catalog.Membership{Group: catalog.ID(g), Member: catalog.ID(m)})
			return nil
		})
	return ms, err
}

func listSecurables(ctx context.Context, q querier) ([]catalog.Securable, error) {
	var ss []catalog.Securable
	err := list(ctx, q, "list securables",
		`SELECT id, type, parent_id, name, owner_id, comment, options, secrets, builtin, created
		 FROM securables ORDER BY id`, nil,
		func(rows *sql.Rows) error {
			var s catalog.Securable
			var id, parent, owner int64
			var typ string
			var options sql.NullString
			if err := rows.Scan(&id, &typ, &parent, &s.Name, &owner, &s.Comment, &options, &s.Secrets,
				&s.Builtin, &s.Created); err != nil {
				return err
			}
			if options.Valid {
				if err := json.Unmarshal([]byte(options.String), &s.Options); err != nil {
					return catalog.Internal(err, "catalog store: securable "+strconv.FormatInt(id, 10)+": decode options")
				}
				if s.Options == nil { // "null"
					s.Options = map[string]string{}
				}
			}
			s.ID, s.Type, s.Parent, s.Owner = catalog.ID(id), catalog.SecurableType(typ), catalog.ID(parent), catalog.ID(owner)
			s.Created = s.Created.UTC()
			ss = append(ss, s)
			return nil
		})
	return ss, err
}

func listGrants(ctx context.Context, q querier) ([]catalog.Grant, error) {
	var gs []catalog.Grant
	err := list(ctx, q, "list grants",
		`SELECT securable_id, principal_id, privilege, grantor_id FROM grants
		 ORDER BY securable_id, principal_id, privilege`, nil,
		func(rows *sql.Rows) error {
			var sec, prin, grantor int64
			var priv string
			if err := rows.Scan(&sec, &prin, &priv, &grantor); err != nil {
				return err
			}
			gs = append(gs, catalog.Grant{Securable: catalog.ID(sec), Principal: catalog.ID(prin),
				Privilege: catalog.Privilege(priv), Grantor: catalog.ID(grantor)})
			return nil
		})
	return gs, err
}

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
