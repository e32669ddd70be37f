package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
)

// writerIndex waits until a replica of c holds the writer lease and
// returns its index.
func writerIndex(t *testing.T, c *cluster, pg *pgx.Conn) int {
	t.Helper()
	w := -1
	waitFor(t, 30*time.Second, "a writer replica", func() bool {
		var addr string
		if err := pg.QueryRow(t.Context(), `SELECT addr FROM mandate_writer_lease WHERE expires_at > now()`).Scan(&addr); err != nil {
			return false
		}
		for i, r := range c.replicas {
			if r.httpAddr == addr {
				w = i
				return true
			}
		}
		return false
	})
	return w
}

// postWrites sends a forwarded-statements request to r, with the MAC of
// key unless key is nil, and returns the status and the answer.
func postWrites(t *testing.T, r *server, key []byte, body []byte, ts, id string) (int, []writerResult) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, r.httpURL+writerPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != nil {
		w := &replicaWriter{key: key}
		req.Header.Set(writerAuthHeader, ts+"."+id+"."+w.mac("request", ts, id, body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var res []writerResult
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("answer %s: %v", out, err)
		}
	}
	return resp.StatusCode, res
}

// TestReplicaWriter runs 3 replicas that send their catalog statements to
// the writer replica: a GRANT sent to another replica is visible on all,
// read at once on the replica that took it, and audited by the writer as
// forwarded; a forwarded statement runs with its user's privileges; the
// writer's endpoint refuses requests without the installation's MAC and
// replays; with the writer killed the others go on accepting writes and
// lose none they acknowledged.
func TestReplicaWriter(t *testing.T) {
	c := startCluster(t, 3, nil, "--max-staleness", "2s", "--forward-writes")
	pg := c.pg.Connect(t, "mandate")
	wi := writerIndex(t, c, pg)
	oi := (wi + 1) % 3 // a replica that forwards
	admins := make([]*pgx.Conn, len(c.replicas))
	for i, r := range c.replicas {
		admins[i] = r.admin(t)
	}
	mustExec(t, admins[oi], `CREATE USER "fw@example.com" WITH PASSWORD 'fw-secret-1'`,
		`CREATE CONNECTION fw_tools TYPE MCP OPTIONS (url 'https://tools.example/mcp')`)

	// The sending replica learns who the writer is at its next read of the
	// lease.
	probe := 0
	waitFor(t, 30*time.Second, "a statement forwarded to the writer", func() bool {
		probe++
		mustExec(t, admins[oi], fmt.Sprintf(`COMMENT ON CONNECTION fw_tools IS 'probe %d'`, probe))
		return len(queryRows(t, admins[oi], fmt.Sprintf(`SELECT 1 FROM system.access.audit
			WHERE request_params->>'statement' LIKE '%%probe %d''' AND request_params->>'forwarded_by' = '%s'`,
			probe, c.replicas[oi].httpAddr))) == 1
	})

	t.Run("GrantOnNonWriter", func(t *testing.T) {
		mustExec(t, admins[oi], `GRANT USE_CONNECTION ON CONNECTION fw_tools TO "fw@example.com"`)
		// Read your writes: the replica that answered has it already.
		if rows := queryRows(t, admins[oi], `SHOW GRANTS ON CONNECTION fw_tools`); !strings.Contains(strings.Join(rows, "\n"), "fw@example.com|USE CONNECTION") {
			t.Fatalf("SHOW GRANTS on the sending replica right after the GRANT = %v", rows)
		}
		for i, r := range c.replicas {
			waitFor(t, 30*time.Second, fmt.Sprintf("the GRANT on replica %d", i), func() bool {
				ok, _ := authorized(t, r, "fw@example.com", "fw_tools")
				return ok
			})
		}
		// The writer committed it, as sent by the other replica.
		rows := queryRows(t, admins[oi], `SELECT request_params->>'forwarded_by', user_identity, source_ip_address
			FROM system.access.audit WHERE action_name = 'GRANT' AND request_params->>'statement' LIKE '%fw_tools%'`)
		if len(rows) != 1 || !strings.HasPrefix(rows[0], c.replicas[oi].httpAddr+"|admin|127.0.0.1") {
			t.Fatalf("audit of the GRANT = %v; want it forwarded by %s, run by admin from 127.0.0.1", rows, c.replicas[oi].httpAddr)
		}
	})

	t.Run("ForwardedRunsAsItsUser", func(t *testing.T) {
		fw, err := c.replicas[oi].connect(t, "fw@example.com", "fw-secret-1", "system")
		if err != nil {
			t.Fatal(err)
		}
		_, err = fw.Exec(t.Context(), `GRANT USE_CONNECTION ON CONNECTION fw_tools TO "admin"`)
		if sqlState(err) != "42501" {
			t.Fatalf("GRANT by a user without MANAGE, forwarded: %v; want 42501", err)
		}
		rows := queryRows(t, admins[oi], `SELECT request_params->>'forwarded_by', user_identity
			FROM system.access.audit WHERE action_name = 'GRANT' AND response->>'sql_state' = '42501'`)
		if len(rows) != 1 || rows[0] != c.replicas[oi].httpAddr+"|fw@example.com" {
			t.Fatalf("audit of the refused GRANT = %v", rows)
		}
	})

	t.Run("EndpointAuthenticated", func(t *testing.T) {
		key, err := base64.StdEncoding.DecodeString(replicaMasterKey)
		if err != nil {
			t.Fatal(err)
		}
		grant := func(principal string) []byte {
			b, _ := json.Marshal(writerRequest{Via: "test", Changes: []writerChange{{Stmts: []writerStatement{{Principal: principal,
				Form: json.RawMessage(`{"sql":"GRANT USE_CONNECTION ON CONNECTION fw_tools TO \"fw@example.com\"","catalog":"system"}`)}}}}})
			return b
		}
		newID := func() string {
			b := make([]byte, 16)
			_, _ = rand.Read(b)
			return hex.EncodeToString(b)
		}
		now := strconv.FormatInt(time.Now().Unix(), 10)
		w := c.replicas[wi]
		if st, _ := postWrites(t, w, nil, grant("admin"), now, newID()); st != http.StatusUnauthorized {
			t.Errorf("without a MAC: %d, want 401", st)
		}
		if st, _ := postWrites(t, w, writerKey([]byte("another installation's master key")), grant("admin"), now, newID()); st != http.StatusUnauthorized {
			t.Errorf("with another key's MAC: %d, want 401", st)
		}
		old := strconv.FormatInt(time.Now().Add(-2*writerSkew).Unix(), 10)
		if st, _ := postWrites(t, w, writerKey(key), grant("admin"), old, newID()); st != http.StatusUnauthorized {
			t.Errorf("an old request: %d, want 401", st)
		}
		// Authentic: the statement runs as the principal it names, with its
		// privileges (fw may not grant on fw_tools).
		id := newID()
		st, res := postWrites(t, w, writerKey(key), grant("fw@example.com"), now, id)
		if st != http.StatusOK || len(res) != 1 || !res[0].Failed || catalog.Code(res[0].Code) != catalog.CodePermissionDenied {
			t.Fatalf("authentic request as fw: %d %+v; want a permission error", st, res)
		}
		// The same request again (a replay) does not run.
		if st, _ := postWrites(t, w, writerKey(key), grant("fw@example.com"), now, id); st != http.StatusUnauthorized {
			t.Errorf("a replayed request: %d, want 401", st)
		}
		// A replica that is not the writer refuses before anything runs.
		if st, _ := postWrites(t, c.replicas[oi], writerKey(key), grant("admin"), now, newID()); st != http.StatusConflict {
			t.Errorf("a request to a replica that is not the writer: %d, want 409", st)
		}
	})

	t.Run("KillWriter", func(t *testing.T) {
		var acked sync.Map
		var after atomic.Int64 // acknowledged after the kill
		var killed atomic.Bool
		stop := make(chan struct{})
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i, r := range c.replicas {
			if i == wi {
				continue
			}
			for k := range 2 {
				conn := r.admin(t)
				wg.Go(func() {
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						name := fmt.Sprintf("kw-%d-%d-%d", i, k, n)
						_, err := execRetry(context.Background(), conn, fmt.Sprintf(`CREATE GROUP %q`, name))
						switch {
						case err == nil:
							acked.Store(name, true)
							if killed.Load() {
								after.Add(1)
							}
						case sqlState(err) == "08006" && killed.Load():
							// In flight to the writer when it died: not acknowledged.
						default:
							errs <- fmt.Errorf("%s: %w", name, err)
							return
						}
					}
				})
			}
		}
		count := func() int {
			n := 0
			acked.Range(func(any, any) bool { n++; return true })
			return n
		}
		waitFor(t, 30*time.Second, "acknowledged writes before the kill", func() bool { return count() >= 40 })
		killed.Store(true)
		c.replicas[wi].kill(t)
		waitFor(t, 60*time.Second, "writes acknowledged by the survivors after the kill", func() bool { return after.Load() >= 40 || len(errs) > 0 })
		close(stop)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Every acknowledged change reaches a survivor.
		waitAcknowledged(t, admins[oi], "kw-%", &acked)
		t.Logf("%d acknowledged (%d after the kill), none lost", count(), after.Load())
		// A survivor takes the lease over once the dead writer's expired.
		survivors := &cluster{replicas: []*server{}}
		for i, r := range c.replicas {
			if i != wi {
				survivors.replicas = append(survivors.replicas, r)
			}
		}
		writerIndex(t, survivors, pg)
	})
}

