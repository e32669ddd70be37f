package systables

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mandatehq/mandate/sqlfront/pgwire"
)

// What the client is told about a statement: the types of its result
// columns, and errors with the position of what they are about.

// resultOID is a result column's type: the one PostgreSQL would report
// (inferred) where the engine's value carries it, else the engine's.
func resultOID(inferred, engine uint32) uint32 {
	switch {
	case inferred == 0 || inferred == oidUnknown || inferred == engine:
		return engine
	case isStringOID(inferred) && isStringOID(engine), isJSONOID(inferred) && isJSONOID(engine):
		return inferred
	case inferred == oidNumeric && (isNumberOID(engine)):
		return inferred
	case isIntOID(inferred) && isIntOID(engine) && numRank(inferred) >= numRank(engine):
		return inferred
	case inferred == oidFloat8 && isNumberOID(engine):
		return inferred
	case isArrayOID(inferred) && isArrayOID(engine) && resultOID(elemOID(inferred), elemOID(engine)) == elemOID(inferred):
		return inferred
	case inferred == oidOID && isIntOID(engine):
		return inferred
	}
	return engine
}

// positioned turns a deparser error with a location into a wire error
// with the character position in the client's text.
func (st *Statement) positioned(err error) error {
	var ep *errPos
	if !errors.As(err, &ep) {
		return err
	}
	pe, ok := ep.err.(*pgwire.Error)
	if !ok {
		return ep.err
	}
	out := *pe
	if ep.loc >= 0 {
		out.Position = charPosition(st.text, int(ep.loc))
	}
	return &out
}

// charPosition is PostgreSQL's 1-based character position of a byte
// offset.
func charPosition(text string, off int) int32 {
	if off > len(text) {
		off = len(text)
	}
	if off < 0 {
		return 0
	}
	return int32(utf8.RuneCountInString(text[:off])) + 1
}

// columnError is PostgreSQL's error for a column reference that does
// not resolve.
func (st *Statement) columnError(u unresolvedCol) error {
	e := &pgwire.Error{Severity: "ERROR", Code: "42703", Hint: u.hint,
		Position: charPosition(st.text, int(u.ref.Location))}
	switch {
	case u.missing != "":
		e.Code = "42P01"
		e.Message = fmt.Sprintf("missing FROM-clause entry for table %q", u.missing)
	case strings.Contains(u.qualName, "."):
		e.Message = fmt.Sprintf("column %s does not exist", u.qualName)
	default:
		e.Message = fmt.Sprintf("column %q does not exist", u.name)
	}
	return e
}
