package systables

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// Session is what a query needs from the SQL session.
type Session interface {
	User() string                     // the principal
	Database() string                 // the session's catalog
	Param(name string) (string, bool) // a run-time parameter (current_setting)
	ParamNames() []string
	ServerVersion() string
}

// Engine prepares and runs queries over system tables.
type Engine struct {
	cat   *catalog.Service
	q     catalog.QueryEngine
	types *pgtype.Map
}

// New returns an Engine that checks privileges in cat and runs queries on q.
func New(cat *catalog.Service, q catalog.QueryEngine) *Engine {
	return &Engine{cat: cat, q: q, types: pgtype.NewMap()}
}

// Statement is a prepared query.
type Statement struct {
	e      *Engine
	sess   Session
	text   string // the statement as the client wrote it
	sql    string
	rels   []*relation
	cols   []pgwire.Column
	types  []catalog.ColumnType
	params []uint32
	ctes   map[string]string // engine name -> CTE name, for messages
	// unresolved are the column references the deparser could not
	// resolve: an engine error about one names it (with its position).
	unresolved []unresolvedCol
	refs       map[string]resolvedRef
	loc        *time.Location // the session's time zone, for output
	// The PostgreSQL dialect (pgdialect.go): the calls the analysis
	// wrote, the virtual tables bound after the client's nparams
	// parameters, in order, and the session's TimeZone.
	native   map[*pg.FuncCall]bool
	pgTables []*relation
	nparams  int
	tz       string
	original *pg.ParseResult // the client's statement before the analysis
}

// Columns returns the result columns.
func (st *Statement) Columns() []pgwire.Column { return st.cols }

// ParamOIDs returns the parameter types.
func (st *Statement) ParamOIDs() []uint32 { return st.params }

// EngineSQL returns the statement as the engine runs it (tests, logs).
func (st *Statement) EngineSQL() string { return st.sql }

// Wants reports whether a SELECT is for the engine rather than the
// session's constant evaluator: it reads relations or uses clauses that
// only a query engine evaluates.
func Wants(s *pg.SelectStmt) bool {
	return len(s.FromClause) > 0 || s.WhereClause != nil || len(s.GroupClause) > 0 || s.HavingClause != nil ||
		s.WithClause != nil || s.Op != pg.SetOperation_SETOP_NONE || len(s.ValuesLists) > 0 || len(s.WindowClause) > 0 ||
		len(s.SortClause) > 0 || s.LimitCount != nil || s.LimitOffset != nil || len(s.DistinctClause) > 0
}

