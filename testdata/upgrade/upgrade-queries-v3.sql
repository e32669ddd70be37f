\ir upgrade-queries.sql
-- The AI gateway's objects and audit columns (schema version 3).
SELECT service_name, service_type, provider, destinations, service_options::text, comment FROM information_schema.model_services ORDER BY 1;
SELECT service_name, service_type, grantee, privilege_type, inherited_from FROM information_schema.service_privileges ORDER BY 1, 3, 4, 5;
SHOW RATE LIMITS ON MODEL SERVICE frontier;
SHOW BUDGETS;
SHOW POLICIES ON MODEL SERVICE frontier;
SHOW ACCESS TOKENS FOR USER "alice@example.com";
SELECT event_id, trace_id, span_id, guardrails, latency_ms FROM system.access.audit WHERE service_name = 'llm' ORDER BY event_time;
SELECT * FROM system.ai_gateway.usage ORDER BY event_time;
SELECT * FROM system.ai_gateway.payloads ORDER BY event_time;
