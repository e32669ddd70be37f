package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/enforce/client"
	"github.com/mandatehq/mandate/gateway"
	"github.com/mandatehq/mandate/gateway/node"
	"github.com/mandatehq/mandate/gateway/upstream"
)

type gatewayConfig struct {
	catalogURL    string
	nodeTokenFile string
	httpAddr      string
	publicURL     string
	oidcIssuers   string
	dataDir       string
	maxStaleness  time.Duration
	logFormat     string
	logLevel      string
	fingerprint   string
	http          httpConfig
	auditSync     auditSync
	telemetry     telemetryConfig
}

func parseGatewayFlags(args []string, stdout, stderr io.Writer) (*gatewayConfig, error) {
	c := &gatewayConfig{}
	fs := newFlagSet("gateway", args, stdout, stderr)
	fs.StringVar(&c.catalogURL, "catalog", "", "URL of the catalog's HTTP API (mandate serve --http-addr), e.g. https://catalog.internal:8470 (required)")
	fs.StringVar(&c.nodeTokenFile, "node-token-file", "", "file holding the catalog's node token (its DATA_DIR/node-token); or set MANDATE_NODE_TOKEN")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8480", "address the gateway listens on: MCP at /mcp/CONNECTION, the OpenAI and Anthropic APIs at /llm")
	fs.StringVar(&c.publicURL, "public-url", "", "canonical URL of this gateway as agents reach it; inbound tokens must name it as audience (default http://HTTP-ADDR)")
	fs.StringVar(&c.oidcIssuers, "oidc-issuer", "", "comma-separated OIDC issuer URLs whose tokens are accepted (optionally URL|JWKS-URL); none: Mandate access tokens only")
	fs.StringVar(&c.dataDir, "data-dir", "./mandate-gateway-data", "directory for this node's certificates (its signing keys and users' upstream tokens are in the catalog's key store, sealed with MANDATE_MASTER_KEY: set it to the catalog's)")
	fs.DurationVar(&c.maxStaleness, "max-staleness", client.DefaultMaxStaleness, "deny every call when the node cannot confirm for this long that its authorization answers are current")
	fs.Var(&c.auditSync, "audit-sync", auditSyncUsage)
	fs.StringVar(&c.logFormat, "log-format", "auto", "log format: json, console, or auto")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.fingerprint, "catalog-fingerprint", "", "trust exactly the catalog certificate with this SHA-256 fingerprint (sha256:HEX, printed by mandate serve) instead of the system's CAs")
	addHTTPFlags(fs, &c.http)
	addTelemetryFlags(fs, &c.telemetry)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mandate gateway --catalog URL --node-token-file FILE [--oidc-issuer URL] [flags]\n\nRuns a gateway node (MCP servers and LLM APIs) against a remote catalog. MANDATE_MASTER_KEY must hold the catalog's master key (or DATA_DIR/master.key a copy of it): the node keeps the installation's signing keys and users' upstream tokens in the catalog's key store, sealed with it. Every flag can also be set with its environment variable (shown in brackets).\n\nFlags:\n")
		printEnvFlags(fs)
	}
	if err := parseEnvArgs(fs, args); err != nil {
		return nil, err
	}
	if c.catalogURL == "" {
		return nil, errors.New("--catalog is required (the catalog's HTTP API URL)")
	}
	if err := gateway.CheckSecureURL(c.catalogURL); err != nil {
		return nil, fmt.Errorf("--catalog %q: %v: the node token and connection secrets travel on it", c.catalogURL, err)
	}
	if c.fingerprint != "" && !strings.HasPrefix(strings.ToLower(c.catalogURL), "https://") {
		return nil, errors.New("--catalog-fingerprint needs an https --catalog URL")
	}
	if err := c.http.check(c.httpAddr); err != nil {
		return nil, err
	}
	if err := c.telemetry.check(); err != nil {
		return nil, err
	}
	if c.nodeTokenFile == "" && os.Getenv("MANDATE_NODE_TOKEN") == "" {
		return nil, errors.New("--node-token-file or MANDATE_NODE_TOKEN is required")
	}
	if c.maxStaleness <= 0 {
		return nil, errors.New("--max-staleness must be positive")
	}
	if _, _, err := net.SplitHostPort(c.httpAddr); err != nil {
		return nil, fmt.Errorf("--http-addr %q is not HOST:PORT: %v", c.httpAddr, err)
	}
	return c, nil
}

