package identity

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/mandatehq/mandate/gateway"
)

// WithAccessTokens returns an Authenticator that accepts Mandate's personal
// access tokens (CREATE ACCESS TOKEN, verified by tokens) besides the JWTs
// that jwt verifies. The token is read from "Authorization: Bearer" or,
// when that header is absent, from "x-api-key" (Anthropic's SDKs and
// Claude Code send a configured key there). A token in the JWS compact
// form (three dot-separated parts) goes to jwt, whatever header carried
// it; any other token is an access token. Errors are *gateway.AuthError
// (401 for an unknown, expired or revoked access token).
func WithAccessTokens(jwt gateway.Authenticator, tokens gateway.AccessTokens) gateway.Authenticator {
	return &tokenAuth{jwt: jwt, tokens: tokens}
}

type tokenAuth struct {
	jwt    gateway.Authenticator
	tokens gateway.AccessTokens
}

// HeaderAPIKey is the header Anthropic clients send their key in.
const HeaderAPIKey = "X-Api-Key"

func (a *tokenAuth) Authenticate(ctx context.Context, r *http.Request, resource string) (*gateway.Identity, error) {
	fromAPIKey := false
	var tok string
	if _, ok := r.Header["Authorization"]; ok {
		var desc string
		if tok, desc = bearerToken(r.Header); desc != "" {
			return a.jwt.Authenticate(ctx, r, resource) // its error, its wording
		}
	} else if vs := r.Header[HeaderAPIKey]; len(vs) > 0 {
		if len(vs) > 1 {
			return nil, invalidRequest(DescMalformedToken)
		}
		tok, fromAPIKey = trimOWS(vs[0]), true
		if tok == "" {
			return nil, invalidRequest(DescMissingToken)
		}
	} else {
		return a.jwt.Authenticate(ctx, r, resource) // no credential: its error
	}
	if isJWS(tok) {
		if fromAPIKey {
			// The JWT authenticator reads the Authorization header only.
			r2 := new(http.Request)
			*r2 = *r
			r2.Header = r.Header.Clone()
			delete(r2.Header, HeaderAPIKey)
			r2.Header.Set("Authorization", "Bearer "+tok)
			r = r2
		}
		return a.jwt.Authenticate(ctx, r, resource)
	}
	if r.URL != nil && strings.Contains(r.URL.RawQuery, "access_token") {
		if q, err := url.ParseQuery(r.URL.RawQuery); err != nil || q.Has("access_token") {
			return nil, invalidRequest(DescTokenInQuery)
		}
	}
	if len(tok) > MaxTokenSize || !isToken68(tok) {
		return nil, invalidToken(DescMalformedToken)
	}
	if a.tokens == nil {
		return nil, invalidToken("access tokens are not accepted here")
	}
	id, err := a.tokens.VerifyAccessToken(ctx, tok)
	if err == nil && (id == nil || id.Subject == "") {
		err = errors.New("access token verifier returned no subject")
	}
	if err != nil {
		var ae *gateway.AuthError
		if errors.As(err, &ae) {
			return nil, ae
		}
		return nil, &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_token",
			Description: "the access token could not be verified"}
	}
	return id, nil
}

// isJWS reports whether tok has the JWS compact form's shape: three
// non-empty parts separated by dots.
func isJWS(tok string) bool {
	i := strings.IndexByte(tok, '.')
	if i <= 0 {
		return false
	}
	j := strings.IndexByte(tok[i+1:], '.')
	return j > 0 && i+1+j+1 < len(tok) && !strings.Contains(tok[i+1+j+1:], ".")
}

func invalidRequest(desc string) *gateway.AuthError {
	return &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_request", Description: desc}
}

func invalidToken(desc string) *gateway.AuthError {
	return &gateway.AuthError{Status: http.StatusUnauthorized, Code: "invalid_token", Description: desc}
}
