package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/encoding/json"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/enforce"
)

// Defaults of Options.
const (
	DefaultMaxBody   = 1 << 20
	DefaultMaxBatch  = 1000
	DefaultMaxWait   = time.Second
	DefaultHeartbeat = 15 * time.Second
	// MinHeartbeat is the shortest heartbeat a watcher may ask for.
	MinHeartbeat = 100 * time.Millisecond
)

// Options configure the handler.
type Options struct {
	// Token is the node token callers present as "Authorization: Bearer
	// <token>". Required: with an empty Token every request is 401.
	Token string
	// MaxBody bounds the request body in bytes (default 1 MiB); larger is 413.
	MaxBody int64
	// MaxBatch bounds the checks of one batch (default 1000); more is 413.
	MaxBatch int
	// MaxWait bounds how long a request with at_least_revision waits for
	// that revision before it fails closed with 503 (default 1 s).
	MaxWait time.Duration
	// Heartbeat is the default and longest interval between watch
	// heartbeats (default 15 s).
	Heartbeat time.Duration
	Logger    zerolog.Logger
	// Fallback serves authenticated requests for paths outside /api/ (for
	// example /healthz); nil answers them 404.
	Fallback http.Handler
	// Audit records the events of POST /api/v1/audit (a *catalog.AuditLog);
	// nil answers that route 503.
	Audit AuditRecorder
	// MaxAuditEvents bounds the events of one audit request (default
	// 10,000); more is 413.
	MaxAuditEvents int
	// Connections resolves GET /api/v1/connections/{name}, secrets included
	// (ConnectionResolver); nil answers that route 503.
	Connections func(ctx context.Context, name string) (*ConnectionInfo, error)
	// ModelServices resolves GET /api/v1/model-services/{name}, provider
	// API keys included (ModelServiceResolver); ModelServiceNames answers
	// GET /api/v1/model-services (ModelServiceNames); AccessTokens POST
	// /api/v1/access-tokens/verify (AccessTokenVerifier). nil answers
	// the route 503.
	ModelServices     func(ctx context.Context, name string) (*ModelServiceInfo, error)
	ModelServiceNames func(ctx context.Context) (*ModelServiceList, error)
	AccessTokens      func(ctx context.Context, hash string) (*AccessTokenInfo, error)
	// Limits answers GET /api/v1/limits (LimitsResolver); nil answers 503.
	Limits func(ctx context.Context) (*LimitsInfo, error)
	// Leases serves POST /api/v1/limits/leases (gateway/limits/nodelimits'
	// Server); nil answers 503.
	Leases LeaseFunc
	// Keys serves POST /api/v1/keys (keys.go): the key store lent to
	// nodes, with the names KeyNames allows (nil: all); nil answers 503.
	// KeyLockTTL is how long a node's lock lasts without a renewal
	// (default DefaultKeyLockTTL); MaxKeyLocks bounds the locks nodes hold
	// at once (default DefaultMaxKeyLocks; with a database store, fewer
	// than its pool's connections).
	Keys        keystore.Store
	KeyNames    func(name string) bool
	KeyLockTTL  time.Duration
	MaxKeyLocks int
	// AllowCleartextSecrets lets GET /api/v1/connections/{name} answer a
	// request that came over plain HTTP from a non-loopback address: only
	// for a listener behind a TLS-terminating proxy. Without it such a
	// request is 403 (decrypted secrets never leave over cleartext).
	AllowCleartextSecrets bool
	// AuthFailures records a request refused for a missing or wrong node
	// token (service_name "authorization", action_name "AUTHENTICATE",
	// status 401, decision deny), typically through a
	// catalog.FailureAudit so that repeats are aggregated; nil: not
	// audited.
	AuthFailures catalog.AuditRecorder
	// AuditDecisions records every decision the API answers through Audit
	// (service_name "authorization"), in the background until Context ends.
	AuditDecisions bool
	// Context bounds the handler's background work (default: forever).
	Context context.Context
}

type handler struct {
	d         enforce.Decider
	o         Options
	tokenSum  [sha256.Size]byte
	log       zerolog.Logger
	decisions *decisionAudit // nil: decisions are not audited
	keyLocks  keyLocks
}

