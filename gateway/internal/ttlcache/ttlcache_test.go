package ttlcache

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestExpiry(t *testing.T) {
	const due = 100
	for _, tc := range []struct {
		name string
		now  int64
		want bool
	}{
		{"well before", 0, true},
		{"just before", due - 1, true},
		{"at due", due, false},
		{"after", due + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New[string, int](10, time.Hour)
			c.Put(0, "k", 7, due, 0)
			v, ok := c.Get(0, "k", tc.now)
			if ok != tc.want || (ok && v != 7) {
				t.Fatalf("Get at %d = %d, %v; want served %v", tc.now, v, ok, tc.want)
			}
			// Peek returns the entry whatever the time, with its due instant.
			if v, d, ok := c.Peek(0, "k"); !ok || v != 7 || d != due {
				t.Fatalf("Peek = %d, %d, %v", v, d, ok)
			}
			if _, ok := c.Get(0, "other", tc.now); ok {
				t.Fatal("Get of an absent key served")
			}
		})
	}
}

func TestBoundConcurrent(t *testing.T) {
	for _, tc := range []struct {
		size, bound int
	}{
		{size: 0, bound: Shards},       // at least one per shard
		{size: 1, bound: Shards},       // likewise
		{size: 64, bound: 64},          // 4 per shard
		{size: 100, bound: 7 * Shards}, // ceil(100/16) per shard
	} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			c := New[int, int](tc.size, time.Hour)
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 2000 {
						k := g*2000 + i
						c.Put(uint64(k), k, k, int64(1000+i), int64(i))
						c.Get(uint64(k), k, int64(i))
					}
				})
			}
			wg.Wait()
			if n := c.Len(); n > tc.bound || n < tc.bound/2 {
				t.Fatalf("Len = %d after 16000 keys, bound %d", n, tc.bound)
			}
			if c.Evictions() == 0 {
				t.Fatal("no evictions counted")
			}
		})
	}
}

// TestEvictionPrefers fills one shard of 16 entries (all of them in the
// eviction sample) and puts one more: the victim is the expired entry,
// or else the one due first.
func TestEvictionPrefers(t *testing.T) {
	const per = Samples
	for _, tc := range []struct {
		name    string
		victim  int
		expired bool // the victim is expired (due before now) rather than earliest
	}{
		{"earliest first key", 0, false},
		{"earliest middle key", 7, false},
		{"earliest last key", per - 1, false},
		{"expired first key", 0, true},
		{"expired middle key", 9, true},
		{"expired last key", per - 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for range 20 { // the sample starts at a random entry
				c := New[int, int](per*Shards, time.Hour)
				const now = 1000
				for k := range per {
					due := int64(now + 100 + k*10) // later keys due later...
					if k == tc.victim {
						due = now + 50 // ...but the victim is due first
						if tc.expired {
							due = now - 1
						}
					} else if k < tc.victim {
						due += 1000 // keys before the victim due after it
					}
					c.Put(0, k, k, due, 0) // sweeps (due at 0), next sweep in an hour
				}
				c.Put(0, per, per, now+5000, now) // full: evicts one
				if _, _, ok := c.Peek(0, tc.victim); ok {
					t.Fatalf("key %d kept, want it evicted", tc.victim)
				}
				if n := c.Len(); n != per {
					t.Fatalf("Len = %d, want %d", n, per)
				}
				if n := c.Evictions(); n != 1 {
					t.Fatalf("Evictions = %d, want 1", n)
				}
			}
		})
	}
}

func TestDelete(t *testing.T) {
	for _, tc := range []struct {
		name string
		del  func(c *Cache[string, string])
		kept bool
	}{
		{"Delete", func(c *Cache[string, string]) { c.Delete(3, "k") }, false},
		{"Delete other key", func(c *Cache[string, string]) { c.Delete(3, "j") }, true},
		{"DeleteIf match", func(c *Cache[string, string]) { c.DeleteIf(3, "k", func(v string) bool { return v == "v" }) }, false},
		{"DeleteIf no match", func(c *Cache[string, string]) { c.DeleteIf(3, "k", func(v string) bool { return v == "w" }) }, true},
		{"DeleteIf other key", func(c *Cache[string, string]) { c.DeleteIf(3, "j", func(string) bool { return true }) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New[string, string](100, time.Hour)
			c.Put(3, "k", "v", 100, 0)
			tc.del(c)
			if _, ok := c.Get(3, "k", 0); ok != tc.kept {
				t.Fatalf("kept %v, want %v", ok, tc.kept)
			}
			if n, want := c.Len(), map[bool]int{true: 1, false: 0}[tc.kept]; n != want {
				t.Fatalf("Len = %d, want %d", n, want)
			}
		})
	}
}

// TestSweepCadence: a Put sweeps the shard's expired entries when the
// sweep is due, at most once per interval (and at once after the clock
// went back by more than an interval); entries of other shards stay.
func TestSweepCadence(t *testing.T) {
	const every = int64(time.Minute)
	type put struct {
		key      string
		due, now int64
		wantLen  int // entries after the put
	}
	for _, tc := range []struct {
		name string
		puts []put
	}{
		{"expired kept until the sweep is due", []put{
			{"a", 10, 0, 1},         // first put sweeps; next sweep at one minute
			{"b", 2 * every, 20, 2}, // a expired but no sweep yet
			{"c", 2 * every, every - 1, 3},
			{"d", 2 * every, every, 3}, // sweep: a goes
		}},
		{"one sweep per interval", []put{
			{"a", 10, 0, 1},
			{"b", every + 20, every, 1},      // sweep: a goes; next at two minutes
			{"c", every + 30, every + 25, 2}, // b expired, no sweep
			{"d", 3 * every, 2*every - 1, 3},
			{"e", 3 * every, 2 * every, 2}, // sweep: b, c go
		}},
		{"clock back", []put{
			{"a", 10, 5 * every, 1}, // sweep; next at six minutes
			{"b", 20, 5 * every, 2},
			{"c", 4 * every, 3*every + 50, 1}, // more than an interval back: sweep, a and b go
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := New[string, int](100, time.Minute)
			c.Put(1, "other shard", 0, 1, 0)
			for i, p := range tc.puts {
				c.Put(0, p.key, i, p.due, p.now)
				if n := c.Len() - 1; n != p.wantLen {
					t.Fatalf("put %q at %d: %d entries, want %d", p.key, p.now, n, p.wantLen)
				}
			}
			if _, _, ok := c.Peek(1, "other shard"); !ok {
				t.Fatal("a sweep of one shard dropped another shard's entry")
			}
		})
	}
}
