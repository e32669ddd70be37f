package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/rs/zerolog"
)

const (
	// Startup packet codes (they are not exported by pgproto3).
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102

	// maxStartupPacketLen is PostgreSQL's MAX_STARTUP_PACKET_LENGTH.
	maxStartupPacketLen = 10000
	// maxAuthMessageLen bounds the body of every message before login
	// (password, SASL responses), as the startup packet is bounded.
	maxAuthMessageLen = 10000
	// readBufferSize is the read buffer of a connection; larger messages
	// are collected in a buffer that grows as their bytes arrive.
	readBufferSize = 8 << 10
	// tlsHandshakeRecord is the first byte of a TLS ClientHello; a client
	// using direct TLS (sslnegotiation=direct) starts with it.
	tlsHandshakeRecord = 0x16
	// alpnProtocol is the ALPN protocol PostgreSQL clients offer.
	alpnProtocol = "postgresql"

	// inboundQueueLen bounds the messages read ahead of execution.
	inboundQueueLen = 64
	// flushThreshold is the amount of buffered output that is written
	// without waiting for Sync or the end of a query.
	flushThreshold = 64 << 10
	// secret key lengths of BackendKeyData for protocol 3.0 and 3.2.
	secretLen30 = 4
	secretLen32 = 32
)

// inbound is one item on a connection's message queue: a decoded message
// owned by the executor, or the error that ended reading (to be sent as
// FATAL).
type inbound struct {
	msg pgproto3.FrontendMessage
	err error
}

// conn is one client connection. Fields without a comment are owned by the
// executor goroutine (the one that runs run); the reader goroutine only
// uses backend, rd, ctx, cancel, log and readerDone.
type conn struct {
	srv    *Server
	log    zerolog.Logger
	raw    net.Conn // the accepted socket
	nc     net.Conn // raw, or the TLS connection over it
	ctx    context.Context
	cancel context.CancelCauseFunc

	// host is the client's IP address; slot the kind of connection slot
	// it holds (guarded by srv.mu).
	host string
	slot int

	// Set during startup, read-only afterwards.
	info        ConnInfo
	secret      []byte
	protocol    uint32
	startupDone bool

	rd         *frameReader
	backend    *pgproto3.Backend
	readerDone chan struct{}

	wbuf     []byte
	writeErr error // sticky: the connection is unusable
	closing  bool  // Terminate received or FATAL sent
	atReady  bool  // ReadyForQuery was the last thing sent (idle-session timeout)

	sess           Session
	types          *pgtype.Map
	stmts          map[string]*prepared
	portals        map[string]*portal
	ignoreTillSync bool
	rowBuf         []byte
	rowVals        [][]byte
	rowBounds      []int

	mu        sync.Mutex
	cancelCmd context.CancelCauseFunc // guarded by mu; the running command

	// stmtTimer is the connection's one statement-timeout timer, armed for
	// each statement in turn (statementContext) and reused: it cancels
	// stmtCancel once stmtDeadline has passed (statementTimedOut).
	stmtTimer    *time.Timer
	stmtCancel   context.CancelCauseFunc // guarded by mu; the running statement
	stmtDeadline time.Time               // guarded by mu
}

func newConn(ctx context.Context, s *Server, raw net.Conn) *conn {
	ctx, cancel := context.WithCancelCause(ctx)
	remote := ""
	if a := raw.RemoteAddr(); a != nil {
		remote = a.String()
	}
	c := &conn{
		srv:    s,
		raw:    raw,
		nc:     raw,
		ctx:    ctx,
		cancel: cancel,
		log:    s.log.With().Str("remote", remote).Logger(),
	}
	c.info.RemoteAddr = remote
	return c
}

