// Package telemetrytest runs the real trace and metric backends the
// telemetry tests check against: Jaeger all-in-one (v1.75.0, built by
// make deps from testdata/jaeger into the cache dir) and Prometheus (the
// Debian package), each on free loopback ports with a temporary config;
// and a minimal model-call protocol on the pipeline (LLM) for the spans
// and metrics the LLM adapter reports.
//
// A missing server fails the test under CI (make deps installs both) and
// skips it elsewhere.
package telemetrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog/proctest"
)

// JaegerVersion is the Jaeger the Makefile builds (testdata/jaeger).
const JaegerVersion = "v1.75.0"

// JaegerBinary is where make deps puts Jaeger: $MANDATE_JAEGER, else
// $XDG_CACHE_HOME (or ~/.cache)/mandate/jaeger-VERSION.
func JaegerBinary() string {
	if p := os.Getenv("MANDATE_JAEGER"); p != "" {
		return p
	}
	dir := os.Getenv("XDG_CACHE_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache")
	}
	return filepath.Join(dir, "mandate", "jaeger-"+JaegerVersion)
}

// missing fails under CI (make deps installs what is missing) and skips
// elsewhere.
func missing(t testing.TB, what, install string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (make deps installs it: %s)", what, install)
	}
	t.Skipf("%s is missing: %s (or make deps)", what, install)
}

// FreePort returns a free loopback port.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitFor polls cond every 50 ms until it holds, failing after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// waitUntil polls cond until it holds (true) or timeout passes (false).
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// startProcess starts the server that launch returns (not started yet; it
// writes its files into dir) and waits until its ready function holds;
// the process is killed with the test, or when the test process dies
// without cleaning up (catalog/proctest). Ports come from FreePort, so
// another process may take one between the pick and the server's bind:
// a server that exits saying so is launched again with new ports, up to
// five times.
func startProcess(t testing.TB, name string, launch func(dir string) (*exec.Cmd, func() bool)) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		cmd, ready := launch(dir)
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		child, err := proctest.Start(cmd, syscall.SIGKILL)
		if err != nil {
			t.Fatal(err)
		}
		done := child.Done()
		exited := false
		WaitFor(t, 60*time.Second, name+" to be ready", func() bool {
			select {
			case <-done:
				exited = true
				return true
			default:
			}
			return ready()
		})
		if exited {
			logf.Close()
			b, _ := os.ReadFile(logf.Name())
			if attempt < 5 && bytes.Contains(b, []byte("address already in use")) {
				continue
			}
			t.Fatalf("%s exited:\n%s", name, tail(b, 4000))
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
			logf.Close()
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("%s log:\n%s", name, tail(b, 4000))
			}
		})
		return cmd, done
	}
}

// Jaeger is a running Jaeger all-in-one: OTLP/HTTP at OTLP (a base URL,
// like --otlp-endpoint), the query API at Query.
type Jaeger struct {
	OTLP  string
	Query string
	cmd   *exec.Cmd
	done  <-chan struct{}
}

// jaegerConfig is Jaeger's configuration: the query API's HTTP and gRPC
// ports, then the OTLP/HTTP receiver's.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// StartJaeger starts Jaeger with in-memory storage; it stops with the
// test.
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin := JaegerBinary()
	if _, err := os.Stat(bin); err != nil {
		missing(t, "Jaeger "+JaegerVersion+" ("+bin+")", "cd testdata/jaeger && go build -o "+bin+" github.com/jaegertracing/jaeger/cmd/jaeger")
	}
	j := &Jaeger{}
	j.cmd, j.done = startProcess(t, "jaeger", func(dir string) (*exec.Cmd, func() bool) {
		otlp, query, grpc := FreePort(t), FreePort(t), FreePort(t)
		cfg := fmt.Sprintf(jaegerConfig, query, grpc, otlp)
		path := filepath.Join(dir, "jaeger.yaml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		j.OTLP, j.Query = fmt.Sprintf("http://127.0.0.1:%d", otlp), fmt.Sprintf("http://127.0.0.1:%d", query)
		return exec.Command(bin, "--config", path), func() bool { return httpOK(j.Query+"/api/services") && dialable(otlp) }
	})
	return j
}

// Stop stops Jaeger (the collector goes down: exports fail).
func (j *Jaeger) Stop() {
	if j.cmd.Process != nil {
		_ = j.cmd.Process.Kill()
	}
	<-j.done
}

// Span is a span as Jaeger's query API returns it.
type Span struct {
	TraceID       string `json:"traceID"`
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		TraceID string `json:"traceID"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	Tags []struct {
		Key   string `json:"key"`
		Type  string `json:"type"`
		Value any    `json:"value"`
	} `json:"tags"`
	Logs []struct {
		Fields []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"fields"`
	} `json:"logs"`
	ProcessID string `json:"processID"`
}

