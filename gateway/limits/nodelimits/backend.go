package nodelimits

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/internal/lease"
)

// Options configure a Backend. Zero values take the defaults.
type Options struct {
	// Transport sends one lease request to the catalog server (POST
	// /api/v1/limits/leases: node.Limits.Leases). Required.
	Transport func(ctx context.Context, req *api.LeaseRequest) (*api.LeaseResponse, error)
	// Name gives the name of a principal ID the node made up for a caller
	// no definition names; the server resolves it. nil: IDs are sent as
	// they are.
	Name func(catalog.ID) (string, bool)
	// Now is the clock; it must be the Limiter's (limits.Options.Now).
	Now func() time.Time
	// WindowLease is how long leased units are used, from when the grant
	// was asked (2 s); it must not exceed the server's.
	WindowLease time.Duration
	// SyncInterval is the period of the background work: closes, refunds,
	// settles, idle slices given back (50 ms). Negative: no background
	// goroutine; the caller runs Sync (tests).
	SyncInterval time.Duration
	// IdleReturn is how long a budget slice may sit unused before it is
	// given back (1 s).
	IdleReturn time.Duration
	// Timeout bounds one round trip (2 s).
	Timeout time.Duration
}

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WindowLease <= 0 {
		o.WindowLease = DefaultWindowLease
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 50 * time.Millisecond
	}
	if o.IdleReturn <= 0 {
		o.IdleReturn = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
}

