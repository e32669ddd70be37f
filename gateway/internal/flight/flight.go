// Package flight is the single flight of the gateway's caches: the
// concurrent callers that missed a cache for one key share one fetch.
// The caches of connections, model services, access tokens and limits at
// a gateway node (gateway/node), of upstream credentials (gateway/upstream),
// of an issuer's signing keys (gateway/identity), of users' OAuth grants
// and authorization server metadata (gateway/oauthconnect) and the tools
// the guardrails record (gateway/guardstage) all use it.
//
// A caller looks its cache up and calls Group.Do on a miss. Do joins the
// flight of the key, or starts one. A flight asks the cache again before
// it fetches: a caller that missed just as another caller's flight ended
// (that flight stored its answer and left the group) starts a flight of
// its own, which then finds the answer in the cache instead of sending a
// second request. The fetch runs detached from the caller's
// cancellation, bounded by a timeout, so that a caller that gives up fails
// none of the others; each caller returns when its own context ends.
package flight

import (
	"context"
	"time"

	"golang.org/x/sync/singleflight"
)

// Group shares fetches of values of type V by key. The zero value is
// ready to use; a Group must not be copied after first use.
type Group[V any] struct {
	sf singleflight.Group
}

// Do returns the value of key for a caller that missed its cache: the
// answer of lookup, asked again inside the flight (nil: no cache to ask),
// else that of fetch, which the callers of key that arrive while it runs
// share. fetch runs with a context detached from ctx and bounded by
// timeout; it stores its answer in the cache itself. Do returns ctx's
// error when ctx ends first.
func (g *Group[V]) Do(ctx context.Context, key string, timeout time.Duration, lookup func() (V, bool), fetch func(context.Context) (V, error)) (V, error) {
	ch := g.sf.DoChan(key, func() (any, error) {
		if lookup != nil {
			if v, ok := lookup(); ok {
				return v, nil
			}
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		defer cancel()
		return fetch(fctx)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			var zero V
			return zero, r.Err
		}
		v, _ := r.Val.(V) // a nil interface when V is an interface type
		return v, nil
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}
