package llm

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/mandatehq/mandate/gateway/internal/sse"
)

// Error is an error answered to the client, rendered in the client's
// format by WriteError (and in streams by streamError). Stages of the
// pipeline return *Error for refusals (401, 403, 404, 429, 413); anything
// else reaching WriteError is a 500 whose text is not shown.
type Error struct {
	Status  int    // HTTP status
	Message string // for the caller; never contains a secret
	// Param names the offending request member (OpenAI "param").
	Param string
	// Code is OpenAI's machine-readable code (invalid_api_key,
	// model_not_found, rate_limit_exceeded, insufficient_quota, ...).
	// insufficient_quota also becomes OpenAI's error type.
	Code string
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// rounded up).
	RetryAfter time.Duration
	// Final: retrying the same request cannot succeed (a request larger
	// than its rate limit, an exhausted budget). The answer carries
	// x-should-retry: false, which the OpenAI and Anthropic SDKs and
	// Claude Code obey instead of retrying a 429 with backoff.
	Final bool
	// Header holds extra response headers (x-ratelimit-*).
	Header http.Header
}

func (e *Error) Error() string { return e.Message }

// Errorf-style constructors for the common refusals.

// InvalidRequest is a 400 about param (may be "").
func InvalidRequest(param, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Param: param, Message: msg}
}

// NotFound is a 404 (for example an unknown model service).
func NotFound(msg string) *Error {
	return &Error{Status: http.StatusNotFound, Message: msg, Code: "model_not_found", Param: "model"}
}

// Unauthorized is a 401 (unknown, expired or revoked credential).
func Unauthorized(msg string) *Error {
	return &Error{Status: http.StatusUnauthorized, Message: msg, Code: "invalid_api_key"}
}

// Forbidden is a 403 (no EXECUTE, a policy denial).
func Forbidden(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Message: msg, Code: "permission_denied"}
}

// TooLarge is a 413.
func TooLarge(msg string) *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Message: msg, Code: "request_too_large"}
}

// BudgetExhausted is a 429 for a budget that has no room for the call
// (OpenAI type and code insufficient_quota; Anthropic rate_limit_error).
// It is Final: the budget renews only with the period (retryAfter).
func BudgetExhausted(msg string, retryAfter time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Message: msg, Code: "insufficient_quota", RetryAfter: retryAfter, Final: true}
}

