package duckstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
)

// DefaultQueryConns is the size of the query engine's connection pool when
// QueryOptions.MaxConns is 0.
const DefaultQueryConns = 4

// QueryOptions configure a QueryEngine.
type QueryOptions struct {
	// MaxConns bounds the engine's own pool of DuckDB connections (queries
	// running at once); 0 means DefaultQueryConns. More queries wait.
	MaxConns int
	Logger   zerolog.Logger
}

// QueryEngine is the catalog.QueryEngine of a Store: read-only SELECTs on
// a pool of DuckDB connections of its own, so that long analytical queries
// never hold the connections of the catalog's reads and writes. Each query
// runs in a READ ONLY transaction; the database was opened without
// external access and with a locked configuration (see the package doc),
// so no statement can read files, attach databases or change settings
// even if one reached the engine unchecked. A query whose ctx is done is
// interrupted (duckdb_interrupt) and fails with ctx's error.
type QueryEngine struct {
	s   *Store
	db  *sql.DB
	log zerolog.Logger

	regOnce sync.Once
	regErr  error
	jsonT   duckdb.TypeInfo // VARCHAR with the JSON alias
}

var _ catalog.QueryEngine = (*QueryEngine)(nil)

// sharedConnector opens connections of the Store's database without
// letting the engine's sql.DB close it (sql.DB.Close closes a connector
// that is an io.Closer; the database belongs to the Store).
type sharedConnector struct{ c *duckdb.Connector }

func (s sharedConnector) Connect(ctx context.Context) (driver.Conn, error) { return s.c.Connect(ctx) }
func (s sharedConnector) Driver() driver.Driver                            { return s.c.Driver() }

// QueryEngine returns a query engine over the store's database. Close it
// before the store.
func (s *Store) QueryEngine(opts QueryOptions) (*QueryEngine, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultQueryConns
	}
	db := sql.OpenDB(sharedConnector{s.connector})
	db.SetMaxOpenConns(opts.MaxConns)
	db.SetMaxIdleConns(opts.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	e := &QueryEngine{s: s, db: db, log: opts.Logger}
	if err := e.register(context.Background()); err != nil {
		_ = db.Close()
		return nil, err
	}
	return e, nil
}

// Dialect implements catalog.QueryEngine: DuckDB.
func (e *QueryEngine) Dialect() catalog.QueryDialect { return catalog.DialectDuckDB }

// Close closes the engine's connections (not the store).
func (e *QueryEngine) Close() error { return e.db.Close() }

// vtKey is the context key of a query's virtual tables.
type vtKey struct{}

// vtCall is the virtual tables of one engine call; each table's rows are
// computed once per call.
type vtCall struct {
	tables map[string]*catalog.VirtualTable
	mu     sync.Mutex
	rows   map[string][][]any
}

func (c *vtCall) rowsOf(ctx context.Context, name string) ([][]any, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.rows[name]; ok {
		return r, nil
	}
	t := c.tables[name]
	var rows [][]any
	if t.Rows != nil {
		var err error
		if rows, err = t.Rows(ctx); err != nil {
			return nil, err
		}
	}
	if c.rows == nil {
		c.rows = map[string][][]any{}
	}
	c.rows[name] = rows
	return rows, nil
}

// register installs the virtual-table function. DuckDB keeps it in its
// system catalog, so every connection of the database sees it; it finds
// the rows through the context of the query that binds it.
func (e *QueryEngine) register(ctx context.Context) error {
	e.regOnce.Do(func() {
		conn, err := e.db.Conn(ctx)
		if err != nil {
			e.regErr = translate(ctx, "open a query connection", err)
			return
		}
		defer conn.Close()
		// A TypeInfo with the JSON alias comes only from DuckDB itself.
		err = conn.Raw(func(dc any) error {
			st, err := dc.(*duckdb.Conn).PrepareContext(ctx, "SELECT NULL::JSON")
			if err != nil {
				return err
			}
			defer st.Close()
			e.jsonT, err = st.(*duckdb.Stmt).ColumnTypeInfo(0)
			return err
		})
		if err != nil {
			e.regErr = translate(ctx, "prepare the JSON type", err)
			return
		}
		varchar, _ := duckdb.NewTypeInfo(duckdb.TYPE_VARCHAR)
		fn := duckdb.RowTableFunction{
			Config: duckdb.TableFunctionConfig{Arguments: []duckdb.TypeInfo{varchar}},
			BindArgumentsContext: func(ctx context.Context, _ map[string]any, args ...any) (duckdb.RowTableSource, error) {
				name, _ := args[0].(string)
				call, _ := ctx.Value(vtKey{}).(*vtCall)
				if call == nil || call.tables[name] == nil {
					return nil, fmt.Errorf("relation %q does not exist", name)
				}
				return e.newSource(ctx, call, name)
			},
		}
		if err := duckdb.RegisterTableUDF(conn, catalog.VirtualTableFunc, fn); err != nil {
			e.regErr = translate(ctx, "register the virtual table function", err)
		}
	})
	return e.regErr
}

