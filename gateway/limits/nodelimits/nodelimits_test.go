package nodelimits_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/limitstest"
	"github.com/mandatehq/mandate/gateway/limits/nodelimits"
)

// The fixtures of limitstest, by short names.
const svc, alice, bob, g1 = limitstest.Service, limitstest.Alice, limitstest.Bob, limitstest.Group

var gpt, eachUser, groupBudget, call, newClock = limitstest.GPT, limitstest.EachUser, limitstest.GroupBudget, limitstest.Call, limitstest.NewClock

type clock = limitstest.Clock

var t0 = time.Date(2026, 7, 14, 10, 0, 0, 0, time.UTC)

// env is a catalog server's Limiter with its lease Server, and nodes
// leasing from it in process (down cuts them off).
type env struct {
	c    *clock
	lim  *limits.Limiter
	srv  *nodelimits.Server
	down atomic.Bool
}

func newEnv(t *testing.T, defs limits.Definitions) *env {
	e := &env{c: newClock(t0)}
	e.lim = limits.New(limits.Options{Now: e.c.Now})
	if err := e.lim.Apply(t.Context(), defs); err != nil {
		t.Fatal(err)
	}
	e.srv = nodelimits.NewServer(e.lim, nodelimits.ServerOptions{SweepInterval: -1})
	return e
}

type node struct {
	b *nodelimits.Backend
	l *limits.Limiter
}

func (e *env) node(t *testing.T, defs limits.Definitions, o nodelimits.Options) *node {
	o.Now = e.c.Now
	o.Transport = func(ctx context.Context, req *api.LeaseRequest) (*api.LeaseResponse, error) {
		if e.down.Load() {
			return nil, errors.New("connection refused")
		}
		return e.srv.Serve(ctx, req)
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = -1
	}
	b, err := nodelimits.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	l := limits.New(limits.Options{Backend: b, Now: e.c.Now})
	if err := l.Apply(t.Context(), defs); err != nil {
		t.Fatal(err)
	}
	return &node{b, l}
}

