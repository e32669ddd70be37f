package limits

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// cand is one window a call may be charged to: n against limit, in the
// dimensions the limit sets.
type cand struct {
	key    slotKey
	n      Units
	limit  Units
	def    *RateLimit
	w      Window
	static Window // the window of a service or group limit (else looked up)
	v      Verdict
	taken  bool
}

// check is a run of cands of which one must admit the call: one cand for
// a limit, several for the group limits of a caller in several groups
// (throttled only when all are exhausted).
type check struct{ lo, hi int }

// bcand is one budget account a call is charged to.
type bcand struct {
	bp        *budgetPolicy
	principal catalog.ID
	acct      Account
	taken     bool
	v         Verdict
}

// lockRef orders the locks of one admission: windows by key, then budget
// accounts by ledger and principal. Every admission locks in this order.
type lockRef struct {
	a, b, c uint64
	i       int32 // cands[i], or buds[-1-i]
	l       sync.Locker
}

func (x *lockRef) less(y *lockRef) bool {
	if x.a != y.a {
		return x.a < y.a
	}
	if x.b != y.b {
		return x.b < y.b
	}
	return x.c < y.c
}

// scratch is the working state of one admission: slices that start in a
// scratchBuf on Reserve's stack (arrays sized for the usual levels; appends
// beyond them move to the heap). To keep the buffer on the stack, only
// functions that return the slices append to them; scratch's methods take
// it by value and write elements only.
type scratch struct {
	cands  []cand
	checks []check
	buds   []bcand
	locks  []lockRef
}

type scratchBuf struct {
	cands  [12]cand
	checks [8]check
	buds   [6]bcand
	locks  [18]lockRef
}

// collect lists the windows a call is charged to, in check order: the
// service, the subject's level (its own limit, else its groups' limits,
// else the default per user), the actor's own limit.
func collect(cands []cand, checks []check, p *policy, sp *secPolicy, call *Call, tokN int64) ([]cand, []check) {
	toks := call.Kind != Connection && tokN > 0
	n := Units{1, tokN}
	one := func(def *RateLimit, sc WindowScope, who catalog.ID, static Window) {
		lim := Units{def.Requests, 0}
		if toks {
			lim[Tokens] = def.Tokens
		}
		if lim != (Units{}) {
			cands = append(cands, cand{key: slotKey{call.Securable, sc, who}, n: n, limit: lim, def: def, static: static})
			checks = append(checks, check{len(cands) - 1, len(cands)})
		}
	}
	if sp.service != nil {
		one(sp.service, ScopeService, 0, sp.serviceW)
	}
	subj := call.Subject
	if def := sp.principals[subj]; def != nil {
		one(def, ScopePrincipal, subj, nil)
	} else {
		var gbuf [8]groupLimit
		gls := gbuf[:0] // the subject's groups limited on this securable
		if len(sp.groups) > 0 {
			for _, g := range p.groupsOf[subj] {
				if gl, ok := sp.groups[g]; ok {
					gls = append(gls, gl)
				}
			}
		}
		inGroup := len(gls) > 0
		for _, dim := range [2]Dim{Requests, Tokens} {
			if !inGroup || (dim == Tokens && !toks) {
				break
			}
			lo := len(cands)
			for _, gl := range gls {
				var lim Units
				lim[dim] = gl.def.Requests
				if dim == Tokens {
					lim[dim] = gl.def.Tokens
				}
				if lim[dim] > 0 {
					cands = append(cands, cand{key: slotKey{call.Securable, ScopeGroup, gl.def.Principal}, n: n, limit: lim, def: gl.def, static: gl.w})
				}
			}
			if len(cands) > lo {
				checks = append(checks, check{lo, len(cands)})
			}
		}
		if !inGroup && sp.eachUser != nil {
			one(sp.eachUser, ScopePrincipal, subj, nil)
		}
	}
	if a := call.Actor; a != 0 && a != subj {
		if def := sp.principals[a]; def != nil {
			one(def, ScopePrincipal, a, nil)
		}
	}
	return cands, checks
}

