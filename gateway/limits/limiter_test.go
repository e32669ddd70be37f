package limits_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway/limits"
)

// Catalog IDs used by the tests.
const (
	svc   catalog.ID = 100 // system.ai.frontier
	svc2  catalog.ID = 101 // system.ai.cheap
	conn  catalog.ID = 102 // system.ai.github (MCP)
	alice catalog.ID = 1
	bob   catalog.ID = 2
	carol catalog.ID = 3
	agent catalog.ID = 10 // a service principal
	g1    catalog.ID = 20 // analysts: alice, bob
	g2    catalog.ID = 21 // engineers: alice
)

var names = map[catalog.ID]string{svc: "system.ai.frontier", svc2: "system.ai.cheap", conn: "system.ai.github",
	alice: "alice@example.com", bob: "bob@example.com", carol: "carol@example.com", agent: "claude-code",
	g1: "analysts", g2: "engineers"}

var members = map[catalog.ID][]catalog.ID{g1: {alice, bob}, g2: {alice}}

// t0 is mid-month, bucket aligned.
var t0 = time.Date(2026, 7, 14, 10, 0, 0, 0, time.UTC)

type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock { c := &clock{}; c.ns.Store(t.UnixNano()); return c }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func rl(sec catalog.ID, level limits.Level, p catalog.ID, req, tok int64) limits.RateLimit {
	return limits.RateLimit{Securable: sec, SecurableName: names[sec], Level: level, Principal: p, PrincipalName: names[p],
		Requests: req, Tokens: tok}
}

func newLimiter(t *testing.T, c *clock, defs limits.Definitions) *limits.Limiter {
	t.Helper()
	l := limits.New(limits.Options{Now: c.Now})
	if defs.Members == nil {
		defs.Members = members
	}
	if err := l.Apply(t.Context(), defs); err != nil {
		t.Fatal(err)
	}
	return l
}

// gpt is a priced destination: 2 USD / 8 USD per million input/output
// tokens, cached input 0.50, cache writes 2.50.
var gpt = limits.Destination{Name: "openai_prod/gpt-4.1", Priced: true,
	Price: limits.Price{Input: 2 * limits.USD, Output: 8 * limits.USD, CachedInput: limits.USD / 2, CacheWrite: 5 * limits.USD / 2}}

func modelCall(subj, actor catalog.ID, in, maxTok int64) *limits.Call {
	return &limits.Call{Kind: limits.ModelService, Securable: svc, Subject: subj, Actor: actor, InputTokens: in, MaxTokens: maxTok,
		Destinations: []limits.Destination{gpt}}
}

// outcome renders a Reserve result as "ok" or "<kind> <scope> <dim>".
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var r *limits.Refusal
	if !errors.As(err, &r) {
		return "error " + err.Error()
	}
	switch r.Kind {
	case limits.RateLimited:
		return fmt.Sprintf("limited %s %s", r.Scope, r.Dim)
	case limits.BudgetExhausted:
		return "budget " + r.Budget
	}
	return r.Kind.String() + " " + r.Budget
}