// Tag returns the value of the span's tag key as a string ("" if none).
func (s *Span) Tag(key string) (string, bool) {
	for _, tg := range s.Tags {
		if tg.Key == key {
			switch v := tg.Value.(type) {
			case string:
				return v, true
			case float64:
				return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%f", v), "0"), "."), true
			default:
				b, _ := json.Marshal(v)
				return string(b), true
			}
		}
	}
	return "", false
}

// Parent is the span's parent span id ("" for a root).
func (s *Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Trace fetches the spans of one trace (none yet: nil).
func (j *Jaeger) Trace(t testing.TB, traceID string) []Span {
	t.Helper()
	resp, err := http.Get(j.Query + "/api/traces/" + url.PathEscape(traceID))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var out struct {
		Data []struct {
			Spans []Span `json:"spans"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	var spans []Span
	for _, d := range out.Data {
		spans = append(spans, d.Spans...)
	}
	return spans
}

// WaitTrace waits until the trace has a span named each of names, and
// returns its spans.
func (j *Jaeger) WaitTrace(t testing.TB, traceID string, names ...string) []Span {
	t.Helper()
	var spans []Span
	ok := waitUntil(30*time.Second, func() bool {
		spans = j.Trace(t, traceID)
		for _, n := range names {
			if FindSpan(spans, n) == nil {
				return false
			}
		}
		return true
	})
	if !ok {
		have := make([]string, len(spans))
		for i := range spans {
			have[i] = spans[i].OperationName
		}
		t.Fatalf("timed out after 30s waiting for trace %s in Jaeger with spans %s; it has %s", traceID,
			strings.Join(names, ", "), strings.Join(have, ", "))
	}
	return spans
}

// FindSpan returns the span named name, or nil.
func FindSpan(spans []Span, name string) *Span {
	for i := range spans {
		if spans[i].OperationName == name {
			return &spans[i]
		}
	}
	return nil
}

// Prometheus is a running Prometheus scraping targets.
type Prometheus struct {
	URL  string
	cmd  *exec.Cmd
	done <-chan struct{}
}

// PrometheusBinary is the Debian package's prometheus, or $MANDATE_PROMETHEUS.
func PrometheusBinary() string {
	if p := os.Getenv("MANDATE_PROMETHEUS"); p != "" {
		return p
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	return "/usr/bin/prometheus"
}

// ScrapeTarget is one scrape job of StartPrometheus.
type ScrapeTarget struct {
	Addr        string // HOST:PORT serving /metrics
	BearerToken string // sent as Authorization: Bearer when set
}

// StartPrometheus starts Prometheus scraping targets every 200 ms.
func StartPrometheus(t testing.TB, targets ...ScrapeTarget) *Prometheus {
	t.Helper()
	bin := PrometheusBinary()
	if _, err := os.Stat(bin); err != nil {
		missing(t, "Prometheus", "apt-get install prometheus")
	}
	dir := t.TempDir()
	var jobs strings.Builder
	for i, tg := range targets {
		fmt.Fprintf(&jobs, "  - job_name: mandate%d\n    scrape_interval: 200ms\n    scrape_timeout: 150ms\n    static_configs:\n      - targets: [%q]\n", i, tg.Addr)
		if tg.BearerToken != "" {
			tokenFile := filepath.Join(dir, fmt.Sprintf("token%d", i))
			if err := os.WriteFile(tokenFile, []byte(tg.BearerToken), 0o600); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&jobs, "    authorization:\n      credentials_file: %q\n", tokenFile)
		}
	}
	cfg := "global:\n  scrape_interval: 200ms\n  evaluation_interval: 1s\nscrape_configs:\n" + jobs.String()
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Prometheus{}
	p.cmd, p.done = startProcess(t, "prometheus", func(pdir string) (*exec.Cmd, func() bool) {
		port := FreePort(t)
		p.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
		return exec.Command(bin, "--config.file="+path, "--storage.tsdb.path="+filepath.Join(pdir, "data"),
			fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn"), func() bool { return httpOK(p.URL + "/-/ready") }
	})
	return p
}

// QueryResult is the answer of /api/v1/query.
type QueryResult struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  []any             `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// Query runs an instant PromQL query.
func (p *Prometheus) Query(ctx context.Context, expr string) (*QueryResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL+"/api/v1/query",
		strings.NewReader(url.Values{"query": {expr}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out QueryResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TargetsUp reports whether every target was scraped successfully.
func (p *Prometheus) TargetsUp(ctx context.Context, n int) bool {
	r, err := p.Query(ctx, "up")
	if err != nil || r.Status != "success" || len(r.Data.Result) < n {
		return false
	}
	for _, s := range r.Data.Result {
		if len(s.Value) != 2 || s.Value[1] != "1" {
			return false
		}
	}
	return true
}

func httpOK(u string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func dialable(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
