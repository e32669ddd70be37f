package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/pipeline"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// The HTTP listeners of `mandate serve` and `mandate gateway` share one set
// of bounds and one TLS policy, set up here.

// Defaults of the HTTP listener's bounds.
const (
	defaultHTTPReadHeaderTimeout = 10 * time.Second
	defaultHTTPReadBodyTimeout   = 30 * time.Second
	defaultHTTPIdleTimeout       = 2 * time.Minute
	defaultHTTPMaxRequests       = 1024
	defaultHTTPMaxConns          = 4096
	// httpMaxHeaderBytes bounds a request's header block (431 beyond).
	httpMaxHeaderBytes = 64 << 10
	// httpMaxBody bounds any request body (413), above what every route
	// accepts itself (the MCP gateway 4 MiB, the catalog API 1 MiB).
	httpMaxBody = 8 << 20
)

// httpConfig is the HTTP listener's configuration from the flags.
type httpConfig struct {
	readHeaderTimeout time.Duration
	readBodyTimeout   time.Duration
	idleTimeout       time.Duration
	maxRequests       int
	// maxPerSubject is --http-max-requests-per-subject (0: perSubject's
	// default).
	maxPerSubject   int
	maxConns        int
	tlsMode         string // auto, on, off
	tlsCert, tlsKey string
	behindTLSProxy  bool
	// finalWrite bounds net/http's last write of an answer, after its
	// handler returned (0: pipeline.DefaultWriteTimeout, the bound of
	// each write of an MCP or LLM answer); tests shorten it.
	finalWrite time.Duration
	// largeBodies are path prefixes whose handlers take bodies above
	// httpMaxBody, bound them themselves and answer a larger one with a
	// 413 of their own (the LLM endpoint: its provider-format error, its
	// audit row): up to the prefix's limit, and a body declared larger
	// reaches the handler unread.
	largeBodies []bodyLimit
}

// bodyLimit is a route's own request body bound.
type bodyLimit struct {
	prefix string
	max    int64
}

// addHTTPFlags registers the HTTP listener's flags on fs.
func addHTTPFlags(fs *flag.FlagSet, c *httpConfig) {
	fs.DurationVar(&c.readHeaderTimeout, "http-read-header-timeout", defaultHTTPReadHeaderTimeout, "close an HTTP connection whose request headers have not arrived within this")
	fs.DurationVar(&c.readBodyTimeout, "http-read-body-timeout", defaultHTTPReadBodyTimeout, "fail a request whose body has not arrived within this after its headers (a trickling client is cut off)")
	fs.DurationVar(&c.idleTimeout, "http-idle-timeout", defaultHTTPIdleTimeout, "close a keep-alive HTTP connection idle for this long")
	fs.IntVar(&c.maxRequests, "http-max-requests", defaultHTTPMaxRequests, "requests served at once on the HTTP listener (streams included); more are answered 503 with Retry-After")
	fs.IntVar(&c.maxPerSubject, "http-max-requests-per-subject", 0, "MCP and LLM calls one caller (the user a call acts for, whichever agent calls) may have in progress at once (streams included); more are answered 429 with Retry-After (0: a quarter of --http-max-requests)")
	fs.IntVar(&c.maxConns, "http-max-connections", defaultHTTPMaxConns, "open connections on the HTTP listener; further ones wait to be accepted")
	fs.StringVar(&c.tlsMode, "http-tls", "auto", "TLS on the HTTP listener: on, off, or auto (on unless --http-addr is a loopback address)")
	fs.StringVar(&c.tlsCert, "http-tls-cert", "", "PEM certificate for the HTTP listener's TLS (default: the self-signed one generated into the data dir)")
	fs.StringVar(&c.tlsKey, "http-tls-key", "", "PEM private key for --http-tls-cert")
	fs.BoolVar(&c.behindTLSProxy, "http-behind-tls-proxy", false, "the HTTP listener sits behind a TLS-terminating proxy: plain HTTP on a non-loopback address is allowed (and --http-tls auto means off)")
}

