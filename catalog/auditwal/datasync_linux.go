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
	return onFD(f, func(fd int) error { return unix.Fdatasync(fd) })
}

// allocate allocates n bytes at off, reading as zeros: fallocate, which
// writes no data (a 1 MiB write of zeros would hold up the fdatasyncs of
// appends through the page cache until it reached the disk), or zeros
// written where the filesystem does not support it.
func allocate(f *os.File, off, n int64) error {
	err := onFD(f, func(fd int) error { return unix.Fallocate(fd, 0, off, n) })
	if errors.Is(err, unix.EOPNOTSUPP) {
		return writeZeros(f, off, n)
	}
	return err
}

// onFD runs call on f's descriptor, again while it is interrupted (EINTR).
func onFD(f *os.File, call func(fd int) error) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	if err := conn.Control(func(fd uintptr) {
		for {
			if cerr = call(int(fd)); cerr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return cerr
}
