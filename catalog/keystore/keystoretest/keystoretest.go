// Package keystoretest is the conformance suite of keystore.Store: every
// implementation (the data directory, PostgreSQL, the sealing wrapper over
// either) passes Run.
package keystoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// Run runs the suite. open returns a new, empty store; stores it returns
// for one test are independent.
func Run(t *testing.T, open func(t *testing.T) keystore.Store) {
	t.Run("GetMissing", func(t *testing.T) {
		s := open(t)
		if _, err := s.Get(t.Context(), "nothing"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("Get of a missing name: %v, want ErrNotFound", err)
		}
		if err := s.Delete(t.Context(), "nothing"); err != nil {
			t.Fatalf("Delete of a missing name: %v", err)
		}
	})
	t.Run("CreateKeepsTheFirst", func(t *testing.T) {
		s := open(t)
		b, err := s.Create(t.Context(), "k", []byte("first"))
		if err != nil || string(b.Data) != "first" || b.Version == 0 {
			t.Fatalf("Create = %q v%d, %v", b.Data, b.Version, err)
		}
		b2, err := s.Create(t.Context(), "k", []byte("second"))
		if err != nil || string(b2.Data) != "first" || b2.Version != b.Version {
			t.Fatalf("second Create = %q v%d, %v; want the first blob", b2.Data, b2.Version, err)
		}
		g, err := s.Get(t.Context(), "k")
		if err != nil || string(g.Data) != "first" || g.Version != b.Version || g.Name != "k" {
			t.Fatalf("Get = %+v, %v", g, err)
		}
	})
	t.Run("GetOrCreateConcurrent", func(t *testing.T) {
		s := open(t)
		const n = 8
		var wg sync.WaitGroup
		got := make([][]byte, n)
		errs := make([]error, n)
		var generated atomic.Int32
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				b, err := keystore.GetOrCreate(t.Context(), s, "signing-key", func() ([]byte, error) {
					generated.Add(1)
					return fmt.Appendf(nil, "key-%d", i), nil
				})
				got[i], errs[i] = b.Data, err
			}()
		}
		close(start)
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("GetOrCreate %d: %v", i, errs[i])
			}
			if !bytes.Equal(got[i], got[0]) {
				t.Fatalf("GetOrCreate disagree: %q vs %q (%d generated)", got[i], got[0], generated.Load())
			}
		}
		b, err := s.Get(t.Context(), "signing-key")
		if err != nil || !bytes.Equal(b.Data, got[0]) {
			t.Fatalf("stored %q, %v; callers got %q", b.Data, err, got[0])
		}
	})
	t.Run("CompareAndSwap", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		if _, err := s.CompareAndSwap(ctx, "k", 42, []byte("x")); !errors.Is(err, keystore.ErrConflict) {
			t.Fatalf("CAS of a missing blob with a version: %v, want ErrConflict", err)
		}
		v1, err := s.CompareAndSwap(ctx, "k", 0, []byte("one"))
		if err != nil || v1.Version == 0 || string(v1.Data) != "one" {
			t.Fatalf("CAS create = %+v, %v", v1, err)
		}
		if _, err := s.CompareAndSwap(ctx, "k", 0, []byte("again")); !errors.Is(err, keystore.ErrConflict) {
			t.Fatalf("CAS create over an existing blob: %v, want ErrConflict", err)
		}
		v2, err := s.CompareAndSwap(ctx, "k", v1.Version, []byte("two"))
		if err != nil || v2.Version == v1.Version {
			t.Fatalf("CAS = %+v, %v (old version %d)", v2, err, v1.Version)
		}
		if _, err := s.CompareAndSwap(ctx, "k", v1.Version, []byte("stale")); !errors.Is(err, keystore.ErrConflict) {
			t.Fatalf("CAS with a stale version: %v, want ErrConflict", err)
		}
		g, err := s.Get(ctx, "k")
		if err != nil || string(g.Data) != "two" || g.Version != v2.Version {
			t.Fatalf("Get after CAS = %+v, %v", g, err)
		}
		// Concurrent swaps from one version: exactly one wins.
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.CompareAndSwap(ctx, "k", v2.Version, fmt.Appendf(nil, "three-%d", i))
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, keystore.ErrConflict):
					t.Errorf("concurrent CAS: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d concurrent swaps from one version won, want 1", wins.Load())
		}
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, "k"); !errors.Is(err, keystore.ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
	})
	t.Run("List", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		for _, n := range []string{"tok-b", "tok-a", "other", "tok-c"} {
			if _, err := s.Create(ctx, n, []byte("v-"+n)); err != nil {
				t.Fatal(err)
			}
		}
		bs, err := s.List(ctx, "tok-")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, b := range bs {
			if string(b.Data) != "v-"+b.Name || b.Version == 0 {
				t.Fatalf("List blob %+v", b)
			}
			names = append(names, b.Name)
		}
		if fmt.Sprint(names) != "[tok-a tok-b tok-c]" {
			t.Fatalf("List = %v", names)
		}
		if bs, err := s.List(ctx, "none-"); err != nil || len(bs) != 0 {
			t.Fatalf("List of an unused prefix = %v, %v", bs, err)
		}
	})
	t.Run("Lock", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		unlock, err := s.Lock(ctx, "grant")
		if err != nil {
			t.Fatal(err)
		}
		// Another name is not held by it.
		u2, err := s.Lock(ctx, "other-grant")
		if err != nil {
			t.Fatal(err)
		}
		u2()
		// The same name waits: a bounded wait fails...
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		if u, err := s.Lock(short, "grant"); err == nil {
			u()
			cancel()
			t.Fatal("a second Lock of a held name succeeded")
		}
		cancel()
		// ...and a waiting one gets it once released.
		got := make(chan func(), 1)
		go func() {
			u, err := s.Lock(ctx, "grant")
			if err != nil {
				t.Errorf("waiting Lock: %v", err)
				u = func() {}
			}
			got <- u
		}()
		select {
		case u := <-got:
			u()
			t.Fatal("Lock acquired while held")
		case <-time.After(20 * time.Millisecond): // a bound for a negative check
		}
		unlock()
		select {
		case u := <-got:
			u()
		case <-time.After(30 * time.Second):
			t.Fatal("Lock not acquired after unlock")
		}
		unlock() // a second unlock does nothing
	})
	t.Run("Limits", func(t *testing.T) {
		s := open(t)
		if _, err := s.Create(t.Context(), "", []byte("x")); err == nil {
			t.Fatal("empty name accepted")
		}
		if _, err := s.Create(t.Context(), "big", make([]byte, keystore.MaxBlob+1)); err == nil {
			t.Fatal("oversized blob accepted")
		}
	})
}
