package gateway

import (
	"errors"
	"net"
	"net/url"
	"strings"
)

// CheckSecureURL accepts the URLs the gateway fetches keys, metadata and
// tokens from: absolute https, or http to a loopback host (development and
// tests); never with credentials or a fragment.
func CheckSecureURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return errors.New("not an absolute URL")
	}
	if u.User != nil || u.Fragment != "" {
		return errors.New("must not carry credentials or a fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if IsLoopbackHost(u.Hostname()) {
			return nil
		}
		return errors.New("must use https (http only to a loopback host)")
	}
	return errors.New("must use https")
}

// IsLoopbackHost reports whether host is localhost or a loopback address.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
