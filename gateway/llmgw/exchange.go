package llmgw

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/identity"
	"github.com/mandatehq/mandate/gateway/limitstage"
	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// exchange is the LLM side of one request: the pipeline.Protocol of the
// call. The pipeline runs the stages; the methods below are the
// protocol's parts of them, in the order they run.
type exchange struct {
	h        *Handler
	call     pipeline.Call
	endpoint llm.Endpoint
	cf       llm.Format // the client's format (errors, models list)

	req     *llm.Request
	body    *[]byte // the Handler's buffer the request body was read into
	svc     *gateway.ModelService
	reqTags map[string]string // the header's tags
	model   pipeline.ModelCall
	route   llm.Route
	userID  string
	rep     *llm.Reply
	res     *llm.Result
	models  []llm.ModelInfo // GET /models
	// capture: the call's bodies go to system.ai_gateway.payloads (the
	// service logs payloads and the call was sampled); captured is the
	// answer as the client got it, up to catalog.AuditMaxPayload.
	capture  bool
	captured []byte
	// attemptSpans are the upstream attempts' spans (telemetry.go).
	attemptSpans []attemptSpan
	pctx         policyContext // the call's LazyContext
}

var (
	_ pipeline.Protocol        = (*exchange)(nil)
	_ pipeline.CredentialStage = (*exchange)(nil)
	_ pipeline.AuditDetailer   = (*exchange)(nil)
)

func (x *exchange) Service() string { return Service }

// ContentFormat is the pipeline.Content format of an endpoint's request
// and answer pieces as guards see them: "llm/" and the endpoint's name
// (llm/chat.completions, llm/messages, ...), in the client's wire format
// (a request body; a response body or one server-sent event).
func ContentFormat(e llm.Endpoint) string {
	if e >= llm.ChatCompletions && e <= llm.CountTokens {
		return contentFormats[e]
	}
	return "llm/" + e.String()
}

// contentFormats are ContentFormat's answers, made once (read-only).
var contentFormats = func() (f [llm.CountTokens + 1]string) {
	for e := llm.ChatCompletions; e <= llm.CountTokens; e++ {
		f[e] = "llm/" + e.String()
	}
	return f
}()

// invalid is a refusal of a malformed request, in llm's terms.
func invalid(err error) *pipeline.Error {
	e := llm.AsError(err)
	return &pipeline.Error{Kind: pipeline.KindInvalid, Status: e.Status, Message: e.Message,
		Reason: "invalid request: " + e.Message, Detail: e}
}

// Resolve (stage resolve): the request body, the model service it names,
// the tags and the authorization question (EXECUTE on the MODEL SERVICE,
// with what policies see).
func (x *exchange) Resolve(ctx context.Context, c *pipeline.Call) error {
	c.RequestID = c.EventID
	if x.endpoint == llm.Models {
		return x.resolveModels(ctx, c)
	}
	r := c.Request
	lim := x.h.cfg.Limits
	x.body = x.h.bodies.Get()
	body, err := llm.ReadBodyInto(r, lim, *x.body)
	if err != nil {
		return invalid(err)
	}
	*x.body = body[:0] // the buffer as grown, for the next request
	c.BytesIn = int64(len(body))
	req, err := llm.Parse(x.endpoint, body, lim)
	if err != nil {
		return invalid(err)
	}
	x.req = req
	if x.reqTags, err = parseTags(r.Header.Values(HeaderTags)); err != nil {
		return invalid(llm.InvalidRequest("", err.Error()))
	}
	svc, err := x.h.cfg.Models.ModelService(ctx, req.Model)
	if err == nil && svc == nil {
		err = gateway.ErrNoModelService
	}
	if err != nil {
		if errors.Is(err, gateway.ErrNoModelService) {
			msg := fmt.Sprintf("model service %q does not exist", req.Model)
			return &pipeline.Error{Kind: pipeline.KindNotFound, Message: msg, Reason: "no such model service",
				Detail: llm.NotFound(msg)}
		}
		x.h.log.Error().Err(err).Str("model_service", req.Model).Msg("model service lookup failed; refusing the request")
		return &pipeline.Error{Kind: pipeline.KindUnavailable, Status: http.StatusServiceUnavailable, Reason: "model service lookup failed",
			Message: fmt.Sprintf("model service %q cannot be resolved right now; retry later", req.Model), Cause: err}
	}
	x.svc = svc
	c.Securable = enforce.SecurableRef{Type: TypeModelService, Name: svc.Name}
	c.Privilege = PrivExecute
	c.Tags = mergeTags(x.reqTags, svc.Tags)
	x.pctx = policyContext{method: x.endpoint.String(), model: req.Model, stream: req.Stream, requestBytes: len(req.Body),
		maxTokens: req.MaxTokens, tools: req.Tools, tags: c.Tags, sourceIP: c.SourceIP}
	c.LazyContext = &x.pctx
	c.Content = &pipeline.Content{Format: ContentFormat(x.endpoint), Body: body}
	x.model = pipeline.ModelCall{InputTokens: req.InputTokens, MaxTokens: req.MaxTokens, Answered: -1,
		OutputCap: req.CappedMax(llm.DefaultMaxTokens), PerUseTool: req.PerUseTool()}
	if b := req.ToolUseBound(llm.DefaultMaxToolUses); b != (llm.ToolUses{}) {
		x.model.ToolUses = toolUses(b)
		x.model.ToolCapNeeded = req.ToolCapNeeded()
	}
	x.model.Destinations = destinations(svc, x.model.Destinations)
	c.Model = &x.model
	x.reportRequest(ctx, c)
	return nil
}

