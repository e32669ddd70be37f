package proctest

import (
	"errors"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadEndTimeout bounds the wait for a thread's end (a failure bound).
const threadEndTimeout = 30 * time.Second

// RunOnEndingThread runs f on a goroutine locked to its OS thread that then
// returns without unlocking it, so that the runtime ends the thread (as it
// does a lowprio thread when its goroutine stops), and waits until the
// thread has ended. f runs to its end even when it calls runtime.Goexit
// (tb.FailNow in f): the thread ends all the same.
func RunOnEndingThread(tb testing.TB, f func()) {
	tb.Helper()
	tid := make(chan int, 1)
	go lockedRun(f, tid, nil)
	task := "/proc/self/task/" + strconv.Itoa(<-tid)
	deadline := time.Now().Add(threadEndTimeout)
	for {
		_, err := os.Stat(task)
		if errors.Is(err, fs.ErrNotExist) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("thread %s did not end within %s (%v)", task, threadEndTimeout, err)
		}
		time.Sleep(5 * time.Millisecond) // polls a condition, bounded by the deadline
	}
}

// lockedRun locks the goroutine to its thread, runs f there and sends the
// thread's id; it returns still locked, which ends the thread. The runtime
// never ends the process's main thread (it parks it instead): there, it
// holds that thread until another goroutine has locked a thread of its
// own, and runs f on that one. onLocked, if not nil, runs once the
// goroutine is locked.
func lockedRun(f func(), tid chan<- int, onLocked func()) {
	runtime.LockOSThread()
	if onLocked != nil {
		onLocked()
	}
	if unix.Gettid() == os.Getpid() {
		held := make(chan struct{})
		go lockedRun(f, tid, func() { close(held) })
		<-held
		runtime.UnlockOSThread()
		return
	}
	defer func() { tid <- unix.Gettid() }()
	f()
}
