"""Read a BMC's sensors: the ``Sensors`` collections of every chassis when the service has them (Redfish 2018+),
else the legacy ``Thermal`` (temperatures, fans) and ``Power`` (consumed power, voltages, PSU input) resources.

Warm polls: a full read leaves a :class:`SensorPlan` on the client (which of each chassis' resources held readings);
the next reads send only those requests, one per resource (a Sensors collection with ``$expand`` where the service
advertises it), and nothing for chassis without readings or for an empty Sensors collection. The plan is dropped,
and everything read again, when a planned read fails, when the chassis list the client knows changes, when what a
resource holds no longer fits the plan (a Sensors collection gone sparse), and every ``PLAN_TTL_S`` seconds (a
resource that appeared later)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redfleet.model.telemetry import Reading, SensorReadings
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


def _str(v: Any) -> str | None:
    return v if v is None or type(v) is str else str(v)


def row(id: str, name: Any, kind: str, value: float | None, units: Any = None, health: Any = None,
        state: Any = None, context: Any = None, upper_critical: float | None = None,
        upper_fatal: float | None = None, lower_critical: float | None = None, source: Any = None) -> dict[str, Any]:
    """The fields of a :class:`Reading`, in its order and of its types (``Reading.trusted`` takes it as is)."""
    return {"id": id, "name": _str(name), "kind": kind, "value": value, "units": _str(units),
            "health": _str(health), "state": _str(state), "context": _str(context),
            "upper_critical": upper_critical, "upper_fatal": upper_fatal, "lower_critical": lower_critical,
            "source": _str(source)}


def sensor_reading(s: dict[str, Any]) -> dict[str, Any]:
    """One Redfish Sensor as the fields of a :class:`Reading` (see :func:`row`).

    Written for speed (a DGX answers ~500 sensors per poll): exact type tests instead of isinstance chains, and
    the common case (strings where strings belong) costs no conversion."""
    get = s.get
    st = get("Status")
    health = state = None
    if type(st) is dict:
        health = st.get("Health") or st.get("HealthRollup")
        state = st.get("State")
    units = get("ReadingUnits")
    rtype = get("ReadingType")
    kind = _KIND_BY_TYPE.get(rtype if type(rtype) is str else str(rtype)) if rtype else None
    if kind is None:
        kind = _KIND_BY_UNIT.get(units if type(units) is str else str(units), "other")
    th = get("Thresholds")
    uc = uf = lc = None
    if type(th) is dict and th:
        uc, uf, lc = _th(th, "UpperCritical"), _th(th, "UpperFatal"), _th(th, "LowerCritical")
    value: Any = get("Reading")
    if type(value) is int:
        value = float(value)
    elif type(value) is not float:  # bool is not int here: True is no reading
        value = _float(value)
    name, context, source = get("Name"), get("PhysicalContext"), get("@odata.id")
    return {
        "id": str(get("Id") or _id(s)), "name": name if name is None or type(name) is str else str(name),
        "kind": kind, "value": value, "units": units if units is None or type(units) is str else str(units),
        "health": health if health is None or type(health) is str else str(health),
        "state": state if state is None or type(state) is str else str(state),
        "context": context if context is None or type(context) is str else str(context),
        "upper_critical": uc, "upper_fatal": uf, "lower_critical": lc,
        "source": source if source is None or type(source) is str else str(source),
    }


def _th(th: dict[str, Any], name: str) -> float | None:
    v = th.get(name)
    if type(v) is not dict:
        return None
    r = v.get("Reading")
    return r if type(r) is float else _float(r)


def legacy_readings(thermal: dict[str, Any] | None, power: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, t in enumerate((thermal or {}).get("Temperatures") or []):
        if not isinstance(t, dict):
            continue
        health, state = _status(t)
        out.append(row(
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
        out.append(row(
            id=str(f.get("MemberId") or i), name=f.get("Name") or f.get("FanName"), kind="fan",
            value=_float(f.get("Reading")), units=f.get("ReadingUnits") or "RPM", health=health, state=state,
            context=f.get("PhysicalContext"), lower_critical=_float(f.get("LowerThresholdCritical")),
            source=f.get("@odata.id") or f"{U.odata_id(thermal)}#/Fans/{i}",
        ))
    for i, pc in enumerate((power or {}).get("PowerControl") or []):
        if not isinstance(pc, dict):
            continue
        health, state = _status(pc)
        out.append(row(
            id=str(pc.get("MemberId") or i), name=pc.get("Name") or "Power consumed", kind="power",
            value=_float(pc.get("PowerConsumedWatts")), units="W", health=health, state=state,
            context=pc.get("PhysicalContext"), source=pc.get("@odata.id") or f"{U.odata_id(power)}#/PowerControl/{i}",
        ))
    for i, v in enumerate((power or {}).get("Voltages") or []):
        if not isinstance(v, dict):
            continue
        health, state = _status(v)
        out.append(row(
            id=str(v.get("MemberId") or i), name=v.get("Name"), kind="voltage", value=_float(v.get("ReadingVolts")),
            units="V", health=health, state=state, context=v.get("PhysicalContext"),
            upper_critical=_float(v.get("UpperThresholdCritical")),
            lower_critical=_float(v.get("LowerThresholdCritical")),
            source=v.get("@odata.id") or f"{U.odata_id(power)}#/Voltages/{i}",
        ))
    return out


#: Seconds a sensor plan is trusted before the next read re-reads everything (finds resources that appeared).
PLAN_TTL_S = 600.0


@dataclass
class ChassisReads:
    """The reads that gave one chassis' readings in the last full read (None: not worth reading)."""

    chassis: str
    sensors: str | None  # Sensors collection, read only when it had members
    thermal: str | None
    power: str | None
    has_legacy: bool  # the chassis links Thermal or Power (a Sensors collection gone sparse needs them)
    legacy_read: bool = False  # the full read consulted Thermal/Power (and kept those that gave readings)


