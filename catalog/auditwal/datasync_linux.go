package auditwal

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// datasync makes f's data durable: fdatasync, which skips the metadata
// a read does not need (its times), unlike fsync (os.File.Sync). An
// append within the file's preallocated size then costs one data write
// and no journal commit.
func datasync(f *os.File) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := conn.Control(func(fd uintptr) {
		for {
			if serr = unix.Fdatasync(int(fd)); serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

// allocate allocates n bytes at off, reading as zeros: fallocate, which
// writes no data (a 1 MiB write of zeros would hold up the appends'
// fdatasyncs until it reached the disk), or zeros written where the
// filesystem does not support it.
func allocate(f *os.File, off, n int64) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := conn.Control(func(fd uintptr) {
		for {
			if ferr = unix.Fallocate(int(fd), 0, off, n); ferr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if errors.Is(ferr, unix.EOPNOTSUPP) {
		return writeZeros(f, off, n)
	}
	return ferr
}
