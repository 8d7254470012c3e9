"""Live resources rendered straight to bytes: the cheap path for a healthy node's sensors.

A ``Sensor``, ``Thermal`` or ``Power`` resource of a flavor is compiled once (per flavor, shared by every node) into
the bytes of its captured document cut around the values that move: readings, ``Status`` objects (one serialized
variant per health) and ``@odata.etag``. A GET then computes the readings, picks the Status variants and joins the
pieces, instead of parsing the document, running the overlay of :mod:`redfleet.sim.dyn_overlay` on it and
serializing it again.

The result is the bytes that overlay gives (tests/sim/test_core_fast_answers.py compares both for every such
resource of every flavor). It is used only while the node's conditions are the plain healthy ``ON`` (no fault,
powered, up for a while): the code below is the overlay's for that case only. Any fault, power change or boot sends
the node's reads back through the overlay from the next request on.
"""

from __future__ import annotations

import copy
import re
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import orjson

from redfleet.sim.dyn_overlay import _TEMPS, _energy, _status, _upper_limits
from redfleet.sim.telemetry import adjust, key_of

if TYPE_CHECKING:  # pragma: no cover
    from redfleet.sim.dyn_node import NodeDyn
    from redfleet.sim.telemetry import Conditions

Doc = dict[str, Any]

_MARK = re.compile(rb'"\\u0000rf(-?\d+)\\u0000"')
_HEALTHS = ("OK", "Warning", "Critical")
_ETAG = -1  # the slot of "@odata.etag"


def _mark(n: int) -> str:
    return f"\x00rf{n}\x00"


class _Layout:
    """A serialized shell as a bytes %-format: ``fmt % pick(values)``, where ``values`` holds the slots' bytes by
    slot number and the ETag's last."""

    __slots__ = ("fmt", "pick", "size")

    def __init__(self, shell: Doc, slots: int) -> None:
        body = orjson.dumps(shell)
        pieces: list[bytes] = []
        order: list[int] = []
        pos = 0
        for m in _MARK.finditer(body):
            pieces.append(body[pos:m.start()].replace(b"%", b"%%"))
            n = int(m.group(1))
            order.append(slots if n == _ETAG else n)
            pos = m.end()
        pieces.append(body[pos:].replace(b"%", b"%%"))
        self.fmt = b"%b".join(pieces)
        self.size = slots + 1
        # itemgetter of one index gives the item, not a 1-tuple
        self.pick: Any = itemgetter(*order) if len(order) > 1 else (
            (lambda values: (values[order[0]],)) if order else (lambda values: ()))

    def join(self, values: list[bytes]) -> bytes:
        return self.fmt % self.pick(values)


def _status_variants(obj: Doc) -> dict[str, bytes]:
    """The serialized ``Status`` of ``obj`` after ``dyn_overlay._status(obj, health)``, for each health."""
    out = {}
    for h in _HEALTHS:
        variant = copy.deepcopy(obj)
        _status(variant, h)
        out[h] = orjson.dumps(variant["Status"])
    return out


def _limits(obj: Doc) -> tuple[float | None, tuple[tuple[float, str], ...]]:
    """What ``keep_healthy`` and ``_threshold_health`` read from a reading's object: the ceiling of a healthy
    reading (1 below the lowest positive upper threshold) and the upper thresholds in the order they are checked."""
    limits = [lim for lim in _upper_limits(obj) if lim > 0]
    ceiling = min(limits) - 1.0 if limits else None
    checks: list[tuple[float, str]] = []
    for key, sev in (("UpperThresholdFatal", "Critical"), ("UpperThresholdCritical", "Critical"),
                     ("UpperThresholdNonCritical", "Warning")):
        lim = obj.get(key)
        if isinstance(lim, (int, float)):
            checks.append((lim, sev))
    th = obj.get("Thresholds")
    if isinstance(th, dict):
        for key, sev in (("UpperFatal", "Critical"), ("UpperCritical", "Critical"), ("UpperCaution", "Warning")):
            lim = (th.get(key) or {}).get("Reading") if isinstance(th.get(key), dict) else None
            if isinstance(lim, (int, float)):
                checks.append((lim, sev))
    return ceiling, tuple(checks)


