package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// Observer is the pipeline's observer: a server span per call with a
// child span per stage when tracing, and the call's metrics.
func (t *Telemetry) Observer() pipeline.Observer { return (*observer)(t) }

type observer Telemetry

var (
	_ pipeline.CallObserver  = (*observer)(nil)
	_ pipeline.PieceObserver = (*observer)(nil)
)

type callKey struct{}

// call is the observer's state of one call, carried in its context.
type call struct {
	t   *Telemetry
	c   *pipeline.Call
	end func(*pipeline.Error) // endStage, bound once

	stage    pipeline.Stage // the stage in progress
	resolved bool           // resolve passed: the securable and method are known
	err      *pipeline.Error

	// Tracing. span is the server span, started once the trace context
	// is known (after resolve: an MCP message may carry its own);
	// authenticate and resolve are recorded and emitted then.
	span      trace.Span
	spanCtx   context.Context
	stageSpan trace.Span
	early     [2]stageTime
	attempts  int // attempt spans started live (StartAttempt)

	llmReq     *LLMRequest
	llm        *LLMResult
	firstToken time.Time
	capture    bool   // trace_payloads: content on the span
	output     []byte // the answer's pieces, when capturing (bounded)
}

type stageTime struct {
	start, end time.Time
	err        *pipeline.Error
}

func callOf(ctx context.Context) *call {
	st, _ := ctx.Value(callKey{}).(*call)
	return st
}

func (o *observer) StartCall(ctx context.Context, c *pipeline.Call) context.Context {
	st := &call{t: (*Telemetry)(o), c: c}
	st.end = st.endStage
	return context.WithValue(ctx, callKey{}, st)
}

func (o *observer) StartStage(ctx context.Context, c *pipeline.Call, s pipeline.Stage) (context.Context, func(*pipeline.Error)) {
	st := callOf(ctx)
	if st == nil {
		return ctx, nil
	}
	st.stage = s
	if o.tracer == nil {
		return ctx, st.end
	}
	if st.span == nil {
		if int(s) < len(st.early) {
			st.early[s].start = time.Now()
		}
		return ctx, st.end
	}
	sctx, sp := o.tracer.Start(st.spanCtx, s.String())
	st.stageSpan = sp
	return sctx, st.end
}

// endStage ends the stage in progress with its error.
func (st *call) endStage(err *pipeline.Error) {
	s := st.stage
	if err != nil && st.err == nil {
		st.err = err
	}
	if s == pipeline.StageResolve && err == nil {
		st.resolved = true
	}
	if st.t.tracer == nil {
		return
	}
	if st.span == nil {
		if int(s) < len(st.early) {
			st.early[s].end, st.early[s].err = time.Now(), err
		}
		if s >= pipeline.StageResolve || err != nil {
			st.begin()
		}
		return
	}
	if sp := st.stageSpan; sp != nil {
		st.stageSpan = nil
		if err != nil {
			sp.SetAttributes(attribute.String("error.type", err.Kind.String()))
			sp.SetStatus(codes.Error, err.Message)
		}
		sp.End()
	}
}

// begin starts the server span: the child of the call's trace context
// (the MCP message's _meta, else the request's headers), linked to the
// headers' context when the message had its own. The call's TraceID and
// SpanID become the span's, then the stages run so far are emitted.
func (st *call) begin() {
	c, t := st.c, st.t
	parent := c.Ctx()
	if sc, ok := spanContextOf(c.TraceParent, c.TraceState); ok {
		parent = trace.ContextWithRemoteSpanContext(parent, sc)
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(c.Start)}
	if h := c.Request.Header.Get("traceparent"); h != "" && h != c.TraceParent {
		if hsc, ok := spanContextOf(h, c.Request.Header.Get("tracestate")); ok {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: hsc}))
		}
	}
	ctx, span := t.tracer.Start(parent, c.Action, opts...)
	st.span, st.spanCtx = span, ctx
	sc := span.SpanContext()
	c.SetSpan(sc.TraceID().String(), sc.SpanID().String())
	for i := range st.early {
		e := &st.early[i]
		if e.start.IsZero() || e.end.IsZero() {
			continue
		}
		_, sp := t.tracer.Start(ctx, pipeline.Stage(i).String(), trace.WithTimestamp(e.start))
		if e.err != nil {
			sp.SetAttributes(attribute.String("error.type", e.err.Kind.String()))
			sp.SetStatus(codes.Error, e.err.Message)
		}
		sp.End(trace.WithTimestamp(e.end))
	}
}

