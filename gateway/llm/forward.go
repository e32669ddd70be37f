package llm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// Route is where a model service sends a call: a weighted split over
// Destinations and, when the chosen one fails with 429, a 5xx, a connect
// failure or a timeout, the Fallbacks in order (the split is not
// re-applied; a destination already tried is skipped).
type Route struct {
	Destinations []Destination
	Fallbacks    []Destination
	// Timeout bounds each attempt: until the whole response for a
	// non-streamed call, until the response headers and then between two
	// events for a stream. Zero means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout is an attempt's bound when the route sets none.
const DefaultTimeout = 120 * time.Second

// Attempt is one try of a destination, for the usage row's routing record.
type Attempt struct {
	Service   string        `json:"service"`
	Provider  Provider      `json:"provider"`
	Model     string        `json:"model"`
	Status    int           `json:"status"` // 0: no HTTP response
	LatencyMS float64       `json:"latency_ms"`
	Latency   time.Duration `json:"-"`
	Error     string        `json:"error,omitempty"`
}

// Call is one forwarded request.
type Call struct {
	Request *Request
	Route   Route
	// UserID is the stable pseudonymous id of the human the call is for;
	// it replaces whatever user id the client sent.
	UserID string
	// Header and Query are the client's request headers and query (a few
	// pass to same-format destinations; credentials never do).
	Header http.Header
	Query  url.Values
	Hooks  Hooks
}

// Hooks let the pipeline see the call as it happens. Each may be nil.
type Hooks struct {
	// BeforeForward sees each attempt's upstream request before it is sent;
	// an error refuses the call (rendered to the client, no fallback).
	BeforeForward func(ctx context.Context, out *Outbound) error
	// OnEvent sees every stream event before it is written to the client:
	// ev.Data is the destination's event, ev.Out what the client will get
	// (client format; may be empty when an event has no counterpart). An
	// error ends the stream with an in-stream error.
	OnEvent func(ctx context.Context, ev *Event) error
	// OnResponse sees a non-streamed success body in the client's format
	// before it is written; it may return a replacement or an error
	// (rendered instead of the body).
	OnResponse func(ctx context.Context, body []byte) ([]byte, error)
	// After is called once the call is over (the last byte written or the
	// client gone) with its result.
	After func(ctx context.Context, res *Result)
}

// Event is one stream event of the destination and what it becomes for
// the client. The slices are valid only during the hook.
type Event struct {
	Name string // the destination's event type ("" for OpenAI chat chunks)
	Data []byte // the destination's event data
	Out  []byte // the bytes the client will receive (server-sent events)
}

// Result is what happened to a call, for metering and audit.
type Result struct {
	// Destination is the destination that answered (nil if none did).
	Destination *Destination
	Attempts    []Attempt
	// Status is the HTTP status sent to the client (499 when the client
	// went away before an answer).
	Status    int
	Streaming bool
	// Local is true when the gateway answered itself (count_tokens for an
	// OpenAI-style destination: the request's estimate).
	Local bool
	Usage Usage
	// ResponseID and ResponseModel are the provider's; FinishReasons are in
	// the destination's vocabulary (stop, length, tool_calls, end_turn,
	// max_tokens, tool_use, completed, incomplete, ...).
	ResponseID        string
	ResponseModel     string
	FinishReasons     []string
	UpstreamRequestID string
	Start             time.Time
	// TTFT is the time from Start to the first event written to the client
	// (streams only); Latency the time to the last byte.
	TTFT    time.Duration
	Latency time.Duration
	// Broken is true for a stream that ended early (upstream cut, timeout,
	// oversized event, client gone); Usage then counts what was delivered.
	Broken bool
	// Err is why the call failed or the stream broke; nil on success.
	Err error
}

// Forwarder sends calls upstream. Its zero value is not usable: set
// Client (NewForwarder gives a tuned one).
type Forwarder struct {
	Client *http.Client
	// MaxResponseBody bounds a non-streamed upstream body; MaxEvent one
	// stream event. Zero means DefaultMaxResponseBody, DefaultMaxEvent.
	MaxResponseBody int64
	MaxEvent        int
	// IntN picks the weighted destination (rand.IntN if nil).
	IntN func(n int) int
	// Now is the clock for translated responses' created times (time.Now
	// if nil).
	Now func() time.Time
}

const (
	DefaultMaxResponseBody int64 = 128 << 20
	DefaultMaxEvent              = 16 << 20
)

// NewForwarder returns a Forwarder with a pooled HTTP client sized for a
// gateway (many concurrent calls to few provider hosts).
func NewForwarder() *Forwarder {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 1024
	tr.MaxIdleConnsPerHost = 256
	tr.IdleConnTimeout = 90 * time.Second
	tr.ResponseHeaderTimeout = 0 // the route's timeout governs
	return &Forwarder{Client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (f *Forwarder) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// Plan returns the destinations a call tries, in order: one picked from
// r.Destinations by weight, then r.Fallbacks; destinations that cannot
// serve endpoint e, and repeats, are left out.
func (r *Route) Plan(e Endpoint, intN func(int) int) []*Destination {
	if intN == nil {
		intN = rand.IntN
	}
	var plan []*Destination
	total := 0
	for i := range r.Destinations {
		if d := &r.Destinations[i]; d.Provider.Serves(e) && d.Weight > 0 {
			total += d.Weight
		}
	}
	if total > 0 {
		n := intN(total)
		for i := range r.Destinations {
			d := &r.Destinations[i]
			if !d.Provider.Serves(e) || d.Weight <= 0 {
				continue
			}
			if n < d.Weight {
				plan = append(plan, d)
				break
			}
			n -= d.Weight
		}
	}
	for i := range r.Fallbacks {
		d := &r.Fallbacks[i]
		if !d.Provider.Serves(e) {
			continue
		}
		dup := false
		for _, p := range plan {
			if p.Service == d.Service && p.Model == d.Model {
				dup = true
				break
			}
		}
		if !dup {
			plan = append(plan, d)
		}
	}
	return plan
}

// Forward runs the call: it tries the route's destinations until one
// answers, relays the answer to w in the client's format (translating and
// metering it), and returns what happened. Every error is rendered to the
// client here; the caller only records the Result. ctx should be the
// client request's context: its cancellation cancels the upstream call.
func (f *Forwarder) Forward(ctx context.Context, w http.ResponseWriter, c *Call) *Result {
	req := c.Request
	res := &Result{Start: time.Now(), Streaming: req.Stream}
	defer func() {
		res.Latency = time.Since(res.Start)
		if c.Hooks.After != nil {
			c.Hooks.After(ctx, res)
		}
	}()
	cf := req.Endpoint.Format()
	fail := func(err error) {
		e := AsError(err)
		res.Status, res.Err = e.Status, err
		WriteError(w, cf, e)
	}
	plan := c.Route.Plan(req.Endpoint, f.IntN)
	if len(plan) == 0 {
		fail(InvalidRequest("model", fmt.Sprintf("model service %q has no destination that serves the %s API", req.Model, req.Endpoint)))
		return res
	}
	timeout := c.Route.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	now := f.now()
	for i, d := range plan {
		out, err := prepare(req, d, c.UserID, c.Header, c.Query, now)
		if err != nil {
			fail(err)
			return res
		}
		if out.localReply != nil {
			res.Local, res.Destination = true, d
			res.Usage = Usage{InputTokens: req.InputTokens, TotalTokens: req.InputTokens, Estimated: true}
			res.Status = http.StatusOK
			writeJSON(w, http.StatusOK, out.localReply)
			return res
		}
		if c.Hooks.BeforeForward != nil {
			if err := c.Hooks.BeforeForward(ctx, out); err != nil {
				fail(err)
				return res
			}
		}
		last := i == len(plan)-1
		a := f.attempt(ctx, w, c, out, timeout, res)
		res.Attempts = append(res.Attempts, a.record)
		if a.retry && !last && ctx.Err() == nil {
			continue
		}
		if !a.relayed {
			res.Destination = nil
			if ctx.Err() != nil {
				res.Status, res.Err = 499, ctx.Err()
				return res
			}
			fail(a.err)
		}
		return res
	}
	return res
}

type attemptResult struct {
	record  Attempt
	retry   bool  // a failure worth a fallback (429, 5xx, connect, timeout)
	relayed bool  // the answer went to the client (no fallback possible)
	err     error // the client-facing error when not relayed
}

// attempt sends one upstream request and, when it succeeds (or fails in a
// way that is not worth a fallback, or is the last), relays the answer.
func (f *Forwarder) attempt(ctx context.Context, w http.ResponseWriter, c *Call, out *Outbound, timeout time.Duration, res *Result) attemptResult {
	d := out.Destination
	ar := attemptResult{record: Attempt{Service: d.Service, Provider: d.Provider, Model: d.Model}}
	start := time.Now()
	defer func() {
		ar.record.Latency = time.Since(start)
		ar.record.LatencyMS = float64(ar.record.Latency.Microseconds()) / 1000
	}()

	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() { timedOut.Store(true); cancel() })
	defer timer.Stop()

	hreq, err := http.NewRequestWithContext(actx, http.MethodPost, out.URL, bytes.NewReader(out.Body))
	if err != nil {
		ar.record.Error = "bad destination URL"
		ar.err = &Error{Status: http.StatusBadGateway, Message: "the model service's destination is misconfigured"}
		return ar
	}
	hreq.Header = out.Header
	hreq.ContentLength = int64(len(out.Body))
	resp, err := f.Client.Do(hreq)
	if err != nil {
		ar.retry = true
		switch {
		case timedOut.Load():
			ar.record.Error = "timeout"
			ar.err = &Error{Status: http.StatusGatewayTimeout, Message: "the model provider did not answer in time"}
		case ctx.Err() != nil:
			ar.record.Error = "client canceled"
			ar.retry = false
			ar.err = ctx.Err()
		default:
			ar.record.Error = connectError(err)
			ar.err = &Error{Status: http.StatusBadGateway, Message: "the model provider could not be reached"}
		}
		return ar
	}
	defer resp.Body.Close()
	ar.record.Status = resp.StatusCode
	res.UpstreamRequestID = firstHeader(resp.Header, "X-Request-Id", "Request-Id")

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := readBounded(resp.Body, 1<<20)
		msg := upstreamErrorMessage(body)
		ar.record.Error = msg
		if msg == "" {
			ar.record.Error = http.StatusText(resp.StatusCode)
		}
		ar.retry = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		ar.err = upstreamStatusError(resp, msg)
		return ar
	}

	ar.relayed = true
	res.Destination = d
	if c.Request.Stream {
		if ok := f.relayStream(ctx, w, c, out, resp, timer, timeout, &timedOut, res, &ar); !ok {
			ar.relayed = false
		}
		return ar
	}
	f.relayBody(ctx, w, c, out, resp, res, &ar)
	return ar
}

func connectError(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "connect timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return "connect failed: " + oe.Op
	}
	return "transport error"
}

