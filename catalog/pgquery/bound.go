package pgquery

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A lookup by request_id (see "Lookups by request_id" in the package doc).

// eventViews are the views whose rows are audit_events rows, with its
// event_time and request_id columns as they are.
var eventViews = map[string]bool{"system_access_audit": true, "system_ai_gateway_usage": true, "system_ai_gateway_payloads": true}

// requestDaysView is the view of audit_request_days in the views' schema.
const requestDaysView = "audit_request_days"

// maxBoundRanges bounds the time ranges added for one request id (a
// request id that recurs on many days is not bounded).
const maxBoundRanges = 32

// requestLookup is a range of an event view in a SELECT whose WHERE fixes
// its request_id.
type requestLookup struct {
	sel   *pg.SelectStmt
	ref   string // the range's name in the statement: its alias or relation
	value string
}

// bounded is a statement with lookups to bound.
type bounded struct {
	tree    *pg.ParseResult
	lookups []requestLookup
	values  []string // distinct request ids
}

// findLookups returns the SELECTs of sql that fix the request_id of an
// event view (request_id = 'literal', or = $n bound to a string); nil when
// there are none or sql names a CTE after an event view.
func (e *Engine) findLookups(sql string, args []any) *bounded {
	if !e.bound || !strings.Contains(sql, "request_id") {
		return nil
	}
	tree, err := pg.Parse(sql)
	if err != nil || len(tree.Stmts) != 1 {
		return nil
	}
	b := &bounded{tree: tree}
	shadowed := false
	var walk func(m protoreflect.Message)
	walk = func(m protoreflect.Message) {
		switch x := m.Interface().(type) {
		case *pg.CommonTableExpr:
			if eventViews[x.Ctename] {
				shadowed = true
			}
		case *pg.SelectStmt:
			b.lookups = append(b.lookups, e.selectLookups(x, args)...)
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Message() == nil || fd.IsMap() {
				return true
			}
			if fd.IsList() {
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
				return true
			}
			walk(v.Message())
			return true
		})
	}
	walk(tree.Stmts[0].Stmt.ProtoReflect())
	if shadowed || len(b.lookups) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, l := range b.lookups {
		if !seen[l.value] {
			seen[l.value] = true
			b.values = append(b.values, l.value)
		}
	}
	return b
}

// selectLookups finds, in one SELECT's top-level AND conditions, the first
// request_id = value of each event view of its FROM.
func (e *Engine) selectLookups(s *pg.SelectStmt, args []any) []requestLookup {
	if s.WhereClause == nil || len(s.FromClause) == 0 {
		return nil
	}
	ranges := map[string]bool{}
	var from func(n *pg.Node)
	from = func(n *pg.Node) {
		switch {
		case n.GetRangeVar() != nil:
			rv := n.GetRangeVar()
			if eventViews[rv.Relname] && rv.Catalogname == "" && (rv.Schemaname == "" || rv.Schemaname == e.schema) {
				ref := rv.Relname
				if rv.Alias != nil {
					ref = rv.Alias.Aliasname
				}
				ranges[ref] = true
			}
		case n.GetJoinExpr() != nil:
			from(n.GetJoinExpr().Larg)
			from(n.GetJoinExpr().Rarg)
		}
	}
	for _, n := range s.FromClause {
		from(n)
	}
	if len(ranges) == 0 {
		return nil
	}
	conds := []*pg.Node{s.WhereClause}
	if be := s.WhereClause.GetBoolExpr(); be != nil && be.Boolop == pg.BoolExprType_AND_EXPR {
		conds = be.Args
	}
	var out []requestLookup
	done := map[string]bool{}
	for _, c := range conds {
		x := c.GetAExpr()
		if x == nil || x.Kind != pg.A_Expr_Kind_AEXPR_OP || len(x.Name) != 1 || x.Name[0].GetString_().GetSval() != "=" {
			continue
		}
		for _, side := range [][2]*pg.Node{{x.Lexpr, x.Rexpr}, {x.Rexpr, x.Lexpr}} {
			ref, ok := requestColumn(side[0], ranges)
			if !ok || done[ref] {
				continue
			}
			if v, ok := stringValue(side[1], args); ok {
				done[ref] = true
				out = append(out, requestLookup{sel: s, ref: ref, value: v})
			}
		}
	}
	return out
}