// policyContext is what policies on the model service see of the call
// (besides subject, actor, groups and time; enforce's policy input): the
// endpoint as method, the model as requested, stream, the request's size,
// max_tokens, the names of the tools it offers and its tags. It is built
// only when a policy applies (enforce.Request.LazyContext), from the
// request as it was resolved (a later output cap does not show).
type policyContext struct {
	method, model string
	stream        bool
	requestBytes  int
	maxTokens     int64
	tools         []llm.Tool
	tags          map[string]string
	sourceIP      string
}

func (p *policyContext) PolicyContext() map[string]any {
	tools := make([]any, len(p.tools))
	for i, t := range p.tools {
		tools[i] = t.Name
	}
	tags := make(map[string]any, len(p.tags))
	for k, v := range p.tags {
		tags[k] = v
	}
	return map[string]any{
		"method":        p.method,
		"model":         p.model,
		"stream":        p.stream,
		"request_bytes": p.requestBytes,
		"max_tokens":    p.maxTokens,
		"tools":         tools,
		"tags":          tags,
		"source_ip":     p.sourceIP,
	}
}

// destinations lists every provider model a call to svc may reach, the
// split then the fallbacks, each once, with its price.
func destinations(svc *gateway.ModelService, out []pipeline.ModelDestination) []pipeline.ModelDestination {
	add := func(d *gateway.ModelDestination) {
		if d.Provider == nil {
			return
		}
		for _, o := range out {
			if o.Service == d.Provider.Name && o.Model == d.Model {
				return
			}
		}
		p, ok := d.Provider.Prices[d.Model]
		// Only Anthropic's usage reports 1-hour cache writes: a budget
		// reserves their price at its destinations only.
		p.Cache1h = llm.Provider(d.Provider.Provider).Format() == llm.FormatAnthropic
		out = append(out, pipeline.ModelDestination{Service: d.Provider.Name, Model: d.Model, Price: p, Priced: ok})
	}
	for i := range svc.Destinations {
		add(&svc.Destinations[i])
	}
	for i := range svc.Fallbacks {
		add(&svc.Fallbacks[i])
	}
	return out
}

// resolveModels answers GET /llm/v1/models: the model services subject
// and actor may both EXECUTE, each asked of the Authorizer.
func (x *exchange) resolveModels(ctx context.Context, c *pipeline.Call) error {
	c.Listing = true
	c.Privilege = PrivExecute
	names, err := x.h.cfg.Models.ListModelServices(ctx)
	if err != nil {
		x.h.log.Error().Err(err).Msg("listing model services failed")
		return &pipeline.Error{Kind: pipeline.KindUnavailable, Status: http.StatusServiceUnavailable, Reason: "model service listing failed",
			Message: "the model services cannot be listed right now; retry later", Cause: err}
	}
	az := x.h.p.Authorizer()
	pctx := map[string]any{"method": "models", "endpoint": "models", "source_ip": c.SourceIP}
	for _, n := range names {
		d, err := az.Authorize(ctx, enforce.Request{Subject: c.Identity.Subject, Actor: c.Identity.Actor, Privilege: PrivExecute,
			Securable: enforce.SecurableRef{Type: TypeModelService, Name: n}, Context: pctx})
		if err != nil || !d.Allowed {
			continue
		}
		x.models = append(x.models, llm.ModelInfo{ID: strings.TrimPrefix(n, "system.ai."), Created: x.h.started})
	}
	return nil
}

