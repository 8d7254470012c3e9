"""The flavor registry: which captured tree each simulated BMC make serves, and the few behaviours that the tree
itself cannot tell (session table size, delays, how BIOS settings are applied, which log is the SEL).

Everything else is read from the tree: URIs and ids, OEM sections, where GPUs sit, ``$expand`` levels
(``ProtocolFeaturesSupported``), the SSE URI (``EventService.ServerSentEventUri``), reset types
(``ResetType@Redfish.AllowableValues``), update URIs. A new flavor is one :class:`Flavor` entry in ``FLAVORS``.

HPE link style: iLO 5 writes some links lower-case with a trailing slash (``/redfish/v1/systems/1/bios/``; the
DL325 capture shows more of them than the DL385 one) and answers any URI case-insensitively with or without the
slash. The ``hpe`` flavor serves the DL385 tree with ``case_insensitive=True``: links stay exactly as captured and
every spelling resolves, as on the real iLO. Every flavor tolerates a trailing slash.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from redfleet.paths import mockups_dir
from redfleet.sim.baseline import healthy_baseline
from redfleet.sim.template import Template, load_template


@dataclass(frozen=True)
class Flavor:
    name: str
    mockup: str  # folder under shared/redfish/mockups, or an absolute path
    title: str
    session_limit: int = 16
    case_insensitive: bool = False
    log_page_size: int = 50
    boot_seconds: float = 60.0  # PoweringOn -> On
    shutdown_seconds: float = 10.0  # GracefulShutdown: PoweringOff -> Off
    bmc_reset_seconds: float = 40.0  # Manager.Reset: unreachable this long
    task_seconds: float = 20.0  # a firmware update task
    bios_via_job: bool = False  # Dell: pending BIOS settings need a config job (or @Redfish.SettingsApplyTime)
    sel_log: str | None = None  # LogService path of the SEL; None: found in the tree
    redfish: bool = True  # False for IPMI-only flavors served elsewhere
    extra: dict[str, Any] = field(default_factory=dict)
    heal: bool = True  # start from the capture with its own faults repaired (see baseline.py); --mockup: False

    def mockup_path(self) -> Path:
        p = Path(self.mockup)
        return p if p.is_absolute() else mockups_dir() / self.mockup

    def template(self) -> Template:
        tpl = load_template(self.mockup_path(), self.name, self.case_insensitive)
        return healthy_baseline(tpl) if self.heal else tpl

    def facts(self) -> FlavorFacts:
        return facts_for(self)


FLAVORS: dict[str, Flavor] = {
    f.name: f
    for f in (
        Flavor(
            "dell",
            "dell",
            "Dell PowerEdge R750, iDRAC9 6.00 (H100 PCIe)",
            session_limit=8,
            boot_seconds=90.0,
            bmc_reset_seconds=60.0,
            bios_via_job=True,
            sel_log="/redfish/v1/Managers/iDRAC.Embedded.1/LogServices/Sel",
        ),
        Flavor(
            "hpe",
            "hpe",
            "HPE ProLiant DL385 Gen10 Plus v2, iLO 5 2.72",
            session_limit=10,
            case_insensitive=True,
            boot_seconds=120.0,
            sel_log="/redfish/v1/Systems/1/LogServices/IML",
        ),
        Flavor(
            "supermicro",
            "supermicro",
            "Supermicro SYS-821GE-TNHR (X13, HGX H100 8-GPU)",
            session_limit=10,
            boot_seconds=90.0,
            sel_log="/redfish/v1/Systems/1/LogServices/Log1",
        ),
        Flavor(
            "dgx",
            "nvidia_viking",
            "NVIDIA DGX H100 (AMI host BMC + HGX HMC)",
            session_limit=16,
            boot_seconds=180.0,
            bmc_reset_seconds=90.0,
            sel_log="/redfish/v1/Managers/BMC/LogServices/SEL",
        ),
        Flavor(
            "ami",
            "Gigabyte",
            "Gigabyte H262-Z63, AMI MegaRAC",
            session_limit=16,
            sel_log="/redfish/v1/Systems/Self/LogServices/SEL",
        ),
        Flavor(
            "openbmc",
            "OpenBMC-stock",
            "OpenBMC bmcweb 2.15",
            session_limit=64,
            log_page_size=1000,
            boot_seconds=60.0,
            bmc_reset_seconds=30.0,
            sel_log="/redfish/v1/Systems/system/LogServices/EventLog",
        ),
        # IPMI over LAN only (no Redfish, no template): served by redfleet.sim.ipmi (sim-conf).
        Flavor("legacy-ipmi", "", "legacy server, IPMI 2.0 over LAN (RMCP+) only", redfish=False),
    )
}

REDFISH_FLAVORS = tuple(n for n, f in FLAVORS.items() if f.redfish)


def available_flavors() -> list[str]:
    """Every flavor ``--mix`` accepts (Redfish ones and ``legacy-ipmi``)."""
    return list(FLAVORS)


def redfish_flavors() -> list[str]:
    """The Redfish flavors (what ``mix=None`` cycles through)."""
    return list(REDFISH_FLAVORS)


def get_flavor(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise KeyError(f"unknown flavor {name!r}; known: {', '.join(FLAVORS)}") from None


def register_flavor(flavor: Flavor) -> None:
    FLAVORS[flavor.name] = flavor


def mockup_flavor(path: Path, name: str = "mockup") -> Flavor:
    """A flavor for any tall tree (``--mockup DIR``). HPE trees (``Oem.Hpe`` at the root) resolve like iLO."""
    base = Flavor(name, str(Path(path).resolve()), f"mockup {path}", heal=False)
    tpl = load_template(base.mockup_path(), name, False)
    root = tpl.doc("/redfish/v1") or {}
    if isinstance(root.get("Oem"), dict) and "Hpe" in root["Oem"]:
        base = replace(base, case_insensitive=True)
    if isinstance(root.get("Oem"), dict) and "Dell" in root["Oem"]:
        base = replace(base, session_limit=8, bios_via_job=True)
    return base


# ---- facts read from a tree --------------------------------------------------------------------------------


@dataclass
class FlavorFacts:
    """What the tree says about itself, computed once per flavor."""

    flavor: Flavor
    template: Template

    @cached_property
    def root(self) -> dict[str, Any]:
        return self.template.doc("/redfish/v1") or {}

    def _link(self, doc: dict[str, Any], key: str) -> str | None:
        v = doc.get(key)
        if isinstance(v, dict) and isinstance(v.get("@odata.id"), str):
            return self.template.find(v["@odata.id"]) or v["@odata.id"]
        return None

    def _first_member(self, key: str) -> str | None:
        coll = self._link(self.root, key)
        if not coll:
            return None
        members = self.template.members(coll)
        return self.template.find(members[0]) if members else None

    @cached_property
    def systems(self) -> list[str]:
        coll = self._link(self.root, "Systems")
        return [p for p in (self.template.find(m) for m in self.template.members(coll or "")) if p]

    @cached_property
    def managers(self) -> list[str]:
        coll = self._link(self.root, "Managers")
        return [p for p in (self.template.find(m) for m in self.template.members(coll or "")) if p]

    @cached_property
    def system_path(self) -> str | None:
        """The host system (the one with a Reset action and most processors)."""
        best, score = None, -1
        for p in self.systems:
            d = self.template.doc(p) or {}
            s = (10 if "#ComputerSystem.Reset" in (d.get("Actions") or {}) else 0) + (
                5 if d.get("SystemType") in ("Physical", None) else 0
            )
            if "HGX" in p or "Baseboard" in p:
                s -= 8
            if s > score:
                best, score = p, s
        return best

    @cached_property
    def manager_path(self) -> str | None:
        for p in self.managers:
            d = self.template.doc(p) or {}
            if d.get("ManagerType") == "BMC" and "HGX" not in p:
                return p
        return self.managers[0] if self.managers else None

    @cached_property
    def chassis_path(self) -> str | None:
        return self._first_member("Chassis")

    @cached_property
    def sse_uri(self) -> str | None:
        es = self._link(self.root, "EventService")
        d = self.template.doc(es) if es else None
        uri = (d or {}).get("ServerSentEventUri")
        return uri if isinstance(uri, str) else None

    @cached_property
    def protocol_features(self) -> dict[str, Any]:
        pf = self.root.get("ProtocolFeaturesSupported")
        return pf if isinstance(pf, dict) else {}

    @cached_property
    def expand_max_levels(self) -> int:
        """0 when the service does not advertise $expand."""
        eq = self.protocol_features.get("ExpandQuery")
        if not isinstance(eq, dict) or not any(eq.get(k) for k in ("ExpandAll", "Levels", "Links", "NoLinks")):
            return 0
        return int(eq.get("MaxLevels") or 1) if eq.get("Levels") else 1

    @cached_property
    def expand_modes(self) -> set[str]:
        eq = self.protocol_features.get("ExpandQuery")
        if not isinstance(eq, dict):
            return set()
        modes = set()
        if eq.get("ExpandAll"):
            modes.add("*")
        if eq.get("NoLinks"):
            modes.add(".")
        if eq.get("Links"):
            modes.add("~")
        return modes

    @cached_property
    def select_supported(self) -> bool:
        return bool(self.protocol_features.get("SelectQuery"))

    @cached_property
    def only_supported(self) -> bool:
        return bool(self.protocol_features.get("OnlyMemberQuery"))

    @cached_property
    def update_service(self) -> str | None:
        return self._link(self.root, "UpdateService")

    @cached_property
    def firmware_inventory(self) -> str | None:
        us = self.template.doc(self.update_service or "") or {}
        return self._link(us, "FirmwareInventory")

    @cached_property
    def multipart_push_uri(self) -> str | None:
        us = self.template.doc(self.update_service or "") or {}
        uri = us.get("MultipartHttpPushUri")
        return uri if isinstance(uri, str) else None

    @cached_property
    def http_push_uri(self) -> str | None:
        us = self.template.doc(self.update_service or "") or {}
        uri = us.get("HttpPushUri")
        return uri if isinstance(uri, str) else None

    @cached_property
    def task_collection(self) -> str:
        ts = self._link(self.root, "Tasks")
        d = self.template.doc(ts or "") or {}
        return self._link(d, "Tasks") or "/redfish/v1/TaskService/Tasks"

    @cached_property
    def session_collection(self) -> str:
        ss = self._link(self.root, "SessionService")
        d = self.template.doc(ss or "") or {}
        return self._link(d, "Sessions") or "/redfish/v1/SessionService/Sessions"

    @cached_property
    def session_timeout(self) -> int:
        ss = self._link(self.root, "SessionService")
        d = self.template.doc(ss or "") or {}
        t = d.get("SessionTimeout")
        return int(t) if isinstance(t, (int, float)) and t > 0 else 1800

    @cached_property
    def sel_path(self) -> str | None:
        if self.flavor.sel_log and self.template.find(self.flavor.sel_log):
            return self.template.find(self.flavor.sel_log)
        candidates = []
        for p in self.systems + self.managers:
            d = self.template.doc(p) or {}
            ls = self._link(d, "LogServices")
            for m in self.template.members(ls or ""):
                cm = self.template.find(m)
                if cm:
                    candidates.append(cm)
        for key in ("sel", "eventlog", "iml", "log1"):
            for c in candidates:
                if c.rsplit("/", 1)[-1].lower() == key:
                    return c
        return candidates[0] if candidates else None

    @cached_property
    def bios_path(self) -> str | None:
        d = self.template.doc(self.system_path or "") or {}
        return self._link(d, "Bios")

    @cached_property
    def bios_settings_path(self) -> str | None:
        d = self.template.doc(self.bios_path or "") or {}
        rs = d.get("@Redfish.Settings")
        if isinstance(rs, dict):
            so = rs.get("SettingsObject")
            if isinstance(so, dict) and isinstance(so.get("@odata.id"), str):
                uri = so["@odata.id"]
                return self.template.find(uri) or uri.rstrip("/")
        return None

    @cached_property
    def gpus(self) -> list[str]:
        """Paths of the GPUs as the flavor shows them: Processors with ProcessorType GPU, else PCIe devices of a
        display/3D controller class (Supermicro keeps its GPUs only under Chassis/1/PCIeDevices)."""
        out = []
        for path in self.template.resources:
            if "/Processors/" in path and path.count("/") == 6:
                d = self.template.doc(path) or {}
                if d.get("ProcessorType") == "GPU":
                    out.append(path)
        if out:
            return sorted(out, key=_natural)
        for path in self.template.resources:
            if "/PCIeDevices/" in path and path.count("/") == 6:
                d = self.template.doc(path) or {}
                text = " ".join(str(d.get(k, "")) for k in ("Id", "Name", "Model", "Description")).lower()
                if "gpu" in text or any(m in text for m in ("h100", "h200", "a100", "b200", "l40")):
                    out.append(path)
        return sorted(out, key=_natural)

    @cached_property
    def thermal_paths(self) -> list[str]:
        return [p for p in self.template.resources if p.endswith("/Thermal") or p.endswith("/ThermalSubsystem")]

    @cached_property
    def power_paths(self) -> list[str]:
        return [p for p in self.template.resources if p.endswith("/Power") or p.endswith("/PowerSubsystem")]


def _natural(s: str) -> list[Any]:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


_FACTS: dict[tuple[str, str], FlavorFacts] = {}


def facts_for(flavor: Flavor) -> FlavorFacts:
    key = (flavor.name, flavor.mockup)
    f = _FACTS.get(key)
    if f is None:
        f = FlavorFacts(flavor, flavor.template())
        _FACTS[key] = f
    return f
