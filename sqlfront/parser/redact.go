package parser

import (
	"strings"

	"github.com/mandatehq/mandate/catalog"
)

// redactedLiteral replaces a secret value in redacted statement text.
const redactedLiteral = "'" + catalog.Redacted + "'"

// Redact returns sql with its secret values masked, for audit records and
// logs. It works on the token stream, not on a parsed statement, so it
// masks the same way whether or not the statement parses:
//
//   - the token after PASSWORD (unless NULL), whatever it is, so that an
//     unquoted or malformed password is masked too;
//   - a literal (string, number, identifier, or an unterminated or
//     malformed string) that follows, with or without "=", a name that
//     looks like a secret (catalog.LooksSecret: bearer_token, a mistyped
//     bearer_tokn, password, refresh_token, api_key, ...), and the
//     literals right after it;
//   - the credentials of URLs in string literals, comments and malformed
//     tokens (catalog.RedactURL: user:password@ and secret-looking query
//     parameters).
//
// A masked value becomes '********'; everything else is kept as written.
func Redact(sql string) string {
	type tok struct {
		tok Token
		lit string
	}
	var (
		b            strings.Builder
		s            = NewScanner(sql)
		last         int  // end of the text already written
		prev, before tok  // the two previous tokens
		masking      bool // the previous token was a masked value
	)
	for {
		t, pos, lit := s.Scan()
		b.WriteString(sql[last:pos]) // white space and comments
		if t == EOF {
			break
		}
		end := s.End()
		last = end
		name := prev
		if prev.tok == EQ {
			name = before
		}
		wasMasking := masking
		masking = false
		switch {
		case name.tok == PASSWORD && maskableAfterPassword(t),
			isLiteral(t) && (wasMasking || looksSecret(name.tok, name.lit)):
			// A run of literals after a secret name (a broken statement:
			// bearer_token 'Bearer' 'abc') is masked whole.
			writeLiteral(&b, redactedLiteral)
			masking = true
		case t == STRING:
			if r := catalog.RedactURL(lit); r != lit {
				writeLiteral(&b, "'"+strings.ReplaceAll(r, "'", "''")+"'")
			} else {
				b.WriteString(sql[pos:end])
			}
		default:
			b.WriteString(sql[pos:end])
		}
		before, prev = prev, tok{t, lit}
	}
	// URLs outside string literals: in comments, in malformed tokens, or
	// unquoted in a broken statement.
	return catalog.RedactURL(b.String())
}

// writeLiteral writes a quoted literal, apart from a quote just before it
// (two adjacent literals must not merge into one with a doubled quote).
func writeLiteral(b *strings.Builder, lit string) {
	if str := b.String(); str != "" && str[len(str)-1] == '\'' {
		b.WriteByte(' ')
	}
	b.WriteString(lit)
}

// maskableAfterPassword reports whether t, following PASSWORD, is its value.
func maskableAfterPassword(t Token) bool {
	switch t {
	case NULL, EOF, LPAREN, RPAREN, COMMA, DOT, SEMICOLON, EQ:
		return false
	}
	return true
}

// isLiteral reports whether t can be an option's value.
func isLiteral(t Token) bool {
	switch t {
	case STRING, NUMBER, IDENT, QIDENT, ILLEGAL:
		return true
	}
	return false
}

// looksSecret reports whether a token names a secret option.
func looksSecret(t Token, lit string) bool {
	switch {
	case t.IsKeyword():
		return secretKeywords[t]
	case t == IDENT || t == QIDENT || t == STRING:
		return catalog.LooksSecret(lit)
	}
	return false
}

// secretKeywords holds, for each keyword, whether it looks like a secret
// option's name (PASSWORD), computed once.
var secretKeywords = func() (out [keywordEnd]bool) {
	for t := keywordBeg + 1; t < keywordEnd; t++ {
		out[t] = catalog.LooksSecret(keywordNames[t])
	}
	// ACCESS TOKEN name and n TOKENS PER MINUTE name no secret: the
	// token itself never appears in a statement.
	out[TOKEN], out[TOKENS] = false, false
	return out
}()
