package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/internal/flight"
)

// Model services and access tokens for the LLM endpoint: remote (a
// gateway node, over the catalog's API) and local (mandate serve, over
// the catalog.Service), with the same answers.

// ModelServices resolves model services for a gateway node over GET
// /api/v1/model-services/{name}, provider API keys included, cached as
// Connections caches connections (until a newer revision is known, at
// most ConnectionTTL; unknown names too; concurrent misses share one
// request). An unreachable catalog is an error, never
// gateway.ErrNoModelService.
type ModelServices struct {
	r     *remote
	cache *revCache[*gateway.ModelService]
	list  *revCache[[]string]
}

var _ gateway.ModelServices = (*ModelServices)(nil)

// NewModelServices validates cfg and returns the resolver.
func NewModelServices(cfg Config) (*ModelServices, error) {
	r, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	return &ModelServices{r: r, cache: newRevCache[*gateway.ModelService](r), list: newRevCache[[]string](r)}, nil
}

// Close releases idle HTTP connections.
func (s *ModelServices) Close() error {
	s.r.close()
	return nil
}

// ModelService implements gateway.ModelServices. The answer is the
// cache's, shared by every call: read it, never change it.
func (s *ModelServices) ModelService(ctx context.Context, name string) (*gateway.ModelService, error) {
	ms, err := s.cache.get(ctx, name, func(ctx context.Context) (*gateway.ModelService, catalog.Revision, bool, error) {
		var info api.ModelServiceInfo
		err := s.r.do(ctx, http.MethodGet, api.ModelServicesPath+url.PathEscape(name), nil, &info)
		var se *statusError
		switch {
		case err == nil:
			return toModelService(&info), info.Revision, true, nil
		case errors.As(err, &se) && (se.status == http.StatusNotFound || se.status == http.StatusBadRequest):
			return nil, 0, false, nil
		}
		return nil, 0, false, fmt.Errorf("resolving model service %s at the catalog: %w", name, err)
	})
	if err != nil {
		return nil, err
	}
	if ms == nil {
		return nil, fmt.Errorf("%w: %s", gateway.ErrNoModelService, name)
	}
	return ms, nil
}

// ListModelServices implements gateway.ModelServices.
func (s *ModelServices) ListModelServices(ctx context.Context) ([]string, error) {
	names, err := s.list.get(ctx, "", func(ctx context.Context) ([]string, catalog.Revision, bool, error) {
		var list api.ModelServiceList
		if err := s.r.do(ctx, http.MethodGet, api.ModelServicesPath[:len(api.ModelServicesPath)-1], nil, &list); err != nil {
			return nil, 0, false, fmt.Errorf("listing model services at the catalog: %w", err)
		}
		return list.Names, list.Revision, true, nil
	})
	return append([]string(nil), names...), err
}

// AccessTokens verifies access tokens for a gateway node over POST
// /api/v1/access-tokens/verify, sending the token's SHA-256 only. Answers,
// invalid ones included, are cached by hash until a newer catalog
// revision is known (a DROP ACCESS TOKEN is a new revision, so it takes
// effect as soon as the node learns of it through its watch) and at most
// ConnectionTTL; concurrent presentations of one token share one request.
// So a token, made up or not, costs at most one request per catalog
// revision (and ConnectionTTL). A cached "invalid" cannot hide a token
// created later: tokens are random, so only that exact token, created
// after it was presented, could; and its creation is a newer revision.
// At most CacheSize valid and CacheSize invalid answers are held, apart:
// made-up tokens evict only each other. Distinct made-up tokens still
// cost one request each, bounded by the node's request caps
// (--http-max-requests and the listener's timeouts). A cached valid
// answer is checked against its expiry on every call (tokenAnswer). The
// Identity is shared by the calls presenting the token: read it, never
// change it.
type AccessTokens struct {
	r     *remote
	cache *revCache[*tokenAnswer]
}

var _ gateway.AccessTokens = (*AccessTokens)(nil)

// NewAccessTokens validates cfg and returns the verifier.
func NewAccessTokens(cfg Config) (*AccessTokens, error) {
	r, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	c := newRevCache[*tokenAnswer](r)
	c.negative = func(a *tokenAnswer) bool { return a.id == nil }
	return &AccessTokens{r: r, cache: c}, nil
}

