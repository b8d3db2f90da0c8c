"""Runs the SCIM conformance checkers against a SCIM base URL and prints one JSON summary:
scim2-tester (every check it derives from the server's /Schemas) and the scim-sanity probe.

usage: conformance.py BASE_URL TOKEN
"""
import json
import os
import subprocess
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

url, token = sys.argv[1], sys.argv[2]
client = SyncSCIMClient(
    httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
)
client.discover()
results = check_server(client)
tester = {
    "total": len(results),
    "success": sum(1 for r in results if r.status == Status.SUCCESS),
    "skipped": [f"{r.resource_type or ''} {r.title}: {r.reason}" for r in results if r.status == Status.SKIPPED],
    "failed": [
        f"{r.resource_type or ''} {r.title}: {r.reason}"
        for r in results
        if r.status not in (Status.SUCCESS, Status.SKIPPED)
    ],
}

sanity_bin = os.path.join(os.path.dirname(sys.executable), "scim-sanity")
probe = subprocess.run(
    [sanity_bin, "probe", url, "--token", token, "--i-accept-side-effects", "--json-output"],
    capture_output=True,
    text=True,
    timeout=120,
)
try:
    sanity = json.loads(probe.stdout)
except json.JSONDecodeError:
    sanity = {"failed": -1, "output": probe.stdout[-2000:], "stderr": probe.stderr[-2000:]}

print(json.dumps({"tester": tester, "sanity": sanity}))
