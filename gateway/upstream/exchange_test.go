package upstream

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/internal/flight/flighttest"
)

// exchangeIdP answers every exchange with a distinct token bound to the
// subject token, valid for ttl seconds.
func exchangeIdP(t *testing.T, ttl int) *fakeIdP {
	var mu sync.Mutex
	n := int64(0)
	return newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
		mu.Lock()
		n++
		tok := issued(rec.Form.Get("subject_token"), n)
		mu.Unlock()
		writeJSON(w, 200, map[string]any{
			"access_token": tok, "issued_token_type": TokenTypeAccessToken,
			"token_type": "Bearer", "expires_in": ttl, "scope": rec.Form.Get("scope"),
		})
	})
}

func exchangeConn(idp *fakeIdP, extra map[string]string) *connectionArgs {
	opts := map[string]string{"token_endpoint": idp.URL(), "client_id": "mandate gw+1", "scopes": "repo:read  issues:write"}
	for k, v := range extra {
		opts[k] = v
	}
	return &connectionArgs{opts: opts, secrets: map[string]string{"client_secret": "s3cr:et/=&"}}
}

type connectionArgs struct{ opts, secrets map[string]string }

func TestTokenExchangeRequestIsRFC8693(t *testing.T) {
	clk := newClock()
	idp := exchangeIdP(t, 600)
	cr := newCreds(t, clk, nil)
	a := exchangeConn(idp, nil)
	c := conn("token_exchange", a.opts, a.secrets)
	id := alice(clk)

	got, err := cr.Authorization(context.Background(), c, id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "Bearer upstream-") {
		t.Fatalf("Authorization = %q", got)
	}
	reqs := idp.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
		t.Errorf("Content-Type %q", ct)
	}
	want := map[string]string{
		"grant_type":           "urn:ietf:params:oauth:grant-type:token-exchange",
		"subject_token":        aliceToken,
		"subject_token_type":   "urn:ietf:params:oauth:token-type:access_token",
		"requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
		"audience":             "https://mcp.example.com/mcp",
		"resource":             "https://mcp.example.com/mcp",
		"scope":                "repo:read issues:write",
	}
	var keys []string
	for k, v := range r.Form {
		keys = append(keys, k)
		if len(v) != 1 {
			t.Errorf("field %s sent %d times", k, len(v))
		}
		if want[k] != v[0] {
			t.Errorf("field %s = %q, want %q", k, v[0], want[k])
		}
	}
	sort.Strings(keys)
	if len(keys) != len(want) {
		t.Errorf("form fields %v, want exactly %d (no client_secret, actor_token or client_id in the body)", keys, len(want))
	}
	// Client authentication: HTTP Basic with the form-encoded id and secret.
	if !r.BasicOK || r.User != "mandate gw+1" || r.Password != "s3cr:et/=&" {
		t.Errorf("basic auth = %v %q %q", r.BasicOK, r.User, r.Password)
	}
	if h := r.Header.Get("Authorization"); strings.Contains(h, aliceToken) {
		t.Error("inbound token in the IdP request's Authorization header")
	}
	// The raw user part is form-encoded per RFC 6749 §2.3.1 ("+" for space).
	raw := r.Header.Get("Authorization")
	if !strings.HasPrefix(raw, "Basic ") {
		t.Fatalf("Authorization %q", raw)
	}
}

func TestTokenExchangeAudienceOptionAndJWTSubjectType(t *testing.T) {
	clk := newClock()
	idp := exchangeIdP(t, 600)
	cr := newCreds(t, clk, func(c *Config) { c.SubjectTokenType = "jwt" })
	a := exchangeConn(idp, map[string]string{"audience": "api://github-mcp", "scopes": ""})
	if _, err := cr.Authorization(context.Background(), conn("token_exchange", a.opts, a.secrets), alice(clk)); err != nil {
		t.Fatal(err)
	}
	f := idp.requests()[0].Form
	if f.Get("audience") != "api://github-mcp" || f.Get("resource") != "https://mcp.example.com/mcp" {
		t.Errorf("audience %q resource %q", f.Get("audience"), f.Get("resource"))
	}
	if f.Get("subject_token_type") != TokenTypeJWT {
		t.Errorf("subject_token_type %q", f.Get("subject_token_type"))
	}
	if _, ok := f["scope"]; ok {
		t.Error("empty scope sent")
	}
}

