package systables

import (
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// analysis validates one SELECT and rewrites it in place for the engine:
//
//   - every node of the tree must be of an allowed type (allowedNodes):
//     no INTO, FOR UPDATE, data-modifying CTE, or anything but SELECT;
//   - every relation must be a system table, a pg_catalog relation or a
//     CTE of the statement; system tables become the engine's audit
//     relation or VirtualTableFunc('schema.name'), CTEs get engine-private
//     names (so that a CTE name can never reach an engine relation);
//   - every function must be on the allow-list (functions.go): session
//     functions become constants, pg_catalog functions become expressions
//     over the emulated relations;
//   - operators, type names and collations are mapped to the engine's.
type analysis struct {
	sess Session
	m    *catalog.Model
	me   *catalog.Principal

	ctes    map[string]string    // CTE name -> engine name
	used    map[string]*relation // relations read, by key
	done    map[*pg.Node]bool    // nodes produced by a rewrite, not walked again
	nextCTE int
	// native are the calls of engine functions the analysis wrote
	// (templates, the virtual tables): the deparser writes them as they
	// are.
	native map[*pg.FuncCall]bool
	// inTemplate is above 0 while a function template is rewritten: its
	// own calls of engine functions (len, list_contains, ...) are trusted.
	inTemplate int
	// pg: the engine is PostgreSQL (pgdialect.go).
	pg bool
}

type (
	protoreflectMessage         = protoreflect.Message
	protoreflectFieldDescriptor = protoreflect.FieldDescriptor
	protoreflectValue           = protoreflect.Value
)

type pgwireError = pgwire.Error

// errorf is an error with a SQLSTATE.
func errorf(code, format string, args ...any) *pgwire.Error {
	return pgwire.Errorf(code, format, args...)
}

func notSupported(what string) *pgwire.Error {
	return &pgwire.Error{Severity: "ERROR", Code: "0A000", Message: what + " is not supported in queries over system tables",
		Hint: "Mandate runs read-only SELECTs over system.access.audit, system.information_schema and pg_catalog"}
}

func denied(format string, args ...any) *pgwire.Error {
	return &pgwire.Error{Severity: "ERROR", Code: "42501", Message: fmt.Sprintf(format, args...),
		Hint: "Mandate's SQL reads only system tables and catalog views; files, network, extensions, settings and the store's internal tables are not accessible"}
}

// allowedNodes are the parse-tree node types a query may contain.
var allowedNodes = map[protoreflect.FullName]bool{}

func init() {
	for _, m := range []proto.Message{
		&pg.ParseResult{}, &pg.RawStmt{}, &pg.Node{}, &pg.List{}, &pg.SelectStmt{}, &pg.ResTarget{}, &pg.ColumnRef{},
		&pg.A_Star{}, &pg.A_Const{}, &pg.String{}, &pg.Integer{}, &pg.Float{}, &pg.Boolean{}, &pg.A_Expr{}, &pg.BoolExpr{},
		&pg.NullTest{}, &pg.BooleanTest{}, &pg.SubLink{}, &pg.CaseExpr{}, &pg.CaseWhen{}, &pg.CoalesceExpr{},
		&pg.MinMaxExpr{}, &pg.FuncCall{}, &pg.WindowDef{}, &pg.SortBy{}, &pg.TypeCast{}, &pg.TypeName{}, &pg.RangeVar{},
		&pg.RangeSubselect{}, &pg.JoinExpr{}, &pg.Alias{}, &pg.WithClause{}, &pg.CommonTableExpr{}, &pg.ParamRef{},
		&pg.SQLValueFunction{}, &pg.A_Indirection{}, &pg.A_Indices{}, &pg.A_ArrayExpr{}, &pg.RowExpr{}, &pg.GroupingSet{},
		&pg.CollateClause{}, &pg.RangeFunction{},
	} {
		allowedNodes[m.ProtoReflect().Descriptor().FullName()] = true
	}
}

// templateNodes may appear in function templates (functions.go) only:
// struct_pack(x => ...) builds _pg_expandarray's record.
var templateNodes = map[protoreflect.FullName]bool{
	(&pg.NamedArgExpr{}).ProtoReflect().Descriptor().FullName(): true,
}

// nodeName is a readable name of a node type ("CreateStmt" -> "CREATE").
func nodeName(m protoreflect.Message) string {
	return string(m.Descriptor().Name())
}

// walkNode visits n: the pre-order hook may replace it (and mark the
// result done), then its children, then the post-order hook.
func (a *analysis) walkNode(n *pg.Node) error {
	if n == nil || n.Node == nil || a.done[n] {
		return nil
	}
	if err := a.pre(n); err != nil {
		return err
	}
	if a.done[n] {
		return nil
	}
	if err := a.walkChildren(n.ProtoReflect()); err != nil {
		return err
	}
	return a.post(n)
}

// walkChildren visits every message inside m (through the oneof of a
// Node, lists and direct message fields) after checking m's type.
func (a *analysis) walkChildren(m protoreflect.Message) error {
	if !allowedNodes[m.Descriptor().FullName()] && !((a.inTemplate > 0 || a.pg) && templateNodes[m.Descriptor().FullName()]) {
		return notSupported(splitCamel(nodeName(m)))
	}
	if err := a.checkMessage(m.Interface()); err != nil {
		return err
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		visit := func(cm protoreflect.Message) {
			if n, ok := cm.Interface().(*pg.Node); ok {
				err = a.walkNode(n)
			} else {
				err = a.walkChildren(cm)
			}
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				visit(l.Get(i).Message())
			}
		case fd.IsMap():
		default:
			visit(v.Message())
		}
		return err == nil
	})
	return err
}

