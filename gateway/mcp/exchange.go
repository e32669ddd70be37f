package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/identity"
	"github.com/mandatehq/mandate/gateway/internal/hop"
	"github.com/mandatehq/mandate/gateway/internal/jsonspan"
	"github.com/mandatehq/mandate/gateway/pipeline"
	"github.com/mandatehq/mandate/gateway/telemetry"

	"github.com/mandatehq/mandate/gateway/internal/sse"
)

// exchange is the MCP side of one request (one JSON-RPC message, or one
// GET or DELETE): the pipeline.Protocol of the call, and its MCP state.
// The pipeline runs the stages; the methods below are the protocol's
// parts of them, in the order they run.
type exchange struct {
	h    *Handler
	call pipeline.Call
	name string // the connection as named in the path

	proto string // MCP-Protocol-Version ("" = not sent)
	conn  *gateway.Connection
	msg   message
	tool  string // tools/call
	args  []byte // tools/call arguments
	mcpNm string // 2026-07-28 Mcp-Name value

	sess    *session // the session the request belongs to
	newSess *session // created by this initialize, added once answered

	rpcErr      int  // JSON-RPC error code of the answer
	sawResponse bool // a POST's stream carried its response
	openedEarly bool // a POST's stream was committed before its response

	pctx policyContext // the call's LazyContext
}

var _ pipeline.Protocol = (*exchange)(nil)

// rpcDetail is pipeline.Error.Detail for the errors the adapter makes
// itself: the JSON-RPC code and data, and the Allow header of a 405.
type rpcDetail struct {
	code  int
	data  any
	allow string
}

func invalid(status, code int, msg, reason string) *pipeline.Error {
	return &pipeline.Error{Kind: pipeline.KindInvalid, Status: status, Message: msg, Reason: reason, Detail: rpcDetail{code: code}}
}

func (x *exchange) Service() string { return "mcp" }

// Resolve (stage resolve): the MCP message, the connection, the session,
// include_tools, and the authorization question.
func (x *exchange) Resolve(ctx context.Context, c *pipeline.Call) error {
	r := c.Request
	x.proto = r.Header.Get(hdrProtocol)
	c.ProtocolVersion = x.proto
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	default:
		return &pipeline.Error{Kind: pipeline.KindInvalid, Status: http.StatusMethodNotAllowed, Reason: "HTTP method not allowed",
			Message: "HTTP method " + r.Method + " is not allowed", Detail: rpcDetail{code: CodeInvalidRequest, allow: "GET, POST, DELETE"}}
	}
	if x.proto != "" && !supportedVersion(x.proto) {
		return &pipeline.Error{Kind: pipeline.KindInvalid, Status: http.StatusBadRequest, Reason: "unsupported protocol version",
			Message: fmt.Sprintf("unsupported MCP-Protocol-Version %q (supported: %s)", x.proto, strings.Join(SupportedProtocolVersions, ", ")),
			Detail:  rpcDetail{code: CodeUnsupportedProtocolVersion, data: map[string]any{"supported": SupportedProtocolVersions, "requested": x.proto}}}
	}
	if r.Method == http.MethodPost {
		if err := x.decode(c); err != nil {
			return err
		}
	} else if stateless(x.proto) {
		return &pipeline.Error{Kind: pipeline.KindInvalid, Status: http.StatusMethodNotAllowed, Reason: "no " + r.Method + " in " + x.proto,
			Message: fmt.Sprintf("%s is not part of MCP %s: send requests with POST", r.Method, x.proto),
			Detail:  rpcDetail{code: CodeInvalidRequest, allow: "POST"}}
	}

	// The connection.
	conn, err := x.h.cfg.Connections.Connection(ctx, x.name)
	if err == nil && conn == nil {
		err = gateway.ErrNoConnection
	}
	if err != nil {
		if errors.Is(err, gateway.ErrNoConnection) {
			return &pipeline.Error{Kind: pipeline.KindNotFound, Reason: "no such connection",
				Message: fmt.Sprintf("connection %s does not exist", x.name), Detail: rpcDetail{code: CodeInvalidRequest}}
		}
		x.h.log.Error().Err(err).Str("connection", x.name).Msg("connection lookup failed; refusing the request")
		return &pipeline.Error{Kind: pipeline.KindUnavailable, Status: http.StatusServiceUnavailable, Reason: "connection lookup failed",
			Message: fmt.Sprintf("connection %s cannot be resolved right now; retry later", x.name), Cause: err}
	}
	x.conn = conn
	c.Securable = catalogConnection(conn.Name)
	c.Upstream = conn
	if err := x.bindSession(c); err != nil {
		return err
	}
	if x.msg.method == "tools/call" && !catalog.ToolAllowed(conn.Options[catalog.OptIncludeTools], x.tool) {
		// Hidden tools answer like tools that do not exist (the MCP SDKs'
		// own message), so include_tools does not reveal them.
		return &pipeline.Error{Kind: pipeline.KindNotFound, Status: http.StatusOK, Reason: "tool not in the connection's include_tools",
			Message: fmt.Sprintf("unknown tool %q", x.tool), Detail: rpcDetail{code: CodeInvalidParams}}
	}

	// The authorization question: USE_CONNECTION with the message's
	// context; for tools/call the tool and its arguments are the item.
	c.Privilege = catalog.PrivUseConnection
	x.pctx = x.policyContext(c.Action, x.tool, x.args)
	c.LazyContext = &x.pctx
	if x.tool != "" {
		c.Item, c.ItemKeys = x.tool, itemKeys
	}
	return nil
}

