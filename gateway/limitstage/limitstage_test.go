package limitstage

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// TestCost: each token class priced once; the pipeline's input count
// includes the cache classes.
func TestCost(t *testing.T) {
	p := gateway.ModelPrice{Input: 3, Output: 15, CachedInput: 0.3, CacheWrite: 3.75, HasCachedInput: true, HasCacheWrite: true}
	u := pipeline.Usage{InputTokens: 1000, CachedInputTokens: 600, CacheWriteTokens: 100, OutputTokens: 50, ReasoningTokens: 10}
	// 300 uncached × 3,000 + 600 × 300 + 100 × 3,750 + 50 × 15,000 nano-USD
	if got, want := Cost(p, u), int64(300*3000+600*300+100*3750+50*15000); got != want {
		t.Errorf("cost %d, want %d", got, want)
	}
	// Without cache prices, cache tokens cost as much as input.
	p2 := gateway.ModelPrice{Input: 2, Output: 8}
	if got, want := Cost(p2, u), int64(1000*2000+50*8000); got != want {
		t.Errorf("cost without cache prices %d, want %d", got, want)
	}
	if lu := Usage(pipeline.Usage{InputTokens: 5, CachedInputTokens: 9}); lu.InputTokens != 0 || lu.CachedInputTokens != 9 {
		t.Errorf("usage %+v", lu)
	}
}

// TestRefusal: the engine's refusals as pipeline errors.
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		ref    limits.Refusal
		kind   pipeline.Kind
		budget bool
	}{
		{limits.Refusal{Kind: limits.RateLimited, Status: 429, RetryAfter: time.Second,
			Headers: limits.RateHeaders{Requests: limits.RateHeader{Set: true, Limit: 3}}}, pipeline.KindLimited, false},
		{limits.Refusal{Kind: limits.BudgetExhausted, Status: 429, RetryAfter: time.Hour}, pipeline.KindLimited, true},
		{limits.Refusal{Kind: limits.PriceUnknown, Status: 403}, pipeline.KindLimited, true},
		{limits.Refusal{Kind: limits.OutputCapRequired, Status: 400}, pipeline.KindInvalid, false},
		{limits.Refusal{Kind: limits.BudgetUnavailable, Status: 503}, pipeline.KindUnavailable, false},
	} {
		var e *pipeline.Error
		if !errors.As(refusal(&tc.ref), &e) || e.Kind != tc.kind || e.Status != tc.ref.Status || e.Message == "" ||
			e.RetryAfter != tc.ref.RetryAfter || (tc.kind == pipeline.KindLimited && (e.Limit == nil || e.Limit.Budget != tc.budget)) {
			t.Errorf("%v: %+v", tc.ref.Kind, e)
		}
	}
	if e := refusal(&limits.Refusal{Kind: limits.RateLimited, Status: http.StatusTooManyRequests,
		Headers: limits.RateHeaders{Requests: limits.RateHeader{Set: true, Limit: 3, Reset: time.Minute}}}).(*pipeline.Error); e.Limit.Requests == nil || e.Limit.Requests.Limit != 3 || e.Limit.Tokens != nil {
		t.Errorf("rate headers %+v", e.Limit)
	}
}
