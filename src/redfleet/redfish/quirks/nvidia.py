"""NVIDIA HGX/DGX: the HGX baseboard is a second ComputerSystem (``HGX_Baseboard_0``) managed by its own HMC, with
the GPUs as Processors; the host BMC (often AMI) sees the same GPUs again on its PCIe bus without serials.
The standard inventory code merges both views; this quirk only marks the service so the merge prefers the
baseboard's identities (nothing here is needed for correctness)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redfleet.redfish.quirks import Quirk

if TYPE_CHECKING:
    from redfleet.redfish.capabilities import Capabilities


class NvidiaQuirk(Quirk):
    name = "nvidia"

    @classmethod
    def matches(cls, caps: Capabilities, root: dict[str, Any]) -> bool:
        return caps.vendor == "NVIDIA" or "Nvidia" in caps.oem_keys


QUIRK = NvidiaQuirk
