package systables

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// The PostgreSQL dialect (catalog.DialectPostgres). The statement was
// parsed by PostgreSQL's own parser, and the engine is PostgreSQL: there
// are no semantics to emulate, so the writer's output is the analysed
// tree itself, deparsed by libpg_query (PostgreSQL's grammar), after the
// rewrites the engine needs:
//
//   - each virtual table (a VirtualTableFunc call the analysis wrote in
//     FROM) becomes (SELECT * FROM json_to_recordset(CAST($n AS json)) AS
//     t(column type, ...)) AS alias, with $n after the client's
//     parameters; Execute binds the rows, computed for the caller, as
//     one JSON text per table (pgRows);
//   - a parameter whose type the client declared is cast to it, so that
//     PostgreSQL infers what the client said;
//   - the engine relations (the audit views) stay unqualified: the engine
//     resolves them in its own schema (search_path).
//
// Everything the analysis does is the same in both dialects (allow-lists,
// relations, privileges, session functions as constants, pg_catalog
// functions over the emulated relations), except that a few functions the
// DuckDB dialect emulates with templates run natively (pgNative), and
// collations are kept. Errors are PostgreSQL's; a column error points at
// the client's reference (pgRefs).

// pgNative are functions written as templates or evaluated by the
// analysis for DuckDB that PostgreSQL has with the same meaning and that
// read nothing of PostgreSQL's own catalog.
var pgNative = map[string]bool{"array_upper": true, "array_lower": true, "array_ndims": true, "quote_ident": true,
	"format": true, "parse_ident": true, "_pg_expandarray": true}

// pgStatement writes st's analysed tree in the PostgreSQL dialect; nparams
// is the number of the client's parameters.
func (st *Statement) pgStatement(tree *pg.ParseResult, declared []uint32) (string, int, error) {
	nparams := len(declared)
	var walk func(n *pg.Node)
	walk = func(n *pg.Node) {
		if n == nil {
			return
		}
		if p := n.GetParamRef(); p != nil && int(p.Number) > nparams {
			nparams = int(p.Number)
		}
		forEachChildNode(n, walk)
	}
	walk(tree.Stmts[0].Stmt)
	var err error
	var rewrite func(n *pg.Node)
	rewrite = func(n *pg.Node) {
		if n == nil || err != nil {
			return
		}
		switch x := n.Node.(type) {
		case *pg.Node_ParamRef:
			if i := int(x.ParamRef.Number); i >= 1 && i <= len(declared) && declared[i-1] != 0 {
				if name := castTypeName(declared[i-1]); name != "" {
					tn, perr := typeNameNode(name)
					if perr != nil {
						err = perr
						return
					}
					n.Node = &pg.Node_TypeCast{TypeCast: &pg.TypeCast{Arg: &pg.Node{Node: x}, TypeName: tn, Location: -1}}
				}
			}
			return
		case *pg.Node_RangeFunction:
			if sub, ok, rerr := st.pgVirtual(x.RangeFunction, nparams); rerr != nil {
				err = rerr
				return
			} else if ok {
				n.Node = sub
				return
			}
		}
		forEachChildNode(n, rewrite)
	}
	rewrite(tree.Stmts[0].Stmt)
	if err != nil {
		return "", 0, err
	}
	sql, err := pg.Deparse(tree)
	if err != nil {
		return "", 0, fmt.Errorf("systables: deparse: %w", err)
	}
	if len(sql) > maxEngineSQL {
		return "", 0, tooComplex()
	}
	return sql, nparams, nil
}

// pgVirtual rewrites a virtual table in FROM to a subquery over its JSON
// parameter; ok is false for any other FROM function.
func (st *Statement) pgVirtual(rf *pg.RangeFunction, nparams int) (*pg.Node_RangeSubselect, bool, error) {
	if len(rf.Functions) != 1 {
		return nil, false, nil
	}
	l := rf.Functions[0].GetList()
	if l == nil || len(l.Items) == 0 {
		return nil, false, nil
	}
	fc := l.Items[0].GetFuncCall()
	if fc == nil {
		return nil, false, nil
	}
	if _, name := funcName(fc); name != catalog.VirtualTableFunc || len(fc.Args) != 1 {
		return nil, false, nil
	}
	// Only the analysis writes this function in FROM (a client's is
	// refused: not a table function), though a template's argument may
	// be a copy of its call (st.native knows the original): the relation
	// must be one the analysis resolved for this statement.
	key, _ := literalArg(fc.Args[0])
	r := relations[key]
	if r == nil || !slices.Contains(st.rels, r) {
		return nil, false, fmt.Errorf("systables: virtual table %q was not resolved", key)
	}
	idx := -1
	for i, v := range st.pgTables {
		if v == r {
			idx = i
		}
	}
	if idx < 0 {
		st.pgTables = append(st.pgTables, r)
		idx = len(st.pgTables) - 1
	}
	defs := make([]string, len(r.cols))
	for i, c := range r.cols {
		defs[i] = quoteIdent(c.Name) + " " + pgColumnType(c.Type)
	}
	text := fmt.Sprintf("SELECT * FROM json_to_recordset(CAST($%d AS json)) AS t(%s)", nparams+idx+1, strings.Join(defs, ", "))
	res, err := pg.Parse(text)
	if err != nil {
		return nil, false, fmt.Errorf("systables: virtual table %s: %w", key, err)
	}
	alias := rf.Alias
	if alias == nil {
		alias = &pg.Alias{Aliasname: r.name}
	}
	return &pg.Node_RangeSubselect{RangeSubselect: &pg.RangeSubselect{Lateral: rf.Lateral, Subquery: res.Stmts[0].Stmt,
		Alias: alias}}, true, nil
}

