// Package pglimits is the PostgreSQL backend of gateway/limits: rate
// limits and budgets exact across the replicas that share one database,
// with the hot path in memory. It implements the lease scheme sketched in
// gateway/limits' doc.go ("Scale-out") and passes limitstest.
//
// # Use
//
//	b, err := pglimits.Open(ctx, "postgres://…", pglimits.Options{Spend: spend}) // or New(ctx, pool, o)
//	lim := limits.New(limits.Options{Backend: b})
//	… serve; after the gateway has drained:
//	b.Close(ctx) // gives the leases back
//
// Open and New create or upgrade the limits_ tables (migrations/, under an
// advisory lock, in one transaction; replicas starting together migrate
// once) and register the replica. The rate-limit windows live in the
// database: do not replay usage rows through Limiter.Record at startup
// (the in-memory backend's restart recipe), that would count them twice.
// Budgets are seeded from Options.Spend by the first replica that loads a
// budget for a month; later replicas and restarts find the shared figures.
//
// The client side of the leases (the windows' and accounts' hot path,
// lease bookkeeping, prefetch, give-back, expiry, fail closed) is the
// shared lease client, gateway/limits/internal/lease, also used by
// gateway/limits/nodelimits; this package is its PostgreSQL transport:
// the round trips (limits_window, limits_budget, batched in the
// background), the other replicas' units by bucket, the dating of units
// in the database's clock, seeding, heartbeats, contention and forfeits.
//
// # Rate limits
//
// A window serves Take from leases held in memory; Refill asks the
// database (limits_window, one round trip, grants on one key serialized
// by an advisory transaction lock) for units usable for WindowLease (2 s).
// An open lease counts its whole grant in the bucket of its end; when it
// ends its unused units are deleted and the used ones re-dated to the
// buckets they were used in. A grant is made only if the units counted in
// the last 61 buckets plus the grant stay within the limit, so the
// engine's proof carries over to all replicas together. Guarantee: the
// requests admitted for one key in any 60-second interval, over all
// replicas, are at most N: no overshoot. Tokens: the only excess is usage
// settled above its reservation, as in one process. The slack is
// conservative only, and exactly this:
//
//   - capacity returns 60 to 62 s after use (a unit is dated at the end of
//     its one-second bucket in the database's clock, rounded up);
//   - units leased and not used make the other replicas refuse for at
//     most WindowLease plus one SyncInterval (2.05 s by default), and a
//     replica the database refused answers from that refusal for at most
//     1 s more;
//   - the open leases of a replica that dies stay counted until they age
//     out: at most WindowLease + 61 s after they were granted.
//
// Lease sizes adapt per key: a call that finds no room asks for what it
// and the calls waiting on the same key in this replica need (an
// occasional caller of a limit of 10 a minute leases one unit per call:
// one round trip per call);
// a busy key (recent use at least 4 calls' worth within WindowLease,
// reckoned once per second) asks for 1.5 times its last WindowLease of use
// and renews in the background when its lease runs low, so that the calls
// that dominate are served in memory. Fairness: a grant beyond what is needed is capped at the free
// units divided by the live replicas.
//
// # Budgets
//
// Per account (budget, principal, month) the database keeps spent, leased
// and forfeited, and per replica a lease (limits_budget). A replica leases
// a slice of what remains (spent + forfeited + leased + need ≤ limit),
// reserves worst cases from it in memory and settles actual costs into the
// database in the background (the cumulative cost per lease: a resend is
// idempotent). A slice beyond the need is twice what the last one served
// while the account is busy, at most the free money divided by twice the
// live replicas; an idle slice goes back after IdleReturn (1 s). A replica
// short only because others hold slices marks the account contended; the
// holders give back what they do not use within two SyncIntervals, and the
// replica retries for up to ContendedWait (1 s) before refusing as
// exhausted; so a refusal means what it means in one process (spent +
// reserved + cost > limit), unless a holder is dead or cut off.
// Guarantee: the money reserved by all replicas plus the spend never
// exceeds the limit, so spend never does when InputTokens bounds the
// input; otherwise it exceeds it by at most the underestimates of the
// calls in flight when the budget ran out (one call in flight: that
// call's settled difference), as in one process. Slack, conservative:
// a replica that dies keeps its slice leased until ReplicaTTL (30 s) after
// its last heartbeat, then any other replica's heartbeat forfeits it:
// charged as spent for the rest of the month, since its calls in flight may
// have cost it and their settles are lost (a replica only cut off revives
// its slice at its next round trip and settles as usual). SHOW BUDGETS
// reads every replica's figures from the database.
//
// # Faults
//
// The database unreachable: calls are served from the leases and slices
// held; a call that needs a round trip is refused with LimitUnavailable
// or BudgetUnavailable (503, Retry-After 5 s), never as over its limit
// (fail closed, rate limits included: an unreachable database must not
// turn N per minute into N per replica per minute). Settles, closes and
// extra charges wait in memory and are resent; refunds not sent are
// dropped (a unit counted too long is safe). A rate-limit grant whose
// answer was lost (committed, then the round trip failed) is closed by the
// next round trip (leases carry ids of the replica's own); a budget slice
// granted that way stays with the replica, unused, until its Close (or
// forfeit): conservative. pgx's pool reconnects by
// itself; every round trip is bounded by Timeout (2 s). Close gives back
// unused units and slices and settles what was settled; reservations of
// calls still in flight stay leased and are forfeited.
//
// # Tables
//
// limits_schema, limits_replicas, limits_window_units, limits_budgets,
// limits_budget_accounts, limits_budget_leases, limits_budget_contention
// and the functions limits_window, limits_budget, limits_heartbeat,
// limits_budget_seed (migrations/0001_limits.sql, every statement
// idempotent). Times are Unix nanoseconds: with Options.Now nil they are
// the database's clock, so the replicas' clock skew does not matter.
package pglimits
