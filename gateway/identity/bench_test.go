package identity

import (
	"context"
	"net/http"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkAuthenticateCached: a token seen before (the steady state of an
// agent session): header parse, cache lookup, exp and audience check.
func BenchmarkAuthenticateCached(b *testing.B) {
	e := newEnv(b, nil)
	tok := e.rs256(e.claims())
	r := request("Bearer " + tok)
	ctx := context.Background()
	if _, err := e.a.Authenticate(ctx, r, resource); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.a.Authenticate(ctx, r, resource); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticateCachedParallel: cache hits from all CPUs, 64
// distinct tokens (shard lock contention).
func BenchmarkAuthenticateCachedParallel(b *testing.B) {
	e := newEnv(b, nil)
	reqs := make([]*http.Request, 64)
	for i := range reqs {
		cl := e.claims()
		cl["jti"] = i
		reqs[i] = request("Bearer " + e.rs256(cl))
		if _, err := e.a.Authenticate(context.Background(), reqs[i], resource); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := 0
		for pb.Next() {
			if _, err := e.a.Authenticate(ctx, reqs[i%len(reqs)], resource); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkAuthenticateUncached: full verification (cache disabled; keys
// already fetched): parse, signature, claims, identity.
func BenchmarkAuthenticateUncached(b *testing.B) {
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key func() any
		kid string
	}{
		{jose.RS256, func() any { return rsaKey }, "rsa1"},
		{jose.ES256, func() any { return ecKey }, "ec1"},
		{jose.EdDSA, func() any { return edKey }, "ed1"},
	} {
		b.Run(string(tc.alg), func(b *testing.B) {
			e := newEnv(b, func(c *Config) { c.CacheSize = -1 })
			tok := sign(b, tc.alg, tc.key(), tc.kid, e.claims())
			r := request("Bearer " + tok)
			ctx := context.Background()
			if _, err := e.a.Authenticate(ctx, r, resource); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := e.a.Authenticate(ctx, r, resource); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
