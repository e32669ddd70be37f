package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Config configures a Server.
type Config struct {
	// Addr is the TCP address ListenAndServe listens on
	// (default "127.0.0.1:5432").
	Addr string
	// TLS enables SSLRequest (and direct TLS with ALPN "postgresql") when
	// non-nil; see LoadOrCreateTLS.
	TLS *tls.Config
	// Auth supplies password verifiers. Required.
	Auth Authenticator
	// Handler creates a Session per authenticated connection. Required.
	Handler Handler
	// Logger receives connection and error logs. The zero value logs nothing.
	Logger zerolog.Logger
	// MaxMessageSize bounds the body of one client message
	// (default 16 MiB). Larger messages end the connection with FATAL 54000.
	MaxMessageSize int
	// StartupTimeout bounds TLS negotiation, startup and authentication
	// (default 10s).
	StartupTimeout time.Duration
	// StatementTimeout bounds each Statement.Execute (0 = none).
	StatementTimeout time.Duration
	// AllowCleartextOverTLS makes the server ask TLS connections for a
	// cleartext password (checked against the verifier) instead of running
	// SCRAM, so that clients can present tokens. Plain connections always
	// use SCRAM.
	AllowCleartextOverTLS bool
	// ServerVersion is reported as server_version (default "16.4").
	ServerVersion string
	// WriteTimeout bounds each flush of buffered output to a client, so
	// that a client that does not read cannot block its connection forever
	// (default 30s).
	WriteTimeout time.Duration

	// MaxConnections bounds the authenticated connections (PostgreSQL's
	// max_connections, default 100). Beyond it a login gets FATAL 53300
	// "sorry, too many clients already".
	MaxConnections int
	// SuperuserReservedConnections of MaxConnections are kept for users
	// the Handler reports as superusers (Superusers); others get FATAL
	// 53300 "remaining connection slots are reserved for ..." once only
	// these are left (PostgreSQL's superuser_reserved_connections,
	// default 3; negative means none).
	SuperuserReservedConnections int
	// MaxStartupConnections bounds the connections that have not finished
	// authenticating, in total (default 256) and per client IP address
	// (MaxStartupConnectionsPerHost, default 32). A connection beyond
	// either is sent FATAL 53300 at once and closed.
	MaxStartupConnections        int
	MaxStartupConnectionsPerHost int
	// IdleSessionTimeout ends a session that waits for a command outside a
	// transaction block longer than this with FATAL 57P05 (PostgreSQL's
	// idle_session_timeout; 0 = never).
	IdleSessionTimeout time.Duration
	// MessageTimeout bounds the time from the first byte of a client
	// message after login to its last byte (default 30s): a client that
	// stops in the middle of a message is sent FATAL 08P01 and closed.
	MessageTimeout time.Duration
	// AllowCleartextLoopback lets clients on a loopback address log in
	// with a password over a connection without TLS. Otherwise password
	// authentication requires TLS: FATAL 28000.
	AllowCleartextLoopback bool
}

// Defaults for zero Config fields.
const (
	DefaultAddr           = "127.0.0.1:5432"
	DefaultMaxMessageSize = 16 << 20
	DefaultStartupTimeout = 10 * time.Second
	DefaultWriteTimeout   = 30 * time.Second
	DefaultServerVersion  = "16.4"

	DefaultMaxConnections               = 100
	DefaultSuperuserReservedConnections = 3
	DefaultMaxStartupConnections        = 256
	DefaultMaxStartupConnectionsPerHost = 32
	DefaultMessageTimeout               = 30 * time.Second
)

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown.
var ErrServerClosed = errors.New("pgwire: server closed")

// Server is a PostgreSQL wire protocol server. See the package
// documentation for its architecture.
type Server struct {
	cfg       Config
	log       zerolog.Logger
	tlsConfig *tls.Config // cfg.TLS with ALPN "postgresql"; nil without TLS
	fakeKey   []byte      // secret for credentials of unknown users

	// panicHook, when set (by tests), is called with the value of every
	// recovered panic.
	panicHook func(any)

	listening chan struct{} // closed once addr is set

	mu        sync.Mutex
	addr      net.Addr
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	byPID     map[uint32]*conn
	// Connection slots: connections still in startup, in total and per
	// client IP address, and authenticated connections.
	starting       int
	startingByHost map[string]int
	sessions       int
	// chunks are the buffers large client messages are read into.
	chunks sync.Pool
	// Refused connections are logged at most once a second, with a count.
	refused       int
	refusedLogged time.Time

	wg sync.WaitGroup // one per tracked connection
}

