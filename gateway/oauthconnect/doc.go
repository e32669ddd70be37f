// Package oauthconnect implements the per_user_oauth upstream credential
// mode: each user connects their own account at the upstream's
// authorization server once, and the gateway then calls the upstream with
// that user's own access token, refreshed automatically. It implements
// gateway.Credentials (gateway/upstream delegates per_user_oauth to it)
// and serves the sign-in pages under PublicURL/oauth/.
//
// # Flow
//
//  1. Authorization(ctx, c, id) finds no grant of (id.Subject, c.Name) and
//     returns *gateway.SignInRequiredError whose URL is
//     PublicURL/oauth/connect?connection=<name>&ticket=<ticket>. gateway/mcp
//     turns it into an MCP URL elicitation where the client supports it.
//     The ticket is sealed with Config.Seal (AES-256-GCM of the catalog
//     keyring): authentic, unreadable, bound to the user, the acting agent
//     (shown, not enforced) and the connection, valid TicketTTL (10 min),
//     and consumed by Approve or Deny.
//  2. GET /oauth/connect checks the ticket, resolves the connection and its
//     authorization server, sets an HttpOnly, SameSite=Lax sign-in session
//     cookie and shows the consent page: "Mandate wants to connect your
//     account at <upstream host> for connection X as user alice", with the
//     agent and the scopes, Approve and Deny. The form carries a CSRF token,
//     HMAC(session cookie, ticket nonce).
//  3. POST /oauth/connect (Approve) checks the CSRF token against this
//     browser's cookie, consumes the ticket, and redirects to the
//     authorization endpoint with response_type=code, client_id,
//     redirect_uri=PublicURL/oauth/callback (always exactly this), scope
//     (the connection's scopes), state, code_challenge (PKCE S256) and
//     resource=c.URL (RFC 8707). The flow (user, connection, verifier, token
//     endpoint, issuer, SHA-256 of the session cookie) is kept in memory
//     under the state for FlowTTL (10 min).
//  4. GET /oauth/callback takes the flow of state (single use: removed on
//     first sight, whatever the outcome), checks its age, that the browser
//     presents the same session cookie, the RFC 9207 iss parameter, and
//     that the connection still has the same url and client_id; then
//     exchanges the code at the token endpoint chosen in step 3 with
//     code_verifier, the same redirect_uri and resource; seals and stores
//     the tokens and shows "connected, you can close this window".
//  5. Authorization serves the access token from memory while it is valid;
//     within RefreshSkew (60 s) of expiry it refreshes (one refresh per
//     (user, connection) at a time, resource sent again, a rotated refresh
//     token replaces the stored one). invalid_grant drops the grant and
//     the user gets a sign-in link again; other failures keep the grant,
//     use the old access token while it is still valid and are errors
//     after (fail closed). Invalidate forces a refresh (for example after
//     the upstream answered 401); Disconnect drops the grant and revokes
//     the refresh token at the RFC 7009 revocation endpoint when there is
//     one.
//
// Grants are per user: id.Subject (the human) owns the grant; an agent
// acting for the user (id.Actor) uses the user's grant, and the audit
// record (gateway/mcp) names both.
//
// # Discovery
//
// The authorization_endpoint and token_endpoint connection options, when
// both are set, are used as they are. Otherwise RFC 9728 protected resource
// metadata of the upstream is fetched from
// <origin>/.well-known/oauth-protected-resource<path>, then
// <origin>/.well-known/oauth-protected-resource, then from the
// resource_metadata of the 401 challenge of an unauthenticated GET of the
// connection url; its resource must be the connection url. Its first
// authorization server's RFC 8414 metadata
// (/.well-known/oauth-authorization-server, path inserted) or OpenID
// Connect discovery (/.well-known/openid-configuration, inserted then
// appended) must name that issuer and list S256 in
// code_challenge_methods_supported (the MCP authorization spec: refuse
// otherwise). A single endpoint option overrides what was discovered.
// Results are cached for an hour. Endpoints must be https (http only on a
// loopback host).
//
// The client is the connection's client_id option, registered at the
// authorization server with the redirect URI PublicURL/oauth/callback
// (Connector.RedirectURI); client_secret (a secret option) authenticates
// it with client_secret_basic, or client_secret_post when the server
// supports only that. Without client_secret it is a public client (PKCE
// only). Dynamic client registration is not done.
//
// # Storage
//
// TokenStore keeps one StoredToken per (user, connection): the access and
// refresh tokens sealed with Config.Seal, each sealed together with its
// purpose, user and connection, so a sealed value moved to another row, or
// used as another kind of value, does not open. NewFileTokenStore writes a
// JSON file with mode 0600 (directory 0700) atomically (temporary file,
// fsync, rename, directory fsync); NewMemoryTokenStore forgets on restart.
// NewSharedTokenStore keeps the grants in a catalog/keystore Store that
// replicas share (PostgreSQL, sealed with the master key once more); it is
// a Locker: a refresh, a new connect, Disconnect and Invalidate take the
// grant's lock in the store, and a refresh re-reads the grant under it, so
// when two replicas find the same grant expired one refreshes (providers
// rotate refresh tokens and refuse a used one) and the other uses its
// token. With a shared store a process reads the grant again after
// SharedRecheck (10 s) even when its cached access token is still valid: a
// disconnect on another replica stops its use there within that time.
// Status/List show user, connection, connected_at, expires_at, scopes and
// whether the grant is refreshable, never a token (SHOW CONNECTION STATUS).
//
// # Threat model
//
// Token passthrough: the upstream receives only a token its own
// authorization server issued to this client for resource=c.URL; the
// inbound token (id.Token) is never used here.
//
// A grant follows its connection: it is used only while the connection's
// url and client_id are those it was obtained for, and refreshed only at
// the token endpoint that issued it. An ALTER CONNECTION that points
// elsewhere drops the grant instead of sending a token or a refresh token
// to the new place.
//
// Confused deputy: nothing is sent to the authorization server before
// the user approved on Mandate's own consent page, which names the
// Mandate user, the agent, the connection, the upstream and the scopes.
// The consent page cannot be framed (frame-ancestors 'none',
// X-Frame-Options DENY); Approve needs the CSRF token bound to the
// browser's session cookie; the cookie is SameSite=Lax, so a cross-site
// POST does not carry it.
//
// Sign-in link theft: without Config.BrowserUser the ticket is a bearer
// capability for 10 minutes, used once. Whoever opens it first can attach
// an upstream account to the named Mandate user: an attacker holding
// alice's link could connect the attacker's upstream account to alice (her
// agents would then act on the attacker's data), and an attacker who
// tricks alice into opening the attacker's own link would obtain alice's
// upstream account for the attacker's identity. The consent page names the
// Mandate user and warns to deny if that is not you; the link travels only
// in the tool error to the user's own agent. Where the gateway has a
// browser login, set Config.BrowserUser: the pages then refuse a browser
// signed in as anyone other than the ticket's user.
//
// Authorization code and state: state is 256 random bits, single use,
// expires after FlowTTL, and is bound to the user and connection
// (server-side) and to the browser that approved (session cookie hash), so
// alice's state presented by bob's browser, or replayed, is refused. PKCE
// S256 binds the code to the verifier that never leaves the gateway;
// the redirect_uri is always exactly PublicURL/oauth/callback and is
// sent identically in the token request; RFC 9207 iss is checked when
// the server sends it (and required when its metadata promises it); the
// code is redeemed only at the token endpoint chosen when the flow began
// (mix-up defence).
//
// At rest: tokens exist in plaintext only in memory (the access token
// cache) and on the wire to the authorization server and the upstream.
// Nothing here logs a token, a code, a verifier, a ticket or the client
// secret; logs carry user, connection and outcome. Pages are sent with
// Cache-Control: no-store and Referrer-Policy: no-referrer (the ticket is
// in the page URL).
//
// Limits: at most 10,000 sign-ins are in progress on a node, at most 16 of
// them one user's (the user's next replaces their oldest, so no user can
// hold off everyone else's); a shared FlowStore applies the same per-user
// rule (a row per user lists their flows). A node without a FlowStore
// remembers at most 40,000 used tickets until they expire; when that many
// are unexpired, Approve is refused (503, "try again") rather than a used
// ticket forgotten, which would let it be used again. Flows and
// used-ticket nonces are kept in the memory of the node that served the
// consent page, so with several gateway nodes /oauth/ must be routed to
// one node (or sticky) per sign-in, unless the store is a
// FlowStore (NewSharedTokenStore: replicas on one database, with one
// Config.CSRFKey), which keeps them, sealed, where every replica finds
// them (a state taken once, a ticket used once); a restart between Approve
// and the callback fails that sign-in (the user opens a new link). The
// token cache is per node; with a shared store (a Locker) it is re-read
// every SharedRecheck.
package oauthconnect
