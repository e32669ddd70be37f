package catalog

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"unicode"
)

// Connection option names.
const (
	OptURL                   = "url"
	OptAuthMode              = "auth_mode"
	OptScopes                = "scopes"
	OptAudience              = "audience"
	OptClientID              = "client_id"
	OptClientSecret          = "client_secret"
	OptBearerToken           = "bearer_token"
	OptTokenEndpoint         = "token_endpoint"
	OptAuthorizationEndpoint = "authorization_endpoint"
	OptIncludeTools          = "include_tools"
)

// AuthModes are the accepted values of auth_mode.
var authModes = []string{"none", "shared_principal", "per_user_oauth", "token_exchange", "mandate_jwt"}

// connectionOptions lists every known option and whether it is secret.
var connectionOptions = map[string]bool{
	OptURL: false, OptAuthMode: false, OptScopes: false, OptAudience: false, OptClientID: false,
	OptClientSecret: true, OptBearerToken: true, OptTokenEndpoint: false, OptAuthorizationEndpoint: false,
	OptIncludeTools: false, OptSensitivity: false, OptEgress: false,
}

// IsSecretOption reports whether a connection option is a secret (encrypted
// at rest, never shown back, redacted from audit and logs).
func IsSecretOption(key string) bool { return connectionOptions[strings.ToLower(key)] }

// LooksSecret reports whether an option or parameter name names a secret,
// so that its value is redacted wherever a statement or URL is recorded:
// the secret connection options, and any other name (a mistyped one, an
// option of a future connection type, a URL query parameter) that
// contains a secret-like word (token, secret, password, credential,
// bearer, api key, key, ...) or a near miss of one (bearer_tokn,
// pasword). Names whose last word says they are something else (an
// endpoint, URL, type, mode, id, name, ...) and counts (max_tokens) are
// not secrets; neither are the known plain connection options.
func LooksSecret(name string) bool {
	if secret, known := connectionOptions[strings.ToLower(name)]; known {
		return secret
	}
	var buf [8]string
	words := appendWords(buf[:0], name)
	if len(words) == 0 {
		return false
	}
	switch words[len(words)-1] {
	case "endpoint", "url", "uri", "type", "mode", "id", "name", "kind", "count", "size", "length", "limit", "ttl", "expiry", "expires", "lifetime":
		return false
	}
	switch words[0] {
	case "max", "min", "num", "public":
		return false
	}
	for _, w := range words {
		switch w {
		case "key", "keys", "pw", "pwd", "pat", "jwt", "otp", "sig", "signature", "cookie", "auth", "authorization", "hmac", "sas", "dsn":
			return true
		}
		for _, stem := range secretStems {
			if strings.Contains(w, stem) {
				return true
			}
		}
		if len(w) >= 4 {
			for _, t := range secretWords {
				if d := len(w) - len(t.word); d <= t.typos && -d <= t.typos && osaWithin(w, t.word, t.typos) {
					return true
				}
			}
		}
	}
	return false
}

var secretStems = []string{"token", "secret", "passw", "passphrase", "bearer", "credential", "apikey", "privatekey", "accesskey", "secretkey"}

var secretWords = []struct {
	word  string
	typos int
}{{"token", 1}, {"tokens", 1}, {"secret", 1}, {"bearer", 1}, {"passwd", 1}, {"password", 2}, {"credential", 2}, {"credentials", 2}, {"apikey", 1}}

// appendWords appends the words of an option name, in lower case, to
// words: it splits at every character that is not a letter or digit and
// at lower-to-upper case changes (bearerToken, client-secret, X-Api-Key).
func appendWords(words []string, name string) []string {
	start := -1
	var prev rune
	for i, r := range name {
		letterOrDigit := unicode.IsLetter(r) || unicode.IsDigit(r)
		if start >= 0 && (!letterOrDigit || (unicode.IsUpper(r) && unicode.IsLower(prev))) {
			words = append(words, strings.ToLower(name[start:i]))
			start = -1
		}
		if letterOrDigit && start < 0 {
			start = i
		}
		prev = r
	}
	if start >= 0 {
		words = append(words, strings.ToLower(name[start:]))
	}
	return words
}