// Credential (stage credential): the route to the model service's
// destinations with their provider credentials (the inbound token never
// goes on), and the human's pseudonymous id for the upstream.
func (x *exchange) Credential(_ context.Context, c *pipeline.Call) error {
	if x.svc == nil {
		return nil
	}
	x.route = x.serviceRoute()
	x.userID = x.h.UserID(c.Identity.Subject)
	x.capture = x.svc.LogPayloads && (x.svc.SampleRate >= 1 || (x.svc.SampleRate > 0 && rand.Float64() < x.svc.SampleRate))
	return nil
}

// serviceRoute is the route to the model service's destinations and
// fallbacks.
func (x *exchange) serviceRoute() llm.Route {
	r := llm.Route{Timeout: x.svc.Timeout}
	for i := range x.svc.Destinations {
		if d, ok := x.destination(&x.svc.Destinations[i]); ok {
			r.Destinations = append(r.Destinations, d)
		}
	}
	for i := range x.svc.Fallbacks {
		if d, ok := x.destination(&x.svc.Fallbacks[i]); ok {
			r.Fallbacks = append(r.Fallbacks, d)
		}
	}
	return r
}

func (x *exchange) destination(d *gateway.ModelDestination) (llm.Destination, bool) {
	p := d.Provider
	if p == nil || !llm.Provider(p.Provider).Valid() {
		x.h.log.Warn().Str("model_service", x.svc.Name).Str("model", d.Model).Msg("model service destination without a valid provider service; skipped")
		return llm.Destination{}, false
	}
	return llm.Destination{Service: p.Name, Provider: llm.Provider(p.Provider), BaseURL: p.URL, Model: d.Model,
		APIKey: p.APIKey, Weight: d.Weight}, true
}

// Send (stage forward): the attempts across the route's destinations,
// until one answers (llm.Forwarder.Open). Nothing reaches the client yet:
// the answer waits in the Reply for Relay, so a destination that fails
// before its first byte still falls back.
func (x *exchange) Send(ctx context.Context, c *pipeline.Call, _ string) (*http.Response, error) {
	if x.endpoint == llm.Models {
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	}
	req := x.req
	if c.Content != nil && !sameBytes(c.Content.Body, req.Body) {
		// A guard rewrote the request (masked a value): send its body,
		// which must still be the same call.
		r2, err := llm.Parse(x.endpoint, c.Content.Body, x.h.cfg.Limits)
		if err != nil || r2.Model != req.Model || r2.Stream != req.Stream {
			return nil, &pipeline.Error{Kind: pipeline.KindGuardDenied, Message: "a guardrail's rewrite of the request is not a valid request",
				Reason: "guardrail rewrite invalid"}
		}
		req = r2
	}
	if x.model.Capped { // a token limit or budget reserved the default cap
		req.CapOutput(llm.DefaultMaxTokens)
	}
	if x.model.ToolCapped { // a budget reserved the default bound on the tool uses
		req.CapToolUses(llm.DefaultMaxToolUses)
	}
	r := c.Request
	call := &llm.Call{Request: req, Route: x.route, UserID: x.userID, Header: r.Header, Query: r.URL.Query(), Hooks: x.hooks(c)}
	x.rep = x.h.fwd.Open(ctx, call)
	x.res = x.rep.Result
	x.endAttempts()
	x.absorb(c)
	if err := x.rep.Err; err != nil {
		x.reportResult(ctx, c)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, x.openError(err)
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
}

func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}

// openError is the pipeline's account of a call no destination answered.
func (x *exchange) openError(err error) *pipeline.Error {
	var pe *pipeline.Error
	if errors.As(err, &pe) {
		return pe // a guard's refusal, from a hook
	}
	e := llm.AsError(err)
	kind := pipeline.KindUpstream
	if len(x.res.Attempts) == 0 && e.Status == http.StatusBadRequest {
		kind = pipeline.KindInvalid // no destination can serve this endpoint
	}
	audit := e.Message
	if n := len(x.res.Attempts); n > 0 {
		a := x.res.Attempts[n-1]
		audit = fmt.Sprintf("%s (%d attempts; last %s/%s: status %d %s)", e.Message, n, a.Service, a.Model, a.Status, a.Error)
	}
	return &pipeline.Error{Kind: kind, Status: e.Status, Message: e.Message, Audit: audit, RetryAfter: e.RetryAfter, Detail: e}
}

