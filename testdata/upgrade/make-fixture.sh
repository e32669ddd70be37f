#!/usr/bin/env bash
# Produces embedded-v2.tar.gz and embedded-v2.expected: a data directory
# written by the Mandate whose catalog lived in DuckDB tables behind
# catalog.wal (schema version 2, before the catalog moved to
# catalog.snapshot + catalog.wal), killed with SIGKILL while records were
# still waiting in catalog.wal, and what that Mandate showed after a
# restart on a copy of it. cmd/mandate's TestUpgradeEmbedded starts the
# current Mandate on the directory and compares.
#
# embedded-v2.expected was refreshed since by expected.sh with the last
# Mandate before the split (commit ba4eb47), which shows more system
# tables and adds them with one UPGRADE change on its first start.
#
# Usage: make-fixture.sh OLD_MANDATE_BINARY   (built from commit 02b8cef)
set -euo pipefail
old=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT
export MANDATE_MASTER_KEY=$(printf 'upgrade fixture key, 32 bytes...' | base64)
export MANDATE_ADMIN_PASSWORD=fixture-admin
export MANDATE_NODE_TOKEN=fixture-node-token-0123456789abcdef
export PGPASSWORD=$MANDATE_ADMIN_PASSWORD
sql=127.0.0.1:25432 http=127.0.0.1:28470
start() {
  "$old" serve --data-dir "$1" --sql-addr $sql --http-addr $http --log-level warn --audit-retention 0 >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 100); do curl -sf http://$http/healthz >/dev/null && return; sleep 0.1; done
  cat "$work/err"; exit 1
}
q() { psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=25432 user=admin dbname=system sslmode=require" "$@"; }

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
CREATE POLICY no_deletes ON CONNECTION my_github_mcp AS $$
package mandate.github
deny contains msg if { input.tool == "delete_repo"; msg := "no deletes" }
$$;
SQL
# Applied to the DuckDB tables (every 200 ms); then gateway audit records
# (a request and its completion) and more changes that stay in the log.
sleep 1
curl -sf -X POST http://$http/api/v1/audit -H "Authorization: Bearer $MANDATE_NODE_TOKEN" -H 'Content-Type: application/json' -d '{"events":[
 {"event_id":"00000000-0000-4000-8000-000000000001","event_time":"2025-06-01T10:00:00Z","service_name":"mcp","action_name":"tools/call","user_identity":"alice@example.com","run_by":"alice@example.com","run_as":"coding-agent","request_id":"req-1","securable_type":"CONNECTION","securable_name":"sales.crm.tools","status_code":0,"latency_ms":0}]}' >/dev/null
curl -sf -X POST http://$http/api/v1/audit -H "Authorization: Bearer $MANDATE_NODE_TOKEN" -H 'Content-Type: application/json' -d '{"events":[
 {"event_id":"00000000-0000-4000-8000-000000000001","event_time":"2025-06-01T10:00:00Z","service_name":"mcp","action_name":"tools/call","status_code":0,"decision":"allow","latency_ms":12.5,"completes":true},
 {"event_id":"00000000-0000-4000-8000-000000000002","event_time":"2025-06-01T10:00:01Z","service_name":"mcp","action_name":"tools/call","user_identity":"alice@example.com","request_id":"req-2","status_code":1,"decision":"deny","reason":"no USE CONNECTION","latency_ms":1}]}' >/dev/null
q <<'SQL'
REVOKE USE_CONNECTION ON CONNECTION my_github_mcp FROM "data-analysts";
CREATE USER "bob@example.com";
ALTER GROUP "data-analysts" ADD USER "bob@example.com";
ALTER CONNECTION sales.crm.tools OWNER TO "alice@example.com";
DROP SERVICE PRINCIPAL "coding-agent";
SQL
kill -9 $pid; wait $pid 2>/dev/null || true
test -s "$work/mandate-data/catalog.wal" || { echo "catalog.wal is empty: nothing left to replay"; exit 1; }
rm -f "$work/mandate-data/admin-password" "$work/mandate-data/"*.pem "$work/mandate-data/"*.key.pem 2>/dev/null || true
tar -C "$work" -czf "$here/embedded-v2.tar.gz" mandate-data

# What the old Mandate shows after replaying its log (on a copy).
cp -a "$work/mandate-data" "$work/copy"
start "$work/copy"
q -A -F '|' -f "$here/upgrade-queries.sql" >"$here/embedded-v2.expected"
kill $pid; wait $pid 2>/dev/null || true
ls -la "$work/mandate-data"
