package api

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// Model services and access tokens for gateway nodes: the LLM endpoint's
// view of the catalog.
const (
	// ModelServicesPath: GET /api/v1/model-services/{name} answers the
	// resolved model service (ModelServiceInfo, provider API keys
	// included: TLS or loopback only, like connections); GET
	// /api/v1/model-services lists every model service's full name
	// (ModelServiceList).
	ModelServicesPath = "/api/v1/model-services/"
	// AccessTokenVerifyPath: POST {"token_hash"} answers
	// AccessTokenInfo. Nodes send the token's SHA-256
	// (catalog.HashAccessToken), never the token.
	AccessTokenVerifyPath = "/api/v1/access-tokens/verify"
)

// PriceInfo is a model's price in USD per million tokens; CachedInput and
// CacheWrite are null when the prices option does not give them.
type PriceInfo struct {
	Input       float64  `json:"input"`
	Output      float64  `json:"output"`
	CachedInput *float64 `json:"cached_input,omitempty"`
	CacheWrite  *float64 `json:"cache_write,omitempty"`
	// CacheWrite1h (Anthropic's 1-hour cache writes) is null when not
	// given too.
	CacheWrite1h *float64 `json:"cache_write_1h,omitempty"`
}

// ProviderServiceInfo is a model provider service resolved for a node.
// APIKey is the decrypted api_key: never log it.
type ProviderServiceInfo struct {
	Name     string               `json:"name"`
	Provider string               `json:"provider"`
	URL      string               `json:"url"`
	APIKey   string               `json:"api_key,omitempty"`
	Prices   map[string]PriceInfo `json:"prices"`
	Options  map[string]string    `json:"options"`
}

// RouteInfo is one usable destination or fallback of a model service.
type RouteInfo struct {
	Provider *ProviderServiceInfo `json:"provider"`
	Model    string               `json:"model"`
	Weight   int                  `json:"weight,omitempty"`
}

// ModelServiceInfo is a model service resolved for a node: the
// destinations its owner may still use (those no longer usable are left
// out and named in Unusable; the weights of the rest are scaled back to a
// sum of 100), its fallbacks, and its non-secret options.
type ModelServiceInfo struct {
	Name         string            `json:"name"`
	Destinations []RouteInfo       `json:"destinations"`
	Fallbacks    []RouteInfo       `json:"fallbacks"`
	Options      map[string]string `json:"options"`
	Unusable     []string          `json:"unusable,omitempty"`
	Revision     catalog.Revision  `json:"revision"`
}

// ModelServiceList answers GET /api/v1/model-services.
type ModelServiceList struct {
	Names    []string         `json:"names"`
	Revision catalog.Revision `json:"revision"`
}

// AccessTokenRequest is the body of POST /api/v1/access-tokens/verify.
type AccessTokenRequest struct {
	TokenHash string `json:"token_hash"`
}

// AccessTokenInfo answers it: Valid with the token's user (and agent),
// or not with Error (unknown, dropped, expired: nothing more).
type AccessTokenInfo struct {
	Valid    bool             `json:"valid"`
	Error    string           `json:"error,omitempty"`
	Name     string           `json:"name,omitempty"`
	TokenID  string           `json:"token_id,omitempty"`
	User     string           `json:"user,omitempty"`
	Agent    string           `json:"agent,omitempty"`
	Expires  time.Time        `json:"expires,omitzero"`
	Revision catalog.Revision `json:"revision"`
}

// lookupNamed finds the securable of type typ named by parts (resolved
// like connection names), retrying the unquoted parts in lower case.
func lookupNamed(m *catalog.Model, typ catalog.SecurableType, parts []string, quoted []bool) (*catalog.Securable, error) {
	path, err := catalog.ResolveName(typ, parts, catalog.SystemCatalog)
	if err != nil {
		return nil, err
	}
	s, err := m.Lookup(typ, path)
	if err == nil || !catalog.IsCode(err, catalog.CodeNotFound) {
		return s, err
	}
	lower := make([]string, len(parts))
	changed := false
	for i, p := range parts {
		lower[i] = p
		if !quoted[i] {
			lower[i] = strings.ToLower(p)
			changed = changed || lower[i] != p
		}
	}
	if !changed {
		return nil, err
	}
	lpath, lerr := catalog.ResolveName(typ, lower, catalog.SystemCatalog)
	if lerr != nil {
		return nil, err
	}
	if s, lerr := m.Lookup(typ, lpath); lerr == nil {
		return s, nil
	}
	return nil, err
}