func firstHeader(h http.Header, names ...string) string {
	for _, n := range names {
		if v := h.Get(n); v != "" {
			return v
		}
	}
	return ""
}

// upstreamStatusError maps a provider's error status to the client's:
// the client's own mistakes (400, 404, 413, 422) keep their status; the
// provider refusing the gateway's credential is the gateway's problem
// (502); 429 keeps Retry-After; other 5xx are 502 (503 and 529 stay).
func upstreamStatusError(resp *http.Response, msg string) *Error {
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	switch s := resp.StatusCode; {
	case s == 401 || s == 403 || s == 402:
		return &Error{Status: http.StatusBadGateway, Message: "the model provider refused the gateway's credential for this model service"}
	case s == 429:
		// the provider's text names the gateway's account: it stays in the attempt record
		e := &Error{Status: 429, Message: "the model provider is rate limiting this model service; retry later", Code: "rate_limit_exceeded"}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if n, err := strconv.Atoi(ra); err == nil && n > 0 {
				e.RetryAfter = time.Duration(n) * time.Second
			}
		}
		return e
	case s == 503 || s == 529:
		return &Error{Status: s, Message: "the model provider is overloaded: " + msg}
	case s >= 500:
		return &Error{Status: http.StatusBadGateway, Message: "the model provider failed: " + msg}
	case s >= 400:
		return &Error{Status: s, Message: "upstream: " + msg}
	}
	return &Error{Status: http.StatusBadGateway, Message: fmt.Sprintf("the model provider answered with status %d", resp.StatusCode)}
}

