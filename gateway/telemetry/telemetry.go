package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Defaults of Config.
const (
	DefaultMaxQueue      = 2048
	DefaultMaxBatch      = 512
	DefaultBatchTimeout  = 2 * time.Second
	DefaultExportTimeout = 10 * time.Second
)

// Config configures a node's telemetry.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's base URL (--otlp-endpoint),
	// like OTEL_EXPORTER_OTLP_ENDPOINT: /v1/traces is appended. When empty,
	// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is) or
	// OTEL_EXPORTER_OTLP_ENDPOINT name it; with none of them the node does
	// not trace (trace context is still propagated and audited).
	Endpoint string
	// Headers are sent with every export (--otlp-header), over those of
	// OTEL_EXPORTER_OTLP_TRACES_HEADERS or OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string
	// SampleRatio is the share of new traces recorded (--trace-sample-ratio),
	// parent-based: a call whose agent sent a sampled (or unsampled)
	// traceparent follows it. nil: OTEL_TRACES_SAMPLER and
	// OTEL_TRACES_SAMPLER_ARG, by default parentbased_always_on (100%).
	SampleRatio *float64
	// ServiceName is the resource's service.name unless OTEL_SERVICE_NAME
	// sets it (default "mandate"); ServiceVersion its service.version;
	// Role the node's mandate.node.role ("catalog", "gateway").
	ServiceName    string
	ServiceVersion string
	Role           string
	// The export queue: at most MaxQueue spans wait (past it new ones are
	// dropped and counted), exported in batches of MaxBatch at least every
	// BatchTimeout, each export bounded by ExportTimeout.
	MaxQueue      int
	MaxBatch      int
	BatchTimeout  time.Duration
	ExportTimeout time.Duration
	// Registry receives the metrics (default a new one, with the Go
	// runtime and process collectors).
	Registry *prometheus.Registry
	Logger   zerolog.Logger
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
	// Exporter replaces the OTLP exporter (tests): spans are recorded as
	// with an endpoint.
	Exporter sdktrace.SpanExporter
}

// Telemetry is one node's tracing and metrics: the pipeline's Observer
// (Observer), the Prometheus registry (Registry, Handler) and the
// tracer. Shutdown flushes the spans.
type Telemetry struct {
	cfg    Config
	log    zerolog.Logger
	reg    *prometheus.Registry
	m      *metrics
	tp     *sdktrace.TracerProvider // nil: no tracing
	tracer trace.Tracer
	queue  *exportQueue
	url    string // the traces URL ("" without tracing)
	debug  bool   // log a line per call
	// attrs pools the server spans' attribute slices (finishSpan).
	attrs sync.Pool
}

// New sets up tracing (when an endpoint is configured) and the metrics.
func New(ctx context.Context, cfg Config) (*Telemetry, error) {
	if cfg.Getenv == nil {
		cfg.Getenv = os.Getenv
	}
	if cfg.ServiceName == "" {
		cfg.ServiceName = "mandate"
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = envInt(cfg.Getenv, "OTEL_BSP_MAX_QUEUE_SIZE", DefaultMaxQueue)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = envInt(cfg.Getenv, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DefaultMaxBatch)
	}
	cfg.MaxBatch = min(cfg.MaxBatch, cfg.MaxQueue)
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = time.Duration(envInt(cfg.Getenv, "OTEL_BSP_SCHEDULE_DELAY", int(DefaultBatchTimeout/time.Millisecond))) * time.Millisecond
	}
	if cfg.ExportTimeout <= 0 {
		cfg.ExportTimeout = time.Duration(envInt(cfg.Getenv, "OTEL_BSP_EXPORT_TIMEOUT", int(DefaultExportTimeout/time.Millisecond))) * time.Millisecond
	}
	if cfg.SampleRatio != nil && (*cfg.SampleRatio < 0 || *cfg.SampleRatio > 1) {
		return nil, fmt.Errorf("trace sample ratio %v must be between 0 and 1", *cfg.SampleRatio)
	}
	t := &Telemetry{cfg: cfg, log: cfg.Logger.With().Str("component", "telemetry").Logger(), reg: cfg.Registry,
		debug: cfg.Logger.GetLevel() <= zerolog.DebugLevel && cfg.Logger.GetLevel() != zerolog.Disabled}
	if t.reg == nil {
		t.reg = NewRegistry()
	}
	t.m = newMetrics()
	if err := t.m.register(t.reg, t); err != nil {
		return nil, err
	}
	endpoint, err := t.tracesURL()
	if err != nil {
		return nil, err
	}
	exp := cfg.Exporter
	if exp == nil {
		if endpoint == "" {
			return t, nil
		}
		headers, err := t.headers()
		if err != nil {
			return nil, err
		}
		opts := []otlptracehttp.Option{otlptracehttp.WithHeaders(headers),
			otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: 500 * time.Millisecond,
				MaxInterval: 2 * time.Second, MaxElapsedTime: cfg.ExportTimeout})}
		if cfg.Endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
		}
		if exp, err = otlptracehttp.New(ctx, opts...); err != nil {
			return nil, fmt.Errorf("OTLP exporter: %w", err)
		}
	}
	res, err := resource.New(ctx, resource.WithAttributes(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", cfg.ServiceVersion),
		attribute.String("mandate.node.role", cfg.Role),
	), resource.WithFromEnv(), resource.WithHost())
	if err != nil && res == nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	t.queue = newExportQueue(exp, cfg.MaxQueue, cfg.MaxBatch, cfg.BatchTimeout, cfg.ExportTimeout, t.log)
	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(t.queue), sdktrace.WithResource(res)}
	if cfg.SampleRatio != nil {
		tpOpts = append(tpOpts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*cfg.SampleRatio))))
	}
	t.tp = sdktrace.NewTracerProvider(tpOpts...)
	t.tracer = t.tp.Tracer("github.com/mandatehq/mandate/gateway")
	t.url = endpoint
	return t, nil
}

