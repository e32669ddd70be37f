package mcp

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/gateway"
)

// call is the state of one request (one JSON-RPC message, or one GET or
// DELETE) through the stages, and the audit event it ends in.
type call struct {
	r        *http.Request
	start    time.Time // monotonic, for latency
	at       time.Time // Config.Now at arrival, the audit time
	name     string    // the path segment
	resource string
	proto    string // MCP-Protocol-Version ("" = not sent)
	traceID  string
	sourceIP string

	id     *gateway.Identity
	conn   *gateway.Connection
	msg    message
	action string // JSON-RPC method, "response", or the HTTP method
	tool   string // tools/call
	args   []byte // tools/call arguments
	mcpNm  string // 2026-07-28 Mcp-Name value

	sessionID string   // the gateway session id presented or created
	sess      *session // the session the request belongs to
	newSess   *session // created by this initialize, added once answered

	bytesIn, bytesOut int64
	upstreamStatus    int
	rpcErr            int
	status            int
	decision, reason  string
	errMsg            string
	streamOpen        bool // recorded before the stream's response
	recorded          bool
	wroteHeader       bool
}

func (h *Handler) newCall(r *http.Request, name string) *call {
	c := &call{
		r:        r,
		start:    time.Now(),
		at:       h.now(),
		name:     name,
		resource: h.resourceURL(name),
		proto:    r.Header.Get(hdrProtocol),
		action:   r.Method,
		decision: "deny",
	}
	c.sourceIP, _, _ = net.SplitHostPort(r.RemoteAddr)
	if c.sourceIP == "" {
		c.sourceIP = r.RemoteAddr
	}
	c.traceID = traceIDOf(r.Header.Get("traceparent"))
	if c.traceID == "" {
		c.traceID = randomHex(16)
	}
	return c
}

func (c *call) deny(reason string) { c.decision, c.reason = "deny", reason }
func (c *call) allow(reason string) {
	c.decision, c.reason = "allow", reason
}

// auditParams is AuditEvent.RequestParams: sizes and outcome, never
// argument values or credentials.
type auditParams struct {
	Tool            string `json:"tool,omitempty"`
	ArgumentsBytes  *int   `json:"arguments_bytes,omitempty"`
	UpstreamStatus  int    `json:"upstream_status,omitempty"`
	JSONRPCError    int    `json:"jsonrpc_error,omitempty"`
	BytesIn         int64  `json:"bytes_in"`
	BytesOut        int64  `json:"bytes_out"`
	TraceID         string `json:"trace_id"`
	ProtocolVersion string `json:"protocol_version,omitempty"`
	// Stream is "open" when the record was written before the stream
	// carried the response (see the durability rule in doc.go).
	Stream string `json:"stream,omitempty"`
}

// event builds the audit event of c as it stands.
func (c *call) event() catalog.AuditEvent {
	p := auditParams{
		Tool:            c.tool,
		UpstreamStatus:  c.upstreamStatus,
		JSONRPCError:    c.rpcErr,
		BytesIn:         c.bytesIn,
		BytesOut:        c.bytesOut,
		TraceID:         c.traceID,
		ProtocolVersion: c.proto,
	}
	if c.msg.method == "tools/call" && c.tool != "" {
		n := len(c.args)
		p.ArgumentsBytes = &n
	}
	if c.streamOpen {
		p.Stream = "open"
	}
	params, _ := json.Marshal(p)
	ev := catalog.AuditEvent{
		EventID:       uuid.NewString(),
		Time:          c.at,
		Service:       "mcp",
		Action:        c.action,
		SourceIP:      c.sourceIP,
		UserAgent:     c.r.UserAgent(),
		SessionID:     c.sessionID,
		RequestID:     idText(c.msg.id),
		SecurableType: string(catalog.TypeConnection),
		SecurableName: c.name,
		RequestParams: string(params),
		StatusCode:    c.status,
		ErrorMessage:  c.errMsg,
		Decision:      c.decision,
		Reason:        c.reason,
		LatencyMs:     float64(time.Since(c.start).Microseconds()) / 1000,
	}
	if c.id != nil {
		ev.UserIdentity, ev.RunBy, ev.RunAs = c.id.Subject, c.id.Subject, c.id.Actor
	}
	if c.conn != nil {
		ev.SecurableName = c.conn.Name
	}
	return ev
}

// record writes c's audit event and returns once it is durable. It runs
// even when the client has gone (the call happened).
func (h *Handler) record(c *call) error {
	c.recorded = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.r.Context()), h.cfg.AuditTimeout)
	defer cancel()
	ev := c.event()
	if err := h.cfg.Audit.Record(ctx, ev); err != nil {
		h.log.Error().Err(err).Str("event_id", ev.EventID).Str("action", ev.Action).Str("connection", ev.SecurableName).
			Str("subject", ev.UserIdentity).Msg("audit record failed: refusing to answer (fail closed)")
		return err
	}
	return nil
}