// collectBudgets lists the budgets a model call is charged to: the
// subject's user or service-principal budgets, the actor's
// service-principal budgets, the budgets of the subject's groups, and the
// FOR EACH USER budgets (the subject's account), each if its service and
// tag filters admit the call.
func collectBudgets(buds []bcand, p *policy, call *Call) []bcand {
	add := func(bp *budgetPolicy, who catalog.ID) {
		if bp.def.matches(call.Securable, call.Tags) {
			buds = append(buds, bcand{bp: bp, principal: who})
		}
	}
	subj := call.Subject
	for _, bp := range p.byPrincipal[subj] {
		add(bp, 0)
	}
	if a := call.Actor; a != 0 && a != subj {
		for _, bp := range p.byPrincipal[a] {
			if bp.def.Level == LevelServicePrincipal {
				add(bp, 0)
			}
		}
	}
	if p.groupBudgets > 0 {
		for _, g := range p.groupsOf[subj] {
			for _, bp := range p.byGroup[g] {
				add(bp, 0)
			}
		}
	}
	for _, bp := range p.eachUser {
		add(bp, subj)
	}
	return buds
}

// worst is the worst-case cost of a budgeted call over every destination
// it may reach; it fails closed on what makes the worst case unknown.
func (s scratch) worst(call *Call) (Money, error) {
	for i := range s.buds {
		if err := s.buds[i].bp.ledger.err; err != nil {
			return 0, &Refusal{Kind: BudgetUnavailable, Status: 503, Level: s.buds[i].bp.def.Level,
				Budget: s.buds[i].bp.def.Name, RetryAfter: 5 * time.Second}
		}
	}
	first := &s.buds[0].bp.def
	if call.MaxTokens <= 0 {
		return 0, &Refusal{Kind: OutputCapRequired, Status: 400, Level: first.Level, Budget: first.Name}
	}
	if call.PerUseTool != "" {
		return 0, &Refusal{Kind: UnpricedTool, Status: 400, Level: first.Level, Budget: first.Name, Tool: call.PerUseTool}
	}
	if len(call.Destinations) == 0 {
		return 0, &Refusal{Kind: PriceUnknown, Status: 403, Level: first.Level, Budget: first.Name,
			Destination: "(no destination)"}
	}
	var uses *[catalog.NumToolKinds]int64 // nil: no tool billed per use (the usual call)
	if call.ToolUses != ([catalog.NumToolKinds]int64{}) {
		uses = &call.ToolUses
	}
	var w Money
	for i := range call.Destinations {
		d := &call.Destinations[i]
		if !d.Priced {
			return 0, &Refusal{Kind: PriceUnknown, Status: 403, Level: first.Level, Budget: first.Name, Destination: d.Name}
		}
		if uses != nil {
			for k, n := range uses {
				if n > 0 && !d.Price.HasPerUse[k] {
					return 0, &Refusal{Kind: UnpricedTool, Status: 400, Level: first.Level, Budget: first.Name,
						Tool: catalog.ToolKind(k).String(), Destination: d.Name}
				}
			}
		}
		w = max(w, d.Price.Worst(pos(call.InputTokens), call.MaxTokens, uses))
	}
	return w, nil
}

// Limits reports whether any definition may apply to a call of kind: a
// rate limit on some securable, or, for a model service, a budget. When
// it does not, Reserve admits every call of that kind without reserving
// anything, whatever its IDs, so a caller may skip resolving them.
func (l *Limiter) Limits(kind SecurableKind) bool {
	p := l.pol.Load()
	return len(p.secs) > 0 || kind != Connection && len(p.budgets) > 0
}

