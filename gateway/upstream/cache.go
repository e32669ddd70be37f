package upstream

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Credential kinds in cache keys.
const (
	kindClientCredentials uint8 = iota + 1
	kindMint
	kindExchange
)

// cacheKey identifies one cached upstream credential. Every input that
// changes the credential is part of the key, so a changed option or secret
// simply misses. Secrets appear only as a keyed 64-bit fingerprint, and the
// inbound token only as its TokenID or SHA-256.
type cacheKey struct {
	kind     uint8
	conn     string // connection full name
	url      string // upstream URL (resource)
	audience string // effective audience
	scopes   string // the scopes option as configured
	subject  string
	actor    string
	endpoint string // token endpoint
	clientID string
	secretFP uint64   // fingerprint of the connection's client secret
	tokenID  string   // inbound token's TokenID (token_exchange)
	tokenSum [32]byte // SHA-256 of the inbound token when it has no TokenID
}

// slot is a map value: the full key (to tell hash collisions apart) and
// the entry.
type slot struct {
	key cacheKey
	e   cacheEntry
}

type cacheEntry struct {
	value     string // the Authorization header value
	refreshAt int64  // unix nanos: served strictly before this instant
	expires   int64  // the credential's own expiry (unix nanos)
}

const (
	cacheShards     = 16
	sweepEvery      = time.Minute
	evictionSamples = 16
	// DefaultMaxCacheEntries bounds the credential cache.
	DefaultMaxCacheEntries = 100_000
)

// cache is a bounded, sharded map of credentials, indexed by a keyed
// 64-bit hash of the key (one hash over all fields is much cheaper than
// the map hashing a struct of strings field by field); the slot holds the
// full key, so a collision is a miss, never a wrong credential. Reads take
// a shard's read lock only; inserts sweep expired entries once a minute
// and, when the shard is full, evict among a sample the entry that expires
// first (expired ones before all others).
type cache struct {
	seed      maphash.Seed
	perShard  int
	evictions atomic.Int64
	shards    [cacheShards]cacheShard
}

type cacheShard struct {
	mu        sync.RWMutex
	m         map[uint64]slot
	nextSweep int64
	_         [40]byte // keep shards on separate cache lines
}

func newCache(max int) *cache {
	if max <= 0 {
		max = DefaultMaxCacheEntries
	}
	per := (max + cacheShards - 1) / cacheShards
	c := &cache{seed: maphash.MakeSeed(), perShard: per}
	for i := range c.shards {
		c.shards[i].m = make(map[uint64]slot)
	}
	return c
}

// hash is a keyed hash of k: each non-empty field is hashed with the
// process's random seed and the results are combined in order.
func (c *cache) hash(k *cacheKey) uint64 {
	h := (k.secretFP ^ uint64(k.kind)) * mixMul
	for i, f := range [...]string{k.conn, k.url, k.audience, k.scopes, k.subject, k.actor, k.endpoint, k.clientID, k.tokenID} {
		h = bits.RotateLeft64(h, 23) ^ uint64(i+1)
		if f != "" {
			h ^= maphash.String(c.seed, f)
		}
		h *= mixMul
	}
	if k.tokenID == "" {
		h ^= maphash.Bytes(c.seed, k.tokenSum[:])
	}
	return h ^ h>>29
}

const mixMul = 0x9e3779b97f4a7c15

// get returns the entry for k if it is still to be served at now.
func (c *cache) get(k *cacheKey, now int64) (cacheEntry, bool) {
	h := c.hash(k)
	s := &c.shards[h%cacheShards]
	s.mu.RLock()
	sl, ok := s.m[h]
	s.mu.RUnlock()
	if !ok || now >= sl.e.refreshAt || sl.key != *k {
		return cacheEntry{}, false
	}
	return sl.e, true
}

func (c *cache) put(k *cacheKey, e cacheEntry, now int64) {
	h := c.hash(k)
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now >= s.nextSweep {
		for key, old := range s.m {
			if now >= old.e.refreshAt {
				delete(s.m, key)
			}
		}
		s.nextSweep = now + int64(sweepEvery)
	}
	if _, exists := s.m[h]; !exists {
		for len(s.m) >= c.perShard {
			c.evictOne(s, now)
		}
	}
	s.m[h] = slot{key: *k, e: e}
}

// evictOne removes, among a sample of entries (Go's map iteration starts
// at a random position), an expired one or else the one due first.
func (c *cache) evictOne(s *cacheShard, now int64) {
	var victim uint64
	var due int64
	found, n := false, 0
	for key, sl := range s.m {
		e := sl.e
		if now >= e.refreshAt {
			victim, found = key, true
			break
		}
		if !found || e.refreshAt < due {
			victim, due, found = key, e.refreshAt, true
		}
		if n++; n >= evictionSamples {
			break
		}
	}
	if found {
		delete(s.m, victim)
		c.evictions.Add(1)
	}
}

func (c *cache) delete(k *cacheKey) {
	h := c.hash(k)
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	if sl, ok := s.m[h]; ok && sl.key == *k {
		delete(s.m, h)
	}
	s.mu.Unlock()
}

// deleteValue removes the entry of k if it holds value.
func (c *cache) deleteValue(k *cacheKey, value string) {
	h := c.hash(k)
	s := &c.shards[h%cacheShards]
	s.mu.Lock()
	if sl, ok := s.m[h]; ok && sl.key == *k && sl.e.value == value {
		delete(s.m, h)
	}
	s.mu.Unlock()
}

func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}
