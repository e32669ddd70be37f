package proctest

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Child is a child process started by Start.
type Child struct {
	done chan struct{}
	err  error
}

// Done is closed once the child has exited and cmd.Wait has returned
// (cmd.ProcessState is set then).
func (c *Child) Done() <-chan struct{} { return c.done }

// Err is cmd.Wait's result; it is valid once Done is closed.
func (c *Child) Err() error {
	<-c.done
	return c.err
}

// Exited reports whether the child has exited (without blocking).
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Start starts cmd with death signal sig: the kernel sends sig to the child
// when this process dies. It keeps cmd.SysProcAttr's other fields. The
// caller must not call cmd.Wait: Start's own goroutine does, and Done tells
// when it has returned.
func Start(cmd *exec.Cmd, sig syscall.Signal) (*Child, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	setDeathSignal(cmd.SysProcAttr, sig)
	c := &Child{done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The thread that forks the child must outlive it (the death
		// signal follows that thread): stay locked to it until the child
		// has exited, so that no other goroutine can run on it, let alone
		// lock it and end it.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		c.err = cmd.Wait()
		runtime.UnlockOSThread()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}
