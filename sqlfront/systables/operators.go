package systables

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Operators, written in parentheses with PostgreSQL's semantics.

func (d *deparser) aexpr(x *pg.A_Expr) (ex, error) {
	op := opName(x)
	switch x.Kind {
	case pg.A_Expr_Kind_AEXPR_OP:
		if x.Lexpr == nil {
			r, err := d.expr(x.Rexpr)
			if err != nil {
				return ex{}, err
			}
			return d.prefixOp(op, r, x.Location)
		}
		l, err := d.expr(x.Lexpr)
		if err != nil {
			return ex{}, err
		}
		r, err := d.expr(x.Rexpr)
		if err != nil {
			return ex{}, err
		}
		return d.binaryOp(op, l, r, x.Location)
	case pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		l, err := d.expr(x.Lexpr)
		if err != nil {
			return ex{}, err
		}
		r, err := d.expr(x.Rexpr)
		if err != nil {
			return ex{}, err
		}
		return d.arrayCompare(op, x.Kind == pg.A_Expr_Kind_AEXPR_OP_ALL, l, r)
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT:
		l, r, err := d.pair(x)
		if err != nil {
			return ex{}, err
		}
		kw := "IS DISTINCT FROM"
		if x.Kind == pg.A_Expr_Kind_AEXPR_NOT_DISTINCT {
			kw = "IS NOT DISTINCT FROM"
		}
		return ex{sql: "(" + l.sql + " " + kw + " " + r.sql + ")", t: oidBool}, nil
	case pg.A_Expr_Kind_AEXPR_NULLIF:
		l, r, err := d.pair(x)
		if err != nil {
			return ex{}, err
		}
		return ex{sql: "nullif(" + l.sql + ", " + r.sql + ")", t: l.t}, nil
	case pg.A_Expr_Kind_AEXPR_IN:
		l, err := d.expr(x.Lexpr)
		if err != nil {
			return ex{}, err
		}
		list := x.Rexpr.GetList()
		if list == nil {
			return ex{}, notSupported("IN without a list")
		}
		items, err := d.exprs(list.Items)
		if err != nil {
			return ex{}, err
		}
		all := append([]ex{l}, items...)
		d.unify(all)
		kw := "IN"
		if op == "<>" {
			kw = "NOT IN"
		}
		return ex{sql: "(" + all[0].sql + " " + kw + " (" + joinSQL(all[1:]) + "))", t: oidBool}, nil
	case pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE:
		return d.like(x, op)
	case pg.A_Expr_Kind_AEXPR_SIMILAR:
		return d.similar(x, op)
	case pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg.A_Expr_Kind_AEXPR_BETWEEN_SYM,
		pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		l, err := d.expr(x.Lexpr)
		if err != nil {
			return ex{}, err
		}
		list := x.Rexpr.GetList()
		if list == nil || len(list.Items) != 2 {
			return ex{}, notSupported("this BETWEEN")
		}
		bounds, err := d.exprs(list.Items)
		if err != nil {
			return ex{}, err
		}
		all := append([]ex{l}, bounds...)
		d.unify(all)
		lo, hi := all[1].sql, all[2].sql
		if x.Kind == pg.A_Expr_Kind_AEXPR_BETWEEN_SYM || x.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM {
			lo, hi = "least("+all[1].sql+", "+all[2].sql+")", "greatest("+all[1].sql+", "+all[2].sql+")"
		}
		kw := "BETWEEN"
		if x.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN || x.Kind == pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM {
			kw = "NOT BETWEEN"
		}
		return ex{sql: "(" + all[0].sql + " " + kw + " " + lo + " AND " + hi + ")", t: oidBool}, nil
	}
	return ex{}, notSupported("this operator")
}

// pair writes both sides of a binary expression, an untyped literal
// taking the other side's type.
func (d *deparser) pair(x *pg.A_Expr) (ex, ex, error) {
	l, err := d.expr(x.Lexpr)
	if err != nil {
		return ex{}, ex{}, err
	}
	r, err := d.expr(x.Rexpr)
	if err != nil {
		return ex{}, ex{}, err
	}
	all := []ex{l, r}
	d.unify(all)
	return all[0], all[1], nil
}

