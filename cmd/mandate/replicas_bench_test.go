package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgtest"
)

// benchDuration is how long each throughput run of BenchmarkReplicas
// lasts (MANDATE_BENCH_DURATION, default 20s).
func benchDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("MANDATE_BENCH_DURATION")); err == nil && d > 0 {
		return d
	}
	return 20 * time.Second
}

// BenchmarkReplicas runs 3 mandate serve processes on one PostgreSQL
// server on this machine (fsync and synchronous_commit on) and measures:
//
//   - pg-commit-floor: PostgreSQL alone, 8 connections each committing a
//     one-row UPDATE in a closed loop (the floor of a durable commit on
//     this machine now);
//   - grants/embedded: the baseline, mandate loadgen grants, 8 clients,
//     against a mandate serve process with the embedded store;
//   - grants/1-replica: the same against one replica (the others idle,
//     following);
//   - grants/3-replicas: the same against each of the 3 replicas at once
//     (24 clients), the total;
//   - revoke: a REVOKE on one replica, then the time until each other
//     replica's decision engine has the revision (its watch stream's
//     event; a check then asserts the denial), measured from the moment
//     the REVOKE was sent, over 200 rounds;
//   - grants/interleaved: BENCH_ROUNDS rounds (default 6) of
//     grants/1-replica and grants/3-replicas on the same cluster, the
//     order alternating; the ratio of the totals per round, their median
//     and lowest, and in how many rounds 3 replicas did not do less;
//   - grants/interleaved-aa: the same with an A/A check in each round
//     (two one-replica phases and the 3 replicas, the order cycling
//     through all six): how often, and by how much, two identical runs
//     differ, beside 3 replicas against each.
//
// Each reports the one-minute load average at its end (load1).
//
// BENCH_PIN pins the processes to CPUs (taskset), e.g.
// "pg=0;replicas=1;loadgen=1": PostgreSQL (postmaster and backends),
// the replicas (and the embedded server) and this process (the load
// generator), each a CPU list as taskset -c takes it.
//
// BENCH_FORWARD_WRITES=false starts the replicas with --forward-writes=false
// (each appends its own statements); by default, or with true, one writer
// replica commits them all, the others forward (the one-replica runs load
// the writer).
//
// Run with -benchtime 1x: each sub-benchmark runs once for its duration.
func BenchmarkReplicas(b *testing.B) {
	embedded := startServer(b, serverOpts{args: []string{"--log-level", "warn"}})
	c := startBenchCluster(b, 3)
	pinBench(b, c, embedded)
	grants := func(name string, targets []*server) {
		b.Run(name, func(b *testing.B) {
			var total, conflicts float64
			for range b.N {
				pgCalls0 := pgCalls(b, c)
				fwd0 := forwardedCounts(b, c)
				cpu0 := clusterCPU(b, c, targets)
				var rates []float64
				rates, conflicts = runGrants(b, targets, true)
				total = sumOf(rates)
				if len(targets) > 1 || targets[0] != embedded {
					calls := pgCalls(b, c)
					appends := calls["append"] - pgCalls0["append"]
					b.ReportMetric(float64(calls["changes"]-pgCalls0["changes"])/float64(appends), "changes/append")
					b.ReportMetric(float64(calls["reads"]-pgCalls0["reads"])/float64(appends), "reads/append")
					// Appends sent per append that wrote (1: no lost race),
					// and how often a writer took the head first.
					b.ReportMetric(float64(calls["attempts"]-pgCalls0["attempts"])/float64(appends), "attempts/append")
					b.ReportMetric(float64(calls["held"]-pgCalls0["held"])/float64(appends), "heads-held/append")
					// With forwarding: the changes each request to the
					// writer carried.
					if fwd := forwardedCounts(b, c); fwd[0] > fwd0[0] {
						b.ReportMetric(float64(fwd[1]-fwd0[1])/float64(fwd[0]-fwd0[0]), "fwd-changes/request")
					}
				}
				clusterCPU(b, c, targets).since(cpu0).report(b, total*benchDuration().Seconds())
				logStatements(b, pgCalls0, pgCalls(b, c))
			}
			b.ReportMetric(total, "stmts/s")
			b.ReportMetric(conflicts, "40001-retried")
			b.ReportMetric(loadAverage(b), "load1")
		})
	}
	// The floor: PostgreSQL's own durable commit of one row update on the
	// same server, 8 connections in closed loops (what 8 clients could
	// reach if a GRANT cost nothing but its commit).
	b.Run("pg-commit-floor", func(b *testing.B) {
		conn := c.pg.Connect(b, "mandate")
		if _, err := conn.Exec(b.Context(), `CREATE TABLE IF NOT EXISTS bench_floor (id INT PRIMARY KEY, n BIGINT);
			INSERT INTO bench_floor SELECT g, 0 FROM generate_series(0, 7) g ON CONFLICT DO NOTHING`); err != nil {
			b.Fatal(err)
		}
		var commits atomic.Int64
		var lat []time.Duration
		var mu sync.Mutex
		for range b.N {
			deadline := time.Now().Add(benchDuration())
			var wg sync.WaitGroup
			for i := range 8 {
				cc := c.pg.Connect(b, "mandate")
				wg.Go(func() {
					var mine []time.Duration
					for time.Now().Before(deadline) {
						t0 := time.Now()
						if _, err := cc.Exec(context.Background(), `UPDATE bench_floor SET n = n + 1 WHERE id = $1`, i); err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(t0))
						commits.Add(1)
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
		}
		slices.Sort(lat)
		b.ReportMetric(float64(commits.Load())/benchDuration().Seconds()/float64(b.N), "commits/s")
		b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Millisecond), "p50-ms")
		b.ReportMetric(loadAverage(b), "load1")
	})
	grants("grants/embedded", []*server{embedded})
	grants("grants/1-replica", c.replicas[:1])
	// One replica fed by 24 clients (three load generators of 8): what one
	// writer could do with every replica's statements.
	grants("grants/1-replica-24-clients", []*server{c.replicas[0], c.replicas[0], c.replicas[0]})
	grants("grants/3-replicas", c.replicas)
	b.Run("grants/interleaved", func(b *testing.B) {
		for range b.N {
			interleaveGrants(b, c, benchRounds(b))
		}
	})
	b.Run("grants/interleaved-aa", func(b *testing.B) {
		for range b.N {
			interleaveGrantsAA(b, c, benchRounds(b))
		}
	})
	b.Run("revoke", func(b *testing.B) {
		admins := make([]*pgx.Conn, len(c.replicas))
		for i, r := range c.replicas {
			admins[i] = r.admin(b)
		}
		mustExec(b, admins[0], `CREATE USER "rev@example.com"`, `CREATE CONNECTION rev_tools TYPE MCP OPTIONS (url 'https://tools.example/mcp')`)
		// Each replica's watch stream reports when its decision engine
		// swapped in a new revision (no polling that would compete with the
		// replicas for the CPU).
		watches := make([]*revisionWatch, len(c.replicas))
		for i, r := range c.replicas {
			watches[i] = watchRevisions(b, r)
		}
		var lat []time.Duration
		for range b.N {
			lat = lat[:0]
			for round := range 200 {
				from := round % len(c.replicas)
				mustExec(b, admins[from], `GRANT USE_CONNECTION ON CONNECTION rev_tools TO "rev@example.com"`)
				for _, r := range c.replicas {
					waitFor(b, 30*time.Second, "the GRANT", func() bool { ok, _ := authorized(b, r, "rev@example.com", "rev_tools"); return ok })
				}
				t0 := time.Now()
				mustExec(b, admins[from], `REVOKE USE_CONNECTION ON CONNECTION rev_tools FROM "rev@example.com"`)
				// The REVOKE's revision: the origin's engine denies from it on.
				var rev catalog.Revision
				waitFor(b, 30*time.Second, "the REVOKE on its replica", func() bool {
					var ok bool
					ok, rev = decision(b, c.replicas[from], "rev@example.com", "rev_tools")
					return !ok
				})
				for i, r := range c.replicas {
					if i == from {
						continue
					}
					at := watches[i].await(b, rev)
					if ok, _ := authorized(b, r, "rev@example.com", "rev_tools"); ok {
						b.Fatalf("replica %d at revision %d still allows", i, rev)
					}
					lat = append(lat, at.Sub(t0))
				}
			}
		}
		slices.Sort(lat)
		at := func(p float64) float64 {
			return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
		}
		b.ReportMetric(at(0.5), "p50-ms")
		b.ReportMetric(at(0.99), "p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1])/float64(time.Millisecond), "max-ms")
		b.ReportMetric(loadAverage(b), "load1")
	})
}

// runGrants runs mandate loadgen grants, 8 clients, against each of
// targets at once for benchDuration: the statements/s of each, and the
// statements retried after 40001 in all. log: log each load generator's
// output.
func runGrants(b *testing.B, targets []*server, log bool) (rates []float64, conflicts float64) {
	var wg sync.WaitGroup
	outs := make([]bytes.Buffer, len(targets))
	errs := make([]error, len(targets))
	for i, r := range targets {
		wg.Go(func() {
			var stderr bytes.Buffer
			errs[i] = loadgenGrants(context.Background(), []string{"--addr", r.sqlAddr, "--password", r.password,
				"--clients", "8", "--duration", benchDuration().String()}, &outs[i], &stderr)
		})
	}
	wg.Wait()
	for i := range targets {
		if errs[i] != nil {
			b.Fatalf("loadgen against replica %d: %v\n%s", i, errs[i], outs[i].String())
		}
		rates = append(rates, metric(b, outs[i].String(), `statements/s\s+([0-9.]+)`))
		conflicts += metric(b, outs[i].String(), `40001 retried\s+([0-9]+)`)
		if log {
			b.Logf("replica %d:\n%s", i, outs[i].String())
		}
	}
	return rates, conflicts
}

// sumOf is the sum of v.
func sumOf(v []float64) float64 {
	var t float64
	for _, x := range v {
		t += x
	}
	return t
}

// benchRounds is how many rounds grants/interleaved and the gateway
// benchmarks' phases run (BENCH_ROUNDS, default 6).
func benchRounds(b *testing.B) int {
	v := os.Getenv("BENCH_ROUNDS")
	if v == "" {
		return 6
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		b.Fatalf("BENCH_ROUNDS %q: want 1 to 100", v)
	}
	return n
}

// grantsPhase is one phase of an interleaved round: the load generators'
// total, the CPU per statement of all processes, the changes per append
// and, with 3 replicas, a forwarding replica's clients' rate against the
// writer's own clients' (whose statements take no hop).
type grantsPhase struct {
	total, cpu, changes, fwdShare float64
}

// runGrantsPhase runs one phase of an interleaved round against targets.
func runGrantsPhase(b *testing.B, c *cluster, targets []*server) grantsPhase {
	calls0 := pgCalls(b, c)
	cpu0 := clusterCPU(b, c, targets)
	rates, _ := runGrants(b, targets, false)
	d := clusterCPU(b, c, targets).since(cpu0)
	calls := pgCalls(b, c)
	p := grantsPhase{total: sumOf(rates)}
	if len(targets) == 3 {
		p.fwdShare = (rates[1] + rates[2]) / 2 / rates[0]
	}
	p.cpu = float64(d.all().Microseconds()) / (p.total * benchDuration().Seconds())
	p.changes = float64(calls["changes"]-calls0["changes"]) / float64(calls["append"]-calls0["append"])
	return p
}

// interleaveGrants runs grants/interleaved: rounds of one run against one
// replica (the writer) and one against the 3 replicas, on the same
// cluster, the order alternating between rounds (1 then 3, 3 then 1) so
// that a drift of the host's load weighs on both. Each round logs both
// totals, their ratio, the CPU per statement of all processes and the
// load average; the benchmark reports the median and the lowest ratio and
// in how many rounds the 3 replicas' total was not below the one's.
func interleaveGrants(b *testing.B, c *cluster, rounds int) {
	one, three := c.replicas[:1], c.replicas
	var ratios []float64
	ge := 0
	for round := range rounds {
		order := [][]*server{one, three}
		if round%2 == 1 {
			order = [][]*server{three, one}
		}
		got := map[int]grantsPhase{}
		for _, targets := range order {
			got[len(targets)] = runGrantsPhase(b, c, targets)
		}
		r := got[3].total / got[1].total
		ratios = append(ratios, r)
		if r >= 1 {
			ge++
		}
		b.Logf("round %d: 1 replica %.0f/s (%.0f µs CPU/stmt, %.1f changes/append), 3 replicas %.0f/s (%.0f µs CPU/stmt, %.1f changes/append, a forwarding replica's clients %.0f%% of the writer's): 3÷1 %.0f%%, load1 %.2f",
			round+1, got[1].total, got[1].cpu, got[1].changes, got[3].total, got[3].cpu, got[3].changes, 100*got[3].fwdShare, 100*r, loadAverage(b))
	}
	med := median(ratios) // sorts them
	b.Logf("3 replicas ≥ 1 replica in %d of %d rounds; ratios %v", ge, rounds, ratios)
	b.ReportMetric(100*med, "median-3/1-%")
	b.ReportMetric(100*ratios[0], "min-3/1-%")
	b.ReportMetric(float64(ge), "rounds-3>=1")
	b.ReportMetric(float64(rounds), "rounds")
	b.ReportMetric(loadAverage(b), "load1")
}

// interleaveGrantsAA runs grants/interleaved-aa: interleaved's comparison
// with an A/A check inside every round. A round runs three phases, one
// replica (a), the 3 replicas, and one replica again (b), in one of the
// six orders (round r takes the r-th, cycling), so that no phase owns a
// place in the round. 1b ÷ 1a is what two identical runs give: how often
// it is ≥ 1 and its spread are the yardstick for 3 ÷ 1, which is reported
// against both one-replica phases.
func interleaveGrantsAA(b *testing.B, c *cluster, rounds int) {
	const a, three, bb = 0, 1, 2
	orders := [6][3]int{{a, three, bb}, {bb, a, three}, {three, bb, a}, {bb, three, a}, {a, bb, three}, {three, a, bb}}
	targets := [3][]*server{a: c.replicas[:1], three: c.replicas, bb: c.replicas[:1]}
	var aa, vsA, vsB []float64
	geAA, geA, geB := 0, 0, 0
	for round := range rounds {
		var got [3]grantsPhase
		for _, ph := range orders[round%len(orders)] {
			got[ph] = runGrantsPhase(b, c, targets[ph])
		}
		rAA, rA, rB := got[bb].total/got[a].total, got[three].total/got[a].total, got[three].total/got[bb].total
		aa, vsA, vsB = append(aa, rAA), append(vsA, rA), append(vsB, rB)
		for _, x := range []struct {
			r float64
			n *int
		}{{rAA, &geAA}, {rA, &geA}, {rB, &geB}} {
			if x.r >= 1 {
				*x.n++
			}
		}
		b.Logf("round %d (order %v): 1a %.0f/s (%.0f µs CPU/stmt), 3 replicas %.0f/s (%.0f µs CPU/stmt), 1b %.0f/s (%.0f µs CPU/stmt): 1b÷1a %.0f%%, 3÷1a %.0f%%, 3÷1b %.0f%%, load1 %.2f",
			round+1, orders[round%len(orders)], got[a].total, got[a].cpu, got[three].total, got[three].cpu, got[bb].total, got[bb].cpu,
			100*rAA, 100*rA, 100*rB, loadAverage(b))
	}
	b.Logf("1b ≥ 1a in %d of %d rounds; 3 ≥ 1a in %d, 3 ≥ 1b in %d", geAA, rounds, geA, geB)
	b.Logf("ratios 1b÷1a %v; 3÷1a %v; 3÷1b %v", aa, vsA, vsB)
	b.ReportMetric(100*median(aa), "median-1b/1a-%")
	b.ReportMetric(100*median(append(slices.Clone(vsA), vsB...)), "median-3/1-%")
	b.ReportMetric(100*min(slices.Min(aa), 1/slices.Max(aa)), "min-aa-%") // the lower of the two directions
	b.ReportMetric(100*min(slices.Min(vsA), slices.Min(vsB)), "min-3/1-%")
	b.ReportMetric(float64(geAA), "rounds-1b>=1a")
	b.ReportMetric(float64(geA+geB), "pairs-3>=1")
	b.ReportMetric(float64(rounds), "rounds")
	b.ReportMetric(loadAverage(b), "load1")
}

// pinBench applies BENCH_PIN (see BenchmarkReplicas).
func pinBench(b *testing.B, c *cluster, embedded *server) {
	spec := benchPins(b, "pg, replicas, loadgen", func(who, cpus string) bool {
		switch who {
		case "pg":
			taskset(b, cpus, pgPIDs(b, c.pg.DataDir)...)
		case "replicas":
			taskset(b, cpus, embedded.cmd.Process.Pid)
			for _, r := range c.replicas {
				taskset(b, cpus, r.cmd.Process.Pid)
			}
		case "loadgen":
			taskset(b, cpus, os.Getpid())
		default:
			return false
		}
		return true
	})
	if spec != "" {
		b.Logf("pinned: %s", spec)
	}
}

// pgCalls reads pg_stat_statements and the head: the appends that wrote
// (either form of the append statement) and the appends sent (won or
// lost), the newest revision (the change records written), the reads of
// change records by the replicas (catching up) and the head taken FOR
// UPDATE (HeadLocker).
func pgCalls(b *testing.B, c *cluster) map[string]int64 {
	conn := c.pg.Connect(b, "mandate")
	defer conn.Close(context.Background())
	out := pgStatCalls(b.Context(), b, conn)
	var head int64
	if err := conn.QueryRow(b.Context(), `SELECT revision FROM mandate_catalog_head`).Scan(&head); err != nil {
		b.Fatal(err)
	}
	out["changes"] = head
	return out
}

// pgStatCalls reads pg_stat_statements (every database's statements: the
// view is the server's) on conn, as pgCalls does.
func pgStatCalls(ctx context.Context, b *testing.B, conn *pgx.Conn) map[string]int64 {
	out := map[string]int64{}
	rows, err := conn.Query(ctx, `SELECT query, calls, rows, total_exec_time FROM pg_stat_statements`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var q string
		var calls, n int64
		var ms float64
		if err := rows.Scan(&q, &calls, &n, &ms); err != nil {
			b.Fatal(err)
		}
		out["calls: "+q] += calls
		out["rows: "+q] += n
		out["µs: "+q] += int64(ms * 1000)
		switch {
		case strings.Contains(q, "mandate_catalog_append("):
			out["append"] += calls // the function (errors, lost races, are not counted)
		case strings.Contains(q, "INSERT INTO mandate_catalog_changes"):
			out["append"] += n // one row per append that wrote
			out["attempts"] += calls
		case strings.Contains(q, "FROM mandate_catalog_changes") && !strings.Contains(q, "xmin"):
			out["reads"] += calls
		case strings.Contains(q, "FROM mandate_catalog_head") && strings.Contains(q, "FOR UPDATE"):
			out["held"] += calls
		}
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

// logStatements logs the statements PostgreSQL ran between two pgCalls,
// the most time-consuming first: calls, rows and execution time.
func logStatements(b *testing.B, before, after map[string]int64) {
	type stmt struct {
		q                 string
		calls, rows, time int64
	}
	var all []stmt
	for k, v := range after {
		if q, ok := strings.CutPrefix(k, "µs: "); ok && v > before[k] {
			all = append(all, stmt{q, after["calls: "+q] - before["calls: "+q], after["rows: "+q] - before["rows: "+q], v - before[k]})
		}
	}
	slices.SortFunc(all, func(a, b stmt) int { return int(b.time - a.time) })
	var sb strings.Builder
	for _, s := range all[:min(len(all), 12)] {
		q := strings.Join(strings.Fields(s.q), " ")
		fmt.Fprintf(&sb, "\n  %9d calls %9d rows %9.1f ms  %.110s", s.calls, s.rows, float64(s.time)/1000, q)
	}
	b.Logf("PostgreSQL statements, by execution time:%s", sb.String())
}

// forwardedCounts sums the replicas' forwarded requests and changes
// (mandate_forwarded_requests_total, mandate_forwarded_changes_total; 0
// without forwarding).
func forwardedCounts(b *testing.B, c *cluster) [2]int64 {
	var n [2]int64
	for _, r := range c.replicas {
		resp, err := http.Get(r.httpURL + "/metrics")
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			for i, name := range []string{"mandate_forwarded_requests_total ", "mandate_forwarded_changes_total "} {
				if v, ok := strings.CutPrefix(sc.Text(), name); ok {
					f, _ := strconv.ParseFloat(v, 64)
					n[i] += int64(f)
				}
			}
		}
		resp.Body.Close()
	}
	return n
}

// loadAverage is the one-minute load average (/proc/loadavg).
func loadAverage(b *testing.B) float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	f, _, _ := strings.Cut(string(raw), " ")
	v, err := strconv.ParseFloat(f, 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// startBenchCluster starts PostgreSQL (durablePG) and n replicas that
// connect to it directly (startCluster puts a TCP proxy in between, for
// the tests that cut the database: a hop production does not have).
// BENCH_PPROF_ADDR (host:port) serves the first replica's profiler, the
// next port the second's, and so on.
func startBenchCluster(b *testing.B, n int) *cluster {
	b.Helper()
	settings := maps.Clone(durablePG)
	settings["shared_preload_libraries"] = "pg_stat_statements"
	settings["shared_buffers"] = "256MB"
	pg := pgtest.Start(b, pgtest.Options{Settings: settings})
	pg.CreateDatabase(b, "mandate")
	if _, err := pg.Connect(b, "mandate").Exec(b.Context(), "CREATE EXTENSION pg_stat_statements"); err != nil {
		b.Fatal(err)
	}
	c := &cluster{pg: pg, url: pg.URL("mandate")}
	key := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	c.replicas = make([]*server, n)
	var wg sync.WaitGroup
	for i := range n {
		env := []string{"MANDATE_MASTER_KEY=" + key, "MANDATE_NODE_TOKEN=" + replicaNodeToken}
		if a := os.Getenv("BENCH_PPROF_ADDR"); a != "" {
			host, port, err := net.SplitHostPort(a)
			p, perr := strconv.Atoi(port)
			if err != nil || perr != nil {
				b.Fatalf("BENCH_PPROF_ADDR %q: want host:port", a)
			}
			env = append(env, "MANDATE_PPROF_ADDR="+net.JoinHostPort(host, strconv.Itoa(p+i)))
		}
		wg.Go(func() { // together: they race for the bootstrap
			args := []string{"--store", c.url, "--log-level", "warn"}
			if fw := os.Getenv("BENCH_FORWARD_WRITES"); fw != "" { // the writer replica (--forward-writes)
				args = append(args, "--forward-writes="+fw)
			}
			c.replicas[i] = startServer(b, serverOpts{args: args, env: env})
		})
	}
	wg.Wait()
	if slices.Contains(c.replicas, nil) { // startServer failed in its goroutine (its error is logged)
		b.FailNow()
	}
	// With a writer replica (the others send it their statements), the
	// one-replica runs load the writer: replica 0.
	conn := pg.Connect(b, "mandate")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		var addr string
		if err := conn.QueryRow(b.Context(), `SELECT addr FROM mandate_writer_lease WHERE expires_at > now()`).Scan(&addr); err != nil {
			if strings.Contains(err.Error(), "does not exist") { // no writer lease in this version
				break
			}
			time.Sleep(100 * time.Millisecond) // a benchmark's setup: the lease is taken within a second
			continue
		}
		if i := slices.IndexFunc(c.replicas, func(r *server) bool { return r.httpAddr == addr }); i > 0 {
			c.replicas[0], c.replicas[i] = c.replicas[i], c.replicas[0]
		}
		b.Logf("writer replica: %s", addr)
		break
	}
	return c
}

// revisionWatch records when a replica's watch stream announced each
// revision.
type revisionWatch struct {
	mu     sync.Mutex
	seen   map[catalog.Revision]time.Time
	newest catalog.Revision
	wake   chan struct{}
}

// watchRevisions reads r's watch stream (GET /api/v1/watch) until the
// benchmark ends.
func watchRevisions(b *testing.B, r *server) *revisionWatch {
	w := &revisionWatch{seen: map[catalog.Revision]time.Time{}, wake: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.httpURL+"/api/v1/watch", nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+replicaNodeToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("watch %s: %v", r.httpAddr, err)
	}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "id: ") {
				continue
			}
			now := time.Now()
			n, err := strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
			if err != nil {
				continue
			}
			w.mu.Lock()
			w.seen[catalog.Revision(n)] = now
			w.newest = max(w.newest, catalog.Revision(n))
			w.mu.Unlock()
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}()
	return w
}

// await returns when the stream first announced revision rev or a newer
// one.
func (w *revisionWatch) await(b *testing.B, rev catalog.Revision) time.Time {
	timeout := time.After(30 * time.Second) // a failure bound
	for {
		w.mu.Lock()
		if w.newest >= rev {
			var first time.Time
			for r, at := range w.seen {
				if r >= rev && (first.IsZero() || at.Before(first)) {
					first = at
				}
			}
			w.mu.Unlock()
			return first
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-timeout:
			b.Fatalf("revision %d not announced within 30 s", rev)
		}
	}
}

// decision asks r's authorization API whether subject holds
// USE_CONNECTION on conn, and at which revision it decided.
func decision(b *testing.B, r *server, subject, conn string) (bool, catalog.Revision) {
	body := fmt.Sprintf(`{"subject":%q,"privilege":"USE_CONNECTION","securable":{"type":"CONNECTION","name":%q}}`, subject, conn)
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, r.httpURL+"/api/v1/authorize", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+replicaNodeToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Allowed  bool             `json:"allowed"`
		Revision catalog.Revision `json:"revision"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("authorize on %s: %d %v", r.httpAddr, resp.StatusCode, err)
	}
	return d.Allowed, d.Revision
}

// metric extracts a number from loadgen's output (0 when absent).
func metric(b *testing.B, out, re string) float64 {
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		b.Fatal(err)
	}
	return v
}
