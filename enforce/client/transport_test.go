package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/api/apitest"
	"github.com/mandatehq/mandate/enforce/client"
)

// consumeBody reads r's body ahead, for handlers that block before the
// API reads it: net/http cancels r.Context() on a closed connection only
// once the body has been read.
func consumeBody(r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
}

// apiServer serves the API, recording the client address of every
// authorize request (one per connection used).
func apiServer(t *testing.T, tlsOn bool, wrap func(http.Handler) http.Handler) (*httptest.Server, func() int) {
	t.Helper()
	d := apitest.New(2)
	d.Grant(grantAlice)
	var h http.Handler = api.NewHandler(d, api.Options{Token: token})
	if wrap != nil {
		h = wrap(h)
	}
	var mu sync.Mutex
	addrs := map[string]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.AuthorizePath {
			mu.Lock()
			addrs[r.RemoteAddr] = true
			mu.Unlock()
		}
		h.ServeHTTP(w, r)
	}))
	if tlsOn {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv, func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(addrs)
	}
}

func TestTransport(t *testing.T) {
	cases := []struct {
		name      string
		tls       bool
		wrap      func(http.Handler) http.Handler
		between   func(srv *httptest.Server) // after each request
		wantConns int
	}{
		{"keeps the connection alive", false, nil, nil, 1},
		{"over TLS", true, nil, nil, 1},
		{"server closes idle connections: retried on a new one", false, nil,
			func(srv *httptest.Server) { srv.CloseClientConnections() }, 5},
		{"Connection: close is honoured", false, func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Connection", "close")
				h.ServeHTTP(w, r)
			})
		}, nil, 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, conns := apiServer(t, c.tls, c.wrap)
			cfg := client.Config{CacheSize: -1}
			if c.tls {
				cfg.TLSConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
			}
			cl := newClient(t, srv.URL, cfg)
			for range 5 {
				if d := mustAuthorize(t, cl, reqAlice); !d.Allowed {
					t.Fatalf("%+v", d)
				}
				if c.between != nil {
					c.between(srv)
				}
			}
			if got := conns(); got != c.wantConns {
				t.Fatalf("%d connections for 5 requests, want %d", got, c.wantConns)
			}
		})
	}
}

func TestTransportCancellation(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	srv, _ := apiServer(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == api.AuthorizePath {
				consumeBody(r) // so that the server notices the client leave
				select {
				case <-block:
				case <-r.Context().Done():
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	cl := newClient(t, srv.URL, client.Config{CacheSize: -1, RequestTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	d, err := cl.Authorize(ctx, reqAlice)
	if !errors.Is(err, context.DeadlineExceeded) || d.Allowed {
		t.Fatalf("%+v, %v; want a denial with the deadline error", d, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("cancellation took %s", took)
	}
}
