-- 0001_init: the governance catalog and the audit log.
--
-- Portable SQL (DuckDB and PostgreSQL). Times are TIMESTAMPTZ in UTC with
-- microsecond precision. IDs are assigned by the catalog service from
-- mandate_meta.next_id (0 in a new store: nothing assigned yet) and never
-- reused; ID 0 means "none" (the metastore's parent).

-- Bookkeeping: schema_version (written by the migration runner), revision
-- (of the last committed catalog change) and next_id (next free ID).
CREATE TABLE mandate_meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

INSERT INTO mandate_meta (key, value) VALUES ('revision', 0);
INSERT INTO mandate_meta (key, value) VALUES ('next_id', 0);
-- log_seq: the last write-ahead-log record applied (catalog/walstore).
INSERT INTO mandate_meta (key, value) VALUES ('log_seq', 0);

-- Users, groups and service principals. Names are unique across kinds; the
-- catalog service enforces it (no unique index, see grants).
CREATE TABLE principals (
    id       BIGINT PRIMARY KEY,
    name     TEXT NOT NULL,
    kind     TEXT NOT NULL,             -- USER, GROUP, SERVICE PRINCIPAL
    admin    BOOLEAN NOT NULL,
    builtin  BOOLEAN NOT NULL,
    password TEXT NOT NULL,             -- SCRAM-SHA-256 verifier, '' if none
    comment  TEXT NOT NULL,
    created  TIMESTAMPTZ NOT NULL
);

-- member_id is a direct member of group_id. Unique by the writers, not by an
-- index: DuckDB has raised "duplicate key" on delete + re-insert of one
-- unique key in a transaction.
CREATE TABLE memberships (
    group_id  BIGINT NOT NULL,
    member_id BIGINT NOT NULL
);

-- The metastore, catalogs, schemas, connections, ...
CREATE TABLE securables (
    id        BIGINT PRIMARY KEY,
    type      TEXT NOT NULL,            -- METASTORE, CATALOG, SCHEMA, CONNECTION, ...
    parent_id BIGINT NOT NULL,          -- 0 for the metastore
    name      TEXT NOT NULL,
    owner_id  BIGINT NOT NULL,
    comment   TEXT NOT NULL,
    options   TEXT,                     -- JSON object of the non-secret options; NULL if none
    secrets   BYTEA,                    -- AES-GCM sealed JSON of the secret options; NULL if none
    builtin   BOOLEAN NOT NULL,
    created   TIMESTAMPTZ NOT NULL
);

-- One privilege on one securable to one principal. (securable_id,
-- principal_id, privilege) is unique by the writers (see memberships).
CREATE TABLE grants (
    securable_id BIGINT NOT NULL,
    principal_id BIGINT NOT NULL,
    privilege    TEXT NOT NULL,         -- canonical spelling: USE_CATALOG, ...
    grantor_id   BIGINT NOT NULL
);

-- The audit log, append-only. Column names follow Databricks'
-- system.access.audit.
CREATE TABLE audit_events (
    event_id          TEXT NOT NULL,    -- UUID
    event_time        TIMESTAMPTZ NOT NULL,
    event_date        DATE NOT NULL,    -- event_time's date in UTC
    service_name      TEXT NOT NULL,    -- sql, authorization, mcp, llm
    action_name       TEXT NOT NULL,    -- GRANT, CREATE CONNECTION, tools/call, ...
    user_identity     TEXT NOT NULL,
    run_by            TEXT NOT NULL,
    run_as            TEXT NOT NULL,
    source_ip_address TEXT NOT NULL,
    user_agent        TEXT NOT NULL,
    session_id        TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    securable_type    TEXT NOT NULL,
    securable_name    TEXT NOT NULL,
    request_params    TEXT NOT NULL,    -- JSON, secrets redacted
    status_code       INTEGER NOT NULL, -- 0 ok
    error_message     TEXT NOT NULL,
    sql_state         TEXT NOT NULL,
    decision          TEXT NOT NULL,    -- allow, deny
    reason            TEXT NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL,
    revision          BIGINT NOT NULL   -- catalog revision of the change; 0 when refused
);
