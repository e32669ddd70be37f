// Package jsonwalk visits the strings and numbers of a JSON document in one
// pass, decoded (escapes resolved, \u surrogate pairs joined), with their
// byte spans in the raw document, so that guardrails can scan the content
// of tool arguments and structured results and splice rewritten strings
// back without re-encoding the rest. The walker checks the grammar as it
// goes (an error, never a panic, on malformed input) and bounds nesting.
package jsonwalk

import (
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/mandatehq/mandate/catalog/jsonstr"
)

// MaxDepth is the default bound on the nesting of objects and arrays.
const MaxDepth = 512

// ErrSyntax is returned (wrapped, with an offset) for malformed JSON.
var ErrSyntax = errors.New("malformed JSON")

// Kind is the kind of a visited token.
type Kind uint8

const (
	Key    Kind = iota + 1 // an object member's name
	String                 // a string value
	Number                 // a number value
)

// Token is one visited key, string or number. Value and Key point into
// scratch buffers or into the document and are valid only during the
// callback.
type Token struct {
	Kind       Kind
	Start, End int    // raw span; strings include their quotes
	Value      []byte // decoded string content, or the number's literal
	Key        []byte // for a value directly inside an object: its decoded member name; nil otherwise
	Escaped    bool   // the raw string contains escapes (Value is a decoded copy)
	Depth      int    // nesting depth of the containing object or array (0 at top level)
	ArrayIndex int    // index within the containing array, -1 otherwise
}

// Visitor receives the tokens of a walk.
type Visitor interface {
	Visit(*Token) error
}

// Func adapts a function to a Visitor.
type Func func(*Token) error

func (f Func) Visit(t *Token) error { return f(t) }

// walkers keeps Walkers (and their scratch buffers) between calls.
var walkers = sync.Pool{New: func() any { return new(Walker) }}

// Get returns a Walker from a pool (MaxDepth and NoDecode zero); give it
// back with Put when done.
func Get() *Walker { return walkers.Get().(*Walker) }

// Put returns w to the pool (buffers beyond 1 MiB are dropped).
func Put(w *Walker) {
	if cap(w.val) > 1<<20 {
		w.val = nil
	}
	if cap(w.key) > 1<<20 {
		w.key = nil
	}
	w.MaxDepth, w.NoDecode = 0, false
	walkers.Put(w)
}

// Walker is reusable (not concurrently): it keeps its scratch buffers.
type Walker struct {
	MaxDepth int // 0 means MaxDepth
	// NoDecode: strings are checked but not decoded (Token.Value is the
	// raw body between the quotes), for walks that only check.
	NoDecode bool
	key      []byte
	val      []byte
	tok      Token
	fn       Visitor
	raw      []byte
}

// Walk visits every key, string and number of raw in document order. An
// error from the visitor stops the walk and is returned as is.
func (w *Walker) Walk(raw []byte, v Visitor) error {
	w.raw, w.fn = raw, v
	defer func() { w.raw, w.fn = nil, nil }()
	i := skipWS(raw, 0)
	i, err := w.value(i, 0, nil, -1)
	if err != nil {
		return err
	}
	if i = skipWS(raw, i); i != len(raw) {
		return w.syntax(i, "trailing data")
	}
	return nil
}

func (w *Walker) syntax(i int, what string) error {
	return fmt.Errorf("%w at offset %d: %s", ErrSyntax, i, what)
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

func (w *Walker) value(i, depth int, key []byte, idx int) (int, error) {
	b := w.raw
	if i >= len(b) {
		return i, w.syntax(i, "unexpected end")
	}
	switch c := b[i]; {
	case c == '{':
		return w.object(i, depth+1)
	case c == '[':
		return w.array(i, depth+1)
	case c == '"':
		end, esc, err := w.str(i)
		if err != nil {
			return i, err
		}
		v := b[i+1 : end-1]
		if esc && !w.NoDecode {
			w.val = decode(w.val[:0], v)
			v = w.val
		}
		w.tok = Token{Kind: String, Start: i, End: end, Value: v, Key: key, Escaped: esc, Depth: depth, ArrayIndex: idx}
		return end, w.fn.Visit(&w.tok)
	case c == '-' || (c >= '0' && c <= '9'):
		end, err := w.number(i)
		if err != nil {
			return i, err
		}
		w.tok = Token{Kind: Number, Start: i, End: end, Value: b[i:end], Key: key, Depth: depth, ArrayIndex: idx}
		return end, w.fn.Visit(&w.tok)
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
				return i + len(lit), nil
			}
		}
		return i, w.syntax(i, "invalid value")
	}
}

