-- 0001_catalog: the catalog's change records and snapshots (catalog/pgstore).
--
-- Several Mandate replicas share these tables. The catalog is loaded from
-- the newest snapshot plus the change records after it; every committed
-- change is one row of mandate_catalog_changes, appended by
-- mandate_catalog_append, which serializes the writers on the one row of
-- mandate_catalog_head: a writer whose base revision is no longer the
-- newest fails with SQLSTATE 40001 and writes nothing (never a silent
-- overwrite). Records and snapshots are JSON (catalog.Change,
-- catalog.State) in BYTEA: the catalog service reads them whole, and JSON
-- text may hold \u0000, which JSONB refuses.

-- Bookkeeping: schema_version (written by the migration runner).
CREATE TABLE mandate_meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

-- The newest revision. One row.
CREATE TABLE mandate_catalog_head (
    id       SMALLINT PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO mandate_catalog_head (id, revision) VALUES (1, 0);

-- One row per committed change: its row changes and the audit records of
-- its statements.
CREATE TABLE mandate_catalog_changes (
    revision     BIGINT PRIMARY KEY,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    record       BYTEA NOT NULL
);

-- Snapshots of the whole catalog (the newest two are kept).
CREATE TABLE mandate_catalog_snapshots (
    revision BIGINT PRIMARY KEY,
    taken_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    state    BYTEA NOT NULL
);

-- Appends records as revisions base+1, base+2, ... if base is the newest
-- revision (else 40001), and wakes the replicas (NOTIFY mandate_catalog,
-- a hint: replicas also poll the head). One statement, one transaction.
CREATE FUNCTION mandate_catalog_append(base BIGINT, records BYTEA[]) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    n INT := coalesce(array_length(records, 1), 0);
BEGIN
    UPDATE mandate_catalog_head SET revision = base + n WHERE id = 1 AND revision = base;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'catalog revision % is no longer the newest', base USING ERRCODE = '40001';
    END IF;
    INSERT INTO mandate_catalog_changes (revision, record)
        SELECT base + i, records[i] FROM generate_subscripts(records, 1) AS i;
    PERFORM pg_notify('mandate_catalog', (base + n)::text);
    RETURN base + n;
END
$$;
