package oauthconnect

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/gateway"
)

// endpoints are the authorization server endpoints of one connection.
type endpoints struct {
	// Issuer is the authorization server's issuer; "" when the endpoints
	// come from the connection options alone (then the RFC 9207 iss check
	// is skipped).
	Issuer        string
	Authorization string
	Token         string
	Revocation    string
	// AuthMethods is token_endpoint_auth_methods_supported (may be empty).
	AuthMethods []string
	// IssParameter is authorization_response_iss_parameter_supported
	// (RFC 9207): the callback must then carry iss.
	IssParameter bool
}

type discoveryEntry struct {
	ep      *endpoints
	expires time.Time
}

// discoveryTTL bounds how long discovered metadata is reused.
const discoveryTTL = time.Hour

// maxMetadata bounds a metadata or token response body.
const maxMetadata = 1 << 20

type protectedResourceMetadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
}

type authServerMetadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// resolve returns the authorization server endpoints of c: the
// authorization_endpoint and token_endpoint options when both are set;
// otherwise RFC 9728 protected resource metadata of the upstream, then RFC
// 8414 (or OpenID Connect discovery) metadata of its first authorization
// server, with a single option overriding what was discovered. Results
// are cached per connection URL and options for discoveryTTL.
func (k *Connector) resolve(ctx context.Context, c *gateway.Connection) (*endpoints, error) {
	authz, tok := c.Options[catalog.OptAuthorizationEndpoint], c.Options[catalog.OptTokenEndpoint]
	if authz != "" && tok != "" {
		if err := checkEndpointURL(authz); err != nil {
			return nil, fmt.Errorf("connection %s: option authorization_endpoint: %v", c.Name, err)
		}
		if err := checkEndpointURL(tok); err != nil {
			return nil, fmt.Errorf("connection %s: option token_endpoint: %v", c.Name, err)
		}
		return &endpoints{Authorization: authz, Token: tok}, nil
	}
	key := c.URL + "\x00" + authz + "\x00" + tok
	lookup := func() (*endpoints, bool) {
		k.dmu.Lock()
		defer k.dmu.Unlock()
		e, ok := k.discovered[key]
		return e.ep, ok && k.now().Before(e.expires)
	}
	if ep, ok := lookup(); ok {
		return ep, nil
	}
	if k.afterMiss != nil {
		k.afterMiss()
	}
	return k.dflight.Do(ctx, key, 30*time.Second, lookup, func(dctx context.Context) (*endpoints, error) {
		now := k.now()
		ep, err := k.discover(dctx, c)
		if err != nil {
			return nil, err
		}
		if authz != "" {
			ep.Authorization = authz
		}
		if tok != "" {
			ep.Token = tok
		}
		k.dmu.Lock()
		k.discovered[key] = discoveryEntry{ep: ep, expires: now.Add(discoveryTTL)}
		k.dmu.Unlock()
		return ep, nil
	})
}

func (k *Connector) discover(ctx context.Context, c *gateway.Connection) (*endpoints, error) {
	prm, err := k.protectedResource(ctx, c.URL)
	if err != nil {
		return nil, fmt.Errorf("connection %s: discovering the upstream's authorization server (RFC 9728) failed: %v; "+
			"set the connection options authorization_endpoint and token_endpoint", c.Name, err)
	}
	issuer := prm.AuthorizationServers[0]
	md, err := k.authServer(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("connection %s: authorization server metadata (RFC 8414) of %s: %v; "+
			"set the connection options authorization_endpoint and token_endpoint", c.Name, issuer, err)
	}
	return md, nil
}

// protectedResource fetches the RFC 9728 metadata of resource: the
// path-inserted well-known URL, the root well-known URL, then the
// resource_metadata of the WWW-Authenticate challenge of an
// unauthenticated request to the resource.
func (k *Connector) protectedResource(ctx context.Context, resource string) (*protectedResourceMetadata, error) {
	u, err := url.Parse(resource)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad connection url")
	}
	origin := u.Scheme + "://" + u.Host
	var tries []string
	if p := strings.TrimSuffix(u.EscapedPath(), "/"); p != "" {
		tries = append(tries, origin+"/.well-known/oauth-protected-resource"+p)
	}
	tries = append(tries, origin+"/.well-known/oauth-protected-resource")
	var errs []string
	for _, t := range tries {
		var md protectedResourceMetadata
		if err := k.getJSON(ctx, t, &md); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if err := checkPRM(&md, resource); err != nil {
			return nil, fmt.Errorf("%s: %v", t, err)
		}
		return &md, nil
	}
	if t, err := k.challengeMetadataURL(ctx, resource); err != nil {
		errs = append(errs, err.Error())
	} else {
		var md protectedResourceMetadata
		if err := k.getJSON(ctx, t, &md); err != nil {
			errs = append(errs, err.Error())
		} else if err := checkPRM(&md, resource); err != nil {
			return nil, fmt.Errorf("%s: %v", t, err)
		} else {
			return &md, nil
		}
	}
	return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
}

