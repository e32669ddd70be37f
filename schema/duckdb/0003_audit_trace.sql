-- 0003_audit_trace: the W3C trace context of gateway calls on
-- system.access.audit (trace_id, span_id), so that audit rows and traces
-- join. Rows written before have '' (NULL in the view).
--
-- DuckDB does not alter a table that has an index: the request_id index
-- is dropped and built again around the change.
DROP INDEX audit_events_request_id;
ALTER TABLE audit_events ADD COLUMN trace_id TEXT DEFAULT '';
ALTER TABLE audit_events ADD COLUMN span_id TEXT DEFAULT '';
CREATE INDEX audit_events_request_id ON audit_events (request_id);

CREATE OR REPLACE VIEW system_access_audit AS
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
    NULLIF(span_id, '') AS span_id
FROM audit_events;
