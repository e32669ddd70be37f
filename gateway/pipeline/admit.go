package pipeline

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/mandatehq/mandate/gateway"
)

// hostRule is the Host check: a request must name the gateway's public
// host (--public-url is the source of truth), or, when that is a loopback
// address, any loopback host. This defeats DNS rebinding: a browser led
// to the gateway through an attacker's name sends that name as Host.
type hostRule struct {
	name     string // lower case, without a trailing dot
	port     string // explicit or the scheme's default
	scheme   string
	loopback bool
}

func newHostRule(pub *url.URL) hostRule {
	r := hostRule{name: normHost(pub.Hostname()), port: pub.Port(), scheme: pub.Scheme}
	if r.port == "" {
		r.port = defaultPort(pub.Scheme)
	}
	r.loopback = gateway.IsLoopbackHost(r.name)
	return r
}

func defaultPort(scheme string) string {
	if scheme == "https" {
		return "443"
	}
	return "80"
}

func normHost(h string) string { return strings.TrimSuffix(strings.ToLower(h), ".") }

// allowed reports whether a request's Host header value passes.
func (r hostRule) allowed(host string) bool {
	if host == "" {
		return false
	}
	name, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		name = host[1 : len(host)-1]
	}
	name = normHost(name)
	if r.loopback && gateway.IsLoopbackHost(name) {
		return true // any port: a loopback name cannot be an attacker's
	}
	if port == "" {
		port = defaultPort(r.scheme)
	}
	return name == r.name && port == r.port
}

// admit is the first part of authenticate: the request comes through the
// gateway's public host, and from a browser only from an allowed origin
// (which then gets the CORS headers).
func (p *Pipeline) admit(c *Call) *Error {
	r := c.Request
	if !p.host.allowed(r.Host) {
		return &Error{Kind: KindForbidden,
			Message: fmt.Sprintf("host %q is not this gateway's public host", clip(r.Host, 256)),
			Reason:  "host not allowed: " + clip(r.Host, 256)}
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	if !p.OriginAllowed(origin) {
		return &Error{Kind: KindForbidden,
			Message: fmt.Sprintf("origin %q is not allowed to call this gateway", clip(origin, 256)),
			Reason:  "origin not allowed: " + clip(origin, 256)}
	}
	h := c.w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate")
	return nil
}

// OriginAllowed: the configured origins and PublicURL's origin; any
// loopback origin when the gateway itself is on loopback.
func (p *Pipeline) OriginAllowed(origin string) bool {
	o := strings.ToLower(strings.TrimRight(origin, "/"))
	if p.origins[o] {
		return true
	}
	if p.host.loopback {
		u, err := url.Parse(o)
		if err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Path == "" && gateway.IsLoopbackHost(u.Hostname()) {
			return true
		}
	}
	return false
}

// clip bounds a value echoed into a message or the audit row.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
