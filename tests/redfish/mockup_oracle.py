"""What a mockup tree contains, read straight from its files with deliberately simple rules, so that the client's
inventory can be checked against the capture itself rather than against numbers typed into a test.

The rules are independent of redfleet.redfish.inventory (no shared code): plain JSON reads and set arithmetic."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

MGMT_VGA = {"0x1a03", "0x102b", "4139", "6659"}  # ASPEED, Matrox (hex and HPE decimal)


class Tree:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.index: dict[str, Path] = {}
        for f in (root / "redfish" / "v1").rglob("index.json"):
            rel = "/" + f.parent.relative_to(root).as_posix()
            self.index[rel.lower()] = f

    @cache  # noqa: B019 - trees live for the whole test session
    def get(self, uri: str | None) -> dict[str, Any] | None:
        if not uri:
            return None
        path = uri.split("#")[0].split("?")[0].rstrip("/").lower()
        f = self.index.get(path)
        if f is None:
            return None
        try:
            doc = json.loads(f.read_text(errors="replace"))
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def link(self, doc: dict[str, Any] | None, key: str) -> str | None:
        v = (doc or {}).get(key)
        return v.get("@odata.id") if isinstance(v, dict) else None

    def members(self, uri: str | None) -> list[dict[str, Any]]:
        coll = self.get(uri)
        out = []
        seen = set()
        for m in (coll or {}).get("Members") or []:
            u = m.get("@odata.id") if isinstance(m, dict) else None
            if not u or u.rstrip("/").lower() in seen:
                continue
            seen.add(u.rstrip("/").lower())
            d = self.get(u)
            if d is not None:
                out.append(d)
        return out

    # -- sections -------------------------------------------------------------------------------------------
    def root_doc(self) -> dict[str, Any]:
        return self.get("/redfish/v1") or {}

    def systems(self) -> list[dict[str, Any]]:
        return self.members(self.link(self.root_doc(), "Systems"))

    def chassis(self) -> list[dict[str, Any]]:
        return self.members(self.link(self.root_doc(), "Chassis"))

    def processors(self) -> list[dict[str, Any]]:
        return [p for s in self.systems() for p in self.members(self.link(s, "Processors"))]

    def cpus(self) -> list[dict[str, Any]]:
        return [p for p in self.processors() if p.get("ProcessorType") == "CPU"
                and (p.get("Status") or {}).get("State") != "Absent"]

    def dimms(self) -> list[dict[str, Any]]:
        out = []
        for s in self.systems():
            for m in self.members(self.link(s, "Memory")):
                if (m.get("Status") or {}).get("State") == "Absent" or not m.get("CapacityMiB"):
                    continue
                if str(m.get("MemoryDeviceType") or "").upper().startswith("HBM"):
                    continue
                out.append(m)
        return out

    def firmware(self) -> list[dict[str, Any]]:
        upd = self.get(self.link(self.root_doc(), "UpdateService"))
        return self.members(self.link(upd, "FirmwareInventory"))

    def psus(self) -> int:
        n = 0
        for ch in self.chassis():
            sub = self.get(self.link(ch, "PowerSubsystem"))
            if sub and self.link(sub, "PowerSupplies"):
                n += len(self.members(self.link(sub, "PowerSupplies")))
                continue
            n += len((self.get(self.link(ch, "Power")) or {}).get("PowerSupplies") or [])
        return n

    def fans(self) -> int:
        n = 0
        for ch in self.chassis():
            sub = self.get(self.link(ch, "ThermalSubsystem"))
            if sub and self.link(sub, "Fans"):
                n += len(self.members(self.link(sub, "Fans")))
                continue
            n += len((self.get(self.link(ch, "Thermal")) or {}).get("Fans") or [])
        return n

    def pcie_devices(self) -> list[dict[str, Any]]:
        out = []
        for s in self.systems():
            v = s.get("PCIeDevices")
            if isinstance(v, list):
                out.extend(d for d in (self.get(x.get("@odata.id")) for x in v) if d)
            else:
                out.extend(self.members(self.link(s, "PCIeDevices")))
        for ch in self.chassis():
            out.extend(self.members(self.link(ch, "PCIeDevices")))
        return out

    def functions(self, dev: dict[str, Any]) -> list[dict[str, Any]]:
        if self.link(dev, "PCIeFunctions"):
            return self.members(self.link(dev, "PCIeFunctions"))
        return [d for d in (self.get(x.get("@odata.id")) for x in (dev.get("Links") or {}).get("PCIeFunctions") or [])
                if d]

    def gpu_expectation(self) -> tuple[int, set[str]]:
        """(number of physical GPUs, their serial numbers). GPU processors count once each; PCIe display /
        accelerator devices (not BMC VGA) add the serials not already known; serial-less PCIe views (the host's
        view of GPUs) only add GPUs beyond those already counted."""
        proc = [p for p in self.processors() if p.get("ProcessorType") == "GPU"]
        serials = {p["SerialNumber"].strip() for p in proc if (p.get("SerialNumber") or "").strip()}
        count = len(proc)
        anonymous: set[str] = set()
        for dev in self.pcie_devices():
            fns = self.functions(dev)
            gpu_fns = [f for f in fns if f.get("DeviceClass") in ("DisplayController", "ProcessingAccelerators")]
            if not gpu_fns or str(gpu_fns[0].get("VendorId", "")).lower() in MGMT_VGA:
                continue
            serial = (dev.get("SerialNumber") or "").strip()
            if serial:
                if serial not in serials:
                    serials.add(serial)
                    count += 1
            else:
                anonymous.add(str(dev.get("Id")))
        count = max(count, len(anonymous))
        return count, serials
