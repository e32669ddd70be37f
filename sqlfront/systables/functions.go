package systables

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// Functions. A query may call only the functions below; everything else
// is 42883 (or 42501 for the engine's file, network and settings
// functions, see deniedFunction). Most run on the engine under the same
// name; some under another name; session functions become constants; the
// pg_catalog functions that clients use for introspection become
// expressions (templates) over the emulated pg_catalog relations.

type fnKind int

const (
	fnPass     fnKind = iota // same name in the engine
	fnRename                 // another name in the engine
	fnTemplate               // an expression with $1..$n for the arguments
	fnSession                // a constant from the session
)

type fnSpec struct {
	kind   fnKind
	target string // fnRename: the engine's name; fnTemplate: the expression
}

func pass() fnSpec                { return fnSpec{kind: fnPass} }
func rename(to string) fnSpec     { return fnSpec{kind: fnRename, target: to} }
func template(expr string) fnSpec { return fnSpec{kind: fnTemplate, target: expr} }
func sessionFn() fnSpec           { return fnSpec{kind: fnSession} }

var functions = map[string]fnSpec{}

func init() {
	for _, n := range strings.Fields(`
		count sum avg min max stddev stddev_pop stddev_samp variance var_pop var_samp bool_and bool_or string_agg array_agg
		percentile_cont percentile_disc mode corr covar_pop covar_samp regr_slope regr_intercept regr_r2 regr_count
		row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
		now date_trunc date_part age to_timestamp make_date make_timestamp make_timestamptz timezone isfinite
		length char_length character_length octet_length bit_length lower upper substring substr position strpos trim
		ltrim rtrim replace concat concat_ws left right split_part starts_with regexp_replace regexp_split_to_array lpad
		rpad repeat reverse md5 string_to_array array_length array_to_string unnest cardinality array_position
		array_append array_prepend array_cat translate ascii chr to_hex
		abs ceil ceiling floor round trunc mod power pow sqrt cbrt exp ln log log10 sign random pi greatest least degrees
		radians sin cos tan asin acos atan atan2
		json_extract_path json_extract_path_text json_array_length to_json gen_random_uuid generate_series generate_subscripts
		coalesce nullif div extract to_char initcap json_typeof jsonb_typeof json_agg jsonb_agg like_escape similar_to_escape`) {
		functions[n] = pass()
	}
	for from, to := range map[string]string{
		"every": "bool_and", "date_bin": "time_bucket", "clock_timestamp": "now", "statement_timestamp": "now",
		"transaction_timestamp": "now", "btrim": "trim", "jsonb_extract_path": "json_extract_path",
		"jsonb_extract_path_text": "json_extract_path_text", "jsonb_array_length": "json_array_length", "to_jsonb": "to_json",
		"json_build_object": "json_object", "jsonb_build_object": "json_object", "json_build_array": "json_array",
		"jsonb_build_array": "json_array", "uuid_generate_v4": "gen_random_uuid", "regexp_like": "regexp_matches",
	} {
		functions[from] = rename(to)
	}
	for name, expr := range map[string]string{
		// pg_catalog functions of introspection queries.
		"pg_get_userbyid":                 "(SELECT rolname FROM pg_catalog.pg_roles WHERE oid = $1)",
		"obj_description":                 "(SELECT description FROM pg_catalog.pg_description WHERE objoid = $1 AND objsubid = 0 LIMIT 1)",
		"col_description":                 "(SELECT description FROM pg_catalog.pg_description WHERE objoid = $1 AND objsubid = $2 LIMIT 1)",
		"shobj_description":               "(SELECT description FROM pg_catalog.pg_description WHERE objoid = $1 AND objsubid = 0 LIMIT 1)",
		"pg_table_is_visible":             "($1 IS NOT NULL)",
		"pg_type_is_visible":              "($1 IS NOT NULL)",
		"pg_function_is_visible":          "($1 IS NOT NULL)",
		"pg_get_expr":                     "CAST(NULL AS text)",
		"pg_get_indexdef":                 "CAST(NULL AS text)",
		"pg_get_constraintdef":            "CAST(NULL AS text)",
		"pg_get_viewdef":                  "CAST(NULL AS text)",
		"pg_get_triggerdef":               "CAST(NULL AS text)",
		"pg_get_ruledef":                  "CAST(NULL AS text)",
		"pg_get_partkeydef":               "CAST(NULL AS text)",
		"pg_get_function_result":          "CAST(NULL AS text)",
		"pg_get_function_arguments":       "CAST(NULL AS text)",
		"pg_get_statisticsobjdef_columns": "CAST(NULL AS text)",
		"pg_get_serial_sequence":          "CAST(NULL AS text)",
		"pg_relation_size":                "CAST(0 AS bigint)",
		"pg_total_relation_size":          "CAST(0 AS bigint)",
		"pg_table_size":                   "CAST(0 AS bigint)",
		"pg_indexes_size":                 "CAST(0 AS bigint)",
		"pg_size_pretty":                  "(CAST($1 AS text) || ' bytes')",
		"pg_encoding_to_char":             "'UTF8'",
		"pg_is_other_temp_schema":         "false",
		"pg_my_temp_schema":               "CAST(0 AS bigint)",
		"pg_is_in_recovery":               "false",
		"pg_database_size":                "CAST(0 AS bigint)",
		"pg_tablespace_size":              "CAST(0 AS bigint)",
		"pg_tablespace_location":          "''",
		"pg_relation_is_publishable":      "false",
		"array_upper":                     "len($1)",
		"array_lower":                     "CASE WHEN len($1) > 0 THEN 1 END",
		"array_ndims":                     "CASE WHEN $1 IS NOT NULL THEN 1 END",
		"has_table_privilege":             "true",
		"has_schema_privilege":            "true",
		"has_database_privilege":          "true",
		"has_column_privilege":            "true",
		"has_any_column_privilege":        "true",
		"pg_has_role":                     "true",
		"quote_ident":                     "CASE WHEN regexp_full_match($1, '[a-z_][a-z0-9_$]*') THEN $1 ELSE '\"' || replace($1, '\"', '\"\"') || '\"' END",
		"quote_literal":                   "('''' || replace(CAST($1 AS text), '''', '''''') || '''')",
		"format_type":                     "", // built from pgTypes, see formatTypeExpr
		"to_regtype":                      "", // built from pgTypes
		"inet_server_addr":                "CAST(NULL AS text)",
		"inet_server_port":                "CAST(NULL AS integer)",
		"inet_client_addr":                "CAST(NULL AS text)",
		// information_schema._pg_expandarray(arr): one (x, n) record per
		// element (pgJDBC's getPrimaryKeys).
		"_pg_expandarray": "struct_pack(x => unnest($1), n => generate_subscripts($1, 1))",
	} {
		functions[name] = template(expr)
	}
	functions["format"] = fnSpec{kind: fnSession}
	functions["parse_ident"] = fnSpec{kind: fnSession}
	for _, n := range []string{"version", "current_database", "current_catalog", "current_user", "session_user", "user",
		"current_role", "current_schema", "current_schemas", "current_setting", "pg_backend_pid", "pg_postmaster_start_time"} {
		functions[n] = sessionFn()
	}
	typeNames := map[uint32]string{}
	var cases []string
	var byName []string
	for _, t := range pgTypes {
		typeNames[t.oid] = t.format
		cases = append(cases, fmt.Sprintf("WHEN %d THEN '%s'", t.oid, strings.ReplaceAll(t.format, "'", "''")))
		byName = append(byName, fmt.Sprintf("WHEN '%s' THEN %d WHEN '%s' THEN %d", t.name, t.oid, t.format, t.oid))
	}
	functions["format_type"] = template("CASE $1 " + strings.Join(cases, " ") + " ELSE '???' END")
	functions["to_regtype"] = template("CASE lower($1) " + strings.Join(byName, " ") + " ELSE NULL END")
}

