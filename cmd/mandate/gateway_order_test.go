package main

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestBenchOrderBalances checks that over an even number of rounds the
// gateway benchmarks' order (benchOrder) gives every path the same mean
// place and the same load under a linear drift, and every pair of paths
// each order as often (each path before the other, and right before it,
// as often as after).
func TestBenchOrderBalances(t *testing.T) {
	for _, tc := range []struct{ paths, rounds int }{
		{2, 2}, {3, 2}, {5, 4}, {7, 6}, {8, 6}, {9, 10},
	} {
		t.Run(fmt.Sprintf("%d-paths-%d-rounds", tc.paths, tc.rounds), func(t *testing.T) {
			placeSum := make([]int, tc.paths) // sum of places: the mean place, times rounds
			timeSum := make([]int, tc.paths)  // sum of (round × paths + place): the weight of a linear drift
			before := map[[2]int]int{}        // rounds in which i ran before j
			rightBefore := map[[2]int]int{}   // rounds in which i ran right before j
			for r := range tc.rounds {
				order := benchOrder(tc.paths, r)
				seen := make([]bool, tc.paths)
				for place, i := range order {
					if i < 0 || i >= tc.paths || seen[i] {
						t.Fatalf("round %d: order %v is not a permutation of %d paths", r, order, tc.paths)
					}
					seen[i] = true
					placeSum[i] += place
					timeSum[i] += r*tc.paths + place
					for _, j := range order[place+1:] {
						before[[2]int{i, j}]++
					}
					if place+1 < len(order) {
						rightBefore[[2]int{i, order[place+1]}]++
					}
				}
			}
			for i := range tc.paths {
				if placeSum[i] != placeSum[0] {
					t.Errorf("path %d: places sum to %d, path 0's to %d", i, placeSum[i], placeSum[0])
				}
				if timeSum[i] != timeSum[0] {
					t.Errorf("path %d: a linear drift weighs %d on it, %d on path 0", i, timeSum[i], timeSum[0])
				}
				for j := range tc.paths {
					if i == j {
						continue
					}
					if before[[2]int{i, j}] != tc.rounds/2 {
						t.Errorf("path %d ran before path %d in %d of %d rounds", i, j, before[[2]int{i, j}], tc.rounds)
					}
					if a, b := rightBefore[[2]int{i, j}], rightBefore[[2]int{j, i}]; a != b {
						t.Errorf("path %d ran right before path %d in %d rounds, right after it in %d", i, j, a, b)
					}
				}
			}
		})
	}
}

// TestBenchNameMatches checks that an interleaved phase selects the paths
// the testing package runs for a -test.bench (or -test.skip) pattern.
func TestBenchNameMatches(t *testing.T) {
	const mandate = "BenchmarkLLMGateway/paced-1000/s/mandate"
	for _, tc := range []struct {
		pattern, name string
		ok, partial   bool
	}{
		{`BenchmarkLLMGateway`, mandate, true, false},
		{`BenchmarkGateway$`, mandate, false, false},
		{`BenchmarkLLMGateway/^paced-1000/s/(proxy-process|mandate)$`, mandate, true, false},
		{`BenchmarkLLMGateway/^paced-1000/s/(proxy-process|mandate)$`, "BenchmarkLLMGateway/paced-1000/s/mandate-audit-sync-off", false, false},
		{`BenchmarkLLMGateway/^paced-1000/s/(proxy-process|mandate)$`, "BenchmarkLLMGateway/stream-ttfb-paced-1000/s/mandate", false, false},
		{`BenchmarkLLMGateway/paced`, "BenchmarkLLMGateway/stream-ttfb-paced-1000/s/mandate", true, false},
		{`BenchmarkLLMGateway/paced/s/[a-z]+-process`, "BenchmarkLLMGateway/paced-1000/s/proxy-process", true, false},
		{`BenchmarkLLMGateway/paced/s/(x|y)/z`, "BenchmarkLLMGateway/paced-1000/s/y", true, true},
		{`BenchmarkGateway/throughput|BenchmarkLLMGateway/paced-1000/s/mandate$`, mandate, true, false},
		{`BenchmarkGateway/throughput|BenchmarkLLMGateway/paced-1000/s/mandate$`, "BenchmarkGateway/throughput-32conns/node", true, false},
		{`BenchmarkGateway/throughput|BenchmarkLLMGateway/paced-1000/s/mandate$`, "BenchmarkGateway/paced-1000/s/node", false, false},
		{`Bench[/]x`, "Bench/x", false, false},
	} {
		t.Run(tc.pattern+"~"+tc.name, func(t *testing.T) {
			ok, partial := benchNameMatches(tc.pattern, tc.name)
			if ok != tc.ok || partial != tc.partial {
				t.Errorf("benchNameMatches(%q, %q) = %v, %v; want %v, %v", tc.pattern, tc.name, ok, partial, tc.ok, tc.partial)
			}
		})
	}
}

// TestBenchWarmPaced checks that BENCH_WARM_PACED precedes a measured
// segment with its duration's worth of calls at the rate, made by the
// same measure, and that unset or 0 leaves the measure alone.
func TestBenchWarmPaced(t *testing.T) {
	for _, tc := range []struct {
		env  string
		rate int
		want []int // the n of each call to the measure, in order
	}{
		{"", 1000, []int{50}},
		{"0s", 1000, []int{50}},
		{"300ms", 1000, []int{300, 50}},
		{"2s", 250, []int{500, 50}},
	} {
		t.Run(tc.env, func(t *testing.T) {
			t.Setenv("BENCH_WARM_PACED", tc.env)
			var got []int
			measure := func(_ *testing.B, _ benchPath, n int, _ func(int64) (time.Duration, error)) benchSegment {
				got = append(got, n)
				return benchSegment{calls: n}
			}
			s := benchWarmPaced(t, tc.rate, measure)(nil, benchPath{}, 50, nil)
			if !slices.Equal(got, tc.want) || s.calls != 50 {
				t.Errorf("measure called with %v, segment of %d calls; want %v and 50", got, s.calls, tc.want)
			}
		})
	}
}
