package pgwire

import (
	"context"
	"fmt"
	"time"
)

// Error is an error with a SQLSTATE. The server turns every error into an
// ErrorResponse in one place (see errorResponse): an *Error (found with
// errors.As) keeps its fields; anything else becomes XX000 "internal error"
// without leaking its text.
type Error struct {
	Severity string // ERROR (default) or FATAL
	Code     string // SQLSTATE, e.g. "42601"
	Message  string
	Detail   string
	Hint     string
	Position int32 // 1-based character position in the query text; 0 = none
}

func (e *Error) Error() string { return fmt.Sprintf("%s (SQLSTATE %s)", e.Message, e.Code) }

// Errorf builds an *Error with severity ERROR.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Severity: "ERROR", Code: code, Message: fmt.Sprintf(format, args...)}
}

// Column describes one result column.
type Column struct {
	Name    string
	TypeOID uint32 // pgtype OIDs, e.g. pgtype.TextOID
}

// ConnInfo describes an authenticated client connection.
type ConnInfo struct {
	User            string
	Database        string
	ApplicationName string
	Params          map[string]string // all startup parameters
	RemoteAddr      string            // host:port of the client
	TLS             bool
	ProcessID       uint32 // BackendKeyData process id of this connection
}

// Authenticator gives the server what it needs to authenticate users.
type Authenticator interface {
	// Verifier returns the user's SCRAM-SHA-256 verifier in PostgreSQL's
	// format "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>".
	// ok is false when the user does not exist or has no password; the
	// server then still runs a full exchange with a fake verifier and fails
	// with 28P01, so that user names cannot be probed.
	Verifier(ctx context.Context, user string) (verifier string, ok bool, err error)
}

// AuthObserver is implemented by an Authenticator that wants to hear of
// failed password authentications (to audit them). The server calls it
// after the exchange failed, before it sends the FATAL 28P01.
type AuthObserver interface {
	AuthFailed(ctx context.Context, info ConnInfo)
}

// Handler creates sessions for authenticated connections.
type Handler interface {
	// Connect is called after successful authentication. An *Error it
	// returns (e.g. 3D000 for an unknown database) is sent as FATAL and the
	// connection is closed.
	Connect(ctx context.Context, info ConnInfo) (Session, error)
}

// Superusers is implemented by a Handler whose superusers may use the
// connections reserved by Config.SuperuserReservedConnections. The server
// asks after authentication, only when no unreserved connection is left.
type Superusers interface {
	IsSuperuser(ctx context.Context, user string) bool
}

// StatementTimeouter is implemented by a Session whose statement timeout
// can change (SET statement_timeout). The server asks before each Prepare
// and Execute and bounds the call by it (0 = none) instead of
// Config.StatementTimeout.
type StatementTimeouter interface {
	StatementTimeout() time.Duration
}

// Session is the per-connection SQL state. The server calls it from one
// goroutine at a time.
type Session interface {
	// Prepare parses sql into statements. For a simple Query message
	// (multi=true) the text may hold several statements, executed in order
	// until the first error; an empty or comment-only text yields none
	// (EmptyQueryResponse). For an extended-protocol Parse (multi=false)
	// more than one statement is a 42601 error. paramOIDs are the types the
	// client declared in Parse (0 = unspecified).
	Prepare(ctx context.Context, sql string, paramOIDs []uint32, multi bool) ([]Statement, error)
	// TxStatus is the ReadyForQuery status: 'I' idle, 'T' in a transaction
	// block, 'E' in a failed transaction block.
	TxStatus() byte
	// Fail tells the session that the current command failed (so that an
	// open transaction block becomes 'E').
	Fail()
	// ChangedParameters returns the run-time parameters changed since the
	// last call (e.g. application_name after SET), sent as ParameterStatus.
	ChangedParameters() map[string]string
	// Close releases the session; called once when the connection ends.
	Close()
}

// ImplicitTx is implemented by a Session whose statements outside a
// transaction block run in an implicit transaction, as PostgreSQL's do.
// The server calls EndImplicit where PostgreSQL closes it: at Sync and at
// the end of a simple Query message, just before ReadyForQuery. The
// session commits the implicit transaction, or rolls it back when a
// statement in it failed (Fail); an error it returns is sent before
// ReadyForQuery.
type ImplicitTx interface {
	EndImplicit(ctx context.Context) error
}

// Param is one bound parameter value as received in Bind.
type Param struct {
	Value  []byte // nil = NULL
	Format int16  // 0 text, 1 binary
	OID    uint32 // the statement's parameter type
}

// RowWriter receives result rows. Values are Go values encodable by
// pgx's pgtype.Map for the column's OID (string, int64, int32, bool,
// float64, time.Time, []byte, nil, ...); the server encodes them in the
// result format the client asked for.
type RowWriter interface {
	WriteRow(values []any) error
}

// Statement is one prepared statement.
type Statement interface {
	// ParamOIDs returns the parameter types (ParameterDescription).
	ParamOIDs() []uint32
	// Columns returns the result columns, or nil when the statement returns
	// no rows (NoData).
	Columns() []Column
	// Execute runs the statement and returns the CommandComplete tag (e.g.
	// "GRANT", "SELECT 3", "SET"). ctx is cancelled by CancelRequest, by
	// the statement timeout and when the client disconnects.
	Execute(ctx context.Context, params []Param, w RowWriter) (tag string, err error)
}

// Deallocator is implemented by statements that drop prepared statements
// (DEALLOCATE name, DEALLOCATE ALL, DISCARD ALL). After such a statement
// succeeds the server forgets the named prepared statement, or every
// prepared statement and portal when all is true; ("", false) means
// nothing to drop.
type Deallocator interface {
	Deallocates() (name string, all bool)
}