// deniedFunction reports the engine's functions that reach files, the
// network, extensions, settings or its own catalog.
func deniedFunction(name string) bool {
	n := strings.ToLower(name)
	for _, p := range []string{"read_", "duckdb_", "pragma_", "sqlite_", "parquet_", "iceberg_", "delta_", "postgres_",
		"mysql_", "http", "glob", "query", "getenv", "current_setting", "set_config", "setseed", "nextval", "currval",
		"checkpoint", "force_checkpoint", "load", "install", "export", "import", "copy", "attach", "detach", "write_",
		"pg_read", "pg_ls", "pg_stat_file", "lo_", "dblink", "enable_", "disable_", "which_secret", "json_execute",
		"test_", "icu_", "arrow_", "summary", "repeat_row", "range", "sniff_csv", "csv_", "file", "log_", "extension"} {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// funcName returns a function call's schema and lower-case name.
func funcName(fc *pg.FuncCall) (schema, name string) {
	var parts []string
	for _, n := range fc.Funcname {
		if s := n.GetString_(); s != nil {
			parts = append(parts, s.Sval)
		}
	}
	switch len(parts) {
	case 0:
		return "", ""
	case 1:
		return "", strings.ToLower(parts[0])
	}
	return strings.ToLower(parts[len(parts)-2]), strings.ToLower(parts[len(parts)-1])
}

// funcCall rewrites a function call whose arguments are done.
func (a *analysis) funcCall(n *pg.Node, fc *pg.FuncCall) error {
	schema, name := funcName(fc)
	spec, ok := functions[name]
	if schema != "" && schema != "pg_catalog" && !(schema == "information_schema" && strings.HasPrefix(name, "_pg_")) {
		ok = false
	}
	if !ok && a.pg && pgOnly[name] && (schema == "" || schema == "pg_catalog") {
		return nil // PostgreSQL's own, run natively
	}
	if !ok && a.inTemplate > 0 && schema == "" {
		a.native[fc] = true // an engine function of a template
		return nil
	}
	if !ok {
		if deniedFunction(name) {
			return denied("permission denied for function %s", name)
		}
		return &pgwire.Error{Severity: "ERROR", Code: "42883", Message: fmt.Sprintf("function %s() does not exist", name),
			Hint: "queries over system tables may use the common aggregate, window, date/time, string, math and JSON functions"}
	}
	if fc.AggWithinGroup && name != "percentile_cont" && name != "percentile_disc" && name != "mode" {
		return notSupported("WITHIN GROUP for " + name)
	}
	fc.Funcformat = pg.CoercionForm_COERCE_EXPLICIT_CALL
	if a.pg && pgNative[name] {
		if schema == "" || schema == "pg_catalog" {
			fc.Funcname = []*pg.Node{pg.MakeStrNode("pg_catalog"), pg.MakeStrNode(name)}
		}
		return nil
	}
	switch name {
	case "format":
		return a.format(n, fc)
	case "parse_ident":
		return a.parseIdent(n, fc)
	}
	switch spec.kind {
	case fnPass, fnRename:
		// The deparser writes PostgreSQL's function as the engine's.
		fc.Funcname = []*pg.Node{pg.MakeStrNode(name)}
	case fnTemplate:
		if fc.AggStar || fc.AggDistinct || fc.Over != nil || len(fc.AggOrder) > 0 || fc.AggFilter != nil {
			return notSupported(name + " with *, DISTINCT, ORDER BY, FILTER or OVER")
		}
		expr, err := a.expand(spec.target, fc.Args)
		if err != nil {
			return err
		}
		n.Node = expr.Node
	case fnSession:
		c, err := a.sessionValue(name, fc)
		if err != nil {
			return err
		}
		n.Node = c.Node
	}
	return nil
}

// templates are parsed once.
var (
	templateMu    sync.Mutex
	templateCache = map[string]*pg.Node{}
)

func parseTemplate(expr string) (*pg.Node, error) {
	templateMu.Lock()
	defer templateMu.Unlock()
	if t, ok := templateCache[expr]; ok {
		return proto.Clone(t).(*pg.Node), nil
	}
	// $n placeholders become column references the substitution finds.
	text := expr
	for i := 9; i >= 1; i-- {
		text = strings.ReplaceAll(text, "$"+strconv.Itoa(i), fmt.Sprintf("mandate_arg_%d", i))
	}
	res, err := pg.Parse("SELECT " + text)
	if err != nil {
		return nil, fmt.Errorf("systables: template %q: %w", expr, err)
	}
	t := res.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val
	templateCache[expr] = t
	return proto.Clone(t).(*pg.Node), nil
}

// expand instantiates a template: its own relations and functions are
// rewritten first, then the (already rewritten) arguments are put in.
func (a *analysis) expand(expr string, args []*pg.Node) (*pg.Node, error) {
	t, err := parseTemplate(expr)
	if err != nil {
		return nil, err
	}
	holder := &pg.Node{Node: &pg.Node_ResTarget{ResTarget: &pg.ResTarget{Val: t}}}
	a.inTemplate++
	err = a.walkNode(holder)
	a.inTemplate--
	if err != nil {
		return nil, err
	}
	t = holder.GetResTarget().Val
	var subst func(n *pg.Node)
	subst = func(n *pg.Node) {
		if n == nil {
			return
		}
		if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 {
			if s := cr.Fields[0].GetString_(); s != nil && strings.HasPrefix(s.Sval, "mandate_arg_") {
				i, _ := strconv.Atoi(strings.TrimPrefix(s.Sval, "mandate_arg_"))
				if i >= 1 && i <= len(args) {
					n.Node = proto.Clone(args[i-1]).(*pg.Node).Node
				} else {
					n.Node = &pg.Node_AConst{AConst: &pg.A_Const{Isnull: true}}
				}
				return
			}
		}
		forEachChildNode(n, subst)
	}
	subst(t)
	return t, nil
}

// forEachChildNode calls fn for every Node directly or indirectly inside
// n's message that is not itself inside another Node.
func forEachChildNode(n *pg.Node, fn func(*pg.Node)) {
	var visit func(m protoreflectMessage)
	visit = func(m protoreflectMessage) {
		m.Range(func(fd protoreflectFieldDescriptor, v protoreflectValue) bool {
			if fd.Message() == nil || fd.IsMap() {
				return true
			}
			each := func(cm protoreflectMessage) {
				if c, ok := cm.Interface().(*pg.Node); ok {
					fn(c)
				} else {
					visit(cm)
				}
			}
			if fd.IsList() {
				for i := 0; i < v.List().Len(); i++ {
					each(v.List().Get(i).Message())
				}
				return true
			}
			each(v.Message())
			return true
		})
	}
	visit(n.ProtoReflect())
}

func strConst(s string) *pg.Node {
	return &pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{Arg: pg.MakeAConstStrNode(s, -1),
		TypeName: &pg.TypeName{Names: []*pg.Node{pg.MakeStrNode("varchar")}, Typemod: -1}}}}
}

