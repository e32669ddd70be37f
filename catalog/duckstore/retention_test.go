package duckstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog"
)

// seedSized appends n events one second apart from base, each with a
// user agent of pad bytes, and returns the size of one.
func seedSized(t *testing.T, s *Store, base time.Time, n, pad int) int64 {
	t.Helper()
	var evs []catalog.AuditEvent
	for i := range n {
		ev := auditEvent(fmt.Sprintf("e%05d", i), base.Add(time.Duration(i)*time.Second))
		ev.UserAgent = strings.Repeat("u", pad)
		evs = append(evs, ev)
	}
	if err := s.AppendAudit(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	return auditEventBytes(&evs[0])
}

// TestAuditSize: the SQL measure agrees with the Go one, and the store
// counts what it commits.
func TestAuditSize(t *testing.T) {
	s, e := engineT(t)
	before := s.auditAppended.Load()
	one := seedSized(t, s, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), 100, 1000)
	n, err := e.AuditSize(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 100*one {
		t.Fatalf("AuditSize = %d, want %d", n, 100*one)
	}
	if got := s.auditAppended.Load() - before; got != n {
		t.Fatalf("the store counted %d appended bytes, want %d", got, n)
	}
}

// TestPruneAuditToSize deletes the oldest events, whole seconds, until the
// rest fit, across an hour boundary.
func TestPruneAuditToSize(t *testing.T) {
	s, e := engineT(t)
	base := time.Date(2026, 3, 1, 11, 50, 0, 0, time.UTC) // 2000 s: spans two hours
	one := seedSized(t, s, base, 2000, 500)
	target := 1234*one + one/2
	n, err := e.PruneAuditToSize(t.Context(), target, 100)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2000-1234 {
		t.Fatalf("deleted %d, want %d", n, 2000-1234)
	}
	rows := queryAll(t, e, catalog.Query{SQL: "SELECT count(*), min(event_time) FROM " + catalog.AuditRelation})
	if rows[0][0] != int64(1234) || !rows[0][1].(time.Time).Equal(base.Add(766*time.Second)) {
		t.Fatalf("left %v", rows[0])
	}
	// Under the bound: nothing to do.
	if n, err := e.PruneAuditToSize(t.Context(), target, 100); err != nil || n != 0 {
		t.Fatalf("second prune = %d, %v", n, err)
	}
}

// TestRetentionMaxBytes: the background loop keeps the audit events under
// MaxBytes while they are being appended, and deletes the oldest.
func TestRetentionMaxBytes(t *testing.T) {
	s, e := engineT(t)
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	one := seedSized(t, s, base, 500, 2000)
	max := 200 * one
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.RunAuditRetention(ctx, RetentionOptions{Keep: -1, MaxBytes: max, SizeEvery: 10 * time.Millisecond})
	}()
	defer func() { cancel(); <-done }()
	waitSize := func(why string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			n, err := e.AuditSize(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if n <= max {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: audit size %d still above %d", why, n, max)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitSize("at start")
	// More events, newer: the loop notices from the store's count alone.
	seedSized(t, s, base.Add(30*time.Minute), 300, 2000)
	waitSize("after appends")
	rows := queryAll(t, e, catalog.Query{SQL: "SELECT count(*), max(event_time) FROM " + catalog.AuditRelation})
	if c := rows[0][0].(int64); c < 150 || c > 200 || !rows[0][1].(time.Time).Equal(base.Add(30*time.Minute+299*time.Second)) {
		t.Fatalf("left %v: want the newest 150 to 200 events", rows[0])
	}
}
