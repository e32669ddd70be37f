package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/pgstore"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// connTest is a writer replica's endpoint (its handler; the changes run by
// a fake that answers revision 7 to each) on a test server, and a sender
// pointed at it.
type connTest struct {
	srv, snd    *replicaWriter
	hs          *httptest.Server
	addr        string
	execs       atomic.Int64 // changes run
	gets, posts atomic.Int64 // requests to writerPath, by method
}

var testWriterKey = writerKey([]byte("master key of this installation"))

// connTestOpts: the writer's endpoint with TLS (its own certificate, as
// mandate serve makes one), or postOnly (only POST writerPath, as an
// older version); the sender's goroutines; the writer's bounds when not
// 0; exec, when not nil, runs the changes instead of the fake (the
// changes are counted either way).
type connTestOpts struct {
	tls, postOnly bool
	senders       int
	maxConns      int
	connIdle      time.Duration
	frameRead     time.Duration
	exec          writerExec
}

// newConnTest starts the writer's endpoint and a sender.
func newConnTest(t testing.TB, o connTestOpts) *connTest {
	t.Helper()
	useTLS := o.tls
	ct := &connTest{srv: &replicaWriter{key: testWriterKey, self: "r1", log: zerolog.Nop()}}
	ct.srv.init(useTLS)
	if o.maxConns != 0 {
		ct.srv.maxConns = o.maxConns
	}
	if o.connIdle != 0 {
		ct.srv.connIdle = o.connIdle
	}
	if o.frameRead != 0 {
		ct.srv.frameRead = o.frameRead
	}
	ct.srv.held.Store(true)
	exec := writerExec(func(ctx context.Context, via string, changes []writerChange) []writerResult {
		ct.execs.Add(int64(len(changes)))
		if o.exec != nil {
			return o.exec(ctx, via, changes)
		}
		res := make([]writerResult, len(changes))
		for i := range res {
			res[i].Revision = 7
		}
		return res
	})
	ct.srv.exec.Store(&exec)
	mux := http.NewServeMux()
	mux.Handle("POST "+writerPath, ct.srv)
	if !o.postOnly {
		mux.Handle("GET "+writerPath, ct.srv)
	}
	ct.hs = httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == writerPath {
			map[string]*atomic.Int64{http.MethodGet: &ct.gets, http.MethodPost: &ct.posts}[r.Method].Add(1)
		}
		mux.ServeHTTP(rw, r)
	}))
	ct.hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	var cert string
	if useTLS {
		cfg, err := pgwire.LoadOrCreateTLS("", "", t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ct.hs.TLS = cfg
		ct.hs.StartTLS()
		cert = fingerprint(ct.hs.Certificate().Raw)
	} else {
		ct.hs.Start()
	}
	t.Cleanup(func() {
		ct.srv.closeConns()
		ct.hs.Close()
	})
	ct.addr = ct.hs.Listener.Addr().String()
	ct.snd = newTestSender(useTLS, ct.addr, cert, o.senders)
	return ct
}

// newTestSender returns a sender forwarding to the writer at addr.
func newTestSender(useTLS bool, addr, cert string, senders int) *replicaWriter {
	w := &replicaWriter{key: testWriterKey, self: "r2", log: zerolog.Nop()}
	w.init(useTLS)
	w.target.Store(&pgstore.WriterHolder{Addr: addr, Cert: cert})
	for range senders {
		go w.sender()
	}
	return w
}

// served is how many connections the writer serves.
func (ct *connTest) served() int {
	ct.srv.connsMu.Lock()
	defer ct.srv.connsMu.Unlock()
	return len(ct.srv.conns)
}

var testStmt = []catalog.Statement{{Req: catalog.WriteRequest{Caller: catalog.Caller{Principal: "admin"}}, Forward: []byte(`{"sql":"GRANT"}`)}}

// forward forwards a statement and wants it run by the writer.
func forward(t testing.TB, w *replicaWriter) {
	t.Helper()
	if rev, _, err := w.Forward(t.Context(), testStmt, false); err != nil || rev != 7 {
		t.Fatalf("Forward = %d, %v; want revision 7", rev, err)
	}
}

