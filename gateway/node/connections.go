package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway"
)

// Connections resolves connections for a gateway node over
// GET /api/v1/connections/{name}, secrets included. Answers are cached:
// one stays in use while Config.Revision reports no newer catalog revision
// than the one it was resolved at, and at most Config.ConnectionTTL.
// Unknown names are cached the same way. Concurrent misses for one name
// share one request. A catalog that does not answer is an error (the
// gateway then refuses the call), never a stale or missing connection.
type Connections struct {
	r  *remote
	sf singleflight.Group

	mu    sync.Mutex
	cache map[string]connEntry

	afterMiss func() // tests: runs between a cache miss and the flight
}

// connEntry is one cached answer; conn nil means no such connection.
type connEntry struct {
	conn *gateway.Connection
	rev  catalog.Revision
	at   time.Time
}

var _ gateway.Connections = (*Connections)(nil)

// NewConnections validates cfg and returns the resolver. Close releases
// its idle connections.
func NewConnections(cfg Config) (*Connections, error) {
	r, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	return &Connections{r: r, cache: map[string]connEntry{}}, nil
}

// Close releases idle HTTP connections.
func (c *Connections) Close() error {
	c.r.close()
	return nil
}

// Connection implements gateway.Connections: name is one-part
// (system.ai.<name>), two-part (in the system catalog) or three-part. The
// answer is the caller's to keep and change.
func (c *Connections) Connection(ctx context.Context, name string) (*gateway.Connection, error) {
	known := c.known()
	if e, ok := c.lookup(name, known); ok {
		return e.result(name)
	}
	if c.afterMiss != nil {
		c.afterMiss()
	}
	ch := c.sf.DoChan(name, func() (any, error) {
		// A flight that ended between this caller's miss and now cached
		// its answer: share it rather than ask again.
		if e, ok := c.lookup(name, known); ok {
			return e, nil
		}
		// Detached from the first caller: the others share the answer.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.r.cfg.RequestTimeout)
		defer cancel()
		return c.fetch(fctx, name, known)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(connEntry).result(name)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Connections) known() catalog.Revision {
	if c.r.cfg.Revision == nil {
		return 0
	}
	return c.r.cfg.Revision()
}

func (c *Connections) lookup(name string, known catalog.Revision) (connEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[name]
	if !ok {
		return e, false
	}
	if e.rev < known || time.Since(e.at) > c.r.cfg.ConnectionTTL {
		delete(c.cache, name)
		return e, false
	}
	return e, true
}

func (c *Connections) fetch(ctx context.Context, name string, known catalog.Revision) (connEntry, error) {
	at := time.Now()
	var info api.ConnectionInfo
	err := c.r.do(ctx, http.MethodGet, api.ConnectionsPath+url.PathEscape(name), nil, &info)
	var e connEntry
	var se *statusError
	switch {
	case err == nil:
		e = connEntry{conn: toConnection(&info), rev: info.Revision, at: at}
	case errors.As(err, &se) && (se.status == http.StatusNotFound || se.status == http.StatusBadRequest):
		e = connEntry{rev: known, at: at} // no such connection, as of the revision known when asked
	default:
		return e, fmt.Errorf("resolving connection %s at the catalog: %w", name, err)
	}
	c.mu.Lock()
	if len(c.cache) >= c.r.cfg.CacheSize {
		for k := range c.cache { // an arbitrary entry
			delete(c.cache, k)
			break
		}
	}
	c.cache[name] = e
	c.mu.Unlock()
	return e, nil
}

func (e connEntry) result(name string) (*gateway.Connection, error) {
	if e.conn == nil {
		return nil, fmt.Errorf("%w: %s", gateway.ErrNoConnection, name)
	}
	return cloneConnection(e.conn), nil
}

// toConnection converts the API's answer.
func toConnection(info *api.ConnectionInfo) *gateway.Connection {
	return &gateway.Connection{Name: info.Name, URL: info.URL, AuthMode: info.AuthMode,
		Options: nonNil(info.Options), Secrets: nonNil(info.Secrets), Revision: info.Revision}
}

func cloneConnection(c *gateway.Connection) *gateway.Connection {
	cp := *c
	cp.Options, cp.Secrets = maps.Clone(c.Options), maps.Clone(c.Secrets)
	return &cp
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// LocalConnections resolves connections in the catalog's own process
// (mandate serve running the gateway): from the catalog.Service's model,
// secrets decrypted with its keyring, cached until the next revision.
type LocalConnections struct {
	svc     *catalog.Service
	resolve func(ctx context.Context, name string) (*api.ConnectionInfo, error)

	mu    sync.Mutex
	rev   catalog.Revision
	cache map[string]*gateway.Connection // nil: no such connection
}

var _ gateway.Connections = (*LocalConnections)(nil)

// NewLocalConnections returns the in-process resolver over svc.
func NewLocalConnections(svc *catalog.Service) *LocalConnections {
	return &LocalConnections{svc: svc, resolve: api.ConnectionResolver(svc), cache: map[string]*gateway.Connection{}}
}

// Connection implements gateway.Connections (names as for Connections).
// The answer is the caller's to keep and change.
func (l *LocalConnections) Connection(ctx context.Context, name string) (*gateway.Connection, error) {
	rev := l.svc.Revision()
	l.mu.Lock()
	if rev != l.rev {
		clear(l.cache)
		l.rev = rev
	}
	conn, hit := l.cache[name]
	l.mu.Unlock()
	if hit {
		return connEntry{conn: conn}.result(name)
	}
	info, err := l.resolve(ctx, name)
	switch {
	case err == nil:
		conn = toConnection(info)
	case catalog.IsCode(err, catalog.CodeNotFound), catalog.IsCode(err, catalog.CodeInvalidArgument):
		conn = nil
	default:
		return nil, err
	}
	l.mu.Lock()
	// Cache only an answer of the revision the cache holds (a commit may
	// have come in between).
	if (conn == nil && rev == l.rev) || (conn != nil && conn.Revision == l.rev) {
		if len(l.cache) >= DefaultCacheSize {
			clear(l.cache)
		}
		l.cache[name] = conn
	}
	l.mu.Unlock()
	return connEntry{conn: conn}.result(name)
}