@dataclass
class SensorPlan:
    """What a warm poll of one BMC reads, learnt from its last full read (kept on the client)."""

    chassis: tuple[str, ...]  # the chassis list the plan was made from, in order
    reads: list[ChassisReads]
    made_at: float  # time.monotonic()


class _Replan(Exception):
    """The plan no longer fits what the BMC answers: read everything again."""


async def read_sensors(client: RedfishClient, *, chassis: list[str] | None = None) -> SensorReadings:
    """Current sensor readings of every chassis (or the given chassis URIs). Always reads live (no cache).

    Without ``chassis``, a read that follows a complete one on the same client sends only the requests that gave
    readings (see the module docstring)."""
    c = client
    if chassis is None:
        coll = c.caps.services.get("Chassis")
        if not coll:
            return SensorReadings(bmc=c.base_url, via="redfish", warnings=["service root has no Chassis"])
        members = await c.get_members(coll, ignore_errors=False)  # chassis list: cached per client
        plan: SensorPlan | None = c.sensor_plan
        if plan is not None:
            if plan.chassis == tuple(U.odata_id(m) or "" for m in members) and \
                    time.monotonic() - plan.made_at < PLAN_TTL_S:
                # every chassis finishes (no read left running beside a full read that would follow)
                done = await asyncio.gather(*(_planned(c, r) for r in plan.reads), return_exceptions=True)
                hard = next((e for e in done if isinstance(e, BaseException) and not isinstance(e, _Replan)), None)
                if hard is not None:
                    raise hard
                fine = [d for d in done if not isinstance(d, BaseException)]
                if len(fine) == len(done):
                    return _result(c, fine, [])
            c.sensor_plan = None
    else:
        members = await c.resolve_links([{"@odata.id": u} for u in chassis], ignore_errors=False)
    warnings: list[str] = []
    results = await asyncio.gather(*(_full(c, ch, warnings) for ch in members))
    if chassis is None and not warnings:
        reads = [r for _, _, r in results if r is not None and (r.sensors or r.thermal or r.power)]
        c.sensor_plan = SensorPlan(tuple(U.odata_id(m) or "" for m in members), reads, time.monotonic())
    return _result(c, [(via, rs) for via, rs, _ in results], warnings)


def _result(c: RedfishClient, results: list[tuple[str, list[dict[str, Any]]]], warnings: list[str]) -> SensorReadings:
    readings: list[dict[str, Any]] = []
    vias = set()
    for via, rs in results:
        readings.extend(rs)
        if rs:
            vias.add(via)
    via = vias.pop() if len(vias) == 1 else ("redfish-mixed" if vias else "redfish")
    # the readings are built field by field with their declared types (sensor_reading, row): no validation pass
    trusted = Reading.trusted
    return SensorReadings(
        bmc=c.base_url, collected_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        via=via, readings=[trusted(r) for r in readings], warnings=warnings,
    )


def _sparse(modern: list[dict[str, Any]]) -> bool:
    # Some BMCs (Supermicro X13) list a token Sensors collection and keep the real readings in the legacy
    # resources: those are read too when Sensors has no temperature or almost nothing.
    return len(modern) < 4 or not any(r["kind"] == "temperature" for r in modern)


