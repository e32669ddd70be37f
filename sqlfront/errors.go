package sqlfront

import (
	"context"
	"errors"
	"unicode/utf8"

	pgparser "github.com/pganalyze/pg_query_go/v6/parser"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/sqlfront/parser"
	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// SQLSTATEs used by Mandate (documented in the README):
//
//	42601 syntax error                   42704 undefined object
//	42710 duplicate object               42501 insufficient privilege
//	0LP01 invalid grant operation (privilege not applicable; membership cycle)
//	22023 invalid parameter value        42809 wrong object type
//	2BP01 dependent objects still exist  0A000 feature not supported
//	3D000 unknown database (catalog)     28P01 wrong password
//	25P02 in failed transaction block    08P01 protocol violation
//	54000 message too large              57014 query cancelled
//	08006 forwarded, answer lost         57P03 catalog unavailable
//	58000 data dir of a newer version    XX000 internal error
//	40001 transaction block conflicts    25P01 no transaction block
//	42602 invalid or confusable name     3B001 unknown savepoint
var codeSQLState = map[catalog.Code]string{
	catalog.CodeNotFound:         "42704",
	catalog.CodeAlreadyExists:    "42710",
	catalog.CodePermissionDenied: "42501",
	catalog.CodeInvalidArgument:  "22023",
	catalog.CodeInvalidPrivilege: "0LP01",
	catalog.CodeCycle:            "0LP01",
	catalog.CodeDependent:        "2BP01",
	catalog.CodeNotSupported:     "0A000",
	catalog.CodeUnknownCatalog:   "3D000",
	catalog.CodeReadOnly:         "42501",
	catalog.CodeUnavailable:      "57P03",
	catalog.CodeIncompatibleData: "58000",
	catalog.CodeWrongObjectType:  "42809",
	catalog.CodeConflict:         "40001",
	catalog.CodeLimitExceeded:    "54000",
	catalog.CodeInvalidName:      "42602",
	catalog.CodeOutcomeUnknown:   "08006",
}

// sqlError converts any error of the SQL layer into a *pgwire.Error. offset
// is the byte offset of the statement in the query text (for positions).
func sqlError(err error, query string, offset int) error {
	if err == nil {
		return nil
	}
	var pe *pgwire.Error
	if errors.As(err, &pe) {
		if pe.Position > 0 && offset > 0 {
			// A position in the statement becomes one in the query text.
			moved := *pe
			moved.Position += charPos(query, offset) - 1
			return &moved
		}
		return pe
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // pgwire reports cancellation and statement timeouts
	}
	var perr *parser.ParseError
	if errors.As(err, &perr) {
		return &pgwire.Error{Severity: "ERROR", Code: "42601", Message: perr.Error(), Position: charPos(query, offset+perr.Pos)}
	}
	var qerr *pgparser.Error
	if errors.As(err, &qerr) {
		e := &pgwire.Error{Severity: "ERROR", Code: "42601", Message: qerr.Message}
		if qerr.Cursorpos > 0 {
			// pg_query reports a 1-based character position in the statement.
			e.Position = charPos(query, offset) + int32(qerr.Cursorpos) - 1
		}
		return e
	}
	var ce *catalog.Error
	if errors.As(err, &ce) {
		code, ok := codeSQLState[ce.Code]
		if !ok {
			return err // internal: pgwire logs it and answers XX000
		}
		return &pgwire.Error{Severity: "ERROR", Code: code, Message: ce.Msg, Detail: ce.Detail, Hint: ce.Hint}
	}
	return err
}

// sqlState returns the SQLSTATE an error will be reported with.
func sqlState(err error) string {
	var pe *pgwire.Error
	if errors.As(sqlError(err, "", 0), &pe) {
		return pe.Code
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "57014"
	}
	return "XX000"
}

// charPos converts a byte offset into a 1-based character position.
func charPos(s string, byteOff int) int32 {
	if byteOff > len(s) {
		byteOff = len(s)
	}
	if byteOff < 0 {
		byteOff = 0
	}
	return int32(utf8.RuneCountInString(s[:byteOff])) + 1
}