// writeHeader sends the response headers: the gateway session id (adding
// a session created by this call to the table first), then the status.
func (h *Handler) writeHeader(w http.ResponseWriter, c *call, status int) {
	if c.newSess != nil {
		h.sessions.add(c.newSess, h.now())
		c.sess, c.newSess = c.newSess, nil
	}
	if c.sess != nil {
		w.Header().Set(hdrSession, c.sess.id)
	}
	c.wroteHeader = true
	w.WriteHeader(status)
}

// finish records c, then answers status with body. If the record fails,
// the answer is 503 instead: nothing reaches the client unaudited.
func (h *Handler) finish(w http.ResponseWriter, c *call, status int, ctype string, body []byte) {
	c.status = status
	c.bytesOut = int64(len(body))
	if err := h.record(c); err != nil {
		h.auditFailed(w, c)
		return
	}
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	h.writeHeader(w, c, status)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
}

// auditFailed answers a call whose audit record could not be written.
func (h *Handler) auditFailed(w http.ResponseWriter, c *call) {
	const msg = "the gateway could not record this call in the audit log, so it was not answered; retry later"
	body := rpcErrorBody(c.msg.id, CodeInternalError, msg, nil)
	if c.wroteHeader {
		// An SSE stream is already open: end it with an error response in
		// place of the one the upstream sent.
		if c.msg.kind == kindRequest {
			_, _ = w.Write(sseEvent(body))
			_ = http.NewResponseController(w).Flush()
		}
		return
	}
	c.newSess = nil
	w.Header().Del(hdrSession)
	w.Header().Del("WWW-Authenticate")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(body)
}

