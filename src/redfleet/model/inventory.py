"""The normalized hardware inventory of one BMC: what ``redfleet inventory --json`` prints and the store keeps.

Stable contract (``Inventory.model_dump(mode="json")``): top-level keys ``bmc``, ``systems``, ``cpus``, ``gpus``,
``memory``, ``drives``, ``nics``, ``psus``, ``fans``, ``firmware``; every list is node-wide (aggregated over all
systems and chassis the BMC manages). Every item has ``id``, ``health`` (``OK``/``Warning``/``Critical`` or null),
``location`` (the best human label the BMC gives, or null) and ``source`` (the Redfish URI it was read from).
Fields may be added in later versions; none is renamed or removed without bumping ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str | None = None
    health: str | None = None
    state: str | None = None
    location: str | None = None
    source: str | None = None


class BMCInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    redfish_version: str | None = None
    uuid: str | None = None
    manager_id: str | None = None
    health: str | None = None
    auth: str | None = None  # "session" | "basic" | "none": what the collection used
    capabilities: dict[str, Any] = Field(default_factory=dict)
    quirks: list[str] = Field(default_factory=list)
    source: str | None = None
    schema_version: int = SCHEMA_VERSION
    collected_at: str | None = None  # ISO 8601 UTC
    duration_s: float | None = None
    requests: int | None = None
    warnings: list[str] = Field(default_factory=list)  # sections that could not be read


class System(Item):
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    sku: str | None = None
    uuid: str | None = None
    bios_version: str | None = None
    power_state: str | None = None
    system_type: str | None = None
    host_name: str | None = None
    memory_gib: float | None = None
    processor_count: int | None = None


class CPU(Item):
    system: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    architecture: str | None = None
    cores: int | None = None
    threads: int | None = None
    max_speed_mhz: int | None = None


class GPU(Item):
    model: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    part_number: str | None = None
    firmware_version: str | None = None
    uuid: str | None = None
    pci_vendor_id: str | None = None
    pci_device_id: str | None = None
    system: str | None = None
    # every place the GPU was seen ("processor", "pcie", "oem", "hgx") and every URI, for audit and merging
    found_via: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)


class Memory(Item):
    system: str | None = None
    capacity_mib: int | None = None
    memory_type: str | None = None
    speed_mhz: int | None = None
    manufacturer: str | None = None
    part_number: str | None = None
    serial: str | None = None


class Drive(Item):
    model: str | None = None
    serial: str | None = None
    manufacturer: str | None = None
    capacity_bytes: int | None = None
    media_type: str | None = None
    protocol: str | None = None
    firmware_version: str | None = None


class Port(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    mac: str | None = None
    link_status: str | None = None
    speed_mbps: float | None = None
    source: str | None = None


class NIC(Item):
    kind: str = "adapter"  # "adapter" (Chassis NetworkAdapters) | "interface" (System EthernetInterfaces)
    model: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    part_number: str | None = None
    firmware_version: str | None = None
    mac: str | None = None  # interfaces: their MAC; adapters: the first port's
    speed_mbps: float | None = None
    link_status: str | None = None
    ports: list[Port] = Field(default_factory=list)


class PSU(Item):
    model: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    part_number: str | None = None
    firmware_version: str | None = None
    capacity_watts: float | None = None


class Fan(Item):
    reading: float | None = None
    reading_units: str | None = None


class Firmware(Item):
    name: str  # required here: the contract promises name and version
    version: str | None = None
    updateable: bool | None = None


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bmc: BMCInfo
    systems: list[System] = Field(default_factory=list)
    cpus: list[CPU] = Field(default_factory=list)
    gpus: list[GPU] = Field(default_factory=list)
    memory: list[Memory] = Field(default_factory=list)
    drives: list[Drive] = Field(default_factory=list)
    nics: list[NIC] = Field(default_factory=list)
    psus: list[PSU] = Field(default_factory=list)
    fans: list[Fan] = Field(default_factory=list)
    firmware: list[Firmware] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in SECTIONS}


SECTIONS = ("systems", "cpus", "gpus", "memory", "drives", "nics", "psus", "fans", "firmware")
TOP_LEVEL_KEYS = ("bmc", *SECTIONS)
