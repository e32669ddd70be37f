package pgquery

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
)

// Defaults of Options.
const (
	// DefaultSchema is the schema of the views system tables read
	// (system_access_audit, system_ai_gateway_usage, ...).
	DefaultSchema = "mandate_views"
	// DefaultMaxConns bounds the engine's own pool.
	DefaultMaxConns = 4
	// cancelGrace is how long a cancelled query may take to stop on the
	// server before its connection is closed (the pool replaces it).
	cancelGrace = 5 * time.Second
	// setupLock is the advisory lock key of Setup.
	setupLock = 0x6d616e64_71727900 // "mandqry"
)

// Options configure an Engine.
type Options struct {
	// MaxConns caps the engine's pool (queries running at once; more
	// wait); 0 means DefaultMaxConns.
	MaxConns int
	// Schema holds the views the queries may read; "" is DefaultSchema.
	Schema string
	// Role is the NOLOGIN role queries run as; "" derives
	// mandate_query_<hash of the database name> (roles are cluster-wide:
	// one per database).
	Role   string
	Logger zerolog.Logger
}

// Engine runs read-only queries on PostgreSQL (see the package doc).
type Engine struct {
	pool    *pgxpool.Pool
	schema  string
	role    string
	log     zerolog.Logger
	types   *pgtype.Map
	setRole string // SET LOCAL ROLE of each query's transaction
}

var _ catalog.QueryEngine = (*Engine)(nil)

// Open connects to url (a postgres:// URL) with a pool of its own, and
// sets up the query role (Setup).
func Open(ctx context.Context, url string, o Options) (*Engine, error) {
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "query engine: the PostgreSQL URL is malformed")
	}
	cfg.MaxConns = int32(o.MaxConns)
	rp := cfg.ConnConfig.RuntimeParams
	rp["application_name"] = "mandate-query"
	// The text forms decode() reads.
	rp["DateStyle"], rp["IntervalStyle"], rp["extra_float_digits"] = "ISO, MDY", "postgres", "1"
	// No JIT: compiling a costly plan takes seconds during which the
	// backend does not look at a cancel or the statement timeout (a
	// cross join of three audit views: ~5 s to cancel with it, at once
	// without).
	rp["jit"] = "off"
	// A done ctx cancels the query on the server (CancelRequest), not
	// only on this side; the connection is closed if that takes long.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: c, DeadlineDelay: cancelGrace}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, unavailable(ctx, "connect", err)
	}
	e := &Engine{pool: pool, schema: o.Schema, role: o.Role, log: o.Logger, types: pgtype.NewMap()}
	if err := e.Setup(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	e.setRole = "SET LOCAL ROLE " + pgx.Identifier{e.role}.Sanitize()
	return e, nil
}

// Role is the role queries run as.
func (e *Engine) Role() string { return e.role }

// Close closes the engine's pool.
func (e *Engine) Close() error {
	e.pool.Close()
	return nil
}

// Dialect implements catalog.QueryEngine.
func (e *Engine) Dialect() catalog.QueryDialect { return catalog.DialectPostgres }

