package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/identity"
	"github.com/mandatehq/mandate/gateway/llmgw"
	"github.com/mandatehq/mandate/gateway/mcp"
	"github.com/mandatehq/mandate/gateway/oauthconnect"
	"github.com/mandatehq/mandate/gateway/pipeline"
	"github.com/mandatehq/mandate/gateway/upstream"
	"github.com/mandatehq/mandate/sqlfront"
)

// dataPlaneConfig is what the MCP gateway needs from its host process:
// `mandate serve` passes the in-process engine, connections and audit
// log; `mandate gateway` passes clients of a remote catalog.
type dataPlaneConfig struct {
	publicURL   string            // canonical URL of the gateway
	issuers     []identity.Issuer // OIDC issuers whose tokens are accepted
	dataDir     string            // signing keys and per-user upstream tokens
	keyring     *catalog.Keyring  // seals both at rest
	authz       gateway.Authorizer
	connections gateway.Connections
	audit       gateway.AuditSink
	auditSync   auditSync // --audit-sync
	log         zerolog.Logger
	// ownCert is the fingerprint of the listener's own TLS certificate
	// ("" without TLS): identity fetches trust it besides the system CAs.
	ownCert string
	// observer traces and meters every call (gateway/telemetry).
	observer pipeline.Observer
	// models resolves model services for the LLM endpoint (/llm/v1/...;
	// nil: no LLM endpoint); tokens verifies Mandate access tokens (nil:
	// OIDC JWTs only); userIDKey keys the pseudonymous user id model
	// providers get (llmUserIDKey).
	models    gateway.ModelServices
	tokens    gateway.AccessTokens
	userIDKey []byte
	// guard runs the guardrail policies (gateway/guardstage); nil: none.
	guard pipeline.Guard
	// limiter is the limits stage (rate limits and budgets; llmlimits.go);
	// nil: none.
	limiter pipeline.Limiter
	// maxInFlightPerSubject bounds each subject's calls in progress
	// (httpConfig.perSubject).
	maxInFlightPerSubject int

	// keys, when set, holds the signing keys and per-user upstream tokens
	// instead of dataDir (keystore.Sealed over stores.gatewayKeys, or over
	// the catalog's, node.Keys, on a gateway node). keysRemote: it is the
	// catalog's, which may not answer yet at start (a node then starts and
	// fails closed until it does).
	keys       keystore.Store
	keysRemote bool
	// csrfKey keys the consent forms' CSRF tokens (csrfKey(master key));
	// nil: a random key per process.
	csrfKey []byte
	// sessionKey seals MCP session ids (mcpSessionKey(master key)), so that
	// every replica and node serves every session; nil: random ids.
	sessionKey []byte
}

// userTokensFile is the per-user OAuth grants' file in the data directory.
const userTokensFile = "user-tokens.json"

// llmUserIDKey derives the key of the pseudonymous user ids sent to model
// providers from the master key: the same on every node sharing it, so a
// human's id is stable, and unrelated to anything else the key seals.
func llmUserIDKey(masterKey []byte) []byte {
	m := hmac.New(sha256.New, masterKey)
	m.Write([]byte("mandate/llm/pseudonymous-user-id/v1"))
	return m.Sum(nil)
}

// auditSync is --audit-sync: on (the default) answers a gateway call only
// once its audit record is durable; off answers without waiting, like
// PostgreSQL's synchronous_commit = off.
type auditSync struct{ off bool }

const auditSyncUsage = "on: a gateway call is answered only once its audit record is durable (its fsync overlaps the upstream call); off: answered without waiting, a crash loses at most the last group-commit window of audit records (like PostgreSQL's synchronous_commit = off)"

// auditSyncInterval is how often the audit log is fsynced with
// --audit-sync off (auditwal.Options.SyncInterval): what an OS crash or
// power loss may lose besides the records still queued.
const auditSyncInterval = 100 * time.Millisecond

// auditOffSubmitDelay is how long, with --audit-sync off, the group
// commit gathers events before it writes them
// (catalog.AuditLogOptions.SubmitDelay): nobody waits for any of them
// then, and fewer, larger writes cost less CPU (at 1,000 calls/s one
// write per 10 ms instead of one per 2 ms). A process crash loses what is
// queued, as before: at most this long of calls.
const auditOffSubmitDelay = 10 * time.Millisecond

// auditApplyNice is the nice value of the thread that applies the audit
// log to DuckDB in the background (auditwal.Options.ApplyNice): DuckDB
// applies on the calling thread (--query-threads 1), a burst of tens of
// milliseconds of CPU every few seconds, which the gateway's calls in
// flight would otherwise share a core with. Queries apply what is pending
// on their own threads, at normal priority; one that comes while a slice
// is being applied (≈ 1,000 rows) waits for it, which a niced thread
// finishes later when the host is contended. Measured (BENCHMARKS.md):
// --audit-sync off's paced p50 was lower in every run against main.
const auditApplyNice = 10

