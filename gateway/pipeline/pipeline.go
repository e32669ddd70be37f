package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
)

// DefaultAuditTimeout bounds the wait for one audit record.
const DefaultAuditTimeout = 10 * time.Second

// DefaultWriteTimeout bounds each write of an answer to the client.
const DefaultWriteTimeout = 30 * time.Second

// Config configures a Pipeline. PublicURL, Auth, Authz, Credentials and
// Audit are required; Limiter, Guard, Meter and Observer are optional.
type Config struct {
	// PublicURL is the gateway's canonical URL as clients reach it (the
	// source of truth for the Host check and the CORS origin).
	PublicURL   string
	Auth        gateway.Authenticator
	Authz       gateway.Authorizer
	Credentials gateway.Credentials
	// Audit records every call. An AuditQueue gets the two-phase record
	// (doc.go); a plain AuditSink one record per call.
	Audit gateway.AuditSink
	// AuditAsync (--audit-sync off) answers without waiting for the audit
	// record to be durable, like PostgreSQL's synchronous_commit = off: a
	// crash loses at most the records of the last group-commit window.
	AuditAsync bool
	// AuditTimeout bounds the wait for one audit record (default 10 s).
	AuditTimeout time.Duration
	// WriteTimeout bounds each write and flush of the answer to the client
	// (default DefaultWriteTimeout): a client that does not take a piece
	// of it (a stream's event) within this is cut off, and the call ends
	// as a broken answer, which releases its upstream.
	WriteTimeout time.Duration
	// MaxInFlightPerSubject bounds the calls one subject (Identity.Subject:
	// the human a call acts for, whichever agent calls, or a service
	// principal calling on its own) may have in progress at once (default
	// DefaultMaxInFlightPerSubject): the next is refused as KindLimited
	// (429, Retry-After) right after authentication, so that one caller
	// cannot hold every request slot of the listener.
	MaxInFlightPerSubject int
	// AllowedOrigins are browser origins (scheme://host[:port]) allowed to
	// call the gateway besides PublicURL's own (and any loopback origin
	// when PublicURL is loopback).
	AllowedOrigins []string

	Limiter  Limiter
	Guard    Guard
	Meter    Meter
	Observer Observer

	Logger zerolog.Logger
	// Now is the clock of audit times (default time.Now).
	Now func() time.Time
}

// Protocol is one protocol's side of the pipeline: a thin adapter between
// the wire (HTTP, JSON-RPC or a provider API, sessions, SSE framing) and
// the stages. A new one is made per request (it carries the request's
// protocol state); its methods run on the request's goroutine.
type Protocol interface {
	// Service is the audit service_name ("mcp", "llm").
	Service() string
	// Resolve (stage resolve) decodes the authenticated request and says
	// what it calls: it sets the Call's Action, Securable (full name),
	// Privilege, Context, Item, Content and, when the pipeline's
	// credential stage is to get a credential, Upstream.
	Resolve(ctx context.Context, c *Call) error
	// Send (stage forward) sends the call upstream once with credential
	// (the Authorization value, "" for none) and returns the response
	// with its body unread. The pipeline retries once with a fresh
	// credential after a 401 or 403 on a cached one.
	Send(ctx context.Context, c *Call, credential string) (*http.Response, error)
	// Relay (stage guard_result) answers the client from the upstream's
	// response: each piece through Call.GuardPiece, Call.Commit before the
	// first byte it writes (and again with final set once the outcome is
	// known), then the bytes to Call.Writer.
	Relay(ctx context.Context, c *Call, resp *http.Response) error
	// Render builds the protocol's answer to err (status, headers, body).
	// When the answer has already started (Call.Started) it returns what
	// to append to it (an error event of the stream), or nothing.
	Render(c *Call, err *Error) Answer
	// AuditParams is the audit row's request_params (JSON) for the call
	// as it stands.
	AuditParams(c *Call) string
}

