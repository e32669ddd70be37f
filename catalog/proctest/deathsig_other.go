//go:build !linux

package proctest

import "syscall"

func setDeathSignal(*syscall.SysProcAttr, syscall.Signal) {}
