package pgwire

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
	"github.com/xdg-go/scram"
)

const (
	testUser     = "alice"
	testPassword = "s3cret-pässword"
	testTimeout  = 20 * time.Second
)

type testServer struct {
	srv     *Server
	handler *fakeHandler
	addr    *net.TCPAddr
	served  chan error
	panics  atomic.Int32
	stopped sync.Once
}

// startServer starts a Server with a fakeHandler on a loopback port. The
// users are alice (testPassword), admin (testPassword) and nopass (no
// password). TLS uses a generated self-signed certificate.
func startServer(t testing.TB, mods ...func(*Config)) *testServer {
	t.Helper()
	aliceV, err := MakeVerifier(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := LoadOrCreateTLS("", "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := newFakeHandler()
	cfg := Config{
		TLS:     tlsCfg,
		Auth:    &fakeAuth{verifiers: map[string]string{testUser: aliceV, "admin": aliceV, "nopass": ""}},
		Handler: h,
		Logger:  zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		// Most tests speak the protocol by hand without TLS; the TLS
		// requirement has tests of its own.
		AllowCleartextLoopback: true,
	}
	for _, m := range mods {
		m(&cfg)
	}
	srv, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{srv: srv, handler: h, addr: ln.Addr().(*net.TCPAddr), served: make(chan error, 1)}
	srv.panicHook = func(v any) {
		ts.panics.Add(1)
		t.Logf("recovered panic: %v", v)
	}
	go func() { ts.served <- srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop shuts the server down (once) and checks how Serve returned.
func (ts *testServer) stop(t testing.TB) {
	t.Helper()
	ts.stopped.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-ts.served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
}

func (ts *testServer) connString(user, password, extra string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s password='%s' dbname=mandate connect_timeout=10 %s",
		ts.addr.Port, user, password, extra)
}

func (ts *testServer) connect(t *testing.T, extra string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), ts.connString(testUser, testPassword, extra))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// pgError returns err as a *pgconn.PgError or fails the test.
func pgError(t *testing.T, err error) *pgconn.PgError {
	t.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("got error %v (%T), want a PostgreSQL error", err, err)
	}
	return pe
}

func expectCode(t *testing.T, err error, code, message string) *pgconn.PgError {
	t.Helper()
	pe := pgError(t, err)
	if pe.Code != code || (message != "" && pe.Message != message) {
		t.Fatalf("got %s %q, want %s %q", pe.Code, pe.Message, code, message)
	}
	return pe
}

// expectServerError checks an error as the server produced it.
func expectServerError(t *testing.T, err error, code, message string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != code || e.Message != message {
		t.Fatalf("got %v, want %s %q", err, code, message)
	}
}

// rawClient speaks the protocol with pgproto3.Frontend.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
	key  *pgproto3.BackendKeyData

	authKind string // "scram" or "cleartext" after authenticate
}

func dialRaw(t *testing.T, ts *testServer) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", ts.addr.String(), testTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	return &rawClient{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
}

// login performs startup and authentication as user and reads up to the
// first ReadyForQuery.
func (c *rawClient) login(user, password string, params map[string]string) []pgproto3.BackendMessage {
	c.t.Helper()
	p := map[string]string{"user": user, "database": "mandate"}
	for k, v := range params {
		p[k] = v
	}
	c.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: p})
	return c.authenticate(password)
}

// authenticate answers the server's authentication request (SCRAM or
// cleartext) and reads up to the first ReadyForQuery.
func (c *rawClient) authenticate(password string) []pgproto3.BackendMessage {
	c.t.Helper()
	switch m := c.receive().(type) {
	case *pgproto3.AuthenticationSASL:
		c.scram(m, password)
	case *pgproto3.AuthenticationCleartextPassword:
		c.authKind = "cleartext"
		c.send(&pgproto3.PasswordMessage{Password: password})
	default:
		c.t.Fatalf("got %s, want an authentication request", describeMsg(m))
	}
	c.expect(&pgproto3.AuthenticationOk{})
	msgs := c.untilReady()
	for _, m := range msgs {
		if k, ok := m.(*pgproto3.BackendKeyData); ok {
			c.key = &pgproto3.BackendKeyData{ProcessID: k.ProcessID, SecretKey: bytes.Clone(k.SecretKey)}
		}
	}
	if c.key == nil {
		c.t.Fatal("no BackendKeyData")
	}
	return msgs
}