// submitDelay is the group commit's catalog.AuditLogOptions.SubmitDelay
// (0: its default).
func (a auditSync) submitDelay() time.Duration {
	if a.off {
		return auditOffSubmitDelay
	}
	return 0
}

// syncInterval is the audit log's auditwal.Options.SyncInterval.
func (a auditSync) syncInterval() time.Duration {
	if a.off {
		return auditSyncInterval
	}
	return 0
}

func (a *auditSync) String() string {
	if a.off {
		return "off"
	}
	return "on"
}

func (a *auditSync) Set(v string) error {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on":
		a.off = false
	case "off":
		a.off = true
	default:
		return fmt.Errorf("must be on or off, got %q", v)
	}
	return nil
}

// dataPlane is the assembled gateway: its routes and the parts tests and
// benchmarks look into.
type dataPlane struct {
	pipe  *pipeline.Pipeline
	mcp   *mcp.Handler
	llm   *llmgw.Handler // nil without model services
	creds *upstream.Credentials
	keys  *upstream.KeySet
	oauth *oauthconnect.Connector
}

// newDataPlane assembles the stages of gateway/doc.go.
func newDataPlane(ctx context.Context, c dataPlaneConfig) (*dataPlane, error) {
	seal := func(aad string) (func([]byte) ([]byte, error), func([]byte) ([]byte, error)) {
		return func(b []byte) ([]byte, error) { return c.keyring.Seal(b, []byte(aad)) },
			func(b []byte) ([]byte, error) { return c.keyring.Open(b, []byte(aad)) }
	}
	var idClient *http.Client
	if c.ownCert != "" {
		idClient = trustingOwnCert(c.ownCert)
	}
	auth, err := identity.New(ctx, identity.Config{
		Issuers:    c.issuers,
		Audiences:  []string{c.publicURL},
		Logger:     c.log,
		HTTPClient: idClient,
	})
	if err != nil {
		return nil, fmt.Errorf("inbound authentication: %w", err)
	}
	ksSeal, ksOpen := seal("upstream-signing-keys")
	keys, err := upstream.NewKeySet(ctx, upstream.KeySetConfig{Dir: c.dataDir, Store: c.keys, Seal: ksSeal, Open: ksOpen, Logger: c.log,
		Deferred: c.keysRemote})
	if err != nil {
		return nil, fmt.Errorf("upstream signing keys: %w", err)
	}
	var store oauthconnect.TokenStore
	if c.keys != nil {
		store = oauthconnect.NewSharedTokenStore(c.keys)
		if n, err := adoptGrants(ctx, c.dataDir, store); err != nil && c.keysRemote {
			c.log.Warn().Err(err).Msg("the per-user OAuth grants of the data directory could not be moved to the catalog's key store yet (tried again at the next start)")
		} else if err != nil {
			return nil, fmt.Errorf("per-user grants of %s: %w", c.dataDir, err)
		} else if n > 0 {
			c.log.Info().Int("grants", n).Msg("per-user OAuth grants of the data directory moved to the shared store")
		}
	} else if store, err = oauthconnect.NewFileTokenStore(filepath.Join(c.dataDir, userTokensFile)); err != nil {
		return nil, fmt.Errorf("per-user token store: %w", err)
	}
	tSeal, tOpen := seal("per-user-oauth")
	oauth, err := oauthconnect.New(oauthconnect.Config{
		PublicURL: c.publicURL, Connections: c.connections, Store: store, Seal: tSeal, Open: tOpen, Logger: c.log,
		CSRFKey: c.csrfKey,
	})
	if err != nil {
		return nil, fmt.Errorf("per_user_oauth: %w", err)
	}
	creds, err := upstream.New(upstream.Config{Issuer: c.publicURL, Keys: keys, PerUserOAuth: oauth, Logger: c.log})
	if err != nil {
		return nil, fmt.Errorf("upstream credentials: %w", err)
	}
	servers := make([]string, 0, len(c.issuers))
	for _, is := range c.issuers {
		servers = append(servers, is.URL)
	}
	// Agents present an OIDC JWT or a Mandate access token, to MCP and
	// LLM endpoints alike.
	var inbound gateway.Authenticator = auth
	if c.tokens != nil {
		inbound = identity.WithAccessTokens(auth, c.tokens)
	}
	// One pipeline for every protocol's handler (gateway/pipeline).
	p, err := pipeline.New(pipeline.Config{
		PublicURL: c.publicURL, Auth: inbound, Authz: c.authz, Credentials: creds, Audit: c.audit,
		AuditAsync: c.auditSync.off, Logger: c.log, Guard: c.guard, Observer: c.observer, Limiter: c.limiter,
		MaxInFlightPerSubject: c.maxInFlightPerSubject,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway pipeline: %w", err)
	}
	h, err := mcp.New(mcp.Config{Pipeline: p, Connections: c.connections, AuthorizationServers: servers, Logger: c.log,
		SessionKey: c.sessionKey})
	if err != nil {
		return nil, fmt.Errorf("MCP gateway: %w", err)
	}
	dp := &dataPlane{pipe: p, mcp: h, creds: creds, keys: keys, oauth: oauth}
	if c.models != nil {
		dp.llm, err = llmgw.New(llmgw.Config{Pipeline: p, Models: c.models, UserIDKey: c.userIDKey,
			AuthorizationServers: servers, Logger: c.log})
		if err != nil {
			return nil, fmt.Errorf("LLM gateway: %w", err)
		}
	}
	return dp, nil
}

// bodyLimits are the routes that bound their own request bodies above the
// listener's bound (the LLM endpoint: images and documents travel in
// them), for httpConfig.largeBodies.
func (d *dataPlane) bodyLimits() []bodyLimit {
	if d == nil || d.llm == nil {
		return nil
	}
	return []bodyLimit{{prefix: d.llm.Routes()[0], max: d.llm.MaxBody()}}
}

// mount adds the gateway's public routes to mux: they authenticate
// callers themselves (bearer tokens, sign-in tickets), so they sit outside
// the node-token check of the catalog's API.
func (d *dataPlane) mount(mux *http.ServeMux) {
	for _, route := range d.mcp.Routes() { // under the path of --public-url
		mux.Handle(route, d.mcp)
	}
	if d.llm != nil {
		for _, route := range d.llm.Routes() {
			mux.Handle(route, d.llm)
		}
	}
	mux.Handle("GET /.well-known/jwks.json", d.keys.JWKSHandler())
	mux.Handle("/oauth/", d.oauth.Handler())
}

// publicURLFor is the gateway's canonical URL: --public-url, or http://
// (https:// when the listener serves TLS) plus the bound address
// (127.0.0.1 for a wildcard host). It is the source of truth for the Host
// check: gateway requests must name its host (any loopback host when it is
// a loopback URL), so a reverse proxy in front passes the Host header (and
// the path) through unchanged.
func publicURLFor(flagValue string, ln net.Listener, tlsOn bool) (string, error) {
	if flagValue != "" {
		u, err := url.Parse(flagValue)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return "", fmt.Errorf("--public-url %q must be an absolute http(s) URL without query or fragment", flagValue)
		}
		return strings.TrimSuffix(flagValue, "/"), nil
	}
	host, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http://"
	if tlsOn {
		scheme = "https://"
	}
	return scheme + net.JoinHostPort(host, port), nil
}

