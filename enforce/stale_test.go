package enforce

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// partitioned is a shared store this replica cannot reach while down is
// set.
type partitioned struct {
	*memstore.Store
	down atomic.Bool
}

func (p *partitioned) Head(ctx context.Context) (catalog.Revision, error) {
	if p.down.Load() {
		return 0, catalog.Errorf(catalog.CodeUnavailable, "unreachable")
	}
	return p.Store.Head(ctx)
}

// A replica past its staleness bound denies everything, with the reason,
// and allows again once it is synchronized.
func TestStaleReplicaFailsClosed(t *testing.T) {
	st := &partitioned{Store: memstore.New()}
	kr, _ := catalog.NewKeyring(make([]byte, 32))
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: st, Events: st.Store, Keyring: kr, AdminVerifier: "x",
		MaxStaleness: 200 * time.Millisecond, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	write(t, svc, func(tx *catalog.Tx) error { return tx.CreatePrincipal(catalog.KindUser, "alice", nil, false) })
	e, err := NewEngine(t.Context(), svc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	req := Request{Subject: "alice", Privilege: catalog.PrivUseCatalog, Securable: SecurableRef{Type: catalog.TypeCatalog, Name: "system"}}
	if ok, _ := e.Allowed(t.Context(), req); !ok {
		t.Fatal("denied while synchronized")
	}
	st.down.Store(true)
	for deadline := time.Now().Add(30 * time.Second); !svc.Stale(); { // a failure bound
		if time.Now().After(deadline) {
			t.Fatal("never stale")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ok, _ := e.Allowed(t.Context(), req); ok {
		t.Error("Allowed on a stale replica")
	}
	if d := e.Decide(t.Context(), req); d.Allowed || !strings.Contains(d.Reason, "stale") {
		t.Errorf("Decide on a stale replica: %+v", d)
	}
	st.down.Store(false)
	for deadline := time.Now().Add(30 * time.Second); svc.Stale(); {
		if time.Now().After(deadline) {
			t.Fatal("still stale")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := e.Decide(t.Context(), req); !d.Allowed {
		t.Errorf("Decide after catching up: %+v", d)
	}
}
