package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// The gateway benchmarks measure these paths to one fast local upstream
// (a JSON-RPC responder answering every tools/call at once) in one run:
//
//	direct   the upstream itself
//	proxy    a bare net/http/httputil.ReverseProxy with keep-alive: the
//	         floor any extra hop costs on this machine
//	proxy-process
//	         the same bare proxy in a process of its own (the test binary
//	         re-executed, benchProxyEnv), like mandate: the baseline the
//	         "added" latency is measured over
//	mandate  `mandate serve --dev` (a subprocess): bearer JWT verified,
//	         USE_CONNECTION decided for alice and coding-agent, a
//	         mandate_jwt minted for the upstream, and the call's audit
//	         record durable (group-committed fsync, overlapping the
//	         upstream call) before the answer; its completion follows
//	mandate-audit-sync-off
//	         the same with --audit-sync off: answered without waiting
//	         for the fsync
//	node     `mandate gateway` (a subprocess) against the first serve process:
//	         the same stages, decisions from the node's cache (asking the
//	         catalog's API on a miss), audit to its own durable log; it
//	         reports the catalog round trips per call (catalog-asks/call,
//	         from the node's /healthz decision cache counters)
//
// Every path served by a process of its own reports that process's CPU
// per call (server-cpu-µs/call; mandate's after its audit log stored the
// run's rows). The knobs are BenchmarkLLMGateway's, from the same code:
// BENCH_BASELINE_BIN (paths baseline and baseline-audit-sync-off),
// BENCH_PIN="server=0;loadgen=1" (the proxy process, every mandate and
// the node on CPU 0, this process on CPU 1), BENCH_LLM_RATE (the paced
// rate, default 1,000/s), BENCH_WARM_PACED (below), BENCH_PPROF_ADDR
// with BENCH_PPROF_PATH, and BENCH_ROUNDS (below).
//
// Each phase (throughput-32conns, paced-RATE/s) runs its paths
// interleaved: BENCH_ROUNDS rounds (default 6; 1, or an even number),
// in each of which every path -bench selects makes N÷rounds calls (N
// from -benchtime Nx, which the rounds need), each path's segment after
// a warm-up of its own and with the server CPU counted per segment; the
// paths run in the listed order in even rounds and reversed in odd ones
// (benchOrder), so that no path owes its figures to its place or to a
// drift of the machine's load. Each path's sub-benchmark reports every
// round's calls together, logs each round, and adds added-p50-µs (over
// proxy-process) and, for a mandate path beside its baseline,
// main-lower-rounds (the rounds its p50 was below the baseline's),
// vs-baseline-p50-µs (the median difference), and
// second-minus-first-p50-µs and second-minus-first-cpu-µs/call (the
// median, over the rounds, of what the later of the two took more than
// the earlier: what the place costs).
// BENCH_ROUNDS=1 runs each path's b.N calls at once, one path after the
// other in the listed order (the benchmark before the rounds).
// BENCH_WARM_PACED=DURATION (default off) precedes each segment of a
// paced phase, every path's alike, with that long of unmeasured calls of
// the phase's own kind at its pace (benchWarmPaced): the segment then
// measures the gateway as steady traffic finds it (a PostgreSQL path's
// limit leases renewed in the background), where without it each path
// comes to its segment after idling while the others ran.
//
//	go test -run '^$' -bench BenchmarkGateway -benchtime 20000x ./cmd/mandate
//	BENCH_PIN='server=0;loadgen=1' go test -run '^$' -bench BenchmarkGateway -benchtime 5000x ./cmd/mandate
//	BENCH_BASELINE_BIN=/tmp/main-mandate BENCH_ROUNDS=10 go test -run '^$' -bench 'BenchmarkGateway/^paced-1000/s/(proxy-process|baseline|mandate)' -benchtime 5000x ./cmd/mandate
func BenchmarkGateway(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(fastUpstream))
	b.Cleanup(up.Close)
	upURL, _ := url.Parse(up.URL)
	transport := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(upURL) },
		Transport: transport,
	})
	b.Cleanup(proxy.Close)
	childURL, childPID := startBenchProxy(b, up.URL)
	paths := []benchPath{
		{name: "direct", url: up.URL + "/mcp"},
		{name: "proxy", url: proxy.URL + "/mcp"},
		{name: "proxy-process", url: childURL + "/mcp", pid: childPID},
	}
	for _, m := range benchMandates(b, func(s *server, c *pgx.Conn) string {
		mustExec(b, c,
			`CREATE USER "alice@example.com"`,
			`CREATE SERVICE PRINCIPAL "coding-agent"`,
			`CREATE CONNECTION bench TYPE MCP OPTIONS (url '`+up.URL+`/mcp', auth_mode 'mandate_jwt', scopes 'repo')`,
			`GRANT USE_CONNECTION ON CONNECTION bench TO "alice@example.com"`,
			`GRANT USE_CONNECTION ON CONNECTION bench TO "coding-agent"`)
		return e2eToken(b, s, "alice@example.com", "coding-agent")
	}) {
		m.path.url = "http://" + m.server.httpAddr + "/mcp/bench"
		paths = append(paths, m.path)
		if m.variant.mode != "on" || m.variant.bin != "" || m.variant.store != "" {
			continue
		}
		// The node's public URL is the catalog's, so that dev tokens (whose
		// audience is the serve process's URL) are accepted by both.
		nodeAddr := freeAddrs(b, 1)[0]
		s := m.server
		node := startProcess(b, []string{"gateway", "--catalog", "http://" + s.httpAddr,
			"--node-token-file", filepath.Join(s.dataDir, "node-token"), "--http-addr", nodeAddr,
			"--oidc-issuer", "http://" + s.httpAddr + "/oidc", "--public-url", "http://" + s.httpAddr,
			"--data-dir", nodeDataDir(b, s.dataDir, ""), "--log-level", "warn"}, "Mandate gateway is ready")
		paths = append(paths, benchPath{name: "node", url: "http://" + nodeAddr + "/mcp/bench", token: m.path.token, pid: node.cmd.Process.Pid,
			asks: func() int64 { return nodeAsks(b, nodeAddr) }})
	}
	pinGatewayBench(b, paths)
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
	call := func(p benchPath) func(i int64) (time.Duration, error) {
		return func(i int64) (time.Duration, error) {
			t0 := time.Now()
			err := callTool(client, p.url, p.token, i)
			return time.Since(t0), err
		}
	}
	benchWarm(b, paths, call)
	const settleQuery = `SELECT count(*) FROM system.access.audit`
	rounds := gatewayRounds(b)
	benchPhase(b, "throughput-32conns", paths, rounds, call, benchThroughput(settleQuery), nil)
	rate := benchRate()
	benchPhase(b, fmt.Sprintf("paced-%d/s", rate), paths, rounds, call, benchWarmPaced(b, rate, benchPaced(rate, settleQuery)), nil)
}

