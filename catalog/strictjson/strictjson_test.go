package strictjson_test

import (
	stdjson "encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog/strictjson"
)

func TestValid(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	deepObj := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	tests := []struct {
		name string
		doc  string
		o    strictjson.Options
		want error // nil: accepted
	}{
		{"object", `{"a": 1, "b": [true, false, null, "x", -0.5e+3, {}], "c": {"d": []}}`, strictjson.Options{}, nil},
		{"scalar", ` "x" `, strictjson.Options{}, nil},
		{"number", `-12.5E-7`, strictjson.Options{}, nil},
		{"escapes", `"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"`, strictjson.Options{}, nil},
		{"invalid utf8 kept", "\"\xff\"", strictjson.Options{}, nil},
		{"same key in two objects", `[{"a":1},{"a":2}]`, strictjson.Options{}, nil},
		{"same key at two levels", `{"a":{"a":1}}`, strictjson.Options{}, nil},
		{"keys differing by case", `{"a":1,"A":2}`, strictjson.Options{}, nil},
		{"distinct keys folded", `{"a":1,"b":2,"x":{"a":1},"ab":3}`, strictjson.Options{FoldKeys: true}, nil},
		{"distinct keys folded in a large object", `{` + manyKeys(40) + `,"k40":0}`, strictjson.Options{FoldKeys: true}, nil},
		{"depth at limit", deep(4), strictjson.Options{MaxDepth: 4}, nil},
		{"size at limit", `[1,2]`, strictjson.Options{MaxBytes: 5}, nil},

		{"empty", ``, strictjson.Options{}, strictjson.ErrSyntax},
		{"whitespace", "  \n", strictjson.Options{}, strictjson.ErrSyntax},
		{"unterminated string", `"abc`, strictjson.Options{}, strictjson.ErrSyntax},
		{"unterminated object", `{"a":1`, strictjson.Options{}, strictjson.ErrSyntax},
		{"trailing comma", `[1,]`, strictjson.Options{}, strictjson.ErrSyntax},
		{"trailing comma in object", `{"a":1,}`, strictjson.Options{}, strictjson.ErrSyntax},
		{"missing colon", `{"a" 1}`, strictjson.Options{}, strictjson.ErrSyntax},
		{"non-string key", `{1:1}`, strictjson.Options{}, strictjson.ErrSyntax},
		{"leading zero", `[01]`, strictjson.Options{}, strictjson.ErrSyntax},
		{"bare minus", `-`, strictjson.Options{}, strictjson.ErrSyntax},
		{"dot without digits", `1.`, strictjson.Options{}, strictjson.ErrSyntax},
		{"exponent without digits", `1e+`, strictjson.Options{}, strictjson.ErrSyntax},
		{"bad literal", `tru`, strictjson.Options{}, strictjson.ErrSyntax},
		{"bad escape", `"\x"`, strictjson.Options{}, strictjson.ErrSyntax},
		{"bad unicode escape", `"\u12G4"`, strictjson.Options{}, strictjson.ErrSyntax},
		{"control character", "\"a\tb\"", strictjson.Options{}, strictjson.ErrSyntax},
		{"mismatched brackets", `[}`, strictjson.Options{}, strictjson.ErrSyntax},
		{"single quotes", `{'a':1}`, strictjson.Options{}, strictjson.ErrSyntax},

		{"two values", `{} {}`, strictjson.Options{}, strictjson.ErrTrailingData},
		{"garbage after", `{"a":1}x`, strictjson.Options{}, strictjson.ErrTrailingData},
		{"closing bracket after", `{"a":1}}`, strictjson.Options{}, strictjson.ErrTrailingData},

		{"duplicate", `{"a":1,"a":2}`, strictjson.Options{}, strictjson.ErrDuplicateKey},
		{"duplicate nested", `{"x":{"b":1,"c":2,"b":3}}`, strictjson.Options{}, strictjson.ErrDuplicateKey},
		{"duplicate via escape", `{"a":1,"\u0061":2}`, strictjson.Options{}, strictjson.ErrDuplicateKey},
		{"duplicate via slash escape", `{"a/b":1,"a\/b":2}`, strictjson.Options{}, strictjson.ErrDuplicateKey},
		{"duplicate via surrogate pair", `{"😀":1,"\ud83d\ude00":2}`, strictjson.Options{}, strictjson.ErrDuplicateKey},
		{"duplicate via invalid utf8", "{\"\xff\":1,\"\xfe\":2}", strictjson.Options{}, strictjson.ErrDuplicateKey},
		{"duplicate via lone surrogate", `{"\ud800":1,"\ufffd":2}`, strictjson.Options{}, strictjson.ErrDuplicateKey},
		{"duplicate in a large object", `{` + manyKeys(40) + `,"k7":0}`, strictjson.Options{}, strictjson.ErrDuplicateKey},
		{"keys differing by case folded", `{"a":1,"b":{"Tools":[],"tools":[]}}`, strictjson.Options{FoldKeys: true}, strictjson.ErrDuplicateKey},
		{"keys differing by case folded via escape", `{"kelvin":1,"\u212Aelvin":2}`, strictjson.Options{FoldKeys: true}, strictjson.ErrDuplicateKey},
		{"keys differing by case folded in a large object", `{` + manyKeys(40) + `,"K7":0}`, strictjson.Options{FoldKeys: true}, strictjson.ErrDuplicateKey},

		{"too deep", deep(5), strictjson.Options{MaxDepth: 4}, strictjson.ErrTooDeep},
		{"too deep objects", deepObj(129), strictjson.Options{}, strictjson.ErrTooDeep},
		{"too deep default", deep(129), strictjson.Options{}, strictjson.ErrTooDeep},
		{"too large", `[1,2,3]`, strictjson.Options{MaxBytes: 5}, strictjson.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := strictjson.Valid([]byte(tt.doc), tt.o)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Valid(%q) = %v, want nil", tt.doc, err)
				}
				if !stdjson.Valid([]byte(tt.doc)) {
					t.Fatalf("accepted %q, which encoding/json refuses", tt.doc)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Valid(%q) = %v, want %v", tt.doc, err, tt.want)
			}
			var e *strictjson.Error
			if !errors.As(err, &e) || e.Msg == "" {
				t.Fatalf("error %v is not a described *Error", err)
			}
		})
	}
}

