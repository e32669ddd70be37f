package embedded

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/catalog/embedded/embeddedtest"
	"github.com/mandatehq/mandate/catalog/walstore"
)

// The fixture is a data directory written by the Mandate whose catalog
// lived in DuckDB tables, killed with SIGKILL while catalog.wal still held
// catalog changes and audit events (testdata/upgrade/make-fixture.sh).
const fixture = "../../testdata/upgrade/embedded-v2.tar.gz"

// fixtureKey is its MANDATE_MASTER_KEY.
var fixtureKey = []byte("upgrade fixture key, 32 bytes...")

// openService opens the stores of dir and a catalog on them.
func openService(t *testing.T, dir string) (*catalog.Service, *Stores) {
	t.Helper()
	st, err := Open(t.Context(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	kr, err := catalog.NewKeyring(fixtureKey)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: st.Catalog, Events: st.Events, Keyring: kr})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	return svc, st
}

func closeAll(t *testing.T, svc *catalog.Service, st *Stores) {
	t.Helper()
	svc.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkCatalog checks what the fixture's catalog holds after every
// statement its old Mandate acknowledged (see make-fixture.sh).
func checkCatalog(t *testing.T, svc *catalog.Service) {
	t.Helper()
	svc.Read(func(m *catalog.Model) {
		for _, name := range []string{catalog.AdminUser, catalog.AccountUsers, "data-analysts", "alice@example.com", "bob@example.com"} {
			if _, ok := m.PrincipalByName(name); !ok {
				t.Errorf("principal %s is missing", name)
			}
		}
		if _, ok := m.PrincipalByName("coding-agent"); ok {
			t.Error("the dropped service principal is back")
		}
		analysts, _ := m.PrincipalByName("data-analysts")
		alice, _ := m.PrincipalByName("alice@example.com")
		bob, _ := m.PrincipalByName("bob@example.com")
		if analysts == nil || alice == nil || bob == nil || !m.IsMember(analysts.ID, alice.ID) || !m.IsMember(analysts.ID, bob.ID) {
			t.Fatal("the memberships of data-analysts are not as committed")
		}
		tools, err := m.Lookup(catalog.TypeConnection, []string{"sales", "crm", "tools"})
		if err != nil {
			t.Fatal(err)
		}
		if tools.Owner != alice.ID || tools.Comment != "shared" || tools.Options["url"] != "https://mcp.example.com/mcp" {
			t.Errorf("sales.crm.tools = %+v", tools)
		}
		gh, err := m.Lookup(catalog.TypeConnection, []string{"system", "ai", "my_github_mcp"})
		if err != nil {
			t.Fatal(err)
		}
		if !m.HasGrant(catalog.GrantKey{Securable: tools.ID, Principal: analysts.ID, Privilege: catalog.PrivUseConnection}) {
			t.Error("the grant on sales.crm.tools is missing")
		}
		if m.HasGrant(catalog.GrantKey{Securable: gh.ID, Principal: analysts.ID, Privilege: catalog.PrivUseConnection}) {
			t.Error("the revoked grant on my_github_mcp is back")
		}
		if _, ok := m.PolicyByName("no_deletes"); !ok {
			t.Error("policy no_deletes is missing")
		}
		secrets, err := svc.Keyring().OpenMap(tools.Secrets, catalog.SecretsAAD(tools.ID))
		if err != nil || secrets["bearer_token"] != "secret-token-1" {
			t.Errorf("the sealed secret of sales.crm.tools: %q, %v", secrets, err)
		}
	})
}

// checkAudit checks the audit events: the gateway's two (the first
// completed by its second phase) and one per acknowledged statement, each
// once.
func checkAudit(t *testing.T, svc *catalog.Service, extra ...string) {
	t.Helper()
	es, err := svc.Store().ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	var sql []string
	var mcp []catalog.AuditEvent
	for _, e := range es {
		ids[e.EventID]++
		switch e.Service {
		case "sql":
			sql = append(sql, e.Action)
		case "mcp":
			mcp = append(mcp, e)
		}
	}
	for id, n := range ids {
		if n > 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	want := append([]string{"BOOTSTRAP", "CREATE GROUP", "CREATE USER", "ALTER GROUP", "CREATE SERVICE PRINCIPAL",
		"CREATE CATALOG", "CREATE SCHEMA", "CREATE CONNECTION", "CREATE CONNECTION", "GRANT", "GRANT", "GRANT", "GRANT",
		"GRANT", "CREATE POLICY", "REVOKE", "CREATE USER", "ALTER GROUP", "ALTER CONNECTION", "DROP SERVICE PRINCIPAL",
		// The fixture predates system.ai_gateway: the first start adds its
		// tables (one change of its own).
		"UPGRADE"}, extra...)
	if strings.Join(sql, ",") != strings.Join(want, ",") {
		t.Errorf("SQL audit:\n got  %v\n want %v", sql, want)
	}
	if len(mcp) != 2 || mcp[0].EventID != "00000000-0000-4000-8000-000000000001" || mcp[0].Decision != "allow" ||
		mcp[0].LatencyMs != 12.5 || mcp[0].RunAs != "coding-agent" || mcp[1].Reason != "no USE CONNECTION" {
		t.Errorf("gateway audit: %+v", mcp)
	}
}

// TestUpgrade opens the fixture: its catalog (the tables plus the catalog
// rows still in the old log) and its audit (the table plus the events
// still in the old log) are all there, once; the catalog goes on from its
// revision; and the directory reopens as upgraded.
func TestUpgrade(t *testing.T) {
	dir := embeddedtest.ExtractFixture(t, fixture)
	// The fixture does test the replay: the log holds records not yet
	// applied to the tables, with catalog rows and with audit events.
	duck, err := duckstore.Open(t.Context(), dir, duckstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tables, logSeq, err := duck.Legacy(t.Context())
	if err != nil || tables == nil {
		t.Fatalf("Legacy = %v, %v", tables, err)
	}
	duck.Close()
	recs, legacy, err := walstore.ReadLegacy(dir, logSeq)
	if err != nil || !legacy {
		t.Fatalf("ReadLegacy = %v, %v", legacy, err)
	}
	ops, events := 0, 0
	for _, r := range recs {
		ops += len(r.Ops)
		events += len(r.Audit)
	}
	if ops == 0 || events == 0 {
		t.Fatalf("the fixture's log holds %d catalog rows and %d audit events after the tables: the test needs both", ops, events)
	}

	svc, st := openService(t, dir)
	rev := svc.Revision()
	checkCatalog(t, svc)
	checkAudit(t, svc)
	if rev != 21 {
		t.Errorf("revision %d after the upgrade, want 21 (one per statement, and the system tables added since)", rev)
	}
	if _, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "CREATE USER"},
		func(tx *catalog.Tx) error {
			return tx.CreatePrincipal(catalog.KindUser, "carol@example.com", nil, false)
		}); err != nil {
		t.Fatal(err)
	}
	if svc.Revision() != rev+1 {
		t.Errorf("revision %d after one more change, want %d", svc.Revision(), rev+1)
	}
	closeAll(t, svc, st)

	// Upgraded: the tables are empty, the old log is gone.
	d := mustDuck(t, dir)
	if tables, _, err := d.Legacy(t.Context()); err != nil || tables != nil {
		t.Errorf("the DuckDB catalog tables after the upgrade: %v, %v", tables, err)
	}
	d.Close()
	if _, legacy, err := walstore.ReadLegacy(dir, 0); legacy || err != nil {
		t.Errorf("the old log after the upgrade: %v, %v", legacy, err)
	}
	svc, st = openService(t, dir)
	defer closeAll(t, svc, st)
	checkCatalog(t, svc)
	checkAudit(t, svc, "CREATE USER")
	if svc.Revision() != rev+1 {
		t.Errorf("revision %d after reopening, want %d", svc.Revision(), rev+1)
	}
}

func mustDuck(t *testing.T, dir string) *duckstore.Store {
	t.Helper()
	d, err := duckstore.Open(t.Context(), dir, duckstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestUpgradeResumes: an upgrade interrupted after any of its steps is
// finished by the next start, with the same result.
func TestUpgradeResumes(t *testing.T) {
	t.Run("after the snapshot", func(t *testing.T) {
		dir := embeddedtest.ExtractFixture(t, fixture)
		duck := mustDuck(t, dir)
		tables, logSeq, err := duck.Legacy(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		recs, _, err := walstore.ReadLegacy(dir, logSeq)
		if err != nil {
			t.Fatal(err)
		}
		st, err := replayLegacy(t.Context(), tables, recs)
		if err != nil {
			t.Fatal(err)
		}
		if err := walstore.WriteSnapshot(dir, st); err != nil {
			t.Fatal(err)
		}
		duck.Close()
		svc, stores := openService(t, dir)
		defer closeAll(t, svc, stores)
		checkCatalog(t, svc)
		checkAudit(t, svc)
	})
	t.Run("before the old log was emptied", func(t *testing.T) {
		dir := embeddedtest.ExtractFixture(t, fixture)
		old, err := os.ReadFile(filepath.Join(dir, walstore.FileName))
		if err != nil {
			t.Fatal(err)
		}
		duck := mustDuck(t, dir)
		if err := upgrade(t.Context(), dir, duck, testLogger(t)); err != nil {
			t.Fatal(err)
		}
		duck.Close()
		if err := os.WriteFile(filepath.Join(dir, walstore.FileName), old, 0o600); err != nil {
			t.Fatal(err)
		}
		svc, stores := openService(t, dir)
		defer closeAll(t, svc, stores)
		checkCatalog(t, svc)
		checkAudit(t, svc)
	})
}

// A data directory with an embedded catalog is refused as the event store
// of a PostgreSQL-backed Mandate.
func TestOpenEventsRefusesEmbeddedCatalog(t *testing.T) {
	for _, dir := range []string{embeddedtest.ExtractFixture(t, fixture), func() string {
		d := t.TempDir()
		svc, st := openService(t, d)
		closeAll(t, svc, st)
		return d
	}()} {
		if _, err := OpenEvents(t.Context(), dir, Options{}); !catalog.IsCode(err, catalog.CodeIncompatibleData) {
			t.Errorf("OpenEvents(%s): %v, want CodeIncompatibleData", dir, err)
		}
	}
	st, err := OpenEvents(t.Context(), t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
}

func testLogger(t *testing.T) zerolog.Logger { return zerolog.New(zerolog.NewTestWriter(t)) }