func nullConst(typ string) *pg.Node {
	return &pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{Arg: &pg.Node{Node: &pg.Node_AConst{AConst: &pg.A_Const{Isnull: true}}},
		TypeName: &pg.TypeName{Names: []*pg.Node{pg.MakeStrNode(typ)}, Typemod: -1}}}}
}

// literalArg returns a string constant argument.
func literalArg(n *pg.Node) (string, bool) {
	if n == nil {
		return "", false
	}
	if tc := n.GetTypeCast(); tc != nil {
		return literalArg(tc.Arg)
	}
	if c := n.GetAConst(); c != nil {
		if s := c.GetSval(); s != nil {
			return s.Sval, true
		}
		if b := c.GetBoolval(); b != nil {
			return strconv.FormatBool(b.Boolval), true
		}
	}
	return "", false
}

// sessionValue evaluates a session function to a constant.
func (a *analysis) sessionValue(name string, fc *pg.FuncCall) (*pg.Node, error) {
	switch name {
	case "version":
		return strConst(fmt.Sprintf("PostgreSQL %s (Mandate) on x86_64-pc-linux-gnu, compiled by Go, 64-bit", a.sess.ServerVersion())), nil
	case "current_database", "current_catalog":
		return strConst(a.sess.Database()), nil
	case "current_user", "session_user", "user", "current_role":
		return strConst(a.sess.User()), nil
	case "current_schema":
		return strConst("public"), nil
	case "current_schemas":
		return &pg.Node{Node: &pg.Node_AArrayExpr{AArrayExpr: &pg.A_ArrayExpr{Elements: []*pg.Node{
			strConst("pg_catalog"), strConst("public")}}}}, nil
	case "pg_backend_pid":
		return pg.MakeAConstIntNode(0, -1), nil
	case "pg_postmaster_start_time":
		return &pg.Node{Node: &pg.Node_FuncCall{FuncCall: &pg.FuncCall{Funcname: []*pg.Node{pg.MakeStrNode("now")}}}}, nil
	case "current_setting":
		if len(fc.Args) < 1 || len(fc.Args) > 2 {
			return nil, errorf("42883", "function current_setting with %d arguments does not exist", len(fc.Args))
		}
		setting, ok := literalArg(fc.Args[0])
		if !ok {
			return nil, notSupported("current_setting() of a non-constant name")
		}
		v, found := a.sess.Param(strings.ToLower(setting))
		if !found {
			if len(fc.Args) == 2 {
				if missingOK, _ := literalArg(fc.Args[1]); missingOK == "true" {
					return nullConst("varchar"), nil
				}
			}
			return nil, errorf("42704", "unrecognized configuration parameter %q", setting)
		}
		return strConst(v), nil
	}
	return nil, errorf("42883", "function %s() does not exist", name)
}