// osaWithin reports whether the optimal string alignment distance of a
// and b (insertions, deletions, substitutions and transpositions of
// adjacent bytes; names are ASCII in practice) is at most k.
func osaWithin(a, b string, k int) bool {
	if len(b) > 32 {
		return false
	}
	// Three rows of the dynamic programme: i-2, i-1 and i.
	var buf [3][33]int
	prev2, prev, cur := buf[0][:len(b)+1], buf[1][:len(b)+1], buf[2][:len(b)+1]
	for j := range prev {
		prev[j] = j
	}
	prevBest := 0
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		best := i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
			best = min(best, cur[j])
		}
		if best > k && prevBest > k { // every later row stays above k
			return false
		}
		prevBest = best
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)] <= k
}

// Redacted replaces a secret value wherever one would be shown or recorded.
const Redacted = "********"

// RedactURL masks the credentials of every URL in s: the user information
// (user:password@) and the values of query and fragment parameters whose
// names look like secrets (LooksSecret). Text that is not a URL is
// returned unchanged.
func RedactURL(s string) string {
	if !strings.Contains(s, "://") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "://")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		s = s[i+3:]
		// The URL ends at white space or a quote; its authority at the
		// first '/', '?' or '#'.
		end := strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '"' || r == '\'' || r == '<' || r == '>' })
		if end < 0 {
			end = len(s)
		}
		u := s[:end]
		s = s[end:]
		auth := strings.IndexAny(u, "/?#")
		if auth < 0 {
			auth = len(u)
		}
		if at := strings.LastIndexByte(u[:auth], '@'); at >= 0 {
			b.WriteString(Redacted)
			u = u[at:]
			auth -= at
		}
		b.WriteString(u[:auth])
		b.WriteString(redactParams(u[auth:]))
	}
}

// redactParams masks secret-looking parameters of a URL's path, query and
// fragment (name=value pairs after '?' or '#', separated by '&' or ';').
func redactParams(s string) string {
	q := strings.IndexAny(s, "?#")
	if q < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:q+1])
	rest := s[q+1:]
	for rest != "" {
		end := strings.IndexAny(rest, "&;#?")
		sep := ""
		if end < 0 {
			end = len(rest)
		} else {
			sep = rest[end : end+1]
		}
		pair := rest[:end]
		rest = rest[min(end+1, len(rest)):]
		if k, _, ok := strings.Cut(pair, "="); ok && LooksSecret(queryUnescape(k)) {
			pair = k + "=" + Redacted
		}
		b.WriteString(pair)
		b.WriteString(sep)
	}
	return b.String()
}

func queryUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// urlCredentials describes the credentials a URL carries, "" if none: user
// information, or a query or fragment parameter whose name looks like a
// secret.
func urlCredentials(u *url.URL) string {
	if u.User != nil {
		return "user information (user:password@)"
	}
	for _, part := range []string{u.RawQuery, u.Fragment} {
		for _, pair := range strings.FieldsFunc(part, func(r rune) bool { return r == '&' || r == ';' }) {
			k, _, _ := strings.Cut(pair, "=")
			if k = queryUnescape(k); LooksSecret(k) {
				return fmt.Sprintf("the parameter %q", k)
			}
		}
	}
	return ""
}

// ConnectionTypes are the accepted connection TYPEs.
var connectionTypes = []string{"MCP"}

