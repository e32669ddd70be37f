// Package keystore keeps the key material and small secrets of a Mandate
// installation: the mandate_jwt signing keys (gateway/upstream), the
// development IdP's keys and client secret (gateway/devidp), the node API
// token and the per-user OAuth grants (gateway/oauthconnect). Replicas that
// share a store (catalog/pgstore's Keys, --store postgres://) therefore
// publish the same JWKS and accept each other's tokens.
//
// # Contract
//
// A Store maps names to opaque blobs, each with a version that changes at
// every write (0: absent):
//
//   - Get returns the blob and its version (ErrNotFound when absent).
//   - Create stores a blob under a name unless one exists, and returns the
//     blob that is stored now: the caller's, or the one a concurrent
//     creator (another process) stored first. GetOrCreate builds on it:
//     when three replicas start at once, exactly one generated key wins and
//     all use it.
//   - CompareAndSwap replaces a blob only while its version is still the
//     one the caller read (rotation; ErrConflict otherwise: read again).
//   - Delete removes a blob (a missing one is not an error); List returns
//     the blobs whose names start with a prefix, sorted by name.
//   - Lock serializes a read-modify-write of one name across every process
//     sharing the store (a refresh of a per-user OAuth token that the
//     provider rotates: one replica refreshes, the others wait and then use
//     the new token). The lock is released by the returned func or when
//     the holder's connection dies.
//
// keystoretest.Run is the conformance suite every implementation passes.
//
// # Implementations
//
//   - Dir: the data directory, one file per name (mode 0600, written
//     atomically with catalog/privfile). The names callers use are today's
//     file names (upstream-signing-keys.json, devidp-signing-key.json,
//     dev-idp.json, node-token), so an existing data directory is read as
//     it is. One serve process owns a data directory (its lock), so Lock
//     and CompareAndSwap are serialized in process; a version is derived
//     from the file's content.
//   - pgstore.Keys: the mandate_keys table of the catalog's PostgreSQL
//     database (Create is INSERT ... ON CONFLICT DO NOTHING; Lock is a
//     transaction-scoped advisory lock).
//   - gateway/node.Keys: the catalog server's store (DATA_DIR/keys of an
//     embedded catalog, or pgstore.Keys) over its node API, for gateway
//     nodes (mandate gateway): the server and its nodes share the
//     mandate_jwt keys and users' grants. Lock is a lease on the server,
//     renewed while held and released when the node stops renewing it.
//
// # Sealing
//
// Sealed wraps a Store so that every blob is encrypted with the master key
// (catalog.Keyring, AES-GCM) before it reaches the inner store, with the
// name as additional data (a blob copied to another name does not open).
// Production wraps the PostgreSQL store in it: a database dump holds no
// usable key. The gateway's keys and grants (DATA_DIR/keys, or the
// PostgreSQL store, lent to nodes) are sealed by the process that writes
// them, the server or a node, all with the installation's master key: the
// server stores and lends a node's blobs as they arrive, never opened. The data directory keeps its files as they were (the
// mandate_jwt key file is sealed by its owner; the others are mode 0600
// files of the one process that owns the directory).
package keystore
