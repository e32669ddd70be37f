// Package exfiltest is the conformance suite every exfil.RunStore
// implementation runs.
package exfiltest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/guard/exfil"
)

// Clock is a settable clock for stores that take one.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2025, 6, 16, 12, 0, 0, 0, time.UTC)} }

func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Factory returns a fresh store with the given TTL and capacity, reading
// time from clock.
type Factory func(t *testing.T, ttl time.Duration, max int, clock *Clock) exfil.RunStore

// RunStoreSuite checks a RunStore: first taint kept, isolation between
// runs, expiry renewed by use, capacity (expired runs make room, a full
// store refuses rather than forgets), cancelled contexts, and concurrent
// use (run it with -race).
func RunStoreSuite(t *testing.T, newStore Factory) {
	t.Run("FirstTaintKept", func(t *testing.T) {
		clock := NewClock()
		s := newStore(t, time.Hour, 10, clock)
		ctx := t.Context()
		if _, ok, err := s.Tainted(ctx, "r1"); ok || err != nil {
			t.Fatalf("fresh run tainted: %v %v", ok, err)
		}
		at := clock.Now()
		if err := s.Taint(ctx, "r1", exfil.Taint{Source: "main.hr.payroll", At: at}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
		if err := s.Taint(ctx, "r1", exfil.Taint{Source: "main.crm.accounts", At: clock.Now()}); err != nil {
			t.Fatal(err)
		}
		tt, ok, err := s.Tainted(ctx, "r1")
		if !ok || err != nil || tt.Source != "main.hr.payroll" || !tt.At.Equal(at) {
			t.Fatalf("taint %+v %v %v", tt, ok, err)
		}
		if _, ok, _ := s.Tainted(ctx, "r2"); ok {
			t.Fatal("taint leaked to another run")
		}
	})
	t.Run("Expiry", func(t *testing.T) {
		clock := NewClock()
		s := newStore(t, time.Minute, 10, clock)
		ctx := t.Context()
		if err := s.Taint(ctx, "r", exfil.Taint{Source: "src", At: clock.Now()}); err != nil {
			t.Fatal(err)
		}
		// use renews the expiry
		for range 3 {
			clock.Advance(50 * time.Second)
			if _, ok, _ := s.Tainted(ctx, "r"); !ok {
				t.Fatal("taint expired while in use")
			}
		}
		clock.Advance(61 * time.Second)
		if _, ok, _ := s.Tainted(ctx, "r"); ok {
			t.Fatal("taint outlived its TTL")
		}
		// after expiry a new taint starts over
		if err := s.Taint(ctx, "r", exfil.Taint{Source: "other", At: clock.Now()}); err != nil {
			t.Fatal(err)
		}
		if tt, _, _ := s.Tainted(ctx, "r"); tt.Source != "other" {
			t.Fatalf("source %q after expiry", tt.Source)
		}
	})
	t.Run("Capacity", func(t *testing.T) {
		clock := NewClock()
		s := newStore(t, time.Minute, 3, clock)
		ctx := t.Context()
		for i := range 3 {
			if err := s.Taint(ctx, fmt.Sprint("r", i), exfil.Taint{Source: "s", At: clock.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		err := s.Taint(ctx, "r3", exfil.Taint{Source: "s", At: clock.Now()})
		if !errors.Is(err, exfil.ErrStoreFull) {
			t.Fatalf("full store: %v", err)
		}
		for i := range 3 {
			if _, ok, _ := s.Tainted(ctx, fmt.Sprint("r", i)); !ok {
				t.Fatalf("run r%d forgotten", i)
			}
		}
		// re-tainting a known run works when full
		if err := s.Taint(ctx, "r0", exfil.Taint{Source: "s", At: clock.Now()}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(2 * time.Minute)
		if err := s.Taint(ctx, "r3", exfil.Taint{Source: "s", At: clock.Now()}); err != nil {
			t.Fatalf("expired runs did not make room: %v", err)
		}
	})
	t.Run("Cancelled", func(t *testing.T) {
		s := newStore(t, time.Minute, 3, NewClock())
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.Taint(ctx, "r", exfil.Taint{Source: "s"}); err == nil {
			t.Error("Taint with a cancelled context succeeded")
		}
		if _, _, err := s.Tainted(ctx, "r"); err == nil {
			t.Error("Tainted with a cancelled context succeeded")
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		clock := NewClock()
		s := newStore(t, time.Hour, 1000, clock)
		ctx := t.Context()
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					run := fmt.Sprint("r", (g*50+i)%100)
					if err := s.Taint(ctx, run, exfil.Taint{Source: "s", At: clock.Now()}); err != nil {
						t.Error(err)
						return
					}
					if _, ok, err := s.Tainted(ctx, run); !ok || err != nil {
						t.Errorf("run %s: %v %v", run, ok, err)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
}
