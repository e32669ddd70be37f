package limitstage

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// TestCost: each token class priced once; the pipeline's input count
// includes the cache classes.
func TestCost(t *testing.T) {
	p := gateway.ModelPrice{Input: 3, Output: 15, CachedInput: 0.3, CacheWrite: 3.75, HasCachedInput: true, HasCacheWrite: true}
	u := pipeline.Usage{InputTokens: 1000, CachedInputTokens: 600, CacheWriteTokens: 100, OutputTokens: 50, ReasoningTokens: 10}
	tools, err := catalog.ParseToolPrices("web_search=10, file_search=2.5")
	if err != nil {
		t.Fatal(err)
	}
	withTools := p
	withTools.Tools = tools
	searched := u
	searched.ToolUses[catalog.ToolWebSearch], searched.ToolUses[catalog.ToolFileSearch] = 3, 2
	// 300 uncached × 3,000 + 600 × 300 + 100 × 3,750 + 50 × 15,000 nano-USD
	tokens := int64(300*3000 + 600*300 + 100*3750 + 50*15000)
	for _, tc := range []struct {
		name string
		p    gateway.ModelPrice
		u    pipeline.Usage
		want int64
	}{
		{"token classes", p, u, tokens},
		// Without cache prices, cache tokens cost as much as input.
		{"without cache prices", gateway.ModelPrice{Input: 2, Output: 8}, u, 1000*2000 + 50*8000},
		{"tool prices, no uses", withTools, u, tokens},
		// 3 searches at $10 per 1,000 (0.01 USD each), 2 file searches at $2.50 per 1,000
		{"tool uses", withTools, searched, tokens + 3*10_000_000 + 2*2_500_000},
		// (an unbudgeted call: a budgeted one could not make them)
		{"tool uses without a tool price: the tokens", p, searched, tokens},
	} {
		if got := Cost(tc.p, tc.u); got != tc.want {
			t.Errorf("%s: cost %d, want %d", tc.name, got, tc.want)
		}
	}
	if lu := Usage(pipeline.Usage{InputTokens: 5, CachedInputTokens: 9}); lu.InputTokens != 0 || lu.CachedInputTokens != 9 {
		t.Errorf("usage %+v", lu)
	}
}

// TestCostCacheWrite1h: of the cache writes, those with the 1-hour TTL
// cost their own price — given, or else twice the input — and the
// reservation of an Anthropic destination covers an input all written
// for an hour.
func TestCostCacheWrite1h(t *testing.T) {
	u := pipeline.Usage{InputTokens: 1000, CachedInputTokens: 600, CacheWriteTokens: 300, CacheWrite1hTokens: 100, OutputTokens: 50}
	derived := gateway.ModelPrice{Input: 3, Output: 15, CachedInput: 0.3, CacheWrite: 3.75, HasCachedInput: true, HasCacheWrite: true, Cache1h: true}
	given := derived
	given.CacheWrite1h, given.HasCacheWrite1h = 4.5, true
	for _, tc := range []struct {
		name  string
		p     gateway.ModelPrice
		cost  int64 // of u, nano-USD
		worst limits.Money
	}{
		// 100 uncached × 3,000 + 600 × 300 + 200 × 3,750 + 100 × 6,000 + 50 × 15,000
		{"derived", derived, 100*3000 + 600*300 + 200*3750 + 100*6000 + 50*15000, 6 * limits.USD},
		{"given", given, 100*3000 + 600*300 + 200*3750 + 100*4500 + 50*15000, 9 * limits.USD / 2},
	} {
		if got := Cost(tc.p, u); got != tc.cost {
			t.Errorf("%s: cost %d, want %d", tc.name, got, tc.cost)
		}
		if got := Price(tc.p).Worst(1_000_000, 0, nil); got != tc.worst {
			t.Errorf("%s: worst input per million %v, want %v", tc.name, got, tc.worst)
		}
	}
	// More 1-hour writes than writes (not from the meter): all writes.
	if lu := Usage(pipeline.Usage{InputTokens: 10, CacheWriteTokens: 4, CacheWrite1hTokens: 9}); lu.CacheWriteTokens != 0 || lu.CacheWrite1hTokens != 4 || lu.Total() != 10 {
		t.Errorf("usage %+v", lu)
	}
}