func TestTokenExchangePublicClient(t *testing.T) {
	clk := newClock()
	idp := exchangeIdP(t, 600)
	cr := newCreds(t, clk, nil)
	c := conn("token_exchange", map[string]string{"token_endpoint": idp.URL(), "client_id": "gw"}, nil)
	if _, err := cr.Authorization(context.Background(), c, alice(clk)); err != nil {
		t.Fatal(err)
	}
	r := idp.requests()[0]
	if r.BasicOK || r.Form.Get("client_id") != "gw" {
		t.Errorf("public client: basic %v client_id %q", r.BasicOK, r.Form.Get("client_id"))
	}
}

// TestTokenExchangeMissStraddlesFlight: a caller that missed the cache
// while another caller's exchange was answered (it joins no flight: that
// one is over) uses the cached credential rather than exchanging again.
func TestTokenExchangeMissStraddlesFlight(t *testing.T) {
	clk := newClock()
	idp := exchangeIdP(t, 600)
	cr := newCreds(t, clk, nil)
	c := conn("token_exchange", map[string]string{"token_endpoint": idp.URL(), "client_id": "gw"}, nil)
	get := func() error { _, err := cr.Authorization(context.Background(), c, alice(clk)); return err }
	flighttest.Straddle(t, func(h func()) { cr.testHookMiss = h }, get, get)
	if n := idp.n.Load(); n != 1 {
		t.Fatalf("%d exchanges, want 1: the late caller exchanged again for a credential in the cache", n)
	}
}

func TestTokenExchangeConcurrentCallsShareOneExchange(t *testing.T) {
	clk := newClock()
	release := make(chan struct{})
	idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
		<-release
		writeJSON(w, 200, map[string]any{"access_token": "upstream-alice", "issued_token_type": TokenTypeAccessToken,
			"token_type": "Bearer", "expires_in": 300})
	})
	cr := newCreds(t, clk, nil)
	const N = 50
	var missed sync.WaitGroup
	missed.Add(N)
	cr.testHookMiss = func() { missed.Done() }
	a := exchangeConn(idp, nil)
	c := conn("token_exchange", a.opts, a.secrets)

	var wg sync.WaitGroup
	results := make([]string, N)
	errs := make([]error, N)
	for i := 0; i < N; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i], errs[i] = cr.Authorization(context.Background(), c, alice(clk))
		}(i)
	}
	missed.Wait() // all 50 missed the cache while the exchange is held
	close(release)
	wg.Wait()
	for i := range results {
		if errs[i] != nil || results[i] != "Bearer upstream-alice" {
			t.Fatalf("call %d: %q %v", i, results[i], errs[i])
		}
	}
	if n := idp.n.Load(); n != 1 {
		t.Fatalf("%d exchanges for one key, want 1", n)
	}
	cr.testHookMiss = nil
	if _, err := cr.Authorization(context.Background(), c, alice(clk)); err != nil {
		t.Fatal(err)
	}
	if st := cr.Stats(); st.Exchanges != 1 || st.CacheHits < 1 || st.CacheMisses != N {
		t.Fatalf("stats %+v", st)
	}
}

