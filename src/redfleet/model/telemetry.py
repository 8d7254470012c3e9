"""Sensor readings read from a BMC (Redfish Sensors / legacy Thermal+Power, or IPMI SDR): ``redfleet sensors``."""

from __future__ import annotations

from typing import Any

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

    @classmethod
    def trusted(cls, values: dict[str, Any]) -> Reading:
        """A Reading from ``values`` that already hold every field, in declaration order, each of its declared type
        (what :mod:`redfleet.redfish.sensors` builds): no validation pass. Validation was the largest cost after
        JSON parsing when a poll normalises hundreds of readings per BMC across thousands of BMCs; this does what
        ``model_construct`` does without its per-field work (tests check both give the same model)."""
        m = cls.__new__(cls)
        object.__setattr__(m, "__dict__", values)
        object.__setattr__(m, "__pydantic_fields_set__", _ALL_FIELDS)
        object.__setattr__(m, "__pydantic_extra__", None)
        object.__setattr__(m, "__pydantic_private__", None)
        return m


# Every trusted Reading has every field set: one shared set (setting an attribute adds a name already in it).
_ALL_FIELDS = set(Reading.model_fields)
READING_FIELDS = tuple(Reading.model_fields)


class SensorReadings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bmc: str
    collected_at: str | None = None
    via: str = "redfish"  # "redfish-sensors" | "redfish-legacy" | "ipmi"
    readings: list[Reading] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def by_kind(self, kind: str) -> list[Reading]:
        return [r for r in self.readings if r.kind == kind]
