package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog/embedded/embeddedtest"
)

// TestUpgradeEmbedded starts the current Mandate on data directories
// written by the Mandates whose catalog lived in DuckDB tables (schema
// version 2, and 3 with the AI gateway's objects and audit columns),
// each killed with SIGKILL while its catalog.wal held unapplied catalog
// changes and audit events (testdata/upgrade/make-fixture*.sh), and checks
// with psql that it shows exactly what the last of those Mandates showed
// after replaying the log (testdata/upgrade/expected.sh): users, groups,
// memberships, catalogs, schemas, connections, grants, policies, model
// services, rate limits, budgets, access tokens, and the audit (gateway
// calls with their usage, trace and guardrail columns, captured payloads,
// statements).
func TestUpgradeEmbedded(t *testing.T) {
	t.Parallel()
	psql, err := exec.LookPath("psql")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("psql not on PATH (make deps installs postgresql-client)")
		}
		t.Skip("psql not on PATH (make deps installs postgresql-client)")
	}
	for _, tc := range []struct{ fixture, queries string }{
		{"embedded-v2", "upgrade-queries.sql"},
		{"embedded-v3", "upgrade-queries-v3.sql"},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			t.Parallel()
			dir := embeddedtest.ExtractFixture(t, "../../testdata/upgrade/"+tc.fixture+".tar.gz")
			s := startServer(t, serverOpts{dataDir: dir, args: []string{"--audit-retention", "0"}, env: []string{
				"MANDATE_MASTER_KEY=" + base64.StdEncoding.EncodeToString([]byte("upgrade fixture key, 32 bytes...")),
				"MANDATE_NODE_TOKEN=fixture-node-token-0123456789abcdef"}})
			host, port, _ := net.SplitHostPort(s.sqlAddr)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, psql, "host="+host+" port="+port+" user=admin dbname=system sslmode=require connect_timeout=30",
				"-X", "-q", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1", "-f", "../../testdata/upgrade/"+tc.queries)
			cmd.Env = append(baseEnv(), "PGPASSWORD=fixture-admin", "HOME="+t.TempDir())
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("psql: %v\n%s", err, stderr.String())
			}
			want, err := os.ReadFile("../../testdata/upgrade/" + tc.fixture + ".expected")
			if err != nil {
				t.Fatal(err)
			}
			if got := stdout.String(); got != string(want) {
				t.Errorf("after the upgrade:\n%s\nthe previous Mandate showed:\n%s", got, want)
			}
			// The directory is upgraded: the catalog's files of the current
			// layout are there.
			for _, f := range []string{"catalog.snapshot", "audit.wal"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s: %v", f, err)
				}
			}
		})
	}
}