var itemKeys = []string{"tool", "arguments"}

// decode reads one POSTed JSON-RPC message.
func (x *exchange) decode(c *pipeline.Call) error {
	r := c.Request
	if mediaType(r.Header.Get("Content-Type")) != "application/json" {
		return invalid(http.StatusUnsupportedMediaType, CodeInvalidRequest, "Content-Type must be application/json", "unsupported content type")
	}
	body, err := readBody(c.Writer(), r, x.h.cfg.MaxBody)
	c.BytesIn = int64(len(body))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return invalid(http.StatusRequestEntityTooLarge, CodeInvalidRequest, fmt.Sprintf("request body exceeds %d bytes", x.h.cfg.MaxBody), "request body too large")
		}
		return &pipeline.Error{Kind: pipeline.KindClientGone, Message: "client disconnected",
			Audit: "reading the request body: " + err.Error(), Cause: err}
	}
	m, fail := parseMessage(body)
	x.msg = m
	c.RequestID = idText(m.id)
	if fail != nil {
		return invalid(fail.status, fail.code, fail.msg, "malformed message")
	}
	c.Action = m.action()
	if m.kind != kindResponse && !methodAllowed(m.method) {
		status := http.StatusOK
		if m.kind == kindNotification {
			status = http.StatusBadRequest // a notification has no JSON-RPC answer
		}
		return invalid(status, CodeMethodNotFound, fmt.Sprintf("method %q not allowed by the gateway", m.method), "method not allowed by the gateway")
	}
	if stateless(x.proto) && m.kind != kindResponse {
		if got := r.Header.Get(hdrMethod); got != m.method {
			return invalid(http.StatusBadRequest, CodeHeaderMismatch,
				fmt.Sprintf("header mismatch: Mcp-Method header %q does not match the body's method %q", got, m.method), "Mcp-Method header mismatch")
		}
		if name, has := nameOf(m.method, m.params); has {
			if got := r.Header.Get(hdrName); got != name || name == "" {
				return invalid(http.StatusBadRequest, CodeHeaderMismatch,
					fmt.Sprintf("header mismatch: Mcp-Name header %q does not match the body's %q", got, name), "Mcp-Name header mismatch")
			}
			x.mcpNm = name
		}
	}
	if m.method == "tools/call" {
		tc, ok := parseToolCall(m.params)
		if !ok {
			return invalid(http.StatusOK, CodeInvalidParams, `invalid tools/call params: expected {"name": string, "arguments"?: object}`, "invalid tools/call params")
		}
		x.tool, x.args = tc.name, tc.args
	}
	// The message's own trace context (params._meta), which the call
	// continues rather than the headers' (OpenTelemetry's MCP
	// conventions).
	if tp, ts, ok := metaTrace(body); ok {
		c.ContinueTrace(tp, ts)
	}
	c.Content = &pipeline.Content{Format: pipeline.FormatMCP, Body: body}
	return nil
}

