package upstream

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// fetchJWKS gets the JWK Set through the HTTP handler.
func fetchJWKS(t *testing.T, ks *KeySet) (jose.JSONWebKeySet, []byte, http.Header) {
	t.Helper()
	rec := httptest.NewRecorder()
	ks.JWKSHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil))
	if rec.Code != 200 {
		t.Fatalf("jwks status %d", rec.Code)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	return set, rec.Body.Bytes(), rec.Header()
}

type mintedClaims struct {
	jwt.Claims
	Act *struct {
		Sub string `json:"sub"`
	} `json:"act"`
	Scope    string `json:"scope"`
	ClientID string `json:"client_id"`
}

// verifyMinted checks the signature against the published JWKS and the
// standard claims at time at; it returns the claims and the kid.
func verifyMinted(t *testing.T, ks *KeySet, authz string, aud string, at time.Time) (mintedClaims, string) {
	t.Helper()
	raw, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok {
		t.Fatalf("authorization %q", authz)
	}
	tok, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if typ := tok.Headers[0].ExtraHeaders[jose.HeaderType]; typ != "at+jwt" {
		t.Errorf("typ %v", typ)
	}
	set, _, _ := fetchJWKS(t, ks)
	var c mintedClaims
	if err := tok.Claims(set, &c); err != nil {
		t.Fatalf("signature does not verify with the published JWKS: %v", err)
	}
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: "https://gw.example.com", AnyAudience: jwt.Audience{aud}, Time: at}, 0); err != nil {
		t.Fatalf("claims: %v", err)
	}
	return c, tok.Headers[0].KeyID
}

func TestMandateJWTClaims(t *testing.T) {
	clk := newClock()
	ks := newKeys(t, clk, t.TempDir())
	cr := newCreds(t, clk, func(c *Config) { c.Keys = ks })
	c := conn("mandate_jwt", map[string]string{"scopes": "repo:read, issues:write"}, nil)
	id := alice(clk)
	authz, err := cr.Authorization(context.Background(), c, id)
	if err != nil {
		t.Fatal(err)
	}
	claims, kid := verifyMinted(t, ks, authz, "https://mcp.example.com/mcp", clk.Now())
	if claims.Subject != "alice@example.com" || claims.Act == nil || claims.Act.Sub != "research-agent" {
		t.Errorf("sub %q act %+v", claims.Subject, claims.Act)
	}
	if claims.Scope != "repo:read issues:write" || claims.ClientID != "mandate" || claims.ID == "" {
		t.Errorf("scope %q client_id %q jti %q", claims.Scope, claims.ClientID, claims.ID)
	}
	life := claims.Expiry.Time().Sub(claims.IssuedAt.Time())
	if life <= 0 || life > 5*time.Minute || !claims.NotBefore.Time().Equal(claims.IssuedAt.Time()) {
		t.Errorf("exp-iat = %s", life)
	}
	if kid == "" {
		t.Error("no kid")
	}
	if strings.Contains(authz, aliceToken) || strings.Contains(authz, "inbound-alice") {
		t.Fatal("inbound token in the minted token")
	}

	// Without an actor there is no act claim; the audience option wins.
	c2 := conn("mandate_jwt", map[string]string{"audience": "api://github"}, nil)
	b := bob(clk)
	authz2, err := cr.Authorization(context.Background(), c2, b)
	if err != nil {
		t.Fatal(err)
	}
	claims2, _ := verifyMinted(t, ks, authz2, "api://github", clk.Now())
	if claims2.Act != nil || claims2.Subject != "bob@example.com" || claims2.Scope != "" {
		t.Errorf("%+v", claims2)
	}
	raw, _ := strings.CutPrefix(authz2, "Bearer ")
	payload := decodeSegment(t, raw, 1)
	if strings.Contains(payload, `"act"`) || strings.Contains(payload, `"scope"`) {
		t.Errorf("payload %s", payload)
	}
	if claims2.ID == claims.ID {
		t.Error("jti reused")
	}
}

