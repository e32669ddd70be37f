package catalog_test

import (
	"context"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

func systemTablesOf(m *catalog.Model) map[string]*catalog.Securable {
	out := map[string]*catalog.Securable{}
	sys, _ := m.Child(m.Metastore().ID, catalog.TypeCatalog, catalog.SystemCatalog)
	for _, sch := range m.Children(sys.ID) {
		for _, t := range m.Children(sch.ID) {
			if t.Type == catalog.TypeTable {
				out[sch.Name+"."+t.Name] = t
			}
		}
	}
	return out
}

// The bootstrap creates the system tables; SELECT on them follows Unity:
// admins, SELECT on the table or inherited from its schema or catalog,
// with USE_CATALOG and USE_SCHEMA (held by "account users").
func TestSystemTablesBootstrap(t *testing.T) {
	svc := newService(t)
	mustWrite(t, svc, func(tx *catalog.Tx) error { return tx.CreatePrincipal(catalog.KindUser, "alice", nil, false) })
	check := func(p catalog.Privilege, table string) bool {
		var ok bool
		svc.Read(func(m *catalog.Model) {
			alice, _ := m.PrincipalByName("alice")
			tables := systemTablesOf(m)
			if len(tables) != len(catalog.SystemTables()) {
				t.Fatalf("%d system tables, want %d", len(tables), len(catalog.SystemTables()))
			}
			ok = m.Check(alice.ID, p, tables[table].ID).Allowed
		})
		return ok
	}
	if check(catalog.PrivSelect, "access.audit") {
		t.Error("alice reads the audit without a grant")
	}
	if !check(catalog.PrivSelect, "information_schema.catalogs") {
		t.Error("alice cannot read information_schema")
	}
	mustWrite(t, svc, func(tx *catalog.Tx) error {
		return tx.Grant([]catalog.Privilege{catalog.PrivSelect}, catalog.TypeSchema, []string{"system", "access"}, []string{"alice"})
	})
	if !check(catalog.PrivSelect, "access.audit") {
		t.Error("SELECT on the schema does not reach the table")
	}
	mustWrite(t, svc, func(tx *catalog.Tx) error {
		return tx.Revoke([]catalog.Privilege{catalog.PrivSelect}, catalog.TypeSchema, []string{"system", "access"}, []string{"alice"})
	})
	mustWrite(t, svc, func(tx *catalog.Tx) error {
		return tx.Grant([]catalog.Privilege{catalog.PrivSelect}, catalog.TypeTable, []string{"system", "access", "audit"}, []string{"alice"})
	})
	if !check(catalog.PrivSelect, "access.audit") {
		t.Error("SELECT on the table")
	}
	// Without USE_SCHEMA (revoked from account users) SELECT is not enough.
	mustWrite(t, svc, func(tx *catalog.Tx) error {
		return tx.Revoke([]catalog.Privilege{catalog.PrivUseSchema}, catalog.TypeSchema, []string{"system", "access"}, []string{catalog.AccountUsers})
	})
	if check(catalog.PrivSelect, "access.audit") {
		t.Error("SELECT without USE_SCHEMA")
	}
	// Built-in tables cannot be dropped; SELECT does not apply to connections.
	err := write(svc, func(tx *catalog.Tx) error {
		return tx.Grant([]catalog.Privilege{catalog.PrivSelect}, catalog.TypeConnection, []string{"system", "ai", "x"}, []string{"alice"})
	})
	if err == nil {
		t.Error("SELECT on a connection")
	}
}

// A catalog bootstrapped before the system tables existed gets them when
// it is opened.
func TestSystemTablesUpgrade(t *testing.T) {
	st := memstore.New()
	kr := testKeyring(t)
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: st, Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []catalog.ID
	svc.Read(func(m *catalog.Model) {
		for _, s := range systemTablesOf(m) {
			ids = append(ids, s.ID)
		}
	})
	svc.Close()
	// What an older Mandate left: no tables, none of their grants.
	err = st.ReadWriteTx(t.Context(), func(ctx context.Context, tx catalog.RWTx) error {
		for _, id := range ids {
			if err := tx.DeleteSecurable(ctx, id); err != nil {
				return err
			}
		}
		gs, _ := tx.ListGrants(ctx)
		for _, g := range gs {
			if g.Privilege == catalog.PrivSelect || g.Privilege == catalog.PrivUseSchema {
				_ = tx.RemoveGrant(ctx, g.Key())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, err = catalog.Open(t.Context(), catalog.Options{Store: st, Keyring: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	svc.Read(func(m *catalog.Model) {
		tables := systemTablesOf(m)
		if n := len(tables); n != len(catalog.SystemTables()) {
			t.Errorf("%d system tables after the upgrade", n)
		}
		for _, s := range tables {
			for _, old := range ids {
				if s.ID == old {
					t.Errorf("table %s kept its ID %d: not re-created", s.Name, old)
				}
			}
		}
		users, _ := m.PrincipalByName(catalog.AccountUsers)
		sch, _ := m.Lookup(catalog.TypeSchema, []string{"system", "information_schema"})
		if !m.HasGrant(catalog.GrantKey{Securable: sch.ID, Principal: users.ID, Privilege: catalog.PrivSelect}) {
			t.Error("account users lack SELECT on system.information_schema after the upgrade")
		}
	})
}

func testKeyring(t *testing.T) *catalog.Keyring {
	t.Helper()
	kr, err := catalog.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func write(svc *catalog.Service, fn func(tx *catalog.Tx) error) error {
	_, err := svc.Write(context.Background(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, fn)
	return err
}

func mustWrite(t *testing.T, svc *catalog.Service, fn func(tx *catalog.Tx) error) {
	t.Helper()
	if err := write(svc, fn); err != nil {
		t.Fatal(err)
	}
}