// bindSession: the gateway session id presented must be one the gateway
// handed to this subject and actor on this connection.
func (x *exchange) bindSession(c *pipeline.Call) error {
	if stateless(x.proto) {
		return nil // 2026-07-28 has no sessions
	}
	sid := c.Request.Header.Get(hdrSession)
	if x.msg.method == "initialize" {
		return nil // a new session follows
	}
	if sid == "" {
		if v, ok := x.h.stateful.Load(x.conn.Name); ok && v.(bool) && x.msg.method != "ping" {
			return invalid(http.StatusBadRequest, CodeInvalidRequest, "Mcp-Session-Id header required: send initialize first and use the session id it returns", "missing session id")
		}
		return nil
	}
	c.SessionID = sid
	s := x.h.session(sid, c.Identity.Subject, c.Identity.Actor, x.conn.Name)
	if s == nil {
		return &pipeline.Error{Kind: pipeline.KindNotFound, Reason: "unknown session",
			Message: "session not found: it expired or was ended; initialize a new session", Detail: rpcDetail{code: CodeInvalidRequest}}
	}
	x.sess = s
	return nil
}

// policyContext is the context of an authorization question about the
// call's connection, for method, tool and arguments. Its map is built
// only when a policy applies (enforce.Request.LazyContext).
type policyContext struct {
	method, tool                   string
	args                           []byte
	sourceIP, userAgent, sessionID string
}

func (x *exchange) policyContext(method, tool string, args []byte) policyContext {
	c := &x.call
	return policyContext{method: method, tool: tool, args: args, sourceIP: c.SourceIP,
		userAgent: c.Request.UserAgent(), sessionID: c.SessionID}
}

func (p *policyContext) PolicyContext() map[string]any {
	ctx := make(map[string]any, 7)
	ctx["method"] = p.method
	ctx["source_ip"] = p.sourceIP
	ctx["user_agent"] = p.userAgent
	ctx["session_id"] = p.sessionID
	if p.tool != "" {
		ctx["tool"] = p.tool
	}
	if p.args != nil {
		var v any
		if json.Unmarshal(p.args, &v) == nil {
			ctx["arguments"] = v
		}
	}
	return ctx
}

// Send (stage forward): the message to the upstream, with only the
// headers of the transport, the gateway's trace context and the
// upstream's own credential. The inbound Authorization header and cookies
// never go on. The request's context is the client's, so a client that
// goes away cancels it.
func (x *exchange) Send(ctx context.Context, c *pipeline.Call, cred string) (*http.Response, error) {
	r := c.Request
	ctx, end := telemetry.StartAttempt(ctx, telemetry.Attempt{Destination: x.conn.Name, URL: x.conn.URL})
	tp, ts := telemetry.Outbound(ctx, c)
	var rd io.Reader
	var body []byte
	if c.Content != nil {
		body = withMetaTraceparent(c.Content.Body, tp)
		rd = bytes.NewReader(body)
	}
	u, err := http.NewRequestWithContext(ctx, r.Method, x.conn.URL, rd)
	if err != nil {
		end(0, err)
		return nil, &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway,
			Message: fmt.Sprintf("upstream %s has an invalid url", x.conn.Name), Audit: "building the upstream request: " + err.Error(), Cause: err}
	}
	hd := u.Header
	// The values share one backing array (one allocation instead of one
	// per header); each is its own full slice, so no append can reach the
	// next.
	vals := make([]string, 0, 8)
	set := func(k, v string) {
		vals = append(vals, v)
		n := len(vals)
		hd[k] = vals[n-1 : n : n]
	}
	if accept := r.Header.Values("Accept"); len(accept) > 0 {
		hd["Accept"] = accept
	} else if r.Method == http.MethodGet {
		set("Accept", "text/event-stream")
	} else {
		set("Accept", "application/json, text/event-stream")
	}
	if body != nil {
		set("Content-Type", "application/json")
	}
	if x.proto != "" {
		set(hdrProtocol, x.proto)
	}
	if x.sess != nil && x.sess.upstream != "" {
		set(hdrSession, x.sess.upstream)
	}
	if v := r.Header.Get(hdrLastEventID); v != "" {
		set(hdrLastEventID, v)
	}
	if stateless(x.proto) && x.msg.method != "" {
		set(hdrMethod, x.msg.method)
		if x.mcpNm != "" {
			set(hdrName, x.mcpNm)
		}
		for k, v := range r.Header {
			if strings.HasPrefix(k, hdrParamPrefix) {
				hd[k] = v
			}
		}
	}
	set("Traceparent", tp)
	if ts != "" {
		set("Tracestate", ts)
	}
	set("User-Agent", "mandate-gateway")
	if cred != "" {
		set("Authorization", cred)
	}
	resp, err := hop.Send(x.h.client, true, u) // New set noRedirect on every client
	if err != nil {
		end(0, err)
	} else {
		end(resp.StatusCode, nil)
	}
	return resp, err
}

