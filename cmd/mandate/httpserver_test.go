package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// testHTTPConfig is the listener configuration the tests start from.
func testHTTPConfig() httpConfig {
	return httpConfig{readHeaderTimeout: 5 * time.Second, readBodyTimeout: 300 * time.Millisecond,
		idleTimeout: time.Minute, maxRequests: 100, maxConns: 100, tlsMode: "auto"}
}

// startHTTP serves h with the listener bounds of c on 127.0.0.1.
func startHTTP(t *testing.T, h http.Handler, c httpConfig) string {
	t.Helper()
	return serveTestHTTP(t, h, c, nil, nil)
}

// startHTTPS is startHTTP over TLS, with a self-signed certificate (HTTP/2
// offered).
func startHTTPS(t *testing.T, h http.Handler, c httpConfig) string {
	t.Helper()
	tlsCfg, err := pgwire.LoadOrCreateTLS("", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return serveTestHTTP(t, h, c, tlsCfg, nil)
}

// serveTestHTTP serves h with the listener bounds of c on 127.0.0.1, over
// TLS when tlsCfg is set, through wrap(listener) when wrap is set, until
// the test ends; it returns the address.
func serveTestHTTP(t *testing.T, h http.Handler, c httpConfig, tlsCfg *tls.Config, wrap func(net.Listener) net.Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := newHTTPServer(h, &c, tlsCfg, zerolog.Nop())
	served := ln
	if wrap != nil {
		served = wrap(ln)
	}
	go func() { _ = serveHTTP(hs, served, c.maxConns) }()
	t.Cleanup(func() { _ = hs.Close() })
	return ln.Addr().String()
}

// waitClosed reads conn until the server closes it and returns how long
// that took; the patience only bounds a failure.
func waitClosed(t *testing.T, conn net.Conn, patience time.Duration) (time.Duration, string) {
	t.Helper()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(patience))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %v", patience)
	}
	return time.Since(start), string(b)
}

// dialH2 opens an HTTP/2 connection over TLS to addr (a test's
// self-signed server) by hand: the preface and a SETTINGS frame with
// settings, and returns it and its framer; the connection is closed at
// the test's end.
func dialH2(t *testing.T, addr string, settings ...http2.Setting) (*tls.Conn, *http2.Framer) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) //nolint:gosec // a test's self-signed server
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return conn, fr
}

// headers is an HPACK header block of the name/value pairs fields.
func headers(fields ...string) []byte {
	var buf bytes.Buffer
	e := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = e.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return buf.Bytes()
}

// TestHTTPTrickledBodyIsCut: a request whose body trickles is cut after
// the body timeout, whether its handler reads the body or answers without
// it; a body that arrives in time, followed by a long streamed answer, is
// not cut.
func TestHTTPTrickledBodyIsCut(t *testing.T) {
	c := testHTTPConfig()
	mux := http.NewServeMux()
	mux.HandleFunc("/read", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/ignore", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		tick := time.NewTicker(c.readBodyTimeout / 2)
		defer tick.Stop()
		for i := range 6 { // three body timeouts long
			if _, err := fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
				return
			}
			_ = rc.Flush()
			select {
			case <-tick.C:
			case <-r.Context().Done():
				return
			}
		}
	})
	addr := startHTTP(t, mux, c)
	for _, path := range []string{"/read", "/ignore"} {
		t.Run(path, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":", path)
			took, _ := waitClosed(t, conn, 20*time.Second)
			t.Logf("cut after %v", took)
		})
	}
	t.Run("stream after the body", func(t *testing.T) {
		resp, err := http.Post("http://"+addr+"/stream", "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || strings.Count(string(b), "data: ") != 6 {
			t.Fatalf("stream %q, %v: cut by the body timeout", b, err)
		}
	})
}

