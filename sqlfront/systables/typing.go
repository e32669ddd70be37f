package systables

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/mandatehq/mandate/catalog"
)

// Expressions: each is written for the engine with its PostgreSQL type
// (see deparse.go). The rules are PostgreSQL's, for the types system
// tables carry: untyped literals take their context's type, integer
// arithmetic stays in its type and fails on overflow (22003), division
// and modulo by zero fail (22012), int / int truncates, sum of integers
// is bigint, and so on.

// raise is an engine expression that fails the query with a PostgreSQL
// error (see catalog.RaisePrefix).
func raise(code, msg string) string {
	return "error(" + quoteString(catalog.RaisePrefix+code+":"+msg) + ")"
}

// raiseExpr is raise with a message computed by the engine (msgSQL is an
// engine expression of type VARCHAR).
func raiseExpr(code, msgSQL string) string {
	return "error(" + quoteString(catalog.RaisePrefix+code+":") + " || " + msgSQL + ")"
}

// --- type helpers ---------------------------------------------------------

func isIntOID(t uint32) bool { return t == oidInt2 || t == oidInt4 || t == oidInt8 }
func isFloatOID(t uint32) bool {
	return t == oidFloat4 || t == oidFloat8
}
func isNumberOID(t uint32) bool { return isIntOID(t) || isFloatOID(t) || t == oidNumeric }
func isStringOID(t uint32) bool {
	switch t {
	case oidText, oidVarchar, oidBpchar, oidName, oidChar:
		return true
	}
	return false
}
func isJSONOID(t uint32) bool { return t == oidJSON || t == oidJSONB }
func isTimeOID(t uint32) bool {
	return t == oidDate || t == oidTimestamp || t == oidTimestamptz
}

// numRank orders the numeric types by PostgreSQL's implicit casts.
func numRank(t uint32) int {
	switch t {
	case oidInt2:
		return 1
	case oidInt4:
		return 2
	case oidInt8:
		return 3
	case oidNumeric:
		return 4
	case oidFloat4:
		return 5
	case oidFloat8:
		return 6
	}
	return 0
}

// commonType is the type two branches of a CASE, UNION or VALUES column
// resolve to (0 when not known).
func commonType(a, b uint32) uint32 {
	switch {
	case a == b:
		return a
	case a == 0 || b == 0:
		return 0
	case a == oidUnknown:
		return b
	case b == oidUnknown:
		return a
	case isNumberOID(a) && isNumberOID(b):
		if numRank(a) > numRank(b) {
			return a
		}
		return b
	case isStringOID(a) && isStringOID(b):
		return oidText
	case isJSONOID(a) && isJSONOID(b):
		return oidJSONB
	case isTimeOID(a) && isTimeOID(b):
		if a == oidTimestamptz || b == oidTimestamptz {
			return oidTimestamptz
		}
		return oidTimestamp
	}
	return 0
}

// arithType is the result type of +, -, * between two numbers.
func arithType(a, b uint32) uint32 {
	if a == oidFloat4 && b == oidFloat4 {
		return oidFloat4
	}
	if isFloatOID(a) || isFloatOID(b) {
		return oidFloat8
	}
	if numRank(a) > numRank(b) {
		return a
	}
	return b
}

var arrayOIDs = map[uint32]uint32{oidBool: 1000, oidBytea: 1001, oidInt2: 1005, oidInt4: 1007, oidText: 1009,
	oidVarchar: 1015, oidInt8: 1016, oidFloat4: 1021, oidFloat8: 1022, oidOID: 1028, oidTimestamp: 1115,
	oidDate: 1182, oidTime: 1183, oidTimestamptz: 1185, oidInterval: 1187, oidNumeric: 1231, oidUUID: 2951,
	oidJSON: 199, oidJSONB: 3807, oidBpchar: 1014, oidName: 1003}

func arrayOf(t uint32) uint32 { return arrayOIDs[t] }

func isArrayOID(t uint32) bool {
	for _, a := range arrayOIDs {
		if a == t {
			return true
		}
	}
	return false
}