// vtSource is the RowTableSource of one virtual table in one query.
type vtSource struct {
	cols  []catalog.QueryColumn
	infos []duckdb.ColumnInfo
	rows  [][]any
	pos   int
}

func (e *QueryEngine) newSource(ctx context.Context, call *vtCall, name string) (*vtSource, error) {
	t := call.tables[name]
	rows, err := call.rowsOf(ctx, name)
	if err != nil {
		return nil, err
	}
	src := &vtSource{cols: t.Columns, rows: rows}
	for _, c := range t.Columns {
		ti, err := e.typeInfo(c.Type)
		if err != nil {
			return nil, err
		}
		src.infos = append(src.infos, duckdb.ColumnInfo{Name: c.Name, T: ti})
	}
	return src, nil
}

func (s *vtSource) ColumnInfos() []duckdb.ColumnInfo { return s.infos }
func (s *vtSource) Cardinality() *duckdb.CardinalityInfo {
	return &duckdb.CardinalityInfo{Cardinality: uint(len(s.rows)), Exact: true}
}
func (s *vtSource) Init() {}

func (s *vtSource) FillRow(r duckdb.Row) (bool, error) {
	if s.pos >= len(s.rows) {
		return false, nil
	}
	row := s.rows[s.pos]
	s.pos++
	for i := range s.cols {
		if !r.IsProjected(i) {
			continue
		}
		var v any
		if i < len(row) {
			v = toDuck(s.cols[i].Type, row[i])
		}
		if err := r.SetRowValue(i, v); err != nil {
			return false, fmt.Errorf("column %s: %w", s.cols[i].Name, err)
		}
	}
	return true, nil
}

// toDuck converts a catalog value for a DuckDB vector of type t.
func toDuck(t catalog.ColumnType, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case catalog.Decimal:
		return duckdb.Decimal{Width: 38, Scale: uint8(max(x.Scale, 0)), Value: x.Unscaled}
	case catalog.Interval:
		return duckdb.Interval{Months: x.Months, Days: x.Days, Micros: x.Micros}
	case [16]byte:
		u := duckdb.UUID(x)
		return &u
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toDuck(catalog.ColumnType{Data: t.Elem}, e)
		}
		return out
	case string:
		if t.Data == catalog.DataJSON {
			if x == "" {
				return nil
			}
			return json.RawMessage(x) // written with encoding/json: raw text
		}
	}
	return v
}

// typeInfo returns the DuckDB type of a column of a virtual table.
func (e *QueryEngine) typeInfo(t catalog.ColumnType) (duckdb.TypeInfo, error) {
	simple := func(dt duckdb.Type) (duckdb.TypeInfo, error) { return duckdb.NewTypeInfo(dt) }
	switch t.Data {
	case catalog.DataBool:
		return simple(duckdb.TYPE_BOOLEAN)
	case catalog.DataInt16:
		return simple(duckdb.TYPE_SMALLINT)
	case catalog.DataInt32:
		return simple(duckdb.TYPE_INTEGER)
	case catalog.DataInt64:
		return simple(duckdb.TYPE_BIGINT)
	case catalog.DataFloat32:
		return simple(duckdb.TYPE_FLOAT)
	case catalog.DataFloat64:
		return simple(duckdb.TYPE_DOUBLE)
	case catalog.DataNumeric:
		p, s := t.Precision, t.Scale
		if p <= 0 || p > 38 {
			p, s = 38, max(t.Scale, 0)
		}
		return duckdb.NewDecimalInfo(uint8(p), uint8(s))
	case catalog.DataBytes:
		return simple(duckdb.TYPE_BLOB)
	case catalog.DataDate:
		return simple(duckdb.TYPE_DATE)
	case catalog.DataTime:
		return simple(duckdb.TYPE_TIME)
	case catalog.DataTimestamp:
		return simple(duckdb.TYPE_TIMESTAMP)
	case catalog.DataTimestamptz:
		return simple(duckdb.TYPE_TIMESTAMP_TZ)
	case catalog.DataInterval:
		return simple(duckdb.TYPE_INTERVAL)
	case catalog.DataUUID:
		return simple(duckdb.TYPE_UUID)
	case catalog.DataJSON:
		return e.jsonT, nil
	case catalog.DataList:
		elem, err := e.typeInfo(catalog.ColumnType{Data: t.Elem})
		if err != nil {
			return nil, err
		}
		return duckdb.NewListInfo(elem)
	}
	return simple(duckdb.TYPE_VARCHAR)
}