// CredentialStage is implemented by Protocols whose upstream credentials
// the default credential stage cannot produce (a model service routes to
// several providers): it replaces that stage.
type CredentialStage interface {
	Credential(ctx context.Context, c *Call) error
}

// Pipeline runs the stages. It is safe for concurrent use; one Pipeline
// serves every protocol of a gateway.
type Pipeline struct {
	cfg        Config
	log        zerolog.Logger
	now        func() time.Time
	queue      gateway.AuditQueue // nil: cfg.Audit has only Record
	invalidate gateway.CredentialInvalidator
	host       hostRule
	origins    map[string]bool
	public     string // PublicURL without a trailing slash
	inFlight   *inFlight
	// observed: the stages shown to the Observer (those with work to do).
	observed [NumStages]bool
	callObs  CallObserver  // cfg.Observer when it is one
	pieceObs PieceObserver // cfg.Observer when it is one
}

// New returns a Pipeline for cfg.
func New(cfg Config) (*Pipeline, error) {
	switch {
	case cfg.Auth == nil:
		return nil, errors.New("pipeline: Config.Auth is required")
	case cfg.Authz == nil:
		return nil, errors.New("pipeline: Config.Authz is required")
	case cfg.Credentials == nil:
		return nil, errors.New("pipeline: Config.Credentials is required")
	case cfg.Audit == nil:
		return nil, errors.New("pipeline: Config.Audit is required")
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" || pub.User != nil ||
		pub.RawQuery != "" || pub.Fragment != "" {
		return nil, fmt.Errorf("pipeline: Config.PublicURL must be an absolute http(s) URL without credentials, query or fragment, got %q", cfg.PublicURL)
	}
	if cfg.AuditTimeout <= 0 {
		cfg.AuditTimeout = DefaultAuditTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	switch {
	case cfg.MaxInFlightPerSubject < 0:
		return nil, fmt.Errorf("pipeline: Config.MaxInFlightPerSubject must not be negative, got %d", cfg.MaxInFlightPerSubject)
	case cfg.MaxInFlightPerSubject == 0:
		cfg.MaxInFlightPerSubject = DefaultMaxInFlightPerSubject
	}
	p := &Pipeline{cfg: cfg, log: cfg.Logger, now: cfg.Now, host: newHostRule(pub),
		public:   strings.TrimRight(cfg.PublicURL, "/"),
		inFlight: newInFlight(cfg.MaxInFlightPerSubject),
		origins:  map[string]bool{strings.ToLower(pub.Scheme + "://" + pub.Host): true}}
	if p.now == nil {
		p.now = time.Now
	}
	for _, o := range cfg.AllowedOrigins {
		p.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	p.queue, _ = cfg.Audit.(gateway.AuditQueue)
	p.invalidate, _ = cfg.Credentials.(gateway.CredentialInvalidator)
	for s := range p.observed {
		p.observed[s] = true
	}
	p.observed[StageLimits] = cfg.Limiter != nil
	p.observed[StageGuardCall] = cfg.Guard != nil
	p.observed[StageMeter] = cfg.Limiter != nil || cfg.Meter != nil
	p.callObs, _ = cfg.Observer.(CallObserver)
	p.pieceObs, _ = cfg.Observer.(PieceObserver)
	return p, nil
}

// Authorizer is the pipeline's authorizer (adapters ask it more questions,
// such as which tools of a list the caller may see).
func (p *Pipeline) Authorizer() gateway.Authorizer { return p.cfg.Authz }

// Logger is the pipeline's logger.
func (p *Pipeline) Logger() zerolog.Logger { return p.log }

// PublicURL is the gateway's canonical URL, without a trailing slash.
func (p *Pipeline) PublicURL() string { return p.public }

// Serve runs one call: the stages in order, each failing closed; the first
// error ends the call and is rendered by proto; the meter and audit stages
// run for every call. c is the adapter's (usually inside its per-request
// state, so that no extra allocation is made); Serve initializes it, the
// adapter sets Resource, Securable (the name as requested) and Action
// before or in Resolve.
func (p *Pipeline) Serve(w http.ResponseWriter, r *http.Request, c *Call, proto Protocol) {
	c.init(p, proto, w, r)
	ctx := r.Context()
	if p.callObs != nil {
		ctx = p.callObs.StartCall(ctx, c)
	}
	c.ctx = ctx
	defer p.finish(ctx, c)
	if err := p.run(ctx, c); err != nil {
		p.fail(ctx, c, err)
	}
}

// run is the request's path through the stages, top to bottom.
func (p *Pipeline) run(ctx context.Context, c *Call) *Error {
	if err := p.stage(ctx, c, StageAuthenticate, p.authenticate); err != nil {
		return err
	}
	if err := p.stage(ctx, c, StageResolve, c.proto.Resolve); err != nil {
		return err
	}
	if err := p.stage(ctx, c, StageAuthorize, p.authorize); err != nil {
		return err
	}
	if err := p.stage(ctx, c, StageLimits, p.reserve); err != nil {
		return err
	}
	if err := p.stage(ctx, c, StageGuardCall, p.guardCall); err != nil {
		return err
	}
	if err := p.stage(ctx, c, StageCredential, p.credential); err != nil {
		return err
	}
	if err := p.stage(ctx, c, StageForward, p.forward); err != nil {
		return err
	}
	return p.stage(ctx, c, StageGuardResult, p.relay)
}

// stage runs one stage: timed, observed, and failing closed (an error
// that is not an *Error refuses the call as unavailable).
func (p *Pipeline) stage(ctx context.Context, c *Call, s Stage, fn func(context.Context, *Call) error) *Error {
	var end func(*Error)
	if o := p.cfg.Observer; o != nil && p.observed[s] {
		ctx, end = o.StartStage(ctx, c, s)
	}
	t0 := time.Now()
	err := asError(s, fn(ctx, c))
	c.Timings[s] += time.Since(t0)
	if end != nil {
		end(err)
	}
	return err
}

// asError makes err an *Error of stage s.
func asError(s Stage, err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Kind: KindUnavailable, Message: "the gateway could not process the request; retry later", Cause: err,
			Audit: s.String() + " failed: " + err.Error()}
	}
	e.Stage = s
	if e.Status == 0 {
		e.Status = e.Kind.defaultStatus()
	}
	return e
}

// --- authenticate ---

func (p *Pipeline) authenticate(ctx context.Context, c *Call) error {
	if err := p.admit(c); err != nil {
		return err
	}
	id, err := p.cfg.Auth.Authenticate(ctx, c.Request, c.Resource)
	if err == nil && (id == nil || id.Subject == "") {
		err = errors.New("authenticator returned no subject")
	}
	if err != nil {
		var ae *gateway.AuthError
		if !errors.As(err, &ae) {
			c.Logger().Warn().Err(err).Str("securable", c.Securable.Name).Msg("authentication error; refusing the request")
			ae = &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "the access token could not be verified"}
		}
		status := http.StatusUnauthorized
		if ae.Status == http.StatusForbidden {
			status = http.StatusForbidden
		}
		code := ae.Code
		if code == "" {
			code = "invalid_token"
		}
		return &Error{Kind: KindUnauthenticated, Status: status, Message: ae.Description, Auth: ae,
			Reason: "authentication failed: " + code}
	}
	c.Identity = id
	if err := p.admitSubject(c); err != nil {
		return err
	}
	return nil
}

