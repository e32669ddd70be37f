package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// procRSS is the resident memory of process pid (VmRSS).
func procRSS(t testing.TB, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("cannot read the server's memory: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// procFDs is the number of open file descriptors of process pid.
func procFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("cannot count the server's file descriptors: %v", err)
	}
	return len(ents)
}

// peakRSS samples pid's resident memory every 5 ms while fn runs.
func peakRSS(t testing.TB, pid int, fn func()) int64 {
	t.Helper()
	var peak atomic.Int64
	peak.Store(procRSS(t, pid))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if r := procRSS(t, pid); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	fn()
	close(stop)
	<-done
	return peak.Load()
}

// TestServeLimits attacks mandate serve as a user without any grant, with
// the default limits and a small memory ceiling: the memory bomb fails with
// 53200 within the ceiling, endless queries do not keep the admin waiting,
// idle sessions beyond max_connections are refused while the admin gets
// in, and no password travels without TLS.
func TestServeLimits(t *testing.T) {
	t.Parallel()
	const maxMemory, maxConns = 512 << 20, 20
	s := startServer(t, serverOpts{args: []string{"--max-memory", "512MiB", "--max-connections", strconv.Itoa(maxConns)}})
	pid := s.cmd.Process.Pid
	admin := s.admin(t)
	mustExec(t, admin, `CREATE USER bob WITH PASSWORD 'bob-pw'`)
	bob, err := s.connect(t, "bob", "bob-pw", "system")
	if err != nil {
		t.Fatal(err)
	}

	// The statement timeout is on by default, and SHOW says so.
	if got := queryRows(t, bob, "SHOW statement_timeout"); len(got) != 1 || got[0] != "30s" {
		t.Errorf("SHOW statement_timeout = %v, want 30s", got)
	}

	// The memory bomb.
	base := procRSS(t, pid)
	var bombErr error
	peak := peakRSS(t, pid, func() {
		_, bombErr = bob.Exec(t.Context(), `SELECT length(string_agg(repeat('x',1000),'')) FROM generate_series(1,3000000) g`)
	})
	t.Logf("memory bomb: %v; server resident memory %d MiB before, peak %d MiB (--max-memory 512MiB)", bombErr, base>>20, peak>>20)
	if st := sqlState(bombErr); st != "53200" && st != "57014" {
		t.Errorf("memory bomb: %v, want SQLSTATE 53200 or 57014", bombErr)
	}
	if peak > maxMemory {
		t.Errorf("server resident memory peaked at %d MiB, above --max-memory", peak>>20)
	}

	// Four endless queries of bob; the admin's audit query still runs.
	var runs []*pgx.Conn
	errs := make(chan error, 4)
	for range 4 {
		c, err := s.connect(t, "bob", "bob-pw", "system")
		if err != nil {
			t.Fatal(err)
		}
		runs = append(runs, c)
		go func() {
			_, err := c.Exec(context.Background(), `SELECT count(*) FROM generate_series(1, 1000000000000) g`)
			errs <- err
		}()
	}
	// Bob's share of the engine is taken once a short query of his waits
	// out its statement timeout.
	probe, err := s.connect(t, "bob", "bob-pw", "system")
	if err != nil {
		t.Fatal(err)
	}
	mustExec(t, probe, `SET statement_timeout = '200ms'`)
	waitFor(t, 20*time.Second, "bob's queries to take his share", func() bool {
		_, err := probe.Exec(t.Context(), `SELECT count(*) FROM generate_series(1, 10) g`)
		return sqlState(err) == "57014"
	})
	// The admin's query gets a bound well below the 30 s the endless
	// queries run for.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	began := time.Now()
	var n int64
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM system.access.audit`).Scan(&n); err != nil {
		t.Fatalf("admin's audit query beside 4 endless user queries: %v", err)
	}
	t.Logf("admin's audit query: %d rows in %v beside 4 endless user queries", n, time.Since(began))
	for _, c := range runs {
		if err := c.PgConn().CancelRequest(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for range runs {
		if err := <-errs; sqlState(err) != "57014" {
			t.Errorf("endless query: %v, want 57014", err)
		}
	}

	// Idle sessions: bob gets what is left of max_connections less the
	// reserved ones, the admin a reserved one.
	fdsBefore := procFDs(t, pid)
	open := 3 + len(runs) // admin, bob, probe, the endless ones
	refused := 0
	for range 100 {
		_, err := s.connect(t, "bob", "bob-pw", "system")
		var pe *pgconn.PgError
		switch {
		case err == nil:
			open++
		case errors.As(err, &pe) && pe.Code == "53300":
			refused++
		default:
			t.Fatalf("connect: %v", err)
		}
	}
	if open != maxConns-3 || refused != 100-(maxConns-3-3-len(runs)) {
		t.Errorf("%d sessions open, %d refused; want %d open", open, refused, maxConns-3)
	}
	if _, err := s.connect(t, "admin", s.password, "system"); err != nil {
		t.Errorf("admin refused with the user's sessions at the limit: %v", err)
	}
	fds := procFDs(t, pid)
	t.Logf("server file descriptors: %d before the sessions, %d with %d sessions", fdsBefore, fds, open+1)
	if fds > fdsBefore+maxConns {
		t.Errorf("server holds %d file descriptors", fds)
	}

	// No password without TLS.
	host, port, _ := net.SplitHostPort(s.sqlAddr)
	_, err = pgx.Connect(t.Context(), fmt.Sprintf("host=%s port=%s user=admin password=%s dbname=system sslmode=disable", host, port, s.password))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28000" || pe.Message != "password authentication requires TLS (sslmode=require)" {
		t.Errorf("sslmode=disable: %v, want 28000", err)
	}
}