func TestTokenExchangePerUser(t *testing.T) {
	clk := newClock()
	idp := exchangeIdP(t, 600)
	cr := newCreds(t, clk, nil)
	a := exchangeConn(idp, nil)
	c := conn("token_exchange", a.opts, a.secrets)
	ctx := context.Background()
	ta, err := cr.Authorization(ctx, c, alice(clk))
	if err != nil {
		t.Fatal(err)
	}
	tb, err := cr.Authorization(ctx, c, bob(clk))
	if err != nil {
		t.Fatal(err)
	}
	ta2, _ := cr.Authorization(ctx, c, alice(clk))
	tb2, _ := cr.Authorization(ctx, c, bob(clk))
	if ta == tb || ta != ta2 || tb != tb2 {
		t.Fatalf("alice %q/%q bob %q/%q", ta, ta2, tb, tb2)
	}
	if ta != "Bearer "+issued(aliceToken, 1) || tb != "Bearer "+issued(bobToken, 2) {
		t.Fatalf("tokens not bound to their subject token: %q %q", ta, tb)
	}
	reqs := idp.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d exchanges, want 2", len(reqs))
	}
	if reqs[1].Form.Get("subject_token") != bobToken || strings.Contains(reqs[1].Raw, aliceToken) {
		t.Fatal("alice's token was used for bob")
	}
	// Same subject and actor with another inbound token: the exchange is
	// cached per (user, agent, connection, scopes), so it is reused.
	id := alice(clk)
	id.Token, id.TokenID = aliceToken+"2", "tid-alice-2"
	if got, err := cr.Authorization(ctx, c, id); err != nil || got != ta {
		t.Fatalf("alice with a new inbound token: %q %v, want the cached %q", got, err, ta)
	}
	if n := idp.n.Load(); n != 2 {
		t.Fatalf("%d exchanges, want 2", n)
	}
}

func TestTokenExchangeExpiry(t *testing.T) {
	clk := newClock()
	idp := exchangeIdP(t, 120)
	cr := newCreds(t, clk, nil)
	a := exchangeConn(idp, nil)
	c := conn("token_exchange", a.opts, a.secrets)
	ctx := context.Background()
	id := alice(clk)
	t1, _ := cr.Authorization(ctx, c, id)
	clk.Advance(89 * time.Second) // 120 s lifetime − 30 s margin = 90 s
	t2, _ := cr.Authorization(ctx, c, id)
	if t1 != t2 || idp.n.Load() != 1 {
		t.Fatalf("re-exchanged before the margin: %d", idp.n.Load())
	}
	clk.Advance(time.Second)
	t3, err := cr.Authorization(ctx, c, id)
	if err != nil {
		t.Fatal(err)
	}
	if t3 == t1 || idp.n.Load() != 2 {
		t.Fatalf("not re-exchanged at expiry−margin: %d", idp.n.Load())
	}
}

func TestTokenExchangeCacheCappedAtInboundExpiry(t *testing.T) {
	clk := newClock()
	idp := exchangeIdP(t, 3600)
	cr := newCreds(t, clk, nil)
	a := exchangeConn(idp, nil)
	c := conn("token_exchange", a.opts, a.secrets)
	id := alice(clk)
	id.Expiry = clk.Now().Add(2 * time.Minute)
	if _, err := cr.Authorization(context.Background(), c, id); err != nil {
		t.Fatal(err)
	}
	k := cr.exchangeKey(c, id)
	e, ok := cr.cache.get(&k, clk.Now().UnixNano())
	if !ok || e.refreshAt > id.Expiry.UnixNano() {
		t.Fatalf("cache entry outlives the inbound token: %v", ok)
	}
	clk.Advance(2 * time.Minute)
	_, err := cr.Authorization(context.Background(), c, id)
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired inbound token: %v", err)
	}
	if idp.n.Load() != 1 {
		t.Fatal("exchanged an expired inbound token")
	}
}

