#!/usr/bin/env bash
# The cost of rate limits shared across servers (issue 19): open-loop GETs of one Prefect route to
# a stub upstream (examples/stub_upstream.rs) sent (a) directly, (b) through an Atrium server that
# limits alone (per-process GCRA cell, its share of the budget from the node registry), (c) through
# an Atrium server whose limits are shared through Redis (leases from one GCRA cell per account).
# Both servers run on one PostgreSQL database with the same account; the limit is far above the
# load, so the limiter runs on every call and never refuses. Same machine, same run, same load
# generator, peers interleaved round by round; "added" is a server's p50 (p99) minus direct's in
# the same round, and the summary the median over the rounds.
# Needs PostgreSQL (ATRIUM_BENCH_POSTGRES, default postgres://postgres@127.0.0.1:5432) and Redis
# (ATRIUM_BENCH_REDIS, default redis://127.0.0.1:6379/).
# Usage: [ROUNDS=N] bash benches/scale_out.sh [SECONDS] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-10}"; shift || true
RATES=("${@:-1000}")
PG="${ATRIUM_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
REDIS="${ATRIUM_BENCH_REDIS:-redis://127.0.0.1:6379/}"
cargo build --release --bin atrium --example loadgen --example stub_upstream 2>&1 | tail -1
BIN=target/release/atrium; LOAD=target/release/examples/loadgen; STUB=target/release/examples/stub_upstream
DB="atrium_bench_$$"
psql "$PG/postgres" -qc "CREATE DATABASE $DB"
WORK=$(mktemp -d); export ATRIUM_DATABASE_URL="$PG/$DB" ATRIUM_DATA_DIR="$WORK" ATRIUM_LOG=warn
echo 'a-long-password' | $BIN users create --email bench@bench.test --site-admin 2>/dev/null
ACCOUNT=$($BIN accounts create --handle bench --name Bench --owner-email bench@bench.test 2>/dev/null)
KEY=$($BIN users api-key --email bench@bench.test --name load 2>/dev/null)
$BIN accounts set-plan --account bench --plan enterprise --api-rate-limit 100000000 >/dev/null 2>&1
$STUB 127.0.0.1:4513 & S=$!
ATRIUM_NODE_ID=local $BIN serve --bind 127.0.0.1:4511 2>/dev/null & A=$!
ATRIUM_NODE_ID=shared ATRIUM_REDIS_URL="$REDIS" $BIN serve --bind 127.0.0.1:4512 2>/dev/null & B=$!
trap 'kill $A $B $S 2>/dev/null; sleep 0.5; psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)"; rm -rf "$WORK"' EXIT
for p in 4511 4512; do for _ in $(seq 1 50); do curl -sf 127.0.0.1:$p/api/ready >/dev/null && break; sleep 0.1; done; done
WS=$(curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  "127.0.0.1:4511/api/accounts/$ACCOUNT/workspaces/" -d '{"name":"prod","handle":"prod"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
curl -sf -X PUT -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  "127.0.0.1:4511/api/accounts/$ACCOUNT/workspaces/$WS/upstream" -d '{"url":"http://127.0.0.1:4513/api"}' >/dev/null
FLOW=3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11
ROUTE="api/accounts/$ACCOUNT/workspaces/$WS/flows/$FLOW"
sleep 0.5
for p in 4511 4512; do curl -sf -H "Authorization: Bearer $KEY" "127.0.0.1:$p/$ROUTE" >/dev/null; done
curl -s 127.0.0.1:4512/metrics | grep -E '^atrium_rate_limit_shared|^atrium_nodes_live'
ROUNDS="${ROUNDS:-1}"
median() { sort -g | awk '{v[NR]=$1} END {if (NR) print (v[int((NR+1)/2)]+v[int(NR/2)+1])/2}'; }
field() { sed "s/.*\"$1\":\([0-9]*\).*/\1/"; }
over_direct() { echo $(( $(echo "$2" | field "$1") - $(echo "$d" | field "$1") )); }
list() { echo $1 | tr ' ' ','; }
med() { echo $1 | tr ' ' '\n' | median; }
for rate in "${RATES[@]}"; do
  l50=""; l99=""; s50=""; s99=""
  for round in $(seq 1 "$ROUNDS"); do
    echo "# direct";            d=$($LOAD "http://127.0.0.1:4513/api/flows/$FLOW" "$rate" "$SECONDS_EACH"); echo "$d"
    echo "# per-server limits"; a=$($LOAD "http://127.0.0.1:4511/$ROUTE" "$rate" "$SECONDS_EACH" "$KEY"); echo "$a"
    echo "# shared (Redis)";    b=$($LOAD "http://127.0.0.1:4512/$ROUTE" "$rate" "$SECONDS_EACH" "$KEY"); echo "$b"
    l50="$l50 $(over_direct p50_us "$a")"; l99="$l99 $(over_direct p99_us "$a")"
    s50="$s50 $(over_direct p50_us "$b")"; s99="$s99 $(over_direct p99_us "$b")"
  done
  echo "{\"rate\":$rate,\"per_server_added_p50_us\":[$(list "$l50")],\"median\":$(med "$l50"),\"per_server_added_p99_us\":[$(list "$l99")],\"median99\":$(med "$l99")}"
  echo "{\"rate\":$rate,\"shared_added_p50_us\":[$(list "$s50")],\"median\":$(med "$s50"),\"shared_added_p99_us\":[$(list "$s99")],\"median99\":$(med "$s99")}"
done
curl -s 127.0.0.1:4512/metrics | grep -E '^atrium_rate_limit_(shared|fallback_total)'