// ModelServiceResolver returns a resolver of model service names over svc
// (names as ConnectionResolver takes them), for Options.ModelServices and
// in-process gateways. An unknown model service is CodeNotFound; one
// whose owner may no longer use any of its primary destinations is
// CodeUnavailable (the gateway fails closed). Provider API keys are
// decrypted with svc.Keyring().
func ModelServiceResolver(svc *catalog.Service) func(ctx context.Context, name string) (*ModelServiceInfo, error) {
	return func(ctx context.Context, name string) (*ModelServiceInfo, error) {
		var (
			info    ModelServiceInfo
			sealed  = map[catalog.ID][]byte{}
			byID    = map[catalog.ID]*ProviderServiceInfo{}
			primary int
		)
		err := resolveNamed(ctx, svc, catalog.TypeModelService, name, func(m *catalog.Model, s *catalog.Securable) {
			info = ModelServiceInfo{Name: s.FullName(), Options: m.DisplayOptions(s), Revision: m.Revision()}
			delete(info.Options, catalog.OptDestinations)
			delete(info.Options, catalog.OptFallbacks)
			dst, fb := m.ModelRoutes(s)
			convert := func(routes []catalog.ResolvedRoute) []RouteInfo {
				out := make([]RouteInfo, 0, len(routes))
				for _, r := range routes {
					if r.Denied != "" {
						info.Unusable = append(info.Unusable, r.Denied)
						continue
					}
					p := byID[r.ProviderService.ID]
					if p == nil {
						ps := r.ProviderService
						prices, _ := catalog.ParsePrices(ps.Options[catalog.OptPrices])
						p = &ProviderServiceInfo{Name: ps.FullName(), Provider: ps.Options[catalog.OptProvider],
							URL: ps.Options[catalog.OptURL], Prices: map[string]PriceInfo{}, Options: map[string]string{}}
						for k, v := range ps.Options {
							p.Options[k] = v
						}
						for model, pr := range prices {
							p.Prices[model] = PriceInfo{Input: pr.Input, Output: pr.Output, CachedInput: pr.CachedInput, CacheWrite: pr.CacheWrite,
								CacheWrite1h: pr.CacheWrite1h}
						}
						byID[ps.ID], sealed[ps.ID] = p, ps.Secrets
					}
					out = append(out, RouteInfo{Provider: p, Model: r.Model, Weight: r.Weight})
				}
				return out
			}
			info.Destinations = convert(dst)
			primary = len(dst)
			info.Fallbacks = convert(fb)
		})
		if err != nil {
			return nil, err
		}
		if len(info.Destinations) == 0 {
			why := "it routes nowhere"
			if len(info.Unusable) > 0 {
				why = info.Unusable[0]
			}
			return nil, catalog.Errorf(catalog.CodeUnavailable, "model service %s has no usable destination: %s", info.Name, why)
		}
		if len(info.Destinations) < primary {
			rescale(info.Destinations)
		}
		for id, p := range byID {
			secrets, err := svc.Keyring().OpenMap(sealed[id], catalog.SecretsAAD(id))
			if err != nil {
				return nil, err
			}
			p.APIKey = secrets[catalog.OptAPIKey]
		}
		return &info, nil
	}
}

// rescale scales the weights of the usable destinations back to a sum of
// 100 (largest remainder; all equal when they sum to 0).
func rescale(routes []RouteInfo) {
	sum := 0
	for _, r := range routes {
		sum += r.Weight
	}
	if sum == 0 {
		for i := range routes {
			routes[i].Weight = 1
		}
		sum = len(routes)
	}
	type rem struct{ i, r int }
	rems := make([]rem, len(routes))
	total := 0
	for i := range routes {
		w := routes[i].Weight * 100
		routes[i].Weight = w / sum
		rems[i] = rem{i, w % sum}
		total += routes[i].Weight
	}
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].r > rems[b].r })
	for k := 0; total < 100; k++ {
		routes[rems[k%len(rems)].i].Weight++
		total++
	}
}

