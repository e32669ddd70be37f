package mcp

import (
	"bytes"
	"errors"
	"strings"

	"github.com/mandatehq/mandate/catalog/strictjson"
)

// JSON-RPC and MCP error codes the gateway answers with.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeInternalError  = -32603
	// CodeDenied: the catalog (grants or policies) denied the call.
	CodeDenied = -32001
	// CodeSignInRequired: the user must first connect their account for the
	// connection (error.data.signInUrl).
	CodeSignInRequired = -32003
	// CodeLimited: a rate limit or budget refused the call (HTTP 429 with
	// Retry-After).
	CodeLimited = -32005
	// CodeHeaderMismatch (2026-07-28): Mcp-Method / Mcp-Name headers do not
	// match the body.
	CodeHeaderMismatch = -32020
	// CodeUnsupportedProtocolVersion (2026-07-28): error.data lists the
	// supported versions.
	CodeUnsupportedProtocolVersion = -32022
	// CodeURLElicitationRequired (2025-11-25): the client must open a URL
	// (error.data.elicitations) and retry.
	CodeURLElicitationRequired = -32042
)

// Protocol revisions the gateway speaks.
const (
	version20250326 = "2025-03-26"
	version20250618 = "2025-06-18"
	version20251125 = "2025-11-25"
	version20260728 = "2026-07-28"
)

// SupportedProtocolVersions are the MCP revisions the gateway accepts in
// MCP-Protocol-Version, newest first.
var SupportedProtocolVersions = []string{version20260728, version20251125, version20250618, version20250326}

func supportedVersion(v string) bool {
	for _, s := range SupportedProtocolVersions {
		if s == v {
			return true
		}
	}
	return false
}

// stateless reports whether v is a revision without initialize and
// sessions (2026-07-28 and later).
func stateless(v string) bool { return v >= version20260728 }

type msgKind uint8

const (
	kindRequest msgKind = iota + 1
	kindNotification
	kindResponse
)

// message is one parsed JSON-RPC message. Its byte fields are subslices of
// the request body.
type message struct {
	kind   msgKind
	id     []byte // raw id (string or number); nil for notifications
	method string // "" for responses
	params []byte // raw params; nil when absent
}

// action is the message's name in the audit log.
func (m *message) action() string {
	if m.kind == kindResponse {
		return "response"
	}
	return m.method
}

// allowedMethods are the client-to-server requests the gateway forwards
// (plus every notifications/* method). server/discover and
// subscriptions/listen belong to the 2026-07-28 stateless revision.
var allowedMethods = map[string]bool{
	"initialize":               true,
	"ping":                     true,
	"tools/list":               true,
	"tools/call":               true,
	"resources/list":           true,
	"resources/templates/list": true,
	"resources/read":           true,
	"resources/subscribe":      true,
	"resources/unsubscribe":    true,
	"prompts/list":             true,
	"prompts/get":              true,
	"completion/complete":      true,
	"logging/setLevel":         true,
	"server/discover":          true,
	"subscriptions/listen":     true,
}

func methodAllowed(m string) bool {
	return allowedMethods[m] || (strings.HasPrefix(m, "notifications/") && len(m) > len("notifications/"))
}

// rpcFailure is a message the gateway refuses while parsing.
type rpcFailure struct {
	status int
	code   int
	msg    string
}