func elemOID(t uint32) uint32 {
	for e, a := range arrayOIDs {
		if a == t {
			return e
		}
	}
	return 0
}

// typeDisplay is the type's name in PostgreSQL's messages.
func typeDisplay(t uint32) string {
	if t == oidUnknown {
		return "unknown"
	}
	for _, p := range pgTypes {
		if p.oid == t {
			return p.format
		}
	}
	if e := elemOID(t); e != 0 {
		return typeDisplay(e) + "[]"
	}
	return "unknown"
}

// pgTypeOIDs maps type names (as pg_query gives them, without
// pg_catalog) to OIDs.
var pgTypeOIDs = map[string]uint32{
	"bool": oidBool, "boolean": oidBool, "int2": oidInt2, "smallint": oidInt2, "int4": oidInt4, "int": oidInt4,
	"integer": oidInt4, "int8": oidInt8, "bigint": oidInt8, "float4": oidFloat4, "real": oidFloat4, "float8": oidFloat8,
	"double precision": oidFloat8, "numeric": oidNumeric, "decimal": oidNumeric, "text": oidText, "varchar": oidVarchar,
	"character varying": oidVarchar, "bpchar": oidBpchar, "character": oidBpchar, "char": oidChar, "name": oidName,
	"bytea": oidBytea, "date": oidDate, "time": oidTime, "timestamp": oidTimestamp, "timestamptz": oidTimestamptz,
	"interval": oidInterval, "uuid": oidUUID, "json": oidJSON, "jsonb": oidJSONB, "oid": oidOID, "xid": oidInt8,
	"regproc": oidText, "unknown": oidText,
}

// engineType is the engine's name of a PostgreSQL type.
func engineType(t uint32) string {
	switch t {
	case oidBool:
		return "BOOLEAN"
	case oidInt2:
		return "SMALLINT"
	case oidInt4:
		return "INTEGER"
	case oidInt8, oidOID:
		return "BIGINT"
	case oidFloat4:
		return "REAL"
	case oidFloat8:
		return "DOUBLE"
	case oidNumeric:
		return "DECIMAL(38,18)"
	case oidBytea:
		return "BLOB"
	case oidDate:
		return "DATE"
	case oidTime:
		return "TIME"
	case oidTimestamp:
		return "TIMESTAMP"
	case oidTimestamptz:
		return "TIMESTAMPTZ"
	case oidInterval:
		return "INTERVAL"
	case oidUUID:
		return "UUID"
	case oidJSON, oidJSONB:
		return "JSON"
	}
	if e := elemOID(t); e != 0 {
		return engineType(e) + "[]"
	}
	return "VARCHAR"
}

// --- expressions ----------------------------------------------------------

func (d *deparser) exprs(ns []*pg.Node) ([]ex, error) {
	out := make([]ex, len(ns))
	for i, n := range ns {
		e, err := d.expr(n)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}

func joinSQL(es []ex) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.sql
	}
	return strings.Join(parts, ", ")
}

// maxEngineSQL bounds the engine's text of one expression and of the
// statement. PostgreSQL's semantics repeat some operands (a divisor is
// tested for zero, then divided by), so nesting could grow the text
// exponentially; each step grows it by a bounded factor, so checking
// every expression bounds the work.
const maxEngineSQL = 4 << 20

func tooComplex() error {
	return errorf("54001", "statement too complex: its translation for the query engine exceeds %d MiB", maxEngineSQL>>20)
}

func (d *deparser) expr(n *pg.Node) (ex, error) {
	e, err := d.expr1(n)
	if err == nil && len(e.sql) > maxEngineSQL {
		return ex{}, tooComplex()
	}
	return e, err
}

