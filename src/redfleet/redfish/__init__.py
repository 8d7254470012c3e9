"""Southbound Redfish: an async client for BMCs and the normalized inventory built from what they serve.

Public API (see ``.notes/client-contract.md``)::

    from redfleet.redfish import RedfishClient, collect_inventory, read_sensors, power
"""

from __future__ import annotations

from redfleet.redfish.actions import (
    eject_virtual_media,
    insert_virtual_media,
    power,
    power_state,
    reset_manager,
    set_boot_override,
)
from redfleet.redfish.client import ActionResult, RedfishClient, RetryPolicy, TaskOutcome, Timeouts
from redfleet.redfish.errors import CertificateChanged, RedfishError
from redfleet.redfish.inventory import collect_inventory
from redfleet.redfish.sensors import read_sensors
from redfleet.redfish.tls import JsonFilePinStore, MemoryPinStore, PinStore, TLSPolicy

__all__ = [
    "ActionResult",
    "CertificateChanged",
    "JsonFilePinStore",
    "MemoryPinStore",
    "PinStore",
    "RedfishClient",
    "RedfishError",
    "RetryPolicy",
    "TLSPolicy",
    "TaskOutcome",
    "Timeouts",
    "collect_inventory",
    "eject_virtual_media",
    "insert_virtual_media",
    "power",
    "power_state",
    "read_sensors",
    "reset_manager",
    "set_boot_override",
]
