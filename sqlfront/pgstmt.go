package sqlfront

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
	"github.com/mandatehq/mandate/sqlfront/systables"
)

// Type OIDs used by session statements.
const (
	oidBool        = 16
	oidInt8        = 20
	oidTimestamptz = 1184
	oidInt4        = 23
	oidText        = 25
	oidFloat8      = 701
	oidTstz        = 1184
)

// defaultParams are the run-time parameters a session starts with; SET and
// SHOW work on these (and on any custom "x.y" parameter).
func defaultParams(version string) map[string]string {
	num := "160004"
	if parts := strings.SplitN(version, ".", 3); len(parts) >= 2 {
		if maj, err1 := strconv.Atoi(parts[0]); err1 == nil {
			if min, err2 := strconv.Atoi(strings.Fields(parts[1])[0]); err2 == nil {
				num = strconv.Itoa(maj*10000 + min)
			}
		}
	}
	return map[string]string{
		"server_version": version, "server_version_num": num, "server_encoding": "UTF8", "client_encoding": "UTF8",
		"datestyle": "ISO, MDY", "intervalstyle": "postgres", "timezone": "UTC", "integer_datetimes": "on",
		"standard_conforming_strings": "on", "application_name": "", "is_superuser": "off", "session_authorization": "",
		"search_path": `"$user", public`, "extra_float_digits": "1", "transaction_isolation": "read committed",
		"default_transaction_isolation": "read committed", "transaction_read_only": "off",
		"default_transaction_read_only": "off", "statement_timeout": "0", "lock_timeout": "0",
		"idle_in_transaction_session_timeout": "0", "client_min_messages": "notice", "bytea_output": "hex",
		"max_identifier_length": "63", "lc_messages": "C", "lc_monetary": "C", "lc_numeric": "C", "lc_time": "C",
		"row_security": "on", "default_transaction_deferrable": "off", "transaction_deferrable": "off",
		"escape_string_warning": "on", "array_nulls": "on", "jit": "off", "synchronous_commit": "on",
	}
}

// reported are the parameters sent as ParameterStatus when they change.
var reported = map[string]string{
	"application_name": "application_name", "client_encoding": "client_encoding", "datestyle": "DateStyle",
	"intervalstyle": "IntervalStyle", "timezone": "TimeZone", "standard_conforming_strings": "standard_conforming_strings",
	"is_superuser": "is_superuser", "session_authorization": "session_authorization", "server_version": "server_version",
	"integer_datetimes": "integer_datetimes",
}

// readOnlyParams cannot be SET.
var readOnlyParams = map[string]bool{"server_version": true, "server_version_num": true, "server_encoding": true,
	"integer_datetimes": true, "is_superuser": true, "session_authorization": true, "max_identifier_length": true,
	"lc_messages": false}

// resetAll returns every settable parameter to its value at connect.
func (s *Session) resetAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.resetTo {
		if readOnlyParams[k] {
			continue
		}
		if s.params[k] != v {
			s.params[k] = v
			if r, ok := reported[k]; ok {
				s.changed[r] = v
			}
		}
	}
	for k := range s.params {
		if _, ok := s.resetTo[k]; !ok {
			delete(s.params, k) // custom x.y parameters set later
		}
	}
}

func (s *Session) getParam(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.params[strings.ToLower(name)]
	return v, ok
}