// Relay (stage guard_result) answers the client from the upstream's
// response.
func (x *exchange) Relay(ctx context.Context, c *pipeline.Call, resp *http.Response) error {
	st := resp.StatusCode
	ct := mediaType(resp.Header.Get("Content-Type"))
	r := c.Request
	if x.msg.method == "initialize" && st/100 == 2 && !stateless(x.proto) {
		usid := resp.Header.Get(hdrSession)
		x.h.stateful.Store(x.conn.Name, usid != "")
		if usid != "" {
			x.newSess = x.h.newSession(&session{upstream: usid,
				subject: c.Identity.Subject, actor: c.Identity.Actor, conn: x.conn.Name,
				elicitURL: wantsURLElicitation(x.msg.params, true),
			})
			c.SessionID = x.newSess.id
		}
	}
	if r.Method == http.MethodDelete && x.sess != nil {
		x.h.sessions.remove(x.sess.id)
		x.sess = nil
	}
	if st == http.StatusNotFound && x.sess != nil {
		// The upstream no longer knows the session: neither does the
		// gateway, and the client gets the 404 that makes it start over.
		x.h.sessions.remove(x.sess.id)
		x.sess = nil
	}
	if v := resp.Header.Get("Retry-After"); v != "" && (st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable) {
		c.Writer().Header().Set("Retry-After", v)
	}
	upstreamErr := func(status int, msg string) error {
		drain(resp.Body)
		return &pipeline.Error{Kind: pipeline.KindUpstream, Status: status, Message: msg, Audit: fmt.Sprintf("upstream answered HTTP %d", st)}
	}
	switch {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		// The agent's token is fine: it must not be sent back to its
		// authorization server.
		return upstreamErr(http.StatusBadGateway, fmt.Sprintf("upstream %s refused the gateway's credentials (HTTP %d)", x.conn.Name, st))
	case st >= 500:
		return upstreamErr(http.StatusBadGateway, fmt.Sprintf("upstream %s unavailable: it answered HTTP %d", x.conn.Name, st))
	case st >= 300 && st < 400:
		return upstreamErr(http.StatusBadGateway, fmt.Sprintf("upstream %s answered with a redirect (HTTP %d); check the connection's url", x.conn.Name, st))
	case st >= 400 || st < 200:
		return x.relayRefusal(c, resp, ct)
	case ct == "text/event-stream":
		return x.relaySSE(ctx, c, resp)
	case r.Method != http.MethodPost || st == http.StatusAccepted || st == http.StatusNoContent:
		drain(resp.Body)
		return x.answer(c, st, "", nil)
	case ct == "application/json":
		return x.relayJSON(ctx, c, resp)
	}
	drain(resp.Body)
	return &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway, Audit: fmt.Sprintf("upstream answered Content-Type %q", ct),
		Message: fmt.Sprintf("upstream %s returned an invalid response (Content-Type %q)", x.conn.Name, ct)}
}