// NewServer validates cfg, applies defaults and returns a Server.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Auth == nil {
		return nil, errors.New("pgwire: Config.Auth is required")
	}
	if cfg.Handler == nil {
		return nil, errors.New("pgwire: Config.Handler is required")
	}
	if cfg.MaxMessageSize < 0 || cfg.StartupTimeout < 0 || cfg.StatementTimeout < 0 || cfg.WriteTimeout < 0 ||
		cfg.MaxConnections < 0 || cfg.MaxStartupConnections < 0 || cfg.MaxStartupConnectionsPerHost < 0 ||
		cfg.IdleSessionTimeout < 0 || cfg.MessageTimeout < 0 {
		return nil, errors.New("pgwire: negative size, limit or timeout in Config")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.StartupTimeout == 0 {
		cfg.StartupTimeout = DefaultStartupTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.ServerVersion == "" {
		cfg.ServerVersion = DefaultServerVersion
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	switch {
	case cfg.SuperuserReservedConnections == 0:
		cfg.SuperuserReservedConnections = DefaultSuperuserReservedConnections
	case cfg.SuperuserReservedConnections < 0:
		cfg.SuperuserReservedConnections = 0
	}
	if cfg.SuperuserReservedConnections >= cfg.MaxConnections {
		return nil, fmt.Errorf("pgwire: SuperuserReservedConnections (%d) must be less than MaxConnections (%d)",
			cfg.SuperuserReservedConnections, cfg.MaxConnections)
	}
	if cfg.MaxStartupConnections == 0 {
		cfg.MaxStartupConnections = DefaultMaxStartupConnections
	}
	if cfg.MaxStartupConnectionsPerHost == 0 {
		cfg.MaxStartupConnectionsPerHost = DefaultMaxStartupConnectionsPerHost
	}
	if cfg.MessageTimeout == 0 {
		cfg.MessageTimeout = DefaultMessageTimeout
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger.With().Str("component", "pgwire").Logger(),
		fakeKey:   make([]byte, 32),
		listening: make(chan struct{}),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		byPID:     make(map[uint32]*conn),

		startingByHost: make(map[string]int),
	}
	s.chunks.New = func() any { b := make([]byte, chunkSize); return &b }
	if _, err := rand.Read(s.fakeKey); err != nil {
		return nil, fmt.Errorf("pgwire: generating secret: %w", err)
	}
	if cfg.TLS != nil {
		s.tlsConfig = cfg.TLS.Clone()
		s.tlsConfig.NextProtos = []string{alpnProtocol}
	}
	return s, nil
}

// ListenAndServe listens on cfg.Addr and serves until ctx is cancelled or
// Shutdown is called; see Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("pgwire: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve accepts connections on ln until ctx is cancelled or Shutdown is
// called, and then waits for the connections it accepted to end. Cancelling
// ctx ends those connections (FATAL 57P01) and makes Serve return nil;
// after Shutdown it returns ErrServerClosed. Serve closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	if s.addr == nil {
		s.addr = ln.Addr()
		close(s.listening)
	}
	s.mu.Unlock()

	ctx, cancel := context.WithCancelCause(ctx)
	var conns sync.WaitGroup
	defer func() {
		// Connections accepted here end with Serve (when Serve returns
		// because of an accept error they are told to terminate).
		cancel(adminShutdownError())
		_ = ln.Close()
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		conns.Wait()
	}()
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()

	s.log.Info().Str("addr", ln.Addr().String()).Msg("accepting connections")
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			switch {
			case s.isClosed():
				return ErrServerClosed
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, net.ErrClosed):
				return fmt.Errorf("pgwire: accept: %w", err)
			}
			// Probably temporary (e.g. out of file descriptors): back off.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Error().Err(err).Dur("retry_in", delay).Msg("accept failed")
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		delay = 0
		c, ok, full := s.track(ctx, nc)
		if full {
			s.refuse(nc)
			continue
		}
		if !ok {
			_ = nc.Close()
			return ErrServerClosed
		}
		conns.Add(1)
		go func() {
			defer conns.Done()
			c.run()
		}()
	}
}

// Addr returns the address of the first listener Serve was given, or nil
// before that.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Listening returns a channel that is closed once Addr is available.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// Shutdown stops accepting connections, tells every connection to
// terminate (running statements are cancelled, idle clients get FATAL
// 57P01) and waits for all connection goroutines to end. If ctx ends first,
// it closes the remaining sockets and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for ln := range s.listeners {
		_ = ln.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	for _, c := range conns {
		c.cancel(adminShutdownError())
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		_ = c.raw.Close()
	}
	s.mu.Unlock()
	return ctx.Err()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// track registers a new connection in a startup slot. It fails after
