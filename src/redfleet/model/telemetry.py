"""Sensor readings read from a BMC (Redfish Sensors / legacy Thermal+Power, or IPMI SDR): ``redfleet sensors``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str | None = None
    kind: str = "other"  # temperature | fan | power | voltage | current | energy | humidity | other
    value: float | None = None
    units: str | None = None
    health: str | None = None
    state: str | None = None
    context: str | None = None  # PhysicalContext (CPU, GPU, Intake, PowerSupply...)
    upper_critical: float | None = None
    upper_fatal: float | None = None
    lower_critical: float | None = None
    source: str | None = None


class SensorReadings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bmc: str
    collected_at: str | None = None
    via: str = "redfish"  # "redfish-sensors" | "redfish-legacy" | "ipmi"
    readings: list[Reading] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def by_kind(self, kind: str) -> list[Reading]:
        return [r for r in self.readings if r.kind == kind]
