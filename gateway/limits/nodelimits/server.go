package nodelimits

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
)

// ServerOptions configure a Server. Zero values take the defaults.
type ServerOptions struct {
	// WindowLease is how long a node may use leased units (2 s): at its
	// end the server counts every unit as used then, and the node's close
	// gives back the units it did not use.
	WindowLease time.Duration
	// Grace is how long after its end a lease's close is taken (1 s);
	// later, its units stay counted as used.
	Grace time.Duration
	// TTL is how long a node may stay silent before its budget slices are
	// forfeited: charged as spent (30 s).
	TTL time.Duration
	// MaxLeases bounds the leases held by all nodes together (100,000);
	// grants beyond are unavailable.
	MaxLeases int
	// Principal resolves a principal a node names (a caller no definition
	// names); nil: such operations fail.
	Principal func(name string) (catalog.ID, bool)
	// Sync brings the Limiter's definitions to the catalog's current
	// revision before a request is served (nil: nothing).
	Sync func(ctx context.Context) error
	// SweepInterval is the period of the sweeper (100 ms); negative: no
	// sweeper goroutine, the caller runs Sweep (tests).
	SweepInterval time.Duration
}

func (o *ServerOptions) defaults() {
	if o.WindowLease <= 0 {
		o.WindowLease = DefaultWindowLease
	}
	if o.Grace <= 0 {
		o.Grace = time.Second
	}
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.MaxLeases <= 0 {
		o.MaxLeases = 100_000
	}
	if o.SweepInterval == 0 {
		o.SweepInterval = 100 * time.Millisecond
	}
}

// Defaults shared by Server and Backend.
const (
	DefaultWindowLease = 2 * time.Second
	DefaultTTL         = 30 * time.Second
)