// frameReader reads the client's messages after the startup packet for
// pgproto3.Backend, one whole message at a time:
//
//   - it follows the framing (type byte, 4-byte length), and hands out a
//     message's bytes only once all of them arrived. A large message is
//     collected in a buffer that grows with the bytes received, so that a
//     client announcing a large message and sending little of it costs
//     little memory (pgproto3 would allocate the announced size at once).
//     A message longer than maxBody is handed out as its header alone, for
//     pgproto3 to refuse (54000) without reading the body.
//   - once timeout is set (after login), a message whose first byte
//     arrived must be complete within timeout; between messages reads do
//     not time out (the executor applies the idle-session timeout).
//   - it remembers the first read error, so that a failed Receive can be
//     told apart: I/O failure (the client is gone, or a message timed out)
//     or a malformed message (answered with FATAL).
type frameReader struct {
	conn    net.Conn // for read deadlines
	br      *bufio.Reader
	chunks  *sync.Pool // of *[]byte of chunkSize, for large messages
	maxBody int
	timeout time.Duration // 0: no message deadline (startup has its own)
	err     error

	pending    []byte    // bytes of the current message not yet handed out
	discard    int       // bytes to discard from br once pending is handed out
	large      []*[]byte // the rest of a large message, chunk by chunk
	deadlineAt time.Time // the read deadline set on conn (zero: none)
}

// chunkSize is the size of the pieces a large message is read into.
const chunkSize = 64 << 10

var _ io.Reader = (*frameReader)(nil)

func newFrameReader(nc net.Conn, maxBody int, chunks *sync.Pool) *frameReader {
	return &frameReader{conn: nc, br: bufio.NewReaderSize(nc, readBufferSize), maxBody: maxBody, chunks: chunks}
}

func (r *frameReader) Read(p []byte) (int, error) {
	if len(r.pending) == 0 {
		if err := r.next(); err != nil {
			if r.err == nil {
				r.err = err
			}
			return 0, err
		}
	}
	n := copy(p, r.pending)
	r.pending = r.pending[n:]
	if len(r.pending) == 0 && r.discard > 0 {
		_, _ = r.br.Discard(r.discard)
		r.discard = 0
	}
	return n, nil
}

// next makes the next message's bytes pending: the next chunk of a large
// message being handed out, or else the next whole message read.
func (r *frameReader) next() error {
	if len(r.large) > 0 {
		r.chunks.Put(r.large[0])
		r.large = r.large[1:]
		if len(r.large) > 0 {
			r.pending = *r.large[0]
			return nil
		}
	}
	// Deadlines are set only before reads that would block on the
	// socket: none while waiting for a message, the message's own while
	// waiting for the rest of it.
	if r.br.Buffered() == 0 && !r.deadlineAt.IsZero() {
		_ = r.conn.SetReadDeadline(time.Time{})
		r.deadlineAt = time.Time{}
	}
	if _, err := r.br.Peek(1); err != nil {
		return err
	}
	var start time.Time
	if r.timeout > 0 {
		start = time.Now()
	}
	r.wait(5, start)
	hdr, err := r.br.Peek(5)
	if err != nil {
		return err
	}
	size := int64(binary.BigEndian.Uint32(hdr[1:]))
	if size < 4 || size-4 > int64(r.maxBody) {
		r.pending, r.discard = hdr, 5 // pgproto3 refuses it from the header
		return nil
	}
	total := int(size) + 1
	r.wait(total, start)
	if total <= r.br.Size() {
		b, err := r.br.Peek(total)
		if err != nil {
			return err
		}
		r.pending, r.discard = b, total
		return nil
	}
	// A large message is read into chunks as its bytes arrive (memory in
	// proportion to what the client sent), then handed out.
	for left := total; left > 0; {
		c := r.chunks.Get().(*[]byte)
		*c = (*c)[:min(left, chunkSize)]
		r.large = append(r.large, c)
		if _, err := io.ReadFull(r.br, *c); err != nil {
			r.release()
			return err
		}
		left -= len(*c)
	}
	r.pending = *r.large[0]
	return nil
}

// wait prepares a read that needs n bytes buffered: if that blocks on the
// socket, the message that began at start must be complete by
// start+timeout.
func (r *frameReader) wait(n int, start time.Time) {
	if r.timeout <= 0 || r.br.Buffered() >= n {
		return
	}
	if d := start.Add(r.timeout); !r.deadlineAt.Equal(d) {
		_ = r.conn.SetReadDeadline(d)
		r.deadlineAt = d
	}
}