// sqlValueFunction rewrites CURRENT_USER and friends; CURRENT_DATE and
// CURRENT_TIMESTAMP run on the engine.
func (a *analysis) sqlValueFunction(n *pg.Node, f *pg.SQLValueFunction) error {
	switch f.Op {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE, pg.SQLValueFunctionOp_SVFOP_CURRENT_USER,
		pg.SQLValueFunctionOp_SVFOP_USER, pg.SQLValueFunctionOp_SVFOP_SESSION_USER:
		n.Node = strConst(a.sess.User()).Node
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:
		n.Node = strConst(a.sess.Database()).Node
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
		n.Node = strConst("public").Node
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N:
		n.Node = (&pg.Node{Node: &pg.Node_FuncCall{FuncCall: &pg.FuncCall{Funcname: []*pg.Node{pg.MakeStrNode("now")}}}}).Node
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		n.Node = (&pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{
			Arg:      &pg.Node{Node: &pg.Node_FuncCall{FuncCall: &pg.FuncCall{Funcname: []*pg.Node{pg.MakeStrNode("now")}}}},
			TypeName: &pg.TypeName{Names: []*pg.Node{pg.MakeStrNode("timestamp")}, Typemod: -1}}}}).Node
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
		n.Node = (&pg.Node{Node: &pg.Node_TypeCast{TypeCast: &pg.TypeCast{
			Arg:      &pg.Node{Node: &pg.Node_FuncCall{FuncCall: &pg.FuncCall{Funcname: []*pg.Node{pg.MakeStrNode("now")}}}},
			TypeName: &pg.TypeName{Names: []*pg.Node{pg.MakeStrNode("date")}, Typemod: -1}}}}).Node
	default:
		return notSupported(strings.ToUpper(sqlValueName(f.Op)))
	}
	return nil
}

