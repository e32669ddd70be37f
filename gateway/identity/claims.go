package identity

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// bearerToken extracts the token of the request's Authorization header
// (RFC 6750 §2.1: the scheme is case-insensitive; spaces and tabs around
// the credentials are tolerated). It returns the token, or a description
// (DescMissingToken, DescMalformedToken). The token's characters are
// checked by isToken68, after the cache lookup (a cached token has been
// verified already).
func bearerToken(h http.Header) (tok, desc string) {
	vs := h["Authorization"]
	switch len(vs) {
	case 0:
		return "", DescMissingToken
	case 1:
	default:
		return "", DescMalformedToken
	}
	v := trimOWS(vs[0])
	if len(v) < len("Bearer") || !strings.EqualFold(v[:len("Bearer")], "Bearer") {
		return "", DescMissingToken
	}
	rest := v[len("Bearer"):]
	if rest == "" {
		return "", DescMissingToken
	}
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", DescMissingToken // "Bearerx...": another scheme
	}
	tok = trimOWS(rest)
	if tok == "" {
		return "", DescMissingToken
	}
	return tok, ""
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isToken68 reports whether s is an RFC 7235 token68:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' {
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// strList is a list of scopes given as one space-separated string
// ("scope", RFC 8693 §4.2 / RFC 9068) or as an array of strings ("scp" at
// some IdPs); both forms are accepted for both claims.
type strList []string

func (l *strList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*l = strings.Fields(s)
		return nil
	}
	var a []string
	if err := json.Unmarshal(b, &a); err != nil {
		return errors.New("scope must be a string or an array of strings")
	}
	*l = a
	return nil
}

// flexBool is a boolean claim that some IdPs send as a string
// ("email_verified": "true" at AWS Cognito): unset, true or false.
type flexBool uint8

const (
	flexUnset flexBool = iota
	flexTrue
	flexFalse
)

func (f *flexBool) UnmarshalJSON(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "true", `"true"`:
		*f = flexTrue
	case "false", `"false"`:
		*f = flexFalse
	case "null":
		*f = flexUnset
	default:
		return errors.New("boolean claim expected")
	}
	return nil
}

// present records that a claim is present with a value other than null or
// "" (whatever its type).
type present bool

func (p *present) UnmarshalJSON(b []byte) error {
	s := string(b)
	*p = present(s != "null" && s != `""`)
	return nil
}
