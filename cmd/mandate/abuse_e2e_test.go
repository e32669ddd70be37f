package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
)

// diskBytes is the space the files under dir take on disk.
func diskBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file removed while walking
			}
			return err
		}
		if fi, err := d.Info(); err == nil && !d.IsDir() {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestE2EHoldUnderAbuse: what anyone without a credential can send is
// bounded through the binary. 800 unauthenticated MCP requests with a
// 60 KB User-Agent and 200 failed logins with 4 KB user names add a few
// rows and a few KB (before: one row per request with the whole header,
// ~50 MB, and log lines with the whole names); their repeats are counted
// into summary rows, written at the latest at shutdown; a request that
// trickles its body is cut after --http-read-body-timeout.
func TestE2EHoldUnderAbuse(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{args: []string{"--dev", "--http-read-body-timeout", "1s"}})
	admin := s.admin(t)
	before := diskBytes(t, s.dataDir)

	// Unauthenticated MCP requests with a 60 KB User-Agent (the header
	// limit is 64 KiB; larger is 431 before any handler).
	const mcpRequests, logins = 800, 200
	floodStart := time.Now()
	ua := strings.Repeat("A", 60_000)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, mcpRequests)
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.httpURL+"/mcp/demo",
					strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
				req.Header.Set("User-Agent", ua)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				resp, err := hc.Do(req)
				if err != nil {
					errs <- err
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					errs <- fmt.Errorf("status %d, want 401", resp.StatusCode)
				}
			}
		}()
	}
	for i := range mcpRequests {
		work <- i
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("unauthenticated MCP request: %v", err)
	}

	// Failed logins with 4 KB user names.
	for i := range logins {
		name := fmt.Sprintf("%04d", i) + strings.Repeat("u", 4000)
		if c, err := pgx.ConnectConfig(t.Context(), s.connConfig(t, name, "wrong", "system")); err == nil {
			c.Close(t.Context())
			t.Fatal("a login with a wrong password succeeded")
		}
	}

	var mcpRows, loginRows, textBytes int64
	if err := admin.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE service_name = 'mcp'),
		count(*) FILTER (WHERE service_name = 'sql' AND action_name = 'LOGIN'),
		coalesce(sum(length(user_agent) + length(user_identity) + length(identity_metadata::text)), 0)
		FROM system.access.audit WHERE service_name = 'mcp' OR action_name = 'LOGIN'`).Scan(&mcpRows, &loginRows, &textBytes); err != nil {
		t.Fatal(err)
	}
	added := diskBytes(t, s.dataDir) - before
	t.Logf("%d MCP rows, %d login rows, %d bytes of names and agents, %d bytes added on disk", mcpRows, loginRows, textBytes, added)
	// One row for the first failure of each kind in each window (a
	// minute) the failures fell in, and a summary row for each window that
	// has ended: 1 row, or 3 if a window ended during the flood (it lasts
	// less than a minute, unless the host is very slow).
	windows := int64(time.Since(floodStart)/catalog.DefaultFailureInterval) + 2
	if mcpRows > 2*windows-1 || loginRows > 2*windows-1 {
		t.Fatalf("%d MCP rows and %d login rows for %d and %d failures over at most %d windows", mcpRows, loginRows, mcpRequests, logins, windows)
	}
	if textBytes > 6*4*512 {
		t.Fatalf("%d bytes of user agents and names stored", textBytes)
	}
	if added > 10<<20 {
		t.Fatalf("%d bytes added to the data directory", added)
	}
	for _, line := range strings.Split(s.stderr.String(), "\n") {
		if len(line) > 4096 {
			t.Fatalf("server log line of %d bytes: %.200s", len(line), line)
		}
	}

	// A body that trickles is cut, also on the node-token API.
	tok, err := os.ReadFile(filepath.Join(s.dataDir, "node-token"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/authorize", "/mcp/demo"} {
		conn, err := net.Dial("tcp", s.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"subject\":",
			path, s.httpAddr, strings.TrimSpace(string(tok)))
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(20 * time.Second))
		_, err = io.ReadAll(conn)
		conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: a trickling request was still open after 20 s", path)
		}
		t.Logf("%s: trickling request cut after %v", path, time.Since(start).Round(time.Millisecond))
	}

	// The repeats are in summary rows once their window ends (here: at
	// shutdown), and every failure is accounted for.
	s.stop(t)
	s2 := startServer(t, serverOpts{dataDir: s.dataDir, args: []string{"--dev"}})
	rows, err := s2.admin(t).Query(t.Context(), `SELECT service_name, coalesce(request_params::text, '') FROM system.access.audit
		WHERE service_name = 'mcp' OR action_name = 'LOGIN'`)
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]int{}
	for rows.Next() {
		var svc, params string
		if err := rows.Scan(&svc, &params); err != nil {
			t.Fatal(err)
		}
		var p struct {
			N int `json:"aggregated_events"`
		}
		if strings.Contains(params, "aggregated_events") {
			if err := json.Unmarshal([]byte(params), &p); err != nil {
				t.Fatal(err)
			}
			counted[svc] += p.N
		} else {
			counted[svc]++
		}
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	// The trickled MCP request was answered 401 without its body: one
	// more failure.
	if counted["mcp"] != mcpRequests+1 || counted["sql"] != logins {
		t.Fatalf("the audit accounts for %v failures, want mcp %d and sql %d", counted, mcpRequests+1, logins)
	}
}

// TestE2EHTTPTLS: with --http-tls on, serve prints its certificate's
// fingerprint; a gateway node pinning it follows the catalog over TLS,
// one pinning another fingerprint refuses the connection.
func TestE2EHTTPTLS(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{args: []string{"--http-tls", "on"}, httpTLS: true})
	// The line reaches s.stdout through the pipe copier, maybe after
	// /healthz answered: wait for it.
	m := regexp.MustCompile(`certificate fingerprint (sha256:[0-9a-f]{64})`).FindStringSubmatch(waitStdout(s, "certificate fingerprint"))
	if m == nil {
		t.Fatalf("no fingerprint in the output:\n%s", s.stdout.String())
	}
	fp := m[1]
	// Plain HTTP to the TLS listener gets no answer it could mistake.
	if resp, err := http.Get("http://" + s.httpAddr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered 200 on the TLS listener")
		}
	}
	node := func(pin string) (string, *process) {
		p, addr := startOnFreeAddr(t, func(addr string) []string {
			return []string{"gateway", "--catalog", s.httpURL, "--catalog-fingerprint", pin,
				"--node-token-file", filepath.Join(s.dataDir, "node-token"), "--http-addr", addr,
				"--oidc-issuer", "http://127.0.0.1:1/oidc", "--data-dir", nodeDataDir(t, s.dataDir, ""), "--max-staleness", "2s"}
		}, "Mandate gateway is ready")
		return addr, p
	}
	readyz := func(addr string) (int, string) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	start := time.Now()
	good, _ := node(fp)
	t.Logf("node started after %v", time.Since(start))
	waitFor(t, 30*time.Second, "the pinned node to follow the catalog over TLS", func() bool {
		code, body := readyz(good)
		return code == http.StatusOK && strings.Contains(body, `"status":"ready"`) && !strings.Contains(body, `"revision":0`)
	})
	t.Logf("node healthy after %v", time.Since(start))
	bad, badProc := node("sha256:" + strings.Repeat("00", 32))
	t.Logf("bad node started after %v", time.Since(start))
	waitFor(t, 30*time.Second, "the mispinned node to report the fingerprint and turn stale", func() bool {
		code, body := readyz(bad)
		return strings.Contains(badProc.stderr.String(), "fingerprint") && code == http.StatusServiceUnavailable &&
			strings.Contains(body, `"revision":0`)
	})
	t.Logf("bad node stale after %v", time.Since(start))
	// The catalog's certificate is the one printed.
	conn, err := tls.Dial("tcp", s.httpAddr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := fingerprint(conn.ConnectionState().PeerCertificates[0].Raw); got != fp {
		t.Fatalf("served certificate %s, printed %s", got, fp)
	}
}
