package llmgw

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/limits"
	"github.com/mandatehq/mandate/gateway/limitstage"
	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/pipeline"
)

// BenchmarkPipeline: a non-streamed chat completion (1 KB in, 1 KB out,
// OpenAI format to an OpenAI destination) through the whole pipeline with
// in-memory stages (access token, EXECUTE, the limits engine with a rate
// limit and a budget that apply, two-phase audit
// record, usage record) against the fake upstream, and through a bare
// httputil.ReverseProxy to it, alternating request by request on one
// keep-alive client. The figure is the pipeline's own cost; the binary's
// (an audit log on disk, both --audit-sync modes) is in cmd/mandate.
//
//	go test -run '^$' -bench 'Pipeline/(chat|stream-ttfb)$' -benchtime 3000x ./gateway/llmgw/
//	go test -run '^$' -bench 'Pipeline/chat-after-idle' -benchtime 500x ./gateway/llmgw/
func BenchmarkPipeline(b *testing.B) {
	e := benchEnv(b)
	target, _ := url.Parse(e.fakeURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = llm.NewForwarder().Client.Transport
	rp.ErrorLog = log.New(io.Discard, "", 0)
	proxy := httptest.NewServer(rp)
	b.Cleanup(proxy.Close)
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)[:900] + " mock:out=1024"
	body := []byte(`{"model":"frontier","max_tokens":2048,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"` + prompt + `"}]}`)
	// stream-ttfb: a streamed answer (64 tokens, events 1 ms apart), the
	// time to its first byte.
	stream := []byte(`{"model":"frontier","stream":true,"max_tokens":2048,"messages":[{"role":"user","content":"` + prompt[:900] + ` mock:out=64 mock:slow=1ms"}]}`)
	// chat-after-idle: the chat call with the process idle for 15 ms
	// before each call of either path, as a stream's first byte comes
	// after the previous streams' idle gaps: the stages then run cold.
	c := &http.Client{Transport: llm.NewForwarder().Client.Transport}
	for _, k := range []struct {
		name string
		body []byte
		ttfb bool
		idle time.Duration
	}{{"chat", body, false, 0}, {"stream-ttfb", stream, true, 0}, {"chat-after-idle", body, false, 15 * time.Millisecond}} {
		b.Run(k.name, func(b *testing.B) {
			// Each call is a region of the execution trace ("mandate",
			// "proxy"): testdata/tracecalls -wakes counts what a call
			// hands off between goroutines.
			call := func(u, auth string) time.Duration {
				region := "proxy"
				if auth != "Bearer "+openAIKey {
					region = "mandate"
				}
				defer trace.StartRegion(b.Context(), region).End()
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(k.body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", auth)
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				var d time.Duration
				if k.ttfb {
					one := make([]byte, 1)
					_, _ = io.ReadFull(resp.Body, one)
					d = time.Since(t0)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n < 64 {
					b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
				}
				if !k.ttfb {
					d = time.Since(t0)
				}
				return d
			}
			var gw, px []time.Duration
			for range 50 { // warm both paths
				call(e.URL+"/llm/v1/chat/completions", "Bearer "+aliceToken)
				call(proxy.URL+"/v1/chat/completions", "Bearer "+openAIKey)
			}
			b.ResetTimer()
			cpu0 := processCPU()
			for range b.N {
				if k.idle > 0 {
					time.Sleep(k.idle) // the idle gap being modelled, not a synchronisation
				}
				gw = append(gw, call(e.URL+"/llm/v1/chat/completions", "Bearer "+aliceToken))
				if k.idle > 0 {
					time.Sleep(k.idle)
				}
				px = append(px, call(proxy.URL+"/v1/chat/completions", "Bearer "+openAIKey))
			}
			b.StopTimer()
			// The process's CPU (client, proxy, fake upstream and the
			// gateway) per pair of calls: the same for the other three in
			// any tree, so a change in it is the gateway's.
			b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "process-cpu-µs/pair")
			p := func(d []time.Duration, q float64) time.Duration {
				slices.Sort(d)
				return d[int(float64(len(d)-1)*q)]
			}
			b.ReportMetric(float64(p(px, 0.5).Microseconds()), "proxy-p50-µs")
			b.ReportMetric(float64(p(gw, 0.5).Microseconds()), "mandate-p50-µs")
			b.ReportMetric(float64(p(px, 0.99).Microseconds()), "proxy-p99-µs")
			b.ReportMetric(float64(p(gw, 0.99).Microseconds()), "mandate-p99-µs")
		})
	}
}

// benchEnv is the endpoint the pipeline benchmarks call: the real limits
// engine with a rate limit (requests and tokens) and a budget that apply
// to every call and never refuse in the run; configure adds to it.
func benchEnv(b *testing.B, configure ...func(*pipeline.Config)) *env {
	lim := limits.New(limits.Options{})
	if err := lim.Apply(b.Context(), limits.Definitions{
		RateLimits: []limits.RateLimit{{Securable: 100, SecurableName: "system.ai.frontier", Level: limits.LevelEachUser, Requests: 1 << 40, Tokens: 1 << 50}},
		Budgets:    []limits.Budget{{Name: "b", Limit: limits.MaxMoney / 2, Level: limits.LevelUser, Principal: 1, PrincipalName: alice}},
	}); err != nil {
		b.Fatal(err)
	}
	resolver := ids{alice: 1, bob: 2, agent: 3, "system.ai.frontier": 100, "system.ai.claude": 101}
	e := newEnv(b, append([]func(*pipeline.Config){func(c *pipeline.Config) { c.Limiter = limitstage.New(lim, resolver) }}, configure...)...)
	e.fake.MaxRecorded = -1
	// Nobody reads the audit records back here: recorded without waking
	// a goroutine per call (the gateway's audit log wakes none while
	// calls keep coming).
	e.audit.mu.Lock()
	e.audit.quiet = true
	e.audit.mu.Unlock()
	return e
}

// BenchmarkPipelineStages: the chat call of BenchmarkPipeline, its
// stages' medians (Call.Timings) warm and after 15 ms of idle before each
// call: what a cold call pays stage by stage before the forward (the
// stages before it; "forward" holds the upstream's answer too). stream:
// BenchmarkPipeline's stream-ttfb call, one after the other: each comes
// after the previous stream's 1 ms gaps between events ("forward" holds
// the upstream's first event, "guard_result" the whole stream's relay).
//
//	go test -run '^$' -bench PipelineStages -benchtime 300x ./gateway/llmgw/
func BenchmarkPipelineStages(b *testing.B) {
	obs := &stageTimes{}
	e := benchEnv(b, func(c *pipeline.Config) { c.Observer = obs })
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)[:900] + " mock:out=1024"
	chat := []byte(`{"model":"frontier","max_tokens":2048,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"` + prompt + `"}]}`)
	stream := []byte(`{"model":"frontier","stream":true,"max_tokens":2048,"messages":[{"role":"user","content":"` + prompt[:900] + ` mock:out=64 mock:slow=1ms"}]}`)
	c := &http.Client{Transport: llm.NewForwarder().Client.Transport}
	call := func(body []byte) {
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/llm/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+aliceToken)
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	for _, k := range []struct {
		name string
		body []byte
		idle time.Duration
	}{{"warm", chat, 0}, {"after-idle", chat, 15 * time.Millisecond}, {"stream", stream, 0}} {
		b.Run(k.name, func(b *testing.B) {
			for range 50 {
				call(k.body)
			}
			obs.reset()
			b.ResetTimer()
			for range b.N {
				if k.idle > 0 {
					time.Sleep(k.idle) // the idle gap being modelled, not a synchronisation
				}
				call(k.body)
			}
			b.StopTimer()
			obs.mu.Lock()
			defer obs.mu.Unlock()
			var before time.Duration
			for s, d := range obs.t {
				if len(d) == 0 || pipeline.Stage(s) == pipeline.StageMeter || pipeline.Stage(s) == pipeline.StageAudit {
					continue
				}
				slices.Sort(d)
				if pipeline.Stage(s) < pipeline.StageForward {
					before += d[len(d)/2]
				}
				b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1000, pipeline.Stage(s).String()+"-p50-µs")
			}
			b.ReportMetric(float64(before.Nanoseconds())/1000, "before-forward-µs")
		})
	}
}

// stageTimes is an Observer that keeps each call's stage timings.
type stageTimes struct {
	mu sync.Mutex
	t  [pipeline.NumStages][]time.Duration
}

func (o *stageTimes) StartStage(ctx context.Context, _ *pipeline.Call, _ pipeline.Stage) (context.Context, func(*pipeline.Error)) {
	return ctx, nil
}

func (o *stageTimes) Finished(c *pipeline.Call) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s := range c.Timings {
		o.t[s] = append(o.t[s], c.Timings[s])
	}
}

func (o *stageTimes) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.t = [pipeline.NumStages][]time.Duration{}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
