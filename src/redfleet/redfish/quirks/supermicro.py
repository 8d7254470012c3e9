"""Supermicro: HGX GPUs appear only as ``Chassis/1/PCIeDevices/GPU<n>`` with PCI IDs zeroed; the vendor and model are
in an OEM block (``Oem.Supermicro`` on the device, ``Oem.Supermicro.GPUDevice`` on its function)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redfleet.redfish.quirks import Quirk

if TYPE_CHECKING:
    from redfleet.redfish.capabilities import Capabilities


class SupermicroQuirk(Quirk):
    name = "supermicro"

    @classmethod
    def matches(cls, caps: Capabilities, root: dict[str, Any]) -> bool:
        return caps.vendor == "Supermicro"

    def pcie_gpu_hint(self, device: dict[str, Any], functions: list[dict[str, Any]]) -> dict[str, Any] | None:
        hint: dict[str, Any] = {}
        oem = (device.get("Oem") or {}).get("Supermicro") or {}
        if oem.get("GPUVendor"):
            hint["manufacturer"] = oem["GPUVendor"]
        if oem.get("GPUSlot") is not None:
            hint["location"] = f"GPU slot {oem['GPUSlot']}"
        for fn in functions:
            gd = ((fn.get("Oem") or {}).get("Supermicro") or {}).get("GPUDevice") or {}
            if gd:
                hint.setdefault("manufacturer", gd.get("GPUVendor"))
                hint.setdefault("model", gd.get("GPUModel"))
                hint.setdefault("firmware_version", gd.get("GPUFWRevision"))
                if gd.get("GPUSlot") is not None:
                    hint.setdefault("location", f"GPU slot {gd['GPUSlot']}")
        if hint:
            hint["is_gpu"] = True
        return hint or None


QUIRK = SupermicroQuirk