// --- authorize ---

func (p *Pipeline) authorize(ctx context.Context, c *Call) error {
	if c.Listing {
		c.allow("a list filtered by the caller's privileges")
		return nil
	}
	req := enforce.Request{Subject: c.Identity.Subject, Actor: c.Identity.Actor, Privilege: c.Privilege,
		Securable: c.Securable, Context: c.Context, LazyContext: c.LazyContext}
	d, err := p.cfg.Authz.Authorize(ctx, req)
	if err == nil && d.Allowed {
		c.Decision = d
		c.allow(d.Reason)
		return nil
	}
	if err == nil && c.Item != "" {
		// Denied with the item: is it the item (a policy on it) or the
		// securable? Only denials pay for the second question.
		req.Context, req.LazyContext = withoutKeys(req.ContextMap(), c.ItemKeys), nil
		d2, err2 := p.cfg.Authz.Authorize(ctx, req)
		if err2 == nil && d2.Allowed {
			c.Decision = d
			return &Error{Kind: KindItemDenied, Item: c.Item, Message: BriefReason(d.Reason), Reason: d.Reason}
		}
		d, err = d2, err2
	}
	c.Decision = d
	reason := d.Reason
	if err != nil {
		c.Logger().Warn().Err(err).Str("securable", c.Securable.Name).Msg("authorization failed; denying")
		if reason == "" {
			reason = "authorization unavailable: denying"
		}
	}
	if reason == "" {
		reason = "denied"
	}
	return &Error{Kind: KindDenied, Message: BriefReason(reason), Reason: reason, Cause: err}
}