func (d *deparser) expr1(n *pg.Node) (ex, error) {
	if n == nil || n.Node == nil {
		return ex{sql: "NULL", t: oidUnknown, null: true}, nil
	}
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef:
		if isStar(n) {
			return ex{}, notSupported("* in this place")
		}
		return d.columnRef(x.ColumnRef)
	case *pg.Node_AConst:
		return d.constant(x.AConst)
	case *pg.Node_ParamRef:
		return d.param(int(x.ParamRef.Number))
	case *pg.Node_TypeCast:
		e, err := d.expr(x.TypeCast.Arg)
		if err != nil {
			return ex{}, err
		}
		return d.cast(e, x.TypeCast.TypeName)
	case *pg.Node_AExpr:
		return d.aexpr(x.AExpr)
	case *pg.Node_BoolExpr:
		return d.boolOp(x.BoolExpr)
	case *pg.Node_NullTest:
		e, err := d.expr(x.NullTest.Arg)
		if err != nil {
			return ex{}, err
		}
		if x.NullTest.Nulltesttype == pg.NullTestType_IS_NOT_NULL {
			return ex{sql: "(" + e.sql + " IS NOT NULL)", t: oidBool}, nil
		}
		return ex{sql: "(" + e.sql + " IS NULL)", t: oidBool}, nil
	case *pg.Node_BooleanTest:
		e, err := d.expr(x.BooleanTest.Arg)
		if err != nil {
			return ex{}, err
		}
		e = d.coerce(e, oidBool)
		var s string
		switch x.BooleanTest.Booltesttype {
		case pg.BoolTestType_IS_TRUE:
			s = "(%s IS TRUE)"
		case pg.BoolTestType_IS_NOT_TRUE:
			s = "(%s IS NOT TRUE)"
		case pg.BoolTestType_IS_FALSE:
			s = "(%s IS FALSE)"
		case pg.BoolTestType_IS_NOT_FALSE:
			s = "(%s IS NOT FALSE)"
		case pg.BoolTestType_IS_UNKNOWN:
			s = "(%s IS NULL)"
		default:
			s = "(%s IS NOT NULL)"
		}
		return ex{sql: fmt.Sprintf(s, e.sql), t: oidBool}, nil
	case *pg.Node_SubLink:
		return d.subLink(x.SubLink)
	case *pg.Node_CaseExpr:
		return d.caseExpr(x.CaseExpr)
	case *pg.Node_CoalesceExpr:
		args, err := d.exprs(x.CoalesceExpr.Args)
		if err != nil {
			return ex{}, err
		}
		t := d.unify(args)
		return ex{sql: "coalesce(" + joinSQL(args) + ")", t: t}, nil
	case *pg.Node_MinMaxExpr:
		args, err := d.exprs(x.MinMaxExpr.Args)
		if err != nil {
			return ex{}, err
		}
		t := d.unify(args)
		fn := "greatest"
		if x.MinMaxExpr.Op == pg.MinMaxOp_IS_LEAST {
			fn = "least"
		}
		return ex{sql: fn + "(" + joinSQL(args) + ")", t: t}, nil
	case *pg.Node_FuncCall:
		return d.funcCall(x.FuncCall)
	case *pg.Node_AIndirection:
		return d.indirection(x.AIndirection)
	case *pg.Node_AArrayExpr:
		args, err := d.exprs(x.AArrayExpr.Elements)
		if err != nil {
			return ex{}, err
		}
		if len(args) == 0 {
			return ex{sql: "[]", t: 0}, nil
		}
		t := d.unify(args)
		return ex{sql: "[" + joinSQL(args) + "]", t: arrayOf(t)}, nil
	case *pg.Node_RowExpr:
		args, err := d.exprs(x.RowExpr.Args)
		if err != nil {
			return ex{}, err
		}
		return ex{sql: "row(" + joinSQL(args) + ")"}, nil
	case *pg.Node_NamedArgExpr:
		e, err := d.expr(x.NamedArgExpr.Arg)
		if err != nil {
			return ex{}, err
		}
		return ex{sql: quoteIdent(x.NamedArgExpr.Name) + " := " + e.sql, t: e.t}, nil
	case *pg.Node_CollateClause:
		return d.expr(x.CollateClause.Arg)
	}
	return ex{}, notSupported(splitCamel(nodeName(n.ProtoReflect())))
}