// Reserve admits a call or refuses it with a *Refusal. In one atomic step
// over every window and budget account the call is charged to, it checks
// that each has room and takes it: one request, InputTokens+MaxTokens
// tokens, the worst-case cost from every applicable budget. Nothing
// applies: nil Reservation, nil error.
func (l *Limiter) Reserve(ctx context.Context, call *Call) (*Reservation, error) {
	if call.Subject == 0 {
		return nil, errNoSubject
	}
	p := l.pol.Load()
	sp := p.secs[call.Securable]
	budgets := call.Kind != Connection && len(p.budgets) > 0
	if sp == nil && !budgets {
		return nil, nil
	}
	tokN := sat(pos(call.InputTokens), pos(call.MaxTokens))
	var buf scratchBuf
	cands, checks, buds := buf.cands[:0], buf.checks[:0], buf.buds[:0]
	if sp != nil {
		cands, checks = collect(cands, checks, p, sp, call, tokN)
	}
	if budgets {
		buds = collectBudgets(buds, p, call)
	}
	if len(checks) == 0 && len(buds) == 0 {
		return nil, nil
	}
	s := scratch{cands: cands, checks: checks, buds: buds}
	var cost Money
	if len(buds) > 0 {
		var err error
		if cost, err = s.worst(call); err != nil {
			return nil, err
		}
	}
	s.locks = lockOrder(buf.locks[:0], cands, buds)
	for attempt := 0; ; attempt++ {
		for i := range s.cands {
			if c := &s.cands[i]; c.static != nil {
				c.w = c.static
			} else {
				c.w = l.windows.get(c.key, l.now, l.backend)
			}
		}
		for i := range s.buds {
			if b := &s.buds[i]; b.bp.ledger.shared != nil {
				b.acct = b.bp.ledger.shared
			} else {
				b.acct = b.bp.ledger.ledger.Account(b.principal)
			}
		}
		s.setLocks()
		s.lockAll()
		// The clock is read under the locks: admissions to a window are
		// stamped in the order they take it.
		now := l.now()
		month := l.monthOf(now)
		ref, retired := s.admit(call, now, month, cost)
		if retired { // swept under us: look the window up again
			s.unlockAll()
			if attempt > 1000 {
				return nil, errors.New("limits: windows swept under a call 1000 times")
			}
			continue
		}
		hdr := s.headers(now, ref == nil)
		s.unlockAll()
		if ref == nil {
			return s.reservation(call, now, month, tokN, cost, hdr), nil
		}
		ref.Headers = hdr
		// Each attempt stops at the first key without room, so a call
		// whose keys all lack local allowance needs one refill per key;
		// two more cover leases drained by concurrent calls meanwhile.
		if attempt < len(s.cands)+len(s.buds)+2 {
			retry, unavail := s.refill(ctx, call.Kind, now, month, cost)
			if unavail != nil {
				unavail.Headers = hdr
				return nil, unavail
			}
			if retry {
				continue
			}
		} else if starved := s.starved(month); starved != nil {
			starved.Headers = hdr
			return nil, starved
		}
		return nil, ref
	}
}

// lockOrder lists the locks of an admission in the global order (windows
// by key, then accounts by ledger and principal); setLocks fills in the
// objects once they are looked up. Two objects with one key (a window
// swept and its successor) are never both held by one admission, so the
// order has no cycle.
func lockOrder(locks []lockRef, cands []cand, buds []bcand) []lockRef {
	for i := range cands {
		c := &cands[i]
		locks = append(locks, lockRef{a: uint64(c.key.sec), b: uint64(c.key.p), c: uint64(c.key.scope), i: int32(i)})
	}
	for i := range buds {
		locks = append(locks, lockRef{a: 1<<63 | buds[i].bp.ledger.seq, c: uint64(buds[i].principal), i: int32(-1 - i)})
	}
	for i := 1; i < len(locks); i++ { // insertion sort: a handful of locks
		for j := i; j > 0 && locks[j].less(&locks[j-1]); j-- {
			locks[j], locks[j-1] = locks[j-1], locks[j]
		}
	}
	return locks
}

func (s scratch) setLocks() {
	for i := range s.locks {
		if k := s.locks[i].i; k >= 0 {
			s.locks[i].l = s.cands[k].w
		} else {
			s.locks[i].l = s.buds[-1-k].acct
		}
	}
}

func (s scratch) lockAll() {
	for i := range s.locks {
		if i > 0 && s.locks[i].l == s.locks[i-1].l {
			continue
		}
		s.locks[i].l.Lock()
	}
}

func (s scratch) unlockAll() {
	for i := range s.locks {
		if i > 0 && s.locks[i].l == s.locks[i-1].l {
			continue
		}
		s.locks[i].l.Unlock()
	}
}

