//go:build !linux

package enforce

// threadCPU is not measured outside Linux.
func threadCPU() int64 { return 0 }
