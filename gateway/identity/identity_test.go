package identity

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/gateway/internal/flight/flighttest"
)

func TestValidTokenEachAlgorithm(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key any
		kid string
	}{
		{jose.RS256, rsaKey, "rsa1"},
		{jose.PS256, rsaKey, "rsa1"},
		{jose.ES256, ecKey, "ec1"},
		{jose.EdDSA, edKey, "ed1"},
	} {
		t.Run(string(tc.alg), func(t *testing.T) {
			e := e.with(t)
			cl := e.claims()
			tok := sign(t, tc.alg, tc.key, tc.kid, cl)
			id := e.mustOK(tok)
			if id.Subject != "alice@example.com" || id.Actor != "" {
				t.Fatalf("subject/actor: %+v", id)
			}
			if id.Issuer != e.idp.srv.URL || !id.Expiry.Equal(e.clk.Now().Add(time.Hour)) {
				t.Fatalf("issuer/expiry: %+v", id)
			}
			if id.Token != tok {
				t.Fatal("Token is not the raw token")
			}
			sum := sha256.Sum256([]byte(tok))
			if id.TokenID != hex.EncodeToString(sum[:16]) || len(id.TokenID) != 32 {
				t.Fatalf("TokenID %q", id.TokenID)
			}
			if !slices.Equal(id.Scopes, []string{"mcp:tools", "read"}) {
				t.Fatalf("scopes %q", id.Scopes)
			}
		})
	}
}

