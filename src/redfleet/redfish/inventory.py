"""Collect the normalized inventory of one BMC (:class:`redfleet.model.inventory.Inventory`).

Everything here is standard Redfish: Systems (Processors, Memory, Storage/Drives, SimpleStorage,
EthernetInterfaces, PCIeDevices), Chassis (PowerSubsystem or legacy Power, ThermalSubsystem or legacy Thermal,
NetworkAdapters, PCIeDevices, Drives), Managers and UpdateService/FirmwareInventory. Vendor quirks only add
facts (OEM GPU lists, OEM fields).

GPUs are found wherever the BMC puts them and merged into one entry per physical GPU:

1. Processors with ``ProcessorType: GPU`` (any system, including an HGX baseboard system);
2. PCIe devices whose functions are display controllers or processing accelerators (``DeviceClass`` or PCI class
   code 0x03/0x12), except BMC/management VGA parts (ASPEED, Matrox, ...);
3. vendor OEM PCI device lists (quirks).

Merging, strongest evidence first: a Processor's own ``Links.PCIeDevice``/``PCIeFunctions``; the same serial
number or UUID; a PCIe device seen in two places (Systems and Chassis) with the same Id or functions; and finally a
PCIe function with no serial (the host's view of a GPU that the baseboard already reported) pairs with a GPU of
the same PCI device ID, then vendor, that has no host-side view yet.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from redfleet.model.inventory import (
    CPU,
    GPU,
    NIC,
    PSU,
    BMCInfo,
    Drive,
    Fan,
    Firmware,
    Inventory,
    Memory,
    Port,
    System,
)
from redfleet.redfish import uri as U
from redfleet.redfish.client import RedfishClient, is_soft_error
from redfleet.redfish.errors import (
    HTTPError,
    MalformedResponse,
    NotFound,
    RedfishError,
)

log = logging.getLogger("redfleet.redfish.inventory")

# PCI vendors whose display controllers are BMC / management VGA, never compute GPUs.
MGMT_VGA_VENDORS = {
    "0x1a03",  # ASPEED (AST2x00/AST2600 BMC VGA)
    "0x102b",  # Matrox (G200e* on Dell/HPE/Lenovo)
    "0x19e5",  # Huawei iBMC Hi171x VGA
    "0x1912",  # Renesas (older BMC VGA)
    "0x15ad",  # VMware SVGA
    "0x1234",  # QEMU std VGA
}
_MGMT_VGA_NAME = re.compile(r"embedded video|integrated (matrox|graphics)|\bvga\b|aspeed|g200e", re.I)
_GPU_VENDOR_IDS = {"0x10de": "NVIDIA", "0x1002": "AMD", "0x1da3": "Habana", "0x8086": "Intel"}


def _norm_hex(value: Any) -> str | None:
    """PCI IDs come as "0x10DE", "10de", 4318 (HPE decimal) or "0x0000" (unknown)."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        return f"0x{value:04x}"
    s = str(value).strip().lower()
    try:
        n = int(s, 16) if s.startswith("0x") else int(s, 16) if re.fullmatch(r"[0-9a-f]{4}", s) else int(s)
    except ValueError:
        return s
    return f"0x{n:04x}"


def is_management_vga(vendor_id: Any, name: Any = None) -> bool:
    vid = _norm_hex(vendor_id)
    if vid in MGMT_VGA_VENDORS:
        return True
    return bool(name and _MGMT_VGA_NAME.search(str(name)))


def is_gpu_class(
    *, device_class: Any = None, class_code: Any = None, subclass: Any = None
) -> bool:
    """Display controller (PCI base class 0x03) or processing accelerator (0x12)."""
    if isinstance(device_class, str) and device_class in ("DisplayController", "ProcessingAccelerators"):
        return True
    if class_code is None or class_code == "":
        return False
    if isinstance(class_code, int):
        # HPE gives the base class alone (3); PCIe functions give the 24-bit code.
        base = class_code if class_code <= 0xFF else (class_code >> 16) & 0xFF
        return base in (0x03, 0x12)
    s = str(class_code).strip().lower()
    try:
        n = int(s, 16)
    except ValueError:
        return False
    if n <= 0xFF:
        return n in (0x03, 0x12)
    # "0x030200" = base 03; Dell writes "0x000003" (base class in the low byte).
    base_hi = (n >> 16) & 0xFF
    if base_hi in (0x03, 0x12):
        return True
    return base_hi == 0 and (n & 0xFF) in (0x03, 0x12) and n <= 0xFFFF


@dataclass
class GpuCandidate:
    via: str  # "processor" | "pcie" | "oem"
    source: str
    model: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    part_number: str | None = None
    firmware_version: str | None = None
    uuid: str | None = None
    vendor_id: str | None = None
    device_id: str | None = None
    health: str | None = None
    state: str | None = None
    location: str | None = None
    system: str | None = None
    name: str | None = None
    pcie_keys: set[str] = field(default_factory=set)  # keys of PCIe devices/functions that are this GPU
    id: str | None = None


