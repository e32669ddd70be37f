package pgwire

import (
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"
)

type script struct {
	send []pgproto3.FrontendMessage
	want string // describeAll of the answer up to ReadyForQuery
}

func bindSeries(portal, stmt, n string) *pgproto3.Bind {
	return &pgproto3.Bind{DestinationPortal: portal, PreparedStatement: stmt, Parameters: [][]byte{[]byte(n)}}
}

// TestProtocolScripts runs message sequences over one connection each and
// compares the answers.
func TestProtocolScripts(t *testing.T) {
	ts := startServer(t)
	const row1 = "RowDesc(?column?:23:0) Row(1) Complete(SELECT 1)"
	tests := []struct {
		name  string
		steps []script
	}{
		{"simple multi-statement", []script{{
			[]pgproto3.FrontendMessage{&pgproto3.Query{String: "select 1; create; select 1"}},
			row1 + " Complete(CREATE TABLE) " + row1 + " Ready(I)",
		}}},
		{"simple error skips the rest", []script{{
			[]pgproto3.FrontendMessage{&pgproto3.Query{String: "select 1; fail; select 1"}},
			row1 + " Error(ERROR 22012 division by zero) Ready(I)",
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.Query{String: "select 1"}},
			row1 + " Ready(I)",
		}}},
		{"simple prepare error", []script{{
			[]pgproto3.FrontendMessage{&pgproto3.Query{String: "select 1; nonsense"}},
			`Error(ERROR 42601 syntax error at or near "nonsense") Ready(I)`,
		}}},
		{"empty queries", []script{
			{[]pgproto3.FrontendMessage{&pgproto3.Query{String: ""}}, "EmptyQueryResponse Ready(I)"},
			{[]pgproto3.FrontendMessage{&pgproto3.Query{String: "-- ping"}}, "EmptyQueryResponse Ready(I)"},
			{[]pgproto3.FrontendMessage{&pgproto3.Query{String: " ; "}}, "EmptyQueryResponse Ready(I)"},
			{[]pgproto3.FrontendMessage{
				&pgproto3.Parse{}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Sync{},
			}, "ParseComplete BindComplete NoData EmptyQueryResponse Ready(I)"},
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "-- c"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Sync{}},
				"ParseComplete ParamDesc([]) NoData Ready(I)"},
		}},
		{"extended with describe", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Name: "s1", Query: "series $1"},
				&pgproto3.Describe{ObjectType: 'S', Name: "s1"},
				bindSeries("", "s1", "3"),
				&pgproto3.Describe{ObjectType: 'P'},
				&pgproto3.Execute{},
				&pgproto3.Sync{},
			},
			"ParseComplete ParamDesc([20]) RowDesc(n:20:0) BindComplete RowDesc(n:20:0) Row(1) Row(2) Row(3) Complete(SELECT 3) Ready(I)",
		}, {
			// The named statement survives Sync; results in binary.
			[]pgproto3.FrontendMessage{
				&pgproto3.Bind{PreparedStatement: "s1", Parameters: [][]byte{{0, 0, 0, 0, 0, 0, 0, 1}},
					ParameterFormatCodes: []int16{1}, ResultFormatCodes: []int16{1}},
				&pgproto3.Describe{ObjectType: 'P'},
				&pgproto3.Execute{},
				&pgproto3.Sync{},
			},
			"BindComplete RowDesc(n:20:1) Row(\x00\x00\x00\x00\x00\x00\x00\x01) Complete(SELECT 1) Ready(I)",
		}}},
		{"declared binary parameter", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Query: "echo $1", ParameterOIDs: []uint32{pgtype.Int4OID}},
				&pgproto3.Bind{Parameters: [][]byte{{0, 0, 0, 42}}, ParameterFormatCodes: []int16{1}},
				&pgproto3.Execute{},
				&pgproto3.Sync{},
			},
			"ParseComplete BindComplete Row(42) Complete(SELECT 1) Ready(I)",
		}}},
		{"error skips to sync", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Query: "select 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "fail"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Parse{Query: "select 1"}, &pgproto3.Bind{}, &pgproto3.Execute{},
				&pgproto3.Query{String: "select 1"},
				&pgproto3.Sync{},
			},
			"ParseComplete BindComplete Row(1) Complete(SELECT 1) ParseComplete BindComplete Error(ERROR 22012 division by zero) Ready(I)",
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "select 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			"ParseComplete BindComplete Row(1) Complete(SELECT 1) Ready(I)",
		}}},
		{"error in transaction block", []script{
			{[]pgproto3.FrontendMessage{&pgproto3.Query{String: "begin"}}, "Complete(BEGIN) Ready(T)"},
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "fail"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
				"ParseComplete BindComplete Error(ERROR 22012 division by zero) Ready(E)"},
			{[]pgproto3.FrontendMessage{&pgproto3.Query{String: "rollback"}}, "Complete(ROLLBACK) Ready(I)"},
		}},
		{"portal suspended", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Query: "series $1"}, bindSeries("", "", "5"),
				&pgproto3.Execute{MaxRows: 2}, &pgproto3.Execute{MaxRows: 2}, &pgproto3.Execute{MaxRows: 2},
				&pgproto3.Execute{MaxRows: 2},
				&pgproto3.Sync{},
			},
			"ParseComplete BindComplete Row(1) Row(2) PortalSuspended Row(3) Row(4) PortalSuspended Row(5) Complete(SELECT 1) Complete(SELECT 0) Ready(I)",
		}}},
		{"portal suspended then unlimited", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Query: "series $1"}, bindSeries("", "", "4"),
				&pgproto3.Execute{MaxRows: 1}, &pgproto3.Flush{},
			},
			"",
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.Execute{}, &pgproto3.Sync{}},
			"ParseComplete BindComplete Row(1) PortalSuspended Row(2) Row(3) Row(4) Complete(SELECT 3) Ready(I)",
		}}},
		{"portals end with the transaction", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Name: "s", Query: "series $1"}, bindSeries("p", "s", "3"),
				&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{},
			},
			"ParseComplete BindComplete Row(1) PortalSuspended Ready(I)",
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{}},
			`Error(ERROR 34000 portal "p" does not exist) Ready(I)`,
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.Query{String: "begin"}},
			"Complete(BEGIN) Ready(T)",
		}, {
			[]pgproto3.FrontendMessage{bindSeries("p", "s", "3"), &pgproto3.Execute{Portal: "p", MaxRows: 1}, &pgproto3.Sync{}},
			"BindComplete Row(1) PortalSuspended Ready(T)",
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "p"}, &pgproto3.Sync{}},
			"Row(2) Row(3) Complete(SELECT 2) Ready(T)",
		}}},
		{"statement without rows", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Query: "create"}, &pgproto3.Describe{ObjectType: 'S'}, &pgproto3.Bind{},
				&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{MaxRows: 1}, &pgproto3.Execute{}, &pgproto3.Sync{},
			},
			`ParseComplete ParamDesc([]) NoData BindComplete NoData Complete(CREATE TABLE) Error(ERROR 55000 portal "" cannot be run) Ready(I)`,
		}}},
		{"parameter status after SET", []script{{
			[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "set app foo"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{}},
			"ParseComplete BindComplete Param(application_name=foo) Complete(SET) Ready(I)",
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.Query{String: "set app bar"}},
			"Param(application_name=bar) Complete(SET) Ready(I)",
		}}},
		{"duplicate prepared statement", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Name: "s", Query: "select 1"}, &pgproto3.Parse{Name: "s", Query: "select 1"}, &pgproto3.Sync{},
			},
			`ParseComplete Error(ERROR 42P05 prepared statement "s" already exists) Ready(I)`,
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "select 1"}, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Sync{}},
			"ParseComplete ParseComplete Ready(I)",
		}}},
		{"multiple statements in Parse", []script{{
			[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "select 1; select 1"}, &pgproto3.Sync{}},
			"Error(ERROR 42601 cannot insert multiple commands into a prepared statement) Ready(I)",
		}}},
		{"missing objects", []script{
			{[]pgproto3.FrontendMessage{&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Sync{}},
				`Error(ERROR 26000 prepared statement "nope" does not exist) Ready(I)`},
			{[]pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'S', Name: "nope"}, &pgproto3.Sync{}},
				`Error(ERROR 26000 prepared statement "nope" does not exist) Ready(I)`},
			{[]pgproto3.FrontendMessage{&pgproto3.Execute{Portal: "nope"}, &pgproto3.Sync{}},
				`Error(ERROR 34000 portal "nope" does not exist) Ready(I)`},
			{[]pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Sync{}},
				`Error(ERROR 34000 unnamed portal does not exist) Ready(I)`},
			{[]pgproto3.FrontendMessage{&pgproto3.Describe{ObjectType: 'X'}, &pgproto3.Sync{}},
				`Error(ERROR 08P01 invalid DESCRIBE message subtype 88) Ready(I)`},
		}},
		{"bind checks", []script{
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "series $1"}, &pgproto3.Bind{}, &pgproto3.Sync{}},
				`ParseComplete Error(ERROR 08P01 bind message supplies 0 parameters, but prepared statement "" requires 1) Ready(I)`},
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "series $1"},
				&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}, ParameterFormatCodes: []int16{0, 0}}, &pgproto3.Sync{}},
				`ParseComplete Error(ERROR 08P01 bind message has 2 parameter formats but 1 parameters) Ready(I)`},
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "series $1"},
				&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{0, 1}}, &pgproto3.Sync{}},
				`ParseComplete Error(ERROR 08P01 bind message has 2 result formats but query has 1 columns) Ready(I)`},
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "series $1"},
				&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}, ResultFormatCodes: []int16{2}}, &pgproto3.Sync{}},
				`ParseComplete Error(ERROR 22023 unsupported format code: 2) Ready(I)`},
			{[]pgproto3.FrontendMessage{&pgproto3.Parse{Query: "series $1"},
				bindSeries("p", "", "1"), bindSeries("p", "", "1"), &pgproto3.Sync{}},
				`ParseComplete BindComplete Error(ERROR 42P03 portal "p" already exists) Ready(I)`},
		}},
		{"close", []script{{
			[]pgproto3.FrontendMessage{
				&pgproto3.Parse{Name: "s", Query: "select 1"}, &pgproto3.Bind{DestinationPortal: "p", PreparedStatement: "s"},
				&pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Close{ObjectType: 'S', Name: "missing"},
				&pgproto3.Execute{Portal: "p"}, // a portal outlives its statement
				&pgproto3.Close{ObjectType: 'P', Name: "p"},
				&pgproto3.Describe{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{},
			},
			`ParseComplete BindComplete CloseComplete CloseComplete Row(1) Complete(SELECT 1) CloseComplete Error(ERROR 26000 prepared statement "s" does not exist) Ready(I)`,
		}}},
		{"unsupported and ignored messages", []script{{
			[]pgproto3.FrontendMessage{&pgproto3.FunctionCall{Function: 1}},
			"Error(ERROR 0A000 fastpath function calls are not supported) Ready(I)",
		}, {
			[]pgproto3.FrontendMessage{&pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}, &pgproto3.Query{String: "select 1"}},
			row1 + " Ready(I)",
		}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts)
			c.login(testUser, testPassword, nil)
			var pending []string
			for i, step := range tc.steps {
				c.send(step.send...)
				if step.want == "" {
					// Flush only: collect what arrived so far with the
					// next step's answer.
					pending = append(pending, describeMsg(c.receive()), describeMsg(c.receive()), describeMsg(c.receive()), describeMsg(c.receive()))
					continue
				}
				got := describeAll(c.untilReady())
				if len(pending) > 0 {
					got = strings.Join(pending, " ") + " " + got
					pending = nil
				}
				if got != step.want {
					t.Fatalf("step %d:\n got %s\nwant %s", i, got, step.want)
				}
			}
		})
	}
}

