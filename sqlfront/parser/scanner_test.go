package parser

import (
	"reflect"
	"strings"
	"testing"
)

type scanned struct {
	Tok Token
	Pos int
	Lit string
}

// scanAll returns every token of src up to and including EOF.
func scanAll(t *testing.T, src string) []scanned {
	t.Helper()
	s := NewScanner(src)
	var out []scanned
	for range len(src) + 2 {
		tok, pos, lit := s.Scan()
		out = append(out, scanned{tok, pos, lit})
		if tok == EOF {
			return out
		}
	}
	t.Fatalf("scanner did not reach EOF on %q", src)
	return nil
}

func TestScanner(t *testing.T) {
	tests := []struct {
		src  string
		want []scanned
	}{
		{"", []scanned{{EOF, 0, ""}}},
		{"  \t\n", []scanned{{EOF, 4, ""}}},
		{"GRANT Use_Connection", []scanned{{GRANT, 0, "grant"}, {IDENT, 6, "use_connection"}, {EOF, 20, ""}}},
		{"sElEcT", []scanned{{IDENT, 0, "select"}, {EOF, 6, ""}}},
		{"a$b _x9 café ÉCOLE", []scanned{{IDENT, 0, "a$b"}, {IDENT, 4, "_x9"}, {IDENT, 8, "café"}, {IDENT, 14, "École"}, {EOF, 20, ""}}},
		{`"Data ""Team""" ` + "`a``b`", []scanned{{QIDENT, 0, `Data "Team"`}, {QIDENT, 16, "a`b"}, {EOF, 22, ""}}},
		{`'it''s' ''`, []scanned{{STRING, 0, "it's"}, {STRING, 8, ""}, {EOF, 10, ""}}},
		{`E'a\tb\\c\'d''e\x41\101\u00e9\U0001F600\q'`, []scanned{{STRING, 0, "a\tb\\c'd'eAAé😀q"}, {EOF, 42, ""}}},
		{`e'\n' E 'x'`, []scanned{{STRING, 0, "\n"}, {IDENT, 6, "e"}, {STRING, 8, "x"}, {EOF, 11, ""}}},
		{`note'x'`, []scanned{{IDENT, 0, "note"}, {STRING, 4, "x"}, {EOF, 7, ""}}},
		{`$$a;'b'$$ $tag$x$$y$tag$ $é$z$é$`, []scanned{{STRING, 0, "a;'b'"}, {STRING, 10, "x$$y"}, {STRING, 25, "z"}, {EOF, 34, ""}}},
		{`1 2.5 .5 1e10 3E-2 7.`, []scanned{{NUMBER, 0, "1"}, {NUMBER, 2, "2.5"}, {NUMBER, 6, ".5"}, {NUMBER, 9, "1e10"}, {NUMBER, 14, "3E-2"}, {NUMBER, 19, "7."}, {EOF, 21, ""}}},
		{`(),.;=`, []scanned{{LPAREN, 0, "("}, {RPAREN, 1, ")"}, {COMMA, 2, ","}, {DOT, 3, "."}, {SEMICOLON, 4, ";"}, {EQ, 5, "="}, {EOF, 6, ""}}},
		{"a -- c;\n b /* x /* y; */ z; */ c", []scanned{{IDENT, 0, "a"}, {IDENT, 9, "b"}, {IDENT, 31, "c"}, {EOF, 32, ""}}},
		{"a --", []scanned{{IDENT, 0, "a"}, {EOF, 4, ""}}},
		{"c.s.x", []scanned{{IDENT, 0, "c"}, {DOT, 1, "."}, {IDENT, 2, "s"}, {DOT, 3, "."}, {IDENT, 4, "x"}, {EOF, 5, ""}}},
		// Problems are ILLEGAL tokens, and scanning goes on.
		{"'abc", []scanned{{ILLEGAL, 0, "unterminated quoted string"}, {EOF, 4, ""}}},
		{`E'abc\'`, []scanned{{ILLEGAL, 0, "unterminated quoted string"}, {EOF, 7, ""}}},
		{`"abc`, []scanned{{ILLEGAL, 0, "unterminated quoted identifier"}, {EOF, 4, ""}}},
		{"`abc", []scanned{{ILLEGAL, 0, "unterminated quoted identifier"}, {EOF, 4, ""}}},
		{`"" x`, []scanned{{ILLEGAL, 0, "zero-length delimited identifier"}, {IDENT, 3, "x"}, {EOF, 4, ""}}},
		{"a /* b /* c */", []scanned{{IDENT, 0, "a"}, {ILLEGAL, 2, "unterminated /* comment"}, {EOF, 14, ""}}},
		{"$x$abc", []scanned{{ILLEGAL, 0, "unterminated dollar-quoted string"}, {EOF, 6, ""}}},
		{"$1 $ x", []scanned{{ILLEGAL, 0, "unexpected parameter $1"}, {ILLEGAL, 3, "unexpected character '$'"}, {IDENT, 5, "x"}, {EOF, 6, ""}}},
		{"a@b", []scanned{{IDENT, 0, "a"}, {ILLEGAL, 1, "unexpected character '@'"}, {IDENT, 2, "b"}, {EOF, 3, ""}}},
		// Any non-ASCII character is an identifier character, as in PostgreSQL.
		{"\xff; €$$x", []scanned{{IDENT, 0, "\xff"}, {SEMICOLON, 1, ";"}, {IDENT, 3, "€$$x"}, {EOF, 9, ""}}},
		{`E'\u00' x`, []scanned{{ILLEGAL, 0, `invalid Unicode escape: \u needs 4 hexadecimal digits`}, {IDENT, 8, "x"}, {EOF, 9, ""}}},
		{`E'\uD800'`, []scanned{{ILLEGAL, 0, "invalid Unicode escape value"}, {EOF, 9, ""}}},
		{`E'\0'`, []scanned{{ILLEGAL, 0, "invalid escape: zero byte not permitted"}, {EOF, 5, ""}}},
		{`E'\x00'`, []scanned{{ILLEGAL, 0, "invalid escape: zero byte not permitted"}, {EOF, 7, ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			if got := scanAll(t, tc.src); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("scan %q\n got: %v\nwant: %v", tc.src, got, tc.want)
			}
		})
	}
}