// nodeAsks reads the decision cache misses (catalog round trips) a
// gateway node at addr reports on /healthz; -1 when it does not.
func nodeAsks(b *testing.B, addr string) int64 {
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Cache *struct {
			Misses int64 `json:"misses"`
		} `json:"decision_cache"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || h.Cache == nil {
		return -1
	}
	return h.Cache.Misses
}

// callTool sends one tools/call and checks the answer is its result.
func callTool(c *http.Client, url, token string, id int64) error {
	body := `{"jsonrpc":"2.0","id":` + strconv.FormatInt(id, 10) + `,"method":"tools/call","params":{"name":"search_repos","arguments":{"query":"mandate"}}}`
	req, err := http.NewRequest("POST", url, bytes.NewBufferString(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2025-06-18")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"result"`)) {
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return nil
}

// fastUpstream answers every JSON-RPC request at once with a tools/call
// result (stateless: no session).
func fastUpstream(w http.ResponseWriter, r *http.Request) {
	var m struct {
		ID json.RawMessage `json:"id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil || len(m.ID) == 0 {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"found: mandate"}]}}`, m.ID)
}

// BenchmarkLLMGateway measures the LLM endpoint like BenchmarkGateway the
// MCP one, in one run: a chat completion of 1 KB in and 1 KB out (OpenAI
// format to an OpenAI destination) against the fake upstream
// (gateway/llm/llmtest) directly, through a bare httputil.ReverseProxy
// (which adds the provider key), and through `mandate serve` with
// everything on: the access token verified, EXECUTE decided for alice and
// claude-code, the call parsed, a rate limit (requests and tokens) and a
// budget reserved and settled, the call routed and metered, its audit
// record (the usage row) durable before the answer — and the same with
// --audit-sync off. Also the time to the first byte of a stream whose events come 1 ms
// apart.
//
// BENCH_PIN="server=0;loadgen=1" gives the layout a gateway benchmark
// uses: the servers under test (the proxy process and every mandate
// process, alike) on CPU 0, this process (the load generator, the fake
// upstream and the in-process proxy) on CPU 1 (taskset CPU lists; each
// server's GOMAXPROCS follows its CPUs within a second, this process's
// is set). With BENCH_LLM_POSTGRES, "pg=CPUS" pins its PostgreSQL and
// "pgnice=idle" (SCHED_IDLE) or "pgnice=1..19" lowers its CPU priority,
// mandate's processes keeping theirs.
//
// Beyond BenchmarkGateway's figures it logs, per round, each segment's
// per-core busy share and the CPU a PostgreSQL path's server used during
// it; in the stream phase the fake upstream's own p50 time from a
// request's arrival to its first event (upstream's first event); and
// after each phase each mandate path's pipeline stage means and the
// calls each stage held over 1 ms (its /metrics, since it started); and
// per segment the calls the limits stage held over 1 ms during the
// measured calls (limits over 1 ms).
//
// Its phases (throughput-32conns, paced-RATE/s, stream-ttfb-paced-RATE/s)
// run their paths interleaved in BENCH_ROUNDS rounds as BenchmarkGateway's
// do, and report the same. BENCH_WARM_PACED=300ms precedes each segment
// of the two paced phases with 300 ms of unmeasured calls of its kind
// (chat or stream) at its pace, every path alike: interleaved, each path
// idles while the others run, which a PostgreSQL path's leases (seconds
// long) do not outlast; with it the segment measures steady traffic.
//
//	go test -run '^$' -bench BenchmarkLLMGateway -benchtime 5000x ./cmd/mandate
//	BENCH_BASELINE_BIN=/tmp/main-mandate go test -run '^$' -bench 'BenchmarkLLMGateway/^paced-1000/s/(proxy-process|mandate|baseline)$' -benchtime 6000x ./cmd/mandate
//	BENCH_LLM_RATE=250 go test -run '^$' -bench BenchmarkLLMGateway -benchtime 2000x ./cmd/mandate
//	BENCH_LLM_POSTGRES=1 go test -run '^$' -bench 'BenchmarkLLMGateway/paced' -benchtime 5000x ./cmd/mandate
//	BENCH_WARM_PACED=300ms BENCH_LLM_POSTGRES=1 BENCH_ROUNDS=10 go test -run '^$' -bench 'BenchmarkLLMGateway/(^paced|stream-ttfb-paced)-1000/s/(proxy-process|mandate.*|postgres.*)$' -benchtime 10000x ./cmd/mandate
func BenchmarkLLMGateway(b *testing.B) {
	fake := llmtest.New()
	fake.MaxRecorded = -1
	fake.OpenAIKey = e2eOpenAIKey
	// The fake's own time to a stream's first event, per segment: what
	// the upstream took of the first byte's wait.
	upFirst := &firstFlushes{}
	up := httptest.NewServer(upFirst.wrap(fake))
	b.Cleanup(up.Close)
	upURL, _ := url.Parse(up.URL)
	transport := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upURL)
			pr.Out.Header.Set("Authorization", "Bearer "+e2eOpenAIKey)
		},
		Transport:     transport,
		FlushInterval: -1,
	})
	b.Cleanup(proxy.Close)
	// proxy-process: the same bare proxy in a process of its own, like
	// mandate: on a loaded machine a hop through another process waits
	// for the scheduler, which the in-process proxy does not.
	childURL, childPID := startBenchProxy(b, up.URL)
	paths := []benchPath{{name: "direct", url: up.URL + "/v1/chat/completions", token: e2eOpenAIKey}, {name: "proxy", url: proxy.URL + "/v1/chat/completions"},
		{name: "proxy-process", url: childURL + "/v1/chat/completions", pid: childPID}}
	for _, m := range benchMandates(b, func(s *server, c *pgx.Conn) string {
		mustExec(b, c,
			`CREATE USER "alice@example.com"`,
			`CREATE SERVICE PRINCIPAL "claude-code"`,
			`CREATE MODEL PROVIDER SERVICE system.ai.openai_prod OPTIONS (provider 'openai', url '`+up.URL+`/v1', api_key '`+e2eOpenAIKey+`', prices 'gpt-4.1=2.00/8.00/0.50')`,
			`CREATE MODEL SERVICE system.ai.frontier OPTIONS (destinations 'openai_prod/gpt-4.1=100')`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "alice@example.com"`,
			`GRANT EXECUTE ON MODEL SERVICE system.ai.frontier TO "claude-code"`,
			// The limits stage at work on every call: a rate limit and a
			// budget that apply (and never refuse in the run).
			`ALTER MODEL SERVICE system.ai.frontier SET RATE LIMIT 10000000 REQUESTS, 100000000000 TOKENS PER MINUTE FOR EACH USER`,
			`CREATE BUDGET bench LIMIT 1000000 USD PER MONTH FOR USER "alice@example.com"`)
		var tok string
		if err := c.QueryRow(b.Context(), `CREATE ACCESS TOKEN FOR USER "alice@example.com" VIA "claude-code"`).Scan(&tok); err != nil {
			b.Fatal(err)
		}
		return tok
	}) {
		m.path.url = "http://" + m.server.httpAddr + "/llm/v1/chat/completions"
		paths = append(paths, m.path)
	}
	pinGatewayBench(b, paths)
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)[:900]
	chatBody := []byte(`{"model":"frontier","max_tokens":2048,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"` + prompt + ` mock:out=1024"}]}`)
	streamBody := []byte(`{"model":"frontier","stream":true,"max_tokens":2048,"messages":[{"role":"user","content":"` + prompt + ` mock:out=64 mock:slow=1ms"}]}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512}}
	call := func(body []byte, ttfb bool) func(p benchPath) func(int64) (time.Duration, error) {
		return func(p benchPath) func(int64) (time.Duration, error) {
			return func(int64) (time.Duration, error) { return llmCall(client, p.url, p.token, body, ttfb) }
		}
	}
	chat := call(chatBody, false)
	benchWarm(b, paths, chat)
	const settleQuery = `SELECT count(*) FROM system.ai_gateway.usage`
	rounds := gatewayRounds(b)
	benchPhase(b, "throughput-32conns", paths, rounds, chat, benchThroughput(settleQuery), nil)
	rate := benchRate()
	benchPhase(b, fmt.Sprintf("paced-%d/s", rate), paths, rounds, chat, benchWarmPaced(b, rate, benchPaced(rate, settleQuery)), func(b *testing.B, p benchPath) {
		if p.admin != nil {
			logStages(b, p.url)
		}
	})
	stream := call(streamBody, true)
	paced := benchPaced(rate, settleQuery)
	streamPaced := func(b *testing.B, p benchPath, n int, call func(int64) (time.Duration, error)) benchSegment {
		upFirst.reset()
		s := paced(b, p, n, call)
		s.upstream = upFirst.p50()
		return s
	}
	benchPhase(b, fmt.Sprintf("stream-ttfb-paced-%d/s", rate), paths, rounds, stream, benchWarmPaced(b, rate, streamPaced), func(b *testing.B, p benchPath) {
		// The server's own time to the first byte (ttft_ms: from the
		// forward stage's start to the first event's flush): what the
		// client waits beyond it is the stages before forwarding and
		// the hops through the scheduler.
		if p.admin != nil {
			logStages(b, p.url)
		}
		if c := p.admin; c != nil {
			var ms float64
			if err := c.QueryRow(b.Context(), `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms) FROM system.ai_gateway.usage WHERE streaming`).Scan(&ms); err != nil {
				b.Logf("server ttft: %v", err)
			} else {
				b.ReportMetric(ms*1000, "server-ttft-p50-µs")
			}
		}
	})
}

