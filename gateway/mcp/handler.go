package mcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/gateway"
)

// Defaults of Config.
const (
	DefaultMaxBody         = 4 << 20
	DefaultSessionTTL      = time.Hour
	DefaultMaxSessions     = 100_000
	DefaultMaxResponseBody = 32 << 20
	DefaultAuditTimeout    = 10 * time.Second

	// toolCacheTTL bounds how long a tools/list visibility decision is
	// reused within one catalog revision (policies may depend on time).
	toolCacheTTL = 30 * time.Second
	toolCacheMax = 100_000
)

// Paths the handler serves.
const (
	mcpPrefix      = "/mcp/"
	metadataPrefix = "/.well-known/oauth-protected-resource/mcp/"
)

// HTTP headers of the Streamable HTTP transport.
const (
	hdrSession     = "Mcp-Session-Id"
	hdrProtocol    = "Mcp-Protocol-Version"
	hdrMethod      = "Mcp-Method"
	hdrName        = "Mcp-Name"
	hdrParamPrefix = "Mcp-Param-"
	hdrLastEventID = "Last-Event-Id"
)

// Config configures a Handler. PublicURL and the five stages are required.
type Config struct {
	// PublicURL is the gateway's canonical URL as clients reach it, e.g.
	// http://127.0.0.1:18080; the resource of /mcp/NAME is
	// PublicURL + "/mcp/" + NAME.
	PublicURL   string
	Auth        gateway.Authenticator
	Authz       gateway.Authorizer
	Connections gateway.Connections
	Credentials gateway.Credentials
	Audit       gateway.AuditSink
	// Upstream sends requests to the upstream MCP servers. It should carry
	// connect and response-header timeouts and no overall Timeout (SSE
	// streams are long). Redirects are never followed. Nil: a client with
	// a 5 s connect timeout, a 120 s response-header timeout and up to 256
	// idle keep-alive connections per upstream host.
	Upstream *http.Client
	// MaxBody bounds a request body (default 4 MiB); larger bodies get 413.
	MaxBody int64
	// AllowedOrigins are the browser origins (scheme://host[:port]) allowed
	// to call the gateway; PublicURL's own origin always is, and so are
	// localhost origins when PublicURL is a loopback URL. A request with any
	// other Origin gets 403.
	AllowedOrigins []string
	// AuthorizationServers are the issuers listed in the RFC 9728
	// protected resource metadata.
	AuthorizationServers []string
	// SessionTTL is how long an idle session lives (default 1 h).
	SessionTTL time.Duration
	// MaxSessions bounds the session table (default 100,000): when full, the
	// least recently used sessions are dropped.
	MaxSessions int
	// MaxResponseBody bounds one upstream JSON response or one SSE event
	// (default 32 MiB); larger ones fail with 502.
	MaxResponseBody int64
	// AuditTimeout bounds one AuditSink.Record call (default 10 s).
	AuditTimeout time.Duration
	Logger       zerolog.Logger
	// Now is the clock of audit times and session expiry (default
	// time.Now).
	Now func() time.Time
}

