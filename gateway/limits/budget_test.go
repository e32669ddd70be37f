package limits_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
)

// A call of 100k input and 100k output tokens at gpt costs at worst
// 100k × 2.50 (cache writes are the dearest input) + 100k × 8.00 per
// million = 1.05 USD.
const worst = limits.USD * 105 / 100

func budget(name string, usd float64, level limits.Level, p catalog.ID) limits.Budget {
	return limits.Budget{Name: name, Limit: limits.MoneyFromUSD(usd), Level: level, Principal: p, PrincipalName: names[p]}
}

func bigCall(subj, actor catalog.ID) *limits.Call { return modelCall(subj, actor, 100_000, 100_000) }

func TestWorstCase(t *testing.T) {
	if got := gpt.Price.Worst(100_000, 100_000, nil); got != worst {
		t.Errorf("worst = %v, want %v", got, worst)
	}
	// Cost: each class at its own price, rounded up to the nano-dollar.
	u := limits.Usage{InputTokens: 1000, CachedInputTokens: 3000, CacheWriteTokens: 7, OutputTokens: 333}
	// 1000×2 + 3000×0.5 + 7×2.5 + 333×8 = 6181.5 USD per million tokens → 0.0061815
	if got := gpt.Price.Cost(u); got != 6_181_500 {
		t.Errorf("cost = %d nano-USD, want 6181500", got)
	}
	// Unset cached prices are the input price.
	p := limits.Price{Input: limits.USD, Output: limits.USD}
	if got := p.Cost(limits.Usage{CachedInputTokens: 1_000_000}); got != limits.USD {
		t.Errorf("cached at unset price = %v, want 1.00", got)
	}
	// Huge figures saturate rather than wrap.
	if got := (limits.Price{Output: limits.MaxMoney}).Worst(0, 1<<62, nil); got != limits.MaxMoney {
		t.Errorf("saturation: %v", got)
	}
}

// claude is an Anthropic destination: 3 USD / 15 USD per million
// input/output tokens, cached input 0.30, 5-minute cache writes 3.75,
// 1-hour cache writes not given (twice the input: 6.00).
var claude = limits.Destination{Name: "anthropic_prod/claude", Priced: true,
	Price: limits.Price{Input: 3 * limits.USD, Output: 15 * limits.USD, CachedInput: 3 * limits.USD / 10, CacheWrite: 375 * limits.USD / 100, Cache1h: true}}

func TestCacheWrite1hPrice(t *testing.T) {
	u := limits.Usage{InputTokens: 100, CachedInputTokens: 600, CacheWriteTokens: 200, CacheWrite1hTokens: 100, OutputTokens: 140}
	given := claude.Price
	given.CacheWrite1h = 9 * limits.USD / 2
	for _, tc := range []struct {
		name   string
		p      limits.Price
		cost   limits.Money // of u
		perMil limits.Money // Worst(1M, 0): the dearest input class
	}{
		// 100×3 + 600×0.30 + 200×3.75 + 100×6 + 140×15 = 3930 per million
		{"1-hour writes at twice the input", claude.Price, 3_930_000, 6 * limits.USD},
		// ... with 100×4.50 instead of 100×6
		{"a given 1-hour price wins", given, 3_780_000, 9 * limits.USD / 2},
		// a destination that does not bill 1-hour writes (their price
		// still applies to any it reports): its worst input is its
		// dearest other class; 100×3 + 600×3 + 200×3.75 + 100×6 + 140×15
		{"not an Anthropic destination", limits.Price{Input: 3 * limits.USD, Output: 15 * limits.USD, CacheWrite: 375 * limits.USD / 100},
			5_550_000, 375 * limits.USD / 100},
	} {
		if got := tc.p.Cost(u); got != tc.cost {
			t.Errorf("%s: cost %d nano-USD, want %d", tc.name, got, tc.cost)
		}
		if got := tc.p.Worst(1_000_000, 0, nil); got != tc.perMil {
			t.Errorf("%s: worst input %v per million, want %v", tc.name, got, tc.perMil)
		}
	}
	if got := u.Total(); got != 1140 {
		t.Errorf("total %d tokens, want 1140", got)
	}
}