// logStages logs what a mandate serve (the origin of pathURL) reports of its
// pipeline's stages so far (stageStats): each stage's mean and the calls
// it held longer than 1 ms.
func logStages(b *testing.B, pathURL string) {
	stages, names := stageStats(b, pathURL)
	var sb strings.Builder
	for _, n := range names {
		if st := stages[n]; st.count > 0 {
			fmt.Fprintf(&sb, " %s %.1f µs (%.0f over 1 ms),", n, 1e6*st.sum/st.count, st.count-st.under1ms)
		}
	}
	b.Logf("stages (mean, since start):%s", sb.String())
}

// stageTotals is one pipeline stage's totals since its process started:
// the seconds it took, its calls and those it held 1 ms or less.
type stageTotals struct{ sum, count, under1ms float64 }

// stageStats reads the LLM pipeline's stages so far from a mandate serve
// (the origin of pathURL; its /metrics, mandate_stage_duration_seconds):
// each stage's totals by name, and the names in the order listed.
func stageStats(b *testing.B, pathURL string) (map[string]*stageTotals, []string) {
	u, err := url.Parse(pathURL)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.Get("http://" + u.Host + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	stages := map[string]*stageTotals{}
	var names []string
	re := regexp.MustCompile(`^mandate_stage_duration_seconds_(sum|count|bucket)\{(?:le="([^"]+)",)?protocol="llm",stage="([^"]+)"(?:,le="([^"]+)")?\} (\S+)$`)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		m := re.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		st := stages[m[3]]
		if st == nil {
			st = &stageTotals{}
			stages[m[3]] = st
			names = append(names, m[3])
		}
		v, _ := strconv.ParseFloat(m[5], 64)
		switch {
		case m[1] == "sum":
			st.sum = v
		case m[1] == "count":
			st.count = v
		case m[2] == "0.001" || m[4] == "0.001":
			st.under1ms = v
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return stages, names
}

// limitsWaits is the calls the limits stage of a mandate serve (the
// origin of pathURL) has held over 1 ms since it started; -1 when it
// reports none (not an LLM path).
func limitsWaits(b *testing.B, pathURL string) int64 {
	stages, _ := stageStats(b, pathURL)
	st := stages["limits"]
	if st == nil {
		return -1
	}
	return int64(st.count - st.under1ms)
}

// benchPath is one path a gateway benchmark measures.
type benchPath struct {
	name, url, token string
	pid              int                  // the serving process when it is not this one: its CPU per call is reported
	admin            *pgx.Conn            // a mandate serve path's SQL (nil for others)
	asks             func() int64         // the catalog round trips so far (catalog-asks/call; nil: not reported)
	pgCPU            func() time.Duration // the CPU its PostgreSQL server has used so far (nil: none)
}

// benchMandate is one started mandate serve of benchVariants: its path
// (name, token, pid and admin set; the caller sets the URL).
type benchMandate struct {
	path    benchPath
	variant benchVariant
	server  *server
}

// benchMandates starts the mandate serve processes of benchVariants,
// each set up by setup (its catalog; it returns the caller's token).
// BENCH_PPROF_ADDR serves the profiler of the path named by
// BENCH_PPROF_PATH (default: of the first started; the others cannot bind
// the address).
func benchMandates(b *testing.B, setup func(s *server, c *pgx.Conn) string) []benchMandate {
	b.Helper()
	var env []string
	if a := os.Getenv("BENCH_PPROF_ADDR"); a != "" { // go tool pprof http://ADDR/debug/pprof/profile
		env = append(env, "MANDATE_PPROF_ADDR="+a)
	}
	var out []benchMandate
	for _, v := range benchVariants(b) {
		venv, name := env, v.prefix
		if v.mode == "off" {
			name += "-audit-sync-off"
		}
		if pp := os.Getenv("BENCH_PPROF_PATH"); pp != "" && pp != name {
			venv = nil
		}
		args := []string{"--dev", "--log-level", "warn", "--audit-sync", v.mode}
		if v.store != "" {
			args = append(args, "--store", v.store)
			venv = append(slices.Clone(venv), "MANDATE_MASTER_KEY="+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32)))
		}
		s := startServer(b, serverOpts{args: args, env: venv, bin: v.bin})
		c := s.admin(b)
		tok := setup(s, c)
		out = append(out, benchMandate{benchPath{name: name, token: tok, pid: s.cmd.Process.Pid, admin: c, pgCPU: v.pgCPU}, v, s})
	}
	return out
}

