-- Errors: the SQLSTATE must be PostgreSQL's.
SELECT evnt_time FROM system.access.audit
SELECT a.evnt_time FROM system.access.audit a
SELECT x.event_time FROM system.access.audit a
SELECT event_time FROM system.access.audit WHERE evnt_id = 'x'
SELECT "Event_Time" FROM system.access.audit
SELECT nope FROM (VALUES (1)) t(x)
SELECT t.nope FROM (VALUES (1)) t(x)
SELECT event_id, count(*) FROM system.access.audit
SELECT event_id FROM system.access.audit GROUP BY service_name
SELECT x FROM (VALUES (1)) a(x), (VALUES (2)) b(x)
SELECT count(*) FROM system.access.audit WHERE count(*) > 1
SELECT sum(sum(latency_ms)) FROM system.access.audit
SELECT lower(1)
SELECT upper(event_time) FROM system.access.audit
SELECT * FROM system.access.nosuch
SELECT * FROM nosuch
SELECT 1 FROM system.access.audit ORDER BY 5
SELECT 'x'::int
SELECT (SELECT event_id FROM system.access.audit)
SELECT x FROM (VALUES (1)) t(x) WHERE x
SELECT 1 WHERE 'abc'
SELECT CASE WHEN 1 THEN 1 END
SELECT 1 UNION SELECT 'a'
SELECT ARRAY[1, 'a']
SELECT sqrt(-1)
SELECT ln(0)
SELECT log(-1)
SELECT 'a' ~ '('
SELECT substring('abc', 1, -1)
SELECT generate_series(1, 3, 0)
SELECT date_part('nope', DATE '2024-01-01')
SELECT nosuchfunction(1)
