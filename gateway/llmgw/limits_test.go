package llmgw

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limitstage"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// ids resolves the test's names onto catalog IDs.
type ids map[string]catalog.ID

func (m ids) PrincipalID(n string) (catalog.ID, bool) { id, ok := m[n]; return id, ok }
func (m ids) SecurableID(_ catalog.SecurableType, n string) (catalog.ID, bool) {
	id, ok := m[n]
	return id, ok
}

// TestLimitsEngine: the real engine behind the limits stage. A rate limit
// of 3 requests per minute for each user lets 3 calls through and answers
// the 4th with the provider's 429 (Retry-After, x-ratelimit-*), before any
// upstream call. A budget under 32 concurrent calls: the spend never
// exceeds the limit by more than one call's settled difference, the
// refused calls never reach the upstream, and the settled spend is the
// sum of the usage rows' cost_usd.
func TestLimitsEngine(t *testing.T) {
	resolver := ids{alice: 1, bob: 2, agent: 3, "system.ai.frontier": 100, "system.ai.claude": 101}
	// The engine's clock runs at the real pace from the middle of a month:
	// the budget's month cannot end during the test, whenever it runs.
	began, midMonth := time.Now(), time.Date(2026, 7, 14, 10, 0, 0, 0, time.UTC)
	lim := limits.New(limits.Options{Now: func() time.Time { return midMonth.Add(time.Since(began)) }})
	e := newEnv(t, func(c *pipeline.Config) { c.Limiter = limitstage.New(lim, resolver) })
	// $2/M in, $8/M out at gpt-4.1: a call of ~40 input tokens and 1,024
	// bytes out (256 tokens) costs about $0.0021; its worst case with
	// max_tokens 300, $0.0025.
	budget, _ := limits.ParseMoney("0.02")
	err := lim.Apply(t.Context(), limits.Definitions{
		RateLimits: []limits.RateLimit{{Securable: 101, SecurableName: "system.ai.claude", Level: limits.LevelEachUser, Requests: 3}},
		Budgets:    []limits.Budget{{Name: "checkout", Limit: budget, Level: limits.LevelUser, Principal: 1, PrincipalName: alice, Service: 100, ServiceName: "system.ai.frontier"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	oc := e.openAI(aliceToken)

	for i := range 4 {
		_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "claude", MaxTokens: openai.Int(20),
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		ev := e.event()
		if i < 3 {
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
			continue
		}
		var oe *openai.Error
		if !errors.As(err, &oe) || oe.StatusCode != 429 || oe.Code != "rate_limit_exceeded" || oe.Response.Header.Get("Retry-After") == "" ||
			oe.Response.Header.Get("X-Ratelimit-Limit-Requests") != "3" || oe.Response.Header.Get("X-Ratelimit-Remaining-Requests") != "0" ||
			!strings.Contains(oe.Message, "3 requests per minute for each user") {
			t.Fatalf("4th call: %v", err)
		}
		if ev.StatusCode != 429 || ev.Decision != "deny" {
			t.Errorf("refusal row %+v", ev)
		}
	}
	if n := e.fake.Count(); n != 3 {
		t.Fatalf("upstream calls %d, want 3", n)
	}

	const n = 32
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := oc.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "frontier", MaxTokens: openai.Int(300),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("spend some money on this answer mock:out=1024")}})
			mu.Lock()
			defer mu.Unlock()
			var oe *openai.Error
			switch {
			case err == nil:
				ok++
			case errors.As(err, &oe) && oe.StatusCode == 429 && oe.Code == "insufficient_quota" && strings.Contains(oe.Message, "budget checkout is exhausted"):
				refused++
			default:
				t.Errorf("call: %v", err)
			}
		}()
	}
	wg.Wait()
	var rowsCost int64
	var maxCost int64
	for range n {
		ev := e.event()
		if ev.StatusCode != 200 {
			continue
		}
		nanos := ev.Usage.CostNanos
		rowsCost += nanos
		maxCost = max(maxCost, nanos)
	}
	st := lim.Budgets()
	if len(st) != 1 {
		t.Fatalf("budgets %+v", st)
	}
	spent := int64(st[0].Spent)
	worst := int64(limitstage.Price(e.models.m["system.ai.frontier"].Destinations[0].Provider.Prices["gpt-4.1"]).Worst(100, 300, nil))
	t.Logf("%d answered, %d refused; spent %d of %d nano-USD (one call %d, worst case %d)", ok, refused, spent, budget, maxCost, worst)
	if ok == 0 || refused == 0 || ok+refused != n {
		t.Errorf("%d answered, %d refused", ok, refused)
	}
	if spent != rowsCost {
		t.Errorf("the budget's spend %d is not the usage rows' %d", spent, rowsCost)
	}
	if spent > int64(budget)+(worst-maxCost) {
		t.Errorf("spent %d over the budget %d by more than one call's settled difference (%d)", spent, budget, worst-maxCost)
	}
	if got := e.fake.Count() - 3; got != ok {
		t.Errorf("%d upstream calls for %d answered: a refused call reached the upstream", got, ok)
	}
}

// TestDestinationsCacheWrite1h: an Anthropic destination is marked as
// billing 1-hour cache writes, so a budget reserves its input at their
// price (twice the input, none being given); an OpenAI-style one is not.
func TestDestinationsCacheWrite1h(t *testing.T) {
	e := newEnv(t)
	ds := destinations(e.models.m["system.ai.fallback"], nil) // openai_down/gpt-4.1, then anthropic_prod/claude-sonnet-4-5
	if len(ds) != 2 || ds[0].Price.Cache1h || !ds[1].Price.Cache1h {
		t.Fatalf("destinations %+v", ds)
	}
	if got := limitstage.Price(ds[1].Price).Worst(1_000_000, 0, nil); got != 6*limits.USD {
		t.Errorf("the Anthropic destination's worst input per million: %v, want 6.00", got)
	}
	gpt := destinations(e.models.m["system.ai.frontier"], nil)
	if got := limitstage.Price(gpt[0].Price).Worst(1_000_000, 0, nil); got != 2*limits.USD {
		t.Errorf("the OpenAI destination's worst input per million: %v, want 2.00", got)
	}
}
