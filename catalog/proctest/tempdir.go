package proctest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// tempPrefix names the temporary directory of a test process:
// tempPrefix<pid>-<random>.
const tempPrefix = "mandate-test-"

// RunInTempDir runs the tests of m with TMPDIR set to a directory of this
// test process's own, and returns m.Run's exit code. Every temporary file
// of the tests (t.TempDir, os.MkdirTemp, os.CreateTemp) and of the
// processes they start lands in it, and it is removed when m.Run returns.
// A test binary killed by -timeout, a panic or kill -9 never gets there:
// so first it removes the directories of earlier test processes that are
// gone. Call it from TestMain: os.Exit(proctest.RunInTempDir(m)).
func RunInTempDir(m *testing.M) int {
	parent := os.TempDir()
	RemoveStaleTempDirs(parent)
	dir, err := os.MkdirTemp(parent, fmt.Sprintf("%s%d-", tempPrefix, os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "proctest:", err)
		return 1
	}
	// Other accounts (pgtest's PostgreSQL) may need to traverse it.
	_ = os.Chmod(dir, 0o711)
	// t.TempDir uses GOTMPDIR when it is set, else TMPDIR.
	restoreTMP, restoreGOTMP := setenv("TMPDIR", dir), func() {}
	if os.Getenv("GOTMPDIR") != "" {
		restoreGOTMP = setenv("GOTMPDIR", dir)
	}
	code := m.Run()
	restoreGOTMP()
	restoreTMP()
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "proctest:", err)
	}
	return code
}

// RemoveStaleTempDirs removes the temporary directories in dir of test
// processes (RunInTempDir's) that are gone. It leaves those of running
// processes, including processes of other accounts, which it cannot
// signal.
func RemoveStaleTempDirs(dir string) {
	dirs, _ := filepath.Glob(filepath.Join(dir, tempPrefix+"*-*"))
	for _, d := range dirs {
		pid, ok := tempDirPid(filepath.Base(d))
		if !ok || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// tempDirPid is the pid in a temporary directory's name.
func tempDirPid(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, tempPrefix)
	if !ok {
		return 0, false
	}
	p, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(p)
	return pid, err == nil && pid > 0
}

// setenv sets the environment variable k to v and returns what restores it.
func setenv(k, v string) (restore func()) {
	old, had := os.LookupEnv(k)
	_ = os.Setenv(k, v)
	return func() {
		if had {
			_ = os.Setenv(k, old)
		} else {
			_ = os.Unsetenv(k)
		}
	}
}
