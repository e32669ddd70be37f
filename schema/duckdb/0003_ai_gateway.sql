-- 0003_ai_gateway: trace ids, guardrail outcomes, LLM usage and captured
-- payloads on audit events; the relations behind system.ai_gateway.usage
-- and system.ai_gateway.payloads; trace_id, span_id and guardrails on
-- system.access.audit.
--
-- An LLM call is one audit event (service_name 'llm'): its request record,
-- then its completion, which fills in the usage columns (one row, one
-- write path). A captured payload is an event of its own (action_name
-- 'payload'), shown by system.ai_gateway.payloads and never by
-- system.access.audit. Retention and the size bound apply to all of them.
--
-- The view is replaced; the index on request_id stays (dropping and
-- creating it again in the transaction that adds columns to a table with
-- stored rows crashes DuckDB 1.5 at commit; TestMigrateAIGatewayColumns).
DROP VIEW system_access_audit;

ALTER TABLE audit_events ADD COLUMN trace_id TEXT DEFAULT '';
ALTER TABLE audit_events ADD COLUMN span_id TEXT DEFAULT '';
ALTER TABLE audit_events ADD COLUMN guardrails TEXT DEFAULT '';         -- JSON array, '' for none
ALTER TABLE audit_events ADD COLUMN provider_service TEXT DEFAULT '';
ALTER TABLE audit_events ADD COLUMN provider TEXT DEFAULT '';
ALTER TABLE audit_events ADD COLUMN model TEXT DEFAULT '';
ALTER TABLE audit_events ADD COLUMN input_tokens BIGINT;                -- NULL: no usage (not an LLM call)
ALTER TABLE audit_events ADD COLUMN output_tokens BIGINT;
ALTER TABLE audit_events ADD COLUMN cached_input_tokens BIGINT;
ALTER TABLE audit_events ADD COLUMN cache_write_tokens BIGINT;
ALTER TABLE audit_events ADD COLUMN reasoning_tokens BIGINT;
ALTER TABLE audit_events ADD COLUMN cost_nanos BIGINT;                  -- billionths of a US dollar
ALTER TABLE audit_events ADD COLUMN ttft_ms DOUBLE PRECISION;
ALTER TABLE audit_events ADD COLUMN streaming BOOLEAN;
ALTER TABLE audit_events ADD COLUMN request_tags TEXT DEFAULT '';       -- JSON object, '' for none
ALTER TABLE audit_events ADD COLUMN routing TEXT DEFAULT '';            -- JSON array, '' for none
ALTER TABLE audit_events ADD COLUMN request_body TEXT;                  -- payload events only
ALTER TABLE audit_events ADD COLUMN response_body TEXT;

CREATE VIEW system_access_audit AS
SELECT
    event_time,
    event_date,
    event_id,
    service_name,
    action_name,
    user_identity,
    json_object('run_by', run_by, 'run_as', run_as) AS identity_metadata,
    source_ip_address,
    user_agent,
    session_id,
    request_id,
    securable_type,
    securable_name,
    TRY_CAST(request_params AS JSON) AS request_params,
    json_object('status_code', status_code, 'error_message', error_message, 'sql_state', sql_state) AS response,
    decision,
    reason,
    latency_ms,
    NULLIF(trace_id, '') AS trace_id,
    NULLIF(span_id, '') AS span_id,
    TRY_CAST(NULLIF(guardrails, '') AS JSON) AS guardrails
FROM audit_events
WHERE NOT (service_name = 'llm' AND action_name = 'payload');

-- One row per LLM request: the completed events of service 'llm' that
-- carry usage, and those refused before any upstream call (NULL counts).
CREATE VIEW system_ai_gateway_usage AS
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
    CAST(cost_nanos AS DECIMAL(18, 0)) * 0.000000001 AS cost_usd,
    latency_ms,
    CASE WHEN streaming THEN ttft_ms END AS ttft_ms,
    streaming,
    TRY_CAST(NULLIF(request_tags, '') AS JSON) AS request_tags,
    TRY_CAST(NULLIF(routing, '') AS JSON) AS routing,
    NULLIF(trace_id, '') AS trace_id,
    NULLIF(span_id, '') AS span_id
FROM audit_events
WHERE service_name = 'llm' AND action_name <> 'payload';

-- Captured request and response bodies (model services with
-- log_payloads 'true'), joined to usage by request_id.
CREATE VIEW system_ai_gateway_payloads AS
SELECT
    event_time,
    request_id,
    securable_name AS service_name,
    user_identity AS requester,
    NULLIF(run_as, '') AS run_as,
    request_body,
    response_body,
    NULLIF(trace_id, '') AS trace_id
FROM audit_events
WHERE service_name = 'llm' AND action_name = 'payload';
