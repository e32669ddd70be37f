package main

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/keystore"
	"github.com/mandatehq/mandate/catalog/pgquery"
	"github.com/mandatehq/mandate/catalog/pgstore"
)

// testRotateQueryPassword: `mandate rotate-query-password` while replica 0
// of c serves (TestSystemTablesServeOnPostgres). With another master key
// it refuses and changes nothing; with the replicas' key the role gets a
// new password, the replica's next system-table query on a new connection
// (the server closed its query connections) works, and the old password
// no longer logs in.
func testRotateQueryPassword(t *testing.T, c *cluster) {
	admin := c.replicas[0].admin(t)
	const q = `SELECT count(*) > 0 FROM system.access.audit`
	mustExec(t, admin, `CREATE USER "rotation@example.com"`)
	waitFor(t, 30*time.Second, "the audit of CREATE USER", func() bool {
		return strings.Join(queryRows(t, admin, q), ",") == "true"
	})
	su := c.pg.Connect(t, "mandate")
	var role string
	if err := su.QueryRow(t.Context(), `SELECT rolname FROM pg_roles WHERE rolname LIKE 'mandate_query_%' AND rolcanlogin`).Scan(&role); err != nil {
		t.Fatal(err)
	}
	key, err := base64.StdEncoding.DecodeString(replicaMasterKey)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pgstore.Open(t.Context(), c.pg.URL("mandate"), pgstore.Options{Logger: zerolog.Nop(), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	keys := keystore.Sealed(pg.Keys(), kr)
	password := func() string {
		t.Helper()
		b, err := keys.Get(t.Context(), pgquery.PasswordName(role))
		if err != nil {
			t.Fatal(err)
		}
		return string(b.Data)
	}
	login := func(pw string) error {
		conn, err := pgx.Connect(t.Context(), c.pg.URLAs("mandate", role, pw))
		if err == nil {
			_ = conn.Close(context.Background())
		}
		return err
	}
	old := password()
	if err := login(old); err != nil {
		t.Fatalf("the query role with its password: %v", err)
	}

	otherKey := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 32)))
	_, stderr, code := runBinary(t, []string{"MANDATE_MASTER_KEY=" + otherKey}, "rotate-query-password", "--store", c.url)
	if code != 1 || !strings.Contains(stderr, "does not decrypt with this master key") || password() != old || login(old) != nil {
		t.Fatalf("with another master key: exit %d, password changed %v; stderr %s", code, password() != old, stderr)
	}

	out, stderr, code := runBinary(t, []string{"MANDATE_MASTER_KEY=" + replicaMasterKey}, "rotate-query-password", "--store", c.url)
	if code != 0 || !strings.Contains(out, "Rotated the password of the query role "+pgx.Identifier{role}.Sanitize()) {
		t.Fatalf("exit %d, stdout %q, stderr %s", code, out, stderr)
	}
	if password() == old {
		t.Fatal("the key store holds the old password")
	}
	// The replica's open query connections end: its next query needs a
	// new connection.
	if _, err := su.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1`, role); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the query role's connections to end", func() bool {
		var n int
		return su.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, role).Scan(&n) == nil && n == 0
	})
	if got := queryRows(t, admin, q); strings.Join(got, ",") != "true" {
		t.Errorf("the system-table query after the rotation: %v", got)
	}
	var n int
	if err := su.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, role).Scan(&n); err != nil || n == 0 {
		t.Errorf("the replica's query connections after the rotation: %d (%v), want a new one", n, err)
	}
	var pe *pgconn.PgError
	if err := login(old); !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Errorf("the old password: %v, want 28P01", err)
	}
	if err := login(password()); err != nil {
		t.Errorf("the new password: %v", err)
	}
}
