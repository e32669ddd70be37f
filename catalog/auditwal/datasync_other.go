//go:build !linux

package auditwal

import "os"

// datasync makes f's data durable (fsync where fdatasync is not used).
func datasync(f *os.File) error { return f.Sync() }

// allocate allocates n bytes at off, reading as zeros.
func allocate(f *os.File, off, n int64) error { return writeZeros(f, off, n) }
