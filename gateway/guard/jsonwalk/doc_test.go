package jsonwalk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// tokens renders the tokens a visit sees.
func tokens(walk func(Visitor) error) (string, error) {
	var sb strings.Builder
	err := walk(Func(func(t *Token) error {
		fmt.Fprintf(&sb, "%d %d-%d %q key=%q esc=%v d=%d i=%d\n", t.Kind, t.Start, t.End, t.Value, t.Key, t.Escaped, t.Depth, t.ArrayIndex)
		return nil
	}))
	return sb.String(), err
}

// checkDoc: a Doc replays exactly the walk, its text is the strings the
// walk decodes, Member finds what Members finds, and Value decodes like
// encoding/json with UseNumber.
func checkDoc(t *testing.T, raw []byte) {
	t.Helper()
	var w Walker
	want, werr := tokens(func(v Visitor) error { return w.Walk(raw, v) })
	d := GetDoc()
	defer PutDoc(d)
	perr := d.Parse(raw)
	if (werr != nil) != (perr != nil) {
		t.Fatalf("%q: Walk %v, Parse %v", raw, werr, perr)
	}
	v, verr := Value(raw, 0)
	if (werr != nil) != (verr != nil) {
		t.Fatalf("%q: Walk %v, Value %v", raw, werr, verr)
	}
	if werr != nil {
		return
	}
	got, _ := tokens(d.Each)
	if got != want {
		t.Fatalf("%q: replay\n%s\nwalk\n%s", raw, got, want)
	}
	var text []byte
	_ = w.Walk(raw, Func(func(t *Token) error {
		if t.Kind != Number {
			text = append(append(text, t.Value...), '\n')
		}
		return nil
	}))
	if !bytes.Equal(text, d.Text()) {
		t.Fatalf("%q: text %q, want %q", raw, d.Text(), text)
	}
	for _, name := range []string{"a", "content", "structuredContent"} {
		sp, err := Members(raw, name)
		if s, e := d.Member(name); err == nil && (s != sp[0][0] || e != sp[0][1]) {
			t.Fatalf("%q: Member(%s) %d-%d, Members %v", raw, name, s, e, sp[0])
		}
	}
	if utf8.Valid(raw) { // encoding/json replaces invalid UTF-8
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var ref any
		if err := dec.Decode(&ref); err == nil && !reflect.DeepEqual(v, ref) {
			t.Fatalf("%q: Value %#v, encoding/json %#v", raw, v, ref)
		}
	}
}

func TestDoc(t *testing.T) {
	for _, raw := range []string{
		`{"a":[1,"x",{"b":null,"c":true}],"d":-1.5e3}`,
		`{"content":[{"type":"text","text":"a\nb \u00e9 \ud83d\ude00"}],"structuredContent":{"k\"ey":"v","n":[]}}`,
		`["a",["b",["c"]],{"x":{"y":"z"}},12,"tail"]`,
		`"just a string"`, `42`, `null`, `{}`, `[]`,
		`{"a":"1","a":"2"}`, `{"esc\u0061pe":{"inner":"x"},"after":"y"}`,
		`{"a":`, `[1,]`, `"\x"`,
	} {
		checkDoc(t, []byte(raw))
	}
	// TextCapped stops after the value that reaches the cap.
	d := GetDoc()
	defer PutDoc(d)
	if err := d.Parse([]byte(`["aaaa","bbbb","cccc"]`)); err != nil {
		t.Fatal(err)
	}
	if got := string(d.TextCapped(7)); got != "aaaa\nbbbb\n" {
		t.Fatalf("TextCapped(7) %q", got)
	}
	if got := string(d.TextCapped(100)); got != "aaaa\nbbbb\ncccc\n" {
		t.Fatalf("TextCapped(100) %q", got)
	}
}

func TestElements(t *testing.T) {
	raw := []byte(` [ {"a":[1,2]} , "x,y" ,3,[]] `)
	spans, err := Elements(raw)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range spans {
		got = append(got, string(raw[s[0]:s[1]]))
	}
	if strings.Join(got, "|") != `{"a":[1,2]}|"x,y"|3|[]` {
		t.Fatalf("elements %q", got)
	}
	for _, bad := range []string{`{"a":1}`, `[1,`, `"x"`} {
		if _, err := Elements([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func FuzzDoc(f *testing.F) {
	for _, s := range []string{`{"a":[1,"x",{"b":null}]}`, `["\u00e9",1e5,-0]`, `{"k":{"k":{"k":"v"}}}`, `"\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<14 {
			return
		}
		checkDoc(t, raw)
	})
}