// --- types -----------------------------------------------------------------

// engineTypes maps PostgreSQL type names to the engine's.
var engineTypes = map[string]string{
	"bool": "boolean", "boolean": "boolean", "int2": "smallint", "smallint": "smallint", "int4": "integer",
	"int": "integer", "integer": "integer", "int8": "bigint", "bigint": "bigint", "float4": "real", "real": "real",
	"float8": "double", "double precision": "double", "numeric": "decimal", "decimal": "decimal", "text": "varchar",
	"varchar": "varchar", "character varying": "varchar", "bpchar": "varchar", "char": "varchar", "character": "varchar",
	"name": "varchar", "bytea": "blob", "date": "date", "time": "time", "timestamp": "timestamp",
	"timestamptz": "timestamptz", "interval": "interval", "uuid": "uuid", "json": "json", "jsonb": "json",
	"oid": "bigint", "xid": "bigint", "regproc": "varchar", "unknown": "varchar",
}

// typeNameOf returns the lower-case name of a type without pg_catalog.
func typeNameOf(t *pg.TypeName) string {
	if t == nil {
		return ""
	}
	var parts []string
	for _, n := range t.Names {
		if s := n.GetString_(); s != nil && s.Sval != "pg_catalog" {
			parts = append(parts, strings.ToLower(s.Sval))
		}
	}
	return strings.Join(parts, ".")
}

// typeCast maps the cast's type; casts to the reg* types are resolved.
func (a *analysis) typeCast(n *pg.Node, tc *pg.TypeCast) error {
	name := typeNameOf(tc.TypeName)
	if len(tc.TypeName.ArrayBounds) == 0 {
		switch name {
		case "regclass", "regnamespace", "regrole", "regtype", "regproc", "regprocedure":
			return a.regCast(n, tc, name)
		}
	}
	if _, ok := engineTypes[name]; !ok {
		return notSupported("type " + name)
	}
	if tc.TypeName.Setof || tc.TypeName.PctType {
		return notSupported("this type reference")
	}
	return nil
}

// regCast resolves 'name'::regclass (and regtype, regnamespace, regrole)
// to the OID, and oid::regtype (etc.) to the name.
func (a *analysis) regCast(n *pg.Node, tc *pg.TypeCast, typ string) error {
	if s, ok := literalArg(tc.Arg); ok && tc.Arg.GetAConst() != nil {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			n.Node = pg.MakeAConstIntNode(v, -1).Node
			return nil
		}
		oid, err := a.lookupOID(typ, s)
		if err != nil {
			return err
		}
		n.Node = pg.MakeAConstIntNode(oid, -1).Node
		return nil
	}
	if isTextExpr(tc.Arg) {
		// A name computed by the query (Metabase's
		// format('%I.%I', schema, table)::regclass::oid): its OID, NULL
		// when nothing has that name.
		var expr string
		switch typ {
		case "regclass":
			// Aliases no query uses: the argument (Metabase's
			// format('%I.%I', c.table_schema, c.table_name)) keeps
			// reading its own relations inside the subquery.
			expr = `(SELECT regclass_c.oid FROM pg_catalog.pg_class regclass_c JOIN pg_catalog.pg_namespace regclass_n
				ON regclass_n.oid = regclass_c.relnamespace
				WHERE $1 IN (quote_ident(regclass_n.nspname) || '.' || quote_ident(regclass_c.relname),
					regclass_n.nspname || '.' || regclass_c.relname, quote_ident(regclass_c.relname), regclass_c.relname)
				ORDER BY regclass_n.nspname <> 'pg_catalog' LIMIT 1)`
		case "regnamespace":
			expr = "(SELECT oid FROM pg_catalog.pg_namespace WHERE $1 IN (nspname, quote_ident(nspname)) LIMIT 1)"
		case "regrole":
			expr = "(SELECT oid FROM pg_catalog.pg_roles WHERE $1 IN (rolname, quote_ident(rolname)) LIMIT 1)"
		case "regtype":
			expr = functions["to_regtype"].target
		default:
			return notSupported("a cast of a computed name to " + typ)
		}
		e, err := a.expand(expr, []*pg.Node{tc.Arg})
		if err != nil {
			return err
		}
		n.Node = e.Node
		return nil
	}
	// An OID (or a name, when the expression is one: relname::regclass)
	// shown as the name.
	var expr string
	switch typ {
	case "regclass":
		expr = "(SELECT relname FROM pg_catalog.pg_class WHERE CAST(oid AS text) = CAST($1 AS text) OR relname = CAST($1 AS text) LIMIT 1)"
	case "regnamespace":
		expr = "(SELECT nspname FROM pg_catalog.pg_namespace WHERE CAST(oid AS text) = CAST($1 AS text) OR nspname = CAST($1 AS text) LIMIT 1)"
	case "regrole":
		expr = "(SELECT rolname FROM pg_catalog.pg_roles WHERE CAST(oid AS text) = CAST($1 AS text) OR rolname = CAST($1 AS text) LIMIT 1)"
	case "regtype":
		expr = functions["format_type"].target
	default:
		expr = "CAST($1 AS text)"
	}
	e, err := a.expand(expr, []*pg.Node{tc.Arg})
	if err != nil {
		return err
	}
	n.Node = e.Node
	return nil
}

