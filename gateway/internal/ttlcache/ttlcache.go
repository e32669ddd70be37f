package ttlcache

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	// Shards is the number of shards of a Cache.
	Shards = 16
	// Samples is the number of entries Put looks at to choose a victim.
	Samples = 16
)

// Cache is a bounded, expiring, sharded map from K to V. Make it with New;
// it must not be copied.
type Cache[K comparable, V any] struct {
	perShard   int
	sweepEvery int64
	evictions  atomic.Int64
	shards     [Shards]shard[K, V]
}

type shard[K comparable, V any] struct {
	mu        sync.RWMutex
	m         map[K]entry[V]
	nextSweep int64
	_         [64]byte // keep shards' locks on separate cache lines
}

type entry[V any] struct {
	v   V
	due int64 // unix nanos: served strictly before this instant
}

// New returns a Cache of at most about size entries (see the package
// contract) whose shards drop their expired entries at most once per
// sweepEvery.
func New[K comparable, V any](size int, sweepEvery time.Duration) *Cache[K, V] {
	c := &Cache[K, V]{perShard: max(1, (size+Shards-1)/Shards), sweepEvery: int64(sweepEvery)}
	for i := range c.shards {
		c.shards[i].m = make(map[K]entry[V])
	}
	return c
}

// Get returns the value of k in shard sh if it is still to be served at
// now (now before its due instant).
func (c *Cache[K, V]) Get(sh uint64, k K, now int64) (V, bool) {
	s := &c.shards[sh%Shards]
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	if !ok || now >= e.due {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Peek returns the value of k in shard sh and its due instant, expired or
// not.
func (c *Cache[K, V]) Peek(sh uint64, k K) (v V, due int64, ok bool) {
	s := &c.shards[sh%Shards]
	s.mu.RLock()
	e, ok := s.m[k]
	s.mu.RUnlock()
	return e.v, e.due, ok
}

// Put stores v for k in shard sh, to be served before due. It sweeps the
// shard's expired entries when the sweep is due and, if k is new and the
// shard full, evicts entries until there is room.
func (c *Cache[K, V]) Put(sh uint64, k K, v V, due, now int64) {
	s := &c.shards[sh%Shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now >= s.nextSweep || now < s.nextSweep-c.sweepEvery {
		for key, e := range s.m {
			if now >= e.due {
				delete(s.m, key)
			}
		}
		s.nextSweep = now + c.sweepEvery
	}
	if _, exists := s.m[k]; !exists {
		for len(s.m) >= c.perShard {
			c.evictOne(s, now)
		}
	}
	s.m[k] = entry[V]{v: v, due: due}
}

// evictOne removes, among a sample of the shard's entries, an expired one
// or else the one due first. The shard holds at least one entry.
func (c *Cache[K, V]) evictOne(s *shard[K, V], now int64) {
	var victim K
	var due int64
	found, n := false, 0
	for key, e := range s.m {
		if now >= e.due {
			victim, found = key, true
			break
		}
		if !found || e.due < due {
			victim, due, found = key, e.due, true
		}
		if n++; n >= Samples {
			break
		}
	}
	if found {
		delete(s.m, victim)
		c.evictions.Add(1)
	}
}

// Delete removes k from shard sh.
func (c *Cache[K, V]) Delete(sh uint64, k K) {
	s := &c.shards[sh%Shards]
	s.mu.Lock()
	delete(s.m, k)
	s.mu.Unlock()
}

// DeleteIf removes k from shard sh if its value satisfies match.
func (c *Cache[K, V]) DeleteIf(sh uint64, k K, match func(V) bool) {
	s := &c.shards[sh%Shards]
	s.mu.Lock()
	if e, ok := s.m[k]; ok && match(e.v) {
		delete(s.m, k)
	}
	s.mu.Unlock()
}

// Evictions is the number of entries Put has evicted from full shards
// (expired entries dropped by a sweep are not counted).
func (c *Cache[K, V]) Evictions() int64 { return c.evictions.Load() }

// Len is the number of entries, expired or not.
func (c *Cache[K, V]) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