// Server lends slices of a Limiter's windows and budget accounts to
// gateway nodes (api.Options.Leases = Server.Serve). Safe for concurrent
// use.
type Server struct {
	lim *limits.Limiter
	o   ServerOptions

	mu      sync.Mutex
	seq     int64
	windows map[int64]*srvWindow
	budgets map[int64]*srvBudget
	nodes   map[string]int64 // node → last request (ns, the Limiter's clock)

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type srvWindow struct {
	node    string
	key     limits.WindowKey
	at      limits.Stamp
	granted limits.Units
	end     int64        // the Limiter's ns: the lease's end
	ended   bool         // dated by Sweep: every unit charged at endAt
	endAt   limits.Stamp // (0 while Sweep is charging it)
}

type srvBudget struct {
	node      string
	ident     string
	principal catalog.ID
	month     limits.Month
	slice     limits.Money // reserved on the account, not yet settled
	settled   limits.Money // the node's cumulative settled cost
}

// NewServer returns a Server over lim (the catalog server's own Limiter)
// and starts its sweeper; Close stops it.
func NewServer(lim *limits.Limiter, o ServerOptions) *Server {
	o.defaults()
	s := &Server{lim: lim, o: o, windows: map[int64]*srvWindow{}, budgets: map[int64]*srvBudget{}, nodes: map[string]int64{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if o.SweepInterval > 0 {
		go s.loop()
	} else {
		close(s.done)
	}
	return s
}

// Close stops the sweeper. Leases held stay counted.
func (s *Server) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

func (s *Server) loop() {
	defer close(s.done)
	t := time.NewTicker(s.o.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.Sweep()
		}
	}
}

// Sweep dates the window leases that reached their end (WindowLease
// after the grant): every unit is counted as used now, the moment after
// the last one the node may use, and the node's close gives back what it
// did not use; leases whose close does not come within Grace are dropped
// (counted as used). It also forfeits the budget slices of nodes silent
// for TTL (charged as spent: their calls in flight may have cost it, and
// their settles are lost).
func (s *Server) Sweep() {
	ns := s.lim.Now().UnixNano()
	var ws []*srvWindow
	var bs []*srvBudget
	s.mu.Lock()
	for id, w := range s.windows {
		switch {
		case !w.ended && ns >= w.end:
			w.ended = true
			ws = append(ws, w)
		case w.ended && ns >= w.end+int64(s.o.Grace):
			delete(s.windows, id)
		}
	}
	for id, b := range s.budgets {
		if ns-s.nodes[b.node] >= int64(s.o.TTL) {
			bs = append(bs, b)
			delete(s.budgets, id)
		}
	}
	for n, seen := range s.nodes {
		if ns-seen >= 2*int64(s.o.TTL) {
			delete(s.nodes, n)
		}
	}
	s.mu.Unlock()
	for _, w := range ws {
		at := s.redate(w, w.granted)
		s.mu.Lock()
		w.endAt = at
		s.mu.Unlock()
	}
	for _, b := range bs {
		_ = s.lim.SettleBudget(b.ident, b.principal, b.month, b.slice, b.slice)
	}
}

// redate ends a window lease: its grant is given back from the bucket it
// was charged in and used is charged in the current bucket, which is
// returned (a unit used at any time in the lease is then counted for 60 s
// after its use, as the window's guarantee needs).
func (s *Server) redate(w *srvWindow, used limits.Units) limits.Stamp {
	s.lim.PutWindow(w.key, w.at, w.granted)
	return s.lim.AddWindow(w.key, limits.Units{max(used[0], 0), max(used[1], 0)})
}

// Leases reports the window and budget leases held by nodes.
func (s *Server) Leases() (windows, budgets int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.windows), len(s.budgets)
}

// live is the number of takers of capacity: the nodes seen within TTL
// and the server itself.
func (s *Server) live(ns int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(1)
	for _, seen := range s.nodes {
		if ns-seen < int64(s.o.TTL) {
			n++
		}
	}
	return n
}

// Serve answers one lease request (api.Options.Leases).
func (s *Server) Serve(ctx context.Context, req *api.LeaseRequest) (*api.LeaseResponse, error) {
	if s.o.Sync != nil {
		if err := s.o.Sync(ctx); err != nil {
			return nil, catalog.Errorf(catalog.CodeUnavailable, "rate limits and budgets not current: %v", err)
		}
	}
	ns := s.lim.Now().UnixNano()
	s.mu.Lock()
	s.nodes[req.Node] = ns
	s.mu.Unlock()
	live := s.live(ns)
	resp := &api.LeaseResponse{Windows: make([]api.WindowLeaseResult, len(req.Windows)),
		Budgets: make([]api.BudgetLeaseResult, len(req.Budgets)), TTLNS: int64(s.o.TTL)}
	for i := range req.Windows {
		resp.Windows[i] = s.window(ctx, req.Node, &req.Windows[i], live)
	}
	for i := range req.Budgets {
		resp.Budgets[i] = s.budget(ctx, req.Node, &req.Budgets[i], live)
	}
	return resp, nil
}

func (s *Server) principal(id catalog.ID, name string) (catalog.ID, error) {
	if name == "" {
		return id, nil
	}
	if s.o.Principal != nil {
		if p, ok := s.o.Principal(name); ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown principal %q", name)
}

func nonNeg(u [2]int64) bool { return u[0] >= 0 && u[1] >= 0 }

func failed(err error) api.WindowLeaseResult {
	return api.WindowLeaseResult{Error: err.Error(), Unavailable: !errors.Is(err, limits.ErrNoLimit) && errors.Is(err, limits.ErrUnavailable)}
}

func (s *Server) window(ctx context.Context, node string, op *api.WindowLeaseOp, live int64) api.WindowLeaseResult {
	p, err := s.principal(op.Key.Principal, op.Key.PrincipalName)
	if err != nil {
		return failed(err)
	}
	key := limits.WindowKey{Securable: op.Key.Securable, Scope: limits.WindowScope(op.Key.Scope), Principal: p}
	switch op.Op {
	case api.LeaseGrant:
		limit, need, want := limits.Units(op.Limit), limits.Units(op.Need), limits.Units(op.Want)
		if !nonNeg(op.Limit) || !nonNeg(op.Need) || !nonNeg(op.Want) || limit == (limits.Units{}) {
			return failed(errors.New("grant: negative units or no limit"))
		}
		s.mu.Lock()
		full := len(s.windows)+len(s.budgets) >= s.o.MaxLeases
		s.mu.Unlock()
		if full {
			return failed(fmt.Errorf("%w: too many leases outstanding", limits.ErrUnavailable))
		}
		var v limits.Verdict
		granted := need
		if want != (limits.Units{}) {
			rem := s.lim.WindowStatus(key, limit)
			var extra limits.Units
			for d := range extra {
				if limit[d] > 0 {
					extra[d] = min(want[d], max(rem[d]-need[d], 0)/(2*live))
				}
			}
			if extra != (limits.Units{}) {
				granted = limits.Units{need[0] + extra[0], need[1] + extra[1]}
				if v, err = s.lim.TakeWindow(ctx, key, granted, limit); err != nil || !v.OK {
					granted, v = need, limits.Verdict{}
				}
			}
		}
		if !v.OK {
			if v, err = s.lim.TakeWindow(ctx, key, need, limit); err != nil {
				return failed(err)
			}
		}
		if !v.OK {
			wait := int64(v.Wait)
			if v.Wait == limits.Never {
				wait = -1
			}
			return api.WindowLeaseResult{Dim: int(v.Dim), WaitNS: wait, Remaining: s.lim.WindowStatus(key, limit)}
		}
		s.mu.Lock()
		s.seq++
		id := s.seq
		s.windows[id] = &srvWindow{node: node, key: key, at: v.At, granted: granted,
			end: s.lim.Now().UnixNano() + int64(s.o.WindowLease)}
		s.mu.Unlock()
		return api.WindowLeaseResult{Lease: id, Granted: granted, Remaining: v.Remaining}
	case api.LeaseClose:
		s.mu.Lock()
		w := s.windows[op.Lease]
		if w != nil && w.node == node && w.key == key && (!w.ended || w.endAt != 0) {
			delete(s.windows, op.Lease)
		} else {
			w = nil
		}
		s.mu.Unlock()
		if w == nil { // dropped already (counted as used)
			return api.WindowLeaseResult{}
		}
		used := limits.Units{max(op.Used[0], 0), max(op.Used[1], 0)}
		if !w.ended {
			return api.WindowLeaseResult{At: int64(s.redate(w, used))}
		}
		// Dated at its end already: give back what was not used, charge
		// usage above the grant.
		var back, extra limits.Units
		for d := range used {
			back[d], extra[d] = max(w.granted[d]-used[d], 0), max(used[d]-w.granted[d], 0)
		}
		s.lim.PutWindow(w.key, w.endAt, back)
		if extra != (limits.Units{}) {
			s.lim.AddWindow(w.key, extra)
		}
		return api.WindowLeaseResult{At: int64(w.endAt)}
	case api.LeaseAdjust:
		n := limits.Units(op.Adjust)
		var refund, extra limits.Units
		for d := range n {
			refund[d], extra[d] = max(-n[d], 0), max(n[d], 0)
		}
		if refund != (limits.Units{}) {
			s.lim.PutWindow(key, limits.Stamp(op.At), refund)
		}
		if extra != (limits.Units{}) {
			s.lim.AddWindow(key, extra)
		}
		return api.WindowLeaseResult{}
	}
	return failed(fmt.Errorf("unknown window operation %q", op.Op))
}

func (s *Server) budget(ctx context.Context, node string, op *api.BudgetLeaseOp, live int64) api.BudgetLeaseResult {
	fail := func(err error) api.BudgetLeaseResult {
		return api.BudgetLeaseResult{Error: err.Error(), Unavailable: !errors.Is(err, limits.ErrNoLimit) && errors.Is(err, limits.ErrUnavailable)}
	}
	p, err := s.principal(op.Principal, op.PrincipalName)
	if err != nil {
		return fail(err)
	}
	if op.Need < 0 || op.Want < 0 || op.Settled < 0 {
		return fail(errors.New("negative amount"))
	}
	month := limits.Month(op.Month)
	var lease *srvBudget
	if op.Lease != 0 {
		// Settle what the node reports against the slice first.
		s.mu.Lock()
		lease = s.budgets[op.Lease]
		if lease == nil || lease.node != node || lease.ident != op.Budget || lease.principal != p || lease.month != month {
			s.mu.Unlock()
			return api.BudgetLeaseResult{Unknown: true}
		}
		var r, delta limits.Money
		if settled := limits.Money(op.Settled); settled > lease.settled {
			delta = settled - lease.settled
			r = min(delta, lease.slice)
			lease.slice -= r
			lease.settled = settled
		}
		var back limits.Money
		if op.Op == api.LeaseReturn {
			back = lease.slice
			delete(s.budgets, op.Lease)
		}
		s.mu.Unlock()
		if delta > 0 {
			_ = s.lim.SettleBudget(op.Budget, p, month, r, delta)
		}
		if back > 0 {
			_ = s.lim.PutBudget(op.Budget, p, month, back)
		}
	}
	switch op.Op {
	case api.LeaseSettle, api.LeaseReturn:
		if op.Lease == 0 {
			return fail(errors.New("settle without a lease"))
		}
		return api.BudgetLeaseResult{Lease: op.Lease}
	case api.LeaseGrant:
	default:
		return fail(fmt.Errorf("unknown budget operation %q", op.Op))
	}
	s.mu.Lock()
	full := len(s.windows)+len(s.budgets) >= s.o.MaxLeases
	s.mu.Unlock()
	if full && lease == nil {
		return fail(fmt.Errorf("%w: too many leases outstanding", limits.ErrUnavailable))
	}
	need, amount := limits.Money(op.Need), limits.Money(0)
	if op.Want > 0 {
		if spent, reserved, limit, err := s.lim.BudgetState(op.Budget, p, month); err == nil {
			if extra := min(limits.Money(op.Want), max(limit-spent-reserved-need, 0)/limits.Money(2*live)); extra > 0 {
				if v, err := s.lim.TakeBudget(ctx, op.Budget, p, month, need+extra); err == nil && v.OK {
					amount = need + extra
				}
			}
		}
	}
	if amount == 0 {
		v, err := s.lim.TakeBudget(ctx, op.Budget, p, month, need)
		if err != nil {
			return fail(err)
		}
		if !v.OK {
			return api.BudgetLeaseResult{Lease: op.Lease, Refused: true}
		}
		amount = need
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if lease != nil && s.budgets[op.Lease] == lease {
		lease.slice += amount
		return api.BudgetLeaseResult{Lease: op.Lease, Granted: int64(amount)}
	}
	s.seq++
	s.budgets[s.seq] = &srvBudget{node: node, ident: op.Budget, principal: p, month: month, slice: amount}
	return api.BudgetLeaseResult{Lease: s.seq, Granted: int64(amount)}
}