func TestAlgorithmAllowList(t *testing.T) {
	// ES384 is not in the default list, but may be configured.
	e := newEnv(t, nil)
	e.idp.setKeys(jose.JSONWebKey{Key: &ec384Key.PublicKey, KeyID: "ec384"},
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1"})
	tok := sign(t, jose.ES384, ec384Key, "ec384", e.claims())
	e.mustFail(tok, 401, "invalid_token", `signing algorithm "ES384" is not allowed`)
	// RS512 neither.
	e.mustFail(sign(t, jose.RS512, rsaKey, "rsa1", e.claims()), 401, "invalid_token", `"RS512" is not allowed`)

	e2 := newEnv(t, func(c *Config) { c.Algorithms = []string{"ES384"} })
	e2.idp.setKeys(jose.JSONWebKey{Key: &ec384Key.PublicKey, KeyID: "ec384"},
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1"})
	e2.mustOK(sign(t, jose.ES384, ec384Key, "ec384", e2.claims()))
	e2.mustFail(e2.rs256(e2.claims()), 401, "invalid_token", `"RS256" is not allowed`)

	for _, bad := range [][]string{{"none"}, {"HS256"}, {"HS384"}, {"HS512"}, {"RS256", "HS256"}, {"foo"}} {
		_, err := New(context.Background(), Config{Issuers: []Issuer{{URL: "https://idp.example"}},
			Audiences: []string{gwURL}, Algorithms: bad})
		if err == nil {
			t.Fatalf("Algorithms %q accepted", bad)
		}
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestAlgNoneRefused(t *testing.T) {
	e := newEnv(t, nil)
	payload := fmt.Sprintf(`{"iss":%q,"aud":%q,"sub":"user-123","exp":%d}`, e.idp.srv.URL, gwURL,
		e.clk.Now().Add(time.Hour).Unix())
	for _, hdr := range []string{`{"alg":"none"}`, `{"alg":"none","kid":"rsa1"}`, `{"alg":"None"}`, `{"alg":"NONE","typ":"JWT"}`} {
		tok := b64(hdr) + "." + b64(payload) + "."
		e.mustFail(tok, 401, "invalid_token", "is not allowed")
		// Even with a bogus signature part.
		e.mustFail(tok+"c2ln", 401, "invalid_token", "is not allowed")
	}
	if n := e.idp.jwksHits.Load(); n != 0 {
		t.Fatalf("alg none fetched the JWKS (%d)", n)
	}
}

func TestHS256KeyConfusionRefused(t *testing.T) {
	e := newEnv(t, nil)
	der, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	jwkJSON, _ := jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1"}.MarshalJSON()
	for name, secret := range map[string][]byte{"pem": pemBytes, "der": der, "jwk": jwkJSON,
		"n": rsaKey.PublicKey.N.Bytes()} {
		t.Run(name, func(t *testing.T) {
			e := e.with(t)
			tok := sign(t, jose.HS256, secret, "rsa1", e.claims())
			e.mustFail(tok, 401, "invalid_token", `"HS256" is not allowed`)
		})
	}
	// HS512 too, without kid.
	e.mustFail(sign(t, jose.HS512, pemBytes, "", e.claims()), 401, "invalid_token", "is not allowed")
}

func TestKidPointsAtKeyOfWrongType(t *testing.T) {
	e := newEnv(t, nil)
	// RS256 signature, kid naming the EC key.
	e.mustFail(sign(t, jose.RS256, rsaKey, "ec1", e.claims()), 401, "invalid_token", "no signing key of the issuer fits algorithm RS256")
	// ES256 signature, kid naming the RSA key.
	e.mustFail(sign(t, jose.ES256, ecKey, "rsa1", e.claims()), 401, "invalid_token", "fits algorithm ES256")
	// EdDSA signature, kid naming the EC key.
	e.mustFail(sign(t, jose.EdDSA, edKey, "ec1", e.claims()), 401, "invalid_token", "fits algorithm EdDSA")
	// ES256 with the right kid type but signed by another key.
	other := sign(t, jose.RS256, rsaKey2, "rsa1", e.claims())
	e.mustFail(other, 401, "invalid_token", "invalid token signature")
	// A JWK whose own alg differs from the token's is not used.
	e.idp.setKeys(jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1", Algorithm: "PS256"})
	e.clk.Advance(time.Hour)
	e.mustFail(e.rs256(e.claims()), 401, "invalid_token", "fits algorithm RS256")
	e.mustOK(sign(t, jose.PS256, rsaKey, "rsa1", e.claims()))
}

func TestTokenWithoutKid(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.setKeys(
		jose.JSONWebKey{Key: &rsaKey2.PublicKey, KeyID: "old"},
		jose.JSONWebKey{Key: &ecKey.PublicKey, KeyID: "ec1"},
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1"},
	)
	e.mustOK(sign(t, jose.RS256, rsaKey, "", e.claims()))
	e.mustOK(sign(t, jose.ES256, ecKey, "", e.claims()))
	// No Ed25519 key at all: refused.
	e.mustFail(sign(t, jose.EdDSA, edKey, "", e.claims()), 401, "invalid_token", "unknown key")
}

func TestJWKSFiltering(t *testing.T) {
	e := newEnv(t, nil)
	ecPub, err := ecKey.PublicKey.Bytes() // 0x04 || X || Y
	if err != nil {
		t.Fatal(err)
	}
	e.idp.setKeys(
		// Encryption keys, a key restricted to other operations, a private
		// key, a symmetric key: none may verify.
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "enc", Use: "enc"},
		map[string]any{"kty": "EC", "kid": "ops", "crv": "P-256", "key_ops": []string{"encrypt"},
			"x": b64raw(ecPub[1:33]), "y": b64raw(ecPub[33:65])},
		jose.JSONWebKey{Key: ecKey, KeyID: "priv"},
		jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct"},
		map[string]any{"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
		jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1"},
	)
	e.mustOK(e.rs256(e.claims()))
	e.mustFail(sign(t, jose.RS256, rsaKey, "enc", e.claims()), 401, "invalid_token", "unknown key")
	e.mustFail(sign(t, jose.ES256, ecKey, "ops", e.claims()), 401, "invalid_token", "unknown key")
	e.mustFail(sign(t, jose.ES256, ecKey, "priv", e.claims()), 401, "invalid_token", "unknown key")
	e.mustFail(sign(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), "oct", e.claims()), 401, "invalid_token", "not allowed")
}

func b64raw(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// TestNoIssuer: an Authenticator with no issuer (a gateway on Mandate
// access tokens only) refuses every JWT, says why, and fetches nothing.
func TestNoIssuer(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Issuers = nil })
	e.mustFail(e.rs256(e.claims()), 401, "invalid_token", DescNoIssuer)
	e.mustFail("", 401, "invalid_request", DescMissingToken)
	if n := e.idp.jwksHits.Load(); n != 0 {
		t.Fatalf("the JWKS was fetched %d times", n)
	}
}

func TestIssuerAndAudience(t *testing.T) {
	e := newEnv(t, nil)
	cl := e.claims()
	cl["iss"] = "https://evil.example"
	e.mustFail(e.rs256(cl), 401, "invalid_token", "issuer is not trusted")
	cl["iss"] = e.idp.srv.URL + "/"
	e.mustFail(e.rs256(cl), 401, "invalid_token", "issuer is not trusted")
	delete(cl, "iss")
	e.mustFail(e.rs256(cl), 401, "invalid_token", "issuer is not trusted")

	cl = e.claims()
	cl["aud"] = "https://other.example"
	e.mustFail(e.rs256(cl), 401, "invalid_token", "audience")
	cl["aud"] = []string{"https://other.example", gwURL}
	e.mustOK(e.rs256(cl))
	cl["aud"] = resource // the per-request resource is accepted
	e.mustOK(e.rs256(cl))
	cl["aud"] = resource + "/x"
	e.mustFail(e.rs256(cl), 401, "invalid_token", "audience")
	delete(cl, "aud")
	e.mustFail(e.rs256(cl), 401, "invalid_token", "audience")
	cl["aud"] = ""
	e.mustFail(e.rs256(cl), 401, "invalid_token", "audience")

	// A token for another resource of the gateway is refused there.
	cl["aud"] = "https://gw.example/mcp/other"
	e.mustFail(e.rs256(cl), 401, "invalid_token", "audience")
}

func TestTimes(t *testing.T) {
	e := newEnv(t, nil) // leeway 30 s
	now := e.clk.Now()
	at := func(k string, d time.Duration) map[string]any {
		cl := e.claims()
		cl[k] = now.Add(d).Unix()
		return cl
	}
	e.mustFail(e.rs256(at("exp", -time.Hour)), 401, "invalid_token", "expired")
	e.mustOK(e.rs256(at("exp", -30*time.Second)))
	e.mustFail(e.rs256(at("exp", -31*time.Second)), 401, "invalid_token", "expired")
	e.mustFail(e.rs256(at("nbf", time.Hour)), 401, "invalid_token", "not valid yet")
	e.mustOK(e.rs256(at("nbf", 30*time.Second)))
	e.mustFail(e.rs256(at("nbf", 31*time.Second)), 401, "invalid_token", "not valid yet")
	e.mustOK(e.rs256(at("iat", 30*time.Second)))
	e.mustFail(e.rs256(at("iat", 31*time.Second)), 401, "invalid_token", "issued in the future")

	cl := e.claims()
	delete(cl, "exp")
	e.mustFail(e.rs256(cl), 401, "invalid_token", "no expiry")
	cl["exp"] = "tomorrow"
	e.mustFail(e.rs256(cl), 401, "invalid_token", "malformed")
	cl["exp"] = 1e300
	e.mustFail(e.rs256(cl), 401, "invalid_token", "malformed")

	// Negative leeway means none.
	e0 := newEnv(t, func(c *Config) { c.Leeway = -1 })
	cl = e0.claims()
	cl["exp"] = e0.clk.Now().Add(-time.Second).Unix()
	e0.mustFail(e0.rs256(cl), 401, "invalid_token", "expired")
	cl["exp"] = e0.clk.Now().Unix()
	e0.mustOK(e0.rs256(cl))
}

func TestActorAndSubject(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name           string
		mod            func(cl map[string]any)
		subject, actor string
		client         string
	}{
		{"email", func(cl map[string]any) {}, "alice@example.com", "", ""},
		{"sub without email", func(cl map[string]any) { delete(cl, "email") }, "user-123", "", ""},
		{"unverified email", func(cl map[string]any) { cl["email_verified"] = false }, "user-123", "", ""},
		{"unverified email as string", func(cl map[string]any) { cl["email_verified"] = "false" }, "user-123", "", ""},
		{"verified email", func(cl map[string]any) { cl["email_verified"] = true }, "alice@example.com", "", ""},
		{"act", func(cl map[string]any) {
			cl["act"] = map[string]any{"sub": "coding-agent"}
			cl["client_id"] = "coding-agent"
		}, "alice@example.com", "coding-agent", "coding-agent"},
		{"nested act: outermost is the actor", func(cl map[string]any) {
			cl["act"] = map[string]any{"sub": "coding-agent", "act": map[string]any{"sub": "orchestrator", "act": map[string]any{"sub": "first"}}}
		}, "alice@example.com", "coding-agent", ""},
		{"act with sub = client id is still delegation", func(cl map[string]any) {
			cl["sub"] = "coding-agent"
			cl["client_id"] = "coding-agent"
			delete(cl, "email")
			cl["act"] = map[string]any{"sub": "sub-agent"}
		}, "coding-agent", "sub-agent", "coding-agent"},
		{"client credentials: sub = client_id", func(cl map[string]any) {
			cl["sub"] = "coding-agent"
			cl["client_id"] = "coding-agent"
			delete(cl, "email")
		}, "coding-agent", "", "coding-agent"},
		{"client credentials: sub = azp", func(cl map[string]any) {
			cl["sub"] = "coding-agent"
			cl["azp"] = "coding-agent"
			delete(cl, "email")
		}, "coding-agent", "", "coding-agent"},
		{"client_id and no user claims is not the client's own token (fail closed)", func(cl map[string]any) {
			cl["sub"] = "service-account-uuid"
			cl["client_id"] = "coding-agent"
			delete(cl, "email")
		}, "service-account-uuid", "", "coding-agent"},
		{"client credentials: Auth0 gty", func(cl map[string]any) {
			cl["sub"] = "coding-agent@clients"
			cl["azp"] = "coding-agent"
			cl["gty"] = "client-credentials"
			delete(cl, "email")
		}, "coding-agent", "", "coding-agent"},
		{"user token of a client", func(cl map[string]any) {
			cl["client_id"] = "coding-agent"
		}, "alice@example.com", "", "coding-agent"},
		{"user token with azp, no email", func(cl map[string]any) {
			cl["azp"] = "coding-agent"
			delete(cl, "email")
		}, "user-123", "", "coding-agent"},
		{"user token with client_id and a user name", func(cl map[string]any) {
			cl["client_id"] = "coding-agent"
			cl["preferred_username"] = "alice"
			delete(cl, "email")
		}, "user-123", "", "coding-agent"},
		{"client_id wins over azp", func(cl map[string]any) {
			cl["client_id"] = "a"
			cl["azp"] = "b"
		}, "alice@example.com", "", "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			cl := e.claims()
			tc.mod(cl)
			id := e.mustOK(e.rs256(cl))
			if id.Subject != tc.subject || id.Actor != tc.actor || id.ClientID != tc.client {
				t.Fatalf("got subject %q actor %q client %q, want %q %q %q", id.Subject, id.Actor, id.ClientID,
					tc.subject, tc.actor, tc.client)
			}
		})
	}
	for _, tc := range []struct {
		name string
		mod  func(cl map[string]any)
		desc string
	}{
		{"act without sub", func(cl map[string]any) { cl["act"] = map[string]any{"client_id": "x"} }, "act claim has no sub"},
		{"act not an object", func(cl map[string]any) { cl["act"] = "agent" }, "malformed"},
		{"no subject", func(cl map[string]any) { delete(cl, "sub"); delete(cl, "email") }, "no subject"},
		{"email_verified garbage", func(cl map[string]any) { cl["email_verified"] = 3 }, "malformed"},
		{"scope of wrong type", func(cl map[string]any) { cl["scope"] = 3 }, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			cl := e.claims()
			tc.mod(cl)
			e.mustFail(e.rs256(cl), 401, "invalid_token", tc.desc)
		})
	}
}

