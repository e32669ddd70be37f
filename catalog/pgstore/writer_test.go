package pgstore_test

import (
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/catalog/pgtest"
)

// The writer lease: one holder at a time, whose address the others read;
// renewed by its holder, taken by another once it expired or was released.
func testWriterLease(t *testing.T, server *pgtest.Server, url string) {
	s1, s2 := openClosed(t, url), openClosed(t, url)
	l1 := s1.WriterLease("r1", "10.0.0.1:8470", time.Hour)
	l2 := s2.WriterLease("r2", "10.0.0.2:8470", time.Hour)
	hold := func(l *pgstore.WriterLease, wantHeld bool, wantAddr string) {
		t.Helper()
		held, addr, err := l.Hold(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if held != wantHeld || addr != wantAddr {
			t.Fatalf("Hold = %v, %q; want %v, %q", held, addr, wantHeld, wantAddr)
		}
	}
	hold(l1, true, "10.0.0.1:8470")
	hold(l2, false, "10.0.0.1:8470")
	hold(l1, true, "10.0.0.1:8470") // renewed
	hold(l2, false, "10.0.0.1:8470")
	// The holder stopped renewing: once its lease expired, the next try
	// takes it.
	conn := server.Connect(t, dbName(url))
	if _, err := conn.Exec(t.Context(), `UPDATE mandate_writer_lease SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	hold(l2, true, "10.0.0.2:8470")
	hold(l1, false, "10.0.0.2:8470")
	// Released (a replica that stops): free at once.
	if err := l2.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := l2.Release(t.Context()); err != nil { // not held: nothing to do
		t.Fatal(err)
	}
	hold(l1, true, "10.0.0.1:8470")
	// The holder's certificate fingerprint travels with its address, and
	// is the new holder's once the lease changes hands.
	l1.WithCert("sha256:01")
	l2.WithCert("sha256:02")
	holdCert := func(l *pgstore.WriterLease, want pgstore.WriterHolder) {
		t.Helper()
		if h, err := l.HoldCert(t.Context()); err != nil || h != want {
			t.Fatalf("HoldCert = %+v, %v; want %+v", h, err, want)
		}
	}
	holdCert(l1, pgstore.WriterHolder{Held: true, Addr: "10.0.0.1:8470", Cert: "sha256:01"})
	holdCert(l2, pgstore.WriterHolder{Addr: "10.0.0.1:8470", Cert: "sha256:01"})
	holdCert(s2.WriterLease("reader", "", time.Hour), pgstore.WriterHolder{Addr: "10.0.0.1:8470", Cert: "sha256:01"})
	if err := l1.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	holdCert(l2, pgstore.WriterHolder{Held: true, Addr: "10.0.0.2:8470", Cert: "sha256:02"})
	holdCert(l1, pgstore.WriterHolder{Addr: "10.0.0.2:8470", Cert: "sha256:02"})

	// Replicas trying at once on a free lease: at most one holds it.
	if _, err := conn.Exec(t.Context(), `DELETE FROM mandate_writer_lease`); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		holders = map[*pgstore.WriterLease]bool{}
	)
	for i := range 6 {
		l := []*pgstore.WriterLease{l1, l2}[i%2]
		wg.Go(func() {
			held, _, err := l.Hold(t.Context())
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if held {
				holders[l] = true
			}
		})
	}
	wg.Wait()
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM mandate_writer_lease`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("lease rows = %d, %v; want 1", n, err)
	}
	if len(holders) > 1 { // one replica held it (renewing it in its other tries), or none yet
		t.Fatalf("%d replicas held the lease at once", len(holders))
	}
}
