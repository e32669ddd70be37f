package mcp

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/identity"
	"github.com/mandatehq/mandate/gateway/internal/bodypool"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// Defaults of Config.
const (
	DefaultMaxBody     = 4 << 20
	DefaultSessionTTL  = time.Hour
	DefaultMaxSessions = 100_000
	// DefaultMaxSessionsPerSubject bounds one subject's sessions.
	DefaultMaxSessionsPerSubject = 1_000
	DefaultMaxResponseBody       = 32 << 20
	DefaultAuditTimeout          = pipeline.DefaultAuditTimeout

	// toolCacheTTL bounds how long a tools/list visibility decision is
	// reused within one catalog revision (policies may depend on time).
	toolCacheTTL = 30 * time.Second
	toolCacheMax = 100_000
)

// mcpPath is the path of connection endpoints under the public URL's.
const mcpPath = "/mcp/"

// HTTP headers of the Streamable HTTP transport.
const (
	hdrSession     = "Mcp-Session-Id"
	hdrProtocol    = "Mcp-Protocol-Version"
	hdrMethod      = "Mcp-Method"
	hdrName        = "Mcp-Name"
	hdrParamPrefix = "Mcp-Param-"
	hdrLastEventID = "Last-Event-Id"
)

// Config configures a Handler. Connections is required, and either
// Pipeline (shared with the other protocols' handlers) or PublicURL and
// the stages after it, from which New builds the handler's own pipeline
// (Limiter, Guard, Meter and Observer are its optional stages).
type Config struct {
	// Pipeline, when set, is the pipeline the handler runs; the fields
	// from PublicURL to Observer, but Connections, are then ignored.
	Pipeline    *pipeline.Pipeline
	Connections gateway.Connections

	// PublicURL is the gateway's canonical URL as clients reach it, e.g.
	// http://127.0.0.1:18080 or https://gw.example/mandate; the resource
	// of connection NAME is PublicURL + "/mcp/" + NAME. Requests must name
	// its host (Host header); a path in it is part of every route.
	PublicURL   string
	Auth        gateway.Authenticator
	Authz       gateway.Authorizer
	Credentials gateway.Credentials
	Audit       gateway.AuditSink
	// AuditAsync answers without waiting for audit records to be durable
	// (--audit-sync off).
	AuditAsync bool
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
	// protected resource metadata; Scopes its scopes_supported.
	AuthorizationServers []string
	Scopes               []string
	// SessionTTL is how long an idle session lives (default 1 h).
	SessionTTL time.Duration
	// SessionKey (32 bytes), when set, seals each session into the id the
	// client gets, so that every gateway with the same key (the replicas
	// and gateway nodes of one installation) serves it: a session this
	// gateway does not hold is taken up within SessionTTL of its creation
	// (so no session idle for SessionTTL comes back), then kept while
	// used. Nil: ids are random and only this gateway serves its sessions.
	SessionKey []byte
	// MaxSessions bounds the session table (default 100,000): when full, the
	// least recently used sessions are dropped.
	MaxSessions int
	// MaxSessionsPerSubject bounds the sessions of one subject (default
	// 1,000, at most MaxSessions): a subject's next session replaces its
	// own least recently used, so no caller can evict others' sessions by
	// opening many.
	MaxSessionsPerSubject int
	// MaxResponseBody bounds one upstream JSON response or one SSE event
	// (default 32 MiB); larger ones fail with 502.
	MaxResponseBody int64
	// AuditTimeout bounds the wait for one audit record (default 10 s).
	AuditTimeout time.Duration

	Limiter  pipeline.Limiter
	Guard    pipeline.Guard
	Meter    pipeline.Meter
	Observer pipeline.Observer

	Logger zerolog.Logger
	// Now is the clock of audit times and session expiry (default
	// time.Now).
	Now func() time.Time
}

