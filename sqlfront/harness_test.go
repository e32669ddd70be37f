package sqlfront_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/memstore"
	"github.com/mandatehq/mandate/gateway/guardstage"
	"github.com/mandatehq/mandate/sqlfront"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// adminPassword is the password of the built-in admin in every test front end.
const adminPassword = "admin-pw"

// frontend is a running catalog (memstore) with the SQL front end served
// over TLS on a loopback port.
type frontend struct {
	Addr string // host:port
	Host string
	Port int
	Svc  *catalog.Service
	Fe   *sqlfront.Frontend
}

// frontendOption changes how startFrontend builds the catalog and the
// front end.
type frontendOption func(*catalog.Options, *sqlfront.Config)

// withClock makes the catalog use now for creation times and audit records.
func withClock(now func() time.Time) frontendOption {
	return func(o *catalog.Options, _ *sqlfront.Config) { o.Now = now }
}

// withConnectionStatus gives the front end a SHOW CONNECTION STATUS source.
func withConnectionStatus(f func(ctx context.Context, user string) ([]sqlfront.ConnectionStatus, error)) frontendOption {
	return func(_ *catalog.Options, c *sqlfront.Config) { c.ConnectionStatus = f }
}

// startFrontend opens a catalog on a memstore (admin password adminPassword)
// and serves it with pgwire on 127.0.0.1:0 with a self-signed certificate.
// Everything is stopped with tb.Cleanup: clients first (they register
// later), then the server, then the catalog.
func startFrontend(tb testing.TB, opts ...frontendOption) *frontend {
	tb.Helper()
	ctx := tb.Context()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		tb.Fatal(err)
	}
	kr, err := catalog.NewKeyring(key)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := pgwire.MakeVerifier(adminPassword)
	if err != nil {
		tb.Fatal(err)
	}
	o := catalog.Options{Store: memstore.New(), Keyring: kr, AdminVerifier: v}
	var fc sqlfront.Config
	for _, opt := range opts {
		opt(&o, &fc)
	}
	svc, err := catalog.Open(ctx, o)
	if err != nil {
		tb.Fatalf("catalog.Open: %v", err)
	}
	tb.Cleanup(func() { _ = svc.Close() })

	tlsCfg, err := pgwire.LoadOrCreateTLS("", "", tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	fc.Catalog = svc
	if fc.CheckGuardrail == nil {
		fc.CheckGuardrail = guardstage.CheckGuardrail
	}
	fe := sqlfront.New(fc)
	srv, err := pgwire.NewServer(pgwire.Config{
		TLS:     tlsCfg,
		Auth:    fe,
		Handler: fe,
		Logger:  zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), ln) }()
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			tb.Errorf("pgwire Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, pgwire.ErrServerClosed) {
			tb.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	host, port, err := net.SplitHostPort(ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatal(err)
	}
	return &frontend{Addr: ln.Addr().String(), Host: host, Port: p, Svc: svc, Fe: fe}
}

// config returns a pgx configuration for user/password/database with
// sslmode=require (TLS without certificate verification).
func (f *frontend) config(tb testing.TB, user, password, database string) *pgx.ConnConfig {
	tb.Helper()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d sslmode=require connect_timeout=10", f.Host, f.Port))
	if err != nil {
		tb.Fatal(err)
	}
	// Set directly so that names need no quoting in the connection string.
	cfg.User, cfg.Password, cfg.Database = user, password, database
	return cfg
}

// connect connects as user to database ("" = system) and closes the
// connection at cleanup. mods may change the configuration first.
func (f *frontend) connect(tb testing.TB, user, password, database string, mods ...func(*pgx.ConnConfig)) (*pgx.Conn, error) {
	tb.Helper()
	if database == "" {
		database = catalog.SystemCatalog
	}
	cfg := f.config(tb, user, password, database)
	for _, m := range mods {
		m(cfg)
	}
	conn, err := pgx.ConnectConfig(tb.Context(), cfg)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn, nil
}

// mustConnect is connect that fails the test on error.
func (f *frontend) mustConnect(tb testing.TB, user, password, database string, mods ...func(*pgx.ConnConfig)) *pgx.Conn {
	tb.Helper()
	conn, err := f.connect(tb, user, password, database, mods...)
	if err != nil {
		tb.Fatalf("connect as %s to %q: %v", user, database, err)
	}
	return conn
}

// admin connects as the built-in admin to the system catalog.
func (f *frontend) admin(tb testing.TB) *pgx.Conn {
	tb.Helper()
	return f.mustConnect(tb, catalog.AdminUser, adminPassword, "")
}

// mustExec runs each statement and fails the test on the first error.
func mustExec(tb testing.TB, conn *pgx.Conn, stmts ...string) {
	tb.Helper()
	for _, s := range stmts {
		if _, err := conn.Exec(tb.Context(), s); err != nil {
			tb.Fatalf("%s: %v", s, err)
		}
	}
}

// asPgError returns err as a *pgconn.PgError or fails the test.
func asPgError(tb testing.TB, err error) *pgconn.PgError {
	tb.Helper()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		tb.Fatalf("got error %v (%T), want a PostgreSQL error", err, err)
	}
	return pe
}

// wantSQLState fails the test unless err is a PostgreSQL error with code.
func wantSQLState(tb testing.TB, err error, code string) *pgconn.PgError {
	tb.Helper()
	if err == nil {
		tb.Fatalf("got no error, want SQLSTATE %s", code)
	}
	pe := asPgError(tb, err)
	if pe.Code != code {
		tb.Fatalf("got SQLSTATE %s (%s), want %s", pe.Code, pe.Message, code)
	}
	return pe
}

// TestHarness checks the harness itself: connections use TLS, the admin
// bootstrap is visible and Cleanup stops everything.
func TestHarness(t *testing.T) {
	f := startFrontend(t)
	conn := f.admin(t)
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Errorf("connection is %T, want *tls.Conn (sslmode=require)", conn.PgConn().Conn())
	}
	var user, db string
	if err := conn.QueryRow(t.Context(), "SELECT current_user, current_database()").Scan(&user, &db); err != nil {
		t.Fatal(err)
	}
	if user != "admin" || db != "system" {
		t.Errorf("current_user, current_database() = %q, %q, want admin, system", user, db)
	}
}