// Close releases idle HTTP connections.
func (a *AccessTokens) Close() error {
	a.r.close()
	return nil
}

// VerifyAccessToken implements gateway.AccessTokens.
func (a *AccessTokens) VerifyAccessToken(ctx context.Context, token string) (*gateway.Identity, error) {
	if !catalog.LooksLikeAccessToken(token) {
		return nil, invalidToken("invalid access token")
	}
	hash := catalog.HashAccessToken(token)
	ans, err := a.cache.get(ctx, hash, func(ctx context.Context) (*tokenAnswer, catalog.Revision, bool, error) {
		body, _ := json.Marshal(api.AccessTokenRequest{TokenHash: hash})
		var info api.AccessTokenInfo
		if err := a.r.do(ctx, http.MethodPost, api.AccessTokenVerifyPath, body, &info); err != nil {
			return nil, 0, false, fmt.Errorf("verifying an access token at the catalog: %w", err)
		}
		return newTokenAnswer(&info), info.Revision, true, nil
	})
	if err != nil {
		return nil, err
	}
	return ans.identity(time.Now())
}

// LocalModelServices resolves model services in the catalog's own
// process (mandate serve): from the catalog.Service's model through
// enforce/api.ModelServiceResolver, cached until the next revision.
type LocalModelServices struct {
	resolve func(ctx context.Context, name string) (*api.ModelServiceInfo, error)
	names   func(ctx context.Context) (*api.ModelServiceList, error)
	cache   *catalog.RevisionCache[string, *gateway.ModelService] // nil: no such model service
	list    *catalog.RevisionCache[struct{}, []string]
}

var _ gateway.ModelServices = (*LocalModelServices)(nil)

// NewLocalModelServices returns the in-process resolver over svc.
func NewLocalModelServices(svc *catalog.Service) *LocalModelServices {
	return &LocalModelServices{resolve: api.ModelServiceResolver(svc), names: api.ModelServiceNames(svc),
		cache: catalog.NewRevisionCache[string, *gateway.ModelService](svc, DefaultCacheSize),
		list:  catalog.NewRevisionCache[struct{}, []string](svc, 1)}
}

// ModelService implements gateway.ModelServices (names as for
// ModelServices). The answer is the cache's, shared by every call: read
// it, never change it.
func (l *LocalModelServices) ModelService(ctx context.Context, name string) (*gateway.ModelService, error) {
	ms, hit, rev := l.cache.Get(name)
	if !hit {
		info, err := l.resolve(ctx, name)
		switch {
		case err == nil:
			ms = toModelService(info)
			rev = ms.Revision
		case catalog.IsCode(err, catalog.CodeNotFound), catalog.IsCode(err, catalog.CodeInvalidArgument):
			ms = nil
		default:
			return nil, err
		}
		l.cache.Put(rev, name, ms)
	}
	if ms == nil {
		return nil, fmt.Errorf("%w: %s", gateway.ErrNoModelService, name)
	}
	return ms, nil
}

// ListModelServices implements gateway.ModelServices.
func (l *LocalModelServices) ListModelServices(ctx context.Context) ([]string, error) {
	if names, hit, _ := l.list.Get(struct{}{}); hit {
		return append([]string(nil), names...), nil
	}
	list, err := l.names(ctx)
	if err != nil {
		return nil, err
	}
	l.list.Put(list.Revision, struct{}{}, list.Names)
	return append([]string(nil), list.Names...), nil
}

// LocalAccessTokens verifies access tokens in the catalog's own process:
// the token's hash is looked up in the current model (an index, under the
// catalog's read lock) once per catalog revision. The valid answers are
// cached by the token's SHA-256 (never the token) until the next
// revision, so a dropped token is refused from the revision that dropped
// it on; a cached answer is checked against its expiry on every call
// (tokenAnswer). Unknown tokens are not cached (random tokens take no
// memory); at most DefaultCacheSize valid ones are (a full cache is
// emptied). The Identity is shared by the calls presenting the token:
// read it, never change it.
type LocalAccessTokens struct {
	verify func(ctx context.Context, hash string) (*api.AccessTokenInfo, error)
	now    func() time.Time
	cache  *catalog.RevisionCache[[sha256.Size]byte, *tokenAnswer] // valid answers
}

