// Package embeddedtest holds test helpers for embedded data directories:
// the upgrade fixtures under testdata/upgrade are .tar.gz archives of a
// mandate-data directory written by an earlier version.
package embeddedtest

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ExtractFixture unpacks the .tar.gz at path (holding mandate-data/) into
// a new temporary directory and returns that mandate-data directory.
// Entries that would land outside the directory fail the test.
func ExtractFixture(tb testing.TB, path string) string {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		tb.Fatal(err)
	}
	root := tb.TempDir()
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			tb.Fatal(err)
		}
		p := filepath.Join(root, filepath.Clean(h.Name))
		if !strings.HasPrefix(p, root+string(filepath.Separator)) {
			tb.Fatalf("fixture entry %q escapes", h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, 0o700); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return filepath.Join(root, "mandate-data")
}
