package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/enforce/api"
)

// failingStore refuses every audit write, as a full disk would.
type failingStore struct{ *memstore.Store }

func (failingStore) AppendAudit(context.Context, ...catalog.AuditEvent) error {
	return catalog.Errorf(catalog.CodeUnavailable, "disk full")
}

func auditServer(t *testing.T, w catalog.AuditWriter, opts api.Options) *httptest.Server {
	t.Helper()
	l := catalog.NewAuditLog(w, catalog.AuditLogOptions{})
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	opts.Audit = l
	return newServer(t, newFake(), opts)
}

func postAudit(t *testing.T, srv *httptest.Server, auth, body string) response {
	t.Helper()
	return call(t, srv, http.MethodPost, api.AuditPath, auth, strings.NewReader(body))
}

const fullAuditEvent = `{"event_id": "6f9d5a52-2b4c-4d7e-9a8f-0c1b2d3e4f50", "event_time": "2026-05-06T07:08:09.123456Z",
	"service_name": "mcp", "action_name": "tools/call", "user_identity": "alice@example.com", "run_by": "alice@example.com",
	"run_as": "coding-agent", "source_ip_address": "10.0.0.7", "user_agent": "claude-code/1.0", "session_id": "s-1",
	"request_id": "7", "securable_type": "CONNECTION", "securable_name": "system.ai.my_github_mcp",
	"request_params": "{\"tool\":\"search\"}", "status_code": 0, "error_message": "", "sql_state": "",
	"decision": "allow", "reason": "granted", "latency_ms": 12.5, "revision": 17}`

func TestAuditAPI(t *testing.T) {
	st := memstore.New()
	base := auditServer(t, st, api.Options{})
	r := postAudit(t, base, "Bearer "+token, `{"events": [`+fullAuditEvent+`, {"service_name": "llm", "action_name": "chat", "latency_ms": 1}]}`)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var res api.AuditResponse
	r.json(t, &res)
	if res.Accepted != 2 {
		t.Fatalf("accepted %d, want 2", res.Accepted)
	}
	// Durable when answered: the store has them now.
	es, err := st.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 {
		t.Fatalf("%d events stored, want 2", len(es))
	}
	want := catalog.AuditEvent{EventID: "6f9d5a52-2b4c-4d7e-9a8f-0c1b2d3e4f50", Time: time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.UTC),
		Service: "mcp", Action: "tools/call", UserIdentity: "alice@example.com", RunBy: "alice@example.com", RunAs: "coding-agent",
		SourceIP: "10.0.0.7", UserAgent: "claude-code/1.0", SessionID: "s-1", RequestID: "7", SecurableType: "CONNECTION",
		SecurableName: "system.ai.my_github_mcp", RequestParams: `{"tool":"search"}`, Decision: "allow", Reason: "granted",
		LatencyMs: 12.5, Revision: 17}
	var got catalog.AuditEvent
	for _, e := range es {
		if e.Service == "mcp" {
			got = e
		} else if e.EventID == "" || e.Time.IsZero() {
			t.Errorf("event without id or time not filled in: %+v", e)
		}
	}
	if got != want {
		t.Fatalf("stored\n %+v\nwant\n %+v", got, want)
	}
	// The wire form round-trips.
	if w := api.WireAuditEvent(want); w.Catalog() != want {
		t.Fatalf("WireAuditEvent/Catalog do not round-trip: %+v", w)
	}
}

