package injection

import (
	"unicode/utf8"
)

// Normalization turns text into word tokens that phrase rules match:
// lower-case ASCII, with look-alike letters (Cyrillic, Greek, full-width,
// mathematical alphanumerics, accented Latin) folded, zero-width and bidi
// characters dropped (so "ig\u200bnore" is "ignore"), leetspeak inside
// words undone ("1gn0re"), letters spaced out ("i g n o r e") joined, and
// URLs and e-mail addresses replaced by one $link token. Unicode tag
// characters (U+E0000–E007F) are decoded to the ASCII they smuggle and
// scored as hidden text.

type token struct {
	h      uint64 // FNV-1a of the normalized word
	class  uint64 // hash of $link, $ident, $num, or 0
	s, e   int32  // span in the normalized buffer
	os, oe int32  // span in the original text
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func hashString(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

var (
	hLink  = hashString("$link")
	hIdent = hashString("$ident")
	hNum   = hashString("$num")
)

// counts of invisible characters seen while normalizing
type invisible struct {
	tags      int // Unicode tag characters
	zeroWidth int // zero-width characters inside words
	bidi      int // bidi overrides and isolates
}

type normalized struct {
	buf  []byte // normalized words, separated by spaces
	toks []token
	inv  invisible
	tag  []byte // ASCII smuggled in tag characters
}

// asciiFold is fold for ASCII.
var asciiFold = func() (t [128]byte) {
	for c := 0; c < 128; c++ {
		t[c] = fold(rune(c))
	}
	return t
}()

// fold maps a rune to a lower-case ASCII letter or digit (0 if none).
func fold(r rune) byte {
	switch {
	case r < 0x80:
		c := byte(r)
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			return c
		case c >= 'A' && c <= 'Z':
			return c + 32
		}
		return 0
	case r >= 0xFF21 && r <= 0xFF3A: // full-width A-Z
		return byte(r-0xFF21) + 'a'
	case r >= 0xFF41 && r <= 0xFF5A:
		return byte(r-0xFF41) + 'a'
	case r >= 0xFF10 && r <= 0xFF19:
		return byte(r-0xFF10) + '0'
	case r >= 0x1D400 && r <= 0x1D6A3: // mathematical alphanumerics
		k := (r - 0x1D400) % 52
		if k < 26 {
			return byte(k) + 'a'
		}
		return byte(k-26) + 'a'
	case r >= 0x1D7CE && r <= 0x1D7FF:
		return byte((r-0x1D7CE)%10) + '0'
	case r >= 0x24B6 && r <= 0x24CF: // circled letters
		return byte(r-0x24B6) + 'a'
	case r >= 0x24D0 && r <= 0x24E9:
		return byte(r-0x24D0) + 'a'
	}
	if c, ok := confusable[r]; ok {
		return c
	}
	return 0
}

var confusable = map[rune]byte{
	// Cyrillic
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't', 'у': 'y', 'х': 'x',
	'і': 'i', 'ї': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd', 'ɡ': 'g', 'һ': 'h', 'ӏ': 'l', 'ԛ': 'q', 'ԝ': 'w',
	'А': 'a', 'В': 'b', 'Е': 'e', 'К': 'k', 'М': 'm', 'Н': 'h', 'О': 'o', 'Р': 'p', 'С': 'c', 'Т': 't', 'У': 'y', 'Х': 'x', 'І': 'i', 'Ј': 'j', 'Ѕ': 's',
	// Greek
	'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w',
	'Α': 'a', 'Β': 'b', 'Ε': 'e', 'Η': 'h', 'Ι': 'i', 'Κ': 'k', 'Μ': 'm', 'Ν': 'n', 'Ο': 'o', 'Ρ': 'p', 'Τ': 't', 'Υ': 'y', 'Χ': 'x', 'Ζ': 'z',
	// accented Latin
	'à': 'a', 'á': 'a', 'â': 'a', 'ã': 'a', 'ä': 'a', 'å': 'a', 'ç': 'c', 'è': 'e', 'é': 'e', 'ê': 'e', 'ë': 'e', 'ì': 'i', 'í': 'i',
	'î': 'i', 'ï': 'i', 'ñ': 'n', 'ò': 'o', 'ó': 'o', 'ô': 'o', 'õ': 'o', 'ö': 'o', 'ù': 'u', 'ú': 'u', 'û': 'u', 'ü': 'u', 'ý': 'y',
	'ÿ': 'y', 'ß': 's', 'À': 'a', 'Á': 'a', 'Â': 'a', 'Ä': 'a', 'Ç': 'c', 'È': 'e', 'É': 'e', 'Ê': 'e', 'Í': 'i', 'Ñ': 'n', 'Ó': 'o',
	'Ö': 'o', 'Ú': 'u', 'Ü': 'u', 'ı': 'i', 'ł': 'l', 'ø': 'o', 'œ': 'o',
}

func isZeroWidth(r rune) bool {
	switch r {
	case 0x200B, 0x200C, 0x200D, 0x2060, 0x2061, 0x2062, 0x2063, 0x2064, 0xFEFF, 0x180E, 0x00AD, 0x034F:
		return true
	}
	return false
}

func isBidi(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 || r == 0x200E || r == 0x200F || r == 0x061C
}

// leet undoes digit-for-letter substitutions in a word that mixes both.
func leet(w []byte) {
	letters, digits := 0, 0
	for _, c := range w {
		if c >= 'a' && c <= 'z' {
			letters++
		} else {
			digits++
		}
	}
	if letters == 0 || digits == 0 || digits > letters+1 {
		return
	}
	for i, c := range w {
		switch c {
		case '0':
			w[i] = 'o'
		case '1':
			w[i] = 'i'
		case '3':
			w[i] = 'e'
		case '4':
			w[i] = 'a'
		case '5':
			w[i] = 's'
		case '7':
			w[i] = 't'
		case '8':
			w[i] = 'b'
		}
	}
}

// normalize tokenizes text (appending to n's buffers, which are reused).
func (n *normalized) normalize(text []byte) {
	n.buf, n.toks, n.tag, n.inv = n.buf[:0], n.toks[:0], n.tag[:0], invisible{}
	var cur token
	inWord := false
	hasUnderscore := false
	prevLetter := false
	h := uint64(fnvOffset)
	digits, letters := 0, 0
	add := func(f byte, i int) {
		if !inWord {
			inWord = true
			cur = token{s: int32(len(n.buf)), os: int32(i)}
			h, digits, letters = fnvOffset, 0, 0
		}
		n.buf = append(n.buf, f)
		h = (h ^ uint64(f)) * fnvPrime
		if f >= '0' && f <= '9' {
			digits++
		} else {
			letters++
		}
	}
	flush := func(end int) {
		if !inWord {
			return
		}
		if digits > 0 && letters > 0 {
			w := n.buf[cur.s:]
			leet(w)
			h = fnvOffset
			for _, c := range w {
				h = (h ^ uint64(c)) * fnvPrime
			}
		}
		cur.h = h
		cur.e = int32(len(n.buf))
		cur.oe = int32(end)
		switch {
		case letters == 0:
			cur.class = hNum
		case hasUnderscore:
			cur.class = hIdent
		}
		n.toks = append(n.toks, cur)
		n.buf = append(n.buf, ' ')
		inWord, hasUnderscore = false, false
	}
	for i := 0; i < len(text); {
		c := text[i]
		// links: scheme://… and e-mail addresses become one $link token
		if (c == 'h' || c == 'H') && !inWord && linkAt(text, i) {
			j := i
			for j < len(text) && text[j] > ' ' && text[j] != '"' && text[j] != '\'' && text[j] != ')' && text[j] != '>' && text[j] != ']' && text[j] != '<' {
				j++
			}
			n.link(i, j)
			i = j
			prevLetter = false
			continue
		}
		if c == '@' && inWord && i+1 < len(text) && isAlnumASCII(text[i+1]) {
			// the word so far is a local part: replace it by $link
			j := i + 1
			for j < len(text) && (isAlnumASCII(text[j]) || text[j] == '.' || text[j] == '-') {
				j++
			}
			os := int(cur.os)
			n.buf = n.buf[:cur.s]
			inWord = false
			n.link(os, j)
			i = j
			continue
		}
		if c < utf8.RuneSelf && c != '\'' && c != '_' {
			// ASCII fast path
			if f := asciiFold[c]; f != 0 {
				add(f, i)
				prevLetter = true
			} else {
				flush(i)
				prevLetter = false
			}
			i++
			continue
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(text[i:])
		}
		switch {
		case r >= 0xE0000 && r <= 0xE007F:
			n.inv.tags++
			if r >= 0xE0020 && r <= 0xE007E {
				n.tag = append(n.tag, byte(r-0xE0000))
			} else {
				n.tag = append(n.tag, ' ')
			}
			i += size
			continue
		case isZeroWidth(r):
			if prevLetter {
				n.inv.zeroWidth++
			}
			i += size
			continue
		case isBidi(r):
			if r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069 {
				n.inv.bidi++
			}
			i += size
			continue
		}
		if (r == '\'' || r == 0x2019) && inWord && i+size < len(text) && isAlnumASCII(text[i+size]) {
			i += size // contractions: "don't" is "dont"
			continue
		}
		f := fold(r)
		if f == 0 && c == '_' && inWord {
			f, hasUnderscore = '_', true
		}
		if f != 0 {
			add(f, i)
			prevLetter = true
		} else {
			flush(i)
			prevLetter = false
		}
		i += size
	}
	flush(len(text))
	n.joinSpaced()
}

func isAlnumASCII(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func linkAt(b []byte, i int) bool {
	if len(b)-i < 8 {
		return false
	}
	p := b[i : i+8]
	return (p[0]|0x20) == 'h' && (p[1]|0x20) == 't' && (p[2]|0x20) == 't' && (p[3]|0x20) == 'p' &&
		(p[4] == ':' && p[5] == '/' && p[6] == '/' || (p[4]|0x20) == 's' && p[5] == ':' && p[6] == '/' && p[7] == '/')
}

func (n *normalized) link(os, oe int) {
	s := int32(len(n.buf))
	n.buf = append(n.buf, "$link "...)
	n.toks = append(n.toks, token{h: hLink, class: hLink, s: s, e: s + 5, os: int32(os), oe: int32(oe)})
}

// joinSpaced adds a joined token for runs of at least four single-letter
// tokens ("i g n o r e" → "ignore"), in place of the run.
func (n *normalized) joinSpaced() {
	out := n.toks[:0]
	for i := 0; i < len(n.toks); {
		j := i
		for j < len(n.toks) && n.toks[j].e-n.toks[j].s == 1 && n.toks[j].class == 0 {
			j++
		}
		if j-i < 4 {
			if j == i {
				j = i + 1
			}
			out = append(out, n.toks[i:j]...)
			i = j
			continue
		}
		s := int32(len(n.buf))
		h := uint64(fnvOffset)
		for k := i; k < j; k++ {
			c := n.buf[n.toks[k].s]
			n.buf = append(n.buf, c)
			h ^= uint64(c)
			h *= fnvPrime
		}
		n.buf = append(n.buf, ' ')
		out = append(out, token{h: h, s: s, e: s + int32(j-i), os: n.toks[i].os, oe: n.toks[j-1].oe})
		i = j
	}
	n.toks = out
}

func (n *normalized) word(t token) []byte { return n.buf[t.s:t.e] }
