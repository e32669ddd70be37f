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
// # Snapshot (snapshot.go, check.go)
//
// Compile turns a catalog.Model at one revision into a Snapshot. Work is
// split so that the catalog's read lock is held only while the raw
// material is copied out (gather: principals, memberships, securables,
// grants, in three concurrent parts); the compilation runs outside it.
//
//   - Principals get dense indexes (name order) and groups dense group
//     bits. Each principal's transitive group set is a bitset: a group's
//     closure is found breadth first (cycles are harmless), a user's or
//     service principal's is the union of its direct groups' closures plus
//     "account users". Metastore admins (Principal.Admin, directly or via a
//     group of the closure) are flagged. Exactly as catalog.Model.Check
//     does, the groups that "account users" itself belongs to are not
//     followed for users.
//   - Securables are nodes in a slice, containers before contents. A node
//     (one 64-byte cache line) holds its owner (principal index and group
//     bit), the container it inherits grants from (schema, catalog; never
//     the metastore), the containers whose USE privileges are prerequisites
//     (outermost first), and per privilege the offset of a bitset of the
//     groups that hold it there: grants on the node and its containers,
//     ALL PRIVILEGES expanded except for MANAGE. A node that adds no grant
//     for a privilege shares its container's bitset.
//   - Grants to users and service principals stay per principal, sorted by
//     node, and are searched on the node and its containers.
//   - Names: per type, "catalog.schema.name" as stored and the quoted
//     display form (catalog.Securable.FullName); as catalog.ResolveName does
//     for the API, a one-part connection name means system.ai.<name> and
//     two-part names resolve in the "system" catalog. A name matching
//     nothing is retried in lower case; a name two securables answer to is
//     ambiguous and denied.
//
// The privilege function on the snapshot (holds) has the semantics of
// catalog.Model.Check: admins hold everything; otherwise every container's
// USE privilege (outermost first), the securable's own USE privilege for
// its other privileges except BROWSE, and the privilege itself must each be
// held through ownership of that securable, a group grant (one AND of two
// bitsets) or a direct grant. Snapshot.Allowed remembers its answers in a
// fixed table of exact 63-bit keys (subject, actor, privilege, securable)
// read and written atomically, so a repeated question costs two name
// lookups and one table read.
//
// # Explanations (explain.go)
//
// Snapshot.Decide recomputes a decision requirement by requirement from the
// snapshot's immutable copies (names, direct memberships, per-securable
// group grant bitsets), choosing the innermost securable with a qualifying
// grant and, there, a direct grant first, then the group closest to the
// principal (breadth first). Its wording is catalog.Decision.Reason's; deny
// reasons are identical. It allocates (a few microseconds); Allowed does
// not, and always agrees with it.
//
// # Engine (engine.go)
//
// Engine implements Decider. It compiles the first snapshot, subscribes to
// the catalog's commits and recompiles in one goroutine, swapping the
// snapshot with an atomic pointer; revisions that arrive during a compile
// coalesce into one more compile at the newest. DecideAt waits (bounded by
// the context and Options.WaitTimeout) until a snapshot at the requested
// revision is current, else ErrStale. Options.Policy is consulted only
// after the grants allow; its denial messages or its error deny (fail
// closed). A replica of a shared catalog that is past its staleness bound
// (catalog.Service.Stale: it could not confirm for that long that it has
// every committed change) denies every request, with the staleness as the
// reason, until it catches up.
//
// # Tests
//
// property_test.go generates random catalogs (nested groups, an admin
// group, owners including groups, grants of every privilege, revokes,
// drops, renames) and compares the snapshot with catalog.Model.Check on
// every question: decision, each requirement's basis, deny reason. The
// benchmarks (bench_test.go) use the catalog: 10,000 users, 1,000
// groups nested 5 deep, 1,000 connections, 100,000 grants.
package enforce