func withoutKeys(m map[string]any, keys []string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

// --- limits ---

func (p *Pipeline) reserve(ctx context.Context, c *Call) error {
	if p.cfg.Limiter == nil {
		return nil
	}
	res, err := p.cfg.Limiter.Reserve(ctx, c)
	if err != nil {
		return err
	}
	c.reservation = res
	return nil
}

// --- guard call ---

func (p *Pipeline) guardCall(ctx context.Context, c *Call) error {
	if p.cfg.Guard == nil || c.Content == nil {
		return nil
	}
	v, err := p.cfg.Guard.Call(ctx, c, c.Content)
	if err != nil {
		return &Error{Kind: KindGuardDenied, Item: c.Item, Message: "the call could not be checked by the gateway's guardrails",
			Reason: "guardrail failed: " + err.Error(), Cause: err}
	}
	switch v.Action {
	case Allow:
	case Rewrite:
		c.Content.Body = v.Body
	default:
		return &Error{Kind: KindGuardDenied, Item: c.Item, Message: "blocked by a guardrail: " + v.Reason, Reason: "guardrail denied the call: " + v.Reason}
	}
	return nil
}

// --- credential ---

func (p *Pipeline) credential(ctx context.Context, c *Call) error {
	if cs, ok := c.proto.(CredentialStage); ok {
		return cs.Credential(ctx, c)
	}
	if c.Upstream == nil {
		return nil
	}
	v, err := p.cfg.Credentials.Authorization(ctx, c.Upstream, c.Identity)
	if err != nil {
		return p.credentialError(c, err)
	}
	c.credential = v
	return nil
}

func (p *Pipeline) credentialError(c *Call, err error) *Error {
	var sr *gateway.SignInRequiredError
	if errors.As(err, &sr) {
		return &Error{Kind: KindSignIn, Message: sr.Error(), SignIn: sr, Audit: "sign-in required"}
	}
	c.Logger().Error().Err(err).Str("securable", c.Upstream.Name).Str("auth_mode", c.Upstream.AuthMode).Msg("upstream credentials unavailable")
	return &Error{Kind: KindUnavailable, Status: http.StatusBadGateway,
		Message: fmt.Sprintf("the gateway could not obtain credentials for %s %s (auth_mode %s); retry later",
			strings.ToLower(string(c.Securable.Type)), c.Upstream.Name, c.Upstream.AuthMode),
		Audit: "upstream credentials unavailable: " + err.Error(), Cause: err}
}

// --- forward ---

// forward sends the call upstream. The request's audit record is queued
// first, so that its fsync runs while the upstream works. A 401 or 403 on
// a cached credential drops it and the call is sent once more with a
// fresh one (the upstream refused it before acting on the call).
func (p *Pipeline) forward(ctx context.Context, c *Call) error {
	if err := p.beginAudit(ctx, c); err != nil {
		return err
	}
	t0 := time.Now()
	resp, err := c.proto.Send(ctx, c, c.credential)
	if err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) &&
		c.Upstream != nil && p.invalidate != nil && c.credential != "" &&
		p.invalidate.Invalidate(c.Upstream, c.Identity, c.credential) {
		drain(resp.Body)
		resp.Body.Close()
		c.Logger().Info().Str("securable", c.Upstream.Name).Int("status", resp.StatusCode).
			Msg("upstream refused a cached credential; retrying once with a fresh one")
		v, cerr := p.cfg.Credentials.Authorization(ctx, c.Upstream, c.Identity)
		if cerr != nil {
			return p.credentialError(c, cerr)
		}
		c.credential, c.CredentialRetried = v, true
		resp, err = c.proto.Send(ctx, c, v)
	}
	c.UpstreamTime += time.Since(t0)
	if err != nil {
		return p.upstreamError(ctx, c, err)
	}
	// The relay's reads of the body count as upstream time too.
	resp.Body = &timedBody{ReadCloser: resp.Body, c: c}
	c.resp = resp
	c.UpstreamStatus = resp.StatusCode
	return nil
}

