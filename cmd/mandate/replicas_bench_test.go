package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
//   - grants/1-replica: mandate loadgen grants, 8 clients, against one
//     replica (the others idle, following);
//   - grants/3-replicas: the same against each of the 3 replicas at once
//     (24 clients), the total;
//   - revoke: a REVOKE on one replica, then the time until each other
//     replica's authorization API denies (polled continuously), measured
//     from the moment the REVOKE was sent, over 200 rounds.
//
// Run with -benchtime 1x: each sub-benchmark runs once for its duration.
func BenchmarkReplicas(b *testing.B) {
	c := startCluster(b, 3, durablePG)
	grants := func(name string, targets []*server) {
		b.Run(name, func(b *testing.B) {
			var total, conflicts float64
			for range b.N {
				total, conflicts = 0, 0
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
					total += metric(b, outs[i].String(), `statements/s\s+([0-9.]+)`)
					conflicts += metric(b, outs[i].String(), `40001 retried\s+([0-9]+)`)
					b.Logf("replica %d:\n%s", i, outs[i].String())
				}
			}
			b.ReportMetric(total, "stmts/s")
			b.ReportMetric(conflicts, "40001-retried")
		})
	}
	grants("grants/1-replica", c.replicas[:1])
	grants("grants/3-replicas", c.replicas)
	b.Run("revoke", func(b *testing.B) {
		admins := make([]*pgx.Conn, len(c.replicas))
		for i, r := range c.replicas {
			admins[i] = r.admin(b)
		}
		mustExec(b, admins[0], `CREATE USER "rev@example.com"`, `CREATE CONNECTION rev_tools TYPE MCP OPTIONS (url 'https://tools.example/mcp')`)
		var lat []time.Duration
		for range b.N {
			lat = lat[:0]
			for round := range 200 {
				from := round % len(c.replicas)
				mustExec(b, admins[from], `GRANT USE_CONNECTION ON CONNECTION rev_tools TO "rev@example.com"`)
				for _, r := range c.replicas {
					waitFor(b, 30*time.Second, "the GRANT", func() bool { ok, _ := authorized(b, r, "rev@example.com", "rev_tools"); return ok })
				}
				var wg sync.WaitGroup
				sent := make(chan time.Time, 1)
				got := make([]time.Duration, len(c.replicas))
				for i, r := range c.replicas {
					if i == from {
						continue
					}
					wg.Go(func() {
						t0 := <-sent
						sent <- t0
						deadline := time.Now().Add(30 * time.Second)
						for {
							if ok, _ := authorized(b, r, "rev@example.com", "rev_tools"); !ok {
								got[i] = time.Since(t0)
								return
							}
							if time.Now().After(deadline) {
								b.Errorf("replica %d still allows 30 s after the REVOKE", i)
								return
							}
						}
					})
				}
				sent <- time.Now()
				mustExec(b, admins[from], `REVOKE USE_CONNECTION ON CONNECTION rev_tools FROM "rev@example.com"`)
				wg.Wait()
				for i, d := range got {
					if i != from {
						lat = append(lat, d)
					}
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
	})
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
