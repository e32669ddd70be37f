package strictjson

import (
	"bytes"
	stdjson "encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/segmentio/encoding/json"

	"github.com/mandatehq/mandate/catalog/jsonstr"
)

// Defaults of Options.
const (
	// DefaultMaxBytes bounds a document (1 MiB).
	DefaultMaxBytes = 1 << 20
	// DefaultMaxDepth bounds the nesting of arrays and objects.
	DefaultMaxDepth = 128
)

// Options bound a document and choose how it is decoded. The zero value
// applies the defaults.
type Options struct {
	// MaxBytes bounds the document's length (default DefaultMaxBytes).
	MaxBytes int64
	// MaxDepth bounds the nesting of arrays and objects (default
	// DefaultMaxDepth).
	MaxDepth int
	// DisallowUnknownFields refuses an object key that matches no field of
	// the struct it is decoded into (ErrType).
	DisallowUnknownFields bool
	// FoldKeys also refuses two keys of one object that are equal under
	// Unicode case folding (bytes.EqualFold: "Tools" and "tools"), which
	// a decoder matching fields case-insensitively (encoding/json) would
	// read as one.
	FoldKeys bool
}

func (o Options) maxBytes() int64 {
	if o.MaxBytes <= 0 {
		return DefaultMaxBytes
	}
	return o.MaxBytes
}

func (o Options) maxDepth() int {
	if o.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return o.MaxDepth
}

// The classes of Error, for errors.Is.
var (
	ErrSyntax       = errors.New("invalid JSON")
	ErrTooLarge     = errors.New("JSON document too large")
	ErrTooDeep      = errors.New("JSON nested too deep")
	ErrDuplicateKey = errors.New("duplicate key in a JSON object")
	ErrTrailingData = errors.New("data after the JSON value")
	ErrType         = errors.New("JSON value does not fit the expected type")
)

// Error is a refused document: Kind is one of the Err* classes, Offset the
// byte where the problem was found (-1 when it is not one place), Msg the
// description, Err the decoder's own error for ErrType.
type Error struct {
	Kind   error
	Offset int64
	Msg    string
	Err    error
}

func (e *Error) Error() string { return e.Msg }

// Unwrap lets errors.Is find Kind and errors.As the decoder's error.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{e.Kind, e.Err}
	}
	return []error{e.Kind}
}

// HTTPStatus is the status an HTTP handler answers err with: 413 for
// ErrTooLarge (and http.MaxBytesError), else 400.
func HTTPStatus(err error) int {
	var mb *http.MaxBytesError
	if errors.Is(err, ErrTooLarge) || errors.As(err, &mb) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// Valid checks data against o's limits and the JSON grammar in one
// linear pass (see the package documentation); nil if it is acceptable.
func Valid(data []byte, o Options) error {
	if max := o.maxBytes(); int64(len(data)) > max {
		return &Error{Kind: ErrTooLarge, Offset: -1,
			Msg: fmt.Sprintf("JSON document of %d bytes is larger than the limit of %d bytes", len(data), max)}
	}
	s := scanners.Get().(*scanner)
	s.data, s.i, s.maxDepth, s.fold = data, 0, o.maxDepth(), o.FoldKeys
	err := s.run()
	// Keep what a typical document needs; let outsized stacks go.
	if cap(s.stack) <= 1024 && cap(s.keys) <= 4096 && cap(s.scratch) <= 64<<10 {
		clear(s.stack[:cap(s.stack)]) // drop the key sets
		s.data, s.stack, s.keys, s.scratch = nil, s.stack[:0], s.keys[:0], s.scratch[:0]
		scanners.Put(s)
	}
	return err
}

// Unmarshal checks data with Valid and decodes it into v, a non-nil
// pointer. On error v may be partly filled.
func Unmarshal(data []byte, v any, o Options) error {
	if err := Valid(data, o); err != nil {
		return err
	}
	flags := json.DontMatchCaseInsensitiveStructFields
	if o.DisallowUnknownFields {
		flags |= json.DisallowUnknownFields
	}
	if _, err := json.Parse(data, v, flags); err != nil {
		return typeError(data, v, o, err)
	}
	return nil
}

// Decode reads r to its end, at most o.MaxBytes (more is ErrTooLarge,
// before anything is decoded), and Unmarshals what it read into v.
func Decode(r io.Reader, v any, o Options) error {
	max := o.maxBytes()
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > max {
		return &Error{Kind: ErrTooLarge, Offset: -1, Msg: fmt.Sprintf("JSON document is larger than the limit of %d bytes", max)}
	}
	return Unmarshal(b, v, o)
}

// typeError describes a decoding failure of a syntactically valid
// document. encoding/json names the problem most precisely (the field
// path): its error is used when it fails too; where it succeeds (it
// matches field names case-insensitively) the fast decoder's stands.
func typeError(data []byte, v any, o Options, fast error) error {
	err := fast
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer {
		ref := reflect.New(t.Elem()).Interface()
		dec := stdjson.NewDecoder(bytes.NewReader(data))
		if o.DisallowUnknownFields {
			dec.DisallowUnknownFields()
		}
		if serr := dec.Decode(ref); serr != nil {
			err = serr
		}
	}
	var off int64 = -1
	var te *stdjson.UnmarshalTypeError
	if errors.As(err, &te) {
		off = te.Offset
	}
	var ste *json.UnmarshalTypeError
	if errors.As(err, &ste) {
		off = ste.Offset
	}
	msg := err.Error()
	if len(msg) > 6 && msg[:6] == "json: " {
		msg = msg[6:]
	}
	return &Error{Kind: ErrType, Offset: off, Msg: msg, Err: err}
}

// --- the scanner ---

// smallObject is the key count up to which an object's keys are compared
// pairwise; a larger object gets a set.
const smallObject = 16

type keySpan struct {
	decoded    bool // in scanner.scratch, else in data
	start, end int
}

// frame is one open array or object. The keys of the open objects share
// scanner.keys: an object's are keys[keysStart:] while no object nested
// in it is open (objects close in the reverse order they open).
type frame struct {
	object       bool
	keysStart    int
	set          map[string]struct{}
	scratchStart int
}

type scanner struct {
	data     []byte
	i        int
	maxDepth int
	fold     bool // Options.FoldKeys
	stack    []frame
	keys     []keySpan
	scratch  []byte // decoded keys of the open objects
}

// scanners recycles the scanners' stacks.
var scanners = sync.Pool{New: func() any { return &scanner{stack: make([]frame, 0, 16), keys: make([]keySpan, 0, 32)} }}

func (s *scanner) errAt(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Offset: int64(s.i), Msg: fmt.Sprintf(format, args...) + " at byte " + strconv.Itoa(s.i)}
}

