package node_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/api/apitest"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/flight/flighttest"
	"github.com/mandatehq/mandate/gateway/node"
)

// llmCatalog adds to newCatalog: bob (owner of system.ai.frontier), the
// provider services openai_prod and anthropic_prod, and frontier routing
// 80/20 to them with a fallback.
func llmCatalog(t testing.TB) *catalog.Service {
	svc := newCatalog(t)
	change(t, svc, func(tx *catalog.Tx) error {
		for _, p := range []struct {
			name string
			opts [][2]string
		}{
			{"openai_prod", [][2]string{{"provider", "openai"}, {"api_key", "sk-openai"}, {"prices", "gpt-4.1=2/8/0.5, gpt-4.1-mini=0.4/1.6"}}},
			{"anthropic_prod", [][2]string{{"provider", "anthropic"}, {"api_key", "sk-ant"}, {"prices", "claude-sonnet-4-5=3/15/0.3/3.75/4.5"}}},
		} {
			if err := tx.CreateProviderService([]string{"system", "ai", p.name}, p.opts, false, nil); err != nil {
				return err
			}
		}
		if err := tx.CreatePrincipal(catalog.KindUser, "bob", nil, false); err != nil {
			return err
		}
		if err := tx.CreatePrincipal(catalog.KindUser, "alice@example.com", nil, false); err != nil {
			return err
		}
		if err := tx.CreatePrincipal(catalog.KindServicePrincipal, "claude-code", nil, false); err != nil {
			return err
		}
		return tx.Grant([]catalog.Privilege{catalog.PrivExecute, catalog.PrivCreateService}, catalog.TypeSchema, []string{"system", "ai"}, []string{"bob"})
	})
	if _, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: "bob"}, Action: "TEST"}, func(tx *catalog.Tx) error {
		return tx.CreateModelService([]string{"system", "ai", "frontier"}, [][2]string{
			{"destinations", "openai_prod/gpt-4.1=80, anthropic_prod/claude-sonnet-4-5=20"}, {"fallbacks", "anthropic_prod/claude-sonnet-4-5"},
			{"timeout", "120s"}, {"tags", "team=platform"}, {"log_payloads", "true"}, {"sample_rate", "0.25"}, {"egress", "external"}}, false, nil)
	}); err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestModelServices(t *testing.T) {
	svc := llmCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	var known atomic.Int64
	known.Store(int64(svc.Revision()))
	cfg := cs.config()
	cfg.Revision = func() catalog.Revision { return catalog.Revision(known.Load()) }
	remote, err := node.NewModelServices(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	local := node.NewLocalModelServices(svc)
	ctx := t.Context()
	for _, r := range []gateway.ModelServices{remote, local} {
		ms, err := r.ModelService(ctx, "frontier")
		if err != nil {
			t.Fatal(err)
		}
		if ms.Name != "system.ai.frontier" || len(ms.Destinations) != 2 || len(ms.Fallbacks) != 1 || ms.Timeout != 2*time.Minute ||
			!ms.LogPayloads || ms.SampleRate != 0.25 || ms.TracePayloads || ms.Tags["team"] != "platform" || ms.Options["egress"] != "external" ||
			ms.Revision != svc.Revision() {
			t.Fatalf("%T: %+v", r, ms)
		}
		d0, d1, fb := ms.Destinations[0], ms.Destinations[1], ms.Fallbacks[0]
		if d0.Provider.Name != "system.ai.openai_prod" || d0.Model != "gpt-4.1" || d0.Weight != 80 || d0.Provider.APIKey != "sk-openai" ||
			d0.Provider.Provider != "openai" || d0.Provider.URL != "https://api.openai.com/v1" {
			t.Errorf("%T: destination 0: %+v %+v", r, d0, *d0.Provider)
		}
		if p := d0.Provider.Prices["gpt-4.1"]; p != (gateway.ModelPrice{Input: 2, Output: 8, CachedInput: 0.5, CacheWrite: 2, HasCachedInput: true}) {
			t.Errorf("%T: price %+v", r, p)
		}
		if p := d1.Provider.Prices["claude-sonnet-4-5"]; !p.HasCacheWrite || p.CacheWrite != 3.75 || !p.HasCacheWrite1h || p.CacheWrite1h != 4.5 ||
			d1.Weight != 20 || d1.Provider.APIKey != "sk-ant" {
			t.Errorf("%T: destination 1: %+v %+v", r, d1, p)
		}
		if fb.Weight != 0 || fb.Provider != d1.Provider || fb.Model != "claude-sonnet-4-5" {
			t.Errorf("%T: fallback %+v", r, fb)
		}
		if _, err := r.ModelService(ctx, "nowhere"); !errors.Is(err, gateway.ErrNoModelService) {
			t.Errorf("%T: unknown service: %v", r, err)
		}
		if names, err := r.ListModelServices(ctx); err != nil || !reflect.DeepEqual(names, []string{"system.ai.frontier"}) {
			t.Errorf("%T: list %v %v", r, names, err)
		}
		// Answers are the caller's: changing one does not change the next.
		ms.Destinations[0].Provider.APIKey = "changed"
		again, _ := r.ModelService(ctx, "system.ai.frontier")
		if again.Destinations[0].Provider.APIKey != "sk-openai" {
			t.Errorf("%T: a cached answer was changed by its caller", r)
		}
	}

	// The owner loses EXECUTE on anthropic_prod: that destination and the
	// fallback are left out (fail closed for them), the split goes to 100.
	change(t, svc, func(tx *catalog.Tx) error {
		if err := tx.Revoke([]catalog.Privilege{catalog.PrivExecute}, catalog.TypeSchema, []string{"system", "ai"}, []string{"bob"}); err != nil {
			return err
		}
		return tx.Grant([]catalog.Privilege{catalog.PrivExecute}, catalog.TypeProviderService, []string{"system", "ai", "openai_prod"}, []string{"bob"})
	})
	known.Store(int64(svc.Revision()))
	for _, r := range []gateway.ModelServices{remote, local} {
		ms, err := r.ModelService(ctx, "frontier")
		if err != nil {
			t.Fatal(err)
		}
		if len(ms.Destinations) != 1 || ms.Destinations[0].Weight != 100 || ms.Destinations[0].Model != "gpt-4.1" || len(ms.Fallbacks) != 0 {
			t.Errorf("%T: after revoking anthropic_prod: %+v", r, ms)
		}
	}
	// No usable destination at all: an error, not "no such service".
	change(t, svc, func(tx *catalog.Tx) error {
		return tx.Revoke([]catalog.Privilege{catalog.PrivExecute}, catalog.TypeProviderService, []string{"system", "ai", "openai_prod"}, []string{"bob"})
	})
	known.Store(int64(svc.Revision()))
	for _, r := range []gateway.ModelServices{remote, local} {
		if ms, err := r.ModelService(ctx, "frontier"); err == nil || errors.Is(err, gateway.ErrNoModelService) {
			t.Errorf("%T: a service without usable destinations: %+v %v", r, ms, err)
		}
	}
}

// TestModelServicesMissStraddlesFlight: as TestConnectionsMissStraddlesFlight
// for model services (one cache implementation for both).
func TestModelServicesMissStraddlesFlight(t *testing.T) {
	svc := llmCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	cfg := cs.config()
	cfg.ConnectionTTL = time.Hour
	s, err := node.NewModelServices(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func() error { _, err := s.ModelService(context.Background(), "frontier"); return err }
	flighttest.Straddle(t, func(h func()) { node.SetServicesAfterMiss(s, h) }, get, get)
	if n := cs.count(api.ModelServicesPath + "frontier"); n != 1 {
		t.Fatalf("%d requests, want 1: the late caller asked again for an answer in the cache", n)
	}
}

// Provider API keys leave the catalog only over TLS or to a loopback peer.
func TestModelServicesCleartextRefused(t *testing.T) {
	svc := llmCatalog(t)
	h := api.NewHandler(apitest.New(1), api.Options{Token: token, ModelServices: api.ModelServiceResolver(svc)})
	r := httptest.NewRequest(http.MethodGet, api.ModelServicesPath+"frontier", nil)
	r.RemoteAddr = "192.0.2.7:4000"
	r.Header.Set("Authorization", "Bearer "+token)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden {
		t.Fatalf("cleartext to a remote peer: %d %s", w.Code, w.Body)
	}
}

func TestAccessTokens(t *testing.T) {
	svc := llmCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	var known atomic.Int64
	cfg := cs.config()
	cfg.Revision = func() catalog.Revision { return catalog.Revision(known.Load()) }
	remote, err := node.NewAccessTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	local := node.NewLocalAccessTokens(svc)
	token, hash, err := catalog.NewAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Write(t.Context(), catalog.WriteRequest{Caller: catalog.Caller{Principal: "alice@example.com"}, Action: "TEST"}, func(tx *catalog.Tx) error {
		return tx.CreateAccessToken("laptop", "alice@example.com", "claude-code", 0, nil, hash)
	}); err != nil {
		t.Fatal(err)
	}
	known.Store(int64(svc.Revision()))
	ctx := t.Context()
	for _, v := range []gateway.AccessTokens{remote, local} {
		id, err := v.VerifyAccessToken(ctx, token)
		if err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		if id.Subject != "alice@example.com" || id.Actor != "claude-code" || id.TokenID != catalog.TokenIDOf(hash) || id.Token != "" ||
			id.ClientID != "laptop" || time.Until(id.Expiry) < 89*24*time.Hour {
			t.Errorf("%T: identity %+v", v, id)
		}
		for _, bad := range []string{"", "mnd_x", token[:len(token)-2] + "xx", "Bearer " + token} {
			_, err := v.VerifyAccessToken(ctx, bad)
			var ae *gateway.AuthError
			if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
				t.Errorf("%T: %q: %v", v, bad, err)
			}
		}
	}
	// Only the hash went over the wire.
	if cs.count(api.AccessTokenVerifyPath) == 0 {
		t.Fatal("the remote verifier did not ask the catalog")
	}
	// Dropped: refused at once in process, and by the node as soon as it
	// knows the revision.
	change(t, svc, func(tx *catalog.Tx) error { return tx.DropAccessToken("laptop", false) })
	if _, err := local.VerifyAccessToken(ctx, token); err == nil {
		t.Error("local: a dropped token verified")
	}
	known.Store(int64(svc.Revision()))
	if _, err := remote.VerifyAccessToken(ctx, token); err == nil {
		t.Error("remote: a dropped token verified after the node learned the revision")
	}
}

// newToken stores an access token of alice through claude-code and
// returns it.
func newToken(t testing.TB, svc *catalog.Service, name string) string {
	t.Helper()
	token, hash, err := catalog.NewAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	change(t, svc, func(tx *catalog.Tx) error {
		return tx.CreateAccessToken(name, "alice@example.com", "claude-code", 0, nil, hash)
	})
	return token
}

// TestLocalAccessTokensCache: a verified token is answered from the cache
// of its catalog revision, and refused on the very next call once dropped
// (a new revision) or expired (its cached expiry, checked every call).
func TestLocalAccessTokensCache(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after func(t *testing.T, svc *catalog.Service, clock *atomic.Pointer[time.Time], id *gateway.Identity)
		want  string // in the refusal's description
	}{
		{"dropped", func(t *testing.T, svc *catalog.Service, _ *atomic.Pointer[time.Time], _ *gateway.Identity) {
			change(t, svc, func(tx *catalog.Tx) error { return tx.DropAccessToken("laptop", false) })
		}, "invalid access token"},
		{"user dropped", func(t *testing.T, svc *catalog.Service, _ *atomic.Pointer[time.Time], _ *gateway.Identity) {
			change(t, svc, func(tx *catalog.Tx) error { return tx.DropPrincipal(catalog.KindUser, "alice@example.com", false) })
		}, "invalid access token"},
		{"expired", func(_ *testing.T, _ *catalog.Service, clock *atomic.Pointer[time.Time], id *gateway.Identity) {
			exp := id.Expiry
			clock.Store(&exp)
		}, "expired at"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := llmCatalog(t)
			var clock atomic.Pointer[time.Time]
			local := node.NewLocalAccessTokens(svc)
			node.SetLocalAccessTokens(local, svc, func() time.Time {
				if p := clock.Load(); p != nil {
					return *p
				}
				return time.Now()
			}, node.DefaultCacheSize)
			token := newToken(t, svc, "laptop")
			var id *gateway.Identity
			for range 2 {
				var err error
				if id, err = local.VerifyAccessToken(t.Context(), token); err != nil || id.Subject != "alice@example.com" {
					t.Fatalf("verify: %+v, %v", id, err)
				}
			}
			if n := node.LocalAccessTokensCached(local); n != 1 {
				t.Fatalf("cached answers: %d, want 1", n)
			}
			tc.after(t, svc, &clock, id)
			_, err := local.VerifyAccessToken(t.Context(), token)
			var ae *gateway.AuthError
			if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || !strings.Contains(ae.Description, tc.want) {
				t.Fatalf("after %s: %v, want a 401 %q", tc.name, err, tc.want)
			}
		})
	}
}

