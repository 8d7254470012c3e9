"""End to end: simulator -> redfleet serve (live uvicorn on loopback, BMC collector, in-band ingest fed by the
simulator feeder) -> health engine -> REST API. Faults are injected in the simulator; the API must show the
verdict.

The whole chain runs on a scaled clock: serve's clock and the simulator both run ``SCALE`` times faster than real
time, so the rules' real windows (30 s BMC unreachable, 30 s GPU slowdown temperature...) play out in seconds
without changing any rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from cryptography.fernet import Fernet

from redfleet.sim import SimConfig, SimFleet
from redfleet.store import FleetStore, KeyRing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]

SCALE = 10.0
DEV = "e2e-dev-token"
HOST = "127.19.0.10"
MIX = {"supermicro": 3, "dgx": 3}  # GPU nodes (8 GPUs each)


class ScaledClock:
    """Epoch seconds running SCALE times faster than real time (from the moment it is made)."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.t0 = time.time()

    def __call__(self) -> float:
        return self.t0 + (time.time() - self.t0) * self.scale


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Harness:
    fleet: SimFleet
    store: FleetStore
    app: Any
    url: str
    http: aiohttp.ClientSession
    clock: ScaledClock
    feeder: Any

    @property
    def hub(self) -> Any:
        return self.app.state.hub

    def names(self) -> list[str]:
        return [n.name for n in self.fleet.nodes]

    def inject(self, node: str, kind: str, **kw: Any) -> Any:
        return self.fleet.dynamics.inject(node, kind, **kw)  # type: ignore[union-attr]

    async def get(self, path: str, **params: Any) -> Any:
        async with self.http.get(path, params=params or None) as r:
            assert r.status == 200, (path, r.status, await r.text())
            return await r.json() if r.content_type == "application/json" else await r.text()

    async def node(self, name: str) -> dict[str, Any]:
        return dict(await self.get(f"/api/v1/nodes/{name}"))

    async def wait_node(self, name: str, pred: Any, limit: float = 20.0, what: str = "") -> dict[str, Any]:
        end = time.monotonic() + limit
        last: dict[str, Any] = {}
        while time.monotonic() < end:
            last = await self.node(name)
            if pred(last):
                return last
            await asyncio.sleep(0.1)
        raise AssertionError(f"{name}: {what or 'condition'} not met in {limit} s; health now {last.get('health')}")


def reasons(node: dict[str, Any]) -> list[dict[str, Any]]:
    return list(node["health"]["reasons"])


# Simulated drives age like real ones: some nodes carry an NVMe wear reason from the start. The scenarios judge
# everything else.
BACKGROUND = ("nvme-",)


def fault_reasons(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in reasons(node) if not str(r.get("rule")).startswith(BACKGROUND)]