// TestHTTPMaxRequests: requests beyond the cap are answered 503 at once,
// the liveness probe still answers, and capacity comes back.
func TestHTTPMaxRequests(t *testing.T) {
	c := testHTTPConfig()
	c.maxRequests = 2
	entered, release := make(chan struct{}, 10), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) })
	addr := startHTTP(t, mux, c)
	done := make(chan int, 2)
	for range 2 {
		go func() {
			resp, err := http.Get("http://" + addr + "/slow")
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	<-entered
	<-entered
	resp, err := http.Get("http://" + addr + "/slow")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "too many requests") {
		t.Fatalf("third request: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz while full: %v %v", resp, err)
	}
	close(release)
	for range 2 {
		if code := <-done; code != http.StatusOK {
			t.Fatalf("held request ended with %d", code)
		}
	}
	go func() { <-entered }()
	if resp, err := http.Get("http://" + addr + "/slow"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after release: %v %v", resp, err)
	}
}

// TestHTTPHeaderAndBodyCaps: a 500 KB header, a 1 MB query string and
// 10,000 headers are refused with 431, and a body over the cap with 413,
// before any handler runs.
func TestHTTPHeaderAndBodyCaps(t *testing.T) {
	called := false
	addr := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }), testHTTPConfig())
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/mcp/x", nil)
	req.Header.Set("User-Agent", strings.Repeat("A", 500_000))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("500 KB User-Agent: %d, want 431", resp.StatusCode)
	}
	// A 1 MB query string, and 10,000 headers: the same header block bound.
	for name, head := range map[string]string{
		"1 MB query string": "GET /mcp/x?q=" + strings.Repeat("a", 1<<20) + " HTTP/1.1\r\nHost: x\r\n",
		"10,000 headers":    "GET /mcp/x HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: bbbbbbbb\r\n", 10_000),
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		go func() { _, _ = io.WriteString(conn, head+"\r\n") }() // the server may answer before taking it all
		r, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil || r.StatusCode != http.StatusRequestHeaderFieldsTooLarge || called {
			t.Fatalf("%s: %v %v (handler called: %v), want 431", name, r, err, called)
		}
	}
	if status := oversizedBodyStatus(t, addr); status != http.StatusRequestEntityTooLarge || called {
		t.Fatalf("oversized body: %d (handler called: %v), want 413", status, called)
	}
}

// oversizedBodyStatus is the status a listener on addr answers a POST that
// declares a body one byte over httpMaxBody (and sends none).
func oversizedBodyStatus(t *testing.T, addr string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", httpMaxBody+1)
	r, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r.StatusCode
}

// TestHTTPEndlessChunkedBody: a chunked body sent as fast as the client
// can, without end, is read up to httpMaxBody and no further: the handler
// sees *http.MaxBytesError (and answers 413), the connection is closed.
func TestHTTPEndlessChunkedBody(t *testing.T) {
	type result struct {
		n       int64
		tooMuch bool
	}
	got := make(chan result, 1)
	addr := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		var mbe *http.MaxBytesError
		got <- result{n, errors.As(err, &mbe)}
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	}), testHTTPConfig())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		chunk := fmt.Appendf(nil, "%x\r\n%s\r\n", 64<<10, bytes.Repeat([]byte("a"), 64<<10))
		if _, err := io.WriteString(conn, "POST /mcp/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"); err != nil {
			return
		}
		for {
			if _, err := conn.Write(chunk); err != nil {
				return // the server closed the connection
			}
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to an endless chunked body: %v", err)
	}
	resp.Body.Close()
	select {
	case r := <-got:
		if r.n != httpMaxBody || !r.tooMuch || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("read %d bytes (MaxBytesError: %v), status %d; want %d bytes, then 413", r.n, r.tooMuch, resp.StatusCode, httpMaxBody)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler is still reading")
	}
	took, _ := waitClosed(t, conn, 20*time.Second)
	t.Logf("closed %v after the answer", took)
}

