package sqlfront_test

import (
	"bufio"
	"context"
	"fmt"
	"github.com/mandatehq/mandate/catalog/pgtest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/duckstore"
	"github.com/mandatehq/mandate/sqlfront"
)

// sysOptions configure startSysFrontend.
type sysOptions struct {
	store    duckstore.Options
	query    duckstore.QueryOptions
	frontend func(*sqlfront.Config)
	// pg runs the system tables' queries on PostgreSQL (catalog/pgquery)
	// in a database of its own on this server.
	pg *pgtest.Server
}

// TestStatementTimeoutSetting checks statement_timeout: sessions start
// with the server's limit, SHOW reports it as PostgreSQL does, users may
// lower it but only metastore admins may raise it or turn it off.
func TestStatementTimeoutSetting(t *testing.T) {
	f := startFrontend(t, func(_ *catalog.Options, c *sqlfront.Config) { c.StatementTimeout = 30 * time.Second })
	admin := f.admin(t)
	mustExec(t, admin, `CREATE USER bob WITH PASSWORD 'bob-pw'`)
	bob := f.mustConnect(t, "bob", "bob-pw", "")
	show := func(conn *pgx.Conn) string {
		t.Helper()
		var v, cs string
		if err := conn.QueryRow(t.Context(), "SHOW statement_timeout").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(t.Context(), "SELECT current_setting('statement_timeout')").Scan(&cs); err != nil {
			t.Fatal(err)
		}
		if cs != v {
			t.Errorf("current_setting = %q, SHOW = %q", cs, v)
		}
		return v
	}
	for _, tc := range []struct {
		conn  *pgx.Conn
		set   string
		want  string // SHOW afterwards
		state string // error
	}{
		{conn: bob, want: "30s"},
		{conn: bob, set: `'10s'`, want: "10s"},
		{conn: bob, set: `5000`, want: "5s"},
		{conn: bob, set: `'1500ms'`, want: "1500ms"},
		{conn: bob, set: `'0.5 min'`, want: "30s"},
		{conn: bob, set: `'31s'`, state: "42501"},
		{conn: bob, set: `0`, state: "42501"},
		{conn: bob, set: `'1h'`, state: "42501"},
		{conn: bob, set: `-1`, state: "22023"},
		{conn: bob, set: `'soon'`, state: "22023"},
		{conn: bob, set: `DEFAULT`, want: "30s"},
		{conn: admin, want: "30s"},
		{conn: admin, set: `'2min'`, want: "2min"},
		{conn: admin, set: `0`, want: "0"},
		{conn: admin, set: `'1d'`, want: "1d"},
	} {
		if tc.set != "" {
			_, err := tc.conn.Exec(t.Context(), "SET statement_timeout = "+tc.set)
			if tc.state != "" {
				wantSQLState(t, err, tc.state)
				continue
			}
			if err != nil {
				t.Fatalf("SET statement_timeout = %s: %v", tc.set, err)
			}
		}
		if got := show(tc.conn); got != tc.want {
			t.Errorf("after SET %s: SHOW statement_timeout = %q, want %q", tc.set, got, tc.want)
		}
	}
	// A user cannot turn the limit off at startup either.
	_, err := f.connect(t, "bob", "bob-pw", "", func(c *pgx.ConnConfig) { c.RuntimeParams["statement_timeout"] = "0" })
	wantSQLState(t, err, "42501")
}