// TestRefusal: the engine's refusals as pipeline errors.
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		ref    limits.Refusal
		kind   pipeline.Kind
		budget bool
		final  bool // retrying the same request cannot pass
	}{
		{limits.Refusal{Kind: limits.RateLimited, Status: 429, RetryAfter: time.Second, Needed: 1, Limit: 3,
			Headers: limits.RateHeaders{Requests: limits.RateHeader{Set: true, Limit: 3}}}, pipeline.KindLimited, false, false},
		{limits.Refusal{Kind: limits.RateLimited, Status: 429, Dim: limits.Tokens, Needed: 32005, Limit: 20000,
			Headers: limits.RateHeaders{Tokens: limits.RateHeader{Set: true, Limit: 20000}}}, pipeline.KindLimited, false, true},
		{limits.Refusal{Kind: limits.BudgetExhausted, Status: 429, RetryAfter: time.Hour}, pipeline.KindLimited, true, true},
		{limits.Refusal{Kind: limits.PriceUnknown, Status: 403}, pipeline.KindLimited, true, true},
		{limits.Refusal{Kind: limits.OutputCapRequired, Status: 400}, pipeline.KindInvalid, false, true},
		{limits.Refusal{Kind: limits.UnpricedTool, Status: 400, Tool: "web_search_20250305"}, pipeline.KindInvalid, false, true},
		{limits.Refusal{Kind: limits.BudgetUnavailable, Status: 503}, pipeline.KindUnavailable, false, false},
	} {
		var e *pipeline.Error
		if !errors.As(refusal(&tc.ref), &e) || e.Kind != tc.kind || e.Status != tc.ref.Status || e.Message == "" || e.Final != tc.final ||
			e.RetryAfter != tc.ref.RetryAfter || (tc.kind == pipeline.KindLimited && (e.Limit == nil || e.Limit.Budget != tc.budget)) {
			t.Errorf("%v: %+v", tc.ref.Kind, e)
		}
	}
	if e := refusal(&limits.Refusal{Kind: limits.RateLimited, Status: http.StatusTooManyRequests,
		Headers: limits.RateHeaders{Requests: limits.RateHeader{Set: true, Limit: 3, Reset: time.Minute}}}).(*pipeline.Error); e.Limit.Requests == nil || e.Limit.Requests.Limit != 3 || e.Limit.Tokens != nil {
		t.Errorf("rate headers %+v", e.Limit)
	}
}

type ids map[string]catalog.ID

func (m ids) PrincipalID(n string) (catalog.ID, bool) { id, ok := m[n]; return id, ok }
func (m ids) SecurableID(_ catalog.SecurableType, n string) (catalog.ID, bool) {
	id, ok := m[n]
	return id, ok
}

// TestOutputCap: a call without max_tokens reserves the adapter's cap and
// is held to it when a token limit or budget applies; under a request
// limit alone it stays uncapped.
func TestOutputCap(t *testing.T) {
	names := ids{"alice": 10, "bob": 11, "system.ai.frontier": 20}
	price := gateway.ModelPrice{Input: 2, Output: 8}
	for _, tc := range []struct {
		name   string
		defs   limits.Definitions
		capped bool
	}{
		{"budget", limits.Definitions{Budgets: []limits.Budget{{Name: "b", Limit: limits.USD, Level: limits.LevelUser, Principal: 10, PrincipalName: "alice"}}}, true},
		{"token limit", limits.Definitions{RateLimits: []limits.RateLimit{{Securable: 20, Level: limits.LevelEachUser, Tokens: 100000}}}, true},
		{"request limit only", limits.Definitions{RateLimits: []limits.RateLimit{{Securable: 20, Level: limits.LevelEachUser, Requests: 10}}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := limits.New(limits.Options{})
			if err := lim.Apply(t.Context(), tc.defs); err != nil {
				t.Fatal(err)
			}
			c := &pipeline.Call{Identity: &gateway.Identity{Subject: "alice"},
				Securable: enforce.SecurableRef{Type: typeModelService, Name: "system.ai.frontier"},
				Model: &pipeline.ModelCall{InputTokens: 10, OutputCap: 4096,
					Destinations: []pipeline.ModelDestination{{Service: "p", Model: "m", Price: price, Priced: true}}}}
			r, err := New(lim, names).Reserve(t.Context(), c)
			if err != nil || r == nil {
				t.Fatalf("reserve: %v %v", r, err)
			}
			if c.Model.Capped != tc.capped || (tc.capped && c.Model.MaxTokens != 4096) || (!tc.capped && c.Model.MaxTokens != 0) {
				t.Errorf("capped %v, max %d", c.Model.Capped, c.Model.MaxTokens)
			}
		})
	}
}

func TestCounted(t *testing.T) {
	for action, want := range map[string]bool{"tools/call": true, "resources/read": true, "prompts/get": true,
		"initialize": false, "ping": false, "notifications/initialized": false, "tools/list": false,
		"resources/templates/list": false, "server/discover": false, "GET": false, "DELETE": false} {
		if Counted(action) != want {
			t.Errorf("Counted(%q) = %v", action, !want)
		}
	}
}

// countingIDs is a Resolver that counts its lookups.
type countingIDs struct {
	ids
	n int
}

