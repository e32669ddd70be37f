package exfil

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// MaxAllowEntries bounds an allow-list.
const MaxAllowEntries = 1024

// AllowList is a set of destinations: exact host names, "*." wildcards
// (any subdomain at any depth, not the name itself), IP addresses and
// CIDR prefixes. Names are normalized like URL hosts (IDNA, case,
// trailing dot). Immutable and safe for concurrent use.
type AllowList struct {
	exact    map[string]bool
	suffixes []string // ".corp.example"
	ips      map[netip.Addr]bool
	prefixes []netip.Prefix
	entries  []string
}

// ParseAllowList parses a comma-separated list such as
// 'docs.example.com, *.corp.example, 192.0.2.10, 10.0.0.0/8'.
func ParseAllowList(s string) (*AllowList, error) {
	a := &AllowList{exact: map[string]bool{}, ips: map[netip.Addr]bool{}}
	for _, e := range strings.Split(s, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if len(a.entries) == MaxAllowEntries {
			return nil, fmt.Errorf("more than %d entries", MaxAllowEntries)
		}
		if err := a.add(e); err != nil {
			return nil, err
		}
		a.entries = append(a.entries, e)
	}
	sort.Slice(a.suffixes, func(i, j int) bool { return len(a.suffixes[i]) > len(a.suffixes[j]) })
	return a, nil
}

func (a *AllowList) add(e string) error {
	if strings.Contains(e, "://") || strings.ContainsAny(e, "?#@ \\") {
		return fmt.Errorf("%q: give a host name, not a URL", e)
	}
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(strings.Trim(e, "[]"))
		if err != nil {
			return fmt.Errorf("%q: give a host name, an IP address or a CIDR prefix", e)
		}
		a.prefixes = append(a.prefixes, p.Masked())
		return nil
	}
	if e == "*" || strings.Count(e, "*") > 1 || strings.Contains(e, "*") && !strings.HasPrefix(e, "*.") {
		return fmt.Errorf("%q: wildcards are written *.example.com (any subdomain)", e)
	}
	wild := strings.HasPrefix(e, "*.")
	name := strings.TrimPrefix(e, "*.")
	if ip, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		if wild {
			return fmt.Errorf("%q: a wildcard cannot apply to an IP address", e)
		}
		a.ips[ip.Unmap()] = true
		return nil
	}
	h, err := NormalizeHost(name)
	if err != nil {
		return fmt.Errorf("%q: %v", e, err)
	}
	if h.IP.IsValid() {
		if wild {
			return fmt.Errorf("%q: a wildcard cannot apply to an IP address", e)
		}
		a.ips[h.IP] = true
		return nil
	}
	if wild {
		if !strings.Contains(h.Name, ".") {
			return fmt.Errorf("%q: a wildcard needs at least two labels (*.example.com)", e)
		}
		a.suffixes = append(a.suffixes, "."+h.Name)
		return nil
	}
	a.exact[h.Name] = true
	return nil
}

// Len is the number of entries.
func (a *AllowList) Len() int { return len(a.entries) }

// Allows reports whether the normalized host h is allowed.
func (a *AllowList) Allows(h Host) bool {
	if a == nil {
		return false
	}
	if h.IP.IsValid() {
		ip := h.IP.Unmap()
		if a.ips[ip] {
			return true
		}
		for _, p := range a.prefixes {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}
	if a.exact[h.Name] {
		return true
	}
	for _, s := range a.suffixes {
		if strings.HasSuffix(h.Name, s) {
			return true
		}
	}
	return false
}

// AllowsHost normalizes host and checks it; a host that does not
// normalize is not allowed.
func (a *AllowList) AllowsHost(host string) bool {
	h, err := NormalizeHost(host)
	return err == nil && a.Allows(h)
}
