//go:build linux

package client_test

import (
	"encoding/binary"
	"os"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// pace calls send n times at rate per second, each with its due time.
// Go's own timers wake on a 1 ms grid when the process is idle, so it
// waits on a periodic timerfd instead: the read parks the goroutine in the
// netpoller (holding no P, unlike a sleeping syscall) and the kernel's
// high-resolution timer wakes it.
func pace(n, rate int, send func(due time.Time)) {
	const (
		clockMonotonic  = 1
		tfdNonblock     = syscall.O_NONBLOCK
		tfdCloexec      = syscall.O_CLOEXEC
		prSetTimerSlack = 29
	)
	runtime.LockOSThread() // the timer slack is per thread
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, tfdNonblock|tfdCloexec, 0)
	if errno != 0 {
		runtime.UnlockOSThread()
		paceSleeping(n, rate, send)
		return
	}
	f := os.NewFile(fd, "timerfd")
	defer f.Close()
	interval := time.Second / time.Duration(rate)
	ts := syscall.NsecToTimespec(int64(interval))
	spec := [2]syscall.Timespec{ts, ts} // it_interval, it_value
	start := time.Now()
	_, _, errno = syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	runtime.UnlockOSThread()
	if errno != 0 {
		paceSleeping(n, rate, send)
		return
	}
	buf := make([]byte, 8)
	for sent := 0; sent < n; {
		if _, err := f.Read(buf); err != nil {
			paceSleeping(n-sent, rate, send)
			return
		}
		for range binary.LittleEndian.Uint64(buf) {
			if sent == n {
				break
			}
			sent++
			send(start.Add(time.Duration(sent) * interval))
		}
	}
}
