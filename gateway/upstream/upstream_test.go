package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway"
)

func TestModeNone(t *testing.T) {
	clk := newClock()
	cr := newCreds(t, clk, nil)
	got, err := cr.Authorization(context.Background(), conn("none", nil, nil), alice(clk))
	if err != nil || got != "" {
		t.Fatalf("%q %v", got, err)
	}
	// The mode may come from the options alone.
	c := conn("none", nil, nil)
	c.AuthMode = ""
	if got, err := cr.Authorization(context.Background(), c, nil); err != nil || got != "" {
		t.Fatalf("%q %v", got, err)
	}
}

func TestUnknownModeFailsClosed(t *testing.T) {
	clk := newClock()
	cr := newCreds(t, clk, nil)
	for _, mode := range []string{"passthrough", "NONE", "bearer"} {
		if got, err := cr.Authorization(context.Background(), conn(mode, nil, nil), alice(clk)); err == nil || got != "" {
			t.Errorf("%s: %q %v", mode, got, err)
		}
	}
	c := conn("", nil, nil)
	delete(c.Options, "auth_mode")
	if _, err := cr.Authorization(context.Background(), c, alice(clk)); err == nil {
		t.Error("no auth_mode accepted")
	}
	if _, err := cr.Authorization(context.Background(), nil, alice(clk)); err == nil {
		t.Error("nil connection accepted")
	}
}

type fakePerUser struct {
	v   string
	err error
	got *gateway.Identity
}

func (f *fakePerUser) Authorization(ctx context.Context, c *gateway.Connection, id *gateway.Identity) (string, error) {
	f.got = id
	return f.v, f.err
}

func TestPerUserOAuthHook(t *testing.T) {
	clk := newClock()
	ctx := context.Background()
	c := conn("per_user_oauth", nil, nil)
	cr := newCreds(t, clk, nil)
	_, err := cr.Authorization(ctx, c, alice(clk))
	if err == nil || !strings.Contains(err.Error(), "per_user_oauth is not configured on this gateway") {
		t.Fatalf("err %v", err)
	}
	hook := &fakePerUser{v: "Bearer user-token"}
	cr = newCreds(t, clk, func(cfg *Config) { cfg.PerUserOAuth = hook })
	id := alice(clk)
	if got, err := cr.Authorization(ctx, c, id); err != nil || got != "Bearer user-token" || hook.got != id {
		t.Fatalf("%q %v", got, err)
	}
	hook.v, hook.err = "", &gateway.SignInRequiredError{Connection: c.Name, URL: "https://gw/connect"}
	var sre *gateway.SignInRequiredError
	if _, err := cr.Authorization(ctx, c, id); !errors.As(err, &sre) {
		t.Fatalf("sign-in error not passed through: %v", err)
	}
	// Even a misbehaving hook cannot forward the inbound token.
	hook.v, hook.err = "Bearer "+aliceToken, nil
	if got, err := cr.Authorization(ctx, c, id); err == nil || got != "" {
		t.Fatalf("passthrough allowed: %q", got)
	}
}