// check validates the flags for a listener on addr (HOST:PORT). Plain
// HTTP on an address other than loopback is refused unless the listener
// is behind a TLS-terminating proxy: bearer tokens, node tokens and
// connection secrets travel on it.
func (c *httpConfig) check(addr string) error {
	switch c.tlsMode {
	case "auto", "on", "off":
	default:
		return fmt.Errorf("--http-tls (%s) must be on, off or auto, not %q", envName("http-tls"), c.tlsMode)
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return errors.New("--http-tls-cert and --http-tls-key must be given together")
	}
	if c.tlsCert != "" && c.tlsMode == "off" {
		return errors.New("--http-tls-cert is given but --http-tls is off")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"http-read-header-timeout", c.readHeaderTimeout}, {"http-read-body-timeout", c.readBodyTimeout}, {"http-idle-timeout", c.idleTimeout}} {
		if d.v <= 0 {
			return fmt.Errorf("--%s (%s) must be positive", d.flag, envName(d.flag))
		}
	}
	if c.maxRequests <= 0 || c.maxConns <= 0 {
		return errors.New("--http-max-requests and --http-max-connections must be positive")
	}
	if c.maxPerSubject < 0 {
		return fmt.Errorf("--http-max-requests-per-subject (%s) must not be negative (0: a quarter of --http-max-requests), got %d",
			envName("http-max-requests-per-subject"), c.maxPerSubject)
	}
	if !c.tlsOn(addr) && !isLoopbackAddr(addr) && !c.behindTLSProxy {
		return fmt.Errorf("--http-addr %s is not a loopback address and --http-tls is off: tokens and connection secrets "+
			"would cross the network in cleartext. Serve TLS (--http-tls auto or on, with --http-tls-cert/--http-tls-key or the "+
			"generated certificate), or, behind a TLS-terminating proxy, set --http-behind-tls-proxy", addr)
	}
	return nil
}

// perSubject is the calls one subject may have in progress at once
// (pipeline.Config.MaxInFlightPerSubject): --http-max-requests-per-subject,
// or by default a quarter of --http-max-requests (at least 1), so that one
// caller cannot take every request slot of the listener.
func (c *httpConfig) perSubject() int {
	if c.maxPerSubject > 0 {
		return c.maxPerSubject
	}
	return max(1, c.maxRequests/4)
}

// tlsOn reports whether the listener on addr serves TLS: with a
// certificate, with --http-tls on, and with auto on an address other than
// loopback (unless behind a TLS-terminating proxy).
func (c *httpConfig) tlsOn(addr string) bool {
	return c.tlsCert != "" || c.tlsMode == "on" || (c.tlsMode == "auto" && !isLoopbackAddr(addr) && !c.behindTLSProxy)
}

// isLoopbackAddr reports whether a listen address (HOST:PORT) binds only
// loopback: 127.0.0.0/8, ::1 or localhost. A wildcard host is not.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && gateway.IsLoopbackHost(host)
}

// serverTLS returns the TLS configuration of the listener on addr (nil:
// plain HTTP, see tlsOn) and its certificate's fingerprint. Without
// --http-tls-cert the certificate is the self-signed one in dataDir
// (generated at first start; `mandate serve` shares it with the SQL
// endpoint).
func (c *httpConfig) serverTLS(addr, dataDir string) (*tls.Config, string, error) {
	if err := c.check(addr); err != nil {
		return nil, "", err
	}
	if !c.tlsOn(addr) {
		return nil, "", nil
	}
	cfg, err := pgwire.LoadOrCreateTLS(c.tlsCert, c.tlsKey, dataDir)
	if err != nil {
		return nil, "", fmt.Errorf("HTTP TLS: %w", err)
	}
	if len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return nil, "", errors.New("HTTP TLS: no certificate")
	}
	return cfg, fingerprint(cfg.Certificates[0].Certificate[0]), nil
}