// Handler is the MCP gateway's HTTP handler. It serves /mcp/{name} and
// /.well-known/oauth-protected-resource/mcp/{name}.
type Handler struct {
	cfg      Config
	public   string // PublicURL without a trailing slash
	loopback bool   // PublicURL's host is a loopback address
	origins  map[string]bool
	client   *http.Client
	sessions *sessionTable
	// stateful remembers, per connection name, whether its upstream hands
	// out session ids (learnt from initialize responses).
	stateful sync.Map
	tools    *toolCache
	log      zerolog.Logger
	now      func() time.Time
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler for cfg.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Auth == nil:
		return nil, errors.New("mcp: Config.Auth is required")
	case cfg.Authz == nil:
		return nil, errors.New("mcp: Config.Authz is required")
	case cfg.Connections == nil:
		return nil, errors.New("mcp: Config.Connections is required")
	case cfg.Credentials == nil:
		return nil, errors.New("mcp: Config.Credentials is required")
	case cfg.Audit == nil:
		return nil, errors.New("mcp: Config.Audit is required")
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil || (pub.Scheme != "http" && pub.Scheme != "https") || pub.Host == "" || pub.User != nil ||
		pub.RawQuery != "" || pub.Fragment != "" {
		return nil, fmt.Errorf("mcp: Config.PublicURL must be an absolute http(s) URL without credentials, query or fragment, got %q", cfg.PublicURL)
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxResponseBody <= 0 {
		cfg.MaxResponseBody = DefaultMaxResponseBody
	}
	if cfg.AuditTimeout <= 0 {
		cfg.AuditTimeout = DefaultAuditTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	h := &Handler{
		cfg:      cfg,
		public:   strings.TrimRight(cfg.PublicURL, "/"),
		loopback: isLoopbackHost(pub.Hostname()),
		origins:  map[string]bool{strings.ToLower(pub.Scheme + "://" + pub.Host): true},
		sessions: newSessionTable(cfg.MaxSessions, cfg.SessionTTL),
		tools:    newToolCache(toolCacheMax, toolCacheTTL),
		log:      cfg.Logger,
		now:      cfg.Now,
	}
	for _, o := range cfg.AllowedOrigins {
		h.origins[strings.ToLower(strings.TrimRight(o, "/"))] = true
	}
	if cfg.Upstream != nil {
		c := *cfg.Upstream
		c.CheckRedirect = noRedirect
		h.client = &c
	} else {
		h.client = DefaultUpstreamClient()
	}
	return h, nil
}

// DefaultUpstreamClient is the upstream client New uses when
// Config.Upstream is nil.
func DefaultUpstreamClient() *http.Client {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 120 * time.Second,
		ExpectContinueTimeout: time.Second,
		// SSE must reach the client event by event: no transparent gzip.
		DisableCompression: true,
	}
	return &http.Client{Transport: t, CheckRedirect: noRedirect}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Sessions is the number of live gateway sessions (for metrics and tests).
func (h *Handler) Sessions() int { return h.sessions.len() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if name, ok := strings.CutPrefix(path, mcpPrefix); ok && validName(name) {
		h.serveMCP(w, r, name)
		return
	}
	if name, ok := strings.CutPrefix(path, metadataPrefix); ok && validName(name) {
		h.serveMetadata(w, r, name)
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no such endpoint; MCP connections are served at /mcp/<connection>"})
}

// validName accepts a connection path segment: a one- or three-part name
// of printable characters without '/'.
func validName(n string) bool {
	if n == "" || len(n) > 512 || !utf8.ValidString(n) {
		return false
	}
	for _, r := range n {
		if r <= ' ' || r == '/' || r == 0x7f {
			return false
		}
	}
	return true
}

func (h *Handler) resourceURL(name string) string {
	return h.public + mcpPrefix + url.PathEscape(name)
}

func (h *Handler) metadataURL(name string) string {
	return h.public + metadataPrefix + url.PathEscape(name)
}

// serveMetadata answers the RFC 9728 protected resource metadata of one
// connection endpoint. It does not look the connection up: the document is
// the same for every name, and answering it reveals nothing.
func (h *Handler) serveMetadata(w http.ResponseWriter, r *http.Request, name string) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	servers := h.cfg.AuthorizationServers
	if servers == nil {
		servers = []string{}
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"resource":                 h.resourceURL(name),
		"authorization_servers":    servers,
		"bearer_methods_supported": []string{"header"},
	})
}

// originAllowed: exact configured origins and PublicURL's origin; any
// localhost origin when the gateway itself is on loopback.
func (h *Handler) originAllowed(origin string) bool {
	o := strings.ToLower(strings.TrimRight(origin, "/"))
	if h.origins[o] {
		return true
	}
	if h.loopback {
		u, err := url.Parse(o)
		if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Path == "" && isLoopbackHost(u.Hostname()) {
			return true
		}
	}
	return false
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// preflight answers a CORS preflight (no body, no audit: it carries no
// message and reaches no upstream).
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	allowed := "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name"
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		for _, name := range strings.Split(req, ",") {
			name = strings.TrimSpace(name)
			if len(name) > len(hdrParamPrefix) && strings.EqualFold(name[:len(hdrParamPrefix)], hdrParamPrefix) {
				allowed += ", " + name
			}
		}
	}
	hd.Set("Access-Control-Allow-Headers", allowed)
	hd.Set("Access-Control-Max-Age", "600")
	hd.Set("Allow", "GET, POST, DELETE, OPTIONS")
	w.WriteHeader(http.StatusNoContent)
}