// benchWarm checks that each path answers and warms its connections.
func benchWarm(b *testing.B, paths []benchPath, call func(benchPath) func(int64) (time.Duration, error)) {
	b.Helper()
	for _, p := range paths {
		c := call(p)
		for i := range 20 {
			if _, err := c(int64(i)); err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
		}
	}
}

// benchRate is the paced benchmarks' rate (calls/s): BENCH_LLM_RATE,
// default 1,000. A loaded machine that cannot keep 1,000/s even on the
// direct path measures queueing, not the gateway.
func benchRate() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_LLM_RATE")); err == nil && v > 0 {
		return v
	}
	return 1000
}

// gatewayRounds is the number of rounds a gateway benchmark's phases run
// in (BENCH_ROUNDS, benchRounds): 1 runs each path's calls at once, in
// the listed order; more must be even (the order reverses every other
// round, benchOrder).
func gatewayRounds(b *testing.B) int {
	r := benchRounds(b)
	if r > 1 && r%2 == 1 {
		b.Fatalf("BENCH_ROUNDS %d: the gateway benchmarks want 1 or an even number (the order reverses every other round)", r)
	}
	return r
}

// benchOrder is the order the n paths of a phase run in in round (0 on):
// the listed order in even rounds, reversed in odd ones. Over an even
// number of rounds every path's mean place is the same ((n-1)/2), every
// path runs before every other in half the rounds and right after it as
// often as right before it, and a load drifting linearly through a pair
// of rounds weighs on every path alike (path i runs at places i and
// 2n-1-i of the pair's 2n).
func benchOrder(n, round int) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
		if round%2 == 1 {
			order[i] = n - 1 - i
		}
	}
	return order
}

// benchSegment is what one run of calls to one path measured.
type benchSegment struct {
	calls    int
	elapsed  time.Duration   // from the first call's start to the last's end
	lat      []time.Duration // each call's latency, sorted (paced runs; nil for others)
	cpu      time.Duration   // the serving process's CPU (0 when this process serves)
	asks     int64           // catalog round trips (-1: not reported)
	place    int             // its place in its round (interleaved phases)
	busy     []time.Duration // each core's busy time during the calls (procStatBusy's cores)
	pg       time.Duration   // the CPU the path's PostgreSQL server used during the calls (0: none)
	upstream time.Duration   // the fake upstream's p50 time to a stream's first event (0: not measured)
	waits    int64           // the calls the limits stage held over 1 ms (an LLM mandate path's; -1: not reported)
}

// firstFlushes records, for the handler it wraps, each request's time
// from its arrival to the answer's first flush (a stream's first event).
type firstFlushes struct {
	mu sync.Mutex
	d  []time.Duration
}

func (f *firstFlushes) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&firstFlushWriter{ResponseWriter: w, f: f, start: time.Now()}, r)
	})
}

func (f *firstFlushes) reset() {
	f.mu.Lock()
	f.d = f.d[:0]
	f.mu.Unlock()
}

// p50 is the median of the times recorded since reset (0: none).
func (f *firstFlushes) p50() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.d) == 0 {
		return 0
	}
	slices.Sort(f.d)
	return f.d[len(f.d)/2]
}

type firstFlushWriter struct {
	http.ResponseWriter
	f       *firstFlushes
	start   time.Time
	flushed bool
}

func (w *firstFlushWriter) Flush() {
	if !w.flushed {
		w.flushed = true
		d := time.Since(w.start)
		w.f.mu.Lock()
		w.f.d = append(w.f.d, d)
		w.f.mu.Unlock()
	}
	if fl, ok := w.ResponseWriter.(http.Flusher); ok {
		fl.Flush()
	}
}

// median is the median of v (sorted in place), the mean of the middle
// two when they are even.
func median(v []float64) float64 {
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + m) / 2
	}
	return m
}

// cpuPerCall is the serving process's CPU per call in µs.
func (s benchSegment) cpuPerCall() float64 { return float64(s.cpu.Microseconds()) / float64(s.calls) }

// p50 is the segment's median latency.
func (s benchSegment) p50() time.Duration { return s.lat[len(s.lat)/2] }

// benchMeasure makes n calls (call) to p and returns what they measured.
type benchMeasure func(b *testing.B, p benchPath, n int, call func(int64) (time.Duration, error)) benchSegment

