package main

// End-to-end tests: they build the mandate binary once and run "mandate
// serve" as a subprocess on free ports with a temporary data directory.

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // database/sql driver "duckdb", to age a data directory
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/catalog/logtest"
	"github.com/mandatehq/mandate/catalog/proctest"
	"github.com/mandatehq/mandate/schema"
)

const (
	// e2eAdminPassword is MANDATE_ADMIN_PASSWORD of the servers the tests
	// start, unless a test has the password generated.
	e2eAdminPassword = "e2e-admin-pw"
	// startTimeout bounds a start of the server up to a healthy /healthz.
	startTimeout = 60 * time.Second
	// stopTimeout bounds the exit after SIGTERM or SIGKILL.
	stopTimeout = 30 * time.Second
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	if u := os.Getenv(benchProxyEnv); u != "" { // the gateway benchmarks' proxy process
		runBenchProxy(u)
		return
	}
	// The binary's directory is removed with the test process's
	// temporary directory.
	os.Exit(proctest.RunInTempDir(m))
}

// mandateBinary builds the binary once per test run (go test puts its go
// command first on PATH) and returns its path.
func mandateBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: builds and runs the mandate binary")
	}
	binOnce.Do(func() {
		var dir string
		if dir, binErr = os.MkdirTemp("", "mandate-e2e-"); binErr != nil {
			return
		}
		binPath = filepath.Join(dir, "mandate")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		// The binary (≈ 140 MB) on the disk now, not when the kernel's
		// writeback gets to it (up to 30 s later): that writeback would
		// land in a benchmark's measured phase, and every durable write
		// (the audit log's) would wait for the disk's cache flush
		// behind it.
		binErr = syncFile(binPath)
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// syncFile makes the file at path durable.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// baseEnv is this process's environment without MANDATE_* variables.
func baseEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MANDATE_") })
}

// syncBuffer is a child process's output, read while it is written.
type syncBuffer = logtest.Buffer

// runBinary runs the binary to completion and returns its output and exit
// code.
func runBinary(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mandateBinary(t), args...)
	cmd.Env = append(baseEnv(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		code = ee.ExitCode()
	default:
		t.Fatalf("mandate %s: %v\nstderr: %s", strings.Join(args, " "), err, e.String())
	}
	return o.String(), e.String(), code
}

// serverOpts configures startServer.
type serverOpts struct {
	dataDir          string   // default: a new temporary directory
	generatePassword bool     // no MANDATE_ADMIN_PASSWORD: the server generates one
	env              []string // more KEY=VALUE for the server
	args             []string // more flags
	addrsInEnv       bool     // data dir and addresses as MANDATE_* variables instead of flags
	httpTLS          bool     // the HTTP listener serves TLS (args hold --http-tls on)
	bin              string   // the mandate binary to run (default: this tree's, mandateBinary)
}

// server is a running "mandate serve" subprocess.
type server struct {
	dataDir  string
	sqlAddr  string
	httpAddr string
	password string // admin password (MANDATE_ADMIN_PASSWORD or the generated one)
	httpURL  string // http:// or https:// and httpAddr

	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	done   <-chan struct{} // closed when the process has exited (cmd.ProcessState is set)
}

var errExited = errors.New("server exited")

// freeAddrs returns n distinct 127.0.0.1 addresses that were free a moment
// ago: another process may take them before the server binds (see
// startServer's retry).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

// startServer starts "mandate serve" and waits until /healthz answers. The
// server is stopped with SIGTERM, and must exit 0, when the test ends
// (unless the test killed or stopped it). A start that fails because a port
// was taken in the meantime is retried on other ports.
func startServer(t testing.TB, o serverOpts) *server {
	t.Helper()
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	for attempt := 1; ; attempt++ {
		s, err := launch(t, o)
		if err == nil {
			return s
		}
		if attempt < 5 && strings.Contains(s.stderr.String(), "address already in use") {
			t.Logf("port taken, retrying: %s", s.stderr.String())
			continue
		}
		t.Fatalf("server did not start: %v\nstdout:\n%s\nstderr:\n%s", err, s.stdout.String(), s.stderr.String())
	}
}

// launch starts the process and waits for readiness; on error the returned
// server has exited.
func launch(t testing.TB, o serverOpts) (*server, error) {
	t.Helper()
	addrs := freeAddrs(t, 2)
	s := &server{dataDir: o.dataDir, sqlAddr: addrs[0], httpAddr: addrs[1], httpURL: "http://" + addrs[1]}
	if o.httpTLS {
		s.httpURL = "https://" + addrs[1]
	}
	args := []string{"serve"}
	env := append(baseEnv(), o.env...)
	if o.addrsInEnv {
		env = append(env, "MANDATE_DATA_DIR="+s.dataDir, "MANDATE_SQL_ADDR="+s.sqlAddr, "MANDATE_HTTP_ADDR="+s.httpAddr)
	} else {
		args = append(args, "--data-dir", s.dataDir, "--sql-addr", s.sqlAddr, "--http-addr", s.httpAddr)
	}
	args = append(args, o.args...)
	if !o.generatePassword {
		env = append(env, "MANDATE_ADMIN_PASSWORD="+e2eAdminPassword)
		s.password = e2eAdminPassword
	}
	bin := o.bin
	if bin == "" {
		bin = mandateBinary(t)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = &s.stdout, &s.stderr
	// Killed if this test process dies without stopping it (-timeout).
	child, err := proctest.Start(s.cmd, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	s.done = child.Done()
	t.Cleanup(func() {
		if !s.exited() {
			s.stop(t)
		}
	})
	if err := s.waitReady(); err != nil {
		if !s.exited() {
			_ = s.cmd.Process.Kill()
			<-s.done
		}
		return s, err
	}
	if o.generatePassword {
		if b, err := os.ReadFile(filepath.Join(s.dataDir, "admin-password")); err == nil {
			s.password = strings.TrimSpace(string(b))
		}
	}
	return s, nil
}

// waitReady polls /healthz until it answers {"status":"ok"}, the process
// exits (errExited) or startTimeout passes.
func (s *server) waitReady() error {
	client := &http.Client{Timeout: 2 * time.Second,
		// Readiness only: the certificate is checked by the tests that care.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get(s.httpURL + "/healthz")
		if err == nil {
			var body struct{ Status string }
			derr := json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && derr == nil && body.Status == "ok" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no healthy /healthz on %s after %s (last error: %v)", s.httpAddr, startTimeout, err)
		}
		select {
		case <-s.done:
			return fmt.Errorf("%w: %s", errExited, s.cmd.ProcessState)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit and returns its exit code (-1 when
// killed by a signal).
func (s *server) wait(t testing.TB) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("server did not exit within %s; stderr:\n%s", stopTimeout, s.stderr.String())
	}
	return s.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and checks that the server exits 0.
func (s *server) stop(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !s.exited() {
		t.Fatal(err)
	}
	if code := s.wait(t); code != 0 {
		t.Errorf("server exited with %d after SIGTERM, want 0; stderr:\n%s", code, s.stderr.String())
	}
}

// kill sends SIGKILL and waits for the process to die.
func (s *server) kill(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil && !s.exited() {
		t.Fatal(err)
	}
	s.wait(t)
}

// connConfig is a pgx configuration for the server's SQL endpoint with
// sslmode=require.
func (s *server) connConfig(t testing.TB, user, password, database string) *pgx.ConnConfig {
	t.Helper()
	host, port, _ := net.SplitHostPort(s.sqlAddr)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=require connect_timeout=30",
		connValue(host), connValue(port), connValue(user), connValue(database)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	return cfg
}

// connect opens a connection that is closed when the test ends.
func (s *server) connect(t testing.TB, user, password, database string) (*pgx.Conn, error) {
	t.Helper()
	c, err := pgx.ConnectConfig(t.Context(), s.connConfig(t, user, password, database))
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c, nil
}

// admin connects as admin to the system catalog.
func (s *server) admin(t testing.TB) *pgx.Conn {
	t.Helper()
	c, err := s.connect(t, "admin", s.password, "system")
	if err != nil {
		t.Fatalf("connect as admin: %v", err)
	}
	return c
}

func mustExec(t testing.TB, c *pgx.Conn, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := c.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// queryRows runs q and returns its rows as "a|b|c" strings, NULL as "".
func queryRows(t testing.TB, c *pgx.Conn, q string) []string {
	t.Helper()
	rows, err := c.Query(t.Context(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		fields := make([]string, len(vals))
		for i, v := range vals {
			if v != nil {
				fields[i] = fmt.Sprint(v)
			}
		}
		out = append(out, strings.Join(fields, "|"))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return out
}

// sqlState returns the SQLSTATE of a server error, "" for other errors.
func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended waiting for %s", what)
		case <-time.After(time.Millisecond):
		}
	}
}

// TestKillDurability: a GRANT that returned is still there after kill -9 and
// a restart on the same data directory.
func TestKillDurability(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	c := s.admin(t)
	mustExec(t, c,
		`CREATE GROUP "data-eng"`,
		`CREATE CONNECTION github TYPE MCP OPTIONS (url 'https://api.githubcopilot.com/mcp/')`)
	if _, err := c.Exec(t.Context(), `GRANT USE_CONNECTION ON CONNECTION github TO "data-eng"`); err != nil {
		t.Fatal(err)
	}
	s.kill(t) // as soon as the GRANT returned

	s2 := startServer(t, serverOpts{dataDir: s.dataDir})
	got := queryRows(t, s2.admin(t), `SHOW GRANTS ON CONNECTION github`)
	want := "data-eng|USE CONNECTION|CONNECTION|system.ai.github|"
	if !slices.Contains(got, want) {
		t.Errorf("after kill -9 and restart, SHOW GRANTS ON CONNECTION github = %q, want a row %q", got, want)
	}
}

// TestKillDurabilityBurst: 8 clients GRANT and REVOKE concurrently (group
// commit) until the server is killed mid-burst. After a restart every
// statement that returned success holds: a connection whose last
// acknowledged statement was a GRANT has the grant, one whose last was a
// REVOKE has none. Only the statement in flight at the kill may have gone
// either way.
func TestKillDurabilityBurst(t *testing.T) {
	t.Parallel()
	const clients, perClient = 8, 4
	killAfter := 200 + rand.IntN(300) // acknowledged statements
	s := startServer(t, serverOpts{})
	admin := s.admin(t)
	var setup strings.Builder
	setup.WriteString(`CREATE GROUP burst;`)
	for i := range clients {
		for k := range perClient {
			fmt.Fprintf(&setup, "CREATE CONNECTION c%d_%d TYPE MCP OPTIONS (url 'https://example.invalid/mcp');", i, k)
		}
	}
	mustExec(t, admin, setup.String())
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = s.admin(t)
	}

	type clientState struct {
		granted  [perClient]bool // state after the last acknowledged statement
		inFlight int             // connection of the statement sent and not answered, -1 if none
		err      error           // the error that ended the client (the kill)
	}
	var (
		mu     sync.Mutex
		state  [clients]clientState
		acked  int // statements that returned success
		grants int // of which GRANTs
		wg     sync.WaitGroup
	)
	for i, c := range conns {
		wg.Go(func() {
			for n := 0; ; n++ {
				k := n % perClient
				mu.Lock()
				grant := !state[i].granted[k]
				state[i].inFlight = k
				mu.Unlock()
				q := fmt.Sprintf("GRANT USE_CONNECTION ON CONNECTION c%d_%d TO burst", i, k)
				if !grant {
					q = fmt.Sprintf("REVOKE USE_CONNECTION ON CONNECTION c%d_%d FROM burst", i, k)
				}
				_, err := c.Exec(t.Context(), q)
				mu.Lock()
				if err != nil {
					state[i].err = err
					mu.Unlock()
					return
				}
				state[i].granted[k] = grant
				state[i].inFlight = -1
				acked++
				if grant {
					grants++
				}
				mu.Unlock()
			}
		})
	}
	waitFor(t, time.Minute, fmt.Sprintf("%d acknowledged statements", killAfter), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked >= killAfter || slices.ContainsFunc(state[:], func(c clientState) bool { return c.err != nil })
	})
	s.kill(t)
	wg.Wait()
	for i, c := range state {
		if code := sqlState(c.err); code != "" {
			t.Errorf("client %d: %v (SQLSTATE %s), want success or a broken connection", i, c.err, code)
		}
	}
	if acked < killAfter {
		t.Fatalf("only %d statements acknowledged before the clients failed, want %d", acked, killAfter)
	}
	t.Logf("killed after %d acknowledged statements (%d GRANTs)", acked, grants)

	s2 := startServer(t, serverOpts{dataDir: s.dataDir})
	present := map[string]bool{}
	for _, row := range queryRows(t, s2.admin(t), `SHOW GRANTS TO burst`) {
		f := strings.Split(row, "|")
		if len(f) != 5 || f[1] != "USE CONNECTION" || f[2] != "CONNECTION" {
			t.Errorf("unexpected grant row %q", row)
			continue
		}
		present[f[3]] = true
	}
	checked := 0
	for i, c := range state {
		for k, granted := range c.granted {
			key := fmt.Sprintf("system.ai.c%d_%d", i, k)
			if k == c.inFlight {
				delete(present, key) // either outcome is right
				continue
			}
			checked++
			switch {
			case granted && !present[key]:
				t.Errorf("acknowledged GRANT on %s lost after kill -9", key)
			case !granted && present[key]:
				t.Errorf("acknowledged REVOKE on %s undone after kill -9", key)
			}
			delete(present, key)
		}
	}
	for key := range present {
		t.Errorf("grant on %s present after restart, on no connection of the test", key)
	}
	if checked == 0 {
		t.Error("no connection had a known state")
	}
}

func fileMode(t testing.TB, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestFirstStartGeneratedPassword: without MANDATE_ADMIN_PASSWORD the first
// start generates the admin password, prints it once and writes it to
// DATA_DIR/admin-password (0600); later starts keep it and print nothing.
func TestFirstStartGeneratedPassword(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{generatePassword: true})
	pwFile := filepath.Join(s.dataDir, "admin-password")
	b, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatalf("first start: %v", err)
	}
	pw := strings.TrimSpace(string(b))
	if len(pw) < 16 {
		t.Fatalf("generated password %q is shorter than 16 characters", pw)
	}
	if string(b) != pw+"\n" {
		t.Errorf("admin-password holds %q, want the password and a newline", b)
	}
	if m := fileMode(t, pwFile); m != 0o600 {
		t.Errorf("admin-password mode %v, want 0600", m)
	}
	if m := fileMode(t, filepath.Join(s.dataDir, "master.key")); m != 0o600 {
		t.Errorf("master.key mode %v, want 0600", m)
	}
	if out := waitStdout(s, pw); !strings.Contains(out, pw) {
		t.Errorf("stdout of the first start lacks the generated password %q:\n%s", pw, out)
	}
	if n := strings.Count(s.stdout.String()+s.stderr.String(), pw); n != 1 {
		t.Errorf("the password appears %d times in the output, want once (stdout)", n)
	}
	mustExec(t, s.admin(t), `SHOW CATALOGS`)
	s.stop(t)

	s2 := startServer(t, serverOpts{dataDir: s.dataDir, generatePassword: true})
	out2 := waitStdout(s2, "Mandate is ready") // the pipe's copy may lag /healthz
	if strings.Contains(out2, pw) || strings.Contains(out2, "Generated") {
		t.Errorf("second start printed a password:\n%s", out2)
	}
	if !strings.Contains(out2, "Mandate is ready") {
		t.Errorf("second start's stdout lacks \"Mandate is ready\":\n%s", out2)
	}
	if b2, err := os.ReadFile(pwFile); err != nil || string(b2) != string(b) {
		t.Errorf("admin-password after the second start: %q, %v; want %q", b2, err, b)
	}
	if _, err := s2.connect(t, "admin", pw, "system"); err != nil {
		t.Errorf("the generated password no longer works after a restart: %v", err)
	}
}

// TestFirstStartAdminPasswordEnv: MANDATE_ADMIN_PASSWORD sets the admin
// password on the first start only; nothing is printed or written.
func TestFirstStartAdminPasswordEnv(t *testing.T) {
	t.Parallel()
	const pw = "first-start-pw-7f3a"
	env := []string{"MANDATE_ADMIN_PASSWORD=" + pw}
	s := startServer(t, serverOpts{generatePassword: true, env: env})
	if _, err := os.Stat(filepath.Join(s.dataDir, "admin-password")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin-password exists with MANDATE_ADMIN_PASSWORD set (stat: %v)", err)
	}
	if _, err := s.connect(t, "admin", pw, "system"); err != nil {
		t.Fatalf("login with MANDATE_ADMIN_PASSWORD: %v", err)
	}
	s.stop(t) // all output copied once the process is waited for
	if out := s.stdout.String() + s.stderr.String(); strings.Contains(out, pw) || strings.Contains(out, "Generated") {
		t.Errorf("output shows the password:\n%s", out)
	}

	// Later starts ignore the variable: the stored password stays.
	s2 := startServer(t, serverOpts{dataDir: s.dataDir, generatePassword: true,
		env: []string{"MANDATE_ADMIN_PASSWORD=another-password"}})
	if _, err := s2.connect(t, "admin", pw, "system"); err != nil {
		t.Errorf("login with the first password after a restart: %v", err)
	}
	if _, err := s2.connect(t, "admin", "another-password", "system"); sqlState(err) != "28P01" {
		t.Errorf("login with a later MANDATE_ADMIN_PASSWORD: %v, want SQLSTATE 28P01", err)
	}
}

// serveFlags are serve's flags; --help must list each with its variable.
var serveFlags = []string{"data-dir", "sql-addr", "http-addr", "tls-cert", "tls-key", "log-format", "log-level",
	"statement-timeout", "max-message-size", "max-memory", "max-concurrent-queries", "max-queries-per-user", "query-threads",
	"max-connections", "superuser-reserved-connections", "max-startup-connections", "max-startup-connections-per-host",
	"authentication-timeout", "idle-session-timeout", "message-timeout", "allow-cleartext-loopback"}

func TestHelp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"serve", "--help"}, append(slices.Clone(serveFlags), "MANDATE_ADMIN_PASSWORD", "MANDATE_MASTER_KEY")},
		{[]string{"serve", "-h"}, serveFlags},
		{[]string{"--help"}, []string{"mandate serve", "mandate version", "gateway node (MCP and LLM)"}},
		{[]string{"gateway", "--help"}, []string{"--catalog [MANDATE_CATALOG]", "MCP servers and LLM APIs", "/llm"}},
		{[]string{"loadgen", "grants", "--help"}, []string{"-addr", "-password", "-clients", "-duration", "-connections"}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, code := runBinary(t, nil, tc.args...)
			if code != 0 {
				t.Errorf("exit code %d, want 0; stderr:\n%s", code, stderr)
			}
			out := stdout + stderr
			for _, w := range tc.want {
				if tc.args[0] == "serve" && !strings.HasPrefix(w, "MANDATE_") {
					w = fmt.Sprintf("--%s [%s]", w, envName(w))
				}
				if !strings.Contains(out, w) {
					t.Errorf("help lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestEnvConfiguration: every flag can be set with its MANDATE_* variable;
// a flag overrides the variable.
func TestEnvConfiguration(t *testing.T) {
	t.Parallel()
	t.Run("variables only", func(t *testing.T) {
		s := startServer(t, serverOpts{addrsInEnv: true, env: []string{"MANDATE_LOG_FORMAT=console"}})
		if _, err := s.connect(t, "admin", s.password, "system"); err != nil {
			t.Fatalf("connect to MANDATE_SQL_ADDR %s: %v", s.sqlAddr, err)
		}
		if _, err := os.Stat(filepath.Join(s.dataDir, duckstore.FileName)); err != nil {
			t.Errorf("MANDATE_DATA_DIR not used: %v", err)
		}
		if errOut := s.stderr.String(); strings.Contains(errOut, `{"level"`) {
			t.Errorf("MANDATE_LOG_FORMAT=console ignored, stderr is JSON:\n%s", errOut)
		}
	})
	t.Run("flag overrides variable", func(t *testing.T) {
		s := startServer(t, serverOpts{env: []string{"MANDATE_SQL_ADDR=127.0.0.1:1", "MANDATE_LOG_LEVEL=bogus"},
			args: []string{"--log-level", "warn"}})
		if _, err := s.connect(t, "admin", s.password, "system"); err != nil {
			t.Fatalf("connect to --sql-addr %s: %v", s.sqlAddr, err)
		}
	})
}

// TestBadConfiguration: invalid values fail with a message naming the
// value, exit non-zero, and are refused before the data directory is made.
func TestBadConfiguration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"duration", []string{"--statement-timeout", "soon"}, nil, `invalid value "soon" for flag -statement-timeout`},
		{"integer", []string{"--max-message-size", "big"}, nil, `invalid value "big" for flag -max-message-size`},
		{"log level", []string{"--log-level", "loud"}, nil, `invalid --log-level "loud"`},
		{"log format", []string{"--log-format", "xml"}, nil, `invalid --log-format "xml"`},
		{"tls half", []string{"--tls-cert", "cert.pem"}, nil, "--tls-cert and --tls-key must be given together"},
		{"unknown flag", []string{"--sql-adr", "x"}, nil, "flag provided but not defined: -sql-adr"},
		{"argument", []string{"extra"}, nil, "unexpected arguments: [extra]"},
		{"variable", nil, []string{"MANDATE_STATEMENT_TIMEOUT=soon"}, `invalid MANDATE_STATEMENT_TIMEOUT="soon"`},
		{"master key", nil, []string{"MANDATE_MASTER_KEY=short"}, "MANDATE_MASTER_KEY must hold a 32-byte key"},
		{"memory size", []string{"--max-memory", "lots"}, nil, `invalid value "lots" for flag -max-memory`},
		{"memory too small", []string{"--max-memory", "100MiB"}, nil, "--max-memory (MANDATE_MAX_MEMORY) must be at least 256MiB"},
		{"no query threads", []string{"--query-threads", "0"}, nil, "--query-threads (MANDATE_QUERY_THREADS) must be at least 1"},
		{"reserved connections", []string{"--max-connections", "3"}, nil, "--superuser-reserved-connections (3) must be less than --max-connections (3)"},
		{"store", []string{"--store", "mysql://db"}, nil, "--store (MANDATE_STORE) must be embedded or a postgres://user@host/db URL"},
		{"store without master key", []string{"--store", "postgres://mandate@127.0.0.1:1/mandate"}, nil, "every replica needs the same MANDATE_MASTER_KEY"},
		{"query role without store", []string{"--store-query-url", "postgres://reader:pw@127.0.0.1:1/mandate"}, nil, "--store-query-url (MANDATE_STORE_QUERY_URL) needs --store postgres://"},
		{"query role without password", []string{"--store", "postgres://mandate@127.0.0.1:1/mandate", "--store-query-url", "reader@127.0.0.1"}, nil, "--store-query-url (MANDATE_STORE_QUERY_URL) must be a postgres://role:password@host/db URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			args := append([]string{"serve", "--data-dir", dir, "--sql-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, tc.args...)
			stdout, stderr, code := runBinary(t, tc.env, args...)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero; stdout:\n%s", stdout)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if strings.Contains(stdout, "Mandate is ready") {
				t.Errorf("stdout says ready:\n%s", stdout)
			}
			if tc.name != "master key" { // the key is read from the data directory, made first
				if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("data directory created for a bad configuration (stat: %v)", err)
				}
			}
		})
	}
	t.Run("unknown command", func(t *testing.T) {
		_, stderr, code := runBinary(t, nil, "serv")
		if code == 0 || !strings.Contains(stderr, `unknown command "serv"`) {
			t.Errorf("exit code %d, stderr:\n%s", code, stderr)
		}
	})
}