func (s *Session) setParam(name, value string) error {
	n := strings.ToLower(name)
	if n == "statement_timeout" { // before s.mu: it may read the catalog
		v, err := s.normalizeStatementTimeout(value)
		if err != nil {
			return err
		}
		value = v
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.params[n]; !ok && systables.IsEngineSetting(n) {
		return pgwire.Errorf("42501", "parameter %q is a setting of Mandate's query engine and cannot be changed", name)
	}
	if _, ok := s.params[n]; !ok && !strings.Contains(n, ".") {
		return pgwire.Errorf("42704", "unrecognized configuration parameter %q", name)
	}
	if readOnlyParams[n] {
		return pgwire.Errorf("55P02", "parameter %q cannot be changed", name)
	}
	switch n {
	case "client_encoding":
		v := strings.ToUpper(strings.ReplaceAll(value, "-", ""))
		if v != "UTF8" && v != "UNICODE" {
			return pgwire.Errorf("22023", "client_encoding %q is not supported: Mandate speaks UTF8 only", value)
		}
		value = "UTF8"
	case "timezone":
		if _, err := time.LoadLocation(value); err != nil && !strings.EqualFold(value, "utc") {
			return pgwire.Errorf("22023", "invalid value for parameter \"TimeZone\": %q", value)
		}
	}
	s.params[n] = value
	if r, ok := reported[n]; ok {
		s.changed[r] = value
	}
	return nil
}

func tagOnly(s *Session, tag string, fn func() error) *stmt {
	return &stmt{s: s, run: func(context.Context, []pgwire.Param, pgwire.RowWriter) (string, error) {
		if fn != nil {
			if err := fn(); err != nil {
				return "", err
			}
		}
		return tag, nil
	}}
}

func notSupported(what string) error {
	return &pgwire.Error{Severity: "ERROR", Code: "0A000", Message: what + " is not supported by Mandate",
		Hint: "Mandate accepts governance statements (GRANT, CREATE CONNECTION, SHOW GRANTS, ...) and session statements (SET, SHOW, BEGIN, SELECT version())"}
}

// pgStatement handles everything that is not a governance statement with
// the PostgreSQL grammar.
func (s *Session) pgStatement(ctx context.Context, text string, paramOIDs []uint32) (*stmt, error) {
	res, err := pg.Parse(text)
	if err != nil {
		if kw, ok := systables.EngineStatement(text); ok {
			return nil, notSupported(kw)
		}
		return nil, err
	}
	if len(res.Stmts) != 1 {
		return nil, pgwire.Errorf("42601", "expected one statement")
	}
	n := res.Stmts[0].Stmt
	switch x := n.Node.(type) {
	case *pg.Node_VariableSetStmt:
		return s.setStmt(x.VariableSetStmt)
	case *pg.Node_VariableShowStmt:
		return s.showStmt(x.VariableShowStmt.Name)
	case *pg.Node_TransactionStmt:
		return s.txStmt(x.TransactionStmt)
	case *pg.Node_DiscardStmt:
		if x.DiscardStmt.Target != pg.DiscardMode_DISCARD_ALL {
			return tagOnly(s, "DISCARD", nil), nil // no plans, sequences or temp objects to drop
		}
		st := tagOnly(s, "DISCARD ALL", nil)
		st.run = func(context.Context, []pgwire.Param, pgwire.RowWriter) (string, error) {
			if s.inTransactionBlock(st) {
				return "", pgwire.Errorf("25001", "DISCARD ALL cannot run inside a transaction block")
			}
			s.resetAll()
			return "DISCARD ALL", nil
		}
		st.dealloc, st.deallocAll = true, true
		return st, nil
	case *pg.Node_DeallocateStmt:
		d := x.DeallocateStmt
		tag := "DEALLOCATE"
		if d.Isall || d.Name == "" {
			tag = "DEALLOCATE ALL"
		}
		st := tagOnly(s, tag, nil)
		st.dealloc, st.deallocName, st.deallocAll = true, d.Name, d.Isall || d.Name == ""
		return st, nil
	case *pg.Node_SelectStmt:
		// SELECTs over system tables run on the query engine; constant
		// ones (drivers' SELECT 1, version(), ...) are answered here, and
		// go to the engine only when this evaluator cannot answer them.
		if s.wantsSystemQuery(x.SelectStmt) {
			return s.systemQuery(ctx, text, res, paramOIDs)
		}
		st, err := s.selectStmt(x.SelectStmt, paramOIDs)
		if pe, ok := err.(*pgwire.Error); ok && pe.Code == "0A000" && s.f.sys != nil {
			return s.systemQuery(ctx, text, res, paramOIDs)
		}
		return st, err
	}
	kind := strings.TrimSuffix(strings.TrimPrefix(fmt.Sprintf("%T", n.Node), "*pg_query.Node_"), "Stmt")
	return nil, notSupported("this statement (" + splitCamel(kind) + ")")
}

func (s *Session) setStmt(x *pg.VariableSetStmt) (*stmt, error) {
	name := strings.ToLower(x.Name)
	switch x.Kind {
	case pg.VariableSetKind_VAR_SET_MULTI: // SET TRANSACTION ..., SET SESSION CHARACTERISTICS ...
		return tagOnly(s, "SET", nil), nil
	case pg.VariableSetKind_VAR_RESET_ALL:
		return tagOnly(s, "RESET", func() error { s.resetAll(); return nil }), nil
	case pg.VariableSetKind_VAR_RESET, pg.VariableSetKind_VAR_SET_DEFAULT:
		tag := "SET"
		if x.Kind == pg.VariableSetKind_VAR_RESET {
			tag = "RESET"
		}
		return tagOnly(s, tag, func() error {
			s.mu.Lock()
			v, ok := s.resetTo[name]
			s.mu.Unlock()
			if !ok {
				v = ""
			}
			return s.setParam(name, v)
		}), nil
	case pg.VariableSetKind_VAR_SET_VALUE:
		var vals []string
		for _, a := range x.Args {
			v, err := constString(a)
			if err != nil {
				return nil, err
			}
			vals = append(vals, v)
		}
		value := strings.Join(vals, ", ")
		if name == "" {
			return nil, pgwire.Errorf("42601", "SET needs a parameter name")
		}
		return tagOnly(s, "SET", func() error { return s.setParam(name, value) }), nil
	}
	return tagOnly(s, "SET", nil), nil
}

// splitCamel turns "CreateRole" into "CREATE ROLE".
func splitCamel(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func constString(n *pg.Node) (string, error) {
	switch v := n.Node.(type) {
	case *pg.Node_AConst:
		switch c := v.AConst.Val.(type) {
		case *pg.A_Const_Sval:
			return c.Sval.Sval, nil
		case *pg.A_Const_Ival:
			return strconv.Itoa(int(c.Ival.Ival)), nil
		case *pg.A_Const_Fval:
			return c.Fval.Fval, nil
		case *pg.A_Const_Boolval:
			return map[bool]string{true: "on", false: "off"}[c.Boolval.Boolval], nil
		}
	case *pg.Node_TypeCast:
		return constString(v.TypeCast.Arg)
	}
	return "", pgwire.Errorf("22023", "SET takes literal values")
}

func (s *Session) showStmt(name string) (*stmt, error) {
	n := strings.ToLower(name)
	if n == "all" {
		return &stmt{s: s, cols: textCols("name", "setting", "description"), run: func(_ context.Context, _ []pgwire.Param, w pgwire.RowWriter) (string, error) {
			s.mu.Lock()
			snap := make(map[string]string, len(s.params))
			for k, v := range s.params {
				snap[k] = v
			}
			s.mu.Unlock()
			keys := sortedKeys(snap)
			for _, k := range keys {
				if err := w.WriteRow([]any{k, snap[k], ""}); err != nil {
					return "", err
				}
			}
			return fmt.Sprintf("SHOW %d", len(keys)), nil
		}}, nil
	}
	col := n
	if r, ok := reported[n]; ok {
		col = r
	}
	if _, ok := s.getParam(n); !ok {
		return nil, pgwire.Errorf("42704", "unrecognized configuration parameter %q", name)
	}
	return &stmt{s: s, cols: textCols(col), run: func(_ context.Context, _ []pgwire.Param, w pgwire.RowWriter) (string, error) {
		v, _ := s.getParam(n)
		return "SHOW", w.WriteRow([]any{v})
	}}, nil
}

// value is one evaluated select-list item.
type value struct {
	oid uint32
	v   any
}

type evalFn func(ctx context.Context, params []pgwire.Param) (value, error)

// selectStmt evaluates SELECTs without FROM over constants and session
// functions (version(), current_user, current_setting(...), ...), which
// drivers and tools send on connect. SELECTs over system tables come with
// the system-tables issue.
func (s *Session) selectStmt(x *pg.SelectStmt, paramOIDs []uint32) (*stmt, error) {
	if len(x.FromClause) > 0 || x.WhereClause != nil || len(x.GroupClause) > 0 || x.WithClause != nil ||
		x.Op != pg.SetOperation_SETOP_NONE || len(x.ValuesLists) > 0 || x.IntoClause != nil {
		return nil, notSupported("SELECT with FROM, WHERE, WITH or set operations")
	}
	var params []uint32
	var cols []pgwire.Column
	var fns []evalFn
	for _, t := range x.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			return nil, notSupported("this select list")
		}
		name, fn, oid, err := s.expr(rt.Val, paramOIDs, &params)
		if err != nil {
			return nil, err
		}
		if rt.Name != "" {
			name = rt.Name
		}
		cols = append(cols, pgwire.Column{Name: name, TypeOID: oid})
		fns = append(fns, fn)
	}
	return &stmt{s: s, cols: cols, params: params, run: func(ctx context.Context, ps []pgwire.Param, w pgwire.RowWriter) (string, error) {
		row := make([]any, len(fns))
		for i, f := range fns {
			v, err := f(ctx, ps)
			if err != nil {
				return "", err
			}
			row[i] = v.v
		}
		if x.LimitCount != nil {
			if c := x.LimitCount.GetAConst(); c != nil && c.GetIval() != nil && c.GetIval().Ival == 0 {
				return "SELECT 0", nil
			}
		}
		return "SELECT 1", w.WriteRow(row)
	}}, nil
}

