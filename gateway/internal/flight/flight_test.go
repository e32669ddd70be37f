package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cache is a one-key cache over a Group, counting its fetches.
type cache struct {
	g       Group[string]
	mu      sync.Mutex
	v       string
	ok      bool
	fetches atomic.Int32
	release chan struct{} // fetches wait on it when not nil
}

func (c *cache) lookup() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v, c.ok
}

func (c *cache) fetch(ctx context.Context) (string, error) {
	c.fetches.Add(1)
	if c.release != nil {
		select {
		case <-c.release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	c.mu.Lock()
	c.v, c.ok = "answer", true
	c.mu.Unlock()
	return "answer", nil
}

func (c *cache) get(ctx context.Context) (string, error) {
	return c.g.Do(ctx, "k", time.Minute, c.lookup, c.fetch)
}

// TestDoMissStraddlesFlight: a caller that missed the cache before
// another caller's flight ended, and calls Do after it ended, takes the
// answer that flight stored instead of fetching again.
func TestDoMissStraddlesFlight(t *testing.T) {
	c := &cache{}
	if _, ok := c.lookup(); ok {
		t.Fatal("cached before any fetch")
	}
	// ... the late caller missed here; another caller's flight runs and ends:
	if v, err := c.get(t.Context()); err != nil || v != "answer" {
		t.Fatalf("%q %v", v, err)
	}
	if v, err := c.get(t.Context()); err != nil || v != "answer" {
		t.Fatalf("late caller: %q %v", v, err)
	}
	if n := c.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

// TestDoSharesOneFetch: callers that arrive while a fetch runs share it,
// and one that gives up returns its own error without failing the others.
func TestDoSharesOneFetch(t *testing.T) {
	c := &cache{release: make(chan struct{})}
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			v, err := c.get(context.Background())
			if err == nil && v != "answer" {
				err = errors.New("got " + v)
			}
			errs <- err
		}()
	}
	for deadline := time.Now().Add(20 * time.Second); c.fetches.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no fetch started in 20s")
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.get(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled caller: %v", err)
	}
	close(c.release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if f := c.fetches.Load(); f != 1 {
		t.Fatalf("%d fetches, want 1", f)
	}
}

// TestDoFetchError: an error reaches the callers and nothing is cached.
func TestDoFetchError(t *testing.T) {
	var g Group[*int]
	boom := errors.New("boom")
	v, err := g.Do(t.Context(), "k", time.Second, nil, func(ctx context.Context) (*int, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("fetch without a deadline")
		}
		return nil, boom
	})
	if v != nil || !errors.Is(err, boom) {
		t.Fatalf("%v %v", v, err)
	}
	var ig Group[error] // an interface type: a nil answer is not a panic
	if v, err := ig.Do(t.Context(), "k", time.Second, nil, func(context.Context) (error, error) { return nil, nil }); v != nil || err != nil {
		t.Fatalf("%v %v", v, err)
	}
}
