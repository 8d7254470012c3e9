"""AMI MegaRAC (Gigabyte, ASRock Rack, DGX host BMC): nothing vendor-specific is required for inventory; kept as
the place for MegaRAC behaviour (e.g. its ``$expand`` answers) should one show up."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redfleet.redfish.quirks import Quirk

if TYPE_CHECKING:
    from redfleet.redfish.capabilities import Capabilities


class AmiQuirk(Quirk):
    name = "ami"

    @classmethod
    def matches(cls, caps: Capabilities, root: dict[str, Any]) -> bool:
        return caps.vendor == "AMI" or "Ami" in caps.oem_keys


QUIRK = AmiQuirk