func constVal(oid uint32, v any) evalFn {
	return func(context.Context, []pgwire.Param) (value, error) { return value{oid, v}, nil }
}

func (s *Session) expr(n *pg.Node, paramOIDs []uint32, params *[]uint32) (string, evalFn, uint32, error) {
	switch v := n.Node.(type) {
	case *pg.Node_AConst:
		c := v.AConst
		if c.Isnull {
			return "?column?", constVal(oidText, nil), oidText, nil
		}
		switch x := c.Val.(type) {
		case *pg.A_Const_Ival:
			return "?column?", constVal(oidInt4, int32(x.Ival.Ival)), oidInt4, nil
		case *pg.A_Const_Fval:
			f, err := strconv.ParseFloat(x.Fval.Fval, 64)
			if err != nil {
				i, err2 := strconv.ParseInt(x.Fval.Fval, 10, 64)
				if err2 != nil {
					return "", nil, 0, pgwire.Errorf("22003", "value out of range: %s", x.Fval.Fval)
				}
				return "?column?", constVal(oidInt8, i), oidInt8, nil
			}
			return "?column?", constVal(oidFloat8, f), oidFloat8, nil
		case *pg.A_Const_Sval:
			return "?column?", constVal(oidText, x.Sval.Sval), oidText, nil
		case *pg.A_Const_Boolval:
			return "bool", constVal(oidBool, x.Boolval.Boolval), oidBool, nil
		}
	case *pg.Node_ParamRef:
		i := int(v.ParamRef.Number) - 1
		if i < 0 || i > 64 {
			return "", nil, 0, pgwire.Errorf("42P02", "there is no parameter $%d", i+1)
		}
		for len(*params) <= i {
			oid := uint32(oidText)
			if len(*params) < len(paramOIDs) && paramOIDs[len(*params)] != 0 {
				oid = paramOIDs[len(*params)]
			}
			*params = append(*params, oid)
		}
		return "?column?", func(_ context.Context, ps []pgwire.Param) (value, error) {
			return decodeParam(ps[i], (*params)[i])
		}, oidText, nil
	case *pg.Node_TypeCast:
		name, fn, _, err := s.expr(v.TypeCast.Arg, paramOIDs, params)
		if err != nil {
			return "", nil, 0, err
		}
		tn := typeName(v.TypeCast.TypeName)
		// $n::type: an untyped parameter takes the cast's type, as in PostgreSQL.
		if pr := v.TypeCast.Arg.GetParamRef(); pr != nil {
			if i := int(pr.Number) - 1; i < len(*params) && (i >= len(paramOIDs) || paramOIDs[i] == 0) {
				if oid, _, err := castTo(tn); err == nil {
					(*params)[i] = oid
				}
			}
		}
		if name == "?column?" {
			name = tn
		}
		oid, conv, err := castTo(tn)
		if err != nil {
			return "", nil, 0, err
		}
		return name, func(ctx context.Context, ps []pgwire.Param) (value, error) {
			x, err := fn(ctx, ps)
			if err != nil || x.v == nil {
				return value{oid, nil}, err
			}
			out, err := conv(x.v)
			return value{oid, out}, err
		}, oid, nil
	case *pg.Node_SqlvalueFunction:
		return s.sqlValueFunction(v.SqlvalueFunction.Op)
	case *pg.Node_FuncCall:
		return s.funcCall(v.FuncCall, paramOIDs, params)
	}
	return "", nil, 0, notSupported("this expression in SELECT")
}

