package pgwire

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestPgxTypes checks that every common type decodes in pgx, in binary
// (extended protocol) and in text (simple protocol).
func TestPgxTypes(t *testing.T) {
	ts := startServer(t)
	conn := ts.connect(t, "")
	for _, tc := range []struct {
		name   string
		mode   pgx.QueryExecMode
		binary bool
	}{
		{"extended", pgx.QueryExecModeCacheStatement, true},
		{"describe", pgx.QueryExecModeDescribeExec, true},
		{"simple", pgx.QueryExecModeSimpleProtocol, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := conn.Query(t.Context(), "types", tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			// pgx asks for binary results for every type it knows except
			// text-like ones (text, json, jsonb; see TestBinaryResults).
			for i, fd := range rows.FieldDescriptions() {
				want := int16(0)
				if tc.binary {
					want = conn.TypeMap().FormatCodeForOID(fd.DataTypeOID)
				}
				if fd.Format != want {
					t.Errorf("column %d (%s) format %d, want %d", i, fd.Name, fd.Format, want)
				}
			}
			if !rows.Next() {
				t.Fatalf("no row: %v", rows.Err())
			}
			var (
				b      bool
				i2     int16
				i4     int32
				i8     int64
				f4     float32
				f8     float64
				num    pgtype.Numeric
				text   string
				empty  *string
				ba     []byte
				d      time.Time
				ts     time.Time
				u      pgtype.UUID
				j, jb  map[string]any
				wantTS = time.Date(2024, 2, 29, 12, 34, 56, 789000000, time.UTC)
			)
			if err := rows.Scan(&b, &i2, &i4, &i8, &f4, &f8, &num, &text, &empty, &ba, &d, &ts, &u, &j, &jb); err != nil {
				t.Fatal(err)
			}
			numText, _ := num.Value()
			checks := []struct {
				name string
				ok   bool
				got  any
			}{
				{"bool", b, b},
				{"int2", i2 == -12, i2},
				{"int4", i4 == 123456, i4},
				{"int8", i8 == 1<<40, i8},
				{"float4", f4 == 1.5, f4},
				{"float8", f8 == -3.25, f8},
				{"numeric", numText == "12345.678", numText},
				{"text", text == "héllo wörld", text},
				{"empty text is not NULL", empty != nil && *empty == "", empty},
				{"bytea", bytes.Equal(ba, []byte{0, 1, 2, 255}), ba},
				{"date", d.Equal(time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)), d},
				{"timestamptz", ts.Equal(wantTS), ts},
				{"uuid", u.Valid && u.String() == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", u},
				{"json", j["a"] == float64(1), j},
				{"jsonb", len(jb["b"].([]any)) == 2, jb},
			}
			for _, c := range checks {
				if !c.ok {
					t.Errorf("%s: got %v", c.name, c.got)
				}
			}
			if !rows.Next() {
				t.Fatalf("no NULL row: %v", rows.Err())
			}
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if v != nil {
					t.Errorf("column %d: got %v, want NULL", i, v)
				}
			}
			if rows.Next() {
				t.Fatal("unexpected third row")
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if tag := rows.CommandTag().String(); tag != "SELECT 2" {
				t.Errorf("tag %q", tag)
			}
		})
	}
}

