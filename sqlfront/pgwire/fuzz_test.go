package pgwire

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// serveSession runs the post-startup message loop of one connection over
// raw for an established session, as if startup had just completed. It is
// the entry point of FuzzMessages.
func (s *Server) serveSession(ctx context.Context, raw net.Conn, info ConnInfo, sess Session) {
	c, ok, _ := s.track(ctx, raw)
	if !ok {
		_ = raw.Close()
		return
	}
	defer c.release()
	defer c.recoverPanic("executor")
	c.info, c.sess = info, sess
	c.rd = newFrameReader(raw, s.cfg.MaxMessageSize, &s.chunks)
	c.backend = pgproto3.NewBackend(c.rd, io.Discard)
	c.backend.SetMaxBodyLen(s.cfg.MaxMessageSize)
	c.startupDone = true
	c.serve()
}

// fuzzConn is a net.Conn that reads a fixed input (then io.EOF) and
// records what is written.
type fuzzConn struct {
	in *bytes.Reader

	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

var _ net.Conn = (*fuzzConn)(nil)

func (f *fuzzConn) Read(p []byte) (int, error) {
	f.mu.Lock()
	closed := f.closed
	f.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	return f.in.Read(p)
}

func (f *fuzzConn) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return 0, net.ErrClosed
	}
	return f.out.Write(p)
}

func (f *fuzzConn) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fuzzConn) output() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return bytes.Clone(f.out.Bytes())
}

func (*fuzzConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5432} }
func (*fuzzConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000} }
func (*fuzzConn) SetDeadline(time.Time) error      { return nil }
func (*fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (*fuzzConn) SetWriteDeadline(time.Time) error { return nil }

func newFuzzServer(f *testing.F) (*Server, *fakeHandler) {
	f.Helper()
	v, err := MakeVerifier(testPassword)
	if err != nil {
		f.Fatal(err)
	}
	tlsCfg, err := LoadOrCreateTLS("", "", f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	h := newFakeHandler()
	h.fuzzing = true
	h.started, h.ended = make(chan string, 1<<20), make(chan error, 1<<20)
	srv, err := NewServer(Config{
		Auth: &fakeAuth{verifiers: map[string]string{testUser: v}}, Handler: h, TLS: tlsCfg,
		MaxMessageSize: 64 << 10, StatementTimeout: time.Second, AllowCleartextLoopback: true,
	})
	if err != nil {
		f.Fatal(err)
	}
	// A panic anywhere in the server crashes the fuzz worker, which the
	// fuzzer reports with its input.
	srv.panicHook = func(v any) { panic(v) }
	return srv, h
}

// checkBackendStream checks that out is a sequence of complete, decodable
// backend messages.
func checkBackendStream(t *testing.T, out []byte) {
	t.Helper()
	for len(out) > 0 {
		if len(out) < 5 {
			t.Fatalf("truncated message header %q", out)
		}
		n := int(binary.BigEndian.Uint32(out[1:5])) + 1
		if n < 5 || n > len(out) {
			t.Fatalf("bad message length in output: %q", out[:5])
		}
		fe := pgproto3.NewFrontend(bytes.NewReader(out[:n]), nil)
		if _, err := fe.Receive(); err != nil {
			t.Fatalf("server sent an undecodable %q message: %v", out[0], err)
		}
		out = out[n:]
	}
}

func encodeAll(tb testing.TB, msgs ...pgproto3.FrontendMessage) []byte {
	tb.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			tb.Fatal(err)
		}
	}
	return b
}

