package catalog_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// gateStore fails or blocks commits on demand.
type gateStore struct {
	*memstore.Store
	fail    atomic.Bool
	blockMu sync.Mutex
	entered chan struct{}
	release chan struct{}
}

func (g *gateStore) Append(ctx context.Context, base catalog.Revision, changes []catalog.Change) error {
	g.blockMu.Lock()
	entered, release := g.entered, g.release
	g.blockMu.Unlock()
	if entered != nil {
		close(entered)
		<-release
	}
	if g.fail.Load() {
		return catalog.Errorf(catalog.CodeUnavailable, "disk on fire")
	}
	return g.Store.Append(ctx, base, changes)
}

func openGate(t *testing.T) (*catalog.Service, *gateStore) {
	t.Helper()
	kr, _ := catalog.NewKeyring(make([]byte, 32))
	g := &gateStore{Store: memstore.New()}
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: g, Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, g
}

var adminReq = catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}

func TestFailedCommitChangesNothing(t *testing.T) {
	svc, g := openGate(t)
	rev := svc.Revision()
	g.fail.Store(true)
	_, err := svc.Write(t.Context(), adminReq, func(tx *catalog.Tx) error {
		return tx.CreatePrincipal(catalog.KindGroup, "ghosts", nil, false)
	})
	if !catalog.IsCode(err, catalog.CodeUnavailable) {
		t.Fatalf("Write with a failing store: %v", err)
	}
	svc.Read(func(m *catalog.Model) {
		if _, ok := m.PrincipalByName("ghosts"); ok {
			t.Fatal("a change whose commit failed is visible")
		}
	})
	if svc.Revision() != rev {
		t.Fatalf("revision moved from %d to %d on a failed commit", rev, svc.Revision())
	}
	g.fail.Store(false)
	if _, err := svc.Write(t.Context(), adminReq, func(tx *catalog.Tx) error {
		return tx.CreatePrincipal(catalog.KindGroup, "ghosts", nil, false)
	}); err != nil {
		t.Fatalf("the catalog does not recover after a failed commit: %v", err)
	}
}

func TestReadersDoNotSeeUndurableChanges(t *testing.T) {
	svc, g := openGate(t)
	g.blockMu.Lock()
	g.entered, g.release = make(chan struct{}), make(chan struct{})
	entered, release := g.entered, g.release
	g.blockMu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := svc.Write(context.Background(), adminReq, func(tx *catalog.Tx) error {
			return tx.CreatePrincipal(catalog.KindUser, "pending@example.com", nil, false)
		})
		done <- err
	}()
	<-entered // the store commit is in progress
	// Readers are not blocked by the commit and do not see the change yet.
	svc.Read(func(m *catalog.Model) {
		if _, ok := m.PrincipalByName("pending@example.com"); ok {
			t.Error("a change is visible before its commit is durable")
		}
	})
	g.blockMu.Lock()
	g.entered, g.release = nil, nil
	g.blockMu.Unlock()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	svc.Read(func(m *catalog.Model) {
		if _, ok := m.PrincipalByName("pending@example.com"); !ok {
			t.Error("a committed change is not visible")
		}
	})
}

func TestCheckUnknownPrivilegeDenies(t *testing.T) {
	svc := newService(t)
	if _, err := svc.Write(t.Context(), adminReq, func(tx *catalog.Tx) error {
		if err := tx.CreatePrincipal(catalog.KindGroup, "g", nil, false); err != nil {
			return err
		}
		if err := tx.CreatePrincipal(catalog.KindUser, "u", nil, false); err != nil {
			return err
		}
		return tx.AddMember("g", catalog.KindUser, "u")
	}); err != nil {
		t.Fatal(err)
	}
	svc.Read(func(m *catalog.Model) {
		u, _ := m.PrincipalByName("u")
		if d := m.Check(u.ID, "FOO", m.Metastore().ID); d.Allowed {
			t.Fatal("an unknown privilege was allowed")
		}
	})
	_, err := svc.Write(t.Context(), adminReq, func(tx *catalog.Tx) error {
		return tx.AddMember("g", catalog.KindGroup, catalog.AccountUsers)
	})
	if !catalog.IsCode(err, catalog.CodeReadOnly) {
		t.Fatalf(`ALTER GROUP g ADD GROUP "account users": %v, want a refusal`, err)
	}
}
