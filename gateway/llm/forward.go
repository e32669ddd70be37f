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

	"github.com/mandatehq/mandate/gateway/internal/bodypool"
	"github.com/mandatehq/mandate/gateway/internal/hop"
	"github.com/mandatehq/mandate/gateway/internal/sse"
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
	// (client format; may be empty when an event has no counterpart). It
	// may replace ev.Out (empty: nothing is written for the event). An
	// error ends the stream with an in-stream error, or, before the first
	// event went out, refuses the call.
	OnEvent func(ctx context.Context, ev *Event) error
	// OnResponse sees a non-streamed success body in the client's format
	// before it is written; it may return a replacement or an error
	// (rendered instead of the body).
	OnResponse func(ctx context.Context, body []byte) ([]byte, error)
	// BeforeAnswer is called once, before the first byte of the answer
	// goes to the client (res.Status is the status about to be sent; for a
	// non-streamed answer res.Usage is final). An error means: answer
	// nothing; Relay returns it (Forward renders it).
	BeforeAnswer func(ctx context.Context, res *Result) error
	// After is called once the call is over (the last byte written or the
	// client gone) with its result (Forward only).
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
	// BytesOut is the size of the answer's body as sent to the client
	// (set before BeforeAnswer for a non-streamed answer; a stream's
	// grows as it is relayed).
	BytesOut int64
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
	// own is the client NewForwarder made: while Client is still it, a
	// request goes straight to its transport (send).
	own *http.Client
	// bodies are the buffers non-streamed answers are read into, back
	// once the answer went to the client (Reply.Close).
	bodies bodypool.Pool
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
	cl := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &Forwarder{Client: cl, own: cl}
}