func TestScannerEnd(t *testing.T) {
	src := `GRANT "a b" 'c''d' $$e$$ /* x */ f`
	s := NewScanner(src)
	var raw []string
	for {
		tok, pos, _ := s.Scan()
		if tok == EOF {
			break
		}
		raw = append(raw, src[pos:s.End()])
	}
	want := []string{"GRANT", `"a b"`, `'c''d'`, "$$e$$", "f"}
	if !reflect.DeepEqual(raw, want) {
		t.Fatalf("raw tokens = %q, want %q", raw, want)
	}
}

func TestLookup(t *testing.T) {
	for tok := keywordBeg + 1; tok < keywordEnd; tok++ {
		name := tok.String()
		t.Run(name, func(t *testing.T) {
			if !tok.IsKeyword() {
				t.Fatalf("%v is not a keyword", tok)
			}
			for _, w := range []string{name, strings.ToLower(name), strings.ToUpper(name[:1]) + strings.ToLower(name[1:])} {
				if got := Lookup(w); got != tok {
					t.Fatalf("Lookup(%q) = %v, want %v", w, got, tok)
				}
			}
		})
	}
	for _, w := range []string{"select", "statuses", "ſhow", "", "grantx"} {
		t.Run(w, func(t *testing.T) {
			if got := Lookup(w); got != IDENT {
				t.Fatalf("Lookup(%q) = %v, want IDENT", w, got)
			}
		})
	}
}

func TestTokenString(t *testing.T) {
	tests := []struct {
		tok  Token
		want string
	}{
		{EOF, "end of input"},
		{IDENT, "identifier"},
		{STRING, "string literal"},
		{LPAREN, "("},
		{SERVICE, "SERVICE"},
		{Token(-1), "token(-1)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.tok.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestKeywordLits: the literal the scanner gives a keyword without
// folding a copy is its lower-case spelling, Lookup's own, and no
// keyword is too long for the folding buffer; scanning a GRANT allocates
// only the folded copy of its upper-case identifier (USE_CONNECTION), none
// for its keywords.
func TestKeywordLits(t *testing.T) {
	for tok := keywordBeg + 1; tok < keywordEnd; tok++ {
		lit := keywordLits[tok-keywordBeg]
		if Lookup(lit) != tok || len(lit) > maxKeywordLen || lit != strings.ToLower(tok.String()) {
			t.Errorf("%v: literal %q (Lookup %v)", tok, lit, Lookup(lit))
		}
		s := NewScanner(strings.ToUpper(lit[:1]) + lit[1:])
		if got, _, l := s.Scan(); got != tok || l != lit {
			t.Errorf("%v scanned as %v %q", tok, got, l)
		}
	}
	src := "GRANT USE_CONNECTION ON CONNECTION bench_c TO bench"
	s := NewScanner(src)
	if n := testing.AllocsPerRun(100, func() {
		*s = Scanner{src: src}
		for tok, _, _ := s.Scan(); tok != EOF; tok, _, _ = s.Scan() {
		}
	}); n != 1 {
		t.Errorf("scanning %q: %v allocs", src, n)
	}
}
