package pipeline

import (
	"context"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
)

// Call is one call through the pipeline: what the stages learn about it,
// and the audit row it ends in. The pipeline sets the first group when the
// call starts; the adapter sets the second (before Serve or in Resolve);
// the stages set the rest.
type Call struct {
	// Set by the pipeline.
	Request  *http.Request
	Start    time.Time // monotonic, for latency
	Time     time.Time // Config.Now at arrival: the audit event_time
	EventID  string
	SourceIP string
	// TraceID is the W3C trace id of the call: its trace context's
	// (TraceParent), else a new one. SpanID is the id of the gateway's
	// span of the call when it is traced (an Observer with tracing sets
	// both once the span starts); without tracing it is the parent span id
	// the call carries upstream (TraceParent's, or a new one). Both go to
	// the audit row, so that SQL and traces join.
	TraceID string
	SpanID  string
	// TraceParent and TraceState are the W3C trace context the call
	// continues: the request's traceparent and tracestate headers, or the
	// message's own (ContinueTrace). "" when none was sent.
	TraceParent string
	TraceState  string

	// Set by the adapter.
	//
	// Resource is the canonical URL of the addressed endpoint: a token's
	// audience may be it (RFC 8707).
	Resource string
	// Action is the audit action_name: the protocol method
	// ("tools/call"); the HTTP method until the request is decoded.
	Action string
	// Securable is what the call addresses: Name as requested until
	// Resolve, then the full name. Privilege is what calling it takes
	// (MCP: USE_CONNECTION on a CONNECTION; LLM: EXECUTE on a MODEL
	// SERVICE).
	Securable enforce.SecurableRef
	Privilege catalog.Privilege
	// Context is the policy context of the authorization question;
	// LazyContext, when Context is nil, builds it only when a policy
	// needs it (enforce.Request.LazyContext). Read it with ContextMap.
	Context     map[string]any
	LazyContext enforce.ContextSource
	// Item names what within the securable the call addresses, for
	// messages ("tool echo" → Item "echo"); ItemKeys are the Context keys
	// about it. A denial with them but not without them is KindItemDenied.
	Item     string
	ItemKeys []string
	// Upstream is the connection the credential stage gets a credential
	// for (nil: none, or the Protocol is a CredentialStage).
	Upstream *gateway.Connection
	// RequestID and SessionID go to the audit row.
	RequestID string
	SessionID string
	// Content is the call's payload as guard_call sees it (nil: none);
	// Send sends Content.Body, which a guard may have rewritten.
	Content *Content
	BytesIn int64
	// ProtocolVersion is the version of the protocol the client speaks
	// (MCP-Protocol-Version), for observers.
	ProtocolVersion string
	// ErrorType classifies how the call failed, in the protocol's terms,
	// for observers (OpenTelemetry error.type): MCP sets the JSON-RPC
	// error code of the answer, or "tool_error" for a tool result with
	// isError. "" leaves it to the pipeline's Error (its Kind).
	ErrorType string
	// Tags are the call's request tags (the LLM adapter's
	// X-Mandate-Request-Tags and the model service's tags): budgets and
	// policies see them.
	Tags map[string]string
	// Model is set by the adapter of a model call (LLM): what the limits
	// stage reserves and the meter settles; nil for other protocols.
	Model *ModelCall
	// Listing marks a call that reads a list the adapter filters item by
	// item with the pipeline's Authorizer (GET /llm/v1/models: the model
	// services the caller may EXECUTE): the authorize stage asks no
	// question of its own, the list is the answer.
	Listing bool

	// Set by the stages.
	Identity *gateway.Identity
	Decision enforce.Decision
	// Usage is what the call consumed (set by the adapter's Relay; read
	// by the meter stage and the limits' settlement).
	Usage Usage
	// Limits is the caller's position against the rate limits that
	// admitted the call (set by the Limiter; nil when none applies), for
	// the answer's x-ratelimit-* headers.
	Limits         *LimitInfo
	UpstreamStatus int
	// CredentialRetried: the upstream refused a cached credential and the
	// call was sent again with a fresh one.
	CredentialRetried bool
	// Delivered is set by the adapter when the whole answer reached the
	// client: a client that closes the connection right after it (as
	// streaming clients do once they read the last event) did not leave
	// early.
	Delivered bool
	// Status is the HTTP status answered (0 until known).
	Status   int
	BytesOut int64
	// ErrorMessage is the audit error_message.
	ErrorMessage string
	Timings      Timings
	// UpstreamTime is the time spent waiting for the upstream: its
	// Send calls and the relay's reads of its answer. The rest of the
	// call's time is the gateway's own.
	UpstreamTime time.Duration
	// Guardrails are the guardrail outcomes of the call (its audit row's
	// guardrails column; AddGuardrail). GuardState is the Guard's own
	// state of the call, from guard_call to guard_result.
	Guardrails []GuardrailOutcome
	GuardState any

	p                *Pipeline
	proto            Protocol
	ctx              context.Context
	log              *zerolog.Logger
	w                *response
	decision, reason string
	credential       string
	resp             *http.Response
	reservation      Reservation
	resultGuard      ResultGuard
	auditCtx         context.Context
	audit            auditState
	// slot is the subject whose in-flight slot the call holds, if held
	// (a subject may be "" for an Authenticator that names none).
	slot     string
	slotHeld bool
}