// parseMessage reads exactly one JSON-RPC 2.0 message from body.
func parseMessage(body []byte) (message, *rpcFailure) {
	var m message
	b := trimWS(body)
	if len(b) == 0 {
		return m, &rpcFailure{400, CodeInvalidRequest, "empty request body: expected one JSON-RPC message"}
	}
	// One pass checks syntax, nesting and keys; a syntax error is a parse
	// error, the others (checked after the message's shape) an invalid
	// request.
	checkErr := checkJSON(b)
	if errors.Is(checkErr, strictjson.ErrSyntax) {
		return m, &rpcFailure{400, CodeParseError, "parse error: the body is not valid JSON"}
	}
	switch b[0] {
	case '{':
	case '[':
		return m, &rpcFailure{400, CodeInvalidRequest, "JSON-RPC batches are not supported: send one message per request"}
	default:
		return m, &rpcFailure{400, CodeInvalidRequest, "invalid request: expected a JSON-RPC message object"}
	}
	if checkErr != nil {
		return m, &rpcFailure{400, CodeInvalidRequest, "invalid request: " + checkErr.Error()}
	}
	var version, method, result, errv []byte
	var hasID, hasMethod bool
	_ = eachMember(b, func(k, v []byte) bool {
		switch {
		case keyIs(k, "jsonrpc"):
			version = v
		case keyIs(k, "id"):
			m.id, hasID = v, true
		case keyIs(k, "method"):
			method, hasMethod = v, true
		case keyIs(k, "params"):
			m.params = v
		case keyIs(k, "result"):
			result = v
		case keyIs(k, "error"):
			errv = v
		}
		return true
	})
	if s, ok := stringValue(version); !ok || s != "2.0" {
		return m, &rpcFailure{400, CodeInvalidRequest, `invalid request: "jsonrpc" must be "2.0"`}
	}
	if hasID && !validID(m.id) {
		m.id = nil
		return m, &rpcFailure{400, CodeInvalidRequest, "invalid request: id must be a string or a number"}
	}
	if hasMethod {
		s, ok := stringValue(method)
		if !ok || s == "" {
			return m, &rpcFailure{400, CodeInvalidRequest, `invalid request: "method" must be a non-empty string`}
		}
		m.method = s
		if result != nil || errv != nil {
			return m, &rpcFailure{400, CodeInvalidRequest, `invalid request: a message with "method" cannot carry "result" or "error"`}
		}
		if m.params != nil && m.params[0] != '{' && m.params[0] != '[' {
			return m, &rpcFailure{400, CodeInvalidRequest, `invalid request: "params" must be an object`}
		}
		if hasID {
			m.kind = kindRequest
		} else {
			m.kind = kindNotification
		}
		return m, nil
	}
	if !hasID || (result == nil) == (errv == nil) {
		return m, &rpcFailure{400, CodeInvalidRequest, `invalid request: expected a request ("method"), a notification, or a response ("id" with "result" or "error")`}
	}
	m.kind = kindResponse
	return m, nil
}

func validID(id []byte) bool {
	if len(id) == 0 {
		return false
	}
	c := id[0]
	return c == '"' || c == '-' || (c >= '0' && c <= '9')
}

// idText is the id as audit text: a string id unquoted, a number as is.
func idText(id []byte) string {
	if s, ok := stringValue(id); ok {
		return s
	}
	return string(id)
}

// toolCall is the params of tools/call.
type toolCall struct {
	name string
	args []byte // raw arguments; nil when absent
}

func parseToolCall(params []byte) (toolCall, bool) {
	var tc toolCall
	if params == nil || params[0] != '{' {
		return tc, false
	}
	v, _, _, ok := member(params, "name")
	if !ok {
		return tc, false
	}
	if tc.name, ok = stringValue(v); !ok || tc.name == "" {
		return tc, false
	}
	if a, _, _, ok := member(params, "arguments"); ok && string(a) != "null" {
		if a[0] != '{' {
			return tc, false
		}
		tc.args = a
	}
	return tc, true
}

// nameOf is the value the 2026-07-28 Mcp-Name header carries for method
// ("" when the method has none).
func nameOf(method string, params []byte) (name string, has bool) {
	var key string
	switch method {
	case "tools/call", "prompts/get":
		key = "name"
	case "resources/read":
		key = "uri"
	default:
		return "", false
	}
	v, _, _, ok := member(params, key)
	if !ok {
		return "", true
	}
	s, _ := stringValue(v)
	return s, true
}

