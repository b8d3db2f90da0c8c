#!/usr/bin/env bash
# Gateway overhead and peak throughput: open-loop GETs of one Prefect route (GET /flows/{id}) to a
# stub upstream (examples/stub_upstream.rs, a bare hyper server), sent (a) directly, (b) through
# Atrium's workspace gateway (API-key auth, route table, permission index, rate limit, streaming
# forward over a keep-alive pool), (c) through Debian's nginx with proxy_pass and an upstream
# keep-alive pool (no auth), and for the latency floor (d) through socat, a byte relay that does no
# HTTP at all: what two extra loopback hops cost on this machine by themselves. Same machine, same
# run, same load generator; loopback only.
# With PEAK_CONNECTIONS, also closed-loop peak throughput (wrk) and the serving process's CPU time
# per request.
# With ROUNDS=N (default 1), every measurement is repeated N times, the peers interleaved round by
# round (direct, Atrium, nginx[, socat], then again), and a summary line per connection count and
# per rate gives the median over the rounds: this VM's speed drifts by tens of percent from minute
# to minute, so peers measured minutes apart are not comparable, while peers measured seconds apart
# in many rounds are.
# Usage: [ROUNDS=N] [PEAK_CONNECTIONS="16 64 256"] bash benches/gateway_load.sh [SECONDS] [RATES...]
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-10}"; shift || true
RATES=("${@:-1000 4000 8000}")
RATES=(${RATES[@]})
command -v nginx >/dev/null || { echo "nginx is needed: apt-get install nginx" >&2; exit 1; }
command -v socat >/dev/null || { echo "socat is needed: apt-get install socat" >&2; exit 1; }
cargo build --release --bin atrium --example loadgen --example stub_upstream 2>&1 | tail -1
BIN=target/release/atrium; LOAD=target/release/examples/loadgen; STUB=target/release/examples/stub_upstream
WORK=$(mktemp -d); export ATRIUM_DATABASE_URL="sqlite://$WORK/atrium.db" ATRIUM_DATA_DIR="$WORK" ATRIUM_LOG=warn
echo 'a-long-password' | $BIN users create --email bench@bench.test --site-admin 2>/dev/null
ACCOUNT=$($BIN accounts create --handle bench --name Bench --owner-email bench@bench.test 2>/dev/null)
KEY=$($BIN users api-key --email bench@bench.test --name load 2>/dev/null)
# A limit far above the offered load: the limiter runs on every call but never refuses.
$BIN accounts set-plan --account bench --plan enterprise --api-rate-limit 1000000000 >/dev/null 2>&1
cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 8192; }
http {
  access_log off;
  upstream stub { server 127.0.0.1:4503; keepalive 256; }
  server {
    listen 127.0.0.1:4504;
    location /api/accounts/ {
      rewrite ^/api/accounts/[^/]+/workspaces/[^/]+/(.*)\$ /api/\$1 break;
      proxy_pass http://stub;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
$STUB 127.0.0.1:4503 & S=$!
$BIN serve --bind 127.0.0.1:4501 2>/dev/null & A=$!
nginx -p "$WORK" -c "$WORK/nginx.conf"
socat TCP-LISTEN:4505,fork,reuseaddr,nodelay,backlog=1024 TCP:127.0.0.1:4503,nodelay & R=$!
trap 'kill $A $S $R 2>/dev/null; kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 50); do curl -sf 127.0.0.1:4501/api/health >/dev/null && break; sleep 0.1; done
WS=$(curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  "127.0.0.1:4501/api/accounts/$ACCOUNT/workspaces/" -d '{"name":"prod","handle":"prod"}' | sed 's/.*"id":"\([^"]*\)".*/\1/')
curl -sf -X PUT -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  "127.0.0.1:4501/api/accounts/$ACCOUNT/workspaces/$WS/upstream" -d '{"url":"http://127.0.0.1:4503/api"}' >/dev/null
FLOW=3c5c1f36-8d0a-4c56-9f55-8f3c3b2a1d11
ROUTE="api/accounts/$ACCOUNT/workspaces/$WS/flows/$FLOW"
curl -sf -H "Authorization: Bearer $KEY" "127.0.0.1:4501/$ROUTE" >/dev/null
curl -sf "127.0.0.1:4504/$ROUTE" >/dev/null
ROUNDS="${ROUNDS:-1}"
# The median of the numbers given (one per line).
median() { sort -g | awk '{v[NR]=$1} END {if (NR) print (v[int((NR+1)/2)]+v[int(NR/2)+1])/2}'; }
# Peak throughput (closed loop, PEAK_CONNECTIONS="16 64 256"): wrk keeps that many connections
# busy back to back for SECONDS and counts what comes back (apt-get install wrk).
if [ -n "${PEAK_CONNECTIONS:-}" ]; then
  command -v wrk >/dev/null || { echo "wrk is needed for PEAK_CONNECTIONS: apt-get install wrk" >&2; exit 1; }
  # CPU time (user + system, clock ticks) of the serving processes, to report CPU per request.
  ticks() { local t=0 p s; for p in "$@"; do s=($(cut -d' ' -f14,15 "/proc/$p/stat")); t=$((t + s[0] + s[1])); done; echo $t; }
  NGINX_WORKERS=$(pgrep -f "nginx: worker" | tr '\n' ' ')
  for c in $PEAK_CONNECTIONS; do
    ratios=""
    for round in $(seq 1 "$ROUNDS"); do
      for target in direct atrium nginx; do
        case $target in
          direct) url="http://127.0.0.1:4503/api/flows/$FLOW"; auth=(); pids="$S" ;;
          atrium) url="http://127.0.0.1:4501/$ROUTE"; auth=(-H "Authorization: Bearer $KEY"); pids="$A" ;;
          nginx)  url="http://127.0.0.1:4504/$ROUTE"; auth=(); pids="$NGINX_WORKERS" ;;
        esac
        before=$(ticks $pids)
        out=$(wrk -t1 -c"$c" -d"${SECONDS_EACH}s" --latency "${auth[@]}" "$url")
        cpu=$(( $(ticks $pids) - before ))
        rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
        p50=$(echo "$out" | awk '$1=="50%" {print $2}'); p99=$(echo "$out" | awk '$1=="99%" {print $2}')
        non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}'); errs=$(echo "$out" | awk '/Socket errors/ {print $0}')
        total=$(echo "$out" | awk '/requests in/ {print $1}')
        # Only the serving process (the stub for direct, Atrium or the nginx workers) is counted.
        cpu_us=$(awk -v t="$cpu" -v n="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
        echo "{\"peak\":\"$target\",\"round\":$round,\"connections\":$c,\"requests_per_s\":$rps,\"p50\":\"$p50\",\"p99\":\"$p99\",\"cpu_us_per_request\":$cpu_us,\"non_2xx\":\"${non2xx:-0}\",\"socket_errors\":\"${errs:-none}\"}"
        case $target in atrium) a_rps=$rps ;; nginx) ratios="$ratios $(awk -v a="$a_rps" -v n="$rps" 'BEGIN { printf "%.3f", a / n }')" ;; esac
      done
    done
    echo "{\"peak_summary\":$c,\"atrium_over_nginx\":[$(echo $ratios | tr ' ' ',')],\"median\":$(echo $ratios | tr ' ' '\n' | median)}"
  done
