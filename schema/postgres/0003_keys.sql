-- 0002_keys: key material and small secrets shared by the replicas
-- (catalog/keystore, catalog/pgstore Keys): the mandate_jwt signing keys,
-- the development IdP's keys, the node API token and the per-user OAuth
-- grants. Every blob is sealed with the master key before it is written
-- (keystore.Sealed): the table holds ciphertext only. version changes at
-- every write (compare-and-swap for rotations).
CREATE TABLE mandate_keys (
    name       TEXT PRIMARY KEY,
    data       BYTEA NOT NULL,
    version    BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
