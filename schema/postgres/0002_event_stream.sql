-- 0002_event_stream: the event stream (audit events of SQL statements,
-- authorization decisions, MCP messages and LLM calls, with their usage
-- and captured payloads) shared by the replicas (catalog/pgstore events).
--
-- audit_events has the columns of DuckDB's audit_events (schema/duckdb
-- 0001, 0003) plus seq (the order of appends, which orders events with the
-- same time) and json_invalid. It is partitioned by day of event_time
-- (UTC): partitions audit_events_pYYYYMMDD are created ahead of time and
-- on demand by mandate_audit_ensure_partitions; events of a day without a
-- partition (far past or future) land in audit_events_default; retention
-- drops whole day partitions. Rows are appended with COPY; the completion
-- of a gateway call updates the outcome and usage columns of its request's
-- row (found by event_time and event_id through the event_time index).
--
-- The JSON columns are stored as the text the gateway wrote; json_invalid
-- has a bit set for each one that is not JSON (1 request_params,
-- 2 guardrails, 4 request_tags, 8 routing; checked by the writer), which
-- the views show as NULL, as DuckDB's TRY_CAST does. So the views cast
-- only valid JSON and never raise.
CREATE SEQUENCE audit_events_seq;

CREATE TABLE audit_events (
    event_id          TEXT NOT NULL,
    event_time        TIMESTAMPTZ NOT NULL,
    event_date        DATE NOT NULL,    -- event_time's date in UTC
    service_name      TEXT NOT NULL,    -- sql, authorization, mcp, llm
    action_name       TEXT NOT NULL,
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
    status_code       INTEGER NOT NULL,
    error_message     TEXT NOT NULL,
    sql_state         TEXT NOT NULL,
    decision          TEXT NOT NULL,
    reason            TEXT NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL,
    revision          BIGINT NOT NULL,
    trace_id          TEXT NOT NULL DEFAULT '',
    span_id           TEXT NOT NULL DEFAULT '',
    guardrails        TEXT NOT NULL DEFAULT '',
    provider_service  TEXT NOT NULL DEFAULT '',
    provider          TEXT NOT NULL DEFAULT '',
    model             TEXT NOT NULL DEFAULT '',
    input_tokens      BIGINT,           -- NULL: no usage (not an LLM call)
    output_tokens     BIGINT,
    cached_input_tokens BIGINT,
    cache_write_tokens BIGINT,
    reasoning_tokens  BIGINT,
    cost_nanos        BIGINT,           -- billionths of a US dollar
    ttft_ms           DOUBLE PRECISION,
    streaming         BOOLEAN,
    request_tags      TEXT NOT NULL DEFAULT '',
    routing           TEXT NOT NULL DEFAULT '',
    request_body      TEXT,             -- payload events only
    response_body     TEXT,
    json_invalid      SMALLINT NOT NULL DEFAULT 0,
    seq               BIGINT NOT NULL DEFAULT nextval('audit_events_seq')
) PARTITION BY RANGE (event_time);

-- Time ranges, the order of ListAudit and the completions' lookups (a
-- btree on an ever-growing key costs little to maintain); request_id
-- lookups. Created on every partition through the parent.
CREATE INDEX audit_events_time ON audit_events (event_time, seq);
CREATE INDEX audit_events_request_id ON audit_events (request_id);

CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- Creates the missing day partitions of the days first .. first+days-1
-- (UTC), under an advisory lock so that replicas doing it at once create
-- each once. A day whose events already sit in the default partition is
-- left there (its partition cannot be attached; the events stay
-- readable). Returns the number of partitions created.
CREATE FUNCTION mandate_audit_ensure_partitions(first DATE, days INT) RETURNS INT
LANGUAGE plpgsql AS $$
DECLARE
    d DATE;
    name TEXT;
    created INT := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7236837839417010001);
    FOR i IN 0 .. days - 1 LOOP
        d := first + i;
        name := 'audit_events_p' || to_char(d, 'YYYYMMDD');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        BEGIN
            EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS)', name);
            EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                name, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        EXCEPTION WHEN check_violation THEN
            -- rows of that day are in the default partition already
            NULL;
        END;
    END LOOP;
    RETURN created;
