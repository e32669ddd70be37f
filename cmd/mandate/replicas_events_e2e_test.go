package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// TestReplicasEventStream: with --store postgres:// the replicas' audit
// and usage rows go to one event stream in PostgreSQL. LLM calls answered
// while the database is unreachable are spooled in each replica's data
// directory and drain into PostgreSQL when it is back, none lost, none
// doubled; a budget created afterwards on one replica is seeded from the
// usage of every replica (not only its own).
func TestReplicasEventStream(t *testing.T) {
	fake, fakeURL := llmtest.Start(t)
	fake.OpenAIKey = e2eOpenAIKey
	c := startCluster(t, 2, nil, "--dev", "--max-staleness", "5m")
	a0 := c.replicas[0].admin(t)
	mustExec(t, a0, `CREATE USER "alice@example.com"`,
		`CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url '`+fakeURL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00')`,
		`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=100')`,
		`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "alice@example.com"`)
	var tok string
	if err := a0.QueryRow(t.Context(), `CREATE ACCESS TOKEN FOR USER "alice@example.com"`).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	// Every replica decides on the revision of the token (replica 1 learns
	// of it from the store: its own catalog being current is not enough).
	head, _, ok := revisions(c.replicas[0])
	if !ok {
		t.Fatal("no catalog revision in replica 0's metrics")
	}
	for _, r := range c.replicas {
		waitSnapshotAt(t, r, head)
	}
	// The database itself, not through the proxy the replicas use.
	db := c.pg.Connect(t, "mandate")
	llmRows := func() (rows, distinct, completed int) {
		t.Helper()
		if err := db.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE status_code = 200 AND input_tokens IS NOT NULL)
			FROM audit_events WHERE service_name = 'llm'`).Scan(&rows, &distinct, &completed); err != nil {
			t.Fatal(err)
		}
		return rows, distinct, completed
	}
	calls := func(each int) {
		t.Helper()
		for i := range each {
			for k, r := range c.replicas {
				chat := fmt.Sprintf(`{"model":"frontier","max_tokens":20,"messages":[{"role":"user","content":"call %d on %d"}]}`, i, k)
				if resp, body := llmPost(t, "http://"+r.httpAddr+"/llm", "/v1/chat/completions", tok, chat); resp.StatusCode != 200 {
					t.Fatalf("call on replica %d: %d %s", k, resp.StatusCode, body)
				}
			}
		}
	}
	waitRows := func(want int) {
		t.Helper()
		waitFor(t, 60*time.Second, fmt.Sprintf("%d completed LLM rows in PostgreSQL", want), func() bool {
			_, _, done := llmRows()
			return done >= want
		})
		if n, d, done := llmRows(); n != want || d != want || done != want {
			t.Errorf("PostgreSQL holds %d LLM rows (%d distinct events, %d completed), want %d of each", n, d, done, want)
		}
	}
	calls(2)
	waitRows(4)

	c.proxy.cut()
	calls(3) // answered: decisions from the snapshot, records spooled locally
	if n, _, _ := llmRows(); n != 4 {
		t.Errorf("%d LLM rows in PostgreSQL while it was unreachable for the replicas, want the 4 from before", n)
	}
	c.proxy.restore()
	waitRows(10)

	// A budget created now on replica 0, with replica 1 gone, starts from
	// the month's spend of both.
	var spent int64
	if err := db.QueryRow(t.Context(), `SELECT sum(cost_nanos) FROM audit_events WHERE service_name = 'llm'`).Scan(&spent); err != nil || spent <= 0 {
		t.Fatalf("spent %d, %v", spent, err)
	}
	// The spend of the month as it is when SHOW BUDGETS answers: the calls
	// above, unless a month (UTC, the database's clock: this host's) ended
	// since.
	monthSpent := func() int64 {
		t.Helper()
		var n int64
		if err := db.QueryRow(t.Context(), `SELECT coalesce(sum(cost_nanos), 0) FROM audit_events
			WHERE service_name = 'llm' AND event_time >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	c.replicas[1].stop(t)
	mustExec(t, a0, `CREATE BUDGET alice_cap LIMIT 5 USD PER MONTH FOR EACH USER ON MODEL SERVICE system.ai.frontier`)
	budget := func() (shown int64) {
		t.Helper()
		rs, err := a0.Query(t.Context(), `SHOW BUDGETS`)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		for rs.Next() {
			v, err := rs.Values()
			if err != nil {
				t.Fatal(err)
			}
			if v[0] == "alice_cap" {
				n, _ := v[7].(pgtype.Numeric)
				f, _ := n.Float64Value()
				shown = int64(f.Float64*1e9 + 0.5)
			}
		}
		return shown
	}
	var shown int64
	for deadline := time.Now().Add(30 * time.Second); ; { // a failure bound
		if shown = budget(); shown == monthSpent() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SHOW BUDGETS on replica 0: spent %d nano-USD, want %d (the month's calls of both replicas); %v %v; its log:\n%s",
				shown, monthSpent(), queryRows(t, a0, `SHOW BUDGETS`), queryRows(t, db, `SELECT securable_name, user_identity, cost_nanos, event_time FROM audit_events WHERE service_name = 'llm' LIMIT 2`), c.replicas[0].stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if shown != spent {
		t.Logf("a month ended since the calls: the budget starts from the new month's %d nano-USD", shown)
	}
	t.Logf("10 calls on 2 replicas (6 while the database was unreachable): 10 rows in PostgreSQL; budget seeded with %d nano-USD", shown)
}