// serveMCP runs the stages for one request to /mcp/{name}.
func (h *Handler) serveMCP(w http.ResponseWriter, r *http.Request, name string) {
	c := h.newCall(r, name)

	if origin := r.Header.Get("Origin"); origin != "" {
		if !h.originAllowed(origin) {
			c.deny("origin not allowed: " + origin)
			h.replyError(w, c, http.StatusForbidden, CodeInvalidRequest, fmt.Sprintf("origin %q is not allowed to call this gateway", origin), nil)
			return
		}
		hd := w.Header()
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Add("Vary", "Origin")
		hd.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate")
	}
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	case http.MethodOptions:
		h.preflight(w, r)
		return
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		c.deny("HTTP method not allowed")
		h.replyError(w, c, http.StatusMethodNotAllowed, CodeInvalidRequest, "HTTP method "+r.Method+" is not allowed", nil)
		return
	}

	// Stage 1: authenticate.
	id, err := h.cfg.Auth.Authenticate(r.Context(), r, c.resource)
	if err == nil && (id == nil || id.Subject == "") {
		err = errors.New("authenticator returned no subject")
	}
	if err != nil {
		h.authFailed(w, c, err)
		return
	}
	c.id = id

	if c.proto != "" && !supportedVersion(c.proto) {
		c.deny("unsupported protocol version")
		data := map[string]any{"supported": SupportedProtocolVersions, "requested": c.proto}
		h.replyError(w, c, http.StatusBadRequest, CodeUnsupportedProtocolVersion,
			fmt.Sprintf("unsupported MCP-Protocol-Version %q (supported: %s)", c.proto, strings.Join(SupportedProtocolVersions, ", ")), data)
		return
	}

	if r.Method == http.MethodPost {
		h.servePOST(w, r, c)
	} else {
		h.serveGETDELETE(w, r, c)
	}
}

// authFailed answers a failed authentication per the MCP authorization
// spec (RFC 6750 / RFC 9728).
func (h *Handler) authFailed(w http.ResponseWriter, c *call, err error) {
	var ae *gateway.AuthError
	if !errors.As(err, &ae) {
		h.log.Warn().Err(err).Str("connection", c.name).Msg("authentication error; refusing the request")
		ae = &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: "the access token could not be verified"}
	}
	status, code := http.StatusUnauthorized, ae.Code
	if ae.Status == http.StatusForbidden {
		status = http.StatusForbidden
		if code == "" {
			code = "insufficient_scope"
		}
	}
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	b.WriteString(quoteParam(h.metadataURL(c.name)))
	b.WriteByte('"')
	if code != "" {
		b.WriteString(`, error="` + quoteParam(code) + `"`)
	}
	if ae.Description != "" {
		b.WriteString(`, error_description="` + quoteParam(ae.Description) + `"`)
	}
	if status == http.StatusForbidden && ae.Scope != "" {
		b.WriteString(`, scope="` + quoteParam(ae.Scope) + `"`)
	}
	w.Header().Set("WWW-Authenticate", b.String())
	if code == "" {
		code = "invalid_token"
	}
	c.deny("authentication failed: " + code)
	c.errMsg = ae.Description
	body, _ := json.Marshal(map[string]string{"error": code, "error_description": ae.Description})
	h.finish(w, c, status, "application/json", body)
}

// quoteParam makes s safe inside a quoted auth-param.
func quoteParam(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"' || r == '\\':
			return '\''
		case r < ' ' || r == 0x7f:
			return ' '
		}
		return r
	}, s)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
