"""The dynamic side of the simulator, plugged into the core through :mod:`redfleet.sim.hooks`.

:class:`FleetDyn` is created once per fleet (``make_fleet_dynamics``); it keeps what is shared per flavor
(:class:`FlavorDyn`: the index, which paths carry live values) and the fault engine (inject, clear, power-cycle
rules, lemons, the ticker that ends timed faults and brings lemons' faults back). :class:`NodeDyn` is one per BMC and
holds only what that node has lived through: boot time, active faults, counters a fault left behind, Xid lines,
event subscriptions. A node that nothing happened to costs a few dozen bytes beyond its slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from redfleet.sim.dyn_index import FlavorIndex, GpuInfo
from redfleet.sim.dyn_live import LIVE_KINDS, compile_live
from redfleet.sim.dyn_messages import Part, fault_writes, hgx_xid_write, power_message
from redfleet.sim.faults import CATALOG, Fault, parse_duration, xid_info, xid_line
from redfleet.sim.hooks import FleetDynamics, NodeDynamics
from redfleet.sim.telemetry import ON, Conditions, NodeModel, key_of, u01

if TYPE_CHECKING:  # pragma: no cover
    from aiohttp import web

    from redfleet.sim.events import EventHub
    from redfleet.sim.fleet import SimFleet
    from redfleet.sim.node import SimNode

log = logging.getLogger("redfleet.sim.dyn")

Doc = dict[str, Any]

OS_BOOT_SECONDS = 75.0  # after PowerState On, the OS needs this long (simulated) to be "up"
UPTIME_DAYS_MAX = 60.0
LEMON_REFAIL_MIN = 120.0  # simulated seconds after a repair before a lemon fails again
LEMON_REFAIL_MAX = 900.0
STORM_LOG_EVERY = 300.0  # a dimm-ce storm writes one more SEL line per this many simulated seconds

# @odata.type names whose documents carry live values
_LIVE_TYPES = {
    "Thermal", "Power", "Sensor", "EnvironmentMetrics", "ProcessorMetrics", "MemoryMetrics", "PortMetrics",
    "MetricReport", "ThermalMetrics", "Fan", "PowerSupply", "PowerSupplyMetrics", "ThermalSubsystem",
    "PowerSubsystem", "Drive",
}
_TYPE_RE = re.compile(rb'"@odata\.type":"#([A-Za-z0-9_]+)\.')
_RANK = {"OK": 0, "Warning": 1, "Critical": 2}
# overlay kinds (dyn_overlay.HANDLERS) that leave the document as captured while the node has no fault
_QUIET_WHEN_HEALTHY = frozenset({"Dimm", "Drive", "GpuChassis", "System", "Chassis", "ThermalSubsystem",
                                 "PowerSubsystem"})


class UserError(ValueError):
    """A fault request that cannot be honoured (unknown node, no such GPU...): answered 400/404."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SimError(UserError):
    """A request the simulated node cannot carry out in its present state (its OS is hung or down, the GPU is off
    the bus): answered 409 by the control API, reported as a failed command by the in-band side."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message, status)


class FlavorDyn:
    """What the dynamic side keeps per flavor (shared by every node of that flavor)."""

    def __init__(self, facts: Any) -> None:
        tpl = facts.template
        self.facts = facts
        self.ix = FlavorIndex.from_template(tpl)
        self.handlers: dict[str, str] = {}
        for path, res in tpl.resources.items():
            if not res.ctype.startswith("application/json"):
                continue
            if "/JsonSchemas" in path or "/Registries" in path or "/SchemaStore" in path:
                continue
            m = _TYPE_RE.search(res.body[:200]) or _TYPE_RE.search(res.body)
            if m is None:
                continue
            t = m.group(1).decode()
            if t in _LIVE_TYPES:
                self.handlers[path] = t
        for g in self.ix.gpus:
            self.handlers[g.uri] = "Gpu"
            if g.chassis:
                self.handlers.setdefault(g.chassis, "GpuChassis")
        for i, d in enumerate(self.ix.dimms):
            self.handlers[d] = "Dimm"
            mm = ((self.ix.get(d) or {}).get("Metrics") or {}).get("@odata.id")
            if isinstance(mm, str):
                self.handlers[self.ix.canonical(mm)] = "DimmMetrics"
            del i
        for d in self.ix.drives:
            self.handlers[d] = "Drive"
        if self.ix.system:
            self.handlers[self.ix.system] = "System"
        if self.ix.chassis:
            self.handlers.setdefault(self.ix.chassis, "Chassis")
        self.captured_subs: set[str] = set(self.ix.members(self.ix.subscriptions))
        if self.ix.subscriptions:
            self.handlers[self.ix.subscriptions] = "Subscriptions"
        self.dimm_of_metrics = {}
        for i, d in enumerate(self.ix.dimms):
            mm = ((self.ix.get(d) or {}).get("Metrics") or {}).get("@odata.id")
            if isinstance(mm, str):
                self.dimm_of_metrics[self.ix.canonical(mm)] = i
        self.drive_index = {d: i for i, d in enumerate(self.ix.drives)}
        self.dimm_index = {d: i for i, d in enumerate(self.ix.dimms)}
        self.psu_member: dict[str, int] = {}
        n_legacy = sum(1 for p in self.ix.psus if p[1] >= 0)
        k = 0
        for uri, member, _name in self.ix.psus:
            if member < 0:
                self.psu_member[uri] = k
                k += 1
        self.n_psus = max(n_legacy, k)
        self.fan_member: dict[str, int] = {}
        for i, (uri, member, _name) in enumerate(self.ix.fans):
            if member < 0:
                self.fan_member[uri] = i
        self.gpu_tokens = [g.token for g in self.ix.gpus]
        # GPU resources without a clock speed: their overlay, too, only writes a fault's Health/State
        self.quiet_gpus = frozenset(
            p for p, k in self.handlers.items()
            if k == "Gpu" and not isinstance((tpl.doc(p) or {}).get("OperatingSpeedMHz"), (int, float))
        )
        # documents compiled for dyn_live (on first read; None: not compilable)
        self.live: dict[str, Any] = {}

    def live_doc(self, path: str, kind: str) -> Any:
        if path in self.live:
            return self.live[path]
        compiled = self.live[path] = compile_live(kind, path, self.facts.template.doc(path))
        return compiled

    def part_count(self, target: str) -> int:
        ix = self.ix
        return {"gpu": len(ix.gpus), "fan": len(ix.fans), "psu": self.n_psus, "dimm": len(ix.dimms),
                "drive": max(len(ix.drives), 2)}.get(target, 1)


class NodeDyn(NodeDynamics):
    """Per-node dynamics. See :class:`redfleet.sim.hooks.NodeDynamics` for when the core calls each method."""

    __slots__ = (
        "boot_at",
        "counters",
        "faults",
        "fd",
        "fleet_dyn",
        "flv",
        "hide_prefixes",
        "model",
        "node",
        "off_at",
        "sse",
        "subs",
        "xids",
    )

    def __init__(self, fleet_dyn: FleetDyn, node: SimNode, flv: FlavorDyn) -> None:
        self.fleet_dyn = fleet_dyn
        self.fd = fleet_dyn
        self.node = node
        self.flv = flv
        seed = int(node.fleet.config.seed or 0)
        self.model = NodeModel(seed, node.name)
        # the host has been up for a while when the simulation starts
        self.boot_at: float | None = -86400.0 * UPTIME_DAYS_MAX * u01(seed, key_of(node.name), 0xB007)
        self.off_at: float | None = None
        self.faults: list[Fault] = []
        self.counters: dict[str, float] | None = None
        self.xids: deque[str] | None = None
        self.subs: Any = None  # events.NodeSubscriptions, made on first POST
        self.sse: Any = None  # list of SSE queues
        self.hide_prefixes: tuple[str, ...] = ()

    # ---- state -------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.node.now()

    def powered(self) -> bool:
        return self.node.power_state != "Off"

    def os_state(self, t: float | None = None) -> str:
        t = self.now() if t is None else t
        ps = self.node.power_state
        if ps in ("Off", "PoweringOff"):
            return "down"
        if ps == "PoweringOn":
            return "booting"
        if any(f.kind == "os-hang" for f in self.faults):
            return "hung"
        if self.boot_at is not None and t - self.boot_at < OS_BOOT_SECONDS:
            return "booting"
        return "up"

    def conditions(self, t: float) -> Conditions:
        powered = self.powered()
        up_for = (t - self.boot_at) if (powered and self.boot_at is not None) else None
        off_for = (t - self.off_at) if (not powered and self.off_at is not None) else None
        if not self.faults:
            if powered and (up_for is None or up_for >= 180.0):
                return ON
            return Conditions(powered=powered, up_for=up_for, off_for=off_for)
        hot: set[int] = set()
        lost: set[int] = set()
        fans: set[int] = set()
        psus: set[int] = set()
        inlet = 0.0
        hung = False
        for f in self.faults:
            k = f.kind
            if k == "gpu-overtemp" and f.target is not None:
                hot.add(f.target)
            elif (k == "gpu-lost" or (k == "xid" and f.xid == 79)) and f.target is not None:
                lost.add(f.target)
            elif k == "fan" and f.target is not None:
                fans.add(f.target)
            elif k == "psu" and f.target is not None:
                psus.add(f.target)
            elif k == "inlet-overtemp":
                inlet = max(inlet, float(f.params.get("delta", 20.0)))
            elif k == "os-hang":
                hung = True
        return Conditions(powered=powered, up_for=up_for, off_for=off_for, inlet_offset=inlet,
                          hot_gpus=frozenset(hot), lost_gpus=frozenset(lost), failed_fans=frozenset(fans),
                          failed_psus=frozenset(psus), hung=hung)

    def has(self, kind: str, target: int | None = None) -> Fault | None:
        for f in self.faults:
            if f.kind == kind and (target is None or f.target == target):
                return f
        return None

    def gpu_faults(self, gpu: int) -> list[Fault]:
        return [f for f in self.faults if f.spec.target == "gpu" and f.target == gpu]

    def gpu_lost(self, gpu: int) -> bool:
        return any((f.kind == "gpu-lost" or (f.kind == "xid" and f.xid == 79)) and f.target == gpu
                   for f in self.faults)

    def gpu_health(self, gpu: int) -> str:
        worst = "OK"
        for f in self.gpu_faults(gpu):
            s = f.severity()
            if _RANK.get(s, 0) > _RANK[worst]:
                worst = s
        return worst

    def part_health(self, target: str, index: int) -> str:
        worst = "OK"
        for f in self.faults:
            if f.spec.target == target and f.target == index:
                s = f.severity()
                if _RANK.get(s, 0) > _RANK[worst]:
                    worst = s
        return worst

    def rollup(self) -> str:
        worst = "OK"
        for f in self.faults:
            if f.spec.target in ("bmc",) or f.kind == "os-hang":
                continue
            s = f.severity()
            if _RANK.get(s, 0) > _RANK[worst]:
                worst = s
        return worst

    # counters a fault leaves behind ------------------------------------------------------------------------
    def count(self, key: str) -> float:
        return (self.counters or {}).get(key, 0.0)

    def bump(self, key: str, by: float = 1.0) -> None:
        if self.counters is None:
            self.counters = {}
        self.counters[key] = self.counters.get(key, 0.0) + by

    def storm(self, kind: str, target: int | None, t: float, rate_per_hour: float) -> float:
        """Errors so far of an ongoing storm (dimm-ce, nvlink CRC): rate × time since the fault started."""
        f = self.has(kind, target)
        if f is None:
            return 0.0
        return max(0.0, (t - f.started) * rate_per_hour / 3600.0)

    def ecc(self, gpu: int, t: float) -> dict[str, int]:
        """The GPU's ECC and row-remap counters (volatile ones reset at boot)."""
        since = self.boot_at if self.boot_at is not None else 0.0
        reset_at = self.count(f"g{gpu}.reset_at")
        if reset_at and reset_at > since:  # a GPU reset zeroes the volatile counters, as a boot does
            since = reset_at
        m = self.model
        sbe_bg = m.counter(0xEC0 + gpu, t, 0.0, 2.0)
        sbe_vol_bg = m.counter(0xEC0 + gpu, t, max(0.0, since), 2.0)
        return {
            "sbe_vol": int(sbe_vol_bg + self.count(f"g{gpu}.sbe_vol")),
            "dbe_vol": int(self.count(f"g{gpu}.dbe_vol")),
            "sbe_agg": int(sbe_bg + self.count(f"g{gpu}.sbe_agg")),
            "dbe_agg": int(self.count(f"g{gpu}.dbe_agg")),
            "rr_unc": int(self.count(f"g{gpu}.rr_unc")),
            "rr_cor": int(self.count(f"g{gpu}.rr_cor")),
            "rr_pending": int(self.count(f"g{gpu}.rr_pending") > 0),
            "rr_failure": int(self.has("row-remap", gpu) is not None or self.count(f"g{gpu}.rr_fail") > 0),
        }

    def nvlink(self, gpu: int, t: float) -> dict[str, int]:
        extra = self.storm("nvlink", gpu, t, 36000.0)
        return {
            "crc_flit": int(self.count(f"g{gpu}.nvl_flit") + extra),
            "crc_data": int(self.count(f"g{gpu}.nvl_data") + extra * 0.25),
            "replay": int(self.count(f"g{gpu}.nvl_replay") + extra * 0.1),
            "recovery": int(self.count(f"g{gpu}.nvl_recovery") + (3 if self.has("nvlink", gpu) else 0)),
        }

    def dimm_ce(self, dimm: int, t: float) -> int:
        return int(self.count(f"d{dimm}.ce") + self.storm("dimm-ce", dimm, t, 7200.0))

    # ---- hooks: reads --------------------------------------------------------------------------------------
    def watches(self, path: str) -> bool:
        kind = self.flv.handlers.get(path)
        if kind is None:
            return False
        # these overlays only write a fault's Health/State: without a fault the captured bytes are the answer
        return bool(self.faults) or not (kind in _QUIET_WHEN_HEALTHY or path in self.flv.quiet_gpus)

    @property
    def hides_any(self) -> bool:
        return bool(self.hide_prefixes)

    def hidden(self, path: str) -> bool:
        # (captured EventService subscriptions are not hidden here: the Subscriptions overlay lists only this
        # node's own, and handle() answers their member URIs, so the core's fast path stays on)
        for p in self.hide_prefixes:
            if path == p or path.startswith(p + "/"):
                return True
        return False

    def overlay(self, path: str, doc: Doc) -> Doc | None:
        kind = self.flv.handlers.get(path)
        if kind is None:
            return doc
        from redfleet.sim import dyn_overlay

        fn = dyn_overlay.HANDLERS.get(kind)
        if fn is None:
            return doc
        t = self.now()
        try:
            return fn(self, path, doc, t, self.conditions(t))
        except Exception:  # never let a modelling bug break a GET
            log.exception("overlay of %s on %s failed", path, self.node.name)
            return doc

    def live_bytes(self, path: str) -> bytes | None:
        kind = self.flv.handlers.get(path)
        if kind not in LIVE_KINDS or self.faults:
            return None
        t = self.now()
        c = self.conditions(t)
        if c is not ON:
            return None  # booting, off or faulty: the overlay says what changes
        live = self.flv.live_doc(path, kind)
        if live is None:
            return None
        try:
            return live.render(self, path, t, c)
        except Exception:  # never let a modelling bug break a GET: the overlay path logs it
            return None

    def live_many(self, paths: tuple[str, ...]) -> list[bytes] | None:
        if self.faults:
            return None
        t = self.now()
        c = self.conditions(t)
        if c is not ON:
            return None
        flv = self.flv
        handlers, compiled = flv.handlers, flv.live
        out: list[bytes] = []
        try:
            for path in paths:
                live = compiled.get(path)
                if live is None:
                    kind = handlers.get(path)
                    if kind not in LIVE_KINDS:
                        return None
                    live = flv.live_doc(path, kind)
                    if live is None:
                        return None
                out.append(live.render(self, path, t, c))
        except Exception:  # never let a modelling bug break a GET: the overlay path logs it
            return None
        return out

    def takes(self, method: str, path: str) -> bool:
        hub = self.fd.events
        return hub is not None and hub.takes(self, method, path)

    async def handle(self, request: web.BaseRequest, path: str) -> web.StreamResponse | None:
        hub = self.fd.events
        if hub is None:
            return None
        return await hub.handle(self, request, path)

    # ---- hooks: changes ------------------------------------------------------------------------------------
    def on_power(self, old: str, new: str, reset_type: str | None) -> None:
        t = self.now()
        if new == "Off" and old != "Off":
            self.off_at = t
            self.boot_at = None
            self.xids = None  # the kernel log is per boot: the next boot starts an empty one
            self.fd.power_cycled(self, reset_type)
        elif new in ("PoweringOn", "On") and old in ("Off", "PoweringOff"):
            self.boot_at = t
            self.off_at = None
            if old == "PoweringOff":
                self.fd.power_cycled(self, reset_type)
        elif new == "On" and old == "PoweringOn":
            self.boot_at = t
        elif new == "On" and old == "On" and reset_type != "Nmi":  # a warm restart without a power transition
            self.boot_at = t
            self.xids = None
            self.fd.power_cycled(self, reset_type)
        if new in ("On", "Off") and old != new:
            mid, msg, args = power_message(self.flv.ix, self.flv.ix.system, new == "On")
            self.fd.publish(self, mid, msg, "OK", args, self.flv.ix.system, event_type="StatusChange")

    def on_manager_reset(self, down: bool) -> None:
        # only a real BMC restart (Manager.Reset) clears what a BMC reset clears; bmc-down is not a restart
        if down and "manager-reset" in getattr(self.node, "_down_reasons", ()):
            self.fd.bmc_reset(self)

    def on_log_entry(self, log_path: str, entry: Doc) -> None:
        mid = entry.get("MessageId")
        if mid == "Base.1.8.Success" and "power" in str(entry.get("Message", "")).lower():
            return  # the power event is published by on_power, in the BMC's own words
        origin = ((entry.get("Links") or {}).get("OriginOfCondition") or {}).get("@odata.id")
        self.fd.publish(self, str(mid) if mid else None, str(entry.get("Message") or ""),
                        str(entry.get("Severity") or "OK"), list(entry.get("MessageArgs") or []),
                        origin or entry.get("@odata.id"), event_type="Alert")

    def accepts_reset(self, reset_type: str) -> bool:
        if reset_type in ("GracefulShutdown", "GracefulRestart") and self.os_state() == "hung":
            return False  # ACPI requests reach nobody
        return True

    # ---- in-band -------------------------------------------------------------------------------------------
    def add_xid(self, code: int, gpu: GpuInfo) -> str:
        if self.xids is None:
            self.xids = deque(maxlen=64)
        pid = None
        if xid_info(code)[1] == "RESTART_APP":
            pid = 1000 + int(u01(self.model.seed, self.model.node, code, len(self.xids)) * 60000)
        line = xid_line(code, gpu.pci_bus, pid, "python3" if pid else None)
        stamp = max(0.0, self.now() - (self.boot_at or 0.0))
        self.xids.append(f"[{stamp:12.6f}] {line}")
        self.bump(f"g{gpu.index}.last_xid", code - self.count(f"g{gpu.index}.last_xid"))
        return line

    def summary(self) -> Doc:
        n = self.node
        return {
            "name": n.name,
            "flavor": n.flavor.name,
            "bmc_address": n.address,
            "host_address": n.host_address,
            "power_state": n.power_state,
            "os_state": self.os_state(),
            "bmc_down": bool(getattr(n, "down", False)),
            "lemon": self.fd.is_lemon(n.name),
            "gpus": len(self.flv.ix.gpus),
            "faults": [f.to_json() for f in self.faults],
        }


