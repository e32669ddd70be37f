package pgwire

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// prepared is a prepared statement created by Parse.
type prepared struct {
	stmt     Statement // nil for an empty query
	declared []uint32  // parameter types declared in Parse
}

func (p *prepared) paramOIDs() []uint32 {
	if p.stmt == nil {
		return p.declared
	}
	return p.stmt.ParamOIDs()
}

// portal is a bound statement created by Bind. A portal executed with a
// row limit runs to completion at its first Execute; its rows are kept
// (encoded) and handed out by successive Executes.
type portal struct {
	stmt    *prepared
	params  []Param
	cols    []Column
	formats []int16 // result format per column

	started bool
	done    bool
	failed  bool
	rows    [][][]byte
	pos     int
	tag     string
}

// handle processes one message on the executor goroutine.
func (c *conn) handle(msg pgproto3.FrontendMessage) {
	if c.ignoreTillSync {
		switch msg.(type) {
		case *pgproto3.Sync, *pgproto3.Terminate:
		default:
			return // discard until Sync after an error
		}
	}
	switch m := msg.(type) {
	case *pgproto3.Query:
		c.simpleQuery(m.String)
	case *pgproto3.Parse:
		c.extended(c.parse(m))
	case *pgproto3.Bind:
		c.extended(c.bind(m))
	case *pgproto3.Describe:
		c.extended(c.describe(m))
	case *pgproto3.Execute:
		c.extended(c.execute(m))
	case *pgproto3.Close:
		c.extended(c.closeObject(m))
	case *pgproto3.Flush:
		c.flush()
	case *pgproto3.Sync:
		c.ignoreTillSync = false
		if c.txStatus() == 'I' {
			clear(c.portals) // portals do not outlive their transaction
		}
		c.readyForQuery()
	case *pgproto3.Terminate:
		c.closing = true
	case *pgproto3.FunctionCall:
		c.sendError(Errorf(codeFeatureNotSupported, "fastpath function calls are not supported"))
		c.sess.Fail()
		c.readyForQuery()
	case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		// Outside COPY these are ignored, as PostgreSQL does.
	default:
		c.sendFatal(fatalf(codeProtocolViolation, "invalid frontend message type %s", quoteType(messageType(msg))))
	}
}

// extended finishes an extended-protocol message: after an error the
// session fails and messages are discarded until Sync.
func (c *conn) extended(err error) {
	if err == nil {
		return
	}
	c.sendError(err)
	c.sess.Fail()
	c.ignoreTillSync = true
}

func (c *conn) txStatus() byte {
	switch s := c.sess.TxStatus(); s {
	case 'I', 'T', 'E':
		return s
	default:
		return 'I'
	}
}

func (c *conn) readyForQuery() {
	if c.closing {
		return
	}
	if tx, ok := c.sess.(ImplicitTx); ok {
		ctx, done := c.beginCommand(0)
		if err := c.commandError(ctx, tx.EndImplicit(ctx)); err != nil {
			c.sendError(err)
		}
		done()
	}
	c.sendChangedParameters()
	c.send(&pgproto3.ReadyForQuery{TxStatus: c.txStatus()})
	c.flush()
	c.atReady = true
}

func (c *conn) sendChangedParameters() {
	changed := c.sess.ChangedParameters()
	if len(changed) == 0 {
		return
	}
	keys := make([]string, 0, len(changed))
	for k := range changed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c.send(&pgproto3.ParameterStatus{Name: k, Value: changed[k]})
	}
}

// beginCommand starts the cancellation scope of one call into the
// session: CancelRequest cancels it (57014), and so does timeout when
// positive (57014 statement timeout). The returned function ends the scope.
func (c *conn) beginCommand(timeout time.Duration) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(c.ctx)
	stop := context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, stop = context.WithTimeoutCause(ctx, timeout, statementTimeoutError())
	}
	c.mu.Lock()
	c.cancelCmd = cancel
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		c.cancelCmd = nil
		c.mu.Unlock()
		stop()
		cancel(nil)
	}
}

// cancelRunning cancels the running command, if any (CancelRequest).
func (c *conn) cancelRunning() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancelCmd != nil {
		c.cancelCmd(queryCanceledError())
	}
}

// commandError replaces a context error returned by the session with the
// reason ctx was cancelled: user request, statement timeout, shutdown or
// client gone.
func (c *conn) commandError(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil ||
		!(errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return err
	}
	if c.ctx.Err() != nil {
		return c.closeCause()
	}
	if cause := context.Cause(ctx); cause != nil {
		return cause
	}
	return err
}