// decodeParam turns a bound parameter into a value of its declared type.
func decodeParam(p pgwire.Param, oid uint32) (value, error) {
	if p.Value == nil {
		return value{oid, nil}, nil
	}
	if p.Format == 0 {
		return value{oidText, string(p.Value)}, nil // text: casts convert it
	}
	b := p.Value
	bad := func() (value, error) {
		return value{}, pgwire.Errorf("22P03", "incorrect binary data format in bind parameter (type OID %d, %d bytes)", oid, len(b))
	}
	switch oid {
	case oidText, 1043, 19:
		return value{oidText, string(b)}, nil
	case oidInt4:
		if len(b) != 4 {
			return bad()
		}
		return value{oidInt4, int32(binary.BigEndian.Uint32(b))}, nil
	case oidInt8:
		if len(b) != 8 {
			return bad()
		}
		return value{oidInt8, int64(binary.BigEndian.Uint64(b))}, nil
	case oidBool:
		if len(b) != 1 {
			return bad()
		}
		return value{oidBool, b[0] != 0}, nil
	case oidFloat8:
		if len(b) != 8 {
			return bad()
		}
		return value{oidFloat8, math.Float64frombits(binary.BigEndian.Uint64(b))}, nil
	}
	return value{}, notSupported(fmt.Sprintf("binary parameters of type OID %d", oid))
}

