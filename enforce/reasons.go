package enforce

import (
	"sync"

	"github.com/mandatehq/mandate/catalog"
)

// reasonMemo remembers the rendered reason of one principal's part of a
// decision (principal, role, privilege, securable) for the life of a
// snapshot, so that repeated questions — an agent calling the same
// connection for the same user — do not recompute and re-render the
// derivation. It is bounded: past reasonMemoMax entries new reasons are
// computed but not remembered. Entries never go stale: a snapshot is
// immutable, and a new one starts with an empty memo.
type reasonMemo struct {
	shards [reasonShards]reasonShard
}

const (
	reasonShards  = 32
	reasonMemoMax = 1 << 16 // per snapshot
)

type reasonKey struct {
	p, n  catalog.ID
	pi    int32
	actor bool
}

type reasonShard struct {
	mu sync.RWMutex
	m  map[reasonKey]catalog.AccessPart
	_  [40]byte // keep shards on separate cache lines
}

func (m *reasonMemo) shard(k reasonKey) *reasonShard {
	h := uint32(k.p)*0x9E3779B1 ^ uint32(k.n)*0x85EBCA77 ^ uint32(k.pi)<<1
	if k.actor {
		h ^= 1
	}
	return &m.shards[(h>>16)%reasonShards]
}

func (m *reasonMemo) get(p catalog.ID, role string, pi int, n catalog.ID) (catalog.AccessPart, bool) {
	if m == nil {
		return catalog.AccessPart{}, false
	}
	k := reasonKey{p: p, n: n, pi: int32(pi), actor: role == catalog.RoleActor}
	sh := m.shard(k)
	sh.mu.RLock()
	e, ok := sh.m[k]
	sh.mu.RUnlock()
	return e, ok
}

func (m *reasonMemo) put(p catalog.ID, role string, pi int, n catalog.ID, e catalog.AccessPart) {
	if m == nil {
		return
	}
	k := reasonKey{p: p, n: n, pi: int32(pi), actor: role == catalog.RoleActor}
	sh := m.shard(k)
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[reasonKey]catalog.AccessPart)
	}
	if len(sh.m) < reasonMemoMax/reasonShards {
		sh.m[k] = e
	}
	sh.mu.Unlock()
}