// statementTimeout is the session's statement timeout (SET
// statement_timeout), or Config.StatementTimeout.
func (c *conn) statementTimeout() time.Duration {
	if st, ok := c.sess.(StatementTimeouter); ok {
		return max(st.StatementTimeout(), 0)
	}
	return c.srv.cfg.StatementTimeout
}

// statementContext bounds one statement within the command scope cmd by
// the statement timeout; endStatement(cancel) ends the bound.
//
// The bound is a cancel scope armed on the connection's one reused timer
// rather than a context.WithTimeout per statement (a timer and its context
// for the prepare and again for the execution of every statement). The
// returned context reports the deadline, as WithTimeout's did: the query
// engine passes it on to PostgreSQL.
func (c *conn) statementContext(cmd context.Context) (context.Context, context.CancelCauseFunc) {
	timeout := c.statementTimeout()
	if timeout <= 0 {
		return cmd, nil
	}
	deadline := time.Now().Add(timeout)
	if d, ok := cmd.Deadline(); ok && d.Before(deadline) {
		deadline = d // reported as WithTimeout would: the earlier one
	}
	ctx, cancel := context.WithCancelCause(cmd)
	c.mu.Lock()
	c.stmtCancel, c.stmtDeadline = cancel, deadline
	c.mu.Unlock()
	if c.stmtTimer == nil {
		c.stmtTimer = time.AfterFunc(timeout, c.statementTimedOut)
	} else {
		c.stmtTimer.Reset(timeout)
	}
	return &deadlineContext{ctx, deadline}, cancel
}

// endStatement ends the bound statementContext set (cancel, nil when it
// set none).
func (c *conn) endStatement(cancel context.CancelCauseFunc) {
	if cancel == nil {
		return
	}
	c.mu.Lock()
	c.stmtCancel = nil
	c.mu.Unlock()
	c.stmtTimer.Stop()
	cancel(nil)
}

// statementTimedOut runs on the timer: it cancels the running statement
// with 57014 once its deadline has passed. A run armed for an earlier
// statement finds none running, or one whose deadline is still ahead.
func (c *conn) statementTimedOut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stmtCancel != nil && !time.Now().Before(c.stmtDeadline) {
		c.stmtCancel(statementTimeoutError())
		c.stmtCancel = nil
	}
}

// deadlineContext is a statement's cancel scope with its deadline.
type deadlineContext struct {
	context.Context
	deadline time.Time
}

func (d *deadlineContext) Deadline() (time.Time, bool) { return d.deadline, true }

// prepare prepares sql within the command scope cmd, bounded by the
// statement timeout.
func (c *conn) prepare(cmd context.Context, sql string, paramOIDs []uint32, multi bool) ([]Statement, error) {
	ctx, cancel := c.statementContext(cmd)
	defer c.endStatement(cancel)
	stmts, err := c.sess.Prepare(ctx, sql, paramOIDs, multi)
	return stmts, c.commandError(ctx, err)
}

// execStatement executes st within the command scope cmd, bounded by the
// statement timeout. A scope cancelled before st starts (a CancelRequest
// that came while an earlier step of the same command ran) fails it.
func (c *conn) execStatement(cmd context.Context, st Statement, params []Param, w RowWriter) (string, error) {
	if err := cmd.Err(); err != nil {
		return "", c.commandError(cmd, err)
	}
	ctx, cancel := c.statementContext(cmd)
	defer c.endStatement(cancel)
	tag, err := st.Execute(ctx, params, w)
	if d, ok := st.(Deallocator); ok && err == nil {
		if name, all := d.Deallocates(); all {
			clear(c.stmts)
			clear(c.portals)
		} else if name != "" {
			delete(c.stmts, name)
		}
	}
	return tag, c.commandError(ctx, err)
}

// simpleQuery runs a Query message: every statement in order until the
// first error, results in text format.
//
// The whole message is one command scope: a CancelRequest that arrives
// while the statements are prepared, between two of them or while one
// runs ends the query with 57014, as in PostgreSQL (a scope per step lost
// a cancel that came during a step that finished anyway, and the next
// step then ran to its end). The statement timeout applies to each
// statement on its own, as in PostgreSQL 13 and later.
func (c *conn) simpleQuery(sql string) {
	delete(c.stmts, "")
	delete(c.portals, "")
	cmd, done := c.beginCommand(0)
	ready := c.runSimple(cmd, sql)
	done()
	if ready {
		c.readyForQuery()
	}
}