func TestRateLimitLevels(t *testing.T) {
	type step struct {
		at          time.Duration
		subj, actor catalog.ID
		sec         catalog.ID // default svc
		in, out     int64      // tokens reserved: in + out (settled as reserved)
		want        string
	}
	calls := func(n int, s step) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	cat := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		rls   []limits.RateLimit
		steps []step
	}{
		{
			name: "service limit is checked first and shared by everyone",
			rls:  []limits.RateLimit{rl(svc, limits.LevelService, 0, 3, 0), rl(svc, limits.LevelEachUser, 0, 10, 0)},
			steps: cat(calls(2, step{subj: alice, want: "ok"}), calls(1, step{subj: bob, want: "ok"}),
				calls(1, step{subj: carol, want: "limited service requests"}),
				calls(1, step{subj: carol, sec: svc2, want: "ok"})),
		},
		{
			name: "default per user: one window per subject",
			rls:  []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 2, 0)},
			steps: cat(calls(2, step{subj: alice, want: "ok"}), calls(1, step{subj: alice, want: "limited each user requests"}),
				calls(2, step{subj: bob, want: "ok"}), calls(1, step{subj: agent, want: "ok"})),
		},
		{
			name: "a user limit overrides the default",
			rls:  []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 1, 0), rl(svc, limits.LevelUser, alice, 3, 0)},
			steps: cat(calls(3, step{subj: alice, want: "ok"}), calls(1, step{subj: alice, want: `limited user "alice@example.com" requests`}),
				calls(1, step{subj: bob, want: "ok"}), calls(1, step{subj: bob, want: "limited each user requests"})),
		},
		{
			name: "a group limit is shared by its members and overrides the default",
			rls:  []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 1, 0), rl(svc, limits.LevelGroup, g1, 3, 0)},
			steps: cat(calls(2, step{subj: alice, want: "ok"}), calls(1, step{subj: bob, want: "ok"}),
				calls(1, step{subj: bob, want: "limited group analysts requests"}),
				calls(1, step{subj: carol, want: "ok"}), calls(1, step{subj: carol, want: "limited each user requests"})),
		},
		{
			name: "a user limit overrides the group limit",
			rls:  []limits.RateLimit{rl(svc, limits.LevelGroup, g1, 1, 0), rl(svc, limits.LevelUser, alice, 3, 0)},
			steps: cat(calls(3, step{subj: alice, want: "ok"}), calls(1, step{subj: alice, want: `limited user "alice@example.com" requests`}),
				calls(1, step{subj: bob, want: "ok"}), calls(1, step{subj: bob, want: "limited group analysts requests"})),
		},
		{
			name: "several groups: throttled only when all are exhausted",
			// alice is in analysts (1/min) and engineers (2/min); her first
			// call uses analysts (lower ID), which bob then finds full.
			rls: []limits.RateLimit{rl(svc, limits.LevelGroup, g1, 1, 0), rl(svc, limits.LevelGroup, g2, 2, 0)},
			steps: cat(calls(3, step{subj: alice, want: "ok"}), calls(1, step{subj: alice, want: "limited group analysts requests"}),
				calls(1, step{subj: bob, want: "limited group analysts requests"}),
				calls(1, step{at: 61 * time.Second, subj: bob, want: "ok"})),
		},
		{
			name: "several groups: each dimension on its own",
			// analysts limits only tokens, engineers only requests: alice
			// needs room in engineers for requests and in analysts for tokens.
			rls: []limits.RateLimit{rl(svc, limits.LevelGroup, g1, 0, 100), rl(svc, limits.LevelGroup, g2, 2, 0)},
			steps: []step{{subj: alice, in: 50, out: 30, want: "ok"}, {subj: alice, in: 10, out: 20, want: "limited group analysts tokens"},
				{subj: alice, in: 10, out: 10, want: "ok"}, {subj: alice, want: "limited group engineers requests"},
				{subj: bob, in: 10, want: "limited group analysts tokens"}, {subj: bob, want: "ok"}},
		},
		{
			name: "requests and tokens: the stricter applies",
			rls:  []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 3, 100)},
			steps: []step{{subj: alice, in: 40, out: 20, want: "ok"}, {subj: alice, in: 40, out: 20, want: "limited each user tokens"},
				{subj: alice, in: 20, out: 20, want: "ok"}, {subj: alice, in: 0, out: 0, want: "ok"},
				{subj: alice, want: "limited each user requests"}},
		},
		{
			name: "an agent's own limit holds across the humans it acts for",
			rls:  []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 10, 0), rl(svc, limits.LevelServicePrincipal, agent, 3, 0)},
			steps: []step{{subj: alice, actor: agent, want: "ok"}, {subj: bob, actor: agent, want: "ok"},
				{subj: agent, want: "ok"}, // on its own: the same counter
				{subj: carol, actor: agent, want: `limited service principal "claude-code" requests`},
				{subj: carol, want: "ok"}},
		},
		{
			name: "group limits and the default are about the subject, not the actor",
			rls:  []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 1, 0)},
			steps: []step{{subj: alice, actor: agent, want: "ok"}, {subj: bob, actor: agent, want: "ok"},
				{subj: alice, actor: agent, want: "limited each user requests"}},
		},
		{
			name: "MCP connections count requests only",
			rls:  []limits.RateLimit{rl(conn, limits.LevelEachUser, 0, 2, 5)},
			steps: []step{{subj: alice, sec: conn, in: 100, want: "ok"}, {subj: alice, sec: conn, in: 100, want: "ok"},
				{subj: alice, sec: conn, want: "limited each user requests"}},
		},
		{
			name: "a request larger than the token limit is refused outright",
			rls:  []limits.RateLimit{rl(svc, limits.LevelService, 0, 0, 1000)},
			steps: []step{{subj: alice, in: 900, out: 200, want: "limited service tokens"},
				{subj: alice, in: 900, out: 100, want: "ok"}},
		},
		{
			name: "the window slides: capacity returns 60 to 61 s after use",
			rls:  []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 2, 0)},
			steps: []step{{at: 0, subj: alice, want: "ok"}, {at: 30 * time.Second, subj: alice, want: "ok"},
				{at: 60*time.Second + 999*time.Millisecond, subj: alice, want: "limited each user requests"},
				{at: 61 * time.Second, subj: alice, want: "ok"},
				{at: 90*time.Second + 999*time.Millisecond, subj: alice, want: "limited each user requests"},
				{at: 91 * time.Second, subj: alice, want: "ok"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(t0)
			l := newLimiter(t, c, limits.Definitions{RateLimits: tc.rls})
			for i, s := range tc.steps {
				c.Set(t0.Add(s.at))
				call := modelCall(s.subj, s.actor, s.in, s.out)
				if s.sec != 0 {
					call.Securable = s.sec
					if s.sec == conn {
						call.Kind, call.Destinations = limits.Connection, nil
					}
				}
				r, err := l.Reserve(t.Context(), call)
				if got := outcome(err); got != s.want {
					t.Fatalf("step %d (%s at %v): got %q, want %q (%v)", i, names[s.subj], s.at, got, s.want, err)
				}
				l.Settle(r, limits.Usage{InputTokens: s.in, OutputTokens: s.out}, 0)
			}
		})
	}
}

