package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/nodelimits"
	"github.com/mandatehq/mandate/gateway/limitstage"
	"github.com/mandatehq/mandate/gateway/node"
	"github.com/mandatehq/mandate/gateway/pipeline"
	"github.com/mandatehq/mandate/sqlfront"
)

// limitsEngine is the pipeline's limits stage over the rate-limit and
// budget engine (gateway/limits), kept in step with the catalog: before a
// call (and SHOW BUDGETS) it installs the definitions of the newest
// revision if they changed, so a CREATE RATE LIMIT or BUDGET applies to
// the next call (read your writes). In `mandate serve` the budgets' spend
// this month comes from the usage rows (usageSpend) and the usage of the
// last minute is replayed into the windows at start, so limits and
// budgets survive a restart. On a gateway node (`mandate gateway`) the
// definitions come over GET /api/v1/limits; its
// windows and budget accounts are leased from the catalog server
// (gateway/limits/nodelimits): limits and budgets hold exactly across the
// server and its nodes.
type limitsEngine struct {
	lim   *limits.Limiter
	stage *limitstage.Stage
	log   zerolog.Logger
	// revision is the newest catalog revision; defs reads that revision's
	// definitions.
	revision func() catalog.Revision
	defs     func(ctx context.Context) (*api.LimitsInfo, error)

	applied atomic.Int64 // revision whose definitions are installed (-1: none)
	mu      sync.Mutex   // serializes sync
	names   atomic.Pointer[nameIDs]
	ids     limitstage.Resolver         // names to IDs (serve: the catalog; node: names)
	close   func(context.Context) error // gives a node's leases back (nil: nothing)
}

var _ pipeline.Limiter = (*limitsEngine)(nil)

// newServeLimits is the engine of `mandate serve`: definitions, names and
// spend from the catalog in process. shared is the replicas' shared
// backend (--store postgres://: gateway/limits/pglimits, whose windows
// and spend live in the database and survive restarts); nil: in memory,
// the windows replayed from the last minute's rows.
func newServeLimits(ctx context.Context, svc *catalog.Service, qe catalog.QueryEngine, shared limits.Backend, log zerolog.Logger) *limitsEngine {
	e := &limitsEngine{log: log, revision: svc.Revision, defs: api.LimitsResolver(svc), ids: newCatalogIDs(svc)}
	backend := shared
	if backend == nil {
		backend = limits.NewMemory(usageSpend{qe: qe, svc: svc})
	}
	e.lim = limits.New(limits.Options{Backend: backend})
	e.init()
	if err := e.sync(ctx); err != nil {
		log.Warn().Err(err).Msg("rate limits and budgets: not installed at start; retried at the first call")
	}
	if shared == nil {
		e.replay(ctx, qe)
	}
	return e
}

// newNodeLimits is the engine of a gateway node: definitions over the
// node API; windows and budgets leased from the catalog server
// (gateway/limits/nodelimits), so that limits and budgets hold across
// the server and every node. close gives the leases back.
func newNodeLimits(src *node.Limits, revision func() catalog.Revision, log zerolog.Logger) (*limitsEngine, error) {
	e := &limitsEngine{log: log, revision: revision, defs: src.Definitions}
	ids := nodeIDs{e: e, names: &sync.Map{}}
	e.ids = ids
	b, err := nodelimits.New(nodelimits.Options{Transport: src.Leases, Name: ids.name})
	if err != nil {
		return nil, err
	}
	e.close = b.Close
	e.lim = limits.New(limits.Options{Backend: b})
	e.init()
	return e, nil
}

// leaseServer lends the engine's windows and budgets to gateway nodes
// (api.Options.Leases); Close stops its sweeper.
func (e *limitsEngine) leaseServer(svc *catalog.Service) *nodelimits.Server {
	return nodelimits.NewServer(e.lim, nodelimits.ServerOptions{Principal: newCatalogIDs(svc).PrincipalID, Sync: e.sync})
}

func (e *limitsEngine) init() {
	e.applied.Store(-1)
	e.names.Store(&nameIDs{})
	e.stage = limitstage.New(e.lim, e.ids)
}