// send sends one upstream request (gateway/internal/hop): with the client
// NewForwarder made (redirects never followed, no cookie jar, no overall
// timeout) straight to its transport; any other client goes through
// Client.Do.
func (f *Forwarder) send(req *http.Request) (*http.Response, error) {
	return hop.Send(f.Client, f.Client == f.own, req)
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
// answers (Open), relays the answer to w in the client's format,
// translating and metering it (Reply.Relay), and returns what happened.
// Every error is rendered to the client here; the caller only records the
// Result. ctx should be the client request's context: its cancellation
// cancels the upstream call.
func (f *Forwarder) Forward(ctx context.Context, w http.ResponseWriter, c *Call) *Result {
	rep := f.Open(ctx, c)
	res := rep.Result
	if err := rep.Relay(ctx, w); err != nil && res.Status != statusClientGone {
		e := AsError(err)
		res.Status, res.Err = e.Status, err
		WriteError(w, c.Request.Endpoint.Format(), e)
	}
	res.Latency = time.Since(res.Start)
	if c.Hooks.After != nil {
		c.Hooks.After(ctx, res)
	}
	return res
}

// statusClientGone is the Result.Status of a call whose client went away
// before it was answered (nginx's 499).
const statusClientGone = 499

// Reply is a call's answer as Open obtained it, before anything went to
// the client: a destination's non-streamed answer in the client's format,
// or its stream with the first event for the client read (so a stream that
// fails at once could still fall back), or the reason there is none (Err).
// Relay sends it; Close releases it when it is not relayed.
type Reply struct {
	// Result is what happened so far: the attempts, the destination that
	// answered, the usage of a non-streamed answer. Relay completes it.
	Result *Result
	// Err is set when there is no answer to relay: an *Error for the
	// client (every destination failed, a hook refused the call), or the
	// context's error when the client went away (Result.Status 499).
	Err error

	c      *Call
	body   []byte         // a non-streamed answer (client format)
	stream *streamRelay   // a stream, its first client event pending
	resp   *http.Response // the answering upstream response (streams)
	cancel context.CancelFunc
	timer  *time.Timer
	closed bool
	// pooled is the Forwarder's buffer body was read into, returned by
	// Close.
	pooled *[]byte
	f      *Forwarder
}

// Open tries the route's destinations until one answers: the weighted
// pick, then the fallbacks, moving on after a 429, a 5xx, a connect
// failure or a timeout. Nothing is written to the client. The Reply must
// be relayed or closed.
func (f *Forwarder) Open(ctx context.Context, c *Call) *Reply {
	req := c.Request
	v := &struct { // one allocation for the reply and its result
		rep Reply
		res Result
	}{res: Result{Start: time.Now(), Streaming: req.Stream}}
	rep, res := &v.rep, &v.res
	rep.c, rep.Result, rep.f = c, res, f
	fail := func(err error) *Reply {
		rep.Err, res.Err = err, err
		return rep
	}
	plan := c.Route.Plan(req.Endpoint, f.IntN)
	if len(plan) == 0 {
		return fail(InvalidRequest("model", fmt.Sprintf("model service %q has no destination that serves the %s API", req.Model, req.Endpoint)))
	}
	timeout := c.Route.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	now := f.now()
	for i, d := range plan {
		out, err := prepare(req, d, c.UserID, c.Header, c.Query, now)
		if err != nil {
			return fail(err)
		}
		if out.localReply != nil {
			res.Local, res.Destination = true, d
			res.Usage = Usage{InputTokens: req.InputTokens, TotalTokens: req.InputTokens, Estimated: true}
			rep.body = out.localReply
			return rep
		}
		if c.Hooks.BeforeForward != nil {
			if err := c.Hooks.BeforeForward(ctx, out); err != nil {
				return fail(err)
			}
		}
		last := i == len(plan)-1
		a := f.attempt(ctx, rep, out, timeout)
		res.Attempts = append(res.Attempts, a.record)
		if a.answered {
			return rep
		}
		if a.retry && !last && ctx.Err() == nil {
			continue
		}
		res.Destination = nil
		if ctx.Err() != nil {
			res.Status = statusClientGone
			return fail(ctx.Err())
		}
		return fail(a.err)
	}
	return rep
}

// Relay sends the answer to w. Before the first byte it calls
// Hooks.BeforeAnswer; an error from that hook, from OnResponse or rep.Err
// is returned with nothing written (the caller renders it). Once the
// answer has started, failures end the stream in band (Result.Broken,
// Result.Err) and Relay returns nil. Relay closes the Reply.
func (rep *Reply) Relay(ctx context.Context, w http.ResponseWriter) error {
	defer rep.Close()
	res, c := rep.Result, rep.c
	if rep.Err != nil {
		return rep.Err
	}
	if rep.stream != nil {
		return rep.stream.relay(ctx, w, res)
	}
	body := rep.body
	if c.Hooks.OnResponse != nil && !res.Local {
		nb, err := c.Hooks.OnResponse(ctx, body)
		if err != nil {
			res.Err = err
			return err
		}
		body = nb
	}
	res.Status, res.BytesOut = http.StatusOK, int64(len(body))
	if c.Hooks.BeforeAnswer != nil {
		if err := c.Hooks.BeforeAnswer(ctx, res); err != nil {
			res.Status, res.Err = 0, err
			return err
		}
	}
	writeJSON(w, http.StatusOK, body)
	res.Latency = time.Since(res.Start)
	return nil
}

// Close releases the upstream response of a Reply that is not relayed (a
// relayed one is closed by Relay). It may be called more than once.
func (rep *Reply) Close() {
	if rep.closed {
		return
	}
	rep.closed = true
	if rep.stream != nil {
		rep.stream.finish(rep.Result)
	}
	if rep.timer != nil {
		rep.timer.Stop()
	}
	if rep.cancel != nil {
		rep.cancel()
	}
	if rep.resp != nil {
		rep.resp.Body.Close()
	}
	if b := rep.pooled; b != nil {
		rep.pooled, rep.body = nil, nil
		rep.f.bodies.Put(b)
	}
}

type attemptResult struct {
	record Attempt
	retry  bool // a failure worth a fallback (429, 5xx, connect, timeout)
	// answered: the destination answered and the Reply holds the answer
	// (or why there is none: a hook refused, the client left); no
	// fallback is possible.
	answered bool
	err      error // the client-facing error when not answered
}

// attempt sends one upstream request and reads its answer up to what the
// client would get first: the whole body, or a stream's first event.
func (f *Forwarder) attempt(ctx context.Context, rep *Reply, out *Outbound, timeout time.Duration) (ar attemptResult) {
	c, res := rep.c, rep.Result
	d := out.Destination
	ar.record = Attempt{Service: d.Service, Provider: d.Provider, Model: d.Model}
	start := time.Now()
	defer func() {
		ar.record.Latency = time.Since(start)
		ar.record.LatencyMS = float64(ar.record.Latency.Microseconds()) / 1000
	}()

	actx, cancel := context.WithCancel(ctx)
	timedOut := new(atomic.Bool)
	timer := time.AfterFunc(timeout, func() { timedOut.Store(true); cancel() })
	keep := false // the stream stays open for Relay
	defer func() {
		if !keep {
			timer.Stop()
			cancel()
		}
	}()

	hreq, err := http.NewRequestWithContext(actx, http.MethodPost, out.URL, bytes.NewReader(out.Body))
	if err != nil {
		ar.record.Error = "bad destination URL"
		ar.err = &Error{Status: http.StatusBadGateway, Message: "the model service's destination is misconfigured"}
		return ar
	}
	hreq.Header = out.Header
	hreq.ContentLength = int64(len(out.Body))
	resp, err := f.send(hreq)
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
	ar.record.Status = resp.StatusCode
	res.UpstreamRequestID = firstHeader(resp.Header, "X-Request-Id", "Request-Id")

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		body, _ := readBounded(resp.Body, 1<<20, resp.ContentLength, nil)
		msg := upstreamErrorMessage(body)
		ar.record.Error = msg
		if msg == "" {
			ar.record.Error = http.StatusText(resp.StatusCode)
		}
		ar.retry = resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
		ar.err = upstreamStatusError(resp, msg)
		return ar
	}

	if !c.Request.Stream {
		defer resp.Body.Close()
		f.readBody(rep, out, resp, &ar)
		if ar.answered {
			res.Destination = d
		}
		return ar
	}
	s := f.newStreamRelay(ctx, c, out, resp, timer, timeout, timedOut)
	ok := s.open(rep, &ar)
	if !ok {
		s.finish(res)
		resp.Body.Close()
		return ar
	}
	ar.answered = true
	res.Destination = d
	if rep.Err != nil { // a hook refused the call, or the client left
		s.finish(res)
		resp.Body.Close()
		return ar
	}
	keep = true
	rep.stream, rep.resp, rep.cancel, rep.timer = s, resp, cancel, timer
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

// readBounded reads r to its end, at most max bytes, appending to dst
// (nil: a new buffer); size, when it is known (a Content-Length, -1 if
// not), sizes the buffer once.
func readBounded(r io.Reader, max, size int64, dst []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst[:0])
	if size > 0 && size <= max {
		buf.Grow(int(size) + bytes.MinRead) // room for the read that sees EOF
	}
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
	vals := []string{"application/json", strconv.Itoa(len(body))} // one array for both values
	h["Content-Type"], h["Content-Length"] = vals[:1:1], vals[1:2:2]
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// readBody reads, meters and translates a non-streamed success into
// rep.body (ar.answered), or says why the attempt failed.
func (f *Forwarder) readBody(rep *Reply, out *Outbound, resp *http.Response, ar *attemptResult) {
	req, res := rep.c.Request, rep.Result
	max := f.MaxResponseBody
	if max <= 0 {
		max = DefaultMaxResponseBody
	}
	pooled := f.bodies.Get()
	body, err := readBounded(resp.Body, max, resp.ContentLength, *pooled)
	if len(body) > 0 {
		*pooled = body[:0] // the buffer as grown, for the next answer
	}
	if err != nil || !framedObject(body) {
		f.bodies.Put(pooled)
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
	m.searches = req.answerSearches(out.format)
	m.body(body)
	res.Usage = m.result(req.InputTokens)
	res.ResponseID, res.ResponseModel, res.FinishReasons = m.id, m.model, m.finish
	if out.translate != nil {
		body, err = out.translate(body) // a new body: the read buffer is done with
		f.bodies.Put(pooled)
		if err != nil {
			ar.record.Error = "untranslatable response"
			ar.err = &Error{Status: http.StatusBadGateway, Message: "the model provider's response could not be translated"}
			return
		}
	} else {
		rep.pooled = pooled
	}
	ar.answered = true
	rep.body = body
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

// streamRelay follows one upstream stream: Open reads it up to the first
// event the client gets, Relay writes that and the rest, event by event.
type streamRelay struct {
	ctx      context.Context // the client's
	c        *Call
	out      *Outbound
	cf       Format
	timer    *time.Timer
	timeout  time.Duration
	timedOut *atomic.Bool
	rd       *sse.Reader
	m        *meter
	buf      []byte
	// sawTerminal: the destination's terminal event came; started: the
	// client's answer has begun; ended: the stream is complete (pending
	// holds its last bytes, if any); pending: the client's first bytes,
	// read but not written.
	sawTerminal, started, ended, finished bool
	pending                               []byte
	// upstreamErr is the error event that ended the destination's stream
	// (relayed to the client as it came; the stream is broken).
	upstreamErr *Error
	ev          Event // OnEvent's argument, reused
}

func (f *Forwarder) newStreamRelay(ctx context.Context, c *Call, out *Outbound, resp *http.Response, timer *time.Timer, timeout time.Duration, timedOut *atomic.Bool) *streamRelay {
	maxEv := f.MaxEvent
	if maxEv <= 0 {
		maxEv = DefaultMaxEvent
	}
	s := &streamRelay{ctx: ctx, c: c, out: out, cf: c.Request.Endpoint.Format(), timer: timer, timeout: timeout,
		timedOut: timedOut, m: newMeter(out.format, out.endpoint)}
	s.m.searches = c.Request.answerSearches(out.format)
	if ct := resp.Header.Get("Content-Type"); len(ct) >= 17 && ct[:17] == "text/event-stream" {
		s.rd = sse.NewReader(resp.Body, maxEv)
	}
	return s
}

// finish records the stream's usage and metadata in res and releases the
// reader.
func (s *streamRelay) finish(res *Result) {
	if s.finished {
		return
	}
	s.finished = true
	res.Usage = s.m.result(s.c.Request.InputTokens)
	res.ResponseID, res.ResponseModel, res.FinishReasons = s.m.id, s.m.model, s.m.finish
	if s.rd != nil {
		s.rd.Release()
	}
}

// step is what reading the next upstream event gave.
type step uint8

const (
	stepEvent   step = iota // bytes for the client (possibly none)
	stepEnd                 // the stream is complete (possibly final bytes)
	stepFail                // the upstream failed (retry: worth a fallback before the start)
	stepGone                // the client went away
	stepRefused             // the OnEvent hook refused the event
)

// next reads the destination's next event and returns the client's bytes
// for it (valid until the next call).
func (s *streamRelay) next() (st step, evOut []byte, err error, retry bool) {
	out := s.out
	for {
		rerr := s.rd.NextContent()
		if rerr != nil {
			switch {
			case s.sawTerminal:
				// Complete: whatever ends the connection after the
				// terminal event (the client closing it as soon as it
				// read that event) does not break the stream.
				return stepEnd, nil, nil, false
			case rerr == io.EOF && out.stream != nil:
				s.buf = out.stream.end(s.buf[:0])
				if out.stream.done() {
					return stepEnd, s.buf, nil, false
				}
				return stepFail, nil, &Error{Status: http.StatusBadGateway, Message: "the model provider's stream ended early"}, true
			case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
				return stepFail, nil, &Error{Status: http.StatusBadGateway, Message: "the model provider's stream ended early"}, true
			case errors.Is(rerr, sse.ErrEventTooLarge):
				return stepFail, nil, &Error{Status: http.StatusBadGateway, Message: "a stream event exceeds the gateway's limit"}, true
			case errors.Is(rerr, sse.ErrMalformed):
				return stepFail, nil, &Error{Status: http.StatusBadGateway, Message: "the model provider sent an invalid stream event"}, true
			case s.timedOut.Load():
				return stepFail, nil, &Error{Status: http.StatusGatewayTimeout, Message: "the model provider stopped sending"}, true
			case s.ctx.Err() != nil:
				return stepGone, nil, s.ctx.Err(), false
			}
			return stepFail, nil, &Error{Status: http.StatusBadGateway, Message: "the model provider's stream failed"}, true
		}
		s.timer.Reset(s.timeout)
		name, data := string(s.rd.Name), s.rd.Data
		s.m.event(name, data)
		// An error event ends the destination's stream: a Responses
		// error event is terminal; Anthropic and OpenAI chat close the
		// stream after one (the meter saw a chat error line).
		if terminal(out.format, out.endpoint, name, data) || (out.format == FormatAnthropic && name == "error") {
			s.sawTerminal = true
			if isErrorEvent(out.format, name, data) {
				s.upstreamErr = upstreamStreamError(data)
			}
		} else if s.m.streamErr != nil && s.upstreamErr == nil {
			s.sawTerminal, s.upstreamErr = true, s.m.streamErr
		}
		if out.stream != nil {
			if out.stream.done() {
				continue // metered, but the client's stream has ended: nothing follows its end
			}
			var terr error
			s.buf, terr = out.stream.event(s.buf[:0], name, data)
			if terr != nil {
				e, ok := terr.(*Error)
				if !ok {
					e = &Error{Status: http.StatusBadGateway, Message: "the model provider sent an invalid stream event"}
				}
				return stepFail, nil, e, e.Status == 429 || e.Status >= 500
			}
			evOut = s.buf
			if out.stream.done() {
				s.sawTerminal = true
			}
		} else {
			if out.dropUsage && isUsageChunk(data) {
				continue
			}
			if !s.started && isErrorEvent(out.format, name, data) {
				e := upstreamStreamError(data)
				return stepFail, nil, e, e.Status == 429 || e.Status >= 500
			}
			evOut = s.rd.Raw
		}
		if hook := s.c.Hooks.OnEvent; hook != nil {
			ev := &s.ev // one for the stream: the hook's pointer would put a new one on the heap per event
			*ev = Event{Name: name, Data: data, Out: evOut}
			if herr := hook(s.ctx, ev); herr != nil {
				return stepRefused, nil, herr, false
			}
			evOut = ev.Out
		}
		return stepEvent, evOut, nil, false
	}
}

// open reads the stream up to the first bytes the client gets. false: the
// attempt failed before that (ar says why; a fallback may follow); true:
// the destination answered (rep.Err set when a hook refused the call or
// the client left).
func (s *streamRelay) open(rep *Reply, ar *attemptResult) bool {
	res := rep.Result
	fail := func(e *Error, retry bool) bool {
		ar.record.Error, ar.retry, ar.err = e.Message, retry, e
		return false
	}
	if s.rd == nil {
		ar.record.Error = "not a stream"
		ar.retry = true
		ar.err = &Error{Status: http.StatusBadGateway, Message: "the model provider did not stream its answer"}
		return false
	}
	for {
		st, evOut, err, retry := s.next()
		switch st {
		case stepEvent:
			if len(evOut) == 0 {
				continue
			}
			s.pending = evOut
			return true
		case stepEnd:
			s.pending, s.ended = evOut, true
			return true
		case stepFail:
			return fail(err.(*Error), retry)
		case stepGone:
			res.Broken, res.Err, res.Status = true, err, statusClientGone
			rep.Err = err
			return true
		default: // stepRefused
			res.Err = err
			rep.Err = err
			return true
		}
	}
}

// relay writes the stream: the response header (after BeforeAnswer), the
// pending first bytes, then each event as it comes, flushed.
func (s *streamRelay) relay(ctx context.Context, w http.ResponseWriter, res *Result) error {
	res.Status = http.StatusOK
	if hook := s.c.Hooks.BeforeAnswer; hook != nil {
		if err := hook(ctx, res); err != nil {
			res.Status, res.Err = 0, err
			return err
		}
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/event-stream; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache"}
	h["X-Accel-Buffering"] = []string{"no"}
	w.WriteHeader(http.StatusOK)
	s.started = true
	rc := http.NewResponseController(w)
	write := func(b []byte) bool {
		n, err := w.Write(b)
		res.BytesOut += int64(n)
		if err != nil {
			res.Broken, res.Err = true, err
			return false
		}
		_ = rc.Flush()
		if res.TTFT == 0 {
			res.TTFT = time.Since(res.Start)
		}
		return true
	}
	defer func() { res.Latency = time.Since(res.Start) }()
	if len(s.pending) > 0 && !write(s.pending) {
		return nil
	}
	s.pending = nil
	if s.ended {
		_ = rc.Flush()
		return nil
	}
	for {
		st, evOut, err, _ := s.next()
		switch st {
		case stepEvent:
			if len(evOut) > 0 && !write(evOut) {
				return nil
			}
		case stepEnd:
			if len(evOut) > 0 {
				write(evOut)
			}
			if s.upstreamErr != nil {
				res.Broken, res.Err = true, s.upstreamErr
			}
			return nil
		case stepGone:
			res.Broken, res.Err = true, err
			return nil
		default: // stepFail, stepRefused: end the stream with an error event
			e := AsError(err)
			res.Broken, res.Err = true, e
			n, _ := w.Write(streamError(s.cf, e))
			res.BytesOut += int64(n)
			_ = rc.Flush()
			return nil
		}
	}
}

// isErrorEvent reports whether a destination's stream event is an error:
// Anthropic's error event, an OpenAI chat data line with an error object,
// a Responses error event ({"type":"error","code","message"}).
func isErrorEvent(f Format, name string, data []byte) bool {
	if f == FormatAnthropic || name == "error" {
		return name == "error"
	}
	tv, _ := member(data, "type")
	t, _ := stringValue(tv)
	if t == "error" {
		return true
	}
	_, ok := member(data, "error")
	return ok && t == ""
}
