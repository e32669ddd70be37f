package mcp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// servePOST runs the stages for one POSTed JSON-RPC message.
func (h *Handler) servePOST(w http.ResponseWriter, r *http.Request, c *call) {
	// Stage 2: parse.
	if mediaType(r.Header.Get("Content-Type")) != "application/json" {
		c.deny("unsupported content type")
		h.replyError(w, c, http.StatusUnsupportedMediaType, CodeInvalidRequest, "Content-Type must be application/json", nil)
		return
	}
	body, err := readBody(w, r, h.cfg.MaxBody)
	c.bytesIn = int64(len(body))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			c.deny("request body too large")
			h.replyError(w, c, http.StatusRequestEntityTooLarge, CodeInvalidRequest,
				fmt.Sprintf("request body exceeds %d bytes", h.cfg.MaxBody), nil)
			return
		}
		c.deny("request body unreadable")
		c.status = 499
		c.errMsg = "reading the request body: " + err.Error()
		_ = h.record(c)
		return
	}
	m, fail := parseMessage(body)
	c.msg = m
	if fail != nil {
		c.deny("malformed message")
		h.replyError(w, c, fail.status, fail.code, fail.msg, nil)
		return
	}
	c.action = m.action()
	if m.kind != kindResponse && !methodAllowed(m.method) {
		c.deny("method not allowed by the gateway")
		status := http.StatusOK
		if m.kind == kindNotification {
			status = http.StatusBadRequest // a notification has no JSON-RPC answer
		}
		h.replyError(w, c, status, CodeMethodNotFound, fmt.Sprintf("method %q not allowed by the gateway", m.method), nil)
		return
	}
	if stateless(c.proto) && m.kind != kindResponse {
		if got := r.Header.Get(hdrMethod); got != m.method {
			c.deny("Mcp-Method header mismatch")
			h.replyError(w, c, http.StatusBadRequest, CodeHeaderMismatch,
				fmt.Sprintf("header mismatch: Mcp-Method header %q does not match the body's method %q", got, m.method), nil)
			return
		}
		if name, has := nameOf(m.method, m.params); has {
			if got := r.Header.Get(hdrName); got != name || name == "" {
				c.deny("Mcp-Name header mismatch")
				h.replyError(w, c, http.StatusBadRequest, CodeHeaderMismatch,
					fmt.Sprintf("header mismatch: Mcp-Name header %q does not match the body's %q", got, name), nil)
				return
			}
			c.mcpNm = name
		}
	}
	if m.method == "tools/call" {
		tc, ok := parseToolCall(m.params)
		if !ok {
			c.deny("invalid tools/call params")
			h.replyError(w, c, http.StatusOK, CodeInvalidParams, `invalid tools/call params: expected {"name": string, "arguments"?: object}`, nil)
			return
		}
		c.tool, c.args = tc.name, tc.args
	}

	// Stage 3: authorize.
	if !h.resolve(w, c) || !h.bindSession(w, c) || !h.authorize(w, c) {
		return
	}
	// Stage 4: credentials.
	cred, ok := h.credentials(w, c)
	if !ok {
		return
	}
	// Stage 5: forward (and 6: audit, inside the relay).
	h.forward(w, r, c, body, cred)
}

