package jsonwalk

import (
	"encoding/json"
	"fmt"
	"sync"
)

// Doc is a JSON document walked once and kept decoded, so that several
// guardrails read one decoding of it: every member name and string value,
// decoded, in one buffer (each followed by '\n': the document's text, as
// the injection scorer reads it), and the tokens of the walk with their
// raw spans. Each replays the walk to a Visitor without scanning the raw
// document again. A Doc is reusable (Parse replaces its content) but not
// safe for concurrent use; GetDoc and PutDoc pool them.
type Doc struct {
	raw  []byte
	toks []docTok
	buf  []byte
	key  [2]int // the last member name's span in buf
}

type docTok struct {
	kind       Kind
	start, end int // raw span
	v0, v1     int // value: in buf for keys and strings, in raw for numbers
	k0, k1     int // member name in buf; k1 < 0: none
	esc        bool
	depth      int
	idx        int
}

var docs = sync.Pool{New: func() any { return new(Doc) }}

// GetDoc returns an empty Doc from a pool; PutDoc gives it back.
func GetDoc() *Doc { return docs.Get().(*Doc) }

// PutDoc returns d to the pool (buffers beyond 1 MiB are dropped).
func PutDoc(d *Doc) {
	if cap(d.buf) > 1<<20 || cap(d.toks) > 1<<16 {
		return
	}
	d.raw = nil
	docs.Put(d)
}

// Parse walks raw (checked as Walk checks it) into d. raw must not change
// while d is used.
func (d *Doc) Parse(raw []byte) error {
	d.raw, d.toks, d.buf = raw, d.toks[:0], d.buf[:0]
	w := Get()
	defer Put(w)
	err := w.Walk(raw, d)
	if err != nil {
		d.raw, d.toks, d.buf = nil, d.toks[:0], d.buf[:0]
	}
	return err
}

// Visit records one token of the walk (Doc is the walk's Visitor).
func (d *Doc) Visit(t *Token) error {
	dt := docTok{kind: t.Kind, start: t.Start, end: t.End, k1: -1, esc: t.Escaped, depth: t.Depth, idx: t.ArrayIndex}
	switch t.Kind {
	case Number:
		dt.v0, dt.v1 = t.Start, t.End
	default:
		dt.v0 = len(d.buf)
		d.buf = append(d.buf, t.Value...)
		dt.v1 = len(d.buf)
		d.buf = append(d.buf, '\n')
	}
	if t.Kind == Key {
		d.key = [2]int{dt.v0, dt.v1}
	} else if t.Key != nil {
		// A scalar value follows its member name directly.
		dt.k0, dt.k1 = d.key[0], d.key[1]
	}
	d.toks = append(d.toks, dt)
	return nil
}

// Raw is the document.
func (d *Doc) Raw() []byte { return d.raw }

// Text is every member name and string value, decoded, each followed by
// '\n', in document order (numbers are left out).
func (d *Doc) Text() []byte { return d.buf }

// TextCapped is Text cut after the first value that reaches max bytes
// (what a reader that stops collecting values at max bytes gets).
func (d *Doc) TextCapped(max int) []byte {
	if len(d.buf) <= max {
		return d.buf
	}
	for i := range d.toks {
		if dt := &d.toks[i]; dt.kind != Number && dt.v1+1 >= max {
			return d.buf[:dt.v1+1]
		}
	}
	return d.buf
}

// Each replays the walk: v sees the tokens Walk would show it, with the
// same spans and decoded values. Token values point into d and stay valid
// until the next Parse.
func (d *Doc) Each(v Visitor) error {
	var t Token
	for i := range d.toks {
		dt := &d.toks[i]
		t = Token{Kind: dt.kind, Start: dt.start, End: dt.end, Escaped: dt.esc, Depth: dt.depth, ArrayIndex: dt.idx}
		if dt.kind == Number {
			t.Value = d.raw[dt.v0:dt.v1]
		} else {
			t.Value = d.buf[dt.v0:dt.v1:dt.v1]
		}
		if dt.k1 >= 0 {
			t.Key = d.buf[dt.k0:dt.k1:dt.k1]
		}
		if err := v.Visit(&t); err != nil {
			return err
		}
	}
	return nil
}

