package upstream

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway"
)

// Cached Authorization calls: the hot path of the credentials stage.
// Run: go test -run='^$' -bench=. -benchmem ./gateway/upstream/

func benchSetup(b *testing.B, mode string) (*Credentials, *gateway.Connection, *gateway.Identity) {
	clk := newClock()
	ks := newKeys(b, clk, "")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"access_token": "exchanged", "token_type": "Bearer", "expires_in": 3600})
	}))
	b.Cleanup(srv.Close)
	cr := newCreds(b, clk, func(c *Config) { c.Keys = ks })
	c := &gateway.Connection{Name: "system.ai.github_mcp", URL: "https://mcp.example.com/mcp", AuthMode: mode,
		Options: map[string]string{"url": "https://mcp.example.com/mcp", "auth_mode": mode, "scopes": "repo:read issues:write",
			"token_endpoint": srv.URL, "client_id": "gw"},
		Secrets: map[string]string{"client_secret": "secret"}}
	id := &gateway.Identity{Subject: "alice@example.com", Actor: "research-agent", Token: aliceToken, TokenID: "tid-alice",
		Expiry: clk.Now().Add(time.Hour)}
	if _, err := cr.Authorization(context.Background(), c, id); err != nil {
		b.Fatal(err)
	}
	return cr, c, id
}

func benchCached(b *testing.B, mode string) {
	cr, c, id := benchSetup(b, mode)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cr.Authorization(ctx, c, id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if st := cr.Stats(); st.Mints+st.Exchanges != 1 {
		b.Fatalf("cache missed: %+v", st)
	}
}

func benchCachedParallel(b *testing.B, mode string) {
	cr, c, id := benchSetup(b, mode)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cr.Authorization(ctx, c, id); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCachedMandateJWT(b *testing.B)            { benchCached(b, ModeMandateJWT) }
func BenchmarkCachedTokenExchange(b *testing.B)         { benchCached(b, ModeTokenExchange) }
func BenchmarkCachedMandateJWTParallel(b *testing.B)    { benchCachedParallel(b, ModeMandateJWT) }
func BenchmarkCachedTokenExchangeParallel(b *testing.B) { benchCachedParallel(b, ModeTokenExchange) }

// BenchmarkMint is the cost of a cache miss for mandate_jwt (ES256).
func BenchmarkMint(b *testing.B) {
	cr, c, id := benchSetup(b, ModeMandateJWT)
	k := mintKey(c, id)
	now := cr.now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cr.mint(c, id, now, &k); err != nil {
			b.Fatal(err)
		}
	}
}