func typeName(t *pg.TypeName) string {
	var parts []string
	for _, n := range t.Names {
		if sv := n.GetString_(); sv != nil && sv.Sval != "pg_catalog" {
			parts = append(parts, sv.Sval)
		}
	}
	return strings.Join(parts, ".")
}

func castTo(tn string) (uint32, func(any) (any, error), error) {
	str := func(v any) string { return fmt.Sprint(v) }
	switch tn {
	case "text", "varchar", "name", "bpchar", "regclass", "regtype":
		return oidText, func(v any) (any, error) { return str(v), nil }, nil
	case "int4", "int", "integer", "int2", "smallint":
		return oidInt4, func(v any) (any, error) {
			switch x := v.(type) {
			case int32:
				return x, nil
			case int64:
				if x < math.MinInt32 || x > math.MaxInt32 {
					return nil, pgwire.Errorf("22003", "integer out of range")
				}
				return int32(x), nil
			}
			i, err := strconv.ParseInt(strings.TrimSpace(str(v)), 10, 32)
			if err != nil {
				return nil, pgwire.Errorf("22P02", "invalid input syntax for type integer: %q", str(v))
			}
			return int32(i), nil
		}, nil
	case "int8", "bigint":
		return oidInt8, func(v any) (any, error) {
			switch x := v.(type) {
			case int32:
				return int64(x), nil
			case int64:
				return x, nil
			}
			i, err := strconv.ParseInt(strings.TrimSpace(str(v)), 10, 64)
			if err != nil {
				return nil, pgwire.Errorf("22P02", "invalid input syntax for type bigint: %q", str(v))
			}
			return i, nil
		}, nil
	case "bool", "boolean":
		return oidBool, func(v any) (any, error) {
			if b, ok := v.(bool); ok {
				return b, nil
			}
			switch strings.ToLower(str(v)) {
			case "t", "true", "on", "yes", "1":
				return true, nil
			case "f", "false", "off", "no", "0":
				return false, nil
			}
			return nil, pgwire.Errorf("22P02", "invalid input syntax for type boolean: %q", str(v))
		}, nil
	}
	return 0, nil, notSupported("cast to " + tn)
}

func (s *Session) sqlValueFunction(op pg.SQLValueFunctionOp) (string, evalFn, uint32, error) {
	switch op {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_USER, pg.SQLValueFunctionOp_SVFOP_USER, pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:
		return "current_user", constVal(oidText, s.user), oidText, nil
	case pg.SQLValueFunctionOp_SVFOP_SESSION_USER:
		return "session_user", constVal(oidText, s.user), oidText, nil
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:
		return "current_catalog", constVal(oidText, s.catalog), oidText, nil
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
		return "current_schema", constVal(oidText, "public"), oidText, nil
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N,
		pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		return "current_timestamp", func(context.Context, []pgwire.Param) (value, error) {
			return value{oidTstz, time.Now().UTC()}, nil
		}, oidTstz, nil
	}
	return "", nil, 0, notSupported("this SQL value function")
}