class Reading:
    """One reading: what dyn_overlay._reading, keep_healthy and _threshold_health do for it on a healthy node."""

    __slots__ = ("captured", "ceiling", "checks", "context", "facts", "key", "name", "related", "rtype", "units")

    def __init__(self, key: str, obj: Doc, name: str, captured: Any, rtype: str | None, units: str | None) -> None:
        self.key = key
        self.name = name
        self.related = " ".join(str(r.get("@odata.id", "")) for r in obj.get("RelatedItem") or []
                                if isinstance(r, dict))
        self.context = obj.get("PhysicalContext")
        self.rtype = rtype
        self.units = units
        self.captured = captured
        self.ceiling, self.checks = _limits(obj)
        # (kind, gpu, ordinal, sensor key, TDP), known after the first value
        self.facts: tuple[str, int | None, int, int, float] | None = None

    def _facts(self, nd: NodeDyn) -> tuple[str, int | None, int, int, float]:
        ix = nd.flv.ix
        kind, gpu, ordinal = ix.sensor_facts(self.key, self.name, self.context, self.rtype, self.units, self.related)
        tdp = ix.gpus[gpu].tdp if (kind.startswith("gpu") and gpu is not None and gpu < len(ix.gpus)) else 700.0
        return kind, gpu, ordinal, key_of(self.key) & 0xFFFF, tdp

    def value(self, nd: NodeDyn, t: float, c: Conditions, energy_exempt: bool = True,
              clamp: bool = True) -> tuple[Any, str]:
        """(the reading, the health its thresholds give it). ``energy_exempt``: energy readings get no health
        from thresholds (dyn_overlay.sensor passes the kind to _threshold_health; thermal does not). ``clamp``:
        keep_healthy applies (thermal_metrics does not call it, and has no thresholds)."""
        facts = self.facts
        if facts is None:
            facts = self.facts = self._facts(nd)
        kind, gpu, ordinal, key, tdp = facts
        v = self.captured
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if kind == "energy":
                v = round(float(v) + _energy(nd, t, self.rtype, self.units), 3)
            else:
                new = adjust(nd.model, kind, v, t, c, gpu, ordinal, key, tdp)
                if isinstance(v, int) and kind in _TEMPS and isinstance(new, float):
                    new = round(new)
                v = new
        health = "OK"
        if clamp and isinstance(v, (int, float)):
            if kind != "energy":
                ceiling = self.ceiling
                if ceiling is not None and v > ceiling:
                    v = type(v)(ceiling) if isinstance(v, float) else int(ceiling)
            if kind != "energy" or not energy_exempt:
                for lim, sev in self.checks:
                    if v >= lim:
                        health = sev
                        break
        return v, health


class LiveSensor:
    """A Sensor document (dyn_overlay.sensor)."""

    __slots__ = ("etag", "parts", "reading", "status")

    def __init__(self, path: str, doc: Doc) -> None:
        name = str(doc.get("Name") or doc.get("Id") or "")
        self.reading = Reading(path, doc, name, doc.get("Reading"), doc.get("ReadingType"), doc.get("ReadingUnits"))
        shell = dict(doc)
        if "Reading" in doc:
            shell["Reading"] = _mark(0)
        self.status = _status_variants(doc) if "Status" in doc else None
        if self.status is not None:
            shell["Status"] = _mark(1)
        self.etag = "@odata.etag" in doc
        if self.etag:
            shell["@odata.etag"] = _mark(_ETAG)
        self.parts = _Layout(shell, 2)

    def render(self, nd: NodeDyn, path: str, t: float, c: Conditions) -> bytes:
        v, health = self.reading.value(nd, t, c)
        status = self.status
        return self.parts.join([orjson.dumps(v), status[health] if status is not None else b"",
                                nd.node.etag_json(path) if self.etag else b""])


