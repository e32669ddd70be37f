package parser

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Scanner splits SQL text into tokens. Whitespace and comments (-- to the
// end of the line, and /* */ blocks, which nest) are skipped. The scanner
// never fails: problems are reported as ILLEGAL tokens whose literal
// describes them, and scanning always makes progress, so a caller can keep
// scanning after an ILLEGAL token (Split does).
type Scanner struct {
	src string
	off int // offset of the next byte to read
	end int // offset just past the last token returned
}

// NewScanner returns a scanner reading src.
func NewScanner(src string) *Scanner { return &Scanner{src: src} }

// End returns the byte offset just past the last token returned by Scan;
// src[pos:End()] is the token's text as written.
func (s *Scanner) End() int { return s.end }

// Scan returns the next token, the byte offset of its first character and
// its literal value: the lower-case word for IDENT and keywords, the
// unescaped name for QIDENT, the unescaped value for STRING, the text for
// NUMBER and punctuation, a description of the problem for ILLEGAL and ""
// for EOF.
func (s *Scanner) Scan() (tok Token, pos int, lit string) {
	tok, pos, lit = s.scan()
	s.end = s.off
	return tok, pos, lit
}

func (s *Scanner) scan() (Token, int, string) {
	if pos, msg, ok := s.skipSpace(); !ok {
		return ILLEGAL, pos, msg
	}
	pos := s.off
	if pos >= len(s.src) {
		return EOF, pos, ""
	}
	c := s.src[pos]
	switch {
	case (c == 'e' || c == 'E') && s.peekAt(pos+1) == '\'':
		s.off++
		return s.scanString(pos, true)
	case c == '\'':
		return s.scanString(pos, false)
	case c == '"' || c == '`':
		return s.scanQuotedIdent(pos, c)
	case c == '$':
		return s.scanDollar(pos)
	case isDigit(c) || (c == '.' && isDigit(s.peekAt(pos+1))):
		return s.scanNumber(pos)
	}
	switch c {
	case '(':
		s.off++
		return LPAREN, pos, "("
	case ')':
		s.off++
		return RPAREN, pos, ")"
	case ',':
		s.off++
		return COMMA, pos, ","
	case '.':
		s.off++
		return DOT, pos, "."
	case ';':
		s.off++
		return SEMICOLON, pos, ";"
	case '=':
		s.off++
		return EQ, pos, "="
	}
	r, n := utf8.DecodeRuneInString(s.src[pos:])
	if isIdentStart(r) {
		return s.scanWord(pos)
	}
	s.off += n
	return ILLEGAL, pos, fmt.Sprintf("unexpected character %q", r)
}

func (s *Scanner) peekAt(i int) byte {
	if i < len(s.src) {
		return s.src[i]
	}
	return 0
}

// skipSpace skips whitespace and comments. It reports an unterminated
// block comment (which it consumes to the end of the input).
func (s *Scanner) skipSpace() (pos int, msg string, ok bool) {
	for s.off < len(s.src) {
		c := s.src[s.off]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			s.off++
		case c == '-' && s.peekAt(s.off+1) == '-':
			if i := strings.IndexByte(s.src[s.off:], '\n'); i >= 0 {
				s.off += i + 1
			} else {
				s.off = len(s.src)
			}
		case c == '/' && s.peekAt(s.off+1) == '*':
			start := s.off
			s.off += 2
			for depth := 1; depth > 0; {
				if s.off >= len(s.src) {
					return start, "unterminated /* comment", false
				}
				switch {
				case s.src[s.off] == '*' && s.peekAt(s.off+1) == '/':
					depth--
					s.off += 2
				case s.src[s.off] == '/' && s.peekAt(s.off+1) == '*':
					depth++
					s.off += 2
				default:
					s.off++
				}
			}
		default:
			return 0, "", true
		}
	}
	return 0, "", true
}

// scanWord scans an unquoted identifier or keyword starting at pos.
func (s *Scanner) scanWord(pos int) (Token, int, string) {
	for s.off < len(s.src) {
		r, n := utf8.DecodeRuneInString(s.src[s.off:])
		if !isIdentPart(r) {
			break
		}
		s.off += n
	}
	word := s.src[pos:s.off]
	if t := lookupFold(word); t != IDENT {
		return t, pos, keywordLits[t-keywordBeg] // the lower-case word, not a new string
	}
	return IDENT, pos, asciiLower(word)
}