// withConn runs fn on a pool connection inside a READ ONLY transaction,
// with q's virtual tables in the context DuckDB hands to the table
// function.
func (e *QueryEngine) withConn(ctx context.Context, q catalog.Query, fn func(ctx context.Context, conn *sql.Conn) error) (err error) {
	if e.s.closed.Load() {
		return errClosed()
	}
	if err := e.register(ctx); err != nil {
		return err
	}
	conn, err := e.db.Conn(ctx)
	if err != nil {
		return e.queryError(ctx, err)
	}
	defer conn.Close()
	if len(q.Tables) > 0 {
		ctx = context.WithValue(ctx, vtKey{}, &vtCall{tables: q.Tables})
	}
	if _, err := conn.ExecContext(ctx, "BEGIN TRANSACTION READ ONLY"); err != nil {
		discardConn(conn) // an interrupted BEGIN may have begun the transaction
		return e.queryError(ctx, err)
	}
	defer func() {
		if ctx.Err() != nil {
			// The call may have been interrupted (duckdb_interrupt) at any
			// step, and an interrupt can outlive the call it was meant for:
			// a ROLLBACK then fails or stalls and the connection would go
			// back to the pool inside its aborted transaction, failing
			// every later query on it. Closing it ends the transaction.
			discardConn(conn)
			return
		}
		// Not ctx: the transaction must end even when ctx is done.
		if _, rerr := conn.ExecContext(context.Background(), "ROLLBACK"); rerr != nil {
			discardConn(conn)
			if err == nil {
				err = e.queryError(ctx, rerr)
			}
		}
	}()
	return fn(ctx, conn)
}

