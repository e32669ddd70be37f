package node

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"

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
	r     *remote
	cache *revCache[*gateway.Connection] // nil: no such connection
}

var _ gateway.Connections = (*Connections)(nil)

// NewConnections validates cfg and returns the resolver. Close releases
// its idle connections.
func NewConnections(cfg Config) (*Connections, error) {
	r, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	return &Connections{r: r, cache: newRevCache[*gateway.Connection](r)}, nil
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
	conn, err := c.cache.get(ctx, name, func(ctx context.Context) (*gateway.Connection, catalog.Revision, bool, error) {
		var info api.ConnectionInfo
		err := c.r.do(ctx, http.MethodGet, api.ConnectionsPath+url.PathEscape(name), nil, &info)
		var se *statusError
		switch {
		case err == nil:
			return toConnection(&info), info.Revision, true, nil
		case errors.As(err, &se) && (se.status == http.StatusNotFound || se.status == http.StatusBadRequest):
			return nil, 0, false, nil // no such connection, as of the revision known when asked
		}
		return nil, 0, false, fmt.Errorf("resolving connection %s at the catalog: %w", name, err)
	})
	if err != nil {
		return nil, err
	}
	return connResult(conn, name)
}

// connResult is a copy of a cached answer, or ErrNoConnection for nil.
func connResult(conn *gateway.Connection, name string) (*gateway.Connection, error) {
	if conn == nil {
		return nil, fmt.Errorf("%w: %s", gateway.ErrNoConnection, name)
	}
	return cloneConnection(conn), nil
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
	resolve func(ctx context.Context, name string) (*api.ConnectionInfo, error)
	cache   *catalog.RevisionCache[string, *gateway.Connection] // nil: no such connection
}

var _ gateway.Connections = (*LocalConnections)(nil)

// NewLocalConnections returns the in-process resolver over svc.
func NewLocalConnections(svc *catalog.Service) *LocalConnections {
	return &LocalConnections{resolve: api.ConnectionResolver(svc),
		cache: catalog.NewRevisionCache[string, *gateway.Connection](svc, DefaultCacheSize)}
}

// Connection implements gateway.Connections (names as for Connections).
// The answer is the caller's to keep and change.
func (l *LocalConnections) Connection(ctx context.Context, name string) (*gateway.Connection, error) {
	conn, hit, rev := l.cache.Get(name)
	if hit {
		return connResult(conn, name)
	}
	info, err := l.resolve(ctx, name)
	switch {
	case err == nil:
		conn = toConnection(info)
		rev = conn.Revision
	case catalog.IsCode(err, catalog.CodeNotFound), catalog.IsCode(err, catalog.CodeInvalidArgument):
		conn = nil
	default:
		return nil, err
	}
	l.cache.Put(rev, name, conn)
	return connResult(conn, name)
}