func TestTokenExchangeErrors(t *testing.T) {
	clk := newClock()
	ctx := context.Background()

	t.Run("invalid_target", func(t *testing.T) {
		idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
			writeJSON(w, 400, map[string]string{"error": "invalid_target",
				"error_description": "audience https://mcp.example.com/mcp unknown for token " + rec.Form.Get("subject_token")})
		})
		cr := newCreds(t, clk, nil)
		a := exchangeConn(idp, nil)
		c := conn("token_exchange", a.opts, a.secrets)
		_, err := cr.Authorization(ctx, c, alice(clk))
		var xe *ExchangeError
		if !errors.As(err, &xe) || xe.Status != 400 || xe.Code != "invalid_target" {
			t.Fatalf("err = %#v", err)
		}
		msg := err.Error()
		mustContain(t, msg, "invalid_target")
		mustContain(t, msg, "audience https://mcp.example.com/mcp unknown")
		mustContain(t, msg, idp.URL())
		if strings.Contains(msg, aliceToken) || strings.Contains(msg, "s3cr:et") {
			t.Fatalf("error leaks a secret: %s", msg)
		}
		// Not cached: the next call asks again.
		_, _ = cr.Authorization(ctx, c, alice(clk))
		if idp.n.Load() != 2 {
			t.Fatalf("%d requests", idp.n.Load())
		}
		if st := cr.Stats(); st.ExchangeErrors != 2 || st.CacheEntries != 0 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("invalid_client", func(t *testing.T) {
		idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
			w.Header().Set("WWW-Authenticate", "Basic")
			writeJSON(w, 401, map[string]string{"error": "invalid_client"})
		})
		cr := newCreds(t, clk, nil)
		a := exchangeConn(idp, nil)
		_, err := cr.Authorization(ctx, conn("token_exchange", a.opts, a.secrets), alice(clk))
		var xe *ExchangeError
		if !errors.As(err, &xe) || xe.Status != 401 || xe.Code != "invalid_client" {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("500 not cached", func(t *testing.T) {
		var fail atomic.Bool
		fail.Store(true)
		idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
			if fail.Load() {
				w.WriteHeader(500)
				_, _ = w.Write([]byte("<html>oops " + rec.Form.Get("subject_token") + "</html>"))
				return
			}
			writeJSON(w, 200, map[string]any{"access_token": "fresh", "token_type": "Bearer", "expires_in": 300})
		})
		cr := newCreds(t, clk, nil)
		a := exchangeConn(idp, nil)
		c := conn("token_exchange", a.opts, a.secrets)
		_, err := cr.Authorization(ctx, c, alice(clk))
		var xe *ExchangeError
		if !errors.As(err, &xe) || xe.Status != 500 || strings.Contains(err.Error(), aliceToken) {
			t.Fatalf("err = %v", err)
		}
		if cr.Stats().CacheEntries != 0 {
			t.Fatal("cached after 500")
		}
		fail.Store(false)
		got, err := cr.Authorization(ctx, c, alice(clk))
		if err != nil || got != "Bearer fresh" || idp.n.Load() != 2 {
			t.Fatalf("after recovery %q %v (%d requests)", got, err, idp.n.Load())
		}
	})

	t.Run("timeout not cached", func(t *testing.T) {
		block := make(chan struct{})
		idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
			select {
			case <-r.Context().Done():
			case <-block:
			}
		})
		defer close(block)
		cr := newCreds(t, clk, func(c *Config) { c.RequestTimeout = 50 * time.Millisecond })
		a := exchangeConn(idp, nil)
		c := conn("token_exchange", a.opts, a.secrets)
		_, err := cr.Authorization(ctx, c, alice(clk))
		var xe *ExchangeError
		if !errors.As(err, &xe) || xe.Status != 0 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v", err)
		}
		if cr.Stats().CacheEntries != 0 {
			t.Fatal("cached after timeout")
		}
	})

	bad := map[string]map[string]any{
		"passthrough":     {"access_token": aliceToken, "token_type": "Bearer", "expires_in": 60},
		"N_A":             {"access_token": "abc", "token_type": "N_A", "issued_token_type": "urn:ietf:params:oauth:token-type:id_token"},
		"DPoP":            {"access_token": "abc", "token_type": "DPoP", "expires_in": 60},
		"no token":        {"token_type": "Bearer"},
		"header split":    {"access_token": "abc\r\nX-Evil: 1", "token_type": "Bearer"},
		"refresh issued":  {"access_token": "abc", "token_type": "Bearer", "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
		"bad expires_in":  {"access_token": "abc", "token_type": "Bearer", "expires_in": "soon"},
		"error in 200":    {"error": "invalid_request", "error_description": "bad subject_token"},
		"negative expiry": {"access_token": "abc", "token_type": "Bearer", "expires_in": -5},
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) { writeJSON(w, 200, body) })
			cr := newCreds(t, clk, nil)
			a := exchangeConn(idp, nil)
			got, err := cr.Authorization(ctx, conn("token_exchange", a.opts, a.secrets), alice(clk))
			var xe *ExchangeError
			if !errors.As(err, &xe) || got != "" {
				t.Fatalf("got %q, err %v", got, err)
			}
			if strings.Contains(err.Error(), aliceToken) {
				t.Fatalf("error leaks the inbound token: %v", err)
			}
		})
	}
}

