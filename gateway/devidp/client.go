package devidp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/mandatehq/mandate/catalog/strictjson"
)

// ErrNotRunning means no development provider answers at the issuer URL
// recorded in dev-idp.json.
var ErrNotRunning = errors.New("devidp: the development identity provider is not running")

// Client obtains tokens from a RUNNING development provider over HTTP, as
// a local tool does. It reads what it needs from DATA_DIR/dev-idp.json:
// the issuer, the shared client secret and the user assertion key.
type Client struct {
	Issuer   string // from dev-idp.json
	Audience string // the provider's default audience, from dev-idp.json
	// HTTP is the client used (default: one with a 30 second timeout).
	HTTP *http.Client

	secret   string
	userKey  *jose.JSONWebKey
	endpoint string // token endpoint, discovered on first use
}

// NewClient reads DATA_DIR/dev-idp.json. A missing file is ErrNoState.
func NewClient(dataDir string) (*Client, error) {
	st, err := readState(dataDir)
	if err != nil {
		return nil, err
	}
	return &Client{Issuer: st.Issuer, Audience: st.Audience, HTTP: &http.Client{Timeout: 30 * time.Second},
		secret: st.ClientSecret, userKey: st.UserAssertionKey}, nil
}

// TokenOptions are the optional parameters of a token request.
type TokenOptions struct {
	// Audience becomes the token's aud (sent as RFC 8693 audience);
	// default: the provider's Audience.
	Audience []string
	Scopes   []string
}

// Token is a successful token endpoint response.
type Token struct {
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	IssuedTokenType string `json:"issued_token_type,omitempty"`
	ExpiresIn       int64  `json:"expires_in,omitempty"`
	Scope           string `json:"scope,omitempty"`
	RefreshToken    string `json:"refresh_token,omitempty"`
}

// TokenError is an OAuth error response of the token endpoint.
type TokenError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *TokenError) Error() string {
	if e.Description == "" {
		return fmt.Sprintf("token endpoint: HTTP %d %s", e.Status, e.Code)
	}
	return fmt.Sprintf("token endpoint: HTTP %d %s: %s", e.Status, e.Code, e.Description)
}

// UserToken gets a token for user (sub = user, email) with the RFC 7523
// JWT bearer grant, signing the assertion with the user assertion key.
func (c *Client) UserToken(ctx context.Context, user string, o TokenOptions) (*Token, error) {
	if user == "" {
		return nil, errors.New("devidp: the user is empty")
	}
	assertion, err := c.userAssertion(user, time.Now())
	if err != nil {
		return nil, err
	}
	form := o.form()
	form.Set("grant_type", string(oidc.GrantTypeBearer))
	form.Set("assertion", assertion)
	return c.post(ctx, form, "")
}

// ClientToken gets a token for the agent clientID acting on its own
// (client credentials: sub = client_id = clientID).
func (c *Client) ClientToken(ctx context.Context, clientID string, o TokenOptions) (*Token, error) {
	form := o.form()
	form.Set("grant_type", string(oidc.GrantTypeClientCredentials))
	return c.post(ctx, form, clientID)
}

// Exchange performs an RFC 8693 token exchange as client clientID:
// subjectToken (and actorToken, if not empty) → an access token with
// sub = the subject and act = {"sub": the actor}.
func (c *Client) Exchange(ctx context.Context, clientID, subjectToken, actorToken string, o TokenOptions) (*Token, error) {
	form := o.form()
	form.Set("grant_type", string(oidc.GrantTypeTokenExchange))
	form.Set("subject_token", subjectToken)
	form.Set("subject_token_type", string(oidc.AccessTokenType))
	if actorToken != "" {
		form.Set("actor_token", actorToken)
		form.Set("actor_token_type", string(oidc.AccessTokenType))
	}
	form.Set("requested_token_type", string(oidc.AccessTokenType))
	return c.post(ctx, form, clientID)
}

func (o TokenOptions) form() url.Values {
	form := url.Values{}
	for _, a := range o.Audience {
		form.Add("audience", a)
	}
	if len(o.Scopes) > 0 {
		form.Set("scope", strings.Join(o.Scopes, " "))
	}
	return form
}

// userAssertion is the RFC 7523 assertion for user: iss = sub = user,
// aud = the issuer, valid 5 minutes.
func (c *Client) userAssertion(user string, now time.Time) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: c.userKey}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("devidp: %w", err)
	}
	payload, err := json.Marshal(map[string]any{
		"iss": user, "sub": user, "aud": []string{c.Issuer},
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "jti": randomID(),
	})
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devidp: signing the assertion: %w", err)
	}
	return jws.CompactSerialize()
}

// tokenEndpoint discovers the token endpoint, which also tells whether
// this data directory's provider is the one answering.
func (c *Client) tokenEndpoint(ctx context.Context) (string, error) {
	if c.endpoint != "" {
		return c.endpoint, nil
	}
	u := c.Issuer + PathDiscovery
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w at %s: %v", ErrNotRunning, c.Issuer, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%w at %s: GET %s answered %s", ErrNotRunning, c.Issuer, u, resp.Status)
	}
	var d struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := strictjson.Decode(resp.Body, &d, strictjson.Options{}); err != nil {
		return "", fmt.Errorf("%w at %s: discovery document: %v", ErrNotRunning, c.Issuer, err)
	}
	if d.Issuer != c.Issuer || d.TokenEndpoint == "" {
		return "", fmt.Errorf("%w at %s: the server there is another provider (issuer %q)", ErrNotRunning, c.Issuer, d.Issuer)
	}
	c.endpoint = d.TokenEndpoint
	return c.endpoint, nil
}

// post sends a token request, authenticated as clientID with the shared
// secret unless clientID is empty.
func (c *Client) post(ctx context.Context, form url.Values, clientID string) (*Token, error) {
	endpoint, err := c.tokenEndpoint(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if clientID != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(c.secret))
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w at %s: %v", ErrNotRunning, c.Issuer, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		te := &TokenError{Status: resp.StatusCode}
		if strictjson.Unmarshal(body, te, strictjson.Options{}) != nil || te.Code == "" {
			te.Code = "invalid_response"
			te.Description = strings.TrimSpace(string(body))
		}
		return nil, te
	}
	t := new(Token)
	if err := strictjson.Unmarshal(body, t, strictjson.Options{}); err != nil || t.AccessToken == "" {
		return nil, fmt.Errorf("devidp: the token endpoint answered without an access token")
	}
	return t, nil
}
