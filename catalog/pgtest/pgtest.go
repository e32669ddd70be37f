// Package pgtest starts a real PostgreSQL server for a test: initdb into
// the test's temporary directory, the postmaster on a free 127.0.0.1 port
// with its unix socket in a short temporary directory, and a clean shutdown when the
// test ends (an immediate one when the test process dies without cleaning
// up: the postmaster is started through catalog/proctest). Tests that
// compare Mandate with PostgreSQL, and stores backed by PostgreSQL, use
// it; nothing else may start PostgreSQL its own way.
//
// The server binaries are found in $MANDATE_PG_BIN, else in the newest
// /usr/lib/postgresql/N/bin, else through pg_config or $PATH. Without them
// Start skips the test, except under CI ($CI set), where make deps installs
// them and their absence fails the test. PostgreSQL refuses to run as root:
// a test running as root starts it as the "postgres" user (or "nobody")
// and opens the temporary directories to it.
//
// The server runs without durability (fsync off; it is thrown away) and
// accepts TCP connections on 127.0.0.1 only, with a random password for
// the superuser "postgres"; any other role with a password (scram-sha-256)
// may log in too, as Mandate's query role does.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/catalog/proctest"
)

// Superuser is the name of the server's superuser.
const Superuser = "postgres"

// startTimeout bounds initdb and the server's start (a failure bound on a
// loaded machine, not a synchronization).
const startTimeout = 2 * time.Minute

// Server is a running PostgreSQL server.
type Server struct {
	Host      string // 127.0.0.1
	Port      int
	User      string // the superuser
	Password  string
	SocketDir string // the unix socket's directory
	DataDir   string
	Version   string // e.g. "15.18"
	bin       string

	cred *syscall.Credential
	env  []string
	opts Options
	stop func() // stops the running postmaster (idempotent)
}

// URL returns a connection URL for database db as the superuser (TLS off:
// the server listens on loopback only).
func (s *Server) URL(db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(s.User, s.Password),
		Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// URLAs returns a connection URL for database db as user with password
// (pg_hba accepts any role with a password over TCP: scram-sha-256).
func (s *Server) URLAs(db, user, password string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password),
		Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port)), Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Bin returns the path of one of the server's programs (psql, pg_dump, ...).
func (s *Server) Bin(program string) string { return filepath.Join(s.bin, program) }

// FindBin returns the directory of the PostgreSQL server binaries.
func FindBin() (string, error) {
	if d := os.Getenv("MANDATE_PG_BIN"); d != "" {
		if isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
		return "", fmt.Errorf("MANDATE_PG_BIN=%s has no postgres program", d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "postgres")) && isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		d := strings.TrimSpace(string(out))
		if isExec(filepath.Join(d, "postgres")) && isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil {
		d := filepath.Dir(p)
		if isExec(filepath.Join(d, "initdb")) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL server binaries (postgres, initdb) not found")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Options configure Start.
type Options struct {
	// Settings are extra server settings (-c name=value), e.g. TimeZone.
	Settings map[string]string
}

// Start starts a PostgreSQL server for tb and stops it when tb ends. It
// skips tb when the binaries are missing, except under CI.
func Start(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin, err := FindBin()
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("%v (make deps installs the Debian package postgresql)", err)
		}
		tb.Skipf("%v: apt-get install postgresql (or make deps), or set MANDATE_PG_BIN", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := start(ctx, tb, bin, opts)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return s
}

// runAs is the account PostgreSQL runs under: nil for the current one, or
// (when the test runs as root) postgres or nobody.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil && uid != 0 {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
		}
	}
	return nil, errors.New("running as root, and neither a postgres nor a nobody account exists to run PostgreSQL")
}

