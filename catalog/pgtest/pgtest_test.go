package pgtest_test

import (
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/catalog/proctest"
)

// The server starts, answers over TCP with the password, has the settings
// asked for, and a database can be created.
func TestStart(t *testing.T) {
	s := pgtest.Start(t, pgtest.Options{Settings: map[string]string{"TimeZone": "Europe/Berlin"}})
	s.CreateDatabase(t, "system")
	conn := s.Connect(t, "system")
	var version, tz, db string
	if err := conn.QueryRow(t.Context(), "SELECT version(), current_setting('TimeZone'), current_database()").Scan(&version, &tz, &db); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(version, "PostgreSQL "+s.Version) || tz != "Europe/Berlin" || db != "system" {
		t.Errorf("version %q (want %s), TimeZone %q, database %q", version, s.Version, tz, db)
	}
}

// Restart closes the clients' connections and brings the server back on
// the same port with its data.
func TestRestart(t *testing.T) {
	s := pgtest.Start(t, pgtest.Options{})
	conn := s.Connect(t, "postgres")
	if _, err := conn.Exec(t.Context(), "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	down := false
	s.Restart(t, func() { down = true })
	if !down {
		t.Error("the down hook did not run")
	}
	if _, err := conn.Exec(t.Context(), "SELECT 1"); err == nil {
		t.Error("a connection survived the restart")
	}
	var v int
	if err := s.Connect(t, "postgres").QueryRow(t.Context(), "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after the restart: %v, %d", err, v)
	}
}

// A server started from a goroutine that locked its OS thread and returned
// without unlocking it (the runtime then ends the thread, as it does a
// niced audit applier's) keeps running: the postmaster's death signal is
// tied to the thread that forked it, which pgtest keeps alive until the
// postmaster exits.
func TestStartOnEndingThread(t *testing.T) {
	var s *pgtest.Server
	proctest.RunOnEndingThread(t, func() { s = pgtest.Start(t, pgtest.Options{}) })
	if s == nil { // Start failed or skipped on the other goroutine
		if !t.Skipped() {
			t.FailNow()
		}
		return
	}
	var one int
	if err := s.Connect(t, "postgres").QueryRow(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the starting thread ended: %v", err)
	}
}
