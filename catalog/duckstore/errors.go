package duckstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/mandatehq/mandate/catalog"
)

// errClosed is returned by every operation on a closed Store.
func errClosed() *catalog.Error {
	return catalog.Errorf(catalog.CodeUnavailable, "catalog store is closed")
}

// translate turns an error of database/sql or the DuckDB driver into a
// *catalog.Error; it is the only place that looks at driver errors. op names
// the operation ("list grants"). A *catalog.Error passes through unchanged.
//
//   - ctx canceled or past its deadline: CodeInternal wrapping ctx.Err(), so
//     errors.Is(err, context.Canceled) holds;
//   - closed database or connection: CodeUnavailable;
//   - DuckDB I/O, connection, out-of-memory and fatal errors (after a fatal
//     error, for instance a failed fsync, DuckDB refuses all further work until
//     it is reopened): CodeUnavailable;
//   - anything else: CodeInternal.
func translate(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *catalog.Error
	if errors.As(err, &ce) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil {
		if !errors.Is(err, cerr) {
			err = errors.Join(cerr, err) // the driver's error (e.g. "Interrupted") is a consequence
		}
		return &catalog.Error{Code: catalog.CodeInternal, Msg: "catalog store: " + op + ": " + cerr.Error(), Err: err}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &catalog.Error{Code: catalog.CodeInternal, Msg: "catalog store: " + op + ": " + err.Error(), Err: err}
	}
	code := catalog.CodeInternal
	var de *duckdb.Error
	switch {
	case errors.Is(err, sql.ErrConnDone) || strings.Contains(err.Error(), "sql: database is closed"):
		code = catalog.CodeUnavailable
	case errors.Is(err, sql.ErrTxDone):
		return &catalog.Error{Code: catalog.CodeInternal, Msg: "catalog store: " + op + ": transaction has already finished", Err: err}
	case errors.As(err, &de):
		switch de.Type {
		case duckdb.ErrorTypeIO, duckdb.ErrorTypeConnection, duckdb.ErrorTypeFatal, duckdb.ErrorTypeOutOfMemory:
			code = catalog.CodeUnavailable
		}
	}
	return &catalog.Error{Code: code, Msg: "catalog store: " + op + ": " + err.Error(), Err: err}
}
