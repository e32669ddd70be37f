package systables

import (
	"math"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// Function calls: PostgreSQL's functions written as the engine's, with
// PostgreSQL's result types. The analysis allowed the call (functions.go)
// and evaluated session functions; templates and the analysis' own
// rewrites are calls of engine functions (d.native), written as they are.

func (d *deparser) funcCall(fc *pg.FuncCall) (ex, error) {
	_, name := funcName(fc)
	if fc.FuncVariadic {
		return ex{}, notSupported("VARIADIC")
	}
	if !d.native[fc] && fc.Over == nil && aggregates[name] {
		switch {
		case d.inAggregate:
			return ex{}, &errPos{errorf("42803", "aggregate function calls cannot be nested"), fc.Location}
		case d.clause != "":
			return ex{}, &errPos{errorf("42803", "aggregate functions are not allowed in %s", d.clause), fc.Location}
		}
		d.inAggregate = true
		defer func() { d.inAggregate = false }()
	}
	if fc.Over != nil && d.clause != "" && !d.native[fc] {
		return ex{}, &errPos{errorf("42P20", "window functions are not allowed in %s", d.clause), fc.Location}
	}
	args, err := d.exprs(fc.Args)
	if err != nil {
		return ex{}, err
	}
	if d.native[fc] {
		return d.writeCall(fc, name, args, 0)
	}
	if spec, ok := functions[name]; ok && spec.kind == fnRename {
		// Names PostgreSQL has as aliases of others.
		switch name {
		case "every":
			name = "bool_and"
		case "btrim":
			name = "trim"
		}
	}
	t, sql, handled, err := d.special(fc, name, args)
	if err != nil {
		return ex{}, err
	}
	if handled {
		return ex{sql: sql, t: t}, nil
	}
	engineName := name
	if spec, ok := functions[name]; ok && spec.kind == fnRename {
		engineName = spec.target
	}
	t = resultType(name, args)
	e, err := d.writeCall(fc, engineName, args, t)
	if err != nil {
		return ex{}, err
	}
	if cast := resultCast(name, args); cast != "" {
		e.sql = "CAST(" + e.sql + " AS " + cast + ")"
	}
	return e, nil
}

// writeCall writes name(args) with the call's aggregate and window
// modifiers.
func (d *deparser) writeCall(fc *pg.FuncCall, name string, args []ex, t uint32) (ex, error) {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('(')
	if fc.AggDistinct {
		b.WriteString("DISTINCT ")
	}
	if fc.AggStar {
		b.WriteByte('*')
	} else {
		b.WriteString(joinSQL(args))
	}
	if len(fc.AggOrder) > 0 && !fc.AggWithinGroup {
		o, err := d.sortClause(fc.AggOrder)
		if err != nil {
			return ex{}, err
		}
		b.WriteString(" ORDER BY " + o)
	} else if fc.AggDistinct && len(args) > 0 && (name == "array_agg" || name == "string_agg") {
		// PostgreSQL sorts the input of a DISTINCT aggregate to remove
		// the duplicates: the values come out in order.
		b.WriteString(" ORDER BY " + args[0].sql + " ASC NULLS LAST")
	}
	b.WriteByte(')')
	if fc.AggWithinGroup {
		o, err := d.sortClause(fc.AggOrder)
		if err != nil {
			return ex{}, err
		}
		b.WriteString(" WITHIN GROUP (ORDER BY " + o + ")")
	}
	if fc.AggFilter != nil {
		f, err := d.boolExpr(fc.AggFilter, "FILTER")
		if err != nil {
			return ex{}, err
		}
		b.WriteString(" FILTER (WHERE " + f + ")")
	}
	if fc.Over != nil {
		w, err := d.over(fc.Over)
		if err != nil {
			return ex{}, err
		}
		b.WriteString(" OVER " + w)
	}
	return ex{sql: b.String(), t: t}, nil
}

func (d *deparser) over(w *pg.WindowDef) (string, error) {
	if w.Name != "" && len(w.PartitionClause) == 0 && len(w.OrderClause) == 0 && w.FrameOptions&frameNonDefault == 0 {
		return quoteIdent(w.Name), nil
	}
	return d.windowSpec(w)
}

// sortKeyType is the type of a WITHIN GROUP sort key.
func (d *deparser) sortKeyType(fc *pg.FuncCall) uint32 {
	if len(fc.AggOrder) != 1 {
		return 0
	}
	sb := fc.AggOrder[0].GetSortBy()
	if sb == nil {
		return 0
	}
	saved := d.unresolved
	e, err := d.expr(sb.Node)
	d.unresolved = saved
	if err != nil {
		return 0
	}
	return e.t
}

func argT(args []ex, i int) uint32 {
	if i < len(args) {
		return args[i].t
	}
	return 0
}

// aggregates are PostgreSQL's aggregate functions among the allowed ones.
var aggregates = map[string]bool{}

func init() {
	for _, n := range strings.Fields(`count sum avg min max stddev stddev_pop stddev_samp variance var_pop var_samp
		bool_and bool_or every string_agg array_agg json_agg jsonb_agg percentile_cont percentile_disc mode corr
		covar_pop covar_samp regr_slope regr_intercept regr_r2 regr_count`) {
		aggregates[n] = true
	}
}

// fixedResult are functions whose PostgreSQL result type does not depend
// on their arguments.
var fixedResult = map[string]uint32{
	"count": oidInt8, "row_number": oidInt8, "rank": oidInt8, "dense_rank": oidInt8, "ntile": oidInt4,
	"percent_rank": oidFloat8, "cume_dist": oidFloat8, "now": oidTimestamptz, "clock_timestamp": oidTimestamptz,
	"statement_timestamp": oidTimestamptz, "transaction_timestamp": oidTimestamptz, "length": oidInt4,
	"char_length": oidInt4, "character_length": oidInt4, "octet_length": oidInt4, "bit_length": oidInt4,
	"strpos": oidInt4, "position": oidInt4, "ascii": oidInt4, "lower": oidText, "upper": oidText, "trim": oidText,
	"btrim": oidText, "ltrim": oidText, "rtrim": oidText, "replace": oidText, "concat": oidText, "concat_ws": oidText,
	"left": oidText, "right": oidText, "split_part": oidText, "lpad": oidText, "rpad": oidText, "repeat": oidText,
	"reverse": oidText, "md5": oidText, "translate": oidText, "chr": oidText, "to_hex": oidText, "substring": oidText,
	"substr": oidText, "quote_ident": oidText, "quote_literal": oidText, "string_agg": oidText,
	"array_to_string": oidText, "regexp_replace": oidText, "starts_with": oidBool, "bool_and": oidBool,
	"bool_or": oidBool, "every": oidBool, "date_part": oidFloat8, "extract": oidNumeric, "age": oidInterval,
	"to_timestamp": oidTimestamptz, "make_date": oidDate, "make_timestamp": oidTimestamp,
	"make_timestamptz": oidTimestamptz, "json_extract_path": oidJSON, "jsonb_extract_path": oidJSONB,
	"json_extract_path_text": oidText, "jsonb_extract_path_text": oidText, "json_array_length": oidInt4,
	"jsonb_array_length": oidInt4, "json_typeof": oidText, "jsonb_typeof": oidText, "to_json": oidJSON,
	"to_jsonb": oidJSONB, "json_build_object": oidJSON, "jsonb_build_object": oidJSONB, "json_build_array": oidJSON,
	"jsonb_build_array": oidJSONB, "json_agg": oidJSON, "jsonb_agg": oidJSONB, "random": oidFloat8, "pi": oidFloat8,
	"sin": oidFloat8, "cos": oidFloat8, "tan": oidFloat8, "asin": oidFloat8, "acos": oidFloat8, "atan": oidFloat8,
	"atan2": oidFloat8, "degrees": oidFloat8, "radians": oidFloat8, "cbrt": oidFloat8, "string_to_array": 1009,
	"regexp_split_to_array": 1009, "array_length": oidInt4, "cardinality": oidInt4, "array_position": oidInt4,
	"gen_random_uuid": oidUUID, "uuid_generate_v4": oidUUID, "corr": oidFloat8, "covar_pop": oidFloat8,
	"covar_samp": oidFloat8, "regr_slope": oidFloat8, "regr_intercept": oidFloat8, "regr_r2": oidFloat8,
	"regr_count": oidInt8, "isfinite": oidBool, "regexp_like": oidBool, "to_char": oidText, "format": oidText,
	"initcap": oidText, "timezone": 0, "percentile_cont": oidFloat8,
}

// resultType is the PostgreSQL type of a function's result.
func resultType(name string, args []ex) uint32 {
	if t, ok := fixedResult[name]; ok {
		return t
	}
	a0 := argT(args, 0)
	switch name {
	case "sum":
		switch a0 {
		case oidInt2, oidInt4:
			return oidInt8
		case oidInt8, oidNumeric:
			return oidNumeric
		}
		return a0
	case "avg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp":
		switch {
		case isIntOID(a0) || a0 == oidNumeric:
			return oidNumeric
		case isFloatOID(a0):
			return oidFloat8
		}
		return a0
	case "min", "max", "abs", "lag", "lead", "first_value", "last_value", "nth_value", "mode", "percentile_disc",
		"trunc", "sign", "ceil", "ceiling", "floor":
		if (name == "ceil" || name == "ceiling" || name == "floor" || name == "trunc" || name == "sign") && isIntOID(a0) {
			return oidFloat8 // PostgreSQL takes the double precision variant
		}
		if name == "trunc" && len(args) == 2 {
			return oidNumeric
		}
		return a0
	case "round":
		if len(args) == 2 || a0 == oidNumeric {
			return oidNumeric
		}
		if isIntOID(a0) {
			return oidFloat8
		}
		return a0
	case "mod":
		return arithType(a0, argT(args, 1))
	case "sqrt", "exp", "ln", "log", "log10", "power", "pow":
		for _, a := range args {
			if a.t == oidNumeric {
				return oidNumeric
			}
		}
		return oidFloat8
	case "array_agg":
		return arrayOf(a0)
	case "array_append", "array_cat":
		return a0
	case "array_prepend":
		return argT(args, 1)
	case "unnest":
		return a0
	case "generate_series":
		return a0
	case "greatest", "least", "coalesce":
		t := uint32(oidUnknown)
		for _, a := range args {
			t = commonType(t, a.t)
		}
		return t
	case "nullif":
		return a0
	case "date_trunc", "date_bin":
		t := argT(args, 1)
		if t == oidDate {
			return oidTimestamptz
		}
		return t
	}
	return 0
}

// resultCast is the engine type a function's result must be cast to
// where the engine's type is not PostgreSQL's ("" for none).
func resultCast(name string, args []ex) string {
	a0 := argT(args, 0)
	switch name {
	case "sum":
		if a0 == oidInt2 || a0 == oidInt4 {
			return "BIGINT"
		}
	case "ntile", "length", "char_length", "character_length", "octet_length", "bit_length", "strpos", "position",
		"ascii", "json_array_length", "jsonb_array_length", "array_length", "cardinality", "array_position":
		return "INTEGER"
	case "avg", "stddev", "stddev_pop", "stddev_samp", "variance", "var_pop", "var_samp":
		if isIntOID(a0) || a0 == oidNumeric {
			return "DECIMAL(38,16)"
		}
	case "date_part":
		return "DOUBLE"
	case "round", "ceil", "ceiling", "floor", "trunc", "sign":
		if isIntOID(a0) && len(args) == 1 {
			return "DOUBLE"
		}
	case "sqrt", "exp", "ln", "log", "log10", "power", "pow":
		if resultType(name, args) == oidNumeric {
			return "DECIMAL(38,16)"
		}
		return "DOUBLE"
	case "regr_count":
		return "BIGINT"
	}
	return ""
}

// special writes the functions whose engine counterpart differs in more
// than its name or result type.
func (d *deparser) special(fc *pg.FuncCall, name string, args []ex) (t uint32, sql string, ok bool, err error) {
	arg := func(i int) string { return args[i].sql }
	text := func(i int) string { return d.asText(d.coerce(args[i], oidText)) }
	switch name {
	case "octet_length":
		if len(args) == 1 {
			return oidInt4, "CAST(strlen(" + text(0) + ") AS INTEGER)", true, nil
		}
	case "bit_length":
		if len(args) == 1 {
			return oidInt4, "CAST(strlen(" + text(0) + ") * 8 AS INTEGER)", true, nil
		}
	case "position", "strpos":
		if len(args) == 2 {
			return oidInt4, "CAST(strpos(" + text(0) + ", " + text(1) + ") AS INTEGER)", true, nil
		}
	case "substring", "substr":
		if len(args) == 2 && (args[1].t == oidUnknown || isStringOID(args[1].t)) && name == "substring" {
			// substring(s FROM pattern): the first match, or its
			// first parenthesized part.
			return oidText, "CASE WHEN regexp_extract(" + text(0) + ", " + text(1) + ", 0) = '' AND NOT regexp_matches(" +
				text(0) + ", " + text(1) + ") THEN NULL ELSE regexp_extract(" + text(0) + ", '(?:' || " + text(1) +
				" || ')', CASE WHEN regexp_matches(" + text(1) + ", '\\((?:[^?]|$)') THEN 1 ELSE 0 END) END", true, nil
		}
		if len(args) == 2 || len(args) == 3 {
			// PostgreSQL counts from the start whatever the sign
			// (characters before the first are empty); the engine
			// counts negative positions from the end.
			from := "CAST(" + d.coerce(args[1], oidInt4).sql + " AS BIGINT)"
			if len(args) == 2 {
				return oidText, "substring(" + text(0) + ", greatest(" + from + ", 1))", true, nil
			}
			n := "CAST(" + d.coerce(args[2], oidInt4).sql + " AS BIGINT)"
			return oidText, "(CASE WHEN " + n + " < 0 THEN " + raise("22011", "negative substring length not allowed") +
				" ELSE substring(" + text(0) + ", greatest(" + from + ", 1), greatest(" + from + " + " + n + " - greatest(" + from + ", 1), 0)) END)", true, nil
		}
	case "left", "right":
		if len(args) == 2 {
			n := d.coerce(args[1], oidInt4).sql
			s := text(0)
			if name == "left" {
				return oidText, "(CASE WHEN " + n + " < 0 THEN left(" + s + ", greatest(length(" + s + ") + " + n + ", 0)) ELSE left(" + s + ", " + n + ") END)", true, nil
			}
			return oidText, "(CASE WHEN " + n + " < 0 THEN right(" + s + ", greatest(length(" + s + ") + " + n + ", 0)) ELSE right(" + s + ", " + n + ") END)", true, nil
		}
	case "split_part":
		if len(args) == 3 {
			s, sep, n := text(0), text(1), d.coerce(args[2], oidInt4).sql
			return oidText, "(CASE WHEN " + n + " = 0 THEN " + raise("22023", "field position must not be zero") +
				" WHEN " + sep + " = '' THEN CASE WHEN " + n + " IN (1, -1) THEN " + s + " ELSE '' END ELSE split_part(" + s + ", " + sep + ", " + n + ") END)", true, nil
		}
	case "like_escape", "similar_to_escape":
		return 0, "", false, notSupported(name + "() outside LIKE and SIMILAR TO")
	case "lpad", "rpad":
		if len(args) == 2 {
			return oidText, name + "(" + text(0) + ", " + d.coerce(args[1], oidInt4).sql + ", ' ')", true, nil
		}
	case "to_hex":
		if len(args) == 1 {
			return oidText, "lower(to_hex(" + arg(0) + "))", true, nil
		}
	case "initcap":
		if len(args) == 1 {
			// Each run of letters and digits capitalized, the rest as is.
			return oidText, "array_to_string(list_transform(regexp_extract_all(" + text(0) +
				", '[[:alnum:]]+|[^[:alnum:]]+'), lambda mandate_w: upper(left(mandate_w, 1)) || lower(substr(mandate_w, 2))), '')", true, nil
		}
	case "concat", "concat_ws":
		parts := make([]string, len(args))
		for i := range args {
			parts[i] = d.asText(d.coerce(args[i], oidText))
		}
		return oidText, name + "(" + strings.Join(parts, ", ") + ")", true, nil
	case "cardinality":
		if len(args) == 1 {
			return oidInt4, "CAST(len(" + arg(0) + ") AS INTEGER)", true, nil
		}
	case "array_length":
		if len(args) == 2 {
			return oidInt4, "CAST(CASE WHEN " + d.coerce(args[1], oidInt4).sql + " = 1 AND len(" + arg(0) + ") > 0 THEN len(" + arg(0) + ") END AS INTEGER)", true, nil
		}
	case "date_part", "extract":
		return d.datePart(name, args)
	case "date_trunc":
		if len(args) >= 2 {
			field := d.coerce(args[0], oidText).sql
			switch args[1].t {
			case oidTimestamptz:
				return oidTimestamptz, d.fromLocal("date_trunc(" + field + ", " + d.local(arg(1)) + ")"), true, nil
			case oidDate:
				return oidTimestamptz, d.fromLocal("date_trunc(" + field + ", CAST(" + arg(1) + " AS TIMESTAMP))"), true, nil
			case oidTimestamp:
				return oidTimestamp, "CAST(date_trunc(" + field + ", " + arg(1) + ") AS TIMESTAMP)", true, nil
			case oidUnknown:
				return oidTimestamptz, d.fromLocal("date_trunc(" + field + ", " + d.local(d.coerce(args[1], oidTimestamptz).sql) + ")"), true, nil
			}
		}
	case "timezone":
		// x AT TIME ZONE zone
		if len(args) == 2 {
			zone := d.coerce(args[0], oidText).sql
			switch args[1].t {
			case oidTimestamptz:
				return oidTimestamp, "timezone(" + zone + ", " + arg(1) + ")", true, nil
			case oidTimestamp:
				return oidTimestamptz, "timezone(" + zone + ", " + arg(1) + ")", true, nil
			case oidUnknown:
				return oidTimestamp, "timezone(" + zone + ", " + d.coerce(args[1], oidTimestamptz).sql + ")", true, nil
			}
		}
	case "age":
		if len(args) == 1 {
			// From midnight of today in the session's time zone.
			x := d.coerce(args[0], oidTimestamptz)
			ts := "CAST(" + x.sql + " AS TIMESTAMP)"
			if x.t == oidTimestamptz {
				ts = d.local(x.sql)
			}
			return oidInterval, "age(CAST(CAST(" + d.local("now()") + " AS DATE) AS TIMESTAMP), " + ts + ")", true, nil
		}
		if len(args) == 2 {
			all := []ex{args[0], args[1]}
			d.unify(all)
			if all[0].t == oidTimestamptz {
				return oidInterval, "age(" + d.local(all[0].sql) + ", " + d.local(all[1].sql) + ")", true, nil
			}
			return oidInterval, "age(" + all[0].sql + ", " + all[1].sql + ")", true, nil
		}
	case "now", "clock_timestamp", "statement_timestamp", "transaction_timestamp":
		return oidTimestamptz, "CAST(now() AS TIMESTAMPTZ)", true, nil
	case "json_typeof", "jsonb_typeof":
		if len(args) == 1 {
			return oidText, "(CASE json_type(" + arg(0) + ") WHEN 'OBJECT' THEN 'object' WHEN 'ARRAY' THEN 'array' WHEN 'VARCHAR' THEN 'string' WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null' WHEN 'BIGINT' THEN 'number' WHEN 'UBIGINT' THEN 'number' WHEN 'DOUBLE' THEN 'number' WHEN 'HUGEINT' THEN 'number' END)", true, nil
		}
	case "json_extract_path", "jsonb_extract_path", "json_extract_path_text", "jsonb_extract_path_text":
		if len(args) >= 1 {
			var path []*string
			for _, k := range args[1:] {
				s, ok := constText(k)
				if !ok {
					return 0, "", false, notSupported(name + "() with a path that is not constant")
				}
				path = append(path, &s)
			}
			l := args[0]
			if l.t == oidUnknown {
				l = d.coerce(l, map[bool]uint32{true: oidJSONB, false: oidJSON}[strings.HasPrefix(name, "jsonb")])
			}
			t := l.t
			asText := strings.HasSuffix(name, "_text")
			if asText {
				t = oidText
			}
			return t, d.jsonPathSQL(l.sql, path, asText), true, nil
		}
	case "generate_series":
		return d.generateSeries(args, false)
	case "unnest":
		if len(args) == 1 {
			return elemOID(args[0].t), "unnest(" + arg(0) + ")", true, nil
		}
	case "round":
		if len(args) == 1 && isFloatOID(args[0].t) {
			// rint: halves to even, as PostgreSQL's round(double).
			return oidFloat8, "round_even(" + arg(0) + ", 0)", true, nil
		}
		if len(args) == 2 && isFloatOID(args[0].t) {
			return 0, "", false, d.noFunction(fc, name, args)
		}
	case "mod":
		if len(args) == 2 {
			e, err := d.arith("%", args[0], args[1], fc.Location)
			return e.t, e.sql, true, err
		}
	case "div":
		if len(args) == 2 {
			e, err := d.arith("/", d.coerce(args[0], oidNumeric), d.coerce(args[1], oidNumeric), fc.Location)
			return oidNumeric, "trunc(" + e.sql + ")", true, err
		}
	case "log":
		if len(args) == 2 {
			// Only log(numeric, numeric) takes a base.
			if isFloatOID(args[0].t) || isFloatOID(args[1].t) {
				return 0, "", false, d.noFunction(fc, name, args)
			}
			return oidNumeric, "CAST(log(" + arg(0) + ", " + arg(1) + ") AS DECIMAL(38,16))", true, nil
		}
	case "string_agg":
		if len(args) == 2 {
			args[0], args[1] = d.coerce(args[0], oidText), d.coerce(args[1], oidText)
		}
	case "array_agg":
		if len(args) == 1 && args[0].t == oidUnknown {
			args[0] = d.coerce(args[0], oidText)
		}
	case "avg":
		if len(args) == 1 && isIntOID(args[0].t) && !fc.AggStar {
			// Exactly, as PostgreSQL's numeric division of the sum by
			// the count, rounded half away from zero at 16 digits.
			sum, err := d.writeCall(fc, "sum", []ex{{sql: "CAST(" + arg(0) + " AS HUGEINT)"}}, 0)
			if err != nil {
				return 0, "", false, err
			}
			cnt, err := d.writeCall(fc, "count", args, 0)
			if err != nil {
				return 0, "", false, err
			}
			return oidNumeric, "(CASE WHEN " + cnt.sql + " = 0 THEN NULL ELSE CAST(((" + sum.sql +
				" * 20000000000000000 + CASE WHEN " + sum.sql + " < 0 THEN -" + cnt.sql + " ELSE " + cnt.sql + " END) // (2 * " +
				cnt.sql + ")) AS DECIMAL(38,0)) * CAST('0.0000000000000001' AS DECIMAL(17,16)) END)", true, nil
		}
	case "json_agg", "jsonb_agg":
		if len(args) == 1 {
			// PostgreSQL's text: elements separated by ", ", NULLs as null.
			el := ex{sql: "coalesce(CAST(to_json(" + d.coerce(args[0], oidText).sql + ") AS VARCHAR), 'null')"}
			agg, err := d.writeCall(fc, "string_agg", []ex{el, {sql: "', '"}}, 0)
			if err != nil {
				return 0, "", false, err
			}
			t := uint32(oidJSON)
			if name == "jsonb_agg" {
				t = oidJSONB
			}
			return t, "CAST('[' || " + agg.sql + " || ']' AS JSON)", true, nil
		}
	case "percentile_cont", "percentile_disc", "mode":
		if name == "percentile_cont" && fc.AggWithinGroup && len(args) == 1 && len(fc.AggOrder) == 1 && fc.Over == nil {
			if sql, ok, err := d.percentileCont(fc, args[0]); ok || err != nil {
				return oidFloat8, sql, ok, err
			}
		}
		if fc.AggWithinGroup {
			st := d.sortKeyType(fc)
			rt := st
			if name == "percentile_cont" && st != oidInterval {
				rt = oidFloat8
			}
			for i := range args {
				args[i] = d.coerce(args[i], oidFloat8)
			}
			e, err := d.writeCall(fc, name, args, rt)
			if err != nil {
				return 0, "", false, err
			}
			if name == "percentile_cont" && rt == oidFloat8 {
				e.sql = "CAST(" + e.sql + " AS DOUBLE)"
			}
			return e.t, e.sql, true, nil
		}
	case "to_timestamp":
		if len(args) == 1 {
			return oidTimestamptz, "to_timestamp(CAST(" + d.coerce(args[0], oidFloat8).sql + " AS DOUBLE))", true, nil
		}
	case "to_char":
		if len(args) != 2 {
			return 0, "", false, d.noFunction(fc, name, args)
		}
		tmpl, ok := constText(args[1])
		if !ok {
			return 0, "", false, notSupported("to_char() with a non-constant template")
		}
		src := args[0]
		switch src.t {
		case oidTimestamptz, oidUnknown:
			return oidText, toCharSQL(d.local(d.coerce(src, oidTimestamptz).sql), tmpl), true, nil
		case oidTimestamp, oidDate:
			return oidText, toCharSQL("CAST("+src.sql+" AS TIMESTAMP)", tmpl), true, nil
		}
		return 0, "", false, notSupported("to_char() of " + typeDisplay(src.t))
	case "isfinite":
		if len(args) == 1 {
			return oidBool, "isfinite(" + arg(0) + ")", true, nil
		}
	}
	return 0, "", false, nil
}

// percentileCont writes percentile_cont(p) WITHIN GROUP (ORDER BY x) of
// a constant fraction with PostgreSQL's interpolation (first + fraction
// * (second - first)) over the sorted values; ok is false to leave it to
// the engine's (whose arithmetic differs in the last digit).
func (d *deparser) percentileCont(fc *pg.FuncCall, p ex) (string, bool, error) {
	text := p.num
	if text == "" && p.lit != nil {
		text = *p.lit
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	if err != nil {
		return "", false, nil
	}
	if f < 0 || f > 1 || math.IsNaN(f) {
		return "", false, errorf("22003", "percentile value %s is not between 0 and 1", strconv.FormatFloat(f, 'g', -1, 64))
	}
	sb := fc.AggOrder[0].GetSortBy()
	key, err := d.expr(sb.Node)
	if err != nil {
		return "", false, err
	}
	if !isNumberOID(key.t) {
		return "", false, nil
	}
	cond := "(" + key.sql + ") IS NOT NULL"
	if fc.AggFilter != nil {
		f, err := d.boolExpr(fc.AggFilter, "FILTER")
		if err != nil {
			return "", false, err
		}
		cond += " AND " + f
	}
	sorter := "list_sort"
	if sb.SortbyDir == pg.SortByDir_SORTBY_DESC {
		sorter = "list_reverse_sort"
	}
	list := sorter + "(list(CAST(" + key.sql + " AS DOUBLE)) FILTER (WHERE " + cond + "))"
	pos := "(" + strconv.FormatFloat(f, 'g', -1, 64) + " * (len(" + list + ") - 1))"
	lo := list + "[CAST(floor(" + pos + ") AS BIGINT) + 1]"
	hi := list + "[CAST(ceil(" + pos + ") AS BIGINT) + 1]"
	return "(CASE WHEN len(" + list + ") = 0 THEN CAST(NULL AS DOUBLE) ELSE " + lo + " + (" + pos + " - floor(" + pos +
		")) * (" + hi + " - " + lo + ") END)", true, nil
}

// noFunction is PostgreSQL's 42883 for arguments no variant takes.
func (d *deparser) noFunction(fc *pg.FuncCall, name string, args []ex) error {
	types := make([]string, len(args))
	for i, a := range args {
		types[i] = typeDisplay(a.t)
	}
	e := errorf("42883", "function %s(%s) does not exist", name, strings.Join(types, ", "))
	e.Hint = "No function matches the given name and argument types. You might need to add explicit type casts."
	return &errPos{e, fc.Location}
}

// datePart writes date_part(field, x) (double precision) and
// EXTRACT(field FROM x) (numeric), with the fields of a timestamp with
// time zone taken in the session's time zone.
func (d *deparser) datePart(name string, args []ex) (uint32, string, bool, error) {
	if len(args) != 2 {
		return 0, "", false, nil
	}
	field, ok := constText(args[0])
	if !ok {
		return 0, "", false, notSupported(name + "() with a non-constant field")
	}
	field = strings.ToLower(field)
	src := args[1]
	if src.t == oidUnknown {
		src = d.coerce(src, oidTimestamptz)
	}
	x := src.sql
	if src.t == oidTimestamptz && field != "epoch" {
		x = d.local(x)
	}
	if src.t == oidDate {
		switch field {
		case "hour", "minute", "second", "milliseconds", "microseconds", "timezone", "timezone_hour", "timezone_minute":
			return 0, "", false, errorf("0A000", "unit %q not supported for type date", field)
		}
	}
	var exact string // an engine expression of the exact value as DECIMAL
	scale := 0
	switch field {
	case "second", "seconds":
		exact, scale = "CAST(date_part('microseconds', "+x+") AS DECIMAL(38,0)) * 0.000001", 6
	case "milliseconds", "millisecond", "ms":
		exact, scale = "CAST(date_part('microseconds', "+x+") AS DECIMAL(38,0)) * 0.001", 3
	case "epoch":
		if src.t == oidInterval {
			exact, scale = "CAST(epoch_us("+x+") AS DECIMAL(38,0)) * 0.000001", 6
		} else if src.t == oidDate {
			exact = "CAST(epoch(CAST(" + x + " AS TIMESTAMP)) AS DECIMAL(38,0))"
		} else {
			exact, scale = "CAST(epoch_us("+x+") AS DECIMAL(38,0)) * 0.000001", 6
		}
	case "microseconds", "microsecond", "us", "year", "years", "month", "months", "day", "days", "hour", "hours",
		"minute", "minutes", "dow", "doy", "isodow", "week", "quarter", "decade", "century", "millennium", "isoyear":
		exact = "CAST(date_part(" + quoteString(field) + ", " + x + ") AS DECIMAL(38,0))"
	default:
		return 0, "", false, errorf("22023", "unit %q not recognized for type %s", field, typeDisplay(src.t))
	}
	if name == "date_part" {
		return oidFloat8, "CAST(" + exact + " AS DOUBLE)", true, nil
	}
	_ = scale
	return oidNumeric, exact, true, nil
}

// generateSeries writes generate_series: integer series keep the type of
// their arguments (the engine's are bigint); in a select list it is a
// set-returning function (the engine's returns a list).
func (d *deparser) generateSeries(args []ex, inFrom bool) (uint32, string, bool, error) {
	if len(args) < 2 || len(args) > 3 {
		return 0, "", false, nil
	}
	t := commonType(commonType(args[0].t, args[1].t), argT(args, 2))
	if len(args) == 2 {
		t = commonType(args[0].t, args[1].t)
	}
	if t == oidUnknown {
		t = oidTimestamptz
	}
	for i := range args {
		want := t
		if i == 2 && isTimeOID(t) {
			want = oidInterval
		}
		args[i] = d.coerce(args[i], want)
	}
	if len(args) == 3 && isNumberOID(t) {
		if args[2].num != "" && strings.Trim(args[2].num, "0.-") == "" {
			return 0, "", false, errorf("22023", "step size cannot equal zero")
		}
	}
	call := "generate_series(" + joinSQL(args) + ")"
	if inFrom {
		return t, call, true, nil
	}
	call = "unnest(" + call + ")"
	switch t {
	case oidInt4, oidInt2:
		return t, "CAST(" + call + " AS " + engineType(t) + ")", true, nil
	case oidDate:
		return oidTimestamptz, call, true, nil
	}
	return t, call, true, nil
}

// jsonGet writes ->, ->>, #> and #>>. Keys are looked up as keys (never
// as the engine's JSON paths), integers index arrays from 0 (negative
// from the end), and a text path tries each element as a key or index.
func (d *deparser) jsonGet(op string, l, r ex, loc int32) (ex, error) {
	if l.t == oidUnknown {
		l = d.coerce(l, oidJSON)
	}
	if !isJSONOID(l.t) && l.t != 0 {
		return ex{}, d.noOperator(op, l, r, loc)
	}
	asText := strings.HasSuffix(op, ">>")
	jt := l.t
	if jt == 0 {
		jt = oidJSON
	}
	result := func(sql string) ex {
		if asText {
			return ex{sql: sql, t: oidText}
		}
		return ex{sql: sql, t: jt}
	}
	extract := "json_extract"
	if asText {
		extract = "json_extract_string"
	}
	if strings.HasPrefix(op, "#") {
		lit, ok := constText(r)
		if !ok {
			return ex{}, notSupported(op + " with a path that is not a constant")
		}
		path, err := parseArrayLiteral(lit)
		if err != nil {
			return ex{}, err
		}
		return result(d.jsonPathSQL(l.sql, path, asText)), nil
	}
	switch {
	case r.t == oidUnknown || isStringOID(r.t):
		if k, ok := constText(r); ok {
			return result(extract + "(" + l.sql + ", " + quoteString(jsonKeyPath(k)) + ")"), nil
		}
		key := "replace(replace(" + r.sql + ", '~', '~0'), '/', '~1')"
		return result("(CASE WHEN json_type(" + l.sql + ") = 'OBJECT' THEN " + extract + "(" + l.sql + ", '/' || " + key + ") END)"), nil
	case isIntOID(r.t):
		if r.num != "" {
			return result(extract + "(" + l.sql + ", " + quoteString(jsonIndexPath(r.num)) + ")"), nil
		}
		return result(extract + "(" + l.sql + ", CASE WHEN " + r.sql + " < 0 THEN '$[#' || CAST(" + r.sql + " AS VARCHAR) || ']' ELSE '$[' || CAST(" + r.sql + " AS VARCHAR) || ']' END)"), nil
	}
	return ex{}, d.noOperator(op, l, r, loc)
}

// jsonKeyPath is the engine's path of one object key: $."key", or a JSON
// pointer when the key has characters the quoted form cannot carry.
func jsonKeyPath(k string) string {
	if !strings.ContainsAny(k, "\"\\") {
		return `$."` + k + `"`
	}
	return "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

func jsonIndexPath(n string) string {
	if strings.HasPrefix(n, "-") {
		return "$[#" + n + "]"
	}
	return "$[" + n + "]"
}

// jsonPathSQL follows a path of keys (a key, or an index of an array
// when it is an integer) as #> does; asText: #>>.
func (d *deparser) jsonPathSQL(l string, path []*string, asText bool) string {
	cur := l
	for _, p := range path {
		if p == nil {
			return "NULL"
		}
		if isIntText(*p) {
			cur = "coalesce(json_extract(" + cur + ", " + quoteString(jsonIndexPath(strings.TrimSpace(*p))) +
				"), json_extract(" + cur + ", " + quoteString(jsonKeyPath(*p)) + "))"
		} else {
			cur = "json_extract(" + cur + ", " + quoteString(jsonKeyPath(*p)) + ")"
		}
	}
	if asText {
		cur = "json_extract_string(" + cur + ", '$')"
	}
	return cur
}

func isIntText(s string) bool {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// jsonHasKey writes ?, ?| and ?& on jsonb.
func (d *deparser) jsonHasKey(op string, l, r ex, loc int32) (ex, error) {
	if l.t == oidUnknown {
		l = d.coerce(l, oidJSONB)
	}
	if l.t != oidJSONB && l.t != 0 {
		return ex{}, d.noOperator(op, l, r, loc)
	}
	has := func(k string) string {
		return "(CASE json_type(" + l.sql + ") WHEN 'OBJECT' THEN list_contains(json_keys(" + l.sql + "), " + k +
			") WHEN 'ARRAY' THEN list_contains(CAST(json_extract(" + l.sql + ", '$[*]') AS VARCHAR[]), to_json(" + k +
			")::VARCHAR) WHEN 'VARCHAR' THEN json_extract_string(" + l.sql + ", '$') = " + k + " ELSE false END)"
	}
	if op == "?" {
		r = d.coerce(r, oidText)
		return ex{sql: has(r.sql), t: oidBool}, nil
	}
	r = d.coerce(r, 1009)
	agg := "list_bool_or"
	if op == "?&" {
		agg = "list_bool_and"
	}
	return ex{sql: "coalesce(" + agg + "(list_transform(" + r.sql + ", lambda mandate_k: " + has("mandate_k") + ")), " +
		map[string]string{"?|": "false", "?&": "true"}[op] + ")", t: oidBool}, nil
}