// Prepare validates and rewrites the SELECT of tree (one statement, parsed
// from text), checks the caller's SELECT privilege on the system tables it
// reads, and asks the engine for the result columns and parameter types.
// Errors carry positions in text.
func (e *Engine) Prepare(ctx context.Context, sess Session, text string, tree *pg.ParseResult, paramOIDs []uint32) (*Statement, error) {
	if len(tree.Stmts) != 1 || tree.Stmts[0].Stmt.GetSelectStmt() == nil {
		return nil, notSupported("this statement")
	}
	sel := tree.Stmts[0].Stmt.GetSelectStmt()
	outputInfo(sel)
	st := &Statement{e: e, sess: sess, text: text}
	pgDialect := e.q.Dialect() == catalog.DialectPostgres
	var refs map[string]resolvedRef
	if pgDialect {
		refs = pgRefs(tree)
		st.original = proto.Clone(tree).(*pg.ParseResult)
	}
	var err error
	var native map[*pg.FuncCall]bool
	e.cat.Read(func(m *catalog.Model) {
		me, ok := m.PrincipalByName(sess.User())
		if !ok {
			err = errorf("42501", "principal %s no longer exists", catalog.QuoteIdent(sess.User()))
			return
		}
		a := &analysis{sess: sess, m: m, me: me, ctes: map[string]string{}, used: map[string]*relation{}, done: map[*pg.Node]bool{},
			native: map[*pg.FuncCall]bool{}, pg: pgDialect}
		native = a.native
		a.collectCTEs(sel.ProtoReflect())
		if err = a.walkNode(tree.Stmts[0].Stmt); err != nil {
			return
		}
		st.ctes = map[string]string{}
		for name, engineName := range a.ctes {
			st.ctes[engineName] = name
		}
		for _, r := range a.used {
			st.rels = append(st.rels, r)
		}
		err = st.checkPrivileges(m, me)
	})
	if err != nil {
		return nil, st.positioned(err)
	}
	if pgDialect {
		return st.preparePG(ctx, tree, native, refs, paramOIDs)
	}
	d := newDeparser(sess, native, paramOIDs)
	st.loc = d.location()
	sql, inferred, err := d.statement(sel)
	if err != nil {
		return nil, st.positioned(err)
	}
	st.sql, st.unresolved, st.refs = sql, d.unresolved, d.refs
	for _, u := range st.unresolved {
		if u.definite {
			// A name that differs from a column only in case: the
			// engine would find the column, PostgreSQL does not.
			return nil, st.columnError(u)
		}
	}
	cols, params, err := e.q.Describe(ctx, st.query(nil))
	if err != nil {
		return nil, st.engineError(err)
	}
	if len(inferred) != len(cols) {
		inferred = nil
	}
	for i, c := range cols {
		oid := typeOID(c.Type)
		if inferred != nil {
			oid = resultOID(inferred[i].t, oid)
		}
		st.cols = append(st.cols, pgwire.Column{Name: c.Name, TypeOID: oid})
		st.types = append(st.types, c.Type)
	}
	n := max(len(params), len(paramOIDs), len(d.params))
	for i := 0; i < n; i++ {
		var oid uint32
		if i < len(paramOIDs) {
			oid = paramOIDs[i]
		}
		if oid == 0 && i < len(d.params) {
			oid = d.params[i] // the type its context gives it, as in PostgreSQL
		}
		if oid == 0 && i < len(params) {
			oid = typeOID(params[i])
			if params[i].Data == catalog.DataList {
				oid = oidText
			}
		}
		if oid == 0 {
			oid = oidText
		}
		st.params = append(st.params, oid)
	}
	return st, nil
}

// checkPrivileges demands SELECT on every system table the query reads
// (held directly, through a group, or on the table's schema or catalog,
// with USE_CATALOG and USE_SCHEMA; metastore admins hold it).
func (st *Statement) checkPrivileges(m *catalog.Model, me *catalog.Principal) error {
	for _, r := range st.rels {
		if !r.table {
			continue
		}
		sec, err := m.Lookup(catalog.TypeTable, []string{catalog.SystemCatalog, r.schema, r.name})
		if err != nil {
			return errorf("42P01", "relation \"system.%s.%s\" does not exist", r.schema, r.name)
		}
		d := m.Check(me.ID, catalog.PrivSelect, sec.ID)
		if d.Allowed {
			continue
		}
		msg := fmt.Sprintf("permission denied for table %s", sec.FullName())
		detail := d.Reason()
		return &pgwire.Error{Severity: "ERROR", Code: "42501", Message: msg, Detail: detail,
			Hint: fmt.Sprintf("a metastore admin can GRANT SELECT ON TABLE %s (or ON SCHEMA system.%s) TO %s",
				sec.FullName(), r.schema, catalog.QuoteIdent(me.Name))}
	}
	return nil
}

// query builds the engine's query with the virtual tables' rows computed
// for the caller when the engine asks for them.
func (st *Statement) query(args []any) catalog.Query {
	q := catalog.Query{SQL: st.sql, Args: args, TimeZone: st.tz}
	if st.pgTables != nil || st.e.q.Dialect() == catalog.DialectPostgres {
		// The rows are parameters after the client's.
		if args == nil {
			return q
		}
		q.Args = append(args[:len(args):len(args)], make([]any, len(st.pgTables))...)
		st.e.cat.Read(func(m *catalog.Model) {
			me, ok := m.PrincipalByName(st.sess.User())
			for i, r := range st.pgTables {
				var rows [][]any
				if ok {
					rows = r.rows(&rowCtx{m: m, me: me, sess: st.sess})
				}
				q.Args[len(args)+i] = pgRows(r.cols, rows)
			}
		})
		return q
	}
	for _, r := range st.rels {
		if r.engine != "" {
			continue
		}
		if q.Tables == nil {
			q.Tables = map[string]*catalog.VirtualTable{}
		}
		r := r
		q.Tables[r.key()] = &catalog.VirtualTable{Columns: r.cols, Rows: func(context.Context) ([][]any, error) {
			var rows [][]any
			st.e.cat.Read(func(m *catalog.Model) {
				if me, ok := m.PrincipalByName(st.sess.User()); ok {
					rows = r.rows(&rowCtx{m: m, me: me, sess: st.sess})
				}
			})
			return rows, nil
		}}
	}
	return q
}