// runSimple runs the statements of a Query message; false means the
// connection is closing and gets no ReadyForQuery.
func (c *conn) runSimple(cmd context.Context, sql string) (ready bool) {
	stmts, err := c.prepare(cmd, sql, nil, true)
	switch {
	case err != nil:
		c.sendError(err)
		c.sess.Fail()
	case len(stmts) == 0:
		c.send(&pgproto3.EmptyQueryResponse{})
	}
	for _, st := range stmts {
		cols := st.Columns()
		if cols != nil {
			c.send(rowDescription(cols, nil))
		}
		sink := &rowSink{c: c, cols: cols}
		tag, err := c.execStatement(cmd, st, nil, sink)
		c.sendChangedParameters()
		if err != nil {
			c.sendError(err)
			c.sess.Fail()
			return true
		}
		c.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
		if c.closing || c.writeErr != nil {
			return false
		}
	}
	return true
}

func (c *conn) parse(m *pgproto3.Parse) error {
	if m.Name != "" {
		if _, exists := c.stmts[m.Name]; exists {
			return Errorf(codeDuplicatePreparedStmt, "prepared statement %q already exists", m.Name)
		}
	} else {
		delete(c.stmts, "")
	}
	cmd, done := c.beginCommand(0)
	stmts, err := c.prepare(cmd, m.Query, m.ParameterOIDs, false)
	done()
	if err != nil {
		return err
	}
	if len(stmts) > 1 {
		return Errorf(codeSyntaxError, "cannot insert multiple commands into a prepared statement")
	}
	ps := &prepared{declared: m.ParameterOIDs}
	if len(stmts) == 1 {
		ps.stmt = stmts[0]
	}
	c.stmts[m.Name] = ps
	c.send(&pgproto3.ParseComplete{})
	return nil
}

func statementNotFound(name string) *Error {
	if name == "" {
		return Errorf(codeInvalidSQLStatementName, "unnamed prepared statement does not exist")
	}
	return Errorf(codeInvalidSQLStatementName, "prepared statement %q does not exist", name)
}

func portalNotFound(name string) *Error {
	if name == "" {
		return Errorf(codeInvalidCursorName, "unnamed portal does not exist")
	}
	return Errorf(codeInvalidCursorName, "portal %q does not exist", name)
}

// expandFormats applies the Bind format-code rules: no code means all
// text, one code applies to all n values, otherwise one code per value.
func expandFormats(codes []int16, n int, what string) ([]int16, error) {
	out := make([]int16, n)
	switch len(codes) {
	case 0:
	case 1:
		for i := range out {
			out[i] = codes[0]
		}
	case n:
		copy(out, codes)
	default:
		return nil, Errorf(codeProtocolViolation, "bind message has %d %s formats but %s", len(codes), what, countNoun(n, what))
	}
	for _, f := range out {
		if f != pgtype.TextFormatCode && f != pgtype.BinaryFormatCode {
			return nil, Errorf(codeInvalidParameterValue, "unsupported format code: %d", f)
		}
	}
	return out, nil
}

func countNoun(n int, what string) string {
	if what == "result" {
		return fmt.Sprintf("query has %d columns", n)
	}
	return fmt.Sprintf("%d parameters", n)
}

func (c *conn) bind(m *pgproto3.Bind) error {
	ps := c.stmts[m.PreparedStatement]
	if ps == nil {
		return statementNotFound(m.PreparedStatement)
	}
	if m.DestinationPortal != "" {
		if _, exists := c.portals[m.DestinationPortal]; exists {
			return Errorf(codeDuplicateCursor, "portal %q already exists", m.DestinationPortal)
		}
	} else {
		delete(c.portals, "")
	}
	pformats, err := expandFormats(m.ParameterFormatCodes, len(m.Parameters), "parameter")
	if err != nil {
		return err
	}
	oids := ps.paramOIDs()
	if len(m.Parameters) != len(oids) {
		return Errorf(codeProtocolViolation, "bind message supplies %d parameters, but prepared statement %q requires %d",
			len(m.Parameters), m.PreparedStatement, len(oids))
	}
	var cols []Column
	if ps.stmt != nil {
		cols = ps.stmt.Columns()
	}
	rformats, err := expandFormats(m.ResultFormatCodes, len(cols), "result")
	if err != nil {
		return err
	}
	params := make([]Param, len(m.Parameters))
	for i, v := range m.Parameters {
		params[i] = Param{Value: v, Format: pformats[i], OID: oids[i]}
	}
	c.portals[m.DestinationPortal] = &portal{stmt: ps, params: params, cols: cols, formats: rformats}
	c.send(&pgproto3.BindComplete{})
	return nil
}