var _ gateway.AccessTokens = (*LocalAccessTokens)(nil)

// NewLocalAccessTokens returns the in-process verifier over svc.
func NewLocalAccessTokens(svc *catalog.Service) *LocalAccessTokens {
	return &LocalAccessTokens{verify: api.AccessTokenVerifier(svc), now: time.Now,
		cache: catalog.NewRevisionCache[[sha256.Size]byte, *tokenAnswer](svc, DefaultCacheSize)}
}

// VerifyAccessToken implements gateway.AccessTokens.
func (l *LocalAccessTokens) VerifyAccessToken(ctx context.Context, token string) (*gateway.Identity, error) {
	if !catalog.LooksLikeAccessToken(token) {
		return nil, invalidToken("invalid access token")
	}
	sum := catalog.AccessTokenSum(token)
	ans, hit, _ := l.cache.Get(sum)
	if !hit {
		info, err := l.verify(ctx, hex.EncodeToString(sum[:]))
		if err != nil {
			return nil, err
		}
		ans = newTokenAnswer(info)
		if ans.id != nil {
			l.cache.Put(info.Revision, sum, ans)
		}
	}
	return ans.identity(l.now())
}

func invalidToken(why string) error {
	return &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: why}
}

// AccessTokenIssuer is the Issuer of identities from access tokens.
const AccessTokenIssuer = "mandate:access-token"

// tokenAnswer is a verification answer as the caller's identity, for
// the caches of AccessTokens and LocalAccessTokens: the token's user,
// acting through its agent; nil for an invalid token (why says why).
// Identity.Token stays empty: an access token is not a credential
// anything upstream could accept.
type tokenAnswer struct {
	id  *gateway.Identity
	why string
}

func newTokenAnswer(info *api.AccessTokenInfo) *tokenAnswer {
	if !info.Valid {
		why := info.Error
		if why == "" {
			why = "invalid access token"
		}
		return &tokenAnswer{why: why}
	}
	return &tokenAnswer{id: &gateway.Identity{Subject: info.User, Actor: info.Agent, Issuer: AccessTokenIssuer,
		ClientID: info.Name, Expiry: info.Expires, TokenID: info.TokenID}}
}

// identity is the rule for an answer, cached or not, at every call: an
// invalid token is refused, a valid one until its expiry.
func (a *tokenAnswer) identity(now time.Time) (*gateway.Identity, error) {
	if a.id == nil {
		return nil, invalidToken(a.why)
	}
	if exp := a.id.Expiry; !exp.IsZero() && !now.Before(exp) {
		return nil, invalidToken(fmt.Sprintf("access token %s expired at %s", a.id.ClientID, exp.UTC().Format(time.RFC3339)))
	}
	return a.id, nil
}

// toModelService converts the API's answer; a provider service used by
// several routes is one value.
func toModelService(info *api.ModelServiceInfo) *gateway.ModelService {
	o := nonNil(info.Options)
	ms := &gateway.ModelService{Name: info.Name, Options: o, Revision: info.Revision, Tags: map[string]string{}}
	if d, err := time.ParseDuration(o[catalog.OptTimeout]); err == nil {
		ms.Timeout = d
	}
	if t := o[catalog.OptTags]; t != "" {
		_ = json.Unmarshal([]byte(t), &ms.Tags) // validated when stored
	}
	ms.LogPayloads = o[catalog.OptLogPayloads] == "true"
	ms.TracePayloads = o[catalog.OptTracePayloads] == "true"
	if ms.LogPayloads {
		ms.SampleRate = 1
		if r, err := strconv.ParseFloat(o[catalog.OptSampleRate], 64); err == nil {
			ms.SampleRate = r
		}
	}
	providers := map[string]*gateway.ProviderService{} // by name: one value per provider service
	convert := func(routes []api.RouteInfo) []gateway.ModelDestination {
		out := make([]gateway.ModelDestination, 0, len(routes))
		for _, r := range routes {
			if r.Provider == nil {
				continue
			}
			p := providers[r.Provider.Name]
			if p == nil {
				p = &gateway.ProviderService{Name: r.Provider.Name, Provider: r.Provider.Provider, URL: r.Provider.URL,
					APIKey: r.Provider.APIKey, Options: nonNil(r.Provider.Options), Prices: map[string]gateway.ModelPrice{}}
				tools, _ := catalog.ParseToolPrices(p.Options[catalog.OptToolPrices]) // validated when stored
				for m, pr := range r.Provider.Prices {
					mp := gateway.ModelPrice{Input: pr.Input, Output: pr.Output, CachedInput: pr.Input, CacheWrite: pr.Input, Tools: tools}
					if pr.CachedInput != nil {
						mp.CachedInput, mp.HasCachedInput = *pr.CachedInput, true
					}
					if pr.CacheWrite != nil {
						mp.CacheWrite, mp.HasCacheWrite = *pr.CacheWrite, true
					}
					if pr.CacheWrite1h != nil {
						mp.CacheWrite1h, mp.HasCacheWrite1h = *pr.CacheWrite1h, true
					}
					p.Prices[m] = mp
				}
				providers[r.Provider.Name] = p
			}
			out = append(out, gateway.ModelDestination{Provider: p, Model: r.Model, Weight: r.Weight})
		}
		return out
	}
	ms.Destinations = convert(info.Destinations)
	ms.Fallbacks = convert(info.Fallbacks)
	for i := range ms.Fallbacks {
		ms.Fallbacks[i].Weight = 0
	}
	return ms
}

