// Package node is the client side of a remote gateway node (mandate gateway
// --catalog URL --node-token-file FILE): what the data plane needs from the
// catalog besides authorization decisions (enforce/client), over the
// catalog's HTTP API and its node token ("Authorization: Bearer <token>").
//
//   - AuditSink (gateway.AuditSink) sends audit events to
//     POST /api/v1/audit with group commit: concurrent Records are batched
//     by a catalog.AuditLog whose writer is the API, a batch goes out as
//     requests of at most MaxRequestEvents events and MaxRequestBytes (split
//     further when the catalog answers 413), and Record returns once the
//     catalog answered that the events are durable. Transient failures
//     (transport errors, 5xx, 429) are retried with backoff and jitter for up
//     to WriteTimeout; then, and on 400 or 401, every Record of the batch
//     fails and the gateway refuses the call (fail closed). Delivery is at
//     least once: a retry after a lost answer writes the events again with
//     the same event_id.
//   - Connections (gateway.Connections) resolves connection names with
//     GET /api/v1/connections/{name}: the full name, URL, auth mode,
//     non-secret options and decrypted secrets. Answers (and unknown names)
//     are cached until Config.Revision (enforce/client.Client.Revision)
//     reports a newer catalog revision than the answer's, and at most
//     ConnectionTTL; concurrent misses share one request. An unreachable
//     catalog is an error, never gateway.ErrNoConnection.
//   - LocalConnections is the same for a gateway in the catalog's process
//     (mandate serve): resolved from the catalog.Service's model through
//     enforce/api.ConnectionResolver, cached until the next revision.
//   - ModelServices (gateway.ModelServices) resolves model services with
//     GET /api/v1/model-services/{name} (their usable destinations with
//     the provider services' decrypted API keys and prices) and lists them
//     with GET /api/v1/model-services, cached like connections;
//     LocalModelServices is the same in the catalog's process.
//   - AccessTokens (gateway.AccessTokens) verifies access tokens with
//     POST /api/v1/access-tokens/verify, sending the token's SHA-256 only;
//     answers, invalid ones included, are cached until a newer revision is
//     known (a dropped token is refused once the node learns of the
//     revision that dropped it) and re-checked for expiry on every call;
//     concurrent presentations of one token share one request, so a token,
//     made up or not, costs at most one request per revision. Invalid
//     answers are held apart from valid ones (each at most CacheSize), so
//     made-up tokens never evict a valid token's answer; distinct made-up
//     tokens cost a request each, bounded by the node's request caps. LocalAccessTokens looks a
//     token up in the current model once per catalog revision (its valid
//     answers cached by the token's SHA-256 until the next revision, the
//     expiry re-checked on every call; unknown tokens not cached). Either
//     answers the token's user as Subject and its agent as Actor (one
//     Identity per answer, shared read-only); an invalid token is a 401
//     *gateway.AuthError.
//   - Limits fetches the rate limits and budgets (GET /api/v1/limits),
//     cached per revision; LimitDefinitions converts them (or
//     api.LimitsResolver's, in process) for gateway/limits; Leases
//     sends the node's lease requests (POST /api/v1/limits/leases) for
//     gateway/limits/nodelimits.
//   - Keys (keystore.Store) is the catalog's key store over POST
//     /api/v1/keys: wrapped in keystore.Sealed with the master key, a
//     node shares the mandate_jwt signing keys and users' upstream grants
//     with the server and the other nodes, and blobs leave the node
//     sealed. Lock is a lease on the catalog, renewed every third of its
//     TTL until unlock.
//   - ReadTokenFile reads --node-token-file (refusing a file others may
//     read).
//
// Secrets travel in the connections answer: use an https BaseURL (and
// TLSConfig) unless the network between node and catalog is trusted, and
// never log a Connection's Secrets.
package node
