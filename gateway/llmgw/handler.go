package llmgw

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/identity"
	"github.com/mandatehq/mandate/gateway/internal/bodypool"
	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// The securable type and privilege of model services.
const (
	TypeModelService = catalog.TypeModelService
	PrivExecute      = catalog.PrivExecute
)

// Service is the audit service_name of LLM calls.
const Service = catalog.AuditServiceLLM

// llmPath is where the LLM API lives under the public URL's path: its
// endpoints are /llm/v1/chat/completions, ... (OpenAI's and Anthropic's
// paths below their /v1).
const llmPath = "/llm"

// MinUserIDKey is the least length of Config.UserIDKey.
const MinUserIDKey = 32

// Config configures a Handler.
type Config struct {
	// Pipeline runs every call (shared with the other protocols).
	Pipeline *pipeline.Pipeline
	// Models resolves model services.
	Models gateway.ModelServices
	// Forwarder sends calls to the destinations; nil: llm.NewForwarder().
	Forwarder *llm.Forwarder
	// Limits bound a request (body size, nesting, messages, tools); the
	// zero value is llm's defaults (32 MiB bodies).
	Limits llm.Limits
	// UserIDKey keys the pseudonymous user id the upstream gets
	// (HMAC-SHA256 of the human's name): at least MinUserIDKey bytes,
	// the same on every gateway node so that the id is stable.
	UserIDKey []byte
	// AuthorizationServers are listed in the RFC 9728 metadata of the LLM
	// resource.
	AuthorizationServers []string
	Logger               zerolog.Logger
	// Now is the clock of the models list's created times (default
	// time.Now).
	Now func() time.Time
}

// Handler serves the LLM API under BASE/llm/v1 (BASE the path of the
// pipeline's public URL) and its protected resource metadata; every call
// runs the pipeline.
type Handler struct {
	cfg     Config
	p       *pipeline.Pipeline
	fwd     *llm.Forwarder
	base    string // BASE + "/llm"
	v1      string // BASE + "/llm/v1"
	meta    string // the well-known path of the resource's metadata
	resURL  string // the LLM API's resource URL (token audience)
	metaURL string
	metaDoc []byte
	log     zerolog.Logger
	now     func() time.Time
	started time.Time // the models list's created time
	// userIDs caches UserID by subject (string → string), up to
	// maxUserIDs entries: the HMAC is a fixed cost per call otherwise.
	userIDs  sync.Map
	nUserIDs atomic.Int64
	// bodies are the buffers request bodies are read into, back once the
	// call is over (ServeHTTP).
	bodies bodypool.Pool
}

// maxUserIDs and maxCachedSubject bound the UserID cache (beyond them ids
// are computed per call): at most 64 Ki subjects of at most 256 bytes.
const (
	maxUserIDs       = 1 << 16
	maxCachedSubject = 256
)

var _ http.Handler = (*Handler)(nil)

// New returns a Handler for cfg.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Pipeline == nil:
		return nil, errors.New("llmgw: Config.Pipeline is required")
	case cfg.Models == nil:
		return nil, errors.New("llmgw: Config.Models is required")
	case len(cfg.UserIDKey) < MinUserIDKey:
		return nil, errors.New("llmgw: Config.UserIDKey must hold at least 32 bytes")
	}
	if cfg.Forwarder == nil {
		cfg.Forwarder = llm.NewForwarder()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pub := cfg.Pipeline.PublicURL()
	u, _ := url.Parse(pub) // checked by pipeline.New
	base := strings.TrimRight(u.EscapedPath(), "/")
	h := &Handler{
		cfg: cfg, p: cfg.Pipeline, fwd: cfg.Forwarder, log: cfg.Logger, now: cfg.Now, started: cfg.Now().UTC().Truncate(time.Second),
		base:    base + llmPath,
		v1:      base + llmPath + "/v1",
		meta:    identity.WellKnownPath + base + llmPath,
		resURL:  pub + llmPath,
		metaURL: identity.MetadataURL(pub, llmPath),
	}
	h.metaDoc = identity.MetadataDocument(h.resURL, cfg.AuthorizationServers, nil)
	return h, nil
}

// Routes are the path prefixes (and paths) the handler serves, to mount
// it on a mux.
func (h *Handler) Routes() []string { return []string{h.base + "/", h.meta} }

