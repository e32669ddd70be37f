package privfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Write replaces path with data (mode 0600) atomically and durably.
func Write(path string, data []byte) error {
	return write(path, data, os.Rename)
}

// Create writes data to path (mode 0600) unless path exists, in which case
// the error satisfies errors.Is(err, os.ErrExist) and the existing file is
// left alone: of concurrent creators exactly one wins.
func Create(path string, data []byte) error {
	return write(path, data, os.Link)
}

func write(path string, data []byte, place func(tmp, path string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a rename it is gone already; after a link the name goes
	fail := func(e error) error {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, e)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := place(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("writing %s: fsync of the directory: %w", path, err)
	}
	return nil
}
