// Package hop sends the gateway's upstream requests: the one rule for when
// a request may skip http.Client.Do and go straight to the client's
// transport, shared by the MCP and LLM adapters.
//
// http.Client.Do adds, over its transport's RoundTrip, redirects (with a
// copy of the request's headers for them, made on every request), a cookie
// jar, an overall timeout and basic auth from a URL's user info. A client
// that follows no redirects and has no jar and no timeout adds nothing but
// that copy; its requests to URLs without user info go to the transport.
// Errors then come unwrapped (no *url.Error around them): the gateway
// classifies them with errors.Is and errors.As, which see through either.
package hop

import "net/http"

// Send sends req with cl. noRedirects says that cl follows no redirects
// (its CheckRedirect returns http.ErrUseLastResponse, which the caller
// knows because it set it: a func cannot be compared).
func Send(cl *http.Client, noRedirects bool, req *http.Request) (*http.Response, error) {
	if !noRedirects || cl.Jar != nil || cl.Timeout > 0 || cl.Transport == nil || req.URL.User != nil {
		return cl.Do(req)
	}
	return cl.Transport.RoundTrip(req)
}
