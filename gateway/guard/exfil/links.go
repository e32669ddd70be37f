package exfil

import (
	"bytes"
	"strings"

	"github.com/mandatehq/mandate/gateway/guard/jsonwalk"
)

// LinkKind is where a link was found.
type LinkKind uint8

const (
	KindURL   LinkKind = iota + 1 // a bare URL in text (scheme://… or www.…)
	KindLink                      // markdown [text](url), a reference [id]: url, HTML href
	KindImage                     // markdown ![alt](url) or HTML src: fetched without a click
	KindJSON                      // a JSON string value that is a URL or a host name
	KindEmail                     // an e-mail address in a JSON value
)

func (k LinkKind) String() string {
	switch k {
	case KindURL:
		return "url"
	case KindLink:
		return "link"
	case KindImage:
		return "image"
	case KindJSON:
		return "json"
	case KindEmail:
		return "email"
	}
	return "unknown"
}

// Link is a destination found in content. Start and End are its byte
// range (for JSON, the range of the string token in the raw document);
// URL is the text as written (bounded), Host its normalized host.
type Link struct {
	Kind       LinkKind
	URL        string
	Host       Host
	HostErr    error // the host did not normalize (fail closed)
	Start, End int
}

// Limits on extraction.
const (
	MaxLinks   = 256
	maxURLLen  = 4096
	maxLinkKey = 64
)

func isURLByte(c byte) bool {
	return c > ' ' && c != '"' && c != '<' && c != '>' && c != '`' && c != '{' && c != '}' && c != '|' && c != '^' && c != 0x7f
}

// urlEnd extends a URL from s and trims trailing punctuation and
// unbalanced closing brackets.
func urlEnd(b []byte, s int) int {
	e := s
	for e < len(b) && e-s < maxURLLen && isURLByte(b[e]) && b[e] != '\'' {
		e++
	}
	for e > s {
		c := b[e-1]
		if strings.IndexByte(".,;:!?*'", c) >= 0 {
			e--
			continue
		}
		if c == ')' || c == ']' {
			open := byte('(')
			if c == ']' {
				open = '['
			}
			if bytes.Count(b[s:e], []byte{open}) < bytes.Count(b[s:e], []byte{c}) {
				e--
				continue
			}
		}
		break
	}
	return e
}

func link(kind LinkKind, raw []byte, s, e int) Link {
	l := Link{Kind: kind, URL: string(raw), Start: s, End: e}
	h, ok, err := URLHost(l.URL)
	switch {
	case err != nil:
		l.HostErr = err
	case ok:
		l.Host = h
	}
	return l
}

// ExtractText finds links in text (model output, a text tool result, a
// message): markdown images and links (inline and reference style), HTML
// src and href attributes, bare scheme://… URLs (including
// protocol-relative //host in markdown and HTML) and www.… hosts. Links
// without a host (relative references, mailto:) are not returned.
func ExtractText(text []byte) []Link {
	var out []Link
	eachTextLink(text, func(kind LinkKind, raw []byte, s, e int) bool {
		var l Link
		if kind == KindURL && len(raw) > 4 && strings.EqualFold(string(raw[:4]), "www.") {
			l = link(kind, append([]byte("http://"), raw...), s, e)
		} else {
			l = link(kind, raw, s, e)
		}
		if l.Host.Name != "" || l.Host.IP.IsValid() || l.HostErr != nil {
			out = append(out, l)
		}
		return len(out) < MaxLinks
	})
	return out
}

