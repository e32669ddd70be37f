package pgwire

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sync/errgroup"
)

// runClients connects n pgx clients, 16 at a time; each runs a few
// queries in both protocols. Each login is a SCRAM exchange (4096 rounds
// of PBKDF2 on both sides, far slower under -race): 200 logins at once on
// a loaded 2-core machine outlasted the clients' connect timeout.
func runClients(t *testing.T, ts *testServer, n int) {
	t.Helper()
	g, ctx := errgroup.WithContext(t.Context())
	g.SetLimit(16)
	for i := range n {
		g.Go(func() error {
			conn, err := pgx.Connect(ctx, ts.connString(testUser, testPassword, ""))
			if err != nil {
				return fmt.Errorf("client %d: %w", i, err)
			}
			defer conn.Close(context.Background())
			for j, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
				rows, err := conn.Query(ctx, "series $1", mode, int64(i+j))
				if err != nil {
					return err
				}
				got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
				if err != nil {
					return fmt.Errorf("client %d: %w", i, err)
				}
				if len(got) != i+j {
					return fmt.Errorf("client %d: %d rows, want %d", i, len(got), i+j)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestNoGoroutineLeaks ends connections in every way and checks that the
// server's goroutines go away, first per connection and then after
// Shutdown.
func TestNoGoroutineLeaks(t *testing.T) {
	baseline := runtime.NumGoroutine()
	ts := startServer(t, func(c *Config) { c.MaxMessageSize = 4096 })
	serving := baseline + 1 // the Serve goroutine

	scenarios := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"pgx clients", func(t *testing.T) { runClients(t, ts, 10) }},
		{"tls client", func(t *testing.T) { ts.connect(t, "sslmode=require").Close(t.Context()) }},
		{"direct tls client", func(t *testing.T) { ts.connect(t, "sslmode=require sslnegotiation=direct").Close(t.Context()) }},
		{"cancelled statement", func(t *testing.T) {
			conn := ts.connect(t, "")
			errc := make(chan error, 1)
			go func() {
				_, err := conn.Exec(context.Background(), "sleep")
				errc <- err
			}()
			recv(t, ts.handler.started, "statement start")
			if err := conn.PgConn().CancelRequest(t.Context()); err != nil {
				t.Fatal(err)
			}
			recv(t, ts.handler.ended, "statement end")
			recv(t, errc, "query result")
			conn.Close(t.Context())
		}},
		{"client gone during statement", func(t *testing.T) {
			c := dialRaw(t, ts)
			c.login(testUser, testPassword, nil)
			c.send(&pgproto3.Query{String: "sleep"})
			recv(t, ts.handler.started, "statement start")
			_ = c.conn.Close()
			recv(t, ts.handler.ended, "statement end")
		}},
		{"half message", func(t *testing.T) {
			c := dialRaw(t, ts)
			c.login(testUser, testPassword, nil)
			c.write([]byte{'Q', 0, 0})
			_ = c.conn.Close()
		}},
		{"half startup", func(t *testing.T) {
			c := dialRaw(t, ts)
			c.write([]byte{0, 0})
			_ = c.conn.Close()
		}},
		{"wrong password", func(t *testing.T) {
			if _, err := pgx.Connect(t.Context(), ts.connString(testUser, "wrong", "")); err == nil {
				t.Fatal("connected")
			}
		}},
		{"message too large", func(t *testing.T) {
			c := dialRaw(t, ts)
			c.login(testUser, testPassword, nil)
			c.write([]byte{'Q', 0, 1, 0, 0})
			c.expectClosed()
		}},
		{"suspended portal", func(t *testing.T) {
			c := dialRaw(t, ts)
			c.login(testUser, testPassword, nil)
			c.send(&pgproto3.Parse{Query: "series $1"}, bindSeries("", "", "5"), &pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{})
			c.untilReady()
			_ = c.conn.Close()
		}},
		{"panic", func(t *testing.T) {
			c := dialRaw(t, ts)
			c.login(testUser, testPassword, nil)
			c.send(&pgproto3.Query{String: "panic"})
			c.expectClosed()
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, sc.run)
	}
	// Left open: Shutdown must end it.
	idle := dialRaw(t, ts)
	idle.login(testUser, testPassword, nil)

	// All but the last connection are gone, and with them their
	// goroutines (one idle connection has two).
	waitFor(t, "sessions to close", func() bool {
		ts.handler.mu.Lock()
		defer ts.handler.mu.Unlock()
		open := 0
		for _, s := range ts.handler.sessions {
			if !s.isClosed() {
				open++
			}
		}
		return open == 1
	})
	waitGoroutines(t, serving+2)
	ts.stop(t)
	waitGoroutines(t, baseline)
}