// release returns the chunks of a large message to the pool.
func (r *frameReader) release() {
	for _, c := range r.large {
		r.chunks.Put(c)
	}
	r.large, r.pending = nil, nil
}

// timedOut reports whether reading failed because a message was not
// complete within the message timeout.
func (r *frameReader) timedOut() bool {
	return r.timeout > 0 && errors.Is(r.err, os.ErrDeadlineExceeded)
}

// prefixConn replays bytes already read from a connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

var _ net.Conn = (*prefixConn)(nil)

// run serves the connection from startup to close.
func (c *conn) run() {
	defer c.release()
	defer c.recoverPanic("executor")
	if !c.startup() {
		return
	}
	c.serve()
}

// release ends the connection: it stops the reader, closes the socket and
// the session and unregisters the connection.
func (c *conn) release() {
	c.cancel(errClientGone)
	_ = c.nc.Close()
	_ = c.raw.Close()
	if c.readerDone != nil {
		<-c.readerDone
	}
	if c.sess != nil {
		func() {
			defer c.recoverPanic("session close")
			c.sess.Close()
		}()
	}
	c.srv.untrack(c)
	c.log.Debug().Msg("connection closed")
}

// recoverPanic is the last resort against panics (in this package or in
// the Handler): it logs them and ends the connection.
func (c *conn) recoverPanic(where string) {
	r := recover()
	if r == nil {
		return
	}
	c.log.Error().Str("where", where).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("panic in connection")
	if hook := c.srv.panicHook; hook != nil {
		hook(r)
	}
	c.cancel(errClientGone)
}

// ---------------------------------------------------------------------------
// Startup

