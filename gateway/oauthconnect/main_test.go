package oauthconnect

import (
	"os"
	"testing"

	"github.com/mandatehq/mandate/catalog/proctest"
)

// TestMain runs the tests in a temporary directory of this test process's
// own: what a killed run leaves behind (PostgreSQL's data directories) is
// removed by the next.
func TestMain(m *testing.M) { os.Exit(proctest.RunInTempDir(m)) }
