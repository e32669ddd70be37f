package oauthconnect

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// FlowStore is implemented by token stores that several processes share:
// the sign-ins in progress (the flow a state names, the sign-in tickets
// already used) are kept there too, so that the consent page, the form
// and the authorization server's redirect may each reach another replica
// behind a load balancer. Values are sealed by the Connector.
type FlowStore interface {
	// PutFlow stores a pending sign-in under its state until expires.
	PutFlow(ctx context.Context, state string, sealed []byte, expires time.Time) error
	// TakeFlow removes and returns the flow of state; nil when there is
	// none (unknown, expired or taken by another process: a state is
	// taken once).
	TakeFlow(ctx context.Context, state string) ([]byte, error)
	// UseNonce records a ticket's nonce as used until expires; false when
	// it already was.
	UseNonce(ctx context.Context, nonce string, expires time.Time) (bool, error)
	// NonceUsed reports whether a nonce was used.
	NonceUsed(ctx context.Context, nonce string) (bool, error)
}

const (
	flowPrefix  = "oauth-flow:"
	noncePrefix = "oauth-nonce:"
	taken       = "taken"
)

// pending is a flow or used nonce in the key store.
type pending struct {
	Expires time.Time `json:"expires"`
	Sealed  []byte    `json:"sealed,omitempty"`
	Owner   string    `json:"owner,omitempty"` // a nonce's first user
}

func (s *sharedStore) PutFlow(ctx context.Context, state string, sealed []byte, expires time.Time) error {
	s.prune(ctx)
	b, err := json.Marshal(pending{Expires: expires.UTC(), Sealed: sealed})
	if err != nil {
		return err
	}
	_, err = s.ks.CompareAndSwap(ctx, flowPrefix+state, 0, b)
	return err
}

func (s *sharedStore) TakeFlow(ctx context.Context, state string) ([]byte, error) {
	name := flowPrefix + state
	b, err := s.ks.Get(ctx, name)
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p pending
	if json.Unmarshal(b.Data, &p) != nil || p.Sealed == nil { // the Connector checks the expiry
		return nil, nil
	}
	// Of several processes taking it at once, one swaps it out.
	if _, err := s.ks.CompareAndSwap(ctx, name, b.Version, []byte(`{"owner":"`+taken+`"}`)); errors.Is(err, keystore.ErrConflict) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	_ = s.ks.Delete(ctx, name)
	return p.Sealed, nil
}

func (s *sharedStore) UseNonce(ctx context.Context, nonce string, expires time.Time) (bool, error) {
	s.prune(ctx)
	me := randomString(16)
	b, err := json.Marshal(pending{Expires: expires.UTC(), Owner: me})
	if err != nil {
		return false, err
	}
	got, err := s.ks.Create(ctx, noncePrefix+nonce, b)
	if err != nil {
		return false, err
	}
	var p pending
	return json.Unmarshal(got.Data, &p) == nil && p.Owner == me, nil
}

func (s *sharedStore) NonceUsed(ctx context.Context, nonce string) (bool, error) {
	_, err := s.ks.Get(ctx, noncePrefix+nonce)
	if errors.Is(err, keystore.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// prune deletes expired flows and nonces, at most once a minute per
// process.
func (s *sharedStore) prune(ctx context.Context) {
	now := time.Now()
	s.mu.Lock()
	if now.Sub(s.lastPrune) < time.Minute {
		s.mu.Unlock()
		return
	}
	s.lastPrune = now
	s.mu.Unlock()
	for _, prefix := range []string{flowPrefix, noncePrefix} {
		bs, err := s.ks.List(ctx, prefix)
		if err != nil {
			return
		}
		for _, b := range bs {
			var p pending
			if json.Unmarshal(b.Data, &p) != nil || p.Expires.IsZero() || !now.Before(p.Expires) {
				_ = s.ks.Delete(ctx, b.Name)
			}
		}
	}
}
