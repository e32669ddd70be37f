package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/gateway"
)

// clientCredentialsKey keys a shared_principal token by everything that
// determines it. It deliberately leaves out c.Revision: that is the
// catalog-wide revision, so keying on it would fetch a new token after
// every unrelated catalog change. A changed secret or option changes the
// key.
func (cr *Credentials) clientCredentialsKey(c *gateway.Connection) cacheKey {
	return cacheKey{
		kind:     kindClientCredentials,
		conn:     c.Name,
		url:      c.URL,
		audience: c.Options[catalog.OptAudience],
		scopes:   c.Options[catalog.OptScopes],
		endpoint: c.Options[catalog.OptTokenEndpoint],
		clientID: c.Options[catalog.OptClientID],
		secretFP: cr.fingerprint(c.Secrets[catalog.OptClientSecret]),
	}
}

// sharedPrincipal returns the connection's own credential, the same for
// every caller: a static bearer_token, or a client-credentials token
// (RFC 6749 §4.4 with RFC 8707 resource) cached until shortly before it
// expires.
func (cr *Credentials) sharedPrincipal(ctx context.Context, c *gateway.Connection) (string, int64, bool, error) {
	if tok, ok := c.Secrets[catalog.OptBearerToken]; ok {
		if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
			tok = strings.TrimSpace(tok[7:])
		}
		if !validToken(tok) {
			return "", 0, false, fmt.Errorf("upstream %s: bearer_token is empty or has characters not allowed in a bearer token", c.Name)
		}
		return "Bearer " + tok, 0, false, nil
	}
	k := cr.clientCredentialsKey(c)
	if e, ok := cr.cache.get(&k, cr.now().UnixNano()); ok {
		cr.stats.hits.Add(1)
		return e.value, e.expires, true, nil
	}
	v, exp, err := cr.clientCredentialsMiss(ctx, c, k)
	return v, exp, false, err
}

//go:noinline
func (cr *Credentials) clientCredentialsMiss(ctx context.Context, c *gateway.Connection, k cacheKey) (string, int64, error) {
	secret := c.Secrets[catalog.OptClientSecret]
	if k.clientID == "" || secret == "" || k.endpoint == "" {
		return "", 0, fmt.Errorf("upstream %s: shared_principal needs bearer_token, or client_id, client_secret and token_endpoint", c.Name)
	}
	e, err := cr.shared(ctx, &k, func(ctx context.Context) (cacheEntry, error) {
		return cr.clientCredentials(ctx, c, &k, secret)
	})
	if err != nil {
		return "", 0, err
	}
	return e.value, e.expires, nil
}

func (cr *Credentials) clientCredentials(ctx context.Context, c *gateway.Connection, k *cacheKey, secret string) (cacheEntry, error) {
	params := url.Values{}
	if c.URL != "" {
		params.Set("resource", c.URL) // RFC 8707
	}
	if k.audience != "" {
		params.Set("audience", k.audience)
	}
	cc := clientcredentials.Config{
		ClientID:       k.clientID,
		ClientSecret:   secret,
		TokenURL:       k.endpoint,
		Scopes:         c.Scopes(),
		EndpointParams: params,
		AuthStyle:      oauth2.AuthStyleInHeader,
	}
	endpoint := endpointForErrors(k.endpoint)
	redact := []string{secret}
	start := cr.now()
	cr.stats.clientCreds.Add(1)
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, cr.hc))
	if err == nil {
		switch {
		case !validToken(tok.AccessToken):
			err = &ExchangeError{Grant: "client_credentials", Endpoint: endpoint, Status: 200,
				Description: "access_token is empty or has characters not allowed in a bearer token"}
		case tok.Type() != "Bearer":
			err = &ExchangeError{Grant: "client_credentials", Endpoint: endpoint, Status: 200,
				Description: "token_type " + sanitize(tok.Type(), redact) + " is not Bearer"}
		}
	} else {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			status := 0
			if re.Response != nil {
				status = re.Response.StatusCode
			}
			desc := re.ErrorDescription
			if re.ErrorCode == "" && desc == "" {
				desc = "unexpected response"
			}
			err = &ExchangeError{Grant: "client_credentials", Endpoint: endpoint, Status: status,
				Code: sanitizeCode(re.ErrorCode), Description: sanitize(desc, redact)}
		} else {
			err = &ExchangeError{Grant: "client_credentials", Endpoint: endpoint, Err: redactErr(err, redact)}
		}
	}
	if err != nil {
		cr.stats.clientCredErrors.Add(1)
		cr.log.Warn().Err(err).Str("connection", c.Name).Msg("upstream: client credentials failed")
		return cacheEntry{}, err
	}
	// x/oauth2 stamps Expiry with the wall clock; measure the stated
	// lifetime against our clock instead.
	receivedWall := time.Now()
	var life time.Duration
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		life = time.Duration(v * float64(time.Second))
	case string:
		life, _ = parseExpiresIn(json.RawMessage(strconv.Quote(v)))
	}
	switch {
	case life > 0:
	case tok.ExpiresIn > 0:
		life = time.Duration(tok.ExpiresIn) * time.Second
	case !tok.Expiry.IsZero():
		life = tok.Expiry.Sub(receivedWall)
	default:
		life = jwtLifetime(tok.AccessToken, start)
	}
	if life <= 0 {
		life = UnknownLifetime
	}
	exp := start.Add(life)
	cr.log.Debug().Str("connection", c.Name).Time("expires", exp).Msg("upstream: client credentials token")
	return cacheEntry{value: "Bearer " + tok.AccessToken, refreshAt: refreshAt(start, exp).UnixNano(), expires: exp.UnixNano()}, nil
}