func (s *scanner) unexpected() error {
	if s.i >= len(s.data) {
		return s.errAt(ErrSyntax, "invalid JSON: unexpected end of input")
	}
	c := s.data[s.i]
	if c < 0x20 || c >= 0x7f {
		return s.errAt(ErrSyntax, "invalid JSON: unexpected byte 0x%02x", c)
	}
	return s.errAt(ErrSyntax, "invalid JSON: unexpected %q", c)
}

func (s *scanner) skipSpace() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) push(object bool) error {
	if len(s.stack) >= s.maxDepth {
		return s.errAt(ErrTooDeep, "JSON nested deeper than %d levels", s.maxDepth)
	}
	s.i++
	s.stack = append(s.stack, frame{object: object, keysStart: len(s.keys), scratchStart: len(s.scratch)})
	return nil
}

func (s *scanner) pop() {
	f := &s.stack[len(s.stack)-1]
	s.scratch = s.scratch[:f.scratchStart]
	s.keys = s.keys[:f.keysStart]
	f.set = nil
	s.stack = s.stack[:len(s.stack)-1]
	s.i++
}

func (s *scanner) run() error {
	for {
		// A value is expected at s.i.
		s.skipSpace()
		if s.i >= len(s.data) {
			return s.unexpected()
		}
		switch c := s.data[s.i]; {
		case c == '{':
			if err := s.push(true); err != nil {
				return err
			}
			s.skipSpace()
			if s.i < len(s.data) && s.data[s.i] == '}' {
				s.pop()
				break
			}
			if err := s.member(); err != nil {
				return err
			}
			continue
		case c == '[':
			if err := s.push(false); err != nil {
				return err
			}
			s.skipSpace()
			if s.i < len(s.data) && s.data[s.i] == ']' {
				s.pop()
				break
			}
			continue
		case c == '"':
			if _, _, err := s.str(); err != nil {
				return err
			}
		case c == '-' || (c >= '0' && c <= '9'):
			if err := s.number(); err != nil {
				return err
			}
		case c == 't':
			if err := s.literal("true"); err != nil {
				return err
			}
		case c == 'f':
			if err := s.literal("false"); err != nil {
				return err
			}
		case c == 'n':
			if err := s.literal("null"); err != nil {
				return err
			}
		default:
			return s.unexpected()
		}
		// A value ended: close containers, or find the next element.
		for {
			s.skipSpace()
			if len(s.stack) == 0 {
				if s.i < len(s.data) {
					return s.errAt(ErrTrailingData, "unexpected data after the JSON value")
				}
				return nil
			}
			if s.i >= len(s.data) {
				return s.unexpected()
			}
			f := &s.stack[len(s.stack)-1]
			c := s.data[s.i]
			if c == ',' {
				s.i++
				if f.object {
					s.skipSpace()
					if err := s.member(); err != nil {
						return err
					}
				}
				break
			}
			if (f.object && c == '}') || (!f.object && c == ']') {
				s.pop()
				continue
			}
			return s.unexpected()
		}
	}
}

