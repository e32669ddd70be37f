package limits

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// Money is an amount in billionths of a US dollar (nano-USD): exact
// integer arithmetic for spend and reservations, ±9.2 billion USD range.
type Money int64

// USD is one US dollar.
const USD Money = 1_000_000_000

// MaxMoney is the largest amount; arithmetic saturates there.
const MaxMoney Money = math.MaxInt64

// ParseMoney parses a non-negative decimal amount of US dollars ("500",
// "2.00", "0.0375"), at most 9 decimal places, at most 9,000,000,000.
func ParseMoney(s string) (Money, error) {
	bad := func(why string) (Money, error) {
		return 0, fmt.Errorf("invalid amount %q: %s", s, why)
	}
	if s == "" || len(s) > 32 {
		return bad("want a decimal number of US dollars")
	}
	whole, frac, dot := strings.Cut(s, ".")
	if whole == "" || (dot && frac == "") {
		return bad("want a decimal number of US dollars")
	}
	if len(frac) > 9 {
		return bad("at most 9 decimal places")
	}
	for _, r := range whole + frac {
		if r < '0' || r > '9' {
			return bad("want a decimal number of US dollars")
		}
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil || w > 9_000_000_000 {
		return bad("too large")
	}
	f := uint64(0)
	if frac != "" {
		f, _ = strconv.ParseUint(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	}
	return Money(w)*USD + Money(f), nil
}

// MoneyFromUSD converts a float amount of dollars, rounded to the nearest
// nano-dollar; negative and NaN give 0, huge values MaxMoney.
func MoneyFromUSD(f float64) Money {
	switch {
	case !(f > 0):
		return 0
	case f >= float64(MaxMoney)/float64(USD):
		return MaxMoney
	}
	return Money(math.Round(f * float64(USD)))
}

// USDFloat returns m in dollars as a float (for display and SQL numerics).
func (m Money) USDFloat() float64 { return float64(m) / float64(USD) }

// String renders m in dollars with at least 2 and at most 9 decimals
// ("500.00", "0.0375", "-1.50").
func (m Money) String() string {
	neg := m < 0
	u := uint64(m)
	if neg {
		u = uint64(-(m + 1)) + 1
	}
	s := fmt.Sprintf("%d.%09d", u/uint64(USD), u%uint64(USD))
	s = strings.TrimRight(s, "0")
	if i := strings.IndexByte(s, '.'); len(s)-i-1 < 2 {
		s += strings.Repeat("0", 2-(len(s)-i-1))
	}
	if neg {
		s = "-" + s
	}
	return s
}

func addMoney(a, b Money) Money {
	if s := a + b; (b > 0 && s < a) || (b < 0 && s > a) {
		if b > 0 {
			return MaxMoney
		}
		return math.MinInt64
	}
	return a + b
}

// Usage is the token usage of one call, each token counted in exactly one
// class (Anthropic's convention; an OpenAI prompt_tokens figure is split
// into InputTokens = prompt − cached and CachedInputTokens).
type Usage struct {
	InputTokens       int64 // uncached input
	OutputTokens      int64 // output, reasoning included
	CachedInputTokens int64 // input read from the provider's cache
	CacheWriteTokens  int64 // input written to the provider's cache (5-minute TTL)
	// CacheWrite1hTokens is input written to the cache with Anthropic's
	// 1-hour TTL.
	CacheWrite1hTokens int64
	// ToolUses are the uses of each server tool kind billed per use
	// (catalog.ToolKind), not tokens.
	ToolUses [catalog.NumToolKinds]int64
}

// Total is the token count that rate limits charge: every class.
func (u Usage) Total() int64 {
	return sat(sat(sat(sat(pos(u.InputTokens), pos(u.OutputTokens)), pos(u.CachedInputTokens)), pos(u.CacheWriteTokens)),
		pos(u.CacheWrite1hTokens))
}

// Price is a destination model's price in Money per million tokens for
// each token class. CachedInput and CacheWrite of 0 mean "not given":
// such tokens are priced as Input. CacheWrite1h of 0 means "not given":
// 1-hour cache writes are priced at twice Input, Anthropic's published
// rule. Cache1h marks a destination that bills 1-hour cache writes (an
// Anthropic one): Worst then includes their price.
type Price struct {
	Input, Output, CachedInput, CacheWrite Money
	CacheWrite1h                           Money
	Cache1h                                bool
	// PerUse is the price of 1,000 uses of each server tool kind billed
	// per use (a provider service's tool_prices), for the kinds in
	// HasPerUse; a kind without a price cannot be bounded (UnpricedTool).
	PerUse    [catalog.NumToolKinds]Money
	HasPerUse [catalog.NumToolKinds]bool
}

func (p Price) cached() Money {
	if p.CachedInput > 0 {
		return p.CachedInput
	}
	return p.Input
}

func (p Price) cacheWrite() Money {
	if p.CacheWrite > 0 {
		return p.CacheWrite
	}
	return p.Input
}

func (p Price) cacheWrite1h() Money {
	if p.CacheWrite1h > 0 {
		return p.CacheWrite1h
	}
	if p.Input > MaxMoney/2 {
		return MaxMoney
	}
	return 2 * p.Input
}

// Cost is the exact cost of u at p, rounded up to the nano-dollar (the one
// pricing rule: usage rows and budgets use it alike).
func (p Price) Cost(u Usage) Money {
	var acc wide
	acc.mulAdd(u.InputTokens, p.Input)
	acc.mulAdd(u.OutputTokens, p.Output)
	acc.mulAdd(u.CachedInputTokens, p.cached())
	acc.mulAdd(u.CacheWriteTokens, p.cacheWrite())
	acc.mulAdd(u.CacheWrite1hTokens, p.cacheWrite1h())
	p.addUses(&acc, &u.ToolUses)
	return acc.perMillion()
}

// addUses adds uses × the price per 1,000 uses of each kind: 1,000 ×
// uses per million (a kind without a price adds nothing).
func (p Price) addUses(acc *wide, uses *[catalog.NumToolKinds]int64) {
	for k, n := range uses {
		if n > 0 {
			acc.mulAdd(min(n, math.MaxInt64/1000)*1000, p.PerUse[k])
		}
	}
}

// Covers reports whether p prices every tool kind that uses counts (a
// use of a kind without a price has an unknown cost).
func (p Price) Covers(uses *[catalog.NumToolKinds]int64) bool {
	for k, n := range uses {
		if n > 0 && !p.HasPerUse[k] {
			return false
		}
	}
	return true
}

// Worst is the largest cost a call with inputTokens of input (of any
// class: at a Cache1h destination, 1-hour cache writes too), at most
// maxTokens of output and at most uses of each tool kind billed per use
// can have at p.
func (p Price) Worst(inputTokens, maxTokens int64, uses *[catalog.NumToolKinds]int64) Money {
	in := max(p.Input, p.cached(), p.cacheWrite())
	if p.Cache1h {
		in = max(in, p.cacheWrite1h())
	}
	var acc wide
	acc.mulAdd(inputTokens, in)
	acc.mulAdd(maxTokens, p.Output)
	if uses != nil {
		p.addUses(&acc, uses)
	}
	return acc.perMillion()
}

// wide is an unsigned 128-bit accumulator of tokens × price.
type wide struct{ hi, lo uint64 }

func (w *wide) mulAdd(tokens int64, price Money) {
	if tokens <= 0 || price <= 0 {
		return
	}
	hi, lo := bits.Mul64(uint64(tokens), uint64(price))
	var c uint64
	w.lo, c = bits.Add64(w.lo, lo, 0)
	w.hi, _ = bits.Add64(w.hi, hi, c)
}

// perMillion divides by 10^6 rounding up, saturating at MaxMoney.
func (w *wide) perMillion() Money {
	const m = 1_000_000
	if w.hi >= m {
		return MaxMoney
	}
	q, r := bits.Div64(w.hi, w.lo, m)
	if r != 0 {
		q++
	}
	if q > uint64(MaxMoney) {
		return MaxMoney
	}
	return Money(q)
}

// Destination is one provider model a call may reach (split or fallback).
type Destination struct {
	Name   string // provider_service/model, for the PriceUnknown refusal (the limits stage names only unpriced ones)
	Price  Price
	Priced bool // false: no price is known (fails closed under a budget)
}

// ErrNoPrice is wrapped by the Refusal of a budgeted call that may reach a
// destination without a price.
var ErrNoPrice = errors.New("no price for a destination of a budgeted call")

func sat(a, b int64) int64 {
	if s := a + b; s >= a {
		return s
	}
	return math.MaxInt64
}

func pos(a int64) int64 { return max(a, 0) }