// TestBudgetHoldsWithCacheWrite1h: calls to an Anthropic destination
// whose whole input is written to the cache for an hour (2× the input
// price, dearer than any other input class) never take a budget beyond
// its limit: every call admitted is in flight before the first settles.
func TestBudgetHoldsWithCacheWrite1h(t *testing.T) {
	c := newClock(t0)
	const limit = limits.USD
	l := newLimiter(t, c, limits.Definitions{Budgets: []limits.Budget{budget("b", limit.USDFloat(), limits.LevelEachUser, 0)}})
	var inFlight []*limits.Reservation
	for range 32 {
		call := modelCall(alice, 0, 100_000, 1_000)
		call.Destinations = []limits.Destination{gpt, claude}
		r, err := l.Reserve(t.Context(), call)
		if err != nil {
			if outcome(err) != "budget b" {
				t.Fatal(err)
			}
			continue
		}
		inFlight = append(inFlight, r)
	}
	// Each call's answer: 100k tokens written for an hour, 1k output.
	u := limits.Usage{CacheWrite1hTokens: 100_000, OutputTokens: 1_000}
	cost := claude.Price.Cost(u) // 0.60 + 0.015
	var spent limits.Money
	for _, r := range inFlight {
		if r.Cost() < cost {
			t.Errorf("reserved %v for a call that costs %v", r.Cost(), cost)
		}
		l.Settle(r, u, cost)
		spent += cost
	}
	if len(inFlight) == 0 || spent > limit {
		t.Errorf("%d calls admitted, spent %v of %v", len(inFlight), spent, limit)
	}
	if st := l.Budgets(); len(st) != 1 || st[0].Spent != spent {
		t.Errorf("status %+v", st)
	}
}

func TestMoney(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want limits.Money
		str  string
	}{{"500", 500 * limits.USD, "500.00"}, {"2.00", 2 * limits.USD, "2.00"}, {"0.0375", 37_500_000, "0.0375"},
		{"0.000000001", 1, "0.000000001"}, {"9000000000", 9_000_000_000 * limits.USD, "9000000000.00"}} {
		got, err := limits.ParseMoney(tc.in)
		if err != nil || got != tc.want || got.String() != tc.str {
			t.Errorf("ParseMoney(%q) = %d (%s), %v; want %d (%s)", tc.in, got, got, err, tc.want, tc.str)
		}
	}
	for _, bad := range []string{"", "-1", "1e3", "1.", ".5", "0.0000000001", "9000000001", "1,5", " 1"} {
		if _, err := limits.ParseMoney(bad); err == nil {
			t.Errorf("ParseMoney(%q) accepted", bad)
		}
	}
	if s := limits.Money(-1_500_000_000).String(); s != "-1.50" {
		t.Errorf("negative: %s", s)
	}
}