// TestLocalAccessTokensBounded: the cache holds at most its bound of
// valid answers, and tokens the catalog does not know take none, however
// many are sent.
func TestLocalAccessTokensBounded(t *testing.T) {
	svc := llmCatalog(t)
	local := node.NewLocalAccessTokens(svc)
	const bound = 3
	node.SetLocalAccessTokens(local, svc, time.Now, bound)
	var tokens []string
	for i := range 2 * bound {
		tokens = append(tokens, newToken(t, svc, fmt.Sprintf("token_%d", i)))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				if i%5 == 0 {
					tok := tokens[(g+i)%len(tokens)]
					if _, err := local.VerifyAccessToken(t.Context(), tok); err != nil {
						t.Errorf("a valid token: %v", err)
						return
					}
					continue
				}
				random, _, err := catalog.NewAccessToken() // never stored
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := local.VerifyAccessToken(t.Context(), random); err == nil {
					t.Error("an unknown token verified")
					return
				}
				if n := node.LocalAccessTokensCached(local); n > bound {
					t.Errorf("cached answers: %d, bound %d", n, bound)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := node.LocalAccessTokensCached(local); n == 0 || n > bound {
		t.Fatalf("cached answers: %d, want 1..%d", n, bound)
	}
}

// TestAccessTokensUnknownCached: a token the catalog does not know costs
// a gateway node at most one request per catalog revision, however often
// and however concurrently it is presented; made-up tokens fill their own
// bounded part of the cache, so they never evict a valid token's answer;
// and a token presented before it was created is accepted once the node
// knows the revision that created it.
func TestAccessTokensUnknownCached(t *testing.T) {
	svc := llmCatalog(t)
	cs := newCatalogServer(t, nil, svc, api.Options{})
	var known atomic.Int64
	const size = 8
	cfg := cs.config()
	cfg.CacheSize = size
	cfg.Revision = func() catalog.Revision { return catalog.Revision(known.Load()) }
	remote, err := node.NewAccessTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	valid := newToken(t, svc, "laptop")
	known.Store(int64(svc.Revision()))
	requests := func() int { return cs.count(api.AccessTokenVerifyPath) }
	verify := func(tok string, wantValid bool) {
		t.Helper()
		_, err := remote.VerifyAccessToken(context.Background(), tok)
		var ae *gateway.AuthError
		if wantValid && err != nil || !wantValid && (!errors.As(err, &ae) || ae.Status != http.StatusUnauthorized) {
			t.Fatalf("token valid %v: %v", wantValid, err)
		}
	}
	made := func() string {
		t.Helper()
		tok, _, err := catalog.NewAccessToken()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	verify(valid, true)
	unknown := made()
	for range 10 {
		verify(unknown, false)
	}
	if n := requests(); n != 2 {
		t.Fatalf("a valid token once and a made-up one 10 times: %d requests, want 2", n)
	}

	// Concurrent presentations of one made-up token share one request.
	release := make(chan struct{})
	cs.setBefore(func(w http.ResponseWriter, r *http.Request) bool { <-release; return false })
	shared := made()
	var wg sync.WaitGroup
	var started atomic.Int32
	for range 20 {
		wg.Go(func() {
			started.Add(1)
			if _, err := remote.VerifyAccessToken(context.Background(), shared); err == nil {
				t.Error("a made-up token verified")
			}
		})
	}
	for deadline := time.Now().Add(20 * time.Second); started.Load() < 20 || requests() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d callers started, %d requests after 20s", started.Load(), requests())
		}
	}
	close(release)
	wg.Wait()
	cs.setBefore(nil)
	if n := requests(); n != 3 {
		t.Fatalf("20 concurrent presentations of a made-up token: %d requests in all, want 3", n)
	}

	// Distinct made-up tokens cost one request each, and fill only their
	// own part of the cache: the valid answer stays.
	for range 100 {
		verify(made(), false)
	}
	if n := requests(); n != 103 {
		t.Fatalf("100 distinct made-up tokens: %d requests in all, want 103", n)
	}
	if n := node.AccessTokensCached(remote); n > 2*size {
		t.Fatalf("%d answers cached, bound %d", n, 2*size)
	}
	verify(valid, true)
	if n := requests(); n != 103 {
		t.Fatal("the valid token's answer was evicted by made-up tokens")
	}

	// A token presented before it exists is cached as invalid, and
	// accepted once the node knows the revision that created it.
	later, hash, err := catalog.NewAccessToken()
	if err != nil {
		t.Fatal(err)
	}
	verify(later, false)
	change(t, svc, func(tx *catalog.Tx) error {
		return tx.CreateAccessToken("desktop", "alice@example.com", "claude-code", 0, nil, hash)
	})
	known.Store(int64(svc.Revision()))
	verify(later, true)
	// A new revision: each token costs one request again, once.
	before := requests()
	for range 3 {
		verify(valid, true)
		verify(unknown, false)
	}
	if n := requests() - before; n != 2 {
		t.Fatalf("after a new revision: %d requests for a valid and a made-up token, want 2", n)
	}
}