func (c *countingIDs) PrincipalID(n string) (catalog.ID, bool) { c.n++; return c.ids.PrincipalID(n) }
func (c *countingIDs) SecurableID(t catalog.SecurableType, n string) (catalog.ID, bool) {
	c.n++
	return c.ids.SecurableID(t, n)
}

// TestReserveResolvesOnlyWhenDefined: with no definition that could apply
// to a call's kind, the stage admits it without resolving a name (an MCP
// call when only budgets exist, any call when nothing is defined); once
// one could apply, it resolves and reserves, and a name gone from the
// catalog is refused as before.
func TestReserveResolvesOnlyWhenDefined(t *testing.T) {
	names := ids{"alice": 10, "coding-agent": 11, "system.ai.github": 30, "system.ai.frontier": 20}
	mcp := func(conn string) *pipeline.Call {
		return &pipeline.Call{Identity: &gateway.Identity{Subject: "alice", Actor: "coding-agent"}, Action: "tools/call",
			Securable: enforce.SecurableRef{Type: typeConnection, Name: conn}}
	}
	llm := &pipeline.Call{Identity: &gateway.Identity{Subject: "alice"},
		Securable: enforce.SecurableRef{Type: typeModelService, Name: "system.ai.frontier"},
		Model: &pipeline.ModelCall{InputTokens: 10, MaxTokens: 10,
			Destinations: []pipeline.ModelDestination{{Service: "p", Model: "m", Price: gateway.ModelPrice{Input: 2, Output: 8}, Priced: true}}}}
	budget := limits.Budget{Name: "b", Limit: limits.USD, Level: limits.LevelUser, Principal: 10, PrincipalName: "alice"}
	for _, tc := range []struct {
		name     string
		defs     limits.Definitions
		call     *pipeline.Call
		resolves bool
		reserved bool
		refused  bool
	}{
		{"nothing defined, mcp", limits.Definitions{}, mcp("system.ai.github"), false, false, false},
		{"nothing defined, mcp, name gone", limits.Definitions{}, mcp("system.ai.gone"), false, false, false},
		{"nothing defined, llm", limits.Definitions{}, llm, false, false, false},
		{"budget only, mcp", limits.Definitions{Budgets: []limits.Budget{budget}}, mcp("system.ai.github"), false, false, false},
		{"budget only, llm", limits.Definitions{Budgets: []limits.Budget{budget}}, llm, true, true, false},
		{"limit on the connection", limits.Definitions{RateLimits: []limits.RateLimit{{Securable: 30, Level: limits.LevelEachUser, Requests: 10}}},
			mcp("system.ai.github"), true, true, false},
		{"limit elsewhere, name gone", limits.Definitions{RateLimits: []limits.RateLimit{{Securable: 20, Level: limits.LevelEachUser, Requests: 10}}},
			mcp("system.ai.gone"), true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := limits.New(limits.Options{})
			if err := lim.Apply(t.Context(), tc.defs); err != nil {
				t.Fatal(err)
			}
			res := &countingIDs{ids: names}
			r, err := New(lim, res).Reserve(t.Context(), tc.call)
			if (res.n > 0) != tc.resolves {
				t.Errorf("%d lookups, want some: %v", res.n, tc.resolves)
			}
			var pe *pipeline.Error
			if refused := errors.As(err, &pe) && pe.Status == http.StatusServiceUnavailable; refused != tc.refused || (err != nil && !tc.refused) {
				t.Errorf("error %v, want a refusal: %v", err, tc.refused)
			}
			if (r != nil) != tc.reserved {
				t.Errorf("reservation %v, want one: %v", r, tc.reserved)
			}
		})
	}
}

// TestDestinations: under a budget, the worst case covers every
// destination, however many, and an unpriced one is refused by its
// name (provider service/model).
func TestDestinations(t *testing.T) {
	names := ids{"alice": 10, "system.ai.frontier": 20}
	dest := func(n int, unpriced int) []pipeline.ModelDestination {
		var out []pipeline.ModelDestination
		for i := range n {
			out = append(out, pipeline.ModelDestination{Service: "p", Model: fmt.Sprintf("m%d", i),
				Price: gateway.ModelPrice{Input: float64(i + 1), Output: float64(i + 1)}, Priced: i != unpriced})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		dests   []pipeline.ModelDestination
		worst   limits.Money // reserved: 10 input + 10 output tokens at the dearest price
		refused string
	}{
		{"one", dest(1, -1), 20 * 1000, ""},
		{"six", dest(6, -1), 20 * 6000, ""},
		{"one unpriced", dest(1, 0), 0, "p/m0"},
		{"sixth unpriced", dest(6, 5), 0, "p/m5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim := limits.New(limits.Options{})
			if err := lim.Apply(t.Context(), limits.Definitions{Budgets: []limits.Budget{
				{Name: "b", Limit: limits.USD, Level: limits.LevelUser, Principal: 10, PrincipalName: "alice"}}}); err != nil {
				t.Fatal(err)
			}
			c := &pipeline.Call{Identity: &gateway.Identity{Subject: "alice"},
				Securable: enforce.SecurableRef{Type: typeModelService, Name: "system.ai.frontier"},
				Model:     &pipeline.ModelCall{InputTokens: 10, MaxTokens: 10, Destinations: tc.dests}}
			r, err := New(lim, names).Reserve(t.Context(), c)
			if tc.refused != "" {
				var pe *pipeline.Error
				if !errors.As(err, &pe) || pe.Status != http.StatusForbidden || !strings.Contains(pe.Message, tc.refused) {
					t.Fatalf("reserve: %v, want a 403 naming %s", err, tc.refused)
				}
				return
			}
			if err != nil || r == nil {
				t.Fatalf("reserve: %v %v", r, err)
			}
			if got := r.(*reservation).r.Cost(); got != tc.worst {
				t.Errorf("reserved %d nano-USD, want %d", got, tc.worst)
			}
		})
	}
}