// serveGETDELETE runs the stages for the SSE stream of server-initiated
// messages (GET) or the end of a session (DELETE).
func (h *Handler) serveGETDELETE(w http.ResponseWriter, r *http.Request, c *call) {
	if stateless(c.proto) {
		w.Header().Set("Allow", "POST")
		c.deny("no " + r.Method + " in " + c.proto)
		h.replyError(w, c, http.StatusMethodNotAllowed, CodeInvalidRequest,
			fmt.Sprintf("%s is not part of MCP %s: send requests with POST", r.Method, c.proto), nil)
		return
	}
	if !h.resolve(w, c) || !h.bindSession(w, c) || !h.authorize(w, c) {
		return
	}
	cred, ok := h.credentials(w, c)
	if !ok {
		return
	}
	h.forward(w, r, c, nil, cred)
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

// upstreamRequest builds the request to the upstream: only the headers of
// the transport, the gateway's trace context and the upstream's own
// credential. The inbound Authorization header and cookies never go on.
func (h *Handler) upstreamRequest(r *http.Request, c *call, body []byte, cred string) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u, err := http.NewRequestWithContext(r.Context(), r.Method, c.conn.URL, rd)
	if err != nil {
		return nil, err
	}
	hd := u.Header
	if accept := r.Header.Values("Accept"); len(accept) > 0 {
		hd["Accept"] = accept
	} else if r.Method == http.MethodGet {
		hd["Accept"] = []string{"text/event-stream"}
	} else {
		hd["Accept"] = []string{"application/json, text/event-stream"}
	}
	if body != nil {
		hd["Content-Type"] = []string{"application/json"}
	}
	if c.proto != "" {
		hd[hdrProtocol] = []string{c.proto}
	}
	if c.sess != nil && c.sess.upstream != "" {
		hd[hdrSession] = []string{c.sess.upstream}
	}
	if v := r.Header.Get(hdrLastEventID); v != "" {
		hd[hdrLastEventID] = []string{v}
	}
	if stateless(c.proto) && c.msg.method != "" {
		hd[hdrMethod] = []string{c.msg.method}
		if c.mcpNm != "" {
			hd[hdrName] = []string{c.mcpNm}
		}
		for k, v := range r.Header {
			if strings.HasPrefix(k, hdrParamPrefix) {
				hd[k] = v
			}
		}
	}
	if tp := r.Header.Get("Traceparent"); traceIDOf(tp) != "" {
		hd["Traceparent"] = []string{tp}
		if ts := r.Header.Values("Tracestate"); len(ts) > 0 {
			hd["Tracestate"] = ts
		}
	} else {
		hd["Traceparent"] = []string{"00-" + c.traceID + "-" + randomHex(8) + "-01"}
	}
	hd["User-Agent"] = []string{"mandate-gateway"}
	if cred != "" {
		hd["Authorization"] = []string{cred}
	}
	return u, nil
}

// forward sends c's message upstream and relays the answer.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, c *call, body []byte, cred string) {
	u, err := h.upstreamRequest(r, c, body, cred)
	if err != nil {
		c.errMsg = "building the upstream request: " + err.Error()
		h.replyError(w, c, http.StatusBadGateway, CodeInternalError, fmt.Sprintf("upstream %s has an invalid url", c.conn.Name), nil)
		return
	}
	resp, err := h.client.Do(u)
	if err != nil {
		h.upstreamFailed(w, c, err)
		return
	}
	defer resp.Body.Close()
	h.relay(w, c, resp)
}

// clientGone records a call whose client went away before an answer.
func (h *Handler) clientGone(c *call) {
	if c.recorded {
		return
	}
	if !c.wroteHeader {
		c.status = 499 // client closed request
	}
	c.errMsg = "client disconnected"
	_ = h.record(c)
}

// upstreamFailed answers a request that got no response from the upstream.
func (h *Handler) upstreamFailed(w http.ResponseWriter, c *call, err error) {
	if c.r.Context().Err() != nil {
		h.clientGone(c)
		return
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
	h.log.Warn().Err(err).Str("connection", c.conn.Name).Msg("upstream request failed")
	c.errMsg = "upstream request failed: " + err.Error()
	h.replyError(w, c, status, CodeInternalError, fmt.Sprintf("upstream %s unavailable: %s", c.conn.Name, why), nil)
}

// relay answers c from the upstream's response.
func (h *Handler) relay(w http.ResponseWriter, c *call, resp *http.Response) {
	st := resp.StatusCode
	c.upstreamStatus = st
	ct := mediaType(resp.Header.Get("Content-Type"))

	if c.msg.method == "initialize" && st/100 == 2 && !stateless(c.proto) {
		usid := resp.Header.Get(hdrSession)
		h.stateful.Store(c.conn.Name, usid != "")
		if usid != "" {
			c.newSess = &session{
				id: newSessionID(), upstream: usid,
				subject: c.id.Subject, actor: c.id.Actor, conn: c.conn.Name,
				elicitURL: wantsURLElicitation(c.msg.params, true),
			}
			c.sessionID = c.newSess.id
		}
	}
	if c.r.Method == http.MethodDelete && c.sess != nil {
		h.sessions.remove(c.sess.id)
		c.sess = nil
	}
	if st == http.StatusNotFound && c.sess != nil {
		// The upstream no longer knows the session: neither does the
		// gateway, and the client gets the 404 that makes it start over.
		h.sessions.remove(c.sess.id)
		c.sess = nil
	}
	if v := resp.Header.Get("Retry-After"); v != "" && (st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", v)
	}

	switch {
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		drain(resp.Body)
		c.errMsg = fmt.Sprintf("upstream answered HTTP %d", st)
		h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
			fmt.Sprintf("upstream %s refused the gateway's credentials (HTTP %d)", c.conn.Name, st), nil)
	case st >= 500:
		drain(resp.Body)
		c.errMsg = fmt.Sprintf("upstream answered HTTP %d", st)
		h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
			fmt.Sprintf("upstream %s unavailable: it answered HTTP %d", c.conn.Name, st), nil)
	case st >= 300 && st < 400:
		drain(resp.Body)
		c.errMsg = fmt.Sprintf("upstream answered HTTP %d", st)
		h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
			fmt.Sprintf("upstream %s answered with a redirect (HTTP %d); check the connection's url", c.conn.Name, st), nil)
	case st >= 400 || st < 200:
		h.relayRefusal(w, c, resp, ct)
	case ct == "text/event-stream":
		h.relaySSE(w, c, resp)
	case c.r.Method != http.MethodPost || st == http.StatusAccepted || st == http.StatusNoContent:
		drain(resp.Body)
		h.finish(w, c, st, "", nil)
	case ct == "application/json":
		h.relayJSON(w, c, resp)
	default:
		drain(resp.Body)
		c.errMsg = fmt.Sprintf("upstream answered Content-Type %q", ct)
		h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
			fmt.Sprintf("upstream %s returned an invalid response (Content-Type %q)", c.conn.Name, ct), nil)
	}
}