// answer commits the call and writes a whole answer.
func (x *exchange) answer(c *pipeline.Call, status int, ctype string, body []byte) error {
	c.Status, c.BytesOut = status, int64(len(body))
	if err := c.Commit(true); err != nil {
		return err
	}
	w := c.Writer()
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	if status != http.StatusNoContent && status != http.StatusNotModified {
		// The length declared: the pipeline then sends the answer once
		// the call is metered and recorded, before the call's end.
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	x.writeHeader(c, status)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
	return nil
}

// writeHeader sends the response headers: the gateway session id (adding
// a session created by this call to the table first), then the status.
// Only after the call's record is durable (Commit).
func (x *exchange) writeHeader(c *pipeline.Call, status int) {
	if x.newSess != nil {
		x.h.sessions.add(x.newSess, x.h.now())
		x.sess, x.newSess = x.newSess, nil
	}
	w := c.Writer()
	if x.sess != nil {
		w.Header().Set(hdrSession, x.sess.id)
	}
	c.Status = status
	w.WriteHeader(status)
}

// relayRefusal passes on an upstream 4xx: a JSON-RPC error body as is
// (protocol version negotiation depends on it), anything else as a
// JSON-RPC error that quotes the start of the upstream's text.
func (x *exchange) relayRefusal(c *pipeline.Call, resp *http.Response, ct string) error {
	st := resp.StatusCode
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	drain(resp.Body)
	c.ErrorMessage = fmt.Sprintf("upstream answered HTTP %d", st)
	if st < 400 {
		st = http.StatusBadGateway
	}
	if ct == "application/json" && validJSON(body) {
		if ri := inspect(body); ri.errCode != 0 {
			x.setOutcome(c, ri)
			return x.answer(c, st, "application/json", body)
		}
	}
	text := strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == utf8.RuneError {
			return ' '
		}
		return r
	}, string(body)))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	msg := fmt.Sprintf("upstream %s rejected the request (HTTP %d)", x.conn.Name, resp.StatusCode)
	if text != "" {
		msg += ": " + text
	}
	return &pipeline.Error{Kind: pipeline.KindUpstream, Status: st, Message: msg, Audit: c.ErrorMessage, Detail: rpcDetail{code: CodeInvalidRequest}}
}

func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 256<<10)) }

// relayJSON relays an application/json response: read whole (bounded),
// checked, filtered for tools/list, guarded, committed, then written.
func (x *exchange) relayJSON(ctx context.Context, c *pipeline.Call, resp *http.Response) error {
	pooled := x.h.bodies.Get()
	buf := bytes.NewBuffer(*pooled)
	defer func() {
		*pooled = buf.Bytes()[:0] // the buffer as grown, for the next answer
		x.h.bodies.Put(pooled)
	}()
	max := x.h.cfg.MaxResponseBody
	if resp.ContentLength > 0 && resp.ContentLength <= max {
		buf.Grow(int(resp.ContentLength) + 1)
	}
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, max+1)); err != nil {
		if ctx.Err() != nil {
			return err // the client left
		}
		return &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway, Audit: "reading the upstream response: " + err.Error(),
			Message: fmt.Sprintf("upstream %s unavailable: the response was cut off", x.conn.Name)}
	}
	if int64(buf.Len()) > max {
		return &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway, Audit: "upstream response too large",
			Message: fmt.Sprintf("upstream %s returned a response larger than %d bytes", x.conn.Name, max)}
	}
	data := buf.Bytes()
	toolsList := x.msg.method == "tools/list"
	if toolsList && !validJSON(data) || !framedObject(data) {
		return &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway, Audit: "upstream returned invalid JSON",
			Message: fmt.Sprintf("upstream %s returned an invalid response (not JSON)", x.conn.Name)}
	}
	if toolsList {
		var err error
		if data, err = x.h.filterToolsList(ctx, x, data); err != nil {
			return &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway, Audit: "upstream tools/list result unreadable: " + err.Error(),
				Message: fmt.Sprintf("upstream %s returned an invalid tools/list result", x.conn.Name)}
		}
	}
	data, gerr := c.GuardPiece(ctx, pipeline.FormatMCP, data, true)
	if gerr != nil {
		return gerr
	}
	if bytes.Contains(data, []byte(`"error"`)) || bytes.Contains(data, []byte(`"isError"`)) {
		x.setOutcome(c, inspect(data))
	}
	return x.answer(c, resp.StatusCode, "application/json", data)
}

