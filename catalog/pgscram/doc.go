// Package pgscram is PostgreSQL's SCRAM-SHA-256 password verifier (RFC
// 5802, RFC 7677), the one implementation Mandate has: its SQL front end
// keeps users' passwords as verifiers and checks logins against them
// (sqlfront/pgwire), and the system tables' query role gets its password
// from catalog/pgquery as a verifier, so that no statement carries a
// password in clear.
//
// A verifier is "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
// (base64), as PostgreSQL stores it in pg_authid: Verifier makes one with
// a random 16-byte salt and 4096 iterations (PostgreSQL's defaults), the
// password normalized with SASLprep when it can be (else used as it is,
// as PostgreSQL does); Parse reads one (a malformed verifier is an error,
// and matches no password in Check); Derive and Format are the steps, for
// a SCRAM exchange (github.com/xdg-go/scram's StoredCredentials).
package pgscram
