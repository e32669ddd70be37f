// Package ttlcache is the one bounded, expiring, sharded map of the
// gateway's caches: the verified inbound tokens (gateway/identity) and
// the exchanged upstream credentials (gateway/upstream).
//
// Contract:
//   - Bounded: a Cache made for size entries holds at most ceil(size/Shards)
//     (at least one) in each of its Shards shards, so never more than
//     Shards*ceil(size/Shards) in all.
//   - Expiring: every entry has a due instant (unix nanoseconds). Get
//     serves an entry only strictly before its due instant; Peek returns it
//     with its due instant whatever the time, for a caller that answers an
//     expired entry itself.
//   - Swept: Put drops the shard's expired entries when its sweep is due,
//     at most once per sweep interval (and again at once if the clock went
//     back by more than an interval).
//   - Evicting: Put of a new key into a full shard evicts, among a sample
//     of Samples entries (Go's map iteration starts at a random entry), an
//     expired one, or else the one due first; Evictions counts them.
//   - The caller picks the shard (any uint64; the shard is it modulo
//     Shards) and the key: a caller that keys by a hash compares the full
//     key it stores in the value, so that a collision is a miss. Get and
//     Peek take only the shard's read lock and allocate nothing.
//
// Times are the caller's clock, passed in, so that tests drive them.
package ttlcache