func readBounded(r io.Reader, max int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, errTooLarge
	}
	return buf.Bytes(), nil
}

var errTooLarge = errors.New("upstream response too large")

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// relayBody relays a non-streamed success.
func (f *Forwarder) relayBody(ctx context.Context, w http.ResponseWriter, c *Call, out *Outbound, resp *http.Response, res *Result, ar *attemptResult) {
	req := c.Request
	cf := req.Endpoint.Format()
	max := f.MaxResponseBody
	if max <= 0 {
		max = DefaultMaxResponseBody
	}
	body, err := readBounded(resp.Body, max)
	if err != nil || !framedObject(body) {
		ar.relayed = false
		ar.retry = err != nil && !errors.Is(err, errTooLarge) // a cut connection is worth a fallback
		ar.record.Error = "invalid response body"
		ar.err = &Error{Status: http.StatusBadGateway, Message: "the model provider sent an invalid response"}
		if errors.Is(err, errTooLarge) {
			ar.record.Error = "response too large"
			ar.err = &Error{Status: http.StatusBadGateway, Message: "the model provider's response exceeds the gateway's limit"}
		}
		return
	}
	m := newMeter(out.format, out.endpoint)
	m.body(body)
	res.Usage = m.result(req.InputTokens)
	res.ResponseID, res.ResponseModel, res.FinishReasons = m.id, m.model, m.finish
	if out.translate != nil {
		if body, err = out.translate(body); err != nil {
			ar.relayed = false
			ar.record.Error = "untranslatable response"
			ar.err = &Error{Status: http.StatusBadGateway, Message: "the model provider's response could not be translated"}
			return
		}
	}
	if c.Hooks.OnResponse != nil {
		nb, err := c.Hooks.OnResponse(ctx, body)
		if err != nil {
			e := AsError(err)
			res.Status, res.Err = e.Status, err
			WriteError(w, cf, e)
			return
		}
		body = nb
	}
	res.Status = http.StatusOK
	writeJSON(w, http.StatusOK, body)
}

