package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/embedded"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// embeddedSource makes the data directory of an embedded installation
// (bootstrapped catalog, master.key) holding n audit events at few
// distinct instants, as a stopped mandate serve leaves it.
func embeddedSource(t *testing.T, n int) string {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	key, err := masterKey(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(ctx, dir, embedded.Options{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	audit := catalog.NewAuditLog(st.Events, catalog.AuditLogOptions{})
	verifier, err := pgwire.MakeVerifier(e2eAdminPassword)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := catalog.Open(ctx, catalog.Options{Store: st.Catalog, Events: st.Events, Audit: audit, Keyring: kr,
		AdminVerifier: verifier, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	evs := make([]catalog.AuditEvent, n)
	for i := range evs {
		evs[i] = catalog.AuditEvent{EventID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Time: t0.Add(time.Duration(i/4) * time.Second),
			Service: "mcp", Action: "tools/call", UserIdentity: "alice@example.com", Decision: "allow"}
	}
	if err := st.Events.AppendAudit(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	_ = svc.Close()
	if err := audit.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// An interrupted migrate continues when run again: stopped after a batch
// was stored and recorded, or stored but not yet recorded, the next run
// copies the rest, the final counts are exact and no audit row is doubled;
// a run over the finished copy has nothing to do; another installation's
// copy is refused.
func TestMigrateResumes(t *testing.T) {
	t.Parallel()
	const events, batch = 23, 5
	src := embeddedSource(t, events)
	pg := pgtest.Start(t, pgtest.Options{})
	errCrash := errors.New("crash")
	for _, step := range []string{"recorded", "stored"} {
		t.Run(step, func(t *testing.T) {
			db := "resume_" + step
			pg.CreateDatabase(t, db)
			url := pg.URL(db)
			// Two runs interrupted (at their second batch, then at their
			// first), then one that finishes.
			var lastStored int64
			for _, stopAt := range []int{2, 1} {
				n := 0
				r, err := migrate(t.Context(), src, url, migrateOptions{batch: batch, interrupt: func(s string, copied int64) error {
					if s == "stored" {
						lastStored = copied
					}
					if s == step {
						if n++; n == stopAt {
							return errCrash
						}
					}
					return nil
				}})
				if !errors.Is(err, errCrash) {
					t.Fatalf("interrupted run: %+v %v", r, err)
				}
			}
			res, err := migrate(t.Context(), src, url, migrateOptions{batch: batch})
			if err != nil {
				t.Fatal(err)
			}
			// It continued after the last batch stored (one stored but not
			// recorded is recognized and skipped).
			if res.resumed != lastStored || lastStored == 0 {
				t.Fatalf("resumed from %d, want %d", res.resumed, lastStored)
			}
			conn := pg.Connect(t, db)
			var rows, distinct, mcp int
			if err := conn.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT event_id), count(*) FILTER (WHERE service_name = 'mcp')
				FROM audit_events`).Scan(&rows, &distinct, &mcp); err != nil {
				t.Fatal(err)
			}
			// The source's events and the bootstrap's change audit.
			if mcp != events || rows != res.events || distinct != rows || res.done {
				t.Fatalf("the target holds %d audit rows (%d distinct, %d of the gateway's); the run copied %d; want %d of the gateway's",
					rows, distinct, mcp, res.events, events)
			}
			var head int64
			if err := conn.QueryRow(t.Context(), `SELECT revision FROM mandate_catalog_head`).Scan(&head); err != nil || head != int64(res.revision) {
				t.Fatalf("target head %d, %v; want %d", head, err, res.revision)
			}
			// Run again: the catalog is this installation's, nothing to do.
			again, err := migrate(t.Context(), src, url, migrateOptions{batch: batch})
			if err != nil || !again.done {
				t.Fatalf("run over the finished copy: %+v, %v", again, err)
			}
			if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM audit_events WHERE service_name = 'mcp'`).Scan(&rows); err != nil || rows != events {
				t.Fatalf("after another run: %d rows, %v", rows, err)
			}
		})
	}
	t.Run("another installation", func(t *testing.T) {
		pg.CreateDatabase(t, "other")
		url := pg.URL("other")
		if _, err := migrate(t.Context(), src, url, migrateOptions{batch: batch, interrupt: func(s string, copied int64) error {
			return errCrash
		}}); !errors.Is(err, errCrash) {
			t.Fatal(err)
		}
		other := embeddedSource(t, 3)
		if _, err := migrate(t.Context(), other, url, migrateOptions{batch: batch}); err == nil || !strings.Contains(err.Error(), "another installation") {
			t.Fatalf("another installation's migration into it: %v", err)
		}
		if _, err := migrate(t.Context(), src, url, migrateOptions{batch: batch}); err != nil {
			t.Fatal(err)
		}
		if _, err := migrate(t.Context(), other, url, migrateOptions{batch: batch}); err == nil || !strings.Contains(err.Error(), "another installation") {
			t.Fatalf("another installation over a finished copy: %v", err)
		}
	})
}
