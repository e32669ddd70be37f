package catalog

import (
	"errors"
	"fmt"
)

// Code classifies catalog errors. The SQL front end maps each code to one
// SQLSTATE in a single place; the authorization API maps them to HTTP.
type Code int

const (
	CodeInternal         Code = iota // unexpected failure (store, I/O)
	CodeNotFound                     // object or principal does not exist (42704)
	CodeAlreadyExists                // duplicate object (42710)
	CodePermissionDenied             // insufficient privilege (42501)
	CodeInvalidArgument              // malformed value, bad option (22023)
	CodeInvalidPrivilege             // privilege does not apply to securable type (0LP01)
	CodeCycle                        // group membership would create a cycle (42P17)
	CodeDependent                    // object still has dependents (2BP01)
	CodeNotSupported                 // feature not supported (0A000)
	CodeUnknownCatalog               // unknown database / current catalog (3D000)
	CodeReadOnly                     // built-in object cannot be changed (42501)
	CodeUnavailable                  // store unavailable / closed (57P03)
	CodeIncompatibleData             // data dir from a newer version (58000)
	CodeWrongObjectType              // object is of another kind (42809)
	CodeConflict                     // a transaction block's changes no longer apply at commit (40001)
	CodeLimitExceeded                // a resource limit was reached (54000)
	CodeInvalidName                  // a name that is malformed or confusable (42602)
	CodeOutcomeUnknown               // a statement sent to the writer replica whose answer was lost (08006)
)

// Error is the typed error every catalog function returns for expected
// failures. Store drivers translate their errors into it at the edge.
type Error struct {
	Code   Code
	Msg    string
	Detail string
	Hint   string
	Err    error // wrapped cause, never shown to clients for CodeInternal
}

func (e *Error) Error() string {
	if e.Err != nil && e.Msg == "" {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Internal wraps an unexpected error.
func Internal(err error, msg string) *Error {
	return &Error{Code: CodeInternal, Msg: msg + ": " + err.Error(), Err: err}
}

// CodeOf returns the code of err, or CodeInternal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsCode reports whether err is a catalog error with the given code.
func IsCode(err error, c Code) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == c
}

// WithHint returns e with a hint.
func (e *Error) WithHint(h string) *Error { e.Hint = h; return e }

// WithDetail returns e with a detail.
func (e *Error) WithDetail(d string) *Error { e.Detail = d; return e }
