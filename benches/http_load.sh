#!/usr/bin/env bash
# Open-loop load on GET /api/me/workspaces: Atrium (key auth + permission index + one SQLite read
# of the user's accounts/workspaces) against a bare axum handler returning the same JSON, same
# machine, same run, same load generator. Loopback only; bounded in time.
# Usage: bash benches/http_load.sh [SECONDS] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-10}"; shift || true
RATES=("${@:-500 1000 2000 4000}")
RATES=(${RATES[@]})
cargo build --release --bin atrium --example loadgen --example bare_axum 2>&1 | tail -1
BIN=target/release/atrium; LOAD=target/release/examples/loadgen; BARE=target/release/examples/bare_axum
WORK=$(mktemp -d); export ATRIUM_DATABASE_URL="sqlite://$WORK/atrium.db" ATRIUM_LOG=warn
echo 'a-long-password' | $BIN users create --email bench@bench.test --site-admin 2>/dev/null
ACCOUNT=$($BIN accounts create --handle bench --name Bench --owner-email bench@bench.test 2>/dev/null)
KEY=$($BIN users api-key --email bench@bench.test --name load 2>/dev/null)
$BIN serve --bind 127.0.0.1:4501 2>/dev/null & A=$!
$BARE 127.0.0.1:4502 & B=$!
trap 'kill $A $B 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 50); do curl -sf 127.0.0.1:4501/api/health >/dev/null && break; sleep 0.1; done
curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  "127.0.0.1:4501/api/accounts/$ACCOUNT/workspaces/" -d '{"name":"prod","handle":"prod"}' >/dev/null
for rate in "${RATES[@]}"; do
  $LOAD "http://127.0.0.1:4502/api/me/workspaces" "$rate" "$SECONDS_EACH"
  $LOAD "http://127.0.0.1:4501/api/me/workspaces" "$rate" "$SECONDS_EACH" "$KEY"
done
