package jsonwalk

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestDecodeAndOffsets: decode agrees with encoding/json, and RawOffsets
// and RawOffset map every decoded offset back to the raw character.
func TestDecodeAndOffsets(t *testing.T) {
	for _, raw := range []string{`"plain"`, `"a\nb\"c\\d\/e"`, `"\u00e9t\u00e9 \ud83d\ude00 x"`, `"\ud800 lone"`, `"tab\there"`, `"mix é \u0041"`, "\"bad \xff\xc3 utf8 \\u00e9\""} {
		var want string
		if err := json.Unmarshal([]byte(raw), &want); err != nil {
			t.Fatal(err)
		}
		got := string(Decode(nil, []byte(raw)))
		if got != want {
			t.Errorf("%s: decoded %q, want %q", raw, got, want)
		}
		body := []byte(raw[1 : len(raw)-1])
		var offs []int
		for d := 0; d <= len(got); d++ {
			offs = append(offs, d)
		}
		one := append([]int(nil), offs...)
		RawOffsets(body, offs)
		for d := range one {
			if r := RawOffset(body, one[d]); r != offs[d] {
				t.Errorf("%s: offset %d: RawOffset %d, RawOffsets %d", raw, d, r, offs[d])
			}
		}
		// at a character boundary, decoding the raw prefix gives the decoded prefix
		for d := 0; d < len(got); d++ {
			if strings.HasPrefix(got[d:], string([]rune(got[d:])[:1])) && (d == 0 || got[d-1] < 0x80) && got[d] < 0x80 {
				if pre := string(Decode(nil, []byte(`"`+string(body[:offs[d]])+`"`))); pre != got[:d] {
					t.Errorf("%s: raw prefix at %d decodes to %q, want %q", raw, d, pre, got[:d])
				}
			}
		}
	}
}

func TestWalkErrors(t *testing.T) {
	var w Walker
	for _, bad := range []string{``, `{`, `{"a"}`, `{"a":1,}`, `[1,]`, `"\q"`, `"\u12"`, "\"a\x01\"", `01`, `1.`, `-`, `tru`, `{"a":1}}`, strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1)} {
		if err := w.Walk([]byte(bad), Func(func(*Token) error { return nil })); err == nil {
			t.Errorf("%.30q accepted", bad)
		}
	}
	n := 0
	err := w.Walk([]byte(` {"a":[1,"x",{"b":null,"c":true}],"d":-1.5e3} `), Func(func(tk *Token) error { n++; return nil }))
	if err != nil || n != 7 {
		t.Errorf("tokens %d err %v", n, err)
	}
}

func TestMembers(t *testing.T) {
	raw := []byte(`{"content":[{"text":"a \"}\" b"}],"isError":false, "structuredContent" : {"a":[1,{"b":"]"}]},"x":{"structuredContent":1}}`)
	sp, err := Members(raw, "structuredContent", "isError", "missing")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(raw[sp[0][0]:sp[0][1]]); got != `{"a":[1,{"b":"]"}]}` {
		t.Errorf("structuredContent %q", got)
	}
	if got := string(raw[sp[1][0]:sp[1][1]]); got != "false" {
		t.Errorf("isError %q", got)
	}
	if sp[2][1] != 0 {
		t.Errorf("missing member found: %v", sp[2])
	}
	if _, err := Members([]byte(`{"a":`), "a"); err == nil {
		t.Error("malformed accepted")
	}
}

// FuzzWalk: the walker accepts exactly what encoding/json accepts (within
// the depth bound) and decodes strings the same way.
func FuzzWalk(f *testing.F) {
	for _, s := range []string{`{"a":"b\u00e9\ud83d\ude00"}`, `[1,-2.5e3,true,null]`, `"\\"`, `{"a":{"b":[]}}`, `"\ud800"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var w Walker
		var strs []string
		err := w.Walk([]byte(s), Func(func(tk *Token) error {
			if tk.Kind == String || tk.Kind == Key {
				strs = append(strs, string(tk.Value))
			}
			return nil
		}))
		valid := json.Valid([]byte(s))
		if (err == nil) != valid && !strings.Contains(fmt.Sprint(err), "nested deeper") {
			t.Fatalf("walker err %v, json.Valid %v for %q", err, valid, s)
		}
		if err != nil {
			return
		}
		for _, x := range strs {
			q, _ := json.Marshal(x)
			var back string
			if json.Unmarshal(q, &back) != nil || back != x && utf8.ValidString(x) {
				t.Fatalf("decoded %q does not round trip", x)
			}
		}
		if err := Check([]byte(s), 0); err != nil {
			t.Fatalf("Check rejects what Walk accepts: %v", err)
		}
	})
}