func (d *deparser) prefixOp(op string, r ex, loc int32) (ex, error) {
	switch op {
	case "-":
		if r.num != "" {
			// A negative constant keeps its literal (and its type:
			// -2147483648 is an int4 in PostgreSQL too).
			if strings.HasPrefix(r.num, "-") {
				return ex{sql: "(- " + r.sql + ")", t: r.t}, nil
			}
			return ex{sql: "(-" + r.sql + ")", t: r.t, num: "-" + r.num}, nil
		}
		r = d.coerce(r, oidFloat8)
		return ex{sql: "(- " + r.sql + ")", t: r.t}, nil
	case "+":
		return r, nil
	case "@":
		return ex{sql: "abs(" + r.sql + ")", t: r.t}, nil
	case "|/":
		return ex{sql: "sqrt(" + d.coerce(r, oidFloat8).sql + ")", t: oidFloat8}, nil
	case "||/":
		return ex{sql: "cbrt(" + d.coerce(r, oidFloat8).sql + ")", t: oidFloat8}, nil
	case "~":
		if isIntOID(r.t) {
			return ex{sql: "(~ " + r.sql + ")", t: r.t}, nil
		}
	}
	return ex{}, d.noOperator(op, ex{}, r, loc)
}

// noOperator is PostgreSQL's 42883 for an operator without a match.
func (d *deparser) noOperator(op string, l, r ex, loc int32) error {
	var sig string
	if l.t == 0 && l.sql == "" {
		sig = op + " " + typeDisplay(r.t)
	} else {
		sig = typeDisplay(l.t) + " " + op + " " + typeDisplay(r.t)
	}
	e := errorf("42883", "operator does not exist: %s", sig)
	e.Hint = "No operator matches the given name and argument types. You might need to add explicit type casts."
	return &errPos{e, loc}
}

func (d *deparser) binaryOp(op string, l, r ex, loc int32) (ex, error) {
	switch op {
	case "+", "-", "*", "/", "%", "^":
		return d.arith(op, l, r, loc)
	case "=", "<>", "!=", "<", ">", "<=", ">=":
		if op == "!=" {
			op = "<>"
		}
		return d.compare(op, l, r, loc)
	case "||":
		return d.concat(l, r, loc)
	case "~~", "!~~", "~~*", "!~~*":
		kw := map[string]string{"~~": "LIKE", "!~~": "NOT LIKE", "~~*": "ILIKE", "!~~*": "NOT ILIKE"}[op]
		return d.likeOp(kw, l, r, "", loc)
	case "~", "!~", "~*", "!~*":
		return d.regexOp(op, l, r, loc)
	case "->", "->>", "#>", "#>>":
		return d.jsonGet(op, l, r, loc)
	case "@>", "<@":
		if op == "<@" {
			l, r = r, l
		}
		if isArrayOID(l.t) || isArrayOID(r.t) {
			all := []ex{l, r}
			d.unify(all)
			return ex{sql: "list_has_all(" + all[0].sql + ", " + all[1].sql + ")", t: oidBool}, nil
		}
		if l.t == oidJSONB || r.t == oidJSONB {
			l, r = d.coerce(l, oidJSONB), d.coerce(r, oidJSONB)
			return ex{sql: "json_contains(" + l.sql + ", " + r.sql + ")", t: oidBool}, nil
		}
		if l.t == oidJSON || r.t == oidJSON {
			return ex{}, d.noOperator(op, l, r, loc)
		}
	case "&&":
		if isArrayOID(l.t) || isArrayOID(r.t) {
			all := []ex{l, r}
			d.unify(all)
			return ex{sql: "list_has_any(" + all[0].sql + ", " + all[1].sql + ")", t: oidBool}, nil
		}
	case "?", "?|", "?&":
		return d.jsonHasKey(op, l, r, loc)
	case "&", "|", "#", "<<", ">>":
		if l.t == oidUnknown {
			l = d.coerce(l, r.t)
		}
		if r.t == oidUnknown {
			r = d.coerce(r, l.t)
		}
		if isIntOID(l.t) && isIntOID(r.t) {
			if op == "<<" || op == ">>" {
				return ex{sql: "(" + l.sql + " " + op + " CAST(" + r.sql + " AS INTEGER))", t: l.t}, nil
			}
			t := arithType(l.t, r.t)
			if op == "#" {
				return ex{sql: "CAST(xor(" + l.sql + ", " + r.sql + ") AS " + engineType(t) + ")", t: t}, nil
			}
			return ex{sql: "(" + l.sql + " " + op + " " + r.sql + ")", t: t}, nil
		}
	}
	if l.t == 0 || r.t == 0 {
		return ex{}, notSupported("operator " + op + " here")
	}
	return ex{}, d.noOperator(op, l, r, loc)
}

