"""The Prefect UI's load time in headless Chromium: directly from the Prefect server, and through
Atrium (benches/prefect_ui.sh starts both). Driven over the DevTools protocol.

For each peer, RUNS times, interleaved: a first load in a fresh browser context (empty cache), then
a reload in the same context (the browser revalidates what it has), for both of Prefect 3's UIs (v1 at
the base, v2 below it). Timed from the navigation until the UI has rendered its navigation; the bytes
transferred come from the Resource Timing API.

Usage: prefect_ui.py CHROMIUM DIRECT_URL ATRIUM_URL SESSION_COOKIE AUTH_STRING RUNS
"""

import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from websockets.asyncio.client import connect

CHROMIUM, DIRECT, ATRIUM, COOKIE, AUTH, RUNS = sys.argv[1:7]
RUNS = int(RUNS)
RENDERED = "document.body !== null && document.body.innerText.includes('Work Pools')"
BYTES = "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource')).reduce((n, e) => n + (e.transferSize || 0), 0)"


class Cdp:
    def __init__(self, ws):
        self.ws, self.n, self.waiting = ws, 0, {}

    async def pump(self):
        async for m in self.ws:
            v = json.loads(m)
            if "id" in v and v["id"] in self.waiting:
                self.waiting.pop(v["id"]).set_result(v)

    async def call(self, method, session=None, **params):
        self.n += 1
        msg = {"id": self.n, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        f = asyncio.get_running_loop().create_future()
        self.waiting[self.n] = f
        await self.ws.send(json.dumps(msg))
        v = await f
        if "error" in v:
            raise RuntimeError(f"{method}: {v['error']}")
        return v["result"]

    async def eval(self, session, js):
        r = await self.call("Runtime.evaluate", session, expression=js, returnByValue=True)
        return r["result"].get("value")


async def load(cdp, session, url):
    """Navigates (or reloads when url is None) and waits until the UI has rendered: seconds."""
    start = time.perf_counter()
    if url:
        await cdp.call("Page.navigate", session, url=url)
    else:
        await cdp.call("Page.reload", session)
    await asyncio.sleep(0.02)
    while True:
        try:
            ready = await cdp.eval(session, f"document.readyState === 'complete' && {RENDERED}")
        except RuntimeError:
            ready = False
        if ready:
            return time.perf_counter() - start
        if time.perf_counter() - start > 60:
            seen = await cdp.eval(session, "location.href + ' ' + (document.body ? document.body.innerText.slice(0, 300) : '')")
            raise RuntimeError(f"the UI did not render: {url}: {seen}")
        await asyncio.sleep(0.005)


async def one(cdp, peer, url):
    ctx = (await cdp.call("Target.createBrowserContext"))["browserContextId"]
    target = (await cdp.call("Target.createTarget", url="about:blank", browserContextId=ctx))["targetId"]
    session = (await cdp.call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
    await cdp.call("Page.enable", session)
    await cdp.call("Network.enable", session)
    # Prefect (and Atrium, keeping its rule) sends a visit of the first UI's start page to the
    # preferred one; say which.
    version = "v2" if url.rstrip("/").endswith("/v2") else "v1"
    await cdp.call("Network.setCookie", session, name="prefect_ui_version", value=version, url=url)
    if peer == "atrium":
        name, value = COOKIE.split("=", 1)
        await cdp.call("Network.setCookie", session, name=name, value=value, url=ATRIUM)
    else:
        # Prefect's UI asks for the API's auth string; give it as a user would have typed it.
        origin = DIRECT.split("/atrium-prefect-ui")[0]
        await cdp.call("Page.navigate", session, url=origin + "/api/health")
        await asyncio.sleep(0.3)
        token = base64.b64encode(AUTH.encode()).decode()
        await cdp.eval(session, f"localStorage.setItem('prefect-password', '{token}')")
    first = await load(cdp, session, url)
    first_bytes = await cdp.eval(session, BYTES)
    reload = await load(cdp, session, None)
    reload_bytes = await cdp.eval(session, BYTES)
    await cdp.call("Target.disposeBrowserContext", browserContextId=ctx)
    return first, reload, first_bytes, reload_bytes


async def main():
    profile = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--remote-debugging-port=9333", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                info = json.load(urllib.request.urlopen("http://127.0.0.1:9333/json/version"))
                break
            except OSError:
                time.sleep(0.1)
        async with connect(info["webSocketDebuggerUrl"], max_size=None) as ws:
            cdp = Cdp(ws)
            pump = asyncio.create_task(cdp.pump())
            peers = [
                (bundle, peer, url + ("v2/" if bundle == "v2" else ""))
                for bundle in ("v1", "v2")
                for peer, url in (("direct", DIRECT), ("atrium", ATRIUM))
            ]
            results = {(b, p): [] for b, p, _ in peers}
            # One warm-up of each (Atrium's server-side cache fills, Prefect's static files are read).
            for _, peer, url in peers:
                await one(cdp, peer, url)
            for _ in range(RUNS):
                for bundle, peer, url in peers:
                    results[(bundle, peer)].append(await one(cdp, peer, url))
            pump.cancel()
        med = {k: [statistics.median(r[i] for r in rs) for i in range(4)] for k, rs in results.items()}
        print(f"{'':28}{'first load':>14}{'reload':>12}{'first bytes':>14}{'reload bytes':>14}")
        for bundle in ("v1", "v2"):
            for p in ("direct", "atrium"):
                f, r, fb, rb = med[(bundle, p)]
                name = f"{bundle}, " + ("Prefect directly" if p == "direct" else "through Atrium")
                print(f"{name:28}{f * 1000:>11.0f} ms{r * 1000:>9.0f} ms{fb / 1024:>11.0f} KiB{rb / 1024:>11.0f} KiB")
            d, a = med[(bundle, "direct")], med[(bundle, "atrium")]
            print(f"{bundle + ', Atrium / direct':28}{a[0] / d[0]:>13.2f}x{a[1] / d[1]:>11.2f}x")
        print(f"(medians of {RUNS} runs each, interleaved, after one warm-up of each)")
    finally:
        proc.kill()


asyncio.run(main())