// benchPhase runs one phase of a gateway benchmark (the calls and how
// they are made: measure) over paths, each path a sub-benchmark named
// name/path; after, if set, reports more for a path once its calls ran.
//
// With one round each sub-benchmark makes its b.N calls when it runs, in
// the listed order. With more, every path that -test.bench selects
// (benchSelected) makes N÷rounds calls per round (N from -test.benchtime
// Nx), the paths in benchOrder, each segment after a warm-up of its own;
// the sub-benchmarks then report every round's calls together
// (reportInterleaved).
func benchPhase(b *testing.B, name string, paths []benchPath, rounds int, call func(benchPath) func(int64) (time.Duration, error), measure benchMeasure, after func(*testing.B, benchPath)) {
	report := func(b *testing.B, p benchPath) {
		if after != nil {
			after(b, p)
		}
	}
	if rounds == 1 {
		for _, p := range paths {
			b.Run(name+"/"+p.name, func(b *testing.B) {
				reportSegments(b, p, []benchSegment{measure(b, p, b.N, call(p))})
				report(b, p)
			})
		}
		return
	}
	var sel []benchPath
	for _, p := range paths {
		if benchSelected(b.Name() + "/" + name + "/" + p.name) {
			sel = append(sel, p)
		}
	}
	var segs map[string][]benchSegment
	var roundLog []string
	if len(sel) > 0 {
		segs, roundLog = benchInterleave(b, sel, rounds, max(benchCalls(b)/rounds, 1), call, measure)
	}
	for _, p := range paths {
		logged := false // the testing package keeps the output of each time it calls the function
		b.Run(name+"/"+p.name, func(b *testing.B) {
			if segs[p.name] == nil {
				b.Fatalf("%s: not measured (benchSelected disagrees with -test.bench)", p.name)
			}
			if !logged && p.name == sel[0].name {
				for _, l := range roundLog {
					b.Log(l)
				}
			}
			reportInterleaved(b, p, segs, !logged)
			logged = true
			report(b, p)
		})
	}
}

// benchInterleave runs rounds of n calls to each of paths, in benchOrder,
// and returns each path's segments by name, in round order, and a line
// per round: the paths in the order they ran, their p50 (paced) or
// calls/s, and the load average.
func benchInterleave(b *testing.B, paths []benchPath, rounds, n int, call func(benchPath) func(int64) (time.Duration, error), measure benchMeasure) (map[string][]benchSegment, []string) {
	segs := map[string][]benchSegment{}
	var lines []string
	for r := range rounds {
		var line strings.Builder
		for place, i := range benchOrder(len(paths), r) {
			p := paths[i]
			benchWarm(b, []benchPath{p}, call)
			s := measure(b, p, n, call(p))
			s.place = place
			segs[p.name] = append(segs[p.name], s)
			if s.lat != nil {
				fmt.Fprintf(&line, " %s %d µs", p.name, s.p50().Microseconds())
			} else {
				fmt.Fprintf(&line, " %s %.0f/s", p.name, float64(s.calls)/s.elapsed.Seconds())
			}
			line.WriteString(" (busy")
			for c, t := range s.busy {
				fmt.Fprintf(&line, " cpu%d %.0f%%", c, 100*t.Seconds()/s.elapsed.Seconds())
			}
			if s.pg > 0 {
				fmt.Fprintf(&line, ", PostgreSQL %v", s.pg)
			}
			if s.upstream > 0 {
				fmt.Fprintf(&line, ", upstream's first event %d µs", s.upstream.Microseconds())
			}
			if s.waits >= 0 {
				fmt.Fprintf(&line, ", limits over 1 ms %d", s.waits)
			}
			line.WriteString("),")
		}
		lines = append(lines, fmt.Sprintf("round %d of %d, %d calls each:%s load1 %.2f", r+1, rounds, n, line.String(), loadAverage(b)))
	}
	return segs, lines
}

// benchSelected reports whether -test.bench selects (and -test.skip does
// not skip) the benchmark named name (the full name, slashes and all),
// as the testing package decides: it splits both patterns into
// alternatives of elements (benchPattern), and a name matches an
// alternative when each of its elements matches the name's element at
// its place. A skip that could only match longer names does not skip.
func benchSelected(name string) bool {
	flagValue := func(n string) string {
		if f := flag.Lookup(n); f != nil {
			return f.Value.String()
		}
		return ""
	}
	if ok, _ := benchNameMatches(flagValue("test.bench"), name); !ok {
		return false
	}
	skip := flagValue("test.skip")
	if skip == "" {
		return true
	}
	ok, partial := benchNameMatches(skip, name)
	return !ok || partial
}

// benchNameMatches matches name (its elements split at '/') against
// pattern as the testing package does: ok when, for some alternative of
// the pattern, every element of the name that the alternative has an
// element for matches it; partial when that alternative has more
// elements than the name.
func benchNameMatches(pattern, name string) (ok, partial bool) {
	elems := strings.Split(name, "/")
alts:
	for _, alt := range benchPattern(pattern) {
		for i, e := range elems {
			if i >= len(alt) {
				break
			}
			if m, err := regexp.MatchString(alt[i], e); err != nil || !m {
				continue alts
			}
		}
		return true, len(elems) < len(alt)
	}
	return false, false
}

// benchPattern splits a -test.bench pattern as the testing package does:
// into alternatives at each '|' and elements at each '/', neither inside
// brackets or parentheses nor escaped.
func benchPattern(s string) [][]string {
	var alts [][]string
	var elems []string
	brackets, parens := 0, 0
	for i := 0; i < len(s); {
		switch s[i] {
		case '[':
			brackets++
		case ']':
			brackets = max(brackets-1, 0) // an unmatched ']' is legal
		case '(':
			if brackets == 0 {
				parens++
			}
		case ')':
			if brackets == 0 {
				parens--
			}
		case '\\':
			i++
		case '/', '|':
			if brackets == 0 && parens == 0 {
				elems = append(elems, s[:i])
				if s[i] == '|' {
					alts, elems = append(alts, elems), nil
				}
				s, i = s[i+1:], 0
				continue
			}
		}
		i++
	}
	return append(alts, append(elems, s))
}

// benchCalls is N of -test.benchtime Nx: the calls per path of an
// interleaved phase.
func benchCalls(b *testing.B) int {
	v := ""
	if f := flag.Lookup("test.benchtime"); f != nil {
		v = f.Value.String()
	}
	n, err := strconv.Atoi(strings.TrimSuffix(v, "x"))
	if !strings.HasSuffix(v, "x") || err != nil || n < 1 {
		b.Fatalf("BENCH_ROUNDS > 1 interleaves the paths and needs -test.benchtime Nx (the calls per path), not %q", v)
	}
	return n
}

