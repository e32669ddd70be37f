package schema

import (
	"encoding/json"
	"math"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"unicode/utf8"

	"github.com/mandatehq/mandate/catalog/jsonstr"
	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
)

// The fast path. Tool output schemas and response formats mostly use a
// small part of JSON Schema: types, properties, required, items, enums and
// bounds. For a schema that uses only that part, a compiled fastSchema
// checks an instance straight from its raw bytes, without decoding it
// into Go values and without allocating; the library validator runs only
// when the fast path finds a violation (to describe it) or cannot decide.
// Any keyword outside the part (references, combinators, conditionals,
// dependencies, unevaluated*, …) leaves the schema to the library alone.
// A differential fuzz test holds the two to the same answers.

// JSON types as bits.
const (
	tNull uint8 = 1 << iota
	tBool
	tInteger
	tNumber // any number (integer included)
	tString
	tArray
	tObject
	tAny = tNull | tBool | tInteger | tNumber | tString | tArray | tObject
)

type fastSchema struct {
	never    bool  // the schema false
	types    uint8 // allowed types (tAny: no "type")
	props    map[string]*fastSchema
	required []string
	// addl applies to members not in props: nil allows any; never
	// (false) allows none.
	addl               *fastSchema
	items              *fastSchema
	enum               []enumValue // scalars only
	minLen, maxLen     int         // -1: none
	minItems, maxItems int
	minProps, maxProps int
	pattern            *regexp.Regexp
	min, max           *bound
	multipleOf         float64 // 0: none
}

// enumValue is one allowed scalar: a string (decoded), or the literal of
// true, false, null or a number.
type enumValue struct {
	str    string
	isStr  bool
	lit    string
	number float64
	isNum  bool
}

type bound struct {
	v         float64
	exclusive bool
}

// annotations are keywords that assert nothing (format is an annotation
// unless format assertion is turned on, and it is not).
var annotations = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true, "default": true,
	"examples": true, "deprecated": true, "readOnly": true, "writeOnly": true, "format": true,
	"contentMediaType": true, "contentEncoding": true, "$anchor": true,
}

// buildFast returns the fast form of a schema document (a decoded JSON
// value), or nil when it uses anything outside the fast part.
func buildFast(v any) *fastSchema {
	switch x := v.(type) {
	case bool:
		if x {
			return &fastSchema{types: tAny, minLen: -1, maxLen: -1, minItems: -1, maxItems: -1, minProps: -1, maxProps: -1}
		}
		return &fastSchema{never: true}
	case map[string]any:
		return buildFastObject(x)
	}
	return nil
}