// TestConnectErrors checks the SQLSTATEs of refused connections.
func TestConnectErrors(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	tests := []struct {
		name, user, password, database, state string
	}{
		{"unknown database", "admin", e2eAdminPassword, "nosuchdb", "3D000"},
		{"wrong password", "admin", "wrong-password", "system", "28P01"},
		{"unknown user", "nobody", e2eAdminPassword, "system", "28P01"},
		{"empty password", "admin", "", "system", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.connect(t, tc.user, tc.password, tc.database)
			if err == nil {
				t.Fatal("connected, want an error")
			}
			if tc.state != "" && sqlState(err) != tc.state {
				t.Errorf("error %v, want SQLSTATE %s", err, tc.state)
			}
		})
	}
	if _, err := s.connect(t, "admin", e2eAdminPassword, "system"); err != nil {
		t.Errorf("valid login after the failures: %v", err)
	}
}

// waitStdout waits (up to 10 s) until the server's stdout contains substr:
// the child's output reaches the buffer through a pipe copier.
func waitStdout(s *server, substr string) string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out := s.stdout.String()
		if strings.Contains(out, substr) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPsqlQuickstart runs the quickstart with psql (libpq), with the
// connection string the server prints, sslmode=require and PGPASSWORD.
func TestPsqlQuickstart(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not on PATH (make deps installs postgresql-client)")
	}
	s := startServer(t, serverOpts{})
	m := regexp.MustCompile(`psql "([^"]+)"`).FindStringSubmatch(waitStdout(s, `psql "`))
	if m == nil {
		t.Fatalf("stdout lacks the psql command:\n%s", s.stdout.String())
	}
	connStr := m[1]
	if !strings.Contains(connStr, "sslmode=require") {
		t.Errorf("printed connection string %q lacks sslmode=require", connStr)
	}
	const quickstart = `CREATE GROUP "data-eng";
CREATE CONNECTION github TYPE MCP OPTIONS (url 'https://api.githubcopilot.com/mcp/');
GRANT USE_CONNECTION ON CONNECTION github TO "data-eng";
SHOW GRANTS ON CONNECTION github;
`
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, psql, connStr+" connect_timeout=30", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1")
	// HOME without ~/.postgresql: sslmode=require does not verify.
	cmd.Env = append(baseEnv(), "PGPASSWORD="+s.password, "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(quickstart)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("psql: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(stdout.String(), "\n")
	for _, want := range []string{"CREATE GROUP", "CREATE CONNECTION", "GRANT", "data-eng|USE CONNECTION|CONNECTION|system.ai.github|"} {
		if !slices.Contains(lines, want) {
			t.Errorf("psql output lacks the line %q:\n%s", want, stdout.String())
		}
	}
	if stderr.Len() > 0 {
		t.Errorf("psql stderr:\n%s", stderr.String())
	}
}