// Shutdown, and reports full when the connection would exceed
// MaxStartupConnections or MaxStartupConnectionsPerHost. The caller must
// make sure c.release runs.
func (s *Server) track(ctx context.Context, raw net.Conn) (c *conn, ok, full bool) {
	host := remoteHost(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false, false
	}
	if s.starting >= s.cfg.MaxStartupConnections || s.startingByHost[host] >= s.cfg.MaxStartupConnectionsPerHost {
		return nil, false, true
	}
	s.starting++
	s.startingByHost[host]++
	c = newConn(ctx, s, raw)
	c.host = host
	c.slot = slotStartup
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c, true, false
}

// untrack is the counterpart of track.
func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	s.releaseSlotLocked(c)
	delete(s.conns, c)
	if c.info.ProcessID != 0 && s.byPID[c.info.ProcessID] == c {
		delete(s.byPID, c.info.ProcessID)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// Connection slot kinds.
const (
	slotNone = iota
	slotStartup
	slotSession
)

func (s *Server) releaseSlotLocked(c *conn) {
	switch c.slot {
	case slotStartup:
		s.starting--
		if s.startingByHost[c.host]--; s.startingByHost[c.host] <= 0 {
			delete(s.startingByHost, c.host)
		}
	case slotSession:
		s.sessions--
	}
	c.slot = slotNone
}

// admitSession moves an authenticated connection from its startup slot to
// a session slot, or returns the FATAL 53300 to send when none is left
// for it: MaxConnections in all, of which SuperuserReservedConnections
// only for superusers (asked only when it matters).
func (s *Server) admitSession(ctx context.Context, c *conn) error {
	s.mu.Lock()
	n := s.sessions
	s.mu.Unlock()
	max, reserved := s.cfg.MaxConnections, s.cfg.SuperuserReservedConnections
	if n >= max {
		return tooManyClientsError()
	}
	superuser := false
	if n >= max-reserved {
		if su, ok := s.cfg.Handler.(Superusers); ok {
			superuser = su.IsSuperuser(ctx, c.info.User)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.sessions >= max:
		return tooManyClientsError()
	case s.sessions >= max-reserved && !superuser:
		return reservedSlotsError()
	}
	s.releaseSlotLocked(c)
	c.slot = slotSession
	s.sessions++
	return nil
}

// refuse answers a connection beyond the startup limits with FATAL 53300
// and closes it. It runs on the accept loop: the message is small and the
// socket new, so the write does not block (and is bounded regardless).
func (s *Server) refuse(nc net.Conn) {
	s.logRefused(remoteHost(nc), "too many connections in startup")
	b, err := errorResponse(&s.log, tooManyClientsError()).Encode(nil)
	if err == nil {
		_ = nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = nc.Write(b)
	}
	_ = nc.Close()
}

// logRefused logs a refused connection, at most once a second (a flood
// of connections must not flood the log), with the number refused since
// the last line.
func (s *Server) logRefused(host, reason string) {
	now := time.Now()
	s.mu.Lock()
	s.refused++
	n := s.refused
	if now.Sub(s.refusedLogged) < time.Second {
		s.mu.Unlock()
		return
	}
	s.refused, s.refusedLogged = 0, now
	s.mu.Unlock()
	s.log.Warn().Str("remote", host).Int("refused", n).Msg(reason + "; connections refused (sorry, too many clients already)")
}

// remoteHost is the IP address of a connection's peer ("" if unknown).
func remoteHost(nc net.Conn) string {
	a := nc.RemoteAddr()
	if a == nil {
		return ""
	}
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// isLoopback reports whether a connection comes from a loopback address.
func isLoopback(nc net.Conn) bool {
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return ta.IP.IsLoopback()
	}
	return false
}

// assignPID gives c a process id that no other live connection has.
func (s *Server) assignPID(c *conn) uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		pid := mrand.Uint32N(1<<31-1) + 1
		if _, taken := s.byPID[pid]; !taken {
			s.byPID[pid] = c
			return pid
		}
	}
}

// cancelRequest handles a CancelRequest: it cancels the running statement
// of the connection with that process id and secret, if any.
func (s *Server) cancelRequest(pid uint32, secret []byte) {
	s.mu.Lock()
	c := s.byPID[pid]
	s.mu.Unlock()
	if c == nil || subtle.ConstantTimeCompare(c.secret, secret) != 1 {
		s.log.Debug().Uint32("pid", pid).Msg("cancel request for unknown process or with wrong key")
		return
	}
	c.cancelRunning()
}