// wantsURLElicitation reports whether a client declared the URL mode of
// elicitation: in initialize params (capabilities.elicitation.url), or in
// a 2026-07-28 request's _meta client capabilities.
func wantsURLElicitation(params []byte, initialize bool) bool {
	if params == nil {
		return false
	}
	var caps []byte
	var ok bool
	if initialize {
		caps, _, _, ok = member(params, "capabilities")
	} else {
		var meta []byte
		if meta, _, _, ok = member(params, "_meta"); ok {
			caps, _, _, ok = member(meta, "io.modelcontextprotocol/clientCapabilities")
		}
	}
	if !ok {
		return false
	}
	el, _, _, ok := member(caps, "elicitation")
	if !ok {
		return false
	}
	u, _, _, ok := member(el, "url")
	return ok && len(u) > 0 && u[0] == '{'
}

// responseInfo is what the gateway reads from a JSON-RPC message sent by
// the upstream.
type responseInfo struct {
	response  bool // a response (id with result or error), not a request or notification
	errCode   int  // error.code of an error response
	toolError bool // a result with "isError": true (a tool that failed)
}

func inspect(data []byte) responseInfo {
	var ri responseInfo
	if !bytes.Contains(data, []byte(`"result"`)) && !bytes.Contains(data, []byte(`"error"`)) {
		return ri // a request or notification
	}
	var hasID, hasMethod, hasResult bool
	var errv, result []byte
	_ = eachMember(data, func(k, v []byte) bool {
		switch {
		case keyIs(k, "id"):
			hasID = true
		case keyIs(k, "method"):
			hasMethod = true
		case keyIs(k, "result"):
			hasResult, result = true, v
		case keyIs(k, "error"):
			errv = v
		}
		return true
	})
	ri.response = hasID && !hasMethod && (hasResult || errv != nil)
	if ri.response && hasResult {
		if v, _, _, ok := member(result, "isError"); ok && string(v) == "true" {
			ri.toolError = true
		}
	}
	if errv != nil {
		if c, _, _, ok := member(errv, "code"); ok {
			ri.errCode, _ = intValue(c)
		}
		if ri.errCode == 0 {
			ri.errCode = CodeInternalError
		}
	}
	return ri
}

// metaTrace returns the W3C trace context of a message's params._meta
// (traceparent, tracestate), when it has a traceparent.
func metaTrace(body []byte) (tp, ts string, ok bool) {
	if !bytes.Contains(body, []byte(`"_meta"`)) {
		return "", "", false
	}
	params, _, _, ok := member(body, "params")
	if !ok {
		return "", "", false
	}
	meta, _, _, ok := member(params, "_meta")
	if !ok {
		return "", "", false
	}
	v, _, _, ok := member(meta, "traceparent")
	if !ok {
		return "", "", false
	}
	if tp, ok = stringValue(v); !ok {
		return "", "", false
	}
	if v, _, _, has := member(meta, "tracestate"); has {
		ts, _ = stringValue(v)
	}
	return tp, ts, true
}

// withMetaTraceparent returns body with the value of its
// params._meta.traceparent replaced by tp, when it has one that differs:
// the gateway's span becomes the upstream's parent. The rest of the
// message stays byte for byte; a message without one is not changed (the
// traceparent header carries the context).
func withMetaTraceparent(body []byte, tp string) []byte {
	if !bytes.Contains(body, []byte(`"_meta"`)) {
		return body
	}
	params, _, _, ok := member(body, "params")
	if !ok {
		return body
	}
	meta, _, _, ok := member(params, "_meta")
	if !ok {
		return body
	}
	v, _, _, ok := member(meta, "traceparent")
	if !ok {
		return body
	}
	if old, isStr := stringValue(v); !isStr || old == tp {
		return body
	}
	// v is a subslice of body: its offsets in body.
	start := cap(body) - cap(v)
	end := start + len(v)
	out := make([]byte, 0, len(body)-len(v)+len(tp)+2)
	out = append(out, body[:start]...)
	out = append(out, '"')
	out = append(out, tp...)
	out = append(out, '"')
	return append(out, body[end:]...)
}