// TestNewerSchemaRefused: a data directory whose schema_version is above
// schema.LatestVersion is refused with a clear message and left unchanged.
func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	s.stop(t)
	path := filepath.Join(s.dataDir, duckstore.FileName)
	newer := schema.LatestVersion + 1
	setSchemaVersion(t, path, newer)

	stdout, stderr, code := runBinary(t, []string{"MANDATE_ADMIN_PASSWORD=" + e2eAdminPassword},
		"serve", "--data-dir", s.dataDir, "--sql-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if code == 0 {
		t.Fatalf("exit code 0 on a newer data directory; stdout:\n%s", stdout)
	}
	want := fmt.Sprintf("data directory was written by a newer Mandate (schema version %d, this binary supports %d); upgrade Mandate",
		newer, schema.LatestVersion)
	if !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if strings.Contains(stdout, "Mandate is ready") {
		t.Errorf("stdout says ready:\n%s", stdout)
	}
	if v := schemaVersionOf(t, path); v != newer {
		t.Errorf("schema_version %d after the refused start, want %d (unchanged)", v, newer)
	}
}

func openDuckDB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("duckdb", path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func setSchemaVersion(t testing.TB, path string, v int) {
	t.Helper()
	db := openDuckDB(t, path)
	defer db.Close()
	res, err := db.ExecContext(t.Context(), `UPDATE mandate_meta SET value = $1 WHERE key = 'schema_version'`, v)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("UPDATE mandate_meta: %d rows, %v", n, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func schemaVersionOf(t testing.TB, path string) int {
	t.Helper()
	db := openDuckDB(t, path)
	defer db.Close()
	var v int
	if err := db.QueryRowContext(t.Context(), `SELECT value FROM mandate_meta WHERE key = 'schema_version'`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSecretsNotLogged: connection secrets and passwords never reach the
// server's output, at debug level, in successful and failed statements and
// logins.
func TestSecretsNotLogged(t *testing.T) {
	t.Parallel()
	const token, password = "tok-SECRET-123", "pw-SECRET-456"
	s := startServer(t, serverOpts{args: []string{"--log-level", "debug"}})
	c := s.admin(t)
	create := `CREATE CONNECTION gh TYPE MCP OPTIONS (url 'https://api.githubcopilot.com/mcp/', auth_mode 'shared_principal', bearer_token '` + token + `')`
	mustExec(t, c,
		create,
		`CREATE USER alice WITH PASSWORD '`+password+`'`,
		`ALTER CONNECTION gh SET OPTIONS (url 'https://api.githubcopilot.com/mcp/', auth_mode 'shared_principal', bearer_token '`+token+`')`,
		`ALTER USER alice WITH PASSWORD '`+password+`'`)
	for _, q := range []string{
		create, // duplicate
		`CREATE USER alice WITH PASSWORD '` + password + `'`,                                              // duplicate
		`CREATE CONNECTION gh2 TYPE MCP OPTIONS (url 'https://x.invalid/', bearer_token '` + token + `')`, // no auth_mode
		`CREATE USER bob WITH PASSWORD '` + password + `' garbage`,                                        // syntax error
		`SELECT '` + token + `' FROM nowhere`,                                                             // not supported

		`CREATE CONNECTION gh3 TYPE MCP OPTIONS (url 'https://x.invalid/', auth_mode 'shared_principal', bearer_tokn '` + token + `')`, // mistyped secret option
		`CREATE CONNECTION gh4 TYPE MCP OPTIONS (url 'https://x.invalid/mcp?access_token=` + token + `')`,                              // credentials in the URL
		`CREATE CONNECTION gh5 TYPE MCP OPTIONS (url 'https://x.invalid/', refresh_token '` + token + `')`,                             // unknown, named like a secret
	} {
		if _, err := c.Exec(t.Context(), q); err == nil {
			t.Errorf("%s: succeeded, want an error", q)
		}
	}
	if got := queryRows(t, c, `DESCRIBE CONNECTION gh`); slices.ContainsFunc(got, func(r string) bool { return strings.Contains(r, token) }) {
		t.Errorf("DESCRIBE CONNECTION shows the token: %q", got)
	}
	if _, err := s.connect(t, "alice", password, "system"); err != nil {
		t.Errorf("login as alice: %v", err)
	}
	if _, err := s.connect(t, "alice", password+"-wrong", "system"); sqlState(err) != "28P01" {
		t.Errorf("login with a wrong password: %v, want 28P01", err)
	}
	checkFilesLackSecrets(t, s.dataDir, token, password)
	s.stop(t)
	checkFilesLackSecrets(t, s.dataDir, token, password)
	out := s.stdout.String() + s.stderr.String()
	if !strings.Contains(out, `"level":"debug"`) {
		t.Fatalf("no debug log lines: is --log-level debug in effect?\n%s", out)
	}
	for _, secret := range []string{token, password, e2eAdminPassword, "SECRET"} {
		if strings.Contains(out, secret) {
			t.Errorf("server output contains %q:\n%s", secret, out)
		}
	}
}

// checkFilesLackSecrets checks that no file of the data directory holds a
// secret in plain text (connection secrets are sealed, passwords stored as
// SCRAM verifiers, audited statements redacted).
func checkFilesLackSecrets(t testing.TB, dir string, secrets ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range secrets {
			if bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds %q in plain text", e.Name(), secret)
			}
		}
	}
}

// TestAcknowledgedMeansFsynced: kill -9 cannot tell a write from a durable
// one (the page cache survives the process), so this counts the fsyncs:
// statements run one at a time (no group commit) each need one, on a file
// of the data directory, before they return.
func TestAcknowledgedMeansFsynced(t *testing.T) {
	t.Parallel()
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not on PATH")
	}
	const statements = 100
	s := startServer(t, serverOpts{})
	c := s.admin(t)
	mustExec(t, c, `CREATE GROUP fsynced`, `CREATE CONNECTION fs TYPE MCP OPTIONS (url 'https://example.invalid/mcp')`)

	// -ff: one output file per thread, so that no call is split in two
	// lines by another thread's; -y: file paths of the descriptors.
	outDir := t.TempDir()
	cmd := exec.Command(strace, "-ff", "-y", "-e", "trace=fsync,fdatasync", "-e", "signal=none",
		"-o", filepath.Join(outDir, "strace"), "-p", strconv.Itoa(s.cmd.Process.Pid))
	var straceErr syncBuffer
	cmd.Stderr = &straceErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	straceDone := make(chan struct{})
	go func() { _ = cmd.Wait(); close(straceDone) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		<-straceDone
	})
	waitFor(t, 30*time.Second, "strace to attach", func() bool {
		select {
		case <-straceDone:
			t.Skipf("strace cannot attach (ptrace not permitted here?): %s", straceErr.String())
		default:
		}
		return strings.Contains(straceErr.String(), "attached")
	})

	for i := range statements {
		q := `GRANT USE_CONNECTION ON CONNECTION fs TO fsynced`
		if i%2 == 1 {
			q = `REVOKE USE_CONNECTION ON CONNECTION fs FROM fsynced`
		}
		mustExec(t, c, q)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-straceDone:
	case <-time.After(stopTimeout):
		t.Fatal("strace did not detach")
	}
	files, err := filepath.Glob(filepath.Join(outDir, "strace.*"))
	if err != nil {
		t.Fatal(err)
	}
	var all strings.Builder
	fsyncs := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
		for _, line := range strings.Split(string(b), "\n") {
			// fsync(9</data/dir/catalog.wal>) = 0
			if strings.Contains(line, "sync(") && strings.Contains(line, "<"+s.dataDir+string(filepath.Separator)) &&
				strings.HasSuffix(strings.TrimSpace(line), "= 0") {
				fsyncs++
			}
		}
	}
	t.Logf("%d fsyncs of data directory files for %d statements", fsyncs, statements)
	if fsyncs < statements {
		t.Errorf("%d fsyncs of data directory files for %d acknowledged statements run one at a time, want at least %d:\n%s",
			fsyncs, statements, statements, all.String())
	}
}

