-- CTEs, subqueries, set operations, joins, VALUES, generate_series.
WITH a AS (SELECT 1 AS x UNION ALL SELECT 2) SELECT sum(x) FROM a
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) SELECT n, n * n FROM r ORDER BY n
WITH RECURSIVE fib(a, b) AS (SELECT 0::int8, 1::int8 UNION ALL SELECT b, a + b FROM fib WHERE b < 100) SELECT a FROM fib ORDER BY a
WITH d AS (SELECT decision, count(*) AS n FROM system.access.audit GROUP BY decision) SELECT decision, n, n * 100 / (SELECT sum(n) FROM d) FROM d ORDER BY decision
WITH x AS (SELECT 1 AS a), y AS (SELECT a + 1 AS b FROM x) SELECT * FROM x, y
WITH t(a, b) AS (VALUES (1, 'x'), (2, 'y')) SELECT b, a FROM t ORDER BY a DESC
WITH audit AS (SELECT 'shadow' AS event_id) SELECT event_id FROM audit
SELECT (SELECT count(*) FROM system.access.audit), (SELECT max(latency_ms) FROM system.access.audit WHERE false)
SELECT event_id FROM system.access.audit a WHERE latency_ms > (SELECT avg(latency_ms) FROM system.access.audit b WHERE b.service_name = a.service_name) AND event_time < '2025-01-01' ORDER BY event_id
SELECT service_name FROM system.access.audit a WHERE EXISTS (SELECT 1 FROM system.access.audit b WHERE b.service_name = a.service_name AND b.decision = 'deny') GROUP BY 1 ORDER BY 1
SELECT service_name, (SELECT count(*) FROM system.access.audit b WHERE b.service_name = a.service_name) FROM (SELECT DISTINCT service_name FROM system.access.audit) a ORDER BY 1
SELECT x FROM (VALUES (1), (2), (3)) t(x) WHERE x IN (SELECT 2 UNION SELECT 3) ORDER BY x
SELECT x FROM (VALUES (1), (2), (NULL)) t(x) WHERE x NOT IN (SELECT 2) ORDER BY x
SELECT x FROM (VALUES (1), (2)) t(x) WHERE x NOT IN (SELECT NULL::int)
SELECT x, x > ALL (SELECT 1 UNION SELECT 2), x = ANY (SELECT 1) FROM (VALUES (1), (3)) t(x) ORDER BY x
SELECT ARRAY(SELECT x FROM (VALUES (3), (1)) t(x) ORDER BY x)
SELECT (SELECT x FROM (VALUES (1), (2)) t(x))
SELECT 1 UNION SELECT 1 UNION SELECT 2 ORDER BY 1
SELECT 1 UNION ALL SELECT 1 UNION ALL SELECT 2 ORDER BY 1
SELECT x FROM (VALUES (1), (2), (2), (3)) t(x) INTERSECT SELECT x FROM (VALUES (2), (3), (4)) u(x) ORDER BY 1
SELECT x FROM (VALUES (1), (2), (2), (3)) t(x) EXCEPT SELECT 2 ORDER BY 1
SELECT x FROM (VALUES (1), (2), (2)) t(x) EXCEPT ALL SELECT 2 ORDER BY 1
SELECT 1 AS a, 'x' AS b UNION SELECT 2, 'y' ORDER BY a DESC
SELECT 1 UNION SELECT 2.5 ORDER BY 1
SELECT 1, 2 UNION SELECT 3
SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t(n, s) ORDER BY n
SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS t ORDER BY 1
SELECT column1, column2 FROM (VALUES (1, 2.5)) v
VALUES (1, 'x'), (2, 'y') ORDER BY 1 DESC
VALUES (1), (2.5), (NULL)
SELECT * FROM generate_series(1, 5) AS g(i) WHERE i % 2 = 1 ORDER BY i
SELECT generate_series(1, 3), generate_series(1, 3) * 2
SELECT * FROM generate_series(5, 1, -2) g ORDER BY 1 DESC
SELECT * FROM generate_series(1::int8, 3::int8) g
SELECT * FROM generate_series(TIMESTAMP '2024-03-10', TIMESTAMP '2024-03-11', INTERVAL '8 hours') g ORDER BY 1
SELECT count(*) FROM generate_series(1, 1000) g(i) WHERE i % 7 = 0
SELECT * FROM unnest(ARRAY[3, 1, 2]) u ORDER BY 1
SELECT unnest(ARRAY['a', 'b']), 1
SELECT a.x, b.y FROM (VALUES (1), (2)) a(x) JOIN (VALUES (2, 'two'), (3, 'three')) b(x2, y) ON a.x = b.x2 ORDER BY 1
SELECT a.x, b.y FROM (VALUES (1), (2)) a(x) LEFT JOIN (VALUES (2, 'two')) b(x2, y) ON a.x = b.x2 ORDER BY 1
SELECT a.x, b.x2 FROM (VALUES (1), (2)) a(x) FULL JOIN (VALUES (2), (3)) b(x2) ON a.x = b.x2 ORDER BY 1 NULLS LAST, 2
SELECT a.x, b.x2 FROM (VALUES (1), (2)) a(x) RIGHT JOIN (VALUES (2), (3)) b(x2) ON a.x = b.x2 ORDER BY 2
SELECT * FROM (VALUES (1, 'a')) a(k, v) JOIN (VALUES (1, 'b')) b(k, w) USING (k)
SELECT count(*) FROM (VALUES (1), (2)) a(x) CROSS JOIN (VALUES (1), (2), (3)) b(y)
SELECT * FROM (VALUES (1)) a(x), LATERAL (SELECT a.x + 1 AS y) l
SELECT u.user_name, g.group_name FROM system.information_schema.users u JOIN system.information_schema.group_members m ON m.member_name = u.user_name JOIN system.information_schema.groups g USING (group_name) ORDER BY 1, 2
SELECT a.service_name, count(*) FROM system.access.audit a JOIN (SELECT DISTINCT user_name FROM system.information_schema.users) u ON a.user_identity = u.user_name GROUP BY 1 ORDER BY 1
SELECT t.event_id FROM system.access.audit t ORDER BY t.latency_ms DESC, t.event_id LIMIT 3
SELECT audit.event_id FROM system.access.audit ORDER BY audit.event_id LIMIT 2
SELECT x.* FROM (SELECT 1 AS a, 2 AS b) x
SELECT count(*) FROM system.access.audit a, system.access.audit b WHERE a.event_id = b.event_id
SELECT * FROM system.access.audit ORDER BY event_id LIMIT 6
SELECT * FROM system.access.audit WHERE service_name = 'sql' AND event_time < '2025-01-01' ORDER BY event_time DESC LIMIT 3
SELECT event_id FROM system.access.audit WHERE action_name LIKE ANY (ARRAY['GRANT%', 'REV%']) ORDER BY event_id LIMIT 4
SELECT 'abc' LIKE ANY (ARRAY['x%', 'a%']), 'abc' ILIKE ALL (ARRAY['A%', '%C']), 'abc' NOT LIKE ALL (ARRAY['x%', 'y%'])
SELECT DISTINCT service_name FROM system.access.audit ORDER BY latency_ms
SELECT DISTINCT service_name, decision FROM system.access.audit ORDER BY 2, 1
SELECT count(*) FROM system.access.audit HAVING count(*) > 0
SELECT EXISTS (SELECT 1 FROM system.access.audit WHERE decision = 'deny'), NOT EXISTS (SELECT 1 WHERE false)