// castTypeName is the name of a type OID to cast to ("" when not known).
func castTypeName(oid uint32) string {
	for _, t := range pgTypes {
		if t.oid == oid {
			return t.format
		}
	}
	return ""
}

func typeNameNode(name string) (*pg.TypeName, error) {
	res, err := pg.Parse("SELECT CAST(NULL AS " + name + ")")
	if err != nil {
		return nil, err
	}
	return res.Stmts[0].Stmt.GetSelectStmt().TargetList[0].GetResTarget().Val.GetTypeCast().TypeName, nil
}

// pgColumnType is PostgreSQL's name of a catalog column type.
func pgColumnType(t catalog.ColumnType) string {
	if t.Data == catalog.DataList {
		return pgColumnType(catalog.ColumnType{Data: t.Elem}) + "[]"
	}
	return t.Data.String()
}

// pgRefs are the column references of the client's statement by name
// (the first of each), read before the analysis rewrites the tree: a
// PostgreSQL error about a column points at it.
func pgRefs(tree *pg.ParseResult) map[string]resolvedRef {
	refs := map[string]resolvedRef{}
	var walk func(n *pg.Node)
	walk = func(n *pg.Node) {
		if n == nil {
			return
		}
		if cr := n.GetColumnRef(); cr != nil && len(cr.Fields) > 0 {
			if s := cr.Fields[len(cr.Fields)-1].GetString_(); s != nil {
				if _, ok := refs[s.Sval]; !ok {
					refs[s.Sval] = resolvedRef{loc: cr.Location}
				}
			}
		}
		forEachChildNode(n, walk)
	}
	for _, s := range tree.Stmts {
		walk(s.Stmt)
	}
	return refs
}

// pgRows writes a virtual table's rows as the JSON that
// json_to_recordset reads: one object per row, keyed by column name, each
// value in a form PostgreSQL's input function of the column's type reads.
func pgRows(cols []catalog.QueryColumn, rows [][]any) string {
	var b strings.Builder
	b.Grow(len(rows) * len(cols) * 24)
	b.WriteByte('[')
	for i, row := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('{')
		for j, c := range cols {
			if j > 0 {
				b.WriteByte(',')
			}
			writeJSONKey(&b, c.Name)
			var v any
			if j < len(row) {
				v = row[j]
			}
			writeJSONValue(&b, c.Type.Data, v)
		}
		b.WriteByte('}')
	}
	b.WriteByte(']')
	return b.String()
}

func writeJSONValue(b *strings.Builder, t catalog.DataType, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		if t == catalog.DataJSON {
			if x == "" || !json.Valid([]byte(x)) {
				b.WriteString("null")
				return
			}
			b.WriteString(x)
			return
		}
		writeJSONText(b, x)
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case int16, int32, int64, int:
		fmt.Fprint(b, x)
	case float32:
		writeFloat(b, float64(x), 32)
	case float64:
		writeFloat(b, x, 64)
	case catalog.Decimal:
		b.WriteString(x.String())
	case time.Time:
		switch t {
		case catalog.DataDate:
			writeJSONString(b, x.Format("2006-01-02"))
		case catalog.DataTimestamp:
			writeJSONString(b, x.Format("2006-01-02T15:04:05.999999"))
		default:
			writeJSONString(b, x.Format(time.RFC3339Nano))
		}
	case time.Duration:
		us := x.Microseconds()
		writeJSONString(b, fmt.Sprintf("%02d:%02d:%02d.%06d", us/3600e6, us/60e6%60, us/1e6%60, us%1e6))
	case catalog.Interval:
		writeJSONString(b, fmt.Sprintf("%d months %d days %d microseconds", x.Months, x.Days, x.Micros))
	case [16]byte:
		h := hex.EncodeToString(x[:])
		writeJSONString(b, h[:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:])
	case []byte:
		writeJSONString(b, `\x`+hex.EncodeToString(x))
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONValue(b, catalog.DataText, e)
		}
		b.WriteByte(']')
	default:
		writeJSONString(b, fmt.Sprint(x))
	}
}

// writeJSONText writes a JSON string: as it is when nothing in it needs
// escaping (the common case), else escaped.
func writeJSONText(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			writeJSONString(b, s)
			return
		}
	}
	b.WriteByte('"')
	b.WriteString(s)
	b.WriteByte('"')
}

func writeJSONKey(b *strings.Builder, s string) {
	writeJSONText(b, s)
	b.WriteByte(':')
}