// checkMessage refuses the parts of allowed node types that are not.
func (a *analysis) checkMessage(m proto.Message) error {
	switch x := m.(type) {
	case *pg.SelectStmt:
		if x.IntoClause != nil {
			return notSupported("SELECT INTO")
		}
		if len(x.LockingClause) > 0 {
			return notSupported("SELECT FOR UPDATE/SHARE")
		}
	case *pg.RangeFunction:
		if x.IsRowsfrom || x.Ordinality || len(x.Coldeflist) > 0 {
			return notSupported("ROWS FROM, WITH ORDINALITY and column definition lists")
		}
	case *pg.CommonTableExpr:
		if x.SearchClause != nil || x.CycleClause != nil {
			return notSupported("SEARCH and CYCLE clauses")
		}
	case *pg.A_Expr:
		return a.checkOperator(x)
	case *pg.SubLink:
		if x.SubLinkType == pg.SubLinkType_ROWCOMPARE_SUBLINK || x.SubLinkType == pg.SubLinkType_MULTIEXPR_SUBLINK {
			return notSupported("row comparison with a subquery")
		}
	}
	return nil
}

// pre rewrites relations, CTE definitions and type casts of special
// types before their children are visited.
func (a *analysis) pre(n *pg.Node) error {
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		return a.rangeVar(n, x.RangeVar)
	case *pg.Node_CommonTableExpr:
		c := x.CommonTableExpr
		if name, ok := a.ctes[c.Ctename]; ok {
			c.Ctename = name
		}
	case *pg.Node_RangeFunction:
		return a.rangeFunction(n, x.RangeFunction)
	}
	return nil
}

// post rewrites expressions whose arguments are done.
func (a *analysis) post(n *pg.Node) error {
	switch x := n.Node.(type) {
	case *pg.Node_FuncCall:
		return a.funcCall(n, x.FuncCall)
	case *pg.Node_SqlvalueFunction:
		return a.sqlValueFunction(n, x.SqlvalueFunction)
	case *pg.Node_TypeCast:
		return a.typeCast(n, x.TypeCast)
	case *pg.Node_ColumnRef:
		a.columnRef(x.ColumnRef)
	case *pg.Node_CollateClause:
		if a.pg {
			return nil // PostgreSQL's own
		}
		// Collations are PostgreSQL's ("default", "C"); the engine
		// compares by byte, which is what "C" means.
		if arg := x.CollateClause.Arg; arg != nil {
			n.Node = arg.Node
		}
	}
	return nil
}

// collectCTEs gives every CTE of the statement an engine name.
func (a *analysis) collectCTEs(m protoreflect.Message) {
	if c, ok := m.Interface().(*pg.CommonTableExpr); ok {
		if _, seen := a.ctes[c.Ctename]; !seen {
			a.nextCTE++
			a.ctes[c.Ctename] = fmt.Sprintf("mandate_cte_%d", a.nextCTE)
		}
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil || fd.IsMap() {
			return true
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				a.collectCTEs(l.Get(i).Message())
			}
			return true
		}
		a.collectCTEs(v.Message())
		return true
	})
}

