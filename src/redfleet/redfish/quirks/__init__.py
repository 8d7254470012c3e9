"""Vendor quirks: small modules that adjust standard Redfish handling for one vendor's BMC.

A quirk is chosen from what the service root *advertises* (``Oem`` keys, ``Vendor``, ``Product``) after
capability detection, never from a list of known models; with no quirk matching, everything works from standard
Redfish alone. Each module defines one :class:`Quirk` subclass and is listed in ``QUIRK_MODULES``.

Hooks (all optional; the base class does nothing):

- ``adjust(client)``: tweak the client once the root is read (e.g. known-broken ``$expand``).
- ``follow_task(client, monitor, deadline, poll, on_progress)``: take over task-monitor following (Dell: a task that
  turns into a job); return None to let the standard code follow it.
- ``extra_gpus(client, ctx) -> list[GpuCandidate]``: GPUs from vendor OEM lists (HPE ``PCIDevices``).
- ``pcie_gpu_hint(device, functions) -> dict | None``: vendor facts for a PCIe device (Supermicro OEM GPU block).
- ``virtual_media_action(...)``: vendor ways to insert media when the standard action is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redfleet.redfish.capabilities import Capabilities
    from redfleet.redfish.client import RedfishClient

QUIRK_MODULES = ("dell", "hpe", "supermicro", "nvidia", "ami")


class Quirk:
    name = "base"

    @classmethod
    def matches(cls, caps: Capabilities, root: dict[str, Any]) -> bool:
        return False

    def adjust(self, client: RedfishClient) -> None:
        return None

    def pcie_gpu_hint(self, device: dict[str, Any], functions: list[dict[str, Any]]) -> dict[str, Any] | None:
        return None

    async def extra_gpus(self, client: RedfishClient, systems: list[dict[str, Any]]) -> list[Any]:
        return []

    def __repr__(self) -> str:
        return f"<quirk {self.name}>"


_CLASSES: list[type[Quirk]] | None = None


def quirk_classes() -> list[type[Quirk]]:
    global _CLASSES
    if _CLASSES is None:
        found: list[type[Quirk]] = []
        for mod_name in QUIRK_MODULES:
            mod = importlib.import_module(f"{__name__}.{mod_name}")
            found.append(mod.QUIRK)
        _CLASSES = found
    return _CLASSES


def select_quirks(caps: Capabilities, root: dict[str, Any]) -> list[Quirk]:
    return [cls() for cls in quirk_classes() if cls.matches(caps, root)]
