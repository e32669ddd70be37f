package duckstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"iter"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// The crash tests run this test binary again as a child process (see
// TestHelperProcess), selected by these environment variables.
const (
	helperModeEnv = "MANDATE_DUCKSTORE_HELPER"
	helperDirEnv  = "MANDATE_DUCKSTORE_DIR"
)

// crashEvent is the change audit record the helper commits in
// transaction i.
func crashEvent(i int) catalog.AuditEvent {
	return catalog.AuditEvent{EventID: strconv.Itoa(i), Time: time.Unix(int64(i), 0).UTC(), Action: "GRANT", Revision: catalog.Revision(i)}
}

// TestHelperProcess is not a test: it is the child process of the crash
// tests. Modes:
//
//   - commit: commit the change audit records of revisions 1, 2, ...
//     (each with its AuditedRevision), printing "committed N" once
//     AppendChangeAudit returned for N;
//   - hold: open the store, print "open", wait;
//   - fsync: open the store, create the file "before" next to it, commit an
//     event, create "after", exit without closing the store.
//
// It then waits for its standard input to close (it is killed first).
func TestHelperProcess(t *testing.T) {
	mode, dir := os.Getenv(helperModeEnv), os.Getenv(helperDirEnv)
	if mode == "" {
		t.Skip("the child process of the crash tests")
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	s, err := Open(ctx, dir, Options{})
	if err != nil {
		fail(err)
	}
	commit := func(i int) error {
		return s.AppendChangeAudit(ctx, catalog.Revision(i), []catalog.AuditEvent{crashEvent(i)})
	}
	switch mode {
	case "commit":
		for i := 1; i <= 100_000; i++ {
			if err := commit(i); err != nil {
				fail(err)
			}
			fmt.Printf("committed %d\n", i)
		}
	case "hold":
		fmt.Println("open")
	case "fsync":
		for _, step := range []func() error{
			func() error { return os.WriteFile(filepath.Join(dir, "before"), nil, 0o600) },
			func() error { return commit(1) },
			func() error { return os.WriteFile(filepath.Join(dir, "after"), nil, 0o600) },
		} {
			if err := step(); err != nil {
				fail(err)
			}
		}
		os.Exit(0)
	default:
		fail(fmt.Errorf("unknown mode %q", mode))
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// helper starts the child process in mode on dir; it is killed when the
// test ends. It returns the child and its standard output, line by line.
func helper(t *testing.T, mode, dir string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, helperDirEnv+"="+dir)
	stdin, err := cmd.StdinPipe() // left open: the child waits on it
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = stdin.Close()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("helper stderr:\n%s", stderr.String())
		}
	})
	return cmd, bufio.NewScanner(stdout)
}

// TestCrashDurability kills (SIGKILL) a process that is committing events
// and checks that every event it saw committed is there after reopening.
func TestCrashDurability(t *testing.T) {
	dir := t.TempDir()
	cmd, lines := helper(t, "commit", dir)
	const target = 40
	last := 0
	for last < target && lines.Scan() {
		n, ok := strings.CutPrefix(lines.Text(), "committed ")
		if !ok {
			continue
		}
		i, err := strconv.Atoi(n)
		must(t, err)
		last = i
	}
	if last < target {
		t.Fatalf("the helper stopped after %d commits: %v", last, lines.Err())
	}
	must(t, cmd.Process.Signal(syscall.SIGKILL)) // while it commits the next ones
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, want killed by SIGKILL", err)
	}
	// The commits are in the WAL, not checkpointed into the database file:
	// reopening must replay it.
	if fi, err := os.Stat(filepath.Join(dir, FileName+".wal")); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL left by the killed process: %v", err)
	}

	s := openT(t, dir)
	ctx := t.Context()
	m, err := s.AuditedRevision(ctx)
	must(t, err)
	es, err := s.ListAudit(ctx, time.Time{}, 0)
	must(t, err)
	// Commits after the last one reported may or may not have made it, but
	// all or nothing of each (the event with its mark).
	n := int(m)
	if n < last || len(es) != n {
		t.Fatalf("after the crash: audited revision %d, %d audit events; want at least %d of each, equal", m, len(es), last)
	}
	for i := 1; i <= n; i++ {
		if es[i-1] != crashEvent(i) {
			t.Fatalf("event %d = %+v, want %+v", i, es[i-1], crashEvent(i))
		}
	}
	t.Logf("%d commits reported, %d recovered", last, n)
}

