"""Read a BMC's sensors: the ``Sensors`` collections of every chassis when the service has them (Redfish 2018+),
else the legacy ``Thermal`` (temperatures, fans) and ``Power`` (consumed power, voltages, PSU input) resources."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from redfleet.model.telemetry import SensorReadings
from redfleet.redfish import uri as U
from redfleet.redfish.client import RedfishClient
from redfleet.redfish.errors import RedfishError
from redfleet.redfish.inventory import _float, _id, _is_soft, _status

_KIND_BY_TYPE = {
    "Temperature": "temperature",
    "Rotational": "fan",
    "Power": "power",
    "Voltage": "voltage",
    "Current": "current",
    "EnergykWh": "energy",
    "EnergyJoules": "energy",
    "Humidity": "humidity",
    "Percent": "other",
}
_KIND_BY_UNIT = {"Cel": "temperature", "RPM": "fan", "W": "power", "V": "voltage", "A": "current", "kW.h": "energy"}


def sensor_reading(s: dict[str, Any]) -> dict[str, Any]:
    """One Redfish Sensor as the fields of a :class:`Reading` (validated in one batch by the caller)."""
    st = s.get("Status")
    health = state = None
    if isinstance(st, dict):
        health = st.get("Health") or st.get("HealthRollup")
        state = st.get("State")
    units = s.get("ReadingUnits")
    rtype = s.get("ReadingType")
    kind = _KIND_BY_TYPE.get(str(rtype)) if rtype else None
    if kind is None:
        kind = _KIND_BY_UNIT.get(str(units), "other")
    th = s.get("Thresholds")
    uc = uf = lc = None
    if isinstance(th, dict) and th:
        uc, uf, lc = _th(th, "UpperCritical"), _th(th, "UpperFatal"), _th(th, "LowerCritical")
    value = s.get("Reading")
    return {
        "id": str(s.get("Id") or _id(s)), "name": s.get("Name"), "kind": kind,
        "value": value if isinstance(value, (int, float)) and not isinstance(value, bool) else _float(value),
        "units": units, "health": health, "state": state, "context": s.get("PhysicalContext"),
        "source": s.get("@odata.id"), "upper_critical": uc, "upper_fatal": uf, "lower_critical": lc,
    }


def _th(th: dict[str, Any], name: str) -> float | None:
    v = th.get(name)
    return _float(v.get("Reading")) if isinstance(v, dict) else None


def legacy_readings(thermal: dict[str, Any] | None, power: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, t in enumerate((thermal or {}).get("Temperatures") or []):
        if not isinstance(t, dict):
            continue
        health, state = _status(t)
        out.append(dict(
            id=str(t.get("MemberId") or t.get("SensorNumber") or i), name=t.get("Name"), kind="temperature",
            value=_float(t.get("ReadingCelsius")), units="Cel", health=health, state=state,
            context=t.get("PhysicalContext"), upper_critical=_float(t.get("UpperThresholdCritical")),
            upper_fatal=_float(t.get("UpperThresholdFatal")), lower_critical=_float(t.get("LowerThresholdCritical")),
            source=t.get("@odata.id") or f"{U.odata_id(thermal)}#/Temperatures/{i}",
        ))
    for i, f in enumerate((thermal or {}).get("Fans") or []):
        if not isinstance(f, dict):
            continue
        health, state = _status(f)
        out.append(dict(
            id=str(f.get("MemberId") or i), name=f.get("Name") or f.get("FanName"), kind="fan",
            value=_float(f.get("Reading")), units=f.get("ReadingUnits") or "RPM", health=health, state=state,
            context=f.get("PhysicalContext"), lower_critical=_float(f.get("LowerThresholdCritical")),
            source=f.get("@odata.id") or f"{U.odata_id(thermal)}#/Fans/{i}",
        ))
    for i, pc in enumerate((power or {}).get("PowerControl") or []):
        if not isinstance(pc, dict):
            continue
        health, state = _status(pc)
        out.append(dict(
            id=str(pc.get("MemberId") or i), name=pc.get("Name") or "Power consumed", kind="power",
            value=_float(pc.get("PowerConsumedWatts")), units="W", health=health, state=state,
            context=pc.get("PhysicalContext"), source=pc.get("@odata.id") or f"{U.odata_id(power)}#/PowerControl/{i}",
        ))
    for i, v in enumerate((power or {}).get("Voltages") or []):
        if not isinstance(v, dict):
            continue
        health, state = _status(v)
        out.append(dict(
            id=str(v.get("MemberId") or i), name=v.get("Name"), kind="voltage", value=_float(v.get("ReadingVolts")),
            units="V", health=health, state=state, context=v.get("PhysicalContext"),
            upper_critical=_float(v.get("UpperThresholdCritical")),
            lower_critical=_float(v.get("LowerThresholdCritical")),
            source=v.get("@odata.id") or f"{U.odata_id(power)}#/Voltages/{i}",
        ))
    return out


async def read_sensors(client: RedfishClient, *, chassis: list[str] | None = None) -> SensorReadings:
    """Current sensor readings of every chassis (or the given chassis URIs). Always reads live (no cache)."""
    c = client
    warnings: list[str] = []
    if chassis is None:
        coll = c.caps.services.get("Chassis")
        if not coll:
            return SensorReadings(bmc=c.base_url, via="redfish", warnings=["service root has no Chassis"])
        members = await c.get_members(coll, ignore_errors=False)  # chassis list: cached per client
    else:
        members = await c.resolve_links([{"@odata.id": u} for u in chassis], ignore_errors=False)

    async def one(ch: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        try:
            thermal_uri, power_uri = U.odata_id(ch.get("Thermal")), U.odata_id(ch.get("Power"))
            modern: list[dict[str, Any]] = []
            if U.odata_id(ch.get("Sensors")):
                docs = await c.get_members(ch["Sensors"], kind="sensors", cache=False)
                modern = [sensor_reading(d) for d in docs]
                # Some BMCs (Supermicro X13) list a token Sensors collection and keep the real readings in the
                # legacy resources: read those too when Sensors has no temperature or almost nothing.
                sparse = len(modern) < 4 or not any(r["kind"] == "temperature" for r in modern)
                if not (sparse and (thermal_uri or power_uri)):
                    return "redfish-sensors", modern
            thermal, power = await asyncio.gather(
                c.try_get(thermal_uri, kind="sensors", cache=False) if thermal_uri else _none(),
                c.try_get(power_uri, kind="sensors", cache=False) if power_uri else _none(),
            )
            legacy = legacy_readings(thermal, power)
            if modern:
                names = {(r["kind"], (r["name"] or "").lower()) for r in modern}
                return "redfish-mixed", modern + [
                    r for r in legacy if (r["kind"], (r.get("name") or "").lower()) not in names]
            return "redfish-legacy", legacy
        except RedfishError as exc:
            if not _is_soft(exc):
                raise
            warnings.append(f"{U.odata_id(ch)}: {exc}")
            return "redfish", []

    results = await asyncio.gather(*(one(ch) for ch in members))
    readings: list[dict[str, Any]] = []
    vias = set()
    for via, rs in results:
        readings.extend(rs)
        if rs:
            vias.add(via)
    via = vias.pop() if len(vias) == 1 else ("redfish-mixed" if vias else "redfish")
    # one validation pass over every reading (much cheaper than a model object per reading)
    return SensorReadings.model_validate({
        "bmc": c.base_url, "collected_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "via": via, "readings": readings, "warnings": warnings,
    })


async def _none() -> None:
    return None