// eachTextLink calls fn for every link candidate in text (the URL as
// written, "www.…" without a scheme) until fn returns false. It does not
// allocate.
func eachTextLink(text []byte, fn func(kind LinkKind, raw []byte, s, e int) bool) {
	covered := 0 // bare URLs inside an already extracted link are skipped
	more := true
	add := func(kind LinkKind, raw []byte, s, e int) {
		more = more && fn(kind, raw, s, e)
	}
	for i := 0; i < len(text) && more; i++ {
		for i < len(text) && !linkTrigger[text[i]] {
			i++ // most bytes start nothing
		}
		if i >= len(text) {
			break
		}
		c := text[i]
		switch {
		case c == ']' && i+1 < len(text) && text[i+1] == '(':
			// [text](url "title") or ![alt](url)
			s := i + 2
			for s < len(text) && text[s] == ' ' {
				s++
			}
			if s < len(text) && text[s] == '<' {
				s++
			}
			e := s
			depth := 0
			for e < len(text) && e-s < maxURLLen && text[e] > ' ' && text[e] != '>' {
				if text[e] == '(' {
					depth++
				} else if text[e] == ')' {
					if depth == 0 {
						break
					}
					depth--
				}
				e++
			}
			kind := KindLink
			if open := bytes.LastIndexByte(text[max(0, i-2048):i], '['); open >= 0 {
				o := max(0, i-2048) + open
				if o > 0 && text[o-1] == '!' {
					kind = KindImage
				}
			}
			if e > s {
				add(kind, text[s:e], s, e)
				covered = e
			}
		case c == ']' && i+1 < len(text) && text[i+1] == ':' && lineStartBracket(text, i):
			// [id]: url
			s := i + 2
			for s < len(text) && (text[s] == ' ' || text[s] == '\t') {
				s++
			}
			if s < len(text) && text[s] == '<' {
				s++
			}
			e := s
			for e < len(text) && e-s < maxURLLen && text[e] > ' ' && text[e] != '>' {
				e++
			}
			if e > s {
				add(KindLink, text[s:e], s, e)
				covered = e
			}
		case (c == '=') && i >= 3 && attrName(text, i):
			// src= href= (HTML)
			kind := KindLink
			if lower(text[i-3]) == 's' {
				kind = KindImage
			}
			s := i + 1
			q := byte(0)
			if s < len(text) && (text[s] == '"' || text[s] == '\'') {
				q = text[s]
				s++
			}
			e := s
			for e < len(text) && e-s < maxURLLen && text[e] != q && (q != 0 || text[e] > ' ' && text[e] != '>') {
				e++
			}
			if e > s {
				add(kind, text[s:e], s, e)
				covered = e
			}
		case c == ':' && i+2 < len(text) && text[i+1] == '/' && text[i+2] == '/' && i >= covered:
			s := i
			for s > 0 && i-s < 32 && (isAlnum(text[s-1]) || text[s-1] == '+' || text[s-1] == '-' || text[s-1] == '.') {
				s--
			}
			if s == i || s < covered {
				continue
			}
			e := urlEnd(text, s)
			add(KindURL, text[s:e], s, e)
			covered, i = e, e-1
		case (c == 'w' || c == 'W') && i >= covered && (i == 0 || !isAlnum(text[i-1]) && text[i-1] != '.' && text[i-1] != '/') &&
			i+4 < len(text) && strings.EqualFold(string(text[i:i+4]), "www."):
			e := urlEnd(text, i)
			add(KindURL, text[i:e], i, e)
			covered, i = e, e-1
		}
	}
}

// suffixFold reports whether k ends with the lower-case ASCII n, ASCII
// case folded.
func suffixFold(k []byte, n string) bool {
	o := len(k) - len(n)
	for i := 0; i < len(n); i++ {
		if lower(k[o+i]) != n[i] {
			return false
		}
	}
	return true
}

// linkTrigger marks the bytes eachTextLink looks at: ']' (markdown),
// '=' (HTML attributes), ':' (scheme://), 'w' and 'W' (www.).
var linkTrigger = func() (t [256]bool) {
	for _, c := range "]=:wW" {
		t[c] = true
	}
	return t
}()

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// attrName reports whether text[:i] ends with src or href (an HTML
// attribute before '=').
func attrName(text []byte, i int) bool {
	w := func(n string) bool {
		k := i - len(n)
		return k >= 0 && strings.EqualFold(string(text[k:i]), n) && (k == 0 || text[k-1] == ' ' || text[k-1] == '\t' || text[k-1] == '\n')
	}
	return w("src") || w("href") || w("action") || w("poster") || w("data")
}

// lineStartBracket reports whether the ']' at i closes a "[id]" that
// starts a line (a markdown reference definition).
func lineStartBracket(text []byte, i int) bool {
	o := bytes.LastIndexByte(text[max(0, i-256):i], '[')
	if o < 0 {
		return false
	}
	o += max(0, i-256)
	for k := o - 1; k >= 0; k-- {
		if text[k] == '\n' {
			return true
		}
		if text[k] != ' ' {
			return false
		}
	}
	return true
}