// Setup creates the query role if it is missing (NOLOGIN), grants it to
// the store's user (for SET ROLE) and grants it USAGE on the views'
// schema and SELECT on its views, now and for views created later by
// this user. Idempotent; replicas run it under an advisory lock. It runs
// at every start, so views added by later migrations are granted too.
// The store's user needs CREATEROLE (or the role must exist and be
// granted to it).
func (e *Engine) Setup(ctx context.Context) error {
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return unavailable(ctx, "set up the query role", err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(setupLock)); err != nil {
		return unavailable(ctx, "set up the query role", err)
	}
	if e.role == "" {
		var db string
		if err := tx.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
			return unavailable(ctx, "set up the query role", err)
		}
		sum := sha256.Sum256([]byte(db))
		e.role = "mandate_query_" + hex.EncodeToString(sum[:6])
	}
	role := pgx.Identifier{e.role}.Sanitize()
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", e.role).Scan(&exists); err != nil {
		return unavailable(ctx, "set up the query role", err)
	}
	stmts := []string{}
	if !exists {
		stmts = append(stmts, "CREATE ROLE "+role+" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS")
	}
	member := false
	if exists {
		if err := tx.QueryRow(ctx, "SELECT pg_has_role(current_user, $1, 'MEMBER')", e.role).Scan(&member); err != nil {
			return unavailable(ctx, "set up the query role", err)
		}
	}
	if !member {
		stmts = append(stmts, "GRANT "+role+" TO CURRENT_USER")
	}
	var schemaExists bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", e.schema).Scan(&schemaExists); err != nil {
		return unavailable(ctx, "set up the query role", err)
	}
	if schemaExists {
		s := pgx.Identifier{e.schema}.Sanitize()
		stmts = append(stmts, "GRANT USAGE ON SCHEMA "+s+" TO "+role,
			"GRANT SELECT ON ALL TABLES IN SCHEMA "+s+" TO "+role,
			"ALTER DEFAULT PRIVILEGES IN SCHEMA "+s+" GRANT SELECT ON TABLES TO "+role)
	}
	for _, s := range stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42501" {
				return catalog.Errorf(catalog.CodePermissionDenied,
					"query engine: %s: %s (the PostgreSQL user needs CREATEROLE, or an administrator creates the role %s NOLOGIN and grants it to the user)",
					s, pe.Message, role)
			}
			return unavailable(ctx, "set up the query role", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return unavailable(ctx, "set up the query role", err)
	}
	return nil
}

// run runs one query in its READ ONLY transaction as the query role, with
// the timeout and time zone set, in two round trips: the transaction's
// setup pipelined with the statement's Parse and Describe, then (exec) its
// Bind and Execute pipelined with the ROLLBACK; Describe alone is one.
func (e *Engine) run(ctx context.Context, q catalog.Query, exec func(c *pgconn.PgConn, sd *pgconn.StatementDescription) (*pgconn.Pipeline, error)) (sd *pgconn.StatementDescription, err error) {
	if len(q.Tables) > 0 {
		return nil, fmt.Errorf("pgquery: virtual tables are JSON parameters in the PostgreSQL dialect")
	}
	if strings.ContainsRune(q.TimeZone, 0) {
		return nil, &catalog.QueryError{SQLState: "22023", Msg: "invalid value for parameter \"TimeZone\""}
	}
	conn, err := e.pool.Acquire(ctx)
	if err != nil {
		return nil, e.queryError(ctx, err)
	}
	pc := conn.Conn().PgConn()
	defer func() {
		// Not ctx: the transaction must end even when ctx is done.
		if pc.TxStatus() != 'I' || pc.IsClosed() {
			rctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
			if _, rerr := pc.Exec(rctx, "ROLLBACK").ReadAll(); rerr != nil || pc.TxStatus() != 'I' {
				_ = conn.Conn().Close(rctx)
			}
			cancel()
		}
		conn.Release()
	}()
	timeout := "0"
	if d, ok := ctx.Deadline(); ok {
		timeout = strconv.FormatInt(max(time.Until(d).Milliseconds(), 1), 10)
	}
	tz := q.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	pl := pc.StartPipeline(ctx)
	pl.SendQueryParams("BEGIN READ ONLY", nil, nil, nil, nil)
	pl.SendQueryParams(e.setRole, nil, nil, nil, nil)
	pl.SendQueryParams("SELECT set_config('statement_timeout', $1, true), set_config('TimeZone', $2, true), set_config('search_path', $3, true)",
		[][]byte{[]byte(timeout), []byte(tz), []byte(pgx.Identifier{e.schema}.Sanitize())}, nil, nil, nil)
	pl.SendPrepare("", q.SQL, nil)
	if exec == nil {
		pl.SendQueryParams("ROLLBACK", nil, nil, nil, nil)
	}
	if err := pl.Sync(); err != nil {
		_ = pl.Close()
		return nil, e.queryError(ctx, err)
	}
	if sd, err = readPipeline(pl); err != nil {
		return nil, e.queryError(ctx, err)
	}
	if exec == nil {
		return sd, nil
	}
	pl, err = exec(pc, sd)
	if pl != nil {
		if _, perr := readPipeline(pl); err == nil {
			err = perr
		}
	}
	if err != nil {
		return nil, e.queryError(ctx, err)
	}
	return sd, nil
}