// TestReplicaWriterTLS: by default (no --forward-writes flag), with TLS
// listeners (each replica its own self-signed certificate), the writer
// publishes its certificate's fingerprint with its lease, and the others
// forward to it over TLS, pinning that certificate
// (TestWriterCertificatePinned: a writer with another certificate is
// refused).
func TestReplicaWriterTLS(t *testing.T) {
	c := startCluster(t, 2, nil, "--http-tls=on") // --forward-writes is the default
	pg := c.pg.Connect(t, "mandate")
	wi := writerIndex(t, c, pg)
	oi := 1 - wi
	// The fingerprint in the lease is the writer's certificate's.
	conn, err := tls.Dial("tcp", c.replicas[wi].httpAddr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // reads the certificate
	if err != nil {
		t.Fatal(err)
	}
	served := fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
	conn.Close()
	var cert string
	if err := pg.QueryRow(t.Context(), `SELECT cert FROM mandate_writer_lease`).Scan(&cert); err != nil || cert != served {
		t.Fatalf("lease cert = %q, %v; want the writer's %s", cert, err, served)
	}
	admin := c.replicas[oi].admin(t)
	mustExec(t, admin, `CREATE CONNECTION tls_tools TYPE MCP OPTIONS (url 'https://tools.example/mcp')`)
	probe := 0
	waitFor(t, 30*time.Second, "a statement forwarded to the writer over TLS", func() bool {
		probe++
		mustExec(t, admin, fmt.Sprintf(`COMMENT ON CONNECTION tls_tools IS 'probe %d'`, probe))
		return len(queryRows(t, admin, fmt.Sprintf(`SELECT 1 FROM system.access.audit
			WHERE request_params->>'statement' LIKE '%%probe %d''' AND request_params->>'forwarded_by' = '%s'`,
			probe, c.replicas[oi].httpAddr))) == 1
	})
	if strings.Contains(c.replicas[oi].stderr.String(), "not the one its lease names") {
		t.Fatalf("the forwarding replica refused the writer's certificate:\n%s", c.replicas[oi].stderr.String())
	}
}