// TestFatalProtocolErrors checks that malformed input ends the connection
// with a FATAL error.
func TestFatalProtocolErrors(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxMessageSize = 1024 })
	query := func(sql string) []byte {
		b, err := (&pgproto3.Query{String: sql}).Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name  string
		input []byte
		want  string
	}{
		{"message too large", query(strings.Repeat("x", 2000)), "Error(FATAL 54000 message too large)"},
		{"unknown message type", []byte{'Z', 0, 0, 0, 4}, "Error(FATAL 08P01 invalid frontend message)"},
		{"invalid length", []byte{'Q', 0, 0, 0, 2}, "Error(FATAL 08P01 invalid frontend message)"},
		{"malformed bind", []byte{'B', 0, 0, 0, 5, 0}, "Error(FATAL 08P01 invalid frontend message)"},
		{"password message after startup", []byte{'p', 0, 0, 0, 5, 0}, "Error(FATAL 08P01 invalid frontend message)"},
		{"answers before the bad message", append(query("select 1"), 'Z', 0, 0, 0, 4),
			"RowDesc(?column?:23:0) Row(1) Complete(SELECT 1) Ready(I) Error(FATAL 08P01 invalid frontend message)"},
		{"terminate", []byte{'X', 0, 0, 0, 4}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts)
			c.login(testUser, testPassword, nil)
			c.write(tc.input)
			if got := describeAll(c.expectClosed()); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func startupPacket(version uint32, params ...string) []byte {
	body := binary.BigEndian.AppendUint32(nil, version)
	for _, p := range params {
		body = append(body, p...)
		body = append(body, 0)
	}
	body = append(body, 0)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body)+4)), body...)
}