def reason(node: dict[str, Any], rule: str) -> dict[str, Any] | None:
    return next((r for r in reasons(node) if r.get("rule") == rule), None)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def h(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Harness]:
    import uvicorn

    from redfleet.agent.simfeed import SimFeeder
    from redfleet.api.app import create_app
    from redfleet.cli.serve import targets_from_store
    from redfleet.health import HealthEngine, load_rules
    from redfleet.telemetry.collector.poller import Intervals
    from redfleet.telemetry.hub import Hub
    from redfleet.telemetry.series import SeriesStore

    tmp = tmp_path_factory.mktemp("serve-e2e")
    cfg = SimConfig(mix=MIX, port=0, base_address="127.19.10.1", time_scale=SCALE, cache_dir=tmp / "certs", seed=7)
    async with SimFleet(cfg) as fleet:
        store = FleetStore(f"sqlite:///{tmp}/fleet.db", keyring=KeyRing.from_key(Fernet.generate_key().decode()),
                           actor="e2e")
        store.import_fleet(fleet.fleet_file())
        clock = ScaledClock(SCALE)
        series = SeriesStore()
        hub = Hub(store, series, HealthEngine(rules=load_rules(None), series=series, clock=clock), clock=clock)
        port = free_port(HOST)
        iv = Intervals(sensors=10.0 / SCALE, inventory=3600.0, retry_min_s=2.0 / SCALE, retry_max_s=10.0 / SCALE,
                       slow_s=2.0, confirm_s=30.0 / SCALE)
        app = create_app(store, hub=hub, targets=targets_from_store(store), intervals=iv, dev_token=DEV,
                         receiver_url=f"http://{HOST}:{port}", evaluate_interval=0.05, persist_interval=0.2)
        server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="warning"))
        serve_task = asyncio.create_task(server.serve())
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.02)
        url = f"http://{HOST}:{port}"
        feeder = SimFeeder(url, DEV, fleet=fleet, interval=1.0 / SCALE, hung="report", nvme_every=1e9)
        stop = asyncio.Event()

        async def feed() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                with contextlib.suppress(Exception):
                    await feeder.tick(now=clock())
                await asyncio.sleep(max(0.0, 1.0 / SCALE - (time.monotonic() - t0)))

        feed_task = asyncio.create_task(feed())
        async with aiohttp.ClientSession(base_url=url, headers={"Authorization": f"Bearer {DEV}"}) as http:
            hh = Harness(fleet, store, app, url, http, clock, feeder)
            # every node judged first (BMC polled, agent heard), with nothing but background reasons
            for name in hh.names():
                await hh.wait_node(name, lambda n: n["health"]["state"] != "unknown" and not fault_reasons(n)
                                   and n["bmc_reachable"] and n["os_state"] == "up", 30, "judged at start")
            try:
                yield hh
            finally:
                stop.set()
                await feed_task
                await feeder.close()
                server.should_exit = True
                await serve_task
                store.close()


async def test_xid_buckets_map_to_their_actions(h: Harness) -> None:
    from redfleet.health import HealthEngine

    eng = HealthEngine()
    # one representative Xid per resolution bucket (the engine's own table tests cover every code)
    cases = {"node-00001": (13, 0), "node-00002": (79, 1), "node-00003": (119, 2), "node-00004": (61, 3)}
    buckets = {eng.xid_bucket(code) for code, _ in cases.values()}
    assert buckets == {"RESTART_APP", "RESTART_BM", "RESET_GPU", "CONTACT_SUPPORT"}, buckets
    for node, (code, gpu) in cases.items():
        h.inject(node, "xid", gpu=gpu, xid=code)
    for node, (code, gpu) in cases.items():
        verdict = eng.xid_verdict(code)
        got = await h.wait_node(node, lambda n, c=code: reason(n, f"xid.{c}") is not None, 20, f"Xid {code} shown")
        r = reason(got, f"xid.{code}")
        assert r is not None
        assert r["action"] == verdict["action"], (code, r)
        assert r["component"] == f"gpu:{gpu}", r
        assert r["severity"] == verdict["severity"] and r["classification"] == verdict["classification"]
        want = {"info": "healthy", "warning": "degraded", "critical": "unhealthy"}[verdict["severity"]]
        # the node is at least as bad as the Xid says (the BMC's own event for it may add a reason)
        rank = ("healthy", "degraded", "unhealthy")
        assert rank.index(got["health"]["state"]) >= rank.index(want), (code, got["health"])
    # the change is stored with its reasons (health history) and the Xid as an event
    hist = await h.get("/api/v1/nodes/node-00002/health/history")
    deadline = time.monotonic() + 5
    while not any(c["new"] == "unhealthy" for c in hist) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        hist = await h.get("/api/v1/nodes/node-00002/health/history")
    bad = next(c for c in hist if c["new"] == "unhealthy")
    assert bad["action"] == "RESTART_BM" and any(r["rule"] == "xid.79" for r in bad["reasons"])
    evs = await h.get("/api/v1/events", node="node-00002")
    assert any(e["message_id"] == "Xid 79" for e in evs), evs[:3]


