package sqlfront_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// runPsql runs psql as admin against f with sslmode=require and the given
// arguments, and returns its stdout, stderr and exit code. It skips the
// test when psql is not installed.
func runPsql(t *testing.T, f *frontend, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Skip("psql not installed (make deps installs it)")
	}
	connStr := fmt.Sprintf("host=127.0.0.1 port=%d user=admin dbname=system sslmode=require connect_timeout=10", f.Port)
	cmd := exec.CommandContext(t.Context(), psql, append([]string{connStr, "-X", "-v", "ON_ERROR_STOP=1"}, args...)...)
	// The caller's PG* variables are dropped; a HOME without ~/.postgresql
	// keeps sslmode=require from verifying the self-signed certificate;
	// PGPASSWORD answers the SCRAM exchange.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "PSQL") || strings.HasPrefix(kv, "HOME=")
	})
	cmd.Env = append(env, "PGPASSWORD="+adminPassword, "HOME="+t.TempDir(), "PGCLIENTENCODING=UTF8", "PGAPPNAME=psql-test")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("running psql: %v", err)
	}
	return out.String(), errOut.String(), code
}

func writeScript(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "script.sql")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPsqlQuickstart runs the quickstart with psql -f, as a user would.
func TestPsqlQuickstart(t *testing.T) {
	f := startFrontend(t)
	script := writeScript(t, `CREATE GROUP "data-analysts";
CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw';
ALTER GROUP "data-analysts" ADD USER "alice@example.com";
CREATE SERVICE PRINCIPAL "coding-agent";
CREATE CONNECTION my_github_mcp TYPE MCP
  OPTIONS (url 'https://mcp.github.example/mcp', auth_mode 'per_user_oauth', scopes 'repo read:org')
  COMMENT 'GitHub MCP server';
CREATE GROUP "sales-team";
CREATE GROUP "contractors";
CREATE CONNECTION my_salesforce_mcp TYPE MCP OPTIONS (url 'https://mcp.salesforce.example/mcp',
  auth_mode 'shared_principal', bearer_token 'sf-token');
CREATE CONNECTION my_prod_db_mcp TYPE MCP OPTIONS (url 'https://db.prod.example/mcp');
GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts";
GRANT USE_CONNECTION ON CONNECTION my_salesforce_mcp TO "sales-team";
REVOKE USE_CONNECTION ON CONNECTION my_prod_db_mcp FROM "contractors";
SHOW GRANTS ON CONNECTION my_github_mcp;
-- psql's own commands and a session query in the same file
\echo done
SELECT current_user, current_setting('application_name');
`)
	stdout, stderr, code := runPsql(t, f, "-A", "-f", script)
	if code != 0 || stderr != "" {
		t.Fatalf("psql exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	want := `CREATE GROUP
CREATE USER
ALTER GROUP
CREATE SERVICE PRINCIPAL
CREATE CONNECTION
CREATE GROUP
CREATE GROUP
CREATE CONNECTION
CREATE CONNECTION
GRANT
GRANT
REVOKE
principal|action_type|object_type|object_key|inherited_from
data-analysts|USE CONNECTION|CONNECTION|system.ai.my_github_mcp|
account users|USE SCHEMA|SCHEMA|system.ai|SCHEMA system.ai
account users|USE CATALOG|CATALOG|system|CATALOG system
(3 rows)
done
current_user|current_setting
admin|psql-test
(1 row)
`
	if d := firstDiff(want, stdout); d != "" {
		t.Errorf("psql output:\n%s", d)
	}

	t.Run("aligned output", func(t *testing.T) {
		stdout, stderr, code := runPsql(t, f, "-c", "DESCRIBE CONNECTION my_salesforce_mcp")
		if code != 0 {
			t.Fatalf("psql exit %d: %s", code, stderr)
		}
		for _, want := range []string{
			" info_name  ", // header, padded by psql
			" option.bearer_token | ********",
			"(10 rows)",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, stdout)
			}
		}
		if strings.Contains(stdout, "sf-token") {
			t.Errorf("DESCRIBE shows the bearer token:\n%s", stdout)
		}
	})
}

// TestPsqlErrors checks that psql can point at the error: it prints the
// statement line and a caret under the character the server reported.
func TestPsqlErrors(t *testing.T) {
	f := startFrontend(t)
	const bad = "GRANT USE_CONNECTION ON CONNECTON x TO y"
	// caret is what psql prints for the statement text it sent.
	caret := func(sent string) string {
		return "LINE 1: " + sent + "\n" + strings.Repeat(" ", len("LINE 1: ")+strings.Index(sent, "CONNECTON")) + "^\n"
	}

	t.Run("command", func(t *testing.T) {
		stdout, stderr, code := runPsql(t, f, "-c", bad)
		if code == 0 {
			t.Fatalf("psql succeeded: %s", stdout)
		}
		want := `ERROR:  syntax error at or near "CONNECTON": expected METASTORE, CATALOG, SCHEMA, CONNECTION, MODEL SERVICE, MODEL PROVIDER SERVICE, TABLE` + "\n" + caret(bad)
		if stderr != want {
			t.Errorf("stderr:\n%s\nwant:\n%s", stderr, want)
		}
	})

	t.Run("script stops at the error", func(t *testing.T) {
		script := writeScript(t, "CREATE GROUP before;\n"+bad+";\nCREATE GROUP after;\n")
		stdout, stderr, code := runPsql(t, f, "-f", script)
		if code != 3 {
			t.Errorf("exit code %d, want 3 (ON_ERROR_STOP)", code)
		}
		if stdout != "CREATE GROUP\n" {
			t.Errorf("stdout %q, want only the first statement's tag", stdout)
		}
		for _, want := range []string{script + ":2: ERROR:  syntax error at or near \"CONNECTON\"", caret(bad + ";")} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
		stdout, _, _ = runPsql(t, f, "-A", "-t", "-c", "SHOW GROUPS")
		if !strings.Contains(stdout, "before|") || strings.Contains(stdout, "after|") {
			t.Errorf("groups after the script:\n%s", stdout)
		}
	})

	t.Run("verbose errors show the SQLSTATE", func(t *testing.T) {
		_, stderr, code := runPsql(t, f, "-v", "VERBOSITY=verbose", "-c", "DROP CATALOG system")
		if code == 0 || !strings.Contains(stderr, "ERROR:  42501: catalog system is built in and cannot be dropped") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})
}