// terminal reports whether an upstream event ends its stream.
func terminal(f Format, e Endpoint, name string, data []byte) bool {
	switch {
	case f == FormatAnthropic:
		return name == "message_stop"
	case e == Responses:
		switch name {
		case "response.completed", "response.failed", "response.incomplete", "error":
			return true
		}
		if name == "" {
			tv, _ := member(data, "type")
			switch t, _ := stringValue(tv); t {
			case "response.completed", "response.failed", "response.incomplete", "error":
				return true
			}
		}
		return false
	}
	return string(data) == "[DONE]"
}

// isUsageChunk reports whether an OpenAI chat chunk is the usage chunk
// (no choices, a usage object).
func isUsageChunk(data []byte) bool {
	ch, ok := member(data, "choices")
	if !ok || string(trimWS(ch)) != "[]" {
		return false
	}
	u, ok := member(data, "usage")
	return ok && kindOf(u) == '{'
}

// relayStream relays a stream event by event. It reads the first event
// before answering the client, so that a stream that fails at once (an
// error event, a cut) still allows a fallback; it returns false then,
// with ar set for the next attempt.
func (f *Forwarder) relayStream(ctx context.Context, w http.ResponseWriter, c *Call, out *Outbound, resp *http.Response, timer *time.Timer, timeout time.Duration, timedOut *atomic.Bool, res *Result, ar *attemptResult) bool {
	req := c.Request
	cf := req.Endpoint.Format()
	maxEv := f.MaxEvent
	if maxEv <= 0 {
		maxEv = DefaultMaxEvent
	}
	m := newMeter(out.format, out.endpoint)
	defer func() {
		res.Usage = m.result(req.InputTokens)
		res.ResponseID, res.ResponseModel, res.FinishReasons = m.id, m.model, m.finish
	}()
	ct := resp.Header.Get("Content-Type")
	if len(ct) < 17 || ct[:17] != "text/event-stream" {
		ar.record.Error = "not a stream: " + ct
		ar.retry = true
		ar.err = &Error{Status: http.StatusBadGateway, Message: "the model provider did not stream its answer"}
		return false
	}
	rd := newSSEReader(resp.Body, maxEv)
	defer rd.release()
	flusher, _ := w.(http.Flusher)
	started := false
	var buf []byte
	var sawTerminal bool
	streamErr := func(e *Error) {
		res.Broken, res.Err = true, e
		_, _ = w.Write(streamError(cf, e))
		if flusher != nil {
			flusher.Flush()
		}
	}
	for {
		err := rd.next()
		if err != nil {
			var e *Error
			switch {
			case err == io.EOF && sawTerminal:
				return true
			case err == io.EOF && out.stream != nil:
				buf = out.stream.end(buf[:0])
				if out.stream.done() {
					if started {
						_, _ = w.Write(buf)
						if flusher != nil {
							flusher.Flush()
						}
					}
					return true
				}
				e = &Error{Status: http.StatusBadGateway, Message: "the model provider's stream ended early"}
			case err == io.EOF || err == io.ErrUnexpectedEOF:
				e = &Error{Status: http.StatusBadGateway, Message: "the model provider's stream ended early"}
			case errors.Is(err, errEventTooLarge):
				e = &Error{Status: http.StatusBadGateway, Message: "a stream event exceeds the gateway's limit"}
			case timedOut.Load():
				e = &Error{Status: http.StatusGatewayTimeout, Message: "the model provider stopped sending"}
			case ctx.Err() != nil:
				res.Broken, res.Err = true, ctx.Err()
				if !started {
					res.Status = 499
				}
				return true
			default:
				e = &Error{Status: http.StatusBadGateway, Message: "the model provider's stream failed"}
			}
			if !started {
				ar.record.Error = e.Message
				ar.retry = true
				ar.err = e
				return false
			}
			streamErr(e)
			return true
		}
		timer.Reset(timeout)
		name, data := string(rd.name), rd.data
		m.event(name, data)
		if terminal(out.format, out.endpoint, name, data) {
			sawTerminal = true
		}
		// the client's bytes for this event
		var evOut []byte
		if out.stream != nil {
			buf, err = out.stream.event(buf[:0], name, data)
			if err != nil {
				e := AsError(err)
				if _, ok := err.(*Error); !ok {
					e = &Error{Status: http.StatusBadGateway, Message: "the model provider sent an invalid stream event"}
				}
				if !started {
					ar.record.Error = e.Message
					ar.retry = e.Status == 429 || e.Status >= 500
					ar.err = e
					return false
				}
				streamErr(e)
				return true
			}
			evOut = buf
			if out.stream.done() {
				sawTerminal = true
			}
		} else {
			if out.dropUsage && isUsageChunk(data) {
				continue
			}
			if !started && isErrorEvent(out.format, name, data) {
				e := upstreamStreamError(data)
				ar.record.Error = e.Message
				ar.retry = e.Status == 429 || e.Status >= 500
				ar.err = e
				return false
			}
			evOut = rd.raw
		}
		if c.Hooks.OnEvent != nil {
			if err := c.Hooks.OnEvent(ctx, &Event{Name: name, Data: data, Out: evOut}); err != nil {
				e := AsError(err)
				if !started {
					res.Destination = out.Destination
					ar.relayed = true
					res.Status, res.Err = e.Status, err
					WriteError(w, cf, e)
					return true
				}
				streamErr(e)
				return true
			}
		}
		if len(evOut) == 0 {
			continue
		}
		if !started {
			started = true
			h := w.Header()
			h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
			h["Cache-Control"] = []string{"no-cache"}
			h["X-Accel-Buffering"] = []string{"no"}
			w.WriteHeader(http.StatusOK)
			res.Status = http.StatusOK
		}
		if _, err := w.Write(evOut); err != nil {
			res.Broken, res.Err = true, err
			return true
		}
		if flusher != nil {
			flusher.Flush()
		}
		if res.TTFT == 0 {
			res.TTFT = time.Since(res.Start)
		}
	}
}

func isErrorEvent(f Format, name string, data []byte) bool {
	if f == FormatAnthropic {
		return name == "error"
	}
	_, ok := member(data, "error")
	if ok {
		tv, _ := member(data, "type")
		t, _ := stringValue(tv)
		return t == "" || t == "error"
	}
	return false
}