// openAIType is OpenAI's error type for e.
func (e *Error) openAIType() string {
	if e.Code == "insufficient_quota" {
		return "insufficient_quota"
	}
	switch s := e.Status; {
	case s == 401:
		return "authentication_error"
	case s == 403:
		return "permission_error"
	case s == 429:
		return "rate_limit_error"
	case s == 504:
		return "timeout_error"
	case s >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// anthropicType is Anthropic's error type for e.
func (e *Error) anthropicType() string {
	switch e.Status {
	case 400, 422:
		return "invalid_request_error"
	case 401:
		return "authentication_error"
	case 402:
		return "billing_error"
	case 403:
		return "permission_error"
	case 404:
		return "not_found_error"
	case 413:
		return "request_too_large"
	case 429:
		return "rate_limit_error"
	case 503, 529:
		return "overloaded_error"
	case 504:
		return "timeout_error"
	}
	if e.Status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

type openAIErrorBody struct {
	Error openAIErrorObject `json:"error"`
}

type openAIErrorObject struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

type anthropicErrorBody struct {
	Type  string               `json:"type"`
	Error anthropicErrorObject `json:"error"`
}

type anthropicErrorObject struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// Body is e rendered in format f.
func (e *Error) Body(f Format) []byte {
	var v any
	if f == FormatAnthropic {
		v = anthropicErrorBody{Type: "error", Error: anthropicErrorObject{Type: e.anthropicType(), Message: e.Message}}
	} else {
		v = openAIErrorBody{Error: openAIErrorObject{Message: e.Message, Type: e.openAIType(), Param: strPtr(e.Param), Code: strPtr(e.Code)}}
	}
	b, _ := json.Marshal(v)
	return b
}

// AsError returns err as an *Error; anything else is a 500 whose message
// does not leak err's text.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Message: "internal gateway error"}
}

// WriteError answers err in the client's format f with its status and
// headers (Retry-After, x-ratelimit-*).
func WriteError(w http.ResponseWriter, f Format, err error) {
	e := AsError(err)
	h := w.Header()
	e.SetHeaders(h)
	h.Set("Content-Type", "application/json")
	if h.Get("X-Content-Type-Options") == "" {
		h.Set("X-Content-Type-Options", "nosniff")
	}
	body := e.Body(f)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// SetHeaders writes e's own response headers into h: Header
// (x-ratelimit-*), Retry-After, and x-should-retry: false when e is Final.
func (e *Error) SetHeaders(h http.Header) {
	for k, vs := range e.Header {
		h[k] = vs
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(ceilSeconds(e.RetryAfter), 10))
	}
	if e.Final {
		h.Set("X-Should-Retry", "false")
	}
}

// Event is e as one server-sent event in format f, to end a stream that
// has started: Anthropic's "event: error", OpenAI's data line with an
// error object (which the OpenAI SDKs raise as an error).
func (e *Error) Event(f Format) []byte { return streamError(f, e) }

func streamError(f Format, e *Error) []byte {
	name := ""
	if f == FormatAnthropic {
		name = "error"
	}
	return sse.AppendEvent(nil, name, e.Body(f))
}

func ceilSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// Window is one rate-limit window's state as the client sees it.
type Window struct {
	Limit     int64
	Remaining int64
	Reset     time.Duration // until the window has room again (or is full)
}

// RateLimit describes the caller's position against a rate limit; the
// limits stage fills it, SetHeaders renders it.
type RateLimit struct {
	Requests *Window
	Tokens   *Window
	// Now is the clock for Anthropic's absolute reset times (zero: now).
	Now time.Time
}

// SetHeaders writes the provider-style rate-limit headers: OpenAI's
// x-ratelimit-{limit,remaining,reset}-{requests,tokens} always (reset as a
// duration such as "1s" or "6m0s"), and for Anthropic clients also
// anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset} (reset as
// an RFC 3339 time).
func (rl *RateLimit) SetHeaders(h http.Header, f Format) {
	now := rl.Now
	if now.IsZero() {
		now = time.Now()
	}
	// One backing array for every value: a header's value is one element.
	vals := make([]string, 0, 2*len(rateLimitKeys[0]))
	set := func(k *[6]string, w *Window) {
		if w == nil {
			return
		}
		n := 3
		if f == FormatAnthropic {
			n = 6
		}
		base := len(vals)
		limit, remaining := strconv.FormatInt(w.Limit, 10), strconv.FormatInt(max(w.Remaining, 0), 10)
		vals = append(vals, limit, remaining, w.Reset.Round(time.Millisecond).String())
		if n == 6 {
			vals = append(vals, limit, remaining, now.Add(w.Reset).UTC().Format(time.RFC3339))
		}
		for i := range n {
			h[k[i]] = vals[base+i : base+i+1 : base+i+1]
		}
	}
	set(&rateLimitKeys[0], rl.Requests)
	set(&rateLimitKeys[1], rl.Tokens)
}

// rateLimitKeys are SetHeaders' header names in canonical form (requests,
// then tokens): x-ratelimit-{limit,remaining,reset}-NAME, then
// anthropic-ratelimit-NAME-{limit,remaining,reset}.
var rateLimitKeys = func() (k [2][6]string) {
	for i, name := range [2]string{"requests", "tokens"} {
		for j, v := range [3]string{"limit", "remaining", "reset"} {
			k[i][j] = http.CanonicalHeaderKey("x-ratelimit-" + v + "-" + name)
			k[i][3+j] = http.CanonicalHeaderKey("anthropic-ratelimit-" + name + "-" + v)
		}
	}
	return k
}()

// RateLimited is the 429 for a request over a rate limit: Retry-After is
// retryAfter (at least one second), the x-ratelimit-* headers describe
// rl, and the code is rate_limit_exceeded.
//
// A request that needs more than the limit allows (final) can never pass:
// it gets no Retry-After and is Final.
func RateLimited(f Format, msg string, retryAfter time.Duration, final bool, rl *RateLimit) *Error {
	e := &Error{Status: http.StatusTooManyRequests, Message: msg, Code: "rate_limit_exceeded", RetryAfter: max(retryAfter, time.Second), Final: final, Header: http.Header{}}
	if final {
		e.RetryAfter = 0
	}
	if rl != nil {
		rl.SetHeaders(e.Header, f)
	}
	return e
}
