"""A simulated fleet, the fleet store, ``serve`` with remediation on, and the simulator's in-band feed — for the
remediation end-to-end tests and the benchmark.

serve runs in this process (uvicorn on loopback) on the real clock; the simulator runs ``time_scale`` times faster,
so a simulated host boots in a few real seconds. :meth:`Harness.restart_serve` stops serve and starts a new one on
the same store, as a restart of the service would.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.fernet import Fernet

from redfleet.remediation.policy import Policy, load_policy
from redfleet.sim import SimConfig, SimFleet
from redfleet.store import FleetStore, KeyRing

DEV = "remediation-dev-token"

# Short, test-sized timings (seconds of real time); everything else is the built-in policy.
FAST: dict[str, Any] = {
    "rungs": {"gpu-reset": {"timeout": 30}, "reboot": {"timeout": 45}, "power-cycle": {"timeout": 60, "retries": 0},
              "reimage": {"timeout": 30}},
    "drain": {"timeout": 20},
    "health_gate": {"settle": 1.5, "timeout": 30},  # generous: CI machines are busy
}


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def fast_policy(**over: Any) -> Policy:
    merged = dict(FAST)
    for k, v in over.items():
        merged[k] = {**merged[k], **v} if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return load_policy(None, overrides=merged)


@dataclass
class Harness:
    fleet: SimFleet
    store: FleetStore
    host: str
    policy: Policy
    wlm_factory: Callable[[], Any]
    app: Any = None
    server: Any = None
    serve_task: asyncio.Task[Any] | None = None
    url: str = ""
    http: aiohttp.ClientSession | None = None
    feeder: Any = None
    feed_task: asyncio.Task[None] | None = None
    stop_feed: asyncio.Event = field(default_factory=asyncio.Event)
    power_cycles: dict[str, int] = field(default_factory=dict)

    @property
    def controller(self) -> Any:
        return self.app.state.remediation

    @property
    def hub(self) -> Any:
        return self.app.state.hub

    def names(self, flavor: str | None = None) -> list[str]:
        return [n.name for n in self.fleet.nodes if flavor is None or n.flavor == flavor]

    def inject(self, node: str, kind: str, **kw: Any) -> Any:
        return self.fleet.dynamics.inject(node, kind, **kw)  # type: ignore[union-attr]

    async def start_serve(self) -> None:
        import uvicorn

        from redfleet.api.app import create_app
        from redfleet.cli.serve import targets_from_store
        from redfleet.health import HealthEngine, load_rules
        from redfleet.telemetry.collector.poller import Intervals
        from redfleet.telemetry.series import SeriesStore

        port = free_port(self.host)
        self.url = f"http://{self.host}:{port}"
        series = SeriesStore()
        iv = Intervals(sensors=1.0, inventory=3600.0, retry_min_s=0.5, retry_max_s=2.0, slow_s=2.0)
        self.app = create_app(self.store, series=series, engine=HealthEngine(rules=load_rules(None), series=series),
                              targets=targets_from_store(self.store), intervals=iv, dev_token=DEV,
                              receiver_url=self.url, evaluate_interval=0.05, persist_interval=0.2,
                              remediation=self.policy, wlm=self.wlm_factory(), remediation_tick=0.2)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=self.host, port=port, log_level="warning"))
        self.serve_task = asyncio.create_task(self.server.serve())
        for _ in range(500):
            if self.server.started:
                break
            if self.serve_task.done():
                await self.serve_task
            await asyncio.sleep(0.02)
        if self.feeder is not None:
            self.feeder.url = self.url
        self.http = aiohttp.ClientSession(base_url=self.url, headers={"Authorization": f"Bearer {DEV}"},
                                          timeout=aiohttp.ClientTimeout(total=15))

    async def stop_serve(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.server is not None and self.serve_task is not None:
            self.server.should_exit = True
            await asyncio.wait_for(self.serve_task, 20)

    async def restart_serve(self) -> None:
        await self.stop_serve()
        await self.stop_feeding()
        await self.start_serve()
        await self.start_feeding()

    async def start_feeding(self) -> None:
        from redfleet.agent.simfeed import SimFeeder

        self.stop_feed = asyncio.Event()
        self.feeder = SimFeeder(self.url, DEV, fleet=self.fleet, interval=0.5, hung="report", nvme_every=1e9)
        feeder = self.feeder
        stop = self.stop_feed

        async def feed() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                with contextlib.suppress(Exception):
                    await feeder.tick()
                await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))

        self.feed_task = asyncio.create_task(feed())

    async def stop_feeding(self) -> None:
        self.stop_feed.set()
        if self.feed_task is not None:
            await self.feed_task
        if self.feeder is not None:
            await self.feeder.close()

    async def get(self, path: str, **params: Any) -> Any:
        assert self.http is not None
        async with self.http.get(path, params=params or None) as r:
            assert r.status == 200, (path, r.status, await r.text())
            return await r.json()

    async def post(self, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
        assert self.http is not None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with self.http.post(path, json=body or {}, headers=headers) as r:
            return r.status, await r.json()

    async def flows(self, node: str | None = None) -> list[dict[str, Any]]:
        return list(await self.get("/api/v1/remediations", **({"node": node} if node else {})))

    async def wait_flow(self, node: str, pred: Callable[[dict[str, Any]], bool], limit: float = 60.0,
                        what: str = "") -> dict[str, Any]:
        end = time.monotonic() + limit
        last: list[dict[str, Any]] = []
        while time.monotonic() < end:
            last = await self.flows(node)
            for f in last:
                if pred(f):
                    return f
            await asyncio.sleep(0.2)
        raise AssertionError(f"{node}: {what or 'workflow condition'} not met in {limit} s; workflows: "
                             + "; ".join(f"#{f['id']} {f['state']}/{f['phase']}/{f['rung']} "
                                         f"{[(s['name'], s['result']) for s in f['steps']]}" for f in last))

    async def wait_healthy(self, names: list[str], limit: float = 40.0) -> None:
        end = time.monotonic() + limit
        pending = set(names)
        while pending and time.monotonic() < end:
            for n in list(pending):
                h = self.hub.health(n)
                st = self.hub.nodes.get(n)
                if h["state"] == "healthy" and st is not None and st.os_state == "up" and st.bmc_ok:
                    pending.discard(n)
            await asyncio.sleep(0.2)
        assert not pending, {n: self.hub.health(n) for n in sorted(pending)[:3]}


async def sweep_inventory(fleet: SimFleet, store: FleetStore) -> None:
    """What `redfleet inventory --fleet` and the demo do first: every node's inventory, stored with history."""
    from redfleet.redfish import collect_inventory
    from redfleet.redfish.fleet import FleetOptions, run_fleet, targets_from_fleet

    results = await run_fleet(targets_from_fleet(fleet.fleet_file()), collect_inventory,
                              options=FleetOptions(concurrency=64, tls_mode="pin", pin_store=store.pin_store()))
    for r in results:
        if r.ok and r.value is not None:
            store.record_inventory(r.name, r.value, reason="test inventory sweep")