// arith writes +, -, *, /, % and ^ with PostgreSQL's types: integers stay
// integers (overflow fails), int / int truncates, division by zero fails,
// and the date/time operators follow the session's time zone.
func (d *deparser) arith(op string, l, r ex, loc int32) (ex, error) {
	// An untyped literal takes the other side's type, except next to a
	// date or time, where it is an interval (or a number of days).
	if l.t == oidUnknown && r.t == oidUnknown {
		l, r = d.coerce(l, oidNumeric), d.coerce(r, oidNumeric)
	}
	if l.t == oidUnknown {
		l = d.coerce(l, literalPeer(op, r.t, false))
	}
	if r.t == oidUnknown {
		r = d.coerce(r, literalPeer(op, l.t, true))
	}
	if l.t == 0 || r.t == 0 {
		// Types the deparser does not know (engine functions of
		// templates, parameters): the engine's operator.
		return ex{sql: "(" + l.sql + " " + op + " " + r.sql + ")"}, nil
	}
	if isNumberOID(l.t) && isNumberOID(r.t) {
		t := arithType(l.t, r.t)
		switch op {
		case "+", "-", "*":
			sql := "(" + l.sql + " " + op + " " + r.sql + ")"
			if t == oidFloat8 && (l.t == oidFloat4 || r.t == oidFloat4) {
				sql = "(CAST(" + l.sql + " AS DOUBLE) " + op + " CAST(" + r.sql + " AS DOUBLE))"
			}
			return ex{sql: sql, t: t}, nil
		case "/", "%":
			if op == "%" && isFloatOID(t) {
				return ex{}, d.noOperator(op, l, r, loc)
			}
			if l.num != "" && r.num != "" {
				// Constants are folded when the statement is planned, as
				// PostgreSQL does: exactly, and failing even without rows.
				if q, ok, err := foldDivision(op, l, r, t); ok || err != nil {
					return q, err
				}
			}
			return d.divide(op, l, r, t), nil
		case "^":
			if t == oidNumeric {
				return ex{sql: "CAST(power(CAST(" + l.sql + " AS DOUBLE), CAST(" + r.sql + " AS DOUBLE)) AS DECIMAL(38,16))", t: oidNumeric}, nil
			}
			return ex{sql: "power(CAST(" + l.sql + " AS DOUBLE), CAST(" + r.sql + " AS DOUBLE))", t: oidFloat8}, nil
		}
	}
	switch {
	case l.t == oidDate && r.t == oidDate && op == "-":
		return ex{sql: "CAST((" + l.sql + " - " + r.sql + ") AS INTEGER)", t: oidInt4}, nil
	case l.t == oidDate && isIntOID(r.t) && (op == "+" || op == "-"):
		return ex{sql: "(" + l.sql + " " + op + " CAST(" + r.sql + " AS INTEGER))", t: oidDate}, nil
	case isIntOID(l.t) && r.t == oidDate && op == "+":
		return ex{sql: "(" + r.sql + " + CAST(" + l.sql + " AS INTEGER))", t: oidDate}, nil
	case (l.t == oidDate || l.t == oidTimestamp) && r.t == oidInterval && (op == "+" || op == "-"):
		return ex{sql: "(CAST(" + l.sql + " AS TIMESTAMP) " + op + " " + r.sql + ")", t: oidTimestamp}, nil
	case l.t == oidInterval && (r.t == oidDate || r.t == oidTimestamp) && op == "+":
		return ex{sql: "(CAST(" + r.sql + " AS TIMESTAMP) + " + l.sql + ")", t: oidTimestamp}, nil
	case l.t == oidTimestamptz && r.t == oidInterval && (op == "+" || op == "-"):
		return ex{sql: d.tstzPlus(l.sql, op, r), t: oidTimestamptz}, nil
	case l.t == oidInterval && r.t == oidTimestamptz && op == "+":
		return ex{sql: d.tstzPlus(r.sql, "+", l), t: oidTimestamptz}, nil
	case l.t == oidTimestamp && r.t == oidTimestamp && op == "-",
		l.t == oidTimestamptz && r.t == oidTimestamptz && op == "-":
		return ex{sql: "(" + l.sql + " - " + r.sql + ")", t: oidInterval}, nil
	case l.t == oidTimestamptz && r.t == oidTimestamp && op == "-":
		return ex{sql: "(" + l.sql + " - " + d.fromLocal(r.sql) + ")", t: oidInterval}, nil
	case l.t == oidTimestamp && r.t == oidTimestamptz && op == "-":
		return ex{sql: "(" + d.fromLocal(l.sql) + " - " + r.sql + ")", t: oidInterval}, nil
	case l.t == oidInterval && r.t == oidInterval && (op == "+" || op == "-"):
		return ex{sql: "(" + l.sql + " " + op + " " + r.sql + ")", t: oidInterval}, nil
	case l.t == oidInterval && isNumberOID(r.t) && (op == "*" || op == "/"):
		f := "CAST(" + r.sql + " AS DOUBLE)"
		if op == "/" {
			return ex{sql: fmt.Sprintf("(CASE WHEN %s = 0 THEN %s ELSE %s END)", r.sql,
				raise("22012", "division by zero"), scaleInterval(l.sql, "(1.0 / "+f+")")), t: oidInterval}, nil
		}
		return ex{sql: scaleInterval(l.sql, f), t: oidInterval}, nil
	case isNumberOID(l.t) && r.t == oidInterval && op == "*":
		return ex{sql: scaleInterval(r.sql, "CAST("+l.sql+" AS DOUBLE)"), t: oidInterval}, nil
	case l.t == oidDate && r.t == oidTime && op == "+":
		return ex{sql: "(" + l.sql + " + " + r.sql + ")", t: oidTimestamp}, nil
	}
	return ex{}, d.noOperator(op, l, r, loc)
}