func (s *Session) funcCall(f *pg.FuncCall, paramOIDs []uint32, params *[]uint32) (string, evalFn, uint32, error) {
	var name string
	for i, n := range f.Funcname {
		sv := n.GetString_()
		if sv == nil {
			continue
		}
		if i < len(f.Funcname)-1 {
			if sv.Sval != "pg_catalog" {
				return "", nil, 0, pgwire.Errorf("3F000", "schema %q does not exist", sv.Sval)
			}
			continue
		}
		name = strings.ToLower(sv.Sval)
	}
	args := make([]evalFn, len(f.Args))
	for i, a := range f.Args {
		_, fn, _, err := s.expr(a, paramOIDs, params)
		if err != nil {
			return "", nil, 0, err
		}
		args[i] = fn
	}
	argStr := func(ctx context.Context, ps []pgwire.Param, i int) (string, bool, error) {
		v, err := args[i](ctx, ps)
		if err != nil || v.v == nil {
			return "", false, err
		}
		return fmt.Sprint(v.v), true, nil
	}
	want := func(n int) error {
		if len(args) != n {
			return pgwire.Errorf("42883", "function %s with %d arguments does not exist", name, len(args))
		}
		return nil
	}
	switch name {
	case "version":
		if err := want(0); err != nil {
			return "", nil, 0, err
		}
		v := fmt.Sprintf("PostgreSQL %s (Mandate) on x86_64-pc-linux-gnu, compiled by Go, 64-bit", s.f.version)
		return name, constVal(oidText, v), oidText, nil
	case "current_user", "session_user", "user":
		return name, constVal(oidText, s.user), oidText, nil
	case "current_database", "current_catalog":
		return name, constVal(oidText, s.catalog), oidText, nil
	case "current_schema":
		return name, constVal(oidText, "public"), oidText, nil
	case "pg_backend_pid":
		return name, constVal(oidInt4, int32(0)), oidInt4, nil
	case "now", "transaction_timestamp", "statement_timestamp", "clock_timestamp":
		return name, func(context.Context, []pgwire.Param) (value, error) { return value{oidTstz, time.Now().UTC()}, nil }, oidTstz, nil
	case "current_setting":
		if len(args) < 1 || len(args) > 2 {
			return "", nil, 0, pgwire.Errorf("42883", "function current_setting with %d arguments does not exist", len(args))
		}
		return name, func(ctx context.Context, ps []pgwire.Param) (value, error) {
			n, ok, err := argStr(ctx, ps, 0)
			if err != nil || !ok {
				return value{oidText, nil}, err
			}
			v, found := s.getParam(n)
			if !found {
				if len(args) == 2 {
					return value{oidText, nil}, nil
				}
				return value{}, pgwire.Errorf("42704", "unrecognized configuration parameter %q", n)
			}
			return value{oidText, v}, nil
		}, oidText, nil
	case "set_config":
		if err := want(3); err != nil {
			return "", nil, 0, err
		}
		return name, func(ctx context.Context, ps []pgwire.Param) (value, error) {
			n, _, err := argStr(ctx, ps, 0)
			if err != nil {
				return value{}, err
			}
			v, _, err := argStr(ctx, ps, 1)
			if err != nil {
				return value{}, err
			}
			if err := s.setParam(n, v); err != nil {
				return value{}, err
			}
			return value{oidText, v}, nil
		}, oidText, nil
	case "quote_ident":
		if err := want(1); err != nil {
			return "", nil, 0, err
		}
		return name, func(ctx context.Context, ps []pgwire.Param) (value, error) {
			v, ok, err := argStr(ctx, ps, 0)
			if err != nil || !ok {
				return value{oidText, nil}, err
			}
			return value{oidText, catalog.QuoteIdent(v)}, nil
		}, oidText, nil
	}
	return "", nil, 0, &pgwire.Error{Severity: "ERROR", Code: "0A000", Message: fmt.Sprintf("function %s() is not supported by Mandate", name)}
}