func (w *Walker) maxDepth() int {
	if w.MaxDepth > 0 {
		return w.MaxDepth
	}
	return MaxDepth
}

func (w *Walker) object(i, depth int) (int, error) {
	if depth > w.maxDepth() {
		return i, fmt.Errorf("JSON nested deeper than %d levels", w.maxDepth())
	}
	b := w.raw
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, w.syntax(i, "expected member name")
		}
		end, esc, err := w.str(i)
		if err != nil {
			return i, err
		}
		k := b[i+1 : end-1]
		if esc {
			w.key = decode(w.key[:0], k)
			k = w.key
		}
		w.tok = Token{Kind: Key, Start: i, End: end, Value: k, Escaped: esc, Depth: depth, ArrayIndex: -1}
		if err := w.fn.Visit(&w.tok); err != nil {
			return i, err
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return i, w.syntax(i, "expected ':'")
		}
		i = skipWS(b, i+1)
		// The key must survive the value's callback: re-derive it (a
		// nested object reuses w.key).
		if esc {
			k = append([]byte(nil), k...)
		}
		if i, err = w.value(i, depth, k, -1); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, w.syntax(i, "unexpected end in object")
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, w.syntax(i, "expected ',' or '}'")
		}
		i = skipWS(b, i+1)
	}
}

func (w *Walker) array(i, depth int) (int, error) {
	if depth > w.maxDepth() {
		return i, fmt.Errorf("JSON nested deeper than %d levels", w.maxDepth())
	}
	b := w.raw
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for n := 0; ; n++ {
		var err error
		if i, err = w.value(i, depth, nil, n); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, w.syntax(i, "unexpected end in array")
		}
		if b[i] == ']' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, w.syntax(i, "expected ',' or ']'")
		}
		i = skipWS(b, i+1)
	}
}

// str returns the index just past the string starting at b[i] and whether
// it contains escapes; it checks escapes and control characters.
func (w *Walker) str(i int) (int, bool, error) {
	end, esc, err := jsonstr.Scan(w.raw, i)
	if err != nil {
		var se *jsonstr.SyntaxError
		if errors.As(err, &se) {
			return end, esc, w.syntax(se.Offset, se.Msg)
		}
		return end, esc, err
	}
	return end, esc, nil
}

func (w *Walker) number(i int) (int, error) {
	end, ok := NumberEnd(w.raw, i)
	if !ok {
		return end, w.syntax(end, "invalid number")
	}
	return end, nil
}

// NumberEnd returns the index just past the JSON number starting at b[i]
// (-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?), or the index of the
// first byte that breaks the grammar and false.
func NumberEnd(b []byte, i int) (int, bool) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	switch {
	case j < len(b) && b[j] == '0':
		j++
	case j < len(b) && b[j] >= '1' && b[j] <= '9':
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
	default:
		return j, false
	}
	if j < len(b) && b[j] == '.' {
		j++
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == k {
			return j, false
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		k := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == k {
			return j, false
		}
	}
	return j, true
}

// decode appends the decoded content of a checked string body (without
// quotes) to dst.
func decode(dst, s []byte) []byte { return jsonstr.AppendUnescaped(dst, s) }

// Decode returns the decoded content of a raw JSON string (with its
// quotes), appended to dst, as encoding/json decodes it (invalid UTF-8 and
// unpaired surrogates as U+FFFD). The string must be well-formed.
func Decode(dst, quoted []byte) []byte { return decode(dst, quoted[1:len(quoted)-1]) }

