package limits

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// Call is what Reserve needs to know about one call.
type Call struct {
	Kind      SecurableKind
	Securable catalog.ID // the model service or connection
	// Subject is the human, or the service principal calling on its own.
	Subject catalog.ID
	// Actor is the agent's service principal acting for Subject; 0 when
	// the subject acts itself.
	Actor catalog.ID
	// Tags are the request's tags (header and service tags merged).
	Tags map[string]string
	// InputTokens is the estimate of the input, MaxTokens the output cap
	// the upstream is held to (model calls). Tokens reserved:
	// InputTokens + MaxTokens. For budgets the guarantee needs an upper
	// bound of the input (doc.go); MaxTokens must be > 0 under a budget.
	InputTokens int64
	MaxTokens   int64
	// Destinations are every provider model the call may reach: the split
	// and the fallbacks (model calls).
	Destinations []Destination
	// PerUseTool names a tool the call offers that the provider bills
	// beyond tokens in a way no price bounds ("": none); a budgeted call
	// with one fails closed.
	PerUseTool string
	// ToolUses is the most uses of each tool kind billed per use the call
	// may make (catalog.ToolKind): a budget reserves them at each
	// destination's price per use, and a destination without that price
	// fails closed.
	ToolUses [catalog.NumToolKinds]int64
}