// hooks connect the forwarder to the pipeline: each answer piece through
// the result guard, and the durability rule before the first byte.
func (x *exchange) hooks(c *pipeline.Call) llm.Hooks {
	format := ContentFormat(x.endpoint)
	return llm.Hooks{
		BeforeForward: func(ctx context.Context, out *llm.Outbound) error {
			x.beforeForward(ctx, c, out)
			return nil
		},
		OnEvent: func(ctx context.Context, ev *llm.Event) error {
			out, err := c.GuardPiece(ctx, format, ev.Out, false)
			if err != nil {
				return &pieceError{err}
			}
			ev.Out = out
			x.keep(out)
			return nil
		},
		OnResponse: func(ctx context.Context, body []byte) ([]byte, error) {
			out, err := c.GuardPiece(ctx, format, body, true)
			if err != nil {
				return nil, err
			}
			x.keep(out)
			return out, nil
		},
		BeforeAnswer: func(_ context.Context, res *llm.Result) error {
			x.absorb(c)
			c.Status = res.Status
			x.setHeaders(c, c.Writer().Header())
			// A non-streamed answer's outcome is known: its completion is
			// queued now, before the answer, so a query after the answer
			// sees the call complete, and the pipeline may send the
			// answer before the call's end. A stream's follows in the
			// audit stage.
			if err := c.Commit(!res.Streaming); err != nil {
				return err
			}
			return nil
		},
	}
}

// pieceError is a result guard's refusal of a stream event: the
// pipeline's error before the stream started, the client's (in-stream
// error event) after.
type pieceError struct{ pe *pipeline.Error }

func (e *pieceError) Error() string { return e.pe.Error() }

func (e *pieceError) As(target any) bool {
	switch t := target.(type) {
	case **pipeline.Error:
		*t = e.pe
		return true
	case **llm.Error:
		*t = &llm.Error{Status: e.pe.Status, Message: e.pe.Message, Code: "content_policy_violation"}
		return true
	}
	return false
}

// absorb copies the forwarder's result into the call: usage, size, the
// destination that answered and the cost there.
func (x *exchange) absorb(c *pipeline.Call) {
	res := x.res
	if res == nil {
		return
	}
	u := res.Usage
	c.Usage = pipeline.Usage{InputTokens: u.InputTokens, OutputTokens: u.OutputTokens, CachedInputTokens: u.CachedInputTokens,
		CacheWriteTokens: u.CacheWriteTokens, CacheWrite1hTokens: u.CacheWrite1hTokens, ReasoningTokens: u.ReasoningTokens,
		ToolUses: toolUses(u.ToolUses)}
	c.BytesOut = res.BytesOut
	m := &x.model
	m.Attempts = len(res.Attempts)
	m.Answered, m.CostNanos, m.CostKnown = -1, 0, false
	if d := res.Destination; d != nil {
		for i, md := range m.Destinations {
			if md.Service == d.Service && md.Model == d.Model {
				m.Answered = i
				if md.Priced {
					m.CostNanos, m.CostKnown = limitstage.Cost(md.Price, c.Usage), true
				}
				break
			}
		}
	}
}

// toolUses is the forwarder's count of tool uses by catalog.ToolKind.
func toolUses(u llm.ToolUses) [catalog.NumToolKinds]int64 {
	var out [catalog.NumToolKinds]int64
	out[catalog.ToolWebSearch], out[catalog.ToolFileSearch] = u.WebSearch, u.FileSearch
	return out
}

// setHeaders adds the gateway's response headers: the request id (both
// providers' names) and the caller's rate-limit position.
func (x *exchange) setHeaders(c *pipeline.Call, h http.Header) {
	id := []string{c.RequestID, c.RequestID} // one allocation for both
	h["X-Request-Id"], h["Request-Id"] = id[:1:1], id[1:2:2]
	if li := c.Limits; li != nil {
		rateLimit(li).SetHeaders(h, x.cf)
	}
}

func rateLimit(li *pipeline.LimitInfo) *llm.RateLimit {
	// One allocation: the limit and both windows.
	v := &struct {
		rl       llm.RateLimit
		req, tok llm.Window
	}{}
	if r := li.Requests; r != nil {
		v.req = llm.Window{Limit: r.Limit, Remaining: r.Remaining, Reset: r.Reset}
		v.rl.Requests = &v.req
	}
	if r := li.Tokens; r != nil {
		v.tok = llm.Window{Limit: r.Limit, Remaining: r.Remaining, Reset: r.Reset}
		v.rl.Tokens = &v.tok
	}
	return &v.rl
}

