package systables

import (
	"fmt"
	"strconv"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/mandatehq/mandate/catalog"
)

// The deparser writes the analysed parse tree as the engine's SQL. It
// never splices text: every expression is written from its node, every
// operator expression in parentheses, so that the engine's grammar (whose
// precedences differ from PostgreSQL's: ->> binds looser than LIKE in
// DuckDB) reads the tree PostgreSQL parsed. On the way it infers the
// PostgreSQL type of every expression (see typing.go): operators,
// functions and casts whose PostgreSQL semantics differ from the engine's
// are written as engine expressions that compute PostgreSQL's answer
// (integer division, division by zero, sum(int) as bigint, NULL ordering,
// time zones, JSON operators, ...), and the result columns get
// PostgreSQL's types.

// ex is an expression written for the engine with its PostgreSQL type.
type ex struct {
	sql string
	t   uint32 // PostgreSQL type OID; 0 when not known
	// lit is the text of an untyped string literal (t = oidUnknown): a
	// literal takes the type its context gives it, as in PostgreSQL.
	lit *string
	// null marks an untyped NULL.
	null bool
	// num is the text of a numeric constant (for divisors known not to be
	// zero).
	num string
	// param is the number of an untyped parameter ($1): like a literal,
	// it takes its context's type.
	param int
}

// colInfo is a column a name can refer to.
type colInfo struct {
	name string
	t    uint32
	// untyped: an untyped literal (a set operation or VALUES gives it
	// the other rows' type).
	untyped bool
}

// srcRel is a relation of a FROM clause: its name in the query and its
// columns.
type srcRel struct {
	name string
	cols []colInfo
	// open is true when the columns are not all known (a function of
	// the engine in FROM): names not found may still exist.
	open bool
}

// scope is what column references of one query level can see.
type scope struct {
	rels   []*srcRel
	parent *scope
	// out are the result columns, for ORDER BY and GROUP BY names, and
	// outSQL their expressions as written.
	out    []colInfo
	outSQL []string
}

// unresolvedCol is a column reference the deparser could not resolve; if
// the engine fails to bind it, the error names it with its position.
type unresolvedCol struct {
	ref      *pg.ColumnRef
	qualName string // "a.b" as written, or "b"
	name     string
	hint     string
	missing  string // a missing FROM-clause entry (the qualifier), if any
	definite bool   // a name differing only in case exists: PostgreSQL fails, the engine would not
}

type deparser struct {
	sess Session
	tz   string // the session's TimeZone
	// native are calls of engine functions made by the analysis
	// (templates, to_char, format); they are written as they are.
	native map[*pg.FuncCall]bool
	// ctes are the output columns of the statement's CTEs by engine name.
	ctes       map[string][]colInfo
	scope      *scope
	unresolved []unresolvedCol
	// orderBy is set while the keys of a query's ORDER BY are written.
	orderBy bool
	// targetSQL are the expressions of the last select list written.
	targetSQL []string
	// declared are the parameter types the client gave (0: none);
	// params the types the statement gives its parameters.
	declared []uint32
	params   []uint32
	// rawParams: a parameter was written before its type was known.
	rawParams bool
	// refs are the first resolved reference of each column name, for
	// the engine's errors about a column (GROUP BY, ambiguity).
	refs map[string]resolvedRef
	// clause is the clause being written where aggregates are not
	// allowed ("WHERE", "JOIN/ON", "GROUP BY"), inAggregate is set in an
	// aggregate's arguments: PostgreSQL refuses aggregates there (42803).
	clause      string
	inAggregate bool
}

// resolvedRef is where a column name was first used and the relation it
// was found in.
type resolvedRef struct {
	rel string
	loc int32
}

func newDeparser(sess Session, native map[*pg.FuncCall]bool, declared []uint32) *deparser {
	tz := "UTC"
	if v, ok := sess.Param("timezone"); ok && v != "" {
		tz = v
	}
	return &deparser{sess: sess, tz: tz, native: native, ctes: map[string][]colInfo{}, declared: declared,
		refs: map[string]resolvedRef{}}
}

// param writes a parameter reference: typed when the client declared
// its type, else untyped until its context types it.
func (d *deparser) param(n int) (ex, error) {
	if n < 1 || n > 65535 {
		return ex{}, errorf("42P02", "there is no parameter $%d", n)
	}
	for len(d.params) < n {
		d.params = append(d.params, 0)
	}
	if n <= len(d.declared) && d.declared[n-1] != 0 {
		t := d.declared[n-1]
		if et, ok := dataOf(t); ok && et.Data != catalog.DataList {
			t = typeOID(et)
		}
		d.params[n-1] = d.declared[n-1]
		return ex{sql: fmt.Sprintf("CAST($%d AS %s)", n, engineType(t)), t: t}, nil
	}
	if d.params[n-1] != 0 {
		t := d.params[n-1]
		return ex{sql: fmt.Sprintf("CAST($%d AS %s)", n, engineType(t)), t: t}, nil
	}
	d.rawParams = true
	return ex{sql: fmt.Sprintf("$%d", n), t: oidUnknown, param: n}, nil
}

// quoteIdent quotes an identifier for the engine, always.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteString writes a string literal for the engine (standard strings:
// backslashes are literal, quotes are doubled).
func quoteString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// --- statements ---------------------------------------------------------