func TestSubjectClaimConfigured(t *testing.T) {
	for _, tc := range []struct {
		claim, want, fail string
		mod               func(cl map[string]any)
	}{
		{claim: "sub", want: "user-123"},
		{claim: "email", want: "alice@example.com"},
		{claim: "email", fail: "no email claim", mod: func(cl map[string]any) { delete(cl, "email") }},
		{claim: "email", fail: "not verified", mod: func(cl map[string]any) { cl["email_verified"] = false }},
		{claim: "preferred_username", want: "alice", mod: func(cl map[string]any) { cl["preferred_username"] = "alice" }},
		{claim: "preferred_username", fail: "no preferred_username claim"},
		{claim: "preferred_username", fail: "no preferred_username claim", mod: func(cl map[string]any) { cl["preferred_username"] = 7 }},
		{claim: "upn", want: "user-123", mod: func(cl map[string]any) { cl["upn"] = "user-123"; cl["name"] = map[string]any{"x": 1} }},
	} {
		t.Run(tc.claim+tc.want+tc.fail, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Issuers[0].SubjectClaim = tc.claim })
			cl := e.claims()
			if tc.mod != nil {
				tc.mod(cl)
			}
			if tc.fail != "" {
				e.mustFail(e.rs256(cl), 401, "invalid_token", tc.fail)
				return
			}
			if id := e.mustOK(e.rs256(cl)); id.Subject != tc.want {
				t.Fatalf("subject %q, want %q", id.Subject, tc.want)
			}
		})
	}
}

