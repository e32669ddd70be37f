package telemetry

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The metrics. Labels are bounded: protocol (mcp, llm), service (the
// connection's or model service's full name, only once the call resolved
// it: a name nobody created never becomes a label), method (the MCP
// method or LLM operation, "unresolved" before the message was read),
// decision, status class; model (the destination's configured model);
// never a user, an agent or a request id (those are in SQL: audit and
// usage rows).
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstream       *prometheus.HistogramVec
	overhead       *prometheus.HistogramVec
	stages         *prometheus.HistogramVec
	tokens         *prometheus.HistogramVec
	cost           *prometheus.CounterVec
	ttft           *prometheus.HistogramVec
	refusals       *prometheus.CounterVec
	guardrails     *prometheus.CounterVec
	upstreamErrors *prometheus.CounterVec
	attempts       *prometheus.CounterVec
	auditWrite     prometheus.Histogram
	auditEvents    prometheus.Counter
	auditErrors    prometheus.Counter

	// stageObs caches the stage histograms' children per protocol.
	stageObs sync.Map // protocol → *[numStages]prometheus.Observer
	// children caches the other children calls observe, by vector and
	// labels (bounded like the labels): a call then hashes no label. A
	// child is made when first used, as WithLabelValues would.
	childMu  sync.RWMutex
	children map[childKey]any
}

// childKey names a child: its vector (one of the child* constants) and
// its label values.
type childKey struct {
	vec    uint8
	labels [5]string
}

const (
	childRequests uint8 = iota
	childDuration
	childUpstream
	childOverhead
	childInputTokens
	childOutputTokens
	childCost
)

// child returns the child k, made by mk the first time.
func (m *metrics) child(k childKey, mk func() any) any {
	m.childMu.RLock()
	v := m.children[k]
	m.childMu.RUnlock()
	if v != nil {
		return v
	}
	m.childMu.Lock()
	defer m.childMu.Unlock()
	if v = m.children[k]; v == nil {
		if m.children == nil {
			m.children = map[childKey]any{}
		}
		v = mk()
		m.children[k] = v
	}
	return v
}

// observer is the child k of histogram vector hv (its first n labels).
func (m *metrics) observer(hv *prometheus.HistogramVec, k childKey, n int) prometheus.Observer {
	return m.child(k, func() any {
		l := k.labels // a copy: only a miss pays for WithLabelValues' slice
		return hv.WithLabelValues(l[:n]...)
	}).(prometheus.Observer)
}

// counter is observer for counter vectors.
func (m *metrics) counter(cv *prometheus.CounterVec, k childKey, n int) prometheus.Counter {
	return m.child(k, func() any {
		l := k.labels
		return cv.WithLabelValues(l[:n]...)
	}).(prometheus.Counter)
}

// latencyBuckets span 100 µs (the gateway's own work) to 2 min (a long
// model answer).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
	5, 10, 30, 60, 120}