// fingerprint is "sha256:" and the hex SHA-256 of a DER certificate, the
// form --catalog-fingerprint takes.
func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// pinnedTLS returns a client TLS configuration that accepts exactly the
// certificate with fingerprint fp ("sha256:HEX", colons allowed), whatever
// its issuer or names: the trust of a self-signed catalog certificate.
func pinnedTLS(fp string) (*tls.Config, error) {
	v := strings.ToLower(strings.TrimSpace(fp))
	hexPart, ok := strings.CutPrefix(v, "sha256:")
	want, err := hex.DecodeString(strings.ReplaceAll(hexPart, ":", ""))
	if !ok || err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("--catalog-fingerprint %q must be sha256: and 64 hex digits (mandate serve prints it)", fp)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and name checks are replaced by the pin below.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the catalog presented no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if subtle.ConstantTimeCompare(sum[:], want) != 1 {
				return fmt.Errorf("the catalog's certificate has fingerprint %s, not the pinned sha256:%s",
					fingerprint(cs.PeerCertificates[0].Raw), hex.EncodeToString(want))
			}
			return nil
		},
	}, nil
}

// trustingOwnCert returns an HTTP client for the gateway's identity
// provider fetches that verifies servers as usual (system CAs, names) but
// also accepts exactly the certificate with fingerprint fp: the listener's
// own, self-signed one, so that `mandate serve --dev` over TLS can read
// its in-process development provider's keys.
func trustingOwnCert(fp string) *http.Client {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, //nolint:gosec // verified below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			if fingerprint(cs.PeerCertificates[0].Raw) == fp {
				return nil
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: cs.ServerName, Intermediates: inter})
			return err
		},
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, Proxy: http.ProxyFromEnvironment, TLSHandshakeTimeout: 10 * time.Second},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			return gateway.CheckSecureURL(req.URL.String())
		},
	}
}

// newHTTPServer returns the server of an HTTP listener: header, body and
// idle timeouts, a header size bound, and h behind limitRequests.
func newHTTPServer(h http.Handler, c *httpConfig, tlsCfg *tls.Config, log zerolog.Logger) *http.Server {
	return &http.Server{
		Handler:           limitRequests(h, c, log),
		ReadHeaderTimeout: c.readHeaderTimeout,
		IdleTimeout:       c.idleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		TLSConfig:         tlsCfg,
		ErrorLog:          httpErrorLog(log),
	}
}

// serveHTTP serves hs on ln (wrapped by limitConns, and in TLS when
// hs.TLSConfig is set) until hs shuts down.
func serveHTTP(hs *http.Server, ln net.Listener, maxConns int) error {
	ln = limitConns(ln, maxConns)
	if hs.TLSConfig != nil {
		return hs.ServeTLS(ln, "", "")
	}
	return hs.Serve(ln)
}

// serveSide serves h in plain HTTP on addr, a side listener (--metrics-addr,
// the profiler), with the HTTP listener's bounds c, until the returned
// stop (which waits up to 2 s for requests in progress).
func serveSide(addr string, h http.Handler, c *httpConfig, log zerolog.Logger) (stop func(), bound net.Addr, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	hc := *c // its own copy: the main listener's routes may still be set
	hc.largeBodies = nil
	hs := newHTTPServer(h, &hc, nil, log)
	go func() { _ = serveHTTP(hs, ln, hc.maxConns) }()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}, ln.Addr(), nil
}

