package oauthconnect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/catalog/keystore"
)

// FlowStore is implemented by token stores that several processes share:
// the sign-ins in progress (the flow a state names, the sign-in tickets
// already used) are kept there too, so that the consent page, the form
// and the authorization server's redirect may each reach another replica
// behind a load balancer. Values are sealed by the Connector.
type FlowStore interface {
	// PutFlow stores a pending sign-in of user under its state until
	// expires, replacing the user's oldest as the in-memory table does
	// (at most maxUserFlows in progress per user, replacedFlows).
	PutFlow(ctx context.Context, user, state string, sealed []byte, expires time.Time) error
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
	flowPrefix      = "oauth-flow:"
	noncePrefix     = "oauth-nonce:"
	userFlowsPrefix = "oauth-user-flows:" // + hex SHA-256 of the user
	taken           = "taken"
)

// pending is a flow, a used nonce or a user's flows in the key store.
type pending struct {
	Expires time.Time            `json:"expires"`
	Sealed  []byte               `json:"sealed,omitempty"`
	Owner   string               `json:"owner,omitempty"` // a nonce's first user
	Flows   map[string]time.Time `json:"flows,omitempty"` // a user's flows' expiry by state
}

// maxFlowUpdates bounds the attempts to update a user's flows (under their
// lock, only a prune of the expired row makes one fail).
const maxFlowUpdates = 3

// PutFlow stores the flow, then records it in the user's list of flows
// (one row, updated under its lock in the key store, so that replicas
// approving one user's sign-ins at once take turns) and deletes those the
// rule replaces. Flows taken since stay listed until they expire: they count
// towards the cap, and replacing one deletes nothing.
func (s *sharedStore) PutFlow(ctx context.Context, user, state string, sealed []byte, expires time.Time) error {
	s.prune(ctx)
	b, err := json.Marshal(pending{Expires: expires.UTC(), Sealed: sealed})
	if err != nil {
		return err
	}
	if _, err = s.ks.CompareAndSwap(ctx, flowPrefix+state, 0, b); err != nil {
		return err
	}
	replaced, err := s.listFlow(ctx, user, state, expires)
	if err != nil {
		_ = s.ks.Delete(ctx, flowPrefix+state)
		return err
	}
	for _, st := range replaced {
		if err := s.ks.Delete(ctx, flowPrefix+st); err != nil && !errors.Is(err, keystore.ErrNotFound) {
			return err
		}
	}
	return nil
}

// listFlow adds state to user's flows (dropping the expired ones and
// those replacedFlows replaces) and returns the replaced states.
func (s *sharedStore) listFlow(ctx context.Context, user, state string, expires time.Time) ([]string, error) {
	sum := sha256.Sum256([]byte(user))
	name := userFlowsPrefix + hex.EncodeToString(sum[:])
	unlock, err := s.ks.Lock(ctx, "lock:"+name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now := time.Now()
	for range maxFlowUpdates {
		var version int64
		p := pending{Flows: map[string]time.Time{}}
		b, err := s.ks.Get(ctx, name)
		switch {
		case err == nil:
			version = b.Version
			if json.Unmarshal(b.Data, &p) != nil || p.Flows == nil {
				p.Flows = map[string]time.Time{}
			}
		case !errors.Is(err, keystore.ErrNotFound):
			return nil, err
		}
		for st, exp := range p.Flows {
			if !now.Before(exp) {
				delete(p.Flows, st)
			}
		}
		replaced := replacedFlows(p.Flows)
		for _, st := range replaced {
			delete(p.Flows, st)
		}
		p.Flows[state] = expires.UTC()
		p.Expires = time.Time{}
		for _, exp := range p.Flows {
			if exp.After(p.Expires) {
				p.Expires = exp
			}
		}
		data, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		if _, err := s.ks.CompareAndSwap(ctx, name, version, data); errors.Is(err, keystore.ErrConflict) {
			continue // pruned meanwhile: again
		} else if err != nil {
			return nil, err
		}
		return replaced, nil
	}
	return nil, fmt.Errorf("the sign-ins in progress of a user kept changing (%d attempts)", maxFlowUpdates)
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
	for _, prefix := range []string{flowPrefix, noncePrefix, userFlowsPrefix} {
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
