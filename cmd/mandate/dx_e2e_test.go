package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
)

// TestHelpDefaults: serve --help prints each default once and says nothing
// of switches that are off.
func TestHelpDefaults(t *testing.T) {
	t.Parallel()
	stdout, stderr, code := runBinary(t, nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, bad := range []string{`(default "false")`, `(default "")`} {
		if strings.Contains(stdout, bad) {
			t.Errorf("help prints %s:\n%s", bad, stdout)
		}
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Count(line, "(default") > 1 {
			t.Errorf("two defaults on one line: %q", line)
		}
	}
	if !strings.Contains(stdout, "MCP gateway (/mcp/CONNECTION)") {
		t.Errorf("--http-addr does not say it serves the MCP gateway:\n%s", stdout)
	}
}

// TestVersion: mandate version names the module version and the Go that
// built it (and the VCS revision when the build recorded one).
func TestVersion(t *testing.T) {
	t.Parallel()
	stdout, stderr, code := runBinary(t, nil, "version")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !regexp.MustCompile(`^mandate \S+ \(.*go1\.\d+`).MatchString(stdout) {
		t.Errorf("version = %q, want mandate VERSION (..., goX.Y)", stdout)
	}
}

// TestLogsAreJSON: with --log-format json every line on stderr is one JSON
// object without duplicate keys, including what libraries log (the
// development identity provider refusing an unknown user) and a failed
// login; dev-token names an unknown user instead of blaming a signature.
func TestLogsAreJSON(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOpts{args: []string{"--dev", "--log-format", "json"}})
	_, errOut, code := runBinary(t, nil, "dev-token", "--data-dir", s.dataDir, "--user", "nobody@example.com")
	if code == 0 || !strings.Contains(errOut, `"nobody@example.com" is not a known principal`) ||
		strings.Contains(errOut, "signature") {
		t.Errorf("dev-token for an unknown user: exit %d, %q", code, errOut)
	}
	if _, err := s.connect(t, "admin", "wrong-password", "system"); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	waitFor(t, startTimeout, "the library's and the login's log lines", func() bool {
		out := s.stderr.String()
		return strings.Contains(out, "not a known principal") && strings.Contains(out, "password authentication failed")
	})
	s.stop(t)
	sc := bufio.NewScanner(strings.NewReader(s.stderr.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if err := checkJSONLine(line); err != nil {
			t.Errorf("log line %q: %v", line, err)
		}
	}
}

// checkJSONLine reports a line that is not one JSON object or that repeats a
// top-level key.
func checkJSONLine(line []byte) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		key := k.(string)
		if seen[key] {
			return errors.New("duplicate key " + key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}
