package pgwire

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

// slots returns the connections in startup and the sessions the server
// counts.
func (s *Server) slots() (starting, sessions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starting, s.sessions
}

// openFDs counts this process's open file descriptors (the server runs in
// the test process).
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}

// heapInUse returns the live heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// dialFrom opens a raw connection to ts from a given loopback address
// (127.0.0.0/8 is all loopback on Linux), so that tests can play several
// client hosts.
func dialFrom(t *testing.T, ts *testServer, ip string) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: testTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := d.Dial("tcp", ts.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	return &rawClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
}

// expectFatal reads until the server closes the connection and checks
// that it sent exactly one FATAL error with code and message.
func (c *rawClient) expectFatal(code, message string) {
	c.t.Helper()
	got := describeAll(c.expectClosed())
	if want := fmt.Sprintf("Error(FATAL %s %s)", code, message); !strings.HasSuffix(got, want) {
		c.t.Fatalf("got %s, want %s", got, want)
	}
}

// TestMaxConnections opens hundreds of idle sessions as an ordinary user:
// beyond MaxConnections less the reserved slots they are refused with
// PostgreSQL's 53300, the server holds no more sockets than its limit, and
// the administrator still gets in on a reserved slot.
func TestMaxConnections(t *testing.T) {
	const maxConns, reserved, attempts = 40, 3, 300
	ts := startServer(t, func(c *Config) { c.MaxConnections, c.SuperuserReservedConnections = maxConns, reserved })
	baseFDs := openFDs(t)

	var (
		mu      sync.Mutex
		open    []*pgx.Conn
		refused int
		other   []error
	)
	t.Cleanup(func() {
		for _, c := range open {
			_ = c.Close(context.Background())
		}
	})
	work := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range work {
				conn, err := pgx.Connect(t.Context(), ts.connString(testUser, testPassword, "sslmode=disable"))
				var pe interface{ SQLState() string }
				mu.Lock()
				switch {
				case err == nil:
					open = append(open, conn)
				case errors.As(err, &pe) && pe.SQLState() == "53300" &&
					strings.Contains(err.Error(), "remaining connection slots are reserved for roles with the SUPERUSER attribute"):
					refused++
				default:
					other = append(other, err)
				}
				mu.Unlock()
			}
		})
	}
	for range attempts {
		work <- struct{}{}
	}
	close(work)
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("unexpected errors: %v", other[0])
	}
	if len(open) != maxConns-reserved || refused != attempts-(maxConns-reserved) {
		t.Fatalf("%d sessions, %d refused; want %d and %d", len(open), refused, maxConns-reserved, attempts-(maxConns-reserved))
	}
	// Each session is two descriptors in this process: client and server.
	if fds := openFDs(t) - baseFDs; fds > 2*(maxConns-reserved)+10 {
		t.Errorf("%d more file descriptors open with %d sessions", fds, maxConns-reserved)
	}

	// The administrator gets the reserved slots, and no more.
	for i := range reserved {
		conn, err := pgx.Connect(t.Context(), ts.connString("admin", testPassword, "sslmode=disable"))
		if err != nil {
			t.Fatalf("admin connection %d: %v", i, err)
		}
		var one int
		if err := conn.QueryRow(t.Context(), "select 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		open = append(open, conn)
	}
	_, err := pgx.Connect(t.Context(), ts.connString("admin", testPassword, "sslmode=disable"))
	expectCode(t, err, "53300", "sorry, too many clients already")

	// A slot freed is a slot available.
	_ = open[0].Close(t.Context())
	open = open[1:]
	waitFor(t, "the closed session's slot", func() bool { _, n := ts.srv.slots(); return n == maxConns-1 })
	conn, err := pgx.Connect(t.Context(), ts.connString("admin", testPassword, "sslmode=disable"))
	if err != nil {
		t.Fatal(err)
	}
	open = append(open, conn)
}

