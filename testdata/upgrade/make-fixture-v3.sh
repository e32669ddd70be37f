#!/usr/bin/env bash
# Produces embedded-v3.tar.gz and embedded-v3.expected: a data directory
# written by the last Mandate whose catalog lived in DuckDB tables behind
# catalog.wal (schema version 3: the AI gateway's objects and audit
# columns), killed with SIGKILL while records were still waiting in
# catalog.wal, and what that Mandate showed after a restart on a copy of
# it. cmd/mandate's TestUpgradeEmbedded starts the current Mandate on the
# directory and compares.
#
# Usage: make-fixture-v3.sh OLD_MANDATE_BINARY   (built from commit ba4eb47)
set -euo pipefail
old=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT
export MANDATE_MASTER_KEY=$(printf 'upgrade fixture key, 32 bytes...' | base64)
export MANDATE_ADMIN_PASSWORD=fixture-admin
export MANDATE_NODE_TOKEN=fixture-node-token-0123456789abcdef
export PGPASSWORD=$MANDATE_ADMIN_PASSWORD
sql=127.0.0.1:35433 http=127.0.0.1:38471
start() {
  "$old" serve --data-dir "$1" --sql-addr $sql --http-addr $http --log-level warn --audit-retention 0 >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 100); do curl -sf http://$http/healthz >/dev/null && return; sleep 0.1; done
  cat "$work/err"; exit 1
}
q() { psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=35433 user=admin dbname=system sslmode=require" "$@"; }
audit() {
  curl -sf -X POST http://$http/api/v1/audit -H "Authorization: Bearer $MANDATE_NODE_TOKEN" -H 'Content-Type: application/json' -d "$1" >/dev/null
}

start "$work/mandate-data"
q <<'SQL'
CREATE GROUP "data-analysts";
CREATE USER "alice@example.com" WITH PASSWORD 'alice-pw';
ALTER GROUP "data-analysts" ADD USER "alice@example.com";
CREATE SERVICE PRINCIPAL "coding-agent";
CREATE CATALOG sales COMMENT 'sales data';
CREATE SCHEMA sales.crm;
CREATE CONNECTION sales.crm.tools TYPE MCP OPTIONS (url 'https://mcp.example.com/mcp', auth_mode 'shared_principal', bearer_token 'secret-token-1') COMMENT 'shared';
CREATE CONNECTION my_github_mcp TYPE MCP OPTIONS (url 'https://mcp.github.example/mcp', auth_mode 'per_user_oauth', scopes 'repo read:org');
GRANT USE_CATALOG ON CATALOG sales TO "data-analysts";
GRANT USE_SCHEMA ON SCHEMA sales.crm TO "data-analysts";
GRANT USE_CONNECTION ON CONNECTION sales.crm.tools TO "data-analysts", "coding-agent";
GRANT USE_CONNECTION ON CONNECTION my_github_mcp TO "data-analysts";
GRANT SELECT ON TABLE system.access.audit TO "data-analysts";
GRANT SELECT ON TABLE system.ai_gateway.usage TO "data-analysts";
CREATE MODEL PROVIDER SERVICE openai_prod OPTIONS (provider 'openai', api_key 'sk-fixture-secret', prices 'gpt-4.1=2/8');
CREATE MODEL SERVICE frontier OPTIONS (destinations 'openai_prod/gpt-4.1', tags '{"team":"platform"}', log_payloads 'true') COMMENT 'the default model';
GRANT EXECUTE ON MODEL SERVICE frontier TO "data-analysts";
ALTER MODEL SERVICE frontier SET RATE LIMIT 60 REQUESTS, 200000 TOKENS PER MINUTE FOR EACH USER;
CREATE BUDGET monthly LIMIT 5 USD PER MONTH FOR EACH USER ON MODEL SERVICE frontier;
CREATE POLICY pii ON MODEL SERVICE frontier FOR CALL AND RESULT USING system.ai.detect_sensitive_data OPTIONS (entities 'EMAIL,PHONE', action 'mask');
CREATE POLICY no_deletes ON CONNECTION my_github_mcp AS $$
package mandate.github
deny contains msg if { input.tool == "delete_repo"; msg := "no deletes" }
$$;
SQL
psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=35433 user=alice@example.com password=alice-pw dbname=system sslmode=require" \
  -c "CREATE ACCESS TOKEN laptop VIA \"coding-agent\" COMMENT 'fixture'" >/dev/null
# Applied to the DuckDB tables (every 200 ms, records older than 100 ms);
# then gateway audit records (an LLM call with usage, trace ids and
# guardrail outcomes, its captured payload, an MCP call) and more changes
# that stay in the log.
sleep 1
audit '{"events":[
 {"event_id":"00000000-0000-4000-8000-000000000001","event_time":"2025-06-01T10:00:00Z","service_name":"llm","action_name":"chat.completions","user_identity":"alice@example.com","run_by":"alice@example.com","run_as":"coding-agent","request_id":"req-1","securable_type":"MODEL SERVICE","securable_name":"system.ai.frontier","status_code":0,"latency_ms":0,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}]}'