// revCache caches answers by key while no newer catalog revision than
// theirs is known (Config.Revision) and for at most ConnectionTTL;
// concurrent misses for a key share one fetch (gateway/internal/flight),
// detached from the first caller's context. It holds at most CacheSize
// answers (a full cache drops an arbitrary one); with negative set, the
// answers it reports (unknown keys anyone can make up) are held apart,
// at most CacheSize more, so that a flood of them drops only each other
// and never a known key's answer.
type revCache[T any] struct {
	r        *remote
	flights  flight.Group[revEntry[T]]
	negative func(T) bool // nil: every answer is kept in m

	mu  sync.Mutex
	m   map[string]revEntry[T]
	neg map[string]revEntry[T] // answers negative reports

	afterMiss func() // tests: runs between a cache miss and the flight
}

type revEntry[T any] struct {
	v   T
	rev catalog.Revision
	at  time.Time
}

func newRevCache[T any](r *remote) *revCache[T] {
	return &revCache[T]{r: r, m: map[string]revEntry[T]{}, neg: map[string]revEntry[T]{}}
}

// get returns the cached answer for key or fetches it. fetch answers the
// value, its revision (ok false: use the revision known when asked).
func (c *revCache[T]) get(ctx context.Context, key string, fetch func(ctx context.Context) (T, catalog.Revision, bool, error)) (T, error) {
	var known catalog.Revision
	if c.r.cfg.Revision != nil {
		known = c.r.cfg.Revision()
	}
	if e, ok := c.lookup(key, known); ok {
		return e.v, nil
	}
	if c.afterMiss != nil {
		c.afterMiss()
	}
	e, err := c.flights.Do(ctx, key, c.r.cfg.RequestTimeout, func() (revEntry[T], bool) { return c.lookup(key, known) },
		func(fctx context.Context) (revEntry[T], error) {
			at := time.Now()
			v, rev, hasRev, err := fetch(fctx)
			if err != nil {
				return revEntry[T]{}, err
			}
			if !hasRev {
				rev = known
			}
			e := revEntry[T]{v: v, rev: rev, at: at}
			m := c.m
			if c.negative != nil && c.negative(v) {
				m = c.neg
			}
			c.mu.Lock()
			if len(m) >= c.r.cfg.CacheSize {
				for k := range m { // an arbitrary entry
					delete(m, k)
					break
				}
			}
			m[key] = e
			c.mu.Unlock()
			return e, nil
		})
	return e.v, err
}

// lookup returns the entry of key unless a newer revision than its own
// is known or it is older than ConnectionTTL (then it is dropped).
func (c *revCache[T]) lookup(key string, known catalog.Revision) (revEntry[T], bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.m
	e, ok := m[key]
	if !ok {
		m = c.neg
		e, ok = m[key]
	}
	if ok && (e.rev < known || time.Since(e.at) > c.r.cfg.ConnectionTTL) {
		delete(m, key)
		ok = false
	}
	return e, ok
}

// len is the number of answers c holds, negative ones included.
func (c *revCache[T]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m) + len(c.neg)
}
