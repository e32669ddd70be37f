package identity

import (
	"time"

	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/ttlcache"
)

// The verified-token cache. Keys are the raw tokens themselves: the map
// compares them in full (no collision can admit another token), the
// runtime's string hash is seeded per process (no hash flooding), and a
// hit costs one hash of the token instead of a SHA-256 over it (≈ 1 µs for
// a typical 1 KB RS256 token on the reference VM, more than the whole hit
// path's budget). The raw token is held anyway, as Identity.Token; the key
// shares its bytes. Bounds, expiry, sweeps and eviction are ttlcache's.

// cacheSweepEvery bounds how often a shard drops its expired tokens.
const cacheSweepEvery = time.Second

type cacheEntry struct {
	id    *gateway.Identity
	aud   []string // the token's audiences
	audOK bool     // one of them is a configured audience
}

type tokenCache struct {
	ttl time.Duration
	m   *ttlcache.Cache[string, *cacheEntry]
}

func newTokenCache(size int, ttl time.Duration) *tokenCache {
	return &tokenCache{ttl: ttl, m: ttlcache.New[string, *cacheEntry](size, cacheSweepEvery)}
}

// tokenShard picks a shard from the token's last bytes (its signature: random
// for every token that can be in the cache), without hashing the whole
// token twice.
func tokenShard(tok string) uint64 {
	h := uint32(2166136261)
	for i := max(0, len(tok)-16); i < len(tok); i++ {
		h = (h ^ uint32(tok[i])) * 16777619
	}
	return uint64(h)
}

// get returns the entry of tok, expired or not, and the instant (unix
// nanos) from which it is no longer to be served:
// min(exp + leeway, verified + CacheTTL).
func (c *tokenCache) get(tok string) (e *cacheEntry, until int64) {
	e, until, _ = c.m.Peek(tokenShard(tok), tok)
	return e, until
}

func (c *tokenCache) remove(tok string) { c.m.Delete(tokenShard(tok), tok) }

// put remembers a verified token.
func (c *tokenCache) put(tok string, id *gateway.Identity, aud []string, audOK bool, now time.Time, leeway time.Duration) {
	until := now.Add(c.ttl)
	if exp := id.Expiry.Add(leeway); exp.Before(until) {
		until = exp
	}
	c.m.Put(tokenShard(tok), id.Token, &cacheEntry{id: id, aud: aud, audOK: audOK}, until.UnixNano(), now.UnixNano())
}

// len is the number of cached tokens (tests).
func (c *tokenCache) len() int { return c.m.Len() }
