package main

import (
	"testing"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limitstage"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// BenchmarkLimitStageMCP is the limits stage of one tools/call over the
// catalog's names (catalogIDs, as mandate serve resolves them) with no
// rate limit or budget defined (none), and with a request limit on the
// connection (limited).
//
//	go test -run '^$' -bench BenchmarkLimitStageMCP -benchmem ./cmd/mandate
func BenchmarkLimitStageMCP(b *testing.B) {
	kr, _ := catalog.NewKeyring(make([]byte, 32))
	svc, err := catalog.Open(b.Context(), catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = svc.Close() })
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "BENCH"}
	if _, err := svc.Write(b.Context(), admin, func(tx *catalog.Tx) error {
		if err := tx.CreatePrincipal(catalog.KindUser, "alice@example.com", nil, false); err != nil {
			return err
		}
		if err := tx.CreatePrincipal(catalog.KindServicePrincipal, "coding-agent", nil, false); err != nil {
			return err
		}
		return tx.CreateConnection([]string{"system", "ai", "bench"}, "MCP", [][2]string{{"url", "http://127.0.0.1:1/mcp"}}, false, nil)
	}); err != nil {
		b.Fatal(err)
	}
	ids := catalogIDs{svc}
	conn, ok := ids.SecurableID(catalog.TypeConnection, "system.ai.bench")
	if !ok {
		b.Fatal("no connection")
	}
	for _, tc := range []struct {
		name string
		defs limits.Definitions
	}{
		{"none", limits.Definitions{}},
		{"limited", limits.Definitions{RateLimits: []limits.RateLimit{{Securable: conn, Level: limits.LevelEachUser, Requests: 1 << 40}}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			lim := limits.New(limits.Options{})
			if err := lim.Apply(b.Context(), tc.defs); err != nil {
				b.Fatal(err)
			}
			st := limitstage.New(lim, ids)
			c := &pipeline.Call{Identity: &gateway.Identity{Subject: "alice@example.com", Actor: "coding-agent"}, Action: "tools/call",
				Securable: enforce.SecurableRef{Type: catalog.TypeConnection, Name: "system.ai.bench"}}
			b.ReportAllocs()
			for b.Loop() {
				r, err := st.Reserve(b.Context(), c)
				if err != nil {
					b.Fatal(err)
				}
				if r != nil {
					r.Settle(b.Context(), c, pipeline.Usage{})
				}
			}
		})
	}
}