func TestBudgets(t *testing.T) {
	type step struct {
		subj, actor catalog.ID
		sec         catalog.ID
		tags        map[string]string
		settle      limits.Money // actual cost; -1: keep in flight
		want        string
	}
	checkout := map[string]string{"project": "checkout", "team": "payments"}
	tagged := budget("checkout", 2, limits.LevelEachUser, 0)
	tagged.Tags = []limits.Tag{{Key: "project", Value: "checkout"}}
	onCheap := budget("cheap", 1.1, limits.LevelEachUser, 0)
	onCheap.Service, onCheap.ServiceName = svc2, names[svc2]
	for _, tc := range []struct {
		name    string
		budgets []limits.Budget
		steps   []step
	}{
		{
			name:    "a group budget is shared by its members",
			budgets: []limits.Budget{budget("analysts", 2, limits.LevelGroup, g1)},
			steps: []step{{subj: alice, settle: -1, want: "ok"}, {subj: bob, want: "budget analysts"},
				{subj: carol, want: "ok"}},
		},
		{
			name:    "the worst case is reserved, the actual cost settled",
			budgets: []limits.Budget{budget("analysts", 2, limits.LevelGroup, g1)},
			steps: []step{{subj: alice, settle: limits.USD / 2, want: "ok"}, {subj: bob, settle: limits.USD / 2, want: "ok"},
				{subj: bob, want: "budget analysts"}}, // 1.00 spent, 1.05 does not fit
		},
		{
			name:    "one budget per user",
			budgets: []limits.Budget{budget("per-user", 1.1, limits.LevelEachUser, 0)},
			steps: []step{{subj: alice, settle: limits.USD, want: "ok"}, {subj: alice, want: "budget per-user"},
				{subj: bob, settle: limits.USD, want: "ok"}, {subj: agent, want: "ok"}},
		},
		{
			name:    "a user budget is the subject's",
			budgets: []limits.Budget{budget("alice", 1.1, limits.LevelUser, alice)},
			steps: []step{{subj: alice, actor: agent, settle: limits.USD, want: "ok"}, {subj: alice, want: "budget alice"},
				{subj: bob, actor: agent, want: "ok"}},
		},
		{
			name:    "a service principal budget covers the humans its agent acts for",
			budgets: []limits.Budget{budget("agent", 2.2, limits.LevelServicePrincipal, agent)},
			steps: []step{{subj: alice, actor: agent, settle: limits.USD, want: "ok"}, {subj: bob, actor: agent, settle: limits.USD, want: "ok"},
				{subj: agent, want: "budget agent"}, {subj: carol, actor: agent, want: "budget agent"}, {subj: carol, want: "ok"}},
		},
		{
			name:    "every budget that applies is charged",
			budgets: []limits.Budget{budget("analysts", 10, limits.LevelGroup, g1), budget("alice", 1.1, limits.LevelUser, alice)},
			steps: []step{{subj: alice, settle: limits.USD, want: "ok"}, {subj: alice, want: "budget alice"},
				{subj: bob, settle: limits.USD, want: "ok"}},
		},
		{
			name:    "a budget on one model service",
			budgets: []limits.Budget{onCheap},
			steps: []step{{subj: alice, sec: svc2, settle: limits.USD, want: "ok"}, {subj: alice, sec: svc2, want: "budget cheap"},
				{subj: alice, want: "ok"}},
		},
		{
			name:    "a budget on tagged requests",
			budgets: []limits.Budget{tagged},
			steps: []step{{subj: alice, tags: checkout, settle: limits.USD, want: "ok"}, {subj: alice, tags: checkout, want: "budget checkout"},
				{subj: alice, tags: map[string]string{"project": "search"}, want: "ok"}, {subj: alice, want: "ok"}},
		},
		{
			name:    "MCP calls are never charged",
			budgets: []limits.Budget{budget("zero", 0, limits.LevelEachUser, 0)},
			steps:   []step{{subj: alice, sec: conn, want: "ok"}, {subj: alice, want: "budget zero"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0)
			l := newLimiter(t, c, limits.Definitions{Budgets: tc.budgets})
			for i, s := range tc.steps {
				call := bigCall(s.subj, s.actor)
				call.Tags = s.tags
				if s.sec != 0 {
					call.Securable = s.sec
					if s.sec == conn {
						call.Kind, call.Destinations = limits.Connection, nil
					}
				}
				r, err := l.Reserve(t.Context(), call)
				if got := outcome(err); got != s.want {
					t.Fatalf("step %d (%s): got %q, want %q (%v)", i, names[s.subj], got, s.want, err)
				}
				if s.settle >= 0 {
					l.Settle(r, limits.Usage{}, s.settle)
				}
			}
		})
	}
}

func TestBudgetFailsClosed(t *testing.T) {
	c := newClock(t0)
	l := newLimiter(t, c, limits.Definitions{Budgets: []limits.Budget{budget("analysts", 100, limits.LevelGroup, g1)}})
	ctx := t.Context()
	unpriced := limits.Destination{Name: "anthropic_prod/claude-new"}
	call := bigCall(alice, 0)
	call.Destinations = []limits.Destination{gpt, unpriced} // a fallback without a price
	_, err := l.Reserve(ctx, call)
	var ref *limits.Refusal
	if !errors.As(err, &ref) || ref.Kind != limits.PriceUnknown || ref.Status != http.StatusForbidden ||
		!strings.Contains(ref.Error(), "anthropic_prod/claude-new") || !strings.Contains(ref.Error(), "analysts") {
		t.Fatalf("unpriced fallback under a budget: %v", err)
	}
	// Without a budget, no price is needed.
	call.Subject = carol
	if _, err := l.Reserve(ctx, call); err != nil {
		t.Fatalf("unpriced destination without a budget: %v", err)
	}
	call = bigCall(alice, 0)
	call.MaxTokens = 0
	if _, err := l.Reserve(ctx, call); !errors.As(err, &ref) || ref.Kind != limits.OutputCapRequired || ref.Status != 400 {
		t.Fatalf("no max_tokens under a budget: %v", err)
	}
	call = bigCall(alice, 0)
	call.PerUseTool = "code_execution_20250522"
	if _, err := l.Reserve(ctx, call); !errors.As(err, &ref) || ref.Kind != limits.UnpricedTool || ref.Status != 400 ||
		!strings.Contains(ref.Error(), "code_execution_20250522") || !strings.Contains(ref.Error(), "analysts") {
		t.Fatalf("a tool billed per use under a budget: %v", err)
	}
	call.Subject = carol // no budget: no price needed
	if _, err := l.Reserve(ctx, call); err != nil {
		t.Fatalf("a tool billed per use without a budget: %v", err)
	}
}

