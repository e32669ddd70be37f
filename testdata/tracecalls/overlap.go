package main

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// span is an interval of the trace.
type span struct{ from, to trace.Time }

// activities are what a slow call may overlap with: the audit storage's
// goroutines while running or in a system call (cgo calls into DuckDB
// count as system calls: the apply's worker threads are DuckDB's and not
// in the trace, they run while the applier is in its cgo call), and the
// garbage collector's phases.
var activities = []struct{ name, fn string }{
	{"apply (auditwal applier: running or in cgo)", "auditwal.(*Log).applier"},
	{"flush (auditwal apply from a reader)", "auditwal.(*Log).Flush"},
	{"audit writer (group commit: write + fsync)", "catalog.(*AuditLog).writer"},
	{"audit syncer (--audit-sync off fsync loop)", "auditwal.(*Log).syncer"},
}

// overlap reads the trace again and says, for the calls above p95 of wall
// time and for those at or below p50, how often and how long each
// activity ran during the call.
func overlap(path string) {
	type gstate struct {
		kind     string
		act      int // index in activities, -1 none
		state    trace.GoState
		since    trace.Time
		inCall   bool
		handler  bool
		start    trace.Time
		waitSite string
	}
	gs := map[trace.GoID]*gstate{}
	acts := make([][]span, len(activities)+1) // last: GC
	gcName := "GC (mark phase or stop-the-world)"
	gcOpen := map[string]trace.Time{}
	var calls []span
	var ackWait []time.Duration
	readEvents(path, func(ev trace.Event) {
		t := ev.Time()
		switch ev.Kind() {
		case trace.EventRangeBegin, trace.EventRangeActive:
			rg := ev.Range()
			if strings.HasPrefix(rg.Name, "GC") || strings.HasPrefix(rg.Name, "stop-the-world") {
				gcOpen[rg.Name+rg.Scope.String()] = t
			}
		case trace.EventRangeEnd:
			rg := ev.Range()
			if t0, ok := gcOpen[rg.Name+rg.Scope.String()]; ok {
				acts[len(activities)] = append(acts[len(activities)], span{t0, t})
				delete(gcOpen, rg.Name+rg.Scope.String())
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				return
			}
			from, to := st.Goroutine()
			g := gs[st.Resource.Goroutine()]
			if g == nil {
				g = &gstate{act: -1, state: from, since: t}
				gs[st.Resource.Goroutine()] = g
			}
			if st.Stack != trace.NoStack {
				if g.kind == "" {
					g.kind = root(st.Stack)
				}
				if g.act < 0 {
					for i, a := range activities {
						if has(st.Stack, a.fn) {
							g.act = i
						}
					}
				}
				if has(st.Stack, "llmgw.(*Handler).ServeHTTP") {
					g.handler = true
				}
			}
			if g.act >= 0 && (g.state == trace.GoRunning || g.state == trace.GoSyscall) && t > g.since {
				acts[g.act] = append(acts[g.act], span{g.since, t})
			}
			if g.inCall && g.state == trace.GoWaiting && g.waitSite == "waitAck" {
				ackWait[len(ackWait)-1] += t.Sub(g.since)
			}
			if strings.HasPrefix(g.kind, "net/http.(*conn).serve") {
				if to == trace.GoWaiting && st.Reason == "network" && !has(st.Stack, "llmgw") {
					if g.inCall && g.handler {
						calls = append(calls, span{g.start, t})
					} else if g.inCall {
						ackWait = ackWait[:len(ackWait)-1]
					}
					g.inCall = false
				} else if from == trace.GoWaiting && !g.inCall && g.state == trace.GoWaiting {
					g.inCall, g.handler, g.start = true, false, t
					ackWait = append(ackWait, 0)
				}
			}
			g.state, g.since = to, t
			if to == trace.GoWaiting && st.Stack != trace.NoStack {
				g.waitSite = ""
				for fr := range st.Stack.Frames() {
					if strings.Contains(fr.Func, "waitAck") {
						g.waitSite = "waitAck"
					}
				}
			}
		}
	})
	if len(calls) < 20 {
		return
	}
	if len(ackWait) > len(calls) {
		ackWait = ackWait[:len(calls)]
	}
	idx := make([]int, len(calls))
	for i := range idx {
		idx[i] = i
	}
	wall := func(i int) time.Duration { return calls[i].to.Sub(calls[i].from) }
	sort.Slice(idx, func(a, b int) bool { return wall(idx[a]) < wall(idx[b]) })
	p50, p95 := wall(idx[len(idx)/2]), wall(idx[len(idx)*95/100])
	var slow, fast []int
	for _, i := range idx {
		if wall(i) > p95 {
			slow = append(slow, i)
		} else if wall(i) <= p50 {
			fast = append(fast, i)
		}
	}
	names := make([]string, 0, len(acts))
	for _, a := range activities {
		names = append(names, a.name)
	}
	names = append(names, gcName)
	for i := range acts {
		sort.Slice(acts[i], func(a, b int) bool { return acts[i][a].from < acts[i][b].from })
	}
	ov := func(set []int, a int) (share float64, mean time.Duration) {
		var n int
		var tot time.Duration
		for _, c := range set {
			var d time.Duration
			for _, s := range acts[a] {
				if s.from >= calls[c].to {
					break
				}
				lo, hi := max(s.from, calls[c].from), min(s.to, calls[c].to)
				if hi > lo {
					d += hi.Sub(lo)
				}
			}
			if d > 0 {
				n++
				tot += d
			}
		}
		return float64(n) / float64(len(set)), tot / time.Duration(len(set))
	}
	fmt.Printf("\noverlap: %d calls, p50 %v, p95 %v; %d calls above p95 vs %d at or below p50\n", len(calls), p50, p95, len(slow), len(fast))
	fmt.Printf("  %-48s %-32s %s\n", "activity during the call", "above p95: calls with it, mean", "at or below p50")
	for a := range acts {
		s1, m1 := ov(slow, a)
		s2, m2 := ov(fast, a)
		fmt.Printf("  %-48s %5.1f%%  %-22v %5.1f%%  %v\n", names[a], 100*s1, m1.Round(time.Microsecond), 100*s2, m2.Round(time.Microsecond))
	}
	if len(ackWait) == len(calls) {
		mean := func(set []int) time.Duration {
			var tot time.Duration
			for _, c := range set {
				tot += ackWait[c]
			}
			return tot / time.Duration(len(set))
		}
		fmt.Printf("  %-48s %-32v %v\n", "waiting for the request record (waitAck), mean", mean(slow).Round(time.Microsecond), mean(fast).Round(time.Microsecond))
	}
	// The longest single activity spans (bursts).
	for a := range acts {
		var ds []time.Duration
		var tot time.Duration
		for _, s := range acts[a] {
			ds = append(ds, s.to.Sub(s.from))
			tot += s.to.Sub(s.from)
		}
		if len(ds) == 0 {
			continue
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] > ds[j] })
		fmt.Printf("  %-48s spans %6d, total %-12v longest %v\n", names[a], len(ds), tot.Round(time.Millisecond), ds[:min(5, len(ds))])
	}
}
