package enforce

import (
	"context"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// newService opens a catalog over a fresh memstore. seed principals (for
// example a group with Admin set, which no statement can create) are put in
// the store before the first start, with IDs from 1.
func newService(t testing.TB, seed ...catalog.Principal) *catalog.Service {
	t.Helper()
	ctx := context.Background()
	st := memstore.New()
	if len(seed) > 0 {
		err := st.ReadWriteTx(ctx, func(ctx context.Context, tx catalog.RWTx) error {
			for i, p := range seed {
				p.ID = catalog.ID(i + 1)
				if err := tx.PutPrincipal(ctx, p); err != nil {
					return err
				}
			}
			return tx.SetMeta(ctx, catalog.Meta{NextID: catalog.ID(len(seed) + 1)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	kr, err := catalog.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := catalog.Open(ctx, catalog.Options{Store: st, Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

// write runs fn as the built-in admin and returns the new revision.
func write(t testing.TB, svc *catalog.Service, fn func(tx *catalog.Tx) error) catalog.Revision {
	t.Helper()
	rev, err := svc.Write(context.Background(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, fn)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

func conn(name string) SecurableRef { return SecurableRef{Type: catalog.TypeConnection, Name: name} }
