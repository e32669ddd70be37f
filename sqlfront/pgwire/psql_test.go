package pgwire

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// TestPsql drives the real psql client (libpq) over TLS. CI installs
// psql (postgresql-client); the test is skipped only when it is missing.
func TestPsql(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not on PATH")
	}
	ts := startServer(t)
	tests := []struct {
		name    string
		sslmode string
		command string
		stdout  string
		stderr  []string
		fail    bool
	}{
		{name: "select", sslmode: "require", command: "select 1", stdout: "1\n"},
		{name: "multi-statement", sslmode: "require", command: "select 1; create; series 3", stdout: "1\nCREATE TABLE\n1\n2\n3\n"},
		{name: "types as text", sslmode: "require", command: "types",
			stdout: "t|-12|123456|1099511627776|1.5|-3.25|12345.678|héllo wörld||\\x000102ff|2024-02-29|2024-02-29 12:34:56.789Z|a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11|{\"a\":1}|{\"b\": [1, 2]}\n||||||||||||||\n"},
		{name: "error", sslmode: "require", command: "fail", fail: true,
			stderr: []string{"ERROR:  division by zero\n", "LINE 1: fail\n          ^\n", "DETAIL:  the detail\n", "HINT:  the hint\n"}},
		{name: "plain", sslmode: "disable", command: "select 1", stdout: "1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			connStr := fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=d sslmode=%s connect_timeout=10", ts.addr.Port, testUser, tc.sslmode)
			cmd := exec.CommandContext(t.Context(), psql, connStr, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", tc.command)
			// HOME without ~/.postgresql keeps sslmode=require from verifying.
			cmd.Env = append(cmd.Environ(), "PGPASSWORD="+testPassword, "HOME="+t.TempDir(), "PGCLIENTENCODING=UTF8")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if (err != nil) != tc.fail {
				t.Fatalf("psql: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
			}
			if stdout.String() != tc.stdout {
				t.Errorf("stdout %q, want %q", stdout.String(), tc.stdout)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr %q lacks %q", stderr.String(), want)
				}
			}
			if tc.stderr == nil && stderr.Len() > 0 {
				t.Errorf("stderr %q", stderr.String())
			}
			if got := ts.handler.lastSession().info.TLS; got != (tc.sslmode == "require") {
				t.Errorf("session TLS = %v", got)
			}
		})
	}
}