// unify coerces untyped literals among args to the common type of the
// others, in place, and returns that type.
func (d *deparser) unify(args []ex) uint32 {
	t := uint32(oidUnknown)
	known := true
	for _, a := range args {
		if a.t == 0 {
			known = false
			continue
		}
		t = commonType(t, a.t)
	}
	if !known && t == oidUnknown {
		return 0
	}
	if t == oidUnknown {
		t = oidText
	}
	for i := range args {
		args[i] = d.coerce(args[i], t)
	}
	if !known {
		return 0
	}
	return t
}

func (d *deparser) constant(c *pg.A_Const) (ex, error) {
	if c.Isnull {
		return ex{sql: "NULL", t: oidUnknown, null: true}, nil
	}
	switch v := c.Val.(type) {
	case *pg.A_Const_Ival:
		s := strconv.FormatInt(int64(v.Ival.Ival), 10)
		if v.Ival.Ival < 0 {
			s = "(" + s + ")"
		}
		return ex{sql: s, t: oidInt4, num: strconv.FormatInt(int64(v.Ival.Ival), 10)}, nil
	case *pg.A_Const_Fval:
		return numericLiteral(v.Fval.Fval)
	case *pg.A_Const_Sval:
		s := v.Sval.Sval
		return ex{sql: quoteString(s), t: oidUnknown, lit: &s}, nil
	case *pg.A_Const_Boolval:
		if v.Boolval.Boolval {
			return ex{sql: "true", t: oidBool}, nil
		}
		return ex{sql: "false", t: oidBool}, nil
	}
	return ex{}, notSupported("this constant")
}

// numericLiteral types a number PostgreSQL's scanner did not make an
// int4: an integer that fits int8 is bigint, anything else numeric with
// the scale written.
func numericLiteral(f string) (ex, error) {
	if !strings.ContainsAny(f, ".eE") {
		if i, err := strconv.ParseInt(f, 10, 64); err == nil {
			s := strconv.FormatInt(i, 10)
			if i < 0 {
				s = "(" + s + ")"
			}
			if i == int64(int32(i)) {
				return ex{sql: "CAST(" + s + " AS INTEGER)", t: oidInt4, num: f}, nil
			}
			return ex{sql: "CAST(" + s + " AS BIGINT)", t: oidInt8, num: f}, nil
		}
	}
	r, ok := new(big.Rat).SetString(f)
	if !ok {
		return ex{}, errorf("22P02", "invalid input syntax for type numeric: %q", f)
	}
	return ex{sql: decimalSQL(r, numericScale(f)), t: oidNumeric, num: f}, nil
}

// numericScale is the display scale PostgreSQL gives a numeric's text.
func numericScale(f string) int {
	f = strings.TrimSpace(strings.ToLower(f))
	exp := 0
	if i := strings.IndexByte(f, 'e'); i >= 0 {
		exp, _ = strconv.Atoi(f[i+1:])
		f = f[:i]
	}
	scale := 0
	if i := strings.IndexByte(f, '.'); i >= 0 {
		scale = len(f) - i - 1
	}
	return max(scale-exp, 0)
}

// decimalSQL writes an exact number with scale digits as the engine's
// DECIMAL (or DOUBLE beyond its 38 digits).
func decimalSQL(r *big.Rat, scale int) string {
	text := r.FloatString(scale)
	digits := len(strings.TrimLeft(strings.TrimPrefix(strings.Replace(text, ".", "", 1), "-"), "0"))
	width := max(digits, scale+1, 1)
	if width > 38 {
		return "CAST(" + quoteString(text) + " AS DOUBLE)"
	}
	return fmt.Sprintf("CAST(%s AS DECIMAL(%d,%d))", quoteString(text), width, scale)
}

