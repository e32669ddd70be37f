package limits

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/mandatehq/mandate/catalog"
)

// policy is the compiled form of one revision's Definitions: immutable,
// read without locks by Reserve.
type policy struct {
	secs map[catalog.ID]*secPolicy
	// groupsOf lists, per principal, the groups named by some limit or
	// budget that it belongs to (ascending IDs).
	groupsOf map[catalog.ID][]catalog.ID

	budgets      []*budgetPolicy                // definition order
	byPrincipal  map[catalog.ID][]*budgetPolicy // FOR USER, FOR SERVICE PRINCIPAL
	byGroup      map[catalog.ID][]*budgetPolicy // FOR GROUP
	eachUser     []*budgetPolicy                // FOR EACH USER
	groupBudgets int
}

// secPolicy holds the rate limits of one securable. The windows of the
// service and group limits are fixed (static: looked up at compile time,
// never swept); per-principal windows are found per call.
type secPolicy struct {
	service    *RateLimit
	serviceW   Window
	eachUser   *RateLimit
	principals map[catalog.ID]*RateLimit // FOR USER, FOR SERVICE PRINCIPAL
	groups     map[catalog.ID]groupLimit // FOR GROUP
}

type groupLimit struct {
	def *RateLimit
	w   Window
}

// budgetPolicy is one budget and its running ledger.
type budgetPolicy struct {
	def    Budget
	ledger *ledgerState
}

// ledgerState is a budget's running state, kept across revisions while
// the budget's scope (ident) stays the same.
type ledgerState struct {
	seq    uint64  // lock order among ledgers
	ledger Ledger  // nil when err != nil
	shared Account // the account of a budget of one scope (not FOR EACH USER)
	err    error
}

// compile validates defs and builds the policy. Ledgers of scopes seen
// before are reused; new ones (and ones that failed to load) are loaded
// from the backend. The returned error joins the load failures; the policy
// is usable regardless (failed budgets refuse their calls).
func (l *Limiter) compile(ctx context.Context, defs *Definitions) (*policy, map[string]*ledgerState, map[slotKey]Window, error) {
	p := &policy{
		secs:        map[catalog.ID]*secPolicy{},
		groupsOf:    map[catalog.ID][]catalog.ID{},
		byPrincipal: map[catalog.ID][]*budgetPolicy{},
		byGroup:     map[catalog.ID][]*budgetPolicy{},
	}
	type rlKey struct {
		sec   catalog.ID
		level Level
		p     catalog.ID
	}
	seen := map[rlKey]bool{}
	static := map[slotKey]Window{}
	named := map[catalog.ID]bool{} // groups named by a limit or budget
	for i := range defs.RateLimits {
		r := defs.RateLimits[i] // a copy: the policy owns its definitions
		if err := r.validate(); err != nil {
			return nil, nil, nil, err
		}
		k := rlKey{r.Securable, r.Level, r.Principal}
		if r.Level == LevelUser || r.Level == LevelServicePrincipal {
			k.level = LevelUser // one per-principal limit per securable
		}
		if seen[k] {
			return nil, nil, nil, invalidf("two rate limits for %s on %s", scope(r.Level, r.PrincipalName), r.SecurableName)
		}
		seen[k] = true
		if r.Requests == 0 && r.Tokens == 0 {
			continue
		}
		sp := p.secs[r.Securable]
		if sp == nil {
			sp = &secPolicy{principals: map[catalog.ID]*RateLimit{}, groups: map[catalog.ID]groupLimit{}}
			p.secs[r.Securable] = sp
		}
		switch r.Level {
		case LevelService:
			sp.service, sp.serviceW = &r, l.staticSlot(static, slotKey{r.Securable, ScopeService, 0})
		case LevelEachUser:
			sp.eachUser = &r
		case LevelUser, LevelServicePrincipal:
			sp.principals[r.Principal] = &r
		case LevelGroup:
			sp.groups[r.Principal] = groupLimit{&r, l.staticSlot(static, slotKey{r.Securable, ScopeGroup, r.Principal})}
			named[r.Principal] = true
		}
	}

	names := map[string]bool{}
	next := map[string]*ledgerState{}
	var loadErrs []error
	month := MonthOf(l.now())
	for i := range defs.Budgets {
		b := defs.Budgets[i]
		if err := b.validate(); err != nil {
			return nil, nil, nil, err
		}
		if names[b.Name] {
			return nil, nil, nil, invalidf("two budgets named %s", b.Name)
		}
		names[b.Name] = true
		b.Tags = slices.Clone(b.Tags)
		id := b.ident()
		ls := l.ledgers[id]
		if ls == nil || ls.err != nil {
			l.seq++
			ls = &ledgerState{seq: l.seq}
			ls.ledger, ls.err = l.backend.Ledger(ctx, &b, month)
			if ls.err != nil {
				ls.ledger = nil
				loadErrs = append(loadErrs, fmt.Errorf("budget %s: %w", b.Name, ls.err))
			} else if ls.ledger == nil {
				ls.err = errors.New("backend returned no ledger")
				loadErrs = append(loadErrs, fmt.Errorf("budget %s: %w", b.Name, ls.err))
			} else if b.Level != LevelEachUser {
				ls.shared = ls.ledger.Account(0)
			}
		}
		next[id] = ls
		bp := &budgetPolicy{def: b, ledger: ls}
		p.budgets = append(p.budgets, bp)
		switch b.Level {
		case LevelUser, LevelServicePrincipal:
			p.byPrincipal[b.Principal] = append(p.byPrincipal[b.Principal], bp)
		case LevelGroup:
			p.byGroup[b.Principal] = append(p.byGroup[b.Principal], bp)
			p.groupBudgets++
			named[b.Principal] = true
		case LevelEachUser:
			p.eachUser = append(p.eachUser, bp)
		}
	}

	for g := range named {
		for _, m := range defs.Members[g] {
			if gs := p.groupsOf[m]; len(gs) == 0 || !slices.Contains(gs, g) {
				p.groupsOf[m] = append(gs, g)
			}
		}
	}
	for m, gs := range p.groupsOf {
		slices.Sort(gs)
		p.groupsOf[m] = gs
	}
	return p, next, static, errors.Join(loadErrs...)
}

// staticSlot returns the window of a service or group limit: the one of
// the previous revision if it had this key, else a new one.
func (l *Limiter) staticSlot(next map[slotKey]Window, k slotKey) Window {
	w := l.static[k]
	if w == nil {
		w = l.backend.Window(WindowKey{Securable: k.sec, Scope: k.scope, Principal: k.p})
	}
	next[k] = w
	return w
}
