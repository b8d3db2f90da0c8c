#!/usr/bin/env bash
# SCIM provisioning at scale (issue 18, item 8): 10,000 users and 500 groups of 20 members pushed
# through Atrium's SCIM endpoint as an IdP would (8 requests in flight), on SQLite and on
# PostgreSQL, then the same work against scim2-server (the PyPI reference server) on the same
# machine, same client. With Atrium, the last 100 group changes are each checked by the very next
# request to the access explanation (the gate's answer).
# Usage: bash benches/scim_load.sh [USERS] [GROUPS] [MEMBERS] [CONCURRENCY]
# Needs: a Python with httpx and scim2-server (ATRIUM_BENCH_PYTHON, default .venv/bin/python),
# PostgreSQL at 127.0.0.1:5432 (trust auth) for the second run.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS="${1:-10000}"; NGROUPS="${2:-500}"; MEMBERS="${3:-20}"; CONC="${4:-8}"
PY="${ATRIUM_BENCH_PYTHON:-$PWD/.venv/bin/python}"
cargo build --release --bin atrium 2>&1 | tail -1
BIN=$PWD/target/release/atrium
WORK=$(mktemp -d)
PIDS=()
trap 'kill ${PIDS[@]+"${PIDS[@]}"} 2>/dev/null; rm -rf "$WORK"' EXIT

run_atrium() {  # $1: label, $2: database URL, $3: port
  export ATRIUM_DATABASE_URL="$2" ATRIUM_LOG=warn ATRIUM_PUBLIC_URL="http://127.0.0.1:$3"
  echo 'a-long-password' | $BIN users create --email bench@bench.test --site-admin >/dev/null 2>&1
  local account key ws token
  account=$($BIN accounts create --handle bench --name Bench --owner-email bench@bench.test 2>/dev/null)
  key=$($BIN users api-key --email bench@bench.test --name load 2>/dev/null)
  $BIN accounts set-plan --account bench --plan enterprise --user-limit unlimited >/dev/null
  $BIN serve --bind "127.0.0.1:$3" 2>/dev/null & PIDS+=($!)
  for _ in $(seq 1 100); do curl -sf "127.0.0.1:$3/api/health" >/dev/null && break; sleep 0.1; done
  ws=$(curl -sf -X POST -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    "127.0.0.1:$3/api/accounts/$account/workspaces/" -d '{"name":"prod","handle":"prod"}' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  token=$(curl -sf -X POST -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    "127.0.0.1:$3/api/accounts/$account/scim_tokens" -d '{"name":"load"}' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  echo "== Atrium on $1"
  "$PY" benches/scim_load.py "http://127.0.0.1:$3/scim/v2/$account" "$token" "$USERS" "$NGROUPS" "$MEMBERS" "$CONC" \
    --visibility "http://127.0.0.1:$3" "$key" "$account" "$ws"
}

run_atrium SQLite "sqlite://$WORK/atrium.db" 4611
psql -h 127.0.0.1 -U postgres -qc 'DROP DATABASE IF EXISTS atrium_scim_bench' -c 'CREATE DATABASE atrium_scim_bench' postgres
run_atrium PostgreSQL "postgres://postgres@127.0.0.1:5432/atrium_scim_bench" 4612

echo "== scim2-server (in memory)"
"$(dirname "$PY")/scim2-server" --port 4613 --bearer-token s3cret >/dev/null 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do curl -sf -H 'Authorization: Bearer s3cret' 127.0.0.1:4613/v2/ServiceProviderConfig >/dev/null && break; sleep 0.1; done
"$PY" benches/scim_load.py "http://127.0.0.1:4613/v2" s3cret "$USERS" "$NGROUPS" "$MEMBERS" "$CONC"