// linkKeys are member names whose string values are destinations even
// without a scheme (a bare host name).
var linkKeys = []string{"url", "uri", "href", "link", "endpoint", "webhook", "callback", "host", "hostname", "domain", "server", "target", "destination", "redirect", "to", "recipient", "recipients", "cc", "bcc", "email", "address"}

func isLinkKey(k []byte) bool {
	if len(k) > maxLinkKey {
		return false
	}
	if utf8ASCII(k) {
		// Without allocating: n, or a longer name ending in "_"+n, or in n
		// (but "to" and "cc", too common at the end of words).
		for _, n := range linkKeys {
			if len(k) < len(n) || !suffixFold(k, n) {
				continue
			}
			if len(k) == len(n) || k[len(k)-len(n)-1] == '_' || n != "to" && n != "cc" {
				return true
			}
		}
		return false
	}
	lk := strings.ToLower(string(k))
	for _, n := range linkKeys {
		if lk == n || strings.HasSuffix(lk, "_"+n) || strings.HasSuffix(lk, n) && len(lk) > len(n) && n != "to" && n != "cc" {
			return true
		}
	}
	return false
}

// ExtractJSON finds links in a JSON document (tool arguments): string
// values that are URLs, host names under destination-like member names
// (url, host, webhook, to, …), e-mail addresses (KindEmail, host = the
// domain), and links inside longer strings. Ranges are the string
// tokens'. Malformed JSON is an error.
func ExtractJSON(raw []byte) ([]Link, error) {
	var out []Link
	err := eachJSONLink(raw, func(kind LinkKind, val, host []byte, s, e int) bool {
		l := jsonLink(kind, val, host, s, e)
		if host == nil && l.Host.Name == "" && !l.Host.IP.IsValid() && l.HostErr == nil && !isWWW(kind, val) {
			return true // no host: a relative reference
		}
		out = append(out, l)
		return len(out) < MaxLinks
	})
	return out, err
}

// jsonLink is the Link of a destination eachJSONLink found: val the URL
// (or the whole value), host set when known without parsing a URL; a
// www. name without a scheme is read as an http URL.
func jsonLink(kind LinkKind, val, host []byte, s, e int) Link {
	switch {
	case host != nil:
		l := Link{Kind: kind, Start: s, End: e, URL: string(val)}
		l.Host, l.HostErr = NormalizeHost(string(host))
		return l
	case isWWW(kind, val):
		return link(kind, append([]byte("http://"), val...), s, e)
	}
	return link(kind, val, s, e)
}

func isWWW(kind LinkKind, val []byte) bool {
	return kind == KindURL && len(val) > 4 && strings.EqualFold(string(val[:4]), "www.")
}

// eachJSONLink calls fn for every destination in a JSON document: val is
// the URL (or the whole value for e-mails and bare hosts), host is set
// when the host is known without parsing a URL (e-mail domains, bare
// host names). s, e is the string token's range. It allocates nothing but
// its walker.
func eachJSONLink(raw []byte, fn func(kind LinkKind, val, host []byte, s, e int) bool) error {
	w := jsonwalk.Get()
	defer jsonwalk.Put(w)
	return w.Walk(raw, jsonLinks(fn))
}

// eachDocLink is eachJSONLink on a walked document.
func eachDocLink(doc *jsonwalk.Doc, fn func(kind LinkKind, val, host []byte, s, e int) bool) error {
	return doc.Each(jsonLinks(fn))
}