func (c *rawClient) scram(sasl *pgproto3.AuthenticationSASL, password string) {
	c.t.Helper()
	c.authKind = "scram"
	if len(sasl.AuthMechanisms) != 1 || sasl.AuthMechanisms[0] != scramMechanism {
		c.t.Fatalf("mechanisms %v", sasl.AuthMechanisms)
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		c.t.Fatal(err)
	}
	conv := client.NewConversation()
	first, err := conv.Step("")
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(&pgproto3.SASLInitialResponse{AuthMechanism: scramMechanism, Data: []byte(first)})
	cont := c.expect(&pgproto3.AuthenticationSASLContinue{}).(*pgproto3.AuthenticationSASLContinue)
	final, err := conv.Step(string(cont.Data))
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(&pgproto3.SASLResponse{Data: []byte(final)})
	fin := c.expect(&pgproto3.AuthenticationSASLFinal{}).(*pgproto3.AuthenticationSASLFinal)
	if _, err := conv.Step(string(fin.Data)); err != nil || !conv.Valid() {
		c.t.Fatalf("server signature not valid: %v", err)
	}
}

// startTLS sends SSLRequest and performs the TLS handshake.
func (c *rawClient) startTLS() {
	c.t.Helper()
	c.send(&pgproto3.SSLRequest{})
	if b := c.readByte(); b != 'S' {
		c.t.Fatalf("SSLRequest answered %q", b)
	}
	tc := tls.Client(c.conn, tlsClientConfig())
	if err := tc.HandshakeContext(c.t.Context()); err != nil {
		c.t.Fatal(err)
	}
	c.conn = tc
	c.fe = pgproto3.NewFrontend(tc, tc)
}

func (c *rawClient) readByte() byte {
	c.t.Helper()
	var b [1]byte
	if _, err := io.ReadFull(c.conn, b[:]); err != nil {
		c.t.Fatal(err)
	}
	return b[0]
}

// write sends raw bytes.
func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *rawClient) receive() pgproto3.BackendMessage {
	c.t.Helper()
	msg, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("receive: %v", err)
	}
	return copyBackendMessage(c.t, msg)
}

// copyBackendMessage copies msg out of the Frontend's buffers.
func copyBackendMessage(t *testing.T, msg pgproto3.BackendMessage) pgproto3.BackendMessage {
	t.Helper()
	b, err := msg.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(bytes.NewReader(b), nil)
	out, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// expect receives one message of want's type.
func (c *rawClient) expect(want pgproto3.BackendMessage) pgproto3.BackendMessage {
	c.t.Helper()
	msg := c.receive()
	if fmt.Sprintf("%T", msg) != fmt.Sprintf("%T", want) {
		c.t.Fatalf("got %s, want %T", describeMsg(msg), want)
	}
	return msg
}

// untilReady receives messages up to and including ReadyForQuery.
func (c *rawClient) untilReady() []pgproto3.BackendMessage {
	c.t.Helper()
	var msgs []pgproto3.BackendMessage
	for {
		msg := c.receive()
		msgs = append(msgs, msg)
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return msgs
		}
	}
}

// expectClosed reads until the server closes the connection and returns
// what it sent before.
func (c *rawClient) expectClosed() []pgproto3.BackendMessage {
	c.t.Helper()
	var msgs []pgproto3.BackendMessage
	for {
		msg, err := c.fe.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection not closed: %v", err)
			}
			return msgs
		}
		msgs = append(msgs, copyBackendMessage(c.t, msg))
	}
}

// describeMsg renders a message compactly for comparisons.
func describeMsg(m pgproto3.BackendMessage) string {
	switch m := m.(type) {
	case *pgproto3.ErrorResponse:
		return fmt.Sprintf("Error(%s %s %s)", m.Severity, m.Code, m.Message)
	case *pgproto3.CommandComplete:
		return fmt.Sprintf("Complete(%s)", m.CommandTag)
	case *pgproto3.DataRow:
		vals := make([]string, len(m.Values))
		for i, v := range m.Values {
			if v == nil {
				vals[i] = "NULL"
			} else {
				vals[i] = string(v)
			}
		}
		return "Row(" + strings.Join(vals, ",") + ")"
	case *pgproto3.ReadyForQuery:
		return "Ready(" + string(m.TxStatus) + ")"
	case *pgproto3.RowDescription:
		names := make([]string, len(m.Fields))
		for i, f := range m.Fields {
			names[i] = fmt.Sprintf("%s:%d:%d", f.Name, f.DataTypeOID, f.Format)
		}
		return "RowDesc(" + strings.Join(names, ",") + ")"
	case *pgproto3.ParameterDescription:
		return fmt.Sprintf("ParamDesc(%v)", m.ParameterOIDs)
	case *pgproto3.ParameterStatus:
		return fmt.Sprintf("Param(%s=%s)", m.Name, m.Value)
	default:
		return strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3.")
	}
}

func describeAll(msgs []pgproto3.BackendMessage) string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = describeMsg(m)
	}
	return strings.Join(out, " ")
}

// waitFor polls cond until it is true or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitGoroutines waits until the number of goroutines is back to at most
// baseline, and dumps them if it is not.
func waitGoroutines(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), baseline, buf[:n])
		}
		<-tick.C
	}
}

// recv waits for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func tlsClientConfig() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpnProtocol}} //nolint:gosec // self-signed test certificate
}
