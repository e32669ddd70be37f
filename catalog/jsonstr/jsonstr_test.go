package jsonstr_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/mandatehq/mandate/catalog/jsonstr"
)

var samples = []string{`"plain"`, `""`, `"a\nb\"c\\d\/e\b\f\r\t"`, `"\u00e9t\u00e9 \ud83d\ude00 x"`, `"\ud800 lone"`,
	`"\ud800\u0041"`, `"\udc00\ud800"`, `"\ud83d\ude00\ude00"`, `"\ud83d"`, `"\uDBFF\uDFFF"`, `"mix é \u0041"`,
	"\"bad \xff utf8 \xc3\"", "\"\xed\xa0\x80 encoded surrogate\"", `"\u0000"`, `"x\\u0041"`}

// check holds Scan and AppendUnescaped to encoding/json for one input:
// the same strings accepted, the same text decoded, and Width consistent
// with the decoding.
func check(t *testing.T, s string) {
	t.Helper()
	b := bytes.TrimRight([]byte(s), " \t\r\n") // encoding/json allows trailing white space
	var want string
	stdErr := json.Unmarshal([]byte(s), &want)
	if len(b) == 0 || b[0] != '"' {
		return
	}
	end, esc, err := jsonstr.Scan(b, 0)
	whole := err == nil && end == len(b)
	if whole != (stdErr == nil) {
		t.Fatalf("%q: Scan end %d err %v; encoding/json: %v", s, end, err, stdErr)
	}
	var se *jsonstr.SyntaxError
	if err != nil && (!errors.As(err, &se) || se.Offset < 0 || se.Offset >= len(b)) {
		t.Fatalf("%q: Scan error %v", s, err)
	}
	if !whole {
		return
	}
	body := b[1 : len(b)-1]
	if got := string(jsonstr.AppendUnescaped(nil, body)); got != want {
		t.Fatalf("%q: decoded %q, encoding/json %q", s, got, want)
	}
	if hasEsc := string(body) != want || containsBackslash(body); esc != containsBackslash(body) || !hasEsc && esc {
		t.Fatalf("%q: escaped %v", s, esc)
	}
	d := 0
	for i := 0; i < len(body); {
		raw, w := jsonstr.Width(body, i)
		if got := string(jsonstr.AppendUnescaped(nil, body[i:i+raw])); len(got) != w || got != want[d:d+w] {
			t.Fatalf("%q: at %d: width %d/%d, piece %q, want %q", s, i, raw, w, got, want[d:min(d+w, len(want))])
		}
		i, d = i+raw, d+w
	}
	if d != len(want) {
		t.Fatalf("%q: widths sum to %d, decoded %d", s, d, len(want))
	}
}

func containsBackslash(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

// TestAgainstEncodingJSON: the samples (escapes, pairs, lone and reversed
// surrogates, invalid UTF-8, malformed strings) decode as encoding/json
// decodes them.
func TestAgainstEncodingJSON(t *testing.T) {
	bad := []string{`"\q"`, `"\u12"`, `"\u12g4"`, "\"a\x01\"", `"open`, `"\`, `"\u`, `"a\"`}
	for _, s := range append(append([]string{}, samples...), bad...) {
		check(t, s)
	}
}

// TestEscape: one escape at a time, lenient input included.
func TestEscape(t *testing.T) {
	for _, c := range []struct {
		in string
		r  rune
		n  int
	}{{`\n`, '\n', 2}, {`\/x`, '/', 2}, {`\u0041`, 'A', 6}, {`\ud83d\ude00`, '😀', 12}, {`\ud83dx`, utf8.RuneError, 6},
		{`\ud83d\u0041`, utf8.RuneError, 6}, {`\u004`, 0, 0}, {`\x`, 0, 0}, {`\`, 0, 0}, {`a`, 0, 0}} {
		if r, n := jsonstr.Escape([]byte(c.in)); r != c.r || n != c.n {
			t.Errorf("Escape(%q) = %q, %d; want %q, %d", c.in, r, n, c.r, c.n)
		}
	}
}

// FuzzAgainstEncodingJSON: any input decodes as encoding/json decodes it.
func FuzzAgainstEncodingJSON(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		check(t, `"`+s+`"`)
		check(t, s)
	})
}