func TestScopes(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		name string
		set  map[string]any
		want []string
	}{
		{"scope string", map[string]any{"scope": " a  b\tc "}, []string{"a", "b", "c"}},
		{"scp array", map[string]any{"scope": nil, "scp": []string{"a", "b"}}, []string{"a", "b"}},
		{"scp string", map[string]any{"scope": nil, "scp": "a b"}, []string{"a", "b"}},
		{"scope array", map[string]any{"scope": []string{"x"}}, []string{"x"}},
		{"scope wins over scp", map[string]any{"scope": "a", "scp": []string{"b"}}, []string{"a"}},
		{"none", map[string]any{"scope": nil}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.with(t)
			cl := e.claims()
			for k, v := range tc.set {
				if v == nil {
					delete(cl, k)
				} else {
					cl[k] = v
				}
			}
			if id := e.mustOK(e.rs256(cl)); !slices.Equal(id.Scopes, tc.want) {
				t.Fatalf("scopes %q, want %q", id.Scopes, tc.want)
			}
		})
	}
}

func TestRequiredScopes(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequiredScopes = []string{"mcp:tools", "mcp:call"} })
	cl := e.claims()
	ae := e.mustFail(e.rs256(cl), 403, "insufficient_scope", "scope")
	if ae.Scope != "mcp:tools mcp:call" {
		t.Fatalf("Scope %q", ae.Scope)
	}
	cl["scp"] = []string{"mcp:call", "mcp:tools", "other"}
	delete(cl, "scope")
	e.mustOK(e.rs256(cl))
	// 401s carry the needed scopes too (for the client's next request).
	cl["aud"] = "https://other.example"
	if ae := e.mustFail(e.rs256(cl), 401, "invalid_token", "audience"); ae.Scope != "mcp:tools mcp:call" {
		t.Fatalf("401 Scope %q", ae.Scope)
	}
	// An invalid token never gets 403, even without the scopes.
	cl = e.claims()
	cl["exp"] = e.clk.Now().Add(-time.Hour).Unix()
	e.mustFail(e.rs256(cl), 401, "invalid_token", "expired")
}