// internalNames are relations of the store and of DuckDB that a query
// must never read (42501 rather than "does not exist").
var internalNames = map[string]bool{
	"audit_events": true, "principals": true, "memberships": true, "securables": true, "grants": true,
	"mandate_meta": true, catalog.AuditRelation: true, catalog.UsageRelation: true, catalog.PayloadsRelation: true,
	"sqlite_master": true, "sqlite_schema": true,
	"sqlite_temp_master": true, "duckdb_tables": true, "duckdb_settings": true, "duckdb_columns": true,
}

func isInternal(schema, name string) bool {
	n := strings.ToLower(name)
	if internalNames[n] || strings.HasPrefix(n, "duckdb_") || strings.HasPrefix(n, "pragma_") ||
		strings.HasPrefix(n, "mandate_") {
		return true
	}
	switch strings.ToLower(schema) {
	case "main", "temp", "memory", "catalog", "pg_temp", "pg_toast":
		return true
	}
	return false
}

// qualified renders a RangeVar's name as written.
func qualified(rv *pg.RangeVar) string {
	var parts []string
	for _, p := range []string{rv.Catalogname, rv.Schemaname, rv.Relname} {
		if p != "" {
			parts = append(parts, catalog.QuoteIdent(p))
		}
	}
	return strings.Join(parts, ".")
}

// resolve maps a reference to a relation: [system.]access.audit,
// [system.]information_schema.x, [pg_catalog.]pg_x. Two-part names
// resolve in the session's catalog, except information_schema and
// pg_catalog, which every catalog shares.
func (a *analysis) resolve(rv *pg.RangeVar) (*relation, error) {
	cat, schema, name := rv.Catalogname, rv.Schemaname, rv.Relname
	switch {
	case schema == "" && cat == "":
		if r, ok := lookupRelation("pg_catalog", name); ok {
			return r, nil
		}
		if isInternal("", name) {
			return nil, denied("permission denied for table %s: it is internal to Mandate", catalog.QuoteIdent(name))
		}
		return nil, &pgwire.Error{Severity: "ERROR", Code: "42P01", Message: fmt.Sprintf("relation %q does not exist", name),
			Hint: "system tables are system.access.audit and system.information_schema.*, e.g. SELECT * FROM system.access.audit"}
	case cat == "":
		cat = a.sess.Database()
		if schema == "information_schema" || schema == "pg_catalog" {
			cat = catalog.SystemCatalog
		}
	}
	if cat == catalog.SystemCatalog || (schema == "pg_catalog" && cat == a.sess.Database()) {
		if schema == "pg_catalog" {
			if r, ok := lookupRelation(schema, name); ok {
				return r, nil
			}
		}
		if r, ok := lookupRelation(schema, name); ok && (r.table || r.schema == "information_schema") {
			return r, nil
		}
	}
	if isInternal(schema, name) || cat != a.sess.Database() && cat != catalog.SystemCatalog && isInternal(cat, "") {
		return nil, denied("permission denied for table %s: it is internal to Mandate", qualified(rv))
	}
	e := &pgwire.Error{Severity: "ERROR", Code: "42P01", Message: fmt.Sprintf("relation %q does not exist", qualified(rv))}
	if cat != catalog.SystemCatalog && (schema == "access" || schema == "information_schema") {
		e.Hint = "system tables are in catalog system: system." + schema + "." + name
	}
	return nil, e
}

// rangeVar rewrites a relation reference.
func (a *analysis) rangeVar(n *pg.Node, rv *pg.RangeVar) error {
	if rv.Schemaname == "" && rv.Catalogname == "" {
		if engineName, ok := a.ctes[rv.Relname]; ok {
			if rv.Alias == nil {
				rv.Alias = &pg.Alias{Aliasname: rv.Relname}
			}
			rv.Relname = engineName
			a.done[n] = true
			return nil
		}
	}
	if !rv.Inh {
		return notSupported("ONLY")
	}
	r, err := a.resolve(rv)
	if err != nil {
		return err
	}
	alias := rv.Alias
	if alias == nil {
		alias = &pg.Alias{Aliasname: r.name}
	}
	a.used[r.key()] = r
	if r.engine != "" {
		n.Node = &pg.Node_RangeVar{RangeVar: &pg.RangeVar{Relname: r.engine, Inh: true, Relpersistence: "p", Alias: alias}}
	} else {
		call := pg.MakeFuncCallNode([]*pg.Node{pg.MakeStrNode(catalog.VirtualTableFunc)},
			[]*pg.Node{pg.MakeAConstStrNode(r.key(), -1)}, -1)
		a.native[call.GetFuncCall()] = true
		n.Node = &pg.Node_RangeFunction{RangeFunction: &pg.RangeFunction{
			Functions: []*pg.Node{pg.MakeListNode([]*pg.Node{call, nil})}, Alias: alias}}
	}
	a.done[n] = true
	return nil
}

