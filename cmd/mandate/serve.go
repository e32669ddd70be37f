package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgquery"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/privfile"
	"github.com/mandatehq/mandate/catalog/textcap"
	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/client"
	"github.com/mandatehq/mandate/gateway/devidp"
	"github.com/mandatehq/mandate/gateway/guardstage"
	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limits/pglimits"
	"github.com/mandatehq/mandate/gateway/llmgw"
	"github.com/mandatehq/mandate/gateway/node"
	"github.com/mandatehq/mandate/sqlfront"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

type serveConfig struct {
	dataDir          string
	sqlAddr          string
	httpAddr         string
	tlsCert          string
	tlsKey           string
	logFormat        string
	logLevel         string
	statementTimeout time.Duration
	maxMessageSize   int
	auditRetention   time.Duration
	auditMaxSize     byteSize
	publicURL        string
	oidcIssuers      string
	dev              bool
	http             httpConfig
	limits           limitsConfig
	auditSync        auditSync
	store            storeConfig
	telemetry        telemetryConfig
}

func parseServeFlags(args []string, stdout, stderr io.Writer) (*serveConfig, error) {
	c := &serveConfig{}
	fs := newFlagSet("serve", args, stdout, stderr)
	fs.StringVar(&c.dataDir, "data-dir", "./mandate-data", "directory holding the embedded store, keys and certificates")
	fs.StringVar(&c.sqlAddr, "sql-addr", "127.0.0.1:15432", "address of the PostgreSQL wire endpoint (psql, JDBC, pgx)")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8470", "address of the HTTP listener: the MCP gateway (/mcp/CONNECTION), the LLM gateway (/llm), the development identity provider with --dev (/oidc), /healthz, and the API for gateway nodes (/api/v1/...; node token required)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate for TLS on the SQL endpoint (default: self-signed, generated into the data dir)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&c.logFormat, "log-format", "auto", "log format: json, console, or auto (console on a terminal, else json)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.statementTimeout, "statement-timeout", 30*time.Second, "abort SQL statements running longer than this (PostgreSQL's statement_timeout; sessions may lower it, only metastore admins raise it; 0 = no limit)")
	fs.IntVar(&c.maxMessageSize, "max-message-size", pgwire.DefaultMaxMessageSize, "largest PostgreSQL protocol message accepted, in bytes")
	fs.DurationVar(&c.auditRetention, "audit-retention", catalog.DefaultAuditRetention, "delete audit events older than this, in the background (0 = keep forever)")
	fs.Var(&c.auditMaxSize, "audit-max-size", "bound on the size of the audit events (e.g. 10GiB; their text plus 32 bytes a row): past it the oldest are deleted, in the background (0 = no bound)")
	fs.StringVar(&c.publicURL, "public-url", "", "canonical URL of the MCP gateway on --http-addr as agents reach it; inbound tokens must name it as audience (default http://HTTP-ADDR)")
	fs.StringVar(&c.oidcIssuers, "oidc-issuer", "", "comma-separated OIDC issuer URLs whose tokens the MCP and LLM gateways accept (optionally URL|JWKS-URL); none: Mandate access tokens only")
	c.limits.register(fs)
	c.store.register(fs)
	fs.Var(&c.auditSync, "audit-sync", auditSyncUsage)
	fs.BoolVar(&c.dev, "dev", false, "also run the DEVELOPMENT identity provider at PUBLIC-URL/oidc and trust it (mandate dev-token prints its tokens); not for production")
	addHTTPFlags(fs, &c.http)
	addTelemetryFlags(fs, &c.telemetry)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: mandate serve [flags]\n\nEvery flag can also be set with its environment variable (shown in brackets).\n\nFlags:\n")
		printEnvFlags(fs)
		fmt.Fprintf(fs.Output(), "\nOther environment variables:\n  MANDATE_ADMIN_PASSWORD  password of the built-in admin user, used on first start\n  MANDATE_MASTER_KEY      32-byte key (base64 or hex) that encrypts secrets at rest (default: generated into DATA_DIR/master.key)\n  MANDATE_NODE_TOKEN      token gateway nodes present to the authorization API (default: generated into DATA_DIR/node-token)\n")
	}
	// Environment first, then flags override.
	if err := parseEnvArgs(fs, args); err != nil {
		return nil, err
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key must be given together")
	}
	if c.statementTimeout < 0 {
		return nil, fmt.Errorf("--statement-timeout (%s) must not be negative", envName("statement-timeout"))
	}
	if c.auditRetention < 0 {
		return nil, fmt.Errorf("--audit-retention (%s) must not be negative", envName("audit-retention"))
	}
	if err := c.limits.validate(); err != nil {
		return nil, err
	}
	if err := c.store.validate(); err != nil {
		return nil, err
	}
	if c.maxMessageSize <= 0 {
		return nil, fmt.Errorf("--max-message-size (%s) must be positive", envName("max-message-size"))
	}
	for _, a := range []struct{ flag, v string }{{"sql-addr", c.sqlAddr}, {"http-addr", c.httpAddr}} {
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			return nil, fmt.Errorf("--%s (%s) %q is not HOST:PORT: %v", a.flag, envName(a.flag), a.v, err)
		}
	}
	// A TLS HTTP listener without a certificate of its own uses the SQL
	// endpoint's (its --tls-cert, or the generated one).
	if c.http.tlsCert == "" && c.tlsCert != "" && c.http.tlsOn(c.httpAddr) {
		c.http.tlsCert, c.http.tlsKey = c.tlsCert, c.tlsKey
	}
	if err := c.http.check(c.httpAddr); err != nil {
		return nil, err
	}
	if err := c.telemetry.check(); err != nil {
		return nil, err
	}
	return c, nil
}