// isTextExpr reports whether an (already rewritten) expression is a
// string for sure: a string constant, a cast to text, a concatenation or
// a string function. Casts of such an expression to regclass look the
// name up; casts of anything else take it for an OID.
func isTextExpr(n *pg.Node) bool {
	switch x := n.Node.(type) {
	case *pg.Node_AConst:
		return x.AConst.GetSval() != nil
	case *pg.Node_TypeCast:
		switch typeNameOf(x.TypeCast.TypeName) {
		case "varchar", "text", "name", "character varying", "bpchar":
			return true
		}
	case *pg.Node_AExpr:
		return x.AExpr.Kind == pg.A_Expr_Kind_AEXPR_OP && opName(x.AExpr) == "||"
	case *pg.Node_FuncCall:
		_, name := funcName(x.FuncCall)
		switch name {
		case "concat", "concat_ws", "lower", "upper", "replace", "trim", "ltrim", "rtrim", "substring", "substr",
			"split_part", "left", "right", "lpad", "rpad", "translate", "regexp_replace", "md5", "to_hex", "chr", "format", "quote_ident":
			return true
		}
	case *pg.Node_CoalesceExpr:
		return len(x.CoalesceExpr.Args) > 0 && isTextExpr(x.CoalesceExpr.Args[0])
	}
	return false
}

// lookupOID finds the OID of a relation, namespace, role or type name.
func (a *analysis) lookupOID(typ, name string) (int64, error) {
	parts := splitQualified(name)
	rc := &rowCtx{m: a.m, me: a.me, sess: a.sess}
	switch typ {
	case "regclass":
		rel := parts[len(parts)-1]
		schema := ""
		if len(parts) >= 2 {
			schema = parts[len(parts)-2]
		}
		for _, c := range rc.classes() {
			if c.name == rel && (schema == "" || c.ns.name == schema) {
				return c.oid, nil
			}
		}
		return 0, errorf("42P01", "relation %q does not exist", name)
	case "regnamespace":
		for _, ns := range rc.namespaces() {
			if ns.name == parts[len(parts)-1] {
				return ns.oid, nil
			}
		}
		return 0, errorf("3F000", "schema %q does not exist", name)
	case "regrole":
		if p, ok := a.m.PrincipalByName(parts[len(parts)-1]); ok {
			return relOID(p.ID), nil
		}
		return 0, errorf("42704", "role %q does not exist", name)
	case "regtype":
		for _, t := range pgTypes {
			if t.name == strings.ToLower(name) || t.format == strings.ToLower(name) {
				return int64(t.oid), nil
			}
		}
		return 0, errorf("42704", "type %q does not exist", name)
	}
	return 0, notSupported("cast to " + typ)
}

