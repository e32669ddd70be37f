-- Window functions.
SELECT x, row_number() OVER (ORDER BY x), rank() OVER (ORDER BY x), dense_rank() OVER (ORDER BY x) FROM (VALUES (1), (2), (2), (3)) t(x) ORDER BY x, 2
SELECT x, percent_rank() OVER (ORDER BY x), cume_dist() OVER (ORDER BY x), ntile(2) OVER (ORDER BY x) FROM (VALUES (1), (2), (2), (3)) t(x) ORDER BY x, 4
SELECT x, lag(x) OVER (ORDER BY x), lead(x, 2) OVER (ORDER BY x), lag(x, 1, -1) OVER (ORDER BY x) FROM (VALUES (1), (2), (3), (4)) t(x) ORDER BY x
SELECT x, first_value(x) OVER w, last_value(x) OVER w, nth_value(x, 2) OVER w FROM (VALUES (1), (2), (3)) t(x) WINDOW w AS (ORDER BY x ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) ORDER BY x
SELECT x, sum(x) OVER (ORDER BY x), sum(x) OVER (), avg(x) OVER (ORDER BY x ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) FROM (VALUES (1), (2), (3), (4)) t(x) ORDER BY x
SELECT x, sum(x) OVER (ORDER BY x RANGE BETWEEN 1 PRECEDING AND CURRENT ROW), count(*) OVER (ORDER BY x GROUPS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM (VALUES (1), (2), (2), (5)) t(x) ORDER BY x
SELECT x, sum(x) OVER (ORDER BY x ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW) FROM (VALUES (1), (2), (3)) t(x) ORDER BY x
SELECT g, x, row_number() OVER (PARTITION BY g ORDER BY x DESC), sum(x) OVER (PARTITION BY g) FROM (VALUES ('a', 1), ('a', 2), ('b', 5)) t(g, x) ORDER BY g, x
SELECT x, last_value(x) OVER (ORDER BY x) FROM (VALUES (1), (2), (2), (3)) t(x) ORDER BY x
SELECT service_name, count(*), sum(count(*)) OVER (), rank() OVER (ORDER BY count(*) DESC) FROM system.access.audit GROUP BY 1 ORDER BY 1
SELECT event_id, latency_ms, avg(latency_ms) OVER (PARTITION BY service_name) FROM system.access.audit WHERE event_time < '2025-01-01' ORDER BY event_id LIMIT 5
SELECT event_id, event_time - lag(event_time) OVER (ORDER BY event_time, event_id) FROM system.access.audit WHERE event_time < '2025-01-01' ORDER BY event_time, event_id LIMIT 5
SELECT user_identity, event_id FROM (SELECT user_identity, event_id, row_number() OVER (PARTITION BY user_identity ORDER BY event_time DESC, event_id) AS rn FROM system.access.audit WHERE event_time < '2025-01-01') s WHERE rn = 1 ORDER BY 1
SELECT x, count(*) FILTER (WHERE x > 1) OVER (ORDER BY x) FROM (VALUES (1), (2), (3)) t(x) ORDER BY x
SELECT x, 100.0 * x / sum(x) OVER () FROM (VALUES (1), (3)) t(x) ORDER BY x
SELECT x, ntile(3) OVER (ORDER BY x) FROM generate_series(1, 7) AS g(x) ORDER BY x
SELECT x, row_number() OVER w FROM (VALUES (2), (1)) t(x) WINDOW w AS (ORDER BY x DESC) ORDER BY x
SELECT x, row_number() OVER (ORDER BY x NULLS FIRST), rank() OVER (ORDER BY x DESC) FROM (VALUES (1), (NULL), (2)) t(x) ORDER BY x NULLS FIRST
SELECT row_number() OVER (ORDER BY x) FROM (VALUES (1)) t(x) WHERE row_number() OVER (ORDER BY x) = 1
