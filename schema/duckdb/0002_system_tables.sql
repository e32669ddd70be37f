-- 0002_system_tables: the relation behind system.access.audit (DuckDB).
--
-- The SQL front end (sqlfront/systables) rewrites references to
-- system.access.audit into system_access_audit (catalog.AuditRelation);
-- its columns are catalog.AuditColumns, in that order. Nothing else reads
-- it. identity_metadata and response are JSON objects built from the
-- stored columns; request_params is the stored JSON text, NULL where it is
-- empty or not JSON.
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
    latency_ms
FROM audit_events;

-- Lookups by request_id (one request's events) use this ART index instead
-- of a scan. Time ranges need no index: events are appended in time order,
-- so DuckDB's per-row-group min/max of event_time (zone maps) skips the
-- row groups outside the range.
CREATE INDEX audit_events_request_id ON audit_events (request_id);
