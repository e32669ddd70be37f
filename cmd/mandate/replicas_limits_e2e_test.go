package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// replicaLLM is a model service on a cluster of replicas (TestReplicas,
// started with --dev so that they serve the LLM endpoint), with users and
// their access tokens, to check that rate limits and budgets hold across
// the replicas.
type replicaLLM struct {
	c      *cluster
	admin  *pgx.Conn
	bases  []string // the replicas' LLM endpoints, then the node's
	node   string   // the node's address
	tokens map[string]string
}

const (
	replicaChat  = `{"model":"limits_llm","max_tokens":200,"messages":[{"role":"user","content":"spend mock:out=400"}]}`
	replicaProbe = `{"model":"limits_llm","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`
)

func startReplicaLLM(t *testing.T, c *cluster, admin *pgx.Conn) *replicaLLM {
	t.Helper()
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey = e2eOpenAIKey
	mustExec(t, admin,
		`CREATE MODEL PROVIDER SERVICE system.ai.limits_prov OPTIONS (provider 'openai', url '`+fakeURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00/0.50')`,
		`CREATE MODEL SERVICE system.ai.limits_llm OPTIONS (destinations 'limits_prov/gpt-4.1=100')`)
	e := &replicaLLM{c: c, admin: admin, tokens: map[string]string{}}
	for _, u := range []string{"carol", "dave", "erin", "gina"} {
		mustExec(t, admin, `CREATE USER "`+u+`@example.com"`, `GRANT EXECUTE ON MODEL SERVICE system.ai.limits_llm TO "`+u+`@example.com"`)
		var tok string
		if err := admin.QueryRow(t.Context(), `CREATE ACCESS TOKEN FOR USER "`+u+`@example.com"`).Scan(&tok); err != nil {
			t.Fatal(err)
		}
		e.tokens[u] = tok
	}
	for _, r := range c.replicas {
		b := "http://" + r.httpAddr + "/llm"
		e.bases = append(e.bases, b)
		waitFor(t, 30*time.Second, "the model service on every replica", func() bool {
			resp, _ := llmPost(t, b, "/v1/chat/completions", e.tokens["gina"], replicaProbe)
			return resp.StatusCode == 200
		})
	}
	// A gateway node of replica 0's: nodes and replicas hold one limit.
	tokenFile := filepath.Join(t.TempDir(), "node-token")
	if err := os.WriteFile(tokenFile, []byte(replicaNodeToken), 0o600); err != nil {
		t.Fatal(err)
	}
	r0 := "http://" + c.replicas[0].httpAddr
	_, addr := startOnFreeAddr(t, func(addr string) []string {
		return []string{"gateway", "--catalog", r0, "--node-token-file", tokenFile, "--http-addr", addr,
			"--oidc-issuer", r0 + "/oidc", "--data-dir", nodeDataDir(t, "", replicaMasterKey)}
	}, "Mandate gateway is ready")
	node := "http://" + addr + "/llm"
	waitFor(t, 30*time.Second, "the model service on the node", func() bool {
		resp, _ := llmPost(t, node, "/v1/chat/completions", e.tokens["gina"], replicaProbe)
		return resp.StatusCode == 200
	})
	e.bases = append(e.bases, node)
	e.node = addr
	return e
}

// nodeCurrent waits until the node has the revision replica 0 has now.
func (e *replicaLLM) nodeCurrent(t *testing.T) {
	t.Helper()
	waitNodeCurrent(t, e.c.replicas[0].httpAddr, e.node)
}

