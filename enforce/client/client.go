package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/segmentio/encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
)

// Defaults of Config.
const (
	DefaultMaxStaleness   = 5 * time.Second
	DefaultRequestTimeout = time.Second
	DefaultCacheSize      = 10000
	DefaultBackoffMin     = 50 * time.Millisecond
	DefaultBackoffMax     = 2 * time.Second
	DefaultMaxInFlight    = 4
	// MaxBatch is the most checks the client sends in one request; larger
	// batches are split.
	MaxBatch = api.DefaultMaxBatch
	// maxResponse bounds an answer read from the API.
	maxResponse = 64 << 20
)

// Errors, wrapped in the error Authorize returns with a denial.
var (
	// ErrStale: freshness is older than MaxStaleness and the API did not
	// answer.
	ErrStale = errors.New("client: authorization freshness unknown")
	// ErrUnavailable: the API did not answer (transport error, 5xx, 401).
	ErrUnavailable = errors.New("client: the authorization API did not answer")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client: closed")
)

// APIError is an error answer of the API.
type APIError struct {
	Status   int
	Message  string
	Revision catalog.Revision // the newest revision, on 503
}

func (e *APIError) Error() string {
	return fmt.Sprintf("authorization API: %d %s: %s", e.Status, http.StatusText(e.Status), e.Message)
}

// Config configures a Client.
type Config struct {
	// BaseURL of the catalog's HTTP API, e.g. "http://10.0.0.5:8470".
	BaseURL string
	// Token is the node token (DATA_DIR/node-token or MANDATE_NODE_TOKEN).
	Token string
	// HTTPClient is used for API calls (default: a lean keep-alive
	// HTTP/1.1 client, see transport.go, with up to 64 idle connections).
	// The watch stream uses a copy without its Timeout.
	HTTPClient *http.Client
	// TLSConfig is used for an https BaseURL by the default HTTPClient.
	TLSConfig *tls.Config
	// MaxStaleness is how long cached decisions are served without a
	// confirmation of the catalog's revision (default 5 s).
	MaxStaleness time.Duration
	// RequestTimeout bounds one API call (default 1 s).
	RequestTimeout time.Duration
	// CacheSize bounds the cached decisions (default 10000; negative: no
	// cache).
	CacheSize int
	// BackoffMin and BackoffMax bound the delay between watch reconnects
	// (defaults 50 ms and 2 s), doubled after each failure, with jitter.
	BackoffMin, BackoffMax time.Duration
	// Heartbeat is the interval of watch heartbeats asked of the server
	// (default MaxStaleness/4).
	Heartbeat time.Duration
	// MaxInFlight bounds the API requests Authorize has in flight at once
	// (default 4). While all are busy, further Authorize calls queue and
	// go out together as one batch request when one returns: no delay
	// when the client is idle, fewer round trips under load.
	MaxInFlight int
	Logger      zerolog.Logger
}

// Stats describe a client's state.
type Stats struct {
	Revision    catalog.Revision // newest revision known
	Age         time.Duration    // time since freshness was last confirmed
	Watching    bool             // the watch stream is connected
	Connects    int64            // watch connections made
	CacheHits   int64
	CacheMisses int64
	// Queued is the number of Authorize calls waiting for a request slot;
	// Coalesced counts the batch requests made of queued calls.
	Queued    int
	Coalesced int64
}

// cacheKey is a request without its context: grant decisions do not
// depend on it (decisions that do are Contextual and never cached).
type cacheKey struct {
	subject, actor string
	privilege      catalog.Privilege
	typ            catalog.SecurableType
	name           string
	explain        bool
}

func keyOf(r *enforce.Request) cacheKey {
	return cacheKey{r.Subject, r.Actor, r.Privilege, r.Securable.Type, r.Securable.Name, r.Explain}
}

// Client asks the authorization API, caching decisions per revision.
type Client struct {
	cfg        Config
	log        zerolog.Logger
	base       string
	auth       string
	hc, wc     *http.Client
	transport  *transport // ours, closed by Close; nil if given
	start      time.Time
	freshNanos atomic.Int64 // since start, monotonic

	mu      sync.RWMutex
	rev     catalog.Revision
	cache   map[cacheKey]enforce.Decision // all at rev
	changed chan struct{}                 // closed when rev advances

	qmu      sync.Mutex
	inflight int        // Authorize requests in flight, at most MaxInFlight
	queue    []*pending // Authorize requests waiting for a slot

	watching                        atomic.Bool
	connects, hits, misses, batches atomic.Int64

	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

var _ io.Closer = (*Client)(nil)

// New validates cfg and starts the client's watch. Close releases it.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: BaseURL %q must be an http or https URL", cfg.BaseURL)
	}
	if cfg.Token == "" {
		return nil, errors.New("client: a node token is required")
	}
	if cfg.MaxStaleness <= 0 {
		cfg.MaxStaleness = DefaultMaxStaleness
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = cfg.MaxStaleness / 4
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	c := &Client{cfg: cfg, log: cfg.Logger.With().Str("component", "authz-client").Logger(),
		base: strings.TrimRight(cfg.BaseURL, "/"), auth: "Bearer " + cfg.Token,
		start: time.Now(), changed: make(chan struct{}), done: make(chan struct{})}
	if cfg.CacheSize > 0 {
		c.cache = make(map[cacheKey]enforce.Decision)
	}
	c.hc = cfg.HTTPClient
	if c.hc == nil {
		c.transport = newTransport(cfg.TLSConfig, 64)
		c.hc = &http.Client{Transport: c.transport}
	}
	wc := *c.hc
	wc.Timeout = 0
	c.wc = &wc
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.watchLoop()
	return c, nil
}