func TestSettleAndRelease(t *testing.T) {
	c := newClock(t0)
	l := newLimiter(t, c, limits.Definitions{RateLimits: []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 2, 1000)}})
	ctx := t.Context()
	r, err := l.Reserve(ctx, modelCall(alice, 0, 200, 600))
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens() != 800 {
		t.Errorf("reserved %d tokens, want 800", r.Tokens())
	}
	h := r.Headers()
	if !h.Requests.Set || h.Requests.Limit != 2 || h.Requests.Remaining != 1 || h.Tokens.Remaining != 200 || h.Tokens.Reset != 61*time.Second {
		t.Errorf("headers = %+v", h)
	}
	if _, err := l.Reserve(ctx, modelCall(alice, 0, 100, 200)); outcome(err) != "limited each user tokens" {
		t.Fatalf("300 tokens over 200 remaining: %v", err)
	}
	// The call used 150 tokens: 650 come back.
	l.Settle(r, limits.Usage{InputTokens: 100, CachedInputTokens: 30, OutputTokens: 20}, 0)
	l.Settle(r, limits.Usage{OutputTokens: 1000}, 0) // idempotent
	l.Release(r)                                     // no effect after Settle
	r2, err := l.Reserve(ctx, modelCall(alice, 0, 250, 600))
	if err != nil {
		t.Fatalf("850 tokens with 150 used: %v", err)
	}
	// Released: the request and the tokens come back.
	l.Release(r2)
	r3, err := l.Reserve(ctx, modelCall(alice, 0, 250, 600))
	if err != nil {
		t.Fatalf("after Release: %v", err)
	}
	// Usage above the reservation is charged in full.
	l.Settle(r3, limits.Usage{InputTokens: 400, OutputTokens: 600}, 0)
	c.Advance(59 * time.Second)
	_, err = l.Reserve(ctx, modelCall(alice, 0, 1, 0))
	var ref *limits.Refusal
	if !errors.As(err, &ref) || ref.Dim != limits.Requests {
		t.Fatalf("third request in the minute: %v", err)
	}
	if ref.RetryAfterSeconds() != 2 || ref.Status != http.StatusTooManyRequests {
		t.Errorf("Retry-After %d (%v), status %d; want 2 s, 429", ref.RetryAfterSeconds(), ref.RetryAfter, ref.Status)
	}
	hdr := http.Header{}
	ref.SetHeaders(hdr)
	want := map[string]string{"Retry-After": "2", "X-Ratelimit-Limit-Requests": "2", "X-Ratelimit-Remaining-Requests": "0",
		"X-Ratelimit-Reset-Requests": "2s", "X-Ratelimit-Limit-Tokens": "1000", "X-Ratelimit-Remaining-Tokens": "0"}
	for k, v := range want {
		if got := hdr.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if !strings.Contains(ref.Error(), "2 requests per minute for each user on model service system.ai.frontier") {
		t.Errorf("message: %s", ref.Error())
	}
	var nilR *limits.Reservation
	l.Settle(nilR, limits.Usage{}, 0)
	l.Release(nilR)
}

