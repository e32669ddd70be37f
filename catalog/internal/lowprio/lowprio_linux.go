package lowprio

import "golang.org/x/sys/unix"

// setNice sets the calling thread's nice value: on Linux, PRIO_PROCESS
// with a thread id (0: the calling thread) applies to that thread alone.
// A thread already at nice or above is left as it is (lowering the value
// needs a privilege).
func setNice(nice int) error {
	cur, err := getNice()
	if err != nil {
		return err
	}
	if cur >= nice {
		return nil
	}
	return unix.Setpriority(unix.PRIO_PROCESS, 0, nice)
}

// getNice is the calling thread's nice value. The raw system call
// returns 20 - nice.
func getNice() (int, error) {
	p, err := unix.Getpriority(unix.PRIO_PROCESS, 0)
	if err != nil {
		return 0, err
	}
	return 20 - p, nil
}
