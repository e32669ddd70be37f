package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bmatcuk/doublestar/v4"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is the op.Storage of the development provider: clients are made
// up on demand, authorization requests, codes and refresh tokens live in
// memory, access tokens are stateless JWTs.
type storage struct {
	p   *Provider
	op  *op.Provider // set after op.NewProvider
	key signingKey

	mu           sync.Mutex
	isClosed     bool
	authRequests map[string]*authRequest  // by id, at most maxAuthRequests
	codes        map[string]string        // code → auth request id, one per request
	refresh      map[string]*refreshGrant // by refresh token
}

var (
	_ op.Storage                            = (*storage)(nil)
	_ op.ClientCredentialsStorage           = (*storage)(nil)
	_ op.TokenExchangeStorage               = (*storage)(nil)
	_ op.TokenExchangeTokensVerifierStorage = (*storage)(nil)
	_ op.CanGetPrivateClaimsFromRequest     = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest          = (*storage)(nil)
	_ op.JWTProfileTokenStorage             = (*storage)(nil)
)

func newStorage(p *Provider, key *jose.JSONWebKey) *storage {
	return &storage{
		p:            p,
		key:          signingKey{id: key.KeyID, key: key.Key.(*rsa.PrivateKey)},
		authRequests: map[string]*authRequest{},
		codes:        map[string]string{},
		refresh:      map[string]*refreshGrant{},
	}
}

func (s *storage) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.isClosed = true
	clear(s.authRequests)
	clear(s.codes)
	clear(s.refresh)
}

func (s *storage) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isClosed
}

func (s *storage) now() time.Time { return s.p.cfg.Now() }

func randomID() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// checkPrincipal refuses a name Config.PrincipalExists does not know.
func (s *storage) checkPrincipal(ctx context.Context, name, role string) error {
	if name == "" {
		return oidc.ErrInvalidRequest().WithDescription("the %s is empty", role)
	}
	if s.p.cfg.PrincipalExists == nil {
		return nil
	}
	ok, err := s.p.cfg.PrincipalExists(ctx, name)
	if err != nil {
		return oidc.ErrServerError().WithDescription("cannot look up the %s", role).WithParent(err)
	}
	if !ok {
		return oidc.ErrAccessDenied().WithDescription("the %s %q is not a known principal", role, name)
	}
	return nil
}

// isUser tells users (alice@example.com) from agents (coding-agent).
func isUser(name string) bool { return strings.Contains(name, "@") }

// ---- clients ----

// client is any client_id: confidential, authenticated with the shared
// secret, allowed every grant.
type client struct {
	id string
	s  *storage
}

var _ op.HasRedirectGlobs = (*client)(nil)

func (c *client) GetID() string                       { return c.id }
func (c *client) RedirectURIs() []string              { return nil }
func (c *client) PostLogoutRedirectURIs() []string    { return nil }
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *client) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials,
		oidc.GrantTypeTokenExchange, oidc.GrantTypeBearer}
}
func (c *client) LoginURL(id string) string {
	return c.s.p.issuer + PathLogin + "?authRequestID=" + id
}
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.s.p.cfg.TokenLifetime }
func (c *client) DevMode() bool                       { return false }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) IsScopeAllowed(string) bool           { return true }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }

// RedirectURIGlobs: loopback URLs, the issuer's origin, Config.RedirectURIs.
func (c *client) RedirectURIGlobs() []string {
	g := []string{
		"http://127.0.0.1:*/**", "http://127.0.0.1/**",
		"http://localhost:*/**", "http://localhost/**",
		`http://\[::1\]:*/**`, `http://\[::1\]/**`,
		escapeGlob(c.s.p.origin) + "/**",
	}
	return append(g, c.s.p.cfg.RedirectURIs...)
}
func (c *client) PostLogoutRedirectURIGlobs() []string { return c.RedirectURIGlobs() }