// TestStartup covers the startup phase with raw packets.
func TestStartup(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.AllowCleartextOverTLS = true })
	noTLS := startServer(t, func(c *Config) { c.TLS = nil })

	t.Run("missing user", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.write(startupPacket(pgproto3.ProtocolVersion30, "database", "x"))
		want := "Error(FATAL 28000 no PostgreSQL user name specified in startup packet)"
		if got := describeAll(c.expectClosed()); got != want {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("no parameters", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.write(startupPacket(pgproto3.ProtocolVersion30))
		if got := describeAll(c.expectClosed()); !strings.Contains(got, "28000") {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("unsupported protocol", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.write(startupPacket(2<<16, "user", testUser))
		want := "Error(FATAL 0A000 unsupported frontend protocol 2.0: server supports 3.0 to 3.2)"
		if got := describeAll(c.expectClosed()); got != want {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("invalid length", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.write([]byte{0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0})
		if got := c.expectClosed(); len(got) != 0 {
			t.Fatalf("got %s", describeAll(got))
		}
	})
	t.Run("newer protocol and options are negotiated", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.write(startupPacket(3<<16|5, "user", testUser, "_pq_.future", "1"))
		npv := c.expect(&pgproto3.NegotiateProtocolVersion{}).(*pgproto3.NegotiateProtocolVersion)
		if npv.NewestMinorProtocol != 2 || len(npv.UnrecognizedOptions) != 1 || npv.UnrecognizedOptions[0] != "_pq_.future" {
			t.Fatalf("got %+v", npv)
		}
		c.authenticate(testPassword)
		if len(c.key.SecretKey) != secretLen32 {
			t.Fatalf("secret key of %d bytes in protocol 3.2", len(c.key.SecretKey))
		}
		if _, ok := ts.handler.lastSession().info.Params["_pq_.future"]; ok {
			t.Fatal("protocol option passed to the session")
		}
	})
	t.Run("gssenc then tls then cleartext", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.send(&pgproto3.GSSEncRequest{})
		if b := c.readByte(); b != 'N' {
			t.Fatalf("GSSENCRequest answered %q", b)
		}
		c.startTLS()
		c.login(testUser, testPassword, map[string]string{"application_name": "raw"})
		if c.authKind != "cleartext" {
			t.Fatalf("auth %s over TLS with AllowCleartextOverTLS", c.authKind)
		}
		c.send(&pgproto3.Query{String: "select 1"})
		if got := describeAll(c.untilReady()); got != "RowDesc(?column?:23:0) Row(1) Complete(SELECT 1) Ready(I)" {
			t.Fatalf("got %s", got)
		}
		info := ts.handler.lastSession().info
		if !info.TLS || info.ApplicationName != "raw" || info.Database != "mandate" || info.User != testUser {
			t.Fatalf("ConnInfo %+v", info)
		}
	})
	t.Run("plain connection never gets cleartext", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.login(testUser, testPassword, nil)
		if c.authKind != "scram" {
			t.Fatalf("auth %s without TLS", c.authKind)
		}
	})
	t.Run("SSLRequest without TLS", func(t *testing.T) {
		c := dialRaw(t, noTLS)
		c.send(&pgproto3.SSLRequest{})
		if b := c.readByte(); b != 'N' {
			t.Fatalf("SSLRequest answered %q", b)
		}
		c.login(testUser, testPassword, nil)
	})
	t.Run("cancel request closes", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.send(&pgproto3.CancelRequest{ProcessID: 12345, SecretKey: []byte{1, 2, 3, 4}})
		if got := c.expectClosed(); len(got) != 0 {
			t.Fatalf("got %s", describeAll(got))
		}
	})
	t.Run("wrong SASL mechanism", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.write(startupPacket(pgproto3.ProtocolVersion30, "user", testUser))
		c.expect(&pgproto3.AuthenticationSASL{})
		c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-1", Data: []byte("n,,n=,r=abc")})
		want := "Error(FATAL 08P01 client selected an invalid SASL authentication mechanism)"
		if got := describeAll(c.expectClosed()); got != want {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("malformed SCRAM message", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.write(startupPacket(pgproto3.ProtocolVersion30, "user", testUser))
		c.expect(&pgproto3.AuthenticationSASL{})
		c.send(&pgproto3.SASLInitialResponse{AuthMechanism: scramMechanism, Data: []byte("garbage")})
		want := "Error(FATAL 08P01 malformed SCRAM message)"
		if got := describeAll(c.expectClosed()); got != want {
			t.Fatalf("got %s", got)
		}
	})
	t.Run("query instead of password", func(t *testing.T) {
		c := dialRaw(t, ts)
		c.write(startupPacket(pgproto3.ProtocolVersion30, "user", testUser))
		c.expect(&pgproto3.AuthenticationSASL{})
		c.send(&pgproto3.Query{String: "select 1"})
		if got := describeAll(c.expectClosed()); !strings.Contains(got, "FATAL 08P01") {
			t.Fatalf("got %s", got)
		}
	})
}

// TestStartupTimeout checks that a client that does not finish startup is
// disconnected.
func TestStartupTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.StartupTimeout = 200 * time.Millisecond })
	for _, tc := range []struct {
		name  string
		input []byte
	}{
		{"silent", nil},
		{"half startup packet", []byte{0, 0, 0}},
		{"stalled in authentication", startupPacket(pgproto3.ProtocolVersion30, "user", testUser)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts)
			if tc.input != nil {
				c.write(tc.input)
			}
			_ = c.conn.SetDeadline(time.Now().Add(5 * time.Second))
			c.expectClosed()
		})
	}
}

