package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// recorder keeps what reaches it.
type recorder struct {
	mu     sync.Mutex
	events []catalog.AuditEvent
}

func (r *recorder) Record(_ context.Context, ev catalog.AuditEvent) error {
	if err := ev.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	return nil
}

func (r *recorder) all() []catalog.AuditEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]catalog.AuditEvent(nil), r.events...)
}

func rowBytes(evs []catalog.AuditEvent) (n int) {
	for _, e := range evs {
		n += len(e.EventID) + len(e.Service) + len(e.Action) + len(e.UserIdentity) + len(e.RunBy) + len(e.RunAs) +
			len(e.SourceIP) + len(e.UserAgent) + len(e.SessionID) + len(e.RequestID) + len(e.SecurableType) +
			len(e.SecurableName) + len(e.RequestParams) + len(e.ErrorMessage) + len(e.SQLState) + len(e.Decision) + len(e.Reason)
	}
	return n
}

func newFailureAudit(t *testing.T, next catalog.AuditRecorder, o catalog.FailureAuditOptions) *catalog.FailureAudit {
	t.Helper()
	o.Interval = time.Hour // windows end by Flush in tests
	a := catalog.NewFailureAudit(next, o)
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	return a
}

func summaryOf(t *testing.T, ev catalog.AuditEvent) map[string]any {
	t.Helper()
	var p map[string]any
	if err := json.Unmarshal([]byte(ev.RequestParams), &p); err != nil {
		t.Fatalf("summary params %q: %v", ev.RequestParams, err)
	}
	return p
}