// statement writes a top-level SELECT and returns the types of its
// result columns (0 where a * hides them).
func (d *deparser) statement(s *pg.SelectStmt) (string, []colInfo, error) {
	sql, cols, err := d.selectStmt(s, nil)
	if err == nil && d.rawParams {
		// A parameter was written before a later use typed it, or was
		// never typed (text, as in PostgreSQL): write the statement
		// again with every parameter typed.
		for i, t := range d.params {
			if t == 0 {
				d.params[i] = oidText
			}
		}
		d.unresolved, d.ctes, d.rawParams, d.refs = nil, map[string][]colInfo{}, false, map[string]resolvedRef{}
		sql, cols, err = d.selectStmt(s, nil)
	}
	if err == nil && len(sql) > maxEngineSQL {
		return "", nil, tooComplex()
	}
	return sql, cols, err
}

// selectStmt writes a SELECT (with set operations, VALUES, WITH, ORDER
// BY, LIMIT) in a new scope below d.scope.
func (d *deparser) selectStmt(s *pg.SelectStmt, colAliases []string) (string, []colInfo, error) {
	outer, clause, inAgg := d.scope, d.clause, d.inAggregate
	d.scope, d.clause, d.inAggregate = &scope{parent: outer}, "", false
	defer func() { d.scope, d.clause, d.inAggregate = outer, clause, inAgg }()
	var b strings.Builder
	if s.WithClause != nil {
		w, err := d.withClause(s.WithClause)
		if err != nil {
			return "", nil, err
		}
		b.WriteString(w)
		b.WriteByte(' ')
	}
	var body string
	var cols []colInfo
	var err error
	switch {
	case s.Op != pg.SetOperation_SETOP_NONE:
		body, cols, err = d.setOp(s)
	case len(s.ValuesLists) > 0:
		body, cols, err = d.values(s)
	default:
		body, cols, err = d.simpleSelect(s)
	}
	if err != nil {
		return "", nil, err
	}
	b.WriteString(body)
	d.scope.out = cols
	if len(s.SortClause) > 0 {
		if s.Op != pg.SetOperation_SETOP_NONE || len(s.ValuesLists) > 0 {
			// The sort keys name result columns only.
			d.scope.rels = []*srcRel{{cols: cols}}
		}
		d.orderBy = true
		o, err := d.sortClause(s.SortClause)
		d.orderBy = false
		if err != nil {
			return "", nil, err
		}
		if len(s.DistinctClause) == 1 && s.DistinctClause[0].Node == nil {
			if err := d.distinctOrder(s.SortClause); err != nil {
				return "", nil, err
			}
		}
		b.WriteString(" ORDER BY ")
		b.WriteString(o)
	}
	if l, err := d.limit(s); err != nil {
		return "", nil, err
	} else {
		b.WriteString(l)
	}
	for i := range cols {
		if i < len(colAliases) {
			cols[i].name = colAliases[i]
		}
	}
	return b.String(), cols, nil
}

func (d *deparser) limit(s *pg.SelectStmt) (string, error) {
	var b strings.Builder
	if s.LimitOption == pg.LimitOption_LIMIT_OPTION_WITH_TIES {
		return "", notSupported("FETCH FIRST ... WITH TIES")
	}
	if s.LimitCount != nil {
		if c := s.LimitCount.GetAConst(); c != nil && c.Isnull {
			// LIMIT ALL / LIMIT NULL: no limit.
		} else {
			e, err := d.expr(s.LimitCount)
			if err != nil {
				return "", err
			}
			e = d.coerce(e, oidInt8)
			if e.t == 0 {
				e.sql = "CAST(" + e.sql + " AS BIGINT)"
			}
			fmt.Fprintf(&b, " LIMIT %s", d.nonNegative(e, "2201W", "LIMIT must not be negative"))
		}
	}
	if s.LimitOffset != nil {
		e, err := d.expr(s.LimitOffset)
		if err != nil {
			return "", err
		}
		e = d.coerce(e, oidInt8)
		if e.t == 0 {
			e.sql = "CAST(" + e.sql + " AS BIGINT)"
		}
		fmt.Fprintf(&b, " OFFSET %s", d.nonNegative(e, "2201X", "OFFSET must not be negative"))
	}
	return b.String(), nil
}

// nonNegative checks a LIMIT or OFFSET: a constant here, any other
// expression in the engine.
func (d *deparser) nonNegative(e ex, code, msg string) string {
	if e.num != "" {
		if strings.HasPrefix(e.num, "-") {
			return raise(code, msg)
		}
		return e.sql
	}
	return fmt.Sprintf("(CASE WHEN %s < 0 THEN %s ELSE %s END)", e.sql, raise(code, msg), e.sql)
}

func (d *deparser) withClause(w *pg.WithClause) (string, error) {
	var b strings.Builder
	b.WriteString("WITH ")
	if w.Recursive {
		b.WriteString("RECURSIVE ")
	}
	for i, n := range w.Ctes {
		c := n.GetCommonTableExpr()
		if c == nil {
			return "", notSupported("this WITH item")
		}
		if i > 0 {
			b.WriteString(", ")
		}
		sel := c.Ctequery.GetSelectStmt()
		if sel == nil {
			return "", notSupported("data-modifying statements in WITH")
		}
		aliases := names(c.Aliascolnames)
		if w.Recursive && sel.Op == pg.SetOperation_SETOP_UNION && sel.Larg != nil {
			// The recursive term sees the CTE with the types of the
			// non-recursive one.
			_, cols, err := d.selectStmt(sel.Larg, aliases)
			if err != nil {
				return "", err
			}
			d.ctes[c.Ctename] = cols
		}
		q, cols, err := d.selectStmt(sel, aliases)
		if err != nil {
			return "", err
		}
		d.ctes[c.Ctename] = cols
		b.WriteString(quoteIdent(c.Ctename))
		if len(aliases) > 0 {
			b.WriteString(identList(aliases))
		}
		b.WriteString(" AS ")
		switch c.Ctematerialized {
		case pg.CTEMaterialize_CTEMaterializeAlways:
			b.WriteString("MATERIALIZED ")
		case pg.CTEMaterialize_CTEMaterializeNever:
			b.WriteString("NOT MATERIALIZED ")
		}
		b.WriteString("(" + q + ")")
	}
	return b.String(), nil
}

