package oauthconnect

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/gateway"
)

// pkcePair returns an RFC 7636 code verifier (32 random bytes, 43
// characters) and its S256 challenge.
func pkcePair() (verifier, challenge string) {
	verifier = randomString(32)
	return verifier, s256(verifier)
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// tokenResponse is an RFC 6749 §5.1 access token response.
type tokenResponse struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	ExpiresIn    time.Duration // 0: not given
	Scope        string
}

// oauthError is an RFC 6749 §5.2 error response of the token endpoint.
// It never carries a token.
type oauthError struct {
	Status      int
	Code        string
	Description string
}

func (e *oauthError) Error() string {
	s := fmt.Sprintf("token endpoint refused (HTTP %d): %s", e.Status, e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// tokenRequest posts form to the token endpoint with c's client
// authentication: client_secret_basic when c has a client_secret (or
// client_secret_post when the server supports only that), the client_id
// alone for a public client (PKCE protects the code).
func (k *Connector) tokenRequest(ctx context.Context, ep *endpoints, tokenEndpoint string, c *gateway.Connection, form url.Values) (*tokenResponse, error) {
	body, status, ctype, err := k.post(ctx, tokenEndpoint, ep, c, form)
	if err != nil {
		return nil, err
	}
	vals, err := decodeBody(body, ctype)
	if err != nil {
		return nil, fmt.Errorf("token endpoint: HTTP %d with an unreadable body", status)
	}
	if status != http.StatusOK {
		code := vals.str("error")
		if code == "" {
			code = "http_" + strconv.Itoa(status)
		}
		return nil, &oauthError{Status: status, Code: clean(code, 64), Description: clean(vals.str("error_description"), 200)}
	}
	tr := &tokenResponse{
		AccessToken: vals.str("access_token"), TokenType: vals.str("token_type"),
		RefreshToken: vals.str("refresh_token"), Scope: vals.str("scope"),
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("token endpoint: the response has no access_token")
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "bearer") {
		return nil, fmt.Errorf("token endpoint: token_type %q is not supported (only Bearer)", clean(tr.TokenType, 32))
	}
	if s := vals.str("expires_in"); s != "" {
		n, err := strconv.ParseFloat(s, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("token endpoint: bad expires_in")
		}
		tr.ExpiresIn = time.Duration(n * float64(time.Second))
	}
	return tr, nil
}

func (k *Connector) post(ctx context.Context, endpoint string, ep *endpoints, c *gateway.Connection, form url.Values) (body []byte, status int, ctype string, err error) {
	clientID, secret := c.Options[catalog.OptClientID], c.Secrets[catalog.OptClientSecret]
	basic := false
	switch {
	case secret == "":
		form.Set("client_id", clientID)
	case len(ep.AuthMethods) == 0 || slices.Contains(ep.AuthMethods, "client_secret_basic"):
		basic = true
	case slices.Contains(ep.AuthMethods, "client_secret_post"):
		form.Set("client_id", clientID)
		form.Set("client_secret", secret)
	default:
		return nil, 0, "", fmt.Errorf("the token endpoint supports neither client_secret_basic nor client_secret_post (it lists %s)",
			strings.Join(ep.AuthMethods, ", "))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, 0, "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic {
		// RFC 6749 §2.3.1: both parts form-urlencoded first.
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		// The URL error names the endpoint only; the form is not in it.
		return nil, 0, "", fmt.Errorf("token endpoint: %v", err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxMetadata+1))
	if err != nil {
		return nil, 0, "", fmt.Errorf("token endpoint: %v", err)
	}
	if len(body) > maxMetadata {
		return nil, 0, "", fmt.Errorf("token endpoint: response larger than %d bytes", maxMetadata)
	}
	return body, resp.StatusCode, resp.Header.Get("Content-Type"), nil
}

type fields map[string]any

func (f fields) str(k string) string {
	switch v := f[k].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

// decodeBody reads a JSON object, or a form-encoded body for servers that
// answer that way when the content type says so.
func decodeBody(b []byte, ctype string) (fields, error) {
	mt, _, _ := mime.ParseMediaType(ctype)
	if mt == "application/x-www-form-urlencoded" || mt == "text/plain" {
		if q, err := url.ParseQuery(string(b)); err == nil && len(q) > 0 {
			f := fields{}
			for key := range q {
				f[key] = q.Get(key)
			}
			return f, nil
		}
	}
	// Bounded and duplicate-free first (catalog/strictjson); numbers stay
	// json.Number.
	if err := strictjson.Valid(b, strictjson.Options{MaxBytes: maxMetadata}); err != nil {
		return nil, err
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	f := fields{}
	if err := d.Decode(&f); err != nil {
		return nil, err
	}
	return f, nil
}

// clean bounds a string from a remote server for an error message.
func clean(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

func (k *Connector) exchangeCode(ctx context.Context, ep *endpoints, tokenEndpoint string, c *gateway.Connection, code, verifier string) (*tokenResponse, error) {
	return k.tokenRequest(ctx, ep, tokenEndpoint, c, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {k.redirectURI},
		"code_verifier": {verifier},
		"resource":      {c.URL},
	})
}

func (k *Connector) refresh(ctx context.Context, ep *endpoints, tokenEndpoint string, c *gateway.Connection, refreshToken string) (*tokenResponse, error) {
	return k.tokenRequest(ctx, ep, tokenEndpoint, c, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {refreshToken},
		"resource":      {c.URL},
	})
}

// revoke asks the RFC 7009 revocation endpoint to revoke token; best
// effort.
func (k *Connector) revoke(ctx context.Context, ep *endpoints, c *gateway.Connection, token, hint string) error {
	_, status, _, err := k.post(ctx, ep.Revocation, ep, c, url.Values{"token": {token}, "token_type_hint": {hint}})
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("revocation endpoint: HTTP %d", status)
	}
	return nil
}