func TestKeyRotation(t *testing.T) {
	e := newEnv(t, nil)
	e.mustOK(e.rs256(e.claims()))
	if n := e.idp.jwksHits.Load(); n != 1 {
		t.Fatalf("jwks hits %d, want 1", n)
	}
	// The IdP publishes a new key; a token signed with it arrives.
	e.idp.setKeys(jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "rsa1"},
		jose.JSONWebKey{Key: &rsaKey2.PublicKey, KeyID: "rsa2"})
	tok2 := sign(t, jose.RS256, rsaKey2, "rsa2", e.claims())
	// Within MinRefreshInterval of the last fetch: no refetch.
	e.clk.Advance(MinRefreshInterval - time.Second)
	e.mustFail(tok2, 401, "invalid_token", "unknown key")
	if n := e.idp.jwksHits.Load(); n != 1 {
		t.Fatalf("refetched within the interval: %d", n)
	}
	e.clk.Advance(time.Second)
	e.mustOK(tok2)
	if n := e.idp.jwksHits.Load(); n != 2 {
		t.Fatalf("jwks hits %d, want 2", n)
	}
	// The old key goes away: old tokens (uncached) fail after the next refresh.
	e.idp.setKeys(jose.JSONWebKey{Key: &rsaKey2.PublicKey, KeyID: "rsa2"})
	e.clk.Advance(DefaultKeysTTL)
	e.mustFail(e.rs256(e.claims()), 401, "invalid_token", "unknown key")
	e.mustOK(sign(t, jose.RS256, rsaKey2, "rsa2", e.claims()))
}

func TestUnknownKidFlood(t *testing.T) {
	e := newEnv(t, nil)
	e.mustOK(e.rs256(e.claims()))
	e.clk.Advance(time.Hour) // the set is now stale, the gate open
	base := e.idp.jwksHits.Load()
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := sign(t, jose.RS256, rsaKey2, fmt.Sprintf("bad-%d", i), e.claims())
			id, err := e.a.Authenticate(context.Background(), request("Bearer "+tok), resource)
			if err == nil || id != nil {
				t.Error("unknown kid accepted")
			}
		}()
	}
	wg.Wait()
	if n := e.idp.jwksHits.Load() - base; n != 1 {
		t.Fatalf("flood of unknown kids: %d JWKS fetches, want 1", n)
	}
	// Within the interval, further unknown kids cause no fetch.
	for i := range 50 {
		e.clk.Advance(100 * time.Millisecond)
		e.mustFail(sign(t, jose.RS256, rsaKey2, fmt.Sprintf("more-%d", i), e.claims()), 401, "invalid_token", "unknown key")
	}
	if n := e.idp.jwksHits.Load() - base; n != 1 {
		t.Fatalf("%d JWKS fetches in one interval, want 1", n)
	}
	// After it, one more.
	e.clk.Advance(MinRefreshInterval)
	for i := range 20 {
		e.mustFail(sign(t, jose.RS256, rsaKey2, fmt.Sprintf("later-%d", i), e.claims()), 401, "invalid_token", "unknown key")
	}
	if n := e.idp.jwksHits.Load() - base; n != 2 {
		t.Fatalf("%d JWKS fetches in two intervals, want 2", n)
	}
	// Valid tokens still pass throughout.
	e.mustOK(e.rs256(e.claims()))
}

// TestKeysMissStraddlesFetch: a caller that found the key set expired
// while another caller's fetch was answered (it joins no flight: that one
// is over) uses the set fetched rather than fetching again, even when
// that fetch took MinRefreshInterval.
func TestKeysMissStraddlesFetch(t *testing.T) {
	e := newEnv(t, nil)
	e.mustOK(e.rs256(e.claims()))
	e.clk.Advance(time.Hour) // past the set's max-age
	lateTok := e.rs256(e.claims())
	flighttest.Straddle(t, func(h func()) { e.a.afterMiss = h }, func() error {
		_, err := e.a.Authenticate(context.Background(), request("Bearer "+lateTok), resource)
		return err
	}, func() error {
		e.idp.set(func(p *idp) { p.onJWKS = func() { e.clk.Advance(MinRefreshInterval) } }) // a slow JWKS answer
		cl := e.claims()
		cl["sub"] = "another-user"
		e.mustOK(e.rs256(cl))
		return nil
	})
	if n := e.idp.jwksHits.Load(); n != 2 {
		t.Fatalf("%d JWKS fetches, want 2: the late caller fetched again for the set just fetched", n)
	}
}