// TestWriteTimeout checks that a client that stops reading cannot block its
// connection forever: the write fails, the statement's writer reports it
// and the session is closed.
func TestWriteTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.WriteTimeout = 200 * time.Millisecond })
	c := dialRaw(t, ts)
	c.login(testUser, testPassword, nil)
	sess := ts.handler.lastSession()
	c.send(&pgproto3.Query{String: "big 2000"}) // 128 MiB that nobody reads
	if err := recv(t, ts.handler.ended, "write failure"); err == nil {
		t.Fatal("no write error")
	}
	recv(t, sess.closed, "session close")
}

// TestStatementPanic checks that a panic in the handler ends only its
// connection.
func TestStatementPanic(t *testing.T) {
	ts := startServer(t)
	c := dialRaw(t, ts)
	c.login(testUser, testPassword, nil)
	sess := ts.handler.lastSession()
	c.send(&pgproto3.Query{String: "panic"})
	c.expectClosed()
	recv(t, sess.closed, "session close")
	if ts.panics.Load() != 1 {
		t.Fatalf("%d panics recovered", ts.panics.Load())
	}
	other := dialRaw(t, ts)
	other.login(testUser, testPassword, nil)
}

// TestCloneMessage checks that queued messages do not alias pgproto3's
// read buffer, which the next Receive overwrites.
func TestCloneMessage(t *testing.T) {
	var wire []byte
	for _, m := range []pgproto3.FrontendMessage{
		&pgproto3.Bind{Parameters: [][]byte{[]byte("first"), nil, {}}},
		&pgproto3.Bind{Parameters: [][]byte{[]byte("SECOND"), []byte("x"), []byte("y")}},
	} {
		var err error
		if wire, err = m.Encode(wire); err != nil {
			t.Fatal(err)
		}
	}
	be := pgproto3.NewBackend(&oneByteReader{b: wire}, nil)
	msg, err := be.Receive()
	if err != nil {
		t.Fatal(err)
	}
	first, err := cloneMessage(msg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := be.Receive(); err != nil {
		t.Fatal(err)
	}
	params := first.(*pgproto3.Bind).Parameters
	if string(params[0]) != "first" || params[1] != nil || params[2] == nil || len(params[2]) != 0 {
		t.Fatalf("clone changed by the next Receive or lost NULL/empty: %q", params)
	}
	if _, err := cloneMessage(&pgproto3.PasswordMessage{}); err == nil {
		t.Fatal("password message accepted after startup")
	}
}

// oneByteReader returns its data in small reads so that both messages
// share pgproto3's buffer.
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, errors.New("EOF")
	}
	n := copy(p[:min(len(p), 7)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestConcurrentConnections runs 200 clients while one client is stalled
// in the middle of a message and another in the middle of startup.
func TestConcurrentConnections(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.MaxConnections, c.MaxStartupConnections, c.MaxStartupConnectionsPerHost = 300, 300, 300
	})
	stalled := dialRaw(t, ts)
	stalled.login(testUser, testPassword, nil)
	q, err := (&pgproto3.Query{String: "select 1"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	stalled.write(q[:3])
	inStartup := dialRaw(t, ts)
	inStartup.write([]byte{0, 0, 0})

	runClients(t, ts, 200)

	// The stalled client was only waiting: it completes its message now.
	stalled.write(q[3:])
	if got := describeAll(stalled.untilReady()); got != "RowDesc(?column?:23:0) Row(1) Complete(SELECT 1) Ready(I)" {
		t.Fatalf("stalled client got %s", got)
	}
}

// TestConnectionClosedDuringStartup runs a connection over net.Pipe (whose
// addresses are not TCP addresses) that the client closes at once.
func TestConnectionClosedDuringStartup(t *testing.T) {
	ts := startServer(t)
	server, client := net.Pipe()
	c, ok, _ := ts.srv.track(t.Context(), server)
	if !ok {
		t.Fatal("track failed")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.run()
	}()
	_ = client.Close()
	recv(t, done, "connection end")
}
