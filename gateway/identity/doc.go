// Package identity is the gateway's "authenticate" stage: it verifies the
// OAuth 2.0 bearer JWT of every inbound request against the configured
// OIDC issuers and maps it to a gateway.Identity (the human, and the agent
// acting for them). *Authenticator implements gateway.Authenticator.
//
//	a, err := identity.New(ctx, identity.Config{
//		Issuers:   []identity.Issuer{{URL: "https://idp.example/realms/corp"}},
//		Audiences: []string{"https://gw.example"},
//	})
//	id, err := a.Authenticate(ctx, r, "https://gw.example/mcp/my_github_mcp")
//	// err is a *gateway.AuthError: answer err.Status with
//	//   WWW-Authenticate: identity.WWWAuthenticate(err, identity.MetadataURL(public, r.URL.Path))
//
// # The token
//
// Only "Authorization: Bearer <token>" is read: the scheme is matched
// case-insensitively, spaces and tabs around the credentials are
// tolerated, the token must be one RFC 7235 token68 of at most
// MaxTokenSize (16 KiB) bytes, and exactly one Authorization header may be
// present. A token is never taken from the query string or the body; a
// request that carries access_token in its query string is refused
// outright (invalid_request), so a client leaking tokens into URLs (and
// from there into logs and Referer headers) learns so at once. No header,
// or one of another scheme, is 401 invalid_request "missing bearer token",
// which WWWAuthenticate renders without error attributes (RFC 6750 §3.1).
//
// # Verification
//
//   - Algorithms: an allow-list (default RS256, ES256, PS256, EdDSA) is
//     passed to jwt.ParseSigned (go-jose v4), so a token of any other "alg"
//     fails to parse. Only asymmetric algorithms can be configured: "none"
//     and HS256/384/512 are refused by New, because the keys come from a
//     public JWKS and HMAC with a public key as the secret is the classic
//     key-confusion forgery.
//   - Issuer: the unverified "iss" selects the one configured issuer it
//     equals exactly (no normalization); any other issuer is refused before
//     any network access. With no issuer configured every JWT is refused
//     (DescNoIssuer): the gateway then takes Mandate access tokens only. Each issuer's keys verify only that issuer's
//     tokens. The payload decoded to pick the issuer is the same byte
//     string whose signature is then verified, and the same decoded claims
//     are used afterwards: there is a single decode (go-jose's JSON, which
//     matches member names case-sensitively and rejects duplicate
//     members), so no parser differential can separate the claims checked
//     from the claims used.
//   - Key: by "kid" when the token has one, else every key of the right
//     type is tried (at most 64). A key qualifies only if its type fits
//     the alg's family (RSA for RS*/PS*, EC on the alg's curve for ES*,
//     Ed25519 for EdDSA) and its own "alg", if present, is the token's.
//     From the JWKS only public RSA (≥ 2048 bits), EC and OKP keys with
//     "use" sig (or none) and "key_ops" including verify (or none) are
//     kept; symmetric keys are dropped, and so is a key published with
//     private material (logged as an error: the IdP leaks its signing key).
//     Keys embedded in the token (jwk, jku, x5u, x5c headers) are never
//     used.
//   - Claims: exp is required; exp, nbf and iat are checked with Leeway
//     (default 30 s); "aud" must contain one of Config.Audiences (the
//     gateway's canonical URL, RFC 8707) or the resource URL of the
//     request, compared exactly.
//   - Scopes: from "scope" or, if absent, "scp" (either a space-separated
//     string or an array). If RequiredScopes are not all granted, a
//     token that is otherwise valid gets 403 insufficient_scope with Scope
//     set; an invalid token always gets 401. All AuthErrors of an
//     Authenticator with RequiredScopes carry Scope, so the 401 challenge
//     also tells the client which scopes to ask for (MCP 2025-11-25).
//   - Errors are *gateway.AuthError with a description that names the
//     failed check and never contains the token (attacker-chosen values
//     such as an unknown alg are clipped). An issuer whose keys cannot be
//     fetched makes its tokens 401 invalid_token ("signing keys are
//     unavailable"), logged as a warning.
//
// # Identity
//
//   - Actor: the "sub" of the outermost "act" claim (RFC 8693 delegation:
//     the outermost act is the current actor; nested ones are earlier
//     actors and are ignored). act.sub is used, not act.email: the actor is
//     an agent's service principal, named by its client id. An act without
//     sub is refused.
//   - Subject: the Issuer's SubjectClaim; by default "email" when present,
//     else "sub". An email with "email_verified": false is not used as the
//     subject (it falls back to sub, which names no catalog user, so the
//     call is denied later rather than attributed to someone else's
//     address); an explicit SubjectClaim "email" refuses such a token.
//   - Client on its own: without "act", when the token was issued to a
//     client for itself — sub equals client_id or azp, or the IdP says so
//     (Auth0 "gty": "client-credentials", Entra "idtyp": "app") — Subject
//     is the client id (the agent's service principal) and Actor "".
//     Nothing weaker counts (fail closed): a user token read as the
//     client's own would give the user's call the agent's privileges.
//   - ClientID is client_id, else azp; Issuer the configured issuer URL;
//     Expiry exp; Token the raw token (for RFC 8693 exchanges only, never
//     forwarded); TokenID the hex of the first 16 bytes of its SHA-256.
//
// Each configured issuer is trusted to name any subject: with several
// issuers, each must be one the organisation controls.
//
// # Signing keys
//
// Keys are fetched lazily, on the first token of each issuer (Warm fetches
// them on demand, e.g. for a readiness probe), so the gateway starts even
// when its IdP is down. The JWKS URL is Issuer.JWKSURL, or the jwks_uri of
// the issuer's metadata (OIDC Discovery, then RFC 8414), whose "issuer"
// must equal the configured URL. Issuer, JWKS and jwks_uri URLs must be
// https, or http to a loopback host; a redirect elsewhere is refused;
// documents are limited to 1 MiB.
//
// A key set is kept for the response's Cache-Control max-age clamped to
// [1 min, 24 h] (10 min without one). An unknown kid triggers a refetch,
// but no issuer is fetched more than once per MinRefreshInterval (10 s),
// whatever the reason (expiry, unknown kid, failure): a flood of tokens
// with made-up kids costs the IdP one request per 10 s. Concurrent fetches
// of one issuer are one request (singleflight); it runs detached from the
// request that started it (10 s timeout), and waiting callers give up with
// their own context. When a refetch fails the previous keys stay in use.
//
// # Cache
//
// Verified tokens are remembered (default 10,000, in 16 shards under
// read-write locks) until min(exp + leeway, verification + CacheTTL),
// CacheTTL defaulting to 5 min, which bounds how long a key withdrawn from
// the JWKS keeps admitting tokens it signed. A hit re-checks exp (an
// expired token is refused from the cache, without re-verification) and
// the audience against the request's resource, and returns the shared
// *Identity without allocating (≈ 0.2–0.4 µs, see bench_test.go): callers
// must treat it as read-only. The cache is keyed by the raw token, not its
// SHA-256 as first planned: a SHA-256 over a 1 KB token costs about 1 µs,
// more than the whole hit path, while the map compares the full token (no
// collision can admit another token) under the runtime's per-process
// seeded hash (no hash flooding); the token is held anyway in
// Identity.Token, whose bytes the key shares. The map is the gateway's
// one bounded, expiring cache (gateway/internal/ttlcache): a shard drops
// its expired tokens at most once a second, and a full one evicts, among
// a sample, an expired token or else the one due first. Only tokens that
// pass every check, the required scopes included, are cached.
//
// # Protected resource metadata (RFC 9728)
//
// MetadataURL gives where the metadata of a resource lives (the
// well-known prefix between host and path), MetadataDocument its JSON
// (resource, authorization_servers, bearer_methods_supported ["header"],
// scopes_supported), MetadataHandler serves it, and WWWAuthenticate builds
// the challenge: Bearer resource_metadata="...", error="...",
// error_description="...", scope="...". Values are quoted; characters RFC
// 6750 does not allow are replaced and the URL is percent-encoded, so no
// value can escape its quotes or inject a header line.
package identity
