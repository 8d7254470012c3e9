"""``redfleet demo``: a simulated fleet, the fleet store on SQLite, and redfleet watching it — on one machine.

What a newcomer sees, in order:
1. the simulator starts N BMCs of every flavor, each on its own loopback address with its own certificate;
2. the fleet file is imported into a SQLite store (credentials encrypted, certificates pinned on first use);
3. a fleet-wide inventory sweep, summarised per vendor (GPUs found wherever each vendor puts them);
4. ``redfleet serve`` (the control plane: REST API, BMC collection, push/SSE events, health engine, /metrics) on
   that store, fed with each node's in-band GPU telemetry (DCGM fields, Xid lines) by the simulator's agent feed;
5. faults injected on a schedule (GPU Xid, fell off the bus, over-temperature, fan, PSU ...) and the health
   verdicts the control plane reaches: which node, which state, why, and what it recommends.

Everything is real traffic: HTTPS to each simulated BMC, Redfish sessions, the same client and store the other
commands use. Only the hardware is simulated.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import uvicorn
from cryptography.fernet import Fernet
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from redfleet.agent.simfeed import SimFeeder
from redfleet.api.app import create_app
from redfleet.cli.serve import targets_from_store
from redfleet.health import HealthEngine, load_rules
from redfleet.model.inventory import Inventory
from redfleet.redfish import collect_inventory
from redfleet.redfish.fleet import FleetOptions, NodeResult, run_fleet, targets_from_fleet
from redfleet.sim import SimConfig, SimFleet
from redfleet.sim.dyn_node import FleetDyn
from redfleet.sim.faults import CATALOG
from redfleet.store.crypto import KeyRing
from redfleet.store.repository import FleetStore
from redfleet.telemetry.collector.poller import Intervals
from redfleet.telemetry.series import SeriesStore

# Faults the demo injects, in turn: what GPU clouds see most (Xid 79 and 48 are the classic "GPU is gone" and
# "double-bit ECC"), plus the chassis failures a BMC reports.
DEMO_FAULTS: tuple[dict[str, Any], ...] = (
    {"kind": "xid", "xid": 79},
    {"kind": "gpu-overtemp"},
    {"kind": "fan"},
    {"kind": "ecc-dbe"},
    {"kind": "psu"},
    {"kind": "gpu-lost"},
    {"kind": "inlet-overtemp"},
    {"kind": "xid", "xid": 48},
)

@dataclass
class DemoOptions:
    nodes: int = 200
    port: int = 18443
    base_address: str = "127.1.0.1"
    duration: float | None = None
    db: str | None = None
    seed: int = 1
    time_scale: float = 20.0
    fault_every: float = 10.0
    sweep_every: float = 10.0
    control_port: int = 0
    api_port: int = 8080
    token: str | None = None
    remediation: bool = True
    policy: str | None = None  # a policy file; default: the built-in one with demo-sized timings


@dataclass
class DemoState:
    injected: list[tuple[float, str, str]] = field(default_factory=list)
    changes: int = 0
    steps_seen: dict[int, int] = field(default_factory=dict)  # workflow id -> steps already printed
    finished: dict[int, str] = field(default_factory=dict)  # workflow id -> final state


# The built-in policy with timings a demo can show in a minute: the simulated hosts boot in seconds, and the
# breaker's window is short enough that the demo's steady trickle of faults (one every few seconds across the whole
# fleet) is not mistaken for a storm.
DEMO_POLICY: dict[str, Any] = {
    "health_gate": {"settle": "5s", "timeout": "2m"},
    "rungs": {"gpu-reset": {"timeout": "1m"}, "reboot": {"timeout": "2m"}, "power-cycle": {"timeout": "2m"}},
    "drain": {"timeout": "1m"},
    "safety": {"breaker": {"window": "1m"}},
}


class Demo:
    def __init__(self, opts: DemoOptions, console: Console | None = None) -> None:
        self.opts = opts
        self.console = console or Console()
        self.state = DemoState()
        self.workdir = Path(tempfile.mkdtemp(prefix="redfleet-demo-"))
        self.db_url = opts.db or f"sqlite:///{self.workdir / 'redfleet.db'}"
        self.last: dict[str, Inventory] = {}
        self.states: dict[str, str] = {}
        self.last_counts: dict[str, int] = {}

    async def run(self) -> int:
        o = self.opts
        c = self.console
        cfg = SimConfig(nodes=o.nodes, port=o.port, base_address=o.base_address, seed=o.seed,
                        time_scale=o.time_scale, control_port=o.control_port, cache_dir=self.workdir / "certs")
        c.rule("[bold]redfleet demo")
        t0 = time.monotonic()
        async with SimFleet(cfg) as fleet:
            flavors = Counter(n.flavor for n in fleet.nodes)
            c.print(f"simulator: {len(fleet.nodes)} BMCs up in {time.monotonic() - t0:.1f} s — "
                    + ", ".join(f"{k} {v}" for k, v in sorted(flavors.items())))
            c.print(f"  e.g. curl -sk -u root:calvin {fleet.nodes[0].bmc_url}/redfish/v1/Systems")
            c.print(f"  fault-injection API: {fleet.control_url}/  (try: redfleet sim fault {fleet.nodes[1].name}"
                    f" xid --xid 79 --control {fleet.control_url})")
            fleet_path = self.workdir / "fleet.yaml"
            ff = fleet.fleet_file()
            fleet_path.write_text(ff.to_yaml())
            # The demo keeps its own key beside its database, so it never touches an operator's real key file.
            store = FleetStore(self.db_url, keyring=KeyRing.from_key(Fernet.generate_key(), "demo key"),
                               actor="redfleet-demo")
            with store:
                imported = store.import_fleet(fleet_path, reason="demo start")
                c.print(f"store: {store.display_url} — imported {len(imported.added)} nodes "
                        "(credentials encrypted, certificates pinned on first use)")
                targets = targets_from_fleet(ff)
                options = FleetOptions(concurrency=256, tls_mode="pin", pin_store=store.pin_store())
                inventories = await self._inventory_sweep(targets, options, store)
                self._summary(inventories, fleet)
                await self._control_plane(fleet, store)
        c.rule("demo over")
        c.print(f"the store is kept at {self.db_url}: [bold]redfleet fleet list --db {self.db_url}[/]")
        return 0

    async def _inventory_sweep(self, targets: list[Any], options: FleetOptions,
                               store: FleetStore) -> list[NodeResult[Inventory]]:
        with Progress(TextColumn("inventory"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, transient=False) as progress:
            task = progress.add_task("inventory", total=len(targets))
            t0 = time.monotonic()
            results = await run_fleet(targets, collect_inventory, options=options,
                                      on_result=lambda _r: progress.advance(task))
        elapsed = time.monotonic() - t0
        ok = [r for r in results if r.ok and r.value is not None]
        self.last.update({r.name: r.value for r in ok if r.value is not None})
        await asyncio.to_thread(self._record_all, store, ok, "demo inventory sweep")
        self.console.print(f"inventory of {len(ok)}/{len(results)} nodes in {elapsed:.1f} s "
                           f"({len(results) / max(elapsed, 1e-9):.0f} BMCs/s), stored with history")
        for r in results:
            if not r.ok:
                self.console.print(f"  [red]{r.name}[/]: {r.error}")
        return results

    def _record_all(self, store: FleetStore, results: list[NodeResult[Inventory]], reason: str) -> list[Any]:
        changes: list[Any] = []
        for r in results:
            changes.extend(store.record_inventory(r.name, r.value, reason=reason))
        return changes

    def _summary(self, results: list[NodeResult[Inventory]], fleet: SimFleet) -> None:
        flavor = {n.name: n.flavor for n in fleet.nodes}
        rows: dict[str, Counter[str]] = defaultdict(Counter)
        models: dict[str, set[str]] = defaultdict(set)
        for r in results:
            if not r.ok or r.value is None:
                continue
            inv = r.value
            row = rows[flavor[r.name]]
            row["nodes"] += 1
            for key in ("gpus", "cpus", "memory", "drives", "nics", "psus", "fans", "firmware"):
                row[key] += len(getattr(inv, key))
            for s in inv.systems:
                if s.model:
                    models[flavor[r.name]].add(s.model)
        table = Table(title="fleet inventory by flavor (node-wide totals)")
        for col in ("flavor", "model", "nodes", "gpus", "cpus", "memory", "drives", "nics", "psus", "fans",
                    "firmware"):
            table.add_column(col, justify="left" if col in ("flavor", "model") else "right")
        for fl in sorted(rows):
            row = rows[fl]
            table.add_row(fl, ", ".join(sorted(models[fl]))[:40], *(str(row[k]) for k in (
                "nodes", "gpus", "cpus", "memory", "drives", "nics", "psus", "fans", "firmware")))
        self.console.print(table)

    async def _control_plane(self, fleet: SimFleet, store: FleetStore) -> None:
        """Run ``serve`` on the demo's store and the in-band feed into it, and watch the verdicts."""
        o = self.opts
        c = self.console
        token = o.token or secrets.token_urlsafe(18)
        base = f"http://127.0.0.1:{o.api_port}"
        series = SeriesStore()
        policy = None
        if o.remediation:
            from redfleet.remediation.policy import load_policy

            policy = load_policy(o.policy) if o.policy else load_policy(None, overrides=DEMO_POLICY)
        app = create_app(store, series=series, engine=HealthEngine(rules=load_rules(None), series=series),
                         targets=targets_from_store(store), dev_token=token,
                         intervals=Intervals(sensors=o.sweep_every, inventory=600.0), receiver_url=base,
                         remediation=policy)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=o.api_port, log_level="warning",
                                               access_log=False))
        serve_task = asyncio.create_task(server.serve())
        for _ in range(400):  # up to 20 s for start-up (collection targets, migrations already done)
            if server.started or serve_task.done():
                break
            await asyncio.sleep(0.05)
        if not server.started:
            await serve_task  # raises what stopped it (e.g. the port is taken)
            raise RuntimeError(f"redfleet serve did not start on {base}")
        c.rule("control plane")
        c.print(f"redfleet serve: {base}  — API docs {base}/docs, metrics {base}/metrics")
        c.print(f"  dashboard: [bold]{base}/?token={token}[/]")
        c.print(f"  admin token for this demo: {token}")
        if policy is not None:
            c.print(f"  automated remediation: on (no workload manager: BMC-level), ladder "
                    f"{' → '.join(policy.ladder)}; watch it: redfleet remediation list --api {base} --token {token}")
        c.print(f"  e.g. curl -s -H 'Authorization: Bearer {token}' {base}/api/v1/nodes | python3 -m json.tool")
        stop = asyncio.Event()
        try:
            async with SimFeeder(base, token, fleet=fleet, interval=1.0) as feeder:
                feed_task = asyncio.create_task(feeder.run(stop))
                try:
                    await self._watch(fleet, base, token, serve_task, server)
                finally:
                    stop.set()
                    await asyncio.wait_for(feed_task, 10)
        finally:
            server.should_exit = True
            try:
                await asyncio.wait_for(serve_task, 15)
            except TimeoutError:
                c.print("[red]the control plane did not finish shutting down within 15 s; stopped anyway[/]")

    def _inject_next(self, fleet: SimFleet, rng: random.Random, names: list[str]) -> None:
        dyn = fleet.dynamics if isinstance(fleet.dynamics, FleetDyn) else None
        if dyn is None:
            return
        spec = dict(DEMO_FAULTS[len(self.state.injected) % len(DEMO_FAULTS)])
        kind = spec.pop("kind")
        # GPU faults go to nodes whose inventory shows GPUs; the rest to any node.
        pool = [n for n in names if self.last.get(n) is not None and self.last[n].gpus] \
            if CATALOG[kind].target == "gpu" else names
        node = rng.choice(pool or names)
        try:
            fault = dyn.inject(node, kind, **spec)
        except Exception as exc:  # e.g. a flavor without that sensor: say so and move on
            self.console.print(f"[dim]could not inject {kind} on {node}: {exc}[/]")
            self.state.injected.append((time.monotonic(), node, f"{kind} (refused)"))
            return
        self.state.injected.append((time.monotonic(), node, fault.kind))
        self.console.print(f"[yellow]⚡ injected[/] {fault.kind}{' ' + str(spec['xid']) if 'xid' in spec else ''}"
                           f" on {node}")

    async def _watch(self, fleet: SimFleet, base: str, token: str, serve_task: asyncio.Task[Any],
                     server: uvicorn.Server) -> None:
        o = self.opts
        c = self.console
        rng = random.Random(o.seed)
        names = [n.name for n in fleet.nodes if n.flavor != "legacy-ipmi"]
        deadline = None if o.duration is None else time.monotonic() + o.duration
        next_fault = time.monotonic() + min(3.0, o.fault_every)
        c.print(f"a fault every {o.fault_every:g} s; health verdicts from the API as they change"
                + ("" if deadline is None else f"; for {o.duration:g} s") + " — Ctrl-C to stop")
        headers = {"Authorization": f"Bearer {token}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            # Ctrl-C reaches uvicorn's handler (should_exit): stop watching at once, not when serve has finished
            # shutting down (which waits for in-flight work)
            while (deadline is None or time.monotonic() < deadline) and not serve_task.done() \
                    and not server.should_exit:
                if time.monotonic() >= next_fault:
                    self._inject_next(fleet, rng, names)
                    next_fault = time.monotonic() + o.fault_every
                flows: list[dict[str, Any]] = []
                try:
                    async with http.get(f"{base}/api/v1/nodes") as resp:
                        resp.raise_for_status()
                        nodes = await resp.json()
                    async with http.get(f"{base}/api/v1/remediations", params={"limit": "50"}) as resp:
                        if resp.status == 200:
                            flows = await resp.json()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    c.print(f"[red]API unreachable: {exc}[/]")
                    nodes = []
                self._report(nodes)
                self._report_remediation(flows)
                await asyncio.sleep(1.0)

    def _report(self, nodes: list[dict[str, Any]]) -> None:
        c = self.console
        counts: Counter[str] = Counter()
        for n in nodes:
            health = n.get("health") or {}
            state = str(health.get("state") or "unknown")
            counts[state] += 1
            old = self.states.get(n["name"])
            self.states[n["name"]] = state
            if old is None or old == state or (old == "unknown" and state == "healthy"):
                continue  # first sight of a healthy node is no news: the fleet line counts those
            self.state.changes += 1
            colour = {"healthy": "green", "degraded": "yellow", "unhealthy": "red"}.get(state, "white")
            why = "; ".join(f"{r.get('rule')}: {r.get('message')}" for r in (health.get("reasons") or [])[:2])
            action = health.get("action")
            c.print(f"  [{colour}]{n['name']}: {old} → {state}[/]" + (f" — {why}" if why else "")
                    + (f" [bold]→ {action}[/]" if action else ""))
        summary = dict(sorted(counts.items()))
        if summary != self.last_counts:
            self.last_counts = summary
            c.print("  fleet: " + ", ".join(f"{k} {v}" for k, v in summary.items()))


    def _report_remediation(self, flows: list[dict[str, Any]]) -> None:
        """Each workflow's new steps as they happen, and its outcome."""
        c = self.console
        for f in sorted(flows, key=lambda f: f["id"]):
            wid = f["id"]
            if wid in self.state.finished:
                continue
            seen = self.state.steps_seen.get(wid)
            if seen is None:
                seen = 0
                why = ", ".join(f"{r.get('rule')}@{r.get('component')}" for r in f["trigger"].get("reasons") or [])
                c.print(f"  [cyan]🔧 remediation #{wid}[/] {f['node']}: {f['trigger'].get('action')} → start at "
                        f"rung {f['rung']} ({why})")
            done = [s for s in f["steps"] if s["result"] != "running"]
            for s in done[seen:]:
                took = f" {s['duration_s']:.1f}s" if s.get("duration_s") is not None else ""
                colour = "green" if s["result"] == "ok" else "yellow" if s["result"] == "skipped" else "red"
                c.print(f"     #{wid} {s['name']}: [{colour}]{s['result']}[/]{took}")
            self.state.steps_seen[wid] = max(seen, len(done))
            if f["state"] in ("succeeded", "decommissioned", "failed"):
                self.state.finished[wid] = f["state"]
                colour = {"succeeded": "green", "decommissioned": "red", "failed": "red"}[f["state"]]
                extra = f", RMA record #{f['rma_id']}" if f.get("rma_id") else ""
                c.print(f"  [{colour}]■ remediation #{wid} {f['node']}: {f['state']}{extra}[/]")


def run_demo(opts: DemoOptions) -> int:
    os.environ.setdefault("REDFLEET_ACTOR", "redfleet-demo")
    # The demo narrates each workflow itself (_report_remediation); the controller's own warnings would print the
    # same story a second time, unformatted, through logging's last-resort handler.
    logging.getLogger("redfleet.remediation").setLevel(logging.ERROR)
    try:
        return asyncio.run(Demo(opts).run())
    except KeyboardInterrupt:
        return 0
