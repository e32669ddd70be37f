package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// transport is the client's default http.RoundTripper: plain HTTP/1.1
// keep-alive in the calling goroutine. The caller writes the request and
// reads the answer on a pooled connection itself, where http.Transport
// hands each exchange to two goroutines per connection; on a small machine
// those hand-offs dominate the tail latency of a sub-millisecond API.
// Request and response are written and parsed by net/http (Request.Write,
// ReadResponse). No proxies, no HTTP/2, no redirects: the API needs none.
type transport struct {
	dialer  net.Dialer
	tls     *tls.Config // for https URLs
	maxIdle int

	mu     sync.Mutex
	idle   map[string][]*pconn // by scheme://host:port
	closed bool
}

type pconn struct {
	key string
	c   net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
}

var errTransportClosed = errors.New("client: closed")

var (
	_ http.RoundTripper = (*transport)(nil)
	_ io.ReadCloser     = (*body)(nil)
)

func newTransport(tlsCfg *tls.Config, maxIdle int) *transport {
	return &transport{dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second},
		tls: tlsCfg, maxIdle: maxIdle, idle: map[string][]*pconn{}}
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		pc, reused, err := t.get(ctx, req)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		// Cancellation interrupts any read or write on the connection.
		stop := context.AfterFunc(ctx, func() { _ = pc.c.SetDeadline(time.Unix(1, 0)) })
		resp, err := pc.exchange(req)
		if err == nil {
			resp.Body = &body{rc: resp.Body, t: t, pc: pc, stop: stop, keep: !resp.Close}
			return resp, nil
		}
		stop()
		pc.c.Close()
		// A kept-alive connection the server has closed in the meantime
		// fails at once: try once more on a new one (the API's requests
		// are all read-only).
		if reused && attempt == 0 && ctx.Err() == nil && req.GetBody != nil && staleConn(err) {
			if req.Body, err = req.GetBody(); err == nil {
				continue
			}
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, err
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (pc *pconn) exchange(req *http.Request) (*http.Response, error) {
	if err := req.Write(pc.bw); err != nil {
		return nil, err
	}
	if err := pc.bw.Flush(); err != nil {
		return nil, err
	}
	return http.ReadResponse(pc.br, req)
}

func (t *transport) get(ctx context.Context, req *http.Request) (*pconn, bool, error) {
	key := req.URL.Scheme + "://" + canonicalAddr(req)
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, false, errTransportClosed
	}
	if l := t.idle[key]; len(l) > 0 {
		pc := l[len(l)-1]
		t.idle[key] = l[:len(l)-1]
		t.mu.Unlock()
		return pc, true, nil
	}
	t.mu.Unlock()
	addr := canonicalAddr(req)
	c, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	if req.URL.Scheme == "https" {
		cfg := t.tls.Clone()
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = req.URL.Hostname()
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, false, err
		}
		c = tc
	}
	return &pconn{key: key, c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}, false, nil
}

func canonicalAddr(req *http.Request) string {
	port := req.URL.Port()
	if port == "" {
		port = "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(req.URL.Hostname(), port)
}

func (t *transport) put(pc *pconn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || len(t.idle[pc.key]) >= t.maxIdle {
		pc.c.Close()
		return
	}
	t.idle[pc.key] = append(t.idle[pc.key], pc)
}

// CloseIdleConnections closes the idle connections and every connection
// returned later (http.Client.CloseIdleConnections calls it).
func (t *transport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for k, l := range t.idle {
		for _, pc := range l {
			pc.c.Close()
		}
		delete(t.idle, k)
	}
}

// body returns its connection to the pool once read to the end and closed.
type body struct {
	rc   io.ReadCloser
	t    *transport
	pc   *pconn
	stop func() bool
	keep bool // the server keeps the connection open
	eof  bool
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
	} else if err != nil {
		b.keep = false
	}
	return n, err
}

func (b *body) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.rc.Close()
	// stop reports false if cancellation already set a past deadline.
	if b.stop() && b.eof && b.keep && err == nil && b.pc.c.SetDeadline(time.Time{}) == nil {
		b.t.put(b.pc)
		return nil
	}
	b.pc.c.Close()
	return err
}