func names(ns []*pg.Node) []string {
	var out []string
	for _, n := range ns {
		if s := n.GetString_(); s != nil {
			out = append(out, s.Sval)
		}
	}
	return out
}

func identList(ns []string) string {
	q := make([]string, len(ns))
	for i, n := range ns {
		q[i] = quoteIdent(n)
	}
	return "(" + strings.Join(q, ", ") + ")"
}

func (d *deparser) setOp(s *pg.SelectStmt) (string, []colInfo, error) {
	l, lcols, err := d.selectStmt(s.Larg, nil)
	if err != nil {
		return "", nil, err
	}
	r, rcols, err := d.selectStmt(s.Rarg, nil)
	if err != nil {
		return "", nil, err
	}
	if len(lcols) != len(rcols) && !hasUnknownWidth(lcols) && !hasUnknownWidth(rcols) {
		kw := map[pg.SetOperation]string{pg.SetOperation_SETOP_UNION: "UNION", pg.SetOperation_SETOP_INTERSECT: "INTERSECT",
			pg.SetOperation_SETOP_EXCEPT: "EXCEPT"}[s.Op]
		return "", nil, errorf("42601", "each %s query must have the same number of columns", kw)
	}
	op := map[pg.SetOperation]string{pg.SetOperation_SETOP_UNION: "UNION", pg.SetOperation_SETOP_INTERSECT: "INTERSECT",
		pg.SetOperation_SETOP_EXCEPT: "EXCEPT"}[s.Op]
	if s.All {
		op += " ALL"
	}
	cols := make([]colInfo, len(lcols))
	for i, c := range lcols {
		cols[i] = colInfo{name: c.name, t: c.t, untyped: c.untyped}
		if i < len(rcols) {
			lt, rt := c.t, rcols[i].t
			if c.untyped {
				lt = oidUnknown
			}
			if rcols[i].untyped {
				rt = oidUnknown
			}
			cols[i].t = commonType(lt, rt)
			cols[i].untyped = c.untyped && rcols[i].untyped
			if cols[i].t == oidUnknown {
				cols[i].t = oidText
			}
		}
	}
	// An untyped literal of one side takes the other side's type (a
	// failing conversion fails the query, as in PostgreSQL).
	l, r = castBranch(l, lcols, cols), castBranch(r, rcols, cols)
	return fmt.Sprintf("(%s) %s (%s)", l, op, r), cols, nil
}

// castBranch converts the untyped literal columns of a set operation's
// branch to the operation's column types.
func castBranch(q string, branch, want []colInfo) string {
	need := false
	for i, c := range branch {
		if i < len(want) && c.untyped && want[i].t != 0 && !isStringOID(want[i].t) {
			need = true
		}
	}
	if !need || hasUnknownWidth(branch) {
		return q
	}
	parts := make([]string, len(branch))
	for i, c := range branch {
		parts[i] = fmt.Sprintf("#%d", i+1)
		if c.untyped && want[i].t != 0 && !isStringOID(want[i].t) {
			parts[i] = fmt.Sprintf("CAST(#%d AS %s)", i+1, engineType(want[i].t))
		}
		parts[i] += " AS " + quoteIdent(c.name)
	}
	return "SELECT " + strings.Join(parts, ", ") + " FROM (" + q + ") AS mandate_branch"
}

func hasUnknownWidth(cols []colInfo) bool {
	for _, c := range cols {
		if c.name == "*" {
			return true
		}
	}
	return false
}

func (d *deparser) values(s *pg.SelectStmt) (string, []colInfo, error) {
	var rows [][]ex
	for _, l := range s.ValuesLists {
		items := l.GetList()
		if items == nil {
			return "", nil, notSupported("this VALUES list")
		}
		var row []ex
		for _, it := range items.Items {
			e, err := d.expr(it)
			if err != nil {
				return "", nil, err
			}
			row = append(row, e)
		}
		if len(rows) > 0 && len(row) != len(rows[0]) {
			return "", nil, errorf("42601", "VALUES lists must all be the same length")
		}
		rows = append(rows, row)
	}
	// Each column takes the common type of its values; untyped literals
	// take it too (text when all are untyped).
	n := len(rows[0])
	cols := make([]colInfo, n)
	for i := 0; i < n; i++ {
		t := uint32(oidUnknown)
		for _, r := range rows {
			t = commonType(t, r[i].t)
		}
		if t == oidUnknown {
			t = oidText
		}
		cols[i] = colInfo{name: fmt.Sprintf("column%d", i+1), t: t}
	}
	var b strings.Builder
	b.WriteString("SELECT * FROM (VALUES ")
	for j, r := range rows {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for i, e := range r {
			if i > 0 {
				b.WriteString(", ")
			}
			if e.null && !allNull(rows, i) {
				// The engine gives a NULL the other rows' type (a cast
				// would force the column's scale).
				b.WriteString("NULL")
				continue
			}
			b.WriteString(d.coerce(e, cols[i].t).sql)
		}
		b.WriteByte(')')
	}
	// PostgreSQL names the columns column1, column2, ...
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	b.WriteString(") AS mandate_values" + identList(names))
	return b.String(), cols, nil
}

