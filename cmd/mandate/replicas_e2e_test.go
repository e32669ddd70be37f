package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog/pgtest"
)

// replicaNodeToken is the node token of every replica of a test.
const replicaNodeToken = "replica-node-token-0123456789abcdef"

// replicaMasterKey is the replicas' MANDATE_MASTER_KEY (and their nodes').
const replicaMasterKey = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=" // 32 bytes of 7

// cluster is replicas of mandate serve on one PostgreSQL database,
// reached through a proxy the test can cut.
type cluster struct {
	pg       *pgtest.Server
	proxy    *tcpProxy
	replicas []*server
	url      string
}

// startCluster starts PostgreSQL and n replicas on it. args are more
// flags for every replica.
func startCluster(t testing.TB, n int, pgSettings map[string]string, args ...string) *cluster {
	t.Helper()
	pg := pgtest.Start(t, pgtest.Options{Settings: pgSettings})
	pg.CreateDatabase(t, "mandate")
	proxy := startProxy(t, fmt.Sprintf("%s:%d", pg.Host, pg.Port))
	c := &cluster{pg: pg, proxy: proxy}
	c.url = strings.Replace(pg.URL("mandate"), fmt.Sprintf("%s:%d", pg.Host, pg.Port), proxy.addr(), 1)
	key := replicaMasterKey
	started := make([]*server, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { // together: they race for the bootstrap
			started[i] = startServer(t, serverOpts{args: append([]string{"--store", c.url}, args...),
				env:     []string{"MANDATE_MASTER_KEY=" + key, "MANDATE_NODE_TOKEN=" + replicaNodeToken},
				httpTLS: slices.Contains(args, "--http-tls=on")})
		})
	}
	wg.Wait()
	if slices.Contains(started, nil) {
		// startServer failed in its goroutine (it said why): end the test
		// here rather than crash the package on a nil replica.
		t.FailNow()
	}
	c.replicas = started
	t.Cleanup(func() { // before the replicas stop (cleanups run last first)
		if t.Failed() {
			for i, r := range c.replicas {
				t.Logf("replica %d stderr:\n%s", i, r.stderr.String())
			}
		}
	})
	return c
}

// authorized asks replica r's authorization API whether subject holds
// USE_CONNECTION on conn.
func authorized(t testing.TB, r *server, subject, conn string) (bool, string) {
	t.Helper()
	body := fmt.Sprintf(`{"subject":%q,"privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":%q}}`, subject, conn)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, r.httpURL+"/api/v1/authorize", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+replicaNodeToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Allowed bool   `json:"allowed"`
		Reason  string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("authorize on %s: %d %v", r.httpAddr, resp.StatusCode, err)
	}
	return d.Allowed, d.Reason
}

// execRetry runs a statement, again while it fails with 40001 (as a
// client of a replicated catalog does).
func execRetry(ctx context.Context, c *pgx.Conn, sql string) (conflicts int, err error) {
	for {
		_, err := c.Exec(ctx, sql)
		if sqlState(err) == "40001" && conflicts < 20 {
			conflicts++
			continue
		}
		return conflicts, err
	}
}

