package identity

import (
	"sync"
	"time"

	"github.com/mandatehq/mandate/gateway"
)

// The verified-token cache. Keys are the raw tokens themselves: the map
// compares them in full (no collision can admit another token), the
// runtime's string hash is seeded per process (no hash flooding), and a
// hit costs one hash of the token instead of a SHA-256 over it (≈ 1 µs for
// a typical 1 KB RS256 token on the reference VM, more than the whole hit
// path's budget). The raw token is held anyway, as Identity.Token; the key
// shares its bytes.

const cacheShards = 16

type cacheEntry struct {
	id    *gateway.Identity
	aud   []string  // the token's audiences
	audOK bool      // one of them is a configured audience
	until time.Time // min(exp + leeway, verified + CacheTTL)
}

type tokenCache struct {
	ttl      time.Duration
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu        sync.RWMutex
	m         map[string]*cacheEntry
	lastSweep time.Time
	_         [64]byte // keep shards' locks on separate cache lines
}

func newTokenCache(size int, ttl time.Duration) *tokenCache {
	c := &tokenCache{ttl: ttl, perShard: max(1, (size+cacheShards-1)/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cacheEntry)
	}
	return c
}

// shard picks a shard from the token's last bytes (its signature: random
// for every token that can be in the cache), without hashing the whole
// token twice.
func (c *tokenCache) shard(tok string) *cacheShard {
	h := uint32(2166136261)
	for i := max(0, len(tok)-16); i < len(tok); i++ {
		h = (h ^ uint32(tok[i])) * 16777619
	}
	return &c.shards[h%cacheShards]
}

func (c *tokenCache) get(tok string) *cacheEntry {
	s := c.shard(tok)
	s.mu.RLock()
	e := s.m[tok]
	s.mu.RUnlock()
	return e
}

func (c *tokenCache) remove(tok string) {
	s := c.shard(tok)
	s.mu.Lock()
	delete(s.m, tok)
	s.mu.Unlock()
}

// put remembers a verified token. A full shard first drops its expired
// entries (at most once a second), then, if still full, a random one.
func (c *tokenCache) put(tok string, id *gateway.Identity, aud []string, audOK bool, now time.Time, leeway time.Duration) {
	until := now.Add(c.ttl)
	if exp := id.Expiry.Add(leeway); exp.Before(until) {
		until = exp
	}
	e := &cacheEntry{id: id, aud: aud, audOK: audOK, until: until}
	s := c.shard(tok)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[tok]; !ok && len(s.m) >= c.perShard {
		if now.Sub(s.lastSweep) >= time.Second || now.Before(s.lastSweep) {
			s.lastSweep = now
			for k, v := range s.m {
				if !now.Before(v.until) {
					delete(s.m, k)
				}
			}
		}
		for k := range s.m { // map iteration starts at a random entry
			if len(s.m) < c.perShard {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[id.Token] = e
}

// len is the number of cached tokens (tests).
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