func checkPRM(md *protectedResourceMetadata, resource string) error {
	// RFC 9728 §3.3: the metadata must be about the resource asked for.
	if strings.TrimSuffix(md.Resource, "/") != strings.TrimSuffix(resource, "/") {
		return fmt.Errorf("protected resource metadata names resource %q, not %q", md.Resource, resource)
	}
	if len(md.AuthorizationServers) == 0 {
		return fmt.Errorf("protected resource metadata lists no authorization_servers")
	}
	if err := checkEndpointURL(md.AuthorizationServers[0]); err != nil {
		return fmt.Errorf("authorization server %q: %v", md.AuthorizationServers[0], err)
	}
	return nil
}

// challengeMetadataURL makes an unauthenticated GET to the resource and
// returns the resource_metadata parameter of its 401 challenge.
func (k *Connector) challengeMetadataURL(ctx context.Context, resource string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, resource, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := k.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("probing %s: %v", resource, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return "", fmt.Errorf("probing %s: status %d, not a 401 challenge", resource, resp.StatusCode)
	}
	for _, h := range resp.Header.Values("WWW-Authenticate") {
		if v := authParam(h, "resource_metadata"); v != "" {
			if err := checkEndpointURL(v); err != nil {
				return "", fmt.Errorf("resource_metadata %q: %v", v, err)
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("probing %s: the 401 challenge has no resource_metadata", resource)
}

// authParam returns the value of the auth-param name in a WWW-Authenticate
// header value (token or quoted-string), or "".
func authParam(h, name string) string {
	for i := 0; i < len(h); {
		j := strings.IndexByte(h[i:], '=')
		if j < 0 {
			return ""
		}
		key := h[i : i+j]
		if sp := strings.LastIndexAny(key, " ,\t"); sp >= 0 {
			key = key[sp+1:]
		}
		i += j + 1
		var val string
		if i < len(h) && h[i] == '"' {
			var b strings.Builder
			i++
			for i < len(h) && h[i] != '"' {
				if h[i] == '\\' && i+1 < len(h) {
					i++
				}
				b.WriteByte(h[i])
				i++
			}
			i++
			val = b.String()
		} else {
			e := strings.IndexAny(h[i:], ", \t")
			if e < 0 {
				e = len(h) - i
			}
			val = h[i : i+e]
			i += e
		}
		if strings.EqualFold(key, name) {
			return val
		}
	}
	return ""
}

// authServer fetches the metadata of issuer: RFC 8414 with the well-known
// segment inserted before the issuer's path, then OpenID Connect discovery
// (inserted, then appended).
func (k *Connector) authServer(ctx context.Context, issuer string) (*endpoints, error) {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bad issuer URL")
	}
	origin := u.Scheme + "://" + u.Host
	p := strings.TrimSuffix(u.EscapedPath(), "/")
	tries := []string{origin + "/.well-known/oauth-authorization-server" + p, origin + "/.well-known/openid-configuration" + p}
	if p != "" {
		tries = append(tries, origin+p+"/.well-known/openid-configuration")
	}
	var errs []string
	for _, t := range tries {
		var md authServerMetadata
		if err := k.getJSON(ctx, t, &md); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		// RFC 8414 §3.3: the issuer in the document is the one asked for.
		if strings.TrimSuffix(md.Issuer, "/") != strings.TrimSuffix(issuer, "/") {
			return nil, fmt.Errorf("%s names issuer %q, not %q", t, md.Issuer, issuer)
		}
		if err := checkEndpointURL(md.AuthorizationEndpoint); err != nil {
			return nil, fmt.Errorf("%s: authorization_endpoint: %v", t, err)
		}
		if err := checkEndpointURL(md.TokenEndpoint); err != nil {
			return nil, fmt.Errorf("%s: token_endpoint: %v", t, err)
		}
		// The MCP authorization spec: without S256 in
		// code_challenge_methods_supported, PKCE is not supported; refuse.
		if !slices.Contains(md.CodeChallengeMethodsSupported, "S256") {
			return nil, fmt.Errorf("%s does not list S256 in code_challenge_methods_supported (PKCE is required)", t)
		}
		ep := &endpoints{
			Issuer: md.Issuer, Authorization: md.AuthorizationEndpoint, Token: md.TokenEndpoint,
			AuthMethods: md.TokenEndpointAuthMethodsSupported, IssParameter: md.AuthorizationResponseIssParameterSupported,
		}
		if md.RevocationEndpoint != "" && checkEndpointURL(md.RevocationEndpoint) == nil {
			ep.Revocation = md.RevocationEndpoint
		}
		return ep, nil
	}
	return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
}

func (k *Connector) getJSON(ctx context.Context, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadata+1))
	if err != nil {
		return fmt.Errorf("GET %s: %v", u, err)
	}
	if len(b) > maxMetadata {
		return fmt.Errorf("GET %s: document larger than %d bytes", u, maxMetadata)
	}
	if err := strictjson.Unmarshal(b, out, strictjson.Options{MaxBytes: maxMetadata}); err != nil {
		return fmt.Errorf("GET %s: not a JSON metadata document (%v)", u, err)
	}
	return nil
}

// checkEndpointURL accepts absolute https URLs without credentials or
// fragment, and http only to a loopback host (development).
func checkEndpointURL(s string) error { return gateway.CheckSecureURL(s) }
