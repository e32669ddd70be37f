// Package storetest holds the conformance suites of the two storage
// interfaces of package catalog (in the manner of SpiceDB's datastore
// tests); every implementation runs the suite of its interface:
//
//	func TestStore(t *testing.T) {
//		storetest.RunStore(t, func(t *testing.T) catalog.Store { ... new empty store ... })
//	}
//	func TestStoreDurability(t *testing.T) {
//		storetest.RunStoreDurability(t, func(t *testing.T, dir string) catalog.Store { ... open dir ... })
//	}
//	func TestEvents(t *testing.T) {
//		storetest.RunEvents(t, func(t *testing.T) catalog.EventStore { ... })
//	}
//	func TestEventsDurability(t *testing.T) {
//		storetest.RunEventsDurability(t, func(t *testing.T, dir string) catalog.EventStore { ... })
//	}
//	func TestViews(t *testing.T) {
//		storetest.RunViews(t, func(t *testing.T) (catalog.EventStore, catalog.QueryEngine) { ... })
//	}
//
// The system tables' relations (RunViews): each SQL dialect defines the
// views system_access_audit, system_ai_gateway_usage and
// system_ai_gateway_payloads in its own migrations; the suite is their one
// definition: `SELECT *` answers catalog.AuditColumns, UsageColumns and
// PayloadColumns in order, each value of its column's Go type, and for
// the same events (a statement, JSON that is not JSON, an LLM call with
// usage, one refused before the upstream, a payload) the values of one
// table, viewWant, whatever the dialect.
//
// Catalog persistence (catalog.Store). Besides catalog/store.go, the suite
// pins down what the contract leaves open:
//
//   - a new store loads as an empty State at revision 0 with no records;
//   - what Load returns, replayed (catalog.Replay), is the catalog of every
//     appended change, also after WriteSnapshot and Prune and, for
//     RunStoreDurability, after reopening;
//   - Changes returns the records as appended (times in UTC, truncated to
//     microseconds; Options and Secrets round-trip exactly: nil stays nil,
//     an empty map or slice stays empty), oldest first, never with a gap:
//     records pruned are ErrPruned;
//   - securables of every type (the AI gateway's included: model
//     services, access tokens, rate limits, budgets, tool pins, policies)
//     are generic rows: options, secrets and grants of any privilege
//     round-trip, in records and snapshots, and so do the usage, payload,
//     trace and guardrail columns of a record's audit events;
//   - Append with a base that is not the newest revision fails with
//     CodeConflict and writes nothing; of concurrent appends on one base
//     exactly one succeeds;
//   - after Close every method fails with a *catalog.Error of code
//     CodeUnavailable; Close may be called twice, the second call returns
//     nil;
//   - with a done context every method fails with an error for which
//     errors.Is(err, ctx.Err()) holds, and nothing is written.
//
// Event stream (catalog.EventStore):
//
//   - ListAudit(since, limit) returns the events at or after since (all
//     for the zero time), oldest first (events with the same time in the
//     order appended), at most limit of them (all for limit <= 0), times
//     in UTC truncated to microseconds;
//   - a completion (AuditEvent.Completes) replaces the outcome columns of
//     the row with its EventID, appended earlier or in the same call;
//     one whose request is unknown is dropped; repeating it changes nothing;
//     the AI gateway's columns (trace ids, guardrail outcomes, LLM usage,
//     captured payloads) round-trip, a completion's trace ids replacing
//     the request's;
//   - AppendChangeAudit skips events of revisions at or below
//     AuditedRevision and never lowers it;
//   - Close and done contexts as above.
//
// The suites import no database driver.
package storetest