// admit takes every check and budget in order; on the first refusal it
// gives back what it took and returns the refusal; likewise with retired
// set if a window turned out retired. Locks are held.
func (s scratch) admit(call *Call, now time.Time, month Month, cost Money) (ref *Refusal, retired bool) {
	for i := range s.cands {
		s.cands[i].taken, s.cands[i].v = false, Verdict{}
	}
	for i := range s.buds {
		s.buds[i].taken, s.buds[i].v = false, Verdict{}
	}
	// A key short of local allowance (Verdict.Refill) does not end the
	// admission: the keys after it are checked too, so that one pass of
	// refills covers every key that needs one; a key that refuses outright
	// ends it, with every Refill flag cleared (no refill can help).
	var short *Refusal
	final := func(ref *Refusal) (*Refusal, bool) {
		s.undo(now, month, cost)
		for i := range s.cands {
			s.cands[i].v.Refill = false
		}
		for i := range s.buds {
			s.buds[i].v.Refill = false
		}
		return ref, false
	}
	for _, ck := range s.checks {
		ok, refill := false, false
		for i := ck.lo; i < ck.hi && !ok; i++ {
			c := &s.cands[i]
			c.v = c.w.Take(now, c.n, c.limit)
			if c.v.Retired {
				s.undo(now, month, cost)
				return nil, true
			}
			c.taken, ok = c.v.OK, c.v.OK
			refill = refill || c.v.Refill
		}
		if !ok {
			if !refill {
				return final(s.rateRefusal(call, ck))
			}
			if short == nil {
				short = s.rateRefusal(call, ck)
			}
		}
	}
	for i := range s.buds {
		b := &s.buds[i]
		b.v = b.acct.Take(month, cost, b.bp.def.Limit)
		if b.taken = b.v.OK; !b.taken {
			d := &b.bp.def
			ref := &Refusal{Kind: BudgetExhausted, Status: 429, Level: d.Level, Scope: scope(d.Level, d.PrincipalName),
				Budget: d.Name, BudgetLimit: d.Limit, Month: month, RetryAfter: month.End().Sub(now)}
			if !b.v.Refill {
				return final(ref)
			}
			if short == nil {
				short = ref
			}
		}
	}
	if short != nil {
		s.undo(now, month, cost)
	}
	return short, false
}

func (s scratch) undo(now time.Time, month Month, cost Money) {
	for i := range s.cands {
		if c := &s.cands[i]; c.taken {
			c.w.Put(now, c.v.At, c.mask())
			c.taken = false
		}
	}
	for i := range s.buds {
		if b := &s.buds[i]; b.taken {
			b.acct.Put(month, cost)
			b.taken = false
		}
	}
}

// mask is what Take charged: n in the limited dimensions.
func (c *cand) mask() Units {
	var m Units
	for d := range m {
		if c.limit[d] > 0 {
			m[d] = c.n[d]
		}
	}
	return m
}

func (s scratch) rateRefusal(call *Call, ck check) *Refusal {
	best := &s.cands[ck.lo]
	for i := ck.lo + 1; i < ck.hi; i++ {
		c := &s.cands[i]
		if best.v.Wait == Never || (c.v.Wait != Never && c.v.Wait < best.v.Wait) {
			best = c
		}
	}
	d, dim := best.def, best.v.Dim
	r := &Refusal{Kind: RateLimited, Status: 429, Level: d.Level, Scope: scope(d.Level, d.PrincipalName),
		Securable: d.SecurableName, SecurableKind: call.Kind, Dim: dim, Limit: best.limit[dim], Needed: best.n[dim]}
	if best.v.Wait != Never {
		r.RetryAfter = best.v.Wait
	}
	if n := ck.hi - ck.lo; n > 1 {
		r.Groups = n
	}
	return r
}

// refill asks the backend for more allowance where a refusal was for lack
// of local allowance (several keys at once, concurrently: their round
// trips overlap); it reports whether a retry may now succeed, or the
// refusal to return when the shared store cannot be reached.
func (s scratch) refill(ctx context.Context, kind SecurableKind, now time.Time, month Month, cost Money) (retry bool, unavailable *Refusal) {
	var do []func() error
	var fail []func() *Refusal
	// The closures take copies: a pointer into s would move Reserve's
	// scratch buffer to the heap on every call, not only on this path.
	for i := range s.cands {
		if s.cands[i].v.Refill {
			c := s.cands[i]
			do = append(do, func() error { return c.w.Refill(ctx, now, c.mask(), c.limit) })
			fail = append(fail, func() *Refusal { return c.unavailable(kind) })
		}
	}
	for i := range s.buds {
		if s.buds[i].v.Refill {
			b := s.buds[i]
			do = append(do, func() error { return b.acct.Refill(ctx, month, cost, b.bp.def.Limit) })
			fail = append(fail, func() *Refusal { return b.unavailable(month) })
		}
	}
	errs := make([]error, len(do))
	if len(do) == 1 {
		errs[0] = do[0]()
	} else {
		var wg sync.WaitGroup
		for i, f := range do {
			wg.Go(func() { errs[i] = f() })
		}
		wg.Wait()
	}
	for i, err := range errs {
		switch {
		case err == nil:
			retry = true
		case errors.Is(err, ErrUnavailable):
			return false, fail[i]()
		}
	}
	return retry, nil
}