// issuersFrom parses --oidc-issuer: comma-separated issuer URLs, each
// optionally "URL|JWKS-URL".
func issuersFrom(v string) []identity.Issuer {
	var out []identity.Issuer
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		iss, jwks, _ := strings.Cut(f, "|")
		out = append(out, identity.Issuer{URL: strings.TrimSpace(iss), JWKSURL: strings.TrimSpace(jwks)})
	}
	return out
}

// shutdownGrace bounds how long in-flight gateway requests may finish.
const shutdownGrace = 10 * time.Second

func identityIssuer(url string) identity.Issuer { return identity.Issuer{URL: url} }

// connectionStatus lists the accounts users connected for per_user_oauth
// connections (SHOW CONNECTION STATUS).
func (d *dataPlane) connectionStatus(ctx context.Context, user string) ([]sqlfront.ConnectionStatus, error) {
	list, err := d.oauth.Status(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make([]sqlfront.ConnectionStatus, len(list))
	for i, c := range list {
		out[i] = sqlfront.ConnectionStatus{User: c.User, Connection: c.Connection, ConnectedAt: c.ConnectedAt,
			ExpiresAt: c.ExpiresAt, Scopes: c.Scopes, Refreshable: c.Refreshable}
	}
	return out, nil
}

// failureRouted is the gateway's audit sink: the queue (catalog.AuditLog,
// or a node's sink) for calls, with the failures anyone can cause without
// a credential (catalog.IsAuthFailure) sent through a FailureAudit instead,
// which aggregates their repeats so that they cannot fill the log.
type failureRouted struct {
	gateway.AuditQueue
	failures *catalog.FailureAudit
}

func withFailures(q gateway.AuditQueue, f *catalog.FailureAudit) gateway.AuditQueue {
	return failureRouted{AuditQueue: q, failures: f}
}

func (r failureRouted) Record(ctx context.Context, ev catalog.AuditEvent) error {
	if catalog.IsAuthFailure(&ev) {
		return r.failures.Record(ctx, ev)
	}
	return r.AuditQueue.Record(ctx, ev)
}

// Submit takes a refusal's only record without waiting (--audit-sync off):
// a failure's repeats are only counted, and the first of its group per
// window is written at once (a bounded number per window).
func (r failureRouted) Submit(ctx context.Context, ev catalog.AuditEvent) error {
	if catalog.IsAuthFailure(&ev) {
		return r.failures.Record(ctx, ev)
	}
	return r.AuditQueue.Submit(ctx, ev)
}
