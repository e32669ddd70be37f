// Package nodelimits makes rate limits and budgets exact across a catalog
// server (`mandate serve`) and its gateway nodes (`mandate gateway`): a
// node's limits.Backend leases slices of the server's own windows and
// budget accounts over the node API (POST /api/v1/limits/leases, node
// token, TLS or loopback, bodies bounded by strictjson and
// api.MaxLeaseOps), so the server's calls and every node's are counted by
// one set of counters. The server lends from whatever backend its Limiter
// has — in memory (embedded store) or pglimits (PostgreSQL: the replicas'
// shared leases) — through the Limiter's per-key operations (TakeWindow,
// PutWindow, AddWindow, TakeBudget, SettleBudget, PutBudget: the
// windows' and accounts' own Take/Put/Add/Settle, refilled like a call's),
// so there is one implementation of the window and budget rules. The
// node's client side (the hot path in memory, lease bookkeeping,
// prefetch, give-back, expiry, fail closed) is the lease client shared
// with pglimits, gateway/limits/internal/lease; this package is its
// node-API transport (grants, closes, adjustments, settles and returns in
// LeaseRequests; the server's room and verdict; contact freshness) and
// the server's side.
//
// # Use
//
//	srv := nodelimits.NewServer(lim, nodelimits.ServerOptions{Principal: …, Sync: …}) // serve
//	api.Options{…, Leases: srv.Serve}
//
//	b, _ := nodelimits.New(nodelimits.Options{Transport: limitsClient.Leases, Name: …}) // node
//	lim := limits.New(limits.Options{Backend: b})
//	… serve; after the gateway has drained: b.Close(ctx)
//
// A node names a principal it has no catalog ID for (a caller no
// definition names) by its name; the server resolves it (Principal), so a
// FOR EACH USER window is the same key on the server and on every node.
//
// # Rate limits
//
// A node's window serves Take from leases in memory; Refill asks the
// server for the units the call needs (and, for a busy key, about 1.5 times
// its last WindowLease of use, capped at the window's room divided by
// twice the live takers: the nodes seen within TTL and the server). The
// server grants with its window's own Take (count + k ≤ N over the last
// 61 buckets), charging the k units in the grant's bucket. The node uses
// them only after the answer and before its send time + WindowLease (2 s),
// so before the server's grant time + WindowLease. At that end the
// server's sweep (every 100 ms) re-dates all k units to the current bucket;
// the node's close (its background sync, every 50 ms) gives back what it
// did not use. A close that arrives before the sweep charges the used
// units to the current bucket and gives back the rest. So every unit used
// at u is counted from before u until at least u + 60 s, and the engine's
// proof holds for the server and all nodes together: the requests
// admitted for one key in any 60-second interval are at most N, with no
// overshoot. Tokens: the only excess is usage settled above its
// reservation, as in one process (refunds and extra charges after a
// lease's close are sent as adjustments). The slack, conservative only:
//
//   - capacity returns between 60 s and WindowLease + one sweep + 61 s
//     (about 63.1 s) after use;
//   - units leased and not used hold the other takers back until the
//     node's close: at most WindowLease + one SyncInterval + a round trip;
//     a node the server refused answers from that refusal for at most 1 s;
//   - a node that dies: its leases are counted as fully used at their end
//     (at most about 63.1 s after the grant);
//   - a grant whose answer was lost is counted as used at its end.
//
// # Budgets
//
// A node's account holds one lease of the server's account: a slice
// reserved there (spent + reserved + slice ≤ limit, the server account's
// own Take), from which the node reserves worst cases in memory. The node
// reports the cumulative cost settled against the lease (a resend is
// idempotent); the server turns that much of the slice into spend. A slice
// beyond the need is twice what the last one served while the account is
// busy, at most the free money divided by twice the live takers; an idle
// slice goes back after IdleReturn (1 s). Guarantee, as in one process:
// the money reserved by the server and all nodes plus the spend never
// exceeds the limit, so spend never does when InputTokens bounds the
// input; otherwise it exceeds it by at most the underestimates of the
// calls in flight when the budget ran out (one call in flight: that call's
// settled difference). SHOW BUDGETS on the server includes the nodes'
// slices as reserved and their settled costs as spent. Slack,
// conservative: a node silent for TTL (30 s) has its slices forfeited —
// charged as spent for the month, since its calls in flight may have cost
// it — and a node stops using a slice once it has not reached the server
// for TTL/2. A node refused for lack of money while other takers hold
// slices answers 429 (their idle slices come back within IdleReturn).
//
// # Faults
//
// Fail closed: a call that needs more than the node holds needs the
// server; unreachable, it is refused with LimitUnavailable or
// BudgetUnavailable (503, Retry-After 5 s), never admitted and never
// reported as over its limit. Window leases last 2 s, budget slices at
// most TTL/2 without contact. Closes and extra charges that could not be
// sent are resent; refunds are dropped (counted too long: safe). The
// server's lease table is in memory: when the server restarts (embedded
// store) the slices it had lent are gone from its accounts; a node learns
// it at its next round trip (a settle within one SyncInterval of a spend)
// and drops them, so the exposure is the worst cases reserved from a
// slice between the restart and that round trip. With pglimits the
// server's own leases follow pglimits' rules (see its doc.go).
package nodelimits
