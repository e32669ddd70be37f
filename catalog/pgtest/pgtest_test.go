package pgtest_test

import (
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog/pgtest"
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