// ValidateConnectionOptions checks the options of a connection and splits
// them into plain and secret options. Unknown keys, duplicates and malformed
// values are errors.
func ValidateConnectionOptions(typ string, opts [][2]string) (plain, secret map[string]string, err error) {
	if !contains(connectionTypes, strings.ToUpper(typ)) {
		return nil, nil, Errorf(CodeInvalidArgument, "unknown connection type %q", typ).
			WithHint("supported connection types: " + strings.Join(connectionTypes, ", "))
	}
	plain, secret = map[string]string{}, map[string]string{}
	seen := map[string]bool{}
	for _, kv := range opts {
		k, v := strings.ToLower(kv[0]), kv[1]
		isSecret, known := connectionOptions[k]
		if !known {
			names := make([]string, 0, len(connectionOptions))
			for n := range connectionOptions {
				names = append(names, n)
			}
			sort.Strings(names)
			hint := "valid options: " + strings.Join(names, ", ")
			best := ""
			for d := 1; d <= 2 && best == ""; d++ {
				for _, n := range names {
					if osaWithin(k, n, d) {
						best = n
						break
					}
				}
			}
			if best != "" {
				hint = fmt.Sprintf("did you mean %q? ", best) + hint
			}
			return nil, nil, Errorf(CodeInvalidArgument, "unknown connection option %q", kv[0]).WithHint(hint)
		}
		if seen[k] {
			return nil, nil, Errorf(CodeInvalidArgument, "option %q specified more than once", k)
		}
		seen[k] = true
		if err := validateOption(k, v); err != nil {
			return nil, nil, err
		}
		if k == OptSensitivity || k == OptEgress {
			v, _ = validateGuardrailTag(k, v)
		}
		if isSecret {
			secret[k] = v
		} else {
			plain[k] = v
		}
	}
	if _, ok := plain[OptURL]; !ok {
		return nil, nil, Errorf(CodeInvalidArgument, "connection option %q is required", OptURL)
	}
	if _, ok := plain[OptAuthMode]; !ok {
		plain[OptAuthMode] = "none"
	}
	switch plain[OptAuthMode] {
	case "shared_principal":
		_, hasToken := secret[OptBearerToken]
		_, hasSecret := secret[OptClientSecret]
		_, hasID := plain[OptClientID]
		_, hasTE := plain[OptTokenEndpoint]
		if !hasToken && !(hasSecret && hasID && hasTE) {
			return nil, nil, Errorf(CodeInvalidArgument,
				"auth_mode 'shared_principal' needs either bearer_token or client_id, client_secret and token_endpoint")
		}
		if hasToken && (hasSecret || hasID) {
			return nil, nil, Errorf(CodeInvalidArgument, "auth_mode 'shared_principal' takes either bearer_token or client credentials, not both")
		}
	default:
		if _, ok := secret[OptBearerToken]; ok {
			return nil, nil, Errorf(CodeInvalidArgument, "option bearer_token is only valid with auth_mode 'shared_principal'")
		}
	}
	return plain, secret, nil
}

func validateOption(k, v string) error {
	if strings.ContainsAny(v, "\x00") {
		return Errorf(CodeInvalidArgument, "option %q contains a NUL byte", k)
	}
	switch k {
	case OptURL, OptTokenEndpoint, OptAuthorizationEndpoint:
		u, err := url.Parse(v)
		if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			got := ""
			if !strings.ContainsAny(v, "?#@") { // might carry credentials: not repeated
				got = fmt.Sprintf(", got %q", v)
			}
			return Errorf(CodeInvalidArgument, "option %q must be an absolute http or https URL%s", k, got)
		}
		if what := urlCredentials(u); what != "" {
			return Errorf(CodeInvalidArgument, "option %q must not carry credentials in the URL: it has %s", k, what).
				WithHint("a URL is shown to everyone who may see the connection; give the credential as bearer_token, or as client_id and client_secret, with auth_mode 'shared_principal' (encrypted at rest)")
		}
	case OptSensitivity, OptEgress:
		if _, err := validateGuardrailTag(k, v); err != nil {
			return err
		}
	case OptAuthMode:
		if !contains(authModes, v) {
			return Errorf(CodeInvalidArgument, "invalid auth_mode %q", v).WithHint("valid values: " + strings.Join(authModes, ", "))
		}
	case OptScopes:
		for _, s := range strings.Fields(v) {
			for _, r := range s {
				if r < 0x21 || r == '"' || r == '\\' || r > 0x7e {
					return Errorf(CodeInvalidArgument, "invalid scope %q: scopes are space-separated tokens of printable ASCII", s)
				}
			}
		}
	case OptIncludeTools:
		if strings.TrimSpace(v) == "" {
			return Errorf(CodeInvalidArgument, "option include_tools must list at least one tool name or prefix* pattern")
		}
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimSpace(t)
			name := strings.TrimSuffix(t, "*")
			if t == "" || strings.Contains(name, "*") {
				return Errorf(CodeInvalidArgument, "invalid include_tools entry %q: use tool names or prefix* patterns separated by commas", t)
			}
			for _, r := range name {
				if !(r == '_' || r == '-' || r == '.' || r == '/' || r == ':' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
					return Errorf(CodeInvalidArgument, "invalid include_tools entry %q: unexpected character %q", t, r)
				}
			}
		}
	default:
		if strings.TrimSpace(v) == "" {
			return Errorf(CodeInvalidArgument, "option %q must not be empty", k)
		}
	}
	return nil
}

// ToolAllowed reports whether a tool passes an include_tools list ("" = all).
func ToolAllowed(includeTools, tool string) bool {
	if strings.TrimSpace(includeTools) == "" {
		return true
	}
	for _, t := range strings.Split(includeTools, ",") {
		t = strings.TrimSpace(t)
		if p, ok := strings.CutSuffix(t, "*"); ok {
			if strings.HasPrefix(tool, p) {
				return true
			}
		} else if t == tool {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