// Relay (stage guard_result) answers the client: the models list, or the
// destination's answer (llm.Reply.Relay: a body, or the stream event by
// event, each through the result guard; committed before the first byte).
func (x *exchange) Relay(ctx context.Context, c *pipeline.Call, _ *http.Response) error {
	if x.endpoint == llm.Models {
		body := llm.ModelsBody(x.cf, x.models)
		c.Status, c.BytesOut = http.StatusOK, int64(len(body))
		if err := c.Commit(true); err != nil {
			return err
		}
		w := c.Writer()
		x.setHeaders(c, w.Header())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if c.Request.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
		return nil
	}
	err := x.rep.Relay(ctx, c.Writer())
	x.absorb(c)
	x.reportResult(ctx, c)
	if err != nil {
		// Nothing was written: the pipeline renders the refusal.
		var pe *pipeline.Error
		if errors.As(err, &pe) {
			return pe
		}
		e := llm.AsError(err)
		return &pipeline.Error{Kind: pipeline.KindGuardDenied, Status: e.Status, Message: e.Message, Detail: e}
	}
	// A stream the upstream broke (or a guard ended) is recorded so, even
	// if the client then went away; one the client left is the
	// pipeline's "client disconnected".
	var le *llm.Error
	res := x.res
	c.Delivered = !res.Broken
	if res.Broken && errors.As(res.Err, &le) {
		c.ErrorMessage = "stream broken: " + le.Message
	}
	if x.capture && c.Started() {
		req := c.Content.Body
		c.Attach(catalog.AuditEvent{Action: catalog.AuditActionPayload, StatusCode: c.Status,
			Payload: &catalog.AuditPayload{RequestBody: clipBody(req), ResponseBody: string(x.captured)}})
	}
	return nil
}

// keep adds a piece of the answer to the captured payload, up to its
// bound.
func (x *exchange) keep(b []byte) {
	if x.capture {
		if room := catalog.AuditMaxPayload - len(x.captured); room > 0 {
			x.captured = append(x.captured, b[:min(len(b), room)]...)
		}
	}
}

func clipBody(b []byte) string {
	return string(b[:min(len(b), catalog.AuditMaxPayload)])
}

// Render builds the provider-format answer to err: the client's error
// body (OpenAI's or Anthropic's), its status and headers (Retry-After,
// x-ratelimit-*, WWW-Authenticate for a 401), or, in a stream under way,
// the error event that ends it.
func (x *exchange) Render(c *pipeline.Call, err *pipeline.Error) pipeline.Answer {
	e := x.llmError(c, err)
	if c.Started() {
		return pipeline.Answer{Body: e.Event(x.cf)}
	}
	h := http.Header{}
	e.SetHeaders(h)
	if err.Kind == pipeline.KindUnauthenticated {
		h.Set("WWW-Authenticate", identity.WWWAuthenticate(err.Auth, x.h.metaURL))
	}
	h.Set("X-Content-Type-Options", "nosniff")
	if c.RequestID != "" {
		h.Set("X-Request-Id", c.RequestID)
		h.Set("Request-Id", c.RequestID)
	}
	return pipeline.Answer{Status: e.Status, ContentType: "application/json", Header: h, Body: e.Body(x.cf)}
}

// llmError is err as the client's error: the adapter's own (*llm.Error in
// Detail) or one made from the Kind.
func (x *exchange) llmError(c *pipeline.Call, err *pipeline.Error) *llm.Error {
	if d, ok := err.Detail.(*llm.Error); ok {
		e := *d
		if err.Status != 0 {
			e.Status = err.Status
		}
		return &e
	}
	msg, status := err.Message, err.Status
	switch err.Kind {
	case pipeline.KindUnauthenticated:
		e := llm.Unauthorized("authentication failed: " + msg)
		e.Status = status
		if status == http.StatusForbidden {
			e.Code = "insufficient_scope"
		}
		return e
	case pipeline.KindForbidden:
		return llm.Forbidden(msg)
	case pipeline.KindNotFound:
		return llm.NotFound(msg)
	case pipeline.KindDenied, pipeline.KindItemDenied:
		return llm.Forbidden(fmt.Sprintf("access to model service %s denied: %s", c.Securable.Name, msg))
	case pipeline.KindGuardDenied:
		return &llm.Error{Status: status, Message: msg, Code: "content_policy_violation"}
	case pipeline.KindLimited:
		if err.Limit != nil && err.Limit.Budget {
			if status == http.StatusForbidden { // a budgeted call to a destination without a price
				return llm.Forbidden(msg)
			}
			return llm.BudgetExhausted(msg, err.RetryAfter)
		}
		var rl *llm.RateLimit
		if err.Limit != nil {
			rl = rateLimit(err.Limit)
		}
		e := llm.RateLimited(x.cf, msg, err.RetryAfter, err.Final, rl)
		e.Status = status
		return e
	case pipeline.KindInvalid:
		e := llm.InvalidRequest("", msg)
		e.Status = status
		return e
	}
	return &llm.Error{Status: status, Message: msg}
}