class LiveThermal:
    """A legacy Thermal document (dyn_overlay.thermal): Temperatures and Fans."""

    __slots__ = ("etag", "fans", "parts", "slots", "temps")

    def __init__(self, path: str, doc: Doc) -> None:
        shell = copy.deepcopy(doc)
        n = 0
        # (reading, slot of ReadingCelsius or None, slot of Status or None, Status variants)
        self.temps: list[tuple[Reading, int | None, int | None, dict[str, bytes] | None]] = []
        for i, tm in enumerate(shell.get("Temperatures") or []):
            if not isinstance(tm, dict):
                continue
            orig = (doc["Temperatures"])[i]
            reading = Reading(f"{path}#T{i}", orig, str(orig.get("Name") or ""), orig.get("ReadingCelsius"),
                              "Temperature", "Cel")
            r_slot = s_slot = None
            variants = None
            if "ReadingCelsius" in tm:
                r_slot, n = n, n + 1
                tm["ReadingCelsius"] = _mark(r_slot)
            if "Status" in tm:
                variants = _status_variants(orig)
                variants[""] = orjson.dumps(orig["Status"])  # a reading of None leaves Status alone
                s_slot, n = n, n + 1
                tm["Status"] = _mark(s_slot)
            self.temps.append((reading, r_slot, s_slot, variants))
        # (index, captured Reading, percent?, slot of Reading or None, slot of CurrentReading or None, the
        # CurrentReading kept when Reading is absent)
        self.fans: list[tuple[int, Any, bool, int | None, int | None, Any]] = []
        for i, fan in enumerate(shell.get("Fans") or []):
            if not isinstance(fan, dict):
                continue
            v = fan.get("Reading")
            moves = isinstance(v, (int, float)) and not isinstance(v, bool)
            percent = str(fan.get("ReadingUnits") or "RPM").lower() == "percent"
            cur = fan.get("CurrentReading")
            r_slot = c_slot = None
            if moves:
                r_slot, n = n, n + 1
                fan["Reading"] = _mark(r_slot)
            if "CurrentReading" in fan and isinstance(cur, (int, float)):
                c_slot, n = n, n + 1
                fan["CurrentReading"] = _mark(c_slot)
            self.fans.append((i, v, percent, r_slot, c_slot, cur if "Reading" not in fan else None))
        self.slots = n
        self.etag = "@odata.etag" in shell
        if self.etag:
            shell["@odata.etag"] = _mark(_ETAG)
        self.parts = _Layout(shell, n)

    def render(self, nd: NodeDyn, path: str, t: float, c: Conditions) -> bytes:
        values: list[bytes] = [b""] * (self.slots + 1)
        for reading, r_slot, s_slot, variants in self.temps:
            v, health = reading.value(nd, t, c, energy_exempt=False)
            if r_slot is not None:
                values[r_slot] = orjson.dumps(v)
            if s_slot is not None:
                assert variants is not None
                values[s_slot] = variants[health] if v is not None else variants[""]
        model = nd.model
        for i, v, percent, r_slot, c_slot, kept in self.fans:
            if r_slot is not None:
                if percent:
                    v = min(100, round(v * model.fan_ratio(t, c, i)))
                else:
                    v = adjust(model, "fan", v, t, c, None, i)
                    v = int(v) if isinstance(v, float) else v
                values[r_slot] = orjson.dumps(v)
            if c_slot is not None:
                values[c_slot] = orjson.dumps(v if kept is None else kept)
        if self.etag:
            values[self.slots] = nd.node.etag_json(path)
        return self.parts.join(values)


class LivePower:
    """A legacy Power document (dyn_overlay.power): consumed power, PSU power, voltages."""

    __slots__ = ("etag", "parts", "slots", "values")

    def __init__(self, path: str, doc: Doc) -> None:
        shell = copy.deepcopy(doc)
        # (slot, what, captured, extra): what = "consumed" | "metric" (extra: factor, or None for the average)
        # | "psu" | "volts" (extra: the noise key, and the index)
        self.values: list[tuple[int, str, Any, Any]] = []

        def take(obj: Doc, key: str, what: str, extra: Any = None, any_number: bool = False) -> None:
            v = obj.get(key)
            if isinstance(v, (int, float)) and (any_number or not isinstance(v, bool)):
                slot = len(self.values)
                self.values.append((slot, what, v, extra))
                obj[key] = _mark(slot)

        for pc in shell.get("PowerControl") or []:
            if not isinstance(pc, dict):
                continue
            take(pc, "PowerConsumedWatts", "consumed")
            pm = pc.get("PowerMetrics")
            if isinstance(pm, dict):
                for k, f in (("AverageConsumedWatts", None), ("MinConsumedWatts", 0.93), ("MaxConsumedWatts", 1.08)):
                    take(pm, k, "metric", f)
        for ps in shell.get("PowerSupplies") or []:
            if isinstance(ps, dict):
                for k in ("PowerOutputWatts", "PowerInputWatts", "LastPowerOutputWatts"):
                    take(ps, k, "psu")
        for i, vo in enumerate(shell.get("Voltages") or []):
            if isinstance(vo, dict):
                take(vo, "ReadingVolts", "volts", (key_of(f"{path}#V{i}") & 0xFFFF, i), any_number=True)
        self.slots = len(self.values)
        self.etag = "@odata.etag" in shell
        if self.etag:
            shell["@odata.etag"] = _mark(_ETAG)
        self.parts = _Layout(shell, self.slots)

    def render(self, nd: NodeDyn, path: str, t: float, c: Conditions) -> bytes:
        model = nd.model
        ratio = model.power_ratio(t, c)
        out: list[bytes] = []
        for _slot, what, v, extra in self.values:
            if what == "consumed":
                new: Any = round(v * ratio) if isinstance(v, int) else round(v * ratio, 2)
            elif what == "metric":
                new = round(v * (model.power_ratio(t - 30, c) * extra if extra is not None else ratio))
            elif what == "psu":
                new = round(v * ratio * 1.0, 1)
            else:
                new = adjust(model, "voltage", v, t, c, None, extra[1], extra[0])
            out.append(orjson.dumps(new))
        out.append(nd.node.etag_json(path) if self.etag else b"")
        return self.parts.join(out)