// readPipeline reads a synced pipeline's results to its end and closes
// it: the statement description, if any, and the first error.
func readPipeline(pl *pgconn.Pipeline) (sd *pgconn.StatementDescription, err error) {
	for {
		res, rerr := pl.GetResults()
		if rerr != nil {
			if err == nil {
				err = rerr
			}
			break
		}
		switch x := res.(type) {
		case *pgconn.ResultReader:
			if _, cerr := x.Close(); cerr != nil && err == nil {
				err = cerr
			}
		case *pgconn.StatementDescription:
			sd = x
		case *pgconn.PipelineSync:
			if cerr := pl.Close(); cerr != nil && err == nil {
				err = cerr
			}
			return sd, err
		case nil:
			if cerr := pl.Close(); cerr != nil && err == nil {
				err = cerr
			}
			return sd, err
		}
	}
	if cerr := pl.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return sd, err
}

// Describe implements catalog.QueryEngine.
func (e *Engine) Describe(ctx context.Context, q catalog.Query) (cols []catalog.QueryColumn, params []catalog.ColumnType, err error) {
	sd, err := e.run(ctx, q, nil)
	if err != nil {
		return nil, nil, err
	}
	for _, oid := range sd.ParamOIDs {
		params = append(params, columnType(oid))
	}
	return columns(sd.Fields), params, nil
}

// Query implements catalog.QueryEngine.
func (e *Engine) Query(ctx context.Context, q catalog.Query, row func([]any) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var rowErr error
	_, err := e.run(ctx, q, func(c *pgconn.PgConn, sd *pgconn.StatementDescription) (*pgconn.Pipeline, error) {
		if len(q.Args) != len(sd.ParamOIDs) {
			return nil, fmt.Errorf("pgquery: %d arguments for %d parameters", len(q.Args), len(sd.ParamOIDs))
		}
		args := make([][]byte, len(q.Args))
		for i, a := range q.Args {
			var err error
			if args[i], err = e.encode(sd.ParamOIDs[i], a); err != nil {
				return nil, &catalog.QueryError{SQLState: "22P02", Msg: fmt.Sprintf("invalid value for parameter $%d: %v", i+1, err), Err: err}
			}
		}
		cols := columns(sd.Fields)
		pl := c.StartPipeline(ctx)
		pl.SendQueryPrepared("", args, nil, []int16{pgtype.TextFormatCode})
		pl.SendQueryParams("ROLLBACK", nil, nil, nil, nil)
		if err := pl.Sync(); err != nil {
			return pl, err
		}
		res, err := pl.GetResults()
		if err != nil {
			return pl, err
		}
		rr, ok := res.(*pgconn.ResultReader)
		if !ok {
			return pl, fmt.Errorf("pgquery: unexpected pipeline result %T", res)
		}
		for rr.NextRow() {
			raw := rr.Values()
			vals := make([]any, len(raw))
			for i, src := range raw {
				vals[i] = e.decode(sd.Fields[i].DataTypeOID, cols[i].Type, src)
			}
			if rowErr = row(vals); rowErr != nil {
				cancel() // stop the query on the server
				break
			}
		}
		_, err = rr.Close()
		return pl, err
	})
	if rowErr != nil {
		return rowErr
	}
	return err
}

// --- types ---------------------------------------------------------------

// textOIDs are the string types, read as they are.
var textOIDs = map[uint32]bool{pgtype.TextOID: true, pgtype.VarcharOID: true, pgtype.NameOID: true, pgtype.BPCharOID: true,
	pgtype.QCharOID: true, pgtype.UnknownOID: true}