// discardConn closes conn's connection instead of returning it to the
// pool.
func discardConn(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// described is what DuckDB says about a prepared statement.
type described struct {
	cols   []catalog.QueryColumn
	params []catalog.ColumnType
	wrap   bool // some column must be converted to VARCHAR (see wrapSQL)
}

func (e *QueryEngine) describe(ctx context.Context, conn *sql.Conn, query string) (*described, error) {
	var d described
	err := conn.Raw(func(dc any) error {
		st, err := dc.(*duckdb.Conn).PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		defer st.Close()
		ds := st.(*duckdb.Stmt)
		n, err := ds.ColumnCount()
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			name, err := ds.ColumnName(i)
			if err != nil {
				return err
			}
			ti, err := ds.ColumnTypeInfo(i)
			if err != nil {
				return err
			}
			ct, wrap := columnType(ti)
			d.wrap = d.wrap || wrap
			d.cols = append(d.cols, catalog.QueryColumn{Name: name, Type: ct})
		}
		for i := 1; i <= ds.NumInput(); i++ {
			pt, err := ds.ParamType(i)
			if err != nil {
				pt = duckdb.TYPE_INVALID
			}
			d.params = append(d.params, paramType(pt))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// Describe implements catalog.QueryEngine.
func (e *QueryEngine) Describe(ctx context.Context, q catalog.Query) (cols []catalog.QueryColumn, params []catalog.ColumnType, err error) {
	err = e.withConn(ctx, q, func(ctx context.Context, conn *sql.Conn) error {
		d, err := e.describe(ctx, conn, q.SQL)
		if err != nil {
			return e.queryError(ctx, err)
		}
		cols, params = d.cols, d.params
		return nil
	})
	return cols, params, err
}

// Query implements catalog.QueryEngine.
func (e *QueryEngine) Query(ctx context.Context, q catalog.Query, row func([]any) error) error {
	return e.withConn(ctx, q, func(ctx context.Context, conn *sql.Conn) error {
		d, err := e.describe(ctx, conn, q.SQL)
		if err != nil {
			return e.queryError(ctx, err)
		}
		text := q.SQL
		if d.wrap {
			text = wrapSQL(q.SQL, d.cols)
		}
		args := make([]any, len(q.Args))
		for i, a := range q.Args {
			var pt catalog.ColumnType
			if i < len(d.params) {
				pt = d.params[i]
			}
			args[i] = toDuck(pt, a)
		}
		rows, err := conn.QueryContext(ctx, text, args...)
		if err != nil {
			return e.queryError(ctx, err)
		}
		defer rows.Close()
		n := len(d.cols)
		for rows.Next() {
			vals := make([]any, n)
			ptrs := make([]any, n)
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				return e.queryError(ctx, err)
			}
			for i := range vals {
				vals[i] = fromDuck(d.cols[i].Type, vals[i])
			}
			if err := row(vals); err != nil {
				return err
			}
		}
		if err := rows.Err(); err != nil {
			return e.queryError(ctx, err)
		}
		return nil
	})
}

// wrapSQL selects q's columns by position, converting the ones without a
// PostgreSQL counterpart (JSON, structs, maps, enums, nested lists, ...)
// to their text form.
func wrapSQL(q string, cols []catalog.QueryColumn) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		if c.Type.Data == catalog.DataText || c.Type.Data == catalog.DataJSON {
			fmt.Fprintf(&b, "CAST(#%d AS VARCHAR)", i+1)
		} else {
			fmt.Fprintf(&b, "#%d", i+1)
		}
	}
	b.WriteString(" FROM (")
	b.WriteString(q)
	b.WriteString(") AS mandate_q")
	return b.String()
}

// columnType maps a DuckDB result type; wrap is true when the engine
// converts the column to VARCHAR (see wrapSQL).
func columnType(ti duckdb.TypeInfo) (catalog.ColumnType, bool) {
	ct := catalog.ColumnType{Engine: typeName(ti)}
	if strings.EqualFold(ti.Alias(), "JSON") {
		ct.Data = catalog.DataJSON
		return ct, true
	}
	switch ti.InternalType() {
	case duckdb.TYPE_BOOLEAN:
		ct.Data = catalog.DataBool
	case duckdb.TYPE_TINYINT, duckdb.TYPE_UTINYINT, duckdb.TYPE_SMALLINT:
		ct.Data = catalog.DataInt16
	case duckdb.TYPE_USMALLINT, duckdb.TYPE_INTEGER:
		ct.Data = catalog.DataInt32
	case duckdb.TYPE_UINTEGER, duckdb.TYPE_BIGINT:
		ct.Data = catalog.DataInt64
	case duckdb.TYPE_UBIGINT, duckdb.TYPE_HUGEINT, duckdb.TYPE_UHUGEINT:
		ct.Data = catalog.DataNumeric
	case duckdb.TYPE_DECIMAL:
		ct.Data = catalog.DataNumeric
		if d, ok := ti.Details().(*duckdb.DecimalDetails); ok {
			ct.Precision, ct.Scale = int(d.Width), int(d.Scale)
		}
	case duckdb.TYPE_FLOAT:
		ct.Data = catalog.DataFloat32
	case duckdb.TYPE_DOUBLE:
		ct.Data = catalog.DataFloat64
	case duckdb.TYPE_VARCHAR:
		ct.Data = catalog.DataText
	case duckdb.TYPE_BLOB:
		ct.Data = catalog.DataBytes
	case duckdb.TYPE_DATE:
		ct.Data = catalog.DataDate
	case duckdb.TYPE_TIME:
		ct.Data = catalog.DataTime
	case duckdb.TYPE_TIMESTAMP, duckdb.TYPE_TIMESTAMP_S, duckdb.TYPE_TIMESTAMP_MS, duckdb.TYPE_TIMESTAMP_NS:
		ct.Data = catalog.DataTimestamp
	case duckdb.TYPE_TIMESTAMP_TZ:
		ct.Data = catalog.DataTimestamptz
	case duckdb.TYPE_INTERVAL:
		ct.Data = catalog.DataInterval
	case duckdb.TYPE_UUID:
		ct.Data = catalog.DataUUID
	case duckdb.TYPE_LIST, duckdb.TYPE_ARRAY:
		var child duckdb.TypeInfo
		switch d := ti.Details().(type) {
		case *duckdb.ListDetails:
			child = d.Child
		case *duckdb.ArrayDetails:
			child = d.Child
		}
		if child != nil {
			if et, wrap := columnType(child); !wrap && et.Data != catalog.DataList {
				ct.Data, ct.Elem = catalog.DataList, et.Data
				return ct, false
			}
		}
		ct.Data = catalog.DataText
		return ct, true
	default: // structs, maps, unions, enums, bit strings, NULL, ...
		ct.Data = catalog.DataText
		return ct, true
	}
	return ct, false
}

func typeName(ti duckdb.TypeInfo) string {
	if a := ti.Alias(); a != "" {
		return a
	}
	if name, ok := typeNames[ti.InternalType()]; ok {
		return name
	}
	return fmt.Sprintf("type %d", ti.InternalType())
}

var typeNames = map[duckdb.Type]string{
	duckdb.TYPE_BOOLEAN: "BOOLEAN", duckdb.TYPE_TINYINT: "TINYINT", duckdb.TYPE_SMALLINT: "SMALLINT",
	duckdb.TYPE_INTEGER: "INTEGER", duckdb.TYPE_BIGINT: "BIGINT", duckdb.TYPE_UTINYINT: "UTINYINT",
	duckdb.TYPE_USMALLINT: "USMALLINT", duckdb.TYPE_UINTEGER: "UINTEGER", duckdb.TYPE_UBIGINT: "UBIGINT",
	duckdb.TYPE_HUGEINT: "HUGEINT", duckdb.TYPE_UHUGEINT: "UHUGEINT", duckdb.TYPE_FLOAT: "FLOAT",
	duckdb.TYPE_DOUBLE: "DOUBLE", duckdb.TYPE_DECIMAL: "DECIMAL", duckdb.TYPE_VARCHAR: "VARCHAR",
	duckdb.TYPE_BLOB: "BLOB", duckdb.TYPE_DATE: "DATE", duckdb.TYPE_TIME: "TIME", duckdb.TYPE_TIMESTAMP: "TIMESTAMP",
	duckdb.TYPE_TIMESTAMP_TZ: "TIMESTAMP WITH TIME ZONE", duckdb.TYPE_INTERVAL: "INTERVAL", duckdb.TYPE_UUID: "UUID",
	duckdb.TYPE_LIST: "LIST", duckdb.TYPE_STRUCT: "STRUCT", duckdb.TYPE_MAP: "MAP", duckdb.TYPE_ENUM: "ENUM",
}

// paramType maps the type DuckDB infers for a parameter.
func paramType(t duckdb.Type) catalog.ColumnType {
	ti, err := duckdb.NewTypeInfo(t)
	if err != nil {
		return catalog.ColumnType{Data: catalog.DataText}
	}
	ct, wrap := columnType(ti)
	if wrap || ct.Data == catalog.DataList {
		return catalog.ColumnType{Data: catalog.DataText}
	}
	return ct
}

// fromDuck converts a value scanned from DuckDB to the Go type of its
// catalog.DataType.
func fromDuck(t catalog.ColumnType, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case int8:
		return int16(x)
	case uint8:
		return int16(x)
	case uint16:
		return int32(x)
	case uint32:
		return int64(x)
	case uint64:
		return catalog.Decimal{Unscaled: new(big.Int).SetUint64(x)}
	case *big.Int:
		return catalog.Decimal{Unscaled: x}
	case duckdb.Decimal:
		return catalog.Decimal{Unscaled: x.Value, Scale: int(x.Scale)}
	case duckdb.Interval:
		return catalog.Interval{Months: x.Months, Days: x.Days, Micros: x.Micros}
	case duckdb.UUID:
		return [16]byte(x)
	case *duckdb.UUID:
		return [16]byte(*x)
	case []byte:
		if t.Data == catalog.DataUUID && len(x) == 16 {
			return [16]byte(x)
		}
		return x
	case time.Time:
		switch t.Data {
		case catalog.DataTime:
			h, m, s := x.Clock()
			return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second +
				time.Duration(x.Nanosecond())
		case catalog.DataDate, catalog.DataTimestamp:
			return time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC)
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = fromDuck(catalog.ColumnType{Data: t.Elem}, e)
		}
		return out
	}
	return v
}