// coerce gives an untyped literal or NULL the type t (a no-op for typed
// expressions: the engine casts implicitly where PostgreSQL does).
func (d *deparser) coerce(e ex, t uint32) ex {
	if t == 0 || t == oidUnknown {
		return e
	}
	if e.null {
		return ex{sql: "CAST(NULL AS " + engineType(t) + ")", t: t}
	}
	if e.param > 0 {
		if d.params[e.param-1] == 0 {
			d.params[e.param-1] = t
		}
		return ex{sql: fmt.Sprintf("CAST($%d AS %s)", e.param, engineType(d.params[e.param-1])), t: d.params[e.param-1]}
	}
	if e.lit == nil {
		return e
	}
	out, err := d.literal(*e.lit, t)
	if err != nil {
		// The conversion fails when the query runs, as in PostgreSQL
		// (where it fails when the statement is analysed).
		code, msg := "22P02", err.Error()
		if we, ok := err.(*wireErr); ok {
			code = we.code
		} else if pe, ok := err.(*pgwireError); ok {
			code, msg = pe.Code, pe.Message
		}
		return ex{sql: "CAST(" + raise(code, msg) + " AS " + engineType(t) + ")", t: t}
	}
	return out
}

// wireErr is an error with a SQLSTATE raised by the engine at run time.
type wireErr struct{ code, msg string }

func (e *wireErr) Error() string { return e.msg }

func invalidInput(t uint32, s string) error {
	code := "22P02"
	if t == oidInterval || t == oidTime {
		code = "22007" // invalid_datetime_format
	}
	return &wireErr{code, fmt.Sprintf("invalid input syntax for type %s: %q", typeDisplay(t), s)}
}

// boolOp writes AND, OR and NOT.
func (d *deparser) boolOp(b *pg.BoolExpr) (ex, error) {
	args, err := d.exprs(b.Args)
	if err != nil {
		return ex{}, err
	}
	for i := range args {
		if args[i].t != 0 && args[i].t != oidBool && args[i].t != oidUnknown {
			kw := map[pg.BoolExprType]string{pg.BoolExprType_AND_EXPR: "AND", pg.BoolExprType_OR_EXPR: "OR",
				pg.BoolExprType_NOT_EXPR: "NOT"}[b.Boolop]
			return ex{}, errorf("42804", "argument of %s must be type boolean, not type %s", kw, typeDisplay(args[i].t))
		}
		args[i] = d.coerce(args[i], oidBool)
	}
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = a.sql
	}
	switch b.Boolop {
	case pg.BoolExprType_AND_EXPR:
		return ex{sql: "(" + strings.Join(parts, " AND ") + ")", t: oidBool}, nil
	case pg.BoolExprType_OR_EXPR:
		return ex{sql: "(" + strings.Join(parts, " OR ") + ")", t: oidBool}, nil
	}
	return ex{sql: "(NOT " + parts[0] + ")", t: oidBool}, nil
}

func (d *deparser) caseExpr(c *pg.CaseExpr) (ex, error) {
	var arg ex
	if c.Arg != nil {
		var err error
		if arg, err = d.expr(c.Arg); err != nil {
			return ex{}, err
		}
	}
	var conds, results []ex
	for _, w := range c.Args {
		cw := w.GetCaseWhen()
		if cw == nil {
			return ex{}, notSupported("this CASE")
		}
		cond, err := d.expr(cw.Expr)
		if err != nil {
			return ex{}, err
		}
		res, err := d.expr(cw.Result)
		if err != nil {
			return ex{}, err
		}
		conds = append(conds, cond)
		results = append(results, res)
	}
	var els ex
	hasElse := c.Defresult != nil
	if hasElse {
		var err error
		if els, err = d.expr(c.Defresult); err != nil {
			return ex{}, err
		}
		results = append(results, els)
	}
	t := d.unify(results)
	if c.Arg != nil {
		all := append([]ex{arg}, conds...)
		d.unify(all)
		arg, conds = all[0], all[1:]
	} else {
		for i := range conds {
			if conds[i].t != 0 && conds[i].t != oidBool && conds[i].t != oidUnknown {
				return ex{}, errorf("42804", "argument of CASE/WHEN must be type boolean, not type %s", typeDisplay(conds[i].t))
			}
			conds[i] = d.coerce(conds[i], oidBool)
		}
	}
	var b strings.Builder
	b.WriteString("(CASE")
	if c.Arg != nil {
		b.WriteString(" " + arg.sql)
	}
	for i := range conds {
		b.WriteString(" WHEN " + conds[i].sql + " THEN " + results[i].sql)
	}
	if hasElse {
		b.WriteString(" ELSE " + results[len(results)-1].sql)
	}
	b.WriteString(" END)")
	return ex{sql: b.String(), t: t}, nil
}