class FleetDyn(FleetDynamics):
    """The fleet-wide dynamic side: the fault engine, lemons, events hub, in-band listeners, scenario runner."""

    def __init__(self, fleet: SimFleet) -> None:
        self.fleet = fleet
        self.flavors: dict[str, FlavorDyn] = {}
        self.nodes: dict[str, NodeDyn] = {}
        self.faulty: set[str] = set()  # names of nodes with active faults (the ticker looks at these only)
        self.pending: list[tuple[float, str, Fault]] = []  # (sim time, node, fault) lemon refails and delayed
        self.legacy_faults: dict[str, list[Fault]] = {}  # faults on legacy-ipmi nodes (no NodeDyn of their own)
        self.history: deque[Doc] = deque(maxlen=500)
        cfg = fleet.config
        self.seed = int(getattr(cfg, "seed", 0) or 0)
        self.lemons: set[str] = set()
        self.lemon_fraction = 0.0
        self._parse_lemons(getattr(cfg, "lemons", None))
        self.events: EventHub | None = None
        self.inband: Any = None
        self.scenario: Any = None
        self._ticker: asyncio.Task[None] | None = None
        self._storm_logged: dict[tuple[str, int], float] = {}
        try:
            from redfleet.sim.events import EventHub

            self.events = EventHub(self)
        except ImportError:  # pragma: no cover
            self.events = None

    def _parse_lemons(self, spec: Any) -> None:
        if spec is None or spec == "":
            return
        if isinstance(spec, (int, float)):
            self.lemon_fraction = float(spec)
            return
        if isinstance(spec, (list, tuple, set, frozenset)):
            self.lemons = {str(s) for s in spec}
            return
        text = str(spec).strip()
        try:
            self.lemon_fraction = float(text)
        except ValueError:
            self.lemons = {s.strip() for s in text.split(",") if s.strip()}

    def is_lemon(self, name: str) -> bool:
        if name in self.lemons:
            return True
        return self.lemon_fraction > 0 and u01(self.seed, key_of(name), 0x1E40) < self.lemon_fraction

    # ---- hooks ---------------------------------------------------------------------------------------------
    def flavor_dyn(self, node: SimNode) -> FlavorDyn:
        key = f"{node.flavor.name}:{node.flavor.mockup}"
        fl = self.flavors.get(key)
        if fl is None:
            fl = FlavorDyn(node.facts)
            self.flavors[key] = fl
        return fl

    def node_dynamics(self, node: SimNode) -> NodeDynamics:
        nd = NodeDyn(self, node, self.flavor_dyn(node))
        self.nodes[node.name] = nd
        return nd

    async def start(self, fleet: SimFleet) -> None:
        loop = asyncio.get_running_loop()
        self._ticker = loop.create_task(self._tick_loop())
        if getattr(fleet.config, "inband", False):
            from redfleet.sim.inband import InbandServer

            self.inband = InbandServer(self, port=int(getattr(fleet.config, "inband_port", 9400)))
            await self.inband.start()
        scen = getattr(fleet.config, "scenario", None)
        if scen:
            from redfleet.sim.scenario import ScenarioRunner, load_scenario

            self.scenario = ScenarioRunner(self, load_scenario(scen))
            self.scenario.start()

    async def stop(self) -> None:
        if self.scenario is not None:
            self.scenario.stop()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ticker
            self._ticker = None
        if self.inband is not None:
            await self.inband.stop()
            self.inband = None
        if self.events is not None:
            await self.events.close()

    # ---- lookup --------------------------------------------------------------------------------------------
    def node(self, name: str) -> NodeDyn:
        nd = self.nodes.get(name)
        if nd is None:
            raise UserError(f"no simulated node named {name!r}", 404)
        return nd

    def now(self) -> float:
        return (time.monotonic() - self.fleet.started_at) * self.fleet.config.time_scale

    def all_faults(self) -> list[Doc]:
        out: list[Doc] = []
        for name in sorted(self.faulty):
            nd = self.nodes.get(name)
            if nd:
                out.extend(f.to_json() for f in nd.faults)
        for name in sorted(self.legacy_faults):
            out.extend(f.to_json() for f in self.legacy_faults[name])
        return out

    def pending_json(self) -> list[Doc]:
        return [{**f.to_json(), "at": round(at, 3), "state": "pending"} for at, _n, f in sorted(
            self.pending, key=lambda x: x[0])]

    # ---- legacy IPMI nodes -----------------------------------------------------------------------------------
    # They have no Redfish tree and no NodeDyn: their own model (sim/ipmi.py) shows a fault in its sensors and SEL.
    # The engine keeps the Fault records so the control API and CLI treat every node alike.
    def _legacy(self, name: str) -> Any:
        ipmi = getattr(self.fleet, "ipmi", None)
        if ipmi is None or name in self.nodes:
            return None
        try:
            return ipmi.node(name)
        except KeyError:
            return None

    def _inject_legacy(self, node: Any, kind: str, target: int | None, persistent: bool) -> Fault:
        if kind not in CATALOG:
            raise UserError(f"unknown fault kind {kind!r}; known: {', '.join(CATALOG)}")
        try:
            node.inject(kind, target=target)
        except ValueError as exc:
            raise UserError(f"{node.name} (legacy-ipmi): {exc}") from None
        fault = Fault(kind, node.name, target=target, persistent=persistent, started=self.now())
        self.legacy_faults.setdefault(node.name, []).append(fault)
        return fault

    def _clear_legacy(self, node: Any, fault_id: int | None, kind: str | None) -> list[Fault]:
        have = self.legacy_faults.get(node.name, [])
        gone = [f for f in have if (fault_id is None or f.id == fault_id) and (kind is None or f.kind == kind)]
        if fault_id is not None and not gone:
            raise UserError(f"{node.name} has no fault {fault_id}", 404)
        # The legacy model clears all its faults at once; the ones not asked for are put back.
        node.clear()
        keep = [f for f in have if f not in gone]
        for f in keep:
            node.inject(f.kind, target=f.target)
        self.legacy_faults[node.name] = keep
        return gone

    # ---- the fault engine ----------------------------------------------------------------------------------
    def inject(self, name: str, kind: str, gpu: int | None = None, xid: int | None = None,
               persistent: bool = False, target: int | None = None, duration: Any = None,
               params: dict[str, Any] | None = None, recurrence: int = 0) -> Fault:
        """Make a fault happen now on node ``name``. Raises :class:`UserError` on a bad request."""
        legacy = self._legacy(name)
        if legacy is not None:
            return self._inject_legacy(legacy, kind, target if target is not None else gpu, persistent)
        nd = self.node(name)
        spec = CATALOG.get(kind)
        if spec is None:
            raise UserError(f"unknown fault kind {kind!r}; known: {', '.join(CATALOG)}")
        if target is None:
            target = gpu
        flv = nd.flv
        if spec.target == "gpu":
            if not flv.ix.gpus:
                raise UserError(f"{name} ({nd.node.flavor.name}) has no GPU; {kind} needs one")
            target = 0 if target is None else int(target)
            if not 0 <= target < len(flv.ix.gpus):
                raise UserError(f"{name} has GPUs 0..{len(flv.ix.gpus) - 1}; no GPU {target}")
        elif spec.target in ("fan", "psu", "dimm", "drive"):
            n = flv.part_count(spec.target)
            if n == 0:
                raise UserError(f"{name} ({nd.node.flavor.name}) shows no {spec.target} to fail")
            target = 0 if target is None else int(target)
            if not 0 <= target < n:
                raise UserError(f"{name} has {spec.target}s 0..{n - 1}; no {spec.target} {target}")
        else:
            target = None
        if kind == "xid":
            xid = int(xid) if xid is not None else int(spec.default_xid or 31)
        elif spec.default_xid is not None:
            xid = spec.default_xid
        else:
            xid = None
        t = self.now()
        dur = parse_duration(duration) if duration not in (None, "", 0) else 0.0
        f = Fault(kind=kind, node=name, target=target, xid=xid, persistent=bool(persistent), started=t,
                  until=(t + dur) if dur > 0 else None, params=dict(params or {}), recurrence=recurrence)
        # the same fault on the same part twice is one fault (a repeated Xid still logs its line)
        dup = next((g for g in nd.faults if g.kind == kind and g.target == target and g.xid == xid), None)
        if dup is None:
            nd.faults.append(f)
            self.faulty.add(name)
        else:
            dup.persistent = dup.persistent or f.persistent
            dup.until = f.until if f.until is not None else dup.until
            f = dup
        self._apply(nd, f, t)
        self.history.append({"t": round(t, 3), "event": "inject", **f.to_json()})
        return f

    def _part(self, nd: NodeDyn, f: Fault) -> Part:
        ix = nd.flv.ix
        tgt = f.spec.target
        i = f.target or 0
        if tgt == "gpu" and ix.gpus:
            g = ix.gpus[i]
            return Part(g.id, i + 1, g.chassis or g.uri)
        if tgt == "fan" and ix.fans:
            uri, _member, name = ix.fans[i]
            return Part(name, i + 1, uri)
        if tgt == "psu":
            legacy = [p for p in ix.psus if p[1] >= 0]
            sub = [p for p in ix.psus if p[1] < 0]
            src = legacy or sub
            uri, _m, name = src[i] if i < len(src) else (ix.chassis or "", -1, f"PSU {i + 1}")
            if name in ("HpeServerPowerSupply", "nil", ""):
                name = f"Power Supply {i + 1}"
            return Part(name, i + 1, uri)
        if tgt == "dimm" and ix.dimms:
            uri = ix.dimms[i]
            return Part(uri.rsplit("/", 1)[-1], i + 1, uri)
        if tgt == "drive":
            if i < len(ix.drives):
                uri = ix.drives[i]
                return Part(uri.rsplit("/", 1)[-1], i + 1, uri)
            return Part(f"nvme{i}", i + 1, None)
        if f.kind == "inlet-overtemp":
            name = ix.inlet_sensors[0] if ix.inlet_sensors else "Inlet Temp"
            return Part(name, 1, ix.chassis)
        return Part(nd.node.name, 1, ix.system)

    def _apply(self, nd: NodeDyn, f: Fault, t: float) -> None:
        """The fault's side effects at the moment it happens: logs, counters, Xid lines, BMC behaviour."""
        node = nd.node
        kind = f.kind
        ix = nd.flv.ix
        part = self._part(nd, f)
        gpu = ix.gpus[f.target] if (f.spec.target == "gpu" and f.target is not None and ix.gpus) else None
        # counters
        if gpu is not None:
            g = gpu.index
            if kind == "ecc-dbe":
                n = int(f.params.get("count", 1))
                for key in ("dbe_vol", "dbe_agg"):
                    nd.bump(f"g{g}.{key}", n)
                for key in ("sbe_vol", "sbe_agg"):
                    nd.bump(f"g{g}.{key}", 8 * n)
                nd.bump(f"g{g}.rr_pending", 1)
            elif kind == "row-remap":
                nd.bump(f"g{g}.rr_fail", 1)
                nd.bump(f"g{g}.dbe_agg", 1)
                nd.bump(f"g{g}.dbe_vol", 1)
            # kernel log
            codes: list[int] = []
            if kind == "ecc-dbe":
                codes = [48, 63, 94]
            elif kind == "row-remap":
                codes = [48, 64, 95]
            elif kind in ("xid", "gpu-lost", "nvlink") and f.xid is not None:
                codes = [f.xid]
            if codes and nd.os_state(t) != "down":
                for c in codes:
                    nd.add_xid(c, gpu)
                if kind in ("row-remap", "gpu-lost") or (kind == "xid" and f.xid in (79, 95, 119, 120)):
                    nd.add_xid(154, gpu)
            # the HMC's per-GPU XID log
            xl = ix.xid_logs.get(g)
            if xl is not None and codes:
                for c in codes:
                    w = hgx_xid_write(part, c, gpu.chassis, int(nd.count(f"g{g}.xidseq")) + 1)
                    nd.bump(f"g{g}.xidseq", 1)
                    self._write(nd, xl.uri, w.message, w.severity, w.message_id, w.extra)
            if kind == "gpu-lost" or (kind == "xid" and f.xid == 79):
                self._refresh_hidden(nd)
        # log entries in the BMC's own words
        if "sel" in f.spec.surfaces:
            for w in fault_writes(ix, f, part, True):
                target = ix.logs.get(w.role)
                if target is None:
                    continue
                self._write(nd, target.uri, w.message, w.severity, w.message_id, w.extra)
        # BMC behaviour
        if kind == "bmc-down":
            node.set_down(True, "fault")
        elif kind == "bmc-slow":
            from redfleet.sim.latency import LatencySpec

            node.slow = LatencySpec.parse(str(f.params.get("latency", "uniform:1500ms-4000ms")))
        elif kind == "bmc-throttle":
            status = int(f.params.get("status", 429))
            secs = (f.until - t) if f.until is not None else 86400.0 * 365
            node.throttle(status, secs, float(f.params.get("fraction", 0.5)))
        elif kind == "session-refuse" and hasattr(node, "refuse_sessions"):
            node.refuse_sessions = True
        elif kind == "bad-json" and hasattr(node, "bad_json"):
            node.bad_json = float(f.params.get("fraction", 1.0))
        elif kind == "cert-change":
            self.fleet.rotate_certificate(node.name)
            # a certificate change is an event, not a state: it stays listed until cleared
        # events for faults with no log entry of their own
        if "sel" not in f.spec.surfaces and kind not in ("bmc-down",):
            pass

    def _write(self, nd: NodeDyn, log_path: str, message: str, severity: str, message_id: str | None,
               extra: Doc) -> None:
        try:
            extra = dict(extra)
            for t in nd.flv.ix.logs.values():
                if t.uri == log_path:
                    extra.setdefault("@odata.type", t.entry_odata_type)
                    break
            nd.node.append_log(message, severity=severity, message_id=message_id, log=log_path, extra=extra)
        except Exception:
            log.exception("could not append a log entry on %s", nd.node.name)

    def _refresh_hidden(self, nd: NodeDyn) -> None:
        prefixes: list[str] = []
        for g in nd.flv.ix.gpus:
            if not g.baseboard and nd.gpu_lost(g.index):
                prefixes.extend(g.prefixes)
        nd.hide_prefixes = tuple(prefixes)
        for p in prefixes:
            parent = p.rsplit("/", 1)[0]
            nd.node.bump(parent)

    def clear(self, name: str, fault_id: int | None = None, kind: str | None = None, repair: bool = True,
              cause: str = "clear") -> list[Fault]:
        """Remove faults from a node (all, one id, or one kind). ``repair`` lets a lemon schedule a refail."""
        legacy = self._legacy(name)
        if legacy is not None:
            return self._clear_legacy(legacy, fault_id, kind)
        nd = self.node(name)
        gone = [f for f in nd.faults if (fault_id is None or f.id == fault_id) and (kind is None or f.kind == kind)]
        if fault_id is not None and not gone:
            raise UserError(f"{name} has no fault {fault_id}", 404)
        if fault_id is None and kind is None:
            # a plain clear also cancels what was waiting to come back on this node
            self.pending = [p for p in self.pending if p[1] != name]
        self._remove(nd, gone, repair=repair, cause=cause)
        return gone

    def _remove(self, nd: NodeDyn, gone: list[Fault], repair: bool, cause: str) -> None:
        if not gone:
            return
        t = self.now()
        node = nd.node
        ix = nd.flv.ix
        ids = {f.id for f in gone}
        nd.faults = [f for f in nd.faults if f.id not in ids]
        if not nd.faults:
            self.faulty.discard(node.name)
        for f in gone:
            # what a storm left behind stays in the counters
            if f.kind == "dimm-ce" and f.target is not None:
                nd.bump(f"d{f.target}.ce", (t - f.started) * 7200.0 / 3600.0)
            if f.kind == "nvlink" and f.target is not None:
                extra = (t - f.started) * 36000.0 / 3600.0
                nd.bump(f"g{f.target}.nvl_flit", extra)
                nd.bump(f"g{f.target}.nvl_data", extra * 0.25)
                nd.bump(f"g{f.target}.nvl_replay", extra * 0.1)
                nd.bump(f"g{f.target}.nvl_recovery", 3)
            if f.kind == "bmc-down" and not any(g.kind == "bmc-down" for g in nd.faults):
                node.set_down(False, "fault")
            elif f.kind == "bmc-slow" and not any(g.kind == "bmc-slow" for g in nd.faults):
                node.slow = None
            elif f.kind == "bmc-throttle" and not any(g.kind == "bmc-throttle" for g in nd.faults):
                node.throttle(429, 0, 1.0)
            elif f.kind == "session-refuse" and hasattr(node, "refuse_sessions"):
                node.refuse_sessions = False
            elif f.kind == "bad-json" and hasattr(node, "bad_json"):
                node.bad_json = None
            if "sel" in f.spec.surfaces:
                part = self._part(nd, f)
                for w in fault_writes(ix, f, part, False):
                    target = ix.logs.get(w.role)
                    if target is not None:
                        self._write(nd, target.uri, w.message, w.severity, w.message_id, w.extra)
            self.history.append({"t": round(t, 3), "event": "clear", "cause": cause, **f.to_json()})
            if repair and self.is_lemon(node.name) and not f.spec.testing and f.spec.target != "bmc":
                delay = LEMON_REFAIL_MIN + (LEMON_REFAIL_MAX - LEMON_REFAIL_MIN) * u01(
                    self.seed, key_of(node.name), f.id, f.recurrence, 0x1E41)
                again = Fault(kind=f.kind, node=node.name, target=f.target, xid=f.xid, persistent=f.persistent,
                              params=dict(f.params), recurrence=f.recurrence + 1)
                self.pending.append((t + delay, node.name, again))
        self._refresh_hidden(nd)
        node.bump(ix.system or "")

    def power_cycled(self, nd: NodeDyn, reset_type: str | None) -> None:
        """The host lost power (or was reset): faults a power cycle clears go, volatile counters reset."""
        if nd.counters:
            for k in list(nd.counters):
                if k.endswith((".sbe_vol", ".dbe_vol")):
                    del nd.counters[k]
                elif k.endswith(".rr_pending"):
                    # a pending remap is applied at reset: it becomes a remapped row
                    g = k.split(".", 1)[0]
                    nd.bump(f"{g}.rr_unc", nd.counters.pop(k))
        gone = [f for f in nd.faults if f.clears_on_power_cycle]
        self._remove(nd, gone, repair=True, cause=f"power-cycle ({reset_type or 'power'})")

    # ---- in-band remediation: what the node's agent can do from inside the OS --------------------------------
    def _inband_ready(self, name: str, what: str) -> NodeDyn:
        if self._legacy(name) is not None:
            raise SimError(f"{name} is a legacy-ipmi node: its host side is not simulated, so it cannot {what}")
        nd = self.node(name)
        state = nd.os_state()
        if state != "up":
            # a hung OS runs nothing; a node that is off or still booting has no agent running yet
            raise SimError(f"{name}: the host OS is {state}; it cannot {what}")
        return nd

    def gpu_reset(self, name: str, gpu: int) -> list[Fault]:
        """``nvidia-smi --gpu-reset -i GPU`` on the node: the GPU's faults that a reset clears go (a lemon's come
        back later, as after any repair), its volatile ECC counters restart and a pending row remap is applied.
        Returns the faults cleared. Raises :class:`SimError` when the OS is not up or the GPU is off the bus."""
        nd = self._inband_ready(name, f"reset GPU {gpu}")
        ix = nd.flv.ix
        if isinstance(gpu, bool) or not isinstance(gpu, int):
            raise UserError(f"gpu must be a GPU index, not {gpu!r}")
        if not ix.gpus:
            raise UserError(f"{name} ({nd.node.flavor.name}) has no GPU to reset")
        if not 0 <= gpu < len(ix.gpus):
            raise UserError(f"{name} has GPUs 0..{len(ix.gpus) - 1}; no GPU {gpu}")
        if nd.gpu_lost(gpu):
            raise SimError(f"{name}: GPU {gpu} has fallen off the bus; a reset cannot reach it (the node needs a "
                           "power cycle)")
        t = self.now()
        if nd.counters:
            for key in (f"g{gpu}.sbe_vol", f"g{gpu}.dbe_vol"):
                nd.counters.pop(key, None)
            pending = nd.counters.pop(f"g{gpu}.rr_pending", 0.0)
            if pending:  # the remap a DBE left pending takes effect at the reset
                nd.bump(f"g{gpu}.rr_unc", pending)
        nd.bump(f"g{gpu}.reset_at", t - nd.count(f"g{gpu}.reset_at"))
        gone = [f for f in nd.gpu_faults(gpu) if f.clears_on_gpu_reset]
        info = ix.gpus[gpu]
        # the BMC (the HMC on HGX boards) sees the GPU reset and logs it; no registry message fits, so plain text
        target = ix.logs.get("hgx") or ix.logs.get("event") or ix.logs.get("sel")
        if target is not None:
            self._write(nd, target.uri, f"{info.id} (GPU {gpu}) was reset from the host.", "OK", None,
                        {"Links": {"OriginOfCondition": {"@odata.id": info.chassis or info.uri}}})
        self.history.append({"t": round(t, 3), "event": "gpu-reset", "node": name, "gpu": gpu,
                             "cleared": [f.id for f in gone]})
        self._remove(nd, gone, repair=True, cause=f"gpu-reset (GPU {gpu})")
        nd.node.bump(info.uri)
        return gone

    def os_reboot(self, name: str) -> None:
        """``systemctl reboot`` on the node: the same path as a GracefulRestart through the BMC (the OS shuts
        down, the host power-cycles, faults a power cycle clears go). A hung OS cannot reboot itself: SimError."""
        nd = self._inband_ready(name, "reboot itself")
        t = self.now()
        self.history.append({"t": round(t, 3), "event": "os-reboot", "node": name})
        nd.node.reset("GracefulRestart")

    def bmc_reset(self, nd: NodeDyn) -> None:
        gone = [f for f in nd.faults if f.clears_on_bmc_reset]
        if gone:
            self._remove(nd, gone, repair=True, cause="bmc-reset")

    # ---- events --------------------------------------------------------------------------------------------
    def publish(self, nd: NodeDyn, message_id: str | None, message: str, severity: str, args: list[Any],
                origin: str | None, event_type: str = "Alert") -> None:
        if self.events is not None:
            self.events.publish(nd, message_id, message, severity, args, origin, event_type)

    # ---- time ----------------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Timed work: faults whose duration ran out, lemons failing again, storm log lines."""
        t = self.now()
        if self.pending:
            due = [p for p in self.pending if p[0] <= t]
            if due:
                self.pending = [p for p in self.pending if p[0] > t]
                for _at, name, f in due:
                    with contextlib.suppress(UserError):
                        self.inject(name, f.kind, target=f.target, xid=f.xid, persistent=f.persistent,
                                    params=f.params, recurrence=f.recurrence)
        for name in list(self.faulty):
            nd = self.nodes.get(name)
            if nd is None:
                continue
            expired = [f for f in nd.faults if f.until is not None and f.until <= t]
            if expired:
                self._remove(nd, expired, repair=False, cause="duration")
            for f in nd.faults:
                if f.kind == "dimm-ce" and f.target is not None:
                    key = (name, f.id)
                    last = self._storm_logged.get(key, f.started)
                    if t - last >= STORM_LOG_EVERY:
                        self._storm_logged[key] = t
                        part = self._part(nd, f)
                        for w in fault_writes(nd.flv.ix, f, part, True)[:1]:
                            target = nd.flv.ix.logs.get(w.role)
                            if target is not None:
                                self._write(nd, target.uri, w.message, w.severity, w.message_id, w.extra)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2 if self.fleet.config.time_scale > 1 else 1.0)
            try:
                self.tick()
            except Exception:
                log.exception("dynamics tick failed")

