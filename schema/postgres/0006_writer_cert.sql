-- 0006_writer_cert: the writer replica publishes the SHA-256 fingerprint
-- of its HTTP listener's certificate ("sha256:HEX") with its lease, and
-- the replicas that forward to it over TLS accept exactly that
-- certificate. Empty: the holder serves plain HTTP, or predates this
-- column (then replicas using TLS commit their statements themselves).
ALTER TABLE mandate_writer_lease ADD COLUMN cert TEXT NOT NULL DEFAULT '';