// member scans `"key" :` of the innermost object and checks that the key
// is new in it.
func (s *scanner) member() error {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return s.unexpected()
	}
	at := s.i
	start, end, err := s.str()
	if err != nil {
		return err
	}
	k, err := s.key(start, end)
	if err != nil {
		return err
	}
	f := &s.stack[len(s.stack)-1]
	kb := s.bytes(k)
	if f.set != nil {
		sk := s.setKey(kb)
		if _, dup := f.set[sk]; dup {
			return s.duplicate(at, kb)
		}
		f.set[sk] = struct{}{}
	} else {
		keys := s.keys[f.keysStart:]
		for _, o := range keys {
			if ob := s.bytes(o); bytes.Equal(ob, kb) || (s.fold && bytes.EqualFold(ob, kb)) {
				return s.duplicate(at, kb)
			}
		}
		if len(keys) < smallObject {
			s.keys = append(s.keys, k)
		} else {
			f.set = make(map[string]struct{}, 2*len(keys)+2)
			for _, o := range keys {
				f.set[s.setKey(s.bytes(o))] = struct{}{}
			}
			f.set[s.setKey(kb)] = struct{}{}
			s.keys = s.keys[:f.keysStart]
		}
	}
	s.skipSpace()
	if s.i >= len(s.data) || s.data[s.i] != ':' {
		return s.unexpected()
	}
	s.i++
	return nil
}

// setKey is key as a frame's set holds it: folded with FoldKeys (keys
// that bytes.EqualFold finds equal map to one string).
func (s *scanner) setKey(key []byte) string {
	if !s.fold {
		return string(key)
	}
	return strings.Map(func(r rune) rune {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		return least
	}, string(key))
}

func (s *scanner) duplicate(at int, key []byte) error {
	s.i = at
	k := string(key)
	if len(k) > 64 {
		k = string(bytes.ToValidUTF8([]byte(k[:64]), nil)) + "..."
	}
	return s.errAt(ErrDuplicateKey, "duplicate key %q in a JSON object", k)
}

func (s *scanner) bytes(k keySpan) []byte {
	if k.decoded {
		return s.scratch[k.start:k.end]
	}
	return s.data[k.start:k.end]
}

// str scans the string at s.i (a '"') and returns its content's bounds.
func (s *scanner) str() (start, end int, err error) {
	start = s.i + 1
	next, _, err := jsonstr.Scan(s.data, s.i)
	if err == nil {
		s.i = next
		return start, next - 1, nil
	}
	se, _ := err.(*jsonstr.SyntaxError)
	if se == nil {
		return 0, 0, err
	}
	s.i = se.Offset
	switch c := s.data[s.i]; {
	case c == '"' || c == '\\' && (s.i+1 >= len(s.data) || s.data[s.i+1] == 'u' && s.i+6 > len(s.data)):
		s.i = len(s.data) // the document ends inside the string
		return 0, 0, s.unexpected()
	case c == '\\' && s.data[s.i+1] == 'u':
		return 0, 0, s.errAt(ErrSyntax, "invalid JSON: invalid \\u escape")
	case c == '\\':
		s.i++
		return 0, 0, s.errAt(ErrSyntax, "invalid JSON: invalid escape \\%c", s.data[s.i])
	default:
		return 0, 0, s.errAt(ErrSyntax, "invalid JSON: control character 0x%02x in a string", c)
	}
}

// key returns the span of a key as decoders see it: the raw bytes when
// they decode to themselves, else the decoded text in scratch.
func (s *scanner) key(start, end int) (keySpan, error) {
	raw := s.data[start:end]
	plain := true
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain || (bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw)) {
		return keySpan{start: start, end: end}, nil
	}
	from := len(s.scratch)
	s.scratch = unescape(s.scratch, raw)
	return keySpan{decoded: true, start: from, end: len(s.scratch)}, nil
}

// unescape appends the decoded content of a valid JSON string to dst, as
// encoding/json decodes it: invalid UTF-8 bytes and unpaired surrogates
// become U+FFFD.
func unescape(dst, raw []byte) []byte { return jsonstr.AppendUnescaped(dst, raw) }

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	if s.data[s.i] == '-' {
		s.i++
	}
	if s.i >= len(s.data) {
		return s.unexpected()
	}
	switch c := s.data[s.i]; {
	case c == '0':
		s.i++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return s.unexpected()
	}
	if s.i < len(s.data) && s.data[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return s.unexpected()
		}
	}
	if s.i < len(s.data) && (s.data[s.i] == 'e' || s.data[s.i] == 'E') {
		s.i++
		if s.i < len(s.data) && (s.data[s.i] == '+' || s.data[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return s.unexpected()
		}
	}
	return nil
}

func (s *scanner) digits() int {
	n := 0
	for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
		s.i++
		n++
	}
	return n
}

func (s *scanner) literal(lit string) error {
	for j := 0; j < len(lit); j++ {
		if s.i >= len(s.data) || s.data[s.i] != lit[j] {
			return s.unexpected()
		}
		s.i++
	}
	return nil
}
