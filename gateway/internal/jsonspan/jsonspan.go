// Package jsonspan reads JSON as byte spans instead of decoding it into Go
// values: the gateway's protocol adapters (gateway/mcp, gateway/llm) need a
// handful of members of a message and forward the rest untouched, byte for
// byte. Check validates a body once (UTF-8, then syntax, nesting depth and
// keys that collide under Unicode case folding, in one pass of
// catalog/strictjson); the helpers then walk the checked body, check
// bounds and return errors rather than panicking on anything unexpected.
//
// Member lookup is exact and case-sensitive, like the MCP SDKs' and the
// providers' decoders. Keys equal under case folding are refused by Check
// in every object, so a message cannot be read one way here and another
// way by an upstream whose decoder is last-wins, first-wins or case
// insensitive (Go's encoding/json).
package jsonspan

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/mandatehq/mandate/catalog/strictjson"
)

// ErrScan is the error of a walk over bytes that are not the JSON expected.
var ErrScan = errors.New("malformed JSON")

// IsWS reports whether c is JSON whitespace.
func IsWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func SkipWS(b []byte, i int) int {
	for i < len(b) && IsWS(b[i]) {
		i++
	}
	return i
}

// TrimWS returns b without leading and trailing JSON whitespace.
func TrimWS(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && IsWS(b[i]) {
		i++
	}
	for j > i && IsWS(b[j-1]) {
		j--
	}
	return b[i:j]
}

// SkipString returns the index just past the string starting at b[i] ('"').
func SkipString(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, ErrScan
	}
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, ErrScan
		}
		q := i + j
		// The quote is escaped if an odd number of backslashes precede it
		// (a run of them cannot reach past the previous quote).
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

// SkipValue returns the index just past the value starting at b[i].
func SkipValue(b []byte, i int) (int, error) {
	i = SkipWS(b, i)
	if i >= len(b) {
		return 0, ErrScan
	}
	switch b[i] {
	case '"':
		return SkipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				j, err := SkipString(b, i)
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
		return 0, ErrScan
	default:
		j := i
		for j < len(b) && !IsWS(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		if j == i {
			return 0, ErrScan
		}
		return j, nil
	}
}

// EachMember calls fn with the raw key (quotes included) and the raw value
// of every member of the object obj, in order, until fn returns false.
func EachMember(obj []byte, fn func(key, val []byte) bool) error {
	i := SkipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return ErrScan
	}
	i = SkipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		i = SkipWS(obj, i)
		ks := i
		ke, err := SkipString(obj, i)
		if err != nil {
			return err
		}
		i = SkipWS(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return ErrScan
		}
		vs := SkipWS(obj, i+1)
		ve, err := SkipValue(obj, vs)
		if err != nil {
			return err
		}
		if !fn(obj[ks:ke], obj[vs:ve]) {
			return nil
		}
		i = SkipWS(obj, ve)
		if i >= len(obj) {
			return ErrScan
		}
		switch obj[i] {
		case ',':
			i++
		case '}':
			return nil
		default:
			return ErrScan
		}
	}
}

// EachElement calls fn with every element of the array arr and its offsets
// in arr, until fn returns false.
func EachElement(arr []byte, fn func(elem []byte, start, end int) bool) error {
	i := SkipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return ErrScan
	}
	i = SkipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for {
		s := SkipWS(arr, i)
		e, err := SkipValue(arr, s)
		if err != nil {
			return err
		}
		if !fn(arr[s:e], s, e) {
			return nil
		}
		i = SkipWS(arr, e)
		if i >= len(arr) {
			return ErrScan
		}
		switch arr[i] {
		case ',':
			i++
		case ']':
			return nil
		default:
			return ErrScan
		}
	}
}

// Member returns the raw value of obj's member key ("" key never matches).
// obj must be a JSON object; anything else has no members. Offset gives
// the value's offset in obj.
func Member(obj []byte, key string) (val []byte, ok bool) {
	_ = EachMember(obj, func(k, v []byte) bool {
		if KeyIs(k, key) {
			val, ok = v, true
			return false
		}
		return true
	})
	return val, ok
}

// Offset returns the offset of sub in b, of which it is a subslice.
func Offset(b, sub []byte) int { return cap(b) - cap(sub) }

// KeyIs reports whether the raw JSON string k (quotes included) is key.
func KeyIs(k []byte, key string) bool {
	if len(k) < 2 {
		return false
	}
	inner := k[1 : len(k)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == key
	}
	s, ok := Unquote(k)
	return ok && s == key
}

// Unquote decodes the raw JSON string s (quotes included).
func Unquote(s []byte) (string, bool) {
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

// StringValue returns the JSON value v as a Go string if it is a string.
func StringValue(v []byte) (string, bool) {
	if len(v) == 0 || v[0] != '"' {
		return "", false
	}
	return Unquote(v)
}

// Check validates b as one JSON value: UTF-8, then in one pass
// (catalog/strictjson) syntax, nesting at most maxDepth, and no object
// with two keys equal under case folding. A syntax error (invalid UTF-8
// included) is a *strictjson.Error of kind strictjson.ErrSyntax whose
// message does not repeat "invalid JSON".
func Check(b []byte, maxDepth int) error {
	if !utf8.Valid(b) {
		return &strictjson.Error{Kind: strictjson.ErrSyntax, Offset: -1, Msg: "body is not valid UTF-8"}
	}
	err := strictjson.Valid(b, strictjson.Options{MaxBytes: math.MaxInt64, MaxDepth: maxDepth, FoldKeys: true})
	var se *strictjson.Error
	if errors.As(err, &se) && errors.Is(err, strictjson.ErrSyntax) {
		return &strictjson.Error{Kind: strictjson.ErrSyntax, Offset: se.Offset, Msg: strings.TrimPrefix(se.Msg, "invalid JSON: ")}
	}
	return err
}

// FramedObject is the cheap check of upstream bodies the gateway relays
// without reading them: b looks like one JSON object. It catches HTML
// error pages, plain text and truncated bodies; a full validation of every
// response would cost a pass over each byte that only the client needs.
func FramedObject(b []byte) bool {
	b = TrimWS(b)
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}'
}

// AppendString appends s as encoding/json writes it: as is when it holds
// only printable ASCII that needs no escape, else through encoding/json
// (HTML-safe escapes, U+2028/U+2029, invalid UTF-8). The adapters write
// their audit rows' JSON by appends (the same bytes as json.Marshal,
// without its per-call allocations).
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