def _combine(modern: list[dict[str, Any]], legacy: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    if modern:
        names = {(r["kind"], (r["name"] or "").lower()) for r in modern}
        return "redfish-mixed", modern + [
            r for r in legacy if (r["kind"], (r.get("name") or "").lower()) not in names]
    return "redfish-legacy", legacy


async def _full(
    c: RedfishClient, ch: dict[str, Any], warnings: list[str]
) -> tuple[str, list[dict[str, Any]], ChassisReads | None]:
    """Everything one chassis offers; also says which of its reads gave readings (the plan's part)."""
    cid = U.odata_id(ch) or ""
    try:
        thermal_uri, power_uri = U.odata_id(ch.get("Thermal")), U.odata_id(ch.get("Power"))
        sensors_uri = U.odata_id(ch.get("Sensors"))
        plan = ChassisReads(cid, None, None, None, bool(thermal_uri or power_uri))
        modern: list[dict[str, Any]] = []
        if sensors_uri:
            docs = await c.get_members(ch["Sensors"], kind="sensors", cache=False)
            modern = [sensor_reading(d) for d in docs]
            plan.sensors = sensors_uri if docs else None
            if not (_sparse(modern) and plan.has_legacy):
                return "redfish-sensors", modern, plan
        thermal, power = await asyncio.gather(
            c.try_get(thermal_uri, kind="sensors", cache=False) if thermal_uri else _none(),
            c.try_get(power_uri, kind="sensors", cache=False) if power_uri else _none(),
        )
        plan.legacy_read = True
        from_thermal, from_power = legacy_readings(thermal, None), legacy_readings(None, power)
        plan.thermal = thermal_uri if from_thermal else None  # missing or empty (no readings): not polled
        plan.power = power_uri if from_power else None
        via, rs = _combine(modern, from_thermal + from_power)
        return via, rs, plan
    except RedfishError as exc:
        if not _is_soft(exc):
            raise
        warnings.append(f"{cid}: {exc}")
        return "redfish", [], None


async def _planned(c: RedfishClient, p: ChassisReads) -> tuple[str, list[dict[str, Any]]]:
    """One chassis as the plan says, the reads in parallel; _Replan when the answers no longer fit it."""
    thermal = power = None
    try:
        if p.sensors and not (p.thermal or p.power):  # the common case: one read, no task to gather
            docs = await _sensor_docs(c, p.sensors)
        else:
            docs, thermal, power = await asyncio.gather(
                _sensor_docs(c, p.sensors) if p.sensors else _none(),
                c.get(p.thermal, kind="sensors", cache=False) if p.thermal else _none(),
                c.get(p.power, kind="sensors", cache=False) if p.power else _none(),
            )
    except RedfishError as exc:
        if not _is_soft(exc):
            raise
        raise _Replan from exc
    if p.sensors:
        modern = [sensor_reading(d) for d in docs or ()]
        if not (_sparse(modern) and p.has_legacy):
            if p.thermal or p.power:
                raise _Replan  # enough readings in Sensors now: the legacy reads are no longer wanted
            return "redfish-sensors", modern
        if not modern or not p.legacy_read:
            raise _Replan  # emptied, or sparse now and the legacy resources were never consulted
        return _combine(modern, legacy_readings(thermal, power))  # (those that gave nothing are not read)
    return _combine([], legacy_readings(thermal, power))


async def _sensor_docs(c: RedfishClient, uri: str) -> list[dict[str, Any]]:
    """The members of a Sensors collection, read live. Where the service expands it (one request), the members are
    taken as they came when every one is a whole resource, once each (what ``get_members`` would return, without
    its per-member link bookkeeping); anything else (pages, links) goes through the client's ``members_of``."""
    query = None if c._expand_broken else c.caps.expand_query(1)
    if query is None:
        return await c.get_members(uri, kind="sensors", cache=False, ignore_errors=False)
    doc = await c.get(uri, kind="sensors", query=query, cache=False)
    members = doc.get("Members")
    if type(members) is list and "Members@odata.nextLink" not in doc:
        ids = set()
        for m in members:
            if type(m) is not dict or "Id" not in m:  # a link left unexpanded (or not a resource)
                break
            ids.add(m.get("@odata.id"))
        else:
            if len(ids) == len(members):
                return members
    return await c.members_of(uri, doc, kind="sensors", cache=False)


async def _none() -> None:
    return None
