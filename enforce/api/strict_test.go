package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/enforce/api"
)

// TestAuthorizeDuplicateKeys: a key given twice is refused, never "last
// wins" (a proxy that reads the first subject and the API the last would
// disagree on who is asking).
func TestAuthorizeDuplicateKeys(t *testing.T) {
	srv := newServer(t, newFake(), api.Options{})
	for name, body := range map[string]string{
		"subject":          `{"subject":"mallory","subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"}}`,
		"escaped subject":  `{"subject":"mallory","\u0073ubject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"}}`,
		"securable name":   `{"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"x","name":"my_github_mcp"}}`,
		"in context":       `{"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"},"context":{"tool":"a","tool":"b"}}`,
		"in a batch check": `{"checks":[{"subject":"alice@example.com","privilege":"USE_CONNECTION","privilege":"MANAGE","securable":{"type":"CONNECTION","name":"my_github_mcp"}}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := authorize(t, srv, body)
			if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "duplicate key") {
				t.Fatalf("status %d %s, want 400 naming the duplicate key", r.status, r.body)
			}
		})
	}
	// A key that differs only by case is not the field (encoding/json
	// would match it case-insensitively): an unknown field.
	r := authorize(t, srv, `{"subject":"mallory","Subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"}}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), `unknown field "Subject"`) {
		t.Fatalf("status %d %s, want 400 for the unknown field", r.status, r.body)
	}
}

// TestAuthorizeDeepNesting: a body nested 100,000 deep (600 KB) is refused
// with 400 at once. Decoding it took minutes before (quadratic in the
// depth); the deadline here only bounds the failure.
func TestAuthorizeDeepNesting(t *testing.T) {
	srv := auditServer(t, memstore.New(), api.Options{})
	const depth = 100_000
	body := `{"subject":"alice@example.com","privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":"my_github_mcp"},"context":{"x":` +
		strings.Repeat(`[`, depth) + strings.Repeat(`]`, depth) + `}}`
	if len(body) < 200_000 {
		t.Fatalf("body of %d bytes", len(body))
	}
	for _, path := range []string{api.AuthorizePath, api.AuditPath} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		resp, err := srv.Client().Do(req)
		cancel()
		if err != nil {
			t.Fatalf("%s: no answer after %v: %v", path, time.Since(start), err)
		}
		resp.Body.Close()
		if path == api.AuthorizePath && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400", path, resp.StatusCode)
		}
		if path == api.AuditPath && resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: status %d, want 400", path, resp.StatusCode)
		}
		t.Logf("%s: %d after %v", path, resp.StatusCode, time.Since(start))
	}
	r := authorize(t, srv, body)
	if msg := r.errorText(t); !strings.Contains(msg, "nested deeper than") {
		t.Fatalf("error %q does not name the nesting", msg)
	}
}

// TestAuditDuplicateKeys: audit ingestion refuses duplicate keys too.
func TestAuditDuplicateKeys(t *testing.T) {
	st := memstore.New()
	srv := auditServer(t, st, api.Options{})
	r := postAudit(t, srv, "Bearer "+token, `{"events":[{"service_name":"mcp","action_name":"tools/call","user_identity":"alice","user_identity":"admin","status_code":0,"latency_ms":1}]}`)
	if r.status != http.StatusBadRequest || !strings.Contains(r.errorText(t), "duplicate key") {
		t.Fatalf("status %d %s, want 400", r.status, r.body)
	}
	if es, _ := st.ListAudit(t.Context(), time.Time{}, 0); len(es) != 0 {
		t.Fatalf("%d events written", len(es))
	}
}