func allNull(rows [][]ex, i int) bool {
	for _, r := range rows {
		if !r[i].null {
			return false
		}
	}
	return true
}

func (d *deparser) simpleSelect(s *pg.SelectStmt) (string, []colInfo, error) {
	var from []string
	for _, f := range s.FromClause {
		sql, rels, err := d.fromItem(f)
		if err != nil {
			return "", nil, err
		}
		from = append(from, sql)
		d.scope.rels = append(d.scope.rels, rels...)
	}
	var where string
	if s.WhereClause != nil {
		d.clause = "WHERE"
		e, err := d.boolExpr(s.WhereClause, "WHERE")
		d.clause = ""
		if err != nil {
			return "", nil, err
		}
		where = e
	}
	// Named windows first: the select list refers to them.
	var windows []string
	for _, w := range s.WindowClause {
		wd := w.GetWindowDef()
		if wd == nil {
			return "", nil, notSupported("this WINDOW clause")
		}
		spec, err := d.windowSpec(wd)
		if err != nil {
			return "", nil, err
		}
		windows = append(windows, quoteIdent(wd.Name)+" AS "+spec)
	}
	targets, cols, err := d.targetList(s.TargetList)
	if err != nil {
		return "", nil, err
	}
	d.scope.out = cols
	d.scope.outSQL = d.targetSQL
	var b strings.Builder
	b.WriteString("SELECT ")
	if len(s.DistinctClause) > 0 {
		if len(s.DistinctClause) == 1 && s.DistinctClause[0].Node == nil {
			b.WriteString("DISTINCT ")
		} else {
			var on []string
			for _, n := range s.DistinctClause {
				e, err := d.sortKey(n)
				if err != nil {
					return "", nil, err
				}
				on = append(on, e.sql)
			}
			b.WriteString("DISTINCT ON (" + strings.Join(on, ", ") + ") ")
		}
	}
	b.WriteString(targets)
	if len(from) > 0 {
		b.WriteString(" FROM ")
		b.WriteString(strings.Join(from, ", "))
	}
	if where != "" {
		b.WriteString(" WHERE ")
		b.WriteString(where)
	}
	if len(s.GroupClause) > 0 {
		var g []string
		d.clause = "GROUP BY"
		for _, n := range s.GroupClause {
			e, err := d.groupItem(n)
			if err != nil {
				d.clause = ""
				return "", nil, err
			}
			g = append(g, e)
		}
		d.clause = ""
		b.WriteString(" GROUP BY ")
		if s.GroupDistinct {
			return "", nil, notSupported("GROUP BY DISTINCT")
		}
		b.WriteString(strings.Join(g, ", "))
	}
	if s.HavingClause != nil {
		e, err := d.boolExpr(s.HavingClause, "HAVING")
		if err != nil {
			return "", nil, err
		}
		b.WriteString(" HAVING ")
		b.WriteString(e)
	}
	if len(windows) > 0 {
		b.WriteString(" WINDOW ")
		b.WriteString(strings.Join(windows, ", "))
	}
	return b.String(), cols, nil
}

// boolExpr writes a condition (WHERE, HAVING, ON, CASE WHEN): an untyped
// literal is a boolean; anything else that is not is 42804.
func (d *deparser) boolExpr(n *pg.Node, clause string) (string, error) {
	e, err := d.expr(n)
	if err != nil {
		return "", err
	}
	if e.t != 0 && e.t != oidBool && e.t != oidUnknown {
		return "", errorf("42804", "argument of %s must be type boolean, not type %s", clause, typeDisplay(e.t))
	}
	return d.coerce(e, oidBool).sql, nil
}

func (d *deparser) targetList(list []*pg.Node) (string, []colInfo, error) {
	var parts, sqls []string
	var cols []colInfo
	defer func() { d.targetSQL = sqls }()
	for _, n := range list {
		rt := n.GetResTarget()
		if rt == nil {
			return "", nil, notSupported("this select list")
		}
		if isStar(rt.Val) {
			sql, starCols := d.star(rt.Val.GetColumnRef())
			parts = append(parts, sql)
			cols = append(cols, starCols...)
			continue
		}
		e, err := d.expr(rt.Val)
		if err != nil {
			return "", nil, err
		}
		untyped := e.lit != nil || e.t == oidUnknown
		if untyped && !e.null {
			e = d.coerce(e, oidText) // an untyped literal in a result is text
		}
		name := rt.Name
		if name == "" {
			name = figureColname(rt.Val)
		}
		parts = append(parts, e.sql+" AS "+quoteIdent(name))
		cols = append(cols, colInfo{name: name, t: e.t, untyped: untyped})
		sqls = append(sqls, e.sql)
	}
	return strings.Join(parts, ", "), cols, nil
}

// star writes * or rel.* and returns the columns it stands for, when
// known (a column named "*" otherwise).
func (d *deparser) star(c *pg.ColumnRef) (string, []colInfo) {
	var qual []string
	for _, f := range c.Fields {
		if s := f.GetString_(); s != nil {
			qual = append(qual, s.Sval)
		}
	}
	var cols []colInfo
	known := true
	for _, r := range d.scope.rels {
		if len(qual) > 0 && r.name != qual[len(qual)-1] {
			continue
		}
		if r.open {
			known = false
		}
		cols = append(cols, r.cols...)
	}
	if !known || len(cols) == 0 {
		cols = []colInfo{{name: "*"}}
	}
	if len(qual) > 0 {
		return quoteIdent(qual[len(qual)-1]) + ".*", cols
	}
	return "*", cols
}