// waitRunning waits until n queries run on the engine.
func waitRunning(t *testing.T, f *sysFrontend, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for f.Frontend.RunningQueries() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d queries running, want %d", f.Frontend.RunningQueries(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// endless is a query that runs until it is stopped; a user without any
// grant may run it (it reads no table).
const endless = `SELECT count(*) FROM generate_series(1, 1000000000000) g`

// TestQueryAdmission: a user's endless queries take at most their share
// of the engine; the admin's audit query runs at once beside four of them,
// and waiting counts against the statement timeout.
func TestQueryAdmission(t *testing.T) {
	f := startSysFrontend(t, func(o *sysOptions) {
		o.query.MaxConns = 4
		o.frontend = func(c *sqlfront.Config) {
			c.QueryLimits = sqlfront.QueryLimits{MaxConcurrent: 4, AdminReserved: 1, PerUser: 2}
		}
	})
	f.seedAudit(t, 100)
	admin := f.admin(t)
	mustExec(t, admin, `CREATE USER bob WITH PASSWORD 'bob-pw'`, `CREATE USER carol WITH PASSWORD 'carol-pw'`)

	type result struct {
		user string
		err  error
	}
	results := make(chan result, 8)
	var conns []*pgx.Conn
	start := func(user, pw string) {
		conn := f.mustConnect(t, user, pw, "")
		conns = append(conns, conn)
		go func() {
			_, err := conn.Exec(context.Background(), endless)
			results <- result{user, err}
		}()
	}
	for range 4 {
		start("bob", "bob-pw")
	}
	waitRunning(t, f, 2) // bob's share; two of his wait
	start("carol", "carol-pw")
	waitRunning(t, f, 3) // the users' share of four slots

	// The admin is not kept waiting.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	began := time.Now()
	var n int64
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM system.access.audit`).Scan(&n); err != nil || n < 100 {
		t.Fatalf("admin's audit query: %d, %v", n, err)
	}
	t.Logf("admin's query took %v beside %d running user queries", time.Since(began), 3)

	// A third user waits for a slot, within the statement timeout.
	mustExec(t, admin, `CREATE USER dave WITH PASSWORD 'dave-pw'`)
	dave := f.mustConnect(t, "dave", "dave-pw", "")
	mustExec(t, dave, `SET statement_timeout = '300ms'`)
	_, err := dave.Exec(t.Context(), `SELECT count(*) FROM generate_series(1, 10) g`)
	if pe := wantSQLState(t, err, "57014"); pe.Message != "canceling statement due to statement timeout" {
		t.Errorf("got %q", pe.Message)
	}

	// Cancelled, running and waiting queries end with 57014. A cancel
	// request reaches only a query the server has: wait until all five are
	// there (three running, two of bob's waiting for a slot).
	deadline := time.Now().Add(20 * time.Second)
	for f.Frontend.RunningQueries()+f.Frontend.WaitingQueries() != len(conns) {
		if time.Now().After(deadline) {
			t.Fatalf("%d queries running and %d waiting, want %d in all",
				f.Frontend.RunningQueries(), f.Frontend.WaitingQueries(), len(conns))
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, c := range conns {
		if err := c.PgConn().CancelRequest(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for range conns {
		select {
		case r := <-results:
			wantSQLState(t, r.err, "57014")
		case <-time.After(20 * time.Second):
			t.Fatal("cancelled queries did not end")
		}
	}
	waitRunning(t, f, 0)
}

// rssSampler records the peak resident memory of this process (where the
// server runs) from VmRSS in /proc/self/status.
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func vmRSS(t testing.TB) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("cannot read the resident memory: %v", err)
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
	t.Skip("no VmRSS")
	return 0
}

func sampleRSS(t testing.TB) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	s.peak.Store(vmRSS(t))
	go func() {
		defer close(s.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
				if r := vmRSS(t); r > s.peak.Load() {
					s.peak.Store(r)
				}
			}
		}
	}()
	return s
}

func (s *rssSampler) Peak() int64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// TestQueryMemoryLimit runs the memory bomb of a user without grants: it
// fails with 53200 at the engine's memory limit, and the server's resident
// memory stays within a bound.
func TestQueryMemoryLimit(t *testing.T) {
	f := startSysFrontend(t, func(o *sysOptions) { o.store.MemoryLimit = "256MiB" })
	admin := f.admin(t)
	mustExec(t, admin, `CREATE USER bob WITH PASSWORD 'bob-pw'`)
	bob := f.mustConnect(t, "bob", "bob-pw", "")
	base := vmRSS(t)
	s := sampleRSS(t)
	_, err := bob.Exec(t.Context(), `SELECT length(string_agg(repeat('x',1000),'')) FROM generate_series(1,3000000) g`)
	peak := s.Peak()
	pe := wantSQLState(t, err, "53200")
	t.Logf("%s; resident memory %d MiB before, peak %d MiB", pe.Message, base>>20, peak>>20)
	if !strings.HasPrefix(pe.Message, "out of memory") || strings.Contains(pe.Message, "SET memory_limit") {
		t.Errorf("message %q", pe.Message)
	}
	if grew := peak - base; grew > 512<<20 {
		t.Errorf("resident memory grew by %d MiB with a 256 MiB engine limit", grew>>20)
	}
	// The engine still works.
	if rows := queryRows(t, bob, `SELECT count(*) FROM generate_series(1, 10) g`); len(rows) != 1 {
		t.Fatal(rows)
	}
}

// TestQueryMemoryWatchdog fills the server's own memory rather than the
// engine's: a portal executed with a row limit keeps its rows encoded
// until fetched, and this one has 3 GB of them. The watchdog cancels the
// query with 53200 once the resident memory passes the ceiling.
func TestQueryMemoryWatchdog(t *testing.T) {
	const headroom = 256 << 20
	base := vmRSS(t)
	f := startSysFrontend(t, func(o *sysOptions) {
		o.frontend = func(c *sqlfront.Config) {
			c.QueryLimits.MemoryCeiling = vmRSS(t) + headroom
		}
	})
	admin := f.admin(t)
	mustExec(t, admin, `CREATE USER bob WITH PASSWORD 'bob-pw'`)
	bob := f.mustConnect(t, "bob", "bob-pw", "")
	hc, err := bob.PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Conn.Close()
	_ = hc.Conn.SetDeadline(time.Now().Add(60 * time.Second))
	fe := hc.Frontend
	fe.Send(&pgproto3.Parse{Query: `SELECT repeat('x', 10000) || g FROM generate_series(1, 300000) g`})
	fe.Send(&pgproto3.Bind{})
	fe.Send(&pgproto3.Execute{MaxRows: 1})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	s := sampleRSS(t)
	began := time.Now()
	var got []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			got = append(got, fmt.Sprintf("%s %s", m.Code, m.Message))
		case *pgproto3.ReadyForQuery:
			got = append(got, "Ready")
		default:
			got = append(got, fmt.Sprintf("%T", m))
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	peak := s.Peak()
	t.Logf("%v after %v; resident memory %d MiB before, peak %d MiB", got, time.Since(began), base>>20, peak>>20)
	if strings.Join(got, ", ") != "*pgproto3.ParseComplete, *pgproto3.BindComplete, 53200 out of memory, Ready" {
		t.Errorf("got %v", got)
	}
	if peak > base+headroom+256<<20 {
		t.Errorf("resident memory peaked at %d MiB, %d MiB over the ceiling", peak>>20, (peak-base-headroom)>>20)
	}
}
