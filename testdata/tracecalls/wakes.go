package main

import (
	"fmt"
	"sort"
	"strings"

	"golang.org/x/exp/trace"
)

// wakes counts, per call, the hand-offs between goroutines the call
// causes and the procs (Ps, each an OS thread woken from its futex when
// it was idle) that start to run them: every goroutine unblock (waiting →
// runnable: who unblocked whom, and where), every goroutine created and
// every proc that went from idle to running, inside the call's window.
//
// A call's window is a user region on the benchmark's client goroutine
// (the in-process BenchmarkPipeline marks each call "mandate" or
// "proxy", and calls one at a time, so everything in the window is that
// call's) or, in a server's own trace, a connection goroutine from its
// wake-up for a request to its next wait for one ("mandate": the handler
// was llmgw's, "proxy": httputil's ReverseProxy), counted only when no
// other call overlaps it.
func wakes(path string) {
	type gw struct {
		kind    string
		reason  string // why it waits
		site    string
		inCall  bool
		label   string
		start   trace.Time
		counted *window
	}
	gs := map[trace.GoID]*gw{}
	kindOf := func(id trace.GoID, s trace.Stack) *gw {
		g := gs[id]
		if g == nil {
			g = &gw{}
			gs[id] = g
		}
		if g.kind == "" && s != trace.NoStack {
			g.kind = short(root(s))
		}
		return g
	}
	var regionWins bool
	var open []*window // windows in progress
	var done []*window
	// procNext: a proc that just started; the first goroutine it runs
	// names the wake.
	procNext := map[trace.ProcID]*window{}
	add := func(key string) {
		for _, w := range open {
			w.counts[key]++
		}
	}
	readEvents(path, func(ev trace.Event) {
		t := ev.Time()
		switch ev.Kind() {
		case trace.EventRegionBegin:
			if name := ev.Region().Type; name == "mandate" || name == "proxy" {
				regionWins = true
				w := &window{label: name, from: t, g: ev.Goroutine(), counts: map[string]int{}}
				open = append(open, w)
			}
		case trace.EventRegionEnd:
			if name := ev.Region().Type; name == "mandate" || name == "proxy" {
				for i, w := range open {
					if w.g == ev.Goroutine() && w.label == name {
						w.to = t
						done = append(done, w)
						open = append(open[:i], open[i+1:]...)
						break
					}
				}
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			switch st.Resource.Kind {
			case trace.ResourceProc:
				from, to := st.Proc()
				if from == trace.ProcIdle && to == trace.ProcRunning {
					add("proc start (idle → running)")
					if len(open) > 0 {
						procNext[st.Resource.Proc()] = open[0]
					}
				}
			case trace.ResourceGoroutine:
				from, to := st.Goroutine()
				id := st.Resource.Goroutine()
				g := kindOf(id, st.Stack)
				if from == trace.GoNotExist && st.Stack != trace.NoStack {
					g.kind = short(root(st.Stack))
				}
				switch {
				case from == trace.GoNotExist && to == trace.GoRunnable:
					by := "?"
					if c := ev.Goroutine(); c != trace.NoGoroutine {
						by = kindOf(c, ev.Stack()).kind
					}
					add("go create " + g.kind + " ← " + by)
				case from == trace.GoWaiting && to == trace.GoRunnable:
					by := "scheduler (netpoll, timer)"
					if c := ev.Goroutine(); c != trace.NoGoroutine {
						by = kindOf(c, ev.Stack()).kind + " @ " + site(ev.Stack())
					}
					add(fmt.Sprintf("unblock %s [%s @ %s] ← %s", g.kind, g.reason, g.site, by))
				case to == trace.GoRunning:
					if w := procNext[ev.Proc()]; w != nil {
						delete(procNext, ev.Proc())
						for _, o := range open {
							if o == w {
								w.counts["  proc start → runs "+g.kind]++
							}
						}
					}
				case to == trace.GoSyscall:
					add("syscall")
					add("  syscall by " + g.kind + " @ " + site(st.Stack))
				}
				if !regionWins && strings.HasPrefix(g.kind, "http.(*conn).serve") {
					// Server-side windows: a request's wake-up to the
					// next wait for one.
					if to == trace.GoWaiting && st.Reason == "network" && g.inCall && !has(st.Stack, "llmgw") && !has(st.Stack, "ReverseProxy") {
						for i, w := range open {
							if w == g.counted {
								w.to = t
								if g.label != "" {
									w.label = g.label
									done = append(done, w)
								}
								open = append(open[:i], open[i+1:]...)
								break
							}
						}
						g.inCall, g.counted = false, nil
					} else if from == trace.GoWaiting && to == trace.GoRunnable && g.reason == "network" && !g.inCall {
						g.inCall, g.label, g.start = true, "", t
						g.counted = &window{from: t, g: id, counts: map[string]int{}}
						for _, o := range open {
							o.overlapped = true
							g.counted.overlapped = true
						}
						open = append(open, g.counted)
						g.counted.counts[fmt.Sprintf("unblock %s [%s @ %s] ← %s", g.kind, g.reason, g.site, "scheduler (netpoll, timer)")]++
					}
					if g.inCall && st.Stack != trace.NoStack {
						if has(st.Stack, "llmgw.(*Handler).ServeHTTP") {
							g.label = "mandate"
						} else if has(st.Stack, "ReverseProxy).ServeHTTP") {
							g.label = "proxy"
						}
					}
				}
				if to == trace.GoWaiting {
					g.reason, g.site = st.Reason, site(st.Stack)
				}
			}
		}
	})
	by := map[string][]*window{}
	for _, w := range done {
		if !w.overlapped {
			by[w.label] = append(by[w.label], w)
		}
	}
	labels := []string{"mandate", "proxy"}
	fmt.Printf("hand-offs per call (mean over calls no other call overlapped): mandate %d calls, proxy %d calls\n",
		len(by["mandate"]), len(by["proxy"]))
	mean := map[string]map[string]float64{}
	keys := map[string]bool{}
	for _, l := range labels {
		mean[l] = map[string]float64{}
		for _, w := range by[l] {
			for k, n := range w.counts {
				mean[l][k] += float64(n) / float64(len(by[l]))
				keys[k] = true
			}
		}
	}
	ks := make([]string, 0, len(keys))
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	total := func(l, prefix string) float64 {
		var s float64
		for k, v := range mean[l] {
			if strings.HasPrefix(k, prefix) {
				s += v
			}
		}
		return s
	}
	fmt.Printf("  %-150s %8s %8s\n", "", "mandate", "proxy")
	for _, p := range []string{"unblock", "go create", "proc start", "syscall"} {
		fmt.Printf("  %-150s %8.2f %8.2f\n", p+" (all)", total("mandate", p), total("proxy", p))
	}
	fmt.Println()
	for _, k := range ks {
		if mean["mandate"][k] < 0.05 && mean["proxy"][k] < 0.05 {
			continue
		}
		fmt.Printf("  %-150s %8.2f %8.2f\n", trunc(k, 400), mean["mandate"][k], mean["proxy"][k])
	}
}

// window is one call's interval and what happened in the process during it.
type window struct {
	label      string
	from, to   trace.Time
	g          trace.GoID
	overlapped bool
	counts     map[string]int
}

// short drops a function name's package path.
func short(fn string) string {
	if i := strings.LastIndex(fn, "/"); i >= 0 {
		return fn[i+1:]
	}
	return fn
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