// Finished records the call's metrics and ends its span.
func (o *observer) Finished(c *pipeline.Call) {
	st := callOf(c.Ctx())
	if st == nil {
		return
	}
	t := (*Telemetry)(o)
	total := time.Since(c.Start)
	proto := c.ServiceName()
	service, method := "", "unresolved"
	if st.resolved {
		service, method = c.Securable.Name, c.Action
	}
	decision, _ := c.Decided()
	m := t.m
	m.counter(m.requests, childKey{childRequests, [5]string{proto, service, method, decision, statusClass(c.Status)}}, 5).Inc()
	ps := [5]string{proto, service}
	m.observer(m.duration, childKey{childDuration, ps}, 2).Observe(total.Seconds())
	if c.UpstreamTime > 0 {
		m.observer(m.upstream, childKey{childUpstream, ps}, 2).Observe(c.UpstreamTime.Seconds())
		m.observer(m.overhead, childKey{childOverhead, ps}, 2).Observe(max(total-c.UpstreamTime, 0).Seconds())
	}
	st.observeStages(proto)
	if e := st.err; e != nil {
		switch e.Kind {
		case pipeline.KindLimited:
			m.refusals.WithLabelValues(proto, service, limitKind(e)).Inc()
		case pipeline.KindUpstream:
			m.upstreamErrors.WithLabelValues(proto, service, upstreamErrorType(e)).Inc()
		}
	}
	if r := st.llm; r != nil {
		st.meterLLM(service)
	}
	for i := range c.Guardrails {
		g := &c.Guardrails[i]
		m.guardrails.WithLabelValues(g.Policy, g.Mode, g.Action).Inc()
	}
	if t.debug {
		c.Logger().Debug().Str("protocol", proto).Str("service", service).Str("method", c.Action).Str("decision", decision).
			Int("status", c.Status).Dur("duration", total).Dur("upstream", c.UpstreamTime).Msg("gateway call")
	}
	if t.tracer != nil {
		if st.span == nil {
			st.begin() // a call that panicked before its span began
		}
		st.finishSpan(service, total)
	}
}

// observeStages records the stage timings.
func (st *call) observeStages(proto string) {
	m := st.t.m
	obs, ok := m.stageObs.Load(proto)
	if !ok {
		var arr [pipeline.NumStages]prometheus.Observer
		for i := range arr {
			arr[i] = m.stages.WithLabelValues(proto, pipeline.Stage(i).String())
		}
		obs, _ = m.stageObs.LoadOrStore(proto, &arr)
	}
	arr := obs.(*[pipeline.NumStages]prometheus.Observer)
	for i, d := range st.c.Timings {
		if d > 0 {
			arr[i].Observe(d.Seconds())
		}
	}
}

// limitKind says which kind of limit refused a call: "budget" for budget
// refusals (the Error's LimitInfo says Budget, or its Cause is a limits
// engine's refusal of another kind than a rate limit), else "rate_limit".
func limitKind(e *pipeline.Error) string {
	if errors.Is(e.Cause, pipeline.ErrInFlight) {
		return "in_flight"
	}
	if e.Limit != nil && e.Limit.Budget {
		return "budget"
	}
	var r *limits.Refusal
	if errors.As(e.Cause, &r) && r.Kind != limits.RateLimited {
		return "budget"
	}
	return "rate_limit"
}

func upstreamErrorType(e *pipeline.Error) string {
	switch e.Status {
	case 504:
		return "timeout"
	case 502, 503:
		return "unavailable"
	}
	if e.Status >= 400 && e.Status < 500 {
		return "refused"
	}
	return "other"
}

