package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func ccIdP(t *testing.T, ttl int) *fakeIdP {
	var n atomic.Int64
	return newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
		if !rec.BasicOK || rec.Form.Get("grant_type") != "client_credentials" {
			writeJSON(w, 400, map[string]string{"error": "invalid_request"})
			return
		}
		writeJSON(w, 200, map[string]any{"access_token": fmt.Sprintf("cc-%s-%d", strings.ReplaceAll(rec.Password, " ", "_"), n.Add(1)),
			"token_type": "bearer", "expires_in": ttl})
	})
}

func ccConn(idp *fakeIdP) map[string]string {
	return map[string]string{"token_endpoint": idp.URL(), "client_id": "gw-client", "scopes": "read write", "audience": "api://mcp"}
}

func TestSharedPrincipalBearerToken(t *testing.T) {
	clk := newClock()
	cr := newCreds(t, clk, nil)
	ctx := context.Background()
	for in, want := range map[string]string{"ghp_abc123": "Bearer ghp_abc123", "Bearer ghp_abc123": "Bearer ghp_abc123", "bearer xyz": "Bearer xyz"} {
		got, err := cr.Authorization(ctx, conn("shared_principal", nil, map[string]string{"bearer_token": in}), alice(clk))
		if err != nil || got != want {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a b", "abc\r\nX-Evil: 1", "Bearer "} {
		if _, err := cr.Authorization(ctx, conn("shared_principal", nil, map[string]string{"bearer_token": bad}), alice(clk)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := cr.Authorization(ctx, conn("shared_principal", nil, nil), alice(clk)); err == nil {
		t.Error("shared_principal without credentials accepted")
	}
}

func TestSharedPrincipalClientCredentials(t *testing.T) {
	clk := newClock()
	idp := ccIdP(t, 3600)
	cr := newCreds(t, clk, nil)
	ctx := context.Background()
	c := conn("shared_principal", ccConn(idp), map[string]string{"client_secret": "sec ret"})

	t1, err := cr.Authorization(ctx, c, alice(clk))
	if err != nil {
		t.Fatal(err)
	}
	if t1 != "Bearer cc-sec_ret-1" {
		t.Fatalf("token %q", t1)
	}
	r := idp.requests()[0]
	want := map[string]string{"grant_type": "client_credentials", "scope": "read write",
		"resource": "https://mcp.example.com/mcp", "audience": "api://mcp"}
	for k, v := range want {
		if r.Form.Get(k) != v {
			t.Errorf("%s = %q, want %q", k, r.Form.Get(k), v)
		}
	}
	if len(r.Form) != len(want) {
		t.Errorf("form %v", r.Form)
	}
	if r.User != "gw-client" || r.Password != "sec ret" {
		t.Errorf("basic auth %q %q", r.User, r.Password)
	}
}

func TestSharedPrincipalClientCredentialsCaching(t *testing.T) {
	clk := newClock()
	idp := ccIdP(t, 3600)
	cr := newCreds(t, clk, nil)
	ctx := context.Background()
	c := conn("shared_principal", ccConn(idp), map[string]string{"client_secret": "one"})

	t1, err := cr.Authorization(ctx, c, alice(clk))
	if err != nil {
		t.Fatal(err)
	}
	// Same for every caller, and reused.
	t2, _ := cr.Authorization(ctx, c, bob(clk))
	if t1 != t2 || t1 != "Bearer cc-one-1" || idp.n.Load() != 1 {
		t.Fatalf("%q %q, %d fetches", t1, t2, idp.n.Load())
	}
	// A new catalog revision with the same options and secret keeps it.
	c2 := conn("shared_principal", ccConn(idp), map[string]string{"client_secret": "one"})
	c2.Revision = 99
	if v, _ := cr.Authorization(ctx, c2, alice(clk)); v != t1 {
		t.Fatal("unrelated revision change refetched")
	}
	// A changed secret (new revision) gets a new token at once.
	c3 := conn("shared_principal", ccConn(idp), map[string]string{"client_secret": "two"})
	c3.Revision = 100
	v3, err := cr.Authorization(ctx, c3, alice(clk))
	if err != nil || v3 != "Bearer cc-two-2" {
		t.Fatalf("after secret change %q %v", v3, err)
	}
	// Refreshed shortly before expiry.
	clk.Advance(time.Hour - 31*time.Second)
	if v, _ := cr.Authorization(ctx, c3, alice(clk)); v != v3 {
		t.Fatal("refreshed too early")
	}
	clk.Advance(time.Second)
	v4, _ := cr.Authorization(ctx, c3, alice(clk))
	if v4 == v3 || idp.n.Load() != 3 {
		t.Fatalf("not refreshed: %q, %d fetches", v4, idp.n.Load())
	}
	if st := cr.Stats(); st.ClientCredentials != 3 || st.CacheHits != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSharedPrincipalClientCredentialsErrors(t *testing.T) {
	clk := newClock()
	idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
		writeJSON(w, 401, map[string]string{"error": "invalid_client", "error_description": "bad secret " + rec.Password})
	})
	cr := newCreds(t, clk, nil)
	c := conn("shared_principal", ccConn(idp), map[string]string{"client_secret": "hunter2"})
	_, err := cr.Authorization(context.Background(), c, alice(clk))
	var xe *ExchangeError
	if !errors.As(err, &xe) || xe.Status != 401 || xe.Code != "invalid_client" || xe.Grant != "client_credentials" {
		t.Fatalf("err %#v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error leaks the secret: %v", err)
	}
	mustContain(t, err.Error(), "bad secret [redacted]")
	_, _ = cr.Authorization(context.Background(), c, alice(clk))
	if idp.n.Load() != 2 || cr.Stats().CacheEntries != 0 {
		t.Fatal("failure cached")
	}
}
