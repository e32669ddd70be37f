package pipeline

import (
	"fmt"
	"net/http"
	"time"

	"github.com/mandatehq/mandate/gateway"
)

// Kind is what went wrong, whatever the stage: the protocol adapter maps it
// to its own error body (Protocol.Render), the pipeline to the audit row.
type Kind uint8

// Kinds of Error.
const (
	// KindInvalid: the request is malformed for its protocol (Detail says
	// how, in the adapter's terms). Audited as a denial.
	KindInvalid Kind = iota + 1
	// KindUnauthenticated: no valid bearer token (Auth is set): 401, or
	// 403 for insufficient_scope.
	KindUnauthenticated
	// KindForbidden: the request does not come through the gateway's
	// public host or an allowed origin: 403.
	KindForbidden
	// KindNotFound: the securable (or the adapter's session) does not
	// exist: 404.
	KindNotFound
	// KindDenied: grants or policies deny the securable: 403.
	KindDenied
	// KindItemDenied: a policy denies the item the call addresses (the
	// tool), not the securable.
	KindItemDenied
	// KindLimited: a rate limit or budget refuses the call: 429 with
	// RetryAfter.
	KindLimited
	// KindGuardDenied: a guardrail denied the call or its result.
	KindGuardDenied
	// KindSignIn: the user must connect their account first (SignIn set).
	KindSignIn
	// KindUnavailable: something the gateway depends on failed (catalog
	// lookup, credentials, authorizer, a stage's unexpected error): 502
	// or 503.
	KindUnavailable
	// KindUpstream: the upstream failed or could not be reached: 502, or
	// 504 for a timeout.
	KindUpstream
	// KindAudit: the call's audit record could not be written, so it is
	// not answered: 503.
	KindAudit
	// KindClientGone: the client left before the answer: audited as 499,
	// nothing is written.
	KindClientGone
)

var kindNames = [...]string{"", "invalid", "unauthenticated", "forbidden", "not_found", "denied", "item_denied",
	"limited", "guard_denied", "sign_in", "unavailable", "upstream", "audit", "client_gone"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// refusal reports whether the kind is a refusal of the call (the audit
// decision is deny), as opposed to a failure of an allowed call.
func (k Kind) refusal() bool {
	switch k {
	case KindInvalid, KindUnauthenticated, KindForbidden, KindNotFound, KindDenied, KindItemDenied, KindLimited,
		KindGuardDenied:
		return true
	}
	return false
}

// Error is a stage's refusal or failure. Stages return it; the pipeline
// records it and has the protocol adapter render it, in one place.
type Error struct {
	Stage Stage // set by the pipeline
	Kind  Kind
	// Status is the HTTP status of the answer (the adapter's Render may
	// choose another: what it returns is what the client gets and the
	// audit row says).
	Status int
	// Message is for the caller: what is wrong or missing, briefly, with
	// no internals (no group memberships, no upstream error text).
	Message string
	// Reason is the audit row's reason for a refusal (it may hold the full
	// grant derivation); "" means Message.
	Reason string
	// Audit is the audit row's error_message; "" means Message.
	Audit string
	// Cause is the underlying error, for the log.
	Cause error
	// RetryAfter is sent as Retry-After when set (KindLimited, KindAudit).
	RetryAfter time.Duration
	// Final is set on a KindLimited refusal that the same request cannot
	// pass later (it needs more than the limit allows, or the budget is
	// exhausted for the period): adapters tell clients not to retry.
	Final bool
	// Limit is what refused a KindLimited call (a budget or rate limits)
	// and the caller's position, for the adapter's headers; may be nil.
	Limit *LimitInfo
	// Auth is the authentication failure (KindUnauthenticated).
	Auth *gateway.AuthError
	// SignIn is the sign-in the user must complete (KindSignIn).
	SignIn *gateway.SignInRequiredError
	// Item names what KindItemDenied and KindGuardDenied refer to (a tool).
	Item string
	// Detail is the adapter's own (for example a JSON-RPC error code and
	// data for KindInvalid); the pipeline does not look at it.
	Detail any
}

func (e *Error) Error() string {
	s := e.Stage.String() + ": " + e.Kind.String() + ": " + e.Message
	if e.Cause != nil {
		s += ": " + e.Cause.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Cause }

func (e *Error) auditMessage() string {
	if e.Audit != "" {
		return e.Audit
	}
	return e.Message
}

func (e *Error) auditReason() string {
	if e.Reason != "" {
		return e.Reason
	}
	return e.Message
}

// defaultStatus is the HTTP status of a kind when a stage did not set one.
func (k Kind) defaultStatus() int {
	switch k {
	case KindInvalid:
		return http.StatusBadRequest
	case KindUnauthenticated:
		return http.StatusUnauthorized
	case KindForbidden, KindDenied, KindItemDenied, KindGuardDenied, KindSignIn:
		return http.StatusForbidden
	case KindNotFound:
		return http.StatusNotFound
	case KindLimited:
		return http.StatusTooManyRequests
	case KindUpstream:
		return http.StatusBadGateway
	case KindClientGone:
		return statusClientClosed
	}
	return http.StatusServiceUnavailable
}

// statusClientClosed is the audit status of a call whose client left
// before the answer (nginx's 499).
const statusClientClosed = 499

// Answer is what an adapter renders for an Error: written by the pipeline
// once the call's audit record is durable.
type Answer struct {
	Status      int
	ContentType string
	// Header holds extra response headers (WWW-Authenticate, Allow,
	// Retry-After); nothing is set on the response before the record is
	// durable.
	Header http.Header
	Body   []byte
}