// finishSpan sets the server span's attributes and ends it.
func (st *call) finishSpan(service string, total time.Duration) {
	c, sp := st.c, st.span
	decision, reason := c.Decided()
	// The span copies the attributes: the slice goes back to the pool.
	pooled, _ := st.t.attrs.Get().(*[]attribute.KeyValue)
	if pooled == nil {
		pooled = new([]attribute.KeyValue)
	}
	attrs := (*pooled)[:0]
	defer func() {
		clear(attrs)
		*pooled = attrs[:0]
		st.t.attrs.Put(pooled)
	}()
	attrs = append(attrs,
		attribute.String("mandate.decision", decision),
		attribute.String("mandate.event_id", c.EventID),
		attribute.Int("http.response.status_code", c.Status),
		attribute.String("http.request.method", c.Request.Method),
	)
	if reason != "" {
		attrs = append(attrs, attribute.String("mandate.reason", truncate(reason, 1024)))
	}
	if c.SourceIP != "" {
		attrs = append(attrs, attribute.String("client.address", c.SourceIP))
	}
	if id := c.Identity; id != nil {
		attrs = append(attrs, attribute.String("mandate.user", id.Subject))
		if id.Actor != "" {
			attrs = append(attrs, attribute.String("mandate.agent", id.Actor))
		}
	}
	if c.Decision.Revision != 0 {
		attrs = append(attrs, attribute.Int64("mandate.revision", int64(c.Decision.Revision)))
	}
	if c.UpstreamTime > 0 {
		attrs = append(attrs, attribute.Float64("mandate.upstream_ms", float64(c.UpstreamTime.Microseconds())/1000),
			attribute.Float64("mandate.overhead_ms", float64(max(total-c.UpstreamTime, 0).Microseconds())/1000))
	}
	name := c.Action
	switch c.ServiceName() {
	case "mcp":
		name = st.mcpAttrs(&attrs, service)
	case "llm":
		name = st.llmAttrs(&attrs, service)
	default:
		if service != "" {
			attrs = append(attrs, attribute.String("mandate.service", service))
		}
	}
	errType := c.ErrorType
	if errType == "" && st.err != nil && st.err.Kind != pipeline.KindClientGone {
		errType = st.err.Kind.String()
	}
	if errType == "" && c.Status >= 500 {
		errType = strconv.Itoa(c.Status)
	}
	if errType != "" {
		attrs = append(attrs, attribute.String("error.type", errType))
		msg := c.ErrorMessage
		if msg == "" && st.err != nil {
			msg = st.err.Message
		}
		sp.SetStatus(codes.Error, truncate(msg, 1024))
	}
	if st.capture {
		if c.Content != nil && len(c.Content.Body) > 0 {
			attrs = append(attrs, attribute.String("mandate.request.content", truncate(string(c.Content.Body), maxContent)))
		}
		if len(st.output) > 0 {
			attrs = append(attrs, attribute.String("mandate.response.content", string(st.output)))
		}
	}
	if name != "" {
		sp.SetName(name)
	}
	if st.firstToken.IsZero() && st.llm != nil && st.llm.TTFT > 0 {
		sp.AddEvent("gen_ai.first_token", trace.WithTimestamp(c.Start.Add(st.llm.TTFT)))
	}
	for i := range c.Guardrails {
		g := &c.Guardrails[i]
		sp.AddEvent("mandate.guardrail", trace.WithAttributes(attribute.String("mandate.guardrail.policy", g.Policy),
			attribute.String("mandate.guardrail.name", g.Guardrail), attribute.String("mandate.guardrail.phase", g.Phase),
			attribute.String("mandate.guardrail.mode", g.Mode), attribute.String("mandate.guardrail.action", g.Action)))
	}
	sp.SetAttributes(attrs...)
	st.recordAttempts()
	sp.End()
}

// mcpAttrs are the MCP semantic conventions' attributes; the span name is
// "{mcp.method.name} {target}".
func (st *call) mcpAttrs(attrs *[]attribute.KeyValue, service string) string {
	c := st.c
	a := append(*attrs, attribute.String("mcp.method.name", c.Action))
	if service != "" {
		a = append(a, attribute.String("mandate.connection", service))
	}
	if c.SessionID != "" {
		a = append(a, attribute.String("mcp.session.id", c.SessionID))
	}
	if c.ProtocolVersion != "" {
		a = append(a, attribute.String("mcp.protocol.version", c.ProtocolVersion))
	}
	if c.RequestID != "" && c.RequestID != "null" {
		a = append(a, attribute.String("jsonrpc.request.id", c.RequestID))
	}
	if code := c.ErrorType; code != "" && code != "tool_error" {
		a = append(a, attribute.String("rpc.response.status_code", code))
	}
	name := c.Action
	if c.Item != "" && c.Action == "tools/call" {
		a = append(a, attribute.String("gen_ai.tool.name", c.Item), attribute.String("gen_ai.operation.name", "execute_tool"))
		name += " " + c.Item
	}
	a = append(a, attribute.String("network.transport", "tcp"), attribute.String("network.protocol.name", "http"))
	*attrs = a
	return name
}

// maxContent bounds each content attribute (trace_payloads).
const maxContent = 32 << 10

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut at a rune boundary.
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

// Piece implements pipeline.PieceObserver: the answer's pieces as the
// client gets them (after the result guardrails), kept for the span when
// the call captures its payloads.
func (o *observer) Piece(c *pipeline.Call, _ string, body []byte, _ bool) {
	st := callOf(c.Ctx())
	if st == nil || !st.capture || st.span == nil {
		return
	}
	room := maxContent - len(st.output)
	if room <= 0 {
		return
	}
	if len(body) > room {
		body = body[:room]
	}
	st.output = append(st.output, body...)
}

// requestTagsJSON renders request tags for mandate.request_tags.
func requestTagsJSON(tags map[string]string) string {
	if len(tags) == 0 {
		return ""
	}
	b, _ := json.Marshal(tags)
	return string(b)
}