// Statements are forwarded over the senders' connections, with and
// without TLS: no POST request, at most one connection per sender, every
// frame counted as a request.
func TestWriterConnForwards(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run("tls="+strconv.FormatBool(useTLS), func(t *testing.T) {
			ct := newConnTest(t, connTestOpts{tls: useTLS, senders: writerSenders})
			const n = 200
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() {
					for range n / 8 {
						if rev, _, err := ct.snd.Forward(t.Context(), testStmt, false); err != nil || rev != 7 {
							t.Errorf("Forward = %d, %v; want revision 7", rev, err)
							return
						}
					}
				})
			}
			wg.Wait()
			if ct.execs.Load() != n || ct.posts.Load() != 0 || ct.gets.Load() > writerSenders {
				t.Errorf("%d changes run, %d POST requests, %d connections opened; want %d, 0, at most %d",
					ct.execs.Load(), ct.posts.Load(), ct.gets.Load(), n, writerSenders)
			}
			if s, r := ct.snd.sent.requests.Load(), ct.srv.served.requests.Load(); s != r || s == 0 || ct.snd.sent.changes.Load() != n {
				t.Errorf("requests sent %d, served %d; changes sent %d, want %d", s, r, ct.snd.sent.changes.Load(), n)
			}
		})
	}
}

// A replica's sessions that write one after the other each have their
// statement sent at once, while the earlier ones still run on the writer
// (each in its own request, over its own connection): none waits for
// another's answer, a whole commit of the writer.
func TestWriterSendersInFlight(t *testing.T) {
	const sessions = 8 // writing at once, as mandate loadgen's clients
	arrived, release := make(chan struct{}, sessions), make(chan struct{})
	ct := newConnTest(t, connTestOpts{senders: writerSenders, exec: func(_ context.Context, _ string, changes []writerChange) []writerResult {
		arrived <- struct{}{}
		<-release // the writer's commit, until every statement arrived
		res := make([]writerResult, len(changes))
		for i := range res {
			res[i].Revision = 7
		}
		return res
	}})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	for i := range sessions {
		wg.Go(func() {
			if rev, _, err := ct.snd.Forward(t.Context(), testStmt, false); err != nil || rev != 7 {
				t.Errorf("Forward = %d, %v; want revision 7", rev, err)
			}
		})
		select {
		case <-arrived:
		case <-time.After(10 * time.Second): // a failure bound
			t.Fatalf("statement %d of %d did not reach the writer while the earlier ones ran", i+1, sessions)
		}
	}
	if n := ct.srv.served.requests.Load(); n != sessions {
		t.Errorf("the writer ran %d requests, want %d", n, sessions)
	}
}