func TestTokenExchangeResponseVariants(t *testing.T) {
	clk := newClock()
	cases := map[string]struct {
		body map[string]any
		life time.Duration
	}{
		"string expires_in": {map[string]any{"access_token": "a1", "token_type": "bearer", "expires_in": "600"}, 600 * time.Second},
		"jwt issued type":   {map[string]any{"access_token": "a1", "token_type": "Bearer", "issued_token_type": TokenTypeJWT, "expires_in": 60}, 60 * time.Second},
		"no expires_in":     {map[string]any{"access_token": "a1", "token_type": "Bearer"}, UnknownLifetime},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) { writeJSON(w, 200, tc.body) })
			cr := newCreds(t, clk, nil)
			a := exchangeConn(idp, nil)
			c := conn("token_exchange", a.opts, a.secrets)
			ts := cr.TokenSource(context.Background(), c, alice(clk))
			tok, err := ts.Token()
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "a1" || tok.TokenType != "Bearer" || !tok.Expiry.Equal(clk.Now().Add(tc.life)) {
				t.Fatalf("token %+v, want lifetime %s", tok, tc.life)
			}
		})
	}
}

func TestTokenExchangeDoesNotFollowRedirects(t *testing.T) {
	clk := newClock()
	evil := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
		writeJSON(w, 200, map[string]any{"access_token": "evil", "token_type": "Bearer"})
	})
	idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
		http.Redirect(w, r, evil.URL(), http.StatusTemporaryRedirect)
	})
	cr := newCreds(t, clk, func(c *Config) { c.HTTPClient = &http.Client{} })
	a := exchangeConn(idp, nil)
	_, err := cr.Authorization(context.Background(), conn("token_exchange", a.opts, a.secrets), alice(clk))
	var xe *ExchangeError
	if !errors.As(err, &xe) || xe.Status != 307 {
		t.Fatalf("err = %v", err)
	}
	if evil.n.Load() != 0 {
		t.Fatal("the subject token followed a redirect")
	}
}

func TestTokenExchangeCallerCancelDoesNotFailOthers(t *testing.T) {
	clk := newClock()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	idp := newIdP(t, func(w http.ResponseWriter, r *http.Request, rec recorded) {
		started <- struct{}{}
		<-release
		writeJSON(w, 200, map[string]any{"access_token": "shared", "token_type": "Bearer", "expires_in": 300})
	})
	cr := newCreds(t, clk, nil)
	a := exchangeConn(idp, nil)
	c := conn("token_exchange", a.opts, a.secrets)
	ctx1, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := cr.Authorization(ctx1, c, alice(clk)); errc <- err }()
	<-started
	done := make(chan string, 1)
	go func() { v, _ := cr.Authorization(context.Background(), c, alice(clk)); done <- v }()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	close(release)
	if v := <-done; v != "Bearer shared" {
		t.Fatalf("second caller got %q", v)
	}
	if idp.n.Load() != 1 {
		t.Fatalf("%d exchanges", idp.n.Load())
	}
}

func TestTokenExchangeConfigErrors(t *testing.T) {
	clk := newClock()
	cr := newCreds(t, clk, nil)
	ctx := context.Background()
	if _, err := cr.Authorization(ctx, conn("token_exchange", nil, nil), alice(clk)); err == nil || !strings.Contains(err.Error(), "token_endpoint") {
		t.Fatalf("no endpoint: %v", err)
	}
	c := conn("token_exchange", map[string]string{"token_endpoint": "https://idp.example/token"}, map[string]string{"client_secret": "x"})
	if _, err := cr.Authorization(ctx, c, alice(clk)); err == nil || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("secret without id: %v", err)
	}
	id := alice(clk)
	id.Token = ""
	if _, err := cr.Authorization(ctx, c, id); err == nil {
		t.Fatal("exchange without an inbound token")
	}
	if _, err := cr.Authorization(ctx, c, nil); err == nil {
		t.Fatal("exchange without a caller")
	}
}