// startup runs TLS negotiation, the startup message, authentication and
// Handler.Connect, all within cfg.StartupTimeout. It reports whether the
// connection is ready for queries.
func (c *conn) startup() bool {
	cfg := &c.srv.cfg
	deadline := time.Now().Add(cfg.StartupTimeout)
	_ = c.raw.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	// Shutdown (or the deadline) interrupts blocked reads and writes.
	stop := context.AfterFunc(ctx, func() { _ = c.raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	sm := c.negotiate(ctx)
	if sm == nil {
		return false
	}
	// Before login every message is small, as the startup packet is.
	c.rd = newFrameReader(c.nc, maxAuthMessageLen, &c.srv.chunks)
	c.backend = pgproto3.NewBackend(c.rd, io.Discard) // output goes through c.send
	c.backend.SetMaxBodyLen(maxAuthMessageLen)

	params := make(map[string]string, len(sm.Parameters))
	for k, v := range sm.Parameters {
		params[k] = v
	}
	user := params["user"]
	if user == "" {
		c.sendFatal(fatalf(codeInvalidAuthorization, "no PostgreSQL user name specified in startup packet"))
		return false
	}
	db := params["database"]
	if db == "" {
		db = user
	}
	c.info.User = user
	c.info.Database = db
	c.info.ApplicationName = params["application_name"]
	c.info.Params = params
	c.log = c.log.With().Str("user", user).Logger()

	// Passwords never travel without TLS, except from loopback when the
	// server allows it for local tools.
	if !c.info.TLS && !(cfg.AllowCleartextLoopback && isLoopback(c.raw)) {
		c.log.Info().Msg("password login without TLS refused")
		c.sendFatal(tlsRequiredError())
		return false
	}
	if err := c.authenticate(ctx); err != nil {
		if obs, ok := c.srv.cfg.Auth.(AuthObserver); ok {
			if pe, isPE := err.(*Error); isPE && pe.Code == codeInvalidPassword {
				obs.AuthFailed(ctx, c.info)
			}
		}
		c.sendFatal(err)
		return false
	}
	if err := c.backend.SetAuthType(pgproto3.AuthTypeOk); err != nil {
		c.sendFatal(err)
		return false
	}
	if err := c.srv.admitSession(ctx, c); err != nil {
		c.srv.logRefused(c.host, "no connection slot left after login")
		c.sendFatal(err)
		return false
	}
	c.rd.maxBody = cfg.MaxMessageSize
	c.backend.SetMaxBodyLen(cfg.MaxMessageSize)

	secretLen := secretLen30
	if c.protocol == pgproto3.ProtocolVersion32 {
		secretLen = secretLen32
	}
	c.secret = make([]byte, secretLen)
	if _, err := rand.Read(c.secret); err != nil {
		c.sendFatal(err)
		return false
	}
	c.info.ProcessID = c.srv.assignPID(c)
	c.log = c.log.With().Uint32("pid", c.info.ProcessID).Logger()

	sess, err := cfg.Handler.Connect(ctx, c.info)
	if err != nil {
		c.sendFatal(err)
		return false
	}
	c.sess = sess

	c.send(&pgproto3.AuthenticationOk{})
	c.sendInitialParameters()
	c.send(&pgproto3.BackendKeyData{ProcessID: c.info.ProcessID, SecretKey: c.secret})
	c.send(&pgproto3.ReadyForQuery{TxStatus: c.txStatus()})
	c.flush()
	c.atReady = true
	if !stop() || c.writeErr != nil {
		return false // the deadline passed or Shutdown began meanwhile
	}
	_ = c.raw.SetDeadline(time.Time{})
	c.startupDone = true
	c.log.Debug().Bool("tls", c.info.TLS).Str("database", db).Msg("connection ready")
	return true
}

// negotiate reads startup packets until a StartupMessage: it answers
// SSLRequest and GSSENCRequest, performs TLS, and handles CancelRequest. It
// returns nil when the connection should be closed.
func (c *conn) negotiate(ctx context.Context) *pgproto3.StartupMessage {
	sslDone, gssDone := false, false
	for first := true; ; first = false {
		var hdr [4]byte
		if _, err := io.ReadFull(c.nc, hdr[:]); err != nil {
			c.log.Debug().Err(err).Msg("reading startup packet")
			return nil
		}
		if first && hdr[0] == tlsHandshakeRecord && c.srv.tlsConfig != nil {
			pc := &prefixConn{Conn: c.raw, r: io.MultiReader(bytes.NewReader(hdr[:]), c.raw)}
			if !c.startTLS(ctx, pc, true) {
				return nil
			}
			sslDone, gssDone = true, true
			continue
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n < 8 || n > maxStartupPacketLen {
			c.log.Debug().Uint32("len", n).Msg("invalid length of startup packet")
			return nil
		}
		body := make([]byte, n-4)
		if _, err := io.ReadFull(c.nc, body); err != nil {
			c.log.Debug().Err(err).Msg("reading startup packet")
			return nil
		}
		code := binary.BigEndian.Uint32(body)
		switch {
		case code == sslRequestCode:
			if sslDone {
				c.log.Debug().Msg("duplicate SSLRequest")
				return nil
			}
			sslDone = true
			if c.srv.tlsConfig == nil {
				if !c.writeByte('N') {
					return nil
				}
				continue
			}
			if !c.writeByte('S') || !c.startTLS(ctx, c.raw, false) {
				return nil
			}
		case code == gssEncRequestCode:
			if gssDone {
				c.log.Debug().Msg("duplicate GSSENCRequest")
				return nil
			}
			gssDone = true
			if !c.writeByte('N') {
				return nil
			}
		case code == cancelRequestCode:
			var cr pgproto3.CancelRequest
			if err := cr.Decode(body); err == nil {
				c.srv.cancelRequest(cr.ProcessID, cr.SecretKey)
			}
			return nil
		case code>>16 == 3:
			return c.decodeStartup(body)
		default:
			c.sendFatal(fatalf(codeFeatureNotSupported, "unsupported frontend protocol %d.%d: server supports 3.0 to 3.2", code>>16, code&0xffff))
			return nil
		}
	}
}

func (c *conn) writeByte(b byte) bool {
	if _, err := c.nc.Write([]byte{b}); err != nil {
		c.log.Debug().Err(err).Msg("writing negotiation response")
		return false
	}
	return true
}

// startTLS performs the server side of the TLS handshake over under.
// Direct TLS requires ALPN "postgresql", as PostgreSQL does.
func (c *conn) startTLS(ctx context.Context, under net.Conn, direct bool) bool {
	tc := tls.Server(under, c.srv.tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.log.Debug().Err(err).Msg("TLS handshake failed")
		return false
	}
	if direct && tc.ConnectionState().NegotiatedProtocol != alpnProtocol {
		c.log.Debug().Msg("direct TLS connection without ALPN postgresql")
		_ = tc.Close()
		return false
	}
	c.nc = tc
	c.info.TLS = true
	return true
}

// decodeStartup decodes a StartupMessage of protocol 3.x. The server
// speaks 3.0 and 3.2; for other minor versions and for "_pq_." protocol
// options it sends NegotiateProtocolVersion, as PostgreSQL does.
func (c *conn) decodeStartup(body []byte) *pgproto3.StartupMessage {
	minor := binary.BigEndian.Uint32(body) & 0xffff
	version, newest := uint32(pgproto3.ProtocolVersion30), uint32(0)
	negotiate := false
	switch {
	case minor == 0:
	case minor == 2:
		version = pgproto3.ProtocolVersion32
	case minor == 1:
		negotiate = true
	default:
		version, newest, negotiate = pgproto3.ProtocolVersion32, 2, true
	}
	b := slices.Clone(body)
	binary.BigEndian.PutUint32(b, version)
	sm := &pgproto3.StartupMessage{ProtocolVersion: version, Parameters: map[string]string{}}
	// pgproto3 rejects a packet without parameters; PostgreSQL accepts it
	// (and then complains about the missing user).
	if len(b) != 5 || b[4] != 0 {
		if err := sm.Decode(b); err != nil {
			c.sendFatal(fatalf(codeProtocolViolation, "invalid startup packet layout"))
			return nil
		}
	}
	var unknown []string
	for k := range sm.Parameters {
		if strings.HasPrefix(k, "_pq_.") {
			unknown = append(unknown, k)
			delete(sm.Parameters, k)
		}
	}
	if negotiate || len(unknown) > 0 {
		if !negotiate {
			newest = minor
		}
		slices.Sort(unknown)
		c.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: newest, UnrecognizedOptions: unknown})
	}
	c.protocol = version
	return sm
}

// sendInitialParameters sends the ParameterStatus messages of a new
// session: the defaults, overridden and extended by the session's
// ChangedParameters.
func (c *conn) sendInitialParameters() {
	defaults := [][2]string{
		{"server_version", c.srv.cfg.ServerVersion},
		{"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"},
		{"DateStyle", "ISO, MDY"},
		{"IntervalStyle", "postgres"},
		{"TimeZone", "UTC"},
		{"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"},
		{"application_name", c.info.ApplicationName},
		{"is_superuser", "off"},
		{"session_authorization", c.info.User},
	}
	changed := c.sess.ChangedParameters()
	for _, kv := range defaults {
		v := kv[1]
		if cv, ok := changed[kv[0]]; ok {
			v = cv
		}
		c.send(&pgproto3.ParameterStatus{Name: kv[0], Value: v})
	}
	var extra []string
	for k := range changed {
		if !slices.ContainsFunc(defaults, func(kv [2]string) bool { return kv[0] == k }) {
			extra = append(extra, k)
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		c.send(&pgproto3.ParameterStatus{Name: k, Value: changed[k]})
	}
}

// ---------------------------------------------------------------------------
// Reader and executor

// serve runs the post-startup message loop: a reader goroutine decodes
// messages onto a bounded queue and this (executor) goroutine processes
// them in order.
func (c *conn) serve() {
	c.types = pgtype.NewMap()
	c.stmts = make(map[string]*prepared)
	c.portals = make(map[string]*portal)
	msgs := make(chan inbound, inboundQueueLen)
	c.readerDone = make(chan struct{})
	c.rd.timeout = c.srv.cfg.MessageTimeout
	go c.readLoop(msgs)

	idleTimeout := c.srv.cfg.IdleSessionTimeout
	var idle *time.Timer
	if idleTimeout > 0 {
		idle = time.NewTimer(idleTimeout)
		defer idle.Stop()
	}
	for !c.closing && c.writeErr == nil {
		// The idle-session timeout runs while the session waits for a
		// command outside a transaction block.
		var idleC <-chan time.Time
		if idle != nil && c.atReady && len(msgs) == 0 && c.txStatus() == 'I' {
			idle.Reset(idleTimeout)
			idleC = idle.C
		}
		select {
		case <-c.ctx.Done():
			if cause := c.closeCause(); !errors.Is(cause, errClientGone) {
				c.sendFatal(cause)
			}
			return
		case <-idleC:
			c.log.Info().Dur("idle_session_timeout", idleTimeout).Msg("idle session ended")
			c.sendFatal(idleSessionTimeoutError())
			return
		case in := <-msgs:
			if in.err != nil {
				c.sendFatal(in.err)
				return
			}
			c.atReady = false
			c.handle(in.msg)
		}
	}
}

// readLoop is the reader goroutine. It never executes anything: it decodes
// messages, copies them out of pgproto3's buffers and queues them. A
// client that goes away cancels the connection context, which cancels the
// running statement.
func (c *conn) readLoop(out chan<- inbound) {
	defer close(c.readerDone)
	defer c.recoverPanic("reader")
	for {
		msg, err := c.backend.Receive()
		var m pgproto3.FrontendMessage
		if err == nil {
			m, err = cloneMessage(msg)
		}
		if err != nil {
			rerr := c.readError(err)
			if errors.Is(rerr, errClientGone) {
				c.cancel(errClientGone)
				return
			}
			select {
			case out <- inbound{err: rerr}:
			case <-c.ctx.Done():
			}
			return
		}
		select {
		case out <- inbound{msg: m}:
		case <-c.ctx.Done():
			return
		}
		if _, ok := m.(*pgproto3.Terminate); ok {
			return
		}
	}
}

// readError classifies an error of Backend.Receive: errClientGone when
// reading from the socket failed, FATAL 54000 for an oversized message and
// FATAL 08P01 for a malformed one.
func (c *conn) readError(err error) error {
	if c.startupDone && c.rd.timedOut() {
		c.log.Info().Dur("timeout", c.rd.timeout).Msg("incomplete client message timed out")
		return fatalf(codeProtocolViolation, "incomplete message from client: the rest of the message did not arrive within %s", c.rd.timeout)
	}
	if c.rd.err != nil {
		c.log.Debug().Err(c.rd.err).Msg("client connection read failed")
		return errClientGone
	}
	var tooLarge *pgproto3.ExceededMaxBodyLenErr
	if errors.As(err, &tooLarge) {
		return fatalf(codeProgramLimitExceeded, "message too large")
	}
	e := fatalf(codeProtocolViolation, "invalid frontend message")
	e.Detail = err.Error()
	return e
}

// closeCause is the error to report when the connection context ends.
func (c *conn) closeCause() error {
	cause := context.Cause(c.ctx)
	if errors.Is(cause, errClientGone) {
		return cause
	}
	var pe *Error
	if errors.As(cause, &pe) {
		return cause
	}
	return adminShutdownError()
}

// cloneMessage returns a copy of msg that does not alias the Backend's
// buffers: what Receive returns is only valid until the next Receive.
func cloneMessage(msg pgproto3.FrontendMessage) (pgproto3.FrontendMessage, error) {
	cloneBytes := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		return append([]byte{}, b...)
	}
	switch m := msg.(type) {
	case *pgproto3.Query:
		cp := *m
		return &cp, nil
	case *pgproto3.Parse:
		cp := *m
		cp.ParameterOIDs = slices.Clone(m.ParameterOIDs)
		return &cp, nil
	case *pgproto3.Bind:
		cp := *m
		cp.ParameterFormatCodes = slices.Clone(m.ParameterFormatCodes)
		cp.ResultFormatCodes = slices.Clone(m.ResultFormatCodes)
		cp.Parameters = make([][]byte, len(m.Parameters))
		for i, p := range m.Parameters {
			cp.Parameters[i] = cloneBytes(p)
		}
		return &cp, nil
	case *pgproto3.Describe:
		cp := *m
		return &cp, nil
	case *pgproto3.Execute:
		cp := *m
		return &cp, nil
	case *pgproto3.Close:
		cp := *m
		return &cp, nil
	case *pgproto3.Sync:
		return &pgproto3.Sync{}, nil
	case *pgproto3.Flush:
		return &pgproto3.Flush{}, nil
	case *pgproto3.Terminate:
		return &pgproto3.Terminate{}, nil
	case *pgproto3.CopyData:
		return &pgproto3.CopyData{Data: cloneBytes(m.Data)}, nil
	case *pgproto3.CopyDone:
		return &pgproto3.CopyDone{}, nil
	case *pgproto3.CopyFail:
		cp := *m
		return &cp, nil
	case *pgproto3.FunctionCall:
		cp := *m
		cp.ArgFormatCodes = slices.Clone(m.ArgFormatCodes)
		cp.Arguments = make([][]byte, len(m.Arguments))
		for i, a := range m.Arguments {
			cp.Arguments[i] = cloneBytes(a)
		}
		return &cp, nil
	default:
		return nil, errors.New("unexpected message type " + quoteType(messageType(msg)))
	}
}

// messageType returns the type byte of a frontend message.
func messageType(msg pgproto3.FrontendMessage) byte {
	b, err := msg.Encode(nil)
	if err != nil || len(b) == 0 {
		return 0
	}
	return b[0]
}

func quoteType(b byte) string {
	if b >= 0x20 && b < 0x7f {
		return "'" + string(rune(b)) + "'"
	}
	return "0x" + string("0123456789abcdef"[b>>4]) + string("0123456789abcdef"[b&0xf])
}

// ---------------------------------------------------------------------------
// Output

// send buffers msg; output is written by flush (at the latest when the
// buffer exceeds flushThreshold).
func (c *conn) send(msg pgproto3.BackendMessage) {
	if c.writeErr != nil {
		return
	}
	b, err := msg.Encode(c.wbuf)
	if err != nil {
		c.log.Error().Err(err).Msg("encoding message")
		c.writeErr = err
		c.cancel(errClientGone)
		return
	}
	c.wbuf = b
	if len(c.wbuf) >= flushThreshold {
		c.flush()
	}
}

// flush writes buffered output, bounded by cfg.WriteTimeout after startup
// (by the startup deadline before).
func (c *conn) flush() {
	if c.writeErr != nil || len(c.wbuf) == 0 {
		return
	}
	if c.startupDone {
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
	}
	_, err := c.nc.Write(c.wbuf)
	if cap(c.wbuf) > 4*flushThreshold {
		c.wbuf = nil
	} else {
		c.wbuf = c.wbuf[:0]
	}
	if err != nil {
		c.log.Debug().Err(err).Msg("client connection write failed")
		c.writeErr = err
		c.cancel(errClientGone)
	}
}

// sendError sends err as an ErrorResponse (see errorResponse). A FATAL
// error is flushed and ends the connection.
func (c *conn) sendError(err error) {
	if c.writeErr != nil || errors.Is(err, errClientGone) {
		return
	}
	resp := errorResponse(&c.log, err)
	c.send(resp)
	if resp.Severity == severityFatal {
		c.flush()
		c.closing = true
	}
}

// sendFatal sends err with severity FATAL and ends the connection.
func (c *conn) sendFatal(err error) {
	if c.writeErr != nil || errors.Is(err, errClientGone) {
		c.closing = true
		return
	}
	resp := errorResponse(&c.log, err)
	resp.Severity, resp.SeverityUnlocalized = severityFatal, severityFatal
	c.send(resp)
	c.flush()
	c.closing = true
}