// literalPeer is the type an untyped literal gets next to a typed
// operand of an arithmetic operator.
func literalPeer(op string, other uint32, right bool) uint32 {
	switch other {
	case oidDate:
		if op == "-" && right {
			return oidInt4 // date - '3' is date - integer... or date - date: PostgreSQL picks date - date
		}
		return oidInterval
	case oidTimestamp, oidTimestamptz:
		if op == "-" && right {
			return oidInterval
		}
		return oidInterval
	case oidInterval:
		if op == "*" || op == "/" {
			return oidFloat8
		}
		return oidInterval
	}
	return other
}

// divide writes / and % on numbers: PostgreSQL fails on a zero divisor
// (the engine answers NULL), int / int truncates (the engine is
// configured for integer division), and numeric / numeric is numeric.
func (d *deparser) divide(op string, l, r ex, t uint32) ex {
	var q string
	switch {
	case t == oidNumeric && op == "/" && isIntOID(r.t):
		// Exactly: the dividend in units of 1e-16, divided by the
		// integer and rounded half away from zero, as PostgreSQL's
		// numeric division does at 16 decimals.
		u := "CAST(replace(CAST(CAST(" + l.sql + " AS DECIMAL(38,16)) AS VARCHAR), '.', '') AS HUGEINT)"
		b := "CAST(" + r.sql + " AS HUGEINT)"
		q = "(CAST(((2 * abs(" + u + ") + abs(" + b + ")) // (2 * abs(" + b + "))) * sign(" + u + ") * sign(" + b +
			") AS DECIMAL(38,0)) * CAST('0.0000000000000001' AS DECIMAL(17,16)))"
	case t == oidNumeric && op == "/":
		// The engine divides decimals in double precision; PostgreSQL's
		// numeric keeps at least 16 significant digits.
		q = "CAST(CAST(" + l.sql + " AS DOUBLE) / CAST(" + r.sql + " AS DOUBLE) AS DECIMAL(38,16))"
	case t == oidFloat8 && (l.t == oidFloat4 || r.t == oidFloat4):
		q = "(CAST(" + l.sql + " AS DOUBLE) " + op + " CAST(" + r.sql + " AS DOUBLE))"
	default:
		q = "(" + l.sql + " " + op + " " + r.sql + ")"
	}
	if r.num != "" {
		if f, err := strconv.ParseFloat(r.num, 64); err == nil && f != 0 {
			return ex{sql: q, t: t}
		}
	}
	// A NULL dividend gives NULL, whatever the divisor (the operator is
	// strict).
	return ex{sql: fmt.Sprintf("(CASE WHEN %s = 0 AND %s IS NOT NULL THEN %s ELSE %s END)", r.sql, l.sql,
		raise("22012", "division by zero"), q), t: t}
}

// scaleInterval multiplies an interval by a factor as PostgreSQL does:
// months and days scale on their own, their fractions spill into days
// (30 a month) and time.
func scaleInterval(iv, f string) string {
	months := "(datepart('year', " + iv + ") * 12 + datepart('month', " + iv + "))"
	days := "datepart('day', " + iv + ")"
	micros := "(epoch_us(" + iv + ") - (" + months + " * 30 + " + days + ") * 86400000000)"
	m := "(" + months + " * " + f + ")"
	d := "(" + days + " * " + f + " + (" + m + " - trunc(" + m + ")) * 30)"
	us := "(" + micros + " * " + f + " + (" + d + " - trunc(" + d + ")) * 86400000000)"
	return "(to_months(CAST(trunc(" + m + ") AS INTEGER)) + to_days(CAST(trunc(" + d + ") AS INTEGER)) + to_microseconds(CAST(round(" + us + ") AS BIGINT)))"
}