var scalarData = map[uint32]catalog.DataType{
	pgtype.BoolOID: catalog.DataBool, pgtype.Int2OID: catalog.DataInt16, pgtype.Int4OID: catalog.DataInt32,
	pgtype.Int8OID: catalog.DataInt64, pgtype.OIDOID: catalog.DataInt64, pgtype.Float4OID: catalog.DataFloat32,
	pgtype.Float8OID: catalog.DataFloat64, pgtype.NumericOID: catalog.DataNumeric, pgtype.ByteaOID: catalog.DataBytes,
	pgtype.DateOID: catalog.DataDate, pgtype.TimeOID: catalog.DataTime, pgtype.TimestampOID: catalog.DataTimestamp,
	pgtype.TimestamptzOID: catalog.DataTimestamptz, pgtype.IntervalOID: catalog.DataInterval, pgtype.UUIDOID: catalog.DataUUID,
	pgtype.JSONOID: catalog.DataJSON, pgtype.JSONBOID: catalog.DataJSON,
}

var arrayElem = map[uint32]uint32{
	pgtype.BoolArrayOID: pgtype.BoolOID, pgtype.Int2ArrayOID: pgtype.Int2OID, pgtype.Int4ArrayOID: pgtype.Int4OID,
	pgtype.Int8ArrayOID: pgtype.Int8OID, pgtype.OIDArrayOID: pgtype.OIDOID, pgtype.Float4ArrayOID: pgtype.Float4OID,
	pgtype.Float8ArrayOID: pgtype.Float8OID, pgtype.NumericArrayOID: pgtype.NumericOID, pgtype.TextArrayOID: pgtype.TextOID,
	pgtype.VarcharArrayOID: pgtype.VarcharOID, pgtype.NameArrayOID: pgtype.NameOID, pgtype.BPCharArrayOID: pgtype.BPCharOID,
	pgtype.DateArrayOID: pgtype.DateOID, pgtype.TimestampArrayOID: pgtype.TimestampOID,
	pgtype.TimestamptzArrayOID: pgtype.TimestamptzOID, pgtype.IntervalArrayOID: pgtype.IntervalOID,
	pgtype.UUIDArrayOID: pgtype.UUIDOID,
}

// columnType maps a PostgreSQL type OID; types without a catalog.DataType
// (inet, xml, records, ...) are text.
func columnType(oid uint32) catalog.ColumnType {
	if textOIDs[oid] {
		return catalog.ColumnType{Data: catalog.DataText, OID: oid}
	}
	if d, ok := scalarData[oid]; ok {
		return catalog.ColumnType{Data: d, OID: oid}
	}
	if el, ok := arrayElem[oid]; ok {
		et := columnType(el)
		return catalog.ColumnType{Data: catalog.DataList, Elem: et.Data, OID: oid}
	}
	return catalog.ColumnType{Data: catalog.DataText, OID: pgtype.TextOID}
}

func columns(fields []pgconn.FieldDescription) []catalog.QueryColumn {
	out := make([]catalog.QueryColumn, len(fields))
	for i, f := range fields {
		out[i] = catalog.QueryColumn{Name: f.Name, Type: columnType(f.DataTypeOID)}
	}
	return out
}

// decode reads a value in PostgreSQL's text format as the Go value of its
// catalog.DataType.
func (e *Engine) decode(oid uint32, t catalog.ColumnType, src []byte) any {
	if src == nil {
		return nil
	}
	s := string(src)
	switch t.Data {
	case catalog.DataText, catalog.DataJSON:
		return s
	case catalog.DataBool:
		return s == "t"
	case catalog.DataInt16:
		v, _ := strconv.ParseInt(s, 10, 16)
		return int16(v)
	case catalog.DataInt32:
		v, _ := strconv.ParseInt(s, 10, 32)
		return int32(v)
	case catalog.DataInt64:
		v, _ := strconv.ParseInt(s, 10, 64)
		return v
	case catalog.DataFloat32:
		v, _ := strconv.ParseFloat(s, 32)
		return float32(v)
	case catalog.DataFloat64:
		v, _ := strconv.ParseFloat(s, 64)
		return v
	case catalog.DataNumeric:
		if d, ok := parseDecimal(s); ok {
			return d
		}
		return s // NaN, Infinity
	}
	typ, ok := e.types.TypeForOID(oid)
	if !ok {
		return s
	}
	v, err := typ.Codec.DecodeValue(e.types, oid, pgtype.TextFormatCode, src)
	if err != nil {
		return s
	}
	return fromPG(v, s)
}

