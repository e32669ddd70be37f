// Command tracecalls reads a Go execution trace of a gateway process (the
// server's /debug/pprof/trace, MANDATE_PPROF_ADDR) and says where the wall
// time of its LLM calls went: for each call, the time its handler
// goroutine (net/http's connection goroutine running
// llmgw.(*Handler).ServeHTTP) spent running, runnable (waiting for a P),
// in system calls, waiting for the upstream (the HTTP transport) and
// waiting on anything else, from reading the request to waiting for the
// next one; also the garbage collector's work and, per goroutine kind, the
// running time and wake-ups.
//
//	go run . trace.out
//	go run . -wakes trace.out   # the hand-offs between goroutines per call (wakes.go)
//
// A module of its own (golang.org/x/exp/trace) so that Mandate's go.mod
// stays lean; BENCHMARKS.md ("Where a paced call's wall time goes") has
// what it printed.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

// gor is what is known of one goroutine.
type gor struct {
	kind   string // the function it started in ("?": running before the trace)
	state  trace.GoState
	since  trace.Time
	site   string // where it waits (its first frames outside the runtime)
	reason string
	// the call in progress on a connection goroutine
	inCall, handler bool
	callStart       trace.Time
	call            parts
	// the call up to its first write to the client (the first byte):
	// wrote once it happened
	wrote     bool
	firstByte parts
	firstWall time.Duration
	// upFrom and upTo bound the waits for the upstream before the first
	// write: the forward's start and the answer's (or first event's)
	// arrival at the handler
	upFrom, upTo trace.Time
	phases       [3]time.Duration // to the forward, the upstream, from the upstream to the first write
}

// parts splits a call's wall time.
type parts struct {
	running, runnable, syscall, upstream, other time.Duration
	waits                                       map[string]time.Duration
}