// lookupFold is Lookup(word) without a copy of word: a word longer than
// any keyword is an identifier, a shorter one is folded on the stack.
func lookupFold(word string) Token {
	var buf [maxKeywordLen]byte
	if len(word) > len(buf) {
		return IDENT
	}
	n := copy(buf[:], word)
	for i := range n {
		if c := buf[i]; c >= 'A' && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	return Lookup(string(buf[:n]))
}

// maxKeywordLen is at least the length of the longest keyword
// (TestKeywordLits).
const maxKeywordLen = 24

// keywordLits holds the literal of every keyword token, its lower-case
// spelling, indexed by t-keywordBeg.
var keywordLits = func() (l [keywordEnd - keywordBeg]string) {
	for t := keywordBeg + 1; t < keywordEnd; t++ {
		l[t-keywordBeg] = strings.ToLower(keywordNames[t])
	}
	return l
}()

// scanQuotedIdent scans a "double quoted" or `backtick` identifier; a
// doubled quote character stands for itself.
func (s *Scanner) scanQuotedIdent(pos int, q byte) (Token, int, string) {
	name, ok := s.scanQuoted(pos+1, q)
	if !ok {
		return ILLEGAL, pos, "unterminated quoted identifier"
	}
	if name == "" {
		return ILLEGAL, pos, "zero-length delimited identifier"
	}
	return QIDENT, pos, name
}

// scanQuoted reads up to the closing quote q starting at from, undoubling
// doubled quotes. On an unterminated quote it consumes the rest of the input.
func (s *Scanner) scanQuoted(from int, q byte) (string, bool) {
	var b strings.Builder
	i := from
	for {
		j := strings.IndexByte(s.src[i:], q)
		if j < 0 {
			s.off = len(s.src)
			return "", false
		}
		b.WriteString(s.src[i : i+j])
		i += j + 1
		if s.peekAt(i) != q {
			s.off = i
			return b.String(), true
		}
		b.WriteByte(q)
		i++
	}
}

// scanString scans a string literal at pos ('...' with doubled quotes, or
// E'...' with backslash escapes when esc is set; s.off is at the quote).
func (s *Scanner) scanString(pos int, esc bool) (Token, int, string) {
	if !esc {
		v, ok := s.scanQuoted(s.off+1, '\'')
		if !ok {
			return ILLEGAL, pos, "unterminated quoted string"
		}
		return STRING, pos, v
	}
	var b strings.Builder
	var bad string // first escape error; the string is still consumed
	i := s.off + 1
	for {
		if i >= len(s.src) {
			s.off = len(s.src)
			return ILLEGAL, pos, "unterminated quoted string"
		}
		c := s.src[i]
		switch {
		case c == '\'' && s.peekAt(i+1) == '\'':
			b.WriteByte('\'')
			i += 2
		case c == '\'':
			s.off = i + 1
			if bad != "" {
				return ILLEGAL, pos, bad
			}
			return STRING, pos, b.String()
		case c == '\\':
			n, msg := s.escape(&b, i+1)
			if msg != "" && bad == "" {
				bad = msg
			}
			i = n
		default:
			b.WriteByte(c)
			i++
		}
	}
}

// escape decodes the backslash escape whose first character is at i,
// appends it to b and returns the offset after it. A non-empty message
// reports an invalid escape.
func (s *Scanner) escape(b *strings.Builder, i int) (int, string) {
	if i >= len(s.src) {
		return i, ""
	}
	c := s.src[i]
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 'f':
		b.WriteByte('\f')
	case 'n':
		b.WriteByte('\n')
	case 'r':
		b.WriteByte('\r')
	case 't':
		b.WriteByte('\t')
	case 'x':
		v, n := s.digits(i+1, 2, 16)
		if n == 0 {
			b.WriteByte('x')
			return i + 1, ""
		}
		if v == 0 {
			return i + 1 + n, "invalid escape: zero byte not permitted"
		}
		b.WriteByte(byte(v))
		return i + 1 + n, ""
	case 'u', 'U':
		want := 4
		if c == 'U' {
			want = 8
		}
		v, n := s.digits(i+1, want, 16)
		if n != want {
			return i + 1 + n, "invalid Unicode escape: \\" + string(c) + " needs " + fmt.Sprint(want) + " hexadecimal digits"
		}
		r := rune(v)
		if v > unicode.MaxRune || !utf8.ValidRune(r) || r == 0 {
			return i + 1 + n, "invalid Unicode escape value"
		}
		b.WriteRune(r)
		return i + 1 + n, ""
	default:
		if c >= '0' && c <= '7' {
			v, n := s.digits(i, 3, 8)
			if v&0xff == 0 {
				return i + n, "invalid escape: zero byte not permitted"
			}
			b.WriteByte(byte(v))
			return i + n, ""
		}
		b.WriteByte(c)
	}
	return i + 1, ""
}