func manyKeys(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k` + itoa(i) + `":1`)
	}
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// TestDeepDocumentStopsEarly: a document nested 100,000 deep is refused
// where its nesting passes the limit, not after reading all of it.
func TestDeepDocumentStopsEarly(t *testing.T) {
	doc := []byte(`{"context":{"x":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}}`)
	err := strictjson.Valid(doc, strictjson.Options{})
	var e *strictjson.Error
	if !errors.As(err, &e) || !errors.Is(err, strictjson.ErrTooDeep) {
		t.Fatalf("Valid = %v, want ErrTooDeep", err)
	}
	if e.Offset > 200 {
		t.Fatalf("refused at byte %d: the scan went past the limit", e.Offset)
	}
}

type request struct {
	Subject string         `json:"subject"`
	Count   int            `json:"count"`
	Context map[string]any `json:"context"`
}

func TestUnmarshal(t *testing.T) {
	var r request
	if err := strictjson.Unmarshal([]byte(`{"subject":"alice","count":2,"context":{"a":[1,{"b":null}]}}`), &r, strictjson.Options{DisallowUnknownFields: true}); err != nil {
		t.Fatal(err)
	}
	if r.Subject != "alice" || r.Count != 2 || len(r.Context) != 1 {
		t.Fatalf("decoded %+v", r)
	}
	tests := []struct {
		name, doc string
		o         strictjson.Options
		want      error
		msg       string // part of the message
	}{
		{"duplicate", `{"subject":"a","subject":"admin"}`, strictjson.Options{}, strictjson.ErrDuplicateKey, `duplicate key "subject"`},
		{"unknown field", `{"subject":"a","extra":1}`, strictjson.Options{DisallowUnknownFields: true}, strictjson.ErrType, "extra"},
		{"case variant is not the field", `{"Subject":"admin"}`, strictjson.Options{DisallowUnknownFields: true}, strictjson.ErrType, "Subject"},
		{"wrong type", `{"count":"x"}`, strictjson.Options{}, strictjson.ErrType, "count"},
		{"trailing", `{"subject":"a"} {"subject":"b"}`, strictjson.Options{}, strictjson.ErrTrailingData, "after the JSON value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r request
			err := strictjson.Unmarshal([]byte(tt.doc), &r, tt.o)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Unmarshal(%q) = %v, want %v mentioning %q", tt.doc, err, tt.want, tt.msg)
			}
			if strictjson.HTTPStatus(err) != http.StatusBadRequest {
				t.Fatalf("HTTPStatus = %d", strictjson.HTTPStatus(err))
			}
		})
	}
	// Without DisallowUnknownFields a case variant is ignored, not taken.
	var r2 request
	if err := strictjson.Unmarshal([]byte(`{"Subject":"admin","subject":"bob"}`), &r2, strictjson.Options{}); err != nil || r2.Subject != "bob" {
		t.Fatalf("Unmarshal = %v, %+v", err, r2)
	}
}

