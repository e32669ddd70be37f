package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// KeysPath: POST /api/v1/keys is the installation's key store
// (catalog/keystore) lent to gateway nodes, one operation per request
// (KeyRequest), so that nodes and the server share the mandate_jwt signing
// keys and users' upstream OAuth grants (gateway/node.Keys).
const KeysPath = "/api/v1/keys"

// Limits of the key store's endpoint.
const (
	// MaxKeysBody bounds a key request's body: one blob of at most
	// keystore.MaxBlob bytes, base64-encoded, and the rest of the request.
	MaxKeysBody = keystore.MaxBlob*4/3 + 64<<10
	// MaxKeyListBlobs and MaxKeyListBytes bound one page of a list (at
	// least one blob is answered); KeyResponse.More asks for the next.
	MaxKeyListBlobs = 1000
	MaxKeyListBytes = 2 << 20
	// MaxKeyLockWait bounds how long one lock request waits for a held
	// lock (the node asks again).
	MaxKeyLockWait = 5 * time.Second
	// DefaultKeyLockTTL is how long a node's lock lease lasts without a
	// renewal (Options.KeyLockTTL): a node that dies holding a lock
	// releases it within this time.
	DefaultKeyLockTTL = 15 * time.Second
	// DefaultMaxKeyLocks bounds the locks nodes hold at once
	// (Options.MaxKeyLocks; each may hold a database connection): a lock
	// request beyond waits for one to be released, as for a held lock.
	DefaultMaxKeyLocks = 64
)

// Key store operations (KeyRequest.Op).
const (
	KeyGet    = "get"
	KeyCreate = "create"
	KeyCAS    = "cas"
	KeyDelete = "delete"
	KeyList   = "list"
	KeyLock   = "lock"
	KeyRenew  = "renew"
	KeyUnlock = "unlock"
)

// KeyRequest is one operation on the key store. Data is base64 in JSON;
// it is what the node's keystore.Sealed wrapper made of the blob (sealed
// with the master key before it left the node).
type KeyRequest struct {
	Op      string `json:"op"`
	Name    string `json:"name,omitempty"`
	Data    []byte `json:"data,omitempty"`
	Version int64  `json:"version,omitempty"`
	// Prefix and After select a list page: the blobs whose names start
	// with Prefix and sort after After.
	Prefix string `json:"prefix,omitempty"`
	After  string `json:"after,omitempty"`
	// WaitMS bounds how long a lock request waits (at most
	// MaxKeyLockWait; 0: that long).
	WaitMS int64 `json:"wait_ms,omitempty"`
	// Lease names a held lock (renew, unlock).
	Lease string `json:"lease,omitempty"`
}

// KeyBlob is a stored blob on the wire.
type KeyBlob struct {
	Name    string `json:"name"`
	Data    []byte `json:"data"`
	Version int64  `json:"version"`
}

// KeyResponse answers a KeyRequest: Blob (get, create, cas), NotFound
// (get), Conflict (cas), Blobs and More (list), Lease and TTLMS (lock,
// renew), Held (lock: still held by another after the wait; ask again),
// Gone (renew, unlock: the lease expired, its lock was released).
type KeyResponse struct {
	Blob     *KeyBlob  `json:"blob,omitempty"`
	NotFound bool      `json:"not_found,omitempty"`
	Conflict bool      `json:"conflict,omitempty"`
	Blobs    []KeyBlob `json:"blobs,omitempty"`
	More     bool      `json:"more,omitempty"`
	Lease    string    `json:"lease,omitempty"`
	TTLMS    int64     `json:"ttl_ms,omitempty"`
	Held     bool      `json:"held,omitempty"`
	Gone     bool      `json:"gone,omitempty"`
}

// keyLocks are the locks nodes hold, as leases; slots bounds them
// (Options.MaxKeyLocks).
type keyLocks struct {
	mu     sync.Mutex
	leases map[string]*keyLease
	slots  chan struct{}
}

type keyLease struct {
	name     string
	unlock   func()
	deadline time.Time
	timer    *time.Timer
}