// tstzPlus adds an interval to a timestamp with time zone as PostgreSQL
// does: months and days on the calendar of the session's time zone, the
// rest as elapsed time.
func (d *deparser) tstzPlus(ts, op string, iv ex) string {
	if d.utc() {
		return "(" + ts + " " + op + " " + iv.sql + ")"
	}
	cal := "to_months(CAST(datepart('year', " + iv.sql + ") * 12 + datepart('month', " + iv.sql + ") AS INTEGER)) + to_days(CAST(datepart('day', " + iv.sql + ") AS INTEGER))"
	clock := "to_microseconds(CAST(epoch_us(" + iv.sql + ") - (datepart('year', " + iv.sql + ") * 12 + datepart('month', " + iv.sql + ")) * 2592000000000 - datepart('day', " + iv.sql + ") * 86400000000 AS BIGINT))"
	return "(" + d.fromLocal("("+d.local(ts)+" "+op+" ("+cal+"))") + " " + op + " " + clock + ")"
}

// utc reports whether the session's time zone is UTC (the engine's).
func (d *deparser) utc() bool {
	switch strings.ToUpper(d.tz) {
	case "UTC", "ETC/UTC", "UCT", "ZULU", "GMT", "ETC/GMT", "UNIVERSAL", "ETC/UNIVERSAL", "Z":
		return true
	}
	return false
}

// local converts a timestamp with time zone to the session's wall-clock
// time (a timestamp without time zone).
func (d *deparser) local(sql string) string {
	if d.utc() {
		return "CAST(" + sql + " AS TIMESTAMP)"
	}
	return "timezone(" + quoteString(d.tz) + ", " + sql + ")"
}

// fromLocal reads a timestamp without time zone as the session's
// wall-clock time.
func (d *deparser) fromLocal(sql string) string {
	if d.utc() {
		return "CAST(" + sql + " AS TIMESTAMPTZ)"
	}
	return "timezone(" + quoteString(d.tz) + ", CAST(" + sql + " AS TIMESTAMP))"
}

// compare writes a comparison; PostgreSQL has no comparison between a
// string and a number (42883) where the engine would cast.
func (d *deparser) compare(op string, l, r ex, loc int32) (ex, error) {
	all := []ex{l, r}
	d.unify(all)
	l, r = all[0], all[1]
	if l.t != 0 && r.t != 0 && !comparable(l.t, r.t) {
		return ex{}, d.noOperator(op, l, r, loc)
	}
	ls, rs := l.sql, r.sql
	switch {
	case l.t == oidTimestamptz && (r.t == oidTimestamp || r.t == oidDate):
		rs = d.fromLocal(rs)
	case r.t == oidTimestamptz && (l.t == oidTimestamp || l.t == oidDate):
		ls = d.fromLocal(ls)
	case l.t == oidJSON || r.t == oidJSON:
		return ex{}, d.noOperator(op, l, r, loc)
	}
	return ex{sql: "(" + ls + " " + op + " " + rs + ")", t: oidBool}, nil
}

func comparable(a, b uint32) bool {
	switch {
	case a == b:
		return true
	case isNumberOID(a) && isNumberOID(b), isStringOID(a) && isStringOID(b), isTimeOID(a) && isTimeOID(b):
		return true
	case a == oidOID && isIntOID(b), b == oidOID && isIntOID(a):
		return true
	case isArrayOID(a) && isArrayOID(b):
		return comparable(elemOID(a), elemOID(b))
	}
	return false
}

func (d *deparser) concat(l, r ex, loc int32) (ex, error) {
	switch {
	case isArrayOID(l.t) || isArrayOID(r.t):
		if isArrayOID(l.t) && isArrayOID(r.t) || l.t == oidUnknown || r.t == oidUnknown {
			all := []ex{l, r}
			t := d.unify(all)
			return ex{sql: "list_concat(" + all[0].sql + ", " + all[1].sql + ")", t: t}, nil
		}
		if isArrayOID(l.t) {
			return ex{sql: "list_append(" + l.sql + ", " + r.sql + ")", t: l.t}, nil
		}
		return ex{sql: "list_prepend(" + l.sql + ", " + r.sql + ")", t: r.t}, nil
	case l.t == oidJSONB && r.t == oidJSONB:
		return ex{}, notSupported("jsonb || jsonb")
	}
	if l.t == oidUnknown {
		l = d.coerce(l, oidText)
	}
	if r.t == oidUnknown {
		r = d.coerce(r, oidText)
	}
	if (l.t != 0 && !isStringOID(l.t)) && (r.t != 0 && !isStringOID(r.t)) {
		return ex{}, d.noOperator("||", l, r, loc)
	}
	// The cast keeps the engine from typing a constant NULL result as
	// an integer.
	return ex{sql: "CAST((" + d.asText(l) + " || " + d.asText(r) + ") AS VARCHAR)", t: oidText}, nil
}

