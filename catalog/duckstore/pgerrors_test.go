package duckstore

import (
	"testing"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/mandatehq/mandate/catalog"
)

// DuckDB's messages become PostgreSQL's SQLSTATE and wording.
func TestPGError(t *testing.T) {
	for _, c := range []struct {
		typ            duckdb.ErrorType
		msg            string
		code, want, nm string
	}{
		{duckdb.ErrorTypeInvalidInput, catalog.RaisePrefix + "22012:division by zero", "22012", "division by zero", ""},
		{duckdb.ErrorTypeBinder, `Referenced column "evnt_time" not found in FROM clause!`, "42703", `column "evnt_time" does not exist`, "evnt_time"},
		{duckdb.ErrorTypeBinder, `Column "evnt_time" referenced that exists in the SELECT clause - but this column cannot be referenced before it is defined`,
			"42703", `column "evnt_time" does not exist`, "evnt_time"},
		{duckdb.ErrorTypeBinder, `Values list "a" does not have a column named "b"`, "42703", "column a.b does not exist", "b"},
		{duckdb.ErrorTypeBinder, `Referenced table "x" not found!`, "42P01", `missing FROM-clause entry for table "x"`, "x"},
		{duckdb.ErrorTypeOutOfRange, "Overflow in addition of INT32 (2147483647 + 1)!", "22003", "integer out of range", ""},
		{duckdb.ErrorTypeOutOfRange, "Overflow in multiplication of INT64 (9223372036854775807 * 2)!", "22003", "bigint out of range", ""},
		{duckdb.ErrorTypeOutOfRange, "Overflow in division of -2147483648 / -1", "22003", "integer out of range", ""},
		{duckdb.ErrorTypeConversion, "Could not convert string 'abc' to INT32", "22P02", `invalid input syntax for type integer: "abc"`, ""},
		{duckdb.ErrorTypeConversion, `Casting value "12345.678" to type DECIMAL(5,2) failed: value is out of range!`, "22003", "numeric field overflow", ""},
		{duckdb.ErrorTypeBinder, `column "event_id" must appear in the GROUP BY clause or must be part of an aggregate function.`, "42803",
			`column "event_id" must appear in the GROUP BY clause or be used in an aggregate function`, "event_id"},
		{duckdb.ErrorTypeBinder, "No function matches the given name and argument types 'lower(INTEGER_LITERAL)'. You might need to add explicit type casts.\n\tCandidate functions:\n\tlower(VARCHAR) -> VARCHAR",
			"42883", "function lower(integer) does not exist", ""},
		{duckdb.ErrorTypeInvalidInput, "missing ): (", "2201B", "invalid regular expression: missing ): (", ""},
		{duckdb.ErrorTypeBinder, "Something new about VARCHAR and INT64!\nDid you mean \"x\"?", "42804", "something new about text and bigint", ""},
	} {
		qe := pgError(c.typ, c.msg)
		if qe.SQLState != c.code || qe.Msg != c.want || qe.Name != c.nm {
			t.Errorf("%q:\n got %s %q %q\nwant %s %q %q", c.msg, qe.SQLState, qe.Msg, qe.Name, c.code, c.want, c.nm)
		}
	}
}
