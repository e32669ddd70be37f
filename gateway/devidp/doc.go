// Package devidp is Mandate's DEVELOPMENT identity provider: an OAuth 2.0 /
// OpenID Connect authorization server in the Mandate process, so that a
// newcomer can try on-behalf-of execution (a human's token, an agent acting
// for them) with no outside services.
//
// # NOT FOR PRODUCTION
//
// Everything here trades security for convenience, on purpose:
//
//   - any client_id is accepted with ONE shared client secret;
//   - the login page signs in as whoever is named, with no password;
//   - a local tool holding the data directory can mint a token for any
//     user (the JWT bearer grant below);
//   - authorization requests, codes and refresh tokens live in memory and
//     are gone after a restart.
//
// What anyone can make it keep is bounded all the same: at most 1,024
// authorization requests are pending at once (then GET /authorize answers
// temporarily_unavailable until one completes or expires after 10
// minutes), each of at most 8 KiB (state, nonce, login_hint,
// redirect_uri, scopes, resources; else invalid_request), with one code
// each (visiting the callback again replaces it).
//
// Production deployments use the company's identity provider (Okta, Entra,
// Keycloak, ...) as the gateway's token issuer and as the RFC 8693 token
// exchange service.
//
// # What it is built on
//
// The protocol work is github.com/zitadel/oidc/v3/pkg/op (discovery, JWKS,
// authorize, token, PKCE, refresh, RFC 8693 token exchange, RFC 7523 JWT
// bearer grant, introspection, revocation). This package supplies its
// Storage (storage.go), a trivial login page (login.go), the data-directory
// state (state.go) and a front handler that maps RFC 8707 resource and
// audience parameters onto the token audience (devidp.go).
//
// # Tokens
//
// Access tokens are JWTs signed RS256 with a key persisted in
// DATA_DIR/devidp-signing-key.json (0600, created on first start; its kid
// is the key's RFC 7638 thumbprint, stable across restarts). They carry iss,
// sub, aud, exp, iat, nbf, jti, client_id and scope, plus:
//
//   - email, for users (a subject containing "@", e.g. alice@example.com);
//   - act, for delegation (RFC 8693 section 4.1): {"sub": "coding-agent"},
//     prior actors nested inside.
//
// aud is the requested resource/audience parameters (RFC 8707 / RFC 8693)
// when given, else Config.Audience (the gateway's canonical URL). Lifetime:
// Config.TokenLifetime (1 hour).
//
// # Grants
//
//   - client_credentials: an agent on its own. client_id = the agent's
//     service principal ("coding-agent"), client_secret = the shared dev
//     secret → sub = client_id = "coding-agent".
//   - urn:ietf:params:oauth:grant-type:jwt-bearer (RFC 7523): a local tool's
//     way to a USER token without a browser. The assertion is a JWT with
//     iss = sub = the user, aud = the issuer, signed RS256 with the user
//     assertion key from DATA_DIR/dev-idp.json (see Client.UserToken).
//   - urn:ietf:params:oauth:grant-type:token-exchange (RFC 8693): a client
//     (any client_id + the shared secret) presents subject_token (a token
//     of this provider) and optionally actor_token → an access token with
//     sub = the subject's sub and act = {"sub": <actor's sub>}. Without an
//     actor_token the subject token's act is kept. Token types accepted:
//     access_token and jwt; issued: access_token only. Scopes: as requested,
//     else the subject token's. This also plays the enterprise IdP for the
//     gateway's token_exchange auth mode.
//   - authorization_code with PKCE (S256 required) and refresh_token: the
//     provider plays an upstream's authorization server for the gateway's
//     per_user_oauth mode. A refresh token is always issued (offline_access
//     is implied) and rotates on every use. The resource parameter of the
//     authorization request becomes the access tokens' aud; a resource sent
//     again to the token endpoint must be one of those (else
//     invalid_target).
//
// # HTTP paths
//
// Relative to the issuer (Provider.Handler is mounted at the issuer's path
// with the path kept, e.g. mux.Handle("/oidc/", p.Handler())):
//
//	GET  /.well-known/openid-configuration    discovery (OpenID Connect)
//	GET  /.well-known/oauth-authorization-server  the same document (RFC 8414)
//	GET  /keys                                JWKS
//	GET  /authorize                           authorization endpoint
//	GET  /authorize/callback                  back from the login page
//	GET|POST /login                           the development sign-in page
//	POST /oauth/token                         token endpoint (all grants)
//	POST /oauth/introspect                    introspection (RFC 7662)
//	GET|POST /userinfo                        userinfo
//	POST /revoke                              revocation (refresh tokens)
//	GET  /end_session                         end session
//	GET  /healthz, /ready                     probes
//
// plus, at the server's root, Provider.MetadataPath()
// (/.well-known/oauth-authorization-server/oidc), the RFC 8414 metadata
// URL for an issuer with a path, if the mounting server routes it here.
//
// # Login
//
// The authorize endpoint redirects to ISSUER/login?authRequestID=ID. That
// page signs in as the user named by ?user=alice@example.com (or by the
// authorization request's login_hint) at once, and otherwise shows a one
// field form. There is no password and no consent screen.
//
// # Redirect URIs
//
// Allowed: loopback URLs (http://127.0.0.1:*, http://localhost:*,
// http://[::1]:*, any path), anything on the issuer's own origin, and the
// doublestar patterns in Config.RedirectURIs.
//
// # State in the data directory
//
//	devidp-signing-key.json  the RS256 signing key (private JWK), 0600
//	dev-idp.json             issuer, audience, the shared client secret and
//	                         the user assertion key (private JWK), 0600
//
// Both are created on first start and reused; dev-idp.json is rewritten
// when the issuer or audience changes. Files others may read are refused.
//
// With Config.Keys (replicas on one PostgreSQL database) the signing key
// and the secrets of dev-idp.json (client secret, user assertion key) live
// in that shared key store instead, created by the first replica, so every
// replica signs with the same key and accepts the others' tokens;
// devidp-signing-key.json is then not written, and dev-idp.json is still
// written (with the shared secrets and this replica's issuer) for local
// tools.
// Client (client.go) reads dev-idp.json and talks to the running provider
// over HTTP; `mandate dev-token` is built on it.
package devidp