// MaxBody is the largest request body the handler takes (Config.Limits).
func (h *Handler) MaxBody() int64 {
	if h.cfg.Limits.MaxBody > 0 {
		return h.cfg.Limits.MaxBody
	}
	return llm.DefaultMaxBody
}

// Resource is the LLM API's canonical URL (PUBLIC-URL/llm): an OIDC
// token's audience may name it or the gateway's public URL.
func (h *Handler) Resource() string { return h.resURL }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if path == h.meta {
		identity.ServeMetadata(w, r, h.metaDoc)
		return
	}
	rest, ok := strings.CutPrefix(path, h.v1)
	e, known := endpointOf(rest)
	if !ok || !known {
		llm.WriteError(w, llm.ClientFormat(r), &llm.Error{Status: http.StatusNotFound, Code: "unknown_url",
			Message: "no such endpoint: the LLM API is served at " + h.resURL + "/v1 (chat/completions, responses, embeddings, models, messages, messages/count_tokens)"})
		return
	}
	if r.Method == http.MethodOptions {
		h.preflight(w, r, e)
		return
	}
	if r.Method != e.Method() && !(e == llm.Models && r.Method == http.MethodHead) {
		w.Header().Set("Allow", e.Method()+", OPTIONS")
		llm.WriteError(w, llm.ClientFormat(r), &llm.Error{Status: http.StatusMethodNotAllowed,
			Message: "method " + r.Method + " is not allowed on " + e.String() + " (use " + e.Method() + ")"})
		return
	}
	x := &exchange{h: h, endpoint: e, cf: llm.ClientFormat(r)}
	x.call.Resource = h.resURL
	x.call.Action = e.String()
	x.call.Securable.Type = TypeModelService
	h.p.Serve(w, r, &x.call, x)
	if b := x.body; b != nil {
		// The call is over: its request body was copied where it had to
		// outlive it (the audit payload, telemetry), and every upstream
		// request carried a body of its own (llm's rewrite or
		// translation), which the transport may still be reading.
		x.body, x.req, x.call.Content = nil, nil, nil
		h.bodies.Put(b)
	}
}

// endpointOf maps the path below /llm/v1 to its endpoint, exactly.
func endpointOf(rest string) (llm.Endpoint, bool) {
	rest = strings.TrimSuffix(rest, "/")
	for e := llm.ChatCompletions; e <= llm.CountTokens; e++ {
		if rest == e.Path() {
			return e, true
		}
	}
	return 0, false
}

// preflight answers a CORS preflight (no audit: it carries no call).
func (h *Handler) preflight(w http.ResponseWriter, r *http.Request, e llm.Endpoint) {
	hd := w.Header()
	if origin := r.Header.Get("Origin"); origin != "" && h.p.OriginAllowed(origin) {
		hd.Set("Access-Control-Allow-Origin", origin)
		hd.Add("Vary", "Origin")
	}
	hd.Set("Access-Control-Allow-Methods", e.Method())
	hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, X-Api-Key, Anthropic-Version, Anthropic-Beta, "+
		"OpenAI-Beta, X-Mandate-Request-Tags, Traceparent, Tracestate")
	hd.Set("Access-Control-Max-Age", "600")
	hd.Set("Allow", e.Method()+", OPTIONS")
	w.WriteHeader(http.StatusNoContent)
}

// UserID is the stable pseudonymous id of subject that the upstream gets
// (OpenAI safety_identifier/user, Anthropic metadata.user_id): the first
// 128 bits of HMAC-SHA256(UserIDKey, subject), hex, with a prefix. It
// reveals nothing about the name to the provider and is the same for the
// same human on every node sharing the key.
func (h *Handler) UserID(subject string) string {
	if v, ok := h.userIDs.Load(subject); ok {
		return v.(string)
	}
	id := h.userID(subject)
	if len(subject) <= maxCachedSubject && h.nUserIDs.Load() < maxUserIDs {
		if _, loaded := h.userIDs.LoadOrStore(subject, id); !loaded {
			h.nUserIDs.Add(1)
		}
	}
	return id
}

func (h *Handler) userID(subject string) string {
	m := hmac.New(sha256.New, h.cfg.UserIDKey)
	m.Write([]byte(subject))
	var sum [sha256.Size]byte
	return "mnd-" + hex.EncodeToString(m.Sum(sum[:0])[:16])
}