// requestFrame is the payload of a request's frame, authenticated with key.
func requestFrame(key []byte, id string) []byte {
	body := []byte(`{"via":"r2","changes":[{"stmts":[{"principal":"admin","form":{"sql":"GRANT"}}]}]}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	return append([]byte(ts+"."+id+"."+(&replicaWriter{key: key}).mac("request", ts, id, body)+"\n"), body...)
}

// The writer refuses a replayed frame, one with another key's MAC and one
// longer than writerMaxFrame, runs nothing of them, and closes the
// connection after its answer.
func TestWriterConnRefusals(t *testing.T) {
	id := strings.Repeat("ab", 16)
	for _, tc := range []struct {
		name   string
		first  []byte // sent before, answered 200
		header uint32 // the frame's length, when not its payload's
		frame  []byte
		status int
	}{
		{name: "replayed", first: requestFrame(testWriterKey, id), frame: requestFrame(testWriterKey, id), status: http.StatusUnauthorized},
		{name: "bad MAC", frame: requestFrame(writerKey([]byte("another installation's key")), id), status: http.StatusUnauthorized},
		{name: "malformed", frame: []byte("no authentication"), status: http.StatusUnauthorized},
		{name: "oversized", header: writerMaxFrame + 1, status: http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ct := newConnTest(t, connTestOpts{})
			c, err := ct.snd.connect(t.Context(), ct.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.conn.Close()
			deadline := time.Now().Add(time.Minute)
			if tc.first != nil {
				if err := writeFrame(c.conn, deadline, tc.first); err != nil {
					t.Fatal(err)
				}
				if p, err := readFrame(c.conn, c.r, nil, deadline, 0); err != nil || !strings.HasPrefix(string(p), "200 ") {
					t.Fatalf("first frame answered %q, %v", p, err)
				}
			}
			ran := ct.execs.Load()
			if tc.header != 0 {
				_, err = c.conn.Write(binary.BigEndian.AppendUint32(nil, tc.header))
			} else {
				err = writeFrame(c.conn, deadline, tc.frame)
			}
			if err != nil {
				t.Fatal(err)
			}
			p, err := readFrame(c.conn, c.r, nil, deadline, 0)
			if err != nil || !strings.HasPrefix(string(p), strconv.Itoa(tc.status)+" ") {
				t.Fatalf("answer %q, %v; want status %d", p, err, tc.status)
			}
			if ct.execs.Load() != ran {
				t.Errorf("the refused frame ran")
			}
			if _, err := readFrame(c.conn, c.r, nil, deadline, 0); !errors.Is(err, io.EOF) {
				t.Errorf("after the refusal: %v; want the connection closed", err)
			}
		})
	}
}

// Past maxConns the writer refuses the upgrade: the sender posts.
func TestWriterConnCap(t *testing.T) {
	ct := newConnTest(t, connTestOpts{senders: 1, maxConns: 1})
	c, err := ct.snd.connect(t.Context(), ct.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ct.snd.connect(t.Context(), ct.addr); !errors.Is(err, errNoUpgrade) {
		t.Fatalf("a connection past the bound: %v; want %v", err, errNoUpgrade)
	}
	forward(t, ct.snd)
	if ct.posts.Load() != 1 {
		t.Fatalf("%d POST requests; want the statement posted", ct.posts.Load())
	}
	c.conn.Close()
	waitFor(t, 10*time.Second, "the connection closed on the writer", func() bool { return ct.served() == 0 })
	c, err = ct.snd.connect(t.Context(), ct.addr)
	if err != nil {
		t.Fatalf("a connection within the bound again: %v", err)
	}
	c.conn.Close()
}

// A connection the writer closed while idle is reopened: the next
// statement is forwarded, not failed with 08006.
func TestWriterConnIdleClosed(t *testing.T) {
	for _, useTLS := range []bool{false, true} {
		t.Run("tls="+strconv.FormatBool(useTLS), func(t *testing.T) {
			ct := newConnTest(t, connTestOpts{tls: useTLS, senders: 1, connIdle: 500 * time.Millisecond})
			for range 2 {
				forward(t, ct.snd)
				waitFor(t, 10*time.Second, "the idle connection closed by the writer", func() bool { return ct.served() == 0 })
			}
			if ct.gets.Load() != 2 || ct.posts.Load() != 0 {
				t.Errorf("%d connections, %d POST requests; want 2, 0", ct.gets.Load(), ct.posts.Load())
			}
		})
	}
}

// A connection idle for longer than a frame may take to arrive, but less
// than the writer keeps it, still carries the next frame: the frame's
// time counts from its length, not from the previous answer (else the
// writer gave up on a frame larger than its read buffer, closed the
// connection, and the statement failed with 08006).
func TestWriterConnIdleLongerThanFrameRead(t *testing.T) {
	const frameRead = 100 * time.Millisecond
	ct := newConnTest(t, connTestOpts{senders: 1, frameRead: frameRead})
	// Larger than a read buffer: the frame's body is read after its length.
	large := []catalog.Statement{{Req: catalog.WriteRequest{Caller: catalog.Caller{Principal: "admin"}},
		Forward: []byte(`{"sql":"GRANT ` + strings.Repeat("x", 64<<10) + `"}`)}}
	for i := range 2 {
		if i > 0 {
			<-time.After(3 * frameRead) // the idle time is what is tested
		}
		if rev, _, err := ct.snd.Forward(t.Context(), large, false); err != nil || rev != 7 {
			t.Fatalf("Forward %d = %d, %v; want revision 7", i+1, rev, err)
		}
	}
	if ct.gets.Load() != 1 || ct.posts.Load() != 0 {
		t.Errorf("%d connections opened, %d POST requests; want 1, 0", ct.gets.Load(), ct.posts.Load())
	}
}

// A frame written whole whose answer is lost (the connection breaks) may
// have run: 08006, not committed here.
func TestWriterConnBrokenAfterWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var read atomic.Int64 // frames read whole
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r := bufio.NewReader(c)
			if _, err := http.ReadRequest(r); err == nil {
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+writerProtocol+"\r\n\r\n")
				if _, err := readFrame(c, r, nil, time.Now().Add(time.Minute), time.Minute); err == nil {
					read.Add(1)
				}
			}
			c.Close()
		}
	}()
	snd := newTestSender(false, ln.Addr().String(), "", 1)
	_, _, err = snd.Forward(t.Context(), testStmt, false)
	var ce *catalog.Error
	if !errors.As(err, &ce) || ce.Code != catalog.CodeOutcomeUnknown {
		t.Fatalf("Forward with the answer lost: %v; want 08006", err)
	}
	if read.Load() != 1 {
		t.Fatalf("the writer read %d frames", read.Load())
	}
}

// A writer that serves no connection (an older version: POST only) is
// sent POST requests, and not asked again for a while.
func TestWriterConnFallback(t *testing.T) {
	ct := newConnTest(t, connTestOpts{postOnly: true, senders: 1})
	for range 3 {
		forward(t, ct.snd)
	}
	if ct.gets.Load() != 1 || ct.posts.Load() != 3 {
		t.Fatalf("%d upgrades asked, %d POST requests; want 1, 3", ct.gets.Load(), ct.posts.Load())
	}
}

// A replica that is not the writer refuses the connection: the statements
// are committed here.
func TestWriterConnNotWriter(t *testing.T) {
	ct := newConnTest(t, connTestOpts{senders: 1})
	ct.srv.held.Store(false)
	if _, _, err := ct.snd.Forward(t.Context(), testStmt, false); !errors.Is(err, catalog.ErrNotForwarded) {
		t.Fatalf("Forward to a replica that is not the writer: %v; want ErrNotForwarded", err)
	}
	if ct.posts.Load() != 0 || ct.execs.Load() != 0 {
		t.Fatalf("%d POST requests, %d changes run", ct.posts.Load(), ct.execs.Load())
	}
}

// BenchmarkWriterHop: the hop alone, sender and writer in this process,
// the writer's commit a fake: one statement per request (sequential), or
// 8 callers at once, over the connection and as POST requests (the
// writer of an older version). µs-cpu/op is this process's CPU (both
// sides) per statement.
func BenchmarkWriterHop(b *testing.B) {
	for _, tc := range []struct {
		name     string
		postOnly bool
		parallel bool
	}{
		{"connection/sequential", false, false}, {"post/sequential", true, false},
		{"connection/parallel", false, true}, {"post/parallel", true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ct := newConnTest(b, connTestOpts{postOnly: tc.postOnly, senders: writerSenders})
			forward(b, ct.snd) // the connection opened, or the upgrade refused
			cpu0 := processCPU(b)
			b.ResetTimer()
			if tc.parallel {
				b.SetParallelism(4) // 8 callers on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, _, err := ct.snd.Forward(b.Context(), testStmt, false); err != nil {
							b.Error(err) // not Fatal: not the benchmark's goroutine
							return
						}
					}
				})
			} else {
				for b.Loop() {
					forward(b, ct.snd)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "µs-cpu/op")
			b.ReportMetric(float64(ct.snd.sent.changes.Load())/float64(ct.snd.sent.requests.Load()), "changes/request")
		})
	}
}
