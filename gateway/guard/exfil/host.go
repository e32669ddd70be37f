package exfil

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// Host is a URL's host as the allow-list compares it: a lower-case ASCII
// (IDNA) name without a trailing dot, or an IP address.
type Host struct {
	Name string     // "" for an IP literal
	IP   netip.Addr // valid for an IP literal
}

func (h Host) String() string {
	if h.IP.IsValid() {
		return h.IP.String()
	}
	return h.Name
}

// ErrHost is a host that cannot be normalized (the caller fails closed).
var ErrHost = errors.New("invalid host")

var idnaProfile = idna.New(idna.MapForLookup(), idna.BidiRule(), idna.Transitional(false), idna.StrictDomainName(false), idna.VerifyDNSLength(false))

// NormalizeHost normalizes a host as a browser would before connecting:
// percent-decoding, IDNA mapping to ASCII (case folding, full-width
// forms), a trailing dot dropped, and IPv4 in any of the forms browsers
// accept (decimal 2130706433, hex 0x7f.1, octal 0177.0.0.1, short 127.1)
// and bracketed IPv6 as IP addresses.
func NormalizeHost(h string) (Host, error) {
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return Host{}, fmt.Errorf("%w: %q", ErrHost, h)
		}
		inner := h[1 : len(h)-1]
		if i := strings.IndexByte(inner, '%'); i >= 0 { // zone
			inner = inner[:i]
		}
		ip, err := netip.ParseAddr(inner)
		if err != nil || !ip.Is6() {
			return Host{}, fmt.Errorf("%w: %q", ErrHost, h)
		}
		return Host{IP: ip.Unmap()}, nil
	}
	if strings.Contains(h, "%") {
		u, err := url.PathUnescape(h)
		if err != nil {
			return Host{}, fmt.Errorf("%w: %q", ErrHost, h)
		}
		h = u
	}
	if h == "" || len(h) > 253*4 {
		return Host{}, fmt.Errorf("%w: empty or too long", ErrHost)
	}
	a := h
	if !plainASCIIHost(h) {
		var err error
		if a, err = idnaProfile.ToASCII(h); err != nil {
			return Host{}, fmt.Errorf("%w: %q: %v", ErrHost, h, err)
		}
	}
	a = strings.ToLower(strings.TrimSuffix(a, "."))
	if a == "" || strings.HasSuffix(a, ".") || strings.Contains(a, "..") {
		return Host{}, fmt.Errorf("%w: %q", ErrHost, h)
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return Host{}, fmt.Errorf("%w: %q", ErrHost, h)
		}
	}
	if ip, ok, err := parseIPv4(a); err != nil {
		return Host{}, err
	} else if ok {
		return Host{IP: ip}, nil
	}
	return Host{Name: a}, nil
}

// plainASCIIHost reports whether h is already in the form IDNA mapping
// would produce: lower-case ASCII letters, digits, '-' and '.', no label
// starting or ending with '-' and no punycode label to check.
func plainASCIIHost[T ~string | ~[]byte](h T) bool {
	prev := byte('.')
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-':
			if prev == '.' {
				return false
			}
		case c == '.':
			if prev == '-' || prev == '.' {
				return false // empty label, or a label ending in '-'
			}
		default:
			return false
		}
		prev = c
	}
	if prev == '-' {
		return false
	}
	for i := 0; i+4 <= len(h); i++ {
		if h[i] == 'x' && h[i+1] == 'n' && h[i+2] == '-' && h[i+3] == '-' {
			return false
		}
	}
	return true
}