// relayRefusal passes on an upstream 4xx: a JSON-RPC error body as is
// (protocol version negotiation depends on it), anything else as a
// JSON-RPC error that quotes the start of the upstream's text.
func (h *Handler) relayRefusal(w http.ResponseWriter, c *call, resp *http.Response, ct string) {
	st := resp.StatusCode
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	drain(resp.Body)
	c.errMsg = fmt.Sprintf("upstream answered HTTP %d", st)
	if st < 400 {
		st = http.StatusBadGateway
	}
	if ct == "application/json" && validJSON(body) && checkKeys(body) == nil {
		if ri := inspect(body); ri.errCode != 0 {
			c.rpcErr = ri.errCode
			h.finish(w, c, st, "application/json", body)
			return
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
	msg := fmt.Sprintf("upstream %s rejected the request (HTTP %d)", c.conn.Name, resp.StatusCode)
	if text != "" {
		msg += ": " + text
	}
	h.replyError(w, c, st, CodeInvalidRequest, msg, nil)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 256<<10)) }

// relayJSON relays an application/json response: read whole (bounded),
// checked, filtered for tools/list, audited, then written.
func (h *Handler) relayJSON(w http.ResponseWriter, c *call, resp *http.Response) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 1<<20 {
			bufPool.Put(buf)
		}
	}()
	if resp.ContentLength > 0 && resp.ContentLength <= h.cfg.MaxResponseBody {
		buf.Grow(int(resp.ContentLength) + 1)
	}
	_, err := buf.ReadFrom(io.LimitReader(resp.Body, h.cfg.MaxResponseBody+1))
	if err != nil {
		if c.r.Context().Err() != nil {
			h.clientGone(c)
			return
		}
		c.errMsg = "reading the upstream response: " + err.Error()
		h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
			fmt.Sprintf("upstream %s unavailable: the response was cut off", c.conn.Name), nil)
		return
	}
	if int64(buf.Len()) > h.cfg.MaxResponseBody {
		c.errMsg = "upstream response too large"
		h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
			fmt.Sprintf("upstream %s returned a response larger than %d bytes", c.conn.Name, h.cfg.MaxResponseBody), nil)
		return
	}
	data := buf.Bytes()
	toolsList := c.msg.method == "tools/list"
	if toolsList && !validJSON(data) || !framedObject(data) {
		c.errMsg = "upstream returned invalid JSON"
		h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
			fmt.Sprintf("upstream %s returned an invalid response (not JSON)", c.conn.Name), nil)
		return
	}
	if toolsList {
		if data, err = h.filterToolsList(c.r.Context(), c, data); err != nil {
			c.errMsg = "upstream tools/list result unreadable: " + err.Error()
			h.replyError(w, c, http.StatusBadGateway, CodeInternalError,
				fmt.Sprintf("upstream %s returned an invalid tools/list result", c.conn.Name), nil)
			return
		}
	}
	if bytes.Contains(data, []byte(`"error"`)) {
		c.rpcErr = inspect(data).errCode
	}
	h.finish(w, c, resp.StatusCode, "application/json", data)
}

