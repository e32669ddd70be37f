// Package client is the Go client of the authorization API (enforce/api)
// that gateway nodes use.
//
// A Client keeps a local decision cache keyed by the request and the
// catalog revision the answer was made at. A background goroutine watches
// GET /api/v1/watch (server-sent events) and drops the cache as soon as a
// newer revision is announced, so a revocation reaches the node within one
// event's latency and no node polls. The watch reconnects with exponential
// backoff and jitter, resuming with since=<last revision seen>.
//
// Freshness is the time since the client last confirmed the catalog's
// revision: a watch event or heartbeat, or a successful API answer (as of
// when it was sent). The cache key is the question without its Context:
// an answer decided by grants alone holds for any context at its revision,
// so an MCP message (whose context carries method, tool and arguments) is
// answered locally once its subject, actor and connection were asked
// about. An answer in which a policy took part (Decision.Contextual: a
// policy is attached to the securable or a container and the grants
// allowed) is never cached; those questions go to the catalog every time.
// A question sent to the API carries its context as a map: a
// Request.LazyContext is built before it is sent.
// Every API call carries at_least_revision=<the newest revision this
// client knows>, so no answer is older than what the node has already
// seen.
//
// Under load, Authorize calls share the API: at most MaxInFlight requests
// are in flight; calls arriving while all are busy queue and go out
// together as one batch request when one returns (no timer: an idle
// client sends each call at once). The default HTTP client (transport.go)
// writes each request and reads its answer in the calling goroutine on a
// kept-alive connection.
//
// A watch event below the known revision means the catalog was restored
// from a backup: the client drops its cache and follows it back.
//
// Authorize fails closed: while freshness is older than MaxStaleness the
// cache is not used; the API is asked directly, and if it cannot answer
// the decision is a denial whose Reason says "authorization freshness
// unknown for 6.1s (catalog unreachable): denying". Any failure to reach an
// answer is a denial (Allowed false) together with a non-nil error, so
// callers that only look at Allowed, and callers that deny on error, both
// fail closed.
package client