func TestAuditAPIErrors(t *testing.T) {
	st := memstore.New()
	base := auditServer(t, st, api.Options{MaxAuditEvents: 3, MaxBody: 4096})
	ok := `{"service_name": "mcp", "action_name": "x"}`
	for _, tc := range []struct {
		name, auth, body string
		status           int
		msg              string
	}{
		{"no token", "", `{"events": [` + ok + `]}`, 401, "node token"},
		{"wrong token", "Bearer nope", `{"events": [` + ok + `]}`, 401, "node token"},
		{"not JSON", "Bearer " + token, `{"events": [`, 400, "truncated"},
		{"no events", "Bearer " + token, `{}`, 400, "non-empty"},
		{"empty events", "Bearer " + token, `{"events": []}`, 400, "non-empty"},
		{"unknown field", "Bearer " + token, `{"events": [{"service_name": "mcp", "action_name": "x", "color": 1}]}`, 400, "color"},
		{"wrong type", "Bearer " + token, `{"events": [{"service_name": "mcp", "action_name": "x", "status_code": "1"}]}`, 400, "status_code"},
		{"no service", "Bearer " + token, `{"events": [` + ok + `, {"action_name": "x"}]}`, 400, "events[1]: service_name is required"},
		{"no action", "Bearer " + token, `{"events": [{"service_name": "mcp"}]}`, 400, "action_name is required"},
		{"status range", "Bearer " + token, `{"events": [{"service_name": "mcp", "action_name": "x", "status_code": 4294967296}]}`, 400, "status_code"},
		{"bad time", "Bearer " + token, `{"events": [{"service_name": "mcp", "action_name": "x", "event_time": "yesterday"}]}`, 400, "parsing time"},
		{"too many", "Bearer " + token, `{"events": [` + ok + `,` + ok + `,` + ok + `,` + ok + `]}`, 413, "limit of 3"},
		{"too big", "Bearer " + token, `{"events": [{"service_name": "mcp", "action_name": "x", "reason": "` + strings.Repeat("x", 5000) + `"}]}`, 413, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := postAudit(t, base, tc.auth, tc.body)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if msg := r.errorText(t); !strings.Contains(msg, tc.msg) {
				t.Fatalf("error %q, want it to mention %q", msg, tc.msg)
			}
		})
	}
	if es, _ := st.ListAudit(t.Context(), time.Time{}, 0); len(es) != 0 {
		t.Fatalf("refused requests stored %d events", len(es))
	}
	r := call(t, base, http.MethodGet, api.AuditPath, "Bearer "+token, nil)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != http.MethodPost {
		t.Fatalf("GET %s: %d Allow %q", api.AuditPath, r.status, r.header.Get("Allow"))
	}
}

// A store that cannot write fails the request closed: 503, nothing
// acknowledged.
func TestAuditAPIStoreFailure(t *testing.T) {
	base := auditServer(t, failingStore{memstore.New()}, api.Options{})
	r := postAudit(t, base, "Bearer "+token, `{"events": [{"service_name": "mcp", "action_name": "x"}]}`)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("status %d (Retry-After %q): %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if msg := r.errorText(t); !strings.Contains(msg, "not recorded") {
		t.Fatalf("error %q", msg)
	}
	// Not configured: 503 too.
	srv := newServer(t, newFake(), api.Options{})
	r = postAudit(t, srv, "Bearer "+token, `{"events": [{"service_name": "mcp", "action_name": "x"}]}`)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("without Options.Audit: status %d: %s", r.status, r.body)
	}
	var e api.ErrorResponse
	if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error, "not configured") {
		t.Fatalf("without Options.Audit: %s", r.body)
	}
}

// TestDecisionsAudited: with AuditDecisions every answered decision
// becomes an "authorization" audit event with both identities.
func TestDecisionsAudited(t *testing.T) {
	st := memstore.New()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := auditServer(t, st, api.Options{AuditDecisions: true, Context: ctx})
	body := `{"checks": [
		{"subject": "alice@example.com", "actor": "coding-agent", "privilege": "USE_CONNECTION", "securable": {"type": "CONNECTION", "name": "my_github_mcp"}, "context": {"tool": "search"}},
		{"subject": "bob@example.com", "privilege": "USE_CONNECTION", "securable": {"type": "CONNECTION", "name": "my_github_mcp"}}]}`
	if r := call(t, srv, http.MethodPost, api.AuthorizePath, "Bearer "+token, strings.NewReader(body)); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var evs []catalog.AuditEvent
	deadline := time.Now().Add(5 * time.Second)
	for len(evs) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d decision events recorded, want 2", len(evs))
		}
		runtime.Gosched()
		all, err := st.ListAudit(t.Context(), time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		evs = evs[:0]
		for _, e := range all {
			if e.Service == "authorization" {
				evs = append(evs, e)
			}
		}
	}
	a, b := evs[0], evs[1]
	if a.Action != "authorize" || a.UserIdentity != "alice@example.com" || a.RunAs != "coding-agent" ||
		a.SecurableName != "my_github_mcp" || !strings.Contains(a.RequestParams, `"tool":"search"`) || a.Decision == "" || a.Reason == "" {
		t.Errorf("first event %+v", a)
	}
	if b.UserIdentity != "bob@example.com" || b.RunAs != "" {
		t.Errorf("second event %+v", b)
	}
}
