package api

import (
	"context"
	"net/http"

	"github.com/mandatehq/mandate/catalog"
)

// LimitsPath: GET /api/v1/limits answers the rate limits and budgets of the
// current revision (LimitsInfo), for a gateway node's limits engine.
const LimitsPath = "/api/v1/limits"

// LimitsInfo is every rate limit and budget of one catalog revision, with
// the members of the groups they name (users and service principals,
// nested groups flattened).
type LimitsInfo struct {
	RateLimits []catalog.RateLimitDef      `json:"rate_limits"`
	Budgets    []catalog.BudgetDef         `json:"budgets"`
	Members    map[catalog.ID][]catalog.ID `json:"members"`
	Revision   catalog.Revision            `json:"revision"`
}

// LimitsResolver returns the definitions over svc at its current revision,
// for Options.Limits and in-process gateways.
func LimitsResolver(svc *catalog.Service) func(ctx context.Context) (*LimitsInfo, error) {
	return func(ctx context.Context) (*LimitsInfo, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var info LimitsInfo
		svc.Read(func(m *catalog.Model) {
			info = LimitsInfo{RateLimits: m.AllRateLimits(), Budgets: m.Budgets(), Members: m.LimitGroupMembers(), Revision: m.Revision()}
		})
		if info.RateLimits == nil {
			info.RateLimits = []catalog.RateLimitDef{}
		}
		if info.Budgets == nil {
			info.Budgets = []catalog.BudgetDef{}
		}
		return &info, nil
	}
}

// limits answers GET /api/v1/limits.
func (h *handler) limits(w http.ResponseWriter, r *http.Request) error {
	if h.o.Limits == nil {
		return errorf(http.StatusServiceUnavailable, "limit definitions are not served by this catalog")
	}
	info, err := h.o.Limits(r.Context())
	if err != nil {
		return h.resolveError(err, "reading limit definitions")
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}
