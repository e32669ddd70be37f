package jsonspan

import (
	"errors"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/catalog/strictjson"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		body   string
		syntax bool // a syntax error (parse error); else another refusal
		ok     bool
	}{
		{`{"a":[1,{"b":"}"}],"c":null}`, false, true},
		{`{"a":1,"A":2}`, false, false},      // keys equal under case folding
		{`{"\u0061":1,"a":2}`, false, false}, // equal once unescaped
		{`{"k":1,"K":2}`, false, false},      // Kelvin sign folds to k
		{strings.Repeat("[", 9) + strings.Repeat("]", 9), false, false},
		{strings.Repeat("[", 8) + strings.Repeat("]", 8), false, true},
		{`{"a":1,}`, true, false},
		{`{"a":1} x`, false, false},
		{"{\"a\":\"\xff\"}", true, false}, // not UTF-8
		{``, true, false},
	} {
		err := Check([]byte(tc.body), 8)
		if (err == nil) != tc.ok || (err != nil && errors.Is(err, strictjson.ErrSyntax) != tc.syntax) {
			t.Errorf("Check(%q) = %v, want ok=%v syntax=%v", tc.body, err, tc.ok, tc.syntax)
		}
	}
}

func TestMemberAndElements(t *testing.T) {
	obj := []byte(` {"x":"a\"}","name" : "to\u006fl", "list":[1, {"n":2} ,"]"]} `)
	v, ok := Member(obj, "name")
	if s, sok := StringValue(v); !ok || !sok || s != "tool" {
		t.Fatalf("Member(name) = %q %v", v, ok)
	}
	if off := Offset(obj, v); string(obj[off:off+len(v)]) != `"to\u006fl"` {
		t.Fatalf("Offset = %d", off)
	}
	list, _ := Member(obj, "list")
	var got []string
	if err := EachElement(list, func(e []byte, s, end int) bool {
		if string(list[s:end]) != string(e) {
			t.Errorf("offsets %d:%d do not frame %q", s, end, e)
		}
		got = append(got, string(e))
		return true
	}); err != nil || strings.Join(got, "|") != `1|{"n":2}|"]"` {
		t.Fatalf("elements %q, %v", got, err)
	}
	if _, ok := Member(obj, ""); ok {
		t.Fatal(`the "" key matched`)
	}
	if EachMember([]byte(`{"a":1 "b":2}`), func(k, v []byte) bool { return true }) == nil {
		t.Fatal("a missing comma was walked")
	}
	if !FramedObject([]byte(" {} ")) || FramedObject([]byte("<html>")) {
		t.Fatal("FramedObject")
	}
}
