package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The gateway reads JSON-RPC messages as byte spans instead of decoding
// them into Go values: it needs a handful of members (method, id,
// params.name, result.tools[].name) and must forward the rest untouched,
// byte for byte. The scanner below walks JSON that has already been checked
// by json.Valid; it still checks bounds and returns errors rather than
// panicking on anything unexpected.
//
// Member lookup is exact and case-sensitive, like the MCP SDKs' decoders.
// checkKeys refuses objects whose keys are equal under Unicode case folding
// (duplicates included), so a message cannot be read one way here and
// another way by an upstream whose decoder is last-wins, first-wins or case
// insensitive (Go's encoding/json).

var errScan = errors.New("malformed JSON")

// maxDepth bounds the nesting of a message (objects and arrays).
const maxDepth = 512

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// trimWS returns b without leading and trailing JSON whitespace.
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

// eachElement calls fn with every element of the array arr and its offsets
// in arr, until fn returns false.
func eachElement(arr []byte, fn func(elem []byte, start, end int) bool) error {
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
		if !fn(arr[s:e], s, e) {
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

// member returns the raw value of obj's member key ("" key never matches)
// and its offsets in obj. obj must be a JSON object; anything else has no
// members.
func member(obj []byte, key string) (val []byte, start, end int, ok bool) {
	_ = eachMember(obj, func(k, v []byte) bool {
		if keyIs(k, key) {
			val, ok = v, true
			// v is a subslice of obj: recover its offsets.
			start = cap(obj) - cap(v)
			end = start + len(v)
			return false
		}
		return true
	})
	return val, start, end, ok
}

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

// intValue returns the JSON value v as an int if it is an integer.
func intValue(v []byte) (int, bool) {
	n, err := strconv.Atoi(string(v))
	return n, err == nil
}

// validJSON reports whether b is one valid UTF-8 JSON value.
func validJSON(b []byte) bool { return utf8.Valid(b) && json.Valid(b) }

// framedObject is the cheap check of upstream messages the gateway relays
// without reading them: b looks like one JSON object. It catches HTML
// error pages, plain text and truncated bodies; a full validation of every
// response would cost a pass over each byte that only the client needs.
func framedObject(b []byte) bool {
	b = trimWS(b)
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}'
}

// checkKeys walks the valid JSON value b and refuses objects with two keys
// that are equal under case folding, and nesting deeper than maxDepth.
func checkKeys(b []byte) error {
	var stack [32][]byte
	kc := keyChecker{keys: stack[:0]}
	i, err := kc.value(b, 0, 0)
	if err != nil {
		return err
	}
	if skipWS(b, i) != len(b) {
		return errScan
	}
	return nil
}

type keyChecker struct {
	keys [][]byte // keys of the objects being walked, innermost last
}

// foldedKeysAt is the number of keys of one object above which keyChecker
// switches from pairwise comparison to a map.
const foldedKeysAt = 32

func (kc *keyChecker) value(b []byte, i, depth int) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) {
		return 0, errScan
	}
	switch b[i] {
	case '{':
		return kc.object(b, i, depth+1)
	case '[':
		if depth+1 > maxDepth {
			return 0, fmt.Errorf("JSON nested deeper than %d levels", maxDepth)
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, nil
		}
		for {
			j, err := kc.value(b, i, depth+1)
			if err != nil {
				return 0, err
			}
			j = skipWS(b, j)
			if j >= len(b) {
				return 0, errScan
			}
			if b[j] == ']' {
				return j + 1, nil
			}
			if b[j] != ',' {
				return 0, errScan
			}
			i = j + 1
		}
	default:
		return skipValue(b, i)
	}
}

func (kc *keyChecker) object(b []byte, i, depth int) (int, error) {
	if depth > maxDepth {
		return 0, fmt.Errorf("JSON nested deeper than %d levels", maxDepth)
	}
	base := len(kc.keys)
	defer func() { kc.keys = kc.keys[:base] }()
	var folded map[string]struct{}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		i = skipWS(b, i)
		ke, err := skipString(b, i)
		if err != nil {
			return 0, err
		}
		k := b[i+1 : ke-1]
		if bytes.IndexByte(k, '\\') >= 0 {
			s, ok := unquote(b[i:ke])
			if !ok {
				return 0, errScan
			}
			k = []byte(s)
		}
		if folded != nil {
			f := foldKey(k)
			if _, dup := folded[f]; dup {
				return 0, fmt.Errorf("duplicate key %q", k)
			}
			folded[f] = struct{}{}
		} else {
			for _, prev := range kc.keys[base:] {
				if bytes.EqualFold(prev, k) {
					return 0, fmt.Errorf("duplicate key %q", k)
				}
			}
			kc.keys = append(kc.keys, k)
			if len(kc.keys)-base > foldedKeysAt {
				folded = make(map[string]struct{}, 2*foldedKeysAt)
				for _, prev := range kc.keys[base:] {
					folded[foldKey(prev)] = struct{}{}
				}
			}
		}
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, errScan
		}
		j, err := kc.value(b, i+1, depth)
		if err != nil {
			return 0, err
		}
		j = skipWS(b, j)
		if j >= len(b) {
			return 0, errScan
		}
		if b[j] == '}' {
			return j + 1, nil
		}
		if b[j] != ',' {
			return 0, errScan
		}
		i = j + 1
	}
}

// foldKey maps keys that bytes.EqualFold considers equal to one string.
func foldKey(k []byte) string {
	return strings.Map(func(r rune) rune {
		// The smallest rune of r's case-folding orbit.
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		return min
	}, string(k))
}
