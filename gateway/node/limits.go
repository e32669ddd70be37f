package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/gateway/limits"
)

// Limits fetches the rate limits and budgets for a gateway node's limits
// engine over GET /api/v1/limits, cached until a newer revision is known
// (and at most ConnectionTTL). In the catalog's process use
// api.LimitsResolver(svc) directly.
type Limits struct {
	r     *remote
	cache *revCache[*api.LimitsInfo]
}

// NewLimits validates cfg and returns the fetcher.
func NewLimits(cfg Config) (*Limits, error) {
	r, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	return &Limits{r: r, cache: newRevCache[*api.LimitsInfo](r)}, nil
}

// Close releases idle HTTP connections.
func (l *Limits) Close() error {
	l.r.close()
	return nil
}

// Definitions returns the definitions of the newest revision the catalog
// answered.
func (l *Limits) Definitions(ctx context.Context) (*api.LimitsInfo, error) {
	return l.cache.get(ctx, "", func(ctx context.Context) (*api.LimitsInfo, catalog.Revision, bool, error) {
		var info api.LimitsInfo
		if err := l.r.do(ctx, http.MethodGet, api.LimitsPath, nil, &info); err != nil {
			return nil, 0, false, fmt.Errorf("reading limit definitions at the catalog: %w", err)
		}
		return &info, info.Revision, true, nil
	})
}

var limitLevels = map[catalog.LimitLevel]limits.Level{
	catalog.LevelService: limits.LevelService, catalog.LevelEachUser: limits.LevelEachUser, catalog.LevelUser: limits.LevelUser,
	catalog.LevelServicePrincipal: limits.LevelServicePrincipal, catalog.LevelGroup: limits.LevelGroup,
}

// LimitDefinitions converts the catalog's definitions (api.LimitsResolver,
// Limits.Definitions) into what limits.Limiter.Apply takes.
func LimitDefinitions(info *api.LimitsInfo) (limits.Definitions, error) {
	var d limits.Definitions
	for _, r := range info.RateLimits {
		lv, ok := limitLevels[r.Level]
		if !ok {
			return d, fmt.Errorf("rate limit on %s: unknown level %q", r.SecurableName, r.Level)
		}
		d.RateLimits = append(d.RateLimits, limits.RateLimit{Securable: r.Securable, SecurableName: r.SecurableName, Level: lv,
			Principal: r.Principal, PrincipalName: r.PrincipalName, Requests: r.Requests, Tokens: r.Tokens})
	}
	for _, b := range info.Budgets {
		lv, ok := limitLevels[b.Level]
		if !ok {
			return d, fmt.Errorf("budget %s: unknown level %q", b.Name, b.Level)
		}
		usd, err := limits.ParseMoney(b.LimitUSD)
		if err != nil {
			return d, fmt.Errorf("budget %s: %w", b.Name, err)
		}
		lb := limits.Budget{Name: b.Name, Limit: usd, Level: lv, Principal: b.Principal, PrincipalName: b.PrincipalName,
			Service: b.Service, ServiceName: b.ServiceName}
		for _, t := range b.Tags {
			lb.Tags = append(lb.Tags, limits.Tag{Key: t.Key, Value: t.Value})
		}
		d.Budgets = append(d.Budgets, lb)
	}
	d.Members = info.Members
	return d, nil
}

// Leases sends one lease request of the node's limits backend
// (gateway/limits/nodelimits) over POST /api/v1/limits/leases.
func (l *Limits) Leases(ctx context.Context, req *api.LeaseRequest) (*api.LeaseResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var resp api.LeaseResponse
	if err := l.r.do(ctx, http.MethodPost, api.LeasesPath, body, &resp); err != nil {
		return nil, fmt.Errorf("limit leases at the catalog: %w", err)
	}
	return &resp, nil
}
