// Package pgwire is Mandate's PostgreSQL wire protocol server (protocol
// 3.0 and 3.2). It speaks the protocol to psql, pgx, JDBC, node-postgres,
// psycopg and friends; the SQL layer plugs in through Handler, Session and
// Statement (api.go) and never sees the wire.
//
// # Connections and goroutines
//
// Server.Serve runs the accept loop in the caller's goroutine and starts one
// goroutine per accepted connection. A connection first takes a startup
// slot: at most Config.MaxStartupConnections connections may be in startup
// at once, and at most Config.MaxStartupConnectionsPerHost from one client
// IP address; one beyond is sent FATAL 53300 "sorry, too many clients
// already" from the accept loop and closed, before anything is read. The
// connection's goroutine then runs the startup phase synchronously,
// bounded by Config.StartupTimeout (PostgreSQL's authentication_timeout: a
// connection deadline from the accept on, TLS handshake included, also
// enforced through the context given to the Authenticator and
// Handler.Connect):
//
//   - startup packets are read by hand (exact lengths, at most 10000 bytes,
//     nothing buffered beyond them, so that no plaintext can be smuggled
//     in front of a TLS handshake). SSLRequest is answered 'S' and TLS is
//     negotiated when Config.TLS is set, else 'N'; GSSENCRequest is
//     answered 'N'; a TLS ClientHello as the very first bytes is direct
//     TLS (PostgreSQL 17 sslnegotiation=direct), which requires ALPN
//     "postgresql". A CancelRequest is handled and the socket closed.
//   - StartupMessage 3.0 and 3.2 are accepted; other 3.x versions and
//     "_pq_." options get NegotiateProtocolVersion. Protocol 3.2 gets a
//     32-byte cancel key, 3.0 a 4-byte one.
//   - a password is never accepted without TLS: a connection without TLS
//     gets FATAL 28000 "password authentication requires TLS
//     (sslmode=require)" before authentication starts, unless
//     Config.AllowCleartextLoopback is set and the client is on a loopback
//     address. Every message before login (password, SASL) is at most
//     10000 bytes, like the startup packet; a longer one is FATAL 54000
//     from its header.
//   - authentication is SCRAM-SHA-256 (github.com/xdg-go/scram, no channel
//     binding, only "SCRAM-SHA-256" advertised) against the PostgreSQL
//     format verifier from the Authenticator. Unknown users and users
//     without a password run the whole exchange against a fake verifier
//     (stable per user name, derived from a per-server secret) and fail
//     exactly like a wrong password: FATAL 28P01. With
//     Config.AllowCleartextOverTLS a TLS connection is asked for a
//     cleartext password instead, checked against the same verifier;
//     never without TLS. Passwords are never logged.
//   - after authentication the connection trades its startup slot for
//     one of Config.MaxConnections session slots (PostgreSQL's
//     max_connections); the last Config.SuperuserReservedConnections of
//     them only for users the Handler reports as superusers (Superusers).
//     Otherwise FATAL 53300, "sorry, too many clients already" or
//     "remaining connection slots are reserved for roles with the
//     SUPERUSER attribute".
//   - Handler.Connect creates the Session; then AuthenticationOk, the
//     ParameterStatus set clients depend on (server_version, UTF8
//     encodings, DateStyle "ISO, MDY", ..., overridable through the
//     session's ChangedParameters), BackendKeyData and ReadyForQuery.
//
// After startup the connection has exactly two goroutines:
//
//	client ──► reader ──(bounded queue, 64 messages)──► executor ──► client
//
// The reader reads one whole message at a time (frameReader): a message's
// memory is taken as its bytes arrive, not when its header announces its
// size, and once its first byte arrived the rest must follow within
// Config.MessageTimeout (else FATAL 08P01); between messages there is no
// read deadline. The reader only decodes (pgproto3.Backend.Receive), copies each message
// out of pgproto3's reusable buffer (cloneMessage) and queues it; it never
// executes anything, so it keeps reading, and notices a disconnect, while a
// statement runs (until the queue is full; then TCP back-pressure applies).
// The executor — the connection goroutine itself — takes messages in
// order and is the only goroutine that calls the Session or writes to the
// socket. When the reader hits a read error (the client went away) it
// cancels the connection context; a malformed message instead travels
// through the queue, so that everything before it is answered and then
// the executor sends FATAL 08P01 (54000 "message too large" for a body
// over Config.MaxMessageSize, checked before the body is read) and closes.
// On exit the executor closes the socket, which ends the reader, waits for
// it, and closes the Session: a closed connection leaves no goroutine.
//
// # Message flow
//
// A simple Query is prepared with multi=true and its statements run in
// order (RowDescription in text format, DataRows, CommandComplete) until
// the first error; no statements gives EmptyQueryResponse. The extended
// protocol keeps named and unnamed prepared statements and portals:
// Parse, Bind (format codes in the 0, 1 or N forms), Describe, Execute,
// Close, Flush and Sync. Before each ReadyForQuery (after a simple Query
// and at Sync) a Session implementing ImplicitTx ends its implicit
// transaction. An error in an extended-protocol message makes the
// executor discard everything up to the next Sync. An Execute without row
// limit streams rows to the client as the Statement writes them; with a row
// limit the portal is run to completion once, its rows are kept encoded,
// and each Execute hands out the next chunk followed by PortalSuspended
// (and finally CommandComplete with the rows of that chunk). Portals are
// dropped at Sync when the session is not in a transaction block. Output
// is buffered and written at ReadyForQuery, Flush, a FATAL error, or when
// 64 KiB are pending.
//
// Values are encoded per connection with a pgtype.Map for the column's
// type OID, in text or binary as the client asked; nil is NULL. A string
// that pgtype cannot encode in binary for the column type is taken as the
// type's text form, decoded and re-encoded, so the SQL layer may return
// text for numeric, uuid, date, ... columns.
//
// # Cancellation
//
// Every call into the Session that can take time (Prepare, Execute) runs
// in a command context derived from the connection context. It is
// cancelled by a CancelRequest carrying the connection's process id and
// secret (compared in constant time), by the statement timeout (the
// Session's, see StatementTimeouter, else Config.StatementTimeout), by the
// client going away and by Shutdown or the end of Serve's context. A
// simple Query message is one command: a CancelRequest that comes while
// any of its steps runs (preparing, a statement, between two statements)
// ends the message, even if that step finishes anyway; in the extended
// protocol each Parse and Execute is one. The statement timeout bounds
// each statement on its own. The cause decides the error: 57014 "canceling statement due to
// user request", 57014 "canceling statement due to statement timeout",
// FATAL 57P01 "terminating connection due to administrator command", or
// nothing at all for a vanished client.
//
// # Errors
//
// Session errors carry a SQLSTATE as *Error. errorResponse is the one place
// where errors become ErrorResponse messages: an *Error (errors.As) keeps
// code, message, detail, hint and position; bare context errors become
// 57014; anything else is logged at error level and sent as XX000
// "internal error" without its text. ERROR marks the session failed
// (Session.Fail); FATAL ends the connection.
//
// # Limits
//
//   - Config.MaxMessageSize (16 MiB) per client message after login,
//     10000 bytes per startup packet and per message before login.
//   - Config.StartupTimeout (10 s) for TLS, startup and authentication.
//   - Config.MaxStartupConnections (256) and MaxStartupConnectionsPerHost
//     (32) connections in startup; Config.MaxConnections (100) sessions,
//     SuperuserReservedConnections (3) of them for superusers.
//   - Config.MessageTimeout (30 s) from the first to the last byte of a
//     message after login; Config.IdleSessionTimeout (off) for a session
//     waiting for a command outside a transaction block (FATAL 57P05).
//   - Config.WriteTimeout (30 s) per flush, so that a client that stops
//     reading cannot block its connection forever; the failure cancels the
//     running statement and closes the connection.
//   - 64 messages read ahead of execution per connection.
//   - A panic in a connection (in this package or the Handler) is
//     recovered, logged and ends only that connection.
//
// Server.Shutdown closes the listeners, tells every connection to
// terminate, waits for their goroutines and, if its context ends first,
// closes the remaining sockets.
package pgwire