func TestDecode(t *testing.T) {
	var r request
	err := strictjson.Decode(strings.NewReader(`{"subject":"`+strings.Repeat("x", 100)+`"}`), &r, strictjson.Options{MaxBytes: 50})
	if !errors.Is(err, strictjson.ErrTooLarge) || strictjson.HTTPStatus(err) != http.StatusRequestEntityTooLarge {
		t.Fatalf("Decode = %v, want ErrTooLarge", err)
	}
	if err := strictjson.Decode(strings.NewReader(`{"subject":"x"}`), &r, strictjson.Options{MaxBytes: 50}); err != nil || r.Subject != "x" {
		t.Fatalf("Decode = %v, %+v", err, r)
	}
}

// FuzzValid: Valid agrees with encoding/json on the grammar; where it
// refuses a document encoding/json accepts, the reason is a duplicate key.
func FuzzValid(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `[1,"x",{"b":[null,true]}]`, `{"a":1,"a":2}`, `"\ud83d\ude00"`, `1e5`, `{"a":1}x`, `[`, `{"\u0061":1,"a":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		err := strictjson.Valid(doc, strictjson.Options{MaxBytes: 1 << 30, MaxDepth: 10000})
		std := stdjson.Valid(doc)
		switch {
		case err == nil && !std:
			t.Fatalf("accepted %q, which encoding/json refuses", doc)
		case err != nil && std && !errors.Is(err, strictjson.ErrDuplicateKey):
			t.Fatalf("refused %q (%v), which encoding/json accepts", doc, err)
		case err != nil && !std && (errors.Is(err, strictjson.ErrDuplicateKey) || errors.Is(err, strictjson.ErrTooLarge)):
			// a duplicate before the syntax error: fine
		}
		if err == nil {
			var v any
			// Only a number out of float64's range fails to decode.
			if derr := strictjson.Unmarshal(doc, &v, strictjson.Options{MaxBytes: 1 << 30, MaxDepth: 10000}); derr != nil && !errors.Is(derr, strictjson.ErrType) {
				t.Fatalf("Valid accepted %q but Unmarshal failed: %v", doc, derr)
			}
		}
	})
}

func BenchmarkUnmarshal(b *testing.B) {
	doc := []byte(`{"subject":"alice@example.com","actor":"coding-agent","privilege":"USE_CONNECTION",` +
		`"securable":{"type":"CONNECTION","name":"my_github_mcp"},"context":{"method":"tools/call","tool":"search",` +
		`"arguments":{"query":"mandate","limit":10}},"at_least_revision":17}`)
	type sec struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	type req struct {
		Subject         string         `json:"subject"`
		Actor           string         `json:"actor"`
		Privilege       string         `json:"privilege"`
		Securable       sec            `json:"securable"`
		Context         map[string]any `json:"context"`
		AtLeastRevision int64          `json:"at_least_revision"`
	}
	b.Run("valid", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if err := strictjson.Valid(doc, strictjson.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			var r req
			if err := strictjson.Unmarshal(doc, &r, strictjson.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
