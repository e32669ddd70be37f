package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/api/apitest"
	"github.com/mandatehq/mandate/enforce/client"
)

// gatedCatalog holds the first authorize request until release is closed.
func gatedCatalog(t *testing.T) (srv *httptest.Server, d *apitest.Decider, arrived <-chan struct{}, release chan struct{}, requests func() int) {
	t.Helper()
	d = apitest.New(2)
	d.Grant(grantAlice)
	h := api.NewHandler(d, api.Options{Token: token})
	var mu sync.Mutex
	n := 0
	first := make(chan struct{})
	release = make(chan struct{})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.AuthorizePath {
			mu.Lock()
			n++
			me := n
			mu.Unlock()
			if me == 1 {
				consumeBody(r)
				close(first)
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, d, first, release, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestCoalescing(t *testing.T) {
	srv, _, arrived, release, requests := gatedCatalog(t)
	cl := newClient(t, srv.URL, client.Config{MaxInFlight: 1, CacheSize: -1})
	const n = 10
	type result struct {
		d   enforce.Decision
		err error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	call := func(i int) {
		r := reqAlice
		if i%2 == 1 {
			r.Subject = fmt.Sprint("user", i)
		}
		d, err := cl.Authorize(t.Context(), r)
		results[i] = result{d, err}
	}
	wg.Go(func() { call(0) })
	<-arrived // the one slot is taken
	for i := 1; i < n; i++ {
		wg.Go(func() { call(i) })
	}
	waitFor(t, "9 queued calls", 5*time.Second, func() bool { return cl.Stats().Queued == n-1 })
	close(release)
	wg.Wait()
	for i, r := range results {
		if r.err != nil || r.d.Allowed != (i%2 == 0) {
			t.Errorf("call %d: %+v, %v; want allowed=%v", i, r.d, r.err, i%2 == 0)
		}
	}
	if got := requests(); got != 2 {
		t.Fatalf("%d authorize requests, want 2 (one alone, one batch of the 9 queued)", got)
	}
	if st := cl.Stats(); st.Coalesced != 1 || st.Queued != 0 {
		t.Fatalf("stats %+v, want 1 coalesced batch and nothing queued", st)
	}
}

func TestQueuedCallAbandoned(t *testing.T) {
	srv, _, arrived, release, requests := gatedCatalog(t)
	cl := newClient(t, srv.URL, client.Config{MaxInFlight: 1, CacheSize: -1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl.Authorize(t.Context(), reqAlice)
	}()
	<-arrived
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	var d enforce.Decision
	go func() {
		var err error
		d, err = cl.Authorize(ctx, reqAlice)
		errc <- err
	}()
	waitFor(t, "a queued call", 5*time.Second, func() bool { return cl.Stats().Queued == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) || d.Allowed {
		t.Fatalf("abandoned call: %+v, %v; want a denial with context.Canceled", d, err)
	}
	close(release)
	<-done
	waitFor(t, "the queue to drain", 5*time.Second, func() bool { return cl.Stats().Queued == 0 })
	if got := requests(); got != 1 {
		t.Fatalf("%d authorize requests: the abandoned call was sent", got)
	}
}