// asText is a value as text, as PostgreSQL's output functions write it
// (for ||, concat and casts to text).
func (d *deparser) asText(e ex) string {
	switch e.t {
	case oidText, oidVarchar, oidName, oidChar, oidUnknown, 0:
		return e.sql
	case oidBpchar:
		return "rtrim(" + e.sql + ", ' ')" // trailing blanks are not significant
	case oidBool:
		return "(CASE WHEN " + e.sql + " THEN 'true' WHEN NOT " + e.sql + " THEN 'false' END)"
	case oidTimestamptz:
		return d.tstzText(e.sql)
	case oidFloat8, oidFloat4:
		// PostgreSQL's shortest digits: no ".0" for whole numbers.
		return "(CASE WHEN isnan(" + e.sql + ") THEN 'NaN' WHEN isinf(" + e.sql + ") THEN CASE WHEN " + e.sql +
			" > 0 THEN 'Infinity' ELSE '-Infinity' END WHEN " + e.sql + " = trunc(" + e.sql + ") AND abs(" + e.sql +
			") < 1e15 THEN CAST(CAST(" + e.sql + " AS BIGINT) AS VARCHAR) ELSE CAST(" + e.sql + " AS VARCHAR) END)"
	}
	if isArrayOID(e.t) {
		return "('{' || array_to_string(" + e.sql + ", ',') || '}')"
	}
	return "CAST(" + e.sql + " AS VARCHAR)"
}

// like writes [NOT] LIKE/ILIKE with PostgreSQL's default escape, the
// backslash (the engine has none by default).
func (d *deparser) like(x *pg.A_Expr, op string) (ex, error) {
	l, err := d.expr(x.Lexpr)
	if err != nil {
		return ex{}, err
	}
	escape := "'\\'"
	pat := x.Rexpr
	if fc := pat.GetFuncCall(); fc != nil {
		if _, name := funcName(fc); name == "like_escape" && len(fc.Args) == 2 {
			e, err := d.expr(fc.Args[1])
			if err != nil {
				return ex{}, err
			}
			escape = d.coerce(e, oidText).sql
			pat = fc.Args[0]
		}
	}
	r, err := d.expr(pat)
	if err != nil {
		return ex{}, err
	}
	kw := map[string]string{"~~": "LIKE", "!~~": "NOT LIKE", "~~*": "ILIKE", "!~~*": "NOT ILIKE"}[op]
	if kw == "" {
		return ex{}, notSupported("operator " + op)
	}
	return d.likeOp(kw, l, r, escape, x.Location)
}

func (d *deparser) likeOp(kw string, l, r ex, escape string, loc int32) (ex, error) {
	if escape == "" {
		escape = "'\\'"
	}
	l, r = d.coerce(l, oidText), d.coerce(r, oidText)
	if l.t != 0 && !isStringOID(l.t) || r.t != 0 && !isStringOID(r.t) {
		op := map[string]string{"LIKE": "~~", "NOT LIKE": "!~~", "ILIKE": "~~*", "NOT ILIKE": "!~~*"}[kw]
		return ex{}, d.noOperator(op, l, r, loc)
	}
	if r.lit != nil || r.num == "" {
		if p, ok := constText(r); ok && strings.HasSuffix(p, "\\") && escape == "'\\'" && !strings.HasSuffix(p, "\\\\") {
			return ex{sql: "(" + raise("22025", "LIKE pattern must not end with escape character") + " OR true)", t: oidBool}, nil
		}
	}
	return ex{sql: "(" + l.sql + " " + kw + " " + r.sql + " ESCAPE " + escape + ")", t: oidBool}, nil
}

func constText(e ex) (string, bool) {
	if e.lit != nil {
		return *e.lit, true
	}
	return "", false
}

// regexOp writes ~, ~*, !~ and !~*: a match anywhere, as regexp_matches
// (the engine's ~ must match the whole string).
func (d *deparser) regexOp(op string, l, r ex, loc int32) (ex, error) {
	if p, ok := constText(r); ok {
		r = ex{sql: quoteString(pgRegex(p)), t: oidText}
	}
	l, r = d.coerce(l, oidText), d.coerce(r, oidText)
	if l.t != 0 && !isStringOID(l.t) || r.t != 0 && !isStringOID(r.t) {
		return ex{}, d.noOperator(op, l, r, loc)
	}
	args := l.sql + ", " + r.sql
	if strings.Contains(op, "*") {
		args += ", 'i'"
	}
	sql := "regexp_matches(" + args + ")"
	if strings.HasPrefix(op, "!") {
		sql = "(NOT " + sql + ")"
	}
	return ex{sql: sql, t: oidBool}, nil
}

