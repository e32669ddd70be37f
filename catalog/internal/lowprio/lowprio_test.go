package lowprio

import (
	"runtime"
	"testing"
)

// TestLock: the locked goroutine's thread runs at the nice asked for; the
// test's own goroutine (another thread) keeps its priority.
func TestLock(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("per-thread priorities are Linux's")
	}
	before, err := Nice()
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		nice int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		if err := Lock(before + 5); err != nil {
			got <- result{err: err}
			return
		}
		runtime.Gosched() // may move other goroutines, never this one
		n, err := Nice()
		got <- result{n, err}
	}()
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.nice != before+5 {
		t.Errorf("locked goroutine's thread at nice %d, want %d", r.nice, before+5)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if n, err := Nice(); err != nil || n != before {
		t.Errorf("test goroutine's thread at nice %d (%v), want %d", n, err, before)
	}
}
