#!/usr/bin/env bash
# Writes NAME.expected: what a Mandate shows on a copy of the data
# directory in NAME.tar.gz (queries: upgrade-queries.sql, or
# upgrade-queries-vN.sql when it exists). Used to refresh the answers of
# an older fixture with the last Mandate before the catalog left DuckDB
# (commit ba4eb47), when that Mandate's answers grew (new system tables).
#
# Usage: expected.sh MANDATE_BINARY NAME   (e.g. embedded-v2)
set -euo pipefail
bin=$1 name=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT
export MANDATE_MASTER_KEY=$(printf 'upgrade fixture key, 32 bytes...' | base64)
export MANDATE_NODE_TOKEN=fixture-node-token-0123456789abcdef
export PGPASSWORD=fixture-admin
tar -C "$work" -xzf "$here/$name.tar.gz"
"$bin" serve --data-dir "$work/mandate-data" --sql-addr 127.0.0.1:35434 --http-addr 127.0.0.1:38472 --log-level warn --audit-retention 0 >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:38472/healthz >/dev/null && break; sleep 0.1; done
queries=$here/upgrade-queries.sql
v=${name##*-}
if [ -f "$here/upgrade-queries-$v.sql" ]; then queries=$here/upgrade-queries-$v.sql; fi
psql -X -q -v ON_ERROR_STOP=1 "host=127.0.0.1 port=35434 user=admin dbname=system sslmode=require" -A -F '|' -f "$queries" >"$here/$name.expected"
