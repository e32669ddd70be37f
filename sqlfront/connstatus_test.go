package sqlfront_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/sqlfront"
)

// TestShowConnectionStatus: admins see everyone's connected accounts (or
// one user's with FOR), users their own; FOR another user is 42501; without
// a gateway in the process the statement is 0A000.
func TestShowConnectionStatus(t *testing.T) {
	at := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	all := []sqlfront.ConnectionStatus{
		{User: "bob@example.com", Connection: "system.ai.gh", ConnectedAt: at, Scopes: []string{"repo"}, Refreshable: true},
		{User: "alice@example.com", Connection: "system.ai.gh", ConnectedAt: at, ExpiresAt: at.Add(time.Hour), Scopes: []string{"repo", "read:org"}},
	}
	var asked []string
	status := func(_ context.Context, user string) ([]sqlfront.ConnectionStatus, error) {
		asked = append(asked, user)
		var out []sqlfront.ConnectionStatus
		for _, c := range all {
			if user == "" || c.User == user {
				out = append(out, c)
			}
		}
		return out, nil
	}
	f := startFrontend(t, withConnectionStatus(status))
	admin := f.admin(t)
	mustExec(t, admin, `CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw'`)

	type row struct {
		user, conn, scopes string
		expires            *time.Time
		refresh            bool
	}
	rows, err := admin.Query(t.Context(), `SHOW CONNECTION STATUS`)
	if err != nil {
		t.Fatal(err)
	}
	var got []row
	for rows.Next() {
		var r row
		var connected time.Time
		if err := rows.Scan(&r.user, &r.conn, &connected, &r.expires, &r.scopes, &r.refresh); err != nil {
			t.Fatal(err)
		}
		got = append(got, r)
	}
	if rows.Err() != nil || len(got) != 2 || got[0].user != "alice@example.com" || got[0].scopes != "repo read:org" ||
		got[0].expires == nil || got[1].expires != nil || !got[1].refresh {
		t.Fatalf("admin: %+v (%v)", got, rows.Err())
	}

	alice := f.mustConnect(t, "alice@example.com", "alice-pw", "system")
	r2, err := alice.Query(t.Context(), `SHOW CONNECTION STATUS`)
	if err != nil {
		t.Fatal(err)
	}
	cnt := 0
	for r2.Next() {
		cnt++
	}
	if r2.Err() != nil || cnt != 1 || asked[len(asked)-1] != "alice@example.com" {
		t.Fatalf("alice sees %d rows (asked for %q, %v), want her own one", cnt, asked, r2.Err())
	}
	_, err = alice.Exec(t.Context(), `SHOW CONNECTION STATUS FOR "bob@example.com"`)
	wantSQLState(t, err, "42501")

	plain := startFrontend(t)
	_, err = plain.admin(t).Exec(t.Context(), `SHOW CONNECTION STATUS`)
	wantSQLState(t, err, "0A000")
}

// TestFailedLoginAudited: a wrong password is an audit event (LOGIN, deny)
// naming the user and the client, never the password tried.
func TestFailedLoginAudited(t *testing.T) {
	f := startFrontend(t)
	mustExec(t, f.admin(t), `CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw'`)
	if _, err := f.connect(t, "alice@example.com", "wrong-password-123", "system"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	evs, err := f.Svc.Store().ListAudit(t.Context(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range evs {
		if e.Action == "LOGIN" {
			found = true
			if e.Service != "sql" || e.UserIdentity != "alice@example.com" || e.Decision != "deny" || e.SQLState != "28P01" || e.SourceIP == "" {
				t.Errorf("login event %+v", e)
			}
			if strings.Contains(fmt.Sprintf("%+v", e), "wrong-password-123") {
				t.Error("the audit event holds the password tried")
			}
		}
	}
	if !found {
		t.Fatal("no LOGIN audit event after a failed login")
	}
}
