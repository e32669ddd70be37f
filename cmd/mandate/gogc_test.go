package main

import (
	"math"
	"runtime/debug"
	"testing"
)

// TestSetGoGC: the collector's GOGC and soft limit, unless the GOGC and
// GOMEMLIMIT variables are set.
func TestSetGoGC(t *testing.T) {
	const ceiling = 1 << 30
	prevPercent, prevLimit := debug.SetGCPercent(100), debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(prevPercent)
		debug.SetMemoryLimit(prevLimit)
	})
	tests := []struct {
		name             string
		gogc, gomemlimit string
		percent          int
		limit            int64
	}{
		{name: "neither", percent: goGCPercent, limit: ceiling / 4},
		{name: "GOMEMLIMIT", gomemlimit: "300MiB", percent: goGCPercent, limit: math.MaxInt64},
		{name: "GOGC", gogc: "200", percent: 100, limit: ceiling / 4},
		{name: "both", gogc: "200", gomemlimit: "300MiB", percent: 100, limit: math.MaxInt64},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The runtime read the variables at start; setGoGC only looks at
			// whether they are set, and leaves those settings alone.
			t.Setenv("GOGC", tc.gogc)
			t.Setenv("GOMEMLIMIT", tc.gomemlimit)
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			l := limitsConfig{maxMemory: ceiling}
			l.setGoGC()
			if got := debug.SetGCPercent(100); got != tc.percent {
				t.Errorf("GC percent %d, want %d", got, tc.percent)
			}
			if got := debug.SetMemoryLimit(-1); got != tc.limit {
				t.Errorf("memory limit %d, want %d", got, tc.limit)
			}
		})
	}
}
