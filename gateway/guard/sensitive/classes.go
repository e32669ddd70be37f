package sensitive

// Byte classes and trigger bytes. The scanner looks at every byte once
// through trig; only the rare trigger bytes run a detector.

const (
	cDigit uint16 = 1 << iota
	cUpper
	cLower
	cHex    // 0-9 a-f A-F
	cB58    // the base58 alphabet
	cLocal  // e-mail local part: alnum . _ % + -
	cURL    // URL characters (RFC 3986 unreserved, reserved, %)
	cB64URL // base64url: alnum - _
	cB64    // base64: alnum + / =
	cKey    // assignment key: alnum _ . -
	cTokenV // token value: base64url plus . / + =
)

const cAlnum = cDigit | cUpper | cLower

// trigger kinds
const (
	tNone uint8 = iota
	tAt
	tDigit
	tColon
	tEq
	tDash
	tUnder
	tDot
	tUpperA
	tJ
	tPlus
	tParen
)

var class [256]uint16
var trig [256]uint8

func init() {
	for c := 0; c < 256; c++ {
		var k uint16
		b := byte(c)
		switch {
		case b >= '0' && b <= '9':
			k |= cDigit | cHex
		case b >= 'A' && b <= 'Z':
			k |= cUpper
			if b <= 'F' {
				k |= cHex
			}
		case b >= 'a' && b <= 'z':
			k |= cLower
			if b <= 'f' {
				k |= cHex
			}
		}
		if k&cAlnum != 0 {
			k |= cLocal | cURL | cB64URL | cB64 | cKey | cTokenV
			if b != '0' && b != 'O' && b != 'I' && b != 'l' {
				k |= cB58
			}
		}
		switch b {
		case '.', '_', '%', '+', '-':
			k |= cLocal
		}
		switch b {
		case '-', '.', '_', '~', ':', '/', '?', '#', '[', ']', '@', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', '%':
			k |= cURL
		}
		switch b {
		case '-', '_':
			k |= cB64URL | cTokenV
		case '+', '/', '=':
			k |= cB64 | cTokenV
		case '.':
			k |= cTokenV
		}
		switch b {
		case '_', '.', '-':
			k |= cKey
		}
		class[c] = k
	}
	for c := '0'; c <= '9'; c++ {
		trig[c] = tDigit
	}
	trig['@'] = tAt
	trig[':'] = tColon
	trig['='] = tEq
	trig['-'] = tDash
	trig['_'] = tUnder
	trig['.'] = tDot
	trig['A'] = tUpperA
	trig['J'] = tJ
	trig['+'] = tPlus
	trig['('] = tParen
}

func is(c byte, k uint16) bool { return class[c]&k != 0 }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isAlnum(c byte) bool      { return class[c]&cAlnum != 0 }
func isUpper(c byte) bool      { return c >= 'A' && c <= 'Z' }
func isHex(c byte) bool        { return class[c]&cHex != 0 }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// bnd reports whether a token may start at s: s is the first byte, or the
// byte before is not alphanumeric.
func bnd(b []byte, s int) bool { return s == 0 || !isAlnum(b[s-1]) }

// bndEnd reports whether a token may end at e.
func bndEnd(b []byte, e int) bool { return e >= len(b) || !isAlnum(b[e]) }

// eqFold compares b[i:i+len(s)] with the lower-case ASCII s.
func eqFold(b []byte, i int, s string) bool {
	if i < 0 || i+len(s) > len(b) {
		return false
	}
	for k := 0; k < len(s); k++ {
		if lower(b[i+k]) != s[k] {
			return false
		}
	}
	return true
}

// eq compares b[i:i+len(s)] with s exactly.
func eq(b []byte, i int, s string) bool {
	return i >= 0 && i+len(s) <= len(b) && string(b[i:i+len(s)]) == s
}

// runOf returns the end of the run of class k starting at i, at most max
// bytes long.
func runOf(b []byte, i int, k uint16, max int) int {
	j := i
	for j < len(b) && j-i < max && class[b[j]]&k != 0 {
		j++
	}
	return j
}
