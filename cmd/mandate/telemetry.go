package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/gateway/telemetry"
)

// telemetryConfig is the flags of traces and metrics, shared by serve and
// gateway.
type telemetryConfig struct {
	otlpEndpoint string
	otlpHeaders  headerFlag
	sampleRatio  ratioFlag
	metricsAddr  string
	metricsToken string
}

func addTelemetryFlags(fs *flag.FlagSet, c *telemetryConfig) {
	fs.StringVar(&c.otlpEndpoint, "otlp-endpoint", "", "OTLP/HTTP collector base URL for traces, like OTEL_EXPORTER_OTLP_ENDPOINT (/v1/traces is appended; Jaeger, MLflow, any OpenTelemetry backend); default: the OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT variables, else no tracing")
	fs.Var(&c.otlpHeaders, "otlp-header", "header sent with trace exports, key=value (repeatable, or comma-separated; e.g. x-mlflow-experiment-id=123); over OTEL_EXPORTER_OTLP_HEADERS")
	fs.Var(&c.sampleRatio, "trace-sample-ratio", "share of new traces recorded, 0 to 1, parent-based: a call follows its agent's sampled flag (default: OTEL_TRACES_SAMPLER, else 1)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", "", "also serve /metrics, /healthz and /readyz on this HOST:PORT, without a token (a private or loopback address)")
	fs.StringVar(&c.metricsToken, "metrics-token", "", "bearer token for GET /metrics on the HTTP listener when it is not loopback (the node token is accepted too)")
}

func (c *telemetryConfig) check() error {
	if c.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.metricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr (%s) %q is not HOST:PORT: %v", envName("metrics-addr"), c.metricsAddr, err)
		}
	}
	return nil
}

// start sets up the node's telemetry.
func (c *telemetryConfig) start(ctx context.Context, role string, log zerolog.Logger) (*telemetry.Telemetry, error) {
	cfg := telemetry.Config{Endpoint: c.otlpEndpoint, Headers: c.otlpHeaders.m, ServiceVersion: moduleVersion(), Role: role, Logger: log}
	if c.sampleRatio.set {
		r := c.sampleRatio.v
		cfg.SampleRatio = &r
	}
	t, err := telemetry.New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if on, url := t.Tracing(); on {
		log.Info().Str("otlp_traces_url", url).Msg("tracing: spans are exported over OTLP/HTTP")
	}
	return t, nil
}

// headerFlag is --otlp-header: key=value, repeatable.
type headerFlag struct{ m map[string]string }

func (h *headerFlag) String() string {
	keys := make([]string, 0, len(h.m))
	for k := range h.m {
		keys = append(keys, k+"=…") // values may be credentials
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (h *headerFlag) Set(v string) error {
	m, err := telemetry.ParseHeaders(v)
	if err != nil {
		return err
	}
	if h.m == nil {
		h.m = map[string]string{}
	}
	for k, val := range m {
		h.m[k] = val
	}
	return nil
}

// ratioFlag is --trace-sample-ratio: a number in [0, 1], or unset.
type ratioFlag struct {
	v   float64
	set bool
}

func (r *ratioFlag) String() string {
	if !r.set {
		return ""
	}
	return strconv.FormatFloat(r.v, 'g', -1, 64)
}

func (r *ratioFlag) Set(s string) error {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v < 0 || v > 1 {
		return errors.New("must be a number from 0 to 1")
	}
	r.v, r.set = v, true
	return nil
}

// metricsHandler serves GET /metrics on the HTTP listener: open when the
// listener is loopback, else only with Authorization: Bearer and the
// metrics token or the node token (metrics name the services and show
// their traffic).
func metricsHandler(t *telemetry.Telemetry, open bool, tokens ...string) http.Handler {
	h := t.Handler()
	var valid [][]byte
	for _, tok := range tokens {
		if tok != "" {
			valid = append(valid, []byte(tok))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !open {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			match := 0
			for _, tok := range valid {
				match |= subtle.ConstantTimeCompare([]byte(got), tok)
			}
			if !ok || match != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="mandate-metrics"`)
				httpJSONError(w, http.StatusUnauthorized, "GET /metrics needs Authorization: Bearer with --metrics-token or the node token (or use --metrics-addr)")
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// readiness is GET /readyz: 200 {"status":"ready"} when every check
// passes, else 503 {"status":"not_ready"} with the failing checks.
type readiness struct {
	checks []readyCheck
}

type readyCheck struct {
	name string
	fn   func() (detail any, err error)
}

func (rd *readiness) add(name string, fn func() (any, error)) {
	rd.checks = append(rd.checks, readyCheck{name, fn})
}

func (rd *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	out := map[string]any{}
	checks := map[string]any{}
	ready := true
	for _, c := range rd.checks {
		detail, err := c.fn()
		switch {
		case err != nil:
			ready = false
			checks[c.name] = map[string]any{"ok": false, "error": err.Error(), "detail": detail}
		default:
			checks[c.name] = map[string]any{"ok": true, "detail": detail}
		}
	}
	out["checks"] = checks
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if ready {
		out["status"] = "ready"
	} else {
		out["status"] = "not_ready"
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(out)
}

func healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// serveMetricsAddr serves /metrics, /healthz and /readyz on --metrics-addr
// with the HTTP listener's bounds c, until the returned stop.
func serveMetricsAddr(addr string, c *httpConfig, t *telemetry.Telemetry, ready http.Handler, log zerolog.Logger) (func(), error) {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", t.Handler())
	mux.HandleFunc("GET /healthz", healthz)
	mux.Handle("GET /readyz", ready)
	stop, bound, err := serveSide(addr, mux, c, log)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	log.Info().Str("metrics_addr", bound.String()).Msg("serving /metrics, /healthz and /readyz")
	return stop, nil
}

// lag tracks how long the authorization engine's snapshot has been behind
// the catalog (0 while it is current).
type lag struct {
	mu     sync.Mutex
	behind time.Time
}

func (l *lag) age(catalogRev, snapshotRev int64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if snapshotRev >= catalogRev {
		l.behind = time.Time{}
		return 0
	}
	if l.behind.IsZero() {
		l.behind = time.Now()
	}
	return time.Since(l.behind)
}

// moduleVersion is the version the binary reports (service.version).
func moduleVersion() string {
	v := strings.TrimPrefix(versionString(), "mandate ")
	if i := strings.IndexByte(v, ' '); i > 0 {
		v = v[:i]
	}
	return v
}

// readyWindow: a node whose audit write failed less than this ago is not
// ready (its calls are refused until a write succeeds again).
const readyWindow = 10 * time.Second
