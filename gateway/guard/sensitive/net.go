package sensitive

// EMAIL, URL, IP_ADDRESS and MAC_ADDRESS validators.

// fileExt are "top-level domains" that are really file extensions
// (logo@2x.png, icon@3x.webp): an e-mail domain ending in one is refused.
var fileExt = [...]string{"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "css", "js", "mjs", "ts", "tsx", "jsx", "json", "yaml", "yml", "toml", "lock", "txt", "log", "map", "min", "html", "htm", "xml", "pdf", "zip", "gz", "tar", "csv"}

// hostname parses dot-separated labels (alnum and '-', also '_' when
// underscore is set) at i. It returns the end, the number of labels and
// the span of the last label.
func hostname(b []byte, i int, underscore bool) (end, labels, lastS, lastE int) {
	j := i
	for {
		k := j
		for k < len(b) && k-j < 63 && (isAlnum(b[k]) || b[k] == '-' || underscore && b[k] == '_') {
			k++
		}
		if k == j || b[j] == '-' || b[k-1] == '-' {
			return j, labels, lastS, lastE
		}
		labels++
		lastS, lastE = j, k
		if k+1 < len(b) && b[k] == '.' && isAlnum(b[k+1]) && k-i < 253 {
			j = k + 1
			continue
		}
		return k, labels, lastS, lastE
	}
}

// tldOK reports whether b[s:e] can be a top-level domain: letters, at
// least two, or an IDNA "xn--" label.
func tldOK(b []byte, s, e int) bool {
	if e-s >= 4 && eqFold(b, s, "xn--") {
		return true
	}
	if e-s < 2 || e-s > 24 {
		return false
	}
	for k := s; k < e; k++ {
		if !(b[k]|0x20 >= 'a' && b[k]|0x20 <= 'z') {
			return false
		}
	}
	return true
}

func email(b []byte, at, floor int) (Finding, bool) {
	s := at
	for s > floor && at-s < 64 && is(b[s-1], cLocal) {
		s--
	}
	if s > floor && is(b[s-1], cLocal) {
		return Finding{}, false // local part longer than 64
	}
	for s < at && (b[s] == '.' || b[s] == '-' || b[s] == '+' || b[s] == '%') {
		s++
	}
	if s == at || b[at-1] == '.' {
		return Finding{}, false
	}
	for k := s + 1; k < at; k++ {
		if b[k] == '.' && b[k-1] == '.' {
			return Finding{}, false
		}
	}
	e, labels, ls, le := hostname(b, at+1, false)
	if labels < 2 || !tldOK(b, ls, le) || e < len(b) && (b[e] == '-' || b[e] == '_' || b[e] == '@') {
		return Finding{}, false
	}
	for _, x := range fileExt {
		if le-ls == len(x) && eqFold(b, ls, x) {
			return Finding{}, false
		}
	}
	return Finding{Entity: Email, Rule: "email", Start: s, End: e}, true
}

var urlSchemes = [...]string{"http", "https", "ftp", "ftps", "sftp", "ws", "wss", "ssh", "git", "s3", "gs",
	"postgres", "postgresql", "mysql", "mariadb", "mongodb", "mongodb+srv", "redis", "rediss", "amqp", "amqps",
	"smtp", "smtps", "imap", "imaps", "ldap", "ldaps", "sqlserver", "mssql", "clickhouse", "nats", "kafka", "git+ssh", "git+https"}

// urlScheme validates a URL whose "://" is at colon.
func urlScheme(b []byte, colon, floor int) (Finding, bool) {
	s := colon
	for s > floor && colon-s < 16 && (isAlnum(b[s-1]) || b[s-1] == '+' || b[s-1] == '.' || b[s-1] == '-') {
		s--
	}
	for s < colon && !isAlnum(b[s]) {
		s++
	}
	if s == colon || !bnd(b, s) {
		return Finding{}, false
	}
	known := false
	for _, sc := range urlSchemes {
		if colon-s == len(sc) && eqFold(b, s, sc) {
			known = true
			break
		}
	}
	if !known {
		return Finding{}, false
	}
	if s-5 >= floor && eqFold(b, s-5, "jdbc:") && bnd(b, s-5) {
		s -= 5
	}
	j := colon + 3
	ae := j
	for ae < len(b) && ae-s < 2048 && is(b[ae], cURL) && b[ae] != '/' && b[ae] != '?' && b[ae] != '#' {
		ae++
	}
	hs := j
	cred := false
	for k := ae - 1; k >= j; k-- {
		if b[k] == '@' {
			hs = k + 1
			for m := j; m < k; m++ {
				if b[m] == ':' && m+1 < k {
					cred = true
				}
			}
			break
		}
	}
	he, ok := urlHost(b, hs, ae)
	if !ok {
		return Finding{}, false
	}
	if he < ae && b[he] == ':' {
		p := he + 1
		for p < ae && isDigit(b[p]) {
			p++
		}
		he = p
	}
	if he != ae && !cred {
		ae = he // something odd after the host: end the URL there
	}
	e := urlTail(b, s, ae)
	rule, ent := "url", URL
	if cred {
		rule, ent = "url_credentials", Secret
	}
	return Finding{Entity: ent, Rule: rule, Start: s, End: e}, true
}

// urlHost checks the host starting at hs (before ae) and returns its end.
func urlHost(b []byte, hs, ae int) (int, bool) {
	if hs >= ae {
		return 0, false
	}
	if b[hs] == '[' {
		for k := hs + 1; k < ae; k++ {
			if b[k] == ']' {
				return k + 1, k > hs+2
			}
		}
		return 0, false
	}
	he, labels, ls, le := hostname(b, hs, true)
	if labels == 0 {
		return 0, false
	}
	if labels == 1 && !(le-ls == 9 && eqFold(b, ls, "localhost")) {
		return 0, false
	}
	if labels > 1 && !tldOK(b, ls, le) {
		// an IPv4 literal is four numeric labels
		if !(labels == 4 && allDigitsOrDots(b[hs:he])) {
			return 0, false
		}
	}
	return he, true
}

func allDigitsOrDots(b []byte) bool {
	for _, c := range b {
		if !isDigit(c) && c != '.' {
			return false
		}
	}
	return true
}

// urlTail extends a URL from e over path, query and fragment characters
// and trims trailing punctuation and unbalanced brackets.
func urlTail(b []byte, s, e int) int {
	for e < len(b) && e-s < 2048 && is(b[e], cURL) {
		e++
	}
	for e > s {
		c := b[e-1]
		switch c {
		case '.', ',', ';', ':', '!', '?', '\'', '*':
			e--
			continue
		case ')', ']':
			open, close := byte('('), c
			if c == ']' {
				open = '['
			}
			depth := 0
			for k := s; k < e; k++ {
				if b[k] == open {
					depth++
				} else if b[k] == close {
					depth--
				}
			}
			if depth < 0 {
				e--
				continue
			}
		}
		break
	}
	return e
}

func urlWWW(b []byte, s int) (Finding, bool) {
	he, labels, ls, le := hostname(b, s, false)
	if labels < 3 || !tldOK(b, ls, le) {
		return Finding{}, false
	}
	e := he
	if e < len(b) && b[e] == ':' {
		p := e + 1
		for p < len(b) && isDigit(b[p]) {
			p++
		}
		if p > e+1 {
			e = p
		}
	}
	if e < len(b) && (b[e] == '/' || b[e] == '?' || b[e] == '#') {
		e = urlTail(b, s, e)
	} else if !bndEnd(b, e) {
		return Finding{}, false
	}
	return Finding{Entity: URL, Rule: "url", Start: s, End: e}, true
}

func ipv4(b []byte, t *numTok) (Finding, bool) {
	if t.ng != 4 {
		return Finding{}, false
	}
	pos := t.start
	for g := 0; g < 4; g++ {
		if g < 3 && t.sep[g] != '.' {
			return Finding{}, false
		}
		l := int(t.glen[g])
		if l == 0 || l > 3 || l > 1 && l < 3 && b[pos] == '0' {
			return Finding{}, false
		}
		v := 0
		for k := pos; k < pos+l; k++ {
			v = v*10 + int(b[k]-'0')
		}
		if v > 255 {
			return Finding{}, false
		}
		pos += l + 1
	}
	if t.end < len(b) && b[t.end] == '.' && t.end+1 < len(b) && isDigit(b[t.end+1]) {
		return Finding{}, false
	}
	return Finding{Entity: IPAddress, Rule: "ipv4", Start: t.start, End: t.end}, true
}

// ipv6At validates an IPv6 address whose first ':' is at i.
func ipv6At(b []byte, i, floor int) (Finding, bool) {
	n := len(b)
	s := i
	for s > floor && i-s < 4 && isHex(b[s-1]) {
		s--
	}
	if s == i && !(i+1 < n && b[i+1] == ':') {
		return Finding{}, false
	}
	if !bnd(b, s) || s > 0 && (b[s-1] == ':' || b[s-1] == '.' || b[s-1] == '_' || b[s-1] == '-') {
		return Finding{}, false
	}
	groups, dc := 0, false
	j := s
	if b[j] == ':' {
		j += 2
		dc = true
		if j >= n || !isHex(b[j]) {
			return Finding{}, false
		}
	}
	end := j
	for j < n {
		k := j
		for k < n && k-j < 5 && isHex(b[k]) {
			k++
		}
		if k == j || k-j > 4 {
			if k-j > 4 {
				return Finding{}, false
			}
			break
		}
		if k < n && b[k] == '.' {
			// embedded IPv4 as the last two groups
			t := parseNum(b, j)
			if _, ok := ipv4(b, &t); !ok || groups > 6 {
				return Finding{}, false
			}
			groups += 2
			end = t.end
			j = end
			break
		}
		groups++
		end = k
		if k+1 < n && b[k] == ':' && b[k+1] == ':' {
			if dc {
				return Finding{}, false
			}
			dc = true
			end = k + 2
			j = k + 2
			continue
		}
		if k+1 < n && b[k] == ':' && isHex(b[k+1]) {
			j = k + 1
			continue
		}
		break
	}
	if groups > 8 || !dc && groups != 8 || dc && groups > 7 || groups < 1 {
		return Finding{}, false
	}
	if end < n && (isAlnum(b[end]) || b[end] == ':' || b[end] == '.' && end+1 < n && isAlnum(b[end+1])) {
		return Finding{}, false
	}
	return Finding{Entity: IPAddress, Rule: "ipv6", Start: s, End: end}, true
}

// mac validates six hex pairs joined by sep at s.
func mac(b []byte, s int, sep byte) (Finding, bool) {
	e := s + 17
	if e > len(b) {
		return Finding{}, false
	}
	for g := 0; g < 6; g++ {
		p := s + 3*g
		if !isHex(b[p]) || !isHex(b[p+1]) || g < 5 && b[p+2] != sep {
			return Finding{}, false
		}
	}
	if e < len(b) && (isAlnum(b[e]) || b[e] == sep && e+1 < len(b) && isHex(b[e+1])) {
		return Finding{}, false
	}
	return Finding{Entity: MACAddress, Rule: "mac", Start: s, End: e}, true
}

// macCisco validates hhhh.hhhh.hhhh at s.
func macCisco(b []byte, s int) (Finding, bool) {
	e := s + 14
	if e > len(b) {
		return Finding{}, false
	}
	for g := 0; g < 3; g++ {
		p := s + 5*g
		for k := p; k < p+4; k++ {
			if !isHex(b[k]) {
				return Finding{}, false
			}
		}
		if g < 2 && b[p+4] != '.' {
			return Finding{}, false
		}
	}
	if e < len(b) && (isAlnum(b[e]) || b[e] == '.' && e+1 < len(b) && isAlnum(b[e+1])) {
		return Finding{}, false
	}
	return Finding{Entity: MACAddress, Rule: "mac", Start: s, End: e}, true
}
