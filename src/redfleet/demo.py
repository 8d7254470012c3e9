"""``redfleet demo``: a simulated fleet, the fleet store on SQLite, and redfleet watching it — on one machine.

What a newcomer sees, in order:
1. the simulator starts N BMCs of every flavor, each on its own loopback address with its own certificate;
2. the fleet file is imported into a SQLite store (credentials encrypted, certificates pinned on first use);
3. a fleet-wide inventory sweep, summarised per vendor (GPUs found wherever each vendor puts them);
4. faults injected on a schedule (GPU Xid, fell off the bus, over-temperature, fan, PSU ...) and the sensor and
   inventory sweeps that notice them: what changed on which node, as the store records it.

Everything is real traffic: HTTPS to each simulated BMC, Redfish sessions, the same client and store the other
commands use. Only the hardware is simulated.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from redfleet.model.inventory import Inventory
from redfleet.model.telemetry import SensorReadings
from redfleet.redfish import collect_inventory, read_sensors
from redfleet.redfish.fleet import FleetOptions, NodeResult, run_fleet, targets_from_fleet
from redfleet.sim import SimConfig, SimFleet
from redfleet.sim.dyn_node import FleetDyn
from redfleet.store.crypto import KeyRing
from redfleet.store.repository import FleetStore

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

UNHEALTHY = {"Warning", "Critical"}
GPU_FAULTS = {"xid", "gpu-overtemp", "ecc-dbe", "gpu-lost", "row-remap", "nvlink"}


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


@dataclass
class DemoState:
    injected: list[tuple[float, str, str]] = field(default_factory=list)
    sweeps: int = 0
    changes: int = 0


# Health of a disabled or absent function says nothing about the hardware (AMI MegaRAC reports its disabled
# power-capping control as Critical): such readings are not alarms.
IGNORED_STATES = {"Disabled", "Absent", "StandbyOffline"}
HEALTH_LISTS = ("systems", "gpus", "cpus", "memory", "drives", "psus", "fans", "nics")


def _sensor_problems(readings: SensorReadings) -> list[str]:
    return [f"{r.name or r.id} {r.value if r.value is not None else ''}{r.units or ''} {r.health}".strip()
            for r in readings.readings if r.health in UNHEALTHY and r.state not in IGNORED_STATES]


def health_changes(before: Inventory, after: Inventory) -> list[str]:
    """Components whose health changed between two inventories of one node, in words."""
    out = []
    for key in HEALTH_LISTS:
        # The URI a component was read from identifies it; ids repeat across chassis (one "NIC1" per adapter).
        old = {item.source or item.id: item.health for item in getattr(before, key)}
        for item in getattr(after, key):
            ref = item.source or item.id
            if ref in old and old[ref] != item.health and item.health is not None:
                out.append(f"{key[:-1] if key.endswith('s') else key} {item.name or item.id}: "
                           f"health {old[ref] or '?'} → {item.health}")
    return out


class Demo:
    def __init__(self, opts: DemoOptions, console: Console | None = None) -> None:
        self.opts = opts
        self.console = console or Console()
        self.state = DemoState()
        self.workdir = Path(tempfile.mkdtemp(prefix="redfleet-demo-"))
        self.db_url = opts.db or f"sqlite:///{self.workdir / 'redfleet.db'}"
        self.last: dict[str, Inventory] = {}

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
                await self._watch(fleet, store, targets, options)
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

    async def _watch(self, fleet: SimFleet, store: FleetStore, targets: list[Any], options: FleetOptions) -> None:
        o = self.opts
        c = self.console
        rng = random.Random(o.seed)
        dyn = fleet.dynamics if isinstance(fleet.dynamics, FleetDyn) else None
        names = [n.name for n in fleet.nodes if n.flavor != "legacy-ipmi"]
        by_name = {t.name: t for t in targets}
        deadline = None if o.duration is None else time.monotonic() + o.duration
        next_fault = time.monotonic() + min(3.0, o.fault_every)
        next_sweep = time.monotonic() + o.sweep_every
        faulted: set[str] = set()
        c.print(f"watching the fleet: a fault every {o.fault_every:g} s, a sensor sweep every {o.sweep_every:g} s"
                + ("" if deadline is None else f", for {o.duration:g} s") + " — Ctrl-C to stop")
        i = 0
        while deadline is None or time.monotonic() < deadline:
            now = time.monotonic()
            if now >= next_fault and dyn is not None:
                spec = dict(DEMO_FAULTS[i % len(DEMO_FAULTS)])
                i += 1
                kind = spec.pop("kind")
                # GPU faults go to nodes whose inventory shows GPUs; the rest to any node.
                pool = [n for n in names if self.last.get(n) is not None and self.last[n].gpus] \
                    if kind in GPU_FAULTS else names
                node = rng.choice(pool or names)
                try:
                    fault = dyn.inject(node, kind, **spec)
                    faulted.add(node)
                    self.state.injected.append((now, node, fault.kind))
                    c.print(f"[yellow]⚡ injected[/] {fault.kind}{' ' + str(spec['xid']) if 'xid' in spec else ''}"
                            f" on {node}")
                except Exception as exc:  # e.g. a flavor without that sensor: say so and move on
                    c.print(f"[dim]could not inject {kind} on {node}: {exc}[/]")
                next_fault = now + o.fault_every
            if now >= next_sweep:
                await self._sweep(store, targets, options, [by_name[n] for n in sorted(faulted)])
                next_sweep = time.monotonic() + o.sweep_every
            wake = min(next_fault, next_sweep) if deadline is None else min(next_fault, next_sweep, deadline)
            await asyncio.sleep(max(0.05, wake - time.monotonic()))

    async def _sweep(self, store: FleetStore, targets: list[Any], options: FleetOptions, suspects: list[Any]) -> None:
        c = self.console
        t0 = time.monotonic()
        sensors = await run_fleet(targets, read_sensors, options=options)
        elapsed = time.monotonic() - t0
        self.state.sweeps += 1
        problems = {r.name: _sensor_problems(r.value) for r in sensors if r.ok and r.value is not None}
        unreachable = [r.name for r in sensors if not r.ok]
        bad = {k: v for k, v in problems.items() if v}
        c.print(f"sensor sweep {self.state.sweeps}: {len(sensors)} BMCs in {elapsed:.2f} s; "
                f"{len(bad)} with sensors out of range, {len(unreachable)} unreachable")
        for name, items in sorted(bad.items())[:8]:
            c.print(f"  [red]{name}[/]: " + "; ".join(items[:3]))
        for name in unreachable[:8]:
            c.print(f"  [red]{name}[/]: BMC unreachable")
        if suspects:
            inv = await run_fleet(suspects, collect_inventory, options=options)
            ok = [r for r in inv if r.ok and r.value is not None]
            changes = await asyncio.to_thread(self._record_all, store, ok, "demo re-inventory of faulted nodes")
            self.state.changes += len(changes)
            for ch in changes[:12]:
                c.print(f"  [magenta]changed[/] {ch.node}: {ch.summary}")
            for r in ok:
                assert r.value is not None
                prev = self.last.get(r.name)
                if prev is not None:
                    for text in health_changes(prev, r.value)[:6]:  # a few per node keep the screen readable
                        c.print(f"  [magenta]health[/] {r.name}: {text}")
                self.last[r.name] = r.value


def run_demo(opts: DemoOptions) -> int:
    os.environ.setdefault("REDFLEET_ACTOR", "redfleet-demo")
    try:
        return asyncio.run(Demo(opts).run())
    except KeyboardInterrupt:
        return 0
