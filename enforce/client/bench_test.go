package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/enforce"
	"github.com/mandatehq/mandate/enforce/api"
	"github.com/mandatehq/mandate/enforce/client"
)

// The benchmarks run the catalog (real engine over memstore), the API and
// the client in one process on loopback: on a 2-core machine server and
// client share the cores.

// benchClient returns a client with its cache disabled, talking to the API
// over the real engine or over the fake decider (the API's own cost).
func benchClient(b *testing.B, decider string) *client.Client {
	b.Helper()
	if decider == "fake" {
		cs := startCatalog(b, nil, "", api.Options{})
		return newClient(b, cs.srv.URL, client.Config{CacheSize: -1})
	}
	r := newEngineRig(b, 1, client.Config{CacheSize: -1})
	if err := r.clients[0].WaitRevision(b.Context(), r.grant(b)); err != nil {
		b.Fatal(err)
	}
	return r.clients[0]
}

// BenchmarkAPIThroughput: decisions per second over the API with the
// client's cache disabled, from 16 goroutines over keep-alive connections;
// "single" sends one check per request, "batch100" 100. "engine" answers
// with the real engine, "fake" with apitest's decider.
//
//	go test -run '^$' -bench BenchmarkAPIThroughput -benchtime 3s ./enforce/client
func BenchmarkAPIThroughput(b *testing.B) {
	for _, bc := range []struct {
		decider string
		batch   int
	}{{"engine", 1}, {"engine", 100}, {"fake", 1}, {"fake", 100}} {
		batch := bc.batch
		name := bc.decider + "/single"
		if batch > 1 {
			name = fmt.Sprintf("%s/batch%d", bc.decider, batch)
		}
		b.Run(name, func(b *testing.B) {
			c := benchClient(b, bc.decider)
			reqs := slices.Repeat([]enforce.Request{reqAlice}, batch)
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if batch == 1 {
						if d, err := c.Authorize(ctx, reqAlice); err != nil || !d.Allowed {
							b.Errorf("%+v, %v", d, err)
							return
						}
						continue
					}
					ds, err := c.AuthorizeBatch(ctx, reqs)
					if err != nil || !ds[0].Allowed {
						b.Errorf("%v", err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "decisions/s")
		})
	}
}

// BenchmarkAPIPaced: single-check requests at a fixed 5,000/s (one every
// 200 µs), cache disabled; reports p50/p99/max latency. It is open loop: a
// request's latency counts from when it was due, so a late send or a slow
// answer counts against the system and no answer delays the next send.
// p99-call-µs counts from the Authorize call instead (without the wake-up
// of the goroutine that makes it).
// Go's timers wake on a 1 ms grid on this machine (time.Sleep(200µs) takes
// 1.1 ms), so on Linux the pacer reads a timerfd through the netpoller
// (see pace): it sends within tens of µs of the due time.
//
//	go test -run '^$' -bench BenchmarkAPIPaced -benchtime 10000x ./enforce/client
func BenchmarkAPIPaced(b *testing.B) {
	for _, decider := range []string{"engine", "fake"} {
		b.Run(decider, func(b *testing.B) { benchPaced(b, decider) })
	}
}

func benchPaced(b *testing.B, decider string) {
	const rate = 5000
	c := benchClient(b, decider)
	ctx := context.Background()
	for range 1000 { // warm connections
		if _, err := c.Authorize(ctx, reqAlice); err != nil {
			b.Fatal(err)
		}
	}
	due := make(chan time.Time, 1024)
	lat := make([]time.Duration, 0, b.N) // from the due time
	svc := make([]time.Duration, 0, b.N) // from the call
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			var mine, mineSvc []time.Duration
			for t := range due {
				start := time.Now()
				if d, err := c.Authorize(ctx, reqAlice); err != nil || !d.Allowed {
					b.Errorf("%+v, %v", d, err)
				}
				mine = append(mine, time.Since(t))
				mineSvc = append(mineSvc, time.Since(start))
			}
			mu.Lock()
			lat = append(lat, mine...)
			svc = append(svc, mineSvc...)
			mu.Unlock()
		})
	}
	b.ResetTimer()
	start := time.Now()
	pace(b.N, rate, func(t time.Time) { due <- t })
	close(due)
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	slices.Sort(svc)
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) }
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	b.ReportMetric(us(percentile(lat, 0.50)), "p50-µs")
	b.ReportMetric(us(percentile(lat, 0.99)), "p99-µs")
	b.ReportMetric(us(lat[len(lat)-1]), "max-µs")
	b.ReportMetric(us(percentile(svc, 0.99)), "p99-call-µs")
}

// BenchmarkRevocation: one revoke per iteration, timed from just before
// the revoke until all three clients deny; reports p50/p99/max in ms.
//
//	go test -run '^$' -bench BenchmarkRevocation -benchtime 100x ./enforce/client
func BenchmarkRevocation(b *testing.B) {
	r := newEngineRig(b, 3, client.Config{})
	took := make([]time.Duration, 0, b.N)
	for b.Loop() {
		b.StopTimer()
		r.warm(b)
		b.StartTimer()
		took = append(took, r.revokeAndMeasure(b, 2*time.Second))
	}
	slices.Sort(took)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(took, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(took, 0.99)), "p99-ms")
	b.ReportMetric(ms(took[len(took)-1]), "max-ms")
}
