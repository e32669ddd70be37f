package proctest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mandatehq/mandate/catalog/proctest"
)

// roleEnv makes the test binary a child of the tests below instead of
// running tests: "echo" answers each line of stdin until EOF, "sleep"
// sleeps, "parent" starts a "sleep" child through proctest.Start, prints
// its pid and sleeps.
const roleEnv = "PROCTEST_ROLE"

// waitBound bounds every wait for a process (a failure bound).
const waitBound = 30 * time.Second

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(proctest.RunInTempDir(m))
	case "echo":
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			fmt.Println(in.Text())
		}
	case "sleep":
		time.Sleep(5 * time.Minute) // killed long before, unless a test fails
	case "parent":
		child := role("sleep")
		if _, err := proctest.Start(child, syscall.SIGKILL); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(child.Process.Pid)
		time.Sleep(5 * time.Minute)
	}
}

// role is the test binary as a child in role r, its stdio unconnected.
func role(r string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+r)
	return cmd
}

// echoChild is an "echo" child with its stdin and stdout.
type echoChild struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func newEcho(t *testing.T) *echoChild {
	t.Helper()
	e := &echoChild{cmd: role("echo")}
	var err error
	if e.in, err = e.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := e.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	e.out = bufio.NewReader(out)
	return e
}

// roundTrip sends a line and reads it back: an error when the child is
// gone. A child killed before the line was written cannot answer it.
func (e *echoChild) roundTrip(line string) error {
	if _, err := io.WriteString(e.in, line+"\n"); err != nil {
		return err
	}
	got, err := e.out.ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echoed %q, want %q", got, line)
	}
	return nil
}

// TestThreadEnds: the hazard, then the cure. A child forked with a death
// signal on a thread that a goroutine locked and left locked is killed when
// that thread ends; one that proctest.Start forked from the same goroutine
// is not, and lives until it exits on its own.
func TestThreadEnds(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("death signals are Linux's")
	}
	t.Run("forked on the ending thread", func(t *testing.T) {
		e := newEcho(t)
		e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		var startErr error
		proctest.RunOnEndingThread(t, func() { startErr = e.cmd.Start() })
		if startErr != nil {
			t.Fatal(startErr)
		}
		exited := make(chan error, 1)
		go func() { exited <- e.cmd.Wait() }()
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("the child exited with %v, want killed by SIGKILL", err)
			}
		case <-time.After(waitBound):
			_ = e.cmd.Process.Kill()
			<-exited
			t.Fatal("the child outlived the thread that forked it: the premise of proctest.Start does not hold here")
		}
	})
	t.Run("proctest.Start", func(t *testing.T) {
		e := newEcho(t)
		var child *proctest.Child
		var startErr error
		proctest.RunOnEndingThread(t, func() { child, startErr = proctest.Start(e.cmd, syscall.SIGKILL) })
		if startErr != nil {
			t.Fatal(startErr)
		}
		t.Cleanup(func() { _ = e.cmd.Process.Kill(); <-child.Done() })
		// The thread has ended: a SIGKILL sent then would have stopped the
		// child before it read this line.
		if err := e.roundTrip("after the thread ended"); err != nil {
			t.Fatalf("the child died with the caller's thread: %v (%v)", err, child.Err())
		}
		_ = e.in.Close()
		select {
		case <-child.Done():
			if err := child.Err(); err != nil {
				t.Fatalf("the child exited with %v, want 0", err)
			}
		case <-time.After(waitBound):
			t.Fatal("the child did not exit at EOF")
		}
	})
}

// TestDiesWithParent: a child started through proctest.Start dies when its
// parent process is killed with SIGKILL (as go test's -timeout ends a test
// binary that does not stop on its own).
func TestDiesWithParent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("death signals are Linux's")
	}
	parent := role("parent")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	parent.Stderr = os.Stderr
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = parent.Process.Kill(); _ = parent.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	pid, perr := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || perr != nil {
		t.Fatalf("the parent printed %q (%v, %v)", line, err, perr)
	}
	// The child's pid stays its own while the parent lives (the parent
	// reaps it only when it exits): a pidfd taken now is that process.
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	t.Cleanup(func() {
		_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		_ = unix.Close(fd)
	})
	if exited(t, fd, 0) {
		t.Fatal("the child exited while its parent lived")
	}
	if err := parent.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	if !exited(t, fd, waitBound) {
		t.Fatalf("the child (pid %d) outlived its parent by %s", pid, waitBound)
	}
}

// exited reports whether the process of pidfd fd has exited, waiting up to
// d for it.
func exited(t *testing.T, fd int, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(max(0, time.Until(deadline).Milliseconds())))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll of the child's pidfd: %v", err)
		}
		return n > 0
	}
}

// TestRemoveStaleTempDirs: the temporary directory of a test process that
// is gone is removed; this process's, a live process's and other names are
// kept.
func TestRemoveStaleTempDirs(t *testing.T) {
	dir := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{ // name: kept
		fmt.Sprintf("mandate-test-%d-123", gone.Process.Pid): false,
		fmt.Sprintf("mandate-test-%d-456", os.Getpid()):      true,
		fmt.Sprintf("mandate-test-%d-789", os.Getppid()):     true,
		"mandate-test-0123456789":                            true, // no pid in the name
		"mandate-test-x-1":                                   true,
		"mandate-test--1-2":                                  true,
	}
	for name := range names {
		if err := os.MkdirAll(filepath.Join(dir, name, "sub"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	proctest.RemoveStaleTempDirs(dir)
	for name, kept := range names {
		if _, err := os.Stat(filepath.Join(dir, name)); (err == nil) != kept {
			t.Errorf("%s: kept %v, want %v", name, err == nil, kept)
		}
	}
}

// TestRunInTempDir: the tests of this package run in a temporary
// directory of this process's own.
func TestRunInTempDir(t *testing.T) {
	want := fmt.Sprintf("mandate-test-%d-", os.Getpid())
	if base := filepath.Base(os.TempDir()); !strings.HasPrefix(base, want) {
		t.Fatalf("TMPDIR %s, want a directory named %s*", os.TempDir(), want)
	}
	if got := filepath.Dir(filepath.Dir(t.TempDir())); got != os.TempDir() {
		t.Fatalf("t.TempDir is in %s, want %s", got, os.TempDir())
	}
}