// splitQualified splits a.b."C" into its identifiers (unquoted ones folded).
func splitQualified(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' && inQuote && i+1 < len(s) && s[i+1] == '"':
			cur.WriteByte('"')
			i++
		case c == '"':
			inQuote = !inQuote
		case c == '.' && !inQuote:
			out = append(out, cur.String())
			cur.Reset()
		case !inQuote:
			cur.WriteString(strings.ToLower(string(c)))
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

// --- operators -------------------------------------------------------------

var allowedOps = map[string]bool{
	"=": true, "<>": true, "!=": true, "<": true, ">": true, "<=": true, ">=": true, "+": true, "-": true, "*": true,
	"/": true, "%": true, "^": true, "||": true, "~~": true, "!~~": true, "~~*": true, "!~~*": true, "~": true, "!~": true,
	"~*": true, "!~*": true, "->": true, "->>": true, "#>": true, "#>>": true, "@>": true, "<@": true, "&&": true,
	"?": true, "?|": true, "?&": true, "|/": true, "||/": true, "@": true, "&": true, "|": true, "#": true,
	"<<": true, ">>": true,
}

func opName(x *pg.A_Expr) string {
	var parts []string
	for _, n := range x.Name {
		if s := n.GetString_(); s != nil && s.Sval != "pg_catalog" {
			parts = append(parts, s.Sval)
		}
	}
	return strings.Join(parts, ".")
}

func (a *analysis) checkOperator(x *pg.A_Expr) error {
	switch x.Kind {
	case pg.A_Expr_Kind_AEXPR_OP, pg.A_Expr_Kind_AEXPR_OP_ANY, pg.A_Expr_Kind_AEXPR_OP_ALL:
		if op := opName(x); !allowedOps[op] {
			return notSupported("operator " + op)
		}
	case pg.A_Expr_Kind_AEXPR_DISTINCT, pg.A_Expr_Kind_AEXPR_NOT_DISTINCT, pg.A_Expr_Kind_AEXPR_NULLIF,
		pg.A_Expr_Kind_AEXPR_IN, pg.A_Expr_Kind_AEXPR_LIKE, pg.A_Expr_Kind_AEXPR_ILIKE, pg.A_Expr_Kind_AEXPR_SIMILAR,
		pg.A_Expr_Kind_AEXPR_BETWEEN, pg.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg.A_Expr_Kind_AEXPR_BETWEEN_SYM,
		pg.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
	default:
		return notSupported("this operator")
	}
	return nil
}

// FunctionNames lists the functions queries may call (documentation, tests).
func FunctionNames() []string {
	out := make([]string, 0, len(functions))
	for n := range functions {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// blobLiteral is the engine's text form of bytes: printable ASCII as is,
// everything else (and the backslash) as \xHH.
func blobLiteral(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		if c >= 0x20 && c < 0x7f && c != '\\' {
			sb.WriteByte(c)
		} else {
			fmt.Fprintf(&sb, "\\x%02X", c)
		}
	}
	return sb.String()
}

// toCharField is one template pattern of to_char for dates and times:
// the strftime field it reads, how its letters are cased (names), its
// width when padded (names are padded to 9, numbers to their digits).
type toCharField struct {
	pattern, strftime string
	caseFn            string // "", "upper", "lower", "initcap"
	width             int    // names: blank-padded to width unless FM
	number            bool   // FM drops leading zeros
}

// toCharFields, longest patterns first.
var toCharFields = []toCharField{
	{"YYYY", "%Y", "", 0, true}, {"HH24", "%H", "", 0, true}, {"HH12", "%I", "", 0, true},
	{"MONTH", "%B", "upper", 9, false}, {"Month", "%B", "", 9, false}, {"month", "%B", "lower", 9, false},
	{"DAY", "%A", "upper", 9, false}, {"Day", "%A", "", 9, false}, {"day", "%A", "lower", 9, false},
	{"MON", "%b", "upper", 0, false}, {"Mon", "%b", "", 0, false}, {"mon", "%b", "lower", 0, false},
	{"DDD", "%j", "", 0, true}, {"IW", "%V", "", 0, true}, {"DY", "%a", "upper", 0, false}, {"Dy", "%a", "", 0, false},
	{"dy", "%a", "lower", 0, false}, {"YY", "%y", "", 0, true}, {"MM", "%m", "", 0, true}, {"DD", "%d", "", 0, true},
	{"HH", "%I", "", 0, true}, {"MI", "%M", "", 0, true}, {"SS", "%S", "", 0, true}, {"MS", "%g", "", 0, true},
	{"US", "%f", "", 0, true}, {"AM", "%p", "upper", 0, false}, {"PM", "%p", "upper", 0, false},
	{"am", "%p", "lower", 0, false}, {"pm", "%p", "lower", 0, false}, {"TZ", "%Z", "upper", 0, false},
	{"Q", "%q", "", 0, true},
}

// toCharSQL writes to_char(ts, template) for a timestamp ts (an engine
// expression of the wall-clock time) as a concatenation of strftime
// fields and literal text, with PostgreSQL's padding of names and its FM
// prefix.
func toCharSQL(ts, tmpl string) string {
	var parts []string
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, quoteString(lit.String()))
			lit.Reset()
		}
	}
	for i := 0; i < len(tmpl); {
		if tmpl[i] == '"' { // quoted text
			j := strings.IndexByte(tmpl[i+1:], '"')
			if j < 0 {
				j = len(tmpl) - i - 1
			}
			lit.WriteString(tmpl[i+1 : i+1+j])
			i += j + 2
			continue
		}
		fm := false
		if strings.HasPrefix(tmpl[i:], "FM") {
			fm = true
			i += 2
		}
		matched := false
		for _, f := range toCharFields {
			if !strings.HasPrefix(tmpl[i:], f.pattern) {
				continue
			}
			flush()
			e := "strftime(" + ts + ", " + quoteString(f.strftime) + ")"
			if f.caseFn != "" {
				e = f.caseFn + "(" + e + ")"
			}
			switch {
			case f.number && fm:
				e = "CAST(CAST(" + e + " AS BIGINT) AS VARCHAR)"
			case f.width > 0 && !fm:
				e = "rpad(" + e + ", " + strconv.Itoa(f.width) + ", ' ')"
			}
			parts = append(parts, e)
			i += len(f.pattern)
			matched = true
			break
		}
		if !matched {
			if !fm {
				lit.WriteByte(tmpl[i])
				i++
			}
		}
	}
	flush()
	if len(parts) == 0 {
		return "''"
	}
	return "(" + strings.Join(parts, " || ") + ")"
}