func buildFastObject(m map[string]any) *fastSchema {
	s := &fastSchema{types: tAny, minLen: -1, maxLen: -1, minItems: -1, maxItems: -1, minProps: -1, maxProps: -1}
	num := func(v any) (float64, bool) {
		n, ok := v.(json.Number)
		if !ok {
			return 0, false
		}
		f, err := n.Float64()
		return f, err == nil && !math.IsInf(f, 0) && exactFloat(string(n))
	}
	count := func(v any) (int, bool) {
		f, ok := num(v)
		if !ok || f < 0 || f != math.Trunc(f) || f > 1<<31 {
			return 0, false
		}
		return int(f), true
	}
	for k, v := range m {
		switch k {
		case "type":
			s.types = 0
			var names []any
			switch t := v.(type) {
			case string:
				names = []any{t}
			case []any:
				names = t
			default:
				return nil
			}
			for _, n := range names {
				switch n {
				case "null":
					s.types |= tNull
				case "boolean":
					s.types |= tBool
				case "integer":
					s.types |= tInteger
				case "number":
					s.types |= tNumber | tInteger
				case "string":
					s.types |= tString
				case "array":
					s.types |= tArray
				case "object":
					s.types |= tObject
				default:
					return nil
				}
			}
		case "properties":
			pm, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			s.props = make(map[string]*fastSchema, len(pm))
			for name, ps := range pm {
				f := buildFast(ps)
				if f == nil {
					return nil
				}
				s.props[name] = f
			}
		case "required":
			rs, ok := v.([]any)
			if !ok {
				return nil
			}
			for _, r := range rs {
				name, ok := r.(string)
				if !ok {
					return nil
				}
				s.required = append(s.required, name)
			}
		case "additionalProperties":
			if s.addl = buildFast(v); s.addl == nil {
				return nil
			}
		case "items":
			if s.items = buildFast(v); s.items == nil {
				return nil
			}
		case "enum", "const":
			vals := []any{v}
			if k == "enum" {
				a, ok := v.([]any)
				if !ok {
					return nil
				}
				vals = a
			}
			if k == "const" && s.enum != nil || k == "enum" && s.enum != nil {
				return nil // both: leave it to the library
			}
			s.enum = []enumValue{}
			for _, e := range vals {
				var ev enumValue
				switch x := e.(type) {
				case string:
					ev.str, ev.isStr = x, true
				case bool:
					ev.lit = strconv.FormatBool(x)
				case nil:
					ev.lit = "null"
				case json.Number:
					f, ok := num(e)
					if !ok {
						return nil
					}
					ev.number, ev.isNum = f, true
				default:
					return nil
				}
				s.enum = append(s.enum, ev)
			}
		case "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties":
			n, ok := count(v)
			if !ok {
				return nil
			}
			switch k {
			case "minLength":
				s.minLen = n
			case "maxLength":
				s.maxLen = n
			case "minItems":
				s.minItems = n
			case "maxItems":
				s.maxItems = n
			case "minProperties":
				s.minProps = n
			case "maxProperties":
				s.maxProps = n
			}
		case "uniqueItems":
			u, ok := v.(bool)
			if !ok || u {
				return nil // uniqueness needs value equality: the library's
			}
		case "pattern":
			p, ok := v.(string)
			if !ok {
				return nil
			}
			re, err := regexp.Compile(p)
			if err != nil {
				return nil
			}
			s.pattern = re
		case "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum":
			f, ok := num(v)
			if !ok {
				return nil
			}
			b := &bound{v: f, exclusive: k[0] == 'e'}
			if k == "minimum" || k == "exclusiveMinimum" {
				if s.min != nil {
					return nil
				}
				s.min = b
			} else {
				if s.max != nil {
					return nil
				}
				s.max = b
			}
		case "multipleOf":
			f, ok := num(v)
			if !ok || f <= 0 || f != math.Trunc(f) {
				return nil // fractional divisors: the library's exact arithmetic
			}
			s.multipleOf = f
		default:
			if !annotations[k] {
				return nil
			}
		}
	}
	sort.Strings(s.required)
	return s
}

// exactFloat reports whether a number literal converts to float64 without
// losing anything a comparison could see (at most 15 significant digits).
func exactFloat(lit string) bool {
	digits := 0
	for i := 0; i < len(lit); i++ {
		c := lit[i]
		if c == 'e' || c == 'E' {
			break
		}
		if c >= '0' && c <= '9' {
			digits++
		}
	}
	return digits <= 15
}

// fastChecker validates raw instance bytes against a fastSchema. It also
// checks the JSON grammar as it goes (like jsonwalk's Walker). decided is
// false when the instance needs the library (a number it cannot compare
// exactly); ok is the verdict otherwise.
type fastChecker struct {
	b        []byte
	maxDepth int
	tmp      []byte
	undec    bool
}