// tableFunctions may be called in FROM.
var tableFunctions = map[string]bool{"generate_series": true, "unnest": true}

func (a *analysis) rangeFunction(n *pg.Node, rf *pg.RangeFunction) error {
	if sub := scalarFrom(rf); sub != nil {
		n.Node = sub
		return nil
	}
	for _, item := range rf.Functions {
		l := item.GetList()
		if l == nil || len(l.Items) == 0 {
			return notSupported("this FROM item")
		}
		fc := l.Items[0].GetFuncCall()
		if fc == nil {
			return notSupported("this FROM item")
		}
		schema, name := funcName(fc)
		if (schema != "" && schema != "pg_catalog") || !tableFunctions[name] {
			if deniedFunction(name) {
				return denied("permission denied for function %s", name)
			}
			return errorf("42883", "function %s does not exist or cannot be used in FROM", name)
		}
	}
	// A function of one column aliased "s" names its column s too.
	if al := rf.Alias; al != nil && len(al.Colnames) == 0 && len(rf.Functions) == 1 {
		al.Colnames = []*pg.Node{pg.MakeStrNode(al.Aliasname)}
	}
	return nil
}

// scalarFrom rewrites a scalar function in FROM (Grafana's
// "string_to_array(current_setting('search_path'), ',') s"), which
// PostgreSQL reads as one row of one column named after the alias (or the
// function), to the subquery (SELECT f(...) AS s) s; the engine takes only
// table functions in FROM. The call itself is checked like any other.
// Returns nil for anything else.
func scalarFrom(rf *pg.RangeFunction) *pg.Node_RangeSubselect {
	if len(rf.Functions) != 1 || rf.IsRowsfrom || rf.Ordinality || len(rf.Coldeflist) > 0 {
		return nil
	}
	l := rf.Functions[0].GetList()
	if l == nil || len(l.Items) == 0 {
		return nil
	}
	fc := l.Items[0].GetFuncCall()
	if fc == nil {
		return nil
	}
	schema, name := funcName(fc)
	if _, known := functions[name]; !known || tableFunctions[name] || (schema != "" && schema != "pg_catalog") {
		return nil
	}
	alias := rf.Alias
	if alias == nil {
		alias = &pg.Alias{Aliasname: name}
	}
	col := alias.Aliasname
	if len(alias.Colnames) > 0 {
		if s := alias.Colnames[0].GetString_(); s != nil {
			col = s.Sval
		}
	}
	sel := &pg.SelectStmt{TargetList: []*pg.Node{{Node: &pg.Node_ResTarget{ResTarget: &pg.ResTarget{Name: col, Val: l.Items[0]}}}},
		LimitOption: pg.LimitOption_LIMIT_OPTION_DEFAULT, Op: pg.SetOperation_SETOP_NONE}
	return &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{Lateral: rf.Lateral,
		Subquery: &pg.Node{Node: &pg.Node_SelectStmt{SelectStmt: sel}}, Alias: alias}}
}

// columnRef drops the catalog and schema of a qualified column reference
// (access.audit.event_time -> audit.event_time): relations are known to
// the engine by their alias only.
func (a *analysis) columnRef(c *pg.ColumnRef) {
	if len(c.Fields) >= 3 {
		c.Fields = c.Fields[len(c.Fields)-2:]
	}
}

// splitCamel turns "CreateStmt" into "CREATE STMT".
func splitCamel(s string) string {
	s = strings.TrimSuffix(s, "Stmt")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' && !(s[i-1] >= 'A' && s[i-1] <= 'Z') {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(strings.ReplaceAll(b.String(), "_", " "))
}

// --- column names --------------------------------------------------------