func TestApply(t *testing.T) {
	c := newClock(t0)
	l := newLimiter(t, c, limits.Definitions{RateLimits: []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 5, 0)}})
	ctx := t.Context()
	for range 3 {
		if _, err := l.Reserve(ctx, modelCall(alice, 0, 0, 0)); err != nil {
			t.Fatal(err)
		}
	}
	// A lowered limit applies to the recent count; a user limit replacing
	// the default shares its window.
	if err := l.Apply(ctx, limits.Definitions{RateLimits: []limits.RateLimit{rl(svc, limits.LevelUser, alice, 4, 0)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, modelCall(alice, 0, 0, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, modelCall(alice, 0, 0, 0)); outcome(err) != `limited user "alice@example.com" requests` {
		t.Fatalf("5th call under a limit of 4: %v", err)
	}
	for _, bad := range []limits.Definitions{
		{RateLimits: []limits.RateLimit{rl(svc, limits.LevelUser, 0, 1, 0)}},
		{RateLimits: []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, -1, 0)}},
		{RateLimits: []limits.RateLimit{rl(svc, limits.LevelUser, alice, 1, 0), rl(svc, limits.LevelUser, alice, 2, 0)}},
		{Budgets: []limits.Budget{{Name: "x", Level: limits.LevelService, Limit: limits.USD}}},
		{Budgets: []limits.Budget{{Name: "x", Level: limits.LevelEachUser, Limit: limits.USD}, {Name: "x", Level: limits.LevelEachUser}}},
	} {
		if err := l.Apply(ctx, bad); !errors.Is(err, limits.ErrInvalid) {
			t.Errorf("Apply(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	// The invalid definitions changed nothing.
	if _, err := l.Reserve(ctx, modelCall(alice, 0, 0, 0)); err == nil {
		t.Error("an invalid Apply replaced the definitions")
	}
	// Service and group windows carry over too.
	svcDefs := func(n int64) limits.Definitions {
		return limits.Definitions{Members: members, RateLimits: []limits.RateLimit{rl(svc2, limits.LevelService, 0, n, 0), rl(svc2, limits.LevelGroup, g2, n, 0)}}
	}
	if err := l.Apply(ctx, svcDefs(3)); err != nil {
		t.Fatal(err)
	}
	cheap := modelCall(alice, 0, 0, 0)
	cheap.Securable = svc2
	for range 2 {
		if _, err := l.Reserve(ctx, cheap); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Apply(ctx, svcDefs(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, cheap); outcome(err) != "limited service requests" {
		t.Fatalf("service window after a lowered limit: %v", err)
	}
	if err := l.Apply(ctx, limits.Definitions{}); err != nil {
		t.Fatal(err)
	}
	if r, err := l.Reserve(ctx, modelCall(alice, 0, 0, 0)); err != nil || r != nil {
		t.Errorf("no definitions: %v, %v; want nil, nil", r, err)
	}
	if _, err := l.Reserve(ctx, &limits.Call{Kind: limits.ModelService, Securable: svc}); err == nil {
		t.Error("a call without a subject was admitted")
	}
}

func TestRecordReplaysWindows(t *testing.T) {
	c := newClock(t0)
	defs := limits.Definitions{RateLimits: []limits.RateLimit{rl(svc, limits.LevelEachUser, 0, 10, 1000)}}
	l := newLimiter(t, c, defs)
	// A restart: the last minute's usage rows are replayed.
	for i := range 9 {
		l.Record(modelCall(alice, 0, 0, 0), t0.Add(-50*time.Second+time.Duration(i)*time.Second), limits.Usage{InputTokens: 50, OutputTokens: 50})
	}
	ctx := t.Context()
	if _, err := l.Reserve(ctx, modelCall(alice, 0, 50, 50)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, modelCall(alice, 0, 0, 0)); outcome(err) != "limited each user requests" {
		t.Fatalf("11th call in a minute across a restart: %v", err)
	}
	if _, err := l.Reserve(ctx, modelCall(bob, 0, 10, 0)); err != nil {
		t.Fatal(err)
	}
}