// TestBinaryResults asks for binary results for every column (pgx itself
// prefers text for text-like types) and decodes them with pgtype.
func TestBinaryResults(t *testing.T) {
	ts := startServer(t)
	conn := ts.connect(t, "")
	res := conn.PgConn().ExecParams(t.Context(), "types", nil, nil, nil, []int16{pgtype.BinaryFormatCode}).Read()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(res.Rows) != 2 {
		t.Fatalf("%d rows", len(res.Rows))
	}
	m := pgtype.NewMap()
	want := typesRow()
	for i, fd := range res.FieldDescriptions {
		if fd.Format != pgtype.BinaryFormatCode {
			t.Errorf("%s: format %d", fd.Name, fd.Format)
		}
		if res.Rows[1][i] != nil {
			t.Errorf("%s: NULL row has %q", fd.Name, res.Rows[1][i])
		}
		var got any
		if err := m.Scan(fd.DataTypeOID, fd.Format, res.Rows[0][i], &got); err != nil {
			t.Errorf("%s: decoding binary %q: %v", fd.Name, res.Rows[0][i], err)
			continue
		}
		// Compare through the text encoding of both values.
		wantText, err := m.Encode(fd.DataTypeOID, pgtype.TextFormatCode, want[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		gotText, err := m.Encode(fd.DataTypeOID, pgtype.TextFormatCode, got, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fd.DataTypeOID == pgtype.JSONBOID || fd.DataTypeOID == pgtype.JSONOID {
			wantText, gotText = bytes.ReplaceAll(wantText, []byte(" "), nil), bytes.ReplaceAll(gotText, []byte(" "), nil)
		}
		if !bytes.Equal(gotText, wantText) {
			t.Errorf("%s: got %s, want %s", fd.Name, gotText, wantText)
		}
	}
}

// TestPgxParams sends parameters in text and binary format.
func TestPgxParams(t *testing.T) {
	ts := startServer(t)
	conn := ts.connect(t, "")
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			var n int
			var last int64
			rows, err := conn.Query(t.Context(), "series $1", mode, int64(5))
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				n++
				if err := rows.Scan(&last); err != nil {
					t.Fatal(err)
				}
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if n != 5 || last != 5 {
				t.Fatalf("got %d rows, last %d", n, last)
			}
			var s *string
			if err := conn.QueryRow(t.Context(), "echo $1", mode, nil).Scan(&s); err != nil || s != nil {
				t.Fatalf("NULL echo: %v %v", s, err)
			}
		})
	}
}

// TestPgxErrors checks that SQLSTATE errors keep their fields, internal
// errors do not leak, and the connection stays usable.
func TestPgxErrors(t *testing.T) {
	ts := startServer(t)
	conn := ts.connect(t, "")
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			_, err := conn.Exec(t.Context(), "fail", mode)
			pe := expectCode(t, err, "22012", "division by zero")
			if pe.Detail != "the detail" || pe.Hint != "the hint" || pe.Position != 3 || pe.Severity != "ERROR" {
				t.Errorf("fields lost: %+v", pe)
			}
			_, err = conn.Exec(t.Context(), "boom", mode)
			pe = expectCode(t, err, "XX000", "internal error")
			if strings.Contains(pe.Detail+pe.Hint, "secret") {
				t.Errorf("internal error text leaked: %+v", pe)
			}
			_, err = conn.Exec(t.Context(), "nonsense", mode)
			expectCode(t, err, "42601", `syntax error at or near "nonsense"`)
			var one int
			if err := conn.QueryRow(t.Context(), "select 1", mode).Scan(&one); err != nil || one != 1 {
				t.Fatalf("connection unusable after errors: %v", err)
			}
		})
	}
}

// TestPgxBatchErrorSkipsToSync sends a pipeline whose middle statement
// fails: the rest up to Sync is skipped and the connection stays usable.
func TestPgxBatchErrorSkipsToSync(t *testing.T) {
	ts := startServer(t)
	conn := ts.connect(t, "")
	b := &pgx.Batch{}
	b.Queue("select 1")
	b.Queue("fail")
	b.Queue("select 1")
	br := conn.SendBatch(t.Context(), b)
	var one int
	if err := br.QueryRow().Scan(&one); err != nil || one != 1 {
		t.Fatalf("first: %v", err)
	}
	_, err := br.Exec()
	expectCode(t, err, "22012", "")
	if _, err := br.Exec(); err == nil {
		t.Fatal("statement after the error ran")
	}
	if err := br.Close(); err == nil {
		t.Log("batch closed without error")
	}
	if err := conn.QueryRow(t.Context(), "select 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection unusable: %v", err)
	}
}