// relaySSE relays an event stream event by event, flushing after each.
// The call is committed before the first event that carries a message
// (for GET streams: before anything), and finally when the response
// passes; see doc.go.
func (x *exchange) relaySSE(ctx context.Context, c *pipeline.Call, resp *http.Response) error {
	r, w := c.Request, c.Writer()
	if r.Method == http.MethodGet {
		c.Status = resp.StatusCode
		if err := c.Commit(false); err != nil {
			return err
		}
	}
	rc := http.NewResponseController(w)
	sr := sse.NewReader(resp.Body, int(x.h.cfg.MaxResponseBody))
	defer sr.Release()
	headers := func() {
		if !c.Started() {
			hd := w.Header()
			hd.Set("Content-Type", "text/event-stream")
			hd.Set("Cache-Control", "no-cache")
			hd.Set("X-Accel-Buffering", "no")
			x.writeHeader(c, resp.StatusCode)
		}
	}
	var final responseInfo
	var readErr error
	committed := r.Method == http.MethodGet
	for {
		if readErr = sr.Next(); readErr != nil {
			break
		}
		ev := sr.Raw
		if len(sr.Data) > 0 && !isMessage(sr) {
			// An event of another type: MCP clients do not read one,
			// and nothing here inspected it.
			continue
		}
		if isMessage(sr) {
			if !framedObject(sr.Data) {
				readErr = errors.New("upstream sent an event that is not a JSON object")
				break
			}
			ri := inspect(sr.Data)
			data := sr.Data
			if ri.response && (x.msg.method == "tools/list" || r.Method == http.MethodGet) {
				if !validJSON(data) {
					readErr = errors.New("upstream sent an event that is not JSON")
					break
				}
				filtered, err := x.h.filterToolsList(ctx, x, data)
				if err != nil {
					readErr = fmt.Errorf("upstream tools/list result unreadable: %w", err)
					break
				}
				data = filtered
			}
			guarded, gerr := c.GuardPiece(ctx, pipeline.FormatMCP, data, ri.response)
			if gerr != nil {
				return gerr
			}
			if len(guarded) == 0 {
				continue // held back by the guard
			}
			if len(guarded) != len(sr.Data) || &guarded[0] != &sr.Data[0] {
				ev = sr.WithData(guarded)
			}
			switch {
			case ri.response && r.Method == http.MethodPost && !x.sawResponse:
				// The outcome: committed with the event counted.
				x.sawResponse, final = true, ri
				x.setOutcome(c, ri)
				c.Status = resp.StatusCode
				c.BytesOut += int64(len(ev))
				err := c.Commit(true)
				c.BytesOut -= int64(len(ev))
				if err != nil {
					return err
				}
			case !committed:
				// Notifications or server requests before the response.
				c.Status = resp.StatusCode
				if err := c.Commit(false); err != nil {
					return err
				}
				x.openedEarly = true
			}
			committed = true
		}
		headers()
		if _, err := w.Write(ev); err != nil {
			readErr = err
			break
		}
		c.BytesOut += int64(len(ev))
		if err := rc.Flush(); err != nil {
			readErr = err
			break
		}
	}
	if x.openedEarly {
		x.h.log.Info().Str("connection", x.conn.Name).Str("action", c.Action).Str("request_id", c.RequestID).
			Str("trace_id", c.TraceID).Bool("response", final.response).Int("jsonrpc_error", final.errCode).
			Int64("bytes_out", c.BytesOut).Dur("duration", time.Since(c.Start)).Msg("mcp stream ended")
	}
	if ctx.Err() != nil {
		return readErr // the client left
	}
	clean := readErr == nil || errors.Is(readErr, io.EOF) || errors.Is(readErr, io.ErrUnexpectedEOF)
	switch {
	case r.Method == http.MethodPost && !x.sawResponse && !x.openedEarly:
		// The stream ended before any message.
		why := "ended the stream without a response"
		if !clean {
			why = "sent an unreadable stream: " + readErr.Error()
		}
		return &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway, Audit: "upstream " + why,
			Message: fmt.Sprintf("upstream %s %s", x.conn.Name, why)}
	case !clean:
		x.h.log.Warn().Err(readErr).Str("connection", x.conn.Name).Msg("upstream stream broken")
		return &pipeline.Error{Kind: pipeline.KindUpstream, Status: http.StatusBadGateway, Audit: "upstream stream broken: " + readErr.Error(),
			Message: fmt.Sprintf("upstream %s unavailable: the stream broke before the response", x.conn.Name)}
	}
	return nil
}