// sync installs the newest revision's definitions when they are not yet.
// A failure keeps the previous definitions and is retried on the next
// call.
func (e *limitsEngine) sync(ctx context.Context) error {
	rev := int64(e.revision())
	if e.applied.Load() >= rev {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.applied.Load() >= rev {
		return nil
	}
	info, err := e.defs(ctx)
	if err != nil {
		return fmt.Errorf("rate limits and budgets: %w", err)
	}
	defs, err := node.LimitDefinitions(info)
	if err != nil {
		return fmt.Errorf("rate limits and budgets: %w", err)
	}
	if err := e.lim.Apply(ctx, defs); err != nil {
		if errors.Is(err, limits.ErrInvalid) {
			return err
		}
		// Budgets whose spend could not be loaded refuse their calls
		// until a later revision loads it; the rest is installed.
		e.log.Warn().Err(err).Msg("rate limits and budgets: a budget's spend could not be loaded (its calls are refused)")
	}
	names := nameIDs{principals: info.Principals, securables: map[string]catalog.ID{}}
	for _, r := range info.RateLimits {
		names.securables[string(r.SecurableType)+"\x00"+r.SecurableName] = r.Securable
	}
	for _, b := range info.Budgets {
		if b.Service != 0 {
			names.securables[string(catalog.TypeModelService)+"\x00"+b.ServiceName] = b.Service
		}
	}
	e.names.Store(&names)
	e.applied.Store(max(int64(info.Revision), rev))
	return nil
}

// Reserve implements pipeline.Limiter: the newest definitions, then the
// limits stage.
func (e *limitsEngine) Reserve(ctx context.Context, c *pipeline.Call) (pipeline.Reservation, error) {
	if err := e.sync(ctx); err != nil {
		e.log.Error().Err(err).Msg("rate limits and budgets not current; refusing the call")
		return nil, &pipeline.Error{Kind: pipeline.KindUnavailable, Status: 503, RetryAfter: 5 * time.Second,
			Message: "the call's rate limits cannot be checked right now; retry", Audit: err.Error()}
	}
	return e.stage.Reserve(ctx, c)
}

// budgetStatus serves SHOW BUDGETS: each budget's spend this month, live
// (settled calls included at once), with the names of FOR EACH USER rows'
// users.
func (e *limitsEngine) budgetStatus(svc *catalog.Service) func(ctx context.Context) ([]sqlfront.BudgetStatus, error) {
	return func(ctx context.Context) ([]sqlfront.BudgetStatus, error) {
		if err := e.sync(ctx); err != nil {
			return nil, err
		}
		list := e.lim.Budgets()
		out := make([]sqlfront.BudgetStatus, len(list))
		svc.Read(func(m *catalog.Model) {
			for i, b := range list {
				out[i] = sqlfront.BudgetStatus{Budget: b.Budget.Name, Principal: b.Budget.PrincipalName,
					SpentNanos: int64(b.Spent), RemainingNanos: int64(b.Remaining), Unavailable: b.Unavailable != nil}
				if b.Budget.Level == limits.LevelEachUser {
					if p, ok := m.Principal(b.Principal); ok {
						out[i].Principal = p.Name
					}
				}
			}
		})
		return out, nil
	}
}

// catalogIDs resolves names over the catalog in process. The IDs found
// are cached per catalog revision (catalog.RevisionCache: a DROP, a RENAME
// or a re-CREATE is a new one), so every call resolves its names at the
// current revision as the catalog would; unknown names are not cached.
type catalogIDs struct {
	svc *catalog.Service
	ids *catalog.RevisionCache[idKey, catalog.ID]
}

// idKey is a principal's name (typ "") or a securable's type and full
// name.
type idKey struct {
	typ  catalog.SecurableType
	name string
}

// maxCachedIDs bounds catalogIDs' cache.
const maxCachedIDs = 4096

func newCatalogIDs(svc *catalog.Service) *catalogIDs {
	return &catalogIDs{svc: svc, ids: catalog.NewRevisionCache[idKey, catalog.ID](svc, maxCachedIDs)}
}

func (c *catalogIDs) PrincipalID(name string) (catalog.ID, bool) {
	return c.id(idKey{name: name}, func(m *catalog.Model) (catalog.ID, bool) {
		p, ok := m.PrincipalByName(name)
		if !ok {
			return 0, false
		}
		return p.ID, true
	})
}

func (c *catalogIDs) SecurableID(typ catalog.SecurableType, name string) (catalog.ID, bool) {
	return c.id(idKey{typ: typ, name: name}, func(m *catalog.Model) (catalog.ID, bool) {
		path, err := catalog.SplitName(name)
		if err != nil {
			return 0, false
		}
		s, err := m.Lookup(typ, path)
		if err != nil {
			return 0, false
		}
		return s.ID, true
	})
}

// id answers k from the cache of the current revision, or with find over
// the catalog's model (then caching what it found at that revision).
func (c *catalogIDs) id(k idKey, find func(m *catalog.Model) (catalog.ID, bool)) (catalog.ID, bool) {
	if id, ok, _ := c.ids.Get(k); ok {
		return id, true
	}
	var (
		at catalog.Revision
		id catalog.ID
		ok bool
	)
	c.svc.Read(func(m *catalog.Model) {
		at = m.Revision()
		id, ok = find(m)
	})
	if ok {
		c.ids.Put(at, k, id)
	}
	return id, ok
}

// nameIDs are the IDs of the names a revision's definitions use, on a
// gateway node.
type nameIDs struct {
	principals map[string]catalog.ID
	securables map[string]catalog.ID // type NUL full name
}

// nodeIDs resolves names on a gateway node: the principals the
// definitions name or count as group members by their IDs, every other
// caller (already authorized, so a principal of the catalog) by a stable
// ID outside the catalog's range, which only service and FOR EACH USER
// definitions can match; securables the same way (one without
// definitions is not limited).
type nodeIDs struct {
	e     *limitsEngine
	names *sync.Map // synthetic principal ID → name, for the lease server
}

func (n nodeIDs) PrincipalID(name string) (catalog.ID, bool) {
	if id, ok := n.e.names.Load().principals[name]; ok {
		return id, true
	}
	id := syntheticID("p\x00" + name)
	if n.names != nil {
		if _, ok := n.names.Load(id); !ok {
			n.names.Store(id, name)
		}
	}
	return id, true
}

// name is the name of a principal ID made up by PrincipalID.
func (n nodeIDs) name(id catalog.ID) (string, bool) {
	v, ok := n.names.Load(id)
	if !ok {
		return "", false
	}
	return v.(string), true
}

func (n nodeIDs) SecurableID(typ catalog.SecurableType, name string) (catalog.ID, bool) {
	if id, ok := n.e.names.Load().securables[string(typ)+"\x00"+name]; ok {
		return id, true
	}
	return syntheticID("s\x00" + string(typ) + "\x00" + name), true
}

// syntheticID is a stable ID for a name, with the top bits set so that it
// never equals a catalog ID (which count up from 1).
func syntheticID(s string) catalog.ID {
	h := fnv.New64a()
	h.Write([]byte(s))
	return catalog.ID(h.Sum64()>>2 | 1<<61)
}

// usageSpend is the budgets' SpendSource: the cost of the month's usage
// rows in a budget's scope, summed by the query engine (the same rows
// the usage table shows; exact to the nano-dollar).
type usageSpend struct {
	qe  catalog.QueryEngine
	svc *catalog.Service
}

func (u usageSpend) MonthSpend(ctx context.Context, b *limits.Budget, month limits.Month) (limits.MonthSpend, error) {
	var sb strings.Builder
	args := []any{month.Start(), month.End()}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	sb.WriteString("SELECT requester, CAST(sum(cost_usd) * 1000000000 AS BIGINT) FROM " + catalog.UsageRelation +
		" WHERE event_time >= $1 AND event_time < $2 AND cost_usd IS NOT NULL")
	if b.Service != 0 {
		sb.WriteString(" AND service_name = " + arg(b.ServiceName))
	}
	switch b.Level {
	case limits.LevelUser:
		sb.WriteString(" AND requester = " + arg(b.PrincipalName))
	case limits.LevelServicePrincipal: // the agent's calls for anyone, and its own
		p := arg(b.PrincipalName)
		sb.WriteString(" AND (requester = " + p + " OR run_as = " + p + ")")
	case limits.LevelGroup:
		var names []string
		u.svc.Read(func(m *catalog.Model) {
			for _, id := range m.TransitiveMembers(b.Principal) {
				if p, ok := m.Principal(id); ok {
					names = append(names, p.Name)
				}
			}
		})
		if len(names) == 0 {
			return limits.MonthSpend{}, nil
		}
		ps := make([]string, len(names))
		for i, n := range names {
			ps[i] = arg(n)
		}
		sb.WriteString(" AND requester IN (" + strings.Join(ps, ", ") + ")")
	}
	// The tag's key and value are typed: the engine cannot infer a
	// parameter's type from ->> (DuckDB: "could not determine data type
	// of a parameter", and every call under the budget would be refused).
	// The ->> is in parentheses: DuckDB binds AND tighter than ->>, so
	// "x AND request_tags->>k = v" would cast x AND request_tags.
	for _, t := range b.Tags {
		sb.WriteString(" AND (request_tags->>CAST(" + arg(t.Key) + " AS VARCHAR)) = CAST(" + arg(t.Value) + " AS VARCHAR)")
	}
	sb.WriteString(" GROUP BY requester")
	var out limits.MonthSpend
	byName := map[string]limits.Money{}
	err := u.qe.Query(ctx, catalog.Query{SQL: sb.String(), Args: args}, func(v []any) error {
		name, _ := v[0].(string)
		n, _ := v[1].(int64)
		out.Total += limits.Money(n)
		byName[name] += limits.Money(n)
		return nil
	})
	if err != nil {
		return limits.MonthSpend{}, fmt.Errorf("the spend of budget %s: %w", b.Name, err)
	}
	if b.Level == limits.LevelEachUser {
		out.ByPrincipal = make(map[catalog.ID]limits.Money, len(byName))
		u.svc.Read(func(m *catalog.Model) {
			for n, c := range byName {
				if p, ok := m.PrincipalByName(n); ok {
					out.ByPrincipal[p.ID] += c
				}
			}
		})
	}
	return out, nil
}

// replay charges the rate-limit windows with the calls of the last
// minute that reached an upstream — model calls from the usage rows, MCP
// calls of work (limitstage.Counted) from the audit rows — so that a
// restart does not reset them.
func (e *limitsEngine) replay(ctx context.Context, qe catalog.QueryEngine) {
	since := time.Now().Add(-limits.WindowLength - limits.Granularity)
	queries := []struct {
		kind limits.SecurableKind
		typ  catalog.SecurableType
		sql  string
	}{
		{limits.ModelService, catalog.TypeModelService, "SELECT event_time, service_name, requester, run_as, total_tokens, 'model' FROM " +
			catalog.UsageRelation + " WHERE event_time >= $1 AND routing IS NOT NULL"},
		{limits.Connection, catalog.TypeConnection, "SELECT event_time, securable_name, user_identity, identity_metadata->>'run_as', 0, action_name FROM " +
			catalog.AuditRelation + " WHERE event_time >= $1 AND service_name = 'mcp' AND decision = 'allow'" +
			" AND coalesce(CAST(response->>'status_code' AS INTEGER), 0) <> 429"},
	}
	n := 0
	for _, q := range queries {
		err := qe.Query(ctx, catalog.Query{SQL: q.sql, Args: []any{since}}, func(v []any) error {
			at, _ := v[0].(time.Time)
			sec, _ := v[1].(string)
			subj, _ := v[2].(string)
			actor, _ := v[3].(string)
			tokens, _ := v[4].(int64)
			if action, _ := v[5].(string); q.kind == limits.Connection && !limitstage.Counted(action) {
				return nil
			}
			c := limits.Call{Kind: q.kind}
			var ok bool
			if c.Securable, ok = e.ids.SecurableID(q.typ, sec); !ok {
				return nil
			}
			if c.Subject, ok = e.ids.PrincipalID(subj); !ok {
				return nil
			}
			if actor != "" && actor != subj {
				c.Actor, _ = e.ids.PrincipalID(actor)
			}
			e.lim.Record(&c, at, limits.Usage{InputTokens: tokens})
			n++
			return nil
		})
		if err != nil {
			e.log.Warn().Err(err).Msg("rate limits: the last minute's calls could not be replayed; windows start empty")
		}
	}
	if n > 0 {
		e.log.Info().Int("calls", n).Msg("rate limits: replayed the last minute's calls into the windows")
	}
}
