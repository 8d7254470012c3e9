"""What the dynamic layer needs to know about a flavor, found once per template from the resources themselves.

Nothing here is a list of known models: GPUs are Processors with ``ProcessorType: GPU`` (or, failing that, PCIe
devices that say they are GPUs), log services are found by their Ids, the event service's SSE URI and version are
read from it, and the "dialect" of log messages follows the vendor the service root names. The index is shared by
every node of a flavor, so its size does not grow with the fleet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from redfleet.sim.telemetry import classify

_NAT = re.compile(r"(\d+)")


def natural(s: str) -> list[Any]:
    return [int(p) if p.isdigit() else p.lower() for p in _NAT.split(s)]


def norm(uri: str) -> str:
    """Normalise a URI for lookups: no trailing slash, no fragment, case kept (HPE's lower-case links differ only in
    case, so lookups go through ``FlavorIndex.get`` which also tries a case-folded map)."""
    uri = uri.split("#", 1)[0]
    if len(uri) > 1 and uri.endswith("/"):
        uri = uri[:-1]
    return uri


def odata_type(res: Mapping[str, Any]) -> str:
    """'#Thermal.v1_7_1.Thermal' -> 'Thermal'."""
    t = res.get("@odata.type") or ""
    if not isinstance(t, str):
        return ""
    return t.rsplit(".", 1)[-1].lstrip("#")


def odata_version(res: Mapping[str, Any]) -> tuple[int, int, int]:
    t = res.get("@odata.type") or ""
    m = re.search(r"\.v(\d+)_(\d+)_(\d+)\.", t if isinstance(t, str) else "")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else (1, 0, 0)


@dataclass
class GpuInfo:
    index: int
    id: str
    uri: str  # the Processor (or PCIeDevice) resource
    model: str = "NVIDIA H100 80GB HBM3"
    serial: str = ""
    uuid: str = ""
    tdp: float = 700.0
    pci_bus: int = 0
    #: resources that belong to this GPU alone (its Processor, its own Chassis, its PCIe device)
    prefixes: list[str] = field(default_factory=list)
    #: True when the GPU is seen by a management controller on the baseboard (HGX HMC): when it is lost it stays
    #: listed, Absent; False when the BMC sees it through the host's PCIe enumeration: it disappears
    baseboard: bool = False
    token: re.Pattern[str] | None = None
    chassis: str | None = None
    memory_metrics: str | None = None
    port_metrics: list[str] = field(default_factory=list)


@dataclass
class LogTarget:
    uri: str  # the LogService
    entries: str  # its Entries collection
    id: str
    entry_type: str = "Event"  # what its captured entries say they are (SEL, Event, Oem)
    entry_odata_type: str = "#LogEntry.v1_9_0.LogEntry"
    sample: dict[str, Any] | None = None


# HGX H100 8-GPU baseboard bus numbers as a DGX H100 reports them
_HGX_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


class FlavorIndex:
    """Facts about one template. Build with ``FlavorIndex.build(resources)`` where resources maps URI -> body."""

    def __init__(self, get: Callable[[str], dict[str, Any] | None], keys: Iterable[str],
                 find: Callable[[str], str | None] | None = None) -> None:
        self._get = get
        self._keys = {norm(k) for k in keys}
        self._find = find
        self._fold: dict[str, str] = {}
        if find is None:
            self._fold = {k.lower(): k for k in self._keys}
        self.dialect = "dmtf"
        self.gpus: list[GpuInfo] = []
        self.system: str | None = None
        self.manager: str | None = None
        self.chassis: str | None = None
        self.logs: dict[str, LogTarget] = {}
        self.xid_logs: dict[int, LogTarget] = {}
        self.event_service: str | None = None
        self.subscriptions: str | None = None
        self.sse_uri: str | None = None
        self.event_version: tuple[int, int, int] = (1, 0, 0)
        self.event_types: list[str] = []
        self.delivery_retry_attempts = 3
        self.delivery_retry_interval = 30.0
        self.fans: list[tuple[str, int, str]] = []  # (resource uri, member index or -1, name)
        self.psus: list[tuple[str, int, str]] = []
        self.dimms: list[str] = []
        self.drives: list[str] = []
        self.metric_reports: list[str] = []
        self.inlet_sensors: list[str] = []
        self.registries: set[str] = set()
        self._sensor_cache: dict[str, tuple[str, int | None, int]] = {}

    # -- lookups --
    def get(self, uri: str) -> dict[str, Any] | None:
        if not uri:
            return None
        r = self._get(self.canonical(uri))
        return r if isinstance(r, dict) else None

    def uris(self) -> Iterable[str]:
        return self._keys

    def canonical(self, uri: str) -> str:
        u = norm(uri)
        if self._find is not None:
            return self._find(u) or u
        if u in self._keys:
            return u
        return self._fold.get(u.lower(), u)

    def members(self, uri: str | None) -> list[str]:
        if not uri:
            return []
        col = self.get(uri)
        if not col:
            return []
        out = []
        for m in col.get("Members") or []:
            if isinstance(m, dict) and isinstance(m.get("@odata.id"), str):
                out.append(self.canonical(m["@odata.id"]))
        return out

    # -- build --
    @classmethod
    def build(cls, resources: Mapping[str, dict[str, Any]]) -> FlavorIndex:
        """From a URI -> body mapping (a mockup read with :func:`load_tree`)."""
        normed = {norm(k): v for k, v in resources.items()}
        return cls(normed.get, normed.keys())._build()

    @classmethod
    def from_template(cls, tpl: Any) -> FlavorIndex:
        """From the core's :class:`~redfleet.sim.template.Template` (parses what it reads, caches nothing)."""
        import orjson

        def get(path: str) -> dict[str, Any] | None:
            res = tpl.resources.get(path)
            if res is None or not res.ctype.startswith("application/json"):
                return None
            if res.doc is not None:
                return res.doc
            try:
                value = orjson.loads(res.body)
            except orjson.JSONDecodeError:
                return None
            return value if isinstance(value, dict) else None

        return cls(get, tpl.resources.keys(), tpl.find)._build()

    def _build(self) -> FlavorIndex:
        root = self.get("/redfish/v1") or {}
        self._find_dialect(root)
        systems = self.members((root.get("Systems") or {}).get("@odata.id"))
        managers = self.members((root.get("Managers") or {}).get("@odata.id"))
        chassis = self.members((root.get("Chassis") or {}).get("@odata.id"))
        self.system = self._pick_host(systems)
        self.manager = managers[0] if managers else None
        self.chassis = self._pick_chassis(chassis)
        self._find_gpus(systems, chassis)
        self._find_logs(systems, managers, chassis)
        self._find_events(root)
        self._find_parts(systems, chassis)
        tele = self.get((root.get("TelemetryService") or {}).get("@odata.id") or "/redfish/v1/TelemetryService")
        if tele:
            self.metric_reports = self.members((tele.get("MetricReports") or {}).get("@odata.id"))
        return self

    def _find_dialect(self, root: Mapping[str, Any]) -> None:
        regs = self.members((root.get("Registries") or {}).get("@odata.id"))
        self.registries = {u.rsplit("/", 1)[-1].split(".")[0] for u in regs}
        vendor = str(root.get("Vendor") or "").lower()
        oem = {k.lower() for k in (root.get("Oem") or {})}
        if vendor == "dell" or "dell" in oem:
            self.dialect = "dell"
        elif vendor == "hpe" or "hpe" in oem:
            self.dialect = "hpe"
        elif "supermicro" in oem:
            self.dialect = "smc"
        elif vendor == "ami" or "ami" in oem:
            self.dialect = "ami"
        elif "OpenBMC" in self.registries:
            self.dialect = "openbmc"

    def _pick_host(self, systems: list[str]) -> str | None:
        best, score = None, -1
        for u in systems:
            r = self.get(u) or {}
            s = 0
            if "PowerState" in r:
                s += 2
            if "#ComputerSystem.Reset" in (r.get("Actions") or {}):
                s += 2
            if r.get("SystemType") == "Physical":
                s += 1
            if "baseboard" in u.lower() or "hgx" in u.lower():
                s -= 3
            if s > score:
                best, score = u, s
        return best

    def _pick_chassis(self, chassis: list[str]) -> str | None:
        best, score = None, -1
        for u in chassis:
            r = self.get(u) or {}
            s = 0
            if r.get("ChassisType") in ("RackMount", "Rack", "StandAlone", "Enclosure", "Tower"):
                s += 2
            if r.get("Thermal") or r.get("ThermalSubsystem"):
                s += 2
            if r.get("Power") or r.get("PowerSubsystem"):
                s += 1
            if "hgx" in u.lower() or "erot" in u.lower():
                s -= 3
            if s > score:
                best, score = u, s
        return best

    def _find_gpus(self, systems: list[str], chassis: list[str]) -> None:
        found: list[GpuInfo] = []
        for sysu in systems:
            r = self.get(sysu) or {}
            for pu in self.members((r.get("Processors") or {}).get("@odata.id")):
                p = self.get(pu) or {}
                if str(p.get("ProcessorType", "")).upper() != "GPU":
                    continue
                found.append(self._gpu_from(pu, p))
        if not found:
            for ch in chassis:
                r = self.get(ch) or {}
                for du in self.members((r.get("PCIeDevices") or {}).get("@odata.id")):
                    d = self.get(du) or {}
                    ident = f"{d.get('Id', '')} {d.get('Name', '')}"
                    smc_gpu = "GPUSlot" in str(d.get("Oem") or {})
                    if re.match(r"^GPU\d*\b", str(d.get("Id", ""))) or smc_gpu or re.search(r"\bGPU\b", ident):
                        found.append(self._gpu_from(du, d))
        found.sort(key=lambda g: natural(g.id))
        for i, g in enumerate(found):
            g.index = i
            if not g.pci_bus:
                g.pci_bus = _HGX_BUSES[i % len(_HGX_BUSES)] + (i // len(_HGX_BUSES))
            if not g.uuid:
                g.uuid = ""
        self.gpus = found

    def _gpu_from(self, uri: str, p: Mapping[str, Any]) -> GpuInfo:
        gid = str(p.get("Id") or uri.rsplit("/", 1)[-1])
        g = GpuInfo(index=0, id=gid, uri=uri, model=str(p.get("Model") or "NVIDIA H100 80GB HBM3"),
                    serial=str(p.get("SerialNumber") or ""), uuid=str(p.get("UUID") or ""))
        g.prefixes.append(uri)
        links = p.get("Links") or {}
        ch = links.get("Chassis")
        if isinstance(ch, dict) and isinstance(ch.get("@odata.id"), str):
            chu = self.canonical(ch["@odata.id"])
            # a chassis of the GPU's own (HGX_GPU_SXM_1) belongs to it; the server's chassis does not
            if gid.lower() in chu.lower().rsplit("/", 1)[-1].lower():
                g.chassis = chu
                g.prefixes.append(chu)
                g.baseboard = True
        pcie = links.get("PCIeDevice")
        if isinstance(pcie, dict) and isinstance(pcie.get("@odata.id"), str):
            pu = self.canonical(pcie["@odata.id"])
            if pu not in g.prefixes and not pu.startswith(tuple(g.prefixes)):
                g.prefixes.append(pu)
            m = re.search(r"/PCIeDevices/(\d+)-\d+$", pu)
            if m:
                g.pci_bus = int(m.group(1))
        mm = ((p.get("MemorySummary") or {}).get("Metrics") or {}).get("@odata.id")
        if isinstance(mm, str):
            g.memory_metrics = self.canonical(mm)
        ports = self.members((p.get("Ports") or {}).get("@odata.id"))
        for port in ports:
            pr = self.get(port) or {}
            met = (pr.get("Metrics") or {}).get("@odata.id")
            if isinstance(met, str):
                g.port_metrics.append(self.canonical(met))
        model = g.model.lower()
        env = self.get(((p.get("EnvironmentMetrics") or {}).get("@odata.id")) or "") or {}
        plw = env.get("PowerLimitWatts")
        limit = plw.get("SetPoint") if isinstance(plw, dict) else None
        if isinstance(limit, (int, float)) and limit > 0:
            g.tdp = float(limit)
        elif "pcie" in model:
            g.tdp = 350.0
        esc = re.escape(gid)
        g.token = re.compile(rf"(?<![A-Za-z0-9]){esc}(?![0-9])", re.I)
        return g

    def _find_logs(self, systems: list[str], managers: list[str], chassis: list[str]) -> None:
        services: list[tuple[str, str, LogTarget]] = []  # (owner kind, owner uri, target)
        for kind, owners in (("system", systems), ("manager", managers), ("chassis", chassis)):
            for o in owners:
                r = self.get(o) or {}
                for lu in self.members((r.get("LogServices") or {}).get("@odata.id")):
                    ls = self.get(lu) or {}
                    ent = (ls.get("Entries") or {}).get("@odata.id")
                    if not isinstance(ent, str):
                        continue
                    t = LogTarget(uri=lu, entries=self.canonical(ent), id=str(ls.get("Id") or lu.rsplit("/", 1)[-1]))
                    col = self.get(ent) or {}
                    mem = col.get("Members") or []
                    if mem and isinstance(mem[0], dict):
                        t.sample = mem[-1]
                        t.entry_type = str(mem[-1].get("EntryType") or "Event")
                        t.entry_odata_type = str(mem[-1].get("@odata.type") or t.entry_odata_type)
                    else:
                        t.entry_type = "SEL" if t.id.lower() == "sel" else "Event"
                    services.append((kind, o, t))
        host = self.system
        for kind, owner, t in services:
            low = t.id.lower()
            if kind == "chassis" and low == "xid":
                for g in self.gpus:
                    if g.chassis and owner == g.chassis:
                        self.xid_logs[g.index] = t
                continue
            if kind == "system" and owner != host and ("baseboard" in owner.lower() or "hgx" in owner.lower()):
                if low == "eventlog":
                    self.logs.setdefault("hgx", t)
                continue
            # "sel": where hardware faults are recorded; "event": the Redfish event log with registry MessageIds
            if low in ("sel", "iml", "log1") or (low == "eventlog" and self.dialect == "openbmc"):
                if "sel" not in self.logs or (kind == "system" and low != "sel" and self.dialect != "dell"):
                    self.logs["sel"] = t
            if low in ("lclog", "eventlog", "event") and kind in ("manager", "system"):
                self.logs.setdefault("event", t)
            if low == "log" and kind == "manager":
                self.logs.setdefault("event", t)
        if "sel" not in self.logs and "event" in self.logs:
            self.logs["sel"] = self.logs["event"]
        if "event" not in self.logs and "sel" in self.logs:
            self.logs["event"] = self.logs["sel"]

    def _find_events(self, root: Mapping[str, Any]) -> None:
        es = (root.get("EventService") or {}).get("@odata.id")
        if not isinstance(es, str):
            return
        r = self.get(es)
        if r is None:
            return
        self.event_service = self.canonical(es)
        sub = (r.get("Subscriptions") or {}).get("@odata.id")
        self.subscriptions = self.canonical(sub) if isinstance(sub, str) else self.event_service + "/Subscriptions"
        sse = r.get("ServerSentEventUri")
        self.sse_uri = norm(sse) if isinstance(sse, str) and sse else None
        self.event_version = odata_version(r)
        self.event_types = [str(x) for x in (r.get("EventTypesForSubscription") or [])]
        try:
            self.delivery_retry_attempts = int(r.get("DeliveryRetryAttempts") or 3)
            self.delivery_retry_interval = float(r.get("DeliveryRetryIntervalSeconds") or 30)
        except (TypeError, ValueError):
            pass

    def _find_parts(self, systems: list[str], chassis: list[str]) -> None:
        host = self.get(self.system or "") or {}
        for mu in self.members((host.get("Memory") or {}).get("@odata.id")):
            m = self.get(mu) or {}
            if m.get("MemoryDeviceType") or m.get("MemoryType") == "DRAM" or "dimm" in mu.lower():
                self.dimms.append(mu)
        self.dimms.sort(key=natural)
        seen: set[str] = set()
        for sto in self.members((host.get("Storage") or {}).get("@odata.id")):
            s = self.get(sto) or {}
            for d in s.get("Drives") or []:
                du = d.get("@odata.id") if isinstance(d, dict) else None
                if isinstance(du, str) and self.get(du) is not None and du not in seen:
                    seen.add(self.canonical(du))
        drives = sorted(seen, key=natural)
        nvme = [d for d in drives if (self.get(d) or {}).get("Protocol") == "NVMe"]
        self.drives = nvme or drives
        ch = self.get(self.chassis or "") or {}
        th = (ch.get("Thermal") or {}).get("@odata.id")
        if isinstance(th, str) and self.get(th):
            t = self.get(th) or {}
            for i, f in enumerate(t.get("Fans") or []):
                self.fans.append((self.canonical(th), i, str(f.get("Name") or f.get("FanName") or f"Fan {i + 1}")))
            for tm in t.get("Temperatures") or []:
                if classify(str(tm.get("Name", "")), tm.get("PhysicalContext"), "Temperature") == "inlet":
                    self.inlet_sensors.append(str(tm.get("Name")))
        ts = (ch.get("ThermalSubsystem") or {}).get("@odata.id")
        if not self.fans and isinstance(ts, str):
            tsr = self.get(ts) or {}
            for fu in self.members((tsr.get("Fans") or {}).get("@odata.id")):
                self.fans.append((fu, -1, str((self.get(fu) or {}).get("Name") or fu.rsplit("/", 1)[-1])))
        pw = (ch.get("Power") or {}).get("@odata.id")
        if isinstance(pw, str) and self.get(pw):
            for i, p in enumerate((self.get(pw) or {}).get("PowerSupplies") or []):
                self.psus.append((self.canonical(pw), i, str(p.get("Name") or f"PSU {i + 1}")))
        ps = (ch.get("PowerSubsystem") or {}).get("@odata.id")
        if isinstance(ps, str):
            psr = self.get(ps) or {}
            for pu in self.members((psr.get("PowerSupplies") or {}).get("@odata.id")):
                if not any(x[1] == -1 and x[0] == pu for x in self.psus):
                    self.psus.append((pu, -1, str((self.get(pu) or {}).get("Name") or pu.rsplit("/", 1)[-1])))

    # -- per-resource facts (cached, shared by all nodes) --
    def gpu_of(self, uri: str, text: str = "") -> int | None:
        """The GPU a resource or reading belongs to, from its URI prefix or its name; None if not one GPU's."""
        u = norm(uri)
        for g in self.gpus:
            for p in g.prefixes:
                if u == p or u.startswith(p + "/"):
                    return g.index
        if text:
            for g in self.gpus:
                if g.token is not None and g.token.search(text):
                    return g.index
            m = re.search(r"(?<![A-Za-z0-9])GPU[_ ]?(?:SXM[_ ]?)?(\d+)(?![0-9])", text, re.I)
            if m and self.gpus:
                n = int(m.group(1))
                # "GPU2" in a Dell Thermal name is the slot; single-GPU boxes map everything to GPU 0
                if len(self.gpus) == 1:
                    return 0
                if 1 <= n <= len(self.gpus):
                    return n - 1
        return None

    def sensor_facts(self, key: str, name: str, context: str | None, reading_type: str | None, units: str | None,
                     related: str = "") -> tuple[str, int | None, int]:
        """(kind, gpu index, ordinal) of a reading, cached by key (a URI or URI#member)."""
        hit = self._sensor_cache.get(key)
        if hit is not None:
            return hit
        kind = classify(name, context, reading_type, units)
        gpu = None
        if kind.startswith("gpu"):
            gpu = self.gpu_of(key.split("#", 1)[0], f"{name} {related} {key}")
        m = re.search(r"(\d+)\D*$", name or "")
        ordinal = int(m.group(1)) if m else 0
        facts = (kind, gpu, ordinal)
        if len(self._sensor_cache) < 50_000:
            self._sensor_cache[key] = facts
        return facts


def load_tree(root: str | Any) -> dict[str, dict[str, Any]]:
    """Read a mockup in the tall layout (``<root>/redfish/v1/.../index.json``) into URI -> body.

    The core has its own loader; this one exists so the dynamic layer can be tested on a capture by itself.
    """
    import json
    from pathlib import Path

    base = Path(root)
    out: dict[str, dict[str, Any]] = {}
    for f in base.rglob("index.json"):
        rel = f.parent.relative_to(base).as_posix()
        try:
            body = json.loads(f.read_text(encoding="utf-8", errors="replace"))
        except ValueError:
            continue
        if isinstance(body, dict):
            out["/" + rel] = body
    return out