// tokenBuckets are the OpenTelemetry GenAI conventions' advice for
// gen_ai.client.token.usage.
var tokenBuckets = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_requests_total",
			Help: "Gateway calls by protocol, service (connection or model service), method, decision and HTTP status class."},
			[]string{"protocol", "service", "method", "decision", "status_class"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mandate_request_duration_seconds",
			Help: "Time from a call's arrival to its end (the last byte of the answer).", Buckets: latencyBuckets},
			[]string{"protocol", "service"}),
		upstream: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mandate_upstream_duration_seconds",
			Help: "Time forwarded calls spent waiting for the upstream (sending and reading its answer).", Buckets: latencyBuckets},
			[]string{"protocol", "service"}),
		overhead: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mandate_overhead_duration_seconds",
			Help: "Time Mandate added to forwarded calls: the total minus the upstream's time.", Buckets: latencyBuckets},
			[]string{"protocol", "service"}),
		stages: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mandate_stage_duration_seconds",
			Help: "Time of each pipeline stage (guard_result spans the relay of the answer).", Buckets: latencyBuckets},
			[]string{"protocol", "stage"}),
		tokens: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gen_ai_client_token_usage",
			Help: "Tokens per model call by service, model and token type (input, output; cache_read and cache_write are parts of input).", Buckets: tokenBuckets},
			[]string{"service", "model", "token_type"}),
		cost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_cost_usd_total",
			Help: "Cost of model calls in USD by service and model."}, []string{"service", "model"}),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "gen_ai_server_time_to_first_token_seconds",
			Help: "Time to the first token of streamed model answers.", Buckets: latencyBuckets},
			[]string{"service", "model"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_limit_refusals_total",
			Help: "Calls refused by a rate limit or a budget."}, []string{"protocol", "service", "limit"}),
		guardrails: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_guardrail_actions_total",
			Help: "Guardrail actions by policy, mode and action (allow, deny, mask, ...)."}, []string{"policy", "mode", "action"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_upstream_errors_total",
			Help: "Calls that failed upstream (no answer, a timeout, a 5xx or an invalid answer)."}, []string{"protocol", "service", "error_type"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mandate_upstream_attempts_total",
			Help: "Upstream attempts by destination (a model call may try several) and status class."},
			[]string{"protocol", "service", "destination", "status_class"}),
		auditWrite: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mandate_audit_commit_duration_seconds",
			Help: "Time of one audit group commit (a store write and its fsync, or a node's request to the catalog).", Buckets: latencyBuckets}),
		auditEvents: prometheus.NewCounter(prometheus.CounterOpts{Name: "mandate_audit_events_written_total",
			Help: "Audit events written (request records and completions)."}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "mandate_audit_write_errors_total",
			Help: "Failed audit writes (their calls were refused)."}),
	}
}

// NewRegistry is a registry with the Go runtime and process collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

func (m *metrics) register(reg prometheus.Registerer, t *Telemetry) error {
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.upstream, m.overhead, m.stages, m.tokens, m.cost, m.ttft,
		m.refusals, m.guardrails, m.upstreamErrors, m.attempts, m.auditWrite, m.auditEvents, m.auditErrors,
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mandate_trace_spans_dropped_total",
			Help: "Spans dropped because the export queue was full or their export failed (the collector is down or slow)."},
			func() float64 { return float64(t.DroppedSpans()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "mandate_trace_spans_exported_total",
			Help: "Spans exported to the OTLP collector."}, func() float64 {
			if t.queue == nil {
				return 0
			}
			return float64(t.queue.exported.Load())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "mandate_trace_queue_spans",
			Help: "Spans waiting for export."}, func() float64 {
			if t.queue == nil {
				return 0
			}
			return float64(t.queue.Len())
		}),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Handler serves the metrics in the Prometheus text format (GET /metrics).
func (t *Telemetry) Handler() http.Handler {
	return promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: 4})
}

// GaugeFunc registers a gauge read when scraped (the host process's state:
// audit queue depth, catalog revision, snapshot age).
func (t *Telemetry) GaugeFunc(name, help string, fn func() float64) error {
	return t.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// AuditWrite records one audit group commit: its events, how long the
// write took and whether it failed (catalog.AuditLogOptions.OnWrite).
func (t *Telemetry) AuditWrite(events int, took time.Duration, err error) {
	t.m.auditWrite.Observe(took.Seconds())
	if err != nil {
		t.m.auditErrors.Inc()
		return
	}
	t.m.auditEvents.Add(float64(events))
}

// statusClass is "2xx", "4xx", ... ("none" for 0).
func statusClass(status int) string {
	switch {
	case status <= 0 || status >= 600:
		return "none"
	case status < 200:
		return "1xx"
	case status < 300:
		return "2xx"
	case status < 400:
		return "3xx"
	case status < 500:
		return "4xx"
	}
	return "5xx"
}