// Handler is the MCP gateway's HTTP handler: the MCP adapter of the
// pipeline. It serves BASE/mcp/{name} and
// /.well-known/oauth-protected-resource/BASE/mcp/{name}, BASE being the
// path of PublicURL.
type Handler struct {
	cfg      Config
	p        *pipeline.Pipeline
	public   string // PublicURL without a trailing slash
	mcpBase  string // BASE + "/mcp/"
	metaBase string // the well-known prefix + BASE + "/mcp/"
	client   *http.Client
	sessions *sessionTable
	sealer   *sessionSealer // nil: random session ids
	// stateful remembers, per connection name, whether its upstream hands
	// out session ids (learnt from initialize responses).
	stateful sync.Map
	tools    *toolCache
	log      zerolog.Logger
	// bodies are the buffers JSON answers are read into (relayJSON).
	bodies bodypool.Pool
	now    func() time.Time
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler for cfg.
func New(cfg Config) (*Handler, error) {
	if cfg.Connections == nil {
		return nil, errors.New("mcp: Config.Connections is required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	var sealer *sessionSealer
	if cfg.SessionKey != nil {
		var err error
		if sealer, err = newSessionSealer(cfg.SessionKey); err != nil {
			return nil, err
		}
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.MaxSessionsPerSubject <= 0 {
		cfg.MaxSessionsPerSubject = DefaultMaxSessionsPerSubject
	}
	cfg.MaxSessionsPerSubject = min(cfg.MaxSessionsPerSubject, cfg.MaxSessions)
	if cfg.MaxResponseBody <= 0 {
		cfg.MaxResponseBody = DefaultMaxResponseBody
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := cfg.Pipeline
	if p == nil {
		var err error
		p, err = pipeline.New(pipeline.Config{
			PublicURL: cfg.PublicURL, Auth: cfg.Auth, Authz: cfg.Authz, Credentials: cfg.Credentials, Audit: cfg.Audit,
			AuditAsync: cfg.AuditAsync, AuditTimeout: cfg.AuditTimeout, AllowedOrigins: cfg.AllowedOrigins,
			Limiter: cfg.Limiter, Guard: cfg.Guard, Meter: cfg.Meter, Observer: cfg.Observer, Logger: cfg.Logger, Now: cfg.Now,
		})
		if err != nil {
			return nil, errors.New("mcp: " + strings.TrimPrefix(err.Error(), "pipeline: "))
		}
	} else {
		cfg.PublicURL = p.PublicURL()
	}
	pub, _ := url.Parse(cfg.PublicURL) // checked by pipeline.New
	base := strings.TrimRight(pub.EscapedPath(), "/")
	h := &Handler{
		cfg:      cfg,
		p:        p,
		public:   strings.TrimRight(cfg.PublicURL, "/"),
		mcpBase:  base + mcpPath,
		metaBase: identity.WellKnownPath + base + mcpPath,
		sessions: newSessionTable(cfg.MaxSessions, cfg.MaxSessionsPerSubject, cfg.SessionTTL),
		sealer:   sealer,
		tools:    newToolCache(toolCacheMax, toolCacheTTL),
		log:      cfg.Logger,
		now:      cfg.Now,
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

// Routes are the path prefixes the handler serves, to mount it on a mux.
func (h *Handler) Routes() []string { return []string{h.mcpBase, h.metaBase} }

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

// Pipeline is the pipeline the handler runs.
func (h *Handler) Pipeline() *pipeline.Pipeline { return h.p }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if name, ok := h.nameIn(path, h.mcpBase); ok {
		if r.Method == http.MethodOptions {
			h.preflight(w, r)
			return
		}
		x := &exchange{h: h, name: name}
		x.call.Resource = h.resourceURL(name)
		x.call.Securable = catalogConnection(name)
		h.p.Serve(w, r, &x.call, x)
		return
	}
	if name, ok := h.nameIn(path, h.metaBase); ok {
		// The document is the same for every name (the connection is not
		// looked up), so answering it reveals nothing.
		identity.ServeMetadata(w, r, identity.MetadataDocument(h.resourceURL(name), h.cfg.AuthorizationServers, h.cfg.Scopes))
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no such endpoint; MCP connections are served at " + h.public + mcpPath + "<connection>"})
}

// nameIn returns the connection name of path under prefix.
func (h *Handler) nameIn(path, prefix string) (string, bool) {
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok {
		return "", false
	}
	name, err := url.PathUnescape(rest)
	if err != nil || !validName(name) {
		return "", false
	}
	return name, true
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
	return h.public + mcpPath + url.PathEscape(name)
}

// metadataURL is where the RFC 9728 metadata of name's resource is.
func (h *Handler) metadataURL(name string) string {
	return identity.MetadataURL(h.public, mcpPath+url.PathEscape(name))
}

// preflight answers a CORS preflight (no body, no audit: it carries no
// message and reaches no upstream).
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	if origin := r.Header.Get("Origin"); origin != "" && h.p.OriginAllowed(origin) {
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Add("Vary", "Origin")
	}
	hd.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
	allowed := "Authorization, Content-Type, Accept, Mcp-Session-Id, Mcp-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name"
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		for _, name := range strings.Split(req, ",") {
			name = strings.TrimSpace(name)
			if len(name) > len(hdrParamPrefix) && len(name) <= 128 && strings.EqualFold(name[:len(hdrParamPrefix)], hdrParamPrefix) {
				allowed += ", " + name
			}
		}
	}
	hd.Set("Access-Control-Allow-Headers", allowed)
	hd.Set("Access-Control-Max-Age", "600")
	hd.Set("Allow", "GET, POST, DELETE, OPTIONS")
	w.WriteHeader(http.StatusNoContent)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