@contextlib.contextmanager
def local_slurm(nodes: list[str], registered: list[str]) -> Iterator[Any]:
    """A throwaway slurmctld (and slurmd for ``registered``) for a test module; skips with the reason when Slurm
    cannot run here."""
    import pytest

    from redfleet.remediation.wlm.slurmctl import LocalSlurm

    ok, why = LocalSlurm.available()
    if not ok:
        pytest.skip(why)
    with LocalSlurm() as s:
        s.start(nodes, registered=registered)
        yield s


@contextlib.asynccontextmanager
async def slurm_harness(tmp: Path, slurm: Any, **kw: Any) -> AsyncIterator[Harness]:
    """:func:`harness` with remediation going through Slurm's ``scontrol`` against ``slurm``."""
    from redfleet.remediation.wlm.slurm import SlurmManager

    conf = str(slurm.conf_path)
    async with harness(tmp, wlm_factory=lambda: SlurmManager(conf=conf), **kw) as hh:
        yield hh


@contextlib.asynccontextmanager
async def harness(tmp: Path, *, mix: dict[str, int], base_address: str, host: str, policy: Policy,
                  wlm_factory: Callable[[], Any] | None = None, time_scale: float = 20.0,
                  seed: int = 11) -> AsyncIterator[Harness]:
    from redfleet.remediation.wlm.none import NoneManager

    cfg = SimConfig(mix=mix, port=0, base_address=base_address, time_scale=time_scale, cache_dir=tmp / "certs",
                    seed=seed)
    async with SimFleet(cfg) as fleet:
        store = FleetStore(f"sqlite:///{tmp}/fleet.db", keyring=KeyRing.from_key(Fernet.generate_key().decode()),
                           actor="remediation-test")
        store.import_fleet(fleet.fleet_file())
        await sweep_inventory(fleet, store)
        h = Harness(fleet, store, host, policy, wlm_factory or NoneManager)
        counts = h.power_cycles
        dyn = fleet.dynamics
        original = dyn.power_cycled  # type: ignore[union-attr]

        def counting(nd: Any, reset_type: str | None) -> None:  # every power cycle the simulated BMCs performed
            counts[nd.node.name] = counts.get(nd.node.name, 0) + 1
            original(nd, reset_type)

        dyn.power_cycled = counting  # type: ignore[union-attr]
        await h.start_serve()
        await h.start_feeding()
        try:
            await h.wait_healthy(h.names())
            yield h
        finally:
            await h.stop_serve()
            await h.stop_feeding()
            store.close()