fi
# Open loop at fixed rates; "added" is a proxy's p50 (p99) minus direct's p50 (p99) in the same
# round.
field() { sed "s/.*\"$1\":\([0-9]*\).*/\1/"; }
# FIELD of loadgen line $2 minus the same FIELD of direct's line ($d) in this round.
over_direct() { echo $(( $(echo "$2" | field "$1") - $(echo "$d" | field "$1") )); }
list() { echo $1 | tr ' ' ','; }
med() { echo $1 | tr ' ' '\n' | median; }
for rate in "${RATES[@]}"; do
  added_atrium=""; added_nginx=""; added_relay=""; added99_atrium=""; added99_nginx=""
  for round in $(seq 1 "$ROUNDS"); do
    echo "# direct";  d=$($LOAD "http://127.0.0.1:4503/api/flows/$FLOW" "$rate" "$SECONDS_EACH"); echo "$d"
    echo "# atrium";  a=$($LOAD "http://127.0.0.1:4501/$ROUTE" "$rate" "$SECONDS_EACH" "$KEY"); echo "$a"
    echo "# nginx";   n=$($LOAD "http://127.0.0.1:4504/$ROUTE" "$rate" "$SECONDS_EACH"); echo "$n"
    echo "# relay";   r=$($LOAD "http://127.0.0.1:4505/api/flows/$FLOW" "$rate" "$SECONDS_EACH"); echo "$r"
    added_atrium="$added_atrium $(over_direct p50_us "$a")"
    added_nginx="$added_nginx $(over_direct p50_us "$n")"
    added_relay="$added_relay $(over_direct p50_us "$r")"
    added99_atrium="$added99_atrium $(over_direct p99_us "$a")"
    added99_nginx="$added99_nginx $(over_direct p99_us "$n")"
  done
  echo "{\"added_p50_us_summary\":$rate,\"atrium\":[$(list "$added_atrium")],\"atrium_median\":$(med "$added_atrium"),\"nginx\":[$(list "$added_nginx")],\"nginx_median\":$(med "$added_nginx"),\"socat\":[$(list "$added_relay")],\"socat_median\":$(med "$added_relay")}"
  echo "{\"added_p99_us_summary\":$rate,\"atrium\":[$(list "$added99_atrium")],\"atrium_median\":$(med "$added99_atrium"),\"nginx\":[$(list "$added99_nginx")],\"nginx_median\":$(med "$added99_nginx")}"
done
