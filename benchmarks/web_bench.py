"""The dashboard's fleet overview at 10,000 nodes, in headless Chromium (Debian's /usr/bin/chromium).

A SQLite fleet store of N nodes (racks of 40, vendors, models, serials, persona tags) and serve's real health
engine fed one in-band batch per node (1 % with an Xid 79, so the picture has red in it); serve (create_app +
uvicorn) in a thread on 127.0.0.1. Then, in the browser, repeatedly:

* ``overview``: the dashboard's ``/`` — the compact ``GET /api/v1/overview`` (column arrays, orjson, 1 s cache);
* ``naive`` (the peer): the same page and the same drawing code, fed by ``GET /api/v1/nodes`` (one pydantic model
  per node with every reason) converted to the same columns in the page.

The figure is measured in the page: navigation start (``performance.now()``'s origin) to the frame after every
cell was laid out (``window.RF_DRAWN_MS``). ``--cold`` loads wait out the overview's 1 s cache first, so each
load rebuilds the answer. Also timed: the two endpoints alone (HTTP round trip from Python).

    python -m benchmarks web_bench [--nodes 10000] [--loads 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
TOKEN = "web-bench-token"
VENDORS = (("Dell Inc.", "PowerEdge XE9680"), ("Supermicro", "SYS-821GE-TNHR"), ("NVIDIA", "DGX H100"),
           ("HPE", "ProLiant XL675d Gen10 Plus"), ("Lenovo", "ThinkSystem SR675 V3"))
PERSONAS = ("training", "inference", "storage")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def build_store(db: Path, nodes: int) -> Any:
    from cryptography.fernet import Fernet
    from sqlalchemy import update

    from redfleet.model.fleetfile import Credential, FleetFile, FleetNode
    from redfleet.store import FleetStore, KeyRing
    from redfleet.store.models import Node

    store = FleetStore(f"sqlite:///{db}", keyring=KeyRing.from_key(Fernet.generate_key().decode()), actor="bench")
    ff = FleetFile(credentials={"c": Credential(username="root", password="x")}, nodes=[
        FleetNode(name=f"gpu-{i:05d}", bmc_url=f"https://10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                  credential="c", rack=f"r{i // 40:03d}", position=i % 40 + 1,
                  tags=[f"persona:{PERSONAS[i % 3]}", "zone-a" if i % 2 else "zone-b"])
        for i in range(nodes)])
    store.import_fleet(ff)

    def fill(session: Any) -> None:
        for i in range(nodes):
            vendor, model = VENDORS[i % len(VENDORS)]
            session.execute(update(Node).where(Node.name == f"gpu-{i:05d}")
                            .values(vendor=vendor, model=model, serial=f"SN{i:08d}"))

    store.transaction(fill)
    return store


def feed(hub: Any, nodes: int) -> None:
    """One batch per node through serve's own ingest path; every 100th node reports an Xid 79."""
    from redfleet.model.ingest import InbandEvent, IngestBatch, Sample

    now = time.time()
    for i in range(nodes):
        name = f"gpu-{i:05d}"
        events = [InbandEvent(ts=now, gpu=0, code=79, message="GPU has fallen off the bus")] if i % 100 == 7 else []
        hub.ingest(IngestBatch(node=name, sent_at=now, source="sim", samples=[
            Sample(metric="DCGM_FI_DEV_GPU_TEMP", value=55.0 + i % 20, ts=now, gpu=g) for g in range(8)],
            events=events), now=now)


