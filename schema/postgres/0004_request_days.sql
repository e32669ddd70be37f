-- 0004_request_days: the days on which each request_id has audit events,
-- so that a lookup by request_id reads and plans only those days'
-- partitions of audit_events, not every day within the retention.
--
-- One row per (request_id, day) with events, written by the event
-- stream's writer in the transaction of each COPY (catalog/pgstore), so a
-- request's payload and guardrail rows that come days later add their
-- day; deleted by retention with the days (a scan: no index on day, which
-- every insert would pay for an hourly delete). Not partitioned: a lookup is
-- one index probe. Rows with an empty request_id are not kept. The query
-- engine (catalog/pgquery) reads it through the view in mandate_views, in
-- the transaction of a query that fixes request_id, and bounds the query
-- to those days (catalog/pgquery's doc).
CREATE TABLE audit_request_days (
    request_id TEXT NOT NULL,
    day        DATE NOT NULL,
    PRIMARY KEY (request_id, day)
);

INSERT INTO audit_request_days (request_id, day)
SELECT DISTINCT request_id, (event_time AT TIME ZONE 'UTC')::date FROM audit_events WHERE request_id <> '';

CREATE VIEW mandate_views.audit_request_days AS
SELECT request_id, day FROM public.audit_request_days;