// init starts c for r.
// ContextMap is the call's policy context: Context, or the map
// LazyContext builds (nil without either). Callers do not modify it.
func (c *Call) ContextMap() map[string]any {
	if c.Context == nil && c.LazyContext != nil {
		return c.LazyContext.PolicyContext()
	}
	return c.Context
}

func (c *Call) init(p *Pipeline, proto Protocol, w http.ResponseWriter, r *http.Request) {
	c.p, c.proto = p, proto
	c.slot, c.slotHeld = "", false
	c.w = newResponse(w, p.cfg.WriteTimeout)
	c.Request = r
	c.Start = time.Now()
	c.Time = p.now()
	c.EventID = catalog.NewEventID()
	c.decision = "deny"
	if c.Action == "" {
		c.Action = r.Method
	}
	c.SourceIP, _, _ = net.SplitHostPort(r.RemoteAddr)
	if c.SourceIP == "" {
		c.SourceIP = r.RemoteAddr
	}
	if tp := r.Header.Get("traceparent"); tp != "" {
		c.setTrace(tp, strings.Join(r.Header.Values("tracestate"), ","))
	}
	if c.TraceID == "" {
		ids := RandomHex(24) // one string: the trace id, then the span id
		c.TraceID, c.SpanID = ids[:32], ids[32:]
	}
}

// setTrace makes tp (with ts) the call's trace context if it is a valid
// traceparent.
func (c *Call) setTrace(tp, ts string) bool {
	id := TraceIDOf(tp)
	if id == "" {
		return false
	}
	c.TraceParent, c.TraceState = tp, ts
	c.SetSpan(id, tp[36:52])
	return true
}

// SetSpan sets the call's TraceID and SpanID (an Observer that traces
// sets its span's).
func (c *Call) SetSpan(traceID, spanID string) {
	c.TraceID, c.SpanID = traceID, spanID
	c.log = nil // its trace_id changed
}

// ContinueTrace is for adapters whose messages carry their own trace
// context (MCP: params._meta.traceparent and tracestate): when tp is a
// valid traceparent the call continues it rather than the request's
// headers (the message's context is the more specific one; an Observer
// may link the header's). Call it in Resolve.
func (c *Call) ContinueTrace(tp, ts string) { c.setTrace(tp, ts) }

// Ctx is the call's context: the request's, with what a CallObserver
// attached to it.
func (c *Call) Ctx() context.Context {
	if c.ctx == nil {
		return c.Request.Context()
	}
	return c.ctx
}

// ServiceName is the calling protocol's audit service_name ("mcp", "llm").
func (c *Call) ServiceName() string { return c.proto.Service() }

// Logger is the logger of lines about the call: the pipeline's, with the
// call's request_id (the audit event_id) and trace_id.
func (c *Call) Logger() *zerolog.Logger {
	if c.log == nil {
		l := c.p.log.With().Str("request_id", c.EventID).Str("trace_id", c.TraceID).Logger()
		c.log = &l
	}
	return c.log
}

