-- 0004_request_days: the days on which each request_id has audit events,
-- so that a lookup by request_id reads and plans only those days'
-- partitions of audit_events, not every day within the retention.
--
-- One row per (request_id, day) with events, written by a statement
-- trigger on audit_events in the transaction of each COPY or INSERT
-- (whatever writes them: every replica's version, mandate migrate), so a
-- request's payload and guardrail rows that come days later add their
-- day; deleted by retention with the days. Not partitioned: a lookup is
-- one index probe. Rows with an empty request_id are not kept. The query
-- engine (catalog/pgquery) reads it through the view in mandate_views, in
-- the transaction of a query that fixes request_id, and bounds the query
-- to those days (catalog/pgquery's doc).
CREATE TABLE audit_request_days (
    request_id TEXT NOT NULL,
    day        DATE NOT NULL,
    PRIMARY KEY (request_id, day)
);
CREATE INDEX audit_request_days_day ON audit_request_days (day);

CREATE FUNCTION mandate_audit_request_days() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_request_days (request_id, day)
    SELECT DISTINCT request_id, (event_time AT TIME ZONE 'UTC')::date FROM new_rows WHERE request_id <> ''
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_events_request_days AFTER INSERT ON audit_events
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION mandate_audit_request_days();

INSERT INTO audit_request_days (request_id, day)
SELECT DISTINCT request_id, (event_time AT TIME ZONE 'UTC')::date FROM audit_events WHERE request_id <> '';

CREATE VIEW mandate_views.audit_request_days AS
SELECT request_id, day FROM public.audit_request_days;
