package llm_test

import (
	"bufio"
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/gateway/llm"
	"github.com/mandatehq/mandate/gateway/llm/llmtest"
)

// benchSetup starts the fake upstream, a bare httputil.ReverseProxy to it
// and a gateway built on package llm (read, parse, rewrite, forward,
// meter; no governance stages), and returns their base URLs.
func benchSetup(b *testing.B) (proxyURL, gwURL string) {
	fake := llmtest.New()
	fake.MaxRecorded = -1
	up := httptest.NewServer(fake)
	b.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = llm.NewForwarder().Client.Transport
	rp.FlushInterval = -1 // flush streams as they come, like the gateway
	rp.ErrorLog = log.New(io.Discard, "", 0)
	proxy := httptest.NewServer(rp)
	b.Cleanup(proxy.Close)

	fwd := llm.NewForwarder()
	route := llm.Route{Destinations: []llm.Destination{{Service: "openai", Provider: llm.ProviderOpenAI, BaseURL: up.URL + "/v1", Model: "gpt-4.1", APIKey: "sk-x", Weight: 100}}}
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := llm.ReadBody(r, llm.Limits{})
		if err != nil {
			llm.WriteError(w, llm.FormatOpenAI, err)
			return
		}
		req, err := llm.Parse(llm.ChatCompletions, body, llm.Limits{})
		if err != nil {
			llm.WriteError(w, llm.FormatOpenAI, err)
			return
		}
		res := fwd.Forward(r.Context(), w, &llm.Call{Request: req, Route: route, UserID: "u_bench", Header: r.Header})
		if res.Usage.OutputTokens == 0 {
			panic("no usage metered")
		}
	}))
	b.Cleanup(gw.Close)
	return proxy.URL, gw.URL
}

// benchBody is a 1 KB chat request asking for a 1 KB answer; streamed, a
// 64-byte answer in events 1 ms apart (as a model's tokens come), so that
// the time to the first event is not crowded by the fake producing the
// rest at once.
func benchBody(stream bool) []byte {
	s := ""
	directive := " mock:out=1024"
	if stream {
		s = `"stream":true,`
		directive = " mock:out=64 mock:slow=1ms"
	}
	prompt := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 20)[:900] + directive
	return []byte(`{"model":"frontier",` + s + `"max_tokens":2048,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"` + prompt + `"}]}`)
}

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)]
}

// post sends one request and returns the time to the end of the body, or
// (ttfb) to the first body byte.
func post(b *testing.B, c *http.Client, u string, body []byte, ttfb bool) time.Duration {
	start := time.Now()
	req, _ := http.NewRequest(http.MethodPost, u+"/v1/chat/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer sk-x")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var d time.Duration
	if ttfb {
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadByte(); err != nil {
			b.Fatal(err)
		}
		d = time.Since(start)
		_, _ = io.Copy(io.Discard, br)
	} else {
		n, _ := io.Copy(io.Discard, resp.Body)
		d = time.Since(start)
		if n < 512 {
			b.Fatalf("short answer: %d bytes", n)
		}
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return d
}

// BenchmarkForwardVsReverseProxy: a non-streamed chat completion, 1 KB in
// and 1 KB out, OpenAI format to an OpenAI destination, through the
// gateway and through a bare ReverseProxy, alternating request by request
// so that both see the same machine. Reports each one's p50/p99 and the
// latency the gateway adds.
func BenchmarkForwardVsReverseProxy(b *testing.B) {
	benchAlternating(b, false)
}

// BenchmarkStreamTTFTVsReverseProxy: the same with stream=true, measuring
// the time to the first byte of the body (the first event).
func BenchmarkStreamTTFTVsReverseProxy(b *testing.B) {
	benchAlternating(b, true)
}

func benchAlternating(b *testing.B, stream bool) {
	proxyURL, gwURL := benchSetup(b)
	body := benchBody(stream)
	c := &http.Client{Transport: llm.NewForwarder().Client.Transport}
	for range 50 { // warm the connection pools
		post(b, c, proxyURL, body, stream)
		post(b, c, gwURL, body, stream)
	}
	var px, gw []time.Duration
	b.ResetTimer()
	for range b.N {
		px = append(px, post(b, c, proxyURL, body, stream))
		gw = append(gw, post(b, c, gwURL, body, stream))
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(us(percentile(px, 0.5)), "proxy-p50-µs")
	b.ReportMetric(us(percentile(px, 0.99)), "proxy-p99-µs")
	b.ReportMetric(us(percentile(gw, 0.5)), "gateway-p50-µs")
	b.ReportMetric(us(percentile(gw, 0.99)), "gateway-p99-µs")
	b.ReportMetric(us(percentile(gw, 0.5)-percentile(px, 0.5)), "added-p50-µs")
	b.ReportMetric(us(percentile(gw, 0.99)-percentile(px, 0.99)), "added-p99-µs")
}

// BenchmarkThroughput: the same non-streamed call from parallel clients;
// ns/op is the inverse throughput of each path.
func BenchmarkThroughput(b *testing.B) {
	proxyURL, gwURL := benchSetup(b)
	body := benchBody(false)
	for _, tc := range []struct{ name, url string }{{"proxy", proxyURL}, {"gateway", gwURL}} {
		b.Run(tc.name, func(b *testing.B) {
			c := &http.Client{Transport: llm.NewForwarder().Client.Transport}
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					post(b, c, tc.url, body, false)
				}
			})
		})
	}
}

// BenchmarkParseRewrite is the gateway's own CPU work on the fast path,
// without the network: parse and validate a 1 KB body and rewrite it.
func BenchmarkParseRewrite(b *testing.B) {
	body := benchBody(true)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for range b.N {
		req, err := llm.Parse(llm.ChatCompletions, body, llm.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		_ = req
	}
}
