package main

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMCPAuditSurvivesKill: a load of tools/call through the gateway of
// `mandate serve`, kill -9 in the middle; after a restart every call that
// was answered has its audit record.
func TestMCPAuditSurvivesKill(t *testing.T) {
	t.Parallel()
	up := newMCPUpstreamFast(t)
	s := startServer(t, serverOpts{args: []string{"--dev"}})
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
		answered []int64
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
					mu.Lock()
					answered = append(answered, id)
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
	s.kill(t) // SIGKILL mid-load
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	ids := append([]int64(nil), answered...)
	mu.Unlock()

	s2 := startServer(t, serverOpts{dataDir: s.dataDir, args: []string{"--dev"}})
	c2 := s2.admin(t)
	rows, err := c2.Query(t.Context(), `SELECT request_id FROM system.access.audit WHERE service_name = 'mcp' AND action_name = 'tools/call'`)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		have[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, id := range ids {
		if !have[strconv.FormatInt(id, 10)] {
			missing++
		}
	}
	t.Logf("%d calls answered before kill -9, %d audit records after restart, %d answered calls without a record", len(ids), len(have), missing)
	if missing > 0 {
		t.Fatalf("%d of %d answered calls have no audit record", missing, len(ids))
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
