package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/enforce/api"
)

// Defaults of Config.
const (
	DefaultRequestTimeout   = 10 * time.Second
	DefaultWriteTimeout     = 30 * time.Second
	DefaultMaxRequestEvents = 1000
	DefaultMaxRequestBytes  = 512 << 10
	DefaultMaxInFlight      = 4
	DefaultBackoffMin       = 50 * time.Millisecond
	DefaultBackoffMax       = 2 * time.Second
	DefaultCacheSize        = 1024
	// DefaultConnectionTTL bounds how long a resolved connection is used
	// without a Config.Revision to tell when it changed.
	DefaultConnectionTTL = 5 * time.Second
	// DefaultConnectionMaxAge bounds it even with one.
	DefaultConnectionMaxAge = 5 * time.Minute
	// maxAnswer bounds an answer read from the catalog.
	maxAnswer = 4 << 20
)

// Config configures the clients of a gateway node for the catalog's HTTP
// API (the one enforce/client asks for authorization decisions).
type Config struct {
	// BaseURL of the catalog's HTTP API (mandate serve --http-addr), e.g.
	// "https://catalog.internal:8470". Use https unless the network is
	// trusted: connection secrets and audit records travel on it.
	BaseURL string
	// Token is the node token (the catalog's DATA_DIR/node-token or
	// MANDATE_NODE_TOKEN); see ReadTokenFile.
	Token string
	// HTTPClient makes the requests (default: keep-alive, no redirects,
	// TLSConfig for https).
	HTTPClient *http.Client
	TLSConfig  *tls.Config
	// RequestTimeout bounds one HTTP request (default 10 s).
	RequestTimeout time.Duration

	// WriteTimeout bounds how long the AuditSink retries one batch (default
	// 30 s); then its Records fail.
	WriteTimeout time.Duration
	// MaxBatch bounds the events the AuditSink collects for one write
	// (default catalog.DefaultAuditMaxBatch); a write is sent as requests
	// of at most MaxRequestEvents events (default 1000) and MaxRequestBytes
	// of JSON (default 512 KiB; keep it below the catalog's MaxBody, 1 MiB
	// by default), at most MaxInFlight (default 4) at once.
	MaxBatch         int
	MaxRequestEvents int
	MaxRequestBytes  int
	MaxInFlight      int
	// BackoffMin and BackoffMax bound the delay between retries of a
	// failed request (defaults 50 ms and 2 s), doubled after each failure,
	// with jitter.
	BackoffMin, BackoffMax time.Duration
	// OnAuditWrite, when set, is called after each audit write to the
	// catalog (catalog.AuditLogOptions.OnWrite).
	OnAuditWrite func(events int, took time.Duration, err error)

	// Revision returns the newest catalog revision the node knows, for
	// example enforce/client.Client.Revision: a connection resolved at an
	// older revision is resolved again. Without it, answers are used for
	// ConnectionTTL.
	Revision func() catalog.Revision
	// ConnectionTTL bounds how long a resolved connection is used (default
	// DefaultConnectionTTL without Revision, DefaultConnectionMaxAge with
	// it).
	ConnectionTTL time.Duration
	// CacheSize bounds the cached connections, unknown names included
	// (default 1024).
	CacheSize int

	Logger zerolog.Logger
}

// ReadTokenFile reads a node token file (mandate gateway --node-token-file):
// one line, at least api.MinTokenLength characters. A file that others may
// read is refused, as the catalog refuses its own.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("node token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("node token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("the node token %s may be read by others (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", fmt.Errorf("node token %s: %w", path, err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < api.MinTokenLength || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("the node token %s must be one line of at least %d characters", path, api.MinTokenLength)
	}
	return tok, nil
}

// remote is what both clients share: the validated configuration and the
// HTTP plumbing.
type remote struct {
	cfg       Config
	base      string
	auth      string
	hc        *http.Client
	transport *http.Transport // ours, closed by close; nil if given
}

func newRemote(cfg Config) (*remote, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("node: BaseURL %q must be an http or https URL", cfg.BaseURL)
	}
	if cfg.Token == "" {
		return nil, errors.New("node: a node token is required")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxRequestEvents <= 0 {
		cfg.MaxRequestEvents = DefaultMaxRequestEvents
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.ConnectionTTL <= 0 {
		cfg.ConnectionTTL = DefaultConnectionTTL
		if cfg.Revision != nil {
			cfg.ConnectionTTL = DefaultConnectionMaxAge
		}
	}
	r := &remote{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), auth: "Bearer " + cfg.Token, hc: cfg.HTTPClient}
	if r.hc == nil {
		r.transport = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
			TLSClientConfig:     cfg.TLSConfig,
			TLSHandshakeTimeout: 5 * time.Second,
			MaxIdleConnsPerHost: 2 * cfg.MaxInFlight,
			IdleConnTimeout:     90 * time.Second,
		}
		r.hc = &http.Client{Transport: r.transport,
			// The node token must go nowhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return r, nil
}

func (r *remote) close() {
	if r.transport != nil {
		r.transport.CloseIdleConnections()
	}
}

// statusError is an error answer of the catalog.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("catalog API: %d %s: %s", e.status, http.StatusText(e.status), e.msg)
}

// transient reports whether a failed request may succeed when retried.
func transient(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.status >= 500 || se.status == http.StatusTooManyRequests || se.status == http.StatusRequestTimeout
	}
	return !errors.Is(err, context.Canceled) // transport errors and per-request timeouts
}

// do sends one request (body nil for GET) and decodes a 200 answer into
// out; any other answer is a *statusError.
func (r *remote) do(ctx context.Context, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	req.Header.Set("Authorization", r.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // keep the connection reusable
		resp.Body.Close()
	}()
	lim := strictjson.Options{MaxBytes: maxAnswer}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		if err := strictjson.Decode(resp.Body, &e, lim); err != nil || e.Error == "" {
			e.Error = "no error text"
		}
		return &statusError{status: resp.StatusCode, msg: e.Error}
	}
	if err := strictjson.Decode(resp.Body, out, lim); err != nil {
		return fmt.Errorf("undecodable answer from the catalog: %w", err)
	}
	return nil
}

// backoff returns the delay before retry number attempt (from 0).
func (r *remote) backoff(attempt int) time.Duration {
	d := r.cfg.BackoffMin << min(attempt, 20)
	if d <= 0 || d > r.cfg.BackoffMax {
		d = r.cfg.BackoffMax
	}
	return d/2 + rand.N(d/2+1)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