// Close stops the watch and releases idle connections. Authorize then
// denies with ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.cancel()
		<-c.done
		if c.transport != nil {
			c.transport.CloseIdleConnections()
		}
	})
	return nil
}

// Revision is the newest catalog revision the client knows.
func (c *Client) Revision() catalog.Revision {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// WaitRevision waits until the client knows revision rev or newer (its
// cache then holds nothing older), or ctx ends.
func (c *Client) WaitRevision(ctx context.Context, rev catalog.Revision) error {
	for {
		c.mu.RLock()
		cur, ch := c.rev, c.changed
		c.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return ErrClosed
		}
	}
}

// Stats returns the client's state.
func (c *Client) Stats() Stats {
	c.qmu.Lock()
	queued := len(c.queue)
	c.qmu.Unlock()
	return Stats{Queued: queued, Revision: c.Revision(), Age: c.age(), Watching: c.watching.Load(), Connects: c.connects.Load(),
		CacheHits: c.hits.Load(), CacheMisses: c.misses.Load(), Coalesced: c.batches.Load()}
}

func (c *Client) age() time.Duration {
	return time.Since(c.start) - time.Duration(c.freshNanos.Load())
}

// markFresh records that the catalog's revision was confirmed at t.
func (c *Client) markFresh(t time.Time) {
	n := int64(t.Sub(c.start))
	for {
		old := c.freshNanos.Load()
		if n <= old || c.freshNanos.CompareAndSwap(old, n) {
			return
		}
	}
}

// rewind follows the watch to a revision below the one known: the catalog
// was restored from a backup. The cache is dropped; requests then ask for
// at_least_revision=rev, which the restored catalog can answer.
func (c *Client) rewind(rev catalog.Revision, t time.Time) {
	c.mu.Lock()
	old := c.rev
	if rev < c.rev {
		c.rev = rev
		clear(c.cache)
	}
	c.mu.Unlock()
	if rev < old {
		c.log.Warn().Int64("from", int64(old)).Int64("to", int64(rev)).
			Msg("the catalog's revision went back (restored from a backup?): decision cache dropped")
	}
	c.markFresh(t)
}

// observe records that the catalog was at rev at time t: a newer revision
// drops the cache first, then freshness is confirmed.
func (c *Client) observe(rev catalog.Revision, t time.Time) {
	c.mu.RLock()
	newer := rev > c.rev
	c.mu.RUnlock()
	if newer {
		c.mu.Lock()
		if rev > c.rev {
			c.rev = rev
			clear(c.cache)
			close(c.changed)
			c.changed = make(chan struct{})
		}
		c.mu.Unlock()
	}
	c.markFresh(t)
}

// cacheable reports whether answers to r may be cached: all, when the
// cache is on. Whether an answer is kept depends on the answer (store).
func (c *Client) cacheable(*enforce.Request) bool { return c.cache != nil }

// lookup serves r from the cache if it holds an answer at the current
// revision and freshness is within MaxStaleness.
func (c *Client) lookup(r *enforce.Request) (enforce.Decision, bool) {
	c.mu.RLock()
	d, ok := c.cache[keyOf(r)]
	ok = ok && d.Revision == c.rev
	c.mu.RUnlock()
	if !ok || c.age() > c.cfg.MaxStaleness {
		c.misses.Add(1)
		return enforce.Decision{}, false
	}
	c.hits.Add(1)
	d.Steps = append([]enforce.Step(nil), d.Steps...)
	return d, true
}