// TestFailureAuditFlood: 800 unauthenticated requests with a 500 KB
// User-Agent from one address become one individual row and one summary
// with the count, a few KB in all (before: every request its own row of
// its whole User-Agent, ~400 MB).
func TestFailureAuditFlood(t *testing.T) {
	rec := &recorder{}
	a := newFailureAudit(t, rec, catalog.FailureAuditOptions{})
	ua := strings.Repeat("A", 500_000)
	for i := range 800 {
		err := a.Record(t.Context(), catalog.AuditEvent{Service: "mcp", Action: "POST", SourceIP: "203.0.113.9",
			UserAgent: ua, StatusCode: 401, Decision: "deny", Reason: "authentication failed: invalid_token",
			RequestID: fmt.Sprint(i), SecurableName: "demo"})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := rec.all(); len(got) != 1 {
		t.Fatalf("%d events recorded before the window ended, want 1", len(got))
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 2 {
		t.Fatalf("%d events, want the first and one summary", len(got))
	}
	if n := rowBytes(got); n > 4*catalog.AuditMaxName+4096 {
		t.Fatalf("%d bytes recorded for 800 failures", n)
	}
	s, p := got[1], summaryOf(t, got[1])
	if p["aggregated_events"] != float64(799) || s.SourceIP != "203.0.113.9" || s.Service != "mcp" ||
		s.Reason != "authentication failed: invalid_token" || s.StatusCode != 401 || s.Decision != "deny" ||
		s.SecurableName != "demo" || s.RequestID != "" || len(s.UserAgent) > catalog.AuditMaxName {
		t.Fatalf("summary %+v %v", s, p)
	}
	// A new window records the first failure individually again.
	if err := a.Record(t.Context(), catalog.AuditEvent{Service: "mcp", Action: "POST", SourceIP: "203.0.113.9",
		StatusCode: 401, Decision: "deny", Reason: "authentication failed: invalid_token"}); err != nil {
		t.Fatal(err)
	}
	if got := rec.all(); len(got) != 3 {
		t.Fatalf("%d events after a new window's first failure, want 3", len(got))
	}
}

// TestFailureAuditBounded: failures from many addresses and with many
// reasons write a bounded number of rows per window.
func TestFailureAuditBounded(t *testing.T) {
	rec := &recorder{}
	a := newFailureAudit(t, rec, catalog.FailureAuditOptions{MaxGroups: 50, MaxPerSource: 4})
	total := 0
	for i := range 5000 {
		ip := fmt.Sprintf("198.51.%d.%d", i/250, i%250)
		if i%2 == 0 {
			ip = "192.0.2.1" // one source, a new reason every time
		}
		ev := catalog.AuditEvent{Service: "sql", Action: "LOGIN", SourceIP: ip, UserIdentity: fmt.Sprint("user", i),
			SQLState: "28P01", StatusCode: 1, Decision: "deny", Reason: fmt.Sprint("password authentication failed ", i)}
		if err := a.Record(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
		total++
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) > 2*50+1 {
		t.Fatalf("%d rows for one window, want at most %d", len(got), 2*50+1)
	}
	counted := 0
	for _, e := range got {
		if e.RequestParams == "" {
			counted++
			continue
		}
		counted += int(summaryOf(t, e)["aggregated_events"].(float64))
	}
	if counted != total {
		t.Fatalf("rows account for %d failures, want %d", counted, total)
	}
}

// TestFailureAuditGroups: IPv6 addresses group by /64; a summary keeps
// only the shared fields and lists the user names tried; events that are
// not unauthenticated failures pass through.
func TestFailureAuditGroups(t *testing.T) {
	rec := &recorder{}
	a := newFailureAudit(t, rec, catalog.FailureAuditOptions{})
	for i := range 20 {
		ev := catalog.AuditEvent{Service: "sql", Action: "LOGIN", SourceIP: fmt.Sprintf("2001:db8:1:2::%x", i+1),
			UserIdentity: fmt.Sprint("u", i%3), SQLState: "28P01", StatusCode: 1, Decision: "deny", Reason: "password authentication failed"}
		if err := a.Record(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		if err := a.Record(t.Context(), catalog.AuditEvent{Service: "mcp", Action: "tools/call", UserIdentity: "alice",
			Decision: "allow", SourceIP: "2001:db8:1:2::1"}); err != nil {
			t.Fatal(err)
		}
		if err := a.Record(t.Context(), catalog.AuditEvent{Service: "mcp", Action: "tools/call", UserIdentity: "alice",
			Decision: "deny", StatusCode: 403, SourceIP: "2001:db8:1:2::1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 1+10+1 {
		t.Fatalf("%d events, want 1 individual failure, 10 authenticated events and 1 summary", len(got))
	}
	s := got[len(got)-1]
	p := summaryOf(t, s)
	if p["aggregated_events"] != float64(19) || s.SourceIP != "2001:db8:1:2::/64" || s.UserIdentity != "" ||
		fmt.Sprint(p["user_identities"]) != "[u1 u2 u0]" {
		t.Fatalf("summary %+v %v", s, p)
	}
}

// TestAuditEventCaps: every text field of an event is bounded when it is
// recorded, whoever produced it; request_params stays JSON.
func TestAuditEventCaps(t *testing.T) {
	st := memstore.New()
	l := catalog.NewAuditLog(st, catalog.AuditLogOptions{})
	big := strings.Repeat("x", 500_000)
	params, _ := json.Marshal(map[string]string{"statement": "CREATE USER \"" + big + "\"", "other": big})
	ev := catalog.AuditEvent{Service: big, Action: big, UserIdentity: big, RunBy: big, RunAs: big, SourceIP: big,
		UserAgent: big, SessionID: big, RequestID: big, SecurableType: big, SecurableName: big,
		RequestParams: string(params), ErrorMessage: big, SQLState: big, Decision: big, Reason: big + "\xff"}
	if err := l.Record(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	closeLog(t, l)
	es, err := st.ListAudit(t.Context(), time.Time{}, 0)
	if err != nil || len(es) != 1 {
		t.Fatalf("ListAudit = %d, %v", len(es), err)
	}
	e := es[0]
	if n := rowBytes(es); n > 8*catalog.AuditMaxShort+6*catalog.AuditMaxName+2*catalog.AuditMaxText+catalog.AuditMaxParams {
		t.Fatalf("event of %d bytes", n)
	}
	if !json.Valid([]byte(e.RequestParams)) || !strings.HasPrefix(e.RequestParams, `{"other":"xxx`) {
		t.Fatalf("request_params %.100q", e.RequestParams)
	}
	if !strings.Contains(e.UserAgent, "…[cut ") || len(e.UserAgent) > catalog.AuditMaxName {
		t.Fatalf("user agent %.100q (%d bytes)", e.UserAgent, len(e.UserAgent))
	}
	// Params that are all structure, no long string, give their size.
	var arr []string
	for range 20_000 {
		arr = append(arr, "abcd")
	}
	b, _ := json.Marshal(arr)
	e2 := catalog.AuditEvent{RequestParams: string(b)}
	if err := e2.Validate(); err != nil || e2.RequestParams != fmt.Sprintf(`{"truncated_bytes":%d}`, len(b)) {
		t.Fatalf("Validate = %v, params %.100q", err, e2.RequestParams)
	}
}
