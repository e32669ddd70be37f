package limits

import (
	"maps"
	"sync"
	"sync/atomic"
)

// readMap is a map for the hot path: lookups read an immutable snapshot
// without a lock or an atomic read-modify-write (sync.Map's read-mostly
// scheme, typed). Writes go to dirty under mu; dirty is published as the
// new snapshot once the lookups it had to serve reach a quarter of its
// size, so publishing costs amortized O(1) per new key.
type readMap[K comparable, V any] struct {
	read   atomic.Pointer[map[K]V]
	mu     sync.Mutex
	dirty  map[K]V // every entry; guarded by mu
	misses int
}

// load returns k's value from the snapshot.
func (m *readMap[K, V]) load(k K) (V, bool) {
	if r := m.read.Load(); r != nil {
		v, ok := (*r)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// get returns k's value, creating it with create (called with mu held).
// Hot paths call load first: the closure create costs an allocation.
func (m *readMap[K, V]) get(k K, create func() V) V {
	if v, ok := m.load(k); ok {
		return v
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.dirty[k]
	if !ok {
		if m.dirty == nil {
			m.dirty = map[K]V{}
		}
		v = create()
		m.dirty[k] = v
	}
	if m.misses++; m.misses > len(m.dirty)/4 {
		m.publish()
	}
	return v
}

// publish makes dirty the snapshot (mu held).
func (m *readMap[K, V]) publish() {
	r := maps.Clone(m.dirty)
	m.read.Store(&r)
	m.misses = 0
}

// each calls f for every entry (mu held by the caller).
func (m *readMap[K, V]) each(f func(K, V)) {
	for k, v := range m.dirty {
		f(k, v)
	}
}