END
$$;

-- The catalog revision through which audit_events holds the audit
-- records of catalog changes (catalog.EventStore.AuditedRevision).
INSERT INTO mandate_meta (key, value) VALUES ('audit_revision', 0);

-- One row per replica's local audit spool (catalog/auditwal in its data
-- directory): the last spool record applied here, written in the
-- transaction that applies it, so a record is applied exactly once.
CREATE TABLE mandate_audit_spools (
    spool_id   TEXT PRIMARY KEY,
    log_seq    BIGINT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The relations the system tables read, in a schema of their own so that
-- the query engine's role can be granted SELECT on them alone. Same names
-- and columns as DuckDB's views (schema/duckdb 0002, 0003;
-- catalog.AuditColumns, UsageColumns, PayloadColumns). The JSON objects
-- are written compactly, as DuckDB's json_object writes them.
CREATE SCHEMA mandate_views;

CREATE VIEW mandate_views.system_access_audit AS
SELECT
    event_time,
    event_date,
    event_id,
    service_name,
    action_name,
    user_identity,
    ('{"run_by":' || to_json(run_by)::text || ',"run_as":' || to_json(run_as)::text || '}')::json AS identity_metadata,
    source_ip_address,
    user_agent,
    session_id,
    request_id,
    securable_type,
    securable_name,
    CASE WHEN json_invalid & 1 = 0 THEN NULLIF(request_params, '')::json END AS request_params,
    ('{"status_code":' || status_code::text || ',"error_message":' || to_json(error_message)::text ||
        ',"sql_state":' || to_json(sql_state)::text || '}')::json AS response,
    decision,
    reason,
    latency_ms,
    NULLIF(trace_id, '') AS trace_id,
    NULLIF(span_id, '') AS span_id,
    CASE WHEN json_invalid & 2 = 0 THEN NULLIF(guardrails, '')::json END AS guardrails
FROM public.audit_events
WHERE NOT (service_name = 'llm' AND action_name = 'payload');

CREATE VIEW mandate_views.system_ai_gateway_usage AS
SELECT
    event_time,
    request_id,
    securable_name AS service_name,
    NULLIF(provider_service, '') AS provider_service,
    NULLIF(provider, '') AS provider,
    NULLIF(model, '') AS model,
    user_identity AS requester,
    NULLIF(run_as, '') AS run_as,
    status_code,
    input_tokens,
    output_tokens,
    cached_input_tokens,
    cache_write_tokens,
    reasoning_tokens,
    input_tokens + output_tokens + cached_input_tokens + cache_write_tokens AS total_tokens,
    cost_nanos::numeric(18, 0) * 0.000000001 AS cost_usd,
    latency_ms,
    CASE WHEN streaming THEN ttft_ms END AS ttft_ms,
    streaming,
    CASE WHEN json_invalid & 4 = 0 THEN NULLIF(request_tags, '')::json END AS request_tags,
    CASE WHEN json_invalid & 8 = 0 THEN NULLIF(routing, '')::json END AS routing,
    NULLIF(trace_id, '') AS trace_id,
    NULLIF(span_id, '') AS span_id
FROM public.audit_events
WHERE service_name = 'llm' AND action_name <> 'payload';

CREATE VIEW mandate_views.system_ai_gateway_payloads AS
SELECT
    event_time,
    request_id,
    securable_name AS service_name,
    user_identity AS requester,
    NULLIF(run_as, '') AS run_as,
    request_body,
    response_body,
    NULLIF(trace_id, '') AS trace_id
FROM public.audit_events
WHERE service_name = 'llm' AND action_name = 'payload';
