package identity

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mandatehq/mandate/gateway"
)

// WellKnownPath is the RFC 9728 protected resource metadata path prefix.
const WellKnownPath = "/.well-known/oauth-protected-resource"

// MetadataURL returns where the RFC 9728 metadata of the resource
// publicURL + path is served: the well-known prefix goes between the host
// and the path (RFC 9728 §3.1), so MetadataURL("https://gw.example",
// "/mcp/my_github_mcp") is
// "https://gw.example/.well-known/oauth-protected-resource/mcp/my_github_mcp",
// and a path in publicURL ("https://gw.example/base") moves behind it too.
func MetadataURL(publicURL, path string) string {
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(publicURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return strings.TrimRight(publicURL, "/") + WellKnownPath + path
	}
	base := strings.TrimRight(u.EscapedPath(), "/")
	return u.Scheme + "://" + u.Host + WellKnownPath + base + path
}

// metadata is the RFC 9728 protected resource metadata document.
type metadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
}

// MetadataDocument returns the RFC 9728 protected resource metadata of
// resource (the canonical URL of an endpoint, e.g.
// https://gw.example/mcp/my_github_mcp): its authorization servers (the
// issuers, see Authenticator.AuthorizationServers), bearer tokens in the
// header only, and the scopes it understands (omitted when none).
func MetadataDocument(resource string, authorizationServers []string, scopes []string) []byte {
	md := metadata{Resource: resource, AuthorizationServers: authorizationServers,
		BearerMethodsSupported: []string{"header"}, ScopesSupported: scopes}
	if md.AuthorizationServers == nil {
		md.AuthorizationServers = []string{}
	}
	b, err := json.Marshal(md)
	if err != nil { // strings and string slices always marshal
		panic(fmt.Sprintf("identity: metadata document: %v", err))
	}
	return b
}

// MetadataHandler serves doc (a MetadataDocument) with ServeMetadata.
func MetadataHandler(doc []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ServeMetadata(w, r, doc) })
}

// ServeMetadata answers a request for a protected resource metadata
// document: doc as application/json to GET and HEAD, readable
// cross-origin (browser-based MCP clients discover it too), cacheable for
// five minutes; OPTIONS gets the CORS preflight answer, other methods 405.
func ServeMetadata(w http.ResponseWriter, r *http.Request, doc []byte) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "public, max-age=300")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(doc)
		}
	case http.MethodOptions:
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "*")
		w.WriteHeader(http.StatusNoContent)
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// WWWAuthenticate returns the WWW-Authenticate header value for err (RFC
// 6750 §3 with the RFC 9728 resource_metadata parameter):
//
//	Bearer resource_metadata="<url>", error="invalid_token", error_description="token is expired"
//	Bearer resource_metadata="<url>", error="insufficient_scope", error_description="...", scope="a b"
//
// A request that carried no bearer token at all (DescMissingToken, or err
// nil) gets no error attributes (RFC 6750 §3.1). scope is included
// whenever err.Scope is set (it is on 401s too when RequiredScopes are
// configured: MCP clients use it to ask for the right scopes). Values are
// quoted; characters RFC 6750 does not allow in them are replaced, and
// the URL is percent-encoded, so no value can break out of its quotes or
// the header line.
func WWWAuthenticate(err *gateway.AuthError, resourceMetadataURL string) string {
	var b strings.Builder
	b.WriteString("Bearer")
	sep := " "
	param := func(name, value string) {
		b.WriteString(sep)
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(value)
		b.WriteByte('"')
		sep = ", "
	}
	if resourceMetadataURL != "" {
		param("resource_metadata", quoteURL(resourceMetadataURL))
	}
	if err != nil {
		if !(err.Code == "invalid_request" && err.Description == DescMissingToken) && err.Code != "" {
			param("error", sanitize(err.Code, '_'))
			if err.Description != "" {
				param("error_description", sanitize(err.Description, '?'))
			}
		}
		if sc := scopeValue(err.Scope); sc != "" {
			param("scope", sc)
		}
	}
	return b.String()
}

// sanitize keeps the characters RFC 6750 allows in error and
// error_description (%x20-21 / %x23-5B / %x5D-7E): a double quote
// becomes an apostrophe, a backslash a slash, anything else repl.
func sanitize(s string, repl byte) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			out = append(out, '\'')
		case c == '\\':
			out = append(out, '/')
		case c < 0x20 || c > 0x7e:
			out = append(out, repl)
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// scopeValue keeps the valid scope tokens of s (RFC 6750 §3: %x21 /
// %x23-5B / %x5D-7E), separated by single spaces.
func scopeValue(s string) string {
	var toks []string
	for _, t := range strings.Fields(s) {
		valid := true
		for i := 0; i < len(t); i++ {
			if c := t[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
				valid = false
				break
			}
		}
		if valid {
			toks = append(toks, t)
		}
	}
	return strings.Join(toks, " ")
}

// quoteURL percent-encodes what cannot stand in a quoted header value.
func quoteURL(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