async def test_repeated_xid_escalates(h: Harness) -> None:
    node, gpu, code = "node-00005", 4, 31
    h.inject(node, "xid", gpu=gpu, xid=code)
    once = await h.wait_node(node, lambda n: reason(n, f"xid.{code}") is not None, 20, "first Xid 31")
    first = reason(once, f"xid.{code}")
    assert first is not None and first["action"] == "RESTART_APP" and first["severity"] == "info"
    assert first["details"]["escalated"] is False
    for _ in range(2):
        await asyncio.sleep(0.3)
        h.inject(node, "xid", gpu=gpu, xid=code)
    esc = await h.wait_node(node, lambda n: (r := reason(n, f"xid.{code}")) is not None and r["details"]["count"] >= 3,
                            20, "three Xid 31")
    r = reason(esc, f"xid.{code}")
    assert r is not None and r["details"]["escalated"] is True
    assert r["action"] == "RUN_DIAG" and r["classification"] == "suspect" and r["severity"] == "warning", r
    assert esc["health"]["state"] in ("degraded", "unhealthy")


async def test_one_off_thermal_blip_is_not_a_failure(h: Harness) -> None:
    node, gpu = "node-00006", 5
    # ~92 °C for 15 simulated seconds: above the slowdown threshold, shorter than the rule's 30 s
    h.inject(node, "gpu-overtemp", gpu=gpu, duration="15s")
    # An inventory read inside the blip (by chance, the first one of the node could land there: CI saw it once):
    # the BMC rolls the temperature up into the GPU's Health, Critical. The collector reads it again within the
    # gpu-health rule's hold time and the blip is over by then.
    coll = h.app.state.collector
    confirms = coll.state[node].confirms
    assert coll.refresh(node, ("inventory",))
    hot = 0.0
    critical: set[str] = set()
    rules: set[str] = set()
    # 100 simulated seconds: past the gpu-health rule's 60 s hold, had the confirmation read not cleared it
    end = time.monotonic() + 100.0 / SCALE
    while time.monotonic() < end:
        latest = h.hub.series.latest(node, "DCGM_FI_DEV_GPU_TEMP", gpu=gpu)
        if latest:
            hot = max(hot, latest[1])
        n = await h.node(node)
        rules.update(r["rule"] for r in fault_reasons(n))
        critical.update(r["rule"] for r in fault_reasons(n) if r["severity"] == "critical")
        await asyncio.sleep(0.05)
    assert hot >= 90.0, f"the blip never reached serve (max {hot} °C)"
    # the temperature rules wait out their windows: the blip is no GPU failure, no thermal alarm
    assert not rules & {"gpu-temp-critical", "gpu-temp-high", "gpu-health"}, rules
    assert coll.state[node].confirms > confirms, "the inventory read inside the blip saw no Critical GPU"
    # A BMC poll that lands inside the blip reads the sensor's own Health Critical; the component-health rule
    # waits out its hold time, so nothing may flag the node.
    assert not critical, critical


async def test_unreachable_bmc_and_hung_os_told_apart(h: Harness) -> None:
    bmc_node, os_node = "node-00003", "node-00004"
    h.inject(bmc_node, "bmc-down")
    h.inject(os_node, "os-hang")
    hung = await h.wait_node(os_node, lambda n: reason(n, "os-hung") is not None, 20, "os-hung")
    down = await h.wait_node(bmc_node, lambda n: reason(n, "bmc-unreachable") is not None, 30, "bmc-unreachable")
    # the BMC-down node: its BMC is flagged, its OS is fine (the agent still reports), no power cycle advised
    assert down["bmc_reachable"] is False and down["os_state"] == "up"
    assert not [r for r in reasons(down) if r["rule"].startswith("os-")], reasons(down)
    assert reason(down, "bmc-unreachable")["action"] == "CHECK_BMC"  # type: ignore[index]
    # the hung node: the BMC answers, the OS is the problem
    assert hung["bmc_reachable"] is True and hung["os_state"] == "hung"
    assert reason(hung, "bmc-unreachable") is None
    assert reason(hung, "os-hung")["action"] == "POWER_CYCLE"  # type: ignore[index]
    assert hung["health"]["state"] == "unhealthy"
    # and both show in the BMC reachability metric
    text = await h.get("/metrics")
    assert f'redfleet_bmc_up{{node="{bmc_node}"}} 0.0' in text
    assert f'redfleet_bmc_up{{node="{os_node}"}} 1.0' in text
