package sensitive

import (
	"bytes"
	"sort"
)

// Detector finds entities in content. It is immutable after NewDetector
// and safe for concurrent use.
//
// The built-in types are found in one pass: a 256-entry table marks the
// few trigger bytes ('@', digits, ':', '=', '-', '_', '.', 'A', 'J', '+',
// '('); at a trigger an anchored validator looks back (never before the
// end of the previous finding) and forward. Checksummed types are tried
// before loose ones on the same bytes (a card before a phone number), and
// findings never overlap. Custom regular expressions and word lists run as
// separate passes, only when configured, and are merged.
type Detector struct {
	on     kind
	custom []custom
	words  *wordMatcher
}

// NewDetector returns a detector for the given built-in entity names (nil
// means all) and no custom entities. Unknown names are an error.
func NewDetector(entities []string) (*Detector, error) {
	cfg := Config{Entities: entities}
	return cfg.detector()
}

// Entities returns the entity types this detector reports.
func (d *Detector) Entities() []string {
	var out []string
	for _, b := range builtinNames {
		if d.on&b.k != 0 {
			out = append(out, b.name)
		}
	}
	for _, c := range d.custom {
		out = append(out, c.name)
	}
	if d.words != nil {
		out = append(out, d.words.names...)
	}
	return out
}

