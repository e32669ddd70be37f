// Package api is the catalog's HTTP authorization API, served on
// --http-addr to gateway nodes.
//
// Every route requires the node token ("Authorization: Bearer <token>",
// compared in constant time); anything else is answered 401 with
// WWW-Authenticate: Bearer, whatever the path.
//
//   - POST /api/v1/authorize answers one check
//     {"subject", "actor"?, "privilege", "securable": {"type", "name"},
//     "context"?, "at_least_revision"?, "explain"?} with
//     {"allowed", "reason", "revision", "steps"?, "contextual"?} (contextual:
//     a policy took part, the answer holds for this context only), or a batch
//     {"checks": [...], "at_least_revision"?} with {"results": [...]} in
//     order. An unknown principal or securable is a denial with a reason.
//     A malformed request is 400 {"error"}; a body over Options.MaxBody or
//     a batch over Options.MaxBatch is 413.
//   - at_least_revision (Zanzibar's new-enemy problem): the answer comes
//     from a snapshot at that revision or newer. The request waits up to
//     Options.MaxWait for it; then it fails closed with 503
//     {"error", "revision"} and Retry-After: 1, never with an older answer.
//   - GET /api/v1/watch?since=N streams revision changes as server-sent
//     events: "id: N\nevent: revision\ndata: {"revision": N}\n\n", one per
//     new snapshot (latest value: a slow reader may skip revisions, never
//     the newest). On connect it sends the current revision at once if it
//     differs from since (Last-Event-ID, when later, counts as since; a
//     revision below since means the catalog was restored from a backup),
//     else a ": ok" comment, and then a ": heartbeat" comment every
//     Options.Heartbeat (a client may ask for a shorter interval with
//     &heartbeat=2s, down to 100 ms). A heartbeat is never sent while a
//     newer revision is unsent, so each line received confirms that the
//     client knows the revision that was current when it was written.
//   - GET /api/v1/revision answers {"revision": N}.
//   - POST /api/v1/audit {"events": [...]} (gateway nodes' audit records,
//     named like the audit_events columns) answers {"accepted": n} only
//     once they are durable (audit.go; Options.Audit).
//   - GET /api/v1/connections/{name} answers the resolved connection for a
//     gateway node, decrypted secrets included (connections.go;
//     Options.Connections): only to node-token holders, and only over TLS
//     or to a loopback peer (else 403; Options.AllowCleartextSecrets for a
//     listener behind a TLS-terminating proxy).
//   - GET /api/v1/model-services/{name} answers the resolved model service
//     (services.go; Options.ModelServices): its usable destinations and
//     fallbacks with their provider services, decrypted API keys included
//     (node token, and TLS or loopback, as for connections); GET
//     /api/v1/model-services lists the names (Options.ModelServiceNames).
//   - POST /api/v1/access-tokens/verify {"token_hash"} answers whether an
//     access token is valid now, and whose it is (Options.AccessTokens):
//     nodes send the token's SHA-256, never the token.
//   - GET /api/v1/limits answers the rate limits and budgets of the
//     current revision with the members of the groups they name
//     (limits.go; Options.Limits), for a node's limits engine.
//   - POST /api/v1/limits/leases lends a node slices of the server's
//     rate-limit windows and budget accounts (leases.go; Options.Leases;
//     at most MaxLeaseOps operations), so that limits and budgets hold
//     across the server and its nodes.
//   - POST /api/v1/keys lends the installation's key store
//     (catalog/keystore; Options.Keys) to gateway nodes, one operation per
//     request (keys.go, KeyRequest: get, create, cas, delete, list in pages
//     of at most MaxKeyListBlobs blobs and MaxKeyListBytes, lock, renew,
//     unlock), for the names Options.KeyNames allows (else 403), only over
//     TLS or to a loopback peer as for connections, bodies up to
//     MaxKeysBody. A lock is a lease: held until the node unlocks it or
//     stops renewing it for Options.KeyLockTTL (a node that dies releases
//     its locks); a lock request waits at most MaxKeyLockWait and answers
//     "held" (ask again), also while nodes hold Options.MaxKeyLocks
//     locks. Blobs
//     arrive sealed by the node with the master key: the catalog stores
//     and returns them as they are.
//   - With Options.AuditDecisions every answered decision is recorded as an
//     audit event (service_name "authorization") in the background
//     (decisionaudit.go).
//
// Other paths are 404 and wrong methods 405, as JSON {"error"}.
//
// Request bodies are decoded with catalog/strictjson: at most MaxBody
// bytes (413), nested at most strictjson.DefaultMaxDepth deep, no
// duplicate keys, no unknown fields (exact names: "Subject" is not
// "subject"), nothing after the object; anything else is 400. A refused
// node token is audited through Options.AuthFailures when set.
//
// LoadOrCreateToken reads the node token from MANDATE_NODE_TOKEN or
// DATA_DIR/node-token, creating the file (0600) at first start.
//
// The wire types (Check, AuthorizeRequest, ...) are shared with the Go
// client in enforce/client. Package apitest has a fake enforce.Decider for
// tests of this package, the client and the gateway.
package api