func (c *conn) describe(m *pgproto3.Describe) error {
	switch m.ObjectType {
	case 'S':
		ps := c.stmts[m.Name]
		if ps == nil {
			return statementNotFound(m.Name)
		}
		c.send(&pgproto3.ParameterDescription{ParameterOIDs: ps.paramOIDs()})
		var cols []Column
		if ps.stmt != nil {
			cols = ps.stmt.Columns()
		}
		c.sendRowDescription(cols, nil)
	case 'P':
		p := c.portals[m.Name]
		if p == nil {
			return portalNotFound(m.Name)
		}
		c.sendRowDescription(p.cols, p.formats)
	default:
		return Errorf(codeProtocolViolation, "invalid DESCRIBE message subtype %d", m.ObjectType)
	}
	return nil
}

func (c *conn) sendRowDescription(cols []Column, formats []int16) {
	if cols == nil {
		c.send(&pgproto3.NoData{})
		return
	}
	c.send(rowDescription(cols, formats))
}

func (c *conn) closeObject(m *pgproto3.Close) error {
	switch m.ObjectType {
	case 'S':
		delete(c.stmts, m.Name)
	case 'P':
		delete(c.portals, m.Name)
	default:
		return Errorf(codeProtocolViolation, "invalid CLOSE message subtype %d", m.ObjectType)
	}
	c.send(&pgproto3.CloseComplete{})
	return nil
}

func (c *conn) execute(m *pgproto3.Execute) error {
	p := c.portals[m.Portal]
	if p == nil {
		return portalNotFound(m.Portal)
	}
	if p.stmt.stmt == nil {
		c.send(&pgproto3.EmptyQueryResponse{})
		return nil
	}
	if p.failed || (p.done && p.cols == nil) {
		return Errorf(codeObjectNotInState, "portal %q cannot be run", m.Portal)
	}
	if p.done {
		c.send(&pgproto3.CommandComplete{CommandTag: []byte(rowCountTag(p.tag, 0))})
		return nil
	}
	limit := int(m.MaxRows)
	if !p.started {
		p.started = true
		// Without a row limit rows stream to the client as they come;
		// with one they are collected first.
		sink := &rowSink{c: c, cols: p.cols, formats: p.formats, collect: limit > 0}
		cmd, done := c.beginCommand(0)
		tag, err := c.execStatement(cmd, p.stmt.stmt, p.params, sink)
		done()
		c.sendChangedParameters()
		if err != nil {
			p.failed = true
			return err
		}
		if limit == 0 {
			p.done = true
			c.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
			return nil
		}
		p.rows, p.tag = sink.rows, tag
	}
	n := len(p.rows) - p.pos
	if limit > 0 && limit < n {
		n = limit
	}
	for _, row := range p.rows[p.pos : p.pos+n] {
		c.send(&pgproto3.DataRow{Values: row})
	}
	p.pos += n
	if p.pos < len(p.rows) {
		c.send(&pgproto3.PortalSuspended{})
		return nil
	}
	p.done, p.rows = true, nil
	c.send(&pgproto3.CommandComplete{CommandTag: []byte(rowCountTag(p.tag, n))})
	return nil
}

// rowCountTag rewrites "SELECT n" for the rows returned by the last
// Execute of a portal run in chunks, as PostgreSQL reports them.
func rowCountTag(tag string, n int) string {
	if strings.HasPrefix(tag, "SELECT ") {
		return "SELECT " + strconv.Itoa(n)
	}
	return tag
}

// ---------------------------------------------------------------------------
// Rows

// rowSink is the RowWriter given to Statement.Execute. It encodes each row
// in the requested formats and either sends it or collects it.
type rowSink struct {
	c       *conn
	cols    []Column
	formats []int16 // nil: all text
	collect bool
	rows    [][][]byte
}

var _ RowWriter = (*rowSink)(nil)