// Find appends the findings in b to dst, in order of Start, and returns
// it. It does not allocate when nothing is found (and dst has room).
func (d *Detector) Find(dst []Finding, b []byte) []Finding {
	n0 := len(dst)
	if d.on != 0 {
		dst = d.scan(dst, b)
	}
	if len(d.custom) == 0 && d.words == nil {
		return dst
	}
	m := len(dst)
	for i := range d.custom {
		dst = d.custom[i].find(dst, b)
	}
	if d.words != nil {
		dst = d.words.find(dst, b)
	}
	if len(dst) == m || m == n0 && len(d.custom)+btoi(d.words != nil) == 1 {
		return dst
	}
	return mergeFindings(dst, n0)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// mergeFindings sorts dst[n0:] by start (longer first) and drops findings
// that overlap an earlier one.
func mergeFindings(dst []Finding, n0 int) []Finding {
	fs := dst[n0:]
	sort.SliceStable(fs, func(i, j int) bool {
		if fs[i].Start != fs[j].Start {
			return fs[i].Start < fs[j].Start
		}
		return fs[i].End > fs[j].End
	})
	out := fs[:0]
	end := -1
	for _, f := range fs {
		if f.Start < end {
			continue
		}
		out = append(out, f)
		end = f.End
	}
	return dst[:n0+len(out)]
}

func (d *Detector) has(k kind) bool { return d.on&k != 0 }

// scan is the single pass over the built-in types.
func (d *Detector) scan(dst []Finding, b []byte) []Finding {
	n := len(b)
	floor := 0 // validators never look back before the previous finding's end
	i := 0
	for i < n {
		t := trig[b[i]]
		if t == tNone {
			i++
			continue
		}
		var f Finding
		ok := false
		next := i + 1
		switch t {
		case tAt:
			if d.has(kEmail) {
				f, ok = email(b, i, floor)
			}
		case tDigit:
			if i > 0 && isAlnum(b[i-1]) {
				// inside a token: an IBAN's check digits after its country
				// code, or bech32's "bc1"; otherwise skip the token.
				if i-2 >= floor && bnd(b, i-2) && d.has(kIBAN) && i+1 < n && isDigit(b[i+1]) &&
					(isUpper(b[i-1]) && isUpper(b[i-2]) || b[i-1] >= 'a' && b[i-1] <= 'z' && b[i-2] >= 'a' && b[i-2] <= 'z') {
					f, ok = iban(b, i-2)
				}
				if !ok && b[i] == '1' && i-2 >= floor && bnd(b, i-2) && d.has(kCrypto) &&
					(b[i-2] == 'b' && b[i-1] == 'c' || b[i-2] == 'B' && b[i-1] == 'C') {
					f, ok = bech32Addr(b, i-2)
				}
				if !ok {
					next = runOf(b, i, cAlnum, n)
				}
				break
			}
			f, ok, next = d.numeric(b, i)
		case tColon:
			f, ok = d.colon(b, i, floor)
		case tEq:
			if d.has(kSecret) {
				f, ok = assignment(b, i, floor)
			}
		case tDash:
			f, ok, next = d.dash(b, i, floor)
		case tUnder:
			if d.has(kSecret) {
				f, ok = underscoreSecret(b, i, floor)
			}
		case tDot:
			f, ok = d.dot(b, i, floor)
		case tUpperA:
			if !bnd(b, i) {
				next = runOf(b, i, cAlnum, n)
				break
			}
			if d.has(kSecret) {
				f, ok = upperASecret(b, i)
			}
		case tJ:
			if d.has(kSecret) && i-2 >= floor && b[i-1] == 'y' && b[i-2] == 'e' && bnd(b, i-2) {
				f, ok = jwt(b, i-2)
			}
		case tPlus:
			if d.has(kPhone) && i+1 < n && isDigit(b[i+1]) && (i == 0 || !isAlnum(b[i-1]) && b[i-1] != '+') {
				f, ok = phoneIntl(b, i)
			}
		case tParen:
			if d.has(kPhone) && i+1 < n && isDigit(b[i+1]) {
				f, ok = phoneParen(b, i)
			}
		}
		if ok {
			dst = append(dst, f)
			i, floor = f.End, f.End
			continue
		}
		if next <= i {
			next = i + 1
		}
		i = next
	}
	return dst
}

// ---- digits ----

// numTok is a run of digit groups separated by single ' ', '-' or '.'.
type numTok struct {
	start, end int
	ng         int
	glen       [8]uint8 // group lengths (first 8)
	gend       [8]int   // group end offsets
	sep        [8]byte  // separator after group k
	digits     int
}

func parseNum(b []byte, s int) numTok {
	t := numTok{start: s}
	j := s
	for {
		k := j
		for k < len(b) && isDigit(b[k]) && k-j < 24 {
			k++
		}
		if t.ng < len(t.glen) {
			t.glen[t.ng] = uint8(k - j)
			t.gend[t.ng] = k
		}
		t.ng++
		t.digits += k - j
		j = k
		if t.ng < 8 && t.digits < 24 && j+1 < len(b) && (b[j] == ' ' || b[j] == '-' || b[j] == '.') && isDigit(b[j+1]) {
			t.sep[t.ng-1] = b[j]
			j++
			continue
		}
		break
	}
	t.end = j
	return t
}

// numeric runs at a digit that starts a token.
func (d *Detector) numeric(b []byte, s int) (Finding, bool, int) {
	n := len(b)
	if d.has(kCrypto) {
		if b[s] == '0' && s+1 < n && (b[s+1] == 'x' || b[s+1] == 'X') {
			if f, ok := ethAddr(b, s); ok {
				return f, true, 0
			}
			return Finding{}, false, runOf(b, s, cAlnum, n)
		}
		if b[s] == '1' || b[s] == '3' {
			if e := runOf(b, s, cAlnum, 40); e-s >= 26 {
				if f, ok := base58Addr(b, s, e); ok {
					return f, true, 0
				}
				return Finding{}, false, e
			}
		}
	}
	// fast path: a lone run of fewer than 9 digits is nothing (a card
	// needs 13, an undashed SSN 9, everything else separators)
	e := s
	for e < n && isDigit(b[e]) && e-s < 9 {
		e++
	}
	if e-s < 9 && (e >= n || b[e] != ' ' && b[e] != '-' && b[e] != '.') {
		return Finding{}, false, e
	}
	t := parseNum(b, s)
	skip := t.end // on failure, resume after the whole number
	if t.ng > 1 && t.glen[0] == 2 && t.sep[0] == '-' || !bndEnd(b, t.end) {
		skip = t.gend[0] // "00-1A-2B-…" (a MAC) or glued to letters
	}
	if s > 0 && (b[s-1] == '.' || b[s-1] == '/' || b[s-1] == '-' && s > 1 && isDigit(b[s-2])) {
		// a fraction, a path segment or the tail of a dash-joined number
		return Finding{}, false, skip
	}
	if d.has(kCard) {
		if f, ok := card(b, &t); ok {
			return f, true, 0
		}
	}
	if !bndEnd(b, t.end) {
		return Finding{}, false, skip
	}
	if d.has(kSSN) {
		if f, ok := ssn(b, &t); ok {
			return f, true, 0
		}
	}
	if d.has(kIP) {
		if f, ok := ipv4(b, &t); ok {
			return f, true, 0
		}
	}
	if d.has(kPhone) {
		if f, ok := phoneNANP(b, &t); ok {
			return f, true, 0
		}
	}
	if d.has(kMAC) && t.ng == 3 && t.glen[0] == 4 && t.glen[1] == 4 && t.glen[2] == 4 && t.sep[0] == '.' && t.sep[1] == '.' {
		if f, ok := macCisco(b, s); ok {
			return f, true, 0
		}
	}
	return Finding{}, false, skip
}

// ---- ':' '=' '-' '.' ----

func (d *Detector) colon(b []byte, i, floor int) (Finding, bool) {
	n := len(b)
	if i+2 < n && b[i+1] == '/' && b[i+2] == '/' {
		if d.has(kURL | kSecret) {
			if f, ok := urlScheme(b, i, floor); ok {
				if f.Rule == "url" && d.has(kSecret) && (secretInside(b[f.Start:f.End]) || webhook(b[f.Start:f.End])) {
					// an API key or token in the query string
					f.Entity, f.Rule = Secret, "url_secret"
				}
				if f.Entity == Secret && d.has(kSecret) || f.Entity == URL && d.has(kURL) {
					return f, true
				}
			}
		}
		return Finding{}, false
	}
	if i-2 >= floor && isHex(b[i-1]) && isHex(b[i-2]) && bnd(b, i-2) && d.has(kMAC) {
		if f, ok := mac(b, i-2, ':'); ok {
			return f, true
		}
	}
	if d.has(kIP) {
		if f, ok := ipv6At(b, i, floor); ok {
			return f, true
		}
	}
	if d.has(kSecret) {
		return assignment(b, i, floor)
	}
	return Finding{}, false
}

var secretsOnly = &Detector{on: kSecret}

// webhook reports whether u is an incoming-webhook URL, whose path is the
// credential (Slack, Discord, Microsoft Teams/Office connectors).
func webhook(u []byte) bool {
	return bytes.Contains(u, []byte("://hooks.slack.com/services/T")) ||
		bytes.Contains(u, []byte("://discord.com/api/webhooks/")) ||
		bytes.Contains(u, []byte("://discordapp.com/api/webhooks/")) ||
		bytes.Contains(u, []byte(".webhook.office.com/webhookb2/"))
}

// secretInside reports whether a URL carries a secret (a vendor key, a
// JWT, a secret-named query parameter).
func secretInside(u []byte) bool {
	q := -1
	for k := 0; k < len(u); k++ {
		if u[k] == '?' || u[k] == '#' {
			q = k
			break
		}
	}
	if q < 0 {
		return false
	}
	var buf [2]Finding
	return len(secretsOnly.scan(buf[:0], u[q:])) > 0
}

func (d *Detector) dash(b []byte, i, floor int) (Finding, bool, int) {
	n := len(b)
	if i+1 < n && b[i+1] == '-' {
		if d.has(kSecret) && eq(b, i, "-----BEGIN ") {
			if f, ok := pem(b, i); ok {
				return f, true, 0
			}
		}
		return Finding{}, false, i + runDash(b, i)
	}
	if d.has(kSecret) {
		if f, ok := dashSecret(b, i, floor); ok {
			return f, true, 0
		}
	}
	if i-2 >= floor && isHex(b[i-1]) && isHex(b[i-2]) && bnd(b, i-2) && d.has(kMAC) {
		if f, ok := mac(b, i-2, '-'); ok {
			return f, true, 0
		}
	}
	return Finding{}, false, 0
}

func runDash(b []byte, i int) int {
	j := i
	for j < len(b) && b[j] == '-' {
		j++
	}
	return j - i
}

func (d *Detector) dot(b []byte, i, floor int) (Finding, bool) {
	if i-3 >= floor && d.has(kURL) && eqFold(b, i-3, "www") && bnd(b, i-3) {
		if f, ok := urlWWW(b, i-3); ok {
			return f, true
		}
	}
	if i-4 >= floor && d.has(kMAC) && isHex(b[i-1]) && isHex(b[i-2]) && isHex(b[i-3]) && isHex(b[i-4]) && bnd(b, i-4) {
		return macCisco(b, i-4)
	}
	return Finding{}, false
}

// FindString is Find on a string (converted without copying when the
// compiler can prove it safe; it may copy otherwise).
func (d *Detector) FindString(dst []Finding, s string) []Finding {
	return d.Find(dst, []byte(s))
}

// Any reports whether b contains at least one entity.
func (d *Detector) Any(b []byte) bool {
	var buf [4]Finding
	return len(d.Find(buf[:0], b)) > 0
}