// TestToolUses: a model call that may use a tool billed per use reserves
// its bound at each destination's tool price under a budget and is then
// held to the bound (ToolCapped) when the client set none; it settles the
// real cost; a destination without the tool's price is refused by name
// with a 400 that says how to price it; without a budget nothing is
// capped.
func TestToolUses(t *testing.T) {
	names := ids{"alice": 10, "bob": 12, "system.ai.frontier": 20}
	tools, err := catalog.ParseToolPrices("web_search=10")
	if err != nil {
		t.Fatal(err)
	}
	priced := pipeline.ModelDestination{Service: "p", Model: "m", Price: gateway.ModelPrice{Input: 2, Output: 8, Tools: tools}, Priced: true}
	unpricedTool := pipeline.ModelDestination{Service: "p", Model: "n", Price: gateway.ModelPrice{Input: 2, Output: 8}, Priced: true}
	lim := limits.New(limits.Options{})
	if err := lim.Apply(t.Context(), limits.Definitions{Budgets: []limits.Budget{
		{Name: "b", Limit: limits.USD, Level: limits.LevelUser, Principal: 10, PrincipalName: "alice"}}}); err != nil {
		t.Fatal(err)
	}
	st := New(lim, names)
	call := func(subject string, capNeeded bool, dests ...pipeline.ModelDestination) *pipeline.Call {
		m := &pipeline.ModelCall{InputTokens: 10, MaxTokens: 10, ToolCapNeeded: capNeeded, Destinations: dests}
		m.ToolUses[catalog.ToolWebSearch] = 8
		return &pipeline.Call{Identity: &gateway.Identity{Subject: subject},
			Securable: enforce.SecurableRef{Type: typeModelService, Name: "system.ai.frontier"}, Model: m}
	}
	for _, capNeeded := range []bool{true, false} {
		c := call("alice", capNeeded, priced)
		r, err := st.Reserve(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		// 10 × 2,000 + 10 × 8,000 nano-USD of tokens, 8 searches at 0.01 USD
		if got, want := r.(*reservation).r.Cost(), limits.Money(10*2000+10*8000+8*10_000_000); got != want {
			t.Errorf("reserved %d nano-USD, want %d", got, want)
		}
		if c.Model.ToolCapped != capNeeded {
			t.Errorf("ToolCapped %v, want %v", c.Model.ToolCapped, capNeeded)
		}
		// Settled with 2 searches.
		c.Model.Attempts, c.Model.Answered = 1, 0
		u := pipeline.Usage{InputTokens: 10, OutputTokens: 5}
		u.ToolUses[catalog.ToolWebSearch] = 2
		cost := Cost(priced.Price, u)
		c.Model.CostNanos, c.Model.CostKnown = cost, true
		r.Settle(t.Context(), c, u)
		if want := int64(10*2000 + 5*8000 + 2*10_000_000); cost != want {
			t.Errorf("cost %d, want %d", cost, want)
		}
	}
	if got, want := lim.Budgets()[0].Spent, limits.Money(2*(10*2000+5*8000+2*10_000_000)); got != want {
		t.Errorf("spent %d, want %d", got, want)
	}
	_, err = st.Reserve(t.Context(), call("alice", true, priced, unpricedTool))
	var pe *pipeline.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || pe.Kind != pipeline.KindInvalid || !pe.Final ||
		!strings.Contains(pe.Message, "p/n") || !strings.Contains(pe.Message, "tool_prices") {
		t.Fatalf("a destination without the tool's price: %v", err)
	}
	// No budget (bob): admitted without a bound, nothing capped.
	c := call("bob", true, priced, unpricedTool)
	if r, err := st.Reserve(t.Context(), c); err != nil || r != nil || c.Model.ToolCapped {
		t.Errorf("without a budget: %v %v capped %v", r, err, c.Model.ToolCapped)
	}
}
