// Command mandate is Mandate's single binary.
//
//	mandate serve    catalog, SQL front end (PostgreSQL wire) and HTTP API in one process
//	mandate version  print the version
//
// Every flag of serve can also be set with a MANDATE_* environment variable
// (--data-dir = MANDATE_DATA_DIR, ...); flags win over the environment.
//
// The HTTP listeners of serve and gateway share one setup (httpserver.go):
// header, body and idle timeouts, caps on requests in progress, open
// connections, header and body size, and the TLS policy (plain HTTP only on
// loopback or behind a declared TLS-terminating proxy; a generated
// certificate whose fingerprint gateway nodes pin).
//
// Replicas on PostgreSQL send their catalog statements to the writer
// replica over its HTTP listener (replicawrite.go: the writer lease, the
// MAC-authenticated endpoint, the fallback to a direct append).
package main
