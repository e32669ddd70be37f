package limitstest

import (
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
)

// Fixtures of the leasing backends' tests: a model service, two users in
// a group, a priced destination, and a clock the test moves.
const (
	Service catalog.ID = BenchService
	Alice   catalog.ID = 1
	Bob     catalog.ID = 2
	Group   catalog.ID = 20 // Alice and Bob
)

// GPT is the fixtures' priced destination (BenchDestination).
var GPT = BenchDestination

// EachUser is a FOR EACH USER rate limit of req requests and tok tokens
// per minute on Service.
func EachUser(req, tok int64) limits.Definitions {
	return limits.Definitions{RateLimits: []limits.RateLimit{{Securable: Service, SecurableName: "system.ai.frontier",
		Level: limits.LevelEachUser, Requests: req, Tokens: tok}}}
}

// GroupBudget is a budget of limit for Group ("analysts": Alice and Bob).
func GroupBudget(limit limits.Money) limits.Definitions {
	return limits.Definitions{
		Budgets: []limits.Budget{{Name: "analysts", Limit: limit, Level: limits.LevelGroup, Principal: Group, PrincipalName: "analysts"}},
		Members: map[catalog.ID][]catalog.ID{Group: {Alice, Bob}},
	}
}

// Call is a model call of subj to Service with in input tokens and an
// output cap of maxTok, to GPT.
func Call(subj catalog.ID, in, maxTok int64) *limits.Call {
	return &limits.Call{Kind: limits.ModelService, Securable: Service, Subject: subj, InputTokens: in, MaxTokens: maxTok,
		Destinations: []limits.Destination{GPT}}
}

// Clock is a clock the test sets and moves; safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock is a Clock at t.
func NewClock(t time.Time) *Clock { c := &Clock{}; c.ns.Store(t.UnixNano()); return c }

func (c *Clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *Clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
