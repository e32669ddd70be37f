// Package limits is the runtime engine of rate limits and budgets: the
// "limits" stage of the gateway pipeline, in process, without I/O on the
// hot path.
//
// # Contract
//
// The integrator builds Definitions from the catalog at each revision
// (rate limits per securable, budgets, and the members of the groups they
// name) and installs them with Limiter.Apply; Apply compiles them once,
// and the counters carry over from revision to revision. Per call:
//
//	r, err := lim.Reserve(ctx, &limits.Call{...}) // before the upstream call
//	// err is a *Refusal: render err.Status, err.Error(), err.SetHeaders(h)
//	lim.Settle(r, usage, cost) // the call reached the upstream
//	lim.Release(r)             // it did not (refused later, failed to connect)
//
// Reserve checks and takes, in one atomic step, every window and budget
// the call is charged to (per-key locks taken in one global order; on any
// refusal what was taken is given back before the locks are released), so
// concurrent calls can never together pass a limit or a budget that each
// alone would pass. Budgets() serves SHOW BUDGETS. Price.Cost is the one
// pricing rule (usage rows use it too).
//
// # Rate limits: levels (Unity AI Gateway's semantics)
//
// Databricks' "Configure rate limits" (AI Gateway, docs.databricks.com
// ai-gateway/rate-limits, read for this package) says: the service limit
// is a global maximum, checked regardless of user or group limits; the
// per-user default applies to every user unless a more specific custom
// limit is defined; custom limits exist for users and service principals
// (which take priority over group limits) and for groups (shared by the
// members); a user in several groups with different limits is limited
// when they exceed all the QPM limits or all the TPM limits of those
// groups; when both a request and a token limit are set, the more
// restrictive applies. Mandate implements exactly that, and decides where
// the text is silent:
//
//   - The service limit (LevelService) is checked first; refusals name the
//     first level that refuses (service, subject, actor, then budgets).
//   - The subject (the human, or a service principal calling on its own)
//     gets exactly one of: its own limit (FOR USER / FOR SERVICE
//     PRINCIPAL); else, if it is a member (direct or inherited) of groups
//     with a limit on the securable, those groups' limits; else the FOR
//     EACH USER default (a service principal calling on its own counts as
//     a user here). A custom limit replaces the default as a whole:
//     a group limit with only requests leaves that member without a token
//     limit at the subject level.
//   - Several groups: per dimension, the call passes if any of the
//     caller's groups limited in that dimension has room, and is charged
//     to the first such group in ascending group ID; groups without a
//     limit in a dimension take no part in it.
//   - The actor (the agent's service principal acting for the subject)
//     is held, in addition, to its own FOR SERVICE PRINCIPAL limit when one
//     is defined, on the same counter as when it calls on its own: an
//     agent can be throttled across all the humans it acts for. The
//     default and group limits are about the subject and do not apply to
//     the actor.
//   - Tokens are every token class (input, cached input, cache writes,
//     output). A call reserves InputTokens + MaxTokens and Settle replaces
//     that with the real total. MCP connections have request limits only
//     and are never charged to budgets.
//   - The caps Databricks puts on definitions (20 per service, 5 group
//     limits) and who may define them are the SQL layer's business.
//
// # The window and its guarantee
//
// A limit of N per minute is a sliding window counted in one-second
// buckets: a unit admitted at time t counts against every admission until
// the end of the bucket 60 s after t's (Buckets = 61 buckets are summed).
// Guarantee, per key, under any concurrency: the units admitted in any
// interval of 60 seconds, whatever its start, are at most N. Proof: the
// interval touches at most 61 consecutive buckets and the last admission
// inside it summed all of them. The only slack is conservative: capacity
// comes back between 60 and 61 s after use, never earlier. Requests are
// exact (a released call never happened and gives its unit back). Tokens
// are reserved before the call and settled after, into the bucket of the
// admission: a refund is always safe; usage above the reservation (an
// input estimate that was too low) is charged in full and is the only way
// a token window can exceed N, by that excess. Rejected alternatives:
// fixed windows pass 2N around a boundary; a token bucket (or GCRA) with
// burst N passes about 2N in a minute, without burst it forbids any
// burst; a sliding log needs memory proportional to N; the weighted
// two-window estimate is approximate. Retry-After is when the oldest
// buckets have freed enough for the refused call; x-ratelimit-reset-* is
// when the window is empty again; x-ratelimit-remaining-* is for the
// tightest window of the call (for a caller's several groups, the one with
// most room). A call that needs more than a limit allows in a whole window
// can never pass: it gets no Retry-After, and Refusal.Retryable is false
// (the adapters answer x-should-retry: false, which the providers' SDKs
// and Claude Code obey instead of retrying with backoff).
//
// # Budgets
//
// A budget caps the settled cost of model calls in its scope per calendar
// month (UTC). A call is charged to every budget that applies: FOR USER
// (the subject), FOR SERVICE PRINCIPAL (the subject or the actor: an
// agent's budget covers all the humans it acts for), FOR GROUP (the
// subject's groups, direct or inherited; shared), FOR EACH USER (one
// account per subject), each only for its service (ON MODEL SERVICE) and
// when every WHERE TAG pair is among the request's tags. The spend of a
// budget is the spend of its scope in the month, whether or not the
// budget existed earlier in the month: a new budget, a budget recreated
// after DROP and a restart all see the same figure. Reserve takes the
// worst case: the input estimate priced at the dearest input class
// (input, cached input or cache write; at a destination that bills
// Anthropic's 1-hour cache writes, Price.Cache1h, those too: a request
// need not say which TTL its writes take for the reservation to hold,
// at the cost of reserving that dearer rate for every call to such a
// destination, given back at Settle) plus MaxTokens at the output price,
// at the most expensive destination the call may reach (split and
// fallbacks), plus Call.ToolUses, the most uses of each tool kind the
// provider bills per use (catalog.ToolKind: web search, file search) the
// call may make, at that destination's price per 1,000 uses
// (Price.PerUse, a provider service's tool_prices); Settle charges the
// real uses in the cost (Price.Cost). A destination without a price fails
// closed (PriceUnknown, 403); so does a call without an output cap
// (OutputCapRequired, 400), one that may use a tool kind a destination
// has no price per use for (UnpricedTool, 400, naming the destination
// and tool_prices), and one that offers a tool billed in a way no price
// bounds, such as code execution (Call.PerUseTool; UnpricedTool, 400).
// Settle replaces the reservation with the actual cost in the month of the
// admission (a call that straddles a month boundary is not carried into
// the new month). Guarantee: when InputTokens is an upper bound of the
// input (the request's byte length is one for text), spend never exceeds
// the limit; otherwise it exceeds it by at most the sum of the
// underestimates of the calls in flight when the budget ran out (with one
// call in flight: that call's settled difference). An exhausted budget
// refuses with 429 and Retry-After until the next month; it is not
// Retryable either.
//
// # State and restart
//
// Budgets: the in-memory backend loads each budget's month spend from a
// SpendSource when the budget is installed (the integrator sums cost_usd
// of the month's usage rows in the budget's scope: principal or group
// members by requester/run_as, service, request tags; grouped by
// requester for FOR EACH USER). Group budgets are recomputed with the
// group's members at restart. A budget whose spend cannot be loaded
// refuses its calls (BudgetUnavailable, 503) until a later Apply loads it.
// Rate-limit windows: the integrator replays the usage rows of the last
// 61 s through Record at startup, so a restart does not reset them;
// without the replay a restart can let up to 2N through in the minute
// around it. Nothing else needs persisting: a window holds no more than
// 61 s of history.
//
// # Scale-out
//
// The counters sit behind Backend: a Window per rate-limit key (both
// dimensions), a Ledger per budget with an Account per principal. The
// in-memory backend holds the whole capacity locally (a window keeps only
// its charged seconds: a key with a few calls a minute takes about 300
// bytes; idle windows are swept). A shared backend (PostgreSQL) holds a
// leased slice locally and keeps the guarantees across replicas as
// follows; Take answers Verdict.Refill when the local slice is short, the
// Limiter then calls Refill outside its locks (for every key of the
// call short of allowance, concurrently) and retries (a slice leased
// for one key of a call that another key refuses stays local until its
// lease ends: conservative), and Retire declines while a lease is
// outstanding. A Refill that cannot reach the shared store returns an
// error wrapping ErrUnavailable: the call is refused with LimitUnavailable
// or BudgetUnavailable (503, Retry-After 5 s), never reported as over its
// limit; so is a call whose budget refills keep succeeding without the
// slice lasting until its retry (a store too slow for the load: as many
// passes of refills as the call has keys, and two more). The PostgreSQL
// backend is gateway/limits/pglimits (its doc.go states what it
// implements of the sketch below and its exact slack).
//
//   - Windows: the database keeps, per key, units by bucket. A replica
//     asks at time t for a lease of k units usable until t+L; it is granted
//     if the units recorded in buckets ≥ bucket(t)−60 (future buckets
//     included) plus k stay within N, and the k units are recorded in
//     bucket(t+L). A unit used at any u in [t, t+L] is thus counted by
//     every grant made in the 60 s after u, so the proof above holds for
//     grants: at most N units are used in any 60 s interval over all
//     replicas, with no overshoot. Unused units are given back (deleted)
//     when the lease ends; used ones may be re-dated to the bucket of
//     their last use. The slack stays conservative: units leased by one
//     replica and not yet used can make another refuse, for at most L;
//     the units of a replica that dies stay counted until they age out.
//     Lease sizes adapt: 1 unit for small limits (one round trip per call,
//     exact), larger slices for high limits, so that the hot path stays in
//     memory (≤ 1 µs) for the calls that dominate.
//   - Budgets: the database keeps, per budget account and month, spent and
//     leased. A replica leases a slice of the remaining money
//     (spent + leased ≤ limit), reserves worst cases from it locally,
//     settles actual costs into the database (batched) and gives back the
//     unused slice; a lease of a replica that died expires, and its calls'
//     costs come back through their usage rows. Spend never exceeds the
//     limit for the same reason as in one process: the money reserved by
//     all replicas together never exceeds what remains.
//
// Gateway nodes: gateway/limits/nodelimits is a Backend whose windows
// and accounts lease from the catalog server's own Limiter (lease.go: the
// per-key operations TakeWindow, PutWindow, AddWindow, TakeBudget,
// SettleBudget, PutBudget), whatever that Limiter's backend; the same
// guarantees hold over the server and its nodes (its doc.go states the
// slack).
//
// Both leasing backends share one client, gateway/limits/internal/lease:
// the windows' and accounts' hot path in memory, the lease bookkeeping,
// prefetch, give-back, expiry and the fail-closed Refill; each backend is
// a transport to its lender (PostgreSQL, the node API) and states its
// lender's rules and slack.
//
// The conformance suite gateway/limits/limitstest is what a new backend
// must pass.
package limits
