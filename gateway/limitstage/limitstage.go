// Package limitstage is the pipeline's limits stage over gateway/limits:
// it maps a pipeline.Call (names: the human, the agent, the model service
// or connection) onto a limits.Call (catalog IDs), turns the engine's
// refusals into pipeline errors the protocol adapters render (429 with
// Retry-After and the caller's x-ratelimit-* position; an exhausted budget
// as such), and settles each reservation with the call's real usage and
// cost — or releases it when the call never reached an upstream.
//
//	stage := limitstage.New(lim, ids)            // lim: *limits.Limiter, Apply'd per catalog revision
//	pipeline.Config{..., Limiter: stage}
//
// Model calls (Call.Model) reserve their input estimate plus max_tokens
// (the adapter's OutputCap when the client set none: a call under a token
// limit or a budget is then Capped, held to it upstream) and, under a
// budget, the worst-case cost over every destination they
// may reach, their bound on the uses of the tools billed per use included
// (ModelCall.ToolUses, with the adapter's bound for the tools the client
// left unbounded: the call is then ToolCapped, held to it upstream); MCP calls of work (Counted: tools/call, not the session's
// lifecycle or listings) count one request against the connection's
// limits and are never charged to budgets. Price is the one conversion of a
// provider service's prices into the engine's, and Cost the one pricing
// rule for a call's usage (the usage row's cost_usd and the budget's
// settlement agree to the nano-dollar).
package limitstage

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// Resolver maps the names of a call onto catalog IDs, at the current
// revision. An unknown name is false.
type Resolver interface {
	PrincipalID(name string) (catalog.ID, bool)
	SecurableID(typ catalog.SecurableType, fullName string) (catalog.ID, bool)
}

// Stage is a pipeline.Limiter.
type Stage struct {
	lim *limits.Limiter
	ids Resolver
}

var _ pipeline.Limiter = (*Stage)(nil)

// New returns the limits stage over lim, resolving names with ids.
func New(lim *limits.Limiter, ids Resolver) *Stage { return &Stage{lim: lim, ids: ids} }

// The securable types limits apply to.
const (
	typeModelService = catalog.SecurableType("MODEL SERVICE")
	typeConnection   = catalog.TypeConnection
)

// Reserve admits the call against its rate limits and budgets and
// reserves what it may use.
func (s *Stage) Reserve(ctx context.Context, c *pipeline.Call) (pipeline.Reservation, error) {
	var kind limits.SecurableKind
	switch c.Securable.Type {
	case typeModelService:
		kind = limits.ModelService
	case typeConnection:
		kind = limits.Connection
		if !Counted(c.Action) {
			return nil, nil
		}
	default:
		return nil, nil
	}
	if c.Listing || c.Identity == nil {
		return nil, nil // a listing calls no upstream
	}
	if !s.lim.Limits(kind) {
		return nil, nil // nothing defined that could apply: no names to resolve
	}
	sec, ok := s.ids.SecurableID(c.Securable.Type, c.Securable.Name)
	subj, ok2 := s.ids.PrincipalID(c.Identity.Subject)
	if !ok || !ok2 {
		// Authorized a moment ago, gone now (a DROP in between): refuse
		// rather than admit without limits.
		return nil, &pipeline.Error{Kind: pipeline.KindUnavailable, Status: http.StatusServiceUnavailable,
			Message: "the call's rate limits cannot be checked right now; retry", Audit: "limits: principal or securable not found"}
	}
	lc := limits.Call{Kind: kind, Securable: sec, Subject: subj, Tags: c.Tags}
	if a := c.Identity.Actor; a != "" {
		if lc.Actor, ok = s.ids.PrincipalID(a); !ok {
			return nil, &pipeline.Error{Kind: pipeline.KindUnavailable, Status: http.StatusServiceUnavailable,
				Message: "the call's rate limits cannot be checked right now; retry", Audit: "limits: actor not found"}
		}
	}
	m := c.Model
	if m != nil && kind == limits.ModelService {
		lc.InputTokens, lc.MaxTokens, lc.PerUseTool, lc.ToolUses = m.InputTokens, m.MaxTokens, m.PerUseTool, m.ToolUses
		if m.MaxTokens <= 0 {
			// No cap from the client: reserve the adapter's, which it
			// imposes if a limit took it (below). An endpoint without
			// output reserves one token (its worst case is its input).
			lc.MaxTokens = max(m.OutputCap, 1)
		}
		var dbuf [4]limits.Destination // the usual split and fallbacks, on the stack
		lc.Destinations = dbuf[:0]
		tools := m.ToolUses != [catalog.NumToolKinds]int64{}
		for _, d := range m.Destinations {
			ld := limits.Destination{Price: Price(d.Price), Priced: d.Priced}
			if !d.Priced || tools && !ld.Price.Covers(&m.ToolUses) { // named only for the refusal a missing price may be
				ld.Name = d.Service + "/" + d.Model
			}
			lc.Destinations = append(lc.Destinations, ld)
		}
	}
	r, err := s.lim.Reserve(ctx, &lc)
	if err != nil {
		return nil, refusal(err)
	}
	if r == nil {
		return nil, nil
	}
	if m != nil && m.MaxTokens <= 0 && m.OutputCap > 0 && (r.Tokens() > 0 || r.Cost() > 0) {
		m.MaxTokens, m.Capped = m.OutputCap, true // a token limit or budget holds the call to it
	}
	if m != nil && m.ToolCapNeeded && r.Cost() > 0 {
		m.ToolCapped = true // a budget reserved the bound on the tool uses
	}
	c.Limits = info(r.Headers(), false)
	return &reservation{s: s, r: r}, nil
}