// runGateway is `mandate gateway`: an MCP gateway node that asks a remote
// catalog for every decision (enforce/client: cache keyed by revision,
// watch stream, fail closed past --max-staleness), resolves connections
// and writes audit records through the catalog's node API.
func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseGatewayFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.logFormat, cfg.logLevel, stderr)
	if err != nil {
		return err
	}
	syscall.Umask(0o077)
	tel, err := cfg.telemetry.start(ctx, "gateway", log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	token := os.Getenv("MANDATE_NODE_TOKEN")
	if token == "" {
		if token, err = node.ReadTokenFile(cfg.nodeTokenFile); err != nil {
			return fmt.Errorf("--node-token-file: %w", err)
		}
	}
	var catalogTLS *tls.Config
	if cfg.fingerprint != "" {
		if catalogTLS, err = pinnedTLS(cfg.fingerprint); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}
	defer ln.Close()
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	httpTLS, httpFingerprint, err := cfg.http.serverTLS(cfg.httpAddr, cfg.dataDir)
	if err != nil {
		return err
	}
	publicURL, err := publicURLFor(cfg.publicURL, ln, httpTLS != nil)
	if err != nil {
		return err
	}
	// The catalog's master key: it seals what the node keeps in the
	// catalog's key store (never generated here: another key could open
	// nothing the catalog and the other nodes store).
	if _, err := os.Stat(filepath.Join(cfg.dataDir, "master.key")); err != nil && strings.TrimSpace(os.Getenv("MANDATE_MASTER_KEY")) == "" {
		return errors.New("a gateway node needs the catalog's master key: set MANDATE_MASTER_KEY to the catalog's (its MANDATE_MASTER_KEY, or the content of its DATA_DIR/master.key)")
	}
	key, err := masterKey(cfg.dataDir, false)
	if err != nil {
		return err
	}
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		return err
	}
	authz, err := client.New(client.Config{BaseURL: cfg.catalogURL, Token: token, MaxStaleness: cfg.maxStaleness, Logger: log, TLSConfig: catalogTLS})
	if err != nil {
		return fmt.Errorf("authorization client: %w", err)
	}
	defer authz.Close()
	nodeCfg := node.Config{BaseURL: cfg.catalogURL, Token: token, Revision: authz.Revision, Logger: log, TLSConfig: catalogTLS,
		OnAuditWrite: tel.AuditWrite}
	conns, err := node.NewConnections(nodeCfg)
	if err != nil {
		return err
	}
	defer conns.Close()
	models, err := node.NewModelServices(nodeCfg)
	if err != nil {
		return err
	}
	defer models.Close()
	tokens, err := node.NewAccessTokens(nodeCfg)
	if err != nil {
		return err
	}
	defer tokens.Close()
	limitDefs, err := node.NewLimits(nodeCfg)
	if err != nil {
		return err
	}
	defer limitDefs.Close()
	audit, err := node.NewAuditSink(nodeCfg)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = audit.Close(cctx)
	}()
	// Unauthenticated requests' records are aggregated per source and
	// minute before they travel (catalog.FailureAudit).
	failures := catalog.NewFailureAudit(audit, catalog.FailureAuditOptions{Logger: log})
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = failures.Close(cctx)
	}()
	// The installation's mandate_jwt keys and users' upstream grants live
	// in the catalog's key store, sealed here with the master key (the
	// catalog's MANDATE_MASTER_KEY) before they leave this process.
	remoteKeys, err := node.NewKeys(nodeCfg)
	if err != nil {
		return err
	}
	defer remoteKeys.Close()
	keys := keystore.Sealed(remoteKeys, kr)
	nodeLimits, err := newNodeLimits(limitDefs, authz.Revision, log)
	if err != nil {
		return err
	}
	defer func() { // after the HTTP server drained: leases back
		cctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = nodeLimits.close(cctx)
	}()
	if cfg.oidcIssuers == "" {
		log.Warn().Msg(noIssuer)
	}
	dp, err := newDataPlane(ctx, dataPlaneConfig{
		publicURL: publicURL, issuers: issuersFrom(cfg.oidcIssuers), dataDir: cfg.dataDir, keyring: kr,
		authz: authz, connections: conns, audit: withFailures(audit, failures), auditSync: cfg.auditSync, log: log,
		ownCert: httpFingerprint, userIDKey: llmUserIDKey(key), models: models, tokens: tokens,
		observer: tel.Observer(), limiter: nodeLimits, keys: keys, keysRemote: true, csrfKey: csrfKey(key), sessionKey: mcpSessionKey(key),
		maxInFlightPerSubject: cfg.http.perSubject(),
	})
	if err != nil {
		return err
	}
	for _, g := range []struct {
		name, help string
		fn         func() float64
	}{
		{"mandate_audit_queue_events", "Audit events queued and not yet sent to the catalog.", func() float64 { return float64(audit.Queued()) }},
		{"mandate_catalog_revision", "The catalog revision this node last confirmed.", func() float64 { return float64(authz.Stats().Revision) }},
		{"mandate_snapshot_revision", "The revision of the authorization answers this node decides with.", func() float64 { return float64(authz.Stats().Revision) }},
		{"mandate_snapshot_age_seconds", "Time since this node last confirmed its authorization answers are current.", func() float64 { return authz.Stats().Age.Seconds() }},
	} {
		if err := tel.GaugeFunc(g.name, g.help, g.fn); err != nil {
			return err
		}
	}
	// /healthz: the process is alive. /readyz: it may take calls — the
	// catalog's answers are fresh within --max-staleness (past it every
	// call is denied) and the audit records reach the catalog.
	ready := &readiness{}
	ready.add("snapshot", func() (any, error) {
		st := authz.Stats()
		d := map[string]any{"revision": st.Revision, "age_seconds": st.Age.Seconds(), "watching": st.Watching}
		if st.Revision == 0 || st.Age > cfg.maxStaleness {
			return d, fmt.Errorf("the catalog's answers are stale (last confirmed %s ago; --max-staleness %s)", st.Age.Round(time.Millisecond), cfg.maxStaleness)
		}
		return d, nil
	})
	ready.add("audit", func() (any, error) { return map[string]any{"queued": audit.Queued()}, audit.Err(readyWindow) })
	ready.add("keys", func() (any, error) { return nil, checkNodeKeys(ctx, keys) })
	mux := http.NewServeMux()
	mux.Handle("GET /readyz", ready)
	mux.Handle("GET /metrics", metricsHandler(tel, isLoopbackAddr(cfg.httpAddr) && !cfg.http.behindTLSProxy, cfg.telemetry.metricsToken, token))
	if cfg.telemetry.metricsAddr != "" {
		stopMetrics, err := serveMetricsAddr(cfg.telemetry.metricsAddr, &cfg.http, tel, ready, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		st := authz.Stats()
		fmt.Fprintf(w, `{"status":"ok","revision":%d,"decision_cache":{"hits":%d,"misses":%d}}`+"\n", st.Revision, st.CacheHits, st.CacheMisses)
	})
	dp.mount(mux)
	cfg.http.largeBodies = dp.bodyLimits()
	hs := newHTTPServer(mux, &cfg.http, httpTLS, log)
	log.Info().Str("http_addr", ln.Addr().String()).Str("public_url", publicURL).Str("catalog", cfg.catalogURL).
		Str("http_tls_fingerprint", httpFingerprint).Msg("mandate gateway is serving")
	fmt.Fprintf(stdout, "Mandate gateway is ready: MCP endpoints at %s/mcp/CONNECTION, the LLM API at %s/llm/v1\n", publicURL, publicURL)
	errc := make(chan error, 1)
	go func() { errc <- serveHTTP(hs, ln, cfg.http.maxConns) }()
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	_ = hs.Shutdown(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// checkNodeKeys reports whether the catalog's key store answers and opens
// with this node's master key (a node started with another
// MANDATE_MASTER_KEY than the catalog's can neither sign mandate_jwt
// tokens nor use users' grants, and is not ready).
func checkNodeKeys(ctx context.Context, keys keystore.Store) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := keys.Get(ctx, upstream.KeyFileName)
	switch {
	case err == nil, errors.Is(err, keystore.ErrNotFound):
		return nil
	case errors.Is(err, keystore.ErrWrongKey):
		return errors.New("the catalog's key store does not open with this node's master key: start the node with MANDATE_MASTER_KEY set to the catalog's")
	}
	return fmt.Errorf("the catalog's key store: %w", err)
}
