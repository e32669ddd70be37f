package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/gateway/telemetry"
)

// GET /metrics on a listener that is not loopback takes the metrics token
// or the node token, nothing else; on loopback it is open.
func TestMetricsToken(t *testing.T) {
	tel, err := telemetry.New(context.Background(), telemetry.Config{Getenv: func(string) string { return "" }, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	guarded := metricsHandler(tel, false, "metrics-secret", "node-secret")
	open := metricsHandler(tel, true, "metrics-secret")
	for _, tc := range []struct {
		h    http.Handler
		auth string
		want int
	}{
		{guarded, "", http.StatusUnauthorized},
		{guarded, "Bearer wrong", http.StatusUnauthorized},
		{guarded, "Bearer ", http.StatusUnauthorized},
		{guarded, "Basic bWV0cmljcy1zZWNyZXQ=", http.StatusUnauthorized},
		{guarded, "Bearer metrics-secret", http.StatusOK},
		{guarded, "Bearer node-secret", http.StatusOK},
		{open, "", http.StatusOK},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		tc.h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, rec.Code, tc.want)
		}
		if rec.Code == http.StatusOK && !strings.Contains(rec.Body.String(), "go_goroutines") {
			t.Errorf("no runtime metrics in %q", rec.Body.String()[:min(200, rec.Body.Len())])
		}
	}
}

func TestReadiness(t *testing.T) {
	rd := &readiness{}
	var auditErr error
	rd.add("catalog", func() (any, error) { return map[string]any{"revision": 3}, nil })
	rd.add("audit_store", func() (any, error) { return nil, auditErr })
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		rd.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(); code != http.StatusOK || !strings.Contains(body, `"status":"ready"`) {
		t.Fatalf("%d %s", code, body)
	}
	auditErr = errors.New("fsync failed")
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"not_ready"`) ||
		!strings.Contains(body, "fsync failed") {
		t.Fatalf("%d %s", code, body)
	}
}

func TestTelemetryFlags(t *testing.T) {
	var h headerFlag
	for _, v := range []string{"x-mlflow-experiment-id=123", "a=1,b=%2Cx"} {
		if err := h.Set(v); err != nil {
			t.Fatal(err)
		}
	}
	if h.m["x-mlflow-experiment-id"] != "123" || h.m["a"] != "1" || h.m["b"] != ",x" {
		t.Errorf("headers %v", h.m)
	}
	if strings.Contains(h.String(), "123") {
		t.Error("header values shown")
	}
	for _, bad := range []string{"novalue", "=x", "a b=1"} {
		if err := h.Set(bad); err == nil {
			t.Errorf("header %q accepted", bad)
		}
	}
	var r ratioFlag
	for _, bad := range []string{"-0.1", "1.5", "x"} {
		if err := r.Set(bad); err == nil {
			t.Errorf("ratio %q accepted", bad)
		}
	}
	if err := r.Set("0.25"); err != nil || !r.set || r.v != 0.25 {
		t.Errorf("ratio %v %v", r, err)
	}
}