var _ http.Handler = (*handler)(nil)

// NewHandler returns the authorization API serving d. See the package
// documentation for the routes.
func NewHandler(d enforce.Decider, opts Options) http.Handler {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.KeyLockTTL <= 0 {
		opts.KeyLockTTL = DefaultKeyLockTTL
	}
	if opts.MaxKeyLocks <= 0 {
		opts.MaxKeyLocks = DefaultMaxKeyLocks
	}
	if opts.MaxAuditEvents <= 0 {
		opts.MaxAuditEvents = DefaultMaxAuditEvents
	}
	h := &handler{d: d, o: opts, log: opts.Logger.With().Str("component", "authz-api").Logger()}
	h.keyLocks.slots = make(chan struct{}, opts.MaxKeyLocks)
	if opts.AuditDecisions && opts.Audit != nil {
		bg := opts.Context
		if bg == nil {
			bg = context.Background()
		}
		h.decisions = newDecisionAudit(bg, opts.Audit, h.log)
	}
	if opts.Token == "" {
		h.log.Error().Msg("no node token configured: every request will be refused")
	} else {
		h.tokenSum = sha256.Sum256([]byte(opts.Token))
	}
	return h
}

// httpError is an error with the HTTP answer it gets.
type httpError struct {
	status   int
	msg      string
	revision catalog.Revision // for 503 on at_least_revision
	allow    string           // for 405
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

// authenticated compares the bearer token in constant time: both sides are
// hashed first, so neither the token's content nor its length shows in
// the time taken.
func (h *handler) authenticated(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || h.o.Token == "" {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) == 1
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.authenticated(r) {
		v := `Bearer realm="mandate"`
		if r.Header.Get("Authorization") != "" {
			v += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", v)
		h.log.Debug().Str("path", r.URL.Path).Str("remote", r.RemoteAddr).Msg("unauthenticated request refused")
		h.auditAuthFailure(r)
		writeJSON(w, http.StatusUnauthorized, ErrorResponse{Error: "missing or invalid node token"})
		return
	}
	var err error
	switch r.URL.Path {
	case AuthorizePath:
		err = method(r, http.MethodPost, h.authorize, w)
	case WatchPath:
		err = method(r, http.MethodGet, h.watch, w)
	case RevisionPath:
		err = method(r, http.MethodGet, h.revision, w)
	case AuditPath:
		err = method(r, http.MethodPost, h.audit, w)
	case LeasesPath:
		err = method(r, http.MethodPost, h.leases, w)
	case LimitsPath:
		err = method(r, http.MethodGet, h.limits, w)
	case KeysPath:
		err = method(r, http.MethodPost, h.keys, w)
	case AccessTokenVerifyPath:
		err = method(r, http.MethodPost, h.accessToken, w)
	case strings.TrimSuffix(ModelServicesPath, "/"):
		err = method(r, http.MethodGet, h.modelService, w)
	default:
		if strings.HasPrefix(r.URL.Path, ModelServicesPath) {
			err = method(r, http.MethodGet, h.modelService, w)
			break
		}
		if strings.HasPrefix(r.URL.Path, ConnectionsPath) {
			err = method(r, http.MethodGet, h.connection, w)
			break
		}
		if h.o.Fallback != nil && r.URL.Path != "/api" && !strings.HasPrefix(r.URL.Path, "/api/") {
			h.o.Fallback.ServeHTTP(w, r)
			return
		}
		err = errorf(http.StatusNotFound, "no such endpoint: %s", r.URL.Path)
	}
	if err != nil {
		h.writeError(w, r, err)
	}
}

// auditAuthFailure records a refused node-token check (Options.AuthFailures).
func (h *handler) auditAuthFailure(r *http.Request) {
	if h.o.AuthFailures == nil {
		return
	}
	reason := "missing node token"
	if r.Header.Get("Authorization") != "" {
		reason = "invalid node token"
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	params, _ := json.Marshal(map[string]string{"method": r.Method, "path": r.URL.Path})
	ev := catalog.AuditEvent{Service: "authorization", Action: "AUTHENTICATE", SourceIP: ip, UserAgent: r.UserAgent(),
		RequestParams: string(params), StatusCode: http.StatusUnauthorized, ErrorMessage: reason, Decision: "deny", Reason: reason}
	if err := h.o.AuthFailures.Record(r.Context(), ev); err != nil && r.Context().Err() == nil {
		h.log.Error().Err(err).Msg("could not audit a refused node token")
	}
}

func method(r *http.Request, m string, fn func(http.ResponseWriter, *http.Request) error, w http.ResponseWriter) error {
	if r.Method != m {
		return &httpError{status: http.StatusMethodNotAllowed, msg: fmt.Sprintf("%s %s: use %s", r.Method, r.URL.Path, m), allow: m}
	}
	return fn(w, r)
}

func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		h.log.Error().Err(err).Str("path", r.URL.Path).Msg("authorization API request failed")
		he = errorf(http.StatusInternalServerError, "internal error")
	}
	switch he.status {
	case http.StatusMethodNotAllowed:
		w.Header().Set("Allow", he.allow)
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		h.log.Warn().Str("path", r.URL.Path).Str("error", he.msg).Msg("authorization failed closed")
	}
	writeJSON(w, he.status, ErrorResponse{Error: he.msg, Revision: he.revision})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own types are written: cannot happen
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	b = append(b, '\n')
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// bodyBufs recycles request body buffers (bounded by MaxBody).
var bodyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// readAll is io.ReadAll into buf.
func readAll(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func bytesTrimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// decodeBody reads one JSON object of at most MaxBody bytes into v.
func (h *handler) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	return h.decodeBodyMax(w, r, v, h.o.MaxBody)
}

// decodeBodyMax reads one JSON object of at most maxBody bytes into v.
func (h *handler) decodeBodyMax(w http.ResponseWriter, r *http.Request, v any, maxBody int64) error {
	if r.ContentLength > maxBody {
		return errorf(http.StatusRequestEntityTooLarge, "request body of %d bytes is larger than the limit of %d bytes", r.ContentLength, maxBody)
	}
	buf := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(buf)
	b, err := readAll(http.MaxBytesReader(w, r.Body, maxBody), (*buf)[:0])
	*buf = b[:0]
	if err == nil {
		if len(bytesTrimSpace(b)) == 0 {
			err = io.EOF
		} else {
			// One linear pre-scan bounds depth, refuses duplicate keys and
			// trailing data; then the fast decoder (catalog/strictjson).
			err = strictjson.Unmarshal(b, v, strictjson.Options{MaxBytes: maxBody, DisallowUnknownFields: true})
		}
	}
	if err == nil {
		return nil
	}
	var (
		tooBig *http.MaxBytesError
		strict *strictjson.Error
		typ    *stdjson.UnmarshalTypeError
		ftyp   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooBig), errors.Is(err, strictjson.ErrTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, "request body is larger than the limit of %d bytes", maxBody)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "malformed request: empty body (a JSON object is expected)")
	case errors.As(err, &typ) && typ.Type != nil:
		return errorf(http.StatusBadRequest, "malformed request: %s must be %s, not %s", fieldName(typ.Field), jsonKind(typ.Type.Kind()), typ.Value)
	case errors.As(err, &ftyp) && ftyp.Type != nil:
		return errorf(http.StatusBadRequest, "malformed request: %s must be %s, not %s", fieldName(ftyp.Field), jsonKind(ftyp.Type.Kind()), ftyp.Value)
	case errors.As(err, &strict) && errors.Is(err, strictjson.ErrSyntax) && strict.Offset >= int64(len(b)):
		return errorf(http.StatusBadRequest, "malformed request: truncated JSON")
	case errors.As(err, &strict):
		return errorf(http.StatusBadRequest, "malformed request: %s", strict.Msg)
	default:
		return errorf(http.StatusBadRequest, "malformed request: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
}

// fieldName turns the path encoding/json reports (with the Go names of
// embedded structs, "Check.Request.subject") into the JSON one.
func fieldName(path string) string {
	var parts []string
	for _, p := range strings.Split(path, ".") {
		if p != "" && (p[0] < 'A' || p[0] > 'Z') {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "the request"
	}
	return strings.Join(parts, ".")
}

func jsonKind(k reflect.Kind) string {
	switch k {
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	default:
		return "a " + k.String()
	}
}

func (h *handler) authorize(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	var req AuthorizeRequest
	if err := h.decodeBody(w, r, &req); err != nil {
		return err
	}
	if req.Checks == nil {
		rq, err := req.normalize()
		if err != nil {
			return errorf(http.StatusBadRequest, "%s", err)
		}
		var wait waiter
		defer wait.release()
		d, err := h.decide(r.Context(), &wait, rq, req.AtLeastRevision)
		if err != nil {
			return err
		}
		if !req.Explain {
			d.Steps = nil
		}
		writeJSON(w, http.StatusOK, d)
		h.decisions.record(r, []enforce.Request{rq}, []enforce.Decision{d}, start)
		return nil
	}
	if !req.Check.isZero() {
		return errorf(http.StatusBadRequest, "malformed request: give one check at the top level or checks, not both")
	}
	checks := *req.Checks
	if len(checks) > h.o.MaxBatch {
		return errorf(http.StatusRequestEntityTooLarge, "batch of %d checks is larger than the limit of %d", len(checks), h.o.MaxBatch)
	}
	reqs := make([]enforce.Request, len(checks))
	for i := range checks {
		rq, err := checks[i].normalize()
		if err != nil {
			return errorf(http.StatusBadRequest, "checks[%d]: %s", i, err)
		}
		reqs[i] = rq
	}
	res := BatchResponse{Results: make([]enforce.Decision, len(checks))}
	var wait waiter
	defer wait.release()
	for i := range reqs {
		d, err := h.decide(r.Context(), &wait, reqs[i], max(req.AtLeastRevision, checks[i].AtLeastRevision))
		if err != nil {
			return err
		}
		if !checks[i].Explain {
			d.Steps = nil
		}
		res.Results[i] = d
	}
	writeJSON(w, http.StatusOK, res)
	h.decisions.record(r, reqs, res.Results, start)
	return nil
}

// waiter holds the one deadline that a request's waits for a revision
// share, made at the first wait.
type waiter struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func (wt *waiter) context(parent context.Context, d time.Duration) context.Context {
	if wt.ctx == nil {
		wt.ctx, wt.cancel = context.WithTimeout(parent, d)
	}
	return wt.ctx
}

func (wt *waiter) release() {
	if wt.cancel != nil {
		wt.cancel()
	}
}

// decide answers r from a snapshot at atLeast or newer, failing closed
// with 503 when that revision does not arrive within MaxWait.
func (h *handler) decide(ctx context.Context, wait *waiter, r enforce.Request, atLeast catalog.Revision) (enforce.Decision, error) {
	if atLeast <= 0 || h.d.Revision() >= atLeast {
		if d := h.d.Decide(ctx, r); d.Revision >= atLeast {
			return nodeGuarded(d, r), nil
		}
	}
	d, err := h.d.DecideAt(wait.context(ctx, h.o.MaxWait), r, atLeast)
	if err == nil && d.Revision < atLeast { // a contract breach: never answer from older
		err = enforce.ErrStale
	}
	if err == nil {
		d = nodeGuarded(d, r)
	}
	if err != nil {
		cur := h.d.Revision()
		return enforce.Decision{}, &httpError{status: http.StatusServiceUnavailable, revision: cur,
			msg: fmt.Sprintf("revision %d is not available within %s (newest is %d): failing closed", atLeast, h.o.MaxWait, cur)}
	}
	return d, nil
}

// nodeGuarded refuses a call that guardrail policies apply to: gateway
// nodes (the callers of this API) do not run the guardrail stages yet, so
// they must not carry it (fail closed); mandate serve's own gateway does.
func nodeGuarded(d enforce.Decision, r enforce.Request) enforce.Decision {
	if d.Allowed && d.Guarded {
		d.Allowed = false
		d.Reason = fmt.Sprintf("guardrail policies apply to %s %s and gateway nodes do not run guardrails: call it through the catalog server's gateway (mandate serve)",
			strings.ToLower(string(r.Securable.Type)), r.Securable.Name)
	}
	return d
}

func (h *handler) revision(w http.ResponseWriter, _ *http.Request) error {
	writeJSON(w, http.StatusOK, RevisionEvent{Revision: h.d.Revision()})
	return nil
}
