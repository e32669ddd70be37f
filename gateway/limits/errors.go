package limits

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// RefusalKind says why a call was refused.
type RefusalKind uint8

const (
	// RateLimited: a rate limit has no room (HTTP 429).
	RateLimited RefusalKind = iota + 1
	// BudgetExhausted: a budget cannot cover the call's worst-case cost
	// this month (HTTP 429, Retry-After until the next month).
	BudgetExhausted
	// PriceUnknown: a budget applies and a destination the call may reach
	// has no price; fails closed (HTTP 403: only an admin can fix it).
	PriceUnknown
	// OutputCapRequired: a budget applies and the call has no output cap
	// (max_tokens), so its worst case is unbounded (HTTP 400).
	OutputCapRequired
	// BudgetUnavailable: the budget's spend could not be loaded, or its
	// shared state cannot be reached; fails closed until it is (HTTP 503).
	BudgetUnavailable
	// LimitUnavailable: a rate limit's shared state cannot be reached (a
	// shared backend without its database); fails closed (HTTP 503).
	LimitUnavailable
	// UnpricedTool: a budget applies and the call offers a tool the
	// provider bills per use beyond tokens (web search, code execution),
	// which no token price bounds; fails closed (HTTP 400: the caller can
	// leave the tool out).
	UnpricedTool
)

func (k RefusalKind) String() string {
	switch k {
	case RateLimited:
		return "rate_limited"
	case BudgetExhausted:
		return "budget_exhausted"
	case PriceUnknown:
		return "price_unknown"
	case OutputCapRequired:
		return "output_cap_required"
	case BudgetUnavailable:
		return "budget_unavailable"
	case LimitUnavailable:
		return "limit_unavailable"
	case UnpricedTool:
		return "unpriced_tool"
	}
	return "refused"
}

// Refusal is the typed error of Reserve: everything the protocol adapter
// renders (status, message, Retry-After, x-ratelimit-* headers) and the
// audit record needs.
type Refusal struct {
	Kind   RefusalKind
	Status int // HTTP status: 429, 403, 400 or 503
	// Level and Scope name the limit or budget: Scope is `service`,
	// `each user`, `user "alice"`, `service principal "agent"`, `group
	// "analysts"` (for the groups of a caller in several: the group that
	// frees first).
	Level Level
	Scope string
	// Securable is the model service or connection (rate limits).
	Securable     string
	SecurableKind SecurableKind
	// Dim and Limit: the exhausted dimension and its limit per minute
	// (rate limits). Needed is what the call asked for.
	Dim    Dim
	Limit  int64
	Needed int64
	// Groups is set when the caller is throttled by the group limits of
	// several groups, all exhausted.
	Groups int
	// Budget, BudgetLimit, Month (budgets).
	Budget      string
	BudgetLimit Money
	Month       Month
	// Destination without a price (PriceUnknown), or without a price for
	// Tool (UnpricedTool of a kind tool_prices can price).
	Destination string
	// Tool billed per use (UnpricedTool): a tool type, or a tool kind
	// (web_search, file_search) when Destination is set.
	Tool string
	// RetryAfter is how long until the call could pass (rounded up to
	// whole seconds in the header); 0 when retrying cannot help.
	RetryAfter time.Duration
	// Headers are the provider-style x-ratelimit-* values of the call's
	// rate limits (without this call).
	Headers RateHeaders
}