_PLACEHOLDER_SERIALS = {"", "na", "n/a", "none", "null", "unknown", "not specified", "0", "00000000", "123456789"}


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def _serial(value: Any) -> str | None:
    s = _clean(value)
    if s is None or s.lower() in _PLACEHOLDER_SERIALS or set(s) <= {"0", "F", "f", " ", "-"}:
        return None
    return s


def _status(res: dict[str, Any]) -> tuple[str | None, str | None]:
    st = res.get("Status")
    if not isinstance(st, dict):
        return None, None
    health = st.get("Health") or st.get("HealthRollup")
    return (str(health) if health else None), (str(st["State"]) if st.get("State") else None)


def _location(res: dict[str, Any]) -> str | None:
    loc = res.get("Location") or res.get("PhysicalLocation")
    if isinstance(loc, dict):
        part = loc.get("PartLocation")
        if isinstance(part, dict):
            label = part.get("ServiceLabel")
            if label:
                return str(label)
            ltype, ordinal = part.get("LocationType"), part.get("LocationOrdinalValue")
            if ltype and ordinal is not None:
                return f"{ltype} {ordinal}"
        info = loc.get("Info") or loc.get("InfoFormat")
        if isinstance(info, str) and info.strip():
            return info.strip()
    for k in ("Socket", "DeviceLocator", "SlotNumber", "Location"):
        v = res.get(k)
        if isinstance(v, (str, int)) and str(v).strip():
            return str(v).strip()
    ml = res.get("MemoryLocation")
    if isinstance(ml, dict) and ml:
        parts = [f"{k}{ml[k]}" for k in ("Socket", "MemoryController", "Channel", "Slot") if ml.get(k) is not None]
        if parts:
            return " ".join(parts)
    return None


def _int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str):
        try:
            return int(float(v))
        except ValueError:
            return None
    return None


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _id(res: dict[str, Any], fallback: str = "") -> str:
    v = res.get("Id") or res.get("MemberId")
    if v is not None and str(v).strip():
        return str(v)
    oid = res.get("@odata.id") or fallback
    return oid.rstrip("/").rsplit("/", 1)[-1] if oid else fallback


_is_soft = is_soft_error