// Backend is a gateway node's limits.Backend: windows and budget accounts
// served from leases of the catalog server's (Server). Safe for
// concurrent use.
type Backend struct {
	o    Options
	node string

	lastContact atomic.Int64 // mono ns of the last successful round trip
	ttl         atomic.Int64 // the server's TTL for silent nodes

	lc       lease.Client // the windows' lease client
	mu       sync.Mutex
	accounts map[*account]struct{}
	accts    sync.Map // acctKey → *account

	stats struct{ roundTrips, errors atomic.Int64 }

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

var _ limits.Backend = (*Backend)(nil)

func mono() int64 { return lease.Mono() }

// New returns a node backend and starts its background work; Close gives
// the leases back.
func New(o Options) (*Backend, error) {
	if o.Transport == nil {
		return nil, errors.New("nodelimits: no transport")
	}
	o.defaults()
	var id [12]byte
	_, _ = rand.Read(id[:])
	b := &Backend{o: o, node: hex.EncodeToString(id[:]), accounts: map[*account]struct{}{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	b.lc.Now, b.lc.WindowLease = o.Now, o.WindowLease
	b.ttl.Store(int64(DefaultTTL))
	b.lastContact.Store(-1 << 62)
	if o.SyncInterval > 0 {
		go lease.Loop(o.SyncInterval, b.kick, b.stop, b.done, b.Sync)
	} else {
		close(b.done)
	}
	return b, nil
}

// Stats are counters since New.
type Stats struct{ RoundTrips, Errors int64 }

// Stats returns the counters.
func (b *Backend) Stats() Stats {
	return Stats{RoundTrips: b.stats.roundTrips.Load(), Errors: b.stats.errors.Load()}
}

// rt sends one request with the timeout; a failure wraps
// limits.ErrUnavailable.
func (b *Backend) rt(ctx context.Context, req *api.LeaseRequest) (*api.LeaseResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, b.o.Timeout)
	defer cancel()
	req.Node = b.node
	b.stats.roundTrips.Add(1)
	start := mono()
	resp, err := b.o.Transport(ctx, req)
	if err == nil && (len(resp.Windows) != len(req.Windows) || len(resp.Budgets) != len(req.Budgets)) {
		err = errors.New("answer does not match the request")
	}
	if err != nil {
		b.stats.errors.Add(1)
		return nil, fmt.Errorf("%w: leases from the catalog server: %w", limits.ErrUnavailable, err)
	}
	if resp.TTLNS > 0 {
		b.ttl.Store(resp.TTLNS)
	}
	b.lastContact.Store(start)
	return resp, nil
}

// fresh reports whether the server was reached recently enough that the
// budget slices held are still the node's (a node silent for the TTL has
// them forfeited; half of it is the margin).
func (b *Backend) fresh() bool { return b.freshAt(mono()) }

func (b *Backend) freshAt(ns int64) bool { return ns-b.lastContact.Load() < b.ttl.Load()/2 }

// Close stops the background work and gives back what the node holds:
// leases end (used units stay counted), settled costs are sent, unused
// slices returned. Close after the gateway has drained.
func (b *Backend) Close(ctx context.Context) error {
	if b.lc.Closed.Swap(true) {
		return nil
	}
	close(b.stop)
	<-b.done
	b.lc.CloseAll()
	b.accts.Range(func(_, v any) bool {
		a := v.(*account)
		a.Lock()
		a.closing = true
		a.register()
		a.Unlock()
		return true
	})
	return b.Sync(ctx)
}

func (b *Backend) activeAccounts() []*account {
	b.mu.Lock()
	defer b.mu.Unlock()
	as := make([]*account, 0, len(b.accounts))
	for a := range b.accounts {
		as = append(as, a)
	}
	return as
}

// Sync runs one round of the background work now, in one round trip: the
// closes of ended window leases and their refunds and extra charges,
// budget settles, idle slices given back, and a heartbeat while budget
// slices are held.
func (b *Backend) Sync(ctx context.Context) error {
	ns := b.o.Now().UnixNano()
	req := &api.LeaseRequest{}
	var wops []func(res *api.WindowLeaseResult, err error)
	for _, lw := range b.lc.Windows() {
		if !lw.Ops.TryAcquire() {
			continue
		}
		w := lw.T.(*window)
		w.Lock()
		ops, done := w.prepare(ns)
		w.Unlock()
		if len(ops) == 0 {
			w.Ops.Release()
			continue
		}
		req.Windows = append(req.Windows, ops...)
		wops = append(wops, done...)
	}
	var bops []func(res *api.BudgetLeaseResult, err error)
	holds := false
	for _, a := range b.activeAccounts() {
		if !a.Ops.TryAcquire() {
			holds = true
			continue
		}
		a.Lock()
		op, done, held := a.prepare()
		a.Unlock()
		holds = holds || held
		if op == nil {
			a.Ops.Release()
			continue
		}
		req.Budgets = append(req.Budgets, *op)
		bops = append(bops, done)
	}
	heartbeat := holds && mono()-b.lastContact.Load() >= b.ttl.Load()/6
	if len(req.Windows) == 0 && len(req.Budgets) == 0 && !heartbeat {
		return nil
	}
	resp, err := b.rt(ctx, req)
	for i, f := range wops {
		if err != nil {
			f(nil, err)
		} else {
			f(&resp.Windows[i], nil)
		}
	}
	for i, f := range bops {
		if err != nil {
			f(nil, err)
		} else {
			f(&resp.Budgets[i], nil)
		}
	}
	return err
}

// principal is how the node names principal p to the server.
func (b *Backend) principal(p catalog.ID) (catalog.ID, string) {
	if b.o.Name != nil {
		if n, ok := b.o.Name(p); ok {
			return 0, n
		}
	}
	return p, ""
}

func (b *Backend) wireKey(k limits.WindowKey) api.LeaseKey {
	p, name := b.principal(k.Principal)
	return api.LeaseKey{Securable: k.Securable, Scope: uint8(k.Scope), Principal: p, PrincipalName: name}
}

func resultErr(msg string, unavailable bool) error {
	if unavailable {
		return fmt.Errorf("%w: %s", limits.ErrUnavailable, msg)
	}
	// Not a fault of the store (an unknown limit at this revision): the
	// call is refused as unavailable too, never admitted.
	return fmt.Errorf("%w: the catalog server: %s", limits.ErrUnavailable, msg)
}