// figureColname is PostgreSQL's name for an unnamed select-list item.
func figureColname(n *pg.Node) string {
	if n == nil {
		return "?column?"
	}
	switch x := n.Node.(type) {
	case *pg.Node_ColumnRef:
		f := x.ColumnRef.Fields
		if len(f) > 0 {
			if s := f[len(f)-1].GetString_(); s != nil {
				return s.Sval
			}
		}
	case *pg.Node_AIndirection:
		ind := x.AIndirection.Indirection
		for i := len(ind) - 1; i >= 0; i-- {
			if s := ind[i].GetString_(); s != nil {
				return s.Sval
			}
		}
		return figureColname(x.AIndirection.Arg)
	case *pg.Node_FuncCall:
		_, name := funcName(x.FuncCall)
		return name
	case *pg.Node_AExpr:
		if x.AExpr.Kind == pg.A_Expr_Kind_AEXPR_NULLIF {
			return "nullif"
		}
	case *pg.Node_TypeCast:
		if name := figureColname(x.TypeCast.Arg); name != "?column?" {
			return name
		}
		if tn := x.TypeCast.TypeName; tn != nil && len(tn.Names) > 0 {
			if s := tn.Names[len(tn.Names)-1].GetString_(); s != nil {
				return s.Sval
			}
		}
	case *pg.Node_CollateClause:
		return figureColname(x.CollateClause.Arg)
	case *pg.Node_SubLink:
		switch x.SubLink.SubLinkType {
		case pg.SubLinkType_EXISTS_SUBLINK:
			return "exists"
		case pg.SubLinkType_ARRAY_SUBLINK:
			return "array"
		case pg.SubLinkType_EXPR_SUBLINK:
			if sel := x.SubLink.Subselect.GetSelectStmt(); sel != nil && len(sel.TargetList) == 1 {
				if rt := sel.TargetList[0].GetResTarget(); rt != nil {
					if rt.Name != "" {
						return rt.Name
					}
					return figureColname(rt.Val)
				}
			}
		}
	case *pg.Node_CaseExpr:
		return "case"
	case *pg.Node_AArrayExpr:
		return "array"
	case *pg.Node_RowExpr:
		return "row"
	case *pg.Node_CoalesceExpr:
		return "coalesce"
	case *pg.Node_MinMaxExpr:
		if x.MinMaxExpr.Op == pg.MinMaxOp_IS_GREATEST {
			return "greatest"
		}
		return "least"
	case *pg.Node_SqlvalueFunction:
		return sqlValueName(x.SqlvalueFunction.Op)
	}
	return "?column?"
}

func sqlValueName(op pg.SQLValueFunctionOp) string {
	switch op {
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_DATE:
		return "current_date"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIME_N:
		return "current_time"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP, pg.SQLValueFunctionOp_SVFOP_CURRENT_TIMESTAMP_N:
		return "current_timestamp"
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIME, pg.SQLValueFunctionOp_SVFOP_LOCALTIME_N:
		return "localtime"
	case pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP, pg.SQLValueFunctionOp_SVFOP_LOCALTIMESTAMP_N:
		return "localtimestamp"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE:
		return "current_role"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_USER:
		return "current_user"
	case pg.SQLValueFunctionOp_SVFOP_USER:
		return "user"
	case pg.SQLValueFunctionOp_SVFOP_SESSION_USER:
		return "session_user"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG:
		return "current_catalog"
	case pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
		return "current_schema"
	}
	return "?column?"
}

// firstSelect returns the SELECT whose targets name the result columns
// (the leftmost branch of set operations).
func firstSelect(s *pg.SelectStmt) *pg.SelectStmt {
	for s.Op != pg.SetOperation_SETOP_NONE && s.Larg != nil {
		s = s.Larg
	}
	return s
}

// outputInfo names the unnamed result columns as PostgreSQL does (the
// engine's names differ: count_star(), ...) and notes the ones cast to
// jsonb, whose type the engine does not tell apart from json.
func outputInfo(s *pg.SelectStmt) (jsonb map[int]bool) {
	first := firstSelect(s)
	jsonb = map[int]bool{}
	pos := 0
	for _, t := range first.TargetList {
		rt := t.GetResTarget()
		if rt == nil {
			continue
		}
		if isStar(rt.Val) {
			pos = -1 // positions after a * are unknown
			continue
		}
		if rt.Name == "" {
			rt.Name = figureColname(rt.Val)
		}
		if tc := rt.Val.GetTypeCast(); tc != nil && pos >= 0 && typeNameOf(tc.TypeName) == "jsonb" {
			jsonb[pos] = true
		}
		if pos >= 0 {
			pos++
		}
	}
	return jsonb
}

func isStar(n *pg.Node) bool {
	if n == nil {
		return false
	}
	if cr := n.GetColumnRef(); cr != nil {
		for _, f := range cr.Fields {
			if f.GetAStar() != nil {
				return true
			}
		}
	}
	return false
}