// TestHTTPTLSPolicy: plain HTTP only on loopback (or behind a declared
// TLS-terminating proxy); auto serves TLS elsewhere.
func TestHTTPTLSPolicy(t *testing.T) {
	cases := []struct {
		addr, mode string
		proxy      bool
		cert       string
		wantErr    bool
		wantTLS    bool
	}{
		{"127.0.0.1:8470", "auto", false, "", false, false},
		{"localhost:8470", "auto", false, "", false, false},
		{"[::1]:8470", "auto", false, "", false, false},
		{"127.0.0.1:8470", "on", false, "", false, true},
		{"127.0.0.1:8470", "auto", false, "c.pem", false, true},
		{"0.0.0.0:8470", "auto", false, "", false, true},
		{"10.1.2.3:8470", "auto", false, "", false, true},
		{"0.0.0.0:8470", "off", false, "", true, false},
		{":8470", "off", false, "", true, false},
		{"0.0.0.0:8470", "off", true, "", false, false},
		{"0.0.0.0:8470", "auto", true, "", false, false},
		{"0.0.0.0:8470", "maybe", false, "", true, false},
	}
	for _, tc := range cases {
		c := testHTTPConfig()
		c.tlsMode, c.behindTLSProxy, c.tlsCert = tc.mode, tc.proxy, tc.cert
		if tc.cert != "" {
			c.tlsKey = "k.pem"
		}
		err := c.check(tc.addr)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s --http-tls %s proxy=%v: check = %v", tc.addr, tc.mode, tc.proxy, err)
			continue
		}
		if err == nil && c.tlsOn(tc.addr) != tc.wantTLS {
			t.Errorf("%s --http-tls %s proxy=%v: TLS %v, want %v", tc.addr, tc.mode, tc.proxy, !tc.wantTLS, tc.wantTLS)
		}
		if err != nil && tc.mode == "off" && !strings.Contains(err.Error(), "--http-behind-tls-proxy") {
			t.Errorf("refusal does not name the override: %v", err)
		}
	}
	// serve refuses such a configuration before it binds anything.
	_, err := parseServeFlags([]string{"--http-addr", "0.0.0.0:8470", "--http-tls", "off"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Fatalf("parseServeFlags = %v", err)
	}
	// The generated certificate serves TLS and has a fingerprint.
	c := testHTTPConfig()
	c.tlsMode = "on"
	cfg, fp, err := c.serverTLS("127.0.0.1:0", t.TempDir())
	if err != nil || cfg == nil || !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+64 {
		t.Fatalf("serverTLS = %v, %q, %v", cfg, fp, err)
	}
}

// TestPinnedTLS: a pinned fingerprint trusts exactly that certificate.
func TestPinnedTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	defer srv.Close()
	get := func(fp string) error {
		cfg, err := pinnedTLS(fp)
		if err != nil {
			return err
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		resp, err := hc.Get(srv.URL)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	good := fingerprint(srv.Certificate().Raw)
	if err := get(good); err != nil {
		t.Fatalf("pinned fingerprint refused: %v", err)
	}
	if err := get(strings.ToUpper(strings.Replace(good, "sha256:", "SHA256:", 1))); err != nil {
		t.Fatalf("upper-case fingerprint refused: %v", err)
	}
	bad := "sha256:" + strings.Repeat("ab", 32)
	if err := get(bad); err == nil || !strings.Contains(err.Error(), "fingerprint") {
		t.Fatalf("wrong fingerprint: %v", err)
	}
	for _, fp := range []string{"", "md5:abcd", "sha256:xyz", "sha256:abcd"} {
		if _, err := pinnedTLS(fp); err == nil {
			t.Errorf("pinnedTLS(%q) accepted", fp)
		}
	}
	// The client for the identity provider trusts its own certificate.
	hc := trustingOwnCert(good)
	if resp, err := hc.Get(srv.URL); err != nil {
		t.Fatalf("own certificate refused: %v", err)
	} else {
		resp.Body.Close()
	}
	if _, err := trustingOwnCert(bad).Get(srv.URL); err == nil {
		t.Fatal("an unknown self-signed certificate was trusted")
	}
	_ = tls.VersionTLS12
}

func TestByteSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "10GiB": 10 << 30, "500MB": 500e6, "1.5 KiB": 1536, "2tb": 2e12} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "10 parsecs", "1e30GB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) accepted", in)
		}
	}
}