func TestPgxTransactionStatus(t *testing.T) {
	ts := startServer(t)
	conn := ts.connect(t, "")
	pc := conn.PgConn()
	steps := []struct {
		sql    string
		status byte
	}{
		{"begin", 'T'}, {"fail", 'E'}, {"rollback", 'I'}, {"select 1", 'I'},
	}
	for _, s := range steps {
		_ = pc.Exec(t.Context(), s.sql).Close()
		if got := pc.TxStatus(); got != s.status {
			t.Fatalf("after %q: status %c, want %c", s.sql, got, s.status)
		}
	}
}

func TestPgxParameterStatus(t *testing.T) {
	ts := startServer(t)
	conn := ts.connect(t, "application_name=myapp")
	pc := conn.PgConn()
	want := map[string]string{
		"server_version": "16.4", "server_encoding": "UTF8", "client_encoding": "UTF8",
		"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC", "integer_datetimes": "on",
		"standard_conforming_strings": "on", "application_name": "myapp", "is_superuser": "off",
		"session_authorization": testUser,
	}
	for k, v := range want {
		if got := pc.ParameterStatus(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if pc.PID() == 0 {
		t.Error("no process id")
	}
	if _, err := conn.Exec(t.Context(), "set app other", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if got := pc.ParameterStatus("application_name"); got != "other" {
		t.Errorf("application_name after SET = %q", got)
	}
	if _, err := conn.Exec(t.Context(), "set app third"); err != nil {
		t.Fatal(err)
	}
	if got := pc.ParameterStatus("application_name"); got != "third" {
		t.Errorf("application_name after extended SET = %q", got)
	}

	// The session may override start-up parameters and add its own.
	admin, err := pgx.Connect(t.Context(), ts.connString("admin", testPassword, ""))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(t.Context())
	if got := admin.PgConn().ParameterStatus("is_superuser"); got != "on" {
		t.Errorf("admin is_superuser = %q", got)
	}
	if got := admin.PgConn().ParameterStatus("mandate_role"); got != "admin" {
		t.Errorf("admin mandate_role = %q", got)
	}
	if ts.handler.lastSession().info.ProcessID != admin.PgConn().PID() {
		t.Error("ConnInfo.ProcessID differs from BackendKeyData")
	}
}

func TestAuthentication(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.AllowCleartextOverTLS = true })
	plain := startServer(t)
	strict := startServer(t, func(c *Config) { c.AllowCleartextLoopback = false })
	tests := []struct {
		name     string
		ts       *testServer
		user     string
		password string
		extra    string
		code     string
		message  string
	}{
		{name: "scram", ts: plain, user: testUser, password: testPassword, extra: "sslmode=disable"},
		{name: "scram over tls", ts: plain, user: testUser, password: testPassword, extra: "sslmode=require"},
		{name: "cleartext over tls", ts: ts, user: testUser, password: testPassword, extra: "sslmode=require"},
		{name: "scram without tls even if cleartext allowed", ts: ts, user: testUser, password: testPassword, extra: "sslmode=disable"},
		{name: "wrong password", ts: plain, user: testUser, password: "wrong", code: "28P01",
			message: `password authentication failed for user "alice"`},
		{name: "wrong cleartext password", ts: ts, user: testUser, password: "wrong", extra: "sslmode=require", code: "28P01",
			message: `password authentication failed for user "alice"`},
		{name: "unknown user", ts: plain, user: "mallory", password: testPassword, code: "28P01",
			message: `password authentication failed for user "mallory"`},
		{name: "user without password", ts: plain, user: "nopass", password: "", code: "28P01"},
		{name: "authenticator error", ts: plain, user: "autherr", password: "x", code: "XX000", message: "internal error"},
		{name: "unknown database", ts: plain, user: testUser, password: testPassword, extra: "dbname=nodb", code: "3D000",
			message: `database "nodb" does not exist`},
		{name: "password without tls", ts: strict, user: testUser, password: testPassword, extra: "sslmode=disable", code: "28000",
			message: "password authentication requires TLS (sslmode=require)"},
		{name: "unknown user without tls", ts: strict, user: "mallory", password: testPassword, extra: "sslmode=disable", code: "28000",
			message: "password authentication requires TLS (sslmode=require)"},
		{name: "scram over tls when tls is required", ts: strict, user: testUser, password: testPassword, extra: "sslmode=require"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := pgx.Connect(t.Context(), tc.ts.connString(tc.user, tc.password, tc.extra))
			if tc.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close(t.Context())
				var one int
				if err := conn.QueryRow(t.Context(), "select 1").Scan(&one); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				conn.Close(t.Context())
				t.Fatal("connected")
			}
			pe := expectCode(t, err, tc.code, tc.message)
			if pe.Severity != "FATAL" {
				t.Errorf("severity %s", pe.Severity)
			}
		})
	}
}

