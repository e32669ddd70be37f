package limits

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// slotKey names the windows of one scope (both dimensions).
type slotKey struct {
	sec   catalog.ID
	scope WindowScope
	p     catalog.ID
}

// dirtyEnt is a live window in a shard's dirty map.
type dirtyEnt struct {
	w    Window
	born int64 // Unix ns of creation: a window is not swept in its first minute
}

const nShards = 64 // a power of two: get takes the top 6 bits of the hash

// windowMap holds the live windows by key, sharded. Lookups probe an
// immutable open-addressing table (slotTable) without a lock or an atomic
// read-modify-write; new keys go into the shard's dirty map under its
// mutex, which is published as a new table once the lookups it had to
// serve reach a quarter of its size (amortized O(1) per new key). A shard
// sweeps its idle windows when it has doubled since its last sweep, so
// memory follows the callers active in the last window rather than every
// caller ever seen.
type windowMap struct {
	shards [nShards]windowShard
}

type windowShard struct {
	read    atomic.Pointer[slotTable]
	mu      sync.Mutex
	dirty   map[slotKey]dirtyEnt // every live window; guarded by mu
	misses  int
	sweepAt int
	_       [64]byte // keep shards on separate cache lines
}

// slotTable is a read-only hash table with linear probing, at most half
// full.
type slotTable struct {
	mask uint64
	ents []slotEnt
}

type slotEnt struct {
	h   uint64
	key slotKey
	w   Window
}

func (t *slotTable) find(key slotKey, h uint64) Window {
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		e := &t.ents[i]
		if e.w == nil {
			return nil
		}
		if e.h == h && e.key == key {
			return e.w
		}
	}
}

func newSlotTable(m map[slotKey]dirtyEnt) *slotTable {
	n := uint64(8)
	for n < 2*uint64(len(m)) {
		n *= 2
	}
	t := &slotTable{mask: n - 1, ents: make([]slotEnt, n)}
	for k, d := range m {
		h := k.hash()
		i := h & t.mask
		for t.ents[i].w != nil {
			i = (i + 1) & t.mask
		}
		t.ents[i] = slotEnt{h, k, d.w}
	}
	return t
}

func (wm *windowMap) init() {
	for i := range wm.shards {
		sh := &wm.shards[i]
		sh.dirty = map[slotKey]dirtyEnt{}
		sh.read.Store(newSlotTable(nil))
		sh.sweepAt = 64
	}
}

func (k slotKey) hash() uint64 {
	h := uint64(k.sec)*0x9E3779B97F4A7C15 ^ uint64(k.p)*0xC2B2AE3D27D4EB4F ^ uint64(k.scope)
	h ^= h >> 29
	h *= 0xBF58476D1CE4E5B9
	return h ^ h>>32
}

// get returns the live window of key, creating it (the clock is read
// only then). A window its caller finds retired has already left the read
// table, so looking again finds the live one.
func (wm *windowMap) get(key slotKey, clock func() time.Time, b Backend) Window {
	h := key.hash()
	sh := &wm.shards[h>>58] // the top bits pick the shard, the low bits the table slot
	if w := sh.read.Load().find(key, h); w != nil {
		return w
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	d, ok := sh.dirty[key]
	if !ok {
		now := clock()
		if len(sh.dirty) >= sh.sweepAt {
			sh.sweep(now)
		}
		d = dirtyEnt{w: b.Window(WindowKey{Securable: key.sec, Scope: key.scope, Principal: key.p}), born: now.UnixNano()}
		sh.dirty[key] = d
	}
	if sh.misses++; sh.misses > len(sh.dirty)/4 {
		sh.publish()
	}
	return d.w
}

// sweep retires and drops the idle windows (mu held) and publishes the
// rest.
func (sh *windowShard) sweep(now time.Time) {
	for k, d := range sh.dirty {
		if now.UnixNano()-d.born <= int64(WindowLength) {
			continue
		}
		d.w.Lock()
		if d.w.Retire(now) {
			delete(sh.dirty, k)
		}
		d.w.Unlock()
	}
	sh.sweepAt = max(2*len(sh.dirty), 64)
	sh.publish()
}

func (sh *windowShard) publish() {
	sh.read.Store(newSlotTable(sh.dirty))
	sh.misses = 0
}

// size is the number of live windows (tests).
func (wm *windowMap) size() int {
	n := 0
	for i := range wm.shards {
		sh := &wm.shards[i]
		sh.mu.Lock()
		n += len(sh.dirty)
		sh.mu.Unlock()
	}
	return n
}
