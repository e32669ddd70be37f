package llm

import (
	"encoding/json"
	"strconv"

	"github.com/mandatehq/mandate/gateway/internal/jsonspan"
)

// Request bodies are read as byte spans rather than decoded into Go values:
// the fast path (same format in and out) needs a handful of members and
// forwards the rest untouched. A body is checked once (UTF-8, then syntax,
// nesting depth and keys that collide under case folding in one pass); the helpers below
// then walk it and return errors, never panic, on anything unexpected.
//
// Keys that collide under Unicode case folding are refused in every object:
// otherwise {"max_tokens":1,"max_tokens":100000} could be reserved as one
// call here and executed as another by an upstream whose decoder is
// last-wins, first-wins or case insensitive.

var errScan = jsonspan.ErrScan

// The span helpers are gateway/internal/jsonspan's, shared with gateway/mcp.

func skipWS(b []byte, i int) int                             { return jsonspan.SkipWS(b, i) }
func trimWS(b []byte) []byte                                 { return jsonspan.TrimWS(b) }
func eachMember(obj []byte, fn func(k, v []byte) bool) error { return jsonspan.EachMember(obj, fn) }
func member(obj []byte, key string) ([]byte, bool)           { return jsonspan.Member(obj, key) }
func offsetIn(b, sub []byte) int                             { return jsonspan.Offset(b, sub) }
func keyIs(k []byte, key string) bool                        { return jsonspan.KeyIs(k, key) }
func unquote(s []byte) (string, bool)                        { return jsonspan.Unquote(s) }
func stringValue(v []byte) (string, bool)                    { return jsonspan.StringValue(v) }
func framedObject(b []byte) bool                             { return jsonspan.FramedObject(b) }

// eachElement calls fn with every element of the array arr, until fn
// returns false.
func eachElement(arr []byte, fn func(elem []byte) bool) error {
	return jsonspan.EachElement(arr, func(elem []byte, _, _ int) bool { return fn(elem) })
}

// checkJSON validates b as one JSON value: UTF-8, then in one pass
// syntax, nesting at most maxDepth, and no object with two keys equal
// under case folding (jsonspan.Check).
func checkJSON(b []byte, maxDepth int) error { return jsonspan.Check(b, maxDepth) }

// intValue returns the JSON value v as an int64 if it is an integer.
func intValue(v []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(v), 10, 64)
	return n, err == nil
}

func isNull(v []byte) bool { return string(v) == "null" }

func kindOf(v []byte) byte {
	if len(v) == 0 {
		return 0
	}
	switch v[0] {
	case '{', '[', '"':
		return v[0]
	case 't', 'f':
		return 'b'
	case 'n':
		return 'n'
	default:
		return '0'
	}
}

// edit is one byte-level change of a body: replace b[start:end] with repl.
type edit struct {
	start, end int
	repl       []byte
}

// applyEdits returns b with the edits applied; edits must not overlap and
// may come in any order.
func applyEdits(b []byte, edits []edit) []byte {
	n := len(b)
	for _, e := range edits {
		n += len(e.repl) - (e.end - e.start)
	}
	// insertion sort: a handful of edits at most
	for i := 1; i < len(edits); i++ {
		for j := i; j > 0 && edits[j].start < edits[j-1].start; j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	out := make([]byte, 0, n)
	pos := 0
	for _, e := range edits {
		out = append(out, b[pos:e.start]...)
		out = append(out, e.repl...)
		pos = e.end
	}
	return append(out, b[pos:]...)
}

// setMember returns the edit that sets obj's member key to the raw JSON
// val: the value is replaced if the member exists, else the member is
// inserted first. base is obj's offset in the body being edited.
func setMember(obj []byte, base int, key string, val []byte) edit {
	if v, ok := member(obj, key); ok {
		s := base + offsetIn(obj, v)
		return edit{start: s, end: s + len(v), repl: val}
	}
	i := skipWS(obj, 0) + 1 // just past '{'
	empty := obj[skipWS(obj, i)] == '}'
	repl := make([]byte, 0, len(key)+len(val)+4)
	repl = strconv.AppendQuote(repl, key)
	repl = append(repl, ':')
	repl = append(repl, val...)
	if !empty {
		repl = append(repl, ',')
	}
	return edit{start: base + i, end: base + i, repl: repl}
}

// quoteJSON returns s as a JSON string, byte for byte encoding/json's: a
// string of printable ASCII that needs no escape (model names, user ids)
// is quoted as is, any other goes through json.Marshal.
func quoteJSON(s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return b
		}
	}
	b := make([]byte, 0, len(s)+2)
	return append(append(append(b, '"'), s...), '"')
}
