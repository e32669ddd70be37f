// Package memstore is an in-memory catalog.Store and catalog.EventStore for
// tests and benchmarks (also a row store: seed it with ReadWriteTx).
// It keeps nothing on disk. Transactions write in place and keep an undo log
// that is replayed when the transaction function fails; one transaction runs
// at a time. It passes the same conformance suite (catalog/storetest) as the
// durable stores.
package memstore