func TestJWKSCacheControl(t *testing.T) {
	for _, tc := range []struct {
		cc  string
		ttl time.Duration
	}{
		{"", DefaultKeysTTL},
		{"public, max-age=3600", time.Hour},
		{"max-age=5", MinKeysTTL},
		{"max-age=999999", MaxKeysTTL},
		{"no-store", MinKeysTTL},
		{"max-age=bogus", DefaultKeysTTL},
	} {
		if got := maxAge(tc.cc); got != tc.ttl {
			t.Errorf("maxAge(%q) = %v, want %v", tc.cc, got, tc.ttl)
		}
	}
	e := newEnv(t, nil)
	e.idp.set(func(p *idp) { p.cacheControl = "max-age=120" })
	e.mustOK(e.rs256(e.claims()))
	e.clk.Advance(119 * time.Second)
	e.mustOK(e.rs256(map[string]any{"iss": e.idp.srv.URL, "aud": gwURL, "sub": "x", "exp": e.clk.Now().Add(time.Hour).Unix()}))
	if n := e.idp.jwksHits.Load(); n != 1 {
		t.Fatalf("jwks hits %d before max-age, want 1", n)
	}
	e.clk.Advance(2 * time.Second)
	e.mustOK(e.rs256(map[string]any{"iss": e.idp.srv.URL, "aud": gwURL, "sub": "y", "exp": e.clk.Now().Add(time.Hour).Unix()}))
	if n := e.idp.jwksHits.Load(); n != 2 {
		t.Fatalf("jwks hits %d after max-age, want 2", n)
	}
	if n := e.idp.discoHits.Load(); n != 1 {
		t.Fatalf("discovery hits %d, want 1", n)
	}
}

func TestIdPDownAtStart(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.setDown(true)
	tok := e.rs256(e.claims())
	e.mustFail(tok, 401, "invalid_token", "signing keys are unavailable")
	hits := e.idp.discoHits.Load() + e.idp.jwksHits.Load()
	for range 20 {
		e.mustFail(tok, 401, "invalid_token", "signing keys are unavailable")
	}
	if n := e.idp.discoHits.Load() + e.idp.jwksHits.Load(); n != hits {
		t.Fatalf("a down IdP was asked %d more times within the interval", n-hits)
	}
	if err := e.a.Warm(context.Background()); err == nil {
		t.Fatal("Warm succeeded with the IdP down")
	}
	e.idp.setDown(false)
	e.clk.Advance(MinRefreshInterval)
	e.mustOK(tok)
	// The IdP goes down again: the keys we have are kept.
	e.idp.setDown(true)
	e.clk.Advance(24 * time.Hour)
	e.mustOK(e.rs256(e.claims()))
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, nil)
	e.idp.set(func(p *idp) { p.issuerInDoc = "https://impostor.example" })
	e.mustFail(e.rs256(e.claims()), 401, "invalid_token", "unavailable")

	// An explicit JWKSURL skips discovery.
	e2 := newEnv(t, func(c *Config) { c.Issuers[0].JWKSURL = c.Issuers[0].URL + "/jwks" })
	e2.mustOK(e2.rs256(e2.claims()))
	if e2.idp.discoHits.Load() != 0 {
		t.Fatal("discovery used despite JWKSURL")
	}
	if err := e2.a.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestMultipleIssuers(t *testing.T) {
	p1, p2 := newIDP(t), newIDP(t)
	p2.setKeys(jose.JSONWebKey{Key: &rsaKey2.PublicKey, KeyID: "rsa1"}) // same kid, other key
	clk := newClock()
	a, err := New(context.Background(), Config{Issuers: []Issuer{p1.issuer(), p2.issuer()},
		Audiences: []string{gwURL}, HTTPClient: p1.srv.Client(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	cl := map[string]any{"iss": p2.srv.URL, "aud": gwURL, "sub": "bob", "exp": clk.Now().Add(time.Hour).Unix()}
	if _, ae := authReq(t, a, request("Bearer "+sign(t, jose.RS256, rsaKey2, "rsa1", cl))); ae != nil {
		t.Fatal(ae)
	}
	// Signed by issuer 1's key but claiming issuer 2: refused.
	cl["sub"] = "mallory"
	_, ae := authReq(t, a, request("Bearer "+sign(t, jose.RS256, rsaKey, "rsa1", cl)))
	checkErr(t, nil, ae, 401, "invalid_token", "signature")
	if got := a.AuthorizationServers(); !slices.Equal(got, []string{p1.srv.URL, p2.srv.URL}) {
		t.Fatalf("AuthorizationServers %q", got)
	}
}

func TestCache(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CacheTTL = time.Hour })
	cl := e.claims()
	cl["exp"] = e.clk.Now().Add(10 * time.Minute).Unix()
	tok := e.rs256(cl)
	id1 := e.mustOK(tok)
	e.idp.setDown(true)
	hits := e.idp.jwksHits.Load() + e.idp.discoHits.Load()
	if id2 := e.mustOK(tok); id1 != id2 {
		t.Fatal("cache hit returned another identity")
	}
	// Within leeway after exp: still accepted, from the cache.
	e.clk.Advance(10*time.Minute + 29*time.Second)
	if id := e.mustOK(tok); id != id1 {
		t.Fatal("not served from the cache")
	}
	// Past exp + leeway: refused on the cache path.
	e.clk.Advance(2 * time.Second)
	e.mustFail(tok, 401, "invalid_token", "expired")
	e.mustFail(tok, 401, "invalid_token", "expired")
	if n := e.idp.jwksHits.Load() + e.idp.discoHits.Load(); n != hits {
		t.Fatalf("IdP accessed on cache hits: %d", n-hits)
	}
}

func TestCacheTTL(t *testing.T) {
	e := newEnv(t, nil) // CacheTTL 5 min
	tok := e.rs256(e.claims())
	id1 := e.mustOK(tok)
	e.clk.Advance(DefaultCacheTTL - time.Second)
	if e.mustOK(tok) != id1 {
		t.Fatal("not cached")
	}
	// Past CacheTTL the token is verified again (the keys are still fresh).
	e.clk.Advance(2 * time.Second)
	if id := e.mustOK(tok); id == id1 || id.TokenID != id1.TokenID {
		t.Fatal("not re-verified after CacheTTL")
	}
	// A key withdrawn from the JWKS stops admitting the token once both the
	// key set and the cached identity are past their lifetimes.
	e.idp.setKeys(jose.JSONWebKey{Key: &rsaKey2.PublicKey, KeyID: "rsa2"})
	e.clk.Advance(DefaultKeysTTL)
	e.mustFail(tok, 401, "invalid_token", "unknown key")
}

func TestCacheAudiencePerResource(t *testing.T) {
	e := newEnv(t, nil)
	cl := e.claims()
	cl["aud"] = resource
	tok := e.rs256(cl)
	e.mustOK(tok)
	e.mustOK(tok) // cached
	id, err := e.a.Authenticate(context.Background(), request("Bearer "+tok), "https://gw.example/mcp/other")
	if err == nil || id != nil {
		t.Fatal("cached token accepted for another resource")
	}
	if ae := err.(interface{ Error() string }); !strings.Contains(ae.Error(), "audience") {
		t.Fatal(err)
	}
}

func TestCacheBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CacheSize = 64 })
	for i := range 500 {
		cl := e.claims()
		cl["sub"] = fmt.Sprint("u", i)
		delete(cl, "email")
		e.mustOK(e.rs256(cl))
	}
	if n := e.a.cache.len(); n > 64 || n < 32 {
		t.Fatalf("cache holds %d entries, bound 64", n)
	}
	// Disabled cache.
	e2 := newEnv(t, func(c *Config) { c.CacheSize = -1 })
	tok := e2.rs256(e2.claims())
	if first, second := e2.mustOK(tok), e2.mustOK(tok); first == second {
		t.Fatal("cache disabled but identity shared")
	}
}