func (d *deparser) subLink(s *pg.SubLink) (ex, error) {
	sel := s.Subselect.GetSelectStmt()
	if sel == nil {
		return ex{}, notSupported("this subquery")
	}
	q, cols, err := d.selectStmt(sel, nil)
	if err != nil {
		return ex{}, err
	}
	switch s.SubLinkType {
	case pg.SubLinkType_EXISTS_SUBLINK:
		return ex{sql: "(EXISTS (" + q + "))", t: oidBool}, nil
	case pg.SubLinkType_EXPR_SUBLINK:
		if len(cols) != 1 || cols[0].name == "*" && len(cols) != 1 {
			if len(cols) > 1 {
				return ex{}, errorf("42601", "subquery must return only one column")
			}
		}
		t := uint32(0)
		if len(cols) == 1 && cols[0].name != "*" {
			t = cols[0].t
		}
		return ex{sql: "(" + q + ")", t: t}, nil
	case pg.SubLinkType_ARRAY_SUBLINK:
		t := uint32(0)
		if len(cols) == 1 {
			t = arrayOf(cols[0].t)
		}
		return ex{sql: "ARRAY(" + q + ")", t: t}, nil
	case pg.SubLinkType_ANY_SUBLINK, pg.SubLinkType_ALL_SUBLINK:
		test, err := d.expr(s.Testexpr)
		if err != nil {
			return ex{}, err
		}
		if len(cols) == 1 {
			test = d.coerce(test, cols[0].t)
		}
		op := opNameList(s.OperName)
		if op == "" {
			op = "="
		}
		if op == "!=" {
			op = "<>"
		}
		switch op {
		case "=", "<>", "<", ">", "<=", ">=":
		default:
			return ex{}, notSupported("operator " + op + " with ANY/ALL")
		}
		kw := "ANY"
		if s.SubLinkType == pg.SubLinkType_ALL_SUBLINK {
			kw = "ALL"
		}
		return ex{sql: fmt.Sprintf("(%s %s %s (%s))", test.sql, op, kw, q), t: oidBool}, nil
	}
	return ex{}, notSupported("this subquery")
}

// indirection writes subscripts (arrays are 1-based in both) and field
// selections.
func (d *deparser) indirection(ind *pg.A_Indirection) (ex, error) {
	e, err := d.expr(ind.Arg)
	if err != nil {
		return ex{}, err
	}
	sql, t := "("+e.sql+")", e.t
	for _, i := range ind.Indirection {
		switch x := i.Node.(type) {
		case *pg.Node_AIndices:
			idx := x.AIndices
			if !idx.IsSlice {
				u, err := d.expr(idx.Uidx)
				if err != nil {
					return ex{}, err
				}
				u = d.coerce(u, oidInt4)
				sql = sql + "[" + u.sql + "]"
				t = elemOID(t)
				continue
			}
			lo, hi := "1", "-1"
			if idx.Lidx != nil {
				l, err := d.expr(idx.Lidx)
				if err != nil {
					return ex{}, err
				}
				lo = d.coerce(l, oidInt4).sql
			}
			if idx.Uidx != nil {
				u, err := d.expr(idx.Uidx)
				if err != nil {
					return ex{}, err
				}
				hi = d.coerce(u, oidInt4).sql
			}
			sql = "list_slice(" + sql + ", " + lo + ", " + hi + ")"
		case *pg.Node_String_:
			sql = "(" + sql + ")." + quoteIdent(x.String_.Sval)
			t = 0
		default:
			return ex{}, notSupported("this subscript")
		}
	}
	return ex{sql: sql, t: t}, nil
}