// setOutcome records the JSON-RPC outcome of the answer: its error code,
// or a tool result with isError.
func (x *exchange) setOutcome(c *pipeline.Call, ri responseInfo) {
	x.rpcErr = ri.errCode
	switch {
	case ri.errCode != 0:
		c.ErrorType = strconv.Itoa(ri.errCode)
	case ri.toolError:
		c.ErrorType = "tool_error"
	}
}

// Render builds the JSON-RPC (or, for authentication, RFC 6750) answer to
// err.
func (x *exchange) Render(c *pipeline.Call, err *pipeline.Error) pipeline.Answer {
	if err.Kind == pipeline.KindUnauthenticated && !c.Started() {
		return x.renderAuth(err)
	}
	status, code, msg := err.Status, CodeInternalError, err.Message
	var data any
	hdr := http.Header{}
	request := x.msg.kind == kindRequest
	switch err.Kind {
	case pipeline.KindInvalid, pipeline.KindNotFound, pipeline.KindForbidden:
		code = CodeInvalidRequest
	case pipeline.KindDenied:
		code, msg = CodeDenied, fmt.Sprintf("access to connection %s denied: %s", c.Securable.Name, err.Message)
	case pipeline.KindItemDenied:
		code, msg, status = CodeDenied, fmt.Sprintf("tool %s is not available to you: %s", err.Item, err.Message), http.StatusOK
	case pipeline.KindGuardDenied:
		code = CodeDenied
		if request {
			status = http.StatusOK
		}
	case pipeline.KindLimited:
		code = CodeLimited
	case pipeline.KindSignIn:
		status, code, msg, data = x.signIn(err.SignIn)
	}
	if d, ok := err.Detail.(rpcDetail); ok {
		code, data = d.code, d.data
		if d.allow != "" {
			hdr.Set("Allow", d.allow)
		}
	}
	if err.RetryAfter > 0 {
		hdr.Set("Retry-After", strconv.Itoa(int((err.RetryAfter+time.Second-1)/time.Second)))
	}
	x.rpcErr = code
	c.ErrorType = strconv.Itoa(code)
	body := rpcErrorBody(x.msg.id, code, msg, data)
	if c.Started() {
		// A stream is under way: end it with an error response in place of
		// the one it did not carry.
		if request && !x.sawResponse {
			return pipeline.Answer{Body: sseEvent(body)}
		}
		return pipeline.Answer{}
	}
	return pipeline.Answer{Status: status, ContentType: "application/json", Header: hdr, Body: body}
}

// renderAuth answers a failed authentication per the MCP authorization
// spec (RFC 6750 / RFC 9728): the challenge, and the error as JSON.
func (x *exchange) renderAuth(err *pipeline.Error) pipeline.Answer {
	ae := err.Auth
	hdr := http.Header{}
	hdr.Set("WWW-Authenticate", identity.WWWAuthenticate(ae, x.h.metadataURL(x.name)))
	code := ae.Code
	if code == "" {
		code = "invalid_token"
	}
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": ae.Description})
	return pipeline.Answer{Status: err.Status, ContentType: "application/json", Header: hdr, Body: body}
}

// signIn is the answer to a per_user_oauth call whose user has not
// connected their account: a URL elicitation for clients that declared
// it, else -32003 with the sign-in URL.
func (x *exchange) signIn(sr *gateway.SignInRequiredError) (status, code int, msg string, data any) {
	status = http.StatusOK
	if x.msg.kind != kindRequest {
		status = http.StatusForbidden // nothing to answer with a JSON-RPC response
	}
	msg = sr.Error()
	elicit := x.msg.kind == kindRequest &&
		((x.sess != nil && x.sess.elicitURL) ||
			(x.msg.method == "initialize" && wantsURLElicitation(x.msg.params, true)) ||
			(stateless(x.proto) && wantsURLElicitation(x.msg.params, false)))
	if elicit {
		return status, CodeURLElicitationRequired, msg, map[string]any{
			"elicitations": []map[string]string{{
				"mode": "url", "url": sr.URL, "message": msg, "elicitationId": pipeline.RandomHex(16),
			}},
			"signInUrl": sr.URL,
		}
	}
	return status, CodeSignInRequired, msg, map[string]string{"signInUrl": sr.URL}
}