// format rewrites PostgreSQL's format('...%s...%I...%L...', args) with a
// constant format string to a concatenation (the engine's format has
// another syntax): %s is the argument as text (” for NULL), %I the
// argument as quote_ident makes it, %L as quote_literal (NULL unquoted),
// %% a percent sign. Positions (%1$s) and widths are not supported.
func (a *analysis) format(n *pg.Node, fc *pg.FuncCall) error {
	if len(fc.Args) < 1 {
		return errorf("42883", "function format() does not exist")
	}
	f, ok := literalArg(fc.Args[0])
	if !ok {
		return notSupported("format() with a non-constant format string")
	}
	args := fc.Args[1:]
	var parts []*pg.Node
	var lit strings.Builder
	next := 0
	for i := 0; i < len(f); i++ {
		if f[i] != '%' {
			lit.WriteByte(f[i])
			continue
		}
		if i+1 >= len(f) {
			return errorf("22023", "unterminated format() type specifier")
		}
		i++
		conv := f[i]
		if conv == '%' {
			lit.WriteByte('%')
			continue
		}
		if conv != 's' && conv != 'I' && conv != 'L' {
			return notSupported(fmt.Sprintf("format() specifier %%%c", conv))
		}
		if next >= len(args) {
			return errorf("22023", "too few arguments for format()")
		}
		if lit.Len() > 0 {
			parts = append(parts, pg.MakeAConstStrNode(lit.String(), -1))
			lit.Reset()
		}
		arg := args[next]
		next++
		var expr string
		switch conv {
		case 's':
			expr = "coalesce(CAST($1 AS text), '')"
		case 'I':
			expr = functions["quote_ident"].target
		case 'L':
			expr = "coalesce(" + functions["quote_literal"].target + ", 'NULL')"
		}
		e, err := a.expand(expr, []*pg.Node{arg})
		if err != nil {
			return err
		}
		parts = append(parts, e)
	}
	if lit.Len() > 0 || len(parts) == 0 {
		parts = append(parts, pg.MakeAConstStrNode(lit.String(), -1))
	}
	n.Node = pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode("concat")}, parts, -1).Node
	return nil
}

// parseIdent evaluates parse_ident('a."B".c') of a constant to the array
// of its identifiers, as PostgreSQL splits them: unquoted ones folded to
// lower case, quoted ones as written ("" is a quote).
func (a *analysis) parseIdent(n *pg.Node, fc *pg.FuncCall) error {
	if len(fc.Args) < 1 || len(fc.Args) > 2 {
		return errorf("42883", "function parse_ident with %d arguments does not exist", len(fc.Args))
	}
	s, ok := literalArg(fc.Args[0])
	if !ok {
		return notSupported("parse_ident() of a non-constant")
	}
	strict := true
	if len(fc.Args) == 2 {
		v, ok := literalArg(fc.Args[1])
		if !ok {
			return notSupported("parse_ident() with a non-constant strict flag")
		}
		strict = v == "true"
	}
	idents, err := splitIdents(s, strict)
	if err != nil {
		return err
	}
	elems := make([]*pg.Node, len(idents))
	for i, id := range idents {
		elems[i] = strConst(id)
	}
	n.Node = &pg.Node_AArrayExpr{AArrayExpr: &pg.A_ArrayExpr{Elements: elems}}
	return nil
}

// splitIdents is parse_ident's parser.
func splitIdents(s string, strict bool) ([]string, error) {
	bad := func() error { return errorf("22023", "string is not a valid identifier: %q", s) }
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	var out []string
	i := 0
	for {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			i++
			for {
				j := strings.IndexByte(s[i:], '"')
				if j < 0 {
					return nil, bad()
				}
				b.WriteString(s[i : i+j])
				i += j + 1
				if i < len(s) && s[i] == '"' {
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			if b.Len() == 0 {
				return nil, bad()
			}
			out = append(out, b.String())
		} else {
			j := i
			for j < len(s) && s[j] != '.' && !isSpace(s[j]) && s[j] != '"' {
				j++
			}
			if j == i {
				return nil, bad()
			}
			out = append(out, strings.ToLower(s[i:j]))
			i = j
		}
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i < len(s) && s[i] == '.' {
			i++
			continue
		}
		if i < len(s) && strict {
			return nil, bad()
		}
		return out, nil
	}
}