func writeFloat(b *strings.Builder, f float64, bits int) {
	switch {
	case math.IsNaN(f):
		b.WriteString(`"NaN"`)
	case math.IsInf(f, 1):
		b.WriteString(`"Infinity"`)
	case math.IsInf(f, -1):
		b.WriteString(`"-Infinity"`)
	default:
		b.WriteString(strconv.FormatFloat(f, 'g', -1, bits))
	}
}

// preparePG finishes Prepare in the PostgreSQL dialect: the tree is
// written as it is (pgStatement), PostgreSQL describes it.
func (st *Statement) preparePG(ctx context.Context, tree *pg.ParseResult, native map[*pg.FuncCall]bool,
	refs map[string]resolvedRef, paramOIDs []uint32) (*Statement, error) {
	st.native, st.refs, st.pgTables = native, refs, []*relation{}
	st.tz = "UTC"
	if v, ok := st.sess.Param("timezone"); ok && v != "" {
		st.tz = v
	}
	loc, err := time.LoadLocation(st.tz)
	if err != nil {
		loc = time.UTC
	}
	st.loc = loc
	sql, nparams, err := st.pgStatement(tree, paramOIDs)
	if err != nil {
		return nil, st.positioned(err)
	}
	st.sql, st.nparams = sql, nparams
	cols, params, err := st.e.q.Describe(ctx, st.query(nil))
	if err != nil {
		return nil, st.engineError(err)
	}
	for _, c := range cols {
		oid := c.Type.OID
		if oid == 0 {
			oid = typeOID(c.Type)
		}
		st.cols = append(st.cols, pgwire.Column{Name: c.Name, TypeOID: oid})
		st.types = append(st.types, c.Type)
	}
	for i := 0; i < nparams; i++ {
		var oid uint32
		if i < len(paramOIDs) {
			oid = paramOIDs[i]
		}
		if oid == 0 && i < len(params) {
			oid = params[i].OID
		}
		if oid == 0 {
			oid = oidText
		}
		st.params = append(st.params, oid)
	}
	return st, nil
}

// pgOnly are functions allowed in the PostgreSQL dialect only: the DuckDB
// dialect has no emulation of them, PostgreSQL runs them natively (pure
// functions of their arguments).
var pgOnly = map[string]bool{"justify_hours": true, "justify_days": true, "justify_interval": true,
	"make_interval": true, "convert_from": true, "convert_to": true}

// pgError is a PostgreSQL error with the client's names and, where
// PostgreSQL located it, the position of the same node in the client's
// text.
func (st *Statement) pgError(qe *catalog.QueryError) error {
	e := &pgwire.Error{Severity: "ERROR", Code: qe.SQLState, Message: st.clientNames(qe.Msg), Detail: qe.Detail, Hint: qe.Hint}
	if qe.Position > 0 {
		e.Position = st.pgPosition(qe.Position)
	}
	if e.Position == 0 && qe.Name != "" {
		if r, ok := st.refs[qe.Name]; ok {
			e.Position = charPosition(st.text, int(r.loc))
		}
	}
	return e
}

// pgPosition maps a position in the engine's SQL to the client's text:
// the node PostgreSQL points at (the k-th node of its kind and name in
// the written statement) is the k-th such node of the client's statement.
func (st *Statement) pgPosition(pos int32) int32 {
	runes := []rune(st.sql)
	if pos < 1 || int(pos) > len(runes) {
		return 0
	}
	off := int32(len(string(runes[:pos-1])))
	written, err := pg.Parse(st.sql)
	if err != nil || st.original == nil {
		return 0
	}
	sig, k := "", -1
	counts := map[string]int{}
	walkLocated(written, func(s string, loc int32) {
		if k < 0 && loc == off {
			sig, k = s, counts[s]
		}
		counts[s]++
	})
	if k < 0 {
		return 0
	}
	var found int32 = -1
	n := 0
	walkLocated(st.original, func(s string, loc int32) {
		if s == sig {
			if n == k && found < 0 {
				found = loc
			}
			n++
		}
	})
	if found < 0 {
		return 0
	}
	return charPosition(st.text, int(found))
}

// walkLocated calls fn with each located node of tree in order: its kind
// and name (a column reference's last field, a function's name) and its
// location.
func walkLocated(tree *pg.ParseResult, fn func(sig string, loc int32)) {
	var visit func(m protoreflect.Message)
	visit = func(m protoreflect.Message) {
		if f := m.Descriptor().Fields().ByName("location"); f != nil {
			sig := string(m.Descriptor().Name())
			switch x := m.Interface().(type) {
			case *pg.ColumnRef:
				if len(x.Fields) > 0 {
					if s := x.Fields[len(x.Fields)-1].GetString_(); s != nil {
						sig += " " + s.Sval
					}
				}
			case *pg.FuncCall:
				_, name := funcName(x)
				sig += " " + name
			}
			fn(sig, int32(m.Get(f).Int()))
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if fd.Message() == nil || fd.IsMap() {
				return true
			}
			if fd.IsList() {
				for i := 0; i < v.List().Len(); i++ {
					visit(v.List().Get(i).Message())
				}
				return true
			}
			visit(v.Message())
			return true
		})
	}
	visit(tree.ProtoReflect())
}
