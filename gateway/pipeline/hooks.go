package pipeline

import (
	"context"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
)

// The extension points. Each is optional: a nil one is a no-op stage (the
// feature does not exist yet, or is not configured), and each fails closed
// when present: its error refuses the call.

// Limiter is the limits stage: rate limits and budgets. Reserve admits the
// call before anything is sent upstream and reserves what it may use (one
// request; for a model call the input estimate plus max_tokens, and the
// worst-case cost); the reservation is settled after the call with its
// real usage (Call.Usage), also when the call failed (then usually with
// less). A refusal is an *Error of KindLimited (429, RetryAfter); any
// other error refuses the call as unavailable.
type Limiter interface {
	Reserve(ctx context.Context, c *Call) (Reservation, error)
}

// Reservation is what a Limiter reserved for one call. Settle runs exactly
// once, in the meter stage.
type Reservation interface {
	Settle(ctx context.Context, c *Call, u Usage)
}

// Guard is the guardrail stages. Call (guard_call) sees the call's payload
// before the credential is obtained and the call forwarded; Result
// (guard_result) starts the inspection of the answer, whose pieces the
// returned ResultGuard then sees in order: the whole body of a JSON
// answer, or each event of a stream, as it is relayed. A Verdict may allow
// a piece, deny it (the call is refused with KindGuardDenied; in a stream
// already under way the adapter ends it with an error event) or rewrite
// it (mask sensitive data). An error denies.
type Guard interface {
	Call(ctx context.Context, c *Call, in *Content) (Verdict, error)
	Result(ctx context.Context, c *Call) (ResultGuard, error)
}

// ResultGuard inspects the pieces of one call's answer, in order. It may
// keep state between pieces (a hold-back window for values split across
// stream events).
type ResultGuard interface {
	Piece(ctx context.Context, c *Call, out *Content) (Verdict, error)
}

// Content is a payload as guards see it: the protocol message the call
// sends upstream (guard_call; Call.Content), or one piece of its answer
// (guard_result).
type Content struct {
	// Format names the shape of Body: FormatMCP (one JSON-RPC message);
	// the LLM adapter adds its own (the request and response formats of
	// the provider APIs, OpenAI chat completions, Anthropic messages).
	Format string
	// Body is the payload as it goes upstream, or to the client.
	Body []byte
	// Final marks the last piece of an answer.
	Final bool
}

// FormatMCP: Body is one JSON-RPC 2.0 message of MCP.
const FormatMCP = "mcp"

// Action is a guard's verdict on a payload.
type Action uint8

// Actions of a Verdict.
const (
	Allow Action = iota
	Deny
	// Rewrite replaces the payload with Verdict.Body (same Format; an MCP
	// message keeps its id, method and name). An empty Body drops a piece
	// of a stream (to hold it back and emit it with a later one).
	Rewrite
)

// Verdict is a guard's answer.
type Verdict struct {
	Action Action
	// Reason says why (deny: for the caller and the audit row).
	Reason string
	Body   []byte
}

// Meter is the meter stage: it sees every call once its answer is done
// (status, Usage, timings) and records usage and cost (usage tables,
// metrics). It runs after the answer was written, before a whole answer
// is flushed (so limits are settled before the client has it); it must
// not block long.
type Meter interface {
	Record(ctx context.Context, c *Call)
}

// Usage is what a call consumed, as the protocol adapter read it from the
// upstream's answer (an LLM response's or stream's usage; zero for MCP).
// InputTokens counts every input token, cache reads and writes included;
// CachedInputTokens and CacheWriteTokens are subsets of it (price each
// class once), CacheWrite1hTokens (cache writes with Anthropic's 1-hour
// TTL, priced apart) a subset of CacheWriteTokens; OutputTokens include
// ReasoningTokens.
type Usage struct {
	InputTokens       int64
	OutputTokens      int64
	CachedInputTokens int64
	CacheWriteTokens  int64
	ReasoningTokens   int64
	// CacheWrite1hTokens is the part of CacheWriteTokens with the 1-hour
	// TTL.
	CacheWrite1hTokens int64
	// ToolUses are the uses of each server tool kind billed per use
	// (catalog.ToolKind).
	ToolUses [catalog.NumToolKinds]int64
}