// relaySSE relays an event stream event by event, flushing after each.
// The audit record is written before the first event that carries a
// message (for GET streams: before anything); see doc.go.
func (h *Handler) relaySSE(w http.ResponseWriter, c *call, resp *http.Response) {
	ctx := c.r.Context()
	if c.r.Method == http.MethodGet {
		c.status = resp.StatusCode
		if err := h.record(c); err != nil {
			h.auditFailed(w, c)
			return
		}
	}
	rc := http.NewResponseController(w)
	sr := newSSEReader(resp.Body, int(h.cfg.MaxResponseBody))
	defer sr.release()
	headers := func() {
		if !c.wroteHeader {
			hd := w.Header()
			hd.Set("Content-Type", "text/event-stream")
			hd.Set("Cache-Control", "no-cache")
			hd.Set("X-Accel-Buffering", "no")
			h.writeHeader(w, c, resp.StatusCode)
		}
	}
	// Outcome of the stream for the completion log line.
	var final responseInfo
	var readErr error
	for {
		if readErr = sr.next(); readErr != nil {
			break
		}
		ev := sr.raw
		if sr.message() {
			if !framedObject(sr.data) {
				readErr = errors.New("upstream sent an event that is not a JSON object")
				break
			}
			ri := inspect(sr.data)
			if ri.response && (c.msg.method == "tools/list" || c.r.Method == http.MethodGet) {
				if !validJSON(sr.data) {
					readErr = errors.New("upstream sent an event that is not JSON")
					break
				}
				filtered, err := h.filterToolsList(ctx, c, sr.data)
				if err != nil {
					readErr = fmt.Errorf("upstream tools/list result unreadable: %w", err)
					break
				}
				if len(filtered) != len(sr.data) {
					ev = sr.withData(filtered)
				}
			}
			if ri.response {
				final = ri
			}
			if !c.recorded {
				c.status = resp.StatusCode
				c.rpcErr = ri.errCode
				c.streamOpen = !ri.response
				c.bytesOut += int64(len(ev))
				if err := h.record(c); err != nil {
					h.auditFailed(w, c)
					return
				}
				c.bytesOut -= int64(len(ev))
			}
		}
		headers()
		if _, err := w.Write(ev); err != nil {
			readErr = err
			break
		}
		c.bytesOut += int64(len(ev))
		if err := rc.Flush(); err != nil {
			readErr = err
			break
		}
	}
	if ctx.Err() != nil {
		h.clientGone(c)
	} else if !c.recorded {
		// The stream ended before any message.
		why := "ended the stream without a response"
		if !errors.Is(readErr, io.EOF) && !errors.Is(readErr, io.ErrUnexpectedEOF) {
			why = "sent an unreadable stream: " + readErr.Error()
		}
		c.errMsg = "upstream " + why
		if !c.wroteHeader {
			h.replyError(w, c, http.StatusBadGateway, CodeInternalError, fmt.Sprintf("upstream %s %s", c.conn.Name, why), nil)
		} else {
			c.status = resp.StatusCode
			_ = h.record(c)
		}
	} else if readErr != nil && !errors.Is(readErr, io.EOF) && !errors.Is(readErr, io.ErrUnexpectedEOF) {
		// A broken stream after the record: tell a waiting client.
		h.log.Warn().Err(readErr).Str("connection", c.conn.Name).Msg("upstream stream broken")
		if c.msg.kind == kindRequest && !final.response {
			_, _ = w.Write(sseEvent(rpcErrorBody(c.msg.id, CodeInternalError,
				fmt.Sprintf("upstream %s unavailable: the stream broke before the response", c.conn.Name), nil)))
			_ = rc.Flush()
		}
	}
	if c.streamOpen {
		h.log.Info().Str("connection", c.conn.Name).Str("action", c.action).Str("request_id", idText(c.msg.id)).
			Str("trace_id", c.traceID).Bool("response", final.response).Int("jsonrpc_error", final.errCode).
			Int64("bytes_out", c.bytesOut).Dur("duration", time.Since(c.start)).Msg("mcp stream ended")
	}
}
