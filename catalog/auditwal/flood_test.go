package auditwal_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/auditwal"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/catalog/walstore"
)

// stalled is an event store that cannot keep up: its applies fail until
// released.
type stalled struct {
	*memstore.Store
	stalled atomic.Bool
}

func (s *stalled) ApplyLog(ctx context.Context, seq int64, events []catalog.AuditEvent, mark catalog.Revision) error {
	if s.stalled.Load() {
		return catalog.Errorf(catalog.CodeUnavailable, "busy")
	}
	return s.Store.ApplyLog(ctx, seq, events, mark)
}

// TestAuditFloodDoesNotDelayRevoke: a flood of audit events that the event
// store cannot absorb (its log over its backpressure limit, the audit
// queue full) does not hold up a catalog write: the REVOKE commits at
// once, and its audit record reaches the event store once it drains. (When
// the catalog and the audit shared one log and one limit, the REVOKE
// waited for the limit and failed after 30 s.)
func TestAuditFloodDoesNotDelayRevoke(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	inner := &stalled{Store: memstore.New()}
	inner.stalled.Store(true)
	events, err := auditwal.Open(ctx, dir, inner, auditwal.Options{MaxPendingBytes: 1 << 20, ApplyInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer events.Close()
	store, err := walstore.Open(ctx, dir, walstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	audit := catalog.NewAuditLog(events, catalog.AuditLogOptions{MaxQueued: 64})
	defer audit.Close(context.Background())
	kr, _ := catalog.NewKeyring(make([]byte, 32))
	// The catalog bootstraps before the flood (its first audit records
	// are forwarded while the store still applies).
	inner.stalled.Store(false)
	svc, err := catalog.Open(ctx, catalog.Options{Store: store, Events: events, Audit: audit, Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "CREATE USER"}
	if _, err := svc.Write(ctx, admin, func(tx *catalog.Tx) error { return tx.CreatePrincipal(catalog.KindUser, "alice", nil, false) }); err != nil {
		t.Fatal(err)
	}
	if err := svc.SyncAudit(ctx); err != nil {
		t.Fatal(err)
	}
	inner.stalled.Store(true)

	// The flood: events until the audit queue is full (its writer waits
	// for room in the event store's log, over its limit).
	big := `{"x":"` + strings.Repeat("a", 60<<10) + `"}`
	full := false
	for i := 0; i < 10_000 && !full; i++ {
		sctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err := audit.Submit(sctx, catalog.AuditEvent{Service: "mcp", Action: "tools/call", RequestParams: big})
		cancel()
		full = err != nil
	}
	if !full {
		t.Fatal("the flood never filled the audit queue")
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a failure bound, not a synchronization
	defer cancel()
	start := time.Now()
	rev, err := svc.Write(rctx, catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser, Statement: "REVOKE"}, Action: "REVOKE"},
		func(tx *catalog.Tx) error {
			return tx.Revoke([]catalog.Privilege{catalog.PrivUseCatalog}, catalog.TypeCatalog, []string{"system"}, []string{catalog.AccountUsers})
		})
	if err != nil {
		t.Fatalf("REVOKE under an audit flood: %v after %v", err, time.Since(start))
	}
	t.Logf("REVOKE under an audit flood committed in %v", time.Since(start))
	svc.Read(func(m *catalog.Model) {
		users, _ := m.PrincipalByName(catalog.AccountUsers)
		sys, _ := m.Lookup(catalog.TypeCatalog, []string{"system"})
		if m.HasGrant(catalog.GrantKey{Securable: sys.ID, Principal: users.ID, Privilege: catalog.PrivUseCatalog}) {
			t.Error("the REVOKE is not in effect")
		}
	})
	// The event store drains; the REVOKE's audit record arrives.
	inner.stalled.Store(false)
	if err := svc.SyncAudit(rctx); err != nil {
		t.Fatal(err)
	}
	es, err := svc.Store().ListAudit(rctx, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range es {
		found = found || e.Action == "REVOKE" && e.Revision == rev
	}
	if !found {
		t.Fatal("the REVOKE's audit record is not in the event store")
	}
}