// fastValidate checks instance; decided false means: ask the library.
func (s *fastSchema) validate(instance []byte, maxDepth int) (ok, decided bool, err error) {
	c := fastChecker{b: instance, maxDepth: maxDepth}
	i := skipWS(instance, 0)
	ok, i, err = c.value(s, i, 0)
	if err != nil {
		return false, true, err
	}
	if i = skipWS(instance, i); i != len(instance) {
		return false, true, jsonwalk.ErrSyntax
	}
	return ok, !c.undec, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// value checks the value at b[i] against s (nil: anything) and returns the
// index after it. Checking goes on after a violation only to find the
// value's end (grammar errors still count).
func (c *fastChecker) value(s *fastSchema, i, depth int) (bool, int, error) {
	b := c.b
	if i >= len(b) {
		return false, i, jsonwalk.ErrSyntax
	}
	ok := s == nil || !s.never
	typ := func(t uint8) {
		if s != nil && s.types&t == 0 {
			ok = false
		}
	}
	if s != nil && s.enum != nil && (b[i] == '{' || b[i] == '[') {
		ok = false // the enum's values are scalars
	}
	switch ch := b[i]; {
	case ch == '{':
		if depth+1 > c.maxDepth {
			return false, i, jsonwalk.ErrSyntax
		}
		typ(tObject)
		return c.object(s, i, depth+1, ok)
	case ch == '[':
		if depth+1 > c.maxDepth {
			return false, i, jsonwalk.ErrSyntax
		}
		typ(tArray)
		return c.array(s, i, depth+1, ok)
	case ch == '"':
		typ(tString)
		end, esc, err := c.str(i)
		if err != nil {
			return false, i, err
		}
		if ok && s != nil && (s.minLen >= 0 || s.maxLen >= 0 || s.pattern != nil || s.enum != nil) {
			v := b[i+1 : end-1]
			if esc {
				c.tmp = jsonwalk.Decode(c.tmp[:0], b[i:end])
				v = c.tmp
			}
			n := utf8.RuneCount(v)
			if s.minLen >= 0 && n < s.minLen || s.maxLen >= 0 && n > s.maxLen {
				ok = false
			}
			if ok && s.pattern != nil && !s.pattern.Match(v) {
				ok = false
			}
			if ok && s.enum != nil && !c.inEnum(s, v, true) {
				ok = false
			}
		}
		return ok, end, nil
	case ch == '-' || ch >= '0' && ch <= '9':
		end, err := numberEnd(b, i)
		if err != nil {
			return false, i, err
		}
		if ok && s != nil {
			ok = c.number(s, string(b[i:end]))
		}
		return ok, end, nil
	}
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
			if lit == "null" {
				typ(tNull)
			} else {
				typ(tBool)
			}
			if ok && s != nil && s.enum != nil && !c.inEnum(s, b[i:i+len(lit)], false) {
				ok = false
			}
			return ok, i + len(lit), nil
		}
	}
	return false, i, jsonwalk.ErrSyntax
}

// inEnum reports whether a string (decoded, isStr) or a literal (true,
// false, null) is one of the enum's values.
func (c *fastChecker) inEnum(s *fastSchema, v []byte, isStr bool) bool {
	for _, e := range s.enum {
		if isStr && e.isStr && e.str == string(v) || !isStr && !e.isStr && !e.isNum && e.lit == string(v) {
			return true
		}
	}
	return false
}

// number checks a number literal (type integer, enum, bounds, multipleOf).
func (c *fastChecker) number(s *fastSchema, lit string) bool {
	plain := true // no fraction, no exponent
	for i := 0; i < len(lit); i++ {
		if lit[i] == '.' || lit[i] == 'e' || lit[i] == 'E' {
			plain = false
			break
		}
	}
	integer := plain
	if !plain {
		r, ok := new(big.Rat).SetString(lit)
		integer = ok && r.IsInt()
	}
	if s.types&tNumber == 0 && !(s.types&tInteger != 0 && integer) {
		return false
	}
	if s.enum == nil && s.min == nil && s.max == nil && s.multipleOf == 0 {
		return true
	}
	if !exactFloat(lit) {
		c.undec = true
		return true
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) {
		c.undec = true
		return true
	}
	if s.min != nil && (f < s.min.v || s.min.exclusive && f == s.min.v) {
		return false
	}
	if s.max != nil && (f > s.max.v || s.max.exclusive && f == s.max.v) {
		return false
	}
	if s.multipleOf != 0 && (!integer || math.Mod(f, s.multipleOf) != 0) {
		if !integer {
			c.undec = true
			return true
		}
		return false
	}
	if s.enum != nil {
		for _, e := range s.enum {
			if e.isNum && e.number == f {
				return true
			}
		}
		return false
	}
	return true
}

