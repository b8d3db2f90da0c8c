"""Provisions users and groups through a SCIM 2.0 endpoint as an IdP would, and reports the rates.

usage: scim_load.py BASE_URL TOKEN [USERS] [GROUPS] [MEMBERS_PER_GROUP] [CONCURRENCY]
       [--visibility API_BASE API_KEY ACCOUNT WORKSPACE]

Prints one JSON line: users/s, groups/s, and with --visibility, for the last 100 changes (a user
added to a group that holds a role in WORKSPACE), whether the very next request to Atrium's
access explanation saw the change, and the time from the SCIM answer to that confirmation.
"""
import asyncio
import json
import sys
import time

import httpx

args = [a for a in sys.argv[1:] if not a.startswith("--")]
vis = None
if "--visibility" in sys.argv:
    i = sys.argv.index("--visibility")
    vis = sys.argv[i + 1 : i + 5]
    args = sys.argv[1:i]
base, token = args[0], args[1]
users_n = int(args[2]) if len(args) > 2 else 10_000
groups_n = int(args[3]) if len(args) > 3 else 500
per_group = int(args[4]) if len(args) > 4 else 20
concurrency = int(args[5]) if len(args) > 5 else 8
H = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


async def run():
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=H, timeout=60, limits=limits) as c:
        sem = asyncio.Semaphore(concurrency)
        ids = [None] * users_n

        async def make_user(i):
            async with sem:
                email = f"user{i}@load.test"
                r = await c.post("/Users", json={
                    "schemas": [USER], "userName": email, "externalId": f"ext-{i}",
                    "name": {"givenName": "User", "familyName": str(i)},
                    "emails": [{"value": email, "type": "work", "primary": True}], "active": True,
                })
                if r.status_code != 201:
                    raise SystemExit(f"POST /Users {i}: {r.status_code} {r.text[:300]}")
                ids[i] = r.json()["id"]

        t0 = time.perf_counter()
        await asyncio.gather(*(make_user(i) for i in range(users_n)))
        t_users = time.perf_counter() - t0

        gids = [None] * groups_n

        async def make_group(g):
            async with sem:
                members = [{"value": ids[(g * per_group + k) % users_n]} for k in range(per_group)]
                r = await c.post("/Groups", json={"schemas": [GROUP], "displayName": f"group-{g}", "members": members})
                if r.status_code != 201:
                    raise SystemExit(f"POST /Groups {g}: {r.status_code} {r.text[:300]}")
                gids[g] = r.json()["id"]

        t0 = time.perf_counter()
        await asyncio.gather(*(make_group(g) for g in range(groups_n)))
        t_groups = time.perf_counter() - t0
        out = {
            "users": users_n, "users_seconds": round(t_users, 2), "users_per_second": round(users_n / t_users, 1),
            "groups": groups_n, "members_per_group": per_group, "groups_seconds": round(t_groups, 2),
            "groups_per_second": round(groups_n / t_groups, 1),
        }
        if vis:
            api, key, account, ws = vis
            async with httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30) as a:
                # The last group gets a role in the workspace; then users outside it join it one by
                # one, and each time the very next request asks the gate whether they may see flows.
                r = await a.put(f"/api/accounts/{account}/workspaces/{ws}/team_access/",
                                json=[{"team_id": gids[-1], "workspace_role_id": "00000000-0000-4000-8000-000000000104"}])
                if r.status_code != 200:
                    raise SystemExit(f"team access: {r.status_code} {r.text[:300]}")
                seen_at_once, waits = 0, []
                for k in range(100):
                    who = ids[(k * 7 + 1) % (users_n // 2)]
                    r = await c.patch(f"/Groups/{gids[-1]}", json={"schemas": [PATCH], "Operations": [
                        {"op": "add", "path": "members", "value": [{"value": who}]}]})
                    if r.status_code != 200:
                        raise SystemExit(f"PATCH group: {r.status_code} {r.text[:300]}")
                    t0 = time.perf_counter()
                    tries = 0
                    while True:
                        tries += 1
                        e = await a.get(f"/api/accounts/{account}/workspaces/{ws}/explain",
                                        params={"actor_id": who, "scope": "see_flows"})
                        if e.status_code == 200 and e.json().get("granted"):
                            break
                        if tries > 1000:
                            raise SystemExit(f"never visible: {e.status_code} {e.text[:300]}")
                    waits.append(time.perf_counter() - t0)
                    seen_at_once += tries == 1
                waits.sort()
                out.update({"visible_at_the_next_request": f"{seen_at_once}/100",
                            "confirm_ms_p50": round(waits[50] * 1000, 2), "confirm_ms_max": round(waits[-1] * 1000, 2)})
        print(json.dumps(out))


asyncio.run(run())