// TestBudgetToolUses: a call that may use a tool billed per use reserves
// its bound on the uses at the dearest destination's price per use, and
// settles the real cost; a destination without that tool's price fails
// closed, naming the tool_prices option.
func TestBudgetToolUses(t *testing.T) {
	c := newClock(t0)
	l := newLimiter(t, c, limits.Definitions{Budgets: []limits.Budget{budget("analysts", 100, limits.LevelGroup, g1)}})
	ctx := t.Context()
	searching := gpt
	searching.Price.PerUse[catalog.ToolWebSearch], searching.Price.HasPerUse[catalog.ToolWebSearch] = 10*limits.USD, true // $10 per 1,000
	dearer := searching
	dearer.Name, dearer.Price.PerUse[catalog.ToolWebSearch] = "openai_eu/gpt-4.1", 25*limits.USD
	call := bigCall(alice, 0)
	call.Destinations = []limits.Destination{searching, dearer}
	call.ToolUses[catalog.ToolWebSearch] = 8
	r, err := l.Reserve(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	// 1.05 USD of tokens + 8 searches at 0.025 USD (the dearer destination)
	if want := worst + 8*25*limits.USD/1000; r.Cost() != want {
		t.Errorf("reserved %v, want %v", r.Cost(), want)
	}
	if st := l.Budgets()[0]; st.Reserved != r.Cost() {
		t.Errorf("budget reserved %v, want %v", st.Reserved, r.Cost())
	}
	// Settled: 3 searches at 0.01 USD plus some tokens.
	u := limits.Usage{InputTokens: 1000, OutputTokens: 500}
	u.ToolUses[catalog.ToolWebSearch] = 3
	cost := searching.Price.Cost(u)
	if want := limits.Money(1000*2_000 + 500*8_000 + 3*10_000_000); cost != want {
		t.Errorf("cost %d, want %d", cost, want)
	}
	l.Settle(r, u, cost)
	if st := l.Budgets()[0]; st.Spent != cost || st.Reserved != 0 {
		t.Errorf("after settling: spent %v reserved %v, want %v and 0", st.Spent, st.Reserved, cost)
	}
	// A destination without a price for the tool fails closed, naming it.
	call.Destinations = []limits.Destination{searching, gpt}
	var ref *limits.Refusal
	if _, err := l.Reserve(ctx, call); !errors.As(err, &ref) || ref.Kind != limits.UnpricedTool || ref.Status != 400 || ref.Retryable() ||
		!strings.Contains(ref.Error(), "openai_prod/gpt-4.1") || !strings.Contains(ref.Error(), "tool_prices 'web_search=") {
		t.Fatalf("a destination without the tool's price: %v", err)
	}
	// A tool kind no destination prices.
	call.Destinations = []limits.Destination{searching}
	call.ToolUses = [catalog.NumToolKinds]int64{catalog.ToolFileSearch: 2}
	if _, err := l.Reserve(ctx, call); !errors.As(err, &ref) || ref.Kind != limits.UnpricedTool || !strings.Contains(ref.Error(), "file_search") {
		t.Fatalf("file search without a price: %v", err)
	}
	// Without a budget, no tool price is needed.
	call.Subject = carol
	if _, err := l.Reserve(ctx, call); err != nil {
		t.Fatalf("without a budget: %v", err)
	}
}

func TestBudgetMonths(t *testing.T) {
	c := newClock(time.Date(2026, 7, 31, 23, 59, 0, 0, time.UTC))
	l := newLimiter(t, c, limits.Definitions{Budgets: []limits.Budget{budget("per-user", 1.5, limits.LevelEachUser, 0)}})
	ctx := t.Context()
	r, err := l.Reserve(ctx, bigCall(alice, 0))
	if err != nil {
		t.Fatal(err)
	}
	l.Settle(r, limits.Usage{}, limits.USD)
	late, err := l.Reserve(ctx, bigCall(bob, 0)) // straddles the month boundary
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Reserve(ctx, bigCall(alice, 0))
	var ref *limits.Refusal
	if !errors.As(err, &ref) || ref.Kind != limits.BudgetExhausted || ref.Status != 429 {
		t.Fatalf("exhausted budget: %v", err)
	}
	if ref.RetryAfter != time.Minute || ref.Month.String() != "2026-07" ||
		!strings.Contains(ref.Error(), "budget per-user is exhausted for 2026-07 (1.50 USD per month, each user); it renews on 2026-08-01") {
		t.Errorf("refusal: %v (retry after %v)", ref, ref.RetryAfter)
	}
	c.Set(time.Date(2026, 8, 1, 0, 0, 0, 0, time.UTC))
	if _, err := l.Reserve(ctx, bigCall(alice, 0)); err != nil {
		t.Fatalf("new month: %v", err)
	}
	l.Settle(late, limits.Usage{}, limits.USD) // belongs to July: not carried into August
	for _, st := range l.Budgets() {
		if st.Month.String() != "2026-08" || st.Spent != 0 || (st.Principal == alice) != (st.Reserved == worst) {
			t.Errorf("August status: %+v", st)
		}
	}
}

func TestBudgetExcessIsOneCallsDifference(t *testing.T) {
	c := newClock(t0)
	l := newLimiter(t, c, limits.Definitions{Budgets: []limits.Budget{budget("b", 3, limits.LevelEachUser, 0)}})
	ctx := t.Context()
	const delta = limits.USD * 9 / 10
	var spent limits.Money
	for {
		r, err := l.Reserve(ctx, bigCall(alice, 0))
		if err != nil {
			break
		}
		// The input estimate was low: every call costs 0.90 more than its
		// worst case. The second call is admitted with exactly 1.05 left.
		l.Settle(r, limits.Usage{}, r.Cost()+delta)
		spent += r.Cost() + delta
	}
	if spent != 2*(worst+delta) {
		t.Errorf("spent %v, want two calls", spent)
	}
	st := l.Budgets()
	if len(st) != 1 || st[0].Spent != spent || st[0].Spent > 3*limits.USD+delta || st[0].Remaining != 0 {
		t.Errorf("status %+v: spend beyond the limit by more than one call's difference", st)
	}
}

func TestBudgetSpendSurvivesRestart(t *testing.T) {
	tagged := budget("checkout", 5, limits.LevelGroup, g1)
	tagged.Tags = []limits.Tag{{Key: "project", Value: "checkout"}}
	defs := limits.Definitions{Members: members, Budgets: []limits.Budget{budget("per-user", 2, limits.LevelEachUser, 0), tagged}}
	var asked []string
	fail := true
	src := limits.SpendSourceFunc(func(ctx context.Context, b *limits.Budget, m limits.Month) (limits.MonthSpend, error) {
		asked = append(asked, b.Name+" "+m.String())
		if b.Level == limits.LevelEachUser {
			return limits.MonthSpend{ByPrincipal: map[catalog.ID]limits.Money{alice: limits.USD + limits.USD/2}}, nil
		}
		if fail {
			return limits.MonthSpend{}, errors.New("event store unavailable")
		}
		return limits.MonthSpend{Total: limits.USD * 35 / 10}, nil
	})
	c := newClock(t0)
	l := limits.New(limits.Options{Backend: limits.NewMemory(src), Now: c.Now})
	ctx := t.Context()
	if err := l.Apply(ctx, defs); err == nil || !strings.Contains(err.Error(), "event store unavailable") {
		t.Fatalf("Apply with a failing source: %v", err)
	}
	if _, err := l.Reserve(ctx, bigCall(alice, 0)); outcome(err) != "budget per-user" {
		t.Fatalf("alice spent 1.50 of 2.00 before the restart: %v", err)
	}
	call := bigCall(bob, 0)
	call.Tags = map[string]string{"project": "checkout"}
	var ref *limits.Refusal
	if _, err := l.Reserve(ctx, call); !errors.As(err, &ref) || ref.Kind != limits.BudgetUnavailable || ref.Status != 503 {
		t.Fatalf("budget whose spend is unknown: %v", err)
	}
	untagged, err := l.Reserve(ctx, bigCall(bob, 0))
	if err != nil {
		t.Fatalf("untagged call: %v", err)
	}
	st := l.Budgets()
	if len(st) != 3 || st[0].Principal != alice || st[0].Spent != limits.USD+limits.USD/2 || st[0].Remaining != limits.USD/2 ||
		st[1].Principal != bob || st[1].Reserved != worst || st[2].Unavailable == nil {
		t.Fatalf("statuses: %+v", st)
	}
	l.Release(untagged)
	fail = false
	if err := l.Apply(ctx, defs); err != nil {
		t.Fatal(err)
	}
	// The tagged budget now loaded 3.50 of 5.00: bob's 1.05 fits once.
	r, err := l.Reserve(ctx, call)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, call); outcome(err) != "budget checkout" {
		t.Fatalf("second tagged call: %v", err)
	}
	l.Release(r)
	if want := []string{"per-user 2026-07", "checkout 2026-07", "checkout 2026-07"}; strings.Join(asked, ",") != strings.Join(want, ",") {
		t.Errorf("spend loaded for %v, want %v (a loaded budget is not reloaded)", asked, want)
	}
}