// limitRequests bounds each request: at most c.maxRequests at once (more
// get 503 and Retry-After: 1; GET /healthz is exempt, so probes see the
// process alive), a body of at most httpMaxBody (413), a body that
// must arrive within c.readBodyTimeout of the headers (then reads fail
// and the connection is closed), and the answer's last write
// (finalWriteDeadline).
func limitRequests(h http.Handler, c *httpConfig, log zerolog.Logger) http.Handler {
	slots := make(chan struct{}, c.maxRequests)
	var warned sync.Mutex
	lastWarn := time.Time{}
	finalWrite := c.finalWrite
	if finalWrite <= 0 {
		finalWrite = pipeline.DefaultWriteTimeout
	}
	limit := func(w http.ResponseWriter, r *http.Request) {
		if !(r.Method == http.MethodGet && r.URL.Path == "/healthz") {
			select {
			case slots <- struct{}{}:
				defer func() { <-slots }()
			default:
				warned.Lock()
				if time.Since(lastWarn) > 10*time.Second {
					lastWarn = time.Now()
					log.Warn().Int("max_requests", c.maxRequests).Msg("HTTP requests refused: --http-max-requests are in progress")
				}
				warned.Unlock()
				w.Header().Set("Retry-After", "1")
				httpJSONError(w, http.StatusServiceUnavailable, "server busy: too many requests in progress; retry later")
				return
			}
		}
		maxBody, own := int64(httpMaxBody), false
		for _, l := range c.largeBodies {
			if strings.HasPrefix(r.URL.Path, l.prefix) {
				maxBody, own = l.max, true
				break
			}
		}
		if r.ContentLength > maxBody && !own {
			w.Header().Set("Connection", "close")
			httpJSONError(w, http.StatusRequestEntityTooLarge, "request body of "+strconv.FormatInt(r.ContentLength, 10)+
				" bytes is larger than the limit of "+strconv.FormatInt(maxBody, 10)+" bytes")
			return
		}
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			rc := http.NewResponseController(w)
			if err := rc.SetReadDeadline(time.Now().Add(c.readBodyTimeout)); err == nil {
				r.Body = &deadlineBody{ReadCloser: http.MaxBytesReader(w, r.Body, maxBody), rc: rc}
			} else {
				r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			}
		}
		h.ServeHTTP(w, r)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit(w, r)
		finalWriteDeadline(w, finalWrite) // not after a panic: net/http drops that answer
	})
}

// finalWriteDeadline bounds net/http's own last write of an answer, which
// follows the handler's return: what the handler left buffered (a small
// answer whole, the end of a larger one, a chunked answer's last chunk)
// is flushed then, outside any deadline a handler sets around its own
// writes (pipeline's per-write one), so a client that stopped reading
// would hold the connection (HTTP/1.1) or the stream's goroutine
// (HTTP/2) for good. Set as the handler returns, the deadline cannot cut
// a stream while it is being written; net/http lifts it once the answer
// is written (HTTP/1.1) or the stream is closed (HTTP/2). A hijacked
// connection belongs to its new owner and is left alone: a Write of
// nothing reports it (http.ErrHijacked) and has no other effect (a
// handler that wrote nothing is answered 200 either way).
func finalWriteDeadline(w http.ResponseWriter, d time.Duration) {
	if _, err := w.Write(nil); errors.Is(err, http.ErrHijacked) {
		return
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

// deadlineBody lifts the body's read deadline once the body is read (or
// closed), so that a long response (a server-sent event stream) is not
// cut by it.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	if !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return b.ReadCloser.Close()
}

func httpJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	b := append([]byte(`{"error":`), strconv.Quote(msg)...)
	_, _ = w.Write(append(b, "}\n"...))
}

// limitConns bounds the accepted connections of ln: Accept waits while max
// are open (the kernel's backlog holds newer ones).
func limitConns(ln net.Listener, max int) net.Listener {
	return &connLimiter{Listener: ln, slots: make(chan struct{}, max), closed: make(chan struct{})}
}

type connLimiter struct {
	net.Listener
	slots  chan struct{}
	closed chan struct{}
	once   sync.Once
}

func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *connLimiter) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// httpErrorLog routes net/http's own messages (TLS handshake errors,
// malformed requests) to the server log at debug level: clients cause
// them, and logging each higher would let anyone flood the log.
func httpErrorLog(log zerolog.Logger) *stdlog.Logger {
	return stdlog.New(debugWriter{log.With().Str("component", "http").Logger()}, "", 0)
}

type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
