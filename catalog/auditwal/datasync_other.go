//go:build !linux

package auditwal

import "os"

// datasync makes f's data durable (fsync where fdatasync is not used).
func datasync(f *os.File) error { return f.Sync() }

// allocate allocates n bytes at off, reading as zeros.
func allocate(f *os.File, off, n int64) error { return writeZeros(f, off, n) }

// directWriter is Linux's O_DIRECT appender; elsewhere the log writes
// through the page cache.
type directWriter struct{}

// openDirect returns nil: no direct appends.
func openDirect(path string, f *os.File, size int64) (*directWriter, error) { return nil, nil }

func (d *directWriter) write(f *os.File, off int64, flags int, p ...byte) (int64, error) {
	panic("unreachable")
}

func (d *directWriter) close() error { return nil }

// rwfDSync is RWF_DSYNC where it exists.
const rwfDSync = 0