// similar writes SIMILAR TO as a regular expression, translated as
// PostgreSQL's similar_to_escape does.
func (d *deparser) similar(x *pg.A_Expr, op string) (ex, error) {
	l, err := d.expr(x.Lexpr)
	if err != nil {
		return ex{}, err
	}
	fc := x.Rexpr.GetFuncCall()
	if fc == nil || len(fc.Args) < 1 {
		return ex{}, notSupported("this SIMILAR TO")
	}
	p, err := d.expr(fc.Args[0])
	if err != nil {
		return ex{}, err
	}
	pat, ok := constText(p)
	if !ok {
		return ex{}, notSupported("SIMILAR TO with a non-constant pattern")
	}
	esc := "\\"
	if len(fc.Args) == 2 {
		e, err := d.expr(fc.Args[1])
		if err != nil {
			return ex{}, err
		}
		s, ok := constText(e)
		if !ok {
			return ex{}, notSupported("SIMILAR TO with a non-constant escape")
		}
		esc = s
	}
	re, err := similarToRegex(pat, esc)
	if err != nil {
		return ex{}, err
	}
	l = d.coerce(l, oidText)
	sql := "regexp_matches(" + l.sql + ", " + quoteString(re) + ")"
	if op == "!~" {
		sql = "(NOT " + sql + ")"
	}
	return ex{sql: sql, t: oidBool}, nil
}

// similarToRegex is PostgreSQL's similar_escape: % is .*, _ is ., the
// pattern must match the whole string, and the escape character quotes.
func similarToRegex(pat, esc string) (string, error) {
	if len([]rune(esc)) > 1 {
		return "", errorf("22019", "invalid escape string")
	}
	var e rune = -1
	if esc != "" {
		e = []rune(esc)[0]
	}
	var b strings.Builder
	b.WriteString("^(?:")
	afterEscape, inBracket := false, false
	for _, c := range pat {
		switch {
		case afterEscape:
			if c == '"' {
				return "", notSupported("SIMILAR TO with escape-double-quote separators")
			}
			b.WriteByte('\\')
			b.WriteRune(c)
			afterEscape = false
		case c == e:
			afterEscape = true
		case inBracket:
			if c == '\\' {
				b.WriteByte('\\')
			}
			if c == ']' {
				inBracket = false
			}
			b.WriteRune(c)
		case c == '[':
			inBracket = true
			b.WriteRune(c)
		case c == '%':
			b.WriteString(".*")
		case c == '_':
			b.WriteByte('.')
		case c == '(':
			b.WriteString("(?:")
		case c == '\\', c == '.', c == '^', c == '$':
			b.WriteByte('\\')
			b.WriteRune(c)
		default:
			b.WriteRune(c)
		}
	}
	if afterEscape {
		return "", errorf("2201B", "invalid regular expression: trailing escape in SIMILAR TO pattern")
	}
	b.WriteString(")$")
	return b.String(), nil
}

// arrayCompare writes x op ANY (array) and x op ALL (array).
func (d *deparser) arrayCompare(op string, all bool, l, r ex) (ex, error) {
	if r.lit != nil {
		elem := l.t
		if elem == oidUnknown || elem == 0 {
			elem = oidText
		}
		r = d.coerce(r, arrayOf(elem))
	}
	if isArrayOID(r.t) {
		l = d.coerce(l, elemOID(r.t))
	}
	if op == "!=" {
		op = "<>"
	}
	test := "(" + l.sql + " " + op + " mandate_e)"
	switch op {
	case "=", "<>", "<", ">", "<=", ">=":
	case "~~", "!~~", "~~*", "!~~*":
		kw := map[string]string{"~~": "LIKE", "!~~": "NOT LIKE", "~~*": "ILIKE", "!~~*": "NOT ILIKE"}[op]
		test = "(" + l.sql + " " + kw + " mandate_e ESCAPE '\\')"
	default:
		return ex{}, notSupported(op + " ANY/ALL over an array")
	}
	// PostgreSQL's three-valued result: true if some (all) elements
	// match, NULL if none does (some does not) but one is NULL.
	cmp := fmt.Sprintf("list_transform(%s, lambda mandate_e: %s)", r.sql, test)
	if all {
		return ex{sql: fmt.Sprintf("(CASE WHEN %s IS NULL THEN NULL WHEN len(%s) = 0 THEN true WHEN list_bool_and(list_transform(%s, lambda mandate_x: coalesce(mandate_x, true))) = false THEN false WHEN list_contains(%s, NULL) OR list_contains(list_transform(%s, lambda mandate_x: mandate_x IS NULL), true) THEN NULL ELSE true END)",
			r.sql, r.sql, cmp, cmp, cmp), t: oidBool}, nil
	}
	return ex{sql: fmt.Sprintf("(CASE WHEN %s IS NULL THEN NULL WHEN len(%s) = 0 THEN false WHEN list_bool_or(list_transform(%s, lambda mandate_x: coalesce(mandate_x, false))) THEN true WHEN list_contains(list_transform(%s, lambda mandate_x: mandate_x IS NULL), true) THEN NULL ELSE false END)",
		r.sql, r.sql, cmp, cmp), t: oidBool}, nil
}

