-- Aggregates and grouping.
SELECT count(*), count(reason), count(DISTINCT service_name), count(DISTINCT user_identity) FROM system.access.audit
SELECT sum(x), avg(x), min(x), max(x) FROM (VALUES (1), (2), (4)) t(x)
SELECT sum(x), avg(x) FROM (VALUES (1::int8), (2), (4)) t(x)
SELECT sum(x), avg(x) FROM (VALUES (1::int2), (2::int2)) t(x)
SELECT sum(x), avg(x) FROM (VALUES (1.5), (2.25)) t(x)
SELECT sum(x), avg(x) FROM (VALUES (1.5::float8), (2.25::float8)) t(x)
SELECT sum(x), avg(x), count(x) FROM (VALUES (NULL::int), (NULL)) t(x)
SELECT avg(x) FROM (VALUES (1), (2)) t(x)
SELECT avg(x) FROM (VALUES (-1), (-2)) t(x)
SELECT avg(x) FROM (VALUES (10), (20), (31)) t(x)
SELECT sum(latency_ms), avg(latency_ms), min(latency_ms), max(latency_ms) FROM system.access.audit
SELECT service_name, count(*), round(avg(latency_ms)::numeric, 2), max(latency_ms) FROM system.access.audit GROUP BY service_name ORDER BY service_name
SELECT decision, count(*) AS n FROM system.access.audit GROUP BY decision HAVING count(*) > 10 ORDER BY n DESC
SELECT user_identity, count(*) FROM system.access.audit GROUP BY 1 ORDER BY 2 DESC, 1
SELECT service_name, decision, count(*) FROM system.access.audit GROUP BY service_name, decision ORDER BY 1, 2
SELECT service_name, decision, count(*) FROM system.access.audit GROUP BY ROLLUP (service_name, decision) ORDER BY 1, 2
SELECT service_name, decision, count(*) FROM system.access.audit GROUP BY CUBE (service_name, decision) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST
SELECT service_name, count(*) FROM system.access.audit GROUP BY GROUPING SETS ((service_name), ()) ORDER BY 1
SELECT bool_and(latency_ms > 0), bool_or(latency_ms > 1000), every(decision = 'allow') FROM system.access.audit
SELECT string_agg(action_name, ',' ORDER BY action_name) FROM (SELECT DISTINCT action_name FROM system.access.audit) a
SELECT array_agg(x ORDER BY x DESC), array_agg(DISTINCT x) FROM (VALUES (1), (3), (2), (3)) t(x)
SELECT array_agg(x) FROM (VALUES ('a'), ('b c'), (NULL)) t(x)
SELECT count(*) FILTER (WHERE decision = 'deny'), count(*) FILTER (WHERE latency_ms > 100) FROM system.access.audit
SELECT sum(latency_ms) FILTER (WHERE service_name = 'mcp') FROM system.access.audit
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms), percentile_disc(0.5) WITHIN GROUP (ORDER BY latency_ms) FROM system.access.audit
SELECT percentile_cont(0.9) WITHIN GROUP (ORDER BY x), percentile_disc(0.9) WITHIN GROUP (ORDER BY x) FROM (VALUES (1), (2), (3), (4)) t(x)
SELECT mode() WITHIN GROUP (ORDER BY service_name) FROM system.access.audit
SELECT stddev(x), variance(x), stddev_pop(x), var_pop(x) FROM (VALUES (1.0::float8), (2.0), (4.0)) t(x)
SELECT stddev(x), variance(x) FROM (VALUES (1), (2), (4)) t(x)
SELECT corr(x, y), covar_pop(x, y), regr_slope(y, x) FROM (VALUES (1.0::float8, 2.0::float8), (2, 4.5), (3, 5.5)) t(x, y)
SELECT count(*) FROM system.access.audit WHERE false
SELECT max(x), min(x), sum(x) FROM (SELECT 1 AS x WHERE false) t
SELECT count(DISTINCT (service_name, decision)) FROM system.access.audit
SELECT service_name FROM system.access.audit GROUP BY service_name HAVING min(latency_ms) < 1 ORDER BY 1
SELECT count(*) * 2, count(*) + 0.5, sum(latency_ms) / count(*) FROM system.access.audit
SELECT sum(x) FROM (VALUES (2147483647), (1)) t(x)
SELECT sum(x) FROM (VALUES (9223372036854775807), (1)) t(x)
SELECT max(event_time) > min(event_time), max(event_id), min(reason) FROM system.access.audit
SELECT json_agg(x), jsonb_agg(x) FROM (VALUES (1), (2)) t(x)
SELECT service_name, count(*) FROM system.access.audit GROUP BY 1 HAVING service_name LIKE 'l%'
SELECT count(*) FROM (SELECT DISTINCT user_identity, service_name FROM system.access.audit) d
SELECT latency_ms FROM system.access.audit GROUP BY service_name
SELECT count(count(*)) FROM system.access.audit
SELECT sum(event_id) FROM system.access.audit