// TestStartupConnectionLimits floods the server with connections that never
// send a startup packet: per client address and in total only a bounded
// number is kept (for at most the authentication timeout); the rest get
// 53300 at once and are closed, and a client from another address still
// logs in.
func TestStartupConnectionLimits(t *testing.T) {
	const perHost, total, flood = 4, 6, 500
	ts := startServer(t, func(c *Config) {
		c.MaxStartupConnections, c.MaxStartupConnectionsPerHost = total, perHost
	})
	silent := make([]*rawClient, 0, perHost)
	for range perHost {
		silent = append(silent, dialFrom(t, ts, "127.0.0.1"))
	}
	waitFor(t, "silent connections in startup", func() bool { n, _ := ts.srv.slots(); return n == perHost })

	// A flood from the same address: every one refused at once.
	for i := range flood {
		c := dialFrom(t, ts, "127.0.0.1")
		if i%50 == 0 {
			c.expectFatal("53300", "sorry, too many clients already")
		}
		_ = c.conn.Close()
	}
	if n, _ := ts.srv.slots(); n != perHost {
		t.Fatalf("%d connections in startup after the flood, want %d", n, perHost)
	}
	// A legitimate client from that address is refused too while the
	// flood holds its slots; one from another address is not.
	_, err := pgx.Connect(t.Context(), ts.connString(testUser, testPassword, ""))
	expectCode(t, err, "53300", "sorry, too many clients already")
	other := dialFrom(t, ts, "127.0.0.2")
	other.startTLS()
	other.login(testUser, testPassword, nil)

	// The total bound: two more silent ones from a second address fill it.
	silent = append(silent, dialFrom(t, ts, "127.0.0.2"), dialFrom(t, ts, "127.0.0.2"))
	waitFor(t, "startup slots full", func() bool { n, _ := ts.srv.slots(); return n == total })
	dialFrom(t, ts, "127.0.0.3").expectFatal("53300", "sorry, too many clients already")

	// A silent connection that goes away frees its slot.
	_ = silent[0].conn.Close()
	waitFor(t, "a freed startup slot", func() bool { n, _ := ts.srv.slots(); return n == total-1 })
	c := dialFrom(t, ts, "127.0.0.3")
	c.startTLS()
	c.login(testUser, testPassword, nil)
}

// TestAuthenticationTimeoutCoversTLS checks that the authentication timeout
// bounds everything before login, TLS negotiation included.
func TestAuthenticationTimeoutCoversTLS(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.StartupTimeout = 300 * time.Millisecond })
	for _, tc := range []struct {
		name string
		run  func(c *rawClient)
	}{
		{"SSLRequest then nothing", func(c *rawClient) {
			c.send(&pgproto3.SSLRequest{})
			if b := c.readByte(); b != 'S' {
				c.t.Fatalf("SSLRequest answered %q", b)
			}
		}},
		{"partial ClientHello", func(c *rawClient) {
			c.send(&pgproto3.SSLRequest{})
			c.readByte()
			c.write([]byte{0x16, 3, 1, 0x02, 0x00, 1}) // a record header promising 512 bytes
		}},
		{"direct TLS record header", func(c *rawClient) { c.write([]byte{0x16, 3, 1}) }},
		{"TLS then nothing", func(c *rawClient) { c.startTLS() }},
		{"TLS then half a startup packet", func(c *rawClient) {
			c.startTLS()
			c.write([]byte{0, 0, 0, 40, 0, 3})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts)
			start := time.Now()
			tc.run(c)
			_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			for {
				if _, err := c.conn.Read(buf); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Fatalf("connection still open after %v", time.Since(start))
					}
					break
				}
			}
			waitFor(t, "the startup slot to be freed", func() bool { n, _ := ts.srv.slots(); return n == 0 })
		})
	}
}

// TestPreAuthMessagesAreSmall checks that before login no message may be
// larger than a startup packet: a client that announces a large password
// or SASL message is refused from the header, without the server waiting
// for (or allocating) the announced size.
func TestPreAuthMessagesAreSmall(t *testing.T) {
	ts := startServer(t)
	for _, tc := range []struct {
		name string
		size int
	}{
		{"just above the limit", maxAuthMessageLen + 1},
		{"16 MiB less 20 bytes", 16<<20 - 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts)
			c.startTLS()
			c.write(startupPacket(pgproto3.ProtocolVersion30, "user", testUser, "database", "d"))
			c.expect(&pgproto3.AuthenticationSASL{})
			hdr := []byte{'p', 0, 0, 0, 0}
			binary.BigEndian.PutUint32(hdr[1:], uint32(tc.size+4))
			c.write(append(hdr, make([]byte, 1000)...))
			_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
			c.expectFatal("54000", "message too large")
		})
	}
	// Up to the limit is fine (and wrong, here).
	c := dialRaw(t, ts)
	c.startTLS()
	c.write(startupPacket(pgproto3.ProtocolVersion30, "user", testUser, "database", "d"))
	c.expect(&pgproto3.AuthenticationSASL{})
	c.send(&pgproto3.SASLInitialResponse{AuthMechanism: scramMechanism, Data: make([]byte, maxAuthMessageLen-len(scramMechanism)-5)})
	c.expectFatal("08P01", "malformed SCRAM message")
}