func newLogger(format, level string, stderr io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		return zerolog.Logger{}, fmt.Errorf("invalid --log-level %q", level)
	}
	var w io.Writer = stderr
	switch format {
	case "json":
	case "console":
		w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339}
	case "auto":
		if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			w = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339}
		}
	default:
		return zerolog.Logger{}, fmt.Errorf("invalid --log-format %q (json, console or auto)", format)
	}
	// Every string of a log line is capped (request headers, user names
	// and statements can be arbitrarily long).
	log := zerolog.New(textcap.LogWriter(w, 0)).Level(lvl).With().Timestamp().Logger()
	// Libraries that log through log/slog's default logger (the OIDC
	// provider) or the standard log package (net/http) write into the same
	// stream, in the same format, instead of plain-text lines in between.
	slog.SetDefault(slog.New(zerolog.NewSlogHandler(log.With().Str("component", "library").Logger())))
	return log, nil
}

// masterKey returns the key that seals secrets: MANDATE_MASTER_KEY, or
// DATA_DIR/master.key (generated with mode 0600 on first start).
func masterKey(dataDir string, create bool) ([]byte, error) {
	if v := strings.TrimSpace(os.Getenv("MANDATE_MASTER_KEY")); v != "" {
		return decodeKey(v, "MANDATE_MASTER_KEY")
	}
	path := filepath.Join(dataDir, "master.key")
	b, err := os.ReadFile(path)
	if err == nil {
		return decodeKey(strings.TrimSpace(string(b)), path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if !create {
		return nil, fmt.Errorf("the catalog in %s holds data but %s is missing and MANDATE_MASTER_KEY is not set: "+
			"without the key its connection secrets cannot be decrypted; restore the key file", dataDir, path)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := writeSecretFile(path, base64.StdEncoding.EncodeToString(key)+"\n"); err != nil {
		return nil, err
	}
	return key, nil
}

func decodeKey(v, from string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(v); err == nil && len(b) == 32 {
		return b, nil
	}
	if b, err := hex.DecodeString(v); err == nil && len(b) == 32 {
		return b, nil
	}
	return nil, fmt.Errorf("%s must hold a 32-byte key in base64 or hex", from)
}

// writeSecretFile writes path with mode 0600 atomically and durably,
// replacing an older file (catalog/privfile).
func writeSecretFile(path, content string) error { return privfile.Write(path, []byte(content)) }

func randomPassword() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseServeFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.logFormat, cfg.logLevel, stderr)
	if err != nil {
		return err
	}
	// Everything Mandate writes is for its own eyes only.
	syscall.Umask(0o077)
	cfg.limits.setGoGC()
	// Traces and metrics (gateway/telemetry); the spans still queued are
	// exported on the way out.
	tel, err := cfg.telemetry.start(ctx, "catalog", log)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	sqlLn, err := net.Listen("tcp", cfg.sqlAddr)
	if err != nil {
		return fmt.Errorf("SQL endpoint (--sql-addr): %w", err)
	}
	defer sqlLn.Close()
	httpLn, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return fmt.Errorf("HTTP endpoint (--http-addr): %w", err)
	}
	defer httpLn.Close()
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if err := os.Chmod(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	httpTLS, httpFingerprint, err := cfg.http.serverTLS(cfg.httpAddr, cfg.dataDir)
	if err != nil {
		return err
	}
	// The catalog's change records and snapshot (the data directory, or
	// PostgreSQL), and the event stream: audit.wal in front of DuckDB.
	st, err := openStores(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer st.close()
	duck := st.duck

	// First start: the admin password comes from MANDATE_ADMIN_PASSWORD or
	// is generated, printed once and written to DATA_DIR/admin-password.
	head, err := st.catalog.Head(ctx)
	if err != nil {
		return err
	}
	// A catalog that already holds data must find the key its secrets were
	// sealed with; a new key is generated only on first start.
	key, err := masterKey(cfg.dataDir, head == 0)
	if err != nil {
		return err
	}
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		return err
	}
	sharedKeys := st.sharedKeys(kr) // nil: the data directory
	// The data plane's keys and grants, lent to gateway nodes (raw: as
	// sealed by whoever wrote them).
	rawGatewayKeys := st.gatewayKeys(cfg.dataDir)
	gatewayKeys := keystore.Sealed(rawGatewayKeys, kr)
	if st.pg == nil {
		if err := adoptKeyFile(ctx, cfg.dataDir, gatewayKeys); err != nil {
			return fmt.Errorf("mandate_jwt signing keys: %w", err)
		}
	}
	var adminVerifier, generated string
	if head == 0 {
		pw := os.Getenv("MANDATE_ADMIN_PASSWORD")
		if pw == "" {
			if pw, err = randomPassword(); err != nil {
				return err
			}
			generated = pw
		}
		if adminVerifier, err = pgwire.MakeVerifier(pw); err != nil {
			return err
		}
		// Written before the bootstrap commits it, so that a crash in
		// between cannot leave an admin password nobody knows.
		if generated != "" {
			if err := writeSecretFile(filepath.Join(cfg.dataDir, "admin-password"), generated+"\n"); err != nil {
				return fmt.Errorf("writing the admin password file: %w", err)
			}
		}
	}
	// Audit records of the gateways (this process's and remote nodes')
	// share fsyncs through one group-committing log, as do the catalog's
	// records of statements that change nothing. Failures anyone can
	// cause without a credential (failed logins, unauthenticated MCP and
	// API requests) go through a FailureAudit in front of it: repeats from
	// one source are counted into one summary row per minute.
	auditLog := catalog.NewAuditLog(st.events, catalog.AuditLogOptions{Logger: log, OnWrite: tel.AuditWrite,
		SubmitDelay: cfg.auditSync.submitDelay()})
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = auditLog.Close(cctx)
	}()
	var fwdLease catalog.ForwardLease
	if st.pg != nil {
		// Replicas share the master key: change records travel in the
		// store's notifications, authenticated with a key derived from it;
		// one replica at a time forwards the change audit.
		st.pg.SetNotifyKey(key)
		fwdLease = st.pgEvents.ForwardLease()
	}
	// Replicas send their catalog statements to the writer replica
	// (replicawrite.go).
	var writer *replicaWriter
	var remote catalog.RemoteWriter
	if st.pg != nil && cfg.store.forwardWrites {
		adv := advertiseAddr(cfg.store.advertiseAddr, httpLn)
		if writer, err = newReplicaWriter(st.pg, key, adv, replicaName(adv, httpLn), httpFingerprint, log); err != nil {
			return err
		}
		remote = writer
		if err := writer.registerMetrics(tel.Registry()); err != nil {
			return err
		}
	}
	svc, err := catalog.Open(ctx, catalog.Options{Store: st.catalog, Events: st.events, Audit: auditLog, Keyring: kr, Logger: log,
		AdminVerifier: adminVerifier, MaxStaleness: cfg.store.maxStaleness, ForwardLease: fwdLease, Remote: remote})
	if err != nil {
		return err
	}
	defer svc.Close()
	if generated != "" && !adminVerifierIs(svc, adminVerifier) {
		// Another replica bootstrapped the shared catalog first: its
		// password is the admin's, not the one generated here.
		_ = os.Remove(filepath.Join(cfg.dataDir, "admin-password"))
		log.Info().Msg("the catalog was bootstrapped by another replica; no admin password was generated here")
		generated = ""
	}
	if generated != "" {
		path := filepath.Join(cfg.dataDir, "admin-password")
		fmt.Fprintf(stdout, "\nGenerated the password of the built-in user admin (shown once; also in %s, mode 0600):\n\n    %s\n\n", path, generated)
	}

	tlsCfg, err := pgwire.LoadOrCreateTLS(cfg.tlsCert, cfg.tlsKey, cfg.dataDir)
	if err != nil {
		return err
	}
	// SELECTs over system tables run on a read-only connection pool of the
	// embedded store; expired audit events are deleted in the background.
	qe, err := duck.QueryEngine(cfg.limits.queryOptions(duckstore.QueryOptions{Logger: log}))
	if err != nil {
		return err
	}
	defer qe.Close()
	if cfg.auditRetention > 0 || cfg.auditMaxSize > 0 {
		retCtx, stopRetention := context.WithCancel(ctx)
		defer stopRetention()
		keep := cfg.auditRetention
		if keep == 0 {
			keep = -1 // no time bound, only the size bound
		}
		go qe.RunAuditRetention(retCtx, duckstore.RetentionOptions{Keep: keep, MaxBytes: int64(cfg.auditMaxSize)})
		if st.pgEvents != nil { // the shared event stream: whole days dropped (replicas may all do it)
			go st.pgEvents.RunRetention(retCtx, pgstore.RetentionOptions{Keep: keep, MaxBytes: int64(cfg.auditMaxSize)})
		}
	}
	failures := catalog.NewFailureAudit(auditLog, catalog.FailureAuditOptions{Logger: log})
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		_ = failures.Close(cctx)
	}()
	// Read your writes: a query sees every audit event that was durable
	// when it started, also those the write-ahead log has not yet applied
	// to DuckDB (auditwal applies in the background), the completions of
	// gateway calls answered before it (queued, not awaited), and the
	// audit records of the catalog changes committed before it (forwarded
	// in the background).
	// SHOW CONNECTION STATUS asks the gateway's per_user_oauth connector,
	// assembled below (before anything is served).
	var connStatus func(ctx context.Context, user string) ([]sqlfront.ConnectionStatus, error)
	flushing := flushingEngine{qe, func(ctx context.Context) error {
		if err := auditLog.Sync(ctx); err != nil {
			return err
		}
		if err := svc.SyncAudit(ctx); err != nil {
			return err
		}
		return st.events.Flush(ctx)
	}}
	// Rate limits and budgets (gateway/limits) for the gateway's calls;
	// budgets' spend from the usage rows, SHOW BUDGETS from the engine.
	// With replicas on PostgreSQL the windows and budgets are shared in
	// the database (gateway/limits/pglimits): exact across replicas.
	var sharedLimits limits.Backend
	if st.pg != nil {
		// Budgets' spend from the replicas' shared usage rows.
		usage := flushingEngine{st.pgEvents.Views(), flushing.flush}
		pl, err := pglimits.New(ctx, st.pg.Pool(), pglimits.Options{Spend: usageSpend{qe: usage, svc: svc}})
		if err != nil {
			return fmt.Errorf("rate limits and budgets in PostgreSQL: %w", err)
		}
		defer func() {
			cctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
			defer cancel()
			_ = pl.Close(cctx)
		}()
		sharedLimits = pl
	}
	lim := newServeLimits(ctx, svc, flushing, sharedLimits, log)
	leases := lim.leaseServer(svc) // gateway nodes' leases of the limits
	defer leases.Close()
	// With --store postgres:// the system tables' SELECTs run on the
	// shared database over the event stream's views (catalog/pgquery: a
	// READ ONLY transaction on a pool that logs in as a role that reads
	// only those views, its password sealed in the shared keys), so
	// every replica answers from every replica's events.
	sysQuery := catalog.QueryEngine(flushing)
	if st.pgEvents != nil {
		pq, err := pgquery.Open(ctx, cfg.store.store, pgquery.Options{Logger: log, Schema: pgstore.ViewsSchema,
			Keys: sharedKeys, Login: cfg.store.queryURL,
			MaxConns: cfg.limits.queryOptions(duckstore.QueryOptions{}).MaxConns})
		if err != nil {
			return fmt.Errorf("the system tables' query engine on PostgreSQL: %w", err)
		}
		defer pq.Close()
		sysQuery = flushingEngine{pq, flushing.flush}
	}
	feCfg := sqlfront.Config{Catalog: svc, Logger: log, LoginAudit: failures, Query: sysQuery, BudgetStatus: lim.budgetStatus(svc),
		ConnectionStatus: func(ctx context.Context, user string) ([]sqlfront.ConnectionStatus, error) {
			if connStatus == nil { // not yet: the data plane is assembled after the SQL front end
				return nil, errors.New("the MCP gateway is not serving yet")
			}
			return connStatus(ctx, user)
		}, StatementTimeout: cfg.statementTimeout, CheckGuardrail: guardstage.CheckGuardrail}
	cfg.limits.frontend(&feCfg)
	fe := sqlfront.New(feCfg)
	pwCfg := pgwire.Config{Addr: cfg.sqlAddr, TLS: tlsCfg, Auth: fe, Handler: fe, Logger: log,
		StatementTimeout: cfg.statementTimeout, MaxMessageSize: cfg.maxMessageSize}
	cfg.limits.server(&pwCfg)
	srv, err := pgwire.NewServer(pwCfg)
	if err != nil {
		return err
	}
	// The authorization API for gateway nodes: decisions from the
	// engine's compiled snapshot, Rego policies after the grants, node-token
	// authentication on everything but the liveness probe.
	var token string
	if sharedKeys != nil {
		token, err = api.LoadOrCreateSharedToken(ctx, cfg.dataDir, sharedKeys)
	} else {
		token, err = api.LoadOrCreateToken(cfg.dataDir)
	}
	if err != nil {
		return fmt.Errorf("node token: %w", err)
	}
	// Guardrail policies are prepared with every snapshot, like Rego ones.
	guards := &guardstage.Preparer{}
	eng, err := enforce.NewEngine(ctx, svc, enforce.Options{Logger: log, Policy: enforce.NewPolicyHook(0), Guardrails: guards.Hook})
	if err != nil {
		return err
	}
	defer eng.Close()
	// The node's state as metrics and readiness: the catalog loaded, the
	// audit store writable, the authorization snapshot current.
	snapLag := &lag{}
	snapAge := func() time.Duration { return snapLag.age(int64(svc.Revision()), int64(eng.Revision())) }
	for _, g := range []struct {
		name, help string
		fn         func() float64
	}{
		{"mandate_audit_queue_events", "Audit events queued and not yet written.", func() float64 { return float64(auditLog.Queued()) }},
		{"mandate_catalog_revision", "The catalog's revision on this node.", func() float64 { return float64(svc.Revision()) }},
		{"mandate_snapshot_revision", "The revision of the authorization snapshot this node decides with.", func() float64 { return float64(eng.Revision()) }},
		{"mandate_snapshot_age_seconds", "How long the authorization snapshot has been behind the catalog (0: current).", func() float64 { return snapAge().Seconds() }},
	} {
		if err := tel.GaugeFunc(g.name, g.help, g.fn); err != nil {
			return err
		}
	}
	ready := &readiness{}
	// A replica of a shared catalog past --max-staleness is not ready (it
	// denies every authorization until it catches up).
	ready.add("catalog", func() (any, error) { return map[string]any{"revision": svc.Revision()}, svc.StaleError() })
	ready.add("audit_store", func() (any, error) {
		return map[string]any{"queued": auditLog.Queued()}, auditLog.Err(readyWindow)
	})
	ready.add("snapshot", func() (any, error) {
		age := snapAge()
		d := map[string]any{"revision": eng.Revision(), "age_seconds": age.Seconds()}
		if age > client.DefaultMaxStaleness {
			return d, fmt.Errorf("the authorization snapshot is %s behind the catalog", age.Round(time.Second))
		}
		return d, nil
	})
	apiHandler := api.NewHandler(eng, api.Options{Token: token, Logger: log,
		Audit: auditLog, Connections: api.ConnectionResolver(svc), AuditDecisions: true, Context: ctx,
		ModelServices: api.ModelServiceResolver(svc), ModelServiceNames: api.ModelServiceNames(svc), AccessTokens: api.AccessTokenVerifier(svc),
		Limits: api.LimitsResolver(svc), Leases: leases.Serve, Keys: rawGatewayKeys, KeyNames: nodeKeyNames,
		MaxKeyLocks:  st.nodeKeyLocks(),
		AuthFailures: failures, AllowCleartextSecrets: cfg.http.behindTLSProxy})

	// The MCP gateway on the same address: /mcp/CONNECTION.
	publicURL, err := publicURLFor(cfg.publicURL, httpLn, httpTLS != nil)
	if err != nil {
		return err
	}
	issuers := issuersFrom(cfg.oidcIssuers)
	mux := http.NewServeMux()
	if cfg.dev {
		idp, err := devidp.New(ctx, devidp.Config{
			Issuer: publicURL + "/oidc", DataDir: cfg.dataDir, Keys: sharedKeys, Audience: publicURL, Logger: log,
			PrincipalExists: func(_ context.Context, name string) (ok bool, _ error) {
				svc.Read(func(m *catalog.Model) { _, ok = m.PrincipalByName(name) })
				return ok, nil
			},
		})
		if err != nil {
			return fmt.Errorf("development identity provider: %w", err)
		}
		defer idp.Close()
		mux.Handle("/oidc/", idp.Handler())
		mux.Handle(idp.MetadataPath(), idp.Handler())
		issuers = append(issuers, identityIssuer(idp.Issuer()))
	}
	if len(issuers) == 0 {
		log.Warn().Msg(noIssuer)
	}
	// block_prompt_injection's classifier asks a model service through
	// the LLM gateway (assembled below).
	var llmGW *llmgw.Handler
	classify := func(ctx context.Context, service string, body []byte) ([]byte, error) {
		if llmGW == nil {
			return nil, errors.New("the classifier needs the LLM gateway")
		}
		return llmGW.Complete(ctx, service, body)
	}
	guard, err := guardstage.New(guardstage.Config{Current: func() *guardstage.Set {
		s, _ := eng.Snapshot().Guardrails().(*guardstage.Set)
		return s
	}, Tools: svc, Logger: log, Classifier: guardstage.ModelClassifier(classify)})
	if err != nil {
		return err
	}
	dp, err := newDataPlane(ctx, dataPlaneConfig{guard: guard,
		publicURL: publicURL, issuers: issuers, dataDir: cfg.dataDir, keyring: kr, keys: gatewayKeys, csrfKey: csrfKey(key), sessionKey: mcpSessionKey(key),
		authz: eng, connections: node.NewLocalConnections(svc), audit: withFailures(auditLog, failures),
		auditSync: cfg.auditSync, log: log, ownCert: httpFingerprint, userIDKey: llmUserIDKey(key),
		models: node.NewLocalModelServices(svc), tokens: node.NewLocalAccessTokens(svc), limiter: lim,
		observer: tel.Observer(), maxInFlightPerSubject: cfg.http.perSubject(),
	})
	if err != nil {
		return err
	}
	llmGW = dp.llm
	dp.mount(mux)
	cfg.http.largeBodies = dp.bodyLimits()
	connStatus = dp.connectionStatus
	mux.Handle("GET /metrics", metricsHandler(tel, isLoopbackAddr(cfg.httpAddr) && !cfg.http.behindTLSProxy, cfg.telemetry.metricsToken, token))
	mux.Handle("GET /readyz", ready)
	if cfg.telemetry.metricsAddr != "" {
		stopMetrics, err := serveMetricsAddr(cfg.telemetry.metricsAddr, &cfg.http, tel, ready, log)
		if err != nil {
			return err
		}
		defer stopMetrics()
	}
	if writer != nil {
		mux.Handle("POST "+writerPath, writer)
		mux.Handle("GET "+writerPath, writer) // the connections of replicaconn.go
		wctx, stopWriter := context.WithCancel(ctx)
		defer stopWriter()
		go writer.run(wctx, fe, svc)
	}
	reqCtx, endRequests := context.WithCancel(context.Background())
	defer endRequests()
	hs := newHTTPServer(httpHandler(mux, apiHandler), &cfg.http, httpTLS, log)
	hs.BaseContext = func(net.Listener) context.Context { return reqCtx }
	hs.RegisterOnShutdown(endRequests) // ends watch streams

	// The listeners are bound: say so before serving, so that whoever sees
	// /healthz answer has the connection string already.
	host, port, _ := net.SplitHostPort(sqlLn.Addr().String())
	log.Info().Str("sql_addr", sqlLn.Addr().String()).Str("http_addr", httpLn.Addr().String()).
		Bool("http_tls", httpTLS != nil).Str("http_tls_fingerprint", httpFingerprint).
		Str("data_dir", cfg.dataDir).Str("store", cfg.store.redacted()).Int64("revision", int64(svc.Revision())).Msg("mandate is serving")
	fmt.Fprintf(stdout, "Mandate is ready. Connect with:\n\n    psql \"host=%s port=%s user=admin dbname=system sslmode=require\"\n\n", host, port)
	if httpTLS != nil {
		fmt.Fprintf(stdout, "HTTP API (TLS) on %s, certificate fingerprint %s\n(gateway nodes: mandate gateway --catalog https://... --catalog-fingerprint %s)\n\n",
			httpLn.Addr(), httpFingerprint, httpFingerprint)
	}
	fmt.Fprintf(stdout, "MCP gateway: %s/mcp/CONNECTION\nLLM gateway: %s/llm/v1 (OpenAI) and %s/llm (Anthropic)\n\n", publicURL, publicURL, publicURL)

	// MANDATE_PPROF_ADDR (a loopback HOST:PORT) serves Go's profiler for
	// performance work; off by default.
	if a := os.Getenv("MANDATE_PPROF_ADDR"); a != "" {
		if host, _, err := net.SplitHostPort(a); err != nil || !net.ParseIP(host).IsLoopback() {
			return fmt.Errorf("MANDATE_PPROF_ADDR %q must be a loopback HOST:PORT", a)
		}
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/", pprof.Index)
		pm.HandleFunc("/debug/pprof/profile", pprof.Profile)
		pm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		stopProfiler, _, err := serveSide(a, pm, &cfg.http, log)
		if err != nil {
			return fmt.Errorf("MANDATE_PPROF_ADDR: %w", err)
		}
		defer stopProfiler()
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ctx, sqlLn) }()
	go func() { errc <- serveHTTP(hs, httpLn, cfg.http.maxConns) }()

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	_ = srv.Shutdown(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// adminVerifierIs reports whether the built-in admin's verifier is v.
func adminVerifierIs(svc *catalog.Service, v string) (ok bool) {
	svc.Read(func(m *catalog.Model) {
		p, found := m.PrincipalByName(catalog.AdminUser)
		ok = found && p.Password == v
	})
	return ok
}

// noIssuer is logged by a server or node started without an identity
// provider: its gateways take Mandate access tokens only.
const noIssuer = "no --oidc-issuer (or --dev): the MCP and LLM gateways accept Mandate access tokens only (CREATE ACCESS TOKEN); OIDC JWTs are refused"

// httpHandler serves the liveness probe openly, the routes already in mux
// (the gateway's, which authenticate their callers themselves), and
// everything else through the catalog's API, which demands the node token.
func httpHandler(mux *http.ServeMux, authorized http.Handler) http.Handler {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.Handle("/", authorized)
	return mux
}

// flushingEngine runs flush before each query: the write-ahead log applies
// to the engine's tables in the background, and a query must not miss an
// event that was acknowledged as durable before it started.
type flushingEngine struct {
	catalog.QueryEngine
	flush func(context.Context) error
}

func (f flushingEngine) Query(ctx context.Context, q catalog.Query, row func(values []any) error) error {
	if err := f.flush(ctx); err != nil {
		return err
	}
	return f.QueryEngine.Query(ctx, q, row)
}
