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
	svc := limitsCatalog(b, func(tx *catalog.Tx) error {
		return tx.CreateConnection([]string{"system", "ai", "bench"}, "MCP", [][2]string{{"url", "http://127.0.0.1:1/mcp"}}, false, nil)
	})
	ids := newCatalogIDs(svc)
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

// BenchmarkLimitStageLLM is the limits stage of one model call over the
// catalog's names (as mandate serve resolves them): a FOR EACH USER rate
// limit of requests and tokens and a FOR EACH USER budget on the model
// service, reserved and settled; the caller acts through an agent.
//
//	go test -run '^$' -bench BenchmarkLimitStageLLM -benchmem ./cmd/mandate
func BenchmarkLimitStageLLM(b *testing.B) {
	svc := limitsCatalog(b, func(tx *catalog.Tx) error {
		if err := tx.CreateProviderService([]string{"system", "ai", "openai_prod"}, [][2]string{{"provider", "openai"}, {"api_key", "sk"}, {"prices", "gpt-4.1=2/8/0.5"}}, false, nil); err != nil {
			return err
		}
		return tx.CreateModelService([]string{"system", "ai", "frontier"}, [][2]string{{"destinations", "openai_prod/gpt-4.1"}}, false, nil)
	})
	ids := newCatalogIDs(svc)
	ms, ok := ids.SecurableID(catalog.TypeModelService, "system.ai.frontier")
	if !ok {
		b.Fatal("no model service")
	}
	lim := limits.New(limits.Options{})
	const big = 1 << 40
	if err := lim.Apply(b.Context(), limits.Definitions{
		RateLimits: []limits.RateLimit{{Securable: ms, Level: limits.LevelEachUser, Requests: big, Tokens: big}},
		Budgets:    []limits.Budget{{Name: "each", Limit: limits.MaxMoney / 4, Level: limits.LevelEachUser, Service: ms, ServiceName: "system.ai.frontier"}},
	}); err != nil {
		b.Fatal(err)
	}
	st := limitstage.New(lim, ids)
	price := gateway.ModelPrice{Input: 2, Output: 8, CachedInput: 0.5, HasCachedInput: true}
	b.ReportAllocs()
	for b.Loop() {
		c := &pipeline.Call{Identity: &gateway.Identity{Subject: "alice@example.com", Actor: "coding-agent"},
			Securable: enforce.SecurableRef{Type: catalog.TypeModelService, Name: "system.ai.frontier"},
			Model: &pipeline.ModelCall{InputTokens: 200, MaxTokens: 256, Attempts: 1,
				Destinations: []pipeline.ModelDestination{{Service: "openai_prod", Model: "gpt-4.1", Price: price, Priced: true}}}}
		r, err := st.Reserve(b.Context(), c)
		if err != nil || r == nil {
			b.Fatal(r, err)
		}
		r.Settle(b.Context(), c, pipeline.Usage{InputTokens: 200, OutputTokens: 100})
	}
}

// limitsCatalog opens an in-memory catalog holding the user
// alice@example.com and the service principal coding-agent, then what
// create adds, all as the admin.
func limitsCatalog(tb testing.TB, create func(tx *catalog.Tx) error) *catalog.Service {
	tb.Helper()
	kr, _ := catalog.NewKeyring(make([]byte, 32))
	svc, err := catalog.Open(tb.Context(), catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: "x"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = svc.Close() })
	admin := catalog.WriteRequest{Caller: catalog.Caller{Principal: catalog.AdminUser}, Action: "TEST"}
	if _, err := svc.Write(tb.Context(), admin, func(tx *catalog.Tx) error {
		if err := tx.CreatePrincipal(catalog.KindUser, "alice@example.com", nil, false); err != nil {
			return err
		}
		if err := tx.CreatePrincipal(catalog.KindServicePrincipal, "coding-agent", nil, false); err != nil {
			return err
		}
		return create(tx)
	}); err != nil {
		tb.Fatal(err)
	}
	return svc
}
