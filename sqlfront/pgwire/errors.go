package pgwire

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// SQLSTATE codes the server itself produces.
const (
	codeProtocolViolation       = "08P01"
	codeInvalidAuthorization    = "28000"
	codeInvalidPassword         = "28P01"
	codeQueryCanceled           = "57014"
	codeAdminShutdown           = "57P01"
	codeProgramLimitExceeded    = "54000"
	codeFeatureNotSupported     = "0A000"
	codeInternalError           = "XX000"
	codeSyntaxError             = "42601"
	codeDuplicatePreparedStmt   = "42P05"
	codeDuplicateCursor         = "42P03"
	codeInvalidSQLStatementName = "26000"
	codeInvalidCursorName       = "34000"
	codeInvalidCursorState      = "24000"
	codeObjectNotInState        = "55000"
	codeInvalidParameterValue   = "22023"
	codeTooManyConnections      = "53300"
	codeIdleSessionTimeout      = "57P05"
)

const (
	severityError = "ERROR"
	severityFatal = "FATAL"
)

// errClientGone is the connection context's cancellation cause when the
// client went away (read or write failure, or the connection was closed).
// Nothing is sent to the client for it.
var errClientGone = errors.New("pgwire: client connection closed")

// The functions below build the errors the server produces for
// cancellation. They are functions rather than package variables so that no
// caller can mutate a shared *Error.

func queryCanceledError() *Error {
	return Errorf(codeQueryCanceled, "canceling statement due to user request")
}

func statementTimeoutError() *Error {
	return Errorf(codeQueryCanceled, "canceling statement due to statement timeout")
}

func adminShutdownError() *Error {
	return &Error{Severity: severityFatal, Code: codeAdminShutdown, Message: "terminating connection due to administrator command"}
}

func tooManyClientsError() *Error {
	return fatalf(codeTooManyConnections, "sorry, too many clients already")
}

func reservedSlotsError() *Error {
	e := fatalf(codeTooManyConnections, "remaining connection slots are reserved for roles with the SUPERUSER attribute")
	e.Hint = "the last connections are kept for administrators (superuser_reserved_connections)"
	return e
}

func idleSessionTimeoutError() *Error {
	return fatalf(codeIdleSessionTimeout, "terminating connection due to idle-session timeout")
}

func tlsRequiredError() *Error {
	e := fatalf(codeInvalidAuthorization, "password authentication requires TLS (sslmode=require)")
	e.Hint = "connect with sslmode=require (or verify-full); passwords are never accepted over an unencrypted connection"
	return e
}

func fatalf(code, format string, args ...any) *Error {
	e := Errorf(code, format, args...)
	e.Severity = severityFatal
	return e
}

// errorResponse is the one place where an error becomes a wire error:
//
//   - an *Error found with errors.As keeps its code, message, detail, hint
//     and position;
//   - context.DeadlineExceeded becomes 57014 "canceling statement due to
//     statement timeout" and context.Canceled becomes 57014 "canceling
//     statement due to user request" (the server substitutes the
//     cancellation cause before it gets here, see conn.commandError, so these
//     two are only reached for bare context errors);
//   - anything else becomes XX000 "internal error"; the real error is logged
//     at error level and its text is never sent.
func errorResponse(log *zerolog.Logger, err error) *pgproto3.ErrorResponse {
	var e Error
	var pe *Error
	switch {
	case errors.As(err, &pe) && pe != nil:
		e = *pe
		if e.Code == "" {
			e.Code = codeInternalError
		}
	case errors.Is(err, context.DeadlineExceeded):
		e = *statementTimeoutError()
	case errors.Is(err, context.Canceled):
		e = *queryCanceledError()
	default:
		log.Error().Err(err).Msg("internal error")
		e = Error{Code: codeInternalError, Message: "internal error"}
	}
	if e.Severity != severityFatal {
		e.Severity = severityError
	}
	if e.Position < 0 {
		e.Position = 0
	}
	return &pgproto3.ErrorResponse{
		Severity:            e.Severity,
		SeverityUnlocalized: e.Severity,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
		Position:            e.Position,
	}
}