class LiveFan:
    """A Fan document (dyn_overlay.fan): SpeedPercent's Reading and SpeedRPM."""

    __slots__ = ("etag", "parts", "values")

    def __init__(self, path: str, doc: Doc) -> None:
        shell = copy.deepcopy(doc)
        self.values: list[tuple[str, Any]] = []  # (key, captured) in slot order
        sp = shell.get("SpeedPercent")
        if isinstance(sp, dict):
            for k in ("Reading", "SpeedRPM"):
                v = sp.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    sp[k] = _mark(len(self.values))
                    self.values.append((k, v))
        self.etag = "@odata.etag" in shell
        if self.etag:
            shell["@odata.etag"] = _mark(_ETAG)
        self.parts = _Layout(shell, len(self.values))

    def render(self, nd: NodeDyn, path: str, t: float, c: Conditions) -> bytes:
        idx = nd.flv.fan_member.get(path)
        out: list[bytes] = []
        for k, v in self.values:
            ratio = nd.model.fan_ratio(t, c, idx or 0)
            out.append(orjson.dumps(min(100.0, round(v * ratio, 1)) if k == "Reading" else round(v * ratio)))
        out.append(nd.node.etag_json(path) if self.etag else b"")
        return self.parts.join(out)


class LiveThermalMetrics:
    """A ThermalMetrics document (dyn_overlay.thermal_metrics): readings and the temperature summary."""

    __slots__ = ("etag", "parts", "readings", "summary")

    def __init__(self, path: str, doc: Doc) -> None:
        shell = copy.deepcopy(doc)
        n = 0
        self.readings: list[Reading] = []
        for i, r in enumerate(shell.get("TemperatureReadingsCelsius") or []):
            if not isinstance(r, dict):
                continue
            label = f"{r.get('DeviceName') or ''} {r.get('DataSourceUri') or ''}"
            self.readings.append(Reading(f"{path}#R{i}", {}, label, r.get("Reading"), "Temperature", "Cel"))
            r["Reading"] = _mark(n)
            n += 1
        # (kind, captured, noise key) of each summary value, in slot order after the readings
        self.summary: list[tuple[str, Any, int]] = []
        summ = shell.get("TemperatureSummaryCelsius")
        if isinstance(summ, dict):
            for sub, kind in (("Intake", "inlet"), ("Exhaust", "exhaust"), ("Internal", "board_temp"),
                              ("Ambient", "inlet")):
                obj = summ.get(sub)
                if isinstance(obj, dict) and isinstance(obj.get("Reading"), (int, float)):
                    self.summary.append((kind, obj["Reading"], key_of(sub) & 0xFFFF))
                    obj["Reading"] = _mark(n)
                    n += 1
        self.etag = "@odata.etag" in shell
        if self.etag:
            shell["@odata.etag"] = _mark(_ETAG)
        self.parts = _Layout(shell, n)

    def render(self, nd: NodeDyn, path: str, t: float, c: Conditions) -> bytes:
        out = [orjson.dumps(r.value(nd, t, c, clamp=False)[0]) for r in self.readings]
        model = nd.model
        for kind, v, key in self.summary:
            out.append(orjson.dumps(adjust(model, kind, v, t, c, None, 0, key)))
        out.append(nd.node.etag_json(path) if self.etag else b"")
        return self.parts.join(out)


_KINDS: dict[str, Any] = {"Sensor": LiveSensor, "Thermal": LiveThermal, "Power": LivePower, "Fan": LiveFan,
                          "ThermalMetrics": LiveThermalMetrics}
LIVE_KINDS = frozenset(_KINDS)


def compile_live(kind: str, path: str, doc: Doc | None) -> LiveSensor | LiveThermal | LivePower | None:
    """The compiled form of a document of that overlay kind, or None when there is none or it cannot be cut."""
    cls = _KINDS.get(kind)
    if cls is None or not isinstance(doc, dict):
        return None
    try:
        return cls(path, doc)
    except (ValueError, TypeError, KeyError, orjson.JSONEncodeError):
        return None
