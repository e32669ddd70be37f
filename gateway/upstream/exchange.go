package upstream

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mandatehq/mandate/catalog"
	"github.com/mandatehq/mandate/catalog/strictjson"
	"github.com/mandatehq/mandate/gateway"
)

// ExchangeError is a failed request to a token endpoint (RFC 8693 token
// exchange, or client credentials for shared_principal): an OAuth error
// response, another HTTP status, an unusable response, or no response at
// all (Status 0, Err set). It never contains a token or a secret.
type ExchangeError struct {
	Grant       string // "token_exchange" or "client_credentials"
	Endpoint    string // the token endpoint, without query
	Status      int    // HTTP status; 0 when there was no response
	Code        string // RFC 6749 error code (invalid_request, invalid_target, invalid_client, ...)
	Description string // error_description, sanitised
	Err         error  // transport error, if any
}

func (e *ExchangeError) Error() string {
	var b strings.Builder
	if e.Grant == "client_credentials" {
		b.WriteString("upstream: client credentials request")
	} else {
		b.WriteString("upstream: token exchange")
	}
	if e.Endpoint != "" {
		b.WriteString(" at ")
		b.WriteString(e.Endpoint)
	}
	b.WriteString(" failed")
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *ExchangeError) Unwrap() error { return e.Err }

const maxTokenResponse = 1 << 20

func (cr *Credentials) exchangeKey(c *gateway.Connection, id *gateway.Identity) cacheKey {
	k := cacheKey{
		kind:     kindExchange,
		conn:     c.Name,
		url:      c.URL,
		audience: audience(c),
		scopes:   c.Options[catalog.OptScopes],
		subject:  id.Subject,
		actor:    id.Actor,
		endpoint: c.Options[catalog.OptTokenEndpoint],
		clientID: c.Options[catalog.OptClientID],
		secretFP: cr.fingerprint(c.Secrets[catalog.OptClientSecret]),
	}
	return k
}

// tokenExchange returns a token the identity provider issued for the
// upstream in exchange for the caller's inbound token (RFC 8693). The
// result is cached per (user, agent, connection, scopes and the other
// request parameters) until shortly before it expires, never beyond the
// expiry of the inbound token it was exchanged for; concurrent misses share
// one exchange. A later inbound token of the same user and agent reuses it.
func (cr *Credentials) tokenExchange(ctx context.Context, c *gateway.Connection, id *gateway.Identity) (string, int64, bool, error) {
	now := cr.now()
	if err := checkInbound(c, id, now); err != nil {
		return "", 0, false, err
	}
	if id.Token == "" {
		return "", 0, false, fmt.Errorf("upstream %s: token_exchange needs the caller's token", c.Name)
	}
	k := cr.exchangeKey(c, id)
	if e, ok := cr.cache.get(&k, now.UnixNano()); ok {
		cr.stats.hits.Add(1)
		return e.value, e.expires, true, nil
	}
	v, exp, err := cr.tokenExchangeMiss(ctx, c, id, k)
	return v, exp, false, err
}

// tokenExchangeMiss is the slow path (kept apart so that the key does
// not escape to the heap on cache hits).
//
//go:noinline
func (cr *Credentials) tokenExchangeMiss(ctx context.Context, c *gateway.Connection, id *gateway.Identity, k cacheKey) (string, int64, error) {
	if k.endpoint == "" {
		return "", 0, fmt.Errorf("upstream %s: token_exchange needs the token_endpoint option", c.Name)
	}
	if c.URL == "" {
		return "", 0, fmt.Errorf("upstream %s: token_exchange needs the connection url", c.Name)
	}
	secret := c.Secrets[catalog.OptClientSecret]
	if secret != "" && k.clientID == "" {
		return "", 0, fmt.Errorf("upstream %s: token_exchange has client_secret but no client_id", c.Name)
	}
	e, err := cr.shared(ctx, &k, func(ctx context.Context) (cacheEntry, error) {
		return cr.exchange(ctx, c, id, &k, secret)
	})
	if err != nil {
		return "", 0, err
	}
	return e.value, e.expires, nil
}

// exchange performs one RFC 8693 request.
func (cr *Credentials) exchange(ctx context.Context, c *gateway.Connection, id *gateway.Identity, k *cacheKey, secret string) (cacheEntry, error) {
	form := url.Values{
		"grant_type":           {GrantTypeExchange},
		"subject_token":        {id.Token},
		"subject_token_type":   {cr.subjectTokenType},
		"requested_token_type": {TokenTypeAccessToken},
		"audience":             {k.audience},
		"resource":             {c.URL},
	}
	// No actor_token: the inbound token already carries the agent's
	// delegation in its act claim, and the gateway holds no token of the
	// agent's own.
	if scope := strings.Join(c.Scopes(), " "); scope != "" {
		form.Set("scope", scope)
	}
	if secret == "" && k.clientID != "" {
		form.Set("client_id", k.clientID) // public client (RFC 6749 §3.2.1)
	}
	endpoint := endpointForErrors(k.endpoint)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return cacheEntry{}, &ExchangeError{Grant: "token_exchange", Endpoint: endpoint, Description: "invalid token endpoint"}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if secret != "" {
		// RFC 6749 §2.3.1: client_secret_basic, with the id and secret
		// form-encoded before Base64.
		req.SetBasicAuth(url.QueryEscape(k.clientID), url.QueryEscape(secret))
	}
	redact := []string{id.Token, secret}
	start := cr.now()
	cr.stats.exchanges.Add(1)
	e, err := cr.doExchange(req, endpoint, redact, id, start)
	if err != nil {
		cr.stats.exchangeErrors.Add(1)
		cr.log.Warn().Err(err).Str("connection", c.Name).Str("subject", id.Subject).Str("actor", id.Actor).
			Msg("upstream: token exchange failed")
		return cacheEntry{}, err
	}
	cr.log.Debug().Str("connection", c.Name).Str("subject", id.Subject).Str("actor", id.Actor).
		Time("expires", time.Unix(0, e.expires)).Msg("upstream: token exchanged")
	return e, nil
}