class _Collector:
    def __init__(self, client: RedfishClient) -> None:
        self.c = client
        self.warnings: list[str] = []
        self.chassis_pcie_ids: set[str] = set()

    async def guard(self, label: str, coro: Awaitable[Any], default: Any) -> Any:
        try:
            return await coro
        except RedfishError as exc:
            if not _is_soft(exc):
                raise
            self.warnings.append(f"{label}: {exc}")
            return default

    async def members(
        self, res: dict[str, Any] | None, key: str, kind: str | None = None, levels: int = 1
    ) -> list[dict[str, Any]]:
        """Members of the collection that ``res[key]`` links to (empty when absent). A collection the BMC already
        expanded inline (multi-level ``$expand``) is used as it is, fetching only members left as links."""
        if not res:
            return []
        value = res.get(key)
        if isinstance(value, list):  # a links array (Dell Systems.PCIeDevices, Storage.Drives)
            return await self.c.resolve_links(value, kind=kind)
        if isinstance(value, dict) and isinstance(value.get("Members"), list) and \
                "Members@odata.nextLink" not in value:
            return await self.c.resolve_links(value["Members"], kind=kind)
        link = U.odata_id(value)
        if not link:
            return []
        return await self.c.get_members(link, kind=kind, ignore_errors=False, levels=levels)

    def can_expand(self, levels: int) -> bool:
        """Whether the service expands navigation properties (not Links) ``levels`` deep: one request then brings a
        resource with its collections and their members."""
        caps = self.c.caps
        return caps.expand_levels and caps.expand_no_links and caps.expand_max_levels >= levels and \
            not self.c._expand_broken

    async def get_expanded(self, uri: str, levels: int, kind: str | None = None) -> dict[str, Any] | None:
        """``try_get`` of a resource with its own collections expanded ``levels`` deep where the service can; a
        service that refuses the query for this resource is asked again without it."""
        if self.can_expand(levels):
            try:
                return await self.c.get(uri, kind=kind, query=self.c.caps.expand_query(levels))
            except (HTTPError, MalformedResponse) as exc:
                if not _is_soft(exc) or isinstance(exc, NotFound):
                    if isinstance(exc, NotFound):
                        return None
                    raise
                log.debug("%s: %s with $expand refused (%s); reading it plainly", self.c.name, uri, exc)
        return await self.c.try_get(uri, kind=kind)

    # --------------------------------------------------------------------------------------------------------
    async def run(self) -> Inventory:
        c = self.c
        t0 = time.monotonic()
        req0 = c.requests
        skipped0 = len(c.skipped)
        svc = c.caps.services
        systems_uri = svc.get("Systems")
        chassis_uri = svc.get("Chassis")
        managers_uri = svc.get("Managers")
        if not systems_uri and not chassis_uri:
            raise MalformedResponse("service root links neither Systems nor Chassis", bmc=c.base_url,
                                    uri="/redfish/v1")
        systems, chassis, managers, firmware = await asyncio.gather(
            c.get_members(systems_uri, ignore_errors=False) if systems_uri else _empty(),
            self.guard("Chassis", c.get_members(chassis_uri), []) if chassis_uri else _empty(),
            self.guard("Managers", c.get_members(managers_uri), []) if managers_uri else _empty(),
            self.guard("firmware", self.firmware(), []),
        )
        # Chassis first: their (multi-level expanded) PCIe device collections fill the cache that the systems'
        # PCIeDevices link arrays (same devices, often) are then served from.
        per_chassis = await asyncio.gather(*(self.chassis_parts(ch) for ch in chassis))
        self.chassis_pcie_ids = {str(d.get("Id")) for parts in per_chassis for d, _ in parts["pcie"] if d.get("Id")}
        per_system = await asyncio.gather(*(self.system_parts(s) for s in systems))
        extra: list[GpuCandidate] = []
        for q in c.quirks:
            extra.extend(await self.guard(f"{q.name} OEM GPUs", q.extra_gpus(c, systems), []))

        inv = Inventory(bmc=self.bmc_info(managers, systems))
        gpu_cands: list[GpuCandidate] = []
        pcie_devices: list[tuple[dict[str, Any], list[dict[str, Any]], str | None]] = []
        drives_seen: set[str] = set()
        for system, parts in zip(systems, per_system, strict=True):
            inv.systems.append(self.system_model(system))
            sid = U.odata_id(system)
            for proc in parts["processors"]:
                ptype = str(proc.get("ProcessorType") or "").upper()
                if ptype == "GPU":
                    gpu_cands.append(self.gpu_from_processor(proc, sid, parts["proc_functions"].get(
                        U.key(U.odata_id(proc) or ""), [])))
                elif ptype in ("CPU", "") and (proc.get("Model") or proc.get("TotalCores") or ptype == "CPU"):
                    if _status(proc)[1] == "Absent":
                        continue
                    inv.cpus.append(self.cpu_model(proc, sid))
            for mem in parts["memory"]:
                m = self.memory_model(mem, sid)
                if m is not None:
                    inv.memory.append(m)
            for d in parts["drives"]:
                self.add_drive(inv, d, drives_seen)
            for nic in parts["interfaces"]:
                inv.nics.append(self.interface_model(nic))
            pcie_devices.extend((d, fns, sid) for d, fns in parts["pcie"])
        for parts in per_chassis:
            inv.psus.extend(parts["psus"])
            inv.fans.extend(parts["fans"])
            inv.nics.extend(parts["adapters"])
            for d in parts["drives"]:
                self.add_drive(inv, d, drives_seen)
            pcie_devices.extend((d, fns, None) for d, fns in parts["pcie"])
        gpu_cands.extend(self.gpus_from_pcie(pcie_devices))
        gpu_cands.extend(extra)
        inv.gpus = merge_gpus(gpu_cands)
        inv.firmware = firmware
        inv.bmc.warnings = self.warnings + [w for w in c.skipped[skipped0:] if w not in self.warnings]
        inv.bmc.duration_s = round(time.monotonic() - t0, 3)
        inv.bmc.requests = c.requests - req0
        return inv

    # --------------------------------------------------------------------------------------------------------
    async def system_parts(self, system: dict[str, Any]) -> dict[str, Any]:
        sid = U.odata_id(system) or "?"
        processors, memory, storage, interfaces, pcie = await asyncio.gather(
            self.guard(f"{sid} Processors", self.members(system, "Processors"), []),
            self.guard(f"{sid} Memory", self.members(system, "Memory"), []),
            self.guard(f"{sid} Storage", self.members(system, "Storage"), []),
            self.guard(f"{sid} EthernetInterfaces", self.members(system, "EthernetInterfaces"), []),
            self.guard(f"{sid} PCIeDevices", self.pcie_of(system, skip_ids=self.chassis_pcie_ids), []),
        )
        drives = await self.guard(f"{sid} Drives", self.storage_drives(storage, system), [])
        # Functions of GPU processors (PCI IDs), fetched only when linked.
        proc_functions: dict[str, list[dict[str, Any]]] = {}
        gpu_procs = [p for p in processors if str(p.get("ProcessorType") or "").upper() == "GPU"]
        if gpu_procs:
            fn_lists = await asyncio.gather(*(
                self.guard("GPU PCIe functions", self.c.resolve_links(
                    [{"@odata.id": u} for u in U.links(p, "Links", "PCIeFunctions")]), [])
                for p in gpu_procs
            ))
            for p, fns in zip(gpu_procs, fn_lists, strict=True):
                proc_functions[U.key(U.odata_id(p) or "")] = fns
        return {"processors": processors, "memory": memory, "drives": drives, "interfaces": interfaces,
                "pcie": pcie, "proc_functions": proc_functions}

    async def pcie_of(
        self, res: dict[str, Any], skip_ids: set[str] | None = None
    ) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """PCIe devices linked from a System (``PCIeDevices`` links array or collection) or a Chassis, each with
        its functions (``PCIeFunctions`` collection, or ``Links.PCIeFunctions`` on older services).

        ``skip_ids``: a System's links array often repeats the chassis' devices under another URI (iDRAC lists
        each device under both): devices whose Id was already read from a chassis are not fetched again."""
        value = res.get("PCIeDevices")
        if skip_ids and isinstance(value, list):
            value = [v for v in value if (U.odata_id(v) or "").rsplit("/", 1)[-1] not in skip_ids]
            res = {**res, "PCIeDevices": value}
        # Devices and their functions in one answer where the BMC expands 3 levels (collection, device,
        # functions collection, function); otherwise the functions are fetched per device.
        devices = await self.members(res, "PCIeDevices", levels=3)
        if not devices:
            return []

        async def with_functions(dev: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
            fns: list[dict[str, Any]] = []
            if isinstance(dev.get("PCIeFunctions"), dict) and (
                    U.odata_id(dev.get("PCIeFunctions")) or "Members" in dev["PCIeFunctions"]):
                fns = await self.guard("PCIe functions", self.members(dev, "PCIeFunctions"), [])
            else:
                linked = U.links(dev, "Links", "PCIeFunctions")
                if linked:
                    fns = await self.guard(
                        "PCIe functions", self.c.resolve_links([{"@odata.id": u} for u in linked]), [])
            return dev, fns

        return list(await asyncio.gather(*(with_functions(d) for d in devices)))

    async def storage_drives(self, storage: list[dict[str, Any]], system: dict[str, Any]) -> list[dict[str, Any]]:
        drives: list[dict[str, Any]] = []
        lists = await asyncio.gather(*(self.members(st, "Drives") for st in storage))
        for lst in lists:
            drives.extend(lst)
        if not drives:
            # Older services: SimpleStorage.Devices (no per-drive resource); read only when Storage had none.
            simple = await self.guard("SimpleStorage", self.members(system, "SimpleStorage"), [])
            for ss in simple:
                base = U.odata_id(ss) or ""
                for i, dev in enumerate(ss.get("Devices") or []):
                    if isinstance(dev, dict):
                        d = dict(dev)
                        d.setdefault("@odata.id", f"{base}#/Devices/{i}")
                        d.setdefault("Id", f"{_id(ss)}-{i}")
                        d.setdefault("CapacityBytes", dev.get("CapacityBytes"))
                        drives.append(d)
        return drives

    async def chassis_parts(self, ch: dict[str, Any]) -> dict[str, Any]:
        cid = U.odata_id(ch) or "?"
        psus, fans, adapters, pcie, drives = await asyncio.gather(
            self.guard(f"{cid} power supplies", self.psus(ch), []),
            self.guard(f"{cid} fans", self.fans(ch), []),
            self.guard(f"{cid} NetworkAdapters", self.adapters(ch), []),
            self.guard(f"{cid} PCIeDevices", self.pcie_of(ch), []),
            self.guard(f"{cid} Drives", self.members(ch, "Drives"), []),
        )
        return {"psus": psus, "fans": fans, "adapters": adapters, "pcie": pcie, "drives": drives}

    async def psus(self, ch: dict[str, Any]) -> list[PSU]:
        out: list[PSU] = []
        sub = U.odata_id(ch.get("PowerSubsystem"))
        if sub:
            ps = await self.get_expanded(sub, 2)  # PowerSupplies and its members in the same answer
            if ps and U.odata_id(ps.get("PowerSupplies")):
                for p in await self.members(ps, "PowerSupplies"):
                    out.append(self.psu_model(p, U.odata_id(p)))
                return out
        legacy = U.odata_id(ch.get("Power"))
        if legacy:
            power = await self.c.try_get(legacy, kind="default")
            for i, p in enumerate((power or {}).get("PowerSupplies") or []):
                if isinstance(p, dict):
                    src = p.get("@odata.id") or f"{legacy}#/PowerSupplies/{i}"
                    out.append(self.psu_model(p, src))
        return out

    async def fans(self, ch: dict[str, Any]) -> list[Fan]:
        out: list[Fan] = []
        sub = U.odata_id(ch.get("ThermalSubsystem"))
        if sub:
            ts = await self.get_expanded(sub, 2)  # Fans and its members in the same answer
            if ts and U.odata_id(ts.get("Fans")):
                for f in await self.members(ts, "Fans"):
                    out.append(self.fan_model(f, U.odata_id(f)))
                return out
        legacy = U.odata_id(ch.get("Thermal"))
        if legacy:
            thermal = await self.c.try_get(legacy, kind="default")
            for i, f in enumerate((thermal or {}).get("Fans") or []):
                if isinstance(f, dict):
                    src = f.get("@odata.id") or f"{legacy}#/Fans/{i}"
                    out.append(self.fan_model(f, src))
        return out

    async def adapters(self, ch: dict[str, Any]) -> list[NIC]:
        # adapters, their Ports collections and the ports in one answer where the service expands 3 levels (with
        # 2, the ports would come as links, one request each: worse than one Ports collection per adapter)
        adapters = await self.members(ch, "NetworkAdapters", levels=3 if self.can_expand(3) else 1)
        if not adapters:
            return []

        async def one(a: dict[str, Any]) -> NIC:
            ports: list[dict[str, Any]] = []
            for key in ("Ports", "NetworkPorts"):
                if U.odata_id(a.get(key)):
                    ports = await self.guard("network ports", self.members(a, key), [])
                    if ports:
                        break
            return self.adapter_model(a, ports)

        return list(await asyncio.gather(*(one(a) for a in adapters)))

    async def firmware(self) -> list[Firmware]:
        upd = self.c.caps.services.get("UpdateService")
        if not upd:
            return []
        us = await self.get_expanded(upd, 2, kind="firmware")  # FirmwareInventory and its members with it
        if not us:
            return []
        items = await self.members(us, "FirmwareInventory", kind="firmware")
        out = []
        for fw in items:
            name = _clean(fw.get("Name"))
            if not name or name.lower() in ("software inventory", "firmware inventory", "firmware"):
                name = _id(fw)
            health, state = _status(fw)
            out.append(Firmware(
                id=_id(fw), name=name, version=_clean(fw.get("Version")), updateable=fw.get("Updateable")
                if isinstance(fw.get("Updateable"), bool) else None, health=health, state=state,
                source=U.odata_id(fw),
            ))
        return out

    # --------------------------------------------------------------------------------------------------------
    # model builders

    def bmc_info(self, managers: list[dict[str, Any]], systems: list[dict[str, Any]]) -> BMCInfo:
        c = self.c
        mgr = next((m for m in managers if m.get("ManagerType") == "BMC"), managers[0] if managers else {})
        health, _ = _status(mgr) if mgr else (None, None)
        vendor = c.caps.vendor
        if not vendor:
            vendor = _clean(mgr.get("Manufacturer")) if mgr else None
        if not vendor and systems:
            vendor = _clean(systems[0].get("Manufacturer"))
        return BMCInfo(
            url=c.base_url,
            vendor=vendor,
            model=_clean(mgr.get("Model")) if mgr else None,
            firmware_version=_clean(mgr.get("FirmwareVersion")) if mgr else None,
            redfish_version=c.caps.redfish_version,
            uuid=_clean(mgr.get("ServiceEntryPointUUID") or c.caps.uuid or mgr.get("UUID")) if mgr else c.caps.uuid,
            manager_id=_clean(mgr.get("Id")) if mgr else None,
            health=health,
            auth=c.auth_used,
            capabilities=c.caps.to_dict(),
            quirks=[q.name for q in c.quirks],
            source=U.odata_id(mgr) if mgr else None,
            collected_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )

    def system_model(self, s: dict[str, Any]) -> System:
        health, state = _status(s)
        ms = s.get("MemorySummary") or {}
        ps = s.get("ProcessorSummary") or {}
        return System(
            id=_id(s), name=_clean(s.get("Name")), health=health, state=state, location=_location(s),
            source=U.odata_id(s), manufacturer=_clean(s.get("Manufacturer")), model=_clean(s.get("Model")),
            serial=_clean(s.get("SerialNumber")), sku=_clean(s.get("SKU")), uuid=_clean(s.get("UUID")),
            bios_version=_clean(s.get("BiosVersion")), power_state=_clean(s.get("PowerState")),
            system_type=_clean(s.get("SystemType")), host_name=_clean(s.get("HostName")),
            memory_gib=_float(ms.get("TotalSystemMemoryGiB")) if isinstance(ms, dict) else None,
            processor_count=_int(ps.get("Count")) if isinstance(ps, dict) else None,
        )

    def cpu_model(self, p: dict[str, Any], sid: str | None) -> CPU:
        health, state = _status(p)
        return CPU(
            id=_id(p), name=_clean(p.get("Name")), health=health, state=state, location=_location(p),
            source=U.odata_id(p), system=sid, manufacturer=_clean(p.get("Manufacturer")),
            model=_clean(p.get("Model")), serial=_serial(p.get("SerialNumber")),
            architecture=_clean(p.get("ProcessorArchitecture")), cores=_int(p.get("TotalCores")),
            threads=_int(p.get("TotalThreads")), max_speed_mhz=_int(p.get("MaxSpeedMHz")),
        )

    def memory_model(self, m: dict[str, Any], sid: str | None) -> Memory | None:
        health, state = _status(m)
        cap = _int(m.get("CapacityMiB"))
        if state == "Absent" or not cap:
            return None
        mtype = _clean(m.get("MemoryDeviceType")) or _clean(m.get("MemoryType"))
        if mtype and mtype.upper().startswith("HBM"):
            return None  # on-package GPU memory, not a DIMM
        return Memory(
            id=_id(m), name=_clean(m.get("Name")), health=health, state=state, location=_location(m),
            source=U.odata_id(m), system=sid, capacity_mib=cap, memory_type=mtype,
            speed_mhz=_int(m.get("OperatingSpeedMhz") or m.get("OperatingSpeedMHz")),
            manufacturer=_clean(m.get("Manufacturer")), part_number=_clean(m.get("PartNumber")),
            serial=_serial(m.get("SerialNumber")),
        )

    def add_drive(self, inv: Inventory, d: dict[str, Any], seen: set[str]) -> None:
        health, state = _status(d)
        if state == "Absent":
            return
        src = U.odata_id(d) or d.get("@odata.id")
        key = U.key(src) if src else None
        serial = _serial(d.get("SerialNumber"))
        for k in (key, f"serial:{serial}" if serial else None):
            if k and k in seen:
                return
        for k in (key, f"serial:{serial}" if serial else None):
            if k:
                seen.add(k)
        inv.drives.append(Drive(
            id=_id(d), name=_clean(d.get("Name")), health=health, state=state, location=_location(d),
            source=src, model=_clean(d.get("Model")), serial=serial, manufacturer=_clean(d.get("Manufacturer")),
            capacity_bytes=_int(d.get("CapacityBytes")), media_type=_clean(d.get("MediaType")),
            protocol=_clean(d.get("Protocol")), firmware_version=_clean(d.get("Revision") or d.get("FirmwareVersion")),
        ))

    def interface_model(self, e: dict[str, Any]) -> NIC:
        health, state = _status(e)
        mac = _clean(e.get("MACAddress") or e.get("PermanentMACAddress"))
        return NIC(
            id=_id(e), name=_clean(e.get("Name")), health=health, state=state, location=_location(e),
            source=U.odata_id(e), kind="interface", mac=mac, speed_mbps=_float(e.get("SpeedMbps")),
            link_status=_clean(e.get("LinkStatus")),
        )

    def adapter_model(self, a: dict[str, Any], ports: list[dict[str, Any]]) -> NIC:
        health, state = _status(a)
        port_models = []
        for p in ports:
            macs = p.get("AssociatedNetworkAddresses") or []
            mac = _clean(macs[0]) if isinstance(macs, list) and macs else None
            eth = p.get("Ethernet") if isinstance(p.get("Ethernet"), dict) else {}
            if not mac and eth:
                assoc = eth.get("AssociatedMACAddresses") or []
                mac = _clean(assoc[0]) if isinstance(assoc, list) and assoc else None
            speed = _float(p.get("CurrentSpeedGbps"))
            speed_mbps = speed * 1000 if speed is not None else _float(p.get("CurrentLinkSpeedMbps"))
            port_models.append(Port(id=_id(p), mac=mac, link_status=_clean(p.get("LinkStatus")),
                                    speed_mbps=speed_mbps, source=U.odata_id(p)))
        ctrl = (a.get("Controllers") or [{}])[0] if isinstance(a.get("Controllers"), list) else {}
        fw = None
        if isinstance(ctrl, dict):
            fw = _clean(ctrl.get("FirmwarePackageVersion"))
        return NIC(
            id=_id(a), name=_clean(a.get("Name")), health=health, state=state, location=_location(a),
            source=U.odata_id(a), kind="adapter", model=_clean(a.get("Model")),
            manufacturer=_clean(a.get("Manufacturer")), serial=_serial(a.get("SerialNumber")),
            part_number=_clean(a.get("PartNumber")), firmware_version=fw,
            mac=port_models[0].mac if port_models else None,
            link_status=port_models[0].link_status if port_models else None,
            speed_mbps=port_models[0].speed_mbps if port_models else None, ports=port_models,
        )

    def psu_model(self, p: dict[str, Any], src: str | None) -> PSU:
        health, state = _status(p)
        cap = _float(p.get("PowerCapacityWatts"))
        if cap is None:
            rating = p.get("PowerCapacityWatts") or (p.get("InputRanges") or [{}])
            if isinstance(rating, list) and rating and isinstance(rating[0], dict):
                cap = _float(rating[0].get("OutputWattage") or rating[0].get("CapacityWatts"))
        return PSU(
            id=_id(p, src or ""), name=_clean(p.get("Name")), health=health, state=state,
            location=_location(p), source=src, model=_clean(p.get("Model")),
            manufacturer=_clean(p.get("Manufacturer")), serial=_serial(p.get("SerialNumber")),
            part_number=_clean(p.get("PartNumber") or p.get("SparePartNumber")),
            firmware_version=_clean(p.get("FirmwareVersion")), capacity_watts=cap,
        )

    def fan_model(self, f: dict[str, Any], src: str | None) -> Fan:
        health, state = _status(f)
        reading: Any = f.get("Reading")
        units = _clean(f.get("ReadingUnits"))
        if reading is None:
            sp = f.get("SpeedPercent")
            if isinstance(sp, dict):
                reading = sp.get("Reading")
                if reading is None:
                    reading = sp.get("SpeedRPM")
                    units = "RPM" if reading is not None else units
                else:
                    units = "Percent"
        return Fan(
            id=_id(f, src or ""), name=_clean(f.get("Name") or f.get("FanName")), health=health, state=state,
            location=_location(f), source=src, reading=_float(reading), reading_units=units,
        )

    # --------------------------------------------------------------------------------------------------------
    # GPUs

    def gpu_from_processor(self, p: dict[str, Any], sid: str | None, fns: list[dict[str, Any]]) -> GpuCandidate:
        health, state = _status(p)
        keys = {U.key(u) for u in U.links(p, "Links", "PCIeDevice") + U.links(p, "Links", "PCIeFunctions")}
        vendor = device = None
        for fn in fns:
            vendor = vendor or _norm_hex(fn.get("VendorId"))
            device = device or _norm_hex(fn.get("DeviceId"))
            dev_link = U.link(fn, "Links", "PCIeDevice")
            if dev_link:
                keys.add(U.key(dev_link))
        pid = p.get("ProcessorId") if isinstance(p.get("ProcessorId"), dict) else {}
        if not vendor and pid:
            vendor = _norm_hex(pid.get("VendorId")) if str(pid.get("VendorId", "")).lower().startswith("0x") else None
        return GpuCandidate(
            via="processor", source=U.odata_id(p) or "", model=_clean(p.get("Model")),
            serial=_serial(p.get("SerialNumber")), manufacturer=_clean(p.get("Manufacturer")),
            part_number=_clean(p.get("PartNumber")), firmware_version=_clean(p.get("FirmwareVersion")),
            uuid=_clean(p.get("UUID")), vendor_id=vendor if vendor != "0x0000" else None,
            device_id=device if device != "0x0000" else None, health=health, state=state,
            location=_location(p), system=sid, name=_clean(p.get("Name")), pcie_keys=keys, id=_id(p),
        )

    def gpus_from_pcie(
        self, devices: list[tuple[dict[str, Any], list[dict[str, Any]], str | None]]
    ) -> list[GpuCandidate]:
        out: list[GpuCandidate] = []
        seen_dev: dict[str, GpuCandidate] = {}
        for dev, fns, sid in devices:
            hint: dict[str, Any] = {}
            for q in self.c.quirks:
                h = q.pcie_gpu_hint(dev, fns)
                if h:
                    hint.update({k: v for k, v in h.items() if v is not None})
            gpu_fns = [f for f in fns if is_gpu_class(device_class=f.get("DeviceClass"), class_code=f.get("ClassCode"))]
            if not gpu_fns and not hint.get("is_gpu"):
                continue
            fn = gpu_fns[0] if gpu_fns else (fns[0] if fns else {})
            vendor = _norm_hex(fn.get("VendorId"))
            device = _norm_hex(fn.get("DeviceId"))
            if vendor == "0x0000":
                vendor = None
            if device == "0x0000":
                device = None
            name = _clean(dev.get("Name"))
            if is_management_vga(vendor, f"{dev.get('Manufacturer') or ''} {name or ''} {dev.get('Model') or ''}"):
                continue
            health, state = _status(dev)
            manufacturer = _clean(dev.get("Manufacturer")) or hint.get("manufacturer") or (
                _GPU_VENDOR_IDS.get(vendor or "") if vendor else None)
            model = _clean(dev.get("Model")) or hint.get("model")
            if not model and name and not re.fullmatch(r"[0-9A-Fa-f_:.-]+", name) and "pcie device" not in name.lower():
                model = name
            dev_uri = U.odata_id(dev) or ""
            keys = {U.key(dev_uri)} | {U.key(U.odata_id(f) or "") for f in fns if U.odata_id(f)}
            keys |= {U.key(u) for u in U.links(dev, "Links", "PCIeFunctions")}
            cand = GpuCandidate(
                via="pcie", source=dev_uri, model=model, serial=_serial(dev.get("SerialNumber")),
                manufacturer=manufacturer, part_number=_clean(dev.get("PartNumber")),
                firmware_version=_clean(dev.get("FirmwareVersion")) or hint.get("firmware_version"),
                uuid=_clean(dev.get("UUID")), vendor_id=vendor, device_id=device, health=health, state=state,
                location=_location(dev) or hint.get("location") or _slot_of(dev), system=sid, name=name,
                pcie_keys=keys, id=_id(dev),
            )
            # The same device listed under Systems and Chassis (Dell): same Id and same functions/identity.
            ident = f"{cand.id}|{dev.get('Manufacturer')}|{name}|{cand.serial}"
            twin = seen_dev.get(ident)
            if twin is not None:
                twin.pcie_keys |= keys
                continue
            seen_dev[ident] = cand
            out.append(cand)
        return out


def _slot_of(dev: dict[str, Any]) -> str | None:
    slot = dev.get("Slot")
    return _location(slot) if isinstance(slot, dict) else None


def _fill(dst: GPU, cand: GpuCandidate) -> None:
    for attr in ("model", "serial", "manufacturer", "part_number", "firmware_version", "uuid", "location",
                 "health", "state", "system"):
        if getattr(dst, attr) in (None, "") and getattr(cand, attr):
            setattr(dst, attr, getattr(cand, attr))
    if not dst.pci_vendor_id and cand.vendor_id:
        dst.pci_vendor_id = cand.vendor_id
    if not dst.pci_device_id and cand.device_id:
        dst.pci_device_id = cand.device_id
    if cand.via not in dst.found_via:
        dst.found_via.append(cand.via)
    if cand.source and cand.source not in dst.sources:
        dst.sources.append(cand.source)


_RANK = {"processor": 0, "pcie": 1, "oem": 2}


def merge_gpus(cands: list[GpuCandidate]) -> list[GPU]:
    """One GPU per physical device (see the module docstring for the rules)."""
    gpus: list[GPU] = []
    keys: list[set[str]] = []
    host_view: list[bool] = []  # whether a serial-less host-side view was already merged into gpus[i]

    def new(c: GpuCandidate) -> None:
        g = GPU(
            id=c.id or c.source.rsplit("/", 1)[-1], name=c.name, model=c.model, serial=c.serial,
            manufacturer=c.manufacturer, part_number=c.part_number, firmware_version=c.firmware_version,
            uuid=c.uuid, pci_vendor_id=c.vendor_id, pci_device_id=c.device_id, health=c.health, state=c.state,
            location=c.location, system=c.system, source=c.source, found_via=[c.via], sources=[c.source],
        )
        gpus.append(g)
        keys.append(set(c.pcie_keys) | {U.key(c.source)})
        host_view.append(c.serial is None and c.uuid is None)

    anonymous: list[GpuCandidate] = []
    for c in sorted(cands, key=lambda c: _RANK.get(c.via, 9)):
        match = None
        for i, g in enumerate(gpus):
            if (c.pcie_keys | {U.key(c.source)}) & keys[i]:
                match = i
                break
            if c.serial and g.serial and c.serial == g.serial and _same_model(c.model, g.model):
                match = i
                break
            if c.uuid and g.uuid and c.uuid.lower() == g.uuid.lower():
                match = i
                break
        if match is not None:
            _fill(gpus[match], c)
            keys[match] |= c.pcie_keys | {U.key(c.source)}
            continue
        if c.via != "processor" and c.serial is None and c.uuid is None and gpus:
            anonymous.append(c)
            continue
        new(c)
    # Serial-less PCIe views: pair each with a GPU of the same PCI device ID (then vendor) not yet paired.
    for c in anonymous:
        best = None
        for want in ("device", "vendor", "any"):
            for i, g in enumerate(gpus):
                if host_view[i]:
                    continue
                if want == "device" and not (c.device_id and g.pci_device_id == c.device_id):
                    continue
                if want == "vendor" and not (c.vendor_id and (g.pci_vendor_id == c.vendor_id or _vendor_name_matches(
                        c.vendor_id, g.manufacturer))):
                    continue
                if want == "any" and (g.pci_device_id or g.pci_vendor_id) and c.device_id:
                    continue
                best = i
                break
            if best is not None:
                break
        if best is None:
            new(c)
            host_view[-1] = True
        else:
            _fill(gpus[best], c)
            keys[best] |= c.pcie_keys
            host_view[best] = True
    return gpus


def _same_model(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return True
    a2, b2 = a.lower(), b.lower()
    return a2 in b2 or b2 in a2 or a2.split()[0] == b2.split()[0]


def _vendor_name_matches(vendor_id: str, manufacturer: str | None) -> bool:
    name = _GPU_VENDOR_IDS.get(vendor_id)
    return bool(name and manufacturer and name.lower() in manufacturer.lower())


async def _empty() -> list[Any]:
    return []


async def collect_inventory(client: RedfishClient) -> Inventory:
    """The normalized inventory of the BMC behind ``client`` (opened). Raises RedfishError when the BMC cannot
    be read at all; sections it cannot read are listed in ``inventory.bmc.warnings``."""
    return await _Collector(client).run()
