package llm

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mandatehq/mandate/catalog/strictjson"
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

var errScan = errors.New("malformed JSON")

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

func trimWS(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isWS(b[i]) {
		i++
	}
	for j > i && isWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

// skipString returns the index just past the string starting at b[i] ('"').
func skipString(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errScan
	}
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, errScan
		}
		q := i + j
		n := 0
		for p := q - 1; p >= i && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, nil
		}
		i = q + 1
	}
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) {
		return 0, errScan
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = j - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
		}
		return 0, errScan
	default:
		j := i
		for j < len(b) && !isWS(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		if j == i {
			return 0, errScan
		}
		return j, nil
	}
}

// eachMember calls fn with the raw key (quotes included) and the raw value
// of every member of the object obj, in order, until fn returns false.
func eachMember(obj []byte, fn func(key, val []byte) bool) error {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errScan
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		i = skipWS(obj, i)
		ks := i
		ke, err := skipString(obj, i)
		if err != nil {
			return err
		}
		i = skipWS(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return errScan
		}
		vs := skipWS(obj, i+1)
		ve, err := skipValue(obj, vs)
		if err != nil {
			return err
		}
		if !fn(obj[ks:ke], obj[vs:ve]) {
			return nil
		}
		i = skipWS(obj, ve)
		if i >= len(obj) {
			return errScan
		}
		switch obj[i] {
		case ',':
			i++
		case '}':
			return nil
		default:
			return errScan
		}
	}
}

// eachElement calls fn with every element of the array arr, until fn
// returns false.
func eachElement(arr []byte, fn func(elem []byte) bool) error {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return errScan
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for {
		s := skipWS(arr, i)
		e, err := skipValue(arr, s)
		if err != nil {
			return err
		}
		if !fn(arr[s:e]) {
			return nil
		}
		i = skipWS(arr, e)
		if i >= len(arr) {
			return errScan
		}
		switch arr[i] {
		case ',':
			i++
		case ']':
			return nil
		default:
			return errScan
		}
	}
}

// member returns the raw value of obj's member key.
func member(obj []byte, key string) (val []byte, ok bool) {
	_ = eachMember(obj, func(k, v []byte) bool {
		if keyIs(k, key) {
			val, ok = v, true
			return false
		}
		return true
	})
	return val, ok
}

// offsetIn returns the offset of the subslice sub in b.
func offsetIn(b, sub []byte) int { return cap(b) - cap(sub) }

// keyIs reports whether the raw JSON string k (quotes included) is key.
func keyIs(k []byte, key string) bool {
	if len(k) < 2 {
		return false
	}
	inner := k[1 : len(k)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == key
	}
	s, ok := unquote(k)
	return ok && s == key
}

// unquote decodes the raw JSON string s (quotes included).
func unquote(s []byte) (string, bool) {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return "", false
	}
	inner := s[1 : len(s)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner), true
	}
	var out string
	if err := json.Unmarshal(s, &out); err != nil {
		return "", false
	}
	return out, true
}

// stringValue returns the JSON value v as a Go string if it is a string.
func stringValue(v []byte) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	return unquote(v)
}

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

// checkJSON validates b as one JSON value: UTF-8, then in one pass
// (catalog/strictjson) syntax, nesting at most maxDepth, and no object
// with two keys equal under case folding.
func checkJSON(b []byte, maxDepth int) error {
	if !utf8.Valid(b) {
		return errors.New("body is not valid UTF-8")
	}
	err := strictjson.Valid(b, strictjson.Options{MaxBytes: math.MaxInt64, MaxDepth: maxDepth, FoldKeys: true})
	var se *strictjson.Error
	if errors.As(err, &se) && errors.Is(err, strictjson.ErrSyntax) {
		return errors.New(strings.TrimPrefix(se.Msg, "invalid JSON: ")) // the caller says "invalid JSON body"
	}
	return err
}

// framedObject is the cheap check of upstream bodies the gateway relays:
// b looks like one JSON object (not an HTML error page or a truncation).
func framedObject(b []byte) bool {
	b = trimWS(b)
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}'
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

// quoteJSON returns s as a JSON string.
func quoteJSON(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}