// fromPG converts a value pgtype decoded.
func fromPG(v any, text string) any {
	switch x := v.(type) {
	case pgtype.InfinityModifier:
		return text
	case pgtype.Interval:
		return catalog.Interval{Months: x.Months, Days: x.Days, Micros: x.Microseconds}
	case pgtype.Time:
		return time.Duration(x.Microseconds) * time.Microsecond
	case pgtype.Numeric:
		if !x.Valid || x.NaN || x.InfinityModifier != pgtype.Finite {
			return nil
		}
		if x.Exp >= 0 {
			return catalog.Decimal{Unscaled: new(big.Int).Mul(x.Int, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(x.Exp)), nil))}
		}
		return catalog.Decimal{Unscaled: x.Int, Scale: int(-x.Exp)}
	case time.Time:
		return x
	case uint32:
		return int64(x)
	case []any:
		out := make([]any, len(x))
		for i, el := range x {
			out[i] = fromPG(el, fmt.Sprint(el))
		}
		return out
	}
	return v
}

// parseDecimal reads numeric's text form ("-12.50").
func parseDecimal(s string) (catalog.Decimal, bool) {
	digits, scale := s, 0
	if i := strings.IndexByte(s, '.'); i >= 0 {
		digits, scale = s[:i]+s[i+1:], len(s)-i-1
	}
	n, ok := new(big.Int).SetString(digits, 10)
	if !ok {
		return catalog.Decimal{}, false
	}
	return catalog.Decimal{Unscaled: n, Scale: scale}, true
}

// encode writes an argument in the text format of its parameter's type.
// A string is an untyped literal: PostgreSQL's input function of the
// parameter's type reads it.
func (e *Engine) encode(oid uint32, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		if strings.ContainsRune(x, 0) {
			return nil, errors.New("invalid byte sequence for encoding \"UTF8\": 0x00")
		}
		return []byte(x), nil
	}
	pv := toPG(v)
	if buf, err := e.types.Encode(oid, pgtype.TextFormatCode, pv, nil); err == nil {
		return buf, nil
	}
	return []byte(fmt.Sprint(v)), nil
}

// toPG converts a catalog value for pgtype.
func toPG(v any) any {
	switch x := v.(type) {
	case catalog.Decimal:
		if x.Unscaled == nil {
			return pgtype.Numeric{Int: big.NewInt(0), Valid: true}
		}
		return pgtype.Numeric{Int: x.Unscaled, Exp: int32(-x.Scale), Valid: true}
	case catalog.Interval:
		return pgtype.Interval{Months: x.Months, Days: x.Days, Microseconds: x.Micros, Valid: true}
	case time.Duration:
		return pgtype.Time{Microseconds: x.Microseconds(), Valid: true}
	case []any:
		out := make([]any, len(x))
		for i, el := range x {
			out[i] = toPG(el)
		}
		return out
	}
	return v
}

// --- errors --------------------------------------------------------------

var columnMsg = regexp.MustCompile(`^column "?(?:[^"]*\.)?([^".]+)"? does not exist$`)

// queryError keeps PostgreSQL's SQLSTATE and wording; a done ctx wins;
// failures to reach the server are CodeUnavailable.
func (e *Engine) queryError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "57014":
			// statement_timeout set from ctx's deadline fired first.
			if _, ok := ctx.Deadline(); ok {
				return context.DeadlineExceeded
			}
		case pe.Code == "53300" || pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || strings.HasPrefix(pe.Code, "08"):
			return unavailable(ctx, "query", err)
		}
		qe := &catalog.QueryError{SQLState: pe.Code, Msg: pe.Message, Detail: pe.Detail, Hint: pe.Hint, Position: pe.Position, Err: err}
		if pe.Code == "42703" {
			if m := columnMsg.FindStringSubmatch(pe.Message); m != nil {
				qe.Name = m[1]
			}
		}
		return qe
	}
	return unavailable(ctx, "query", err)
}

func unavailable(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return &catalog.Error{Code: catalog.CodeUnavailable, Msg: "query engine database unreachable: " + op + ": " + err.Error(), Err: err}
}
