package duckstore

import (
	"math"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// TestAuditThroughLogBadInput: what DuckDB would refuse must be refused or
// repaired when recorded in the log; applied later, it would fail at every
// retry and hold up everything behind it.
func TestAuditThroughLogBadInput(t *testing.T) {
	ctx := t.Context()
	s := openWithLog(t, t.TempDir())
	defer s.Close()
	err := s.AppendAudit(ctx, catalog.AuditEvent{EventID: "big", StatusCode: math.MaxInt32 + 1})
	if !catalog.IsCode(err, catalog.CodeInvalidArgument) {
		t.Fatalf("AppendAudit with an out-of-range status = %v, want invalid argument", err)
	}
	must(t, s.AppendAudit(ctx, catalog.AuditEvent{EventID: "utf8", Time: time.Now(), UserAgent: "curl\xff"}))
	es, err := s.ListAudit(ctx, time.Time{}, 0) // applies the log to DuckDB first
	must(t, err)
	if len(es) != 1 || es[0].EventID != "utf8" || es[0].UserAgent != "curl\uFFFD" {
		t.Fatalf("events = %+v, want the repaired one", es)
	}
}

func TestCheckpointThreshold(t *testing.T) {
	for opt, want := range map[string]string{"": "256.0 MiB", "32MB": "30.5 MiB"} {
		s, err := Open(t.Context(), t.TempDir(), Options{CheckpointThreshold: opt})
		must(t, err)
		var got string
		must(t, s.db.QueryRowContext(t.Context(), `SELECT current_setting('checkpoint_threshold')`).Scan(&got))
		must(t, s.Close())
		if got != want {
			t.Errorf("CheckpointThreshold %q: DuckDB has %q, want %q", opt, got, want)
		}
	}
}