// upstreamError is the answer to a call that got no response upstream.
func (p *Pipeline) upstreamError(ctx context.Context, c *Call, err error) *Error {
	if ctx.Err() != nil {
		return &Error{Kind: KindClientGone, Message: "client disconnected", Cause: err}
	}
	var e *Error
	if errors.As(err, &e) {
		return e // the adapter's own account of the failure
	}
	status, why := http.StatusBadGateway, "request failed"
	var ne net.Error
	var tlsErr *tls.CertificateVerificationError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		status, why = http.StatusGatewayTimeout, "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.As(err, &dnsErr):
		why = "host not found"
	case errors.As(err, &tlsErr):
		why = "TLS certificate not trusted"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		why = "connection closed by the upstream"
	}
	c.Logger().Warn().Err(err).Str("securable", c.Securable.Name).Msg("upstream request failed")
	return &Error{Kind: KindUpstream, Status: status, Message: fmt.Sprintf("upstream %s unavailable: %s", c.Securable.Name, why),
		Audit: "upstream request failed: " + err.Error(), Cause: err}
}

// --- guard result: the relay ---

func (p *Pipeline) relay(ctx context.Context, c *Call) error {
	resp := c.resp
	defer resp.Body.Close()
	if p.cfg.Guard != nil {
		rg, err := p.cfg.Guard.Result(ctx, c)
		if err != nil {
			drain(resp.Body)
			return &Error{Kind: KindGuardDenied, Item: c.Item, Message: "the answer could not be checked by the gateway's guardrails",
				Reason: "guardrail failed: " + err.Error(), Cause: err}
		}
		c.resultGuard = rg
	}
	err := c.proto.Relay(ctx, c, resp)
	if err != nil && ctx.Err() != nil {
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindAudit {
			return &Error{Kind: KindClientGone, Message: "client disconnected", Cause: err}
		}
	}
	if err == nil && ctx.Err() != nil && c.ErrorMessage == "" && !c.Delivered {
		c.ErrorMessage = "client disconnected"
	}
	return err
}

func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 256<<10)) }

// timedBody adds the time spent waiting in reads of the upstream's body to
// Call.UpstreamTime.
type timedBody struct {
	io.ReadCloser
	c *Call
}

func (b *timedBody) Read(p []byte) (int, error) {
	t0 := time.Now()
	n, err := b.ReadCloser.Read(p)
	b.c.UpstreamTime += time.Since(t0)
	return n, err
}

// --- the end of every call: failure, meter, audit ---

