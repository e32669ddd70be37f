package lowprio

import "runtime"

// Lock locks the calling goroutine to its OS thread (until it returns:
// never unlock it) and lowers the thread's CPU priority to nice (1–19;
// 0 or less only locks). A nice the process may not set (it already runs
// at a higher one) leaves the priority as it is; the error says why.
func Lock(nice int) error {
	runtime.LockOSThread()
	if nice <= 0 {
		return nil
	}
	return setNice(min(nice, 19))
}

// Nice returns the calling thread's nice value (0 where unsupported).
func Nice() (int, error) { return getNice() }
