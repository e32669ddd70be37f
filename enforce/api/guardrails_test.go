package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
)

// TestGuardedRefusedToNodes: a call that guardrail policies apply to is
// refused to gateway nodes (which do not run the guardrail stages), not
// to the catalog's own gateway (the engine in process says Guarded and
// allows); a call without guardrails is unaffected.
func TestGuardedRefusedToNodes(t *testing.T) {
	kr, _ := catalog.NewKeyring(make([]byte, 32))
	svc, err := catalog.Open(t.Context(), catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	write := func(fn func(tx *catalog.Tx) error) {
		t.Helper()
		if _, err := svc.Write(context.Background(), catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}, fn); err != nil {
			t.Fatal(err)
		}
	}
	write(func(tx *catalog.Tx) error {
		for _, n := range []string{"gh", "jira"} {
			if err := tx.CreateConnection([]string{"system", "ai", n}, "MCP", [][2]string{{"url", "https://x.example/" + n}}, false, nil); err != nil {
				return err
			}
		}
		if err := tx.CreatePrincipal(catalog.KindUser, "alice@example.com", nil, false); err != nil {
			return err
		}
		if err := tx.Grant([]catalog.Privilege{catalog.PrivUseConnection}, catalog.TypeSchema, []string{"system", "ai"}, []string{"alice@example.com"}); err != nil {
			return err
		}
		return tx.CreatePolicyDef("pii", catalog.TypeConnection, []string{"system", "ai", "gh"},
			catalog.PolicyDef{Kind: "system.ai.detect_sensitive_data", Call: true, Result: true})
	})
	eng, err := enforce.NewEngine(t.Context(), svc, enforce.Options{Policy: enforce.NewPolicyHook(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	req := func(conn string) enforce.Request {
		return enforce.Request{Subject: "alice@example.com", Privilege: catalog.PrivUseConnection,
			Securable: enforce.SecurableRef{Type: catalog.TypeConnection, Name: conn}}
	}
	if d := eng.Decide(t.Context(), req("gh")); !d.Allowed || !d.Guarded || d.Contextual {
		t.Fatalf("in process: %+v", d)
	}
	if d := eng.Decide(t.Context(), req("jira")); !d.Allowed || d.Guarded {
		t.Fatalf("in process, no guardrail: %+v", d)
	}
	srv := newServer(t, eng, api.Options{})
	var d enforce.Decision
	authorize(t, srv, `{"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"gh"}}`).json(t, &d)
	if d.Allowed || !strings.Contains(d.Reason, "gateway nodes do not run guardrails") {
		t.Fatalf("to a node: %+v", d)
	}
	authorize(t, srv, `{"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"jira"}}`).json(t, &d)
	if !d.Allowed {
		t.Fatalf("to a node, no guardrail: %+v", d)
	}
}