// groupItem writes a GROUP BY item: an expression, an output column
// (name or position) or a grouping set.
func (d *deparser) groupItem(n *pg.Node) (string, error) {
	if gs := n.GetGroupingSet(); gs != nil {
		var items []string
		for _, c := range gs.Content {
			s, err := d.groupItem(c)
			if err != nil {
				return "", err
			}
			items = append(items, s)
		}
		switch gs.Kind {
		case pg.GroupingSetKind_GROUPING_SET_EMPTY:
			return "()", nil
		case pg.GroupingSetKind_GROUPING_SET_SIMPLE:
			return "(" + strings.Join(items, ", ") + ")", nil
		case pg.GroupingSetKind_GROUPING_SET_ROLLUP:
			return "ROLLUP (" + strings.Join(items, ", ") + ")", nil
		case pg.GroupingSetKind_GROUPING_SET_CUBE:
			return "CUBE (" + strings.Join(items, ", ") + ")", nil
		case pg.GroupingSetKind_GROUPING_SET_SETS:
			return "GROUPING SETS (" + strings.Join(items, ", ") + ")", nil
		}
		return "", notSupported("this grouping set")
	}
	if rl := n.GetRowExpr(); rl != nil {
		// GROUP BY (a, b)
		var items []string
		for _, a := range rl.Args {
			s, err := d.groupItem(a)
			if err != nil {
				return "", err
			}
			items = append(items, s)
		}
		return "(" + strings.Join(items, ", ") + ")", nil
	}
	e, err := d.sortKey(n)
	return e.sql, err
}

// sortKey writes an ORDER BY, GROUP BY or DISTINCT ON key: a position,
// the name of a result column (when no input column has it), or an
// expression.
func (d *deparser) sortKey(n *pg.Node) (ex, error) {
	if c := n.GetAConst(); c != nil && c.GetIval() != nil {
		i := int(c.GetIval().Ival)
		if i < 1 || i > len(d.scope.out) && !hasUnknownWidth(d.scope.out) {
			return ex{}, &errPos{errorf("42P10", "position %d is not in select list", i), c.Location}
		}
		t := uint32(0)
		if i <= len(d.scope.out) {
			t = d.scope.out[i-1].t
		}
		return ex{sql: strconv.Itoa(i), t: t}, nil
	}
	if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) == 1 {
		if s := cr.Fields[0].GetString_(); s != nil {
			_, isInput := d.lookup(d.scope, "", s.Sval)
			if d.orderBy || !isInput {
				// ORDER BY prefers a result column of that name (two
				// are ambiguous); GROUP BY prefers an input column.
				match := -1
				for i, o := range d.scope.out {
					if o.name == s.Sval {
						if match >= 0 && d.orderBy {
							return ex{}, &errPos{errorf("42702", "ORDER BY %q is ambiguous", s.Sval), cr.Location}
						}
						if match < 0 {
							match = i
						}
					}
				}
				if match >= 0 {
					return ex{sql: strconv.Itoa(match + 1), t: d.scope.out[match].t}, nil
				}
			}
		}
	}
	return d.expr(n)
}

