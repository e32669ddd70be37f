//go:build !linux

package auditwal

import "os"

// datasync makes f's data durable (fsync where fdatasync is not used).
func datasync(f *os.File) error { return f.Sync() }
