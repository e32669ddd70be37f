// Package lease is the client side of rate-limit leases, shared by the
// backends whose windows lease units from a lender: gateway/limits/pglimits
// (the lender is PostgreSQL, shared by the replicas) and
// gateway/limits/nodelimits (the lender is the catalog server, over the
// node API). One implementation of the client's rules; a Transport per
// lender.
//
// # What the client owns
//
// Window implements limits.Window. It keeps the process's own usage by
// bucket (exact, in the Limiter's clock), the leases it holds and the
// deltas (refunds, extra charges) it has to send:
//
//   - Hot path: Take serves a call from the oldest open lease with room, in
//     memory, without I/O (≤ 1 µs p50 in both backends' BenchmarkReserve);
//     a call that does not fit asks for a Refill (Verdict.Refill), unless
//     the lender's last refusal (a Denial, at most DenyTTL old) still
//     refuses it.
//   - Refill: one round trip at a time per key (Ops); it asks for the
//     call's units (Need), what the calls waiting on the key in this
//     process need (Demand) and, for a busy key, the speculative part
//     (Want). A lender that cannot be reached fails it with an error
//     wrapping limits.ErrUnavailable: the call is refused as unavailable,
//     never admitted, never reported as over its limit (fail closed).
//   - Prefetch: a busy key (recent use at least 4 times the call within
//     WindowLease; computed once per second and call size) leases about
//     1.5 times its last WindowLease of use in the background when the
//     lease serving it runs low (under half of Want) or ends within a
//     quarter of WindowLease, unless another open lease covers it.
//   - Lease life: a lease is usable from its grant until its start (the
//     local time the grant was asked at) + WindowLease; it then moves to
//     Closing and the window registers with its Client for the
//     transport's background sync, which sends the close (used units kept,
//     unused ones given back) and marks it Closed. Leases end in slice
//     order: a lease granted after another may not outlive it (the older
//     one's end is brought forward: using units for less time is safe).
//   - Give-back: Put returns units to their open lease, or, from a closed
//     lease, queues a refund dated by the transport (RefundBucket); a
//     close in flight carries them (counted too long: safe). Add charges
//     usage above a reservation to the admission's bucket while it counts;
//     the transport records it with the lender (Charge).
//   - Expiry: own buckets leave after limits.Buckets; closed leases are
//     dropped once none of their units count. Retire drops the window
//     when none of its own units count and the transport agrees (Drop).
//
// Account is the client side of a budget account: slices of the lender's
// account held in memory (Avail), from which Take reserves worst cases
// (Reserved) without I/O; Put gives a reservation back to the slice;
// Settle replaces it with the actual cost, settled locally (Cum,
// cumulative per lease, so that a resend is idempotent) and reported by
// the transport's background sync (Sent). A call the slices do not cover
// asks for a Refill unless the lender refused a call needing as much less
// than DenyTTL ago. A cost settled above its reservation is taken from the
// slice's rest (Overdraw: below zero, when the lender's slice is fixed);
// beyond it is the call's settled difference, the only overrun a budget
// allows. A month's first call rolls the account: the earlier month's
// lease is handed to the transport to settle and give back.
//
// # What a transport owns
//
// The round trips (Grant and the accounts' Refill, and the background sync
// that sends closes, deltas, settles and give-backs), the lender's view of the other takers
// (Remaining, Refusal: PostgreSQL reports the other replicas' units by
// bucket, the catalog server its room and verdict), how a refund or an
// extra charge is dated at the lender, and what a retiring window still
// has to send, whether a slice may serve (AccountTransport.Usable), how
// big the next slice is, and the accounts' State. The guarantees and the exact slack of each lender are
// stated in its package's doc.go.
package lease