// Writer is the client's response writer. Adapters write their answer to
// it, only after Commit.
func (c *Call) Writer() http.ResponseWriter { return c.w }

// Started reports whether the answer's header has been written.
func (c *Call) Started() bool { return c.w != nil && c.w.wrote }

func (c *Call) allow(reason string) { c.decision, c.reason = "allow", reason }
func (c *Call) deny(reason string)  { c.decision, c.reason = "deny", reason }

// Decided returns the audit decision and reason as they stand.
func (c *Call) Decided() (decision, reason string) { return c.decision, c.reason }

// Commit is the durability rule: an adapter calls it before the first byte
// of its answer. It returns once the call's request record is durable
// (immediately with --audit-sync off); when final, the outcome is known
// (Status, BytesOut, ErrorMessage as they stand) and the completion is
// queued (never waited for). An error (KindAudit) means: do not answer.
// Later calls do what is left (a stream commits when it opens and again,
// final, when its response passes).
func (c *Call) Commit(final bool) *Error { return c.p.commit(c, final) }

// GuardPiece passes one piece of the answer through the result guard and
// returns the bytes to send: body, or the guard's rewrite (empty: drop
// the piece). A denial is KindGuardDenied. Without a Guard it returns
// body.
func (c *Call) GuardPiece(ctx context.Context, format string, body []byte, final bool) ([]byte, *Error) {
	out, err := c.guardPiece(ctx, format, body, final)
	if po := c.p.pieceObs; po != nil && err == nil && len(out) > 0 {
		po.Piece(c, format, out, final)
	}
	return out, err
}

func (c *Call) guardPiece(ctx context.Context, format string, body []byte, final bool) ([]byte, *Error) {
	if c.resultGuard == nil {
		return body, nil
	}
	v, err := c.resultGuard.Piece(ctx, c, &Content{Format: format, Body: body, Final: final})
	if err != nil {
		return nil, &Error{Stage: StageGuardResult, Kind: KindGuardDenied, Status: http.StatusForbidden, Item: c.Item,
			Message: "the answer could not be checked by the gateway's guardrails", Reason: "guardrail failed: " + err.Error(), Cause: err}
	}
	switch v.Action {
	case Allow:
		return body, nil
	case Rewrite:
		return v.Body, nil
	}
	return nil, &Error{Stage: StageGuardResult, Kind: KindGuardDenied, Status: http.StatusForbidden, Item: c.Item,
		Message: "blocked by a guardrail: " + v.Reason, Reason: "guardrail denied the result: " + v.Reason}
}

// event is c's audit event as it stands.
func (c *Call) event() catalog.AuditEvent {
	ev := catalog.AuditEvent{
		EventID:       c.EventID,
		Time:          c.Time,
		Service:       c.proto.Service(),
		Action:        c.Action,
		SourceIP:      c.SourceIP,
		UserAgent:     c.Request.UserAgent(),
		SessionID:     c.SessionID,
		RequestID:     c.RequestID,
		SecurableType: string(c.Securable.Type),
		SecurableName: c.Securable.Name,
		RequestParams: c.proto.AuditParams(c),
		StatusCode:    c.Status,
		ErrorMessage:  c.ErrorMessage,
		Decision:      c.decision,
		Reason:        c.reason,
		LatencyMs:     float64(time.Since(c.Start).Microseconds()) / 1000,
		Revision:      c.Decision.Revision,
		TraceID:       c.TraceID,
		SpanID:        c.SpanID,
		Guardrails:    c.GuardrailsJSON(),
	}
	if c.Identity != nil {
		ev.UserIdentity, ev.RunBy, ev.RunAs = c.Identity.Subject, c.Identity.Subject, c.Identity.Actor
	}
	if d, ok := c.proto.(AuditDetailer); ok {
		d.AuditDetail(c, &ev)
	}
	return ev
}

// AuditDetailer is implemented by Protocols whose audit rows carry
// columns of their own (the LLM adapter's usage): AuditDetail fills them
// into ev, the call's event as it stands (the request record, then the
// completion).
type AuditDetailer interface {
	AuditDetail(c *Call, ev *catalog.AuditEvent)
}