// sortClause writes ORDER BY keys with PostgreSQL's NULL order made
// explicit: NULLS LAST ascending, NULLS FIRST descending (the engine's
// default is NULLS LAST both ways).
func (d *deparser) sortClause(list []*pg.Node) (string, error) {
	var parts []string
	for _, n := range list {
		sb := n.GetSortBy()
		if sb == nil {
			return "", notSupported("this ORDER BY item")
		}
		e, err := d.sortKey(sb.Node)
		if err != nil {
			return "", err
		}
		if e.lit != nil {
			e = d.coerce(e, oidText)
		}
		desc := false
		switch sb.SortbyDir {
		case pg.SortByDir_SORTBY_DESC:
			desc = true
		case pg.SortByDir_SORTBY_USING:
			switch op := opNameList(sb.UseOp); op {
			case "<":
			case ">":
				desc = true
			default:
				return "", notSupported("ORDER BY USING " + op)
			}
		}
		nullsFirst := desc
		switch sb.SortbyNulls {
		case pg.SortByNulls_SORTBY_NULLS_FIRST:
			nullsFirst = true
		case pg.SortByNulls_SORTBY_NULLS_LAST:
			nullsFirst = false
		}
		s := e.sql
		if desc {
			s += " DESC"
		} else {
			s += " ASC"
		}
		if nullsFirst {
			s += " NULLS FIRST"
		} else {
			s += " NULLS LAST"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", "), nil
}

// distinctOrder checks PostgreSQL's rule for SELECT DISTINCT: every
// ORDER BY key is one of the result columns.
func (d *deparser) distinctOrder(keys []*pg.Node) error {
	if hasUnknownWidth(d.scope.out) {
		return nil
	}
	for _, k := range keys {
		sb := k.GetSortBy()
		e, err := d.sortKey(sb.Node)
		if err != nil {
			return err
		}
		if _, isPos := strconv.Atoi(e.sql); isPos == nil {
			continue
		}
		found := false
		for _, s := range d.scope.outSQL {
			found = found || s == e.sql
		}
		if !found {
			return &errPos{errorf("42P10", "for SELECT DISTINCT, ORDER BY expressions must appear in select list"), nodeLocation(sb.Node)}
		}
	}
	return nil
}

// nodeLocation is the position of an expression in the statement (-1:
// none known).
func nodeLocation(n *pg.Node) int32 {
	switch x := n.GetNode().(type) {
	case *pg.Node_ColumnRef:
		return x.ColumnRef.Location
	case *pg.Node_FuncCall:
		return x.FuncCall.Location
	case *pg.Node_AExpr:
		if x.AExpr.Lexpr != nil {
			return nodeLocation(x.AExpr.Lexpr)
		}
		return x.AExpr.Location
	case *pg.Node_AConst:
		return x.AConst.Location
	case *pg.Node_TypeCast:
		return nodeLocation(x.TypeCast.Arg)
	}
	return -1
}

func opNameList(ns []*pg.Node) string {
	var parts []string
	for _, n := range ns {
		if s := n.GetString_(); s != nil && s.Sval != "pg_catalog" {
			parts = append(parts, s.Sval)
		}
	}
	return strings.Join(parts, ".")
}

// --- FROM ---------------------------------------------------------------

// fromItem writes one FROM item and returns the relations it brings into
// scope.
func (d *deparser) fromItem(n *pg.Node) (string, []*srcRel, error) {
	switch x := n.Node.(type) {
	case *pg.Node_RangeVar:
		rv := x.RangeVar
		var cols []colInfo
		if c, ok := d.ctes[rv.Relname]; ok {
			cols = append(cols, c...)
		} else if r, ok := engineRelation(rv.Relname); ok {
			cols = relCols(r)
		} else {
			return "", nil, notSupported("relation " + rv.Relname)
		}
		alias := rv.Relname
		sql := quoteIdent(rv.Relname)
		if rv.Alias != nil {
			alias = rv.Alias.Aliasname
			cols = renameCols(cols, names(rv.Alias.Colnames))
			sql += " AS " + quoteIdent(alias)
			if len(rv.Alias.Colnames) > 0 {
				sql += identList(names(rv.Alias.Colnames))
			}
		}
		return sql, []*srcRel{{name: alias, cols: cols}}, nil
	case *pg.Node_RangeSubselect:
		rs := x.RangeSubselect
		sel := rs.Subquery.GetSelectStmt()
		if sel == nil {
			return "", nil, notSupported("this subquery")
		}
		var aliases []string
		if rs.Alias != nil {
			aliases = names(rs.Alias.Colnames)
		}
		q, cols, err := d.selectStmt(sel, aliases)
		if err != nil {
			return "", nil, err
		}
		sql := "(" + q + ")"
		if rs.Lateral {
			sql = "LATERAL " + sql
		}
		name := ""
		if rs.Alias != nil {
			name = rs.Alias.Aliasname
			sql += " AS " + quoteIdent(name)
			if len(aliases) > 0 {
				sql += identList(aliases)
			}
		}
		return sql, []*srcRel{{name: name, cols: cols}}, nil
	case *pg.Node_RangeFunction:
		return d.rangeFunction(x.RangeFunction)
	case *pg.Node_JoinExpr:
		return d.join(x.JoinExpr)
	}
	return "", nil, notSupported("this FROM item")
}

func relCols(r *relation) []colInfo {
	cols := make([]colInfo, len(r.cols))
	for i, c := range r.cols {
		cols[i] = colInfo{name: c.Name, t: typeOID(c.Type)}
	}
	return cols
}

func renameCols(cols []colInfo, aliases []string) []colInfo {
	out := append([]colInfo(nil), cols...)
	for i, a := range aliases {
		if i < len(out) {
			out[i].name = a
		}
	}
	return out
}

func (d *deparser) rangeFunction(rf *pg.RangeFunction) (string, []*srcRel, error) {
	if len(rf.Functions) != 1 {
		return "", nil, notSupported("ROWS FROM")
	}
	l := rf.Functions[0].GetList()
	fc := l.Items[0].GetFuncCall()
	_, name := funcName(fc)
	var sql string
	var cols []colInfo
	open := false
	if name == catalog.VirtualTableFunc && d.native[fc] {
		key, _ := literalArg(fc.Args[0])
		r := relations[key]
		cols = relCols(r)
		sql = catalog.VirtualTableFunc + "(" + quoteString(key) + ")"
		if rf.Alias == nil {
			rf.Alias = &pg.Alias{Aliasname: r.name}
		}
	} else if name == "generate_series" && !d.native[fc] {
		args, err := d.exprs(fc.Args)
		if err != nil {
			return "", nil, err
		}
		t, call, ok, err := d.generateSeries(args, true)
		if err != nil {
			return "", nil, err
		}
		if !ok {
			return "", nil, d.noFunction(fc, name, args)
		}
		if t == oidInt4 || t == oidInt2 {
			// The engine's series are bigint: convert the column.
			call = "(SELECT CAST(generate_series AS " + engineType(t) + ") AS generate_series FROM " + call + ")"
		}
		sql = call
		cols = []colInfo{{name: name, t: t}}
		if rf.Alias != nil {
			cols[0].name = rf.Alias.Aliasname
		}
	} else {
		e, err := d.funcCall(fc)
		if err != nil {
			return "", nil, err
		}
		sql = e.sql
		colName := name
		if rf.Alias != nil {
			colName = rf.Alias.Aliasname
		}
		t := e.t
		if isArrayOID(t) && name == "unnest" {
			t = elemOID(t)
		}
		cols = []colInfo{{name: colName, t: t}}
		open = d.native[fc]
	}
	alias := name
	if rf.Alias != nil {
		alias = rf.Alias.Aliasname
		cols = renameCols(cols, names(rf.Alias.Colnames))
		sql += " AS " + quoteIdent(alias)
		if len(rf.Alias.Colnames) > 0 {
			sql += identList(names(rf.Alias.Colnames))
		}
	}
	if rf.Lateral {
		sql = "LATERAL " + sql
	}
	return sql, []*srcRel{{name: alias, cols: cols, open: open}}, nil
}

func (d *deparser) join(j *pg.JoinExpr) (string, []*srcRel, error) {
	if j.Alias != nil || j.JoinUsingAlias != nil {
		return "", nil, notSupported("an alias on a JOIN")
	}
	l, lrels, err := d.fromItem(j.Larg)
	if err != nil {
		return "", nil, err
	}
	// The right side sees the left (LATERAL); the condition sees both.
	saved := d.scope.rels
	d.scope.rels = append(append([]*srcRel(nil), saved...), lrels...)
	r, rrels, err := d.fromItem(j.Rarg)
	d.scope.rels = saved
	if err != nil {
		return "", nil, err
	}
	kind := map[pg.JoinType]string{pg.JoinType_JOIN_INNER: "JOIN", pg.JoinType_JOIN_LEFT: "LEFT JOIN",
		pg.JoinType_JOIN_FULL: "FULL JOIN", pg.JoinType_JOIN_RIGHT: "RIGHT JOIN"}[j.Jointype]
	if kind == "" {
		return "", nil, notSupported("this join")
	}
	rels := append(append([]*srcRel(nil), lrels...), rrels...)
	var b strings.Builder
	b.WriteByte('(')
	b.WriteString(l)
	switch {
	case j.IsNatural:
		b.WriteString(" NATURAL " + kind + " " + r)
	case len(j.UsingClause) > 0:
		b.WriteString(" " + kind + " " + r + " USING " + identList(names(j.UsingClause)))
	case j.Quals != nil:
		d.scope.rels = append(append([]*srcRel(nil), saved...), rels...)
		d.clause = "JOIN conditions"
		on, err := d.boolExpr(j.Quals, "JOIN/ON")
		d.scope.rels, d.clause = saved, ""
		if err != nil {
			return "", nil, err
		}
		b.WriteString(" " + kind + " " + r + " ON " + on)
	default:
		if j.Jointype != pg.JoinType_JOIN_INNER {
			return "", nil, errorf("42601", "syntax error: a join needs ON or USING")
		}
		b.WriteString(" CROSS JOIN " + r)
	}
	b.WriteByte(')')
	return b.String(), rels, nil
}

// --- windows ------------------------------------------------------------

// Frame options of a WindowDef (PostgreSQL's FRAMEOPTION_* bits).
const (
	frameNonDefault         = 0x00001
	frameRange              = 0x00002
	frameRows               = 0x00004
	frameGroups             = 0x00008
	frameBetween            = 0x00010
	frameStartUnboundedPrec = 0x00020
	frameEndUnboundedPrec   = 0x00040
	frameStartUnboundedFoll = 0x00080
	frameEndUnboundedFoll   = 0x00100
	frameStartCurrentRow    = 0x00200
	frameEndCurrentRow      = 0x00400
	frameStartOffsetPrec    = 0x00800
	frameEndOffsetPrec      = 0x01000
	frameStartOffsetFoll    = 0x02000
	frameEndOffsetFoll      = 0x04000
	frameExcludeCurrentRow  = 0x08000
	frameExcludeGroup       = 0x10000
	frameExcludeTies        = 0x20000
)

// windowSpec writes a window's definition in parentheses.
func (d *deparser) windowSpec(w *pg.WindowDef) (string, error) {
	var parts []string
	if w.Refname != "" {
		parts = append(parts, quoteIdent(w.Refname))
	}
	if len(w.PartitionClause) > 0 {
		var ps []string
		for _, p := range w.PartitionClause {
			e, err := d.expr(p)
			if err != nil {
				return "", err
			}
			ps = append(ps, e.sql)
		}
		parts = append(parts, "PARTITION BY "+strings.Join(ps, ", "))
	}
	if len(w.OrderClause) > 0 {
		o, err := d.sortClause(w.OrderClause)
		if err != nil {
			return "", err
		}
		parts = append(parts, "ORDER BY "+o)
	}
	if w.FrameOptions&frameNonDefault != 0 {
		f, err := d.frame(w)
		if err != nil {
			return "", err
		}
		parts = append(parts, f)
	}
	return "(" + strings.Join(parts, " ") + ")", nil
}

func (d *deparser) frame(w *pg.WindowDef) (string, error) {
	o := w.FrameOptions
	var b strings.Builder
	switch {
	case o&frameRows != 0:
		b.WriteString("ROWS ")
	case o&frameGroups != 0:
		b.WriteString("GROUPS ")
	default:
		b.WriteString("RANGE ")
	}
	bound := func(unbPrec, unbFoll, cur, offPrec, offFoll int32, off *pg.Node) (string, error) {
		switch {
		case o&unbPrec != 0:
			return "UNBOUNDED PRECEDING", nil
		case o&unbFoll != 0:
			return "UNBOUNDED FOLLOWING", nil
		case o&cur != 0:
			return "CURRENT ROW", nil
		case o&(offPrec|offFoll) != 0:
			e, err := d.expr(off)
			if err != nil {
				return "", err
			}
			if o&offPrec != 0 {
				return e.sql + " PRECEDING", nil
			}
			return e.sql + " FOLLOWING", nil
		}
		return "", notSupported("this window frame")
	}
	start, err := bound(frameStartUnboundedPrec, frameStartUnboundedFoll, frameStartCurrentRow, frameStartOffsetPrec,
		frameStartOffsetFoll, w.StartOffset)
	if err != nil {
		return "", err
	}
	if o&frameBetween != 0 {
		end, err := bound(frameEndUnboundedPrec, frameEndUnboundedFoll, frameEndCurrentRow, frameEndOffsetPrec,
			frameEndOffsetFoll, w.EndOffset)
		if err != nil {
			return "", err
		}
		b.WriteString("BETWEEN " + start + " AND " + end)
	} else {
		b.WriteString(start)
	}
	switch {
	case o&frameExcludeCurrentRow != 0:
		b.WriteString(" EXCLUDE CURRENT ROW")
	case o&frameExcludeGroup != 0:
		b.WriteString(" EXCLUDE GROUP")
	case o&frameExcludeTies != 0:
		b.WriteString(" EXCLUDE TIES")
	}
	return b.String(), nil
}

// --- column references ----------------------------------------------------

// lookup finds a column visible in sc (then its parents): qual is the
// relation name written before it, if any.
func (d *deparser) lookup(sc *scope, qual, name string) (colInfo, bool) {
	c, _, ok := d.lookupRel(sc, qual, name)
	return c, ok
}

// lookupRel is lookup that also returns the relation's name.
func (d *deparser) lookupRel(sc *scope, qual, name string) (colInfo, string, bool) {
	for s := sc; s != nil; s = s.parent {
		for _, r := range s.rels {
			if qual != "" && r.name != qual {
				continue
			}
			for _, c := range r.cols {
				if c.name == name {
					return c, r.name, true
				}
			}
		}
	}
	return colInfo{}, "", false
}

// relVisible reports whether a relation named qual is in scope, and
// whether the columns of every such relation are all known.
func (d *deparser) relVisible(qual string) (found, complete bool) {
	complete = true
	for s := d.scope; s != nil; s = s.parent {
		for _, r := range s.rels {
			if r.name == qual {
				found = true
				complete = complete && !r.open
			}
		}
	}
	return found, complete
}

func (d *deparser) columnRef(c *pg.ColumnRef) (ex, error) {
	var parts []string
	for _, f := range c.Fields {
		s := f.GetString_()
		if s == nil {
			return ex{}, notSupported("this column reference")
		}
		parts = append(parts, s.Sval)
	}
	quoted := make([]string, len(parts))
	for i, p := range parts {
		quoted[i] = quoteIdent(p)
	}
	sql := strings.Join(quoted, ".")
	name := parts[len(parts)-1]
	qual := ""
	if len(parts) > 1 {
		qual = parts[len(parts)-2]
	}
	if col, rel, ok := d.lookupRel(d.scope, qual, name); ok {
		if _, seen := d.refs[name]; !seen {
			d.refs[name] = resolvedRef{rel: rel, loc: c.Location}
		}
		return ex{sql: sql, t: col.t}, nil
	}
	if qual == "" {
		// A whole-row reference to a relation (SELECT t FROM t) is
		// left to the engine.
		if found, _ := d.relVisible(name); found {
			return ex{sql: sql}, nil
		}
	}
	d.unresolved = append(d.unresolved, d.explainMissing(c, qual, name))
	return ex{sql: sql}, nil
}

// explainMissing builds PostgreSQL's error for a column that no
// relation in scope has: the closest names as a hint.
func (d *deparser) explainMissing(c *pg.ColumnRef, qual, name string) unresolvedCol {
	u := unresolvedCol{ref: c, name: name, qualName: name}
	if qual != "" {
		u.qualName = qual + "." + name
		if found, _ := d.relVisible(qual); !found {
			u.missing = qual
			return u
		}
	}
	// PostgreSQL's fuzzy match: the closest columns within 3 edits and
	// less than half of their length; a third at the best distance drops
	// the suggestions.
	type cand struct{ rel, col string }
	var first, second *cand
	bestDist := 4
	allKnown := true
	for s := d.scope; s != nil; s = s.parent {
		for _, r := range s.rels {
			if r.open {
				allKnown = false
			}
			if qual != "" && r.name != qual {
				continue
			}
			for _, col := range r.cols {
				if strings.EqualFold(col.name, name) && col.name != name {
					u.definite = true
				}
				dist := levenshtein(name, col.name)
				if dist > len(col.name)/2 {
					continue
				}
				switch {
				case dist < bestDist:
					bestDist, first, second = dist, &cand{r.name, col.name}, nil
				case dist == bestDist && second != nil:
					first, second, bestDist = nil, nil, dist-1
				case dist == bestDist && first != nil:
					second = &cand{r.name, col.name}
				}
			}
		}
	}
	if !allKnown {
		u.definite = false
	}
	relName := func(c cand) string {
		if c.rel == "" {
			return c.col
		}
		return c.rel + "." + c.col
	}
	switch {
	case first != nil && second == nil:
		u.hint = fmt.Sprintf("Perhaps you meant to reference the column %q.", relName(*first))
	case first != nil:
		u.hint = fmt.Sprintf("Perhaps you meant to reference the column %q or the column %q.", relName(*first), relName(*second))
	}
	return u
}

// levenshtein is the edit distance with PostgreSQL's costs (insertion,
// deletion and substitution 1).
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// errPos is an error at a position of the statement (a byte offset).
type errPos struct {
	err error
	loc int32
}

func (e *errPos) Error() string { return e.err.Error() }
func (e *errPos) Unwrap() error { return e.err }