// RawOffsets maps ascending offsets in the decoded content of the string
// body s (the raw bytes between the quotes) to the offsets of the same
// characters in s, in place, in one pass.
func RawOffsets(s []byte, offs []int) {
	d, i := 0, 0
	for k := range offs {
		for i < len(s) && d < offs[k] {
			if c := s[i]; c != '\\' && c < utf8.RuneSelf {
				i++
				d++
				continue
			}
			n, w := jsonstr.Width(s, i)
			i += n
			d += w
		}
		offs[k] = i
	}
}

// RawOffset maps an offset in the decoded content of the string body s (the
// raw bytes between the quotes) to the offset of the same character in s.
func RawOffset(s []byte, decoded int) int {
	off := [1]int{decoded}
	RawOffsets(s, off[:])
	return off[0]
}

// AppendString appends s as a JSON string (with quotes): '"', '\\' and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, everything
// else (including '<', '>', '&') as is.
func AppendString(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += n
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// Members returns the raw spans of the values of the named members of the
// top-level object of raw (absent members have end 0). raw is checked
// with the same grammar as Walk.
func Members(raw []byte, names ...string) ([][2]int, error) {
	spans := make([][2]int, len(names))
	w := &Walker{NoDecode: true}
	err := w.Walk(raw, memberVisitor{w: w, names: names, spans: spans})
	return spans, err
}

type memberVisitor struct {
	w     *Walker
	names []string
	spans [][2]int
}

func (m memberVisitor) Visit(t *Token) error {
	if t.Kind != Key || t.Depth != 1 {
		return nil
	}
	for i, n := range m.names {
		if string(t.Value) == n {
			b := m.w.raw
			s := skipWS(b, t.End)
			if s < len(b) && b[s] == ':' {
				s = skipWS(b, s+1)
				e, err := skipValue(b, s, 0)
				if err != nil {
					return err
				}
				m.spans[i] = [2]int{s, e}
			}
		}
	}
	return nil
}

// Elements returns the raw spans of the elements of the top-level array of
// raw (checked with the same grammar as Walk); an error if raw is not an
// array.
func Elements(raw []byte) ([][2]int, error) {
	if err := Check(raw, 0); err != nil {
		return nil, err
	}
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return nil, fmt.Errorf("%w: not an array", ErrSyntax)
	}
	var spans [][2]int
	i = skipWS(raw, i+1)
	for i < len(raw) && raw[i] != ']' {
		e, err := skipValue(raw, i, 0)
		if err != nil {
			return nil, err
		}
		spans = append(spans, [2]int{i, e})
		i = skipWS(raw, e)
		if i < len(raw) && raw[i] == ',' {
			i = skipWS(raw, i+1)
		}
	}
	return spans, nil
}

// skipValue returns the end of the (already checked) value at b[i].
func skipValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) || depth > MaxDepth {
		return i, ErrSyntax
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, nil
			}
		}
		return len(b), ErrSyntax
	case '{', '[':
		open, close := b[i], byte('}')
		if open == '[' {
			close = ']'
		}
		j := i + 1
		for j < len(b) {
			switch c := b[j]; {
			case c == close:
				return j + 1, nil
			case c == '"' || c == '{' || c == '[':
				e, err := skipValue(b, j, depth+1)
				if err != nil {
					return e, err
				}
				j = e
			default:
				j++
			}
		}
		return len(b), ErrSyntax
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && !isWS(b[j]) {
			j++
		}
		return j, nil
	}
}

// Check reports whether raw is one well-formed JSON value nested at most
// maxDepth deep (0: MaxDepth), without decoding anything.
func Check(raw []byte, maxDepth int) error {
	w := Walker{MaxDepth: maxDepth, NoDecode: true}
	return w.Walk(raw, nop{})
}

type nop struct{}

func (nop) Visit(*Token) error { return nil }
