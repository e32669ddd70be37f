// Package storetest is the conformance suite every catalog.Store
// implementation runs (in the manner of SpiceDB's datastore tests):
//
//	func TestConformance(t *testing.T) {
//		storetest.RunConformance(t, func(t *testing.T) catalog.Store { ... new empty store ... })
//	}
//	func TestDurability(t *testing.T) {
//		storetest.RunDurability(t, func(t *testing.T, dir string) catalog.Store { ... open dir ... })
//	}
//
// Besides catalog/store.go, the suite pins down what the contract leaves
// open, so that every implementation behaves alike:
//
//   - an empty store has the zero Meta and no rows;
//   - List* return rows in a fixed order: principals and securables by ID,
//     memberships by (Group, Member), grants by (Securable, Principal,
//     Privilege); an empty result may be nil;
//   - deleting a missing principal or securable is a no-op; grants made BY a
//     deleted principal (Grantor) are kept;
//   - AddGrant of an existing key adds nothing but sets the grantor (as the
//     catalog Model does); removing and re-adding the same grant or
//     membership in one transaction works;
//   - Securable.Options and Secrets round-trip exactly: nil stays nil, an
//     empty map or slice stays empty;
//   - times come back in UTC, truncated to microseconds;
//   - ListAudit(since, limit) returns the events at or after since (all for
//     the zero time), oldest first, at most limit of them (all for limit <= 0);
//   - the error fn returns from ReadWriteTx comes back unchanged; a panic in
//     fn rolls back and propagates;
//   - after Close every method fails with a *catalog.Error of code
//     CodeUnavailable, and fn is not called; Close may be called twice, the
//     second call returns nil;
//   - with a done context every method fails with an error for which
//     errors.Is(err, ctx.Err()) holds, also while waiting for another write
//     transaction; a transaction whose context is canceled before it commits
//     is rolled back.
//
// The suite imports no database driver.
package storetest