// foldDivision divides two constants: numeric division with PostgreSQL's
// result scale (at least 16 significant digits), integer division and
// modulo truncating; ok is false when it leaves the work to the engine.
func foldDivision(op string, l, r ex, t uint32) (ex, bool, error) {
	a, ok1 := new(big.Rat).SetString(l.num)
	b, ok2 := new(big.Rat).SetString(r.num)
	if !ok1 || !ok2 {
		return ex{}, false, nil
	}
	if b.Sign() == 0 {
		return ex{}, false, errorf("22012", "division by zero")
	}
	if t != oidNumeric || op != "/" {
		return ex{}, false, nil
	}
	scale := numericDivScale(l.num, r.num)
	q := new(big.Rat).Quo(a, b)
	// Round half away from zero at scale digits.
	shift := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(scale)), nil)
	n := new(big.Rat).Mul(q, new(big.Rat).SetInt(shift))
	num, den := n.Num(), n.Denom()
	quo, rem := new(big.Int).QuoRem(num, den, new(big.Int))
	if new(big.Int).Mul(new(big.Int).Abs(rem), big.NewInt(2)).Cmp(den) >= 0 {
		if num.Sign() < 0 {
			quo.Sub(quo, big.NewInt(1))
		} else {
			quo.Add(quo, big.NewInt(1))
		}
	}
	res := new(big.Rat).SetFrac(quo, shift)
	text := res.FloatString(scale)
	return ex{sql: decimalSQL(res, scale), t: oidNumeric, num: text}, true, nil
}

// numericDivScale is PostgreSQL's select_div_scale for two numeric
// constants: 16 significant digits from the estimated weight of the
// quotient (in base-10000 digits), at least the scales of the operands.
func numericDivScale(a, b string) int {
	w1, d1, s1 := numericWeight(a)
	w2, d2, s2 := numericWeight(b)
	qweight := w1 - w2
	if d1 <= d2 {
		qweight--
	}
	scale := 16 - qweight*4
	scale = max(scale, s1, s2, 0)
	return min(scale, 1000)
}

// numericWeight returns a numeric's weight and first digit in
// PostgreSQL's base-10000 representation, and its display scale.
func numericWeight(s string) (weight, first, scale int) {
	scale = numericScale(s)
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Sign() == 0 {
		return 0, 0, scale
	}
	r.Abs(r)
	// Digits of |r| with enough fraction digits to see the first
	// nonzero base-10000 group.
	text := r.FloatString(scale + 8)
	intPart, frac, _ := strings.Cut(text, ".")
	intPart = strings.TrimLeft(intPart, "0")
	if intPart != "" {
		pad := (4 - len(intPart)%4) % 4
		intPart = strings.Repeat("0", pad) + intPart
		first, _ = strconv.Atoi(intPart[:4])
		return len(intPart)/4 - 1, first, scale
	}
	for len(frac)%4 != 0 {
		frac += "0"
	}
	for i := 0; i+4 <= len(frac); i += 4 {
		if g, _ := strconv.Atoi(frac[i : i+4]); g != 0 {
			return -(i/4 + 1), g, scale
		}
	}
	return 0, 0, scale
}

// pgRegex rewrites the escapes of PostgreSQL's regular expressions that
// the engine's (RE2) spells otherwise: word boundaries \m, \M, \y and
// [[:<:]], [[:>:]] are \b, \Y is \B.
func pgRegex(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch {
		case p[i] == '\\' && i+1 < len(p):
			switch p[i+1] {
			case 'm', 'M', 'y':
				b.WriteString(`\b`)
			case 'Y':
				b.WriteString(`\B`)
			default:
				b.WriteByte(p[i])
				b.WriteByte(p[i+1])
			}
			i++
		case strings.HasPrefix(p[i:], "[[:<:]]"), strings.HasPrefix(p[i:], "[[:>:]]"):
			b.WriteString(`\b`)
			i += 6
		default:
			b.WriteByte(p[i])
		}
	}
	return b.String()
}
