package auditwal

import (
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