func TestTLSModes(t *testing.T) {
	withTLS := startServer(t)
	noTLS := startServer(t, func(c *Config) { c.TLS = nil })
	tests := []struct {
		name    string
		ts      *testServer
		extra   string
		wantTLS bool
		fail    bool
	}{
		{"require", withTLS, "sslmode=require", true, false},
		{"direct", withTLS, "sslmode=require sslnegotiation=direct", true, false},
		{"prefer", withTLS, "sslmode=prefer", true, false},
		{"disable", withTLS, "sslmode=disable", false, false},
		{"prefer without server tls", noTLS, "sslmode=prefer", false, false},
		{"require without server tls", noTLS, "sslmode=require", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := pgx.Connect(t.Context(), tc.ts.connString(testUser, testPassword, tc.extra))
			if tc.fail {
				if err == nil {
					conn.Close(t.Context())
					t.Fatal("connected")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(t.Context())
			if got := tc.ts.handler.lastSession().info.TLS; got != tc.wantTLS {
				t.Errorf("TLS = %v, want %v", got, tc.wantTLS)
			}
		})
	}
}

func TestCancelRequest(t *testing.T) {
	ts := startServer(t)
	for _, tc := range []struct {
		name      string
		extra     string
		secretLen int
	}{
		{"protocol 3.0", "", secretLen30},
		{"protocol 3.2 over tls", "sslmode=require max_protocol_version=3.2", secretLen32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := ts.connect(t, tc.extra)
			if got := len(conn.PgConn().SecretKey()); got != tc.secretLen {
				t.Fatalf("secret key of %d bytes, want %d", got, tc.secretLen)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := conn.Exec(context.Background(), "sleep")
				errc <- err
			}()
			recv(t, ts.handler.started, "statement start")
			if err := conn.PgConn().CancelRequest(t.Context()); err != nil {
				t.Fatal(err)
			}
			cause := recv(t, ts.handler.ended, "statement end")
			expectServerError(t, cause, "57014", "canceling statement due to user request")
			expectCode(t, recv(t, errc, "query result"), "57014", "canceling statement due to user request")
			var one int
			if err := conn.QueryRow(t.Context(), "select 1").Scan(&one); err != nil {
				t.Fatalf("connection unusable after cancel: %v", err)
			}
		})
	}
}

// TestCancelRequestBetweenSteps: a CancelRequest that arrives while one
// step of a Query message runs ends the whole message, even when that
// step finishes anyway; the next step (here a statement that would run
// until cancelled) never starts.
func TestCancelRequestBetweenSteps(t *testing.T) {
	ts := startServer(t)
	for _, tc := range []struct{ sql, first string }{
		{"deafprepare; sleep", "deafprepare"},
		{"deaf; sleep", "deaf"},
	} {
		t.Run(tc.first, func(t *testing.T) {
			conn := ts.connect(t, "")
			errc := make(chan error, 1)
			go func() {
				_, err := conn.Exec(context.Background(), tc.sql)
				errc <- err
			}()
			if got := recv(t, ts.handler.started, "first step"); got != tc.first {
				t.Fatalf("started %q, want %q", got, tc.first)
			}
			if err := conn.PgConn().CancelRequest(t.Context()); err != nil {
				t.Fatal(err)
			}
			expectCode(t, recv(t, errc, "query result"), "57014", "canceling statement due to user request")
			select {
			case s := <-ts.handler.started:
				t.Fatalf("%q started after the cancel", s)
			default:
			}
			var one int
			if err := conn.QueryRow(t.Context(), "select 1").Scan(&one); err != nil {
				t.Fatalf("connection unusable after cancel: %v", err)
			}
		})
	}
}