// auditParams is AuditEvent.RequestParams: sizes and outcome, never
// argument values or credentials.
type auditParams struct {
	Tool              string `json:"tool,omitempty"`
	ArgumentsBytes    *int   `json:"arguments_bytes,omitempty"`
	UpstreamStatus    int    `json:"upstream_status,omitempty"`
	JSONRPCError      int    `json:"jsonrpc_error,omitempty"`
	BytesIn           int64  `json:"bytes_in"`
	BytesOut          int64  `json:"bytes_out"`
	TraceID           string `json:"trace_id"`
	ProtocolVersion   string `json:"protocol_version,omitempty"`
	CredentialRetried bool   `json:"credential_retried,omitempty"`
}

func (x *exchange) AuditParams(c *pipeline.Call) string {
	p := auditParams{
		Tool:              x.tool,
		UpstreamStatus:    c.UpstreamStatus,
		JSONRPCError:      x.rpcErr,
		BytesIn:           c.BytesIn,
		BytesOut:          c.BytesOut,
		TraceID:           c.TraceID,
		ProtocolVersion:   x.proto,
		CredentialRetried: c.CredentialRetried,
	}
	if x.msg.method == "tools/call" && x.tool != "" {
		n := len(x.args)
		p.ArgumentsBytes = &n
	}
	var buf [192]byte
	return string(appendParams(buf[:0], &p))
}

// appendParams appends p as json.Marshal(p) does (TestAuditParamsJSON),
// without its per-call allocations.
func appendParams(b []byte, p *auditParams) []byte {
	b = append(b, '{')
	if p.Tool != "" {
		b = append(b, `"tool":`...)
		b = jsonspan.AppendString(b, p.Tool)
		b = append(b, ',')
	}
	if p.ArgumentsBytes != nil {
		b = append(b, `"arguments_bytes":`...)
		b = strconv.AppendInt(b, int64(*p.ArgumentsBytes), 10)
		b = append(b, ',')
	}
	if p.UpstreamStatus != 0 {
		b = append(b, `"upstream_status":`...)
		b = strconv.AppendInt(b, int64(p.UpstreamStatus), 10)
		b = append(b, ',')
	}
	if p.JSONRPCError != 0 {
		b = append(b, `"jsonrpc_error":`...)
		b = strconv.AppendInt(b, int64(p.JSONRPCError), 10)
		b = append(b, ',')
	}
	b = append(b, `"bytes_in":`...)
	b = strconv.AppendInt(b, p.BytesIn, 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, p.BytesOut, 10)
	b = append(b, `,"trace_id":`...)
	b = jsonspan.AppendString(b, p.TraceID)
	if p.ProtocolVersion != "" {
		b = append(b, `,"protocol_version":`...)
		b = jsonspan.AppendString(b, p.ProtocolVersion)
	}
	if p.CredentialRetried {
		b = append(b, `,"credential_retried":true`...)
	}
	return append(b, '}')
}

// readBody reads the request body, at most max bytes.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, &http.MaxBytesError{Limit: max}
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, max))
	return buf.Bytes(), err
}

func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

type rpcResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcError        `json:"error"`
}

// rpcErrorBody is a JSON-RPC error response to id (null when the message
// had none or could not be read).
func rpcErrorBody(id []byte, code int, msg string, data any) []byte {
	if id == nil {
		id = []byte("null")
	}
	b, err := json.Marshal(rpcResponse{JSONRPC: "2.0", ID: id, Error: rpcError{Code: code, Message: msg, Data: data}})
	if err != nil {
		b, _ = json.Marshal(rpcResponse{JSONRPC: "2.0", ID: id, Error: rpcError{Code: code, Message: msg}})
	}
	return b
}

// sseEvent frames one JSON-RPC message as a server-sent event.
func sseEvent(data []byte) []byte {
	return sse.AppendEvent(make([]byte, 0, len(data)+24), "message", data)
}

// isMessage reports whether sr's event carries a JSON-RPC message: it
// has data and is of the default type, message.
func isMessage(sr *sse.Reader) bool {
	return sr.HasData && len(sr.Data) > 0 && (len(sr.Name) == 0 || string(sr.Name) == "message")
}