audit '{"events":[
 {"event_id":"00000000-0000-4000-8000-000000000001","event_time":"2025-06-01T10:00:00Z","service_name":"llm","action_name":"chat.completions","status_code":200,"decision":"allow","latency_ms":812.5,"completes":true,"guardrails":"[{\"policy\":\"pii\",\"phase\":\"result\",\"action\":\"mask\"}]","usage":{"provider_service":"system.ai.openai_prod","provider":"openai","model":"gpt-4.1","input_tokens":10,"output_tokens":20,"cached_input_tokens":3,"cost_nanos":123456,"ttft_ms":12.5,"streaming":true,"request_tags":"{\"team\":\"platform\"}","routing":"[{\"status\":200}]"}},
 {"event_id":"00000000-0000-4000-8000-000000000002","event_time":"2025-06-01T10:00:00.5Z","service_name":"llm","action_name":"payload","user_identity":"alice@example.com","request_id":"req-1","securable_type":"MODEL SERVICE","securable_name":"system.ai.frontier","status_code":200,"latency_ms":0,"payload":{"request_body":"{\"messages\":[]}","response_body":"{\"choices\":[]}"}},
 {"event_id":"00000000-0000-4000-8000-000000000003","event_time":"2025-06-01T10:00:01Z","service_name":"mcp","action_name":"tools/call","user_identity":"alice@example.com","request_id":"req-2","status_code":1,"decision":"deny","reason":"no USE CONNECTION","latency_ms":1}]}'
q <<'SQL'
REVOKE USE_CONNECTION ON CONNECTION my_github_mcp FROM "data-analysts";
CREATE USER "bob@example.com";
ALTER GROUP "data-analysts" ADD USER "bob@example.com";
ALTER CONNECTION sales.crm.tools OWNER TO "alice@example.com";
ALTER POLICY pii SET MODE MONITOR;
ALTER MODEL SERVICE frontier SET RATE LIMIT 5 REQUESTS PER MINUTE FOR GROUP "data-analysts";
SQL
kill -9 $pid; wait $pid 2>/dev/null || true
test -s "$work/mandate-data/catalog.wal" || { echo "catalog.wal is empty: nothing left to replay"; exit 1; }
rm -f "$work/mandate-data/admin-password" "$work/mandate-data/"*.pem "$work/mandate-data/"*.key.pem 2>/dev/null || true
tar -C "$work" -czf "$here/embedded-v3.tar.gz" mandate-data

# What the old Mandate shows after replaying its log (on a copy).
cp -a "$work/mandate-data" "$work/copy"
start "$work/copy"
q -A -F '|' -f "$here/upgrade-queries-v3.sql" >"$here/embedded-v3.expected"
kill $pid; wait $pid 2>/dev/null || true
ls -la "$work/mandate-data"