func TestMandateJWTLifetimeConfig(t *testing.T) {
	clk := newClock()
	ks := newKeys(t, clk, "")
	if _, err := New(Config{Issuer: "https://gw.example.com", Keys: ks, MintLifetime: 6 * time.Minute}); err == nil {
		t.Fatal("MintLifetime over 5m accepted")
	}
	if _, err := New(Config{Keys: ks}); err == nil {
		t.Fatal("Keys without Issuer accepted")
	}
	cr := newCreds(t, clk, func(c *Config) { c.Keys = ks; c.MintLifetime = time.Minute })
	authz, err := cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), alice(clk))
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := verifyMinted(t, ks, authz, "https://mcp.example.com/mcp", clk.Now())
	if d := claims.Expiry.Time().Sub(claims.IssuedAt.Time()); d != time.Minute {
		t.Fatalf("lifetime %s", d)
	}
	// Capped at the inbound token's expiry.
	id := bob(clk)
	id.Expiry = clk.Now().Add(20 * time.Second)
	authz, err = cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), id)
	if err != nil {
		t.Fatal(err)
	}
	claims, _ = verifyMinted(t, ks, authz, "https://mcp.example.com/mcp", clk.Now())
	if !claims.Expiry.Time().Equal(id.Expiry) {
		t.Fatalf("exp %s, inbound expiry %s", claims.Expiry.Time(), id.Expiry)
	}
}

func TestMandateJWTCaching(t *testing.T) {
	clk := newClock()
	ks := newKeys(t, clk, "")
	cr := newCreds(t, clk, func(c *Config) { c.Keys = ks })
	c := conn("mandate_jwt", map[string]string{"scopes": "a b"}, nil)
	ctx := context.Background()
	t1, _ := cr.Authorization(ctx, c, alice(clk))
	t2, _ := cr.Authorization(ctx, c, alice(clk))
	if t1 != t2 || cr.Stats().Mints != 1 {
		t.Fatalf("not cached: mints %d", cr.Stats().Mints)
	}
	// Any change of the key mints anew.
	variants := []func() (string, error){
		func() (string, error) { return cr.Authorization(ctx, c, bob(clk)) },
		func() (string, error) {
			id := alice(clk)
			id.Actor = "other-agent"
			return cr.Authorization(ctx, c, id)
		},
		func() (string, error) { id := alice(clk); id.Actor = ""; return cr.Authorization(ctx, c, id) },
		func() (string, error) {
			return cr.Authorization(ctx, conn("mandate_jwt", map[string]string{"scopes": "a"}, nil), alice(clk))
		},
		func() (string, error) {
			return cr.Authorization(ctx, conn("mandate_jwt", map[string]string{"scopes": "a b", "audience": "x"}, nil), alice(clk))
		},
	}
	seen := map[string]bool{t1: true}
	for i, f := range variants {
		v, err := f()
		if err != nil || seen[v] {
			t.Fatalf("variant %d: reused or failed: %v", i, err)
		}
		seen[v] = true
	}
	if m := cr.Stats().Mints; m != 6 {
		t.Fatalf("mints %d", m)
	}
	// Reused until 30 s before expiry, then replaced.
	clk.Advance(4*time.Minute + 29*time.Second)
	if v, _ := cr.Authorization(ctx, c, alice(clk)); v != t1 {
		t.Fatal("replaced too early")
	}
	clk.Advance(time.Second)
	if v, _ := cr.Authorization(ctx, c, alice(clk)); v == t1 {
		t.Fatal("served within 30 s of expiry")
	}
	// A cached token that would outlive a caller's inbound token is not
	// reused for that caller.
	before := cr.Stats().Mints
	id := alice(clk)
	id.Expiry = clk.Now().Add(time.Minute)
	v, err := cr.Authorization(ctx, c, id)
	if err != nil || cr.Stats().Mints != before+1 {
		t.Fatalf("short-lived caller reused a longer token: %v", err)
	}
	claims, _ := verifyMinted(t, ks, v, "https://mcp.example.com/mcp", clk.Now())
	if claims.Expiry.Time().After(id.Expiry) {
		t.Fatal("minted token outlives the inbound token")
	}
}

func TestMandateJWTNotConfigured(t *testing.T) {
	clk := newClock()
	cr := newCreds(t, clk, nil)
	_, err := cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), alice(clk))
	if err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("err %v", err)
	}
	ks := newKeys(t, clk, "")
	cr = newCreds(t, clk, func(c *Config) { c.Keys = ks })
	if _, err := cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), nil); err == nil {
		t.Fatal("minted without a caller")
	}
	id := alice(clk)
	id.Expiry = clk.Now().Add(-time.Second)
	if _, err := cr.Authorization(context.Background(), conn("mandate_jwt", nil, nil), id); err == nil {
		t.Fatal("minted for an expired inbound token")
	}
}

func decodeSegment(t *testing.T, jws string, i int) string {
	t.Helper()
	parts := strings.Split(jws, ".")
	b, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.RS256})
	if err != nil || len(parts) != 3 {
		t.Fatal(err)
	}
	if i == 1 {
		return string(b.UnsafePayloadWithoutVerification())
	}
	return parts[i]
}
