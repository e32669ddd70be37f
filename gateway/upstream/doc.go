// Package upstream is the credentials stage of the MCP gateway: for one
// call of an authenticated caller (gateway.Identity) through a connection
// (gateway.Connection) it produces the Authorization header value the
// upstream MCP server receives, chosen by the connection's auth_mode.
//
// # The rule
//
// The inbound token (Identity.Token) is never sent upstream. It leaves the
// gateway only as the subject_token of an RFC 8693 exchange, to the
// identity provider named by the connection's token_endpoint. Every mode
// produces a credential issued for the upstream itself, and Authorization
// refuses, as a last line of defence, to return any value that contains
// the caller's token (a fresh value is searched for it; a cached value,
// checked when fresh, is compared with it), whatever produced it —
// including the per_user_oauth hook and an identity provider that echoes
// the subject token back.
//
// # Modes
//
//	none              "" (no Authorization header).
//	shared_principal  the connection's own identity, the same for every
//	                  caller: the bearer_token secret, or an OAuth client
//	                  credentials token (golang.org/x/oauth2/clientcredentials,
//	                  HTTP Basic client authentication, RFC 8707 resource =
//	                  the connection URL, plus audience when set).
//	mandate_jwt       Mandate itself vouches for the caller: a JWT signed by
//	                  a KeySet key, iss = Config.Issuer, sub = the subject,
//	                  act = {sub: actor} for an agent acting for a user,
//	                  aud = the audience option or the connection URL,
//	                  scope = the connection's scopes, iat = nbf, exp at most
//	                  5 minutes later and never after the inbound token's
//	                  expiry, random jti, client_id "mandate". The header is
//	                  typ at+jwt: the claims are an RFC 9068 access token.
//	token_exchange    RFC 8693 at the connection's token_endpoint:
//	                  subject_token = the inbound token (type access_token,
//	                  or jwt by Config.SubjectTokenType), requested type
//	                  access_token, audience (option, else the URL),
//	                  resource (the URL), scope; client authentication with
//	                  client_id/client_secret as HTTP Basic over the
//	                  form-encoded values (RFC 6749 §2.3.1), or client_id in
//	                  the form for a public client. No actor_token is sent:
//	                  the gateway holds no token of the agent's own, and the
//	                  agent's delegation already shows in the inbound
//	                  token's act claim, which the identity provider sees.
//	                  The response must be a Bearer access token (token_type
//	                  N_A, DPoP or another issued_token_type is refused).
//	per_user_oauth    delegated to Config.PerUserOAuth (gateway/oauthconnect);
//	                  without it the mode is an error.
//
// Any other or missing auth_mode is an error: the stage fails closed.
//
// # Caching
//
// Credentials are cached in one bounded (Config.MaxCacheEntries, default
// 100 000), sharded map and served until RefreshMargin (30 s, or a quarter
// of the lifetime when shorter) before they expire. A hit costs a few
// hundred nanoseconds and no allocation (see bench_test.go). Every input
// that changes a credential is part of its key, so a changed option or
// secret misses at once; secrets appear in keys only as a keyed 64-bit
// fingerprint; inbound tokens are not part of any key:
//
//	client credentials  connection, URL, audience, scopes, token endpoint,
//	                    client_id, secret fingerprint. Not the catalog
//	                    Revision: it is catalog-wide, so keying on it would
//	                    fetch anew after every unrelated catalog change; a
//	                    changed secret changes the fingerprint instead.
//	mandate_jwt         subject, actor, connection, audience, scopes. A
//	                    cached token is reused for a caller only if it does
//	                    not outlive that caller's inbound token.
//	token_exchange      subject, actor, connection, URL, audience, scopes,
//	                    endpoint, client: at most one exchange per (user,
//	                    agent, connection, scopes) per token lifetime, as
//	                    the gateway issue asks; a refreshed inbound token of
//	                    the same user and agent reuses the entry. The entry
//	                    never outlives the inbound token it was exchanged
//	                    for (Identity.Expiry) nor the exchanged token's
//	                    expires_in minus the margin.
//
// Concurrent misses for one key share one request (singleflight), which
// runs detached from the first caller's cancellation and bounded by
// Config.RequestTimeout; each caller still returns when its own context
// ends. Failures (OAuth errors, 5xx, timeouts) are never cached. Stats
// counts exchanges, client-credentials requests, mints, hits and misses.
//
// # Token endpoints
//
// The HTTP client never follows redirects (a redirected POST would carry
// the subject token and client secret elsewhere). Responses are read up to
// 1 MiB. Failures are *ExchangeError {Status, Code, Description}; the
// description is the provider's error_description with the subject token
// and client secret redacted, control characters removed and length
// capped, and a non-OAuth error body is never quoted.
//
// # Signing keys
//
// KeySet holds the mandate_jwt keys (ES256 by default; ES384, ES512,
// EdDSA, RS256, PS256 on request), kid = RFC 7638 thumbprint. A key is
// published as "next" one rotation period before it signs (never less
// than 2×JWKSMaxAge, even after a long downtime), signs for Rotation
// (default 24h), and
// stays published KeyRetention (the 5-minute maximum token lifetime plus
// 10 minutes for clock skew) after its successor took over, so a verifier
// that honours the JWKS Cache-Control max-age (JWKSMaxAge, 5 minutes)
// always knows a key before its first token and until its last token
// expired. Minted tokens are capped to expire before their key leaves the
// JWKS, so no cached token outlives its key's publication. Rotation
// happens lazily when a token is signed or the JWKS is served, and from a
// once-a-minute check while NewKeySet's context lives.
//
// The keys persist in Dir/upstream-signing-keys.json, mode 0600 (a more
// open file is restricted on load), written atomically (temporary file,
// fsync, rename, directory fsync); with the Seal/Open hooks the whole key
// list is encrypted at rest (for example by the catalog keyring), and a
// plaintext file is rewritten sealed. A corrupt or undecryptable file is
// an error, never silently replaced. One process owns a key directory.
// Replicas (--store postgres://) share the keys through
// KeySetConfig.Store (catalog/keystore, the same JSON as the file): the
// first to start creates them, a rotation is a compare-and-swap on the
// stored version (a replica that loses reloads the winner's keys), and
// each replica reloads them every minute and before each rotation, so
// every replica publishes the same JWKS and verifies the others' tokens.
// Activation times derive from the stored keys, so replicas rotate at the
// same moments. Gateway nodes share them the same way through the
// catalog's store (gateway/node.Keys) with KeySetConfig.Deferred: a node
// whose catalog does not answer at start has no keys yet, and signing and
// the JWKS fail (closed) until the store answers (tried at most once per
// second).
//
// JWKSHandler serves only the public halves (tested for every algorithm:
// no d, p, q, dp, dq, qi or k member), with Cache-Control max-age and an
// ETag; mount it at Issuer + /.well-known/jwks.json, which is where
// upstreams verifying mandate_jwt tokens look for the keys.
package upstream