// TestReplicas runs 3 mandate serve processes on one PostgreSQL database:
// a GRANT on one is visible on all; a REVOKE on one denies on all;
// concurrent writers on all three lose no change; a replica killed with
// SIGKILL under load loses nothing it acknowledged; with the database
// unreachable writes fail with 57P03, decisions go on until the staleness
// bound and then fail closed, and the replicas reconnect by themselves.
// Rate limits and budgets hold across them (replicas_limits_e2e_test.go).
func TestReplicas(t *testing.T) {
	c := startCluster(t, 3, nil, "--max-staleness", "2s", "--dev") // --dev: the LLM endpoint (replicas_limits_e2e_test.go)
	admins := make([]*pgx.Conn, len(c.replicas))
	for i, r := range c.replicas {
		admins[i] = r.admin(t)
	}
	ctx := t.Context()
	mustExec(t, admins[0], `CREATE USER "alice@example.com"`,
		`CREATE CONNECTION repl_tools TYPE MCP OPTIONS (url 'https://tools.example/mcp')`)

	t.Run("GrantVisibleOnAll", func(t *testing.T) {
		mustExec(t, admins[1], `GRANT USE_CONNECTION ON CONNECTION repl_tools TO "alice@example.com"`)
		for i, r := range c.replicas {
			waitFor(t, 30*time.Second, fmt.Sprintf("the GRANT on replica %d", i), func() bool {
				ok, _ := authorized(t, r, "alice@example.com", "repl_tools")
				return ok
			})
			rows := queryRows(t, admins[i], `SHOW GRANTS ON CONNECTION repl_tools`)
			if !slices.ContainsFunc(rows, func(s string) bool { return strings.HasPrefix(s, "alice@example.com|USE CONNECTION") }) {
				t.Errorf("replica %d: SHOW GRANTS = %v", i, rows)
			}
		}
	})

	// The AI gateway's objects (generic securables in the change records)
	// reach every replica like connections do.
	t.Run("ServicesVisibleOnAll", func(t *testing.T) {
		mustExec(t, admins[2], `CREATE MODEL PROVIDER SERVICE openai_prod OPTIONS (provider 'openai', api_key 'sk-replica-test')`,
			`CREATE MODEL SERVICE frontier OPTIONS (destinations 'openai_prod/gpt-4.1')`,
			`GRANT EXECUTE ON MODEL SERVICE frontier TO "alice@example.com"`,
			`ALTER MODEL SERVICE frontier SET RATE LIMIT 10 REQUESTS PER MINUTE FOR EACH USER`,
			`CREATE BUDGET monthly LIMIT 5 USD PER MONTH FOR EACH USER ON MODEL SERVICE frontier`)
		// Each statement is its own commit, which another replica may not
		// have applied yet when it has the one before: wait for the grant
		// and the rate limit that follows it.
		for i := range c.replicas {
			waitFor(t, 30*time.Second, fmt.Sprintf("the model service's grant and rate limit on replica %d", i), func() bool {
				rows := queryRows(t, admins[i], `SELECT service_name, grantee, privilege_type FROM system.information_schema.service_privileges WHERE grantee = 'alice@example.com'`)
				return slices.Equal(rows, []string{"frontier|alice@example.com|EXECUTE"}) &&
					len(queryRows(t, admins[i], `SHOW RATE LIMITS ON MODEL SERVICE frontier`)) == 1
			})
		}
		// The budget created on replica 2 is there to drop on replica 0.
		mustExec(t, admins[0], `DROP BUDGET monthly`)
	})

	t.Run("RevokeDeniesOnAll", func(t *testing.T) {
		var lat []time.Duration
		for round := range 6 {
			from := round % 3
			if round > 0 {
				mustExec(t, admins[from], `GRANT USE_CONNECTION ON CONNECTION repl_tools TO "alice@example.com"`)
				for _, r := range c.replicas {
					waitFor(t, 30*time.Second, "the GRANT", func() bool { ok, _ := authorized(t, r, "alice@example.com", "repl_tools"); return ok })
				}
			}
			mustExec(t, admins[from], `REVOKE USE_CONNECTION ON CONNECTION repl_tools FROM "alice@example.com"`)
			done := time.Now()
			for i, r := range c.replicas {
				waitFor(t, 30*time.Second, fmt.Sprintf("the REVOKE on replica %d", i), func() bool {
					ok, _ := authorized(t, r, "alice@example.com", "repl_tools")
					return !ok
				})
				if i != from {
					lat = append(lat, time.Since(done))
				}
			}
		}
		slices.Sort(lat)
		t.Logf("REVOKE to denial on the other replicas (sequential checks, upper bounds): median %v, max %v (BenchmarkReplicas/revoke measures the p99)",
			lat[len(lat)/2], lat[len(lat)-1])
	})

	t.Run("ConcurrentWriters", func(t *testing.T) {
		const perReplica, clients = 30, 3
		var conflicts atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, len(c.replicas)*clients)
		for i, r := range c.replicas {
			for k := range clients {
				wg.Go(func() {
					conn := r.admin(t)
					for n := k; n < perReplica; n += clients {
						nc, err := execRetry(ctx, conn, fmt.Sprintf(`CREATE GROUP "w-%d-%d"`, i, n))
						conflicts.Add(int64(nc))
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		want := len(c.replicas) * perReplica
		for i := range c.replicas {
			waitFor(t, 30*time.Second, fmt.Sprintf("replica %d to hold every group", i), func() bool {
				return len(queryRows(t, admins[i], `SELECT group_name FROM information_schema.groups WHERE group_name LIKE 'w-%'`)) == want
			})
		}
		t.Logf("%d CREATE GROUP on 3 replicas, %d answered 40001 and retried", want, conflicts.Load())
	})

	// Rate limits and budgets hold across the replicas.
	llm := startReplicaLLM(t, c, admins[0])
	t.Run("BudgetAcrossReplicas", llm.budget)
	t.Run("RateLimitAcrossReplicas", llm.rateLimit)

	t.Run("KillUnderLoad", func(t *testing.T) {
		victim := c.replicas[2]
		calls := llm.load(t) // model calls too: the others keep serving them
		var acked sync.Map
		var wg sync.WaitGroup
		for k := range 4 {
			wg.Go(func() {
				conn, err := victim.connect(t, "admin", victim.password, "system")
				if err != nil {
					return
				}
				for n := 0; ; n++ {
					name := fmt.Sprintf("k-%d-%d", k, n)
					if _, err := execRetry(context.Background(), conn, fmt.Sprintf(`CREATE GROUP %q`, name)); err != nil {
						return // the replica is gone
					}
					acked.Store(name, true)
				}
			})
		}
		waitFor(t, 30*time.Second, "acknowledged writes on the replica", func() bool {
			n := 0
			acked.Range(func(any, any) bool { n++; return n < 50 })
			return n >= 50
		})
		victim.kill(t)
		wg.Wait()
		c.replicas = c.replicas[:2]
		admins = admins[:2]
		calls.survivorsServe(t, 2)
		held := waitAcknowledged(t, admins[0], "k-%", &acked)
		n := 0
		acked.Range(func(any, any) bool { n++; return true })
		t.Logf("%d groups acknowledged by the killed replica, %d on the others, none lost", n, held)
	})

	t.Run("DatabaseUnreachable", func(t *testing.T) {
		mustExec(t, admins[0], `GRANT USE_CONNECTION ON CONNECTION repl_tools TO "alice@example.com"`)
		for _, r := range c.replicas {
			waitFor(t, 30*time.Second, "the GRANT", func() bool { ok, _ := authorized(t, r, "alice@example.com", "repl_tools"); return ok })
		}
		c.proxy.cut()
		cutAt := time.Now()
		_, err := admins[1].Exec(ctx, `CREATE GROUP "while-down"`)
		if sqlState(err) != "57P03" {
			t.Errorf("a write while the database is unreachable: %v (SQLSTATE %q), want 57P03", err, sqlState(err))
		}
		// Decisions continue from the last snapshot, then fail closed.
		if ok, reason := authorized(t, c.replicas[0], "alice@example.com", "repl_tools"); !ok && time.Since(cutAt) < time.Second {
			t.Errorf("denied right after the database became unreachable: %s", reason)
		}
		for i, r := range c.replicas {
			waitFor(t, 30*time.Second, fmt.Sprintf("replica %d to fail closed", i), func() bool {
				ok, reason := authorized(t, r, "alice@example.com", "repl_tools")
				return !ok && strings.Contains(reason, "stale")
			})
		}
		if d := time.Since(cutAt); d < time.Second {
			t.Errorf("failed closed after %v, before the 2 s staleness bound", d)
		}
		for i, r := range c.replicas {
			if code, body := readyz(t, r); code != http.StatusServiceUnavailable || !strings.Contains(body, "stale") {
				t.Errorf("replica %d past its staleness bound: /readyz %d %s", i, code, body)
			}
		}
		c.proxy.restore()
		for i, r := range c.replicas {
			waitFor(t, 60*time.Second, fmt.Sprintf("replica %d to reconnect", i), func() bool {
				ok, _ := authorized(t, r, "alice@example.com", "repl_tools")
				return ok
			})
		}
		for i, r := range c.replicas {
			waitFor(t, 30*time.Second, fmt.Sprintf("replica %d to be ready again", i), func() bool {
				code, _ := readyz(t, r)
				return code == http.StatusOK
			})
		}
		waitFor(t, 60*time.Second, "writes to work again", func() bool {
			_, err := admins[1].Exec(ctx, `CREATE GROUP "after-down"`)
			return err == nil || sqlState(err) == "42710" // an earlier try's outcome was unknown
		})
		waitFor(t, 30*time.Second, "the write on the other replica", func() bool {
			return len(queryRows(t, admins[0], `SELECT group_name FROM information_schema.groups WHERE group_name = 'after-down'`)) == 1
		})
	})
}

// waitAcknowledged waits until the replica of conn holds every group named
// in acked, among its groups named LIKE like, and returns how many of those
// it holds. A replica applies the others' commits when it learns of them
// (a notification or its next poll), so it is waited for, not read once;
// a timeout names the groups still missing.
func waitAcknowledged(t *testing.T, conn *pgx.Conn, like string, acked *sync.Map) int {
	t.Helper()
	var rows, missing []string
	defer func() {
		if t.Failed() {
			t.Logf("acknowledged and missing: %v", missing)
		}
	}()
	waitFor(t, 30*time.Second, "every acknowledged group on the replica", func() bool {
		rows = queryRows(t, conn, fmt.Sprintf(`SELECT group_name FROM information_schema.groups WHERE group_name LIKE '%s'`, like))
		have := map[string]bool{}
		for _, g := range rows {
			have[g] = true
		}
		missing = missing[:0]
		acked.Range(func(k, _ any) bool {
			if !have[k.(string)] {
				missing = append(missing, k.(string))
			}
			return true
		})
		return len(missing) == 0
	})
	return len(rows)
}

// readyz is r's GET /readyz.
func readyz(t testing.TB, r *server) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.httpURL+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tcpProxy forwards connections to a backend until cut: then it closes
// every connection and refuses new ones, until restore.
type tcpProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	down    bool
	conns   map[net.Conn]struct{}
}

func startProxy(t testing.TB, backend string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, backend: backend, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go p.serve()
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		if !down {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		go p.pipe(c)
	}
}

func (p *tcpProxy) pipe(c net.Conn) {
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		b.Close()
		return
	}
	p.conns[b] = struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(b, c); b.Close(); c.Close() }()
	_, _ = io.Copy(c, b)
	b.Close()
	c.Close()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *tcpProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}