// Options configure a Limiter.
type Options struct {
	// Backend holds the counters; nil: NewMemory(nil).
	Backend Backend
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

// Limiter admits calls against the rate limits and budgets of the
// installed Definitions. Safe for concurrent use.
type Limiter struct {
	backend Backend
	now     func() time.Time
	pol     atomic.Pointer[policy]
	windows windowMap
	month   atomic.Pointer[monthSpan]

	mu      sync.Mutex // serializes Apply; guards ledgers, seq and static
	ledgers map[string]*ledgerState
	seq     uint64
	static  map[slotKey]Window // the windows of service and group limits (never swept)
}

// New returns a Limiter with no definitions (everything is admitted until
// Apply).
func New(o Options) *Limiter {
	if o.Backend == nil {
		o.Backend = NewMemory(nil)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	l := &Limiter{backend: o.Backend, now: o.Now, ledgers: map[string]*ledgerState{}}
	l.windows.init()
	l.pol.Store(&policy{})
	return l
}

// Apply installs the definitions of a catalog revision. Invalid
// definitions are an error wrapping ErrInvalid and change nothing.
// Otherwise the new definitions take effect for calls reserved from now
// on; counters carry over (a changed limit applies to the recent count).
// Budgets whose spend cannot be loaded are installed unavailable (their
// calls are refused with BudgetUnavailable) and the error is returned; a
// later Apply retries them.
func (l *Limiter) Apply(ctx context.Context, defs Definitions) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ledgers, static, err := l.compile(ctx, &defs)
	if p == nil {
		return err
	}
	l.ledgers, l.static = ledgers, static
	l.pol.Store(p)
	return err
}

// Reservation is what Reserve took for one call: give it back with Settle
// (the call reached the upstream) or Release (it did not). Both are
// idempotent; the first one counts. A nil Reservation (nothing applied)
// is valid everywhere.
type Reservation struct {
	sec    catalog.ID
	at     int64 // Unix ns
	month  Month
	done   atomic.Bool
	tokens int64
	cost   Money
	hdr    RateHeaders
	w      []charge  // window charges, in wbuf unless many
	b      []Account // budget accounts charged cost each, in bbuf unless many
	wbuf   [4]charge // service, subject, actor (a group per dimension)
	bbuf   [3]Account
}

// charge is what one window was charged: n in bucket at. p is the
// principal of a per-principal window (looked up again if it was swept), 0
// for the fixed window of a service or group limit.
type charge struct {
	w  Window
	p  catalog.ID
	n  Units
	at Stamp
}

// At is when the call was admitted (read under the locks of its windows,
// so admissions to one window are in At order).
func (r *Reservation) At() time.Time {
	if r == nil {
		return time.Time{}
	}
	return time.Unix(0, r.at).UTC()
}

// Headers are the x-ratelimit-* figures after this call (the tightest
// limit per dimension), for the response.
func (r *Reservation) Headers() RateHeaders {
	if r == nil {
		return RateHeaders{}
	}
	return r.hdr
}

// Tokens and Cost are what was reserved: tokens against token limits,
// the worst-case cost against each budget.
func (r *Reservation) Tokens() int64 {
	if r == nil {
		return 0
	}
	return r.tokens
}

func (r *Reservation) Cost() Money {
	if r == nil {
		return 0
	}
	return r.cost
}

// Settle ends a call that reached the upstream: token limits are charged
// the actual total instead of the reservation (refund or extra charge, in
// the bucket of the admission), and each budget the actual cost instead of
// the worst case. Requests stay counted.
func (l *Limiter) Settle(r *Reservation, actual Usage, cost Money) {
	if r == nil || !r.done.CompareAndSwap(false, true) {
		return
	}
	now := l.now()
	used := actual.Total()
	for i := range r.w {
		c := &r.w[i]
		switch tok := c.n[Tokens]; {
		case tok == 0 || used == tok:
		case used < tok:
			c.w.Lock()
			c.w.Put(now, c.at, Units{0, tok - used})
			c.w.Unlock()
		default:
			l.add(c.w, slotKey{r.sec, ScopePrincipal, c.p}, now, c.at, Units{0, used - tok})
		}
	}
	for _, a := range r.b {
		a.Lock()
		a.Settle(r.month, r.cost, max(cost, 0))
		a.Unlock()
	}
}

// Release ends a call that never reached the upstream: everything reserved
// is given back.
func (l *Limiter) Release(r *Reservation) {
	if r == nil || !r.done.CompareAndSwap(false, true) {
		return
	}
	now := l.now()
	for i := range r.w {
		c := &r.w[i]
		c.w.Lock()
		c.w.Put(now, c.at, c.n)
		c.w.Unlock()
	}
	for _, a := range r.b {
		a.Lock()
		a.Put(r.month, r.cost)
		a.Unlock()
	}
}

// add charges n units unconditionally, to the live window of s's key (a
// swept window is replaced by a new one).
func (l *Limiter) add(w Window, key slotKey, now time.Time, at Stamp, n Units) {
	for range 1000 {
		w.Lock()
		ok := w.Add(now, at, n)
		w.Unlock()
		if ok {
			return
		}
		w = l.windows.get(key, l.now, l.backend)
	}
}

// Record charges a call that happened at at to the rate-limit windows
// without checking them: one request and usage's tokens. At startup the
// integrator replays the usage of the last WindowLength+Granularity so
// that a restart does not reset the windows (doc.go). Budgets are not
// charged (their spend comes from the SpendSource).
func (l *Limiter) Record(call *Call, at time.Time, usage Usage) {
	p := l.pol.Load()
	sp := p.secs[call.Securable]
	if sp == nil || call.Subject == 0 {
		return
	}
	now := l.now()
	var buf scratchBuf
	cands, checks := collect(buf.cands[:0], buf.checks[:0], p, sp, call, usage.Total())
	for _, ck := range checks {
		c := &cands[ck.lo] // alternatives: the first group
		w := c.static
		if w == nil {
			w = l.windows.get(c.key, l.now, l.backend)
		}
		l.add(w, c.key, now, StampOf(at), c.mask())
	}
}

// errNoSubject fails closed for a call without a subject.
var errNoSubject = errors.New("limits: call without a subject")

// BudgetStatus is one row of SHOW BUDGETS: a budget's figures for the
// current month. A FOR EACH USER budget gives one row per subject with
// spend or reservations this month (Principal is the subject), none when
// nobody has spent.
type BudgetStatus struct {
	Budget    Budget
	Principal catalog.ID // the budget's principal; the subject for FOR EACH USER
	Month     Month
	// Spent is the settled cost, Reserved the worst cases of calls in
	// flight, Remaining = Limit − Spent (at least 0).
	Spent, Reserved, Remaining Money
	// Unavailable is set when the budget's spend could not be loaded.
	Unavailable error
}

// Budgets returns the status of every installed budget, in definition
// order.
func (l *Limiter) Budgets() []BudgetStatus {
	p := l.pol.Load()
	month := l.monthOf(l.now())
	var out []BudgetStatus
	for _, bp := range p.budgets {
		row := BudgetStatus{Budget: bp.def, Principal: bp.def.Principal, Month: month, Remaining: bp.def.Limit}
		if bp.ledger.err != nil {
			row.Unavailable = bp.ledger.err
			out = append(out, row)
			continue
		}
		if bp.def.Level == LevelEachUser {
			for _, a := range bp.ledger.ledger.Accounts(month) {
				r := row
				r.Principal, r.Spent, r.Reserved = a.Principal, a.Spent, a.Reserved
				r.Remaining = max(r.Budget.Limit-a.Spent, 0)
				out = append(out, r)
			}
			continue
		}
		a := bp.ledger.ledger.Account(0)
		a.Lock()
		row.Spent, row.Reserved = a.State(month)
		a.Unlock()
		row.Remaining = max(row.Budget.Limit-row.Spent, 0)
		out = append(out, row)
	}
	return out
}
