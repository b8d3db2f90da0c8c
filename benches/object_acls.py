"""Driver of benches/object_acls.sh: sets up the workspace, its 200 deployments and their ACLs,
then times the filter and the count directly and through Atrium (see the shell script)."""
import base64, json, statistics, sys, time
import httpx

atrium, account, owner, dev, direct, auth, calls = sys.argv[1:8]
calls = int(calls)
H = lambda k: {"Authorization": f"Bearer {k}"}
class Retrying(httpx.Client):
    """Retries 503s as the prefect client does (a Prefect server on SQLite answers 503 while its
    database is locked)."""

    def request(self, *a, **kw):
        for _ in range(10):
            r = super().request(*a, **kw)
            if r.status_code not in (502, 503):
                return r
            time.sleep(0.3)
        return r


c = Retrying(timeout=60)
ws = c.post(f"{atrium}/api/accounts/{account}/workspaces/", headers=H(owner),
            json={"name": "prod", "handle": "prod"}).json()["id"]
base = f"{atrium}/api/accounts/{account}/workspaces/{ws}"
r = c.put(f"{base}/upstream", headers=H(owner), json={"url": direct, "auth_string": auth})
r.raise_for_status()
members = c.post(f"{atrium}/api/accounts/{account}/account_memberships/filter", headers=H(owner), json={}).json()
dev_member = next(m for m in members if m["email"] == "dev@bench.test")
c.post(f"{base}/user_access/", headers=H(owner), json=[
    {"user_id": dev_member["user_id"], "workspace_role_id": "00000000-0000-4000-8000-000000000102"}
]).raise_for_status()
flow = c.post(f"{base}/flows/", headers=H(owner), json={"name": "bench-flow"}).json()["id"]
for p in ("open", "locked"):
    c.post(f"{base}/work_pools/", headers=H(owner), json={"name": p, "type": "process"})
ids = []
for i in range(200):
    d = c.post(f"{base}/deployments/", headers=H(owner), json={
        "name": f"d{i:03}", "flow_id": flow, "work_pool_name": "locked" if i % 2 else "open"}).json()
    assert "id" in d, d
    ids.append(d["id"])
acl = {"access_control": {"manage_actor_ids": [], "run_actor_ids": [], "view_actor_ids": []}}
c.put(f"{base}/work_pools/locked/access", headers=H(owner), json=acl).raise_for_status()
for d in ids[0:40:2]:
    c.put(f"{base}/deployments/{d}/access", headers=H(owner), json=acl).raise_for_status()
basic = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}
body = {"limit": 200}
peers = {
    "direct": (direct, basic),
    "atrium_owner": (base, H(owner)),
    "atrium_restricted": (base, H(dev)),
}
for route in ("deployments/filter", "deployments/count"):
    times = {p: [] for p in peers}
    seen = {}
    for _ in range(calls):
        for p, (url, h) in peers.items():
            t0 = time.perf_counter()
            r = c.post(f"{url}/{route}", headers=h, json=body)
            times[p].append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            v = r.json()
            seen[p] = len(v) if isinstance(v, list) else v
    out = {"route": route, "calls": calls, "results": seen}
    for p, ts in times.items():
        ts.sort()
        out[p] = {"p50_ms": round(statistics.median(ts), 2), "p99_ms": round(ts[int(len(ts) * 0.99) - 1], 2)}
    out["restricted_over_direct_p50"] = round(out["atrium_restricted"]["p50_ms"] / out["direct"]["p50_ms"], 2)
    out["owner_over_direct_p50"] = round(out["atrium_owner"]["p50_ms"] / out["direct"]["p50_ms"], 2)
    print(json.dumps(out))