func (w *rowSink) WriteRow(values []any) error {
	c := w.c
	if c.writeErr != nil {
		return c.writeErr
	}
	if len(values) != len(w.cols) {
		return fmt.Errorf("pgwire: row has %d values but the statement has %d columns", len(values), len(w.cols))
	}
	if w.collect {
		vals, _, _, err := encodeRow(c.types, w.cols, w.formats, values, nil, nil, nil)
		if err != nil {
			return err
		}
		w.rows = append(w.rows, vals)
		return nil
	}
	vals, buf, bounds, err := encodeRow(c.types, w.cols, w.formats, values, c.rowVals, c.rowBuf, c.rowBounds)
	c.rowVals, c.rowBuf, c.rowBounds = vals, buf, bounds
	if err != nil {
		return err
	}
	c.send(&pgproto3.DataRow{Values: vals})
	return c.writeErr
}

// encodeRow encodes values for cols (formats nil = all text) with m. The
// returned values point into buf; vals, buf and bounds may be reused.
func encodeRow(m *pgtype.Map, cols []Column, formats []int16, values []any, vals [][]byte, buf []byte, bounds []int) ([][]byte, []byte, []int, error) {
	if buf == nil {
		buf = make([]byte, 0, 256) // a nil buffer would make "" look like NULL
	}
	buf, bounds = buf[:0], bounds[:0]
	for i, v := range values {
		var format int16
		if formats != nil {
			format = formats[i]
		}
		start := len(buf)
		nb, isNull, err := encodeValue(m, cols[i].TypeOID, format, v, buf)
		if err != nil {
			return vals, buf, bounds, fmt.Errorf("pgwire: encoding column %q: %w", cols[i].Name, err)
		}
		buf = nb
		if isNull {
			bounds = append(bounds, -1, -1)
		} else {
			bounds = append(bounds, start, len(buf))
		}
	}
	vals = vals[:0]
	for i := 0; i < len(bounds); i += 2 {
		if bounds[i] < 0 {
			vals = append(vals, nil)
		} else {
			vals = append(vals, buf[bounds[i]:bounds[i+1]:bounds[i+1]])
		}
	}
	return vals, buf, bounds, nil
}

// encodeValue appends v encoded for oid in format to buf. nil (and values
// pgtype encodes as NULL) report isNull. A string that pgtype cannot encode
// in binary is taken as the type's text form, decoded and re-encoded.
func encodeValue(m *pgtype.Map, oid uint32, format int16, v any, buf []byte) (_ []byte, isNull bool, _ error) {
	if v == nil {
		return buf, true, nil
	}
	nb, err := m.Encode(oid, format, v, buf)
	if err == nil {
		if nb == nil {
			return buf, true, nil
		}
		return nb, false, nil
	}
	if s, ok := v.(string); ok && format == pgtype.BinaryFormatCode {
		if t, ok := m.TypeForOID(oid); ok {
			if nv, derr := t.Codec.DecodeValue(m, oid, pgtype.TextFormatCode, []byte(s)); derr == nil && nv != nil {
				if nb, err2 := m.Encode(oid, format, nv, buf); err2 == nil && nb != nil {
					return nb, false, nil
				}
			}
		}
	}
	return buf, false, err
}

// rowDescription describes cols; formats nil means all text.
func rowDescription(cols []Column, formats []int16) *pgproto3.RowDescription {
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, col := range cols {
		var f int16
		if formats != nil {
			f = formats[i]
		}
		fields[i] = pgproto3.FieldDescription{
			Name:         []byte(col.Name),
			DataTypeOID:  col.TypeOID,
			DataTypeSize: typeSize(col.TypeOID),
			TypeModifier: -1,
			Format:       f,
		}
	}
	return &pgproto3.RowDescription{Fields: fields}
}

// typeSize is pg_type.typlen for common types (-1 = variable length).
func typeSize(oid uint32) int16 {
	switch oid {
	case pgtype.BoolOID, pgtype.QCharOID:
		return 1
	case pgtype.Int2OID:
		return 2
	case pgtype.Int4OID, pgtype.Float4OID, pgtype.OIDOID, pgtype.DateOID, pgtype.XIDOID, pgtype.CIDOID:
		return 4
	case pgtype.Int8OID, pgtype.Float8OID, pgtype.TimestampOID, pgtype.TimestamptzOID, pgtype.TimeOID:
		return 8
	case pgtype.TimetzOID:
		return 12
	case pgtype.IntervalOID, pgtype.UUIDOID:
		return 16
	case pgtype.NameOID:
		return 64
	default:
		return -1
	}
}