// Counted reports whether an MCP call with this action (the JSON-RPC
// method) counts against its connection's request limits: the calls that
// do work at the MCP server (tools/call, resources/read, prompts/get,
// completion/complete) do; the session's lifecycle and bookkeeping
// (server/discover, initialize, ping, notifications, subscriptions,
// logging/setLevel, the HTTP GET and DELETE of a session) and listings
// (tools/list, ...) do not, so that a limit of N is N calls of work and a
// session can always be set up. (The MCP adapter admits no other method.)
func Counted(action string) bool {
	switch action {
	case "tools/call", "resources/read", "prompts/get", "completion/complete":
		return true
	}
	return false
}

// refusal is the engine's error as the pipeline's.
func refusal(err error) error {
	var ref *limits.Refusal
	if !errors.As(err, &ref) {
		return fmt.Errorf("limits: %w", err)
	}
	e := &pipeline.Error{Status: ref.Status, Message: ref.Error(), RetryAfter: ref.RetryAfter, Final: !ref.Retryable()}
	switch ref.Kind {
	case limits.RateLimited:
		e.Kind, e.Limit = pipeline.KindLimited, info(ref.Headers, false)
	case limits.BudgetExhausted:
		e.Kind, e.Limit = pipeline.KindLimited, &pipeline.LimitInfo{Budget: true}
	case limits.PriceUnknown:
		e.Kind, e.Limit = pipeline.KindLimited, &pipeline.LimitInfo{Budget: true}
	case limits.OutputCapRequired, limits.UnpricedTool:
		e.Kind = pipeline.KindInvalid
	default: // BudgetUnavailable
		e.Kind = pipeline.KindUnavailable
	}
	e.Reason = ref.Kind.String() + ": " + e.Message
	return e
}

func info(h limits.RateHeaders, budget bool) *pipeline.LimitInfo {
	if !h.Requests.Set && !h.Tokens.Set && !budget {
		return nil
	}
	// One allocation: the info and both windows.
	v := &struct {
		li       pipeline.LimitInfo
		req, tok pipeline.RateWindow
	}{li: pipeline.LimitInfo{Budget: budget}}
	if r := h.Requests; r.Set {
		v.req = pipeline.RateWindow{Limit: r.Limit, Remaining: r.Remaining, Reset: r.Reset}
		v.li.Requests = &v.req
	}
	if r := h.Tokens; r.Set {
		v.tok = pipeline.RateWindow{Limit: r.Limit, Remaining: r.Remaining, Reset: r.Reset}
		v.li.Tokens = &v.tok
	}
	return &v.li
}

type reservation struct {
	s *Stage
	r *limits.Reservation
}

// Settle charges the call's real usage and cost (refunding the rest of
// the reservation), or, when the call reached no upstream, gives back
// everything it reserved.
func (r *reservation) Settle(_ context.Context, c *pipeline.Call, u pipeline.Usage) {
	reached := c.UpstreamStatus != 0
	if m := c.Model; m != nil {
		reached = m.Attempts > 0
	}
	if !reached {
		r.s.lim.Release(r.r)
		return
	}
	var cost limits.Money
	if m := c.Model; m != nil {
		cost = limits.Money(m.CostNanos)
	}
	r.s.lim.Settle(r.r, Usage(u), cost)
}

// Usage is a call's usage in the engine's terms: each token in exactly
// one class (the pipeline's input count includes cache reads and writes,
// its cache writes those with the 1-hour TTL).
func Usage(u pipeline.Usage) limits.Usage {
	w1h := min(u.CacheWrite1hTokens, u.CacheWriteTokens)
	return limits.Usage{InputTokens: max(0, u.InputTokens-u.CachedInputTokens-u.CacheWriteTokens), OutputTokens: u.OutputTokens,
		CachedInputTokens: u.CachedInputTokens, CacheWriteTokens: u.CacheWriteTokens - w1h, CacheWrite1hTokens: w1h,
		ToolUses: u.ToolUses}
}

// Price converts a provider service's price (USD per million tokens) into
// the engine's. A cache price not given costs as much as input, a 1-hour
// cache write price not given twice as much (limits.Price).
func Price(p gateway.ModelPrice) limits.Price {
	out := limits.Price{Input: limits.MoneyFromUSD(p.Input), Output: limits.MoneyFromUSD(p.Output), Cache1h: p.Cache1h}
	if p.HasCachedInput {
		out.CachedInput = limits.MoneyFromUSD(p.CachedInput)
	}
	if p.HasCacheWrite {
		out.CacheWrite = limits.MoneyFromUSD(p.CacheWrite)
	}
	if p.HasCacheWrite1h {
		out.CacheWrite1h = limits.MoneyFromUSD(p.CacheWrite1h)
	}
	for k, set := range p.Tools.Set {
		if set {
			out.PerUse[k], out.HasPerUse[k] = limits.MoneyFromUSD(p.Tools.PerThousand[k]), true
		}
	}
	return out
}

// Cost is what usage u costs at price p, in nano-USD, rounded up: the one
// pricing rule (limits.Price.Cost) for usage rows and budgets alike. Uses
// of a tool kind p has no tool price for add nothing (a budgeted call
// cannot make them: UnpricedTool).
func Cost(p gateway.ModelPrice, u pipeline.Usage) int64 {
	return int64(Price(p).Cost(Usage(u)))
}