// ModelServiceNames returns a lister of every model service's full name
// over svc, for Options.ModelServiceNames.
func ModelServiceNames(svc *catalog.Service) func(ctx context.Context) (*ModelServiceList, error) {
	return func(ctx context.Context) (*ModelServiceList, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var out ModelServiceList
		svc.Read(func(m *catalog.Model) {
			out.Revision = m.Revision()
			var walk func(id catalog.ID)
			walk = func(id catalog.ID) {
				for _, c := range m.Children(id) {
					switch c.Type {
					case catalog.TypeModelService:
						out.Names = append(out.Names, c.FullName())
					case catalog.TypeCatalog, catalog.TypeSchema:
						walk(c.ID)
					}
				}
			}
			if ms := m.Metastore(); ms != nil {
				walk(ms.ID)
			}
		})
		sort.Strings(out.Names)
		if out.Names == nil {
			out.Names = []string{}
		}
		return &out, nil
	}
}

// AccessTokenVerifier returns a verifier of access-token hashes over svc
// (catalog.Model.VerifyAccessTokenHash at the current revision), for
// Options.AccessTokens and in-process gateways.
func AccessTokenVerifier(svc *catalog.Service) func(ctx context.Context, hash string) (*AccessTokenInfo, error) {
	return func(ctx context.Context, hash string) (*AccessTokenInfo, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var info AccessTokenInfo
		now := time.Now()
		svc.Read(func(m *catalog.Model) {
			info.Revision = m.Revision()
			t, err := m.VerifyAccessTokenHash(hash, now)
			if err != nil {
				info.Error = err.Error()
				return
			}
			info.Valid, info.Name, info.TokenID, info.User, info.Expires = true, t.Name, t.TokenID, t.User.Name, t.Expires
			if t.Agent != nil {
				info.Agent = t.Agent.Name
			}
		})
		return &info, nil
	}
}

// modelService answers GET /api/v1/model-services[/{name}]: the list, or
// one service with its provider API keys (TLS or loopback only).
func (h *handler) modelService(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(ModelServicesPath, "/")), "/")
	if name == "" {
		if h.o.ModelServiceNames == nil {
			return errorf(http.StatusServiceUnavailable, "model service resolution is not configured on this catalog")
		}
		list, err := h.o.ModelServiceNames(r.Context())
		if err != nil {
			return h.resolveError(err, "listing model services")
		}
		writeJSON(w, http.StatusOK, list)
		return nil
	}
	return sendSecrets(h, w, r, secretKind{what: "model service", log: "model_service", secrets: "model services' provider API keys", path: ModelServicesPath},
		h.o.ModelServices, name, func(m *ModelServiceInfo) (string, catalog.Revision) { return m.Name, m.Revision })
}

// accessToken answers POST /api/v1/access-tokens/verify.
func (h *handler) accessToken(w http.ResponseWriter, r *http.Request) error {
	if h.o.AccessTokens == nil {
		return errorf(http.StatusServiceUnavailable, "access token verification is not configured on this catalog")
	}
	var req AccessTokenRequest
	if err := h.decodeBody(w, r, &req); err != nil {
		return err
	}
	if len(req.TokenHash) != 64 {
		return errorf(http.StatusBadRequest, "malformed request: token_hash must be the hex SHA-256 of the token")
	}
	info, err := h.o.AccessTokens(r.Context(), strings.ToLower(req.TokenHash))
	if err != nil {
		return h.resolveError(err, "verifying an access token")
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// secretsTransport refuses to send decrypted secrets over cleartext HTTP
// to a non-loopback peer (unless Options.AllowCleartextSecrets).
func (h *handler) secretsTransport(r *http.Request, what string) error {
	if r.TLS == nil && !loopbackPeer(r) && !h.o.AllowCleartextSecrets {
		h.log.Warn().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Msg("refused to send secrets over cleartext HTTP to a non-loopback address")
		return errorf(http.StatusForbidden, "%s are sent only over TLS or to a loopback address: "+
			"serve the catalog's HTTP API with TLS (mandate serve --http-tls on) and reach it with https://", what)
	}
	return nil
}

// resolveError maps a resolver's catalog error to its HTTP answer.
func (h *handler) resolveError(err error, what string) error {
	switch catalog.CodeOf(err) {
	case catalog.CodeNotFound:
		return errorf(http.StatusNotFound, "%s", err)
	case catalog.CodeInvalidArgument:
		return errorf(http.StatusBadRequest, "%s", err)
	case catalog.CodeUnavailable:
		return errorf(http.StatusServiceUnavailable, "%s", err)
	}
	h.log.Error().Err(err).Msg(what + " for a node failed")
	return errorf(http.StatusInternalServerError, "internal error")
}