// waitNodeCurrent waits until the gateway node at nodeAddr has the
// revision the catalog at catalogAddr has now (a node's limits engine
// applies a revision's definitions before its next call).
func waitNodeCurrent(t *testing.T, catalogAddr, nodeAddr string) {
	t.Helper()
	var ready struct {
		Checks struct {
			Catalog struct {
				Detail struct {
					Revision int64 `json:"revision"`
				} `json:"detail"`
			} `json:"catalog"`
		} `json:"checks"`
	}
	getJSON(t, "http://"+catalogAddr+"/readyz", &ready)
	want := ready.Checks.Catalog.Detail.Revision
	if want == 0 {
		t.Fatal("the catalog's /readyz has no revision")
	}
	waitFor(t, 30*time.Second, "the node at the catalog's revision", func() bool {
		var h struct {
			Revision int64 `json:"revision"`
		}
		getJSON(t, "http://"+nodeAddr+"/healthz", &h)
		return h.Revision >= want
	})
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// budget: 32 callers over the three replicas and the node spend a budget of $0.02; it
// is never overrun by more than one call, and SHOW BUDGETS on any replica
// gives the shared figure.
func (e *replicaLLM) budget(t *testing.T) {
	mustExec(t, e.admin, `CREATE BUDGET dave_cap LIMIT 0.02 USD PER MONTH FOR USER "dave@example.com"`)
	waitFor(t, 30*time.Second, "the budget on every replica", func() bool {
		for _, r := range e.c.replicas {
			if len(queryRows(t, r.admin(t), `SHOW BUDGETS`)) == 0 {
				return false
			}
		}
		return true
	})
	e.nodeCurrent(t)
	ok, refused := spendBudget(t, e.bases, e.tokens["dave"], replicaChat)
	// One call's worst case bounds its settled difference: at most 200
	// output tokens at $8/M and a short input at $2/M.
	const most = 2_000_000 // nano-USD
	conns := []*pgx.Conn{e.c.replicas[1].admin(t)}
	const limit = 20_000_000 // nano-USD
	spent := showBudgetSpent(t, conns[0], "dave_cap")
	if spent > limit+most || spent < limit/2 {
		t.Errorf("spent %d nano-USD over 3 replicas (largest call %d) against a limit of %d", spent, most, limit)
	}
	t.Logf("%d calls answered, %d refused, spent $%.6f of $0.02", ok, refused, float64(spent)/1e9)
}

// rateLimit: against 10 requests per minute for each user, 32 callers
// spread over the three replicas and the node pass at most 10 per user in
// total.
func (e *replicaLLM) rateLimit(t *testing.T) {
	mustExec(t, e.admin, `ALTER MODEL SERVICE system.ai.limits_llm SET RATE LIMIT 10 REQUESTS PER MINUTE FOR EACH USER`,
		`ALTER MODEL SERVICE system.ai.limits_llm SET RATE LIMIT 100000 REQUESTS PER MINUTE FOR USER "gina@example.com"`)
	for _, b := range e.bases {
		waitFor(t, 30*time.Second, "the rate limit on every replica", func() bool {
			resp, _ := llmPost(t, b, "/v1/chat/completions", e.tokens["gina"], replicaProbe)
			return resp.Header.Get("x-ratelimit-limit-requests") == "100000"
		})
	}
	e.nodeCurrent(t)
	passed := rateLimitCallers(t, func(g int) string { return e.bases[(g/2)%len(e.bases)] }, e.tokens, replicaChat)
	for _, u := range []string{"carol", "erin"} {
		if n := passed[u]; n > 10 || n < 1 {
			t.Errorf("%s: %d calls passed over 3 replicas and a node in one minute, want 1..10", u, n)
		}
	}
	t.Logf("10 per minute for each user over 3 replicas and a node: %v passed", passed)
}

// llmLoad is model calls of gina's on every replica until stopped.
type llmLoad struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	answered []int // per replica
}

// load starts calls on every replica and waits until each answered some.
func (e *replicaLLM) load(t *testing.T) *llmLoad {
	l := &llmLoad{stop: make(chan struct{}), answered: make([]int, len(e.bases))}
	for g := range 2 * len(e.bases) {
		i := g % len(e.bases)
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, e.bases[i]+"/v1/chat/completions", strings.NewReader(replicaProbe))
				req.Header.Set("Authorization", "Bearer "+e.tokens["gina"])
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // a killed replica
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					l.mu.Lock()
					l.answered[i]++
					l.mu.Unlock()
				}
			}
		})
	}
	waitFor(t, 30*time.Second, "model calls answered on every replica", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return !slices.ContainsFunc(l.answered, func(n int) bool { return n < 20 })
	})
	return l
}

// survivorsServe waits until replicas [0, n) answered 50 more calls, and
// stops the load.
func (l *llmLoad) survivorsServe(t *testing.T, n int) {
	sum := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		s := 0
		for _, a := range l.answered[:n] {
			s += a
		}
		return s
	}
	before := sum()
	waitFor(t, 30*time.Second, "the surviving replicas answering model calls", func() bool { return sum() >= before+50 })
	close(l.stop)
	l.wg.Wait()
}

// showBudgetSpent is the spent column of budget name in SHOW BUDGETS, in
// nano-USD (0 when NULL).
func showBudgetSpent(t testing.TB, conn *pgx.Conn, name string) int64 {
	t.Helper()
	rs, err := conn.Query(t.Context(), `SHOW BUDGETS`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		v, err := rs.Values()
		if err != nil {
			t.Fatal(err)
		}
		if v[0] != name {
			continue
		}
		n, _ := v[7].(pgtype.Numeric)
		f, _ := n.Float64Value()
		return int64(f.Float64*1e9 + 0.5)
	}
	t.Fatalf("SHOW BUDGETS: no %s (%v)", name, rs.Err())
	return 0
}