func TestCacheConcurrent(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CacheSize = 100 })
	toks := make([]string, 300)
	for i := range toks {
		cl := e.claims()
		cl["sub"] = fmt.Sprint("u", i)
		delete(cl, "email")
		toks[i] = e.rs256(cl)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 600 {
				tok := toks[(i*7+g*13)%len(toks)]
				id, err := e.a.Authenticate(context.Background(), request("Bearer "+tok), resource)
				if err != nil || id.Token != tok {
					t.Errorf("token %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestTokenTooLarge(t *testing.T) {
	e := newEnv(t, nil)
	cl := e.claims()
	cl["pad"] = strings.Repeat("x", MaxTokenSize)
	e.mustFail(e.rs256(cl), 401, "invalid_token", "too large")
	e.mustFail(strings.Repeat("a", MaxTokenSize+1), 401, "invalid_token", "too large")
	cl["pad"] = strings.Repeat("x", 8<<10)
	e.mustOK(e.rs256(cl))
}

func TestHeaderForms(t *testing.T) {
	e := newEnv(t, nil)
	tok := e.rs256(e.claims())
	for _, h := range []string{"Bearer " + tok, "bearer " + tok, "BEARER " + tok, "BeArEr " + tok,
		"Bearer    " + tok + "   ", "\tBearer\t" + tok + "\t", "  Bearer " + tok} {
		if _, ae := authReq(t, e.a, request(h)); ae != nil {
			t.Fatalf("%q: %v", h[:10], ae)
		}
	}
	for _, tc := range []struct {
		hdr  []string
		desc string
	}{
		{nil, DescMissingToken},
		{[]string{""}, DescMissingToken},
		{[]string{"Bearer"}, DescMissingToken},
		{[]string{"Bearer   "}, DescMissingToken},
		{[]string{"Basic dXNlcjpwYXNz"}, DescMissingToken},
		{[]string{"Bearer" + tok}, DescMissingToken},
		{[]string{"Token " + tok}, DescMissingToken},
		{[]string{tok}, DescMissingToken},
		{[]string{"Bearer " + tok + " extra"}, DescMalformedToken},
		{[]string{"Bearer " + tok + ",x"}, DescMalformedToken},
		{[]string{`Bearer "` + tok + `"`}, DescMalformedToken},
		{[]string{"Bearer " + tok, "Bearer " + tok}, DescMalformedToken},
		{[]string{"Bearer " + tok, "Basic x"}, DescMalformedToken},
	} {
		_, ae := authReq(t, e.a, request(tc.hdr...))
		checkErr(t, nil, ae, 401, "invalid_request", tc.desc)
		if ae.Description != tc.desc {
			t.Fatalf("description %q, want %q", ae.Description, tc.desc)
		}
	}
	// A token in the query string is refused, even with a good header.
	for _, q := range []string{"?access_token=" + tok, "?a=1&access_token=x"} {
		r := request("Bearer " + tok)
		r.URL.RawQuery = q[1:]
		_, ae := authReq(t, e.a, r)
		checkErr(t, nil, ae, 401, "invalid_request", "query string")
	}
	r := request("Bearer " + tok)
	r.URL.RawQuery = "note=access_tokens_are_bad"
	if _, ae := authReq(t, e.a, r); ae != nil {
		t.Fatal(ae)
	}
}

func TestNewValidation(t *testing.T) {
	ok := Config{Issuers: []Issuer{{URL: "https://idp.example"}}, Audiences: []string{gwURL}}
	if _, err := New(context.Background(), ok); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(c *Config){
		"no audiences":      func(c *Config) { c.Audiences = nil },
		"empty audience":    func(c *Config) { c.Audiences = []string{""} },
		"http issuer":       func(c *Config) { c.Issuers = []Issuer{{URL: "http://idp.example"}} },
		"relative issuer":   func(c *Config) { c.Issuers = []Issuer{{URL: "/idp"}} },
		"issuer with query": func(c *Config) { c.Issuers = []Issuer{{URL: "https://idp.example?x=1"}} },
		"ftp issuer":        func(c *Config) { c.Issuers = []Issuer{{URL: "ftp://idp.example"}} },
		"http jwks": func(c *Config) {
			c.Issuers = []Issuer{{URL: "https://idp.example", JWKSURL: "http://idp.example/jwks"}}
		},
		"duplicate issuer":   func(c *Config) { c.Issuers = []Issuer{{URL: "https://idp.example"}, {URL: "https://idp.example"}} },
		"alg none":           func(c *Config) { c.Algorithms = []string{"none"} },
		"bad required scope": func(c *Config) { c.RequiredScopes = []string{"a b"} },
	} {
		c := ok
		mod(&c)
		if _, err := New(context.Background(), c); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost/realms/x", "http://[::1]:9"} {
		c := ok
		c.Issuers = []Issuer{{URL: u}}
		if _, err := New(context.Background(), c); err != nil {
			t.Errorf("loopback %s refused: %v", u, err)
		}
	}
}

func TestErrorsNeverContainToken(t *testing.T) {
	e := newEnv(t, nil)
	cl := e.claims()
	cl["iss"] = "https://evil.example/" + strings.Repeat("z", 200)
	tok := e.rs256(cl)
	ae := e.mustFail(tok, 401, "invalid_token", "issuer")
	for _, part := range strings.Split(tok, ".") {
		if strings.Contains(ae.Error(), part) {
			t.Fatal("error contains a part of the token")
		}
	}
}

func TestRedirectToHTTPRefused(t *testing.T) {
	if err := checkRedirect(&http.Request{URL: mustURL("http://idp.example/jwks")}, nil); err == nil {
		t.Fatal("redirect to http accepted")
	}
	if err := checkRedirect(&http.Request{URL: mustURL("https://idp.example/jwks")}, nil); err != nil {
		t.Fatal(err)
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestDiscoveryRFC8414(t *testing.T) {
	genKeys(t)
	var srvURL string
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server/tenant/a", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, srvURL+"/tenant/a", srvURL+"/keys")
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ecKey.PublicKey, KeyID: "k"}}})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	srvURL = srv.URL
	clk := newClock()
	a, err := New(context.Background(), Config{Issuers: []Issuer{{URL: srv.URL + "/tenant/a"}},
		Audiences: []string{gwURL}, HTTPClient: srv.Client(), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jose.ES256, ecKey, "k", map[string]any{"iss": srv.URL + "/tenant/a", "aud": gwURL,
		"sub": "svc", "exp": clk.Now().Add(time.Hour).Unix()})
	if _, ae := authReq(t, a, request("Bearer "+tok)); ae != nil {
		t.Fatal(ae)
	}
}
