package enforce

import (
	"syscall"
	"unsafe"
)

// threadCPU returns the CPU time the calling thread has used (Linux
// CLOCK_THREAD_CPUTIME_ID): unlike wall time it does not count the time
// other jobs on a shared machine hold the CPU.
func threadCPU() int64 {
	var ts syscall.Timespec
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 3, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return ts.Nano()
}