func jsonLinks(fn func(kind LinkKind, val, host []byte, s, e int) bool) jsonwalk.Visitor {
	more := true
	return jsonwalk.Func(func(t *jsonwalk.Token) error {
		if t.Kind != jsonwalk.String || !more {
			return nil
		}
		v := bytes.TrimSpace(t.Value)
		if len(v) == 0 || len(v) > maxURLLen*4 {
			return nil
		}
		if !bytes.ContainsAny(v, " \n\t") {
			// a whole value that is a URL, an e-mail address, or (under a
			// destination-like name) a host
			if maybeURL(v) {
				if _, ok, err := urlHostFast(v); err != nil || ok {
					more = fn(KindJSON, v, nil, t.Start, t.End)
					return nil
				}
			}
			if at := bytes.LastIndexByte(v, '@'); at > 0 && at < len(v)-1 && bytes.IndexByte(v[at+1:], '.') > 0 && !bytes.ContainsAny(v, "/:") {
				more = fn(KindEmail, v, v[at+1:], t.Start, t.End)
				return nil
			}
			if t.Key != nil && isLinkKey(t.Key) && bytes.IndexByte(v, '.') > 0 && !bytes.ContainsAny(v, "@") {
				host := v
				if k := bytes.IndexAny(host, "/?#"); k >= 0 {
					host = host[:k]
				}
				if k := bytes.LastIndexByte(host, ':'); k >= 0 && !bytes.HasPrefix(host, []byte("[")) {
					host = host[:k]
				}
				if hostLike(string(host)) {
					more = fn(KindJSON, v, host, t.Start, t.End)
					return nil
				}
			}
		}
		// links inside free text (a message body, a comment)
		eachTextLink(t.Value, func(kind LinkKind, u []byte, _, _ int) bool {
			more = fn(kind, u, nil, t.Start, t.End)
			return more
		})
		return nil
	})
}

// urlHostFast is URLHost for the common case (an ASCII URL with a
// lower-case host) without allocating; anything else goes through URLHost.
// The returned host bytes point into u (nil for an IP address or the slow
// path, where h is set).
func urlHostFast(u []byte) (host []byte, ok bool, err error) {
	s := bytes.TrimSpace(u)
	if bytes.ContainsAny(s, "\t\n\r\\%") || !utf8ASCII(s) {
		return slowHost(u)
	}
	var rest []byte
	switch {
	case bytes.HasPrefix(s, []byte("//")):
		rest = s[2:]
	case len(s) > 4 && strings.EqualFold(string(s[:4]), "www."):
		rest = s
	default:
		i := bytes.IndexByte(s, ':')
		if i <= 0 || !validScheme(s[:i]) {
			return nil, false, nil
		}
		after := s[i+1:]
		if specialFold(s[:i]) {
			after = bytes.TrimLeft(after, "/")
		} else if bytes.HasPrefix(after, []byte("//")) {
			after = after[2:]
		} else {
			return nil, false, nil
		}
		rest = after
	}
	end := bytes.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	if at := bytes.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:]
	}
	h := auth
	if k := bytes.LastIndexByte(h, ':'); k >= 0 {
		h = h[:k]
	}
	if len(h) == 0 || h[0] == '[' || !plainASCIIHost(h) || numericLast(h) {
		return slowHost(u)
	}
	return bytes.TrimSuffix(h, []byte(".")), true, nil
}

func slowHost(u []byte) ([]byte, bool, error) {
	_, ok, err := URLHost(string(u))
	return nil, ok, err
}

func utf8ASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// numericLast reports whether the last label of h is numeric (an IPv4
// literal in some form).
func numericLast(h []byte) bool {
	h = bytes.TrimSuffix(h, []byte("."))
	if i := bytes.LastIndexByte(h, '.'); i >= 0 {
		h = h[i+1:]
	}
	return numericLabel(h)
}

// maybeURL is a cheap filter before URLHost: an absolute URL has a ':'
// (scheme) and a protocol-relative one starts with two slashes.
func maybeURL(v []byte) bool {
	return bytes.IndexByte(v, ':') > 0 || bytes.HasPrefix(v, []byte("//")) || bytes.HasPrefix(v, []byte(`\\`))
}

// hostLike reports whether s looks like a host name (labels of letters,
// digits and '-', a top-level label of at least two letters) or an IPv4
// address, so that a bare value such as "v1.2" or "3.5" is not taken for
// a destination.
func hostLike(s string) bool {
	labels := strings.Split(strings.TrimSuffix(s, "."), ".")
	if len(labels) < 2 {
		return false
	}
	allNum := true
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(isAlnum(c) || c == '-' || c >= 0x80) {
				return false
			}
			if c < '0' || c > '9' {
				allNum = false
			}
		}
	}
	if allNum {
		return len(labels) == 4
	}
	tld := labels[len(labels)-1]
	if strings.HasPrefix(tld, "xn--") {
		return true
	}
	if len(tld) < 2 {
		return false
	}
	for i := 0; i < len(tld); i++ {
		if !(tld[i] >= 'a' && tld[i] <= 'z' || tld[i] >= 'A' && tld[i] <= 'Z' || tld[i] >= 0x80) {
			return false
		}
	}
	return true
}
