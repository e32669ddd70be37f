package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
)

// copyAudit copies every event once, in order, however the instants fall
// on the pages (an instant with more events than a page included).
func TestCopyAudit(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, batch := range []int{1, 2, 3, 5, 100} {
		t.Run(fmt.Sprint(batch), func(t *testing.T) {
			src, dst := memstore.New(), memstore.New()
			var want []string
			n := 0
			for i, per := range []int{7, 2, 5, 1, 3} {
				for range per {
					id := fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
					n++
					want = append(want, id)
					e := catalog.AuditEvent{EventID: id, Time: t0.Add(time.Duration(i) * time.Second), Service: "mcp", Action: "tools/call",
						UserIdentity: "alice@example.com", Decision: "allow"}
					if err := src.AppendAudit(t.Context(), e); err != nil {
						t.Fatal(err)
					}
				}
			}
			got, err := copyAudit(t.Context(), src, dst, batch)
			if err != nil || got != len(want) {
				t.Fatalf("copyAudit = %d, %v; want %d", got, err, len(want))
			}
			rows, err := dst.ListAudit(t.Context(), time.Time{}, 0)
			if err != nil || len(rows) != len(want) {
				t.Fatalf("target holds %d, %v", len(rows), err)
			}
			for i, r := range rows {
				if r.EventID != want[i] {
					t.Fatalf("row %d = %s, want %s", i, r.EventID, want[i])
				}
			}
		})
	}
}
