//go:build !linux

package proctest

import "testing"

// RunOnEndingThread is Linux's (it watches the thread's end in /proc).
func RunOnEndingThread(tb testing.TB, _ func()) {
	tb.Helper()
	tb.Skip("a thread's end is observed in Linux's /proc")
}