// FuzzMessages feeds arbitrary bytes to the post-startup message loop. The
// server must not panic or hang, and everything it writes must be valid
// protocol. A Terminate is appended so that well-formed input ends too.
func FuzzMessages(f *testing.F) {
	srv, h := newFuzzServer(f)
	seeds := [][]byte{
		encodeAll(f, &pgproto3.Query{String: "select 1; types; fail"}),
		encodeAll(f, &pgproto3.Query{String: ""}, &pgproto3.Query{String: "begin"}, &pgproto3.Query{String: "boom"}),
		encodeAll(f, &pgproto3.Parse{Name: "s", Query: "series $1"}, &pgproto3.Describe{ObjectType: 'S', Name: "s"},
			&pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s", Parameters: [][]byte{[]byte("3")}, ResultFormatCodes: []int16{1}},
			&pgproto3.Describe{ObjectType: 'P', Name: "p"}, &pgproto3.Execute{Portal: "p", MaxRows: 1},
			&pgproto3.Execute{Portal: "p"}, &pgproto3.Close{ObjectType: 'P', Name: "p"}, &pgproto3.Sync{}),
		encodeAll(f, &pgproto3.Parse{Query: "types"}, &pgproto3.Bind{ResultFormatCodes: []int16{1}}, &pgproto3.Execute{},
			&pgproto3.Parse{Query: "fail"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Sync{}),
		encodeAll(f, &pgproto3.Parse{Query: "echo $1", ParameterOIDs: []uint32{23}},
			&pgproto3.Bind{Parameters: [][]byte{{0, 0, 0, 7}}, ParameterFormatCodes: []int16{1}}, &pgproto3.Execute{}, &pgproto3.Sync{}),
		encodeAll(f, &pgproto3.FunctionCall{Function: 1}, &pgproto3.CopyData{Data: []byte("x")}, &pgproto3.Query{String: "set app x"}),
		{'Q', 0, 0, 0, 3},
		{'Q', 0x7f, 0xff, 0xff, 0xff},
		{'B', 0, 0, 0, 6, 0, 0},
		{'p', 0, 0, 0, 5, 0},
		{'?', 0, 0, 0, 4},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	info := ConnInfo{User: testUser, Database: "fuzz", ProcessID: 1}
	f.Fuzz(func(t *testing.T, data []byte) {
		input := append(bytes.Clone(data), 'X', 0, 0, 0, 4)
		fc := &fuzzConn{in: bytes.NewReader(input)}
		sess, err := h.Connect(t.Context(), info)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.serveSession(context.Background(), fc, info, sess)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("server hung on input %q", data)
		}
		if !sess.(*fakeSession).isClosed() {
			t.Fatal("session not closed")
		}
		checkBackendStream(t, fc.output())
	})
}

// FuzzStartup feeds arbitrary bytes to a new connection: negotiation,
// TLS, startup message and authentication.
func FuzzStartup(f *testing.F) {
	srv, _ := newFuzzServer(f)
	startup := startupPacket(pgproto3.ProtocolVersion30, "user", testUser, "database", "d")
	gss := encodeAll(f, &pgproto3.GSSEncRequest{})
	f.Add(startup)
	f.Add(append(bytes.Clone(gss), startup...))
	f.Add(encodeAll(f, &pgproto3.SSLRequest{}))
	f.Add(encodeAll(f, &pgproto3.CancelRequest{ProcessID: 1, SecretKey: []byte{1, 2, 3, 4}}))
	f.Add(startupPacket(3<<16|7, "user", testUser, "_pq_.x", "y"))
	f.Add(append(bytes.Clone(startup), encodeAll(f, &pgproto3.SASLInitialResponse{AuthMechanism: scramMechanism, Data: []byte("n,,n=,r=abc")})...))
	f.Add(append(bytes.Clone(startup), encodeAll(f, &pgproto3.SASLInitialResponse{AuthMechanism: scramMechanism, Data: []byte("y,,n=,r=abc")},
		&pgproto3.SASLResponse{Data: []byte("c=biws,r=abc,p=AAAA")})...))
	f.Add([]byte{0x16, 3, 1, 0, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		fc := &fuzzConn{in: bytes.NewReader(data)}
		c, ok, _ := srv.track(context.Background(), fc)
		if !ok {
			t.Fatal("track failed")
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.run()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("server hung on input %q", data)
		}
	})
}
