// Package enforce is Mandate's decision engine: "may this agent, acting on
// behalf of this human, use this privilege on this securable?", answered
// in process from an immutable compiled snapshot of the catalog, without a
// lock, a store round trip or (on the allow path) an allocation.
//
// # Contract
//
// contract.go holds the types the authorization API serves (Request,
// Decision, Step, Decider, ErrStale). The subject is the human on whose
// behalf a call is made, or a service principal acting on its own; the
// actor is the agent's service principal. On-behalf-of rule: a request is
// allowed only if the subject (a user or service principal) and the actor
// (a service principal, when given) both hold the privilege, so an agent
// never exceeds the human who triggered it and a human never stretches an
// agent beyond its own grants. The reason names, for subject and actor
// separately, the grant and group path that allowed each requirement, or
// the first missing privilege or USE CATALOG / USE SCHEMA prerequisite.
//
// # Snapshot (snapshot.go, check.go, explain.go)
//
// The privilege rules are not implemented here: a Snapshot wraps a
// catalog.Snapshot, the catalog's immutable view at one revision with its
// privilege evaluator (the same code catalog.Model.Check, SHOW GRANTS,
// EXPLAIN ACCESS and information_schema run) and the API's name index
// (catalog.Snapshot.Resolve: dotted names as stored, the quoted display
// form, one-part connection names in system.ai, two-part names in the
// "system" catalog, a lower-case retry; ambiguous names deny).
//
// Snapshot.Allowed is the allow path: the subject must be a user or
// service principal and the actor, if any, a service principal, and both
// must hold the privilege (catalog.Snapshot.Holds, the evaluator without
// its explanation). It remembers its answers in a fixed table of exact
// 63-bit keys (subject, actor, securable, privilege) read and written
// atomically, so a repeated question costs two name lookups and one table
// read, and it does not allocate. The table is allocated by the first
// question a snapshot is asked, not when it is built: a replica following
// a stream of catalog writes builds one per commit.
//
// Snapshot.Decide gives the reason and, with Request.Explain, one Step per
// requirement of subject and actor: the catalog's on-behalf-of rule
// (catalog.AccessPart, catalog.JoinAccess), word for word what EXPLAIN
// ACCESS prints. Without Explain each principal's part is remembered for
// the life of the snapshot. It always agrees with Allowed.
//
// A snapshot also carries the catalog's Rego policies, prepared when it
// was built (enforce/policy: unchanged policies are reused by the hash of
// their name and source), and knows for every securable whether a policy
// is attached to it or to one of its containers.
//
// # Engine (engine.go)
//
// Engine implements Decider. It builds the first snapshot, subscribes to
// the catalog's commits and builds a new one in one goroutine, swapping it
// with an atomic pointer; revisions that arrive during a build coalesce
// into one more build at the newest. A build holds the catalog's read lock
// only to take the catalog's snapshot (copying three slices of page pointers);
// the transitive groups, the name indexes and the policies are prepared
// after it, never on a request. DecideAt waits (bounded by the context and
// Options.WaitTimeout) until a snapshot at the requested revision is
// current, else ErrStale. A replica of a shared catalog that is past its
// staleness bound (catalog.Service.Stale: it could not confirm for that
// long that it has every committed change) denies every request, with the
// staleness as the reason, until it catches up.
//
// Options.Policy (NewPolicyHook: the catalog's Rego policies) is consulted
// only when the grants allow and a policy is attached to the securable or
// a container; its denial messages or its error deny (fail closed). The
// policy context is read only then: a Request may carry it as a
// LazyContext (ContextSource) that builds the map on demand, so the
// gateways' calls that no policy looks at never build it. Such a
// decision is Contextual: it holds for that request's context and time
// only. Every other decision holds for any context at its revision, which
// is what lets a gateway node (enforce/client) answer MCP messages from
// its cache.
//
// # Tests
//
// property_test.go generates random catalogs (catalogtest.Random) and
// compares Allowed (with its memo, and a tiny one whose answers evict each
// other) and Decide, brief and explained, by every name a securable
// answers to, with the naive reference implementation of the rules
// (catalogtest.Reference) under the on-behalf-of rule. The benchmarks
// (bench_test.go) use the performance targets' catalog: 10,000 users,
// 1,000 groups nested 5 deep, 1,000 connections, 100,000 grants.
package enforce