// fail answers err (after its audit record is durable), unless the client
// is gone.
func (p *Pipeline) fail(ctx context.Context, c *Call, err *Error) {
	if err.Kind == KindClientGone || (ctx.Err() != nil && !c.Started() && err.Kind != KindAudit) {
		if !c.Started() {
			c.Status = statusClientClosed
		}
		c.ErrorMessage = "client disconnected"
		return
	}
	if err.Kind.refusal() {
		c.deny(err.auditReason())
	}
	if c.ErrorMessage == "" {
		c.ErrorMessage = err.auditMessage()
	}
	a := p.render(c, err)
	if err.Kind != KindAudit {
		if cerr := c.Commit(true); cerr != nil {
			a = p.render(c, cerr)
		}
	}
	p.writeAnswer(c, a)
}

// render is the adapter's answer to err; the call's status becomes its.
func (p *Pipeline) render(c *Call, err *Error) Answer {
	a := c.proto.Render(c, err)
	if !c.Started() {
		c.Status = a.Status
		c.BytesOut = int64(len(a.Body))
	}
	return a
}

// writeAnswer writes a: the whole response, or, once the answer has
// started, a's body appended to it.
func (p *Pipeline) writeAnswer(c *Call, a Answer) {
	w := c.w
	if c.Started() {
		if len(a.Body) > 0 {
			_, _ = w.Write(a.Body)
			_ = http.NewResponseController(w).Flush()
		}
		return
	}
	h := w.Header()
	for k, v := range a.Header {
		h[k] = v
	}
	if a.ContentType != "" {
		h.Set("Content-Type", a.ContentType)
	}
	w.WriteHeader(a.Status)
	if len(a.Body) > 0 {
		_, _ = w.Write(a.Body)
	}
}

// finish runs the meter stage and the audit stage of every call.
func (p *Pipeline) finish(ctx context.Context, c *Call) {
	defer p.releaseSubject(c) // last, whatever happens before
	if r := recover(); r != nil {
		// A stage panicked: the call is refused and audited, then the
		// panic goes on to net/http.
		c.Logger().Error().Interface("panic", r).Str("stage", "?").Msg("gateway stage panicked")
		if !c.Started() {
			p.fail(ctx, c, &Error{Kind: KindUnavailable, Status: http.StatusInternalServerError, Message: "internal error",
				Audit: fmt.Sprintf("panic: %v", r)})
		}
		p.stage(ctx, c, StageAudit, p.audit)
		panic(r)
	}
	p.stage(ctx, c, StageMeter, p.meter)
	flushWhole(c)
	p.stage(ctx, c, StageAudit, p.audit)
	if o := p.cfg.Observer; o != nil {
		o.Finished(c)
	}
}

// flushWhole sends the client a whole answer before the call's end (the
// audit stage, the observers, the handler's return), which net/http would
// wait for. It does so only when all three hold:
//   - the answer has started and declares its length (Content-Length): a
//     flush of one without would make it chunked (net/http declares its
//     length when the handler returns), and a stream flushed its events
//     as they came;
//   - the call is metered (this runs after the meter stage: the limits
//     are settled before the client can send its next call);
//   - the call's record is settled (auditState.settled): its request
//     record durable, or queued with --audit-sync off, and its final
//     record written or queued, so that the audit stage has nothing left
//     to record and a query after the answer sees the call complete. An
//     answer whose completion is left to the audit stage, one whose
//     record failed (a 503) and one recorded in the background go when
//     the handler returns, as before.
func flushWhole(c *Call) {
	if c.Started() && c.audit.settled && c.w.Header().Get("Content-Length") != "" {
		_ = http.NewResponseController(c.w).Flush()
	}
}

func (p *Pipeline) meter(ctx context.Context, c *Call) error {
	if c.reservation == nil && p.cfg.Meter == nil {
		return nil
	}
	mctx := context.WithoutCancel(ctx)
	if c.reservation != nil {
		c.reservation.Settle(mctx, c, c.Usage)
		c.reservation = nil
	}
	if p.cfg.Meter != nil {
		p.cfg.Meter.Record(mctx, c)
	}
	return nil
}
