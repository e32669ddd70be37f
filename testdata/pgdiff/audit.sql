-- Queries dashboards and security teams run over the audit.
SELECT user_identity, action_name, count(*) FROM system.access.audit WHERE event_time > '2024-03-09' AND service_name = 'mcp' GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 20
SELECT date_trunc('hour', event_time) AS hour, service_name, count(*) FILTER (WHERE decision = 'deny') AS denied, count(*) AS total FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1, 2 ORDER BY 1, 2
SELECT service_name, percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95, round(avg(latency_ms)::numeric, 3) AS mean FROM system.access.audit GROUP BY 1 ORDER BY 1
SELECT latency_ms, latency_ms::int, round(latency_ms), trunc(latency_ms), latency_ms::numeric(10,2), latency_ms::text FROM system.access.audit ORDER BY latency_ms LIMIT 8
SELECT user_identity, round(100.0 * count(*) FILTER (WHERE decision = 'deny') / count(*), 1) AS deny_pct FROM system.access.audit GROUP BY 1 ORDER BY 2 DESC, 1
SELECT extract(epoch FROM max(event_time) - min(event_time)) / 3600 AS hours FROM system.access.audit WHERE event_time < '2025-01-01'
SELECT coalesce(nullif(user_identity, ''), '(anonymous)') AS who, count(*) FROM system.access.audit GROUP BY 1 ORDER BY 2 DESC, 1
SELECT identity_metadata->>'run_as' AS agent, identity_metadata->>'run_by' AS human, count(*) FROM system.access.audit WHERE identity_metadata->>'run_as' <> '' GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 5
SELECT securable_type, securable_name, count(DISTINCT user_identity) FROM system.access.audit WHERE securable_name IS NOT NULL AND securable_name <> '' GROUP BY 1, 2 ORDER BY 1, 2
SELECT event_id, reason FROM system.access.audit WHERE decision = 'deny' AND reason ILIKE '%use_connection%' ORDER BY event_time, event_id LIMIT 5
SELECT request_id, event_time, action_name FROM system.access.audit WHERE request_id IN ('req-01', 'req-02', 'req-40') ORDER BY request_id
SELECT to_char(event_time, 'YYYY-MM-DD') AS day, to_char(event_time, 'HH24') AS h, count(*) FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1, 2 ORDER BY 1, 2
SELECT source_ip_address, max(event_time) AS last_seen FROM system.access.audit WHERE source_ip_address LIKE '10.0.1.%' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5
SELECT response->>'sql_state' AS code, count(*), min(event_id) FROM system.access.audit WHERE (response->>'status_code')::int <> 0 GROUP BY 1 ORDER BY 1
SELECT session_id, count(*), string_agg(action_name, ' > ' ORDER BY event_time, event_id) FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1 ORDER BY 1
SELECT action_name, sum(CASE WHEN decision = 'allow' THEN 1 ELSE 0 END) AS allowed, sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS denied FROM system.access.audit GROUP BY 1 ORDER BY 1
SELECT count(*) FROM system.access.audit WHERE event_date BETWEEN DATE '2024-03-09' AND DATE '2024-03-10'
SELECT event_date, sum(latency_ms) / count(*) AS mean, max(latency_ms) - min(latency_ms) AS spread FROM system.access.audit WHERE event_time < '2025-01-01' GROUP BY 1 ORDER BY 1