// auditParams is the audit row's request_params: the request's shape and
// what the provider said about its answer, never message content or
// credentials. The usage itself goes to the row's usage columns
// (AuditDetail).
type auditParams struct {
	Endpoint             string   `json:"endpoint"`
	RequestedModel       string   `json:"requested_model,omitempty"`
	Stream               bool     `json:"stream"`
	MaxTokens            int64    `json:"max_tokens,omitempty"`
	EstimatedInputTokens int64    `json:"estimated_input_tokens,omitempty"`
	Tools                int      `json:"tools,omitempty"`
	BytesIn              int64    `json:"bytes_in"`
	BytesOut             int64    `json:"bytes_out"`
	TraceID              string   `json:"trace_id"`
	Models               *int     `json:"models,omitempty"`
	UsageEstimated       bool     `json:"usage_estimated,omitempty"`
	WebSearches          int64    `json:"web_searches,omitempty"`  // uses of the tools billed per use
	FileSearches         int64    `json:"file_searches,omitempty"` // (priced by tool_prices)
	FinishReasons        []string `json:"finish_reasons,omitempty"`
	ResponseID           string   `json:"response_id,omitempty"`
	UpstreamRequestID    string   `json:"upstream_request_id,omitempty"`
	AnsweredLocally      bool     `json:"answered_locally,omitempty"`
}

func (x *exchange) AuditParams(c *pipeline.Call) string {
	p := auditParams{Endpoint: x.endpoint.String(), BytesIn: c.BytesIn, BytesOut: c.BytesOut, TraceID: c.TraceID}
	if x.endpoint == llm.Models {
		n := len(x.models)
		p.Models = &n
	}
	if r := x.req; r != nil {
		p.RequestedModel, p.Stream, p.MaxTokens, p.EstimatedInputTokens, p.Tools = r.Model, r.Stream, r.MaxTokens, r.InputTokens, len(r.Tools)
	}
	if res := x.res; res != nil {
		p.UsageEstimated = res.Usage.Estimated
		p.WebSearches, p.FileSearches = res.Usage.ToolUses.WebSearch, res.Usage.ToolUses.FileSearch
		p.FinishReasons, p.ResponseID, p.UpstreamRequestID, p.AnsweredLocally = res.FinishReasons, res.ResponseID, res.UpstreamRequestID, res.Local
	}
	var buf [256]byte
	return string(appendParams(buf[:0], &p))
}

// AuditDetail fills the usage columns of the call's completion (the row of
// system.ai_gateway.usage): the destination that answered, the token
// classes (each token in one class: input excludes cache reads and
// writes), the cost, the time to first token, streaming, the request tags
// and every attempt. A call that reached no destination has none.
func (x *exchange) AuditDetail(c *pipeline.Call, ev *catalog.AuditEvent) {
	res := x.res
	if res == nil || c.Status == 0 {
		return // not forwarded, or the request record (no outcome yet)
	}
	u := res.Usage
	lu := &catalog.LLMUsage{InputTokens: u.UncachedInputTokens(), OutputTokens: u.OutputTokens, CachedInputTokens: u.CachedInputTokens,
		CacheWriteTokens: u.CacheWriteTokens, ReasoningTokens: u.ReasoningTokens, Streaming: res.Streaming}
	if d := res.Destination; d != nil {
		lu.ProviderService, lu.Provider, lu.Model = d.Service, string(d.Provider), d.Model
	}
	if x.model.CostKnown {
		lu.CostNanos = x.model.CostNanos
	}
	if res.TTFT > 0 {
		lu.TTFTMs = float64(res.TTFT.Microseconds()) / 1000
	}
	var buf [256]byte
	if len(c.Tags) > 0 {
		lu.RequestTags = string(appendTags(buf[:0], c.Tags))
	}
	lu.Routing = string(appendAttempts(buf[:0], res.Attempts))
	ev.Usage = lu
}