// TestNodesWindow: 32 callers over two nodes and the server itself,
// against 10 requests per minute for each user, never pass more than 10
// per user in the minute; once the leases end (closed by the nodes' sync)
// every unit not used is back, so exactly 10 pass; a minute later 10 more.
func TestNodesWindow(t *testing.T) {
	defs := eachUser(10, 0)
	e := newEnv(t, defs)
	nodes := []*node{e.node(t, defs, nodelimits.Options{}), e.node(t, defs, nodelimits.Options{})}
	var passed [3]atomic.Int64
	round := func() {
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				subj := []catalog.ID{alice, bob}[g%2]
				l := e.lim
				if g%3 < 2 {
					l = nodes[g%3].l
				}
				for range 5 {
					r, err := l.Reserve(t.Context(), call(subj, 10, 10))
					if err == nil {
						passed[subj].Add(1)
						l.Settle(r, limits.Usage{InputTokens: 5}, 0)
						continue
					}
					var ref *limits.Refusal
					if !errors.As(err, &ref) || ref.Kind != limits.RateLimited {
						t.Errorf("unexpected refusal: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
	}
	sync := func() {
		e.srv.Sweep()
		for _, n := range nodes {
			if err := n.b.Sync(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	round()
	for _, p := range []catalog.ID{alice, bob} {
		if n := passed[p].Load(); n > 10 || n < 1 {
			t.Fatalf("user %d: %d passed in the first round, want 1..10", p, n)
		}
	}
	// The leases end; their unused units come back.
	e.c.Advance(3 * time.Second)
	sync()
	if w, _ := e.srv.Leases(); w != 0 {
		t.Fatalf("%d window leases still held after the nodes closed them", w)
	}
	round()
	for _, p := range []catalog.ID{alice, bob} {
		if n := passed[p].Load(); n != 10 {
			t.Errorf("user %d: %d passed within the minute, want exactly 10", p, n)
		}
	}
	e.c.Advance(2 * time.Second) // the second round's leases end: dated at t0+5 s
	sync()
	// Within the minute nothing more passes; once the units dated at the
	// leases' ends (t0+3 s, t0+5 s) leave the window, 10 more.
	e.c.Advance(55 * time.Second)
	sync()
	round()
	for _, p := range []catalog.ID{alice, bob} {
		if n := passed[p].Load(); n != 10 {
			t.Errorf("user %d: %d passed at t0+60 s, want 10", p, n)
		}
	}
	e.c.Advance(6 * time.Second)
	sync()
	round()
	for _, p := range []catalog.ID{alice, bob} {
		if n := passed[p].Load(); n != 20 {
			t.Errorf("user %d: %d passed in two minutes, want 20", p, n)
		}
	}
}

// TestNodeServerDown: a node serves from the lease it holds while the
// server is unreachable, then refuses as unavailable (503), never as over
// the limit and never beyond what it leased; a lease it never closed is
// taken back by the server's sweep, counted as used.
func TestNodeServerDown(t *testing.T) {
	defs := eachUser(10, 0)
	e := newEnv(t, defs)
	n := e.node(t, defs, nodelimits.Options{})
	// A busy key leases ahead: four calls, then more.
	admitted := 0
	for range 6 {
		if _, err := n.l.Reserve(t.Context(), call(alice, 10, 10)); err == nil {
			admitted++
		}
	}
	e.down.Store(true)
	var unavailable int
	for range 20 {
		_, err := n.l.Reserve(t.Context(), call(alice, 10, 10))
		var ref *limits.Refusal
		switch {
		case err == nil:
			admitted++
		case errors.As(err, &ref) && ref.Kind == limits.LimitUnavailable && ref.Status == 503:
			unavailable++
		default:
			t.Fatalf("refusal while the server is down: %v", err)
		}
	}
	if unavailable == 0 || admitted > 10 {
		t.Fatalf("server down: %d admitted, %d unavailable", admitted, unavailable)
	}
	// The server counts everything it lent.
	if rem := e.lim.WindowStatus(limits.WindowKey{Securable: svc, Scope: limits.ScopePrincipal, Principal: alice}, limits.Units{10, 0}); rem[0] > 10-int64(admitted) {
		t.Fatalf("server: %d remaining after %d admitted by the node", rem[0], admitted)
	}
	// The node never closes; the sweep takes the lease back as used.
	e.c.Advance(4 * time.Second)
	e.srv.Sweep()
	e.c.Advance(2 * time.Second)
	e.srv.Sweep()
	if w, _ := e.srv.Leases(); w != 0 {
		t.Fatalf("%d leases left after the sweep", w)
	}
	e.c.Advance(10 * time.Second)
	if _, err := n.l.Reserve(t.Context(), call(alice, 10, 10)); err == nil {
		t.Fatal("admitted with the server down and no lease")
	}
}

// TestNodesBudget: 32 callers over two nodes and the server spend a
// group budget; the server's account ends with exactly the settled
// costs, within the limit, nothing reserved and no lease left.
func TestNodesBudget(t *testing.T) {
	const limit = limits.USD
	defs := groupBudget(limit)
	e := newEnv(t, defs)
	o := nodelimits.Options{IdleReturn: 20 * time.Millisecond}
	nodes := []*node{e.node(t, defs, o), e.node(t, defs, o)}
	var passed, refused, settled atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(g), 2))
			subj := []catalog.ID{alice, bob}[g%2]
			l := e.lim
			if g%3 < 2 {
				l = nodes[g%3].l
			}
			for range 40 {
				cl := call(subj, int64(500+rnd.IntN(1000)), int64(1+rnd.IntN(2000)))
				res, err := l.Reserve(t.Context(), cl)
				if err != nil {
					var ref *limits.Refusal
					if !errors.As(err, &ref) || ref.Kind != limits.BudgetExhausted {
						t.Errorf("unexpected refusal: %v", err)
						return
					}
					refused.Add(1)
					continue
				}
				passed.Add(1)
				if rnd.IntN(10) == 0 {
					l.Release(res)
					continue
				}
				u := limits.Usage{InputTokens: cl.InputTokens * int64(rnd.IntN(3)) / 2, OutputTokens: cl.MaxTokens * int64(rnd.IntN(4)) / 3}
				u.CachedInputTokens = cl.InputTokens - u.InputTokens
				cost := gpt.Price.Cost(u)
				settled.Add(int64(cost))
				l.Settle(res, u, cost)
				if g%8 == 0 {
					for _, n := range nodes {
						_ = n.b.Sync(t.Context())
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, n := range nodes {
		if err := n.b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	st := e.lim.Budgets()[0]
	if st.Spent > limit || int64(st.Spent) != settled.Load() || st.Reserved != 0 {
		t.Errorf("server: spent %v (settled %v), reserved %v; limit %v", st.Spent, limits.Money(settled.Load()), st.Reserved, limit)
	}
	if _, b := e.srv.Leases(); b != 0 {
		t.Errorf("%d budget leases left after Close", b)
	}
	if refused.Load() == 0 || st.Spent < limit/2 {
		t.Errorf("the budget was not pressed: %d passed, %d refused, spent %v", passed.Load(), refused.Load(), st.Spent)
	}
	t.Logf("%d passed, %d refused, spent %v of %v", passed.Load(), refused.Load(), st.Spent, limit)
}

// TestNodeDies: a node that stops calling (killed) has its budget slice
// forfeited after the TTL — charged as spent, never given back to others
// while its calls might still be spending it — and its window leases
// counted as used at their end.
func TestNodeDies(t *testing.T) {
	defs := groupBudget(limits.USD)
	e := newEnv(t, defs)
	n := e.node(t, defs, nodelimits.Options{})
	r, err := n.l.Reserve(t.Context(), call(alice, 1000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	_ = r // in flight when the node dies
	st := e.lim.Budgets()[0]
	if st.Reserved == 0 {
		t.Fatalf("the node's slice is not reserved at the server: %+v", st)
	}
	slice := st.Reserved
	e.c.Advance(nodelimits.DefaultTTL - time.Second)
	e.srv.Sweep()
	if st := e.lim.Budgets()[0]; st.Reserved != slice || st.Spent != 0 {
		t.Fatalf("before the TTL: %+v", st)
	}
	e.c.Advance(2 * time.Second)
	e.srv.Sweep()
	if st := e.lim.Budgets()[0]; st.Reserved != 0 || st.Spent != slice {
		t.Fatalf("after the TTL: spent %v, reserved %v; want the slice %v spent", st.Spent, st.Reserved, slice)
	}
	if _, b := e.srv.Leases(); b != 0 {
		t.Fatalf("%d budget leases after the forfeit", b)
	}
}

// TestNodeNames: a caller the node has no ID for (no definition names
// it) is named to the server, which counts it on the same window as its
// own calls for that user.
func TestNodeNames(t *testing.T) {
	defs := eachUser(3, 0)
	e := newEnv(t, defs)
	e.srv = nodelimits.NewServer(e.lim, nodelimits.ServerOptions{SweepInterval: -1,
		Principal: func(name string) (catalog.ID, bool) { return alice, name == "alice@example.com" }})
	const synthetic = catalog.ID(1 << 61)
	n := e.node(t, defs, nodelimits.Options{Name: func(id catalog.ID) (string, bool) {
		switch id {
		case synthetic:
			return "alice@example.com", true
		case synthetic | 5:
			return "mallory@example.com", true
		}
		return "", false
	}})
	for i := range 2 {
		if _, err := n.l.Reserve(t.Context(), call(synthetic, 10, 10)); err != nil {
			t.Fatalf("call %d at the node: %v", i, err)
		}
	}
	if _, err := e.lim.Reserve(t.Context(), call(alice, 10, 10)); err != nil {
		t.Fatalf("the third call at the server: %v", err)
	}
	if _, err := e.lim.Reserve(t.Context(), call(alice, 10, 10)); err == nil {
		t.Fatal("a fourth call passed: the node's calls were not counted on alice's window")
	}
	if _, err := n.l.Reserve(t.Context(), call(synthetic|5, 10, 10)); err == nil {
		t.Fatal("a caller the server cannot resolve was admitted")
	}
}

// TestNodeStaleSlice: a node that has not reached the server for half the
// TTL does not spend its slice until a round trip confirms the lease is
// still its own; with the server down it refuses (503).
func TestNodeStaleSlice(t *testing.T) {
	defs := groupBudget(limits.USD)
	e := newEnv(t, defs)
	n := e.node(t, defs, nodelimits.Options{})
	if _, err := n.l.Reserve(t.Context(), call(alice, 100, 100)); err != nil {
		t.Fatal(err)
	}
	n.b.Expire(nodelimits.DefaultTTL / 2)
	before := n.b.Stats().RoundTrips
	if _, err := n.l.Reserve(t.Context(), call(alice, 100, 100)); err != nil {
		t.Fatalf("stale, the server up: %v", err)
	}
	if n.b.Stats().RoundTrips == before {
		t.Fatal("a stale slice was spent without asking the server")
	}
	n.b.Expire(nodelimits.DefaultTTL / 2)
	e.down.Store(true)
	_, err := n.l.Reserve(t.Context(), call(alice, 100, 100))
	var ref *limits.Refusal
	if !errors.As(err, &ref) || ref.Kind != limits.BudgetUnavailable || ref.Status != 503 {
		t.Fatalf("stale, the server down: %v", err)
	}
}
