#!/usr/bin/env bash
# The Prefect UI through Atrium (issue 21) against the same UI straight from the Prefect server, in
# headless Chromium: first load in an empty browser cache, and a reload (revalidation), timed until
# the UI has rendered. One Prefect server (its UI at PREFECT_UI_SERVE_BASE=/atrium-prefect-ui, an
# API auth string), Atrium (release build) in front of it, same machine, same run, interleaved.
# Needs the `prefect` package (ATRIUM_BENCH_PREFECT, default .venv/bin/prefect) and Chromium
# (ATRIUM_BENCH_CHROMIUM, default chromium).
# Usage: bash benches/prefect_ui.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-10}"
PREFECT="${ATRIUM_BENCH_PREFECT:-.venv/bin/prefect}"
CHROMIUM="${ATRIUM_BENCH_CHROMIUM:-$(command -v chromium)}"
PY="$(dirname "$PREFECT")/python"
cargo build --release --bin atrium 2>&1 | tail -1
BIN=target/release/atrium
WORK=$(mktemp -d); export ATRIUM_DATABASE_URL="sqlite://$WORK/atrium.db" ATRIUM_DATA_DIR="$WORK" ATRIUM_LOG=warn
export ATRIUM_UPSTREAM_NETWORKS=127.0.0.0/8 ATRIUM_PUBLIC_URL=http://127.0.0.1:4541
PREFECT_HOME="$WORK/prefect" PREFECT_SERVER_API_AUTH_STRING=bench-secret DO_NOT_TRACK=1 \
  PREFECT_UI_SERVE_BASE=/atrium-prefect-ui PREFECT_UI_API_URL=http://127.0.0.1:4540/api \
  "$PREFECT" server start --host 127.0.0.1 --port 4540 --analytics-off >/dev/null 2>&1 & P=$!
echo 'a-long-password' | $BIN users create --email owner@bench.test --site-admin >/dev/null 2>&1
ACCOUNT=$($BIN accounts create --handle bench --name Bench --owner-email owner@bench.test 2>/dev/null)
OWNER=$($BIN users api-key --email owner@bench.test --name bench 2>/dev/null)
$BIN serve --bind 127.0.0.1:4541 2>/dev/null & A=$!
trap 'kill $A $P 2>/dev/null; sleep 1; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do curl -sf 127.0.0.1:4541/api/ready >/dev/null && curl -sf -u :bench-secret 127.0.0.1:4540/api/health >/dev/null && break; sleep 0.2; done
WS=$(curl -sf -X POST -H "Authorization: Bearer $OWNER" -H 'Content-Type: application/json' \
  "127.0.0.1:4541/api/accounts/$ACCOUNT/workspaces/" -d '{"name":"prod","handle":"prod"}' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X PUT -H "Authorization: Bearer $OWNER" -H 'Content-Type: application/json' \
  "127.0.0.1:4541/api/accounts/$ACCOUNT/workspaces/$WS/upstream" \
  -d '{"url":"http://127.0.0.1:4540/api","auth_string":"bench-secret"}' >/dev/null
# A flow run, so that the UI's dashboard has something to draw.
GW="127.0.0.1:4541/api/accounts/$ACCOUNT/workspaces/$WS"
FLOW=$(curl -sf -X POST -H "Authorization: Bearer $OWNER" -H 'Content-Type: application/json' \
  "$GW/flows/" -d '{"name":"bench-flow"}' | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
curl -sf -X POST -H "Authorization: Bearer $OWNER" -H 'Content-Type: application/json' \
  "$GW/flow_runs/" -d "{\"flow_id\":\"$FLOW\",\"state\":{\"type\":\"COMPLETED\"}}" >/dev/null
# A session, signed in through the sign-in form as a browser would.
COOKIE=$("$PY" - <<'PY'
import re, urllib.request, urllib.parse, http.cookiejar
jar = http.cookiejar.CookieJar()
class Stay(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k): return None
op = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), Stay)
form = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', op.open("http://127.0.0.1:4541/login").read().decode()))
form.update(email="owner@bench.test", password="a-long-password")
try:
    op.open("http://127.0.0.1:4541/login", urllib.parse.urlencode(form).encode())
except urllib.error.HTTPError:
    pass
print(next(f"{c.name}={c.value}" for c in jar if c.name == "atrium_session"))
PY
)
"$PY" benches/prefect_ui.py "$CHROMIUM" "http://127.0.0.1:4540/atrium-prefect-ui/" \
  "http://127.0.0.1:4541/account/$ACCOUNT/workspace/$WS/ui/" "$COOKIE" bench-secret "$RUNS"
