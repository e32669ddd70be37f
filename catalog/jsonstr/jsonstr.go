package jsonstr

import (
	"bytes"
	"unicode/utf16"
	"unicode/utf8"
)

// SyntaxError is a malformed string: what is wrong and the offset of the
// byte at fault (the backslash of a bad escape, the control character, the
// opening quote of an unterminated string).
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string { return e.Msg }

// stop marks the bytes a string scan must look at: '"', '\\' and control
// characters.
var stop = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// Scan checks the JSON string starting at b[i] (a '"') and returns the
// index just past its closing quote and whether it contains escapes.
func Scan(b []byte, i int) (end int, escaped bool, err error) {
	for j := i + 1; j < len(b); j++ {
		for j < len(b) && !stop[b[j]] {
			j++
		}
		if j >= len(b) {
			break
		}
		switch c := b[j]; {
		case c == '"':
			return j + 1, escaped, nil
		case c == '\\':
			escaped = true
			if j+1 >= len(b) {
				return j, escaped, &SyntaxError{j, "unterminated escape"}
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+5 >= len(b) || hex4(b[j+2:]) < 0 {
					return j, escaped, &SyntaxError{j, "invalid \\u escape"}
				}
				j += 5
			default:
				return j, escaped, &SyntaxError{j, "invalid escape"}
			}
		default:
			return j, escaped, &SyntaxError{j, "control character in string"}
		}
	}
	return len(b), escaped, &SyntaxError{i, "unterminated string"}
}

// Escape decodes the escape sequence at the start of s: the rune it
// stands for and its length in s (2, 6, or 12 for a \u surrogate pair);
// n is 0 when s does not start with a valid escape. A surrogate that is
// not half of a valid pair decodes to U+FFFD, as in encoding/json.
func Escape(s []byte) (r rune, n int) {
	if len(s) < 2 || s[0] != '\\' {
		return 0, 0
	}
	switch c := s[1]; c {
	case '"', '\\', '/':
		return rune(c), 2
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	case 'u':
		r := hex4(s[2:])
		if r < 0 {
			return 0, 0
		}
		if !utf16.IsSurrogate(r) {
			return r, 6
		}
		if len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
			if r2 := hex4(s[8:]); r2 >= 0 {
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					return d, 12
				}
			}
		}
		return utf8.RuneError, 6
	}
	return 0, 0
}

// AppendUnescaped appends the decoded content of the string body s (the
// bytes between the quotes of a string Scan accepted) to dst, as
// encoding/json decodes it: escapes resolved, surrogate pairs joined,
// unpaired surrogates and invalid UTF-8 bytes as U+FFFD. A backslash that
// starts no valid escape (s not checked) is kept as is.
func AppendUnescaped(dst, s []byte) []byte {
	for len(s) > 0 {
		k := bytes.IndexByte(s, '\\')
		if k < 0 {
			k = len(s)
		}
		dst = appendUTF8(dst, s[:k])
		s = s[k:]
		if len(s) == 0 {
			break
		}
		r, n := Escape(s)
		switch {
		case n == 0:
			dst = append(dst, '\\')
			n = 1
		case r < utf8.RuneSelf:
			dst = append(dst, byte(r))
		default:
			dst = utf8.AppendRune(dst, r)
		}
		s = s[n:]
	}
	return dst
}

// appendUTF8 appends s with every invalid UTF-8 byte as U+FFFD.
func appendUTF8(dst, s []byte) []byte {
	if utf8.Valid(s) {
		return append(dst, s...)
	}
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		if r == utf8.RuneError && n == 1 {
			dst = utf8.AppendRune(dst, r)
		} else {
			dst = append(dst, s[:n]...)
		}
		s = s[n:]
	}
	return dst
}

// Width returns the length in s of the character or escape at s[i] (a
// checked string body) and the length of what AppendUnescaped makes of it.
func Width(s []byte, i int) (raw, decoded int) {
	switch c := s[i]; {
	case c == '\\':
		r, n := Escape(s[i:])
		if n == 0 {
			return 1, 1
		}
		return n, utf8.RuneLen(r)
	case c < utf8.RuneSelf:
		return 1, 1
	}
	r, n := utf8.DecodeRune(s[i:])
	return n, utf8.RuneLen(r)
}

// hex4 is the value of the four hex digits at the start of b, -1 if there
// are not four.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(v)
	}
	return r
}