// TestSideListenerBounds: the side listeners (--metrics-addr and the
// profiler, both served by serveSide) have the HTTP listener's bounds: a
// header block over httpMaxHeaderBytes is 431, headers that trickle are
// cut after the header timeout, a body over the cap is 413.
func TestSideListenerBounds(t *testing.T) {
	c := testHTTPConfig()
	c.readHeaderTimeout = 300 * time.Millisecond
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	stop, addr, err := serveSide("127.0.0.1:0", mux, &c, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	t.Run("header block", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr.String()+"/metrics", nil)
		req.Header.Set("X-Filler", strings.Repeat("A", httpMaxHeaderBytes+4096))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%d KiB header: %d, want 431", (httpMaxHeaderBytes+4096)>>10, resp.StatusCode)
		}
	})
	t.Run("trickled headers", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
		took, _ := waitClosed(t, conn, 5*time.Second)
		t.Logf("cut after %v", took)
	})
	t.Run("body", func(t *testing.T) {
		if status := oversizedBodyStatus(t, addr.String()); status != http.StatusRequestEntityTooLarge {
			t.Fatalf("oversized body: %d, want 413", status)
		}
	})
}

// TestHTTPTLSSlowClients: over TLS, a client that never finishes its
// handshake is cut after the header timeout, and an HTTP/2 client that
// never finishes a request's header block (or sends nothing after its
// preface) after the idle timeout: neither holds a connection slot.
func TestHTTPTLSSlowClients(t *testing.T) {
	c := testHTTPConfig()
	c.readHeaderTimeout, c.idleTimeout = 300*time.Millisecond, 600*time.Millisecond
	addr := startHTTPS(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), c)
	t.Run("handshake never sent", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello record
		took, _ := waitClosed(t, conn, 10*time.Second)
		t.Logf("cut after %v", took)
	})
	for _, tc := range []struct {
		name string
		send func(fr *http2.Framer) error
	}{
		{"HTTP/2 preface only", func(fr *http2.Framer) error { return nil }},
		{"HTTP/2 header block never ends", func(fr *http2.Framer) error {
			return fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: false, EndStream: true,
				BlockFragment: headers(":method", "GET", ":scheme", "https", ":authority", "x")})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, fr := dialH2(t, addr)
			if err := tc.send(fr); err != nil {
				t.Fatal(err)
			}
			took, _ := waitClosed(t, conn, 10*time.Second)
			t.Logf("cut after %v", took)
		})
	}
}

// TestHTTPMaxRequestsPerSubject: --http-max-requests-per-subject defaults
// to a quarter of --http-max-requests (at least 1); a negative value is
// refused.
func TestHTTPMaxRequestsPerSubject(t *testing.T) {
	for _, tc := range []struct {
		maxRequests, perSubject int
		want                    int // 0: refused
	}{
		{1024, 0, 256},
		{100, 0, 25},
		{3, 0, 1},
		{1024, 7, 7},
		{10, 50, 50}, // the listener's own bound then comes first
		{1024, -1, 0},
	} {
		c := testHTTPConfig()
		c.maxRequests, c.maxPerSubject = tc.maxRequests, tc.perSubject
		err := c.check("127.0.0.1:8470")
		switch {
		case tc.want == 0 && (err == nil || !strings.Contains(err.Error(), "--http-max-requests-per-subject")):
			t.Errorf("%+v: check = %v, want a refusal naming the flag", tc, err)
		case tc.want != 0 && err != nil:
			t.Errorf("%+v: check = %v", tc, err)
		case tc.want != 0 && c.perSubject() != tc.want:
			t.Errorf("%+v: perSubject = %d, want %d", tc, c.perSubject(), tc.want)
		}
	}
	// The flag (addHTTPFlags: serve and gateway alike).
	c, err := parseServeFlags([]string{"--http-max-requests-per-subject", "9"}, io.Discard, io.Discard)
	if err != nil || c.http.perSubject() != 9 {
		t.Errorf("serve --http-max-requests-per-subject 9: %v", err)
	}
}
