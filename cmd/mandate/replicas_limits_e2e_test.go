package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// TestReplicasLimits runs 3 mandate serve processes on one PostgreSQL
// database and calls their LLM endpoints: a budget spent by 32 concurrent
// callers over the three is never overrun by more than one call (SHOW
// BUDGETS on any replica gives the shared figure); against 10 requests per
// minute for each user, 32 callers spread over the three pass at most 10
// per user in total; a replica killed with SIGKILL under load leaves the
// others serving.
func TestReplicasLimits(t *testing.T) {
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey = e2eOpenAIKey
	c := startCluster(t, 3, nil, "--dev")
	admin := c.replicas[0].admin(t)
	mustExec(t, admin,
		`CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url '`+fakeURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00/0.50')`,
		`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=100')`)
	users := []string{"carol", "dave", "erin", "gina"}
	tokens := map[string]string{}
	for _, u := range users {
		mustExec(t, admin, `CREATE USER "`+u+`@example.com"`, `GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "`+u+`@example.com"`)
		var tok string
		if err := admin.QueryRow(t.Context(), `CREATE ACCESS TOKEN FOR USER "`+u+`@example.com"`).Scan(&tok); err != nil {
			t.Fatal(err)
		}
		tokens[u] = tok
	}
	bases := make([]string, len(c.replicas))
	for i, r := range c.replicas {
		bases[i] = "http://" + r.httpAddr + "/llm"
	}
	chat := `{"model":"frontier","max_tokens":200,"messages":[{"role":"user","content":"spend mock:out=400"}]}`
	probe := `{"model":"frontier","max_tokens":1,"messages":[{"role":"user","content":"x"}]}`
	for _, b := range bases {
		waitFor(t, 30*time.Second, "the model service on every replica", func() bool {
			resp, _ := llmPost(t, b, "/v1/chat/completions", tokens["gina"], probe)
			return resp.StatusCode == 200
		})
	}

	t.Run("Budget", func(t *testing.T) {
		mustExec(t, admin, `CREATE BUDGET dave_cap LIMIT 0.02 USD PER MONTH FOR USER "dave@example.com"`)
		waitFor(t, 30*time.Second, "the budget on every replica", func() bool {
			for _, r := range c.replicas {
				if len(queryRows(t, r.admin(t), `SHOW BUDGETS`)) == 0 {
					return false
				}
			}
			return true
		})
		var mu sync.Mutex
		ok, refused := 0, 0
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				for range 40 {
					resp, body := llmPost(t, bases[g%3], "/v1/chat/completions", tokens["dave"], chat)
					mu.Lock()
					switch {
					case resp.StatusCode == 200:
						ok++
					case resp.StatusCode == 429 && strings.Contains(body, "budget"):
						refused++
					default:
						t.Errorf("unexpected answer %d %s", resp.StatusCode, body)
					}
					mu.Unlock()
					if resp.StatusCode != 200 {
						return
					}
				}
			})
		}
		wg.Wait()
		if refused != 32 || ok == 0 {
			t.Fatalf("%d calls answered, %d refused; want every caller refused in the end", ok, refused)
		}
		// Usage rows are per replica: the largest call over all three.
		var most int64
		for _, r := range c.replicas {
			conn := r.admin(t)
			waitFor(t, 30*time.Second, "usage rows", func() bool {
				return len(queryRows(t, conn, `SELECT 1 FROM system.ai_gateway.usage WHERE requester = 'dave@example.com' LIMIT 1`)) > 0
			})
			for _, row := range queryRows(t, conn, `SELECT CAST(max(cost_usd) * 1000000000 AS BIGINT) FROM system.ai_gateway.usage WHERE requester = 'dave@example.com'`) {
				n, _ := strconv.ParseInt(row, 10, 64)
				most = max(most, n)
			}
		}
		const limit = 20_000_000 // nano-USD
		spent := showBudgetSpent(t, c.replicas[1].admin(t), "dave_cap")
		if spent > limit+most || spent < limit/2 {
			t.Errorf("spent %d nano-USD over 3 replicas (largest call %d) against a limit of %d", spent, most, limit)
		}
		t.Logf("%d calls answered, %d refused, spent $%.6f of $0.02", ok, refused, float64(spent)/1e9)
	})

	t.Run("RateLimit", func(t *testing.T) {
		mustExec(t, admin, `ALTER MODEL SERVICE system.ai.frontier SET RATE LIMIT 10 REQUESTS PER MINUTE FOR EACH USER`,
			`ALTER MODEL SERVICE system.ai.frontier SET RATE LIMIT 100000 REQUESTS PER MINUTE FOR USER "gina@example.com"`)
		for _, b := range bases {
			waitFor(t, 30*time.Second, "the rate limit on every replica", func() bool {
				resp, _ := llmPost(t, b, "/v1/chat/completions", tokens["gina"], probe)
				return resp.Header.Get("x-ratelimit-limit-requests") == "100000"
			})
		}
		start := time.Now()
		var mu sync.Mutex
		passed := map[string]int{}
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				user := []string{"carol", "erin"}[g%2]
				for range 3 {
					resp, body := llmPost(t, bases[(g/2)%3], "/v1/chat/completions", tokens[user], chat)
					mu.Lock()
					switch {
					case resp.StatusCode == 200:
						passed[user]++
					case resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "":
					default:
						t.Errorf("unexpected answer %d %s", resp.StatusCode, body)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if d := time.Since(start); d >= 55*time.Second {
			t.Skipf("the callers took %v: not one window", d)
		}
		for _, u := range []string{"carol", "erin"} {
			if n := passed[u]; n > 10 || n < 1 {
				t.Errorf("%s: %d calls passed over 3 replicas in one minute, want 1..10", u, n)
			}
		}
		t.Logf("10 per minute for each user over 3 replicas: %v passed", passed)
	})

	t.Run("KillUnderLoad", func(t *testing.T) {
		victim := c.replicas[2]
		stop := make(chan struct{})
		var mu sync.Mutex
		answered := map[int]int{}
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest(http.MethodPost, bases[g%3]+"/v1/chat/completions", strings.NewReader(probe))
					req.Header.Set("Authorization", "Bearer "+tokens["gina"])
					req.Header.Set("Content-Type", "application/json")
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						if g%3 == 2 {
							return // the victim is gone
						}
						t.Errorf("a survivor: %v", err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						mu.Lock()
						answered[g%3]++
						mu.Unlock()
					}
				}
			})
		}
		waitFor(t, 30*time.Second, "load on every replica", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return answered[0] > 20 && answered[1] > 20 && answered[2] > 20
		})
		victim.kill(t)
		mu.Lock()
		after := answered[0] + answered[1]
		mu.Unlock()
		waitFor(t, 30*time.Second, "the survivors serving after the kill", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return answered[0]+answered[1] > after+50
		})
		close(stop)
		wg.Wait()
	})
}

// showBudgetSpent is the spent column of budget name in SHOW BUDGETS, in
// nano-USD.
func showBudgetSpent(t *testing.T, conn *pgx.Conn, name string) int64 {
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