type kindStats struct {
	running, runnable, syscall time.Duration
	wakes                      int
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-wakes" {
		wakes(os.Args[2])
		return
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tracecalls TRACE | tracecalls -wakes TRACE")
		os.Exit(2)
	}
	gs := map[trace.GoID]*gor{}
	kinds := map[string]*kindStats{}
	ranges := map[string]trace.Time{}
	rangeTotal, rangeCount := map[string]time.Duration{}, map[string]int{}
	waitTotal := map[string]time.Duration{}
	var calls, firsts []parts
	var walls, firstWalls []time.Duration
	var phases [][3]time.Duration
	var first, last trace.Time
	readEvents(os.Args[1], func(ev trace.Event) {
		t := ev.Time()
		if first == 0 {
			first = t
		}
		last = t
		switch ev.Kind() {
		case trace.EventRangeBegin, trace.EventRangeActive:
			rg := ev.Range()
			ranges[rg.Name+"@"+rg.Scope.String()] = t
		case trace.EventRangeEnd:
			rg := ev.Range()
			k := rg.Name + "@" + rg.Scope.String()
			if t0, ok := ranges[k]; ok {
				rangeTotal[rg.Name] += t.Sub(t0)
				rangeCount[rg.Name]++
				delete(ranges, k)
			}
		case trace.EventStateTransition:
			st := ev.StateTransition()
			if st.Resource.Kind != trace.ResourceGoroutine {
				return
			}
			from, to := st.Goroutine()
			g := gs[st.Resource.Goroutine()]
			if g == nil {
				g = &gor{state: from, since: t}
				if from == trace.GoNotExist {
					g.kind = root(st.Stack)
				}
				gs[st.Resource.Goroutine()] = g
			}
			if g.kind == "" && st.Stack != trace.NoStack {
				g.kind = root(st.Stack) + "?"
			}
			if st.Stack != trace.NoStack && has(st.Stack, "llmgw.(*Handler).ServeHTTP") {
				g.handler = true
			}
			k := kinds[g.kind]
			if k == nil {
				k = &kindStats{}
				kinds[g.kind] = k
			}
			d := t.Sub(g.since)
			if g.inCall && !g.wrote && g.state == trace.GoWaiting && upstreamSite(g.site) {
				if g.upFrom == 0 {
					g.upFrom = g.since
				}
				g.upTo = t
			}
			switch g.state {
			case trace.GoRunning:
				k.running += d
				g.call.running += d
			case trace.GoRunnable:
				k.runnable += d
				g.call.runnable += d
			case trace.GoSyscall:
				k.syscall += d
				g.call.syscall += d
			case trace.GoWaiting:
				if g.inCall {
					if upstreamSite(g.site) {
						g.call.upstream += d
					} else {
						g.call.other += d
					}
					g.call.waits[g.reason+" @ "+g.site] += d
				}
			}
			if to == trace.GoRunning {
				k.wakes++
			}
			// The call's first write to its client: net/http's connection
			// writer in a system call.
			if to == trace.GoSyscall && g.inCall && !g.wrote && has(st.Stack, "checkConnErrorWriter") {
				g.wrote, g.firstByte, g.firstWall = true, g.call, t.Sub(g.callStart)
				g.firstByte.waits = nil
				if g.upFrom != 0 {
					g.phases = [3]time.Duration{g.upFrom.Sub(g.callStart), g.upTo.Sub(g.upFrom), t.Sub(g.upTo)}
				}
			}
			// A connection goroutine's call ends when it waits for the
			// network outside the handler (the next request).
			if strings.HasPrefix(g.kind, "net/http.(*conn).serve") {
				if to == trace.GoWaiting && st.Reason == "network" && !has(st.Stack, "llmgw") {
					if g.inCall && g.handler {
						calls = append(calls, g.call)
						walls = append(walls, t.Sub(g.callStart))
						for w, d := range g.call.waits {
							waitTotal[w] += d
						}
						if g.wrote {
							firsts = append(firsts, g.firstByte)
							firstWalls = append(firstWalls, g.firstWall)
							if g.upFrom != 0 {
								phases = append(phases, g.phases)
							}
						}
					}
					g.inCall = false
				} else if from == trace.GoWaiting && g.reason == "network" && !g.inCall {
					g.inCall, g.handler, g.callStart, g.wrote, g.upFrom, g.upTo = true, false, t, false, 0, 0
					g.call = parts{waits: map[string]time.Duration{}}
				}
			}
			g.state, g.since, g.reason = to, t, st.Reason
			if to == trace.GoWaiting {
				g.site = site(st.Stack)
			}
		}
	})
	fmt.Printf("trace: %v\n\nranges (the collector's work):\n", last.Sub(first).Round(time.Millisecond))
	for name, d := range rangeTotal {
		fmt.Printf("  %-40s %6d  %v\n", name, rangeCount[name], d)
	}
	fmt.Println("\ngoroutines by kind, most running first:")
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return kinds[names[i]].running > kinds[names[j]].running })
	for i, n := range names {
		if i == 15 {
			break
		}
		k := kinds[n]
		fmt.Printf("  %-75s running %-10v runnable %-10v syscall %-10v wakes %d\n", n, k.running.Round(time.Millisecond),
			k.runnable.Round(time.Millisecond), k.syscall.Round(time.Millisecond), k.wakes)
	}
	if len(calls) == 0 {
		fmt.Println("\nno LLM calls in the trace")
		return
	}
	fmt.Printf("\nLLM calls: %d (handler goroutine, request read to the next read)\n", len(calls))
	col := func(name string, get func(p parts, wall time.Duration) time.Duration) {
		v := make([]time.Duration, len(calls))
		for i := range calls {
			v[i] = get(calls[i], walls[i])
		}
		sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
		fmt.Printf("  %-14s median %-12v p90 %-12v p99 %v\n", name, v[len(v)/2], v[len(v)*9/10], v[len(v)*99/100])
	}
	col("wall", func(_ parts, w time.Duration) time.Duration { return w })
	col("running", func(p parts, _ time.Duration) time.Duration { return p.running })
	col("runnable", func(p parts, _ time.Duration) time.Duration { return p.runnable })
	col("syscall", func(p parts, _ time.Duration) time.Duration { return p.syscall })
	col("upstream wait", func(p parts, _ time.Duration) time.Duration { return p.upstream })
	col("other waits", func(p parts, _ time.Duration) time.Duration { return p.other })
	if len(firsts) > 0 {
		fmt.Printf("  to the first write to the client (the first byte; %d calls):\n", len(firsts))
		calls, walls = firsts, firstWalls
		col("  wall", func(_ parts, w time.Duration) time.Duration { return w })
		col("  running", func(p parts, _ time.Duration) time.Duration { return p.running })
		col("  runnable", func(p parts, _ time.Duration) time.Duration { return p.runnable })
		col("  syscall", func(p parts, _ time.Duration) time.Duration { return p.syscall })
		col("  upstream", func(p parts, _ time.Duration) time.Duration { return p.upstream })
		col("  other waits", func(p parts, _ time.Duration) time.Duration { return p.other })
		fmt.Printf("  the same in phases (%d calls):\n", len(phases))
		for i, name := range []string{"request read → forward (the stages, the request record)", "forward → the upstream's answer or first event at the handler", "→ the first write to the client"} {
			v := make([]time.Duration, len(phases))
			for j := range phases {
				v[j] = phases[j][i]
			}
			sort.Slice(v, func(a, b int) bool { return v[a] < v[b] })
			if len(v) > 0 {
				fmt.Printf("    %-66s median %-12v p90 %v\n", name, v[len(v)/2], v[len(v)*9/10])
			}
		}
	}
	fmt.Println("  waits, mean per call:")
	for w, d := range waitTotal {
		fmt.Printf("    %-110s %v\n", w, d/time.Duration(len(calls)))
	}
	overlap(os.Args[1])
}

// upstreamSite reports whether a wait site is the HTTP transport's: the
// upstream's answer (or a connection to it).
func upstreamSite(site string) bool {
	return strings.Contains(site, "persistConn") || strings.Contains(site, "bodyEOFSignal") || strings.Contains(site, "getConn")
}

// root is the function a goroutine's stack starts in.
func root(s trace.Stack) string {
	var last string
	for f := range s.Frames() {
		last = f.Func
	}
	return last
}

func has(s trace.Stack, fn string) bool {
	for f := range s.Frames() {
		if strings.Contains(f.Func, fn) {
			return true
		}
	}
	return false
}

// site names where a goroutine waits: its first two frames outside the
// runtime and the standard library's plumbing.
func site(s trace.Stack) string {
	var fs []string
	for f := range s.Frames() {
		switch {
		case strings.HasPrefix(f.Func, "runtime."), strings.HasPrefix(f.Func, "sync."), strings.HasPrefix(f.Func, "internal/"),
			strings.HasPrefix(f.Func, "net."), strings.HasPrefix(f.Func, "bufio."), strings.HasPrefix(f.Func, "io."),
			strings.HasPrefix(f.Func, "bytes."):
			continue
		}
		fs = append(fs, f.Func)
		if len(fs) == 2 {
			break
		}
	}
	return strings.Join(fs, " < ")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tracecalls:", err)
	os.Exit(1)
}

// readEvents calls fn with each event of the trace at path, in order.
func readEvents(path string, fn func(trace.Event)) {
	f, err := os.Open(path)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		fail(err)
	}
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			return
		}
		if err != nil {
			fail(err)
		}
		fn(ev)
	}
}