// Tracing reports whether spans are recorded and exported, and where to.
func (t *Telemetry) Tracing() (bool, string) { return t.tp != nil, t.url }

// Registry is the node's Prometheus registry.
func (t *Telemetry) Registry() *prometheus.Registry { return t.reg }

// Flush exports the spans ended so far (tests, shutdown).
func (t *Telemetry) Flush(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	return t.tp.ForceFlush(ctx)
}

// Shutdown exports what is queued (within ctx) and stops tracing.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// DroppedSpans is the number of spans dropped so far (queue full, or
// their export failed).
func (t *Telemetry) DroppedSpans() int64 {
	if t.queue == nil {
		return 0
	}
	return t.queue.dropped.Load()
}

// tracesURL is where spans go: Config.Endpoint + /v1/traces, else the
// environment's; "" for no tracing.
func (t *Telemetry) tracesURL() (string, error) {
	env := t.cfg.Getenv
	if strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") ||
		strings.EqualFold(strings.TrimSpace(env("OTEL_TRACES_EXPORTER")), "none") {
		return "", nil
	}
	base, full := t.cfg.Endpoint, ""
	if base == "" {
		full = strings.TrimSpace(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
		if full == "" {
			base = strings.TrimSpace(env("OTEL_EXPORTER_OTLP_ENDPOINT"))
		}
	}
	if base == "" && full == "" {
		return "", nil
	}
	if full == "" {
		full = strings.TrimRight(base, "/") + "/v1/traces"
	}
	u, err := url.Parse(full)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("OTLP endpoint %q must be an http(s) URL", full)
	}
	if u.User != nil {
		return "", fmt.Errorf("OTLP endpoint %q must not hold credentials: send them with --otlp-header", u.Redacted())
	}
	return full, nil
}

// headers merges the environment's export headers with Config.Headers
// (which win).
func (t *Telemetry) headers() (map[string]string, error) {
	out := map[string]string{}
	env := t.cfg.Getenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
	if env == "" {
		env = t.cfg.Getenv("OTEL_EXPORTER_OTLP_HEADERS")
	}
	if env != "" {
		h, err := ParseHeaders(env)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_HEADERS: %w", err)
		}
		for k, v := range h {
			out[k] = v
		}
	}
	for k, v := range t.cfg.Headers {
		out[k] = v
	}
	return out, nil
}

// ParseHeaders reads headers in the OTEL_EXPORTER_OTLP_HEADERS form:
// comma-separated key=value pairs, values URL-encoded.
func ParseHeaders(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, err := ParseHeader(kv)
		if err != nil {
			return nil, err
		}
		if u, err := url.PathUnescape(v); err == nil {
			v = u
		}
		out[k] = v
	}
	return out, nil
}

// ParseHeader reads one "key=value" header (--otlp-header).
func ParseHeader(kv string) (key, value string, err error) {
	k, v, ok := strings.Cut(kv, "=")
	k = strings.TrimSpace(k)
	if !ok || k == "" || strings.ContainsAny(k, " \t\r\n:") {
		return "", "", errors.New("a header must be key=value, got " + strconv.Quote(kv))
	}
	v = strings.TrimSpace(v)
	if strings.ContainsAny(v, "\r\n") {
		return "", "", errors.New("a header value must not contain line breaks")
	}
	return k, v, nil
}

func envInt(env func(string) string, name string, def int) int {
	if v, err := strconv.Atoi(strings.TrimSpace(env(name))); err == nil && v > 0 {
		return v
	}
	return def
}