// starved is the refusal of a call whose budget refills kept succeeding
// without the slice lasting until its retry (a shared store too slow for
// the load): unavailable (503), not exhausted; nil if no account lacked
// local allowance. A window in that state refuses as rate limited with
// Retry-After 1 s: its Refill also answers nil when the store refused and
// the refusal may have aged by the retry (a 429 is then the right answer).
func (s scratch) starved(month Month) *Refusal {
	for i := range s.buds {
		if b := &s.buds[i]; b.v.Refill {
			return b.unavailable(month)
		}
	}
	return nil
}

func (c *cand) unavailable(kind SecurableKind) *Refusal {
	d := c.def
	return &Refusal{Kind: LimitUnavailable, Status: 503, Level: d.Level, Scope: scope(d.Level, d.PrincipalName),
		Securable: d.SecurableName, SecurableKind: kind, Dim: c.v.Dim, Limit: c.limit[c.v.Dim], RetryAfter: unavailableRetry}
}

func (b *bcand) unavailable(month Month) *Refusal {
	d := &b.bp.def
	return &Refusal{Kind: BudgetUnavailable, Status: 503, Level: d.Level, Scope: scope(d.Level, d.PrincipalName),
		Budget: d.Name, BudgetLimit: d.Limit, Month: month, RetryAfter: unavailableRetry}
}

// unavailableRetry is the Retry-After of a refusal for an unreachable
// shared store.
const unavailableRetry = 5 * time.Second

// headers computes the x-ratelimit-* figures: per dimension the check with
// the least room. Admitted, a check's figures are those of the window
// charged (Take reports them); refused, those of the window with the most
// room among a run of group limits.
func (s scratch) headers(now time.Time, admitted bool) RateHeaders {
	var h RateHeaders
	for _, ck := range s.checks {
		var best [2]RateHeader
		for i := ck.lo; i < ck.hi; i++ {
			c := &s.cands[i]
			var rem Units
			var reset [2]time.Duration
			switch {
			case admitted && !c.taken:
				continue
			case admitted:
				rem, reset = c.v.Remaining, c.v.Reset
			default:
				rem, reset = c.w.Status(now, c.limit)
			}
			for d := range best {
				if c.limit[d] > 0 && (!best[d].Set || rem[d] > best[d].Remaining) {
					best[d] = RateHeader{Set: true, Limit: c.limit[d], Remaining: rem[d], Reset: reset[d]}
				}
			}
		}
		for d, dh := range [2]*RateHeader{&h.Requests, &h.Tokens} {
			if best[d].Set && (!dh.Set || best[d].Remaining < dh.Remaining) {
				*dh = best[d]
			}
		}
	}
	return h
}

func (s scratch) reservation(call *Call, now time.Time, month Month, tokN int64, cost Money, hdr RateHeaders) *Reservation {
	r := &Reservation{sec: call.Securable, at: now.UnixNano(), month: month, hdr: hdr}
	r.w, r.b = r.wbuf[:0], r.bbuf[:0]
	for i := range s.cands {
		c := &s.cands[i]
		if !c.taken {
			continue
		}
		m := c.mask()
		if m[Tokens] > 0 {
			r.tokens = tokN
		}
		ch := charge{w: c.w, n: m, at: c.v.At}
		if c.static == nil {
			ch.p = c.key.p
		}
		r.w = append(r.w, ch)
	}
	if len(s.buds) > 0 {
		r.cost = cost
	}
	for i := range s.buds {
		r.b = append(r.b, s.buds[i].acct)
	}
	return r
}

// monthSpan caches the current month's bounds.
type monthSpan struct {
	start, end int64
	m          Month
}

func (l *Limiter) monthOf(now time.Time) Month {
	ns := now.UnixNano()
	if c := l.month.Load(); c != nil && ns >= c.start && ns < c.end {
		return c.m
	}
	m := MonthOf(now)
	l.month.Store(&monthSpan{m.Start().UnixNano(), m.End().UnixNano(), m})
	return m
}
