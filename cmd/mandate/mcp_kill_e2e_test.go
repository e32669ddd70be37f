package main

import (
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// TestMCPAuditSurvivesKill: a load of tools/call through the gateway of
// `mandate serve`, kill -9 in the middle, then a restart.
//
// --audit-sync on: every call that was answered has its audit record, one
// row per call (the request record was durable before the answer; its
// completion usually too, else the row shows status 0).
//
// --audit-sync off: answers did not wait, so the calls answered in the
// last group-commit window before the kill may have no record; the log
// is intact (the server restarts and reads it) and what it lost is
// bounded by the audit queue. The test logs how many and how long before
// the kill they were answered.
func TestMCPAuditSurvivesKill(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"on", "off"} {
		t.Run("audit-sync="+mode, func(t *testing.T) { auditSurvivesKill(t, mode) })
	}
}

func auditSurvivesKill(t *testing.T, mode string) {
	up := newMCPUpstreamFast(t)
	args := []string{"--dev", "--audit-sync", mode}
	s := startServer(t, serverOpts{args: args})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE USER "alice@example.com"`,
		`CREATE SERVICE PRINCIPAL "coding-agent"`,
		`CREATE CONNECTION gh TYPE MCP OPTIONS (url '`+up+`', auth_mode 'mandate_jwt')`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "alice@example.com"`,
		`GRANT USE_CONNECTION ON CONNECTION gh TO "coding-agent"`)
	c.Close(t.Context())
	token := e2eToken(t, s, "alice@example.com", "coding-agent")
	url := "http://" + s.httpAddr + "/mcp/gh"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	var (
		mu       sync.Mutex
		answered = map[int64]time.Time{}
		next     atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				id := next.Add(1)
				if err := callTool(client, url, token, id); err == nil {
					at := time.Now()
					mu.Lock()
					answered[id] = at
					mu.Unlock()
				}
			}
		}()
	}
	waitFor(t, 60*time.Second, "500 answered calls", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(answered) >= 500
	})
	killedAt := time.Now()
	s.kill(t) // SIGKILL mid-load
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	calls := maps.Clone(answered)
	mu.Unlock()

	// The restart replays the log: it must be intact in both modes.
	s2 := startServer(t, serverOpts{dataDir: s.dataDir, args: args})
	c2 := s2.admin(t)
	rows, err := c2.Query(t.Context(), `SELECT request_id, (response->>'status_code')::int FROM system.access.audit
		WHERE service_name = 'mcp' AND action_name = 'tools/call'`)
	if err != nil {
		t.Fatal(err)
	}
	rowsOf := map[string]int{}
	pending := 0 // rows whose completion the kill lost
	for rows.Next() {
		var id string
		var st int
		if err := rows.Scan(&id, &st); err != nil {
			t.Fatal(err)
		}
		rowsOf[id]++
		if st == 0 {
			pending++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	missing, window := 0, time.Duration(0)
	for id, at := range calls {
		if rowsOf[strconv.FormatInt(id, 10)] == 0 {
			missing++
			window = max(window, killedAt.Sub(at))
		}
	}
	for id, n := range rowsOf {
		if n != 1 {
			t.Errorf("request %s has %d audit rows, want one (request and completion merged)", id, n)
		}
	}
	t.Logf("--audit-sync %s: %d calls answered before kill -9, %d audit rows after restart (%d without their completion), "+
		"%d answered calls without a record, answered up to %v before the kill", mode, len(calls), len(rowsOf), pending, missing, window)
	switch {
	case mode == "on" && missing > 0:
		t.Fatalf("%d of %d answered calls have no audit record", missing, len(calls))
	case mode == "off" && missing > catalog.DefaultAuditMaxQueued:
		t.Fatalf("%d answered calls lost their record: more than the audit queue holds", missing)
	}
}

// newMCPUpstreamFast is a stateless JSON-RPC upstream answering every call.
func newMCPUpstreamFast(t testing.TB) string {
	t.Helper()
	srv := httptestServer(t, http.HandlerFunc(fastUpstream))
	return srv + "/mcp"
}

func httptestServer(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
