package pgwire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

func TestFakeCredentialsAreStable(t *testing.T) {
	s, err := NewServer(Config{Auth: &fakeAuth{}, Handler: newFakeHandler()})
	if err != nil {
		t.Fatal(err)
	}
	a, b := s.fakeCredentials("bob"), s.fakeCredentials("bob")
	if a.Salt != b.Salt || !bytes.Equal(a.StoredKey, b.StoredKey) {
		t.Fatal("fake credentials differ between attempts")
	}
	if c := s.fakeCredentials("carol"); c.Salt == a.Salt {
		t.Fatal("fake salt does not depend on the user")
	}
	if len(a.Salt) != scramSaltLen || a.Iters != scramIterations {
		t.Fatalf("fake credentials look unlike real ones: %d %d", len(a.Salt), a.Iters)
	}
}

func TestErrorResponse(t *testing.T) {
	var logged bytes.Buffer
	log := zerolog.New(&logged)
	tests := []struct {
		name string
		err  error
		want pgproto3.ErrorResponse
		logs bool
	}{
		{"sqlstate error", &Error{Code: "42P01", Message: "relation \"t\" does not exist", Detail: "d", Hint: "h", Position: 15},
			pgproto3.ErrorResponse{Severity: "ERROR", Code: "42P01", Message: "relation \"t\" does not exist", Detail: "d", Hint: "h", Position: 15}, false},
		{"wrapped", fmt.Errorf("running: %w", Errorf("22012", "division by zero")),
			pgproto3.ErrorResponse{Severity: "ERROR", Code: "22012", Message: "division by zero"}, false},
		{"fatal", &Error{Severity: "FATAL", Code: "3D000", Message: "no db"},
			pgproto3.ErrorResponse{Severity: "FATAL", Code: "3D000", Message: "no db"}, false},
		{"unknown severity", &Error{Severity: "PANIC", Code: "3D000", Message: "x"},
			pgproto3.ErrorResponse{Severity: "ERROR", Code: "3D000", Message: "x"}, false},
		{"missing code", &Error{Message: "x"},
			pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000", Message: "x"}, false},
		{"canceled", fmt.Errorf("q: %w", context.Canceled),
			pgproto3.ErrorResponse{Severity: "ERROR", Code: "57014", Message: "canceling statement due to user request"}, false},
		{"deadline", context.DeadlineExceeded,
			pgproto3.ErrorResponse{Severity: "ERROR", Code: "57014", Message: "canceling statement due to statement timeout"}, false},
		{"internal", errors.New("disk on fire at /secret/path"),
			pgproto3.ErrorResponse{Severity: "ERROR", Code: "XX000", Message: "internal error"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			logged.Reset()
			got := errorResponse(&log, tc.err)
			tc.want.SeverityUnlocalized = tc.want.Severity
			if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", tc.want) {
				t.Fatalf("got %+v\nwant %+v", *got, tc.want)
			}
			if hasLog := strings.Contains(logged.String(), `"level":"error"`); hasLog != tc.logs {
				t.Fatalf("logged %q", logged.String())
			}
			if tc.logs && !strings.Contains(logged.String(), "disk on fire") {
				t.Fatal("real error not logged")
			}
		})
	}
}

func TestCommandErrorCauses(t *testing.T) {
	ts := startServer(t)
	server, client := net.Pipe()
	defer server.Close()
	defer client.Close()
	c := newConn(t.Context(), ts.srv, server)
	ctx, done := c.beginCommand(time.Nanosecond)
	<-ctx.Done()
	expectServerError(t, c.commandError(ctx, fmt.Errorf("x: %w", ctx.Err())), "57014", "canceling statement due to statement timeout")
	done()

	ctx, done = c.beginCommand(0)
	c.cancelRunning()
	expectServerError(t, c.commandError(ctx, context.Canceled), "57014", "canceling statement due to user request")
	// An error the session made itself is kept.
	expectServerError(t, c.commandError(ctx, Errorf("40001", "serialization failure")), "40001", "serialization failure")
	done()

	ctx, done = c.beginCommand(0)
	c.cancel(adminShutdownError())
	expectServerError(t, c.commandError(ctx, context.Canceled), "57P01", "terminating connection due to administrator command")
	done()
}

func TestNewServerValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no auth", Config{Handler: newFakeHandler()}},
		{"no handler", Config{Auth: &fakeAuth{}}},
		{"negative size", Config{Auth: &fakeAuth{}, Handler: newFakeHandler(), MaxMessageSize: -1}},
		{"negative timeout", Config{Auth: &fakeAuth{}, Handler: newFakeHandler(), StatementTimeout: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewServer(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	s, err := NewServer(Config{Auth: &fakeAuth{}, Handler: newFakeHandler()})
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.Addr != DefaultAddr || c.MaxMessageSize != DefaultMaxMessageSize || c.StartupTimeout != DefaultStartupTimeout ||
		c.WriteTimeout != DefaultWriteTimeout || c.ServerVersion != DefaultServerVersion || c.StatementTimeout != 0 {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if s.Addr() != nil {
		t.Fatal("Addr before Serve")
	}
}

func TestLoadOrCreateTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg, err := LoadOrCreateTLS("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(dir, GeneratedCertFile), filepath.Join(dir, GeneratedKeyFile)
	for _, p := range []string{certPath, keyPath} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v", p, st.Mode().Perm())
		}
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("certificate not valid for %s: %v", name, err)
		}
	}
	if years := leaf.NotAfter.Sub(leaf.NotBefore).Hours() / 24 / 365; years < 9.9 {
		t.Errorf("valid for %.1f years", years)
	}

	// A second call loads the same certificate.
	again, err := LoadOrCreateTLS("", "", dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificates[0].Certificate[0], leaf.Raw) {
		t.Fatal("certificate regenerated")
	}
	// Explicit files.
	explicit, err := LoadOrCreateTLS(certPath, keyPath, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(explicit.Certificates[0].Certificate[0], leaf.Raw) {
		t.Fatal("explicit files not used")
	}

	for _, tc := range []struct {
		name               string
		cert, key, dataDir string
		setup              func(t *testing.T, dir string)
	}{
		{name: "cert without key", cert: certPath},
		{name: "nothing", dataDir: ""},
		{name: "missing files", cert: filepath.Join(dir, "nope.crt"), key: filepath.Join(dir, "nope.key")},
		{name: "only a key in data dir", setup: func(t *testing.T, d string) {
			if err := os.WriteFile(filepath.Join(d, GeneratedKeyFile), []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.dataDir
			if tc.setup != nil {
				d = t.TempDir()
				tc.setup(t, d)
			}
			if _, err := LoadOrCreateTLS(tc.cert, tc.key, d); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestTLSRequiresALPNForDirectTLS checks that direct TLS without ALPN
// "postgresql" is refused, as PostgreSQL does.
func TestTLSRequiresALPNForDirectTLS(t *testing.T) {
	ts := startServer(t)
	conn, err := tls.Dial("tcp", ts.addr.String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testTimeout))
	if _, err := conn.Write(startupPacket(pgproto3.ProtocolVersion30, "user", testUser)); err == nil {
		if _, err := conn.Read(make([]byte, 1)); err == nil {
			t.Fatal("server answered a direct TLS connection without ALPN")
		}
	}
}
