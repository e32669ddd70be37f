package pgstore

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/mandatehq/mandate/catalog"
)

// A change record as encodeRecords writes it (json.Marshal of a
// catalog.Change) starts with its revision, its next ID and its ops, and
// ends with its audit records, by far its largest part: a follower that
// does not forward the audit (decodeOps) reads the start only.

// recordPrefix and its parts are how encodeRecords's records start.
var (
	recordPrefix = []byte(`{"rev":`)
	nextIDKey    = []byte(`,"next_id":`)
	opsKey       = []byte(`,"ops":`)
)

// splitOps returns the revision, the next ID and the ops array (its JSON)
// of a record that starts as encodeRecords writes it, without reading the
// rest. ok is false for any other shape (the caller decodes it whole).
func splitOps(body []byte) (rev, nextID int64, ops []byte, ok bool) {
	rest, found := bytes.CutPrefix(body, recordPrefix)
	if !found {
		return 0, 0, nil, false
	}
	rev, rest, found = cutInt(rest)
	if !found {
		return 0, 0, nil, false
	}
	if rest, found = bytes.CutPrefix(rest, nextIDKey); !found {
		return 0, 0, nil, false
	}
	nextID, rest, found = cutInt(rest)
	if !found {
		return 0, 0, nil, false
	}
	if rest, found = bytes.CutPrefix(rest, opsKey); !found {
		return 0, 0, nil, false
	}
	n := valueEnd(rest)
	if bytes.HasPrefix(rest, []byte("null")) { // a change without ops
		n = len("null")
	}
	if n <= 0 || n >= len(rest) || (rest[n] != ',' && rest[n] != '}') {
		return 0, 0, nil, false
	}
	return rev, nextID, rest[:n], true
}

// cutInt reads the decimal integer b starts with.
func cutInt(b []byte) (int64, []byte, bool) {
	n := 0
	if n < len(b) && b[n] == '-' {
		n++
	}
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	v, err := strconv.ParseInt(string(b[:n]), 10, 64)
	return v, b[n:], err == nil
}

// valueEnd returns the length of the JSON array or object b starts with
// (its brackets matched outside strings), or 0 if b does not start with
// one or it does not end. The value itself is checked by whoever decodes
// it.
func valueEnd(b []byte) int {
	if len(b) == 0 || (b[0] != '[' && b[0] != '{') {
		return 0
	}
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			depth++
		case ']', '}':
			if depth--; depth == 0 {
				return i + 1
			}
		}
	}
	return 0
}

// decodeOpsFast is decodeOps for a record as encodeRecords writes it: ok
// is false when it has another shape or its ops do not decode (decodeOps
// then decodes it whole, and reports what is wrong).
func decodeOpsFast(body []byte) (catalog.Change, bool) {
	rev, nextID, raw, ok := splitOps(body)
	if !ok {
		return catalog.Change{}, false
	}
	var ops []catalog.ChangeOp
	if err := json.Unmarshal(raw, &ops); err != nil {
		return catalog.Change{}, false
	}
	return catalog.Change{Revision: catalog.Revision(rev), NextID: catalog.ID(nextID), Ops: ops}, true
}