func (cr *Credentials) doExchange(req *http.Request, endpoint string, redact []string, id *gateway.Identity, start time.Time) (cacheEntry, error) {
	fail := func(status int, code, desc string, err error) error {
		return &ExchangeError{Grant: "token_exchange", Endpoint: endpoint, Status: status,
			Code: sanitizeCode(code), Description: sanitize(desc, redact), Err: err}
	}
	resp, err := cr.hc.Do(req)
	if err != nil {
		return cacheEntry{}, fail(0, "", "", redactErr(err, redact))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return cacheEntry{}, fail(resp.StatusCode, "", "", redactErr(err, redact))
	}
	if len(body) > maxTokenResponse {
		return cacheEntry{}, fail(resp.StatusCode, "", "response too large", nil)
	}
	var tr struct {
		AccessToken      string          `json:"access_token"`
		IssuedTokenType  string          `json:"issued_token_type"`
		TokenType        string          `json:"token_type"`
		ExpiresIn        json.RawMessage `json:"expires_in"`
		Scope            string          `json:"scope"`
		Error            string          `json:"error"`
		ErrorDescription string          `json:"error_description"`
	}
	jsonErr := strictjson.Unmarshal(body, &tr, strictjson.Options{MaxBytes: maxTokenResponse})
	if resp.StatusCode != http.StatusOK || tr.Error != "" {
		if jsonErr != nil || tr.Error == "" {
			return cacheEntry{}, fail(resp.StatusCode, "", "unexpected response ("+http.StatusText(resp.StatusCode)+")", nil)
		}
		return cacheEntry{}, fail(resp.StatusCode, tr.Error, tr.ErrorDescription, nil)
	}
	if jsonErr != nil {
		ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		return cacheEntry{}, fail(resp.StatusCode, "", "response is not a JSON token response (content type "+sanitize(ct, redact)+")", nil)
	}
	if tr.AccessToken == "" {
		return cacheEntry{}, fail(resp.StatusCode, "", "response has no access_token", nil)
	}
	if !validToken(tr.AccessToken) {
		return cacheEntry{}, fail(resp.StatusCode, "", "access_token has characters not allowed in a bearer token", nil)
	}
	if tr.AccessToken == id.Token {
		return cacheEntry{}, fail(resp.StatusCode, "", "the identity provider returned the subject token itself; refusing to forward it", nil)
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return cacheEntry{}, fail(resp.StatusCode, "", "token_type "+strconv.Quote(sanitize(tr.TokenType, redact))+" is not Bearer", nil)
	}
	switch tr.IssuedTokenType {
	case "", TokenTypeAccessToken, TokenTypeJWT:
	default:
		return cacheEntry{}, fail(resp.StatusCode, "", "issued_token_type "+strconv.Quote(sanitize(tr.IssuedTokenType, redact))+" is not an access token", nil)
	}
	life, ok := parseExpiresIn(tr.ExpiresIn)
	if !ok {
		return cacheEntry{}, fail(resp.StatusCode, "", "expires_in is not a number", nil)
	}
	if life == 0 {
		life = jwtLifetime(tr.AccessToken, start)
	}
	if life <= 0 {
		life = UnknownLifetime
	}
	exp := start.Add(life)
	refresh := refreshAt(start, exp)
	// Nothing derived from the inbound token outlives it.
	if !id.Expiry.IsZero() && id.Expiry.Before(refresh) {
		refresh = id.Expiry
	}
	return cacheEntry{value: "Bearer " + tr.AccessToken, refreshAt: refresh.UnixNano(), expires: exp.UnixNano()}, nil
}

// parseExpiresIn accepts a JSON number or a numeric string (some
// providers send one); absent or null is 0.
func parseExpiresIn(raw json.RawMessage) (time.Duration, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, true
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		raw = []byte(strings.TrimSpace(s))
		if len(raw) == 0 {
			return 0, true
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f < 0 || f > 1e9 {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}

// jwtLifetime reads the exp of a JWT access token without verifying it,
// only to bound how long it is reused when the response has no
// expires_in; 0 when tok is not a JWT with exp.
func jwtLifetime(tok string, now time.Time) time.Duration {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return 0
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 {
		return 0
	}
	return time.Unix(int64(exp), 0).Sub(now)
}

// endpointForErrors is the endpoint without query or fragment.
func endpointForErrors(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// sanitize removes known secrets, control characters and excess length
// from text that came from a token endpoint.
func sanitize(s string, redact []string) string {
	for _, r := range redact {
		if r != "" {
			s = strings.ReplaceAll(s, r, "[redacted]")
		}
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	const max = 300
	if len(s) > max {
		cut := max
		for cut > 0 && s[cut]&0xc0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// sanitizeCode keeps an RFC 6749 error code to its character set.
func sanitizeCode(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// redactErr renders a transport error with secrets removed.
func redactErr(err error, redact []string) error {
	msg := err.Error()
	clean := sanitize(msg, redact)
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Is lets errors.Is see context.DeadlineExceeded and the like without
// exposing the unredacted message.
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
