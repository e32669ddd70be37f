package catalog

import "sync"

// RevisionCache holds answers computed from the catalog's model at one
// revision, for in-process readers that resolve the same names on every
// call (connections, model services, access tokens, IDs). An answer is
// served only while the Service is at the revision it was computed at,
// so a change (a DROP, a REVOKE, a RENAME) takes effect from the revision
// that made it, as if every call read the model. At most max answers are
// kept: a full cache is emptied, so memory stays bounded whatever keys
// callers send.
type RevisionCache[K comparable, V any] struct {
	svc *Service
	max int

	mu  sync.Mutex
	rev Revision
	m   map[K]V // answers computed at rev
}

// NewRevisionCache returns an empty cache over svc's revisions holding at
// most max answers.
func NewRevisionCache[K comparable, V any](svc *Service, max int) *RevisionCache[K, V] {
	return &RevisionCache[K, V]{svc: svc, max: max, m: map[K]V{}}
}

// Get returns the answer cached for k at the Service's current revision,
// and that revision.
func (c *RevisionCache[K, V]) Get(k K) (v V, ok bool, rev Revision) {
	rev = c.svc.Revision()
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev != c.rev {
		clear(c.m)
		c.rev = rev
	}
	v, ok = c.m[k]
	return v, ok, rev
}

// Put caches v for k, computed at revision at, if the cache still holds
// that revision (a commit may have come in since Get).
func (c *RevisionCache[K, V]) Put(at Revision, k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if at != c.rev {
		return
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = v
}

// Len is the number of answers the cache holds.
func (c *RevisionCache[K, V]) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