// TestInboundTokenNeverSentUpstream runs every mode and checks every
// upstream-bound value: the Authorization results, and every request the
// token endpoints received (the inbound token may appear there only as
// the subject_token of an exchange).
func TestInboundTokenNeverSentUpstream(t *testing.T) {
	clk := newClock()
	xidp := exchangeIdP(t, 600)
	cidp := ccIdP(t, 600)
	ks := newKeys(t, clk, "")
	cr := newCreds(t, clk, func(c *Config) {
		c.Keys = ks
		c.PerUserOAuth = &fakePerUser{v: "Bearer per-user"}
	})
	a := exchangeConn(xidp, nil)
	conns := []*gateway.Connection{
		conn("none", nil, nil),
		conn("shared_principal", nil, map[string]string{"bearer_token": "static-token"}),
		conn("shared_principal", ccConn(cidp), map[string]string{"client_secret": "cs"}),
		conn("mandate_jwt", map[string]string{"scopes": "a b"}, nil),
		conn("token_exchange", a.opts, a.secrets),
		conn("per_user_oauth", nil, nil),
	}
	id := alice(clk)
	inbound := []string{id.Token, id.TokenID, "inbound-alice-signature"}
	check := func(what, v string) {
		t.Helper()
		for _, s := range inbound {
			if strings.Contains(v, s) {
				t.Errorf("%s contains the inbound token (%q)", what, s)
			}
		}
	}
	for i := 0; i < 2; i++ { // fresh and cached
		for _, c := range conns {
			v, err := cr.Authorization(context.Background(), c, id)
			if err != nil {
				t.Fatalf("%s: %v", c.AuthMode, err)
			}
			check("Authorization for "+c.AuthMode, v)
			if c.AuthMode == "mandate_jwt" {
				raw, _ := strings.CutPrefix(v, "Bearer ")
				check("minted payload", decodeSegment(t, raw, 1))
				check("minted header", decodeSegment(t, raw, 0))
			}
		}
	}
	for _, r := range cidp.requests() {
		check("client credentials request body", r.Raw)
		check("client credentials request headers", fmt.Sprint(r.Header))
	}
	reqs := xidp.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d exchanges", len(reqs))
	}
	for _, r := range reqs {
		for k, vs := range r.Form {
			if k != "subject_token" {
				check("exchange field "+k, strings.Join(vs, " "))
			}
		}
		check("exchange request headers", fmt.Sprint(r.Header))
	}
}

func TestCacheIsBounded(t *testing.T) {
	clk := newClock()
	ks := newKeys(t, clk, "")
	cr := newCreds(t, clk, func(c *Config) { c.Keys = ks; c.MaxCacheEntries = 64 })
	c := conn("mandate_jwt", nil, nil)
	for i := 0; i < 1000; i++ {
		id := alice(clk)
		id.Subject = fmt.Sprintf("user-%d", i)
		if _, err := cr.Authorization(context.Background(), c, id); err != nil {
			t.Fatal(err)
		}
	}
	st := cr.Stats()
	if st.CacheEntries > 64 || st.Evictions == 0 {
		t.Fatalf("stats %+v", st)
	}
	// Expired entries are swept.
	clk.Advance(10 * time.Minute)
	id := alice(clk)
	if _, err := cr.Authorization(context.Background(), c, id); err != nil {
		t.Fatal(err)
	}
	if n := cr.Stats().CacheEntries; n > 64 {
		t.Fatalf("%d entries", n)
	}
}

func TestInvalidate(t *testing.T) {
	clk := newClock()
	idp := exchangeIdP(t, 600)
	cr := newCreds(t, clk, nil)
	a := exchangeConn(idp, nil)
	c := conn("token_exchange", a.opts, a.secrets)
	id := alice(clk)
	t1, _ := cr.Authorization(context.Background(), c, id)
	// Another value than the one cached (a stale credential a concurrent
	// call was refused with) leaves the cached one.
	if !cr.Invalidate(c, id, "Bearer stale") {
		t.Fatal("token_exchange: Invalidate says nothing can be renewed")
	}
	if again, _ := cr.Authorization(context.Background(), c, id); again != t1 || idp.n.Load() != 1 {
		t.Fatalf("a fresher credential was dropped: %d exchanges", idp.n.Load())
	}
	if !cr.Invalidate(c, id, t1) {
		t.Fatal("token_exchange: Invalidate says nothing can be renewed")
	}
	t2, _ := cr.Authorization(context.Background(), c, id)
	if t1 == t2 || idp.n.Load() != 2 {
		t.Fatalf("not invalidated: %d", idp.n.Load())
	}
	// Modes without a cache have nothing to renew.
	for _, mode := range []string{"none", "per_user_oauth"} {
		if cr.Invalidate(conn(mode, nil, nil), id, t2) {
			t.Errorf("%s: Invalidate says a fresh credential can be had", mode)
		}
	}
}

func TestNewValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Issuer: "gw.example.com"},
		{Issuer: "https://user:pw@gw.example.com"},
		{Issuer: "ftp://gw.example.com"},
		{SubjectTokenType: "saml2"},
		{MintLifetime: time.Second},
		{MaxCacheEntries: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
