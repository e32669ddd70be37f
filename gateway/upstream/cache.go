package upstream

import (
	"hash/maphash"
	"math/bits"
	"time"

	"github.com/mandatehq/mandate/gateway/internal/ttlcache"
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
// the entry. The map holds a pointer to it (a slot is never changed once
// stored): a map element this large would be stored out of line anyway,
// and a small element lets a hit copy 16 bytes, not the whole slot.
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
	sweepEvery = time.Minute
	// DefaultMaxCacheEntries bounds the credential cache.
	DefaultMaxCacheEntries = 100_000
)

// cache is the credential cache: the gateway's bounded, expiring, sharded
// map (gateway/internal/ttlcache), indexed by a keyed 64-bit hash of the
// key (one hash over all fields is much cheaper than the map hashing a
// struct of strings field by field), which also picks the shard; the slot
// holds the full key, so a collision is a miss, never a wrong credential.
// An entry is served before its refreshAt; shards sweep expired entries
// once a minute and, when full, evict among a sample the entry that
// expires first (expired ones before all others).
type cache struct {
	seed maphash.Seed
	m    *ttlcache.Cache[uint64, *slot]
}

func newCache(max int) *cache {
	if max <= 0 {
		max = DefaultMaxCacheEntries
	}
	return &cache{seed: maphash.MakeSeed(), m: ttlcache.New[uint64, *slot](max, sweepEvery)}
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
	sl, ok := c.m.Get(h, h, now)
	if !ok || sl.key != *k {
		return cacheEntry{}, false
	}
	return sl.e, true
}

func (c *cache) put(k *cacheKey, e cacheEntry, now int64) {
	h := c.hash(k)
	c.m.Put(h, h, &slot{key: *k, e: e}, e.refreshAt, now)
}

func (c *cache) delete(k *cacheKey) {
	h := c.hash(k)
	c.m.DeleteIf(h, h, func(sl *slot) bool { return sl.key == *k })
}

// deleteValue removes the entry of k if it holds value.
func (c *cache) deleteValue(k *cacheKey, value string) {
	h := c.hash(k)
	c.m.DeleteIf(h, h, func(sl *slot) bool { return sl.key == *k && sl.e.value == value })
}

func (c *cache) evictions() int64 { return c.m.Evictions() }

func (c *cache) len() int { return c.m.Len() }