// benchThroughput measures n calls over 32 concurrent connections (a
// closed loop) with settleQuery settling a mandate path's records.
func benchThroughput(settleQuery string) benchMeasure {
	return func(b *testing.B, p benchPath, n int, call func(int64) (time.Duration, error)) benchSegment {
		return benchSegmentOf(b, p, n, settleQuery, func() []time.Duration {
			var next, failed atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			for range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(n) {
							return
						}
						if _, err := call(i); err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err.Error())
						}
					}
				}()
			}
			wg.Wait()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%s: %d of %d calls failed; the first: %v", p.name, f, n, firstErr.Load())
			}
			return nil
		})
	}
}

// benchPaced measures n calls made in an open loop at rate calls/s, each
// on its own goroutine, keeping their latencies, with settleQuery
// settling a mandate path's records.
func benchPaced(rate int, settleQuery string) benchMeasure {
	return func(b *testing.B, p benchPath, n int, call func(int64) (time.Duration, error)) benchSegment {
		return benchSegmentOf(b, p, n, settleQuery, func() []time.Duration {
			lat := make([]time.Duration, n)
			var failed atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			start := time.Now()
			for i := range n {
				if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
					time.Sleep(d) // the pace of the load, not a synchronisation
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					d, err := call(int64(i))
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
					lat[i] = d
				}()
			}
			wg.Wait()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%s: %d of %d calls failed; the first: %v", p.name, f, n, firstErr.Load())
			}
			slices.Sort(lat)
			return lat
		})
	}
}

// benchWarmPaced is measure (calls at rate calls/s) preceded, when
// BENCH_WARM_PACED names a duration (say 300ms), by that long of
// unmeasured calls made by measure itself, to the same path: the
// measured calls then find the gateway's per-key state (a PostgreSQL
// path's rate-limit leases and budget slices) as steady traffic at that
// pace keeps it, not as the path's idle time since its last segment left
// it. Unset or 0: measure alone.
func benchWarmPaced(tb testing.TB, rate int, measure benchMeasure) benchMeasure {
	var warm time.Duration
	if v := os.Getenv("BENCH_WARM_PACED"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > time.Minute {
			tb.Fatalf("BENCH_WARM_PACED %q: want a duration from 0 to 1m", v)
		}
		warm = d
	}
	n := int(warm * time.Duration(rate) / time.Second)
	if n == 0 {
		return measure
	}
	return func(b *testing.B, p benchPath, calls int, call func(int64) (time.Duration, error)) benchSegment {
		measure(b, p, n, call)
		return measure(b, p, calls, call)
	}
}

// benchSegmentOf runs calls (which makes the segment's n calls and
// returns their sorted latencies, or nil) and returns the segment, with
// the CPU p's serving process used and the catalog round trips p made
// meanwhile, the CPU counted once a mandate path stored what its audit
// log still held (settleQuery), so that it is the calls' own.
func benchSegmentOf(b *testing.B, p benchPath, n int, settleQuery string, calls func() []time.Duration) benchSegment {
	asks := func() int64 {
		if p.asks == nil {
			return -1
		}
		return p.asks()
	}
	pgCPU := func() time.Duration {
		if p.pgCPU == nil {
			return 0
		}
		return p.pgCPU()
	}
	waits := func() int64 {
		if p.admin == nil {
			return -1
		}
		return limitsWaits(b, p.url)
	}
	waits0 := waits() // read outside the server CPU counted
	cpu0, asks0, pg0, busy0 := procCPU(p.pid), asks(), pgCPU(), procStatBusy(b)[1:]
	b.ResetTimer()
	start := time.Now()
	s := benchSegment{calls: n, lat: calls(), asks: -1, waits: -1}
	s.elapsed = time.Since(start)
	s.pg = pgCPU() - pg0
	for i, t := range procStatBusy(b)[1:] {
		s.busy = append(s.busy, t-busy0[i])
	}
	if p.pid != 0 {
		settle(b, p.admin, settleQuery)
		s.cpu = procCPU(p.pid) - cpu0
	}
	if a := asks(); asks0 >= 0 && a >= 0 {
		s.asks = a - asks0
	}
	if w := waits(); waits0 >= 0 && w >= 0 {
		s.waits = w - waits0
	}
	return s
}

// reportSegments reports what segs (one path's) measured together:
// calls/s (throughput) or the p50 and p99 latency (paced), the serving
// process's CPU per call (server-cpu-µs/call; not for a path served by
// this process) and the catalog round trips per call
// (catalog-asks/call, when the path reports them).
func reportSegments(b *testing.B, p benchPath, segs []benchSegment) {
	calls, asks := 0, int64(0)
	var elapsed, cpu time.Duration
	var lat []time.Duration
	for _, s := range segs {
		calls += s.calls
		elapsed += s.elapsed
		cpu += s.cpu
		asks += s.asks
		lat = append(lat, s.lat...)
	}
	if lat == nil {
		b.ReportMetric(float64(calls)/elapsed.Seconds(), "calls/s")
	} else {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
	if p.pid != 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(calls), "server-cpu-µs/call")
	}
	if p.asks != nil && !slices.ContainsFunc(segs, func(s benchSegment) bool { return s.asks < 0 }) {
		b.ReportMetric(float64(asks)/float64(calls), "catalog-asks/call")
	}
}