// TestManyConnections: 200 clients connected at once each run a few
// statements.
func TestManyConnections(t *testing.T) {
	t.Parallel()
	const n = 200
	// More sessions, and logins at once from one address, than the
	// defaults allow (100, 32).
	s := startServer(t, serverOpts{args: []string{"--max-connections", "250", "--max-startup-connections-per-host", "256"}})
	conns := make([]*pgx.Conn, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { conns[i], errs[i] = s.connect(t, "admin", s.password, "system") })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("connect: %v", err)
	}
	// All n are open now; run statements on each concurrently.
	for i, c := range conns {
		wg.Go(func() {
			// The parameter goes as text: Mandate describes $1 of $1::int
			// as text (PostgreSQL would infer int4 from the cast).
			var v int
			if err := c.QueryRow(t.Context(), `SELECT $1::int`, strconv.Itoa(i)).Scan(&v); err != nil || v != i {
				errs[i] = fmt.Errorf("client %d: SELECT $1::int: %d, %v", i, v, err)
				return
			}
			if _, err := c.Exec(t.Context(), fmt.Sprintf(`CREATE GROUP "many-%d"`, i)); err != nil {
				errs[i] = fmt.Errorf("client %d: CREATE GROUP: %w", i, err)
				return
			}
			rows, err := c.Query(t.Context(), `SHOW GROUPS`)
			if err == nil {
				rows.Close()
				err = rows.Err()
			}
			if err != nil {
				errs[i] = fmt.Errorf("client %d: SHOW GROUPS: %w", i, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	groups := 0
	for _, row := range queryRows(t, conns[0], `SHOW GROUPS`) {
		if strings.HasPrefix(row, "many-") {
			groups++
		}
	}
	if groups != n {
		t.Errorf("SHOW GROUPS lists %d many-* groups, want %d", groups, n)
	}
}

// TestLoadgen runs "mandate loadgen grants" briefly against a server.
func TestLoadgen(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{})
	stdout, stderr, code := runBinary(t, nil, "loadgen", "grants", "--addr", s.sqlAddr, "--password", s.password,
		"--clients", "2", "--duration", "1s")
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	fields := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) >= 2 {
			fields[strings.Join(f[:len(f)-1], " ")] = f[len(f)-1]
		}
	}
	if n, err := strconv.Atoi(fields["statements"]); err != nil || n <= 0 {
		t.Errorf("statements %q, want > 0:\n%s", fields["statements"], stdout)
	}
	if r, err := strconv.ParseFloat(fields["statements/s"], 64); err != nil || r <= 0 {
		t.Errorf("statements/s %q, want > 0:\n%s", fields["statements/s"], stdout)
	}
	if fields["errors"] != "0" {
		t.Errorf("errors %q, want 0:\n%s", fields["errors"], stdout)
	}
	for _, k := range []string{"latency p50", "latency p99"} {
		if !strings.HasSuffix(fields[k], "ms") {
			t.Errorf("%s %q, want a latency in ms:\n%s", k, fields[k], stdout)
		}
	}
	// The run cleaned up after itself.
	for _, row := range queryRows(t, s.admin(t), `SHOW GROUPS`) {
		if strings.HasPrefix(row, "loadgen_") {
			t.Errorf("group %q left behind", row)
		}
	}
}