func start(ctx context.Context, tb testing.TB, bin string, opts Options) (*Server, error) {
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	root := tb.TempDir()
	if cred != nil {
		// The account needs to reach its directories: open the chain of
		// the test's temporary directories for traversal (not listing).
		for d := root; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
			st, err := os.Stat(d)
			if err != nil {
				return nil, err
			}
			if st.Mode().Perm()&0o001 == 0 {
				if err := os.Chmod(d, st.Mode().Perm()|0o011); err != nil {
					return nil, err
				}
			}
		}
	}
	dataDir, pwFile := filepath.Join(root, "data"), filepath.Join(root, "pw")
	var pw [16]byte
	_, _ = rand.Read(pw[:])
	password := hex.EncodeToString(pw[:])
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return nil, err
	}
	// The socket's path is bounded (107 bytes on Linux) and the test's
	// directory is named after the test: the socket gets a short
	// directory of its own, removed after the server (cleanups run last
	// registered first).
	sockDir, err := os.MkdirTemp(os.TempDir(), "pgsock")
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return nil, err
	}
	if cred != nil {
		for _, p := range []string{dataDir, sockDir, pwFile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, err
			}
		}
	}
	env := []string{"LC_ALL=C", "LANG=C", "TZ=UTC", "PATH=" + os.Getenv("PATH"), "HOME=" + root}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", dataDir, "-U", Superuser, "--pwfile", pwFile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--lc-ctype=C.UTF-8", "-N", "--no-instructions")
	cmd.Env, cmd.Dir = env, root
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	_ = os.Remove(pwFile)
	version := ""
	if out, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output(); err == nil {
		f := strings.Fields(string(out))
		if len(f) >= 3 {
			version = f[2]
		}
	}
	// The port is free when chosen; another process may take it before
	// the server binds it, which the server reports: choose again.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Host: "127.0.0.1", Port: port, User: Superuser, Password: password, SocketDir: sockDir,
			DataDir: dataDir, Version: version, bin: bin, cred: cred, env: env, opts: opts}
		retry, err := s.run(ctx, tb)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !retry {
			break
		}
	}
	return nil, lastErr
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// run starts the postmaster and waits until it accepts connections; retry
// is true when it could not bind its port.
func (s *Server) run(ctx context.Context, tb testing.TB) (retry bool, err error) {
	cred, env, opts := s.cred, s.env, s.opts
	args := []string{"-D", s.DataDir, "-p", strconv.Itoa(s.Port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + s.SocketDir, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=30",
		"-c", "logging_collector=off", "-c", "log_min_messages=warning", "-c", "TimeZone=UTC"}
	keys := make([]string, 0, len(opts.Settings))
	for k := range opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+opts.Settings[k])
	}
	cmd := exec.Command(filepath.Join(filepath.Dir(s.Bin("postgres")), "postgres"), args...)
	cmd.Env, cmd.Dir = env, s.DataDir
	// Its own process group, and an immediate shutdown (SIGQUIT) if the
	// test process dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	log := &logWatch{ready: make(chan struct{})}
	cmd.Stderr = log
	child, err := proctest.Start(cmd, syscall.SIGQUIT)
	if err != nil {
		return false, fmt.Errorf("start postgres: %w", err)
	}
	stop := sync.OnceFunc(func() {
		// Fast shutdown; immediate (SIGQUIT), then SIGKILL of the whole
		// group if it takes too long.
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-child.Done():
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-child.Done()
		}
	})
	select {
	case <-log.ready:
		s.stop = stop
		tb.Cleanup(stop)
		return false, nil
	case <-child.Done():
		msg := log.String()
		return strings.Contains(msg, "could not bind") || strings.Contains(msg, "could not create any TCP/IP sockets"),
			fmt.Errorf("postgres exited (%v):\n%s", child.Err(), msg)
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-child.Done()
		return false, fmt.Errorf("postgres did not become ready: %w\n%s", ctx.Err(), log.String())
	}
}

// Restart stops the server (a fast shutdown: every client connection is
// closed) and starts it again on the same port and data directory; down,
// when not nil, runs while the server is stopped.
func (s *Server) Restart(tb testing.TB, down func()) {
	tb.Helper()
	s.stop()
	if down != nil {
		down()
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := s.run(ctx, tb); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
}

// logWatch is the server's stderr: it keeps the first 64 KiB (for
// failures) and closes ready when the server accepts connections. Only
// exec's copying goroutine writes; String is read after Wait.
type logWatch struct {
	ready    chan struct{}
	signaled bool
	buf      strings.Builder
	line     []byte
}

func (w *logWatch) Write(p []byte) (int, error) {
	if w.buf.Len() < 64<<10 {
		w.buf.Write(p)
	}
	if !w.signaled {
		w.line = append(w.line, p...)
		for {
			i := bytes.IndexByte(w.line, '\n')
			if i < 0 {
				break
			}
			if bytes.Contains(w.line[:i], []byte("database system is ready to accept connections")) {
				w.signaled = true
				close(w.ready)
				w.line = nil
				break
			}
			w.line = w.line[i+1:]
		}
	}
	return len(p), nil
}

func (w *logWatch) String() string { return w.buf.String() }

// Connect opens a connection to database db as the superuser, closed when
// tb ends.
func (s *Server) Connect(tb testing.TB, db string) *pgx.Conn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL(db))
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", db, err)
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// CreateDatabase creates database name (UTF8, C collation).
func (s *Server) CreateDatabase(tb testing.TB, name string) {
	tb.Helper()
	conn := s.Connect(tb, "postgres")
	if _, err := conn.Exec(tb.Context(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
}