// reportInterleaved reports p's segments of an interleaved phase (every
// path's by name in all): what reportSegments reports, ns/op as the
// segments' time per call, the rounds and, for paced calls,
// added-p50-µs (p's p50 over the proxy process's, all rounds together)
// and, for a mandate path whose baseline counterpart (BENCH_BASELINE_BIN;
// "mandate…" → "baseline…") ran too, the comparison round by round:
// main-lower-rounds (the rounds in which p's p50, and so its added p50,
// was below the baseline's), vs-baseline-p50-µs (the median of p's p50
// less the baseline's), second-minus-first-p50-µs (the median, over
// the rounds, of the p50 of whichever of the two ran later less the
// other's: what the place alone costs) and
// second-minus-first-cpu-µs/call (the same of the server CPU per call).
// With logRounds it logs each round: p's place, p50 and added p50 and,
// beside a baseline, both paths' p50, added p50 and CPU per call and
// the differences.
func reportInterleaved(b *testing.B, p benchPath, all map[string][]benchSegment, logRounds bool) {
	segs := all[p.name]
	reportSegments(b, p, segs)
	var elapsed time.Duration
	calls := 0
	for _, s := range segs {
		elapsed += s.elapsed
		calls += s.calls
	}
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(calls), "ns/op")
	b.ReportMetric(float64(len(segs)), "rounds")
	if segs[0].lat == nil {
		return
	}
	p50 := func(segs []benchSegment) time.Duration {
		var lat []time.Duration
		for _, s := range segs {
			lat = append(lat, s.lat...)
		}
		slices.Sort(lat)
		return lat[len(lat)/2]
	}
	pp := all["proxy-process"]
	if pp != nil && p.name != "proxy-process" {
		b.ReportMetric(float64((p50(segs) - p50(pp)).Microseconds()), "added-p50-µs")
	}
	// added is a segment's p50 over the proxy process's in its round.
	added := func(segs []benchSegment, r int) string {
		if pp == nil {
			return ""
		}
		return fmt.Sprintf(" (added %d)", (segs[r].p50() - pp[r].p50()).Microseconds())
	}
	rest, isMandate := strings.CutPrefix(p.name, "mandate")
	baseName := "baseline" + rest
	base := all[baseName]
	if !isMandate || base == nil {
		for r, s := range segs {
			if logRounds {
				b.Logf("round %d, place %d: p50 %d µs%s", r+1, s.place+1, s.p50().Microseconds(), added(segs, r))
			}
		}
		return
	}
	lower := 0
	var diffs []float64
	var place, placeCPU []float64 // each round's figure of the later of the two less the earlier's
	for r, s := range segs {
		d := s.p50() - base[r].p50()
		dCPU := s.cpuPerCall() - base[r].cpuPerCall()
		if d < 0 {
			lower++
		}
		diffs = append(diffs, float64(d.Microseconds()))
		second := p.name
		sign := 1.0
		if s.place < base[r].place {
			sign, second = -1, baseName
		}
		place, placeCPU = append(place, sign*float64(d.Microseconds())), append(placeCPU, sign*dCPU)
		if logRounds {
			b.Logf("round %d: %s p50 %d µs%s CPU %.0f µs/call, %s %d µs%s CPU %.0f µs/call: %+d µs, CPU %+.0f µs/call, %s second", r+1,
				p.name, s.p50().Microseconds(), added(segs, r), s.cpuPerCall(),
				baseName, base[r].p50().Microseconds(), added(base, r), base[r].cpuPerCall(), d.Microseconds(), dCPU, second)
		}
	}
	b.ReportMetric(float64(lower), "main-lower-rounds")
	b.ReportMetric(median(diffs), "vs-baseline-p50-µs")
	b.ReportMetric(median(place), "second-minus-first-p50-µs")
	b.ReportMetric(median(placeCPU), "second-minus-first-cpu-µs/call")
}

// pinGatewayBench applies BENCH_PIN to a gateway benchmark:
// "server=CPUS" pins the servers under test (the paths served by another
// process: the proxy process and every mandate; their runtimes follow the
// CPUs within a second), "loadgen=CPUS" this process, whose GOMAXPROCS it
// sets to the CPUs' count for the benchmark, and "pg=CPUS" the PostgreSQL
// of BENCH_LLM_POSTGRES (its backends inherit it); "pgnice=idle|N" sets
// that PostgreSQL's CPU priority (pgPriority).
func pinGatewayBench(b *testing.B, paths []benchPath) {
	var servers []int
	for _, p := range paths {
		if p.pid != 0 {
			servers = append(servers, p.pid)
		}
	}
	spec := benchPins(b, "server, loadgen, pg, pgnice", func(who, cpus string) bool {
		switch who {
		case "pg", "pgnice": // set when started (benchVariants)
		case "server":
			taskset(b, cpus, servers...)
		case "loadgen":
			taskset(b, cpus, os.Getpid())
			// The testing package set this process's GOMAXPROCS (-cpu),
			// so the runtime does not follow the CPUs by itself.
			prev := runtime.GOMAXPROCS(cpuCount(b, cpus))
			b.Cleanup(func() { runtime.GOMAXPROCS(prev) })
		default:
			return false
		}
		return true
	})
	if spec != "" {
		b.Logf("pinned: %s (this process's GOMAXPROCS %d)", spec, runtime.GOMAXPROCS(0))
	}
}

// benchPins parses BENCH_PIN ("who=cpus;..."), calling pin for each part;
// pin reports false for a who it does not know (known lists those it
// does). It returns the spec ("" when unset).
func benchPins(b *testing.B, known string, pin func(who, cpus string) bool) string {
	spec := os.Getenv("BENCH_PIN")
	if spec == "" {
		return ""
	}
	for _, part := range strings.Split(spec, ";") {
		who, cpus, ok := strings.Cut(part, "=")
		if !ok {
			b.Fatalf("BENCH_PIN %q: want who=cpus;...", spec)
		}
		if !pin(who, cpus) {
			b.Fatalf("BENCH_PIN %q: unknown %q (%s)", spec, who, known)
		}
	}
	return spec
}

// pgPriority lowers the CPU priority of a PostgreSQL server's processes
// (pids; the backends it forks later inherit it): prio "idle" is
// SCHED_IDLE (it runs only on a CPU nothing else wants), a number 1–19 a
// nice value.
func pgPriority(b *testing.B, prio string, pids []int) {
	b.Helper()
	var args []string
	if prio == "idle" {
		args = []string{"chrt", "--idle", "-a", "-p", "0"}
	} else if n, err := strconv.Atoi(prio); err == nil && n >= 1 && n <= 19 {
		args = []string{"renice", "-n", prio, "-p"}
	} else {
		b.Fatalf("BENCH_PIN: pgnice=%q: want idle or 1–19", prio)
	}
	for _, pid := range pids {
		if out, err := exec.Command(args[0], append(args[1:], strconv.Itoa(pid))...).CombinedOutput(); err != nil {
			b.Fatalf("%s %d: %v\n%s", strings.Join(args, " "), pid, err, out)
		}
	}
}

// taskset pins every thread of each process to cpus (a taskset -c list);
// threads started later inherit it.
func taskset(b *testing.B, cpus string, pids ...int) {
	b.Helper()
	for _, pid := range pids {
		if out, err := exec.Command("taskset", "-a", "-c", "-p", cpus, strconv.Itoa(pid)).CombinedOutput(); err != nil {
			b.Fatalf("taskset %s %d: %v\n%s", cpus, pid, err, out)
		}
	}
}

