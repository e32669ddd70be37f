package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/enforce/api"
)

// Keys is the catalog's key store (catalog/keystore) over POST
// /api/v1/keys: a gateway node shares the mandate_jwt signing keys and
// users' upstream OAuth grants with the catalog server and the other
// nodes. Wrap it in keystore.Sealed with the installation's master key:
// blobs are then sealed before they leave the node. A Lock is a lease on
// the catalog, renewed in the background until unlock; a node that dies
// holding it loses it after the catalog's lease TTL.
type Keys struct {
	r *remote
}

var _ keystore.Store = (*Keys)(nil)

// NewKeys validates cfg and returns the store.
func NewKeys(cfg Config) (*Keys, error) {
	r, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	return &Keys{r: r}, nil
}

// Close releases idle HTTP connections.
func (k *Keys) Close() error {
	k.r.close()
	return nil
}

func (k *Keys) call(ctx context.Context, req *api.KeyRequest) (*api.KeyResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var resp api.KeyResponse
	if err := k.r.do(ctx, http.MethodPost, api.KeysPath, body, &resp); err != nil {
		var se *statusError
		if errors.As(err, &se) && se.status == http.StatusBadRequest {
			return nil, fmt.Errorf("keystore: %s", se.msg)
		}
		return nil, fmt.Errorf("the catalog's key store (%s %s): %w", req.Op, req.Name+req.Prefix, err)
	}
	return &resp, nil
}

func blobOf(b *api.KeyBlob) (keystore.Blob, error) {
	if b == nil || b.Version == 0 {
		return keystore.Blob{}, errors.New("the catalog's key store answered without a blob")
	}
	return keystore.Blob{Name: b.Name, Data: b.Data, Version: b.Version}, nil
}

func (k *Keys) Get(ctx context.Context, name string) (keystore.Blob, error) {
	resp, err := k.call(ctx, &api.KeyRequest{Op: api.KeyGet, Name: name})
	if err != nil {
		return keystore.Blob{}, err
	}
	if resp.NotFound {
		return keystore.Blob{}, keystore.ErrNotFound
	}
	return blobOf(resp.Blob)
}

func (k *Keys) Create(ctx context.Context, name string, data []byte) (keystore.Blob, error) {
	if err := checkBlob(name, data); err != nil {
		return keystore.Blob{}, err
	}
	resp, err := k.call(ctx, &api.KeyRequest{Op: api.KeyCreate, Name: name, Data: data})
	if err != nil {
		return keystore.Blob{}, err
	}
	return blobOf(resp.Blob)
}

func (k *Keys) CompareAndSwap(ctx context.Context, name string, version int64, data []byte) (keystore.Blob, error) {
	if err := checkBlob(name, data); err != nil {
		return keystore.Blob{}, err
	}
	resp, err := k.call(ctx, &api.KeyRequest{Op: api.KeyCAS, Name: name, Version: version, Data: data})
	if err != nil {
		return keystore.Blob{}, err
	}
	if resp.Conflict {
		return keystore.Blob{}, keystore.ErrConflict
	}
	return blobOf(resp.Blob)
}

func (k *Keys) Delete(ctx context.Context, name string) error {
	_, err := k.call(ctx, &api.KeyRequest{Op: api.KeyDelete, Name: name})
	return err
}

// List reads the blobs page by page (api.MaxKeyListBlobs, MaxKeyListBytes).
func (k *Keys) List(ctx context.Context, prefix string) ([]keystore.Blob, error) {
	var out []keystore.Blob
	after := ""
	for {
		resp, err := k.call(ctx, &api.KeyRequest{Op: api.KeyList, Prefix: prefix, After: after})
		if err != nil {
			return nil, err
		}
		for _, b := range resp.Blobs {
			if b.Name <= after || len(b.Name) < len(prefix) || b.Name[:len(prefix)] != prefix {
				return nil, fmt.Errorf("the catalog's key store answered %q out of order for the list of %q", b.Name, prefix)
			}
			after = b.Name
			out = append(out, keystore.Blob{Name: b.Name, Data: b.Data, Version: b.Version})
		}
		if !resp.More || len(resp.Blobs) == 0 {
			return out, nil
		}
	}
}

// Lock asks the catalog for the lock until it is granted or ctx ends
// (each request waits at most api.MaxKeyLockWait there), then renews the
// lease every third of its TTL until unlock.
func (k *Keys) Lock(ctx context.Context, name string) (func(), error) {
	if err := keystore.CheckName(name); err != nil {
		return nil, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wait := api.MaxKeyLockWait
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = max(time.Until(dl), time.Millisecond)
		}
		resp, err := k.call(ctx, &api.KeyRequest{Op: api.KeyLock, Name: name, WaitMS: max(wait.Milliseconds(), 1)})
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if resp.Held {
			continue
		}
		if resp.Lease == "" || resp.TTLMS <= 0 {
			return nil, errors.New("the catalog's key store answered a lock without a lease")
		}
		return k.hold(name, resp.Lease, time.Duration(resp.TTLMS)*time.Millisecond), nil
	}
}

// hold renews a lease until the returned unlock is called.
func (k *Keys) hold(name, lease string, ttl time.Duration) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(ttl/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), max(ttl/3, time.Second))
			resp, err := k.call(ctx, &api.KeyRequest{Op: api.KeyRenew, Lease: lease})
			cancel()
			switch {
			case err != nil:
				k.r.cfg.Logger.Warn().Err(err).Str("key", name).Msg("node: could not renew a key lock (the catalog releases it after its lease TTL)")
			case resp.Gone:
				k.r.cfg.Logger.Error().Str("key", name).Msg("node: a key lock's lease expired while held")
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stop)
			<-done
			ctx, cancel := context.WithTimeout(context.Background(), k.r.cfg.RequestTimeout)
			defer cancel()
			if _, err := k.call(ctx, &api.KeyRequest{Op: api.KeyUnlock, Lease: lease}); err != nil {
				k.r.cfg.Logger.Warn().Err(err).Str("key", name).Msg("node: could not release a key lock (the catalog releases it after its lease TTL)")
			}
		})
	}
}

func checkBlob(name string, data []byte) error {
	if err := keystore.CheckName(name); err != nil {
		return err
	}
	if len(data) > keystore.MaxBlob {
		return fmt.Errorf("keystore: %s: a blob is at most %d bytes", name, keystore.MaxBlob)
	}
	return nil
}
