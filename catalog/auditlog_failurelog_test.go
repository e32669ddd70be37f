package catalog_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/logtest"
)

// failure returns the fields of the "audit write failed" line, waiting
// for it (a Submit's write fails after Submit returned).
func failureLine(t *testing.T, l *logtest.Buffer) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Millisecond) {
		text := l.String()
		for line := range strings.SplitSeq(text, "\n") {
			if strings.Contains(line, "audit write failed") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("log line %q: %v", line, err)
				}
				return m
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged after 20s:\n%s", text)
		}
	}
}

// TestAuditWriteFailureLogCounts: the line logged when a write fails
// counts its events and those nobody waits for (lost), never less than 0.
func TestAuditWriteFailureLogCounts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		send      func(context.Context, *catalog.AuditLog)
		events    float64
		unawaited float64
	}{
		{"Record", func(ctx context.Context, l *catalog.AuditLog) {
			_ = l.Record(ctx, catalog.AuditEvent{Action: "x"})
		}, 1, 0},
		{"RecordBatch", func(ctx context.Context, l *catalog.AuditLog) {
			_ = l.RecordBatch(ctx, []catalog.AuditEvent{{Action: "x"}, {Action: "y"}, {Action: "z"}})
		}, 3, 0},
		{"Submit", func(ctx context.Context, l *catalog.AuditLog) {
			_ = l.Submit(ctx, catalog.AuditEvent{Action: "x"})
		}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &slowWriter{}
			fail := errors.New("store down")
			w.fail.Store(&fail)
			var logs logtest.Buffer
			l := catalog.NewAuditLog(w, catalog.AuditLogOptions{Logger: zerolog.New(&logs)})
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = l.Close(ctx)
			})
			tc.send(t.Context(), l)
			m := failureLine(t, &logs)
			if m["events"] != tc.events || m["unawaited"] != tc.unawaited {
				t.Fatalf("failure logged events=%v unawaited=%v, want %v and %v", m["events"], m["unawaited"], tc.events, tc.unawaited)
			}
		})
	}
}