// Attach queues an additional audit event that belongs to the call, such
// as a captured payload: its EventID (a new one when empty), time,
// identity, request id, source, securable and trace context are the
// call's. Nobody waits
// for it (a sink without a queue records it in the background); call it
// once the call's own record is durable (after Commit), so that a crash
// cannot keep the extra event without the call's.
func (c *Call) Attach(ev catalog.AuditEvent) {
	if ev.EventID == "" {
		ev.EventID = catalog.NewEventID()
	}
	ev.Time, ev.Service, ev.SourceIP, ev.UserAgent, ev.SessionID = c.Time, c.proto.Service(), c.SourceIP, c.Request.UserAgent(), c.SessionID
	ev.RequestID, ev.SecurableType, ev.SecurableName = c.RequestID, string(c.Securable.Type), c.Securable.Name
	ev.Decision, ev.Revision = c.decision, c.Decision.Revision
	ev.TraceID, ev.SpanID = c.TraceID, c.SpanID
	if c.Identity != nil {
		ev.UserIdentity, ev.RunBy, ev.RunAs = c.Identity.Subject, c.Identity.Subject, c.Identity.Actor
	}
	c.p.attach(c, ev)
}

// response is the call's writer. It records whether the answer has
// started, and bounds each write and flush by timeout (Config.WriteTimeout):
// a client that does not take a piece of the answer within it is cut off,
// so it cannot hold the call, and the upstream stream behind it, forever.
// The deadline is lifted after each write, so that a stream may pause
// between events as long as its upstream does (HTTP/2 would reset a stream
// whose deadline passed while it paused).
type response struct {
	http.ResponseWriter
	rc      http.ResponseController
	timeout time.Duration
	wrote   bool
}

func newResponse(w http.ResponseWriter, timeout time.Duration) *response {
	return &response{ResponseWriter: w, rc: *http.NewResponseController(w), timeout: timeout}
}

func (r *response) WriteHeader(status int) {
	r.wrote = true
	r.ResponseWriter.WriteHeader(status)
}

func (r *response) Write(b []byte) (int, error) {
	r.wrote = true
	set := r.setDeadline()
	n, err := r.ResponseWriter.Write(b)
	if set {
		_ = r.rc.SetWriteDeadline(time.Time{})
	}
	return n, err
}

// FlushError is http.ResponseController's Flush, within the deadline.
func (r *response) FlushError() error {
	set := r.setDeadline()
	err := r.rc.Flush()
	if set {
		_ = r.rc.SetWriteDeadline(time.Time{})
	}
	return err
}

// setDeadline sets the write deadline, and reports whether it did (a
// writer without deadlines, such as a test's recorder, has none).
func (r *response) setDeadline() bool {
	return r.timeout > 0 && r.rc.SetWriteDeadline(time.Now().Add(r.timeout)) == nil
}

// Unwrap lets http.ResponseController reach the server's writer (Flush).
func (r *response) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// TraceIDOf returns the trace id of a W3C traceparent header, or "" when
// tp is not a valid one.
func TraceIDOf(tp string) string {
	// version "-" trace-id (32 hex) "-" parent-id (16 hex) "-" flags (2 hex),
	// and for versions after 00 maybe more after a "-".
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' || (len(tp) > 55 && (tp[:2] == "00" || tp[55] != '-')) {
		return ""
	}
	if !lowerHex(tp[:2]) || tp[:2] == "ff" || !lowerHex(tp[3:35]) || !lowerHex(tp[36:52]) || !lowerHex(tp[53:55]) ||
		tp[3:35] == "00000000000000000000000000000000" || tp[36:52] == "0000000000000000" {
		return ""
	}
	return tp[3:35]
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// RandomHex returns n random bytes as hex (trace and span ids: unique,
// not secret).
func RandomHex(n int) string {
	const digits = "0123456789abcdef"
	var buf [64]byte // ids are short: no buffer beyond the string
	dst := buf[:0]
	if 2*n > len(buf) {
		dst = make([]byte, 0, 2*n)
	}
	for i := 0; i < n; i += 8 {
		v := mrand.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b := byte(v >> (8 * j))
			dst = append(dst, digits[b>>4], digits[b&15])
		}
	}
	return string(dst)
}