func (e *Refusal) Error() string {
	switch e.Kind {
	case RateLimited:
		what := fmt.Sprintf("%d %s per minute", e.Limit, e.Dim)
		where := fmt.Sprintf("%s %s", e.SecurableKind, e.Securable)
		if e.Needed > e.Limit {
			return fmt.Sprintf("request too large: it needs %d %s, the rate limit for %s on %s allows %s",
				e.Needed, e.Dim, e.Scope, where, what)
		}
		if e.Groups > 1 {
			return fmt.Sprintf("rate limit exceeded: the rate limits of all %d groups of the caller on %s are exhausted (%s: %s); retry after %ds",
				e.Groups, where, e.Scope, what, e.RetryAfterSeconds())
		}
		return fmt.Sprintf("rate limit exceeded: %s for %s on %s; retry after %ds", what, e.Scope, where, e.RetryAfterSeconds())
	case BudgetExhausted:
		return fmt.Sprintf("budget %s is exhausted for %s (%s USD per month, %s); it renews on %s",
			e.Budget, e.Month, e.BudgetLimit, e.Scope, e.Month.End().Format("2006-01-02"))
	case PriceUnknown:
		return fmt.Sprintf("no price is configured for %s and the call is charged to budget %s: refused until an administrator sets the price",
			e.Destination, e.Budget)
	case OutputCapRequired:
		return fmt.Sprintf("the call is charged to budget %s and has no output limit: set max_tokens", e.Budget)
	case UnpricedTool:
		if e.Destination != "" { // a kind tool_prices can price
			return fmt.Sprintf("the call is charged to budget %s and offers %s, which the provider bills per use beyond tokens, and %s has no price for it: leave the tool out, or an administrator sets the provider service's tool_prices option (tool_prices '%s=USD per 1,000 uses')",
				e.Budget, e.Tool, e.Destination, e.Tool)
		}
		return fmt.Sprintf("the call is charged to budget %s and offers %s, which the provider bills per use beyond tokens in a way no price of Mandate's bounds (by container time or image tokens; tool_prices prices web_search and file_search only): leave it out",
			e.Budget, e.Tool)
	case BudgetUnavailable:
		return fmt.Sprintf("budget %s is temporarily unavailable (its spend cannot be loaded or its shared state reached); retry later", e.Budget)
	case LimitUnavailable:
		return fmt.Sprintf("the rate limit for %s on %s %s is temporarily unavailable (its shared state cannot be reached); retry later",
			e.Scope, e.SecurableKind, e.Securable)
	}
	return "refused"
}

// Retryable reports whether the same call can pass later in the period:
// false for a call that needs more than its rate limit allows in a whole
// window, for a budget exhausted for the month, and for the refusals only
// an administrator or a changed request can lift (no price, no output
// cap, a tool billed per use). Clients are told not to retry the others.
func (e *Refusal) Retryable() bool {
	switch e.Kind {
	case RateLimited:
		return e.Needed <= e.Limit
	case BudgetUnavailable, LimitUnavailable:
		return true
	}
	return false
}

// RetryAfterSeconds is the Retry-After value: RetryAfter rounded up to
// whole seconds (at least 1 when RetryAfter > 0).
func (e *Refusal) RetryAfterSeconds() int {
	if e.RetryAfter <= 0 {
		return 0
	}
	return int((e.RetryAfter + time.Second - 1) / time.Second)
}

// SetHeaders writes Retry-After (when retrying can help) and the
// x-ratelimit-* headers.
func (e *Refusal) SetHeaders(h http.Header) {
	if s := e.RetryAfterSeconds(); s > 0 {
		h.Set("Retry-After", strconv.Itoa(s))
	}
	e.Headers.Set(h)
}

// RateHeader is one dimension's provider-style figures: the tightest limit
// the call is subject to.
type RateHeader struct {
	Set       bool // the call is subject to a limit in this dimension
	Limit     int64
	Remaining int64
	Reset     time.Duration // until the window is empty again
}

// RateHeaders are the x-ratelimit-* figures for requests and tokens.
type RateHeaders struct {
	Requests, Tokens RateHeader
}

// Set writes x-ratelimit-limit-requests, x-ratelimit-remaining-requests,
// x-ratelimit-reset-requests and the -tokens trio (OpenAI's names and
// duration format, e.g. "1s", "6m0s", "250ms") for the dimensions set.
func (r RateHeaders) Set(h http.Header) {
	set := func(dim string, v RateHeader) {
		if !v.Set {
			return
		}
		h.Set("x-ratelimit-limit-"+dim, strconv.FormatInt(v.Limit, 10))
		h.Set("x-ratelimit-remaining-"+dim, strconv.FormatInt(v.Remaining, 10))
		h.Set("x-ratelimit-reset-"+dim, resetString(v.Reset))
	}
	set("requests", r.Requests)
	set("tokens", r.Tokens)
}

func resetString(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	return d.Round(time.Millisecond).String()
}
