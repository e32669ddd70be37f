package oauthconnect

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/flight/flighttest"
)

func TestDiscoveryRFC9728AndRFC8414(t *testing.T) {
	e := newEnv(t)
	ep, err := e.k.resolve(context.Background(), e.conn())
	if err != nil {
		t.Fatal(err)
	}
	if ep.Issuer != e.as.srv.URL || ep.Authorization != e.as.srv.URL+"/authorize" || ep.Token != e.as.srv.URL+"/token" ||
		ep.Revocation != e.as.srv.URL+"/revoke" {
		t.Fatalf("endpoints %+v", ep)
	}
	// Cached: a second resolve fetches nothing; after the TTL it fetches
	// again.
	e.k.resolve(context.Background(), e.conn())
	if e.as.metadataHits != 1 {
		t.Fatalf("%d metadata fetches, want 1", e.as.metadataHits)
	}
	e.clock.Add(discoveryTTL + time.Second)
	e.k.resolve(context.Background(), e.conn())
	if e.as.metadataHits != 2 {
		t.Fatalf("%d metadata fetches after the TTL, want 2", e.as.metadataHits)
	}
}

func TestDiscoveryVariants(t *testing.T) {
	for _, tc := range []struct {
		name, upstream, as string
		wantErr            string
	}{
		{name: "root well-known", upstream: "root", as: "oauth"},
		{name: "WWW-Authenticate resource_metadata", upstream: "challenge", as: "oauth"},
		{name: "OpenID configuration fallback", upstream: "path", as: "oidc"},
		{name: "metadata about another resource", upstream: "wrong-resource", as: "oauth", wantErr: "not \"https://127.0.0.1"},
		{name: "no protected resource metadata", upstream: "none", as: "oauth", wantErr: "authorization_endpoint and token_endpoint"},
		{name: "no AS metadata", upstream: "path", as: "none", wantErr: "RFC 8414"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.up.mode = tc.upstream
			e.as.set(func(a *fakeAS) { a.metadata = tc.as })
			ep, err := e.k.resolve(context.Background(), e.conn())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || ep.Token != e.as.srv.URL+"/token" {
				t.Fatalf("resolve: %+v, %v", ep, err)
			}
			e.connect(e.browser(), "alice@example.com")
			e.mustBearer("alice@example.com")
		})
	}
}

func TestDiscoveryRefusesNoS256(t *testing.T) {
	e := newEnv(t)
	e.as.set(func(a *fakeAS) { a.noS256 = true })
	_, err := e.k.resolve(context.Background(), e.conn())
	if err == nil || !strings.Contains(err.Error(), "S256") {
		t.Fatalf("err = %v", err)
	}
	// The consent page shows the problem instead of sending the user on.
	resp, err := e.browser().Get(e.signInURL("alice@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, resp, body(t, resp), http.StatusBadGateway, "S256")
}

func TestExplicitEndpoints(t *testing.T) {
	e := newEnv(t)
	e.up.mode = "none"
	e.as.set(func(a *fakeAS) { a.metadata = "none" })
	e.conns.update(connName, func(c *gateway.Connection) {
		c.Options["authorization_endpoint"] = e.as.srv.URL + "/authorize"
		c.Options["token_endpoint"] = e.as.srv.URL + "/token"
	})
	e.connect(e.browser(), "alice@example.com")
	e.mustBearer("alice@example.com")
	e.clock.Add(2 * time.Hour)
	e.mustBearer("alice@example.com")
	if e.as.grants("refresh_token") != 1 {
		t.Fatal("no refresh through the explicit token endpoint")
	}

	// Changing token_endpoint drops the grant: the refresh token is sent
	// only where it came from.
	other := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("refresh token sent to a new token endpoint")
	}))
	defer other.Close()
	e.conns.update(connName, func(c *gateway.Connection) { c.Options["token_endpoint"] = other.URL + "/token" })
	e.clock.Add(2 * time.Hour)
	h, err := e.authorize("alice@example.com")
	expectSignIn(t, h, err)

	// Non-https endpoints are refused (http only on loopback).
	e.conns.update(connName, func(c *gateway.Connection) { c.Options["token_endpoint"] = "http://as.example/token" })
	if _, err := e.k.resolve(context.Background(), e.conn()); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("http token endpoint: %v", err)
	}
}

func TestAuthParam(t *testing.T) {
	for h, want := range map[string]string{
		`Bearer resource_metadata="https://x/y"`:                                   "https://x/y",
		`Bearer error="invalid_token", resource_metadata="https://x/a,b", scope=r`: "https://x/a,b",
		`Bearer realm="a=b", resource_metadata=https://x/z`:                        "https://x/z",
		`Bearer error="invalid_token"`:                                             "",
		`Bearer resource_metadata="https://x/\"q\""`:                               `https://x/"q"`,
	} {
		if got := authParam(h, "resource_metadata"); got != want {
			t.Errorf("authParam(%s) = %q, want %q", h, got, want)
		}
	}
}

// TestDiscoveryMissStraddlesFlight: a resolve that missed the cache while
// another caller's discovery was answered (it joins no flight: that one is
// over) uses the cached endpoints rather than fetching the metadata again.
func TestDiscoveryMissStraddlesFlight(t *testing.T) {
	e := newEnv(t)
	resolve := func() error { _, err := e.k.resolve(context.Background(), e.conn()); return err }
	flighttest.Straddle(t, func(h func()) { e.k.afterMiss = h }, resolve, resolve)
	if n := e.as.hits(); n != 1 {
		t.Fatalf("%d metadata fetches, want 1: the late caller fetched again what was cached", n)
	}
}