func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`, `{`, `\{`, `}`, `\}`)
	return r.Replace(s)
}

func validGlob(g string) error {
	if !doublestar.ValidatePattern(g) {
		return errors.New("not a valid pattern")
	}
	return nil
}

func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if id == "" || len(id) > 256 {
		return nil, errors.New("client_id must be 1 to 256 characters")
	}
	return &client{id: id, s: s}, nil
}

// AuthorizeClientIDSecret accepts any client_id with the shared secret.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if id == "" || len(id) > 256 {
		return errors.New("client_id must be 1 to 256 characters")
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(s.p.state.ClientSecret)) != 1 {
		return errors.New("wrong client secret")
	}
	return nil
}

func (s *storage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, id, secret); err != nil {
		return nil, err
	}
	return &client{id: id, s: s}, nil
}

// ClientCredentialsTokenRequest: the agent acting on its own, sub = client_id.
func (s *storage) ClientCredentialsTokenRequest(ctx context.Context, id string, scopes []string) (op.TokenRequest, error) {
	if err := s.checkPrincipal(ctx, id, "client"); err != nil {
		return nil, err
	}
	return &clientCredentialsRequest{subject: id, audience: s.p.orDefault(targetsFrom(ctx)), scopes: scopes}, nil
}

type clientCredentialsRequest struct {
	subject  string
	audience []string
	scopes   []string
}

func (r *clientCredentialsRequest) GetSubject() string    { return r.subject }
func (r *clientCredentialsRequest) GetAudience() []string { return r.audience }
func (r *clientCredentialsRequest) GetScopes() []string   { return r.scopes }

// ---- authorization code flow ----

type authRequest struct {
	id           string
	clientID     string
	redirectURI  string
	state        string
	nonce        string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge
	loginHint    string
	audience     []string
	expires      time.Time
	code         string // the code issued for it (the latest replaces an earlier one)
	subject      string
	authTime     time.Time
	done         bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return nil }
func (a *authRequest) GetAudience() []string                 { return a.audience }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

func (a *authRequest) copy() *authRequest {
	c := *a
	c.scopes = slices.Clone(a.scopes)
	c.audience = slices.Clone(a.audience)
	return &c
}

// CreateAuthRequest requires PKCE with S256 and takes the audience from the
// request's resource parameters (withTargets). A refresh token is always
// issued, so offline_access is implied.
func (s *storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	if slices.Contains(req.Prompt, oidc.PromptNone) && req.LoginHint == "" {
		return nil, oidc.ErrLoginRequired()
	}
	scopes := slices.Clone([]string(req.Scopes))
	if !slices.Contains(scopes, oidc.ScopeOfflineAccess) {
		scopes = append(scopes, oidc.ScopeOfflineAccess)
	}
	audience := s.p.orDefault(targetsFrom(ctx))
	size := len(req.ClientID) + len(req.RedirectURI) + len(req.State) + len(req.Nonce) + len(req.LoginHint) + len(req.CodeChallenge)
	for _, v := range slices.Concat(scopes, audience) {
		size += len(v)
	}
	if size > maxAuthRequestBytes {
		return nil, oidc.ErrInvalidRequest().WithDescription("the authorization request is larger than %d bytes", maxAuthRequestBytes)
	}
	a := &authRequest{
		id:           randomID(),
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       scopes,
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		challenge:    &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
		loginHint:    req.LoginHint,
		audience:     audience,
		expires:      s.now().Add(authRequestLifetime),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	if len(s.authRequests) >= maxAuthRequests {
		// RFC 6749 section 4.1.2.1's error for a temporary overload.
		return nil, &oidc.Error{ErrorType: "temporarily_unavailable", Description: "too many authorization requests in progress; retry later"}
	}
	s.authRequests[a.id] = a
	return a.copy(), nil
}

// sweepLocked drops expired authorization requests, codes and refresh tokens.
func (s *storage) sweepLocked() {
	now := s.now()
	for id, a := range s.authRequests {
		if now.After(a.expires) {
			delete(s.authRequests, id)
		}
	}
	for code, id := range s.codes {
		if a, ok := s.authRequests[id]; !ok || a.code != code {
			delete(s.codes, code)
		}
	}
	for t, g := range s.refresh {
		if now.After(g.expires) {
			delete(s.refresh, t)
		}
	}
}

func (s *storage) authRequestLocked(id string) (*authRequest, error) {
	a, ok := s.authRequests[id]
	if !ok || s.now().After(a.expires) {
		return nil, errors.New("authorization request not found or expired")
	}
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(id)
	if err != nil {
		return nil, err
	}
	return a.copy(), nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errors.New("code not found, used or expired")
	}
	a, err := s.authRequestLocked(id)
	if err != nil {
		return nil, err
	}
	return a.copy(), nil
}

// SaveAuthCode keeps one code per authorization request: a callback
// visited again issues a new code, which replaces the earlier one.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(id)
	if err != nil {
		return err
	}
	if a.code != "" {
		delete(s.codes, a.code)
	}
	a.code = code
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest runs once the code is exchanged: the code is single use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.authRequests[id]; ok {
		delete(s.codes, a.code)
		delete(s.authRequests, id)
	}
	return nil
}

// completeLogin marks the authorization request id as signed in by user.
func (s *storage) completeLogin(ctx context.Context, id, user string) error {
	if err := s.checkPrincipal(ctx, user, "user"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(id)
	if err != nil {
		return oidc.ErrInvalidRequest().WithDescription("the authorization request is unknown or expired")
	}
	a.subject, a.authTime, a.done = user, s.now(), true
	return nil
}

// loginHint returns the login_hint of the authorization request id.
func (s *storage) loginHint(id string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.authRequestLocked(id)
	if err != nil {
		return "", err
	}
	return a.loginHint, nil
}

// grantedAudience returns the audience granted to an unexchanged code or a
// live refresh token.
func (s *storage) grantedAudience(code, refreshToken string) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code != "" {
		if id, ok := s.codes[code]; ok {
			if a, ok := s.authRequests[id]; ok {
				return slices.Clone(a.audience), true
			}
		}
		return nil, false
	}
	if g, ok := s.refresh[refreshToken]; ok {
		return slices.Clone(g.audience), true
	}
	return nil, false
}

// ---- refresh tokens ----

type refreshGrant struct {
	token    string
	clientID string
	subject  string
	audience []string
	scopes   []string
	authTime time.Time
	expires  time.Time
}

func (g *refreshGrant) GetAMR() []string             { return nil }
func (g *refreshGrant) GetAudience() []string        { return g.audience }
func (g *refreshGrant) GetAuthTime() time.Time       { return g.authTime }
func (g *refreshGrant) GetClientID() string          { return g.clientID }
func (g *refreshGrant) GetScopes() []string          { return g.scopes }
func (g *refreshGrant) GetSubject() string           { return g.subject }
func (g *refreshGrant) SetCurrentScopes(sc []string) { g.scopes = sc }

func (s *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	g, ok := s.refresh[token]
	var c refreshGrant
	if ok {
		c = *g
		c.audience, c.scopes = slices.Clone(g.audience), slices.Clone(g.scopes)
	}
	s.mu.Unlock()
	if !ok || s.now().After(c.expires) {
		return nil, errors.New("refresh token not found, used or expired")
	}
	if err := s.checkPrincipal(ctx, c.subject, "user"); err != nil {
		return nil, err
	}
	return &c, nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[token]
	if !ok || g.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return g.subject, token, nil
}

// ---- issuing tokens ----

func (s *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.logIssued(req)
	return randomID(), s.now().Add(s.p.cfg.TokenLifetime), nil
}

// CreateAccessAndRefreshTokens serves the code flow (new refresh token)
// and the refresh grant (rotation: the presented token is spent).
func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	g := &refreshGrant{
		token:    randomID(),
		subject:  req.GetSubject(),
		audience: slices.Clone(req.GetAudience()),
		scopes:   slices.Clone(req.GetScopes()),
		expires:  s.now().Add(s.p.cfg.RefreshTokenLifetime),
	}
	switch r := req.(type) {
	case *authRequest:
		g.clientID, g.authTime = r.clientID, r.authTime
	case *refreshGrant:
		g.clientID, g.authTime = r.clientID, r.authTime
	default:
		return "", "", time.Time{}, oidc.ErrInvalidRequest().WithDescription("refresh tokens are issued only by the authorization code and refresh token grants")
	}
	s.mu.Lock()
	if current != "" {
		if _, ok := s.refresh[current]; !ok {
			s.mu.Unlock()
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token already used")
		}
		delete(s.refresh, current)
	}
	s.sweepLocked()
	s.refresh[g.token] = g
	s.mu.Unlock()
	s.logIssued(req)
	return randomID(), g.token, s.now().Add(s.p.cfg.TokenLifetime), nil
}

func grantOf(req op.TokenRequest) string {
	switch req.(type) {
	case op.TokenExchangeRequest:
		return "token_exchange"
	case *authRequest:
		return "authorization_code"
	case *refreshGrant:
		return "refresh_token"
	case *clientCredentialsRequest:
		return "client_credentials"
	case *oidc.JWTTokenRequest:
		return "jwt_bearer"
	}
	return fmt.Sprintf("%T", req)
}

func (s *storage) logIssued(req op.TokenRequest) {
	ev := s.p.cfg.Logger.Info().Str("grant", grantOf(req)).Str("sub", req.GetSubject()).Strs("aud", req.GetAudience())
	if te, ok := req.(op.TokenExchangeRequest); ok {
		ev = ev.Str("client_id", te.GetClientID())
		if a := te.GetExchangeActor(); a != "" {
			ev = ev.Str("act", a)
		}
	}
	ev.Msg("devidp: issued an access token")
}

// GetPrivateClaimsFromRequest adds scope (op leaves it out of JWT access
// tokens) and, for users, email.
func (s *storage) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	claims := map[string]any{}
	addScope(claims, req.GetScopes())
	if _, agent := req.(*clientCredentialsRequest); !agent && isUser(req.GetSubject()) {
		claims["email"] = req.GetSubject()
	}
	return claims, nil
}

// addScope sets the RFC 9068 scope claim (space-separated).
func addScope(claims map[string]any, scopes []string) {
	if len(scopes) > 0 {
		claims["scope"] = strings.Join(scopes, " ")
	}
}

func (s *storage) GetPrivateClaimsFromScopes(_ context.Context, userID, _ string, _ []string) (map[string]any, error) {
	if isUser(userID) {
		return map[string]any{"email": userID}, nil
	}
	return nil, nil
}

func (s *storage) setUserinfo(ui *oidc.UserInfo, subject string) {
	ui.Subject = subject
	if isUser(subject) {
		ui.Email = subject
		ui.EmailVerified = true
	}
	ui.PreferredUsername = subject
}

func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

func (s *storage) SetUserinfoFromRequest(_ context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	s.setUserinfo(ui, req.GetSubject())
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, ui *oidc.UserInfo, _, subject, _ string) error {
	s.setUserinfo(ui, subject)
	return nil
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, _, subject, _ string) error {
	resp.Subject = subject
	resp.Username = subject
	return nil
}

// ---- JWT bearer grant (RFC 7523) ----

// GetKeyByIDAndClientID returns the user assertion key for an assertion
// whose issuer (= subject) is a known principal.
func (s *storage) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	k := s.p.state.UserAssertionKey
	if keyID != k.KeyID {
		return nil, fmt.Errorf("unknown assertion key %q", keyID)
	}
	// The user is checked once the signature is (ValidateJWTProfileScopes):
	// an error here would reach the caller as "invalid signature".
	pub := k.Public()
	return &pub, nil
}

// ValidateJWTProfileScopes runs after the assertion's signature verified:
// an unknown user is refused here, with an error that names it.
func (s *storage) ValidateJWTProfileScopes(ctx context.Context, user string, scopes []string) ([]string, error) {
	if err := s.checkPrincipal(ctx, user, "user"); err != nil {
		return nil, err
	}
	return scopes, nil
}

func (s *storage) JWTProfileTokenType(context.Context, op.TokenRequest) (op.AccessTokenType, error) {
	return op.AccessTokenTypeJWT, nil
}

// ---- token exchange (RFC 8693) ----

func exchangeableType(t oidc.TokenType) bool {
	return t == oidc.AccessTokenType || t == oidc.JWTTokenType
}

func (s *storage) ValidateTokenExchangeRequest(ctx context.Context, req op.TokenExchangeRequest) error {
	switch req.GetRequestedTokenType() {
	case "":
		req.SetRequestedTokenType(oidc.AccessTokenType)
	case oidc.AccessTokenType:
	default:
		return oidc.ErrInvalidRequest().WithDescription("requested_token_type: only %s is issued", oidc.AccessTokenType)
	}
	if !exchangeableType(req.GetExchangeSubjectTokenType()) {
		return oidc.ErrInvalidRequest().WithDescription("subject_token_type must be %s or %s", oidc.AccessTokenType, oidc.JWTTokenType)
	}
	if err := s.checkPrincipal(ctx, req.GetExchangeSubject(), "subject"); err != nil {
		return err
	}
	if req.GetExchangeActorTokenIDOrToken() != "" {
		if !exchangeableType(req.GetExchangeActorTokenType()) {
			return oidc.ErrInvalidRequest().WithDescription("actor_token_type must be %s or %s", oidc.AccessTokenType, oidc.JWTTokenType)
		}
		if err := s.checkPrincipal(ctx, req.GetExchangeActor(), "actor"); err != nil {
			return err
		}
	}
	if len(req.GetScopes()) == 0 {
		if sc, ok := req.GetExchangeSubjectTokenClaims()["scope"].(string); ok {
			req.SetCurrentScopes(strings.Fields(sc))
		}
	}
	return nil
}

func (s *storage) CreateTokenExchangeRequest(context.Context, op.TokenExchangeRequest) error {
	return nil
}

// exchangeClaims: email of the subject, and act: the actor, with the
// subject token's own act (earlier actors) nested inside; without an actor
// the subject token's act is kept.
func exchangeClaims(req op.TokenExchangeRequest) map[string]any {
	claims := map[string]any{}
	subj := req.GetExchangeSubjectTokenClaims()
	if e, ok := subj["email"].(string); ok && e != "" {
		claims["email"] = e
	} else if isUser(req.GetSubject()) {
		claims["email"] = req.GetSubject()
	}
	prior, _ := subj["act"].(map[string]any)
	if actor := req.GetExchangeActor(); actor != "" {
		act := map[string]any{"sub": actor}
		if prior != nil {
			act["act"] = prior
		}
		claims["act"] = act
	} else if prior != nil {
		claims["act"] = prior
	}
	return claims
}

func (s *storage) GetPrivateClaimsFromTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) (map[string]any, error) {
	claims := exchangeClaims(req)
	addScope(claims, req.GetScopes())
	return claims, nil
}

func (s *storage) SetUserinfoFromTokenExchangeRequest(_ context.Context, ui *oidc.UserInfo, req op.TokenExchangeRequest) error {
	s.setUserinfo(ui, req.GetSubject())
	for k, v := range exchangeClaims(req) {
		ui.AppendClaims(k, v)
	}
	return nil
}

// VerifyExchangeSubjectToken and VerifyExchangeActorToken accept
// subject_token_type/actor_token_type jwt for this provider's own tokens.
func (s *storage) VerifyExchangeSubjectToken(ctx context.Context, token string, t oidc.TokenType) (string, string, map[string]any, error) {
	return s.verifyOwnJWT(ctx, token, t)
}

func (s *storage) VerifyExchangeActorToken(ctx context.Context, token string, t oidc.TokenType) (string, string, map[string]any, error) {
	return s.verifyOwnJWT(ctx, token, t)
}

func (s *storage) verifyOwnJWT(ctx context.Context, token string, t oidc.TokenType) (string, string, map[string]any, error) {
	if t != oidc.JWTTokenType {
		return "", "", nil, errors.New("not a token of this provider")
	}
	c, err := op.VerifyAccessToken[*oidc.AccessTokenClaims](ctx, token, s.op.AccessTokenVerifier(ctx))
	if err != nil {
		return "", "", nil, err
	}
	return c.JWTID, c.Subject, c.Claims, nil
}

// ---- sessions, revocation, keys ----

func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, g := range s.refresh {
		if g.subject == userID && g.clientID == clientID {
			delete(s.refresh, t)
		}
	}
	return nil
}

// RevokeToken revokes refresh tokens; access tokens are stateless JWTs and
// live until they expire.
func (s *storage) RevokeToken(_ context.Context, token, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.refresh[token]
	if !ok {
		return nil
	}
	if g.clientID != clientID {
		return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
	}
	delete(s.refresh, token)
	return nil
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ k *signingKey }

func (p publicKey) ID() string                         { return p.k.id }
func (p publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (p publicKey) Use() string                        { return "sig" }
func (p publicKey) Key() any                           { return &p.k.key.PublicKey }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return &s.key, nil }
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}
func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{&s.key}}, nil
}

func (s *storage) Health(context.Context) error { return nil }
