package limits_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
)

// downBackend is a shared backend whose store cannot be reached: no local
// allowance, and every Refill fails with ErrUnavailable; with starved,
// every Refill succeeds but the allowance is gone before the retry (a
// store too slow for the load).
type downBackend struct {
	limits.Backend
	starved bool
}

type downWindow struct {
	limits.Window
	starved bool
}

func (w downWindow) Take(now time.Time, n, limit limits.Units) limits.Verdict {
	return limits.Verdict{Refill: true, Wait: time.Second}
}

func (w downWindow) Refill(context.Context, time.Time, limits.Units, limits.Units) error {
	if w.starved {
		return nil
	}
	return fmt.Errorf("%w: connection refused", limits.ErrUnavailable)
}

type downLedger struct {
	limits.Ledger
	starved bool
}

type downAccount struct {
	limits.Account
	starved bool
}

func (downAccount) Take(limits.Month, limits.Money, limits.Money) limits.Verdict {
	return limits.Verdict{Refill: true}
}

func (a downAccount) Refill(context.Context, limits.Month, limits.Money, limits.Money) error {
	if a.starved {
		return nil
	}
	return fmt.Errorf("%w: connection refused", limits.ErrUnavailable)
}

func (b downBackend) Window(k limits.WindowKey) limits.Window {
	return downWindow{b.Backend.Window(k), b.starved}
}

func (b downBackend) Ledger(ctx context.Context, bud *limits.Budget, m limits.Month) (limits.Ledger, error) {
	l, err := b.Backend.Ledger(ctx, bud, m)
	return downLedger{l, b.starved}, err
}

func (l downLedger) Account(p catalog.ID) limits.Account {
	return downAccount{l.Ledger.Account(p), l.starved}
}

// A shared backend that cannot reach its store, or cannot keep a lease
// until the call's retry, refuses with 503 and says so, rather than
// reporting the limit or budget as exhausted.
func TestUnavailable(t *testing.T) {
	c := newClock(t0)
	for _, tc := range []struct {
		name string
		defs limits.Definitions
		kind limits.RefusalKind
		msg  string
		// starved: the refusal when refills succeed without the
		// allowance lasting (a window's Refill also answers nil after the
		// store refused: rate limited, retry after 1 s)
		starvedKind   limits.RefusalKind
		starvedStatus int
		starvedRetry  int
	}{
		{"rate limit", limits.Definitions{RateLimits: []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 10, 0)}},
			limits.LimitUnavailable, "the rate limit for each user on model service system.ai.frontier is temporarily unavailable",
			limits.RateLimited, 429, 1},
		{"budget", limits.Definitions{Budgets: []limits.Budget{budget("analysts", 1, limits.LevelGroup, g1)}},
			limits.BudgetUnavailable, "budget analysts is temporarily unavailable",
			limits.BudgetUnavailable, 503, 5},
	} {
		for _, starved := range []bool{false, true} {
			name := tc.name
			if starved {
				name += "/starved"
			}
			t.Run(name, func(t *testing.T) {
				l := limits.New(limits.Options{Now: c.Now, Backend: downBackend{limits.NewMemory(nil), starved}})
				if tc.defs.Members == nil {
					tc.defs.Members = members
				}
				if err := l.Apply(t.Context(), tc.defs); err != nil {
					t.Fatal(err)
				}
				_, err := l.Reserve(t.Context(), modelCall(alice, 0, 100, 100))
				kind, status, retry := tc.kind, 503, 5
				if starved {
					kind, status, retry = tc.starvedKind, tc.starvedStatus, tc.starvedRetry
				}
				var ref *limits.Refusal
				if !errors.As(err, &ref) || ref.Kind != kind || ref.Status != status || ref.RetryAfterSeconds() != retry {
					t.Fatalf("got %v (%+v), want %v with %d and Retry-After %d", err, ref, kind, status, retry)
				}
				if got := ref.Error(); status == 503 && (len(got) < len(tc.msg) || got[:len(tc.msg)] != tc.msg) {
					t.Errorf("message %q, want it to start with %q", got, tc.msg)
				}
			})
		}
	}
}

// barrierBackend: every key lacks local allowance until it is refilled,
// and a Refill returns only once the refills of all n keys have started
// (or fails after 5 s, a failure bound): the Limiter must refill the keys
// of a call together, their round trips overlapping.
type barrierBackend struct {
	limits.Backend
	n       int32
	started atomic.Int32
	all     chan struct{}
}

type refilled struct{ done atomic.Bool }

func (b *barrierBackend) refill() error {
	if b.started.Add(1) == b.n {
		close(b.all)
	}
	select {
	case <-b.all:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("the refills of one call ran one after another")
	}
}

type barrierWindow struct {
	limits.Window
	b *barrierBackend
	r *refilled
}

func (w barrierWindow) Take(now time.Time, n, limit limits.Units) limits.Verdict {
	if !w.r.done.Load() {
		return limits.Verdict{Refill: true, Wait: time.Second}
	}
	return w.Window.Take(now, n, limit)
}

func (w barrierWindow) Refill(context.Context, time.Time, limits.Units, limits.Units) error {
	w.r.done.Store(true)
	return w.b.refill()
}

type barrierLedger struct {
	limits.Ledger
	b *barrierBackend
}

type barrierAccount struct {
	limits.Account
	b *barrierBackend
	r *refilled
}

func (a barrierAccount) Take(m limits.Month, amount, limit limits.Money) limits.Verdict {
	if !a.r.done.Load() {
		return limits.Verdict{Refill: true}
	}
	return a.Account.Take(m, amount, limit)
}

func (a barrierAccount) Refill(context.Context, limits.Month, limits.Money, limits.Money) error {
	a.r.done.Store(true)
	return a.b.refill()
}

func (b *barrierBackend) Window(k limits.WindowKey) limits.Window {
	return barrierWindow{b.Backend.Window(k), b, &refilled{}}
}

func (b *barrierBackend) Ledger(ctx context.Context, bud *limits.Budget, m limits.Month) (limits.Ledger, error) {
	l, err := b.Backend.Ledger(ctx, bud, m)
	return barrierLedger{l, b}, err
}

func (l barrierLedger) Account(p catalog.ID) limits.Account {
	return barrierAccount{l.Ledger.Account(p), l.b, &refilled{}}
}

// A call whose keys all lack local allowance refills them in one pass,
// concurrently (with a shared backend: one round trip's latency, not one
// per key), and is then admitted.
func TestRefillTogether(t *testing.T) {
	c := newClock(t0)
	b := &barrierBackend{Backend: limits.NewMemory(nil), n: 3, all: make(chan struct{})}
	l := limits.New(limits.Options{Now: c.Now, Backend: b})
	defs := limits.Definitions{
		RateLimits: []limits.RateLimit{rl(svc, limits.LevelService, 0, 100, 0), rl(svc, limits.LevelEachUser, 0, 10, 0)},
		Budgets:    []limits.Budget{budget("analysts", 1, limits.LevelGroup, g1)},
		Members:    members,
	}
	if err := l.Apply(t.Context(), defs); err != nil {
		t.Fatal(err)
	}
	r, err := l.Reserve(t.Context(), modelCall(alice, 0, 100, 100))
	if err != nil {
		t.Fatalf("refused: %v (%d of 3 refills started)", err, b.started.Load())
	}
	l.Release(r)
}