// Execute runs the statement and writes its rows.
func (st *Statement) Execute(ctx context.Context, params []pgwire.Param, w pgwire.RowWriter) (string, error) {
	var err error
	st.e.cat.Read(func(m *catalog.Model) {
		me, ok := m.PrincipalByName(st.sess.User())
		if !ok {
			err = errorf("42501", "principal %s no longer exists", catalog.QuoteIdent(st.sess.User()))
			return
		}
		err = st.checkPrivileges(m, me)
	})
	if err != nil {
		return "", err
	}
	args := make([]any, len(params))
	for i, p := range params {
		if p.OID == 0 && i < len(st.params) {
			p.OID = st.params[i]
		}
		if args[i], err = fromWire(st.e.types, p); err != nil {
			return "", err
		}
	}
	n := 0
	row := make([]any, len(st.cols))
	err = st.e.q.Query(ctx, st.query(args), func(vals []any) error {
		if len(vals) != len(row) {
			return fmt.Errorf("systables: engine returned %d values for %d columns", len(vals), len(row))
		}
		for i, v := range vals {
			row[i] = toWire(st.cols[i].TypeOID, v, st.loc)
		}
		n++
		return w.WriteRow(row)
	})
	if err != nil {
		return "", st.engineError(err)
	}
	return fmt.Sprintf("SELECT %d", n), nil
}

var cteName = regexp.MustCompile(`mandate_cte_[0-9]+`)

// engineError gives an engine error its SQLSTATE and the names the client
// wrote; an error about a column the deparser could not resolve becomes
// PostgreSQL's, with the reference's position and a hint.
func (st *Statement) engineError(err error) error {
	var qe *catalog.QueryError
	if !errors.As(err, &qe) {
		return err
	}
	if st.pgTables != nil {
		return st.pgError(qe)
	}
	if len(st.unresolved) > 0 && (qe.SQLState == "42703" || qe.SQLState == "42P01" || qe.SQLState == "42601" ||
		qe.SQLState == "42804" || qe.SQLState == "42883" && strings.Contains(qe.Msg, "column")) {
		u := st.unresolved[0]
		for _, c := range st.unresolved {
			if qe.Name != "" && c.name == qe.Name {
				u = c
				break
			}
		}
		return st.columnError(u)
	}
	if r, ok := st.refs[qe.Name]; ok && qe.Name != "" {
		// PostgreSQL names the column with its relation, at the
		// reference.
		e := &pgwire.Error{Severity: "ERROR", Code: qe.SQLState, Message: qe.Msg, Hint: qe.Hint,
			Position: charPosition(st.text, int(r.loc))}
		if qe.SQLState == "42803" && r.rel != "" {
			e.Message = fmt.Sprintf("column %q must appear in the GROUP BY clause or be used in an aggregate function", r.rel+"."+qe.Name)
		}
		return e
	}
	return &pgwire.Error{Severity: "ERROR", Code: qe.SQLState, Message: st.clientNames(qe.Msg), Detail: qe.Detail, Hint: qe.Hint}
}

// clientNames writes the names of an engine message as the client wrote
// them (relations, CTEs).
func (st *Statement) clientNames(msg string) string {
	msg = strings.ReplaceAll(msg, catalog.AuditRelation, "audit")
	msg = strings.ReplaceAll(msg, catalog.UsageRelation, "usage")
	msg = strings.ReplaceAll(msg, catalog.PayloadsRelation, "payloads")
	msg = strings.ReplaceAll(msg, catalog.VirtualTableFunc, "relation")
	return cteName.ReplaceAllStringFunc(msg, func(s string) string {
		if n, ok := st.ctes[s]; ok {
			return n
		}
		return s
	})
}
