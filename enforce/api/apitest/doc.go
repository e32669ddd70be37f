// Package apitest provides a fake enforce.Decider for tests of the
// authorization API, its Go client and the gateway: a set of direct grants
// to subjects, a revision that every change advances, Subscribe with the
// engine's latest-value semantics and DecideAt that waits for a revision.
package apitest