// TestCancelRequestWrongKey checks that a cancel request with a wrong
// secret does nothing.
func TestCancelRequestWrongKey(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.StatementTimeout = 300 * time.Millisecond })
	conn := ts.connect(t, "")
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), "sleep")
		errc <- err
	}()
	recv(t, ts.handler.started, "statement start")
	raw := dialRaw(t, ts)
	raw.send(&pgproto3.CancelRequest{ProcessID: conn.PgConn().PID(), SecretKey: []byte{1, 2, 3, 4}})
	raw.expectClosed()
	// Only the statement timeout ends the statement.
	expectCode(t, recv(t, errc, "query result"), "57014", "canceling statement due to statement timeout")
}

func TestContextCancelClosesStatement(t *testing.T) {
	ts := startServer(t)
	conn := ts.connect(t, "")
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "sleep")
		errc <- err
	}()
	recv(t, ts.handler.started, "statement start")
	cancel()
	if err := recv(t, errc, "query result"); err == nil {
		t.Fatal("query succeeded")
	}
	// pgx gives up on the connection; the server sees the client go away
	// (or a cancel request) and stops the statement.
	if cause := recv(t, ts.handler.ended, "statement end"); cause == nil {
		t.Fatal("statement context not cancelled")
	}
}

func TestStatementTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.StatementTimeout = 100 * time.Millisecond })
	conn := ts.connect(t, "")
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		_, err := conn.Exec(t.Context(), "sleep", mode)
		expectCode(t, err, "57014", "canceling statement due to statement timeout")
		recv(t, ts.handler.started, "statement start")
		recv(t, ts.handler.ended, "statement end")
		// A fast statement is not affected.
		if _, err := conn.Exec(t.Context(), "select 1", mode); err != nil {
			t.Fatal(err)
		}
		// The statement's context carries the deadline (the query engine
		// hands it on to PostgreSQL).
		if _, err := conn.Exec(t.Context(), "deadline", mode); err != nil {
			t.Fatal(err)
		}
	}
}

func TestShutdownTerminatesConnections(t *testing.T) {
	ts := startServer(t)
	idle := ts.connect(t, "")
	busy := ts.connect(t, "")
	errc := make(chan error, 1)
	go func() {
		_, err := busy.Exec(context.Background(), "sleep")
		errc <- err
	}()
	recv(t, ts.handler.started, "statement start")
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	expectCode(t, recv(t, errc, "busy result"), "57P01", "terminating connection due to administrator command")
	if _, err := idle.Exec(t.Context(), "select 1"); err == nil {
		t.Fatal("idle connection survived Shutdown")
	}
	if _, err := pgx.Connect(t.Context(), ts.connString(testUser, testPassword, "")); err == nil {
		t.Fatal("connected after Shutdown")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Serve(t.Context(), ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// TestListenAndServe covers ListenAndServe, Listening and cancellation of
// Serve's context.
func TestListenAndServe(t *testing.T) {
	h := newFakeHandler()
	v, err := MakeVerifier(testPassword)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Config{Addr: "127.0.0.1:0", Auth: &fakeAuth{verifiers: map[string]string{testUser: v}}, Handler: h,
		AllowCleartextLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(ctx) }()
	recv(t, srv.Listening(), "listening")
	conn, err := pgconn.Connect(t.Context(), "postgres://"+testUser+":"+"s3cret-p%C3%A4ssword@"+srv.Addr().String()+"/db?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	cancel()
	if err := recv(t, served, "Serve to return"); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if err := conn.Exec(t.Context(), "select 1").Close(); err == nil {
		t.Fatal("connection survived cancellation of Serve's context")
	}
	if !h.lastSession().isClosed() {
		t.Fatal("session not closed when Serve returned")
	}
}
