package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// pgCPU is the CPU time of a PostgreSQL server's postmaster and its
// children (backends, WAL writer, checkpointer), found through
// postmaster.pid in its data directory.
func pgCPU(b *testing.B, dataDir string) time.Duration {
	pids := pgPIDs(b, dataDir)
	total := reapedCPU(pids[0]) // backends that have ended
	for _, pid := range pids {
		total += procCPU(pid)
	}
	return total
}

// reapedCPU is the user and system CPU time of process pid's children that
// have ended and been waited for (cutime, cstime).
func reapedCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 15 {
		return 0
	}
	u, _ := strconv.ParseInt(f[13], 10, 64)
	s, _ := strconv.ParseInt(f[14], 10, 64)
	return time.Duration(u+s) * clockTick
}

// pgPIDs are the processes of a PostgreSQL server: its postmaster (from
// postmaster.pid in its data directory) and the postmaster's children.
func pgPIDs(b *testing.B, dataDir string) []int {
	raw, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		b.Fatal(err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		b.Fatal(err)
	}
	pids := []int{pm}
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(raw), ')')
		if f := strings.Fields(string(raw[i+1:])); len(f) > 1 && f[1] == strconv.Itoa(pm) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// hostBusy is the CPU time all cores of the host spent busy (/proc/stat:
// everything but idle and iowait).
func hostBusy(b *testing.B) time.Duration { return procStatBusy(b)[0] }

// procStatBusy is the busy CPU time of /proc/stat's lines: the host's (all
// cores) first, then each core's (cpu0, cpu1, …).
func procStatBusy(b *testing.B) []time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	var out []time.Duration
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, "cpu") {
			break
		}
		f := strings.Fields(line)
		var busy int64
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is counted in user already
				busy += n
			}
		}
		out = append(out, time.Duration(busy)*clockTick)
	}
	return out
}

// cpuSample is the CPU time used so far by the processes of a benchmark
// run: the replicas that execute the statements, the ones that only
// follow, PostgreSQL, this process (the load generator) and the host.
type cpuSample struct {
	exec, follow   []time.Duration
	pg, self, host time.Duration
	wall           time.Time
}

// clusterCPU samples the CPU of targets (executing), the other replicas
// of c (following), c's PostgreSQL, this process and the host.
func clusterCPU(b *testing.B, c *cluster, targets []*server) cpuSample {
	var s cpuSample
	for i, r := range targets {
		if !slices.Contains(targets[:i], r) { // a replica counts once
			s.exec = append(s.exec, procCPU(r.cmd.Process.Pid))
		}
	}
	for _, r := range c.replicas {
		if !slices.Contains(targets, r) {
			s.follow = append(s.follow, procCPU(r.cmd.Process.Pid))
		}
	}
	s.pg, s.self, s.host, s.wall = pgCPU(b, c.pg.DataDir), procCPU(os.Getpid()), hostBusy(b), time.Now()
	return s
}

// since is the CPU used between s0 and s.
func (s cpuSample) since(s0 cpuSample) cpuSample {
	d := cpuSample{pg: s.pg - s0.pg, self: s.self - s0.self, host: s.host - s0.host}
	for i := range s.exec {
		d.exec = append(d.exec, s.exec[i]-s0.exec[i])
	}
	for i := range s.follow {
		d.follow = append(d.follow, s.follow[i]-s0.follow[i])
	}
	d.wall = time.Unix(0, 0).Add(s.wall.Sub(s0.wall))
	return d
}

// all is the CPU of every process sampled: executing, following,
// PostgreSQL and the load generator.
func (d cpuSample) all() time.Duration {
	t := d.pg + d.self
	for _, e := range slices.Concat(d.exec, d.follow) {
		t += e
	}
	return t
}

// report reports the CPU per statement (µs) of each part and the host's
// busy share of its cores.
func (d cpuSample) report(b *testing.B, stmts float64) {
	if stmts <= 0 {
		return
	}
	per := func(t time.Duration) float64 { return float64(t.Microseconds()) / stmts }
	var exec, follow time.Duration
	for _, t := range d.exec {
		exec += t
	}
	for _, t := range d.follow {
		follow += t
	}
	b.ReportMetric(per(exec), "µs-cpu/stmt-executing")
	if len(d.follow) > 0 {
		b.ReportMetric(per(follow)/float64(len(d.follow)), "µs-cpu/stmt-each-follower")
		// The follower that does least: with one change-audit forwarder,
		// one that does not forward.
		b.ReportMetric(per(slices.Min(d.follow)), "µs-cpu/stmt-least-follower")
	}
	b.ReportMetric(per(d.pg), "µs-cpu/stmt-postgres")
	b.ReportMetric(per(d.self), "µs-cpu/stmt-loadgen")
	b.ReportMetric(per(d.all()), "µs-cpu/stmt-all")
	wall := d.wall.Sub(time.Unix(0, 0))
	b.ReportMetric(100*float64(d.host)/float64(wall)/float64(runtime.NumCPU()), "host-busy-%")
	b.Logf("CPU: executing %v, following %v, postgres %v, load generator %v; host busy %v of %v×%d",
		d.exec, d.follow, d.pg, d.self, d.host, wall.Round(time.Millisecond), runtime.NumCPU())
}
