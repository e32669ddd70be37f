package enforce

import (
	"runtime"
	"testing"
)

// BenchmarkAllowedLoop: Snapshot.Allowed over 4,096 allowed questions on
// the catalog, round robin, with the memo (memo) and without it
// (every question computed: nomemo), subject alone and on behalf of an
// agent. It reports the thread's CPU time per call (cpu-ns/op) besides
// the wall time, which on a shared machine counts other jobs.
func BenchmarkAllowedLoop(b *testing.B) {
	svc, built := largeCatalog(b)
	e := newEngine(b, svc, Options{})
	for _, obo := range []bool{false, true} {
		for _, memo := range []bool{true, false} {
			snap := e.Snapshot()
			qs := allowedQuestions(b, snap, built, 4096, obo)
			if !memo {
				cp := *snap
				cp.memo = nil
				snap = &cp
			}
			name := map[bool]string{false: "subject", true: "on-behalf-of"}[obo] + map[bool]string{true: "/memo", false: "/nomemo"}[memo]
			b.Run(name, func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				c0 := threadCPU()
				for i := 0; i < b.N; i++ {
					if !snap.Allowed(qs[i&4095]) {
						b.Fatal("denied")
					}
				}
				if c0 > 0 {
					b.ReportMetric(float64(threadCPU()-c0)/float64(b.N), "cpu-ns/op")
				}
			})
		}
	}
}
