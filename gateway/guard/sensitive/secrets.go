package sensitive

import (
	"bytes"
	"encoding/base64"
	"hash/crc32"
	"math"
)

// SECRET validators: vendor prefixes with their formats (and checksums
// where the vendor has one), JWTs, PEM private keys and high-entropy values
// assigned to secret-looking names.

func secret(rule string, s, e int) Finding {
	return Finding{Entity: Secret, Rule: rule, Start: s, End: e}
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// crc32base62 checks GitHub's (and npm's) token checksum: the last six
// characters are the base62 CRC32 of the random part, zero-padded.
func crc32base62(random, check []byte) bool {
	v := crc32.ChecksumIEEE(random)
	for k := len(check) - 1; k >= 0; k-- {
		if check[k] != base62[v%62] {
			return false
		}
		v /= 62
	}
	return v == 0
}

// underscoreSecret runs at '_': ghp_ gho_ ghu_ ghs_ ghr_ (36 base62 with a
// CRC32), npm_ (the same), github_pat_, sk_live_ / rk_live_ (Stripe).
func underscoreSecret(b []byte, i, floor int) (Finding, bool) {
	n := len(b)
	if i-3 >= floor && bnd(b, i-3) {
		if b[i-3] == 'g' && b[i-2] == 'h' && (b[i-1] == 'p' || b[i-1] == 'o' || b[i-1] == 'u' || b[i-1] == 's' || b[i-1] == 'r') ||
			eq(b, i-3, "npm") {
			e := runOf(b, i+1, cAlnum, 40)
			if e-(i+1) == 36 && bndEnd(b, e) && (e >= n || b[e] != '_') && crc32base62(b[i+1:i+31], b[i+31:e]) {
				rule := "github_classic"
				if b[i-3] == 'n' {
					rule = "npm"
				}
				return secret(rule, i-3, e), true
			}
			return Finding{}, false
		}
	}
	if i-6 >= floor && eq(b, i-6, "github") && bnd(b, i-6) && eq(b, i+1, "pat_") {
		// github_pat_ + 22 alnum + '_' + 59 alnum
		p := i + 5
		e1 := runOf(b, p, cAlnum, 30)
		if e1-p == 22 && e1 < n && b[e1] == '_' {
			e2 := runOf(b, e1+1, cAlnum, 70)
			if e2-(e1+1) == 59 && bndEnd(b, e2) {
				return secret("github_fine_grained", i-6, e2), true
			}
		}
		return Finding{}, false
	}
	if i-2 >= floor && (b[i-2] == 's' || b[i-2] == 'r') && b[i-1] == 'k' && bnd(b, i-2) && eq(b, i+1, "live_") {
		e := runOf(b, i+6, cAlnum, 256)
		if e-(i+6) >= 24 && bndEnd(b, e) {
			return secret("stripe", i-2, e), true
		}
	}
	return Finding{}, false
}

// tokenRun returns the end of a run of [A-Za-z0-9_-] at i (at most max).
func tokenRun(b []byte, i, max int) int { return runOf(b, i, cB64URL, max) }

// mixedClasses reports whether b[s:e] holds both letters and digits.
func mixedClasses(b []byte, s, e int) bool {
	l, d := false, false
	for k := s; k < e; k++ {
		if isDigit(b[k]) {
			d = true
		} else if is(b[k], cUpper|cLower) {
			l = true
		}
	}
	return l && d
}

// dashSecret runs at '-': glpat- (GitLab), xox?- (Slack), sk-ant-
// (Anthropic), sk-proj- / sk-svcacct- / sk-admin- / legacy sk- (OpenAI).
func dashSecret(b []byte, i, floor int) (Finding, bool) {
	n := len(b)
	if i-5 >= floor && eq(b, i-5, "glpat") && bnd(b, i-5) {
		e := runOf(b, i+1, cB64URL|cTokenV, 256)
		for e > i+1 && b[e-1] == '.' {
			e--
		}
		if e-(i+1) >= 20 && bndEnd(b, e) {
			return secret("gitlab", i-5, e), true
		}
		return Finding{}, false
	}
	if i-4 >= floor && eq(b, i-4, "xox") && bnd(b, i-4) {
		switch b[i-1] {
		case 'b', 'p', 'a', 'r', 's', 'e', 'o':
			e := runOf(b, i+1, cAlnum|cB64URL, 256)
			for e > i+1 && b[e-1] == '-' {
				e--
			}
			dashes := bytes.Count(b[i+1:e], []byte{'-'})
			if e-(i+1) >= 20 && dashes >= 1 && bndEnd(b, e) && mixedClasses(b, i+1, e) {
				return secret("slack", i-4, e), true
			}
		}
		return Finding{}, false
	}
	if i-2 >= floor && b[i-2] == 's' && b[i-1] == 'k' && bnd(b, i-2) {
		e := tokenRun(b, i+1, 400)
		for e > i+1 && b[e-1] == '-' {
			e--
		}
		body := b[i+1 : e]
		if !bndEnd(b, e) || e < n && b[e] == '.' && e+1 < n && isAlnum(b[e+1]) {
			return Finding{}, false
		}
		switch {
		case bytes.HasPrefix(body, []byte("ant-")):
			if len(body) >= 4+40 && mixedClasses(b, i+5, e) {
				return secret("anthropic", i-2, e), true
			}
		case bytes.HasPrefix(body, []byte("proj-")), bytes.HasPrefix(body, []byte("svcacct-")), bytes.HasPrefix(body, []byte("admin-")):
			if len(body) >= 40 && mixedClasses(b, i+1, e) {
				return secret("openai", i-2, e), true
			}
		default:
			// legacy sk- + 48 alphanumerics (they embed "T3BlbkFJ"), or
			// another provider's sk- key of at least 32 random characters
			if len(body) >= 32 && bytes.IndexByte(body, '-') < 0 && mixedClasses(b, i+1, e) && entropy(body) >= 3.5 {
				return secret("openai", i-2, e), true
			}
		}
	}
	return Finding{}, false
}

// upperASecret runs at 'A' at a token start: AKIA/ASIA (AWS access key
// ids, 16 more of [A-Z2-7]) and AIza (Google API keys, 35 more of
// [A-Za-z0-9_-]).
func upperASecret(b []byte, i int) (Finding, bool) {
	if i+4 > len(b) {
		return Finding{}, false
	}
	if (b[i+1] == 'K' || b[i+1] == 'S') && b[i+2] == 'I' && b[i+3] == 'A' {
		e := i + 20
		if e > len(b) || !bndEnd(b, e) {
			return Finding{}, false
		}
		for k := i + 4; k < e; k++ {
			if c := b[k]; !(isUpper(c) || c >= '2' && c <= '7') {
				return Finding{}, false
			}
		}
		return secret("aws_access_key_id", i, e), true
	}
	if b[i+1] == 'I' && b[i+2] == 'z' && b[i+3] == 'a' {
		e := tokenRun(b, i+4, 40)
		if e-(i+4) == 35 && bndEnd(b, e) && (e >= len(b) || b[e] != '-' && b[e] != '_') {
			return secret("google_api_key", i, e), true
		}
	}
	return Finding{}, false
}

// jwt validates header.payload.signature at s ("eyJ…"): base64url parts,
// a header that decodes to a JSON object with "alg" or "typ", a payload
// that starts like a JSON object.
func jwt(b []byte, s int) (Finding, bool) {
	h := tokenRun(b, s, 2048)
	if h-s < 10 || h >= len(b) || b[h] != '.' {
		return Finding{}, false
	}
	p := tokenRun(b, h+1, 16384)
	if p-(h+1) < 4 || !eq(b, h+1, "eyJ") || p >= len(b) || b[p] != '.' {
		return Finding{}, false
	}
	sg := tokenRun(b, p+1, 4096)
	if sg < len(b) && (b[sg] == '.' || b[sg] == '=') {
		return Finding{}, false
	}
	var hdr [1536]byte
	if (h-s)*3/4+3 > len(hdr) {
		return Finding{}, false
	}
	m, err := base64.RawURLEncoding.Decode(hdr[:], b[s:h])
	if err != nil {
		return Finding{}, false
	}
	d := bytes.TrimSpace(hdr[:m])
	if len(d) < 2 || d[0] != '{' || d[len(d)-1] != '}' ||
		!bytes.Contains(d, []byte(`"alg"`)) && !bytes.Contains(d, []byte(`"typ"`)) {
		return Finding{}, false
	}
	return secret("jwt", s, sg), true
}

const maxPEM = 16 << 10

// pem validates "-----BEGIN … PRIVATE KEY-----" at s and extends to its
// END line, or without one over the base64 body.
func pem(b []byte, s int) (Finding, bool) {
	hs := s + len("-----BEGIN ")
	k := bytes.Index(b[hs:min(len(b), hs+64)], []byte("-----"))
	if k < 0 {
		return Finding{}, false
	}
	label := b[hs : hs+k]
	if !bytes.HasSuffix(label, []byte("PRIVATE KEY")) && !bytes.HasSuffix(label, []byte("PRIVATE KEY BLOCK")) {
		return Finding{}, false
	}
	body := hs + k + 5
	lim := min(len(b), s+maxPEM)
	if x := bytes.Index(b[body:lim], []byte("-----END ")); x >= 0 {
		ee := body + x + len("-----END ")
		if y := bytes.Index(b[ee:min(lim, ee+64)], []byte("-----")); y >= 0 {
			return secret("pem_private_key", s, ee+y+5), true
		}
	}
	// no END (cut off, or a stream): everything that looks like the body
	e := body
	for e < lim && (is(b[e], cB64) || b[e] == '\n' || b[e] == '\r' || b[e] == ' ' || b[e] == ':' || b[e] == '-' || b[e] == ',') {
		e++
	}
	for e > body && (b[e-1] == '\n' || b[e-1] == '\r' || b[e-1] == ' ') {
		e--
	}
	return secret("pem_private_key", s, e), true
}

// entropy is the Shannon entropy of b in bits per byte.
func entropy(b []byte) float64 {
	if len(b) == 0 {
		return 0
	}
	var counts [256]uint16
	for _, c := range b {
		counts[c]++
	}
	h := 0.0
	n := float64(len(b))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}

// secretKeyName reports whether an assignment key names a secret:
// its name ends (case-insensitively, a trailing 's' allowed) in password,
// passwd, pwd, secret, token, passphrase, credential, apikey / api_key /
// api-key, privatekey / private_key, or the generic key, auth and pass;
// and it is not a public key. strong reports the specific names (the
// generic ones need a stronger value test).
func secretKeyName(k []byte) (ok, strong bool) {
	n := len(k)
	if n < 3 || n > 64 {
		return false, false
	}
	if lower(k[n-1]) == 's' && n > 4 && lower(k[n-2]) != 's' {
		n--
	}
	var strongW, weakW []string
	switch lower(k[n-1]) {
	case 'd':
		strongW = []string{"password", "passwd", "pwd"}
	case 't':
		strongW = []string{"secret"}
	case 'n':
		strongW = []string{"token", "authorization"}
	case 'e':
		strongW = []string{"passphrase"}
	case 'l':
		strongW = []string{"credential"}
	case 'y':
		strongW = []string{"apikey", "api_key", "api-key", "privatekey", "private_key"}
		weakW = []string{"key"}
	case 'h':
		weakW = []string{"auth"}
	case 's':
		weakW = []string{"pass"}
	default:
		return false, false
	}
	for _, w := range strongW {
		if n >= len(w) && eqFold(k, n-len(w), w) {
			return !hasFold(k[:n], "public"), true
		}
	}
	for _, w := range weakW {
		if n >= len(w) && eqFold(k, n-len(w), w) {
			return !hasFold(k[:n], "public") && !hasFold(k[:n], "pub_"), false
		}
	}
	return false, false
}

// hasFold reports whether b contains the lower-case ASCII w, folding b.
func hasFold(b []byte, w string) bool {
	for i := 0; i+len(w) <= len(b); i++ {
		if eqFold(b, i, w) {
			return true
		}
	}
	return false
}

var placeholderValues = [...]string{"password", "changeme", "secret", "example", "redacted", "xxxxxxxx", "null", "none",
	"undefined", "true", "false", "your_token", "your-token", "<token>", "********", "dummy", "test", "sample", "placeholder", "notset", "todo"}

// secretValue decides whether v, assigned to a secret-looking name, is a
// real secret rather than a placeholder, a reference or a word.
func secretValue(v []byte, strong bool) bool {
	if len(v) < 8 || len(v) > 512 {
		return false
	}
	switch v[0] {
	case '$', '{', '<', '%', '[', '(', '@', '/', '*', '~':
		return false
	}
	var lw [24]byte
	if len(v) <= len(lw) {
		for i, c := range v {
			lw[i] = lower(c)
		}
		for _, p := range placeholderValues {
			if bytes.Contains(lw[:len(v)], []byte(p)) {
				return false
			}
		}
	}
	classes := 0
	var seen [4]bool
	for _, c := range v {
		switch {
		case isDigit(c):
			seen[0] = true
		case isUpper(c):
			seen[1] = true
		case c >= 'a' && c <= 'z':
			seen[2] = true
		case c == ' ':
			return false
		default:
			seen[3] = true
		}
	}
	for _, s := range seen {
		if s {
			classes++
		}
	}
	h := entropy(v)
	if strong {
		return len(v) >= 12 && h >= 3.0 && classes >= 2 || len(v) >= 8 && classes >= 3 && h >= 2.5
	}
	return len(v) >= 16 && h >= 3.5 && seen[0] && (seen[1] || seen[2])
}

// assignment runs at '=' or ':': key (optionally quoted) before, value
// (optionally quoted) after. The finding covers the value only.
func assignment(b []byte, i, floor int) (Finding, bool) {
	n := len(b)
	// key
	ke := i
	for ke > floor && (b[ke-1] == ' ' || b[ke-1] == '\t') && i-ke < 4 {
		ke--
	}
	if ke > floor && (b[ke-1] == '"' || b[ke-1] == '\'') {
		ke--
	}
	ks := ke
	for ks > floor && ke-ks < 64 && is(b[ks-1], cKey) {
		ks--
	}
	if ks == ke {
		return Finding{}, false
	}
	ok, strong := secretKeyName(b[ks:ke])
	if !ok {
		return Finding{}, false
	}
	// value
	j := i + 1
	if i+1 < n && b[i] == ':' && b[i+1] == '=' { // Go's := and Pascal
		j++
	}
	for j < n && (b[j] == ' ' || b[j] == '\t') && j-i < 8 {
		j++
	}
	if j >= n {
		return Finding{}, false
	}
	if eqFold(b, j, "bearer ") || eqFold(b, j, "basic ") || eqFold(b, j, "token ") {
		j = bytes.IndexByte(b[j:], ' ') + j + 1
		for j < n && b[j] == ' ' {
			j++
		}
		if j >= n {
			return Finding{}, false
		}
	}
	var vs, ve int
	if q := b[j]; q == '"' || q == '\'' || q == '`' {
		vs = j + 1
		ve = vs
		for ve < n && b[ve] != q && b[ve] != '\n' && ve-vs <= 512 {
			if b[ve] == '\\' {
				ve++
			}
			ve++
		}
		if ve >= n || b[ve] != q {
			return Finding{}, false
		}
	} else {
		vs = j
		ve = vs
		for ve < n && ve-vs <= 512 && b[ve] > ' ' && b[ve] != ',' && b[ve] != ';' && b[ve] != '&' && b[ve] != '"' && b[ve] != '\'' && b[ve] != ')' && b[ve] != '}' && b[ve] != ']' {
			if b[ve] == '(' || b[ve] == '[' {
				return Finding{}, false // a call or an index expression, not a literal
			}
			ve++
		}
		for ve > vs && (b[ve-1] == '.' || b[ve-1] == ':') {
			ve--
		}
	}
	if ve > n || !secretValue(b[vs:ve], strong) {
		return Finding{}, false
	}
	return secret("assignment", vs, ve), true
}

// SecretAssignment reports whether value, given to a JSON member or a
// variable named key, looks like a secret (for JSON objects, where the
// key is a separate token).
func SecretAssignment(key, value []byte) bool {
	ok, strong := secretKeyName(key)
	return ok && secretValue(value, strong)
}