// digits reads up to max digits in the given base starting at i.
func (s *Scanner) digits(i, max, base int) (v uint64, n int) {
	for n < max && i+n < len(s.src) {
		d := digitVal(s.src[i+n])
		if d >= base {
			break
		}
		v = v*uint64(base) + uint64(d)
		n++
	}
	return v, n
}

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return 99
}

// scanDollar scans a dollar-quoted string ($$...$$ or $tag$...$tag$) or a
// positional parameter ($1, reported as ILLEGAL) at pos.
func (s *Scanner) scanDollar(pos int) (Token, int, string) {
	i := pos + 1
	if isDigit(s.peekAt(i)) {
		for isDigit(s.peekAt(i)) {
			i++
		}
		s.off = i
		return ILLEGAL, pos, "unexpected parameter " + s.src[pos:i]
	}
	// Tags follow PostgreSQL: [A-Za-z_\x80-\xff][A-Za-z_0-9\x80-\xff]*.
	for i < len(s.src) && isTagByte(s.src[i], i > pos+1) {
		i++
	}
	if s.peekAt(i) != '$' {
		s.off = pos + 1
		return ILLEGAL, pos, `unexpected character '$'`
	}
	delim := s.src[pos : i+1]
	body := i + 1
	j := strings.Index(s.src[body:], delim)
	if j < 0 {
		s.off = len(s.src)
		return ILLEGAL, pos, "unterminated dollar-quoted string"
	}
	s.off = body + j + len(delim)
	return STRING, pos, s.src[body : body+j]
}

func isTagByte(c byte, notFirst bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80 || (notFirst && isDigit(c))
}

// scanNumber scans digits [. digits] [e [+-] digits] at pos.
func (s *Scanner) scanNumber(pos int) (Token, int, string) {
	i := pos
	for isDigit(s.peekAt(i)) {
		i++
	}
	if s.peekAt(i) == '.' && s.peekAt(i+1) != '.' {
		i++
		for isDigit(s.peekAt(i)) {
			i++
		}
	}
	if c := s.peekAt(i); c == 'e' || c == 'E' {
		j := i + 1
		if c := s.peekAt(j); c == '+' || c == '-' {
			j++
		}
		if isDigit(s.peekAt(j)) {
			for isDigit(s.peekAt(j)) {
				j++
			}
			i = j
		}
	}
	s.off = i
	return NUMBER, pos, s.src[pos:i]
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isIdentStart reports whether r may begin an unquoted identifier: an ASCII
// letter, an underscore or any non-ASCII character (including the
// utf8.RuneError of an invalid byte). Like PostgreSQL's lexer, which treats
// every byte >= 0x80 as a letter, this keeps Split's statement boundaries
// identical to the server's: "a€$$;$$" is an identifier, then ";", not
// the start of a dollar-quoted string.
func isIdentStart(r rune) bool {
	return r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || r >= utf8.RuneSelf
}

// isIdentPart reports whether r may continue an unquoted identifier.
func isIdentPart(r rune) bool {
	return isIdentStart(r) || (r >= '0' && r <= '9') || r == '$'
}

// asciiLower folds ASCII letters to lower case, as PostgreSQL does for
// unquoted identifiers in UTF-8 databases; other characters are unchanged.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// asciiUpper folds ASCII letters to upper case.
func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'a' && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
