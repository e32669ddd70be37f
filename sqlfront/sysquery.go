package sqlfront

import (
	"context"
	"sort"

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

// systemQuery prepares a SELECT over system tables.
// Its engine calls are admitted for the session's user (limits.go).
func (s *Session) systemQuery(ctx context.Context, tree *pg.ParseResult, paramOIDs []uint32) (*stmt, error) {
	p, err := s.f.sys.Prepare(withQueryUser(ctx, s.user), sysSession{s}, tree, paramOIDs)
	if err != nil {
		return nil, err
	}
	run := func(ctx context.Context, params []pgwire.Param, w pgwire.RowWriter) (string, error) {
		return p.Execute(withQueryUser(ctx, s.user), params, w)
	}
	return &stmt{s: s, cols: p.Columns(), params: p.ParamOIDs(), run: run}, nil
}

// wantsSystemQuery reports whether a SELECT goes to the query engine.
func (s *Session) wantsSystemQuery(x *pg.SelectStmt) bool {
	return s.f.sys != nil && systables.Wants(x)
}
