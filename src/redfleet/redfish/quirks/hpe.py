"""HPE iLO: the OEM ``PCIDevices`` list (a second place GPUs show up on ProLiant/Apollo systems) and iLO's
lower-case, trailing-slash links (normalized generically by :mod:`redfleet.redfish.uri`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redfleet.redfish import uri as U
from redfleet.redfish.quirks import Quirk

if TYPE_CHECKING:
    from redfleet.redfish.capabilities import Capabilities
    from redfleet.redfish.client import RedfishClient


class HPEQuirk(Quirk):
    name = "hpe"

    @classmethod
    def matches(cls, caps: Capabilities, root: dict[str, Any]) -> bool:
        return caps.vendor == "HPE"

    async def extra_gpus(self, client: RedfishClient, systems: list[dict[str, Any]]) -> list[Any]:
        from redfleet.redfish.inventory import GpuCandidate, is_gpu_class, is_management_vga

        out: list[Any] = []
        for system in systems:
            oem = (system.get("Oem") or {}).get("Hpe") or {}
            coll = U.link(oem, "Links", "PCIDevices") or U.odata_id(system.get("PCIDevices"))
            if not coll:
                sid = U.odata_id(system)
                coll = U.join(sid, "PCIDevices") if sid else None
            if not coll:
                continue
            for dev in await client.get_members(coll):
                class_code = dev.get("ClassCode")
                vendor = dev.get("VendorID")
                if not is_gpu_class(class_code=class_code, subclass=dev.get("SubclassCode")):
                    continue
                if is_management_vga(vendor, dev.get("Name")):
                    continue
                out.append(GpuCandidate(
                    via="oem", source=U.odata_id(dev) or coll, model=dev.get("Name"),
                    location=dev.get("LocationString") or dev.get("StructuredName"),
                    vendor_id=_hex(vendor), device_id=_hex(dev.get("DeviceID")), system=U.odata_id(system),
                    name=dev.get("Name"),
                ))
        return out


def _hex(v: Any) -> str | None:
    if isinstance(v, int):
        return f"0x{v:04x}"
    return str(v).lower() if v else None


QUIRK = HPEQuirk