// TestStalledMessagesAfterLogin checks the two defences against clients
// that begin a message and never finish it: the memory of a message is
// taken only as its bytes arrive, and a message must be complete within
// the message timeout.
func TestStalledMessagesAfterLogin(t *testing.T) {
	const clients = 40
	ts := startServer(t, func(c *Config) { c.MessageTimeout = 500 * time.Millisecond })
	before := heapInUse()
	cs := make([]*rawClient, clients)
	for i := range cs {
		c := dialRaw(t, ts)
		c.login(testUser, testPassword, nil)
		// A complete query, then 1 KiB of a query announced as 16 MiB.
		q, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		big := []byte{'Q', 0, 0, 0, 0}
		binary.BigEndian.PutUint32(big[1:], 16<<20-20)
		c.write(append(append(q, big...), make([]byte, 1024)...))
		cs[i] = c
	}
	for _, c := range cs {
		if got := describeAll(c.untilReady()); got != "RowDesc(?column?:23:0) Row(1) Complete(SELECT 1) Ready(I)" {
			t.Fatalf("got %s", got)
		}
	}
	grew := int64(heapInUse()) - int64(before)
	t.Logf("heap grew by %d KiB for %d stalled 16 MiB messages", grew>>10, clients)
	if grew > 64<<20 {
		t.Errorf("heap grew by %d MiB for %d stalled 16 MiB messages", grew>>20, clients)
	}
	start := time.Now()
	for _, c := range cs {
		c.expectFatal("08P01", "incomplete message from client: the rest of the message did not arrive within 500ms")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stalled clients cut after %v", d)
	}
	waitFor(t, "sessions to end", func() bool { _, n := ts.srv.slots(); return n == 0 })

	// A message trickled in slowly but completely within the timeout is
	// fine, and so is waiting between messages.
	c := dialRaw(t, ts)
	c.login(testUser, testPassword, nil)
	q, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range q {
		c.write([]byte{b})
	}
	if got := describeAll(c.untilReady()); !strings.Contains(got, "Row(1)") {
		t.Fatalf("got %s", got)
	}
}

// TestIdleSessionTimeout checks idle_session_timeout: a session idle
// outside a transaction block is ended with 57P05.
func TestIdleSessionTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IdleSessionTimeout = 300 * time.Millisecond })
	c := dialRaw(t, ts)
	c.login(testUser, testPassword, nil)
	c.send(&pgproto3.Query{String: "select 1"})
	c.untilReady()
	start := time.Now()
	c.expectFatal("57P05", "terminating connection due to idle-session timeout")
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("ended after %v", d)
	}

	// Inside a transaction block the session is not idle in this sense.
	c = dialRaw(t, ts)
	c.login(testUser, testPassword, nil)
	c.send(&pgproto3.Query{String: "begin"})
	if got := describeAll(c.untilReady()); !strings.HasSuffix(got, "Ready(T)") {
		t.Fatalf("got %s", got)
	}
	time.Sleep(3 * 300 * time.Millisecond) // longer than the timeout: the assertion is that nothing happens
	c.send(&pgproto3.Query{String: "select 1"})
	if got := describeAll(c.untilReady()); !strings.Contains(got, "Row(1)") {
		t.Fatalf("got %s", got)
	}
}

// addrConn is a net.Conn with a chosen remote address.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (a addrConn) RemoteAddr() net.Addr { return a.remote }

// TestCleartextOnlyFromLoopback checks that AllowCleartextLoopback allows
// passwords without TLS from loopback clients only.
func TestCleartextOnlyFromLoopback(t *testing.T) {
	ts := startServer(t) // AllowCleartextLoopback
	server, client := net.Pipe()
	remote := &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 40000}
	c, ok, _ := ts.srv.track(t.Context(), addrConn{Conn: server, remote: remote})
	if !ok {
		t.Fatal("track failed")
	}
	go c.run()
	_ = client.SetDeadline(time.Now().Add(testTimeout))
	rc := &rawClient{t: t, conn: client, fe: pgproto3.NewFrontend(client, client)}
	rc.write(startupPacket(pgproto3.ProtocolVersion30, "user", testUser))
	rc.expectFatal("28000", "password authentication requires TLS (sslmode=require)")

	// From loopback the same works.
	lc := dialRaw(t, ts)
	lc.login(testUser, testPassword, nil)
}
