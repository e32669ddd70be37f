package sqlfront

import (
	"context"
	"sort"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"

	"github.com/mandatehq/mandate/sqlfront/pgwire"
	"github.com/mandatehq/mandate/sqlfront/systables"
)

// Queries over system tables (system.access.audit,
// system.information_schema.*, pg_catalog) go to package systables, which
// validates and rewrites them and runs them on the store's query engine
// (Config.Query). Without an engine they are 0A000 as before.

// sysSession is the view of a Session that systables needs.
type sysSession struct{ s *Session }

func (x sysSession) User() string                     { return x.s.user }
func (x sysSession) Database() string                 { return x.s.catalog }
func (x sysSession) Param(name string) (string, bool) { return x.s.getParam(name) }
func (x sysSession) ServerVersion() string            { return x.s.f.version }
func (x sysSession) ParamNames() []string {
	x.s.mu.Lock()
	defer x.s.mu.Unlock()
	names := make([]string, 0, len(x.s.params))
	for k := range x.s.params {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// systemQuery prepares a SELECT over system tables (tree is text parsed).
// Its engine calls are admitted for the session's user (limits.go).
func (s *Session) systemQuery(ctx context.Context, text string, tree *pg.ParseResult, paramOIDs []uint32) (*stmt, error) {
	p, err := s.f.sys.Prepare(withQueryUser(ctx, s.user), sysSession{s}, text, tree, paramOIDs)
	if err != nil {
		return nil, err
	}
	run := func(ctx context.Context, params []pgwire.Param, w pgwire.RowWriter) (string, error) {
		return p.Execute(withQueryUser(ctx, s.user), params, w)
	}
	return &stmt{s: s, cols: p.Columns(), params: p.ParamOIDs(), run: run}, nil
}

// wantsSystemQuery reports whether a SELECT goes to the query engine.
// With an engine, every SELECT does (PostgreSQL's semantics for
// expressions, casts and errors come from there), except the drivers'
// probes that the session answers at once (SELECT 1, SELECT version(),
// current_setting(...)) and set_config(), which changes the session.
func (s *Session) wantsSystemQuery(x *pg.SelectStmt) bool {
	if s.f.sys == nil {
		return false
	}
	if systables.Wants(x) {
		return true
	}
	engine := false
	for _, t := range x.TargetList {
		v := t.GetResTarget().GetVal()
		if fc := v.GetFuncCall(); fc != nil {
			if n := fc.Funcname[len(fc.Funcname)-1].GetString_(); n != nil && strings.EqualFold(n.Sval, "set_config") {
				return false
			}
		}
		engine = engine || !sessionValue(v)
	}
	return engine
}

// sessionValue reports whether an expression is one the session answers
// exactly as PostgreSQL: an integer, string, boolean or NULL constant, a
// parameter, the session's user, catalog or schema, or a session function
// of constant arguments.
func sessionValue(n *pg.Node) bool {
	switch x := n.GetNode().(type) {
	case *pg.Node_AConst:
		return x.AConst.GetFval() == nil
	case *pg.Node_ParamRef:
		return true
	case *pg.Node_SqlvalueFunction:
		switch x.SqlvalueFunction.Op {
		case pg.SQLValueFunctionOp_SVFOP_CURRENT_USER, pg.SQLValueFunctionOp_SVFOP_USER,
			pg.SQLValueFunctionOp_SVFOP_CURRENT_ROLE, pg.SQLValueFunctionOp_SVFOP_SESSION_USER,
			pg.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG, pg.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
			return true
		}
	case *pg.Node_FuncCall:
		fc := x.FuncCall
		name := fc.Funcname[len(fc.Funcname)-1].GetString_()
		if name == nil || fc.AggStar || fc.Over != nil || fc.AggDistinct || fc.AggFilter != nil {
			return false
		}
		switch strings.ToLower(name.Sval) {
		case "version", "current_user", "session_user", "current_database", "current_catalog", "current_schema",
			"current_setting", "set_config", "pg_backend_pid":
			for _, a := range fc.Args {
				if c := a.GetAConst(); c == nil || c.GetFval() != nil {
					if a.GetParamRef() == nil {
						return false
					}
				}
			}
			return true
		}
	}
	return false
}