// replyError answers a JSON-RPC error for c's message.
func (h *Handler) replyError(w http.ResponseWriter, c *call, status, code int, msg string, data any) {
	c.rpcErr = code
	if c.errMsg == "" {
		c.errMsg = msg
	}
	h.finish(w, c, status, "application/json", rpcErrorBody(c.msg.id, code, msg, data))
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

// Stage 3a: the connection.
func (h *Handler) resolve(w http.ResponseWriter, c *call) bool {
	conn, err := h.cfg.Connections.Connection(c.r.Context(), c.name)
	if err == nil && conn == nil {
		err = gateway.ErrNoConnection
	}
	if err != nil {
		if errors.Is(err, gateway.ErrNoConnection) {
			c.deny("no such connection")
			h.replyError(w, c, http.StatusNotFound, CodeInvalidRequest, fmt.Sprintf("connection %s does not exist", c.name), nil)
			return false
		}
		h.log.Error().Err(err).Str("connection", c.name).Msg("connection lookup failed; refusing the request")
		c.deny("connection lookup failed")
		h.replyError(w, c, http.StatusServiceUnavailable, CodeInternalError, fmt.Sprintf("connection %s cannot be resolved right now; retry later", c.name), nil)
		return false
	}
	c.conn = conn
	return true
}

// Stage 3b: the session. The gateway session id presented must be one the
// gateway handed to this subject and actor on this connection.
func (h *Handler) bindSession(w http.ResponseWriter, c *call) bool {
	if stateless(c.proto) {
		return true // 2026-07-28 has no sessions
	}
	sid := c.r.Header.Get(hdrSession)
	if c.msg.method == "initialize" {
		return true // a new session follows
	}
	if sid == "" {
		if v, ok := h.stateful.Load(c.conn.Name); ok && v.(bool) && c.msg.method != "ping" {
			c.deny("missing session id")
			h.replyError(w, c, http.StatusBadRequest, CodeInvalidRequest, "Mcp-Session-Id header required: send initialize first and use the session id it returns", nil)
			return false
		}
		return true
	}
	c.sessionID = sid
	s := h.sessions.get(sid, c.id.Subject, c.id.Actor, c.conn.Name, h.now())
	if s == nil {
		c.deny("unknown session")
		h.replyError(w, c, http.StatusNotFound, CodeInvalidRequest, "session not found: it expired or was ended; initialize a new session", nil)
		return false
	}
	c.sess = s
	return true
}

// authzRequest is the catalog question for c with the given method, tool
// and arguments.
func (c *call) authzRequest(method, tool string, args []byte) enforce.Request {
	ctx := make(map[string]any, 7)
	ctx["method"] = method
	ctx["source_ip"] = c.sourceIP
	ctx["user_agent"] = c.r.UserAgent()
	ctx["session_id"] = c.sessionID
	if tool != "" {
		ctx["tool"] = tool
	}
	if args != nil {
		var v any
		if json.Unmarshal(args, &v) == nil {
			ctx["arguments"] = v
		}
	}
	return enforce.Request{
		Subject:   c.id.Subject,
		Actor:     c.id.Actor,
		Privilege: catalog.PrivUseConnection,
		Securable: enforce.SecurableRef{Type: catalog.TypeConnection, Name: c.conn.Name},
		Context:   ctx,
	}
}

// Stage 3c: authorize. USE_CONNECTION for subject and actor with the
// message's context; for tools/call the tool must also pass include_tools,
// and the decision is made with the tool and its arguments.
func (h *Handler) authorize(w http.ResponseWriter, c *call) bool {
	ctx := c.r.Context()
	if c.msg.method == "tools/call" && !catalog.ToolAllowed(c.conn.Options[catalog.OptIncludeTools], c.tool) {
		// Hidden tools answer like tools that do not exist (the MCP SDKs'
		// own message), so include_tools does not reveal them.
		c.deny("tool not in the connection's include_tools")
		h.replyError(w, c, http.StatusOK, CodeInvalidParams, fmt.Sprintf("unknown tool %q", c.tool), nil)
		return false
	}
	d, err := h.cfg.Authz.Authorize(ctx, c.authzRequest(c.action, c.tool, c.args))
	if err == nil && d.Allowed {
		c.allow(d.Reason)
		return true
	}
	if err == nil && c.tool != "" {
		// Denied with the tool: is it the tool (a policy on it) or the
		// connection? Only denials pay for the second question.
		d2, err2 := h.cfg.Authz.Authorize(ctx, c.authzRequest(c.action, "", nil))
		if err2 == nil && d2.Allowed {
			c.deny(d.Reason)
			h.replyError(w, c, http.StatusOK, CodeDenied, fmt.Sprintf("tool %s is not available to you: %s", c.tool, d.Reason), nil)
			return false
		}
		d, err = d2, err2
	}
	reason := d.Reason
	if err != nil {
		h.log.Warn().Err(err).Str("connection", c.conn.Name).Msg("authorization failed; denying")
		if reason == "" {
			reason = "authorization unavailable: denying"
		}
	}
	if reason == "" {
		reason = "denied"
	}
	c.deny(reason)
	h.replyError(w, c, http.StatusForbidden, CodeDenied, fmt.Sprintf("access to connection %s denied: %s", c.conn.Name, reason), nil)
	return false
}

// Stage 4: credentials. The upstream gets its own credential, never the
// inbound token.
func (h *Handler) credentials(w http.ResponseWriter, c *call) (string, bool) {
	v, err := h.cfg.Credentials.Authorization(c.r.Context(), c.conn, c.id)
	if err == nil {
		return v, true
	}
	status := http.StatusOK
	if c.msg.kind != kindRequest {
		status = http.StatusForbidden // nothing to answer with a JSON-RPC response
	}
	var sr *gateway.SignInRequiredError
	if errors.As(err, &sr) {
		msg := sr.Error()
		c.errMsg = "sign-in required"
		elicit := c.msg.kind == kindRequest &&
			((c.sess != nil && c.sess.elicitURL) ||
				(c.msg.method == "initialize" && wantsURLElicitation(c.msg.params, true)) ||
				(stateless(c.proto) && wantsURLElicitation(c.msg.params, false)))
		if elicit {
			data := map[string]any{
				"elicitations": []map[string]string{{
					"mode": "url", "url": sr.URL, "message": msg, "elicitationId": randomHex(16),
				}},
				"signInUrl": sr.URL,
			}
			h.replyError(w, c, status, CodeURLElicitationRequired, msg, data)
		} else {
			h.replyError(w, c, status, CodeSignInRequired, msg, map[string]string{"signInUrl": sr.URL})
		}
		return "", false
	}
	h.log.Error().Err(err).Str("connection", c.conn.Name).Str("auth_mode", c.conn.AuthMode).Msg("upstream credentials unavailable")
	c.errMsg = "upstream credentials unavailable: " + err.Error()
	h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
		fmt.Sprintf("the gateway could not obtain credentials for connection %s (auth_mode %s); retry later", c.conn.Name, c.conn.AuthMode), nil)
	return "", false
}

// traceIDOf returns the trace id of a W3C traceparent header, or "".
func traceIDOf(tp string) string {
	// version "-" trace-id (32 hex) "-" parent-id (16 hex) "-" flags
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	id := tp[3:35]
	for i := 0; i < len(id); i++ {
		if !(id[i] >= '0' && id[i] <= '9' || id[i] >= 'a' && id[i] <= 'f') {
			return ""
		}
	}
	if id == "00000000000000000000000000000000" {
		return ""
	}
	return id
}

// randomHex returns n random bytes as hex (trace and span ids, elicitation
// ids: unique, not secret).
func randomHex(n int) string {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := mrand.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(b)
}

// sseEvent frames one JSON-RPC message as a server-sent event.
func sseEvent(data []byte) []byte {
	var b bytes.Buffer
	b.Grow(len(data) + 24)
	b.WriteString("event: message\n")
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	return b.Bytes()
}