// TestOpenLockedByAnotherProcess checks that a data directory in use by
// another process is refused with CodeUnavailable.
func TestOpenLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	_, lines := helper(t, "hold", dir)
	if !lines.Scan() || lines.Text() != "open" {
		t.Fatalf("helper did not open the store: %q %v", lines.Text(), lines.Err())
	}
	s, err := Open(t.Context(), dir, Options{})
	if err == nil {
		_ = s.Close()
		t.Fatal("Open of a directory in use by another process succeeded")
	}
	if !catalog.IsCode(err, catalog.CodeUnavailable) || !strings.Contains(err.Error(), "in use by another process") ||
		!strings.Contains(err.Error(), "each needs its own --data-dir") {
		t.Fatalf("Open = %v, want CodeUnavailable 'in use by another process' saying what to do", err)
	}
}

// TestCommitFsyncsWAL traces the system calls of a process committing one
// transaction and checks that the WAL was fsynced between the start of
// the write and its return: a commit is durable against power loss, not
// only against a crash of the process.
func TestCommitFsyncsWAL(t *testing.T) {
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed")
	}
	dir, trace := t.TempDir(), filepath.Join(t.TempDir(), "trace")
	cmd := exec.CommandContext(t.Context(), strace, "-f", "-e", "trace=openat,open,creat,fsync,fdatasync",
		"-o", trace, os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperModeEnv+"=fsync", helperDirEnv+"="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("strace %v: %v\n%s", cmd.Args, err, out)
	}
	b, err := os.ReadFile(trace)
	must(t, err)

	// Follow which path each file descriptor has, and look for an fsync of
	// the WAL between the creation of the files before and after.
	openRe := regexp.MustCompile(`(?:openat|open|creat)\(.*?"([^"]+)".*\)\s+=\s+(\d+)`)
	syncRe := regexp.MustCompile(`(?:fsync|fdatasync)\((\d+)`)
	paths := map[string]string{}
	window, synced := false, false
	for line := range straceCalls(string(b)) {
		if m := openRe.FindStringSubmatch(line); m != nil {
			paths[m[2]] = m[1]
			switch m[1] {
			case filepath.Join(dir, "before"):
				window = true
			case filepath.Join(dir, "after"):
				window = false
			}
			continue
		}
		if m := syncRe.FindStringSubmatch(line); m != nil && window && strings.HasSuffix(paths[m[1]], FileName+".wal") {
			synced = true
		}
	}
	if !synced {
		t.Fatalf("no fsync of %s.wal while a write committed; trace:\n%s", FileName, b)
	}
}

// straceCalls yields the lines of an strace -f trace with each call that
// another thread interrupted ("PID call(args <unfinished ...>", later
// "PID <... call resumed>rest") joined into one line.
func straceCalls(trace string) iter.Seq[string] {
	return func(yield func(string) bool) {
		unfinished := map[string]string{} // pid: the call's start
		for line := range strings.SplitSeq(trace, "\n") {
			pid, rest, _ := strings.Cut(line, " ")
			rest = strings.TrimLeft(rest, " ")
			if start, ok := strings.CutSuffix(rest, " <unfinished ...>"); ok {
				unfinished[pid] = start
				continue
			}
			if strings.HasPrefix(rest, "<... ") {
				if _, after, ok := strings.Cut(rest, " resumed>"); ok {
					line = pid + " " + unfinished[pid] + after
					delete(unfinished, pid)
				}
			}
			if !yield(line) {
				return
			}
		}
	}
}

func TestStraceCalls(t *testing.T) {
	trace := `10134 openat(AT_FDCWD, "/d/before", O_WRONLY|O_CREAT, 0600 <unfinished ...>
10142 --- SIGURG {si_signo=SIGURG} ---
10134 <... openat resumed>)             = 7
10142 fsync(6)                          = 0`
	want := []string{ // a call where it returned
		`10142 --- SIGURG {si_signo=SIGURG} ---`,
		`10134 openat(AT_FDCWD, "/d/before", O_WRONLY|O_CREAT, 0600)             = 7`,
		`10142 fsync(6)                          = 0`,
	}
	if got := slices.Collect(straceCalls(trace)); !slices.Equal(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}