// ModelCall is what the limits stage and the meter need to know about a
// model call: the LLM adapter fills it in Resolve (the estimate and the
// destinations) and in Relay (which destination answered, the cost).
type ModelCall struct {
	// InputTokens is the estimate of the input; MaxTokens the output cap
	// the call is held to (0: the client set none). Tokens reserved:
	// InputTokens + MaxTokens.
	InputTokens, MaxTokens int64
	// OutputCap is the cap the adapter can impose when the client set
	// none (MaxTokens 0): a Limiter whose rate limits or budgets need a
	// bound on the output reserves it and sets Capped, and the adapter
	// then sends it upstream. 0: the endpoint has no output (embeddings,
	// token counting).
	OutputCap int64
	Capped    bool
	// PerUseTool names a tool the call offers that the provider bills
	// beyond tokens in a way no price bounds (code execution, image
	// generation; "" none): a budgeted call with one fails closed.
	PerUseTool string
	// ToolUses is the most uses of each tool kind billed per use
	// (catalog.ToolKind: web search, file search) the call may make,
	// counting ToolCap for the tools the client left unbounded
	// (ToolCapNeeded). A Limiter whose budget reserves them sets
	// ToolCapped, and the adapter then sends the bound upstream.
	ToolUses      [catalog.NumToolKinds]int64
	ToolCapNeeded bool
	ToolCapped    bool
	// Destinations are every provider model the call may reach (the split
	// and the fallbacks), each with its price: the worst case reserved
	// against a budget is the dearest of them.
	Destinations []ModelDestination
	// Attempts counts the destinations the call was sent to; Answered is
	// the index in Destinations of the one that answered (-1: none did).
	// CostNanos is the call's cost there in billionths of a US dollar:
	// its Usage at that destination's price (CostKnown false when it has
	// no price or none answered).
	Attempts  int
	Answered  int
	CostNanos int64
	CostKnown bool
}

// ModelDestination is one provider model a model call may reach.
type ModelDestination struct {
	Service string // the provider service's full name
	Model   string
	Price   gateway.ModelPrice
	// Priced is false when the provider service has no price for Model
	// (a budgeted call that may reach it fails closed).
	Priced bool
}

// LimitInfo is a caller's position against the rate limits of a call:
// set on Call.Limits by a Limiter that admitted it, and on Error.Limit of
// a KindLimited refusal. Adapters render it as the provider-style
// x-ratelimit-* headers.
type LimitInfo struct {
	// Budget: a budget refused the call (not a rate limit).
	Budget bool
	// Requests and Tokens are the tightest windows of each dimension (nil:
	// the call is not limited in it).
	Requests, Tokens *RateWindow
}

// RateWindow is one rate-limit dimension as the caller sees it.
type RateWindow struct {
	Limit, Remaining int64
	// Reset is how long until the window is empty again.
	Reset time.Duration
}

// Observer watches the stages of every call, for tracing spans and
// metrics, without any stage knowing: StartStage is called as a stage
// begins and returns the stage's context (for a span) and the function
// that ends it, called with the stage's error (nil: passed). Finished is
// called once per call, after the audit stage. Stage timings are also in
// Call.Timings. Stages that have nothing to do (limits without a Limiter,
// guard_call without a Guard, meter without a Limiter or Meter) are not
// shown to the Observer.
type Observer interface {
	StartStage(ctx context.Context, c *Call, s Stage) (context.Context, func(err *Error))
	Finished(c *Call)
}

// CallObserver is an Observer that also sees each call begin, before its
// first stage: the context it returns is the call's from then on (every
// stage's, and Call.Ctx), so that it can carry the observer's state
// of the call (a trace span) to the stages and to Finished.
type CallObserver interface {
	Observer
	StartCall(ctx context.Context, c *Call) context.Context
}

// PieceObserver is an Observer that also sees each piece of every answer
// as the client gets it (after the result guardrails: what Call.GuardPiece
// returns), for traces that carry content.
type PieceObserver interface {
	Piece(c *Call, format string, body []byte, final bool)
}

// Stage names a step of the pipeline, in order.
type Stage uint8

// The stages, in the order every call runs them.
const (
	StageAuthenticate Stage = iota
	StageResolve
	StageAuthorize
	StageLimits
	StageGuardCall
	StageCredential
	StageForward
	StageGuardResult
	StageMeter
	StageAudit
	NumStages
)

var stageNames = [NumStages]string{"authenticate", "resolve", "authorize", "limits", "guard_call", "credential",
	"forward", "guard_result", "meter", "audit"}

func (s Stage) String() string {
	if s < NumStages {
		return stageNames[s]
	}
	return "stage?"
}

// Timings are the durations of the stages a call ran (zero for the
// others). guard_result spans the relay of the answer.
type Timings [NumStages]time.Duration
