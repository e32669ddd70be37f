-- 0005_writer_lease: the lease of the writer replica (catalog/pgstore
-- WriterLease). Replicas that do not hold it forward their catalog
-- statements to the holder, at the address it recorded, so that one
-- replica's group commits carry every replica's statements. At most one
-- row; a lease whose expires_at has passed is free. Forwarding is a
-- performance path only: every replica may still append itself.
CREATE TABLE mandate_writer_lease (
    id         BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    holder     TEXT NOT NULL,
    addr       TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