// parseIPv4 implements the WHATWG URL IPv4 parser: when the last label is
// numeric the host must be an IPv4 address (1 to 4 parts, each decimal,
// 0x hex or 0 octal; the last part fills the remaining bytes).
func parseIPv4(h string) (netip.Addr, bool, error) {
	parts := strings.Split(h, ".")
	if parts[len(parts)-1] == "" && len(parts) > 1 {
		parts = parts[:len(parts)-1]
	}
	if !numericLabel(parts[len(parts)-1]) {
		return netip.Addr{}, false, nil
	}
	if len(parts) > 4 {
		return netip.Addr{}, false, fmt.Errorf("%w: %q", ErrHost, h)
	}
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, ok := ipv4Number(p)
		if !ok {
			return netip.Addr{}, false, fmt.Errorf("%w: %q", ErrHost, h)
		}
		nums[i] = n
	}
	for _, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false, fmt.Errorf("%w: %q", ErrHost, h)
		}
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false, fmt.Errorf("%w: %q", ErrHost, h)
	}
	v := last
	for i, n := range nums[:len(nums)-1] {
		v += n << (8 * (3 - i))
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, nil
}

func numericLabel[T ~string | ~[]byte](p T) bool {
	if len(p) == 0 {
		return false
	}
	if len(p) >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') {
		for i := 2; i < len(p); i++ {
			c := p[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

func ipv4Number(p string) (uint64, bool) {
	base := 10
	switch {
	case strings.HasPrefix(p, "0x") || strings.HasPrefix(p, "0X"):
		p, base = p[2:], 16
		if p == "" {
			return 0, true
		}
	case len(p) > 1 && p[0] == '0':
		p, base = p[1:], 8
	}
	n, err := strconv.ParseUint(p, base, 64)
	return n, err == nil
}

// URLHost extracts and normalizes the host of an absolute URL the way
// browsers parse special URLs: tabs and newlines removed, '\' ending the
// authority like '/', the userinfo (up to the last '@') dropped, the port
// removed. It also accepts protocol-relative "//host/…". ok is false for
// URLs without a host (relative references, mailto:, data:).
func URLHost(raw string) (h Host, ok bool, err error) {
	s := strings.TrimSpace(raw)
	if strings.ContainsAny(s, "\t\n\r") {
		s = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return -1
			}
			return r
		}, s)
	}
	var rest string
	switch {
	case strings.HasPrefix(s, "//") || strings.HasPrefix(s, `\\`):
		rest = s[2:]
	default:
		i := strings.IndexByte(s, ':')
		if i <= 0 || !validScheme(s[:i]) {
			return Host{}, false, nil
		}
		scheme := strings.ToLower(s[:i])
		after := s[i+1:]
		if special(scheme) {
			after = strings.TrimLeft(after, `/\`)
		} else if strings.HasPrefix(after, "//") {
			after = after[2:]
		} else {
			return Host{}, false, nil // mailto:, data:, javascript:, urn:
		}
		rest = after
	}
	end := strings.IndexAny(rest, `/\?#`)
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	if at := strings.LastIndexByte(auth, '@'); at >= 0 {
		auth = auth[at+1:]
	}
	host := auth
	if strings.HasPrefix(host, "[") {
		if k := strings.IndexByte(host, ']'); k >= 0 {
			host = host[:k+1]
		}
	} else if k := strings.LastIndexByte(host, ':'); k >= 0 {
		host = host[:k]
	}
	if host == "" {
		return Host{}, false, fmt.Errorf("%w: no host in %q", ErrHost, truncate(raw))
	}
	h, err = NormalizeHost(host)
	if err != nil {
		return Host{}, false, err
	}
	return h, true, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func validScheme[T ~string | ~[]byte](s T) bool {
	if len(s) > 32 || !(s[0]|0x20 >= 'a' && s[0]|0x20 <= 'z') {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= 'a' && c <= 'z' || s[i] >= '0' && s[i] <= '9' || s[i] == '+' || s[i] == '-' || s[i] == '.') {
			return false
		}
	}
	return true
}

// specialFold is special for a scheme in any case.
func specialFold(scheme []byte) bool {
	for _, s := range [...]string{"http", "https", "ws", "wss", "ftp", "file"} {
		if len(scheme) == len(s) && strings.EqualFold(string(scheme), s) {
			return true
		}
	}
	return false
}

// special are the WHATWG special schemes (their authority ends at '\' and
// any number of slashes may follow the colon).
func special(scheme string) bool {
	switch scheme {
	case "http", "https", "ws", "wss", "ftp", "file":
		return true
	}
	return false
}