// cpuCount is the number of CPUs in a taskset -c list ("0", "0,1", "0-3").
func cpuCount(b *testing.B, cpus string) int {
	n := 0
	for _, r := range strings.Split(cpus, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		l, err := strconv.Atoi(lo)
		h := l
		if err == nil && isRange {
			h, err = strconv.Atoi(hi)
		}
		if err != nil || h < l {
			b.Fatalf("BENCH_PIN: bad CPU list %q", cpus)
		}
		n += h - l + 1
	}
	return n
}

// settle makes mandate store what its audit log still holds (query, a
// count of a system table, applies every pending record first), so that
// the CPU per call counts storing the calls' rows, which the log otherwise
// does after the run. c nil (not a mandate path): nothing.
func settle(b *testing.B, c *pgx.Conn, query string) {
	if c == nil {
		return
	}
	var n int64
	if err := c.QueryRow(b.Context(), query).Scan(&n); err != nil {
		b.Fatalf("settling the audit log: %v", err)
	}
}

// procCPU is the user and system CPU time process pid has used (0 for
// none).
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis: state is field 3,
	// utime 14 and stime 15 (clock ticks, 100 per second on Linux).
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// benchProxyEnv makes the test binary a bare reverse proxy to the URL it
// holds (TestMain): the baseline in a process of its own.
const benchProxyEnv = "MANDATE_BENCH_PROXY_CHILD"

// runBenchProxy serves a bare httputil.ReverseProxy to upstream (adding
// the provider key, which BenchmarkGateway's MCP upstream ignores: mandate
// adds a credential header there too) on a free loopback port, prints the port's URL and
// serves until its standard input closes.
func runBenchProxy(upstream string) {
	u, err := url.Parse(upstream)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	transport := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Header.Set("Authorization", "Bearer "+e2eOpenAIKey)
		},
		Transport:     transport,
		FlushInterval: -1,
	}
	fmt.Println("http://" + ln.Addr().String())
	// BENCH_PPROF_PROXY_ADDR: the proxy process serves its execution
	// trace there, to compare its hand-offs with mandate's.
	if a := os.Getenv("BENCH_PPROF_PROXY_ADDR"); a != "" {
		pm := http.NewServeMux()
		pm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go func() { _ = http.ListenAndServe(a, pm) }()
	}
	go func() { _ = http.Serve(ln, rp) }()
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// startBenchProxy starts the proxy process and returns its URL and pid.
func startBenchProxy(b *testing.B, upstream string) (string, int) {
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), benchProxyEnv+"="+upstream)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatalf("bench proxy: %v", err)
	}
	return strings.TrimSpace(line), cmd.Process.Pid
}

// llmCall sends one chat completion and returns the time to the end of
// the answer or, with ttfb, to its first byte (then reads the rest).
func llmCall(c *http.Client, url, token string, body []byte, ttfb bool) (time.Duration, error) {
	t0 := time.Now()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var d time.Duration
	var n int64
	if ttfb {
		one := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, one); err != nil {
			return 0, err
		}
		d = time.Since(t0)
		n, _ = io.Copy(io.Discard, resp.Body)
		n++
	} else {
		n, _ = io.Copy(io.Discard, resp.Body)
		d = time.Since(t0)
	}
	if resp.StatusCode != http.StatusOK || (!ttfb && n < 1024) {
		return 0, fmt.Errorf("status %d, %d bytes", resp.StatusCode, n)
	}
	return d, nil
}

// benchVariant is one mandate serve measured by the gateway benchmarks.
type benchVariant struct {
	prefix, bin, mode, store string
	pgCPU                    func() time.Duration // the CPU store's server has used so far (nil: no store)
}

// benchVariants are the mandate serve processes a gateway benchmark
// measures: this tree's with --audit-sync on and off; BENCH_BASELINE_BIN
// names another mandate binary (say, main's) measured beside it in the
// same run (paths baseline and baseline-audit-sync-off); BENCH_LLM_POSTGRES=1
// adds --store postgres:// (a durable PostgreSQL on this machine,
// catalog/pgtest), named postgres and postgres-audit-sync-off.
func benchVariants(b *testing.B) []benchVariant {
	b.Helper()
	variants := []benchVariant{{prefix: "mandate", mode: "on"}, {prefix: "mandate", mode: "off"}}
	if bin := os.Getenv("BENCH_BASELINE_BIN"); bin != "" {
		variants = []benchVariant{{prefix: "baseline", bin: bin, mode: "on"}, {prefix: "mandate", mode: "on"},
			{prefix: "baseline", bin: bin, mode: "off"}, {prefix: "mandate", mode: "off"}}
	}
	if os.Getenv("BENCH_LLM_POSTGRES") != "" {
		settings := map[string]string{"fsync": "on", "synchronous_commit": "on", "shared_buffers": "256MB",
			"shared_preload_libraries": "pg_stat_statements"}
		pg := pgtest.Start(b, pgtest.Options{Settings: settings})
		benchPins(b, "server, loadgen, pg, pgnice", func(who, v string) bool {
			switch who {
			case "pg":
				taskset(b, v, pgPIDs(b, pg.DataDir)...)
			case "pgnice":
				pgPriority(b, v, pgPIDs(b, pg.DataDir))
			}
			return true
		})
		for _, mode := range []string{"on", "off"} {
			db := "mandate_" + mode
			pg.CreateDatabase(b, db)
			variants = append(variants, benchVariant{prefix: "postgres", mode: mode, store: pg.URL(db),
				pgCPU: func() time.Duration { return pgCPU(b, pg.DataDir) }})
		}
		// What the postgres paths asked of PostgreSQL, and its CPU, over
		// the whole benchmark (both databases; the other paths do not
		// use it).
		conn := pg.Connect(b, "mandate_on")
		if _, err := conn.Exec(b.Context(), "CREATE EXTENSION pg_stat_statements"); err != nil {
			b.Fatal(err)
		}
		calls0, cpu0 := pgStatCalls(b.Context(), b, conn), pgCPU(b, pg.DataDir)
		b.Cleanup(func() { // b's context has ended
			logStatements(b, calls0, pgStatCalls(context.Background(), b, conn))
			b.Logf("PostgreSQL's CPU over the benchmark (every process of its server): %v", pgCPU(b, pg.DataDir)-cpu0)
		})
	}
	return variants
}