func (c *fastChecker) str(i int) (int, bool, error) {
	end, esc, err := jsonstr.Scan(c.b, i)
	if err != nil {
		return end, esc, jsonwalk.ErrSyntax
	}
	return end, esc, nil
}

func numberEnd(b []byte, i int) (int, error) {
	end, ok := jsonwalk.NumberEnd(b, i)
	if !ok {
		return end, jsonwalk.ErrSyntax
	}
	return end, nil
}

// maxRequired bounds the required names tracked without allocating.
const maxRequired = 64

func (c *fastChecker) object(s *fastSchema, i, depth int, ok bool) (bool, int, error) {
	b := c.b
	var seen [maxRequired]bool
	if s != nil && len(s.required) > maxRequired {
		c.undec = true
	}
	n := 0
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		for {
			if i >= len(b) || b[i] != '"' {
				return false, i, jsonwalk.ErrSyntax
			}
			end, esc, err := c.str(i)
			if err != nil {
				return false, i, err
			}
			key := b[i+1 : end-1]
			if esc {
				c.tmp = jsonwalk.Decode(c.tmp[:0], b[i:end])
				key = append([]byte(nil), c.tmp...) // rare: escaped names
			}
			n++
			var sub *fastSchema
			if ok && s != nil {
				if ps, found := s.props[string(key)]; found {
					sub = ps
				} else if s.addl != nil {
					sub = s.addl
				}
				if len(s.required) <= maxRequired {
					if k := sort.SearchStrings(s.required, string(key)); k < len(s.required) && s.required[k] == string(key) {
						seen[k] = true
					}
				}
			}
			i = skipWS(b, end)
			if i >= len(b) || b[i] != ':' {
				return false, i, jsonwalk.ErrSyntax
			}
			vok, e, err := c.value(sub, skipWS(b, i+1), depth)
			if err != nil {
				return false, e, err
			}
			ok = ok && vok
			i = skipWS(b, e)
			if i >= len(b) {
				return false, i, jsonwalk.ErrSyntax
			}
			if b[i] == '}' {
				i++
				break
			}
			if b[i] != ',' {
				return false, i, jsonwalk.ErrSyntax
			}
			i = skipWS(b, i+1)
		}
	}
	if ok && s != nil {
		if len(s.required) <= maxRequired {
			for k := range s.required {
				if !seen[k] {
					ok = false
				}
			}
		}
		if s.minProps >= 0 && n < s.minProps || s.maxProps >= 0 && n > s.maxProps {
			ok = false
		}
	}
	return ok, i, nil
}

func (c *fastChecker) array(s *fastSchema, i, depth int, ok bool) (bool, int, error) {
	b := c.b
	var items *fastSchema
	if s != nil {
		items = s.items
	}
	n := 0
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for {
			sub := items
			if !ok {
				sub = nil
			}
			vok, e, err := c.value(sub, i, depth)
			if err != nil {
				return false, e, err
			}
			ok = ok && vok
			n++
			i = skipWS(b, e)
			if i >= len(b) {
				return false, i, jsonwalk.ErrSyntax
			}
			if b[i] == ']' {
				i++
				break
			}
			if b[i] != ',' {
				return false, i, jsonwalk.ErrSyntax
			}
			i = skipWS(b, i+1)
		}
	}
	if ok && s != nil && (s.minItems >= 0 && n < s.minItems || s.maxItems >= 0 && n > s.maxItems) {
		ok = false
	}
	return ok, i, nil
}
