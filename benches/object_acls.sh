#!/usr/bin/env bash
# What object ACLs add to a list of 200 deployments (issue 20): a real Prefect server (SQLite) with
# 200 deployments — 100 in a work pool with an ACL, 100 in an open pool, 20 of those with ACLs of
# their own — and `POST deployments/filter` (limit 200) and `POST deployments/count` timed
# sequentially (a) directly against Prefect, (b) through Atrium as the workspace Owner (not
# restricted: streamed as any call), (c) through Atrium as a Developer the ACLs restrict (answer
# read whole and filtered; counts corrected by the upstream's count of hidden deployments). Same
# machine, same run, peers interleaved call by call.
# Needs the `prefect` package (ATRIUM_BENCH_PREFECT, default .venv/bin/prefect).
# Usage: bash benches/object_acls.sh [CALLS]
set -euo pipefail
cd "$(dirname "$0")/.."
CALLS="${1:-200}"
PREFECT="${ATRIUM_BENCH_PREFECT:-.venv/bin/prefect}"
PY="$(dirname "$PREFECT")/python"
cargo build --release --bin atrium 2>&1 | tail -1
BIN=target/release/atrium
WORK=$(mktemp -d); export ATRIUM_DATABASE_URL="sqlite://$WORK/atrium.db" ATRIUM_DATA_DIR="$WORK" ATRIUM_LOG=warn
export ATRIUM_UPSTREAM_NETWORKS=127.0.0.0/8
PREFECT_HOME="$WORK/prefect" PREFECT_SERVER_API_AUTH_STRING=bench-secret DO_NOT_TRACK=1 \
  "$PREFECT" server start --host 127.0.0.1 --port 4530 --no-ui --analytics-off >/dev/null 2>&1 & P=$!
echo 'a-long-password' | $BIN users create --email owner@bench.test --site-admin >/dev/null 2>&1
echo 'a-long-password' | $BIN users create --email dev@bench.test >/dev/null 2>&1
ACCOUNT=$($BIN accounts create --handle bench --name Bench --owner-email owner@bench.test 2>/dev/null)
$BIN accounts add-member --account bench --email dev@bench.test >/dev/null 2>&1
$BIN accounts set-plan --account bench --plan enterprise --api-rate-limit 100000000 >/dev/null 2>&1
OWNER=$($BIN users api-key --email owner@bench.test --name bench 2>/dev/null)
DEV=$($BIN users api-key --email dev@bench.test --name bench 2>/dev/null)
$BIN serve --bind 127.0.0.1:4531 2>/dev/null & A=$!
trap 'kill $A $P 2>/dev/null; sleep 1; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do curl -sf 127.0.0.1:4531/api/ready >/dev/null && curl -sf -u :bench-secret 127.0.0.1:4530/api/health >/dev/null && break; sleep 0.2; done
"$PY" benches/object_acls.py "http://127.0.0.1:4531" "$ACCOUNT" "$OWNER" "$DEV" "http://127.0.0.1:4530/api" bench-secret "$CALLS"
