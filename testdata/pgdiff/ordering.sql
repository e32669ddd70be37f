-- Ordering (NULLs), DISTINCT, LIMIT and OFFSET.
SELECT x FROM (VALUES (1), (NULL), (3)) t(x) ORDER BY x
SELECT x FROM (VALUES (1), (NULL), (3)) t(x) ORDER BY x DESC
SELECT x FROM (VALUES (1), (NULL), (3)) t(x) ORDER BY x ASC NULLS FIRST
SELECT x FROM (VALUES (1), (NULL), (3)) t(x) ORDER BY x DESC NULLS LAST
SELECT x, y FROM (VALUES (1, NULL), (1, 'b'), (NULL, 'a')) t(x, y) ORDER BY x DESC, y
SELECT reason FROM system.access.audit GROUP BY reason ORDER BY reason
SELECT reason FROM system.access.audit GROUP BY reason ORDER BY reason DESC
SELECT user_identity FROM system.access.audit GROUP BY 1 ORDER BY 1 DESC
SELECT x FROM (VALUES ('b'), ('B'), ('a'), ('_'), ('1'), ('')) t(x) ORDER BY x
SELECT x FROM (VALUES (1.5), (-1), (0), (1e10)) t(x) ORDER BY x DESC
SELECT x FROM (VALUES (true), (false), (NULL)) t(x) ORDER BY x
SELECT x FROM (VALUES (2), (1)) t(x) ORDER BY x USING >
SELECT x AS y FROM (VALUES (2), (1)) t(x) ORDER BY y
SELECT x FROM (VALUES (2), (1)) t(x) ORDER BY -x
SELECT x FROM (VALUES (2), (1)) t(x) ORDER BY 2
SELECT DISTINCT x FROM (VALUES (1), (1), (NULL), (NULL)) t(x) ORDER BY x
SELECT DISTINCT ON (service_name) service_name, event_id FROM system.access.audit ORDER BY service_name, event_id
SELECT DISTINCT ON (service_name) service_name, latency_ms FROM system.access.audit ORDER BY service_name, latency_ms DESC
SELECT event_id FROM system.access.audit ORDER BY event_id LIMIT 3
SELECT event_id FROM system.access.audit ORDER BY event_id LIMIT 3 OFFSET 45
SELECT event_id FROM system.access.audit ORDER BY event_id OFFSET 60
SELECT event_id FROM system.access.audit ORDER BY event_id LIMIT 0
SELECT event_id FROM system.access.audit ORDER BY event_id LIMIT ALL OFFSET 58
SELECT event_id FROM system.access.audit ORDER BY event_id LIMIT NULL OFFSET 58
SELECT event_id FROM system.access.audit ORDER BY event_id FETCH FIRST 2 ROWS ONLY
SELECT event_id FROM system.access.audit ORDER BY event_id OFFSET 1 ROW FETCH NEXT 1 ROW ONLY
SELECT x FROM generate_series(1, 10) g(x) ORDER BY x LIMIT 2 + 1
SELECT 1 LIMIT -1
SELECT 1 OFFSET -1
SELECT x FROM (VALUES (1), (2)) t(x) ORDER BY x LIMIT (SELECT 1)
SELECT event_id, latency_ms FROM system.access.audit ORDER BY latency_ms DESC NULLS LAST, event_id LIMIT 5
SELECT service_name, max(event_time) FROM system.access.audit GROUP BY 1 ORDER BY max(event_time) DESC, 1 LIMIT 2