class Server:
    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        end = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > end or not self.thread.is_alive():
                raise RuntimeError("serve did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)


NAIVE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/static/app.css">
<script>
// The peer: the whole node list (GET /api/v1/nodes), reshaped in the page into the overview's columns.
window.RF_OVERVIEW = fetch("/api/v1/nodes", {credentials: "same-origin"}).then(r => r.json()).then(list => {
  const cols = {names: [], rack: [], position: [], vendor: [], model: [], serial: [], state: [], action: [],
                tags: [], lifecycle: []};
  const counts = {healthy: 0, degraded: 0, unhealthy: 0, unknown: 0};
  for (const n of list) {
    cols.names.push(n.name); cols.rack.push(n.rack); cols.position.push(n.position); cols.vendor.push(n.vendor);
    cols.model.push(n.model); cols.serial.push(null); cols.state.push(n.health.state);
    cols.action.push(n.health.action); cols.tags.push(n.tags); cols.lifecycle.push(n.lifecycle);
    counts[n.health.state]++;
  }
  return new Response(JSON.stringify({...cols, count: list.length, counts, breaker: null, paused: null}));
});
</script></head><body data-can-act="no">{body}<script src="/static/app.js"></script>
<script src="/static/overview.js"></script></body></html>"""


def naive_route(app: Any) -> None:
    """``/bench/naive``: the overview page's body, the same drawing code, the naive data source."""
    from fastapi.responses import HTMLResponse

    from redfleet.web.pages import _env

    html = _env.get_template("overview.html").render(who=None, can_act=False, path="/")
    body = html[html.index("<main>"):html.index("</main>") + len("</main>")]

    @app.get("/bench/naive", include_in_schema=False)
    async def naive() -> HTMLResponse:
        return HTMLResponse(NAIVE_PAGE.replace("{body}", body))


def get_ms(url: str, path: str) -> tuple[float, int]:
    req = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read()
    return (time.perf_counter() - t0) * 1000, len(body)


def load_ms(page: Any, url: str) -> float:
    page.goto(url, wait_until="commit")
    page.wait_for_function("window.RF_DRAWN_MS !== undefined", timeout=60_000)
    drawn = int(page.evaluate("document.body.dataset.drawn"))
    cells = int(page.evaluate("document.querySelectorAll('a.c').length"))
    if cells != drawn or cells == 0:
        raise RuntimeError(f"{url}: {cells} cells drawn for {drawn} nodes")
    return float(page.evaluate("window.RF_DRAWN_MS"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="web_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--loads", type=int, default=7, help="page loads per variant (median reported)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    from redfleet.api.app import create_app

    with tempfile.TemporaryDirectory(prefix="web-bench-") as tmp:
        t0 = time.monotonic()
        store = build_store(Path(tmp) / "fleet.db", args.nodes)
        app = create_app(store, dev_token=TOKEN, evaluate_interval=0.25)
        feed(app.state.hub, args.nodes)
        naive_route(app)
        port = free_port("127.0.0.1")
        url = f"http://127.0.0.1:{port}"
        print(f"store of {args.nodes} nodes and their health in {time.monotonic() - t0:.1f} s", flush=True)
        out: dict[str, Any] = {"nodes": args.nodes}
        with Server(app, port), sync_playwright() as p:
            time.sleep(1.0)  # the evaluator's first ticks: every node judged
            st = json.loads(urllib.request.urlopen(urllib.request.Request(
                url + "/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}), timeout=30).read())
            print(f"health: {st['health']}")
            # endpoints alone: overview uncached (wait out its 1 s cache) and cached; the full node list
            ov_cold, ov_warm, nodes_ms = [], [], []
            for _ in range(5):
                time.sleep(1.1)
                ms, ov_bytes = get_ms(url, "/api/v1/overview")
                ov_cold.append(ms)
                ov_warm.append(get_ms(url, "/api/v1/overview")[0])
                ms, nodes_bytes = get_ms(url, "/api/v1/nodes")
                nodes_ms.append(ms)
            out["endpoint_ms"] = {"overview_uncached": round(statistics.median(ov_cold), 1),
                                  "overview_cached": round(statistics.median(ov_warm), 1),
                                  "nodes": round(statistics.median(nodes_ms), 1),
                                  "overview_bytes": ov_bytes, "nodes_bytes": nodes_bytes}
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            ctx = browser.new_context(viewport={"width": 1366, "height": 850})
            page = ctx.new_page()
            page.goto(f"{url}/?token={TOKEN}")  # log in once (the cookie)
            page.wait_for_function("window.RF_DRAWN_MS !== undefined", timeout=60_000)
            for name, path, cold in (("overview_cold", "/", True), ("overview_warm", "/", False),
                                     ("naive_nodes", "/bench/naive", False)):
                times = []
                for _ in range(args.loads):
                    if cold:
                        time.sleep(1.1)
                    times.append(load_ms(page, url + path))
                out[name] = {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
                             "max_ms": round(max(times), 1)}
            shots = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
            shots.mkdir(parents=True, exist_ok=True)
            page.goto(url + "/")
            page.wait_for_function("window.RF_DRAWN_MS !== undefined", timeout=60_000)
            page.screenshot(path=str(shots / f"overview-{args.nodes}.png"))
            browser.close()
        store.close()
    e = out["endpoint_ms"]
    print(f"\nfleet overview, {args.nodes} nodes, headless Chromium, median of {args.loads} loads "
          "(navigation start -> every cell laid out):")
    print(f"  dashboard /, overview answer rebuilt each load : {out['overview_cold']['median_ms']:8.1f} ms "
          f"(min {out['overview_cold']['min_ms']}, max {out['overview_cold']['max_ms']})")
    print(f"  dashboard /, overview answer from its 1 s cache: {out['overview_warm']['median_ms']:8.1f} ms")
    print(f"  peer: same page fed by GET /api/v1/nodes       : {out['naive_nodes']['median_ms']:8.1f} ms")
    print(f"endpoints alone (median of 5): /api/v1/overview {e['overview_uncached']} ms uncached, "
          f"{e['overview_cached']} ms cached, {e['overview_bytes'] / 1e6:.2f} MB; "
          f"/api/v1/nodes {e['nodes']} ms, {e['nodes_bytes'] / 1e6:.2f} MB")
    goal = out["overview_cold"]["median_ms"] < 1000
    print(f"goal (< 1 s at {args.nodes} nodes): {'met' if goal else 'NOT met'}")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