// keys answers POST /api/v1/keys.
func (h *handler) keys(w http.ResponseWriter, r *http.Request) error {
	if h.o.Keys == nil {
		return errorf(http.StatusServiceUnavailable, "the key store is not served by this catalog")
	}
	// Blobs are sealed by the node, but the node token travels with them.
	if err := h.secretsTransport(r, "keys"); err != nil {
		return err
	}
	var req KeyRequest
	if err := h.decodeBodyMax(w, r, &req, MaxKeysBody); err != nil {
		return err
	}
	ks, ctx := h.o.Keys, r.Context()
	switch req.Op {
	case KeyGet, KeyCreate, KeyCAS, KeyDelete, KeyLock:
		if err := h.keyName(req.Name); err != nil {
			return err
		}
	case KeyList:
		if !h.keyAllowed(req.Prefix) {
			return errorf(http.StatusForbidden, "the key names starting with %q are not lent to nodes", req.Prefix)
		}
	case KeyRenew, KeyUnlock:
		if req.Lease == "" || len(req.Lease) > 64 {
			return errorf(http.StatusBadRequest, "lease: 1 to 64 characters")
		}
	default:
		return errorf(http.StatusBadRequest, "op: one of get, create, cas, delete, list, lock, renew, unlock (not %q)", req.Op)
	}
	if len(req.Data) > keystore.MaxBlob {
		return errorf(http.StatusRequestEntityTooLarge, "a blob is at most %d bytes", keystore.MaxBlob)
	}
	var resp KeyResponse
	switch req.Op {
	case KeyGet:
		b, err := ks.Get(ctx, req.Name)
		switch {
		case errors.Is(err, keystore.ErrNotFound):
			resp.NotFound = true
		case err != nil:
			return h.resolveError(err, "reading key "+req.Name)
		default:
			resp.Blob = wireBlob(b)
		}
	case KeyCreate:
		b, err := ks.Create(ctx, req.Name, req.Data)
		if err != nil {
			return h.resolveError(err, "creating key "+req.Name)
		}
		resp.Blob = wireBlob(b)
	case KeyCAS:
		if req.Version < 0 {
			return errorf(http.StatusBadRequest, "version must not be negative")
		}
		b, err := ks.CompareAndSwap(ctx, req.Name, req.Version, req.Data)
		switch {
		case errors.Is(err, keystore.ErrConflict):
			resp.Conflict = true
		case err != nil:
			return h.resolveError(err, "swapping key "+req.Name)
		default:
			resp.Blob = wireBlob(b)
		}
	case KeyDelete:
		if err := ks.Delete(ctx, req.Name); err != nil {
			return h.resolveError(err, "deleting key "+req.Name)
		}
	case KeyList:
		bs, err := ks.List(ctx, req.Prefix)
		if err != nil {
			return h.resolveError(err, "listing keys")
		}
		size := 0
		for _, b := range bs {
			if b.Name <= req.After {
				continue
			}
			if len(resp.Blobs) == MaxKeyListBlobs || (len(resp.Blobs) > 0 && size+len(b.Data) > MaxKeyListBytes) {
				resp.More = true
				break
			}
			size += len(b.Data)
			resp.Blobs = append(resp.Blobs, *wireBlob(b))
		}
	case KeyLock:
		return h.keyLock(w, r, &req)
	case KeyRenew, KeyUnlock:
		l := &h.keyLocks
		l.mu.Lock()
		lease, ok := l.leases[req.Lease]
		if ok {
			if req.Op == KeyUnlock {
				delete(l.leases, req.Lease)
				lease.timer.Stop()
			} else {
				lease.deadline = time.Now().Add(h.o.KeyLockTTL)
				lease.timer.Reset(h.o.KeyLockTTL)
				resp.Lease, resp.TTLMS = req.Lease, h.o.KeyLockTTL.Milliseconds()
			}
		}
		l.mu.Unlock()
		if !ok {
			resp.Gone = true
		} else if req.Op == KeyUnlock {
			lease.unlock()
		}
	}
	writeJSON(w, http.StatusOK, &resp)
	return nil
}

// keyName checks a name a node uses.
func (h *handler) keyName(name string) error {
	if err := keystore.CheckName(name); err != nil {
		return errorf(http.StatusBadRequest, "%s", err)
	}
	if !h.keyAllowed(name) {
		return errorf(http.StatusForbidden, "the key %q is not lent to nodes", name)
	}
	return nil
}

func (h *handler) keyAllowed(name string) bool {
	return h.o.KeyNames == nil || h.o.KeyNames(name)
}

func wireBlob(b keystore.Blob) *KeyBlob {
	return &KeyBlob{Name: b.Name, Data: b.Data, Version: b.Version}
}

// keyLock takes a lock for a node as a lease: held until the node unlocks
// it, or until it has not renewed it for Options.KeyLockTTL (the node died
// or lost the catalog).
func (h *handler) keyLock(w http.ResponseWriter, r *http.Request, req *KeyRequest) error {
	l := &h.keyLocks
	wait := MaxKeyLockWait
	if req.WaitMS > 0 && time.Duration(req.WaitMS)*time.Millisecond < wait {
		wait = time.Duration(req.WaitMS) * time.Millisecond
	}
	lctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	held := func() error {
		if r.Context().Err() != nil {
			return r.Context().Err()
		}
		writeJSON(w, http.StatusOK, &KeyResponse{Held: true})
		return nil
	}
	select { // a slot among the locks nodes may hold
	case l.slots <- struct{}{}:
	case <-lctx.Done():
		return held()
	}
	inner, err := h.o.Keys.Lock(lctx, req.Name)
	if err != nil {
		<-l.slots
		if lctx.Err() != nil {
			return held()
		}
		return h.resolveError(err, "locking key "+req.Name)
	}
	var once sync.Once
	unlock := func() { once.Do(func() { inner(); <-l.slots }) }
	if r.Context().Err() != nil { // the node gave up: nobody would unlock
		unlock()
		return r.Context().Err()
	}
	var raw [16]byte
	_, _ = rand.Read(raw[:])
	id := hex.EncodeToString(raw[:])
	lease := &keyLease{name: req.Name, unlock: unlock, deadline: time.Now().Add(h.o.KeyLockTTL)}
	l.mu.Lock()
	if l.leases == nil {
		l.leases = map[string]*keyLease{}
	}
	l.leases[id] = lease
	lease.timer = time.AfterFunc(h.o.KeyLockTTL, func() { h.expireKeyLease(id, lease) })
	l.mu.Unlock()
	writeJSON(w, http.StatusOK, &KeyResponse{Lease: id, TTLMS: h.o.KeyLockTTL.Milliseconds()})
	return nil
}

// expireKeyLease releases a lease that was not renewed in time.
func (h *handler) expireKeyLease(id string, lease *keyLease) {
	l := &h.keyLocks
	l.mu.Lock()
	if l.leases[id] != lease || time.Now().Before(lease.deadline) { // unlocked, or renewed meanwhile
		l.mu.Unlock()
		return
	}
	delete(l.leases, id)
	l.mu.Unlock()
	h.log.Warn().Str("key", lease.name).Msg("a node's key lock lease expired without renewal: released")
	lease.unlock()
}