// queryError turns a driver error into a *catalog.QueryError with a
// SQLSTATE, or ctx's error when the query was interrupted because ctx is
// done. DuckDB's messages lose the "LINE n:" excerpt: it shows the
// rewritten statement, not the one the client sent.
func (e *QueryEngine) queryError(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if e.s.closed.Load() || errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed") {
		return errClosed()
	}
	msg := err.Error()
	if i := strings.Index(msg, "\n\nLINE "); i >= 0 {
		msg = msg[:i]
	} else if i := strings.Index(msg, "\nLINE "); i >= 0 {
		msg = msg[:i]
	}
	msg = strings.TrimSpace(msg)
	var de *duckdb.Error
	if !errors.As(err, &de) {
		qe := driverError(msg)
		qe.Err = err
		return qe
	}
	if i := strings.Index(msg, ": "); i >= 0 && strings.HasSuffix(msg[:i], "Error") {
		msg = msg[i+2:] // "Binder Error: ..."
	}
	switch de.Type {
	case duckdb.ErrorTypeIO, duckdb.ErrorTypeConnection, duckdb.ErrorTypeFatal:
		return translate(ctx, "query", err)
	}
	// PostgreSQL's SQLSTATE and wording (pgerrors.go).
	qe := pgError(de.Type, msg)
	qe.Err = err
	return qe
}