// requestColumn reports whether n is the request_id column of one of
// ranges (qualified, or unqualified with one range), and which.
func requestColumn(n *pg.Node, ranges map[string]bool) (string, bool) {
	cr := n.GetColumnRef()
	if cr == nil {
		return "", false
	}
	var names []string
	for _, f := range cr.Fields {
		s := f.GetString_()
		if s == nil {
			return "", false
		}
		names = append(names, s.Sval)
	}
	switch {
	case len(names) == 1 && names[0] == "request_id" && len(ranges) == 1:
		for r := range ranges {
			return r, true
		}
	case len(names) == 2 && names[1] == "request_id" && ranges[names[0]]:
		return names[0], true
	}
	return "", false
}

// stringValue is a string literal (possibly cast to text or varchar) or
// a parameter bound to a string.
func stringValue(n *pg.Node, args []any) (string, bool) {
	if tc := n.GetTypeCast(); tc != nil {
		if tn := tc.TypeName; tn == nil || len(tn.Names) == 0 ||
			!map[string]bool{"text": true, "varchar": true}[tn.Names[len(tn.Names)-1].GetString_().GetSval()] {
			return "", false
		}
		n = tc.Arg
	}
	if c := n.GetAConst(); c != nil && c.GetSval() != nil && !c.Isnull {
		return c.GetSval().Sval, true
	}
	if p := n.GetParamRef(); p != nil && p.Number >= 1 && int(p.Number) <= len(args) {
		s, ok := args[p.Number-1].(string)
		return s, ok
	}
	return "", false
}

// rewrite adds to each lookup's SELECT the time ranges of the days its
// request id has events on (days: request id -> sorted days), and returns
// the statement's text; a request id without days bounds to nothing.
func (b *bounded) rewrite(days map[string][]time.Time) (string, error) {
	for _, l := range b.lookups {
		ds := days[l.value]
		var ranges [][2]time.Time
		for _, d := range ds {
			if n := len(ranges); n > 0 && !ranges[n-1][1].Before(d) {
				ranges[n-1][1] = d.AddDate(0, 0, 1)
				continue
			}
			ranges = append(ranges, [2]time.Time{d, d.AddDate(0, 0, 1)})
		}
		if len(ranges) > maxBoundRanges {
			continue
		}
		col := pgx.Identifier{l.ref, "event_time"}.Sanitize()
		cond := "false"
		if len(ranges) > 0 {
			parts := make([]string, len(ranges))
			for i, r := range ranges {
				parts[i] = fmt.Sprintf("(%s >= '%s+00'::timestamptz AND %s < '%s+00'::timestamptz)",
					col, r[0].Format(time.DateTime), col, r[1].Format(time.DateTime))
			}
			cond = strings.Join(parts, " OR ")
		}
		t, err := pg.Parse("SELECT 1 WHERE " + cond)
		if err != nil {
			return "", err
		}
		extra := t.Stmts[0].Stmt.GetSelectStmt().WhereClause
		if be := l.sel.WhereClause.GetBoolExpr(); be != nil && be.Boolop == pg.BoolExprType_AND_EXPR {
			be.Args = append(be.Args, extra)
		} else {
			l.sel.WhereClause = pg.MakeBoolExprNode(pg.BoolExprType_AND_EXPR, []*pg.Node{l.sel.WhereClause, extra}, -1)
		}
	}
	return pg.Deparse(b.tree)
}

// sortDays sorts each request id's days.
func sortDays(days map[string][]time.Time) {
	for _, ds := range days {
		sort.Slice(ds, func(i, j int) bool { return ds[i].Before(ds[j]) })
	}
}
