package identity

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mandatehq/mandate/gateway"
)

type stubJWT struct{ seen string }

func (s *stubJWT) Authenticate(_ context.Context, r *http.Request, _ string) (*gateway.Identity, error) {
	s.seen = r.Header.Get("Authorization")
	tok, desc := bearerToken(r.Header)
	if desc != "" {
		return nil, invalidRequest(desc)
	}
	if tok == "aaa.bbb.ccc" {
		return &gateway.Identity{Subject: "jwt-user"}, nil
	}
	return nil, invalidToken("bad signature")
}

type stubTokens map[string]*gateway.Identity

func (s stubTokens) VerifyAccessToken(_ context.Context, tok string) (*gateway.Identity, error) {
	if id := s[tok]; id != nil {
		return id, nil
	}
	if tok == "mnd_broken" {
		return nil, errors.New("store down")
	}
	return nil, &gateway.AuthError{Status: 401, Code: "invalid_token", Description: "unknown, expired or revoked access token"}
}

// TestWithAccessTokens: which header, which verifier, which error.
func TestWithAccessTokens(t *testing.T) {
	tokens := stubTokens{"mnd_ok": {Subject: "alice", Actor: "claude-code"}}
	for _, tc := range []struct {
		name    string
		hdr     map[string][]string
		query   string
		subject string // "" = refused
		desc    string // the refusal's description
		jwtSaw  string // the Authorization header the JWT verifier saw
	}{
		{name: "bearer access token", hdr: map[string][]string{"Authorization": {"Bearer mnd_ok"}}, subject: "alice"},
		{name: "x-api-key access token", hdr: map[string][]string{"X-Api-Key": {"mnd_ok"}}, subject: "alice"},
		{name: "bearer wins over x-api-key", hdr: map[string][]string{"Authorization": {"Bearer mnd_nope"}, "X-Api-Key": {"mnd_ok"}},
			desc: "unknown, expired or revoked access token"},
		{name: "bearer JWT", hdr: map[string][]string{"Authorization": {"Bearer aaa.bbb.ccc"}}, subject: "jwt-user", jwtSaw: "Bearer aaa.bbb.ccc"},
		{name: "JWT in x-api-key", hdr: map[string][]string{"X-Api-Key": {"aaa.bbb.ccc"}}, subject: "jwt-user", jwtSaw: "Bearer aaa.bbb.ccc"},
		{name: "revoked", hdr: map[string][]string{"X-Api-Key": {"mnd_gone"}}, desc: "unknown, expired or revoked access token"},
		{name: "verifier failure", hdr: map[string][]string{"Authorization": {"Bearer mnd_broken"}}, desc: "the access token could not be verified"},
		{name: "none", hdr: nil, desc: DescMissingToken},
		{name: "two x-api-keys", hdr: map[string][]string{"X-Api-Key": {"mnd_ok", "mnd_ok"}}, desc: DescMalformedToken},
		{name: "empty x-api-key", hdr: map[string][]string{"X-Api-Key": {" "}}, desc: DescMissingToken},
		{name: "not token68", hdr: map[string][]string{"X-Api-Key": {"mnd ok"}}, desc: DescMalformedToken},
		{name: "token in query", hdr: map[string][]string{"X-Api-Key": {"mnd_ok"}}, query: "access_token=x", desc: DescTokenInQuery},
		{name: "basic scheme", hdr: map[string][]string{"Authorization": {"Basic eDp5"}}, desc: DescMissingToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			jwt := &stubJWT{}
			a := WithAccessTokens(jwt, tokens)
			r := httptest.NewRequest(http.MethodPost, "http://gw.example/llm/v1/messages?"+tc.query, nil)
			for k, v := range tc.hdr {
				r.Header[k] = v
			}
			id, err := a.Authenticate(t.Context(), r, "http://gw.example/llm")
			if tc.subject != "" {
				if err != nil || id.Subject != tc.subject {
					t.Fatalf("got %+v, %v; want %s", id, err, tc.subject)
				}
			} else {
				var ae *gateway.AuthError
				if !errors.As(err, &ae) || ae.Status != 401 || ae.Description != tc.desc {
					t.Fatalf("got %+v, %v; want 401 %q", id, err, tc.desc)
				}
			}
			if jwt.seen != tc.jwtSaw && tc.jwtSaw != "" {
				t.Errorf("the JWT verifier saw %q", jwt.seen)
			}
			if r.Header.Get("Authorization") == "" && tc.jwtSaw != "" && len(tc.hdr["Authorization"]) == 0 && r.Header.Get("X-Api-Key") == "" {
				t.Error("the caller's request was modified")
			}
		})
	}
}