// store keeps d for r's question at the current revision, unless a policy
// took part in it (Contextual: it holds for r's context only).
func (c *Client) store(r *enforce.Request, d enforce.Decision) {
	if d.Contextual {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.Revision != c.rev {
		return
	}
	k := keyOf(r)
	if _, ok := c.cache[k]; !ok && len(c.cache) >= c.cfg.CacheSize {
		for old := range c.cache { // an arbitrary entry
			delete(c.cache, old)
			break
		}
	}
	d.Steps = append([]enforce.Step(nil), d.Steps...)
	c.cache[k] = d
}

// Authorize answers r: from the cache when it holds a fresh answer at the
// current revision, else from the API. It fails closed: when no answer can
// be had it returns a denial saying why and a non-nil error.
func (c *Client) Authorize(ctx context.Context, r enforce.Request) (enforce.Decision, error) {
	if c.ctx.Err() != nil {
		return deny("authorization client closed: denying"), ErrClosed
	}
	cacheable := c.cacheable(&r)
	if cacheable {
		if d, ok := c.lookup(&r); ok {
			return d, nil
		}
	}
	r.Context, r.LazyContext = r.ContextMap(), nil // the wire carries the map
	return c.ask(ctx, r)
}

// askOne sends r alone.
func (c *Client) askOne(ctx context.Context, r enforce.Request) (enforce.Decision, error) {
	start := time.Now()
	var d enforce.Decision
	err := c.post(ctx, api.AuthorizeRequest{Check: api.Check{Request: r, AtLeastRevision: c.Revision()}}, &d)
	if err != nil {
		return c.failed(err)
	}
	c.observe(d.Revision, start)
	if c.cacheable(&r) {
		c.store(&r, d)
	}
	return d, nil
}

// AuthorizeBatch answers reqs in order, from the cache where it can and
// in batches of at most MaxBatch from the API otherwise. On an error every
// request not answered from the cache is denied.
func (c *Client) AuthorizeBatch(ctx context.Context, reqs []enforce.Request) ([]enforce.Decision, error) {
	out := make([]enforce.Decision, len(reqs))
	if c.ctx.Err() != nil {
		for i := range out {
			out[i] = deny("authorization client closed: denying")
		}
		return out, ErrClosed
	}
	var miss []int
	for i := range reqs {
		if c.cacheable(&reqs[i]) {
			if d, ok := c.lookup(&reqs[i]); ok {
				out[i] = d
				continue
			}
		}
		miss = append(miss, i)
	}
	for len(miss) > 0 {
		part := miss[:min(len(miss), MaxBatch)]
		miss = miss[len(part):]
		checks := make([]api.Check, len(part))
		for j, i := range part {
			checks[j] = api.Check{Request: reqs[i]}
			checks[j].Context, checks[j].LazyContext = reqs[i].ContextMap(), nil
		}
		start := time.Now()
		var res api.BatchResponse
		req := api.AuthorizeRequest{Checks: &checks}
		req.AtLeastRevision = c.Revision()
		err := c.post(ctx, req, &res)
		if err == nil && len(res.Results) != len(part) {
			err = fmt.Errorf("%w: %d results for %d checks", ErrUnavailable, len(res.Results), len(part))
		}
		if err != nil {
			d, ferr := c.failed(err)
			for _, i := range part {
				out[i] = d
			}
			for _, i := range miss {
				out[i] = d
			}
			return out, ferr
		}
		var newest catalog.Revision
		for _, d := range res.Results {
			newest = max(newest, d.Revision)
		}
		c.observe(newest, start)
		for j, i := range part {
			out[i] = res.Results[j]
			if c.cacheable(&reqs[i]) {
				c.store(&reqs[i], res.Results[j])
			}
		}
	}
	return out, nil
}

func deny(reason string) enforce.Decision { return enforce.Decision{Allowed: false, Reason: reason} }

// failed turns an API failure into a denial that says why.
func (c *Client) failed(err error) (enforce.Decision, error) {
	var ae *APIError
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != http.StatusUnauthorized {
		return deny(fmt.Sprintf("authorization request refused (%s): denying", ae.Message)), err
	}
	if age := c.age(); age > c.cfg.MaxStaleness {
		return deny(fmt.Sprintf("authorization freshness unknown for %s (catalog unreachable): denying", roundAge(age))),
			fmt.Errorf("%w for %s: %w", ErrStale, roundAge(age), err)
	}
	return deny(fmt.Sprintf("authorization API unavailable (%v): denying", err)), err
}

func roundAge(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// post sends body to the authorize endpoint and decodes the answer into out.
func (c *Client) post(ctx context.Context, body any, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("client: encoding the request: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+api.AuthorizePath, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // keep the connection reusable
		resp.Body.Close()
	}()
	return decodeAnswer(resp, out)
}

func decodeAnswer(resp *http.Response, out any) error {
	lim := strictjson.Options{MaxBytes: maxResponse}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorResponse
		if err := strictjson.Decode(resp.Body, &e, lim); err != nil || e.Error == "" {
			e.Error = "no error text"
		}
		ae := &APIError{Status: resp.StatusCode, Message: e.Error, Revision: e.Revision}
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusUnauthorized {
			return fmt.Errorf("%w: %w", ErrUnavailable, ae)
		}
		return ae
	}
	if err := strictjson.Decode(resp.Body, out, lim); err != nil {
		return fmt.Errorf("%w: undecodable answer: %w", ErrUnavailable, err)
	}
	return nil
}