// Member returns the raw span of the value of the top-level member name
// (end 0 when absent; the last one when the name repeats, as decoders
// read it), without walking the document again.
func (d *Doc) Member(name string) (start, end int) {
	for i := len(d.toks) - 1; i >= 0; i-- {
		dt := &d.toks[i]
		if dt.kind != Key || dt.depth != 1 || string(d.buf[dt.v0:dt.v1]) != name {
			continue
		}
		s := skipWS(d.raw, dt.end)
		if s >= len(d.raw) || d.raw[s] != ':' {
			return 0, 0
		}
		s = skipWS(d.raw, s+1)
		e, err := skipValue(d.raw, s, 0)
		if err != nil {
			return 0, 0
		}
		return s, e
	}
	return 0, 0
}

// Value decodes one JSON value (checked as Walk checks it, nested at most
// maxDepth deep; 0: MaxDepth) into the generic form encoding/json's
// Decoder gives with UseNumber: map[string]any, []any, string,
// json.Number, bool, nil. It is what JSON Schema validation reads, made
// without reflection.
func Value(raw []byte, maxDepth int) (any, error) {
	if maxDepth <= 0 {
		maxDepth = MaxDepth
	}
	p := valueParser{b: raw, max: maxDepth}
	i := skipWS(raw, 0)
	v, i, err := p.value(i, 0)
	if err != nil {
		return nil, err
	}
	if i = skipWS(raw, i); i != len(raw) {
		return nil, fmt.Errorf("%w at offset %d: trailing data", ErrSyntax, i)
	}
	return v, nil
}

type valueParser struct {
	b   []byte
	max int
	w   Walker // str's checks
	tmp []byte
}

func (p *valueParser) syntax(i int, what string) error {
	return fmt.Errorf("%w at offset %d: %s", ErrSyntax, i, what)
}

func (p *valueParser) str(i int) (string, int, error) {
	p.w.raw = p.b
	end, esc, err := p.w.str(i)
	if err != nil {
		return "", i, err
	}
	body := p.b[i+1 : end-1]
	if !esc {
		return string(body), end, nil
	}
	p.tmp = decode(p.tmp[:0], body)
	return string(p.tmp), end, nil
}

func (p *valueParser) value(i, depth int) (any, int, error) {
	b := p.b
	if i >= len(b) {
		return nil, i, p.syntax(i, "unexpected end")
	}
	switch c := b[i]; {
	case c == '{':
		if depth+1 > p.max {
			return nil, i, fmt.Errorf("JSON nested deeper than %d levels", p.max)
		}
		m := map[string]any{}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return m, i + 1, nil
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return nil, i, p.syntax(i, "expected member name")
			}
			k, end, err := p.str(i)
			if err != nil {
				return nil, i, err
			}
			i = skipWS(b, end)
			if i >= len(b) || b[i] != ':' {
				return nil, i, p.syntax(i, "expected ':'")
			}
			v, end, err := p.value(skipWS(b, i+1), depth+1)
			if err != nil {
				return nil, end, err
			}
			m[k] = v
			i = skipWS(b, end)
			if i >= len(b) {
				return nil, i, p.syntax(i, "unexpected end in object")
			}
			if b[i] == '}' {
				return m, i + 1, nil
			}
			if b[i] != ',' {
				return nil, i, p.syntax(i, "expected ',' or '}'")
			}
			i = skipWS(b, i+1)
		}
	case c == '[':
		if depth+1 > p.max {
			return nil, i, fmt.Errorf("JSON nested deeper than %d levels", p.max)
		}
		a := []any{}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return a, i + 1, nil
		}
		for {
			v, end, err := p.value(i, depth+1)
			if err != nil {
				return nil, end, err
			}
			a = append(a, v)
			i = skipWS(b, end)
			if i >= len(b) {
				return nil, i, p.syntax(i, "unexpected end in array")
			}
			if b[i] == ']' {
				return a, i + 1, nil
			}
			if b[i] != ',' {
				return nil, i, p.syntax(i, "expected ',' or ']'")
			}
			i = skipWS(b, i+1)
		}
	case c == '"':
		s, end, err := p.str(i)
		return s, end, err
	case c == '-' || (c >= '0' && c <= '9'):
		p.w.raw = p.b
		end, err := p.w.number(i)
		if err != nil {
			return nil, i, err
		}
		return json.Number(b[i:end]), end, nil
	}
	for _, lit := range [...]struct {
		s string
		v any
	}{{"true", true}, {"false", false}, {"null", nil}} {
		if len(b)-i >= len(lit.s) && string(b[i:i+len(lit.s)]) == lit.s {
			return lit.v, i + len(lit.s), nil
		}
	}
	return nil, i, p.syntax(i, "invalid value")
}
